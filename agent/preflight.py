"""What ``run`` (and ``check``) verify about the gateway itself before starting: the data
directory is a writable directory, no other agent holds it, and no uplink that the config
no longer names still has readings waiting in the buffer."""

from __future__ import annotations

import contextlib
import sqlite3
import tempfile
from pathlib import Path

from buffer.database import connect_readonly
from buffer.uplinkbits import stranded
from drivers.yamlsource import Problem, parse_source

from .config import LoadedConfig


def _line(loaded: LoadedConfig, *path: str) -> int:
    return parse_source(loaded.text, str(loaded.file)).line_of(path)


def data_dir_problem(loaded: LoadedConfig, create: bool) -> Problem | None:
    """None when ``gateway.data_dir`` is (or, without ``create``, can become) a writable
    directory; otherwise what is wrong with it."""
    data_dir = loaded.data_dir
    message = _data_dir_message(data_dir, create)
    if message is None:
        return None
    return Problem(str(loaded.file), _line(loaded, "gateway", "data_dir"), "gateway.data_dir",
                   f"{data_dir}: {message}")


def _data_dir_message(data_dir: Path, create: bool) -> str | None:
    if not data_dir.exists():
        created = [p for p in (data_dir, *data_dir.parents) if not p.exists()]
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return f"cannot be created: {exc.strerror or exc}"
        finally:
            if not create:  # `check` only tries: it leaves the file system as it found it
                for p in created:
                    with contextlib.suppress(OSError):
                        p.rmdir()
        if not create:
            return None
    if not data_dir.is_dir():
        return "is not a directory"
    try:
        with tempfile.TemporaryFile(dir=data_dir, prefix=".write-test-"):
            pass
    except OSError as exc:
        return f"is not writable: {exc.strerror or exc}"
    return None


def stranded_problems(loaded: LoadedConfig) -> list[Problem]:
    """Uplinks removed from the config that still have undelivered readings in the buffer."""
    db = loaded.data_dir / "outbox.db"
    if not db.exists():
        return []
    try:
        conn = connect_readonly(db)
        try:
            waiting = stranded(conn, list(loaded.config.uplinks))
        finally:
            conn.close()
    except sqlite3.Error:
        return []  # a damaged or older file: the outbox deals with it when it opens it
    return stranded_from_counts(loaded, waiting)


def stranded_from_counts(loaded: LoadedConfig, waiting: dict[str, int], running: bool = False) -> list[Problem]:
    """One problem per uplink the config dropped with ``waiting[name]`` readings undelivered."""
    cfg = str(loaded.file)
    line = _line(loaded, "uplinks")
    stop = "stop the agent and " if running else ""
    return [Problem(cfg, line, "uplinks",
                    f"uplink '{name}' is no longer in the config, but {n} readings in the buffer have not been"
                    f" delivered to it; {stop}keep them for the uplink's new name with 'edge-agent buffer"
                    f" rename-uplink -c {cfg} {name} NEW', or give them up (recorded as an eviction) with"
                    f" 'edge-agent buffer drop-uplink -c {cfg} {name}'")
            for name, n in sorted(waiting.items())]
