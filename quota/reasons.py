"""Reason codes: why a decision came out the way it did, as a code plus plain parameters.

A reason is data, not prose: the operator's language is chosen when it is shown (the agent
renders it from the gettext catalog, :func:`kuat.agent.i18n.render`), and logs, MQTT and InfluxDB
carry the code itself.
Parameters are plain JSON values (str, int, float, bool, None, or lists of them) so that
``kuat.collectors.readings.to_jsonable`` of any result containing reasons is JSON as is.
"""

from __future__ import annotations

import enum
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any


class Code(enum.StrEnum):
    # schedule parsing and the schedule book
    SCHEDULE_NOT_JSON = "schedule_not_json"
    SCHEDULE_BAD_SHAPE = "schedule_bad_shape"
    SCHEDULE_EMPTY = "schedule_empty"
    SCHEDULE_MISSING_COLUMN = "schedule_missing_column"
    SCHEDULE_BAD_ROW = "schedule_bad_row"
    SCHEDULE_BAD_CSV = "schedule_bad_csv"
    SCHEDULE_MISSING_FIELD = "schedule_missing_field"
    SCHEDULE_INCONSISTENT_FIELD = "schedule_inconsistent_field"
    SCHEDULE_BAD_DATE = "schedule_bad_date"
    SCHEDULE_BAD_SOURCE = "schedule_bad_source"
    SCHEDULE_BAD_VERSION = "schedule_bad_version"
    SCHEDULE_HOURS_COUNT = "schedule_hours_count"
    SCHEDULE_HOUR_MISSING = "schedule_hour_missing"
    SCHEDULE_HOUR_OUT_OF_RANGE = "schedule_hour_out_of_range"
    SCHEDULE_HOUR_DUPLICATE = "schedule_hour_duplicate"
    SCHEDULE_VALUE_NOT_NUMERIC = "schedule_value_not_numeric"
    SCHEDULE_VALUE_NEGATIVE = "schedule_value_negative"
    SCHEDULE_VALUE_TOO_LARGE = "schedule_value_too_large"
    SCHEDULE_ADDED = "schedule_added"
    SCHEDULE_REPLACED = "schedule_replaced"
    SCHEDULE_UNCHANGED = "schedule_unchanged"
    SCHEDULE_OLDER_VERSION = "schedule_older_version"
    SCHEDULE_VERSION_CONFLICT = "schedule_version_conflict"
    SCHEDULE_REFUSED = "schedule_refused"
    # the hourly quota
    QUOTA_OK = "quota_ok"
    QUOTA_WARN = "quota_warn"
    QUOTA_FORECAST_OVER = "quota_forecast_over"
    QUOTA_EXCEEDED = "quota_exceeded"
    QUOTA_NO_ALLOCATION = "quota_no_allocation"
    QUOTA_NO_DATA = "quota_no_data"
    QUOTA_UNDER_USE = "quota_under_use"
    METER_STALE = "meter_stale"
    METER_COUNTER_MISSING = "meter_counter_missing"
    METER_COUNTER_WENT_BACK = "meter_counter_went_back"
    METER_HOUR_START_ESTIMATED = "meter_hour_start_estimated"
    METER_GAP = "meter_gap"
    # checklist item 5: grid connection
    GRID_OK = "grid_ok"
    GRID_OFF_GRID_EXEMPT = "grid_off_grid_exempt"
    GRID_PRE_2023 = "grid_pre_2023"
    GRID_TC_MISSING = "grid_tc_missing"
    GRID_VOLTAGE_LOW = "grid_voltage_low"
    GRID_CAPACITY_LOW = "grid_capacity_low"
    GRID_PEAK_OVER_PERMITTED = "grid_peak_over_permitted"
    GRID_PEAK_UNKNOWN = "grid_peak_unknown"
    # checklist item 7: pool and data centre
    POOLS_OK = "pools_ok"
    POOLS_NOT_ACCREDITED = "pools_not_accredited"
    POOLS_NONE_ACTIVE = "pools_none_active"
    POOLS_MINER_NOT_ACCREDITED = "pools_miner_not_accredited"
    POOLS_MINER_NO_POOL = "pools_miner_no_pool"
    POOLS_LIST_EMPTY = "pools_list_empty"
    POOLS_NO_MINERS = "pools_no_miners"
    DC_NOT_REGISTERED = "dc_not_registered"
    # energy balance
    BALANCE_OK = "balance_ok"
    BALANCE_UNREGISTERED_LOAD = "balance_unregistered_load"
    BALANCE_METER_BELOW_LOAD = "balance_meter_below_load"
    BALANCE_NO_DATA = "balance_no_data"
    # the commercial (settlement) meter's closed hour against kuat's own ledger
    SETTLEMENT_OK = "settlement_ok"
    SETTLEMENT_MISMATCH = "settlement_mismatch"
    SETTLEMENT_METER_INCOMPLETE = "settlement_meter_incomplete"
    SETTLEMENT_LEDGER_INCOMPLETE = "settlement_ledger_incomplete"
    # curtailment planner
    CURTAIL_SLEEP = "curtail_sleep"
    CURTAIL_RESTORE = "curtail_restore"
    CURTAIL_HOLD_MIN_ON = "curtail_hold_min_on"
    CURTAIL_HOLD_MIN_OFF = "curtail_hold_min_off"
    CURTAIL_WITHIN_LIMIT = "curtail_within_limit"
    CURTAIL_HYSTERESIS = "curtail_hysteresis"
    CURTAIL_SHORTFALL = "curtail_shortfall"
    CURTAIL_NO_LIMIT = "curtail_no_limit"
    CURTAIL_LIMIT_POWER = "curtail_limit_power"
    CURTAIL_RESTORE_POWER = "curtail_restore_power"
    CURTAIL_HOLD_LIMIT = "curtail_hold_limit"
    CURTAIL_OUTLET_OFF = "curtail_outlet_off"
    CURTAIL_OUTLET_ON = "curtail_outlet_on"
    CURTAIL_HOLD_HORIZON = "curtail_hold_horizon"
    # a power limit not raised part way near the hour's end: it would be raised again at it
    CURTAIL_HOLD_PARTIAL = "curtail_hold_partial"
    # external curtailment orders (energy company / System Operator), quota.orders
    ORDER_NOT_JSON = "order_not_json"
    ORDER_BAD_SHAPE = "order_bad_shape"
    ORDER_DUPLICATE_KEY = "order_duplicate_key"
    ORDER_MISSING_FIELD = "order_missing_field"
    ORDER_BAD_FIELD = "order_bad_field"
    ORDER_UNKNOWN_ISSUER = "order_unknown_issuer"
    ORDER_BAD_SIGNATURE = "order_bad_signature"
    ORDER_WRONG_SITE = "order_wrong_site"
    ORDER_END_BEFORE_START = "order_end_before_start"
    ORDER_NEGATIVE_TARGET = "order_negative_target"
    ORDER_EXPIRED = "order_expired"
    ORDER_TOO_FAR_AHEAD = "order_too_far_ahead"
    ORDER_ISSUED_IN_FUTURE = "order_issued_in_future"
    ORDER_REFUSED = "order_refused"
    ORDER_ADDED = "order_added"
    ORDER_REPLACED = "order_replaced"
    ORDER_CANCELLED = "order_cancelled"
    ORDER_UNCHANGED = "order_unchanged"
    ORDER_NOT_NEWER = "order_not_newer"
    ORDER_ENDED = "order_ended"
    ORDER_LIMIT = "order_limit"


def _plain(value: Any) -> Any:
    # Parameters must survive json.dumps unchanged: dates become ISO text here, once.
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class Reason:
    code: Code
    params: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, code: Code, **params: Any) -> Reason:
        return cls(code, {k: _plain(v) for k, v in params.items()})


# A value quoted back in a reason: enough to recognise it, never a megabyte or a deep tree.
_SHOW = reprlib.Repr()
_SHOW.maxlevel = 2
_SHOW.maxstring = _SHOW.maxother = _SHOW.maxlong = 80


def show_value(value: Any) -> str:
    """``value`` as a reason parameter: text as is (cut at 80), anything else a short repr."""
    if isinstance(value, str):
        # A lone surrogate (valid in JSON, not in UTF-8) would break the log line quoting it.
        text = value.encode("utf-8", "backslashreplace").decode("utf-8")
        return text if len(text) <= 80 else text[:77] + "..."
    if isinstance(value, bool | float) or value is None:
        return str(value)
    return _SHOW.repr(value)
