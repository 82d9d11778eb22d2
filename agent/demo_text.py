"""What ``kuat demo`` says to the person watching it, in Kazakh, Russian and English.

The texts are ``demo.<key>`` in the project's one gettext catalog (``kuat.agent.i18n``, the
``.po`` files under ``agent/locale``), with named ``{placeholders}`` filled by :func:`say`. The
status rows themselves are the agent's labels and quota reasons, shared with ``kuat run``.
"""

from __future__ import annotations

from kuat.agent.i18n import Lang, message, number


def num(value: float, lang: Lang) -> str:
    """A figure as a reader of ``lang`` writes it, to 0.1: "1,234.5" in English, "1 234,5" in
    Kazakh and Russian (a comma there is the decimal sign: "2,072" would read as 2.072)."""
    return number(value, lang, 1)


def say(key: str, lang: Lang, **params: object) -> str:
    """The demo's text ``key`` in ``lang`` with ``params`` filled in (floats by :func:`num`)."""
    shown = {k: num(v, lang) if isinstance(v, float) else v for k, v in params.items()}
    return message(f"demo.{key}", lang, **shown)
