# Types of the optional C accelerator (uplink/_lpaccel.c), which mypy cannot read.
from collections.abc import Sized

def asic_fields(
    hashrate_ths: float | None,
    hashrate_nominal_ths: float | None,
    power_w: float | None,
    power_limit_w: float | None,
    temps_board: tuple[float, ...],
    temps_chip: tuple[float, ...],
    temps_inlet: tuple[float, ...],
    fans_rpm: tuple[int, ...],
    uptime_s: int | None,
    state_code: int | None,
    pool_ok: int | None,
    errors: Sized,
    /,
) -> str: ...
