"""Every text a person reads, in Kazakh, Russian and English: one gettext catalog, read here.

The catalog is ``agent/locale/<lang>/LC_MESSAGES/kuat.po`` (the source, edited by hand) compiled
to ``kuat.mo`` beside it (``make messages``; committed, so a fresh clone and the wheel carry it).
Message ids are stable codes, not English sentences: a reason's code (``quota_ok``), ``ui.*``
for the agent's screens, ``report.*`` for reports, ``unit.*``, ``kind.*``, ``job.*``,
``cause.*``, ``term.<param>.<value>`` for parameter values that are words. Texts use
``str.format`` fields named after the parameters; a plural message's ``msgid_plural`` names the
field that chooses the form (``"{miners}"``), and the locale's plural rule (three forms in
Russian) picks it.

``kuat.quota`` stays pure: it produces a :class:`~kuat.quota.reasons.Reason` (code + plain
parameters) and the agent renders it here, with numbers written the locale's way (``2 072,5`` in
kk and ru, ``2,072.5`` in en) and never rounded past what tells two values apart.

Compatible call path (for texts added the old way while branches merge): ``t(key, lang)``
still reads the ``CATALOG`` dict below when the gettext catalog has no ``ui.<key>``, and
:func:`render` reads ``kuat.quota.messages.CATALOG`` for a reason code the catalog lacks.
``python -m kuat.agent.i18n_tool import-legacy`` moves such entries into the .po files.
"""

from __future__ import annotations

import functools
import gettext
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

from babel.messages.mofile import read_mo

from kuat.quota import messages as legacy_reasons
from kuat.quota.reasons import Reason

Lang = Literal["kk", "ru", "en"]
LANGS: tuple[Lang, ...] = ("kk", "ru", "en")
DOMAIN = "kuat"

# Legacy: labels added as a dict, the way the code did it before the gettext catalog. Read by
# t() when the catalog lacks "ui.<key>"; moved into the .po files by `make messages-import`.
CATALOG: dict[str, dict[Lang, str]] = {}

# Integer parameters that name something (an hour, a line, a port) rather than count it: shown
# as written, never grouped ("port 4 028" would be wrong).
_PLAIN_INTS = frozenset(
    {"hour", "hour_ending", "line", "version", "previous", "held", "port", "outlet", "item"}
)
DECIMALS = 3  # most decimals a float is shown with, unless needed to tell two values apart
_MAX_DECIMALS = 6
# The precision a person acts on, by the parameter's unit (its name's suffix): MW and MWh to the
# kilowatt(-hour), since an allocation of 0.25 MWh is 250 kWh and not 0.2 MWh; kW, kWh, kV,
# seconds and hours to a tenth; watts and percentages whole. Fewer decimals are shown when the
# value has fewer (35.0 kV reads 35), more when two figures of one message would read the same.
_DECIMALS_BY_SUFFIX: tuple[tuple[str, int], ...] = (
    ("_mwh", 3),
    ("_mw", 3),
    ("_kwh", 1),
    ("_kw", 1),
    ("_kv", 1),
    ("_s", 1),
    ("_h", 1),
    ("_per_th", 1),
    ("_ths", 1),
    ("_w", 0),
    ("percent", 0),
)


@functools.cache
def _decimals(name: str) -> int:
    return next((d for suffix, d in _DECIMALS_BY_SUFFIX if name.endswith(suffix)), DECIMALS)


@dataclass(frozen=True, slots=True)
class Entry:
    forms: tuple[str, ...]  # one text, or one per plural form of the language
    count: str | None  # the parameter that chooses the plural form


@dataclass(frozen=True, slots=True)
class Messages:
    lang: Lang
    entries: Mapping[str, Entry]
    plural: Callable[[int], int]


def _catalog_file(lang: Lang) -> Any:
    return resources.files("kuat.agent").joinpath("locale", lang, "LC_MESSAGES", f"{DOMAIN}.mo")


@functools.cache
def catalog(lang: Lang) -> Messages:
    """The compiled catalog of ``lang`` (read once per process)."""
    if lang not in LANGS:
        raise ValueError(f"language must be one of {', '.join(LANGS)}, got {lang!r}")
    with _catalog_file(lang).open("rb") as f:
        cat = read_mo(f)
    entries: dict[str, Entry] = {}
    for m in cat:
        if not m.id:
            continue  # the header
        if isinstance(m.id, tuple | list):
            count = m.id[1].strip("{}") or None
            forms = m.string if isinstance(m.string, tuple | list) else (m.string or "",)
            entries[m.id[0]] = Entry(tuple(forms), count)
        else:
            entries[m.id] = Entry((str(m.string),), None)
    return Messages(lang, entries, gettext.c2py(cat.plural_expr))


