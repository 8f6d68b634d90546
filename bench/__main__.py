"""``python -m bench`` (``make bench``): every scenario, a table, and bench/results.json.

    python -m bench                 # the full run (aim: under 10 minutes on 2 cores)
    python -m bench --quick         # short runs of everything
    python -m bench --long          # the poll path for 10 minutes (RSS growth is judged)
    python -m bench --only poll_path,startup
    python -m bench --report bench/results.json --markdown   # re-render a saved run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from . import backlog_drain, buffer_ingest, bus_efficiency, idle, poll_path, startup, uplink_cpu
from .common import BENCH_DIR, ScenarioResult, Sizes, machine_info
from .report import markdown_profiles, markdown_table, text_table

# each module has TITLE and run(sizes, profile, workdir) -> ScenarioResult
SCENARIOS: dict[str, ModuleType] = {m.__name__.rsplit(".", 1)[1]: m for m in (
    poll_path, idle, buffer_ingest, backlog_drain, bus_efficiency, startup, uplink_cpu)}


def filesystem_of(path: Path) -> str:
    """The filesystem type holding ``path`` (tmpfs would make synchronous=FULL free)."""
    best, fs = "", "?"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) > 2 and str(path).startswith(parts[1]) and len(parts[1]) > len(best):
                best, fs = parts[1], parts[2]
    except OSError:
        pass
    return fs


def run_all(names: list[str], sizes: Sizes, profile: bool, workdir: Path,
            progress: Callable[[str], None] = print) -> dict[str, Any]:
    started = time.monotonic()
    results: dict[str, Any] = {
        "schema": 1, "mode": sizes.mode, "profiled": profile,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(), "workdir": str(workdir), "workdir_fs": filesystem_of(workdir),
        "sizes": sizes.__dict__, "scenarios": {}}
    for name in names:
        mod = SCENARIOS[name]
        title: str = mod.TITLE
        progress(f"== {name}: {title}")
        t = time.monotonic()
        try:
            res: ScenarioResult = mod.run(sizes, profile, workdir / name)
        except Exception:
            res = ScenarioResult(name, title, error=traceback.format_exc())
            progress(res.error)
        res.seconds = round(time.monotonic() - t, 1)
        results["scenarios"][name] = res.to_json()
        for f in res.figures:
            progress(f"   {f.label}: {f.value if f.value is None else round(f.value, 3)} {f.unit}"
                     f"{'' if f.limit is None else f'  (limit {f.limit:.4g})'}  {f.margin}")
    met = missed = not_judged = 0
    for sc in results["scenarios"].values():
        for f in sc["figures"]:
            if f["target"]:
                if f["met"] is True:
                    met += 1
                elif f["met"] is False:
                    missed += 1
                else:
                    not_judged += 1
    results["summary"] = {"met": met, "missed": missed, "not_judged": not_judged,
                          "errors": [n for n, sc in results["scenarios"].items() if sc["error"]]}
    results["duration_s"] = round(time.monotonic() - started, 1)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description="edge-agent benchmarks against their limits")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="short runs of every scenario (a minute or two)")
    size.add_argument("--long", action="store_true", help="the poll path for 10 minutes; RSS growth is judged")
    size.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # the test suite's size
    p.add_argument("--only", metavar="NAMES", help=f"comma-separated: {', '.join(SCENARIOS)}")
    p.add_argument("--no-profile", action="store_true", help="skip the py-spy / importtime profiles")
    p.add_argument("--out", default=str(BENCH_DIR / "results.json"), help="where the JSON goes")
    p.add_argument("--workdir", help="scratch directory (default: a new one under /var/tmp, removed after)")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory (logs, configs, profiles)")
    p.add_argument("--report", metavar="JSON", help="only render a saved results file")
    p.add_argument("--markdown", action="store_true", help="render as Markdown (table and profiles)")
    args = p.parse_args(argv)

    if args.report:
        results = json.loads(Path(args.report).read_text())
        print(markdown_table(results) + "\n\n" + markdown_profiles(results) if args.markdown
              else text_table(results))
        return 0

    names = list(SCENARIOS)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in SCENARIOS]
        if unknown:
            p.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    mode = "quick" if args.quick else "long" if args.long else "smoke" if args.smoke else "full"
    sizes = Sizes.of(mode)
    base = "/var/tmp" if os.path.isdir("/var/tmp") else None
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="edge-bench-", dir=base))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        results = run_all(names, sizes, not args.no_profile, workdir)
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print()
    print(text_table(results))
    print(f"\nwritten to {out}")
    if results["workdir_fs"] in ("tmpfs", "ramfs"):
        print("warning: the scratch directory is on tmpfs: fsync costs nothing there; use --workdir on a disk",
              file=sys.stderr)
    return 1 if results["summary"]["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
