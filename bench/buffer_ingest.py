"""Buffer ingest: readings per second the Outbox commits with its production settings
(WAL, synchronous=FULL, group commits), when readings arrive faster than it can commit
them: every reading is submitted at once (``submit`` never blocks, as the pollers use
it) and the rate is taken in steady state, between 10 % and 90 % of them committed, so
the group commit's first wait (``commit_interval``) is not counted as throughput.

The limit is bare ``sqlite3.executemany`` of the same rows (JSON encoded before timing)
into the same schema, with the same settings and the same transaction sizes, in the same
run; a second reference adds ``json.dumps`` of each reading's values inside the timing.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import statistics
import time
from pathlib import Path

from buffer.outbox import Outbox
from buffer.schema import migrate
from drivers.reading import Reading, Value

from .common import Figure, ScenarioResult, Sizes, at_least, fresh_db, scratch_dir
from .profiling import profiled

TITLE = "Buffer ingest: readings of 10 values committed by the Outbox (synchronous=FULL, group commits)"
TARGET_RATE = 50_000.0
TARGET_SHARE = 0.5
NAMES = ("pm2_5", "pm10", "tsp", "noise_la", "temperature", "humidity", "pressure", "wind_speed",
         "wind_direction", "rainfall")
DEVICES = 50


def make_readings(n: int, seed: int = 1) -> list[Reading]:
    """``n`` readings of 10 values each (ints and one-decimal floats, as a dust monitor gives),
    50 devices interleaved as a poller would submit them. Value dicts are shared (1000 of them)."""
    rng = random.Random(seed)
    pool: list[dict[str, Value]] = []
    for _ in range(1000):
        vals: dict[str, Value] = {}
        for i, name in enumerate(NAMES):
            vals[name] = rng.randint(0, 999) if i % 3 == 0 else round(rng.uniform(0, 200), 1)
        pool.append(vals)
    ts0 = int(time.time() * 1000)
    return [Reading(f"dev-{i % DEVICES:02d}", ts0 + i, pool[i % len(pool)], "ok") for i in range(n)]


def outbox_ingest(path: Path, readings: list[Reading]) -> tuple[float, float, int]:
    """Steady-state readings/s (10 % → 90 % committed), overall readings/s (first submit → all
    committed), and the number of commits."""
    box = Outbox(path, ["central"])
    box.start()
    n = len(readings)
    marks: list[tuple[float, int]] = []
    try:
        t0 = time.perf_counter()
        for r in readings:
            box.submit(r)
        deadline = t0 + 600
        last = -1
        while last < n:
            committed = box.counters.committed
            if committed != last:
                marks.append((time.perf_counter(), committed))
                last = committed
            if time.perf_counter() > deadline:
                raise RuntimeError(f"the outbox committed {committed} of {n} readings in 600 s")
            time.sleep(0.002)
        overall = n / (marks[-1][0] - t0)
        if not box.sync(timeout=60):
            raise RuntimeError("outbox sync timed out")
        commits = box.counters.commits
    finally:
        box.close()
    a = next(m for m in marks if m[1] >= 0.1 * n)
    b = next(m for m in marks if m[1] >= 0.9 * n)
    steady = (b[1] - a[1]) / (b[0] - a[0]) if b[0] > a[0] and b[1] > a[1] else overall
    return steady, overall, commits


def raw_ingest(path: Path, readings: list[Reading], batch: int, encode_json: bool = False) -> float:
    """Bare executemany of the same rows in transactions of ``batch``; JSON encoded before
    timing, or inside the timed loop when ``encode_json``."""
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    migrate(conn)
    def encode(chunk: list[Reading], first: int) -> list[tuple[int, str, int, str, str, int]]:
        return [(first + i, r.device, r.ts, r.status, json.dumps(r.values, separators=(",", ":"), ensure_ascii=False),
                 1) for i, r in enumerate(chunk)]

    pre = [] if encode_json else [encode(readings[i:i + batch], i + 1) for i in range(0, len(readings), batch)]
    sql = "INSERT INTO readings(seq, device, ts, status, vals, pending) VALUES (?, ?, ?, ?, ?, ?)"
    try:
        t0 = time.perf_counter()
        for k, i in enumerate(range(0, len(readings), batch)):
            rows = encode(readings[i:i + batch], i + 1) if encode_json else pre[k]
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(sql, rows)
            conn.execute("COMMIT")
        return time.perf_counter() - t0
    finally:
        conn.close()


def run(sizes: Sizes, profile: bool = True, workdir: Path | None = None) -> ScenarioResult:
    res = ScenarioResult("buffer_ingest", TITLE)
    work = scratch_dir(workdir, "bench-ingest-")
    n = sizes.ingest_readings
    readings = make_readings(n)
    outbox_rates: list[float] = []
    overall_rates: list[float] = []
    raw_rates: list[float] = []
    json_rates: list[float] = []
    batches: list[float] = []
    for rep in range(sizes.ingest_reps):
        # alternate, so both see the same disk and page-cache weather
        steady, overall, commits = outbox_ingest(fresh_db(work / f"outbox-{rep}.db"), readings)
        outbox_rates.append(steady)
        overall_rates.append(overall)
        batch = max(1, round(n / commits))
        batches.append(n / commits)
        raw_rates.append(n / raw_ingest(fresh_db(work / f"raw-{rep}.db"), readings, batch))
        json_rates.append(n / raw_ingest(fresh_db(work / f"json-{rep}.db"), readings, batch, encode_json=True))
    if profile:
        with profiled(os.getpid(), work / "ingest.pyspy.txt", res.profile):
            outbox_ingest(fresh_db(work / "outbox-profiled.db"), readings)
    for p in work.glob("*.db*"):
        p.unlink()
    rate = statistics.median(outbox_rates)
    limit = statistics.median(raw_rates)
    json_floor = statistics.median(json_rates)
    res.params = {"readings": n, "values_per_reading": len(NAMES), "repetitions": sizes.ingest_reps,
                  "outbox_rates": [round(r) for r in outbox_rates], "raw_rates": [round(r) for r in raw_rates],
                  "raw_with_json_rates": [round(r) for r in json_rates],
                  "overall_rates": [round(r) for r in overall_rates],
                  "mean_readings_per_commit": round(statistics.mean(batches)),
                  "settings": "WAL, synchronous=FULL, commit_interval 250 ms (defaults)",
                  "disk": str(work)}
    at_least(res.add(Figure("readings_per_s", "readings committed per second", rate, "readings/s", limit=limit,
                            limit_label="bare sqlite3.executemany, same rows, settings and transaction sizes",
                            note="steady state, median of the repetitions")), TARGET_SHARE, of_limit=True)
    res.add(at_least(Figure("readings_per_s_abs", "readings committed per second (absolute)", rate,
                            "readings/s"), TARGET_RATE))
    res.add(Figure("readings_per_s_vs_json", "readings committed per second, against executemany + json.dumps",
                   rate, "readings/s", limit=json_floor,
                   limit_label="bare executemany with json.dumps of each reading's values inside the timing"))
    res.add(Figure("values_per_s", "values committed per second", rate * len(NAMES), "values/s",
                   limit=limit * len(NAMES), limit_label="bare executemany"))
    return res
