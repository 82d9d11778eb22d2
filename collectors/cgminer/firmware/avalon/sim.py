"""Simulated Canaan AvalonMiner 1246 replies, shaped like the real captures in
tests/cases/asic/avalon/ (cgminer 4.11.1 with the Avalon driver).

The miner's live numbers go into the ``MM ID0`` bracket string the way the 1246 capture has
them; soft-off (``ascset 0,softoff,1:<time>``) switches it to what the soft-off Avalon Q capture
shows: ``SoftOFF[n]``, ``SYSTEMSTATU[Work: In Idle…]``, 0 hashrate, fans stopped, PSU ~0 W.

Pools as Canaan's cgminer fork for the Nano 3/Q writes them (its api.c ``setpool``, no captured
reply: these follow that source): ``setpool <user>,<password>,<slot>,<url>,<user>[,<pass>]``
checks the web login (``SimMiner.web_password``, user admin), saves the slot and answers code
133 "Pool set info: … Please reboot miner to make config work."; a wrong login is code 132
"Pool set error: userpass err". The saved slots take effect at ``ascset 0,reboot,<delay>``
(at once here); the API is away for ``SimMiner.reboot_s`` after it, as while the box boots.
"""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING, Any

from kuat.collectors.cgminer.sim_replies import Personality, Reply, pools_body

if TYPE_CHECKING:
    from kuat.collectors.cgminer.sim import SimMiner

Body = dict[str, Any]

DESC = "cgminer 4.11.1"
VER = "1246-83-21072802_4ec6bb0_211fc46"
# the firmware acts at the time in the parameter; these simulated boxes act at once
SOFT_COMMANDS = ("softoff", "softon")


def _status(code: int, msg: str, letter: str = "S") -> list[Body]:
    now = int(time.time())
    return [{"STATUS": letter, "When": now, "Code": code, "Msg": msg, "Description": DESC}]


def version(m: SimMiner) -> Body:
    return {
        "STATUS": _status(22, "CGMiner versions"),
        "VERSION": [
            {
                "CGMiner": "4.11.1",
                "API": "3.7",
                "PROD": m.model,
                "MODEL": m.model.rsplit(" ", 1)[-1],
                "HWTYPE": "MM3v2_X3",
                "SWTYPE": "MM310",
                "LVERSION": "21072802_4ec6bb0",
                "BVERSION": "21072802_4ec6bb0",
                "CGVERSION": "21072802_4ec6bb0",
                "DNA": "020100008c1ed5ea",
                "MAC": m.mac.replace(":", "").lower(),  # the A-series writes it bare
            }
        ],
        "id": 1,
    }


def summary(m: SimMiner) -> Body:
    mhs = m.hashrate_ths * 1e6
    return {
        "STATUS": _status(11, "Summary"),
        "SUMMARY": [
            {
                "Elapsed": m.elapsed,
                "MHS av": round(mhs * 0.99, 2),
                "MHS 5s": round(mhs, 2),
                "MHS 1m": round(mhs * 1.001, 2),
                "MHS 5m": round(mhs * 0.998, 2),
                "MHS 15m": round(mhs * 0.997, 2),
                "Accepted": m.accepted,
                "Rejected": m.accepted // 450,
                "Hardware Errors": 0,
                "Utility": 1.42,
                "Stale": 0,
                "Best Share": 354914572,
            }
        ],
        "id": 1,
    }


def _mm(m: SimMiner) -> str:
    temps = m.chain_temps()
    boards = " ".join(str(b) for b, _ in temps)
    chips = " ".join(str(c) for _, c in temps)
    fans = " ".join(f"Fan{i + 1}[{rpm}]" for i, rpm in enumerate(m.fans_rpm or (0, 0, 0, 0)))
    ghs = m.hashrate_ths * 1e3
    per_board = " ".join(f"{ghs / 3:.2f}" for _ in range(3))
    work = "In Idle" if m.sleeping else "In Work"
    return (
        f"Ver[{VER}] DNA[020100008c1ed5ea] MEMFREE[1201472.0] NETFAIL[0 0 0 0 0 0 0 0] "
        f"SYSTEMSTATU[Work: {work}, Hash Board: 3 ] Elapsed[{m.elapsed}] BOOTBY[0x08.00000000] "
        f"LW[24558724] MH[0 0 0] HW[2735] DH[2.732%] Temp[{24 if m.sleeping else 30}] "
        f"TMax[{max((c for _, c in temps), default=0)}] "
        f"TAvg[{sum(b for b, _ in temps) // max(1, len(temps))}] {fans} "
        f"FanR[{0 if m.sleeping else 72}%] Vo[329] "
        f"PS[0 1214 1316 {0 if m.sleeping else 242} {int(m.power_w) if not m.sleeping else 0} 1320 "
        f"{m.power_limit_w}] GHSspd[{ghs:.2f}] DHspd[2.732%] "
        f"GHSmm[{m.nominal_ths * 1e3 * 0.93:.2f}] GHSavg[{ghs * 0.99:.2f}] WU[1112790.28] "
        f"Freq[{0 if m.sleeping else 502.41}] Led[0] MGHS[{per_board}] MTmax[{chips}] "
        f"MTavg[{boards}] TA[360] Core[A3201] PING[443] POWS[0] HASHS[0 0 0] POOLS[0] "
        f"SoftOFF[{4 if m.sleeping else 0}] ECHU[0 0 0] ECMM[0] WORKMODE[1] WORKLEVEL[0] "
        f"MPO[{m.power_limit_w}]"
    )


