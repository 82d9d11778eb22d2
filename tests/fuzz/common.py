"""Shared pieces of the fuzz harness: the active profile and generic mutation strategies."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st

import tests.fuzz.conftest  # noqa: F401  (registers the profiles)

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "fuzz-ci")
if PROFILE not in ("fuzz", "fuzz-ci"):
    PROFILE = "fuzz-ci"
FUZZ = settings(settings.get_profile(PROFILE))
# Wall time one parse may take (generous: CI boxes are shared; a hang or a parser that
# backtracks for minutes on hostile input must fail here, not stall an agent cycle).
BOUND_S = 10.0


def bounded(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    start = time.monotonic()
    try:
        return fn(*args, **kwargs)
    finally:
        took = time.monotonic() - start
        assert took < BOUND_S, f"{getattr(fn, '__name__', fn)} took {took:.2f} s"


# Text that has broken parsers before: nesting, huge numbers, odd digits, surrogates, quotes.
NASTY = [
    "[" * 1000,
    "{" * 1000,
    '{"a":' * 1000,
    "1" + "0" * 400,
    "9" * 5000,
    "1e400",
    "-1e400",
    "NaN",
    "Infinity",
    "²",
    "١٢",  # Arabic-Indic digits: str.isdigit says yes
    "\ud800",
    "\\ud800",
    "\x00",
    '"',
    '"\n"',
    "\r\n",
    "x" * 140_000,
    "\ufeff",
    "'",
    ";",
    ",",
]

nasty_text = st.one_of(st.sampled_from(NASTY), st.text(max_size=60))

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.sampled_from([10**400, -(10**400), 2**63, 2**64]),
    st.floats(allow_nan=False, allow_infinity=False),
    nasty_text,
)


def json_values(max_leaves: int = 25) -> st.SearchStrategy[Any]:
    return st.recursive(
        json_leaf,
        lambda inner: st.one_of(
            st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=5)
        ),
        max_leaves=max_leaves,
    )


def deep(levels: int, leaf: str = "1") -> str:
    return "[" * levels + leaf + "]" * levels


@st.composite
def mutated_text(draw: st.DrawFn, seeds: list[str]) -> str:
    """A seed document with a few byte-level edits: cut, repeat, insert nasty text, swap."""
    text = draw(st.sampled_from(seeds))
    for _ in range(draw(st.integers(0, 4))):
        if not text:
            text = draw(nasty_text)
            continue
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 40)))
        kind = draw(st.sampled_from(["cut", "insert", "dup", "truncate", "replace"]))
        if kind == "cut":
            text = text[:i] + text[j:]
        elif kind == "insert":
            text = text[:i] + draw(nasty_text) + text[i:]
        elif kind == "dup":
            text = text[:j] + text[i:j] * draw(st.integers(1, 5)) + text[j:]
        elif kind == "truncate":
            text = text[:i]
        else:
            text = text[:i] + draw(nasty_text) + text[j:]
    return text
