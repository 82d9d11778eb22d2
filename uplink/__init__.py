"""Everything that leaves the host, and loses nothing.

* ``kuat.uplink.lineproto`` — readings → InfluxDB line protocol (schema in ``uplink/SCHEMA.md``).
* ``kuat.uplink.spool`` — the durable SQLite queue (telemetry lines and the MQTT outbox).
* ``kuat.uplink.influx`` — spool → InfluxDB v2 write API (synchronous writes, ack after 2xx).
* ``kuat.uplink.inventory`` — register inventory snapshots and change events (pure functions).
* ``kuat.uplink.mqtt`` — register publisher over MQTT v5 (outbox, retained snapshot, last will).
* ``uplink/schemas/`` — JSON Schemas of the register payloads.

Modules are imported directly (``from uplink.spool import Spool``) so that importing one does
not pull in paho or influxdb-client.
"""