def stats(m: SimMiner) -> Body:
    return {
        "STATUS": _status(70, "CGMiner stats"),
        "STATS": [
            {
                "STATS": 0,
                "ID": "AVA100",
                "Elapsed": m.elapsed,
                "Calls": 0,
                "MM Count": 1,
                "MM ID0": _mm(m),
            },
            {"STATS": 1, "ID": "POOL0", "Elapsed": m.elapsed, "Calls": 0, "Work Diff": 524288.0},
        ],
        "id": 1,
    }


def ascset(m: SimMiner, parameter: str) -> Body:
    """``0,softoff,1:<time>`` / ``0,softon,1:<time>``: the firmware's informational 'yes'."""
    parts = parameter.split(",")
    if len(parts) < 2 or parts[0].strip() != "0":
        return {"STATUS": _status(119, f"Missing ASC argument {parameter!r}", "E"), "id": 1}
    option = parts[1].strip()
    if option == "reboot":
        # the firmware starts again and cgminer loads the saved pool slots
        if m.saved_pools is not None:
            m.pools = [p for p in m.saved_pools if p["url"]]
            m.saved_pools = None
            m.pool_active = 0
        m.down_until = m.clock() + m.reboot_s
        return {"STATUS": _status(118, "ASC 0 set info: reboot", "I"), "id": 1}
    if option not in SOFT_COMMANDS:
        return {"STATUS": _status(14, f"ASC 0 set failed: unknown option {option}", "E"), "id": 1}
    when = parts[2].partition(":")[2] if len(parts) > 2 else ""
    if not when.isdigit():
        return {"STATUS": _status(14, f"ASC 0 set failed: {option} needs 1:<time>", "E"), "id": 1}
    m.sleeping = option == "softoff"
    return {"STATUS": _status(118, f"ASC 0 set info: success {option}:{when}", "I"), "id": 1}


WEB_USER = "admin"


def setpool(m: SimMiner, parameter: str) -> Body:
    """Save one of the three pool slots, for the next start (module docstring)."""
    parts = parameter.split(",")
    if len(parts) not in (5, 6) or not parts[2].strip().lstrip("-").isdigit():
        n = len(parts)
        return _pool_set_error(f"we need 5 | 6 arguments, your input is {n} arguments.")
    user, password, slot, url, worker = parts[:5]
    if user != WEB_USER:
        return _pool_set_error("username err")
    # the firmware keeps the password's sha256 and compares digests
    given = hashlib.sha256(password.encode()).hexdigest()
    if given != hashlib.sha256(m.web_password.encode()).hexdigest():
        return _pool_set_error("userpass err")
    n = int(slot)
    if not 0 <= n <= 2:
        return _pool_set_error(f"pool num must between 0 and 2 , your input is {n}")
    if m.saved_pools is None:
        saved = [dict(p) for p in m.pools[:3]]
        m.saved_pools = saved + [{"url": "", "user": "", "pass": ""}] * (3 - len(saved))
    pw = parts[5] if len(parts) == 6 else ""
    m.saved_pools[n] = {"url": url, "user": worker, "pass": pw}
    msg = (
        f"Pool set info: \npool {n} success set to {url}\nworker is {worker}\n"
        f"workerpassword is {pw}\nPlease reboot miner to make config work.\n"
    )
    return {"STATUS": _status(133, msg), "id": 1}


def _pool_set_error(why: str) -> Body:
    return {"STATUS": _status(132, f"Pool set error: {why}", "E"), "id": 1}


AVALON: dict[str, Reply] = {
    "version": version,
    "summary": summary,
    "stats": stats,
    "estats": stats,
    "pools": lambda m: pools_body(m, DESC),
}


def _control(m: SimMiner, command: str, parameter: str, desc: str) -> Body | None:
    if command == "ascset":
        return ascset(m, parameter)
    if command == "setpool":
        return setpool(m, parameter)
    return None


AVALON_SIM = Personality(
    name="avalon",
    models=(("AvalonMiner 1246", 90.0, 3420.0, 3200),),
    desc=DESC,
    replies=AVALON,
    control=_control,
    web_password="admin",
)
