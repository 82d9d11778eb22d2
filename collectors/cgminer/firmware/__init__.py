"""Per-firmware field maps: which API command feeds which reading field, as data.

Each module exports ``SPEC``; the engine (collectors.cgminer.parsers) sends the union of a spec's
commands once per poll and runs every field's extractor on the replies it names.
"""
