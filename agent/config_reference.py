"""The configuration reference, generated from the config models (``kuat.agent.config``).

The models are the one place where a key, its type, its default and its meaning live: the
meaning is the comment written above the field (or beside it, or its ``Field(description=...)``),
so the reference cannot drift from the code. ``config/REFERENCE.md`` is this module's output; a
test regenerates it and compares, and checks that the example config shows every key.

    python -m kuat.agent.config_reference > config/REFERENCE.md
"""

from __future__ import annotations

import enum
import inspect
import re
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from kuat.agent.config import KuatConfig, SecretRef


@dataclass(frozen=True, slots=True)
class Key:
    table: str  # "asic", "asic.groups" (an array of tables), "" for the top level
    array: bool  # the table is written [[table]]
    name: str
    type: str
    default: str
    meaning: str


# --- the meaning of a field: the comment its model's source writes for it ----------------------

_FIELD = re.compile(r"^    (\w+)\s*:\s*[^=]")
_TRAILING = re.compile(r"#\s*(.+)$")


def _field_comments(model: type[BaseModel]) -> dict[str, str]:
    """Comment lines directly above a field (and a comment at the end of its line), per field."""
    out: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or cls is BaseModel:
            continue
        try:
            source = inspect.getsource(cls)
        except (OSError, TypeError):
            continue
        above: list[str] = []
        for line in source.splitlines()[1:]:
            stripped = line.strip()
            if stripped.startswith("#") and line.startswith("    #"):
                above.append(stripped.lstrip("#").strip())
                continue
            m = _FIELD.match(line)
            if m and not line.startswith("     "):
                parts = list(above)
                _, _, tail = line.partition("  #")
                if tail:
                    parts.append(tail.strip().lstrip("#").strip())
                if parts:
                    out[m.group(1)] = " ".join(parts)
            above = []
    return out


def _doc_first_line(model: type[BaseModel]) -> str:
    doc = inspect.getdoc(model) or ""
    if model.__doc__ is None or doc == inspect.getdoc(BaseModel):
        return ""
    return " ".join(doc.split("\n\n", 1)[0].split())


# --- types and defaults, as TOML shows them -----------------------------------------------------


def _bounds(info: FieldInfo | list[Any]) -> str:
    meta = info.metadata if isinstance(info, FieldInfo) else info
    parts = []
    for m in meta:
        for attr, sym in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            v = getattr(m, attr, None)
            if v is not None and isinstance(m, annotated_types.BaseMetadata):
                shown = f"{v:_}" if isinstance(v, int) and not isinstance(v, bool) else str(v)
                parts.append(f"{sym} {shown}")
        if getattr(m, "min_length", None):
            parts.append(f"at least {m.min_length}")
    return f" ({', '.join(parts)})" if parts else ""


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    args = get_args(tp)
    if origin is Literal:
        return " \\| ".join(f'"{a}"' if isinstance(a, str) else str(a) for a in args)
    if origin in (Union, types.UnionType):
        names = [_type_name(a) for a in args if a is not type(None)]
        return " \\| ".join(names)
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return f"table of {_type_name(args[0])} → {_type_name(args[1])}"
    if hasattr(tp, "__metadata__"):  # Annotated[...]
        return _type_name(args[0]) + _bounds(list(tp.__metadata__))
    if tp is SecretRef:
        return "secret"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return " \\| ".join(f'"{m.value}"' for m in tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "table"
    return {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    value = info.get_default(call_default_factory=True)
    if value is None or value is PydanticUndefined:
        return "—"
    if isinstance(value, SecretRef):
        if value.value is not None:
            shown = value.value.get_secret_value()
            return f'`"{shown}"` (factory default)' if shown else '`""`'
        return "—"
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, BaseModel):
        return "—"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str | Path):
        return f'`"{value}"`'
    if isinstance(value, list | dict) and not value:
        return "`[]`" if isinstance(value, list) else "`{}`"
    return f"`{value}`"


def _model_of(tp: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model a field holds (and whether as a list): a table or an array of tables."""
    origin = get_origin(tp)
    args = [a for a in get_args(tp) if a is not type(None)]
    if origin in (Union, types.UnionType) and len(args) == 1:
        return _model_of(args[0])
    if origin is list and args:
        inner, _ = _model_of(args[0])
        return inner, True
    if isinstance(tp, type) and issubclass(tp, BaseModel) and tp is not SecretRef:
        return tp, False
    return None, False


def keys(
    model: type[BaseModel] = KuatConfig, table: str = "", array: bool = False
) -> Iterator[Key]:
    comments = _field_comments(model)
    nested: list[tuple[str, type[BaseModel], bool]] = []
    for name, info in model.model_fields.items():
        sub, is_list = _model_of(info.annotation)
        if sub is not None:
            nested.append((name, sub, is_list))
            continue
        meaning = info.description or comments.get(name, "")
        yield Key(table, array, name, _type_name(info.annotation) + _bounds(info), _default(info),
                  meaning)  # fmt: skip
    for name, sub, is_list in nested:
        path = f"{table}.{name}" if table else name
        yield from keys(sub, path, is_list)


def tables(model: type[BaseModel] = KuatConfig, table: str = "") -> Iterator[tuple[str, bool, str]]:
    """Every table: its path, whether it is an array of tables, and its model's docstring."""
    for name, info in model.model_fields.items():
        sub, is_list = _model_of(info.annotation)
        if sub is None:
            continue
        path = f"{table}.{name}" if table else name
        yield path, is_list, _doc_first_line(sub) or _field_comments(model).get(name, "")
        yield from tables(sub, path)


def render() -> str:
    by_table: dict[str, list[Key]] = {}
    for key in keys():
        by_table.setdefault(key.table, []).append(key)
    out = [
        "# Configuration reference",
        "",
        "Generated from the config models (`agent/config.py`) by",
        "`python -m kuat.agent.config_reference > config/REFERENCE.md`; a test fails when the two",
        "differ, and when `config/kuat.example.toml` leaves a key out. A *secret* is a string (an",
        'inline value, for a lab), `{ file = "PATH" }` or `{ credential = "NAME" }` (systemd',
        "`LoadCredential=`). Unknown keys are refused.",
        "",
    ]
    for path, is_list, doc in tables():
        rows = by_table.get(path, [])
        out.append(f"## `[[{path}]]`" if is_list else f"## `[{path}]`")
        out.append("")
        if doc:
            out += [doc, ""]
        if not rows:
            continue
        out += ["| key | type | default | meaning |", "|---|---|---|---|"]
        for k in rows:
            meaning = k.meaning.replace("|", "\\|")
            out.append(f"| `{k.name}` | {k.type} | {k.default} | {meaning} |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    print(render(), end="")


if __name__ == "__main__":
    main()
