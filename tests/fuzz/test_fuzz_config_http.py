"""Config text and HTTP bodies: ``parse_config`` raises only ``ConfigError``; the quota
sources' body helpers never raise (a bad body is the parser's to refuse, with reasons)."""

from __future__ import annotations

import contextlib
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from kuat.agent.config import ConfigError, parse_config
from kuat.agent.tomlpos import locate
from kuat.uplink.http import redact_url
from kuat.uplink.influx import redact_userinfo
from kuat.uplink.quota_source import _charset, fmt_from_content_type, split_documents
from tests.fuzz.common import FUZZ, bounded, deep, mutated_text, nasty_text

EXAMPLE = Path(__file__).parents[2] / "config" / "kuat.example.toml"
SEEDS = [
    EXAMPLE.read_text(encoding="utf-8"),
    '[site]\nid = "s1"\nowner_bin = "230140000045"\n'
    '[[asic.groups]]\nhosts = ["10.0.0.1-10.0.0.9"]\n',
]


def _config(text: str) -> None:
    try:
        bounded(parse_config, text, "fuzz.toml")
    except ConfigError as exc:
        assert exc.problems and "fuzz.toml" in exc.render()


@FUZZ
@given(mutated_text(SEEDS))
@example("a = " + deep(1000))
@example("a = " + "{b = " * 600 + "1" + "}" * 600)
@example("a = " + "1" * 5000)
@example("[site]\nid = " + "9" * 4301 + "\n")
def test_config_text(text: str) -> None:
    _config(text)


@FUZZ
@given(mutated_text(SEEDS), st.lists(st.integers(0, 5) | st.text(max_size=8), max_size=6))
def test_locating_a_key_never_raises(text: str, loc: list) -> None:
    line = bounded(locate, text, tuple(loc))
    assert line is None or line >= 1


@FUZZ
@given(
    st.one_of(nasty_text, mutated_text(['{"schedules": [{"a": 1}, {"b": 2}]}', "[]", "[{}]"])),
    st.sampled_from(["json", "csv", "txt"]),
)
@example(deep(1000), "json")
@example("[]", "json")
def test_split_documents(text: str, fmt: str) -> None:
    docs = bounded(split_documents, text, fmt)
    assert all(isinstance(t, str) and f in ("json", "csv", "txt") for t, f in docs)
    if text.strip(" \t\r\n") == "[]" and fmt == "json":  # JSON whitespace only
        assert docs == []  # the documented "no orders now"


@FUZZ
@given(st.one_of(st.none(), nasty_text), nasty_text)
def test_content_type_and_charset(ctype: str | None, url: str) -> None:
    assert bounded(fmt_from_content_type, ctype, url) in ("csv", "json", None)
    assert isinstance(bounded(_charset, ctype), str)


@FUZZ
@given(
    st.one_of(
        nasty_text,
        st.builds(
            "{}://{}:{}@{}:{}/{}".format,
            st.sampled_from(["http", "https", "ftp", ""]),
            nasty_text,
            nasty_text,
            nasty_text,
            st.integers(-5, 70000).map(str) | nasty_text,
            nasty_text,
        ),
    )
)
def test_url_redaction_never_raises(url: str) -> None:
    shown = bounded(redact_url, url)
    assert isinstance(shown, str)
    with contextlib.suppress(ValueError):  # urllib refuses it: no config passes it either
        assert isinstance(bounded(redact_userinfo, url), str)


@FUZZ
@given(
    st.text("abcXYZ019-._~%!$&'()*+,;=", min_size=1, max_size=12),
    st.text("abcXYZ019-._~%!$&'()*+,;=:", min_size=8, max_size=24),
)
def test_userinfo_is_always_removed(user: str, password: str) -> None:
    shown = redact_userinfo(f"http://{user}:{password}@127.0.0.1:8428/api/v2/write")
    assert shown == "http://127.0.0.1:8428/api/v2/write"
