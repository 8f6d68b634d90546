"""Technician commands beyond the core five, one module each.

Every module here defines ``register(subparsers)`` adding its sub-command(s) to the
``edge-agent`` parser; :func:`register_all` finds them, so a new command is a new file.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil


def register_all(sub: argparse._SubParsersAction) -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(sub)
