"""Maintain the message catalog: ``python -m kuat.agent.i18n_tool compile|check|import-legacy``.

- ``compile``: every ``locale/<lang>/LC_MESSAGES/kuat.po`` to its ``kuat.mo`` (``make messages``).
  The .mo files are committed: a fresh clone, an editable install and the wheel all read them.
- ``check``: exit 1 when a .mo is missing or older in content than its .po (the tests do the same).
- ``import-legacy``: move texts added the old way (the ``CATALOG``/``LABELS`` dicts that other
  branches may still fill) into the .po files, then compile. The dicts are left for the merger
  to empty; the catalog test fails until they are.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from babel.messages.catalog import Catalog
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po, write_po

from kuat.agent.i18n import DOMAIN, LANGS, Lang

LOCALE = Path(__file__).resolve().parent / "locale"


def po_path(lang: Lang) -> Path:
    return LOCALE / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


def mo_path(lang: Lang) -> Path:
    return LOCALE / lang / "LC_MESSAGES" / f"{DOMAIN}.mo"


def read_catalog(lang: Lang) -> Catalog:
    with po_path(lang).open("rb") as f:
        return read_po(f, locale=lang, domain=DOMAIN)


def compiled(cat: Catalog) -> bytes:
    out = io.BytesIO()
    write_mo(out, cat, use_fuzzy=False)
    return out.getvalue()


def _entries(cat: Catalog) -> dict[Any, Any]:
    # read_mo gives a plural's ids and forms as lists, read_po as tuples
    def plain(x: Any) -> Any:
        return tuple(x) if isinstance(x, list | tuple) else x

    return {plain(m.id): plain(m.string) for m in cat if m.id}


def stale(lang: Lang) -> bool:
    """The .mo is missing or says something other than the .po."""
    path = mo_path(lang)
    if not path.exists():
        return True
    with path.open("rb") as f:
        held = read_mo(f)
    return _entries(held) != _entries(read_catalog(lang))


def compile_all() -> None:
    for lang in LANGS:
        mo_path(lang).write_bytes(compiled(read_catalog(lang)))


def legacy_entries() -> Iterator[tuple[str, Mapping[Any, str]]]:
    """Texts still held in the old dicts, with the catalog id each belongs under."""
    from kuat.agent import i18n, reports
    from kuat.quota import messages

    for key, ui in i18n.CATALOG.items():
        yield f"ui.{key}", ui
    for code, reason in messages.CATALOG.items():
        yield str(code), reason
    for key, text in reports.LABELS.items():
        yield f"report.{key}", text
    for key, name in reports.SOURCE_NAMES.items():
        yield f"source.{key}", name


def import_legacy() -> int:
    moved = 0
    catalogs = {lang: read_catalog(lang) for lang in LANGS}
    for msgid, texts in legacy_entries():
        for lang, cat in catalogs.items():
            cat.add(msgid, texts.get(lang, ""))
        moved += 1
    for lang, cat in catalogs.items():
        with po_path(lang).open("wb") as f:
            write_po(f, cat, width=100, omit_header=False)
    compile_all()
    return moved


def main(argv: list[str]) -> int:
    command = argv[0] if argv else ""
    if command == "compile":
        compile_all()
        return 0
    if command == "check":
        bad = [lang for lang in LANGS if stale(lang)]
        for lang in bad:
            print(f"{mo_path(lang)} is stale: run `make messages`", file=sys.stderr)
        return 1 if bad else 0
    if command == "import-legacy":
        n = import_legacy()
        print(f"{n} messages moved into the catalog; now empty the dicts they came from")
        return 0
    print("usage: python -m kuat.agent.i18n_tool compile|check|import-legacy", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
