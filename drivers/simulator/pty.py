"""A virtual RS-485 line: two linked pseudo-terminals made by socat."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path


class PtyPair:
    """``socat -d -d pty,raw,echo=0 pty,raw,echo=0``: bytes written to one end come out of the other.

    ``device_end`` is for the simulated slaves, ``agent_end`` for the agent (a stable
    symlink under ``link_dir`` when given, so configs can name it).
    """

    def __init__(self, link_dir: str | Path | None = None, name: str = "rs485") -> None:
        socat = shutil.which("socat")
        if socat is None:
            raise RuntimeError("socat is needed for a virtual serial line (apt-get install socat)")
        self.link_dir = Path(link_dir or tempfile.mkdtemp(prefix="edge-pty-"))
        self.link_dir.mkdir(parents=True, exist_ok=True)
        self.device_end = str(self.link_dir / f"{name}-device")
        self.agent_end = str(self.link_dir / f"{name}-agent")
        for p in (self.device_end, self.agent_end):
            if os.path.lexists(p):
                os.unlink(p)
        self.proc = subprocess.Popen(
            [socat, "-d", "-d", f"pty,raw,echo=0,link={self.device_end}",
             f"pty,raw,echo=0,link={self.agent_end}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        deadline = time.monotonic() + 5
        while not (os.path.exists(self.device_end) and os.path.exists(self.agent_end)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read() if self.proc.stderr else ""
                self.close()
                raise RuntimeError(f"socat did not make the pty pair: {err.strip()}")
            time.sleep(0.02)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.proc.stderr:
            self.proc.stderr.close()

    def __enter__(self) -> PtyPair:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