def has(msgid: str, lang: Lang = "en") -> bool:
    return msgid in catalog(lang).entries


# --- numbers ------------------------------------------------------------------------------


# Each language's decimal sign, group separator and minus sign, as CLDR has them (a test holds
# this table to Babel's). Asked of Babel at run time, its locale data stayed loaded for good:
# ~5 MB of every agent's memory for six characters (issue 15, farm_scale --tracemalloc).
SYMBOLS: dict[Lang, tuple[str, str, str]] = {
    "kk": (",", "\N{NO-BREAK SPACE}", "-"),
    "ru": (",", "\N{NO-BREAK SPACE}", "-"),
    "en": (".", ",", "-"),
}


def _format(value: float, lang: Lang, most: int, least: int = 0) -> str:
    # Python formats, the locale's symbols are swapped in: Babel's own format_decimal costs
    # ~0.3 ms a figure, and the curtailment planner renders a reason per miner.
    if not math.isfinite(value):
        return str(value)
    text = f"{abs(value):,.{most}f}"
    if most > least:
        whole, _, frac = text.partition(".")
        frac = frac.rstrip("0").ljust(least, "0")
        text = f"{whole}.{frac}" if frac else whole
    decimal, group, minus = SYMBOLS[lang]
    text = text.replace(",", "\0").replace(".", decimal).replace("\0", group)
    return minus + text if round(value, most) < 0 else text


def number(value: float, lang: Lang, decimals: int | None = None) -> str:
    """``value`` the locale's way: ``1 234,5`` (kk, ru: no-break space, decimal comma) or
    ``1,234.5`` (en). ``decimals``: exactly that many; None: as many as the value has, up to
    :data:`DECIMALS` (0.25 stays 0.25, 35.0 reads 35)."""
    if decimals is not None:
        return _format(value, lang, decimals, decimals)
    return _format(value, lang, 0 if isinstance(value, int) else DECIMALS)


def _float_text(value: float, lang: Lang, decimals: int) -> str:
    return _format(value, lang, decimals)


def quantity(value: float | None, unit_key: str, lang: Lang, decimals: int | None = None) -> str:
    """A number with its unit (``unit.kw`` …), or a dash when there is no value."""
    if value is None:
        return "—"
    return f"{number(value, lang, decimals)} {unit(unit_key, lang)}"


def unit(key: str, lang: Lang) -> str:
    return message(f"unit.{key}", lang)


# --- parameters ---------------------------------------------------------------------------


class _Params(dict[str, str]):
    # a field the reason did not supply shows as itself: a screen must never crash on text
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _param(name: str, value: Any, lang: Lang) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return message("word.yes" if value else "word.no", lang)
    if isinstance(value, list | tuple):
        return ", ".join(_param(name, v, lang) for v in value)
    if isinstance(value, int):
        return str(value) if name in _PLAIN_INTS else number(value, lang)
    if isinstance(value, float):
        return _float_text(value, lang, _decimals(name))
    if isinstance(value, str):
        term = f"term.{name}.{value}"
        if has(term, lang):
            return message(term, lang)
    return str(value)


def _params(params: Mapping[str, Any], lang: Lang) -> _Params:
    out = _Params({k: _param(k, v, lang) for k, v in params.items()})
    # Two figures that differ must not read the same ("0.5004 MWh, cap 0.5 MWh"): give such a
    # pair the decimals that tell them apart.
    floats = {
        k: float(v)
        for k, v in params.items()
        if isinstance(v, int | float)
        and not isinstance(v, bool)
        and k not in _PLAIN_INTS
        and math.isfinite(v)
    }
    for a, va in floats.items():
        for b, vb in floats.items():
            if a < b and va != vb and out[a] == out[b]:
                for d in range(min(_decimals(a), _decimals(b)) + 1, _MAX_DECIMALS + 1):
                    ta, tb = _float_text(va, lang, d), _float_text(vb, lang, d)
                    if ta != tb or d == _MAX_DECIMALS:
                        out[a], out[b] = ta, tb
                        break
    return out


