"""py-spy profiles of the benchmarked processes, summarised to top frames and components.

Profiles are taken in a pass of their own, never while a figure is measured.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .common import ROOT


def py_spy_path() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


class Profiler:
    """``py-spy record`` on a pid, raw collapsed stacks, stopped with SIGINT and summarised.

    Profiles are taken in a pass of their own, never while a figure is measured, because
    sampling costs the target a little CPU.
    """

    def __init__(self, pid: int, out: Path, rate: int = 500) -> None:
        self.pid = pid
        self.out = out
        self.rate = rate
        self.proc: subprocess.Popen[bytes] | None = None
        self.error = ""

    def start(self) -> Profiler:
        exe = py_spy_path()
        if exe is None:
            self.error = "py-spy is not installed (pip install py-spy; make bench installs it where a wheel exists)"
            return self
        self._err = open(self.out.with_suffix(".log"), "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [exe, "record", "--pid", str(self.pid), "--format", "raw", "--rate", str(self.rate),
             "--threads", "--nonblocking", "-o", str(self.out)],
            stdout=self._err, stderr=subprocess.STDOUT)
        time.sleep(0.3)
        if self.proc.poll() is not None:
            self._err.close()
            self.error = "py-spy failed: " + self.out.with_suffix(".log").read_text(errors="replace")[-500:]
            self.proc = None
        return self

    def stop(self) -> dict[str, Any]:
        if self.proc is None:
            return {"error": self.error} if self.error else {}
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._err.close()
        if not self.out.exists():
            return {"error": "py-spy wrote no profile: "
                    + self.out.with_suffix(".log").read_text(errors="replace")[-500:]}
        return summarise_collapsed(self.out.read_text(errors="replace"))


@contextlib.contextmanager
def profiled(pid: int, out: Path, into: dict[str, Any], enabled: bool = True, rate: int = 500) -> Iterator[None]:
    """Profile ``pid`` for the duration of the block, summary into ``into``."""
    if not enabled:
        yield
        return
    prof = Profiler(pid, out, rate).start()
    try:
        yield
    finally:
        into.update(prof.stop())


SITE_MARKERS = ("site-packages/", "dist-packages/")


def short_frame(frame: str) -> tuple[str, str, str]:
    """``func (path:line)`` → (func, module path, line) with site-packages and the repo root cut."""
    func, _, where = frame.rpartition(" (")
    if not func:
        return frame, "", ""
    where = where.rstrip(")")
    path, _, line = where.rpartition(":")
    if not path:
        path, line = where, ""
    for marker in SITE_MARKERS:
        if marker in path:
            path = path.split(marker, 1)[1]
    root = str(ROOT) + "/"
    if path.startswith(root):
        path = path[len(root):]
    return func, path, line


COMPONENTS = (
    ("sqlite3", ("sqlite3/",)),
    ("json", ("json/",)),
    ("pymodbus", ("pymodbus/",)),
    ("paho-mqtt", ("paho/",)),
    ("pydantic", ("pydantic/", "pydantic_core/")),
    ("yaml", ("yaml/",)),
    ("asyncio", ("asyncio/", "selectors.py")),
    ("logging", ("logging/",)),
    ("threading/queue", ("threading.py", "queue.py")),
    ("buffer (outbox)", ("buffer/",)),
    ("drivers", ("drivers/",)),
    ("agent", ("agent/",)),
    ("bench harness", ("bench/",)),
)


def component_of(path: str) -> str:
    for name, prefixes in COMPONENTS:
        if any(path.startswith(p) or ("/" + p) in path for p in prefixes):
            return name
    return "other (stdlib, import)" if path else "native"


# leaf frames where a thread waits rather than works (py-spy's idle detection misses some in
# --nonblocking mode): counted apart, so the other shares are shares of work
WAIT_LEAVES = ("EpollSelector.select", "PollSelector.select", "SelectSelector.select", "Condition.wait",
               "Event.wait", "Thread.join", "_wait_for_tstate_lock", "sleep")


def summarise_collapsed(text: str, top: int = 12) -> dict[str, Any]:
    """Top frames from py-spy's raw output: work by component of the leaf frame, self time
    by leaf line, inclusive time by project function (thread roots left out), and by
    thread. Samples whose leaf is a wait (select, Condition.wait...) are reported apart."""
    total = waiting = 0
    by_component: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    by_thread: Counter[str] = Counter()
    thread_inclusive: dict[str, Counter[str]] = {}
    for line in text.splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        n = int(count_s)
        frames = stack.split(";")
        thread = "?"
        if frames[0].startswith("thread ("):
            thread = frames[0].split(": ", 1)[-1].split(" ")[0] if ": " in frames[0] else frames[0]
            frames = frames[1:]
        if not frames:
            continue
        func, path, ln = short_frame(frames[-1])
        if func in WAIT_LEAVES:
            waiting += n
            continue
        total += n
        by_thread[thread] += n
        by_component[component_of(path)] += n
        self_time[f"{func} ({path}:{ln})"] += n
        seen: set[str] = set()
        for fr in frames:
            f, p, _ = short_frame(fr)
            if not p.startswith(("agent/", "drivers/", "buffer/")):
                continue
            key = f"{f} ({p})"
            if key not in seen:
                seen.add(key)
                inclusive[key] += n
                thread_inclusive.setdefault(thread, Counter())[key] += n
    # a function that covers (nearly) all of its thread's work is a root (main, _run...): not news
    roots = {k for t, c in thread_inclusive.items() for k, v in c.items()
             if v >= 0.85 * by_thread[t] or k.startswith("<module>")}
    for k in roots:
        del inclusive[k]

    def share(c: Counter[str], k: int) -> list[list[Any]]:
        return [[name, round(100 * n / total, 1)] for name, n in c.most_common(k)] if total else []

    return {"samples": total, "waiting_samples": waiting, "by_component_pct": share(by_component, top),
            "self_pct": share(self_time, top), "inclusive_project_pct": share(inclusive, top),
            "by_thread_pct": share(by_thread, 8)}
