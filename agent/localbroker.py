"""A private mosquitto on a free loopback port, for the demo, the tests and the benchmarks."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def find_mosquitto() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return next((p for p in MOSQUITTO_PATHS if Path(p).exists()), None)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class LocalBroker:
    """``mosquitto -c <generated config>`` listening on 127.0.0.1:<port>.

    ``extra`` lines go into the config (listeners, TLS, ACLs for tests). The broker can be
    stopped and started again on the same port, which outage tests need.
    """

    def __init__(self, port: int | None = None, extra: str = "", workdir: Path | None = None,
                 anonymous: bool = True, default_listener: bool = True, persistent: bool = False) -> None:
        exe = find_mosquitto()
        if exe is None:
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        self.exe = exe
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.dir = workdir or Path(tempfile.mkdtemp(prefix="edge-mosquitto-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "mosquitto.conf"
        self.log = self.dir / "mosquitto.log"
        # persistent: sessions and queued QoS 1 messages survive a restart (saved on SIGTERM)
        lines = [f"persistence {'true' if persistent else 'false'}", f"persistence_location {self.dir}/",
                 f"log_dest file {self.log}", "log_type error", "log_type warning", "log_type notice"]
        if os.geteuid() == 0:
            # run as root, mosquitto drops to the 'mosquitto' user and then cannot write its
            # persistence file or log in our private directory: stay who we are
            lines.append("user root")
        if default_listener:
            lines += [f"listener {self.port} {self.host}", f"allow_anonymous {'true' if anonymous else 'false'}"]
        self.conf.write_text("\n".join(lines) + "\n" + extra + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait_port: int | None = None) -> LocalBroker:
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        port = wait_port or self.port
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                log = self.log.read_text() if self.log.exists() else ""
                raise RuntimeError(f"mosquitto exited: {err.strip()} {log.strip()}")
            try:
                with socket.create_connection((self.host, port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.host}:{port}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stderr:
            self.proc.stderr.close()

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
