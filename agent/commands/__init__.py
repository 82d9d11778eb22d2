"""Subcommands beyond the core ones, one module each.

A module here defines ``register(app: typer.Typer) -> None``; ``kuat.agent.cli`` calls every one at
start, so adding a command never means editing the CLI's core.
"""

from __future__ import annotations

import importlib
import pkgutil

import typer


def register_all(app: typer.Typer) -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if callable(register):
            register(app)
