"""``edge-agent buffer stats|export`` as a technician runs them: a real process, on a buffer
the daemon's Outbox wrote, while that Outbox keeps writing."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import random
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.harness.site import device, mqtt_uplink, tcp_bus, write_site
from buffer.outbox import Outbox
from buffer.schema import LATEST
from drivers.reading import Reading
from tests.buffer_helpers import evicted_ranges
from tests.helpers import edge_agent

pytestmark = pytest.mark.slow  # real processes, brokers or lines: `pytest -m "not slow"` skips them

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_714_550_400_000  # 2024-05-01T08:00:00Z


def config(tmp_path: Path, max_bytes: str = "256MiB") -> Path:
    return write_site(tmp_path / "config.yaml", gateway="site-cmd", data_dir="data", buses={"lan": tcp_bus(1502)},
                      devices={"dust-1": device("lan", "renke-dust-all-in-one", 1, interval="10s"),
                               "meter-1": device("lan", "eastron-sdm630", 2, interval="10s")},
                      uplinks={"central": mqtt_uplink(1883), "city-ops": mqtt_uplink(1884)},
                      extra={"buffer": {"max_bytes": max_bytes}})


def site_reading(i: int) -> Reading:
    """Reading i of a site polled every second: dust-1 on even i, meter-1 on odd i; every 10th fails."""
    if i % 2 == 0:
        device, values = "dust-1", {"pm2_5": i % 300, "pm10": i % 400 + 0.5}
    else:
        device, values = "meter-1", {"voltage_l1": 230.0 + i % 7, "energy_import": 1000.25 + i}
    if i % 10 == 9:
        return Reading(device, T0 + i * 1000, {}, "timeout")
    return Reading(device, T0 + i * 1000, values, "ok")


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Outbox]:
    """A buffer the way the daemon leaves it: central delivered most, city-ops is down."""
    ob = Outbox(tmp_path / "data" / "outbox.db", ["central", "city-ops"])
    ob.start()
    for i in range(3000):
        ob.submit(site_reading(i))
    assert ob.sync()
    ob.ack("central", list(range(1, 2801)))
    assert ob.sync()
    yield ob
    ob.close()


def test_stats_shows_depth_oldest_age_bytes_and_schema(tmp_path: Path, running: Outbox) -> None:
    cfg = config(tmp_path)
    r = edge_agent("buffer", "stats", "-c", str(cfg))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert f"schema version {LATEST}" in out
    assert re.search(r"last committed seq: 3000; readings buffered: 3000 \(seq 1\.\.3000\)", out), out
    central = re.search(r"^\s+central\s+(\d+)\s+seq (\d+) at (\S+) \((.+) ago\)$", out, re.M)
    city = re.search(r"^\s+city-ops\s+(\d+)\s+seq (\d+) at (\S+) \((.+) ago\)$", out, re.M)
    assert central and city, out
    assert central.group(1, 2, 3) == ("200", "2801", "2024-05-01T08:46:40.000Z")  # reading 2800 at T0+2800s
    assert city.group(1, 2, 3) == ("3000", "1", "2024-05-01T08:00:00.000Z")
    assert city.group(4).endswith("h") and "d" in city.group(4)  # days old, e.g. "570d 3h"
    assert re.search(r"size: [\d.]+ (KiB|MiB) used of max_bytes 256\.0 MiB \([\d.]+ %\)", out), out
    assert "evictions: 0 ranges kept; readings evicted 0," in out

    js = json.loads(edge_agent("buffer", "stats", "-c", str(cfg), "--json").stdout)
    assert {u["name"]: u["pending"] for u in js["uplinks"]} == {"central": 200, "city-ops": 3000}
    assert js["schema_version"] == LATEST and js["max_bytes"] == 256 * 1024**2
    assert js["bytes"]["used"] <= js["max_bytes"]


def test_stats_lists_evictions_with_their_ranges(tmp_path: Path) -> None:
    cfg = config(tmp_path, max_bytes="256KiB")
    ob = Outbox(tmp_path / "data" / "outbox.db", ["central", "city-ops"], max_bytes=256 * 1024)
    ob.start()
    for i in range(4000):
        ob.submit(site_reading(i))
    assert ob.sync()
    ob.close()
    ranges = evicted_ranges(ob.path, "central")
    assert ranges
    r = edge_agent("buffer", "stats", "-c", str(cfg))
    assert r.returncode == 0, r.stderr
    for a, b, n in ranges:
        assert re.search(rf"central: seq {a}\.\.{b} \({n} readings\)\s+max_bytes", r.stdout), r.stdout
    evicted = ob.counters.evicted  # distinct readings; each uplink has its own ranges
    assert re.search(rf"evictions: \d+ ranges kept; readings evicted {evicted},", r.stdout), r.stdout
    used = re.search(r"size: ([\d.]+) KiB used of max_bytes 256\.0 KiB", r.stdout)
    assert used and float(used.group(1)) <= 256.0


def test_export_csv_between_two_times_while_the_buffer_is_written(tmp_path: Path, running: Outbox) -> None:
    cfg = config(tmp_path)
    out = tmp_path / "export.csv"
    since = "2024-05-01T08:10:00Z"  # reading 600
    until = str(T0 + 1200 * 1000)  # reading 1200, epoch ms, exclusive
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "buffer", "export", "-c", str(cfg),
                             "--since", since, "--until", until, "-o", str(out)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # the daemon goes on committing while the export runs, and is never held up by it
    i = 3000
    while proc.poll() is None:
        running.submit(site_reading(i))
        i += 1
        t0 = time.monotonic()
        assert running.sync(5)
        assert time.monotonic() - t0 < 1.0
    _, err = proc.communicate()
    assert proc.returncode == 0, err
    assert "exported 600 readings (seq 601..1200)" in err
    assert "\r" not in err  # stderr is not a terminal: no progress bar
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [int(r["seq"]) for r in rows] == list(range(601, 1201))
    assert list(rows[0])[:5] == ["seq", "time", "ts", "device", "status"]
    assert {"pm2_5", "pm10", "voltage_l1", "energy_import"} <= set(rows[0])
    first = rows[0]  # reading 600: dust-1, ok
    assert (first["time"], first["device"], first["status"], first["pm2_5"], first["pm10"]) == \
        ("2024-05-01T08:10:00.000Z", "dust-1", "ok", "0", "200.5")
    assert first["voltage_l1"] == ""
    failed = next(r for r in rows if r["seq"] == "610")  # reading 609 timed out: still a row
    assert failed["status"] == "timeout" and failed["pm2_5"] == failed["voltage_l1"] == ""
    meter = next(r for r in rows if r["seq"] == "602")  # reading 601
    assert float(meter["energy_import"]) == 1000.25 + 601


def test_export_jsonl_for_one_uplink_and_device(tmp_path: Path, running: Outbox) -> None:
    cfg = config(tmp_path)
    r = edge_agent("buffer", "export", "-c", str(cfg), "--format", "jsonl", "--uplink", "central",
                   "--device", "meter-1")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    # central has received up to seq 2800; of the rest, meter-1 has the even seqs (odd readings)
    assert [x["seq"] for x in lines] == list(range(2802, 3001, 2))
    assert all(x["device"] == "meter-1" for x in lines)
    x = lines[0]
    assert x["ts"] == T0 + 2801 * 1000 and x["time"] == "2024-05-01T08:46:41.000Z"
    assert x["values"] == {"voltage_l1": 230.0 + 2801 % 7, "energy_import": 1000.25 + 2801}
    bad = edge_agent("buffer", "export", "-c", str(cfg), "--uplink", "nowhere")
    assert bad.returncode == 1 and "no uplink 'nowhere'" in bad.stderr


def test_export_draws_a_progress_bar_only_on_a_terminal(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "data" / "outbox.db", ["central"])
    ob.start()
    for i in range(100_000):
        ob.submit(site_reading(i))
    assert ob.sync(30)
    ob.close()
    cfg = config(tmp_path)
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "buffer", "export", "-c", str(cfg),
                             "-o", str(tmp_path / "all.csv")], cwd=ROOT, stderr=slave,
                            stdout=subprocess.DEVNULL, env={**os.environ, "COLUMNS": "120"})
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert proc.wait(60) == 0
    text = seen.decode()
    assert re.search(r"\rexport\s+[\d.]+% \[#*\s*\] [\d,]+ readings", text), text
    assert "exported 100000 readings" in text
    assert len((tmp_path / "all.csv").read_text().splitlines()) == 100_001


def test_export_refuses_bad_times_with_a_hint(tmp_path: Path, running: Outbox) -> None:
    cfg = config(tmp_path)
    r = edge_agent("buffer", "export", "-c", str(cfg), "--since", "1714550400")
    assert r.returncode == 2 and "looks like epoch seconds; give epoch milliseconds (1714550400000)" in r.stderr
    r = edge_agent("buffer", "export", "-c", str(cfg), "--since", "yesterday")
    assert r.returncode == 2 and "neither ISO 8601" in r.stderr
    r = edge_agent("buffer", "export", "-c", str(cfg), "--since", "2024-05-02", "--until", "2024-05-01")
    assert r.returncode == 2 and "--until must be after --since" in r.stderr
    # a time without a zone is the gateway's local time (here UTC+1): 09:00:05 local is reading 5
    naive = subprocess.run([sys.executable, "-m", "agent.cli", "buffer", "export", "-c", str(cfg), "--format",
                            "jsonl", "--since", "2024-05-01T09:00:05"], capture_output=True, text=True, cwd=ROOT,
                           env={**os.environ, "TZ": "Etc/GMT-1"}, timeout=60)
    assert naive.returncode == 0, naive.stderr
    assert json.loads(naive.stdout.splitlines()[0])["seq"] == 6


def test_stats_without_a_buffer_says_so(tmp_path: Path) -> None:
    r = edge_agent("buffer", "stats", "-c", str(config(tmp_path)))
    assert r.returncode == 1 and "no buffer at" in r.stderr and "has the daemon run yet?" in r.stderr


def test_export_rescues_what_is_readable_from_a_damaged_file(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db.corrupt-20240501T101500"
    ob = Outbox(db, ["central"])
    ob.start()
    for i in range(20_000):
        ob.submit(site_reading(i))
    assert ob.sync()
    ob.close()
    with open(db, "r+b") as f:  # three pages of the readings table go bad
        f.seek(4096 * 200)
        f.write(random.Random(3).randbytes(3 * 4096))
    out = tmp_path / "rescued.jsonl"
    r = edge_agent("buffer", "export", "--db", str(db), "--format", "jsonl", "-o", str(out))
    assert r.returncode == 1  # incomplete, and it says so
    bad = re.search(r"the file is damaged; could not read seq (\d+)\.\.(\d+)$", r.stderr.strip(), re.M)
    assert bad, r.stderr
    lo, hi = int(bad.group(1)), int(bad.group(2))
    got = [json.loads(x)["seq"] for x in out.read_text().splitlines()]
    assert got == [s for s in range(1, 20_001) if not lo <= s <= hi]
    assert 0 < hi - lo + 1 < 1000
    assert f"exported {len(got)} readings" in r.stderr