def _form(entry: Entry, messages: Messages, params: Mapping[str, Any]) -> str:
    if entry.count is None or len(entry.forms) == 1:
        return entry.forms[0]
    n = params.get(entry.count)
    if isinstance(n, bool) or not isinstance(n, int | float):
        n = 2  # unknown count: the general plural form
    if isinstance(n, float) and not n.is_integer():
        n = 2  # a fraction takes the form of 2 in kk, ru and en ("1.5 hours", «1,5 часа»)
    return entry.forms[messages.plural(abs(int(n)))]


def message(msgid: str, lang: Lang, /, **params: Any) -> str:
    """The text of ``msgid`` in ``lang`` with ``params`` filled in; an unknown id shows as
    itself rather than crash a screen (the catalog test keeps that from shipping)."""
    messages = catalog(lang)
    entry = messages.entries.get(msgid)
    if entry is None:
        return msgid
    return _form(entry, messages, params).format_map(_params(params, lang))


def render(reason: Reason, lang: Lang = "en") -> str:
    """A reason (code + parameters from ``kuat.quota``) as one line for an operator."""
    code = str(reason.code)
    if has(code, lang):
        return message(code, lang, **reason.params)
    legacy = legacy_reasons.CATALOG.get(reason.code)
    if legacy is not None and lang in legacy:
        return legacy[lang].format_map(_params(reason.params, lang))
    return code  # a code without text is a bug (the catalog test); show the code, not nothing


def t(key: str, lang: Lang) -> str:
    """Label ``ui.<key>`` in ``lang``; the old call, kept for the dashboard and status table."""
    if has(f"ui.{key}", lang):
        return message(f"ui.{key}", lang)
    entry = CATALOG.get(key)
    return entry[lang] if entry else key


def labels(lang: Lang) -> dict[str, str]:
    """Every ``ui.<key>`` label by key (a template's ``t.key``), old-style CATALOG ones too."""
    out = {key: texts[lang] for key, texts in CATALOG.items()}
    for msgid, entry in catalog(lang).entries.items():
        if msgid.startswith("ui.") and entry.count is None:
            out[msgid[3:]] = entry.forms[0]
    return out


# --- device kinds, agent jobs, fault causes -----------------------------------------------


def device_kind(kind: str, lang: Lang) -> str:
    key = f"kind.{kind}"
    return message(key, lang) if has(key, lang) else kind


def job_name(name: str, lang: Lang) -> str:
    """An agent job's name (``quota``, ``meter:site``) in words."""
    base, _, which = name.partition(":")
    key = f"job.{base}"
    if not has(key, lang):
        return name
    words = message(key, lang)
    return message("job.named", lang, job=words, name=which) if which else words


_SECONDS = r"([0-9]+(?:\.[0-9]+)?) s"
# Causes the collectors write (in English, in their error texts), by pattern: the parameters
# are lifted out and the cause is said in the reader's language. A cause not listed shows as
# written: it is technical detail (a library's message) that is better untouched than guessed.
_CAUSES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p), key)
    for p, key in (
        (
            r"connection refused on port (?P<port>\d+)(?: \(is the miner API enabled\?\))?$",
            "cause.refused_port",
        ),
        (r"connection refused or host unreachable$", "cause.refused_or_unreachable"),
        (r"connection refused$", "cause.refused"),
        (rf"timed out after {_SECONDS} connecting$", "cause.connect_timeout"),
        (rf"connect timed out after {_SECONDS}$", "cause.connect_timeout"),
        (rf"no reading within {_SECONDS}$", "cause.no_reading"),
        (rf"(?:no answer|timed out) (?:within|after) {_SECONDS}$", "cause.timeout"),
        (r"cannot connect: (?P<detail>.+)$", "cause.cannot_connect"),
        (r"internal error: (?P<detail>.+)$", "cause.internal"),
        (r"connection closed by the (?:meter|device|miner)$", "cause.closed"),
        (r"(?P<detail>reply .+)$", "cause.bad_reply"),
    )
)


def fault_cause(text: str, lang: Lang) -> str:
    """Why a device did not answer, in ``lang`` when the cause is one kuat knows."""
    for pattern, key in _CAUSES:
        m = pattern.match(text.strip())
        if m is None:
            continue
        groups = m.groupdict()
        unnamed = [g for i, g in enumerate(m.groups(), 1) if i not in pattern.groupindex.values()]
        if unnamed:
            groups["seconds"] = float(unnamed[0])
        return message(key, lang, **groups)
    return text
