"""The HJ 212 uplink in-process on real parts: a real SQLite outbox, the uplink's own
SQLite store and a real TCP platform (agent.uplinks.hj212.platform) on loopback."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agent.health.days import LocalDays
from agent.uplinks.hj212.config import Hj212Uplink
from agent.uplinks.hj212.frame import encode
from agent.uplinks.hj212.platform import Hj212Platform
from agent.uplinks.hj212.store import Hj212Store
from agent.uplinks.hj212.worker import Hj212UplinkWorker
from buffer.completeness import read_day
from buffer.database import connect_readonly
from buffer.outbox import ALARM_STATUS, Outbox
from drivers.reading import Reading
from tests.helpers import edge_agent, wait_for

TZ = ZoneInfo("Asia/Shanghai")
MN = "010000A8900016F000169DC0"
POINTS = {"dust-1": ["pm10", "pm2_5", "temperature", "lamp_on"], "meter-1": ["voltage_l1"]}


def uplink_cfg(port: int, **extra: object) -> Hj212Uplink:
    return Hj212Uplink.model_validate({"type": "hj212", "host": "127.0.0.1", "port": port, "mn": MN,
                                       "rtd_interval": 0.5, "min_interval": 10, "hourly": False, "daily": False,
                                       "overtime": 1, "recount": 1, "reconnect_min": 0.1, "reconnect_max": 0.5,
                                       "backlog_rate": 100, **extra})


class Rig:
    def __init__(self, tmp_path: Path, platform: Hj212Platform, **extra: object) -> None:
        self.tmp_path = tmp_path
        self.outbox = Outbox(tmp_path / "outbox.db", ["env", "other"], commit_interval=0.01)
        self.outbox.start()
        self.cfg = uplink_cfg(platform.port, **extra)
        self.worker = self.new_worker()

    def new_worker(self) -> Hj212UplinkWorker:
        return Hj212UplinkWorker("env", self.cfg, self.outbox, self.tmp_path, POINTS, {"dust-1": 1.0}, TZ)

    def close(self) -> None:
        self.worker.stop()
        self.outbox.close()


@pytest.fixture
def platform() -> Iterator[Hj212Platform]:
    p = Hj212Platform().start()
    yield p
    p.stop()


def period_start(now: float) -> int:
    return int(now // 10 * 10) - 60  # a minute ago, on a 10 s boundary (Shanghai is a whole-hour offset)


def test_minute_packets_carry_min_avg_max_and_flags_from_the_readings(tmp_path: Path,
                                                                      platform: Hj212Platform) -> None:
    rig = Rig(tmp_path, platform)
    t0 = period_start(time.time())
    # period 1: ten good polls, one pm10 over range → T for pm10, N for the rest
    for i in range(10):
        flags = {"pm10": "over_range"} if i == 3 else {}
        rig.outbox.submit(Reading("dust-1", (t0 + i) * 1000, {"pm10": 100 + i, "pm2_5": 40 + i, "temperature": 20.5,
                                                                "lamp_on": True}, flags=flags))
    # period 2: six good polls of ten (D by the 75 % rule), four failed polls; temperature always failed (B)
    for i in range(10):
        ok = i < 6
        rig.outbox.submit(Reading("dust-1", (t0 + 10 + i) * 1000, {"pm10": 50.0, "pm2_5": 10 + i} if ok else {},
                                  status="partial" if ok else "timeout",
                                  errors={"temperature": "exception_02"} if ok else {}))
    rig.outbox.submit(Reading("meter-1", (t0 + 1) * 1000, {"voltage_l1": 230.0}))  # not carried
    # an alarm event in the buffer is no poll: no third period, no B from it
    event = {"rule": "dust-high", "state": "active"}
    rig.outbox.submit(Reading("dust-1", (t0 + 25) * 1000, event, status=ALARM_STATUS))
    rig.worker.start()
    try:
        wait_for(lambda: len(platform.packets("2051")) >= 2, 10, "two minute packets")
        wait_for(lambda: rig.worker.stats.waiting == 0, 5, "both answered")
        # the readings left the outbox for this uplink only: the other uplink still has every one
        rig.outbox.sync()
        reader = rig.outbox.reader()
        assert reader.fetch(rig.outbox.uplink_bits["env"], 0, None, 100) == []
        assert len(reader.fetch(rig.outbox.uplink_bits["other"], 0, None, 100)) == 22
        reader.close()
    finally:
        rig.close()
    assert len(platform.packets("2051")) == 2
    first, second = platform.packets("2051")
    assert first.fields()["DataTime"] == time.strftime("%Y%m%d%H%M%S", time.gmtime(t0 + 8 * 3600))
    f1 = first.fields()
    assert (f1["a34002-Min"], f1["a34002-Avg"], f1["a34002-Max"], f1["a34002-Flag"]) == ("100", "104.5", "109", "T")
    assert (f1["a34004-Min"], f1["a34004-Avg"], f1["a34004-Max"], f1["a34004-Flag"]) == ("40", "44.5", "49", "N")
    assert (f1["a01001-Avg"], f1["a01001-Flag"]) == ("20.5", "N")
    f2 = second.fields()
    assert (f2["a34002-Avg"], f2["a34002-Flag"]) == ("50", "D")
    assert (f2["a34004-Min"], f2["a34004-Max"]) == ("10", "15")
    assert f2["a01001-Flag"] == "B" and "a01001-Avg" not in f2
    assert not any(k.startswith("w") for k in f1)  # the meter's voltage is no dust factor
    assert first.flag == 5 and first.st == "39" and first.mn == MN


def test_garbage_bad_crc_and_truncated_frames_never_stop_the_uplink(tmp_path: Path,
                                                                  platform: Hj212Platform) -> None:
    rig = Rig(tmp_path, platform)
    rig.outbox.submit(Reading("dust-1", int(time.time() * 1000), {"pm10": 80, "pm2_5": 30}))
    rig.worker.start()
    try:
        wait_for(lambda: platform.packets("2011"), 5, "real-time data")
        good = encode("QN=1;ST=32;CN=1061;PW=123456;MN=" + MN + ";Flag=5;CP=&&&&")
        bad_crc = good[:-6] + b"0000\r\n"
        platform.send_raw(b"\x00\xffgarbage")
        platform.send_raw(bad_crc)
        platform.send_raw(b"##0100QN=123;ST=32")  # truncated: cut short by the next frame
        platform.send_raw(b"##zzzz\r\n")
        wait_for(lambda: any(p.fields() == {"QnRtn": "9"} for p in platform.packets("9011")), 5,
                 "the bad-CRC request answered QnRtn 9")
        answers = platform.request("1061")
        assert [p.cn for p in answers] == ["9011", "1061", "9012"]
        assert answers[1].fields()["RtdInterval"] == "0.5"
        before = len(platform.packets("2011"))
        wait_for(lambda: len(platform.packets("2011")) >= before + 3, 5, "real-time data goes on")
    finally:
        rig.close()
    assert rig.worker.stats.connects == 1  # the link was never closed
    assert rig.worker.stats.bad_frames >= 3
    rtd = platform.packets("2011")[0].fields()
    assert (rtd["a34002-Rtd"], rtd["a34002-Flag"], rtd["a34004-Rtd"]) == ("80", "N", "30")


def test_platform_commands_answered_and_intervals_persisted(tmp_path: Path, platform: Hj212Platform) -> None:
    rig = Rig(tmp_path, platform)
    rig.worker.start()
    try:
        wait_for(lambda: platform.connected, 5, "the uplink to connect")
        time.sleep(0.2)
        platform.mn = MN
        assert [p.cn for p in platform.request("1062", RtdInterval="30")] == ["9011", "9012"]
        assert platform.request("1063")[1].fields()["MinInterval"] == "0.166667"
        assert platform.request("1064", MinInterval="5")[-1].fields()["ExeRtn"] == "1"
        assert platform.request("1000", OverTime="5", ReCount="2")[-1].fields()["ExeRtn"] == "1"
        got = platform.request("1011")
        assert len(got[1].fields()["SystemTime"]) == 14
        assert platform.request("1012", SystemTime="20200101000000")[-1].fields()["ExeRtn"] == "3"  # not allowed
        assert platform.request("2051", BeginTime="20000101000000", EndTime="20000102000000")[-1].fields() == {
            "ExeRtn": "100"}
        assert [p.cn for p in platform.request("2012")] == ["9013"]
        platform.pw = "wrong!"
        assert [(p.cn, p.fields()) for p in platform.request("1061")] == [("9011", {"QnRtn": "3"})]
    finally:
        rig.close()
    rig.worker = rig.new_worker()
    s = rig.worker.settings
    assert (s.rtd_interval, s.min_interval, s.overtime, s.recount) == (30.0, 300.0, 5.0, 2)
    rig.worker.store.close()


def test_unanswered_packets_are_resent_then_the_link_reconnects(tmp_path: Path) -> None:
    silent = Hj212Platform(answer=False).start()
    rig = Rig(tmp_path, silent, overtime=0.3, recount=1, realtime=False)
    t0 = period_start(time.time())
    for i in range(3):
        rig.outbox.submit(Reading("dust-1", (t0 + i) * 1000, {"pm10": 70}))
    rig.worker.start()
    try:
        wait_for(lambda: rig.worker.stats.connects >= 2, 10, "a reconnect after no answers")
        sent = silent.packets("2051")
        assert len(sent) >= 2 and sent[0].qn == sent[1].qn  # the same packet sent again, same QN
        assert rig.worker.stats.waiting == 1
        silent.answer = True
        wait_for(lambda: rig.worker.stats.waiting == 0, 10, "the stored packet answered")
    finally:
        rig.close()
        silent.stop()
    qns = {p.qn for p in silent.packets("2051")}
    assert len(qns) >= 2  # each new link sends it with a fresh QN
    assert {p.fields()["DataTime"] for p in silent.packets("2051")} == {
        time.strftime("%Y%m%d%H%M%S", time.gmtime(t0 + 8 * 3600))}


class CrashBeforeAck(Outbox):
    """An outbox whose acknowledgements never reach the disk: the process died after the
    uplink committed its aggregates and before the buffer committed the acknowledgement."""

    def ack(self, uplink: str, seqs: list[int], counted: bool = True) -> None:
        pass


@pytest.mark.slow
def test_a_restart_loses_no_reading_and_counts_none_twice(tmp_path: Path) -> None:
    platform = Hj212Platform(answer=True).start()
    cfg = uplink_cfg(platform.port, realtime=False, min_interval=2)
    start = int(time.time() // 2 * 2) + 2  # the next period: still open while the first process runs
    box = CrashBeforeAck(tmp_path / "outbox.db", ["env"], commit_interval=0.01)
    box.start()
    for i in range(5):  # half the period's polls (0.2 s apart): D by the 75 % rule if none is counted twice
        box.submit(Reading("dust-1", start * 1000 + i * 200, {"pm10": 60 + i}))
    box.sync()
    polls = {"dust-1": 0.2}
    first = Hj212UplinkWorker("env", cfg, box, tmp_path, POINTS, polls, TZ)
    first.start()
    try:
        wait_for(lambda: first.store.folded_seq == 5, 5, "the readings folded")
    finally:
        first.stop()
        box.close()
    assert platform.packets("2051") == []  # the period had not ended
    box = Outbox(tmp_path / "outbox.db", ["env"], commit_interval=0.01)  # the restarted process
    box.start()
    second = Hj212UplinkWorker("env", cfg, box, tmp_path, POINTS, polls, TZ)
    second.start()
    try:
        wait_for(lambda: platform.packets("2051"), start + 5 - time.time(), "the period's packet")
        box.sync()
        reader = box.reader()
        wait_for(lambda: reader.fetch(box.uplink_bits["env"], 0, None, 10) == [], 5, "the readings acknowledged")
        reader.close()
    finally:
        second.stop()
        box.close()
        platform.stop()
    fields = platform.packets("2051")[0].fields()
    assert (fields["a34002-Min"], fields["a34002-Avg"], fields["a34002-Max"]) == ("60", "62", "64")
    assert fields["a34002-Flag"] == "D"  # five readings of ten, not ten


def test_hour_and_day_packets_start_at_local_hour_and_midnight(tmp_path: Path, platform: Hj212Platform) -> None:
    rig = Rig(tmp_path, platform, hourly=True, daily=True, realtime=False)
    yesterday = datetime.now(TZ).replace(hour=10, minute=0, second=0, microsecond=0) - timedelta(days=1)
    t0 = int(yesterday.timestamp())
    for i in range(10):
        rig.outbox.submit(Reading("dust-1", (t0 + 3 * i) * 1000, {"pm10": 50 + i}))
    rig.worker.start()
    try:
        wait_for(lambda: platform.packets("2061") and platform.packets("2031"), 10, "hour and day packets")
    finally:
        rig.close()
    hour, day = platform.packets("2061")[0].fields(), platform.packets("2031")[0].fields()
    assert hour["DataTime"] == yesterday.strftime("%Y%m%d100000")
    assert day["DataTime"] == yesterday.strftime("%Y%m%d000000")
    for fields in (hour, day):  # ten readings of the 3600 (86400) an hour (a day) of 1 s polls should hold
        assert (fields["a34002-Min"], fields["a34002-Avg"], fields["a34002-Max"]) == ("50", "54.5", "59")
        assert fields["a34002-Flag"] == "D"
    assert [p.fields()["DataTime"] for p in platform.packets("2051")] == [
        yesterday.strftime("%Y%m%d100000"), yesterday.strftime("%Y%m%d100010"), yesterday.strftime("%Y%m%d100020")]


def test_without_ack_packets_count_as_delivered_once_sent(tmp_path: Path) -> None:
    silent = Hj212Platform(answer=False).start()
    rig = Rig(tmp_path, silent, ack=False, overtime=0.3)
    t0 = period_start(time.time())
    for i in range(3):
        rig.outbox.submit(Reading("dust-1", (t0 + i) * 1000, {"pm10": 70}))
    rig.outbox.submit(Reading("dust-1", int(time.time() * 1000), {"pm10": 71}))
    rig.worker.start()
    try:
        wait_for(lambda: silent.packets("2051") and len(silent.packets("2011")) >= 3, 10,
                 "minute and real-time packets")
        time.sleep(0.5)  # longer than overtime: nothing is sent again, the link stays
    finally:
        rig.close()
        silent.stop()
    times = [p.fields()["DataTime"] for p in silent.packets("2051")]
    assert len(times) == len(set(times)) and rig.worker.stats.waiting == 0  # each sent once
    assert {p.flag for p in silent.packets()} == {4}  # no Flag A
    assert rig.worker.stats.connects == 1 and rig.worker.stats.resent == 0


def test_rename_uplink_takes_the_hj212_packets_along(tmp_path: Path) -> None:
    silent = Hj212Platform(answer=False).start()
    rig = Rig(tmp_path, silent, realtime=False, recount=0, overtime=5)
    t0 = period_start(time.time())
    rig.outbox.submit(Reading("dust-1", t0 * 1000, {"pm10": 70}))
    rig.worker.start()
    try:
        wait_for(lambda: silent.packets("2051"), 5, "the minute packet sent (never answered)")
    finally:
        rig.close()
        silent.stop()
    cfg = tmp_path / "site.yaml"
    cfg.write_text(f"gateway: {{id: gw, data_dir: {tmp_path}}}\n"
                   "buses: {lan: {type: tcp, host: 127.0.0.1, port: 5020}}\n"
                   "devices: {dust-1: {bus: lan, unit: 1, profile: renke-dust-all-in-one}}\n"
                   f"uplinks:\n  other: {{type: mqtt, host: 127.0.0.1, port: 1883}}\n"
                   f"  bureau: {{type: hj212, host: 127.0.0.1, port: 9000, mn: {MN}}}\n")
    r = edge_agent("buffer", "rename-uplink", "-c", str(cfg), "env", "bureau")
    assert r.returncode == 0, r.stderr
    assert "its HJ 212 store moved to hj212-bureau.db (1 packets wait for the platform's answer)" in r.stdout
    platform = Hj212Platform().start()
    box = Outbox(tmp_path / "outbox.db", ["bureau", "other"], commit_interval=0.01)
    box.start()
    worker = Hj212UplinkWorker("bureau", uplink_cfg(platform.port, realtime=False), box, tmp_path, POINTS,
                               {"dust-1": 1.0}, TZ)
    worker.start()
    try:
        wait_for(lambda: platform.packets("2051") and worker.stats.waiting == 0, 5, "the packet under the new name")
    finally:
        worker.stop()
        box.close()
        platform.stop()
    assert platform.packets("2051")[0].fields()["a34002-Avg"] == "70"


def test_an_over_long_segment_is_warned_once_and_still_sent(tmp_path: Path, platform: Hj212Platform,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    """Twenty factors make a minute packet longer than the 1024 characters some platforms take:
    the technician is told once, and the packets still go out whole."""
    names = [f"p{i}" for i in range(20)]
    outbox = Outbox(tmp_path / "outbox.db", ["env"], commit_interval=0.01)
    outbox.start()
    cfg = uplink_cfg(platform.port, factors={n: f"x{i:05d}" for i, n in enumerate(names)})
    worker = Hj212UplinkWorker("env", cfg, outbox, tmp_path, {"dust-1": names}, {"dust-1": 1.0}, TZ)
    t0 = period_start(time.time())
    for i in range(20):  # two periods of ten polls
        outbox.submit(Reading("dust-1", (t0 + i) * 1000, {n: 1000.5 + i for n in names}))
    worker.start()
    try:
        wait_for(lambda: len(platform.packets("2051")) >= 2, 10, "two minute packets")
    finally:
        worker.stop()
        outbox.close()
    first, second = platform.packets("2051")
    assert first.fields()["x00019-Avg"] == "1005" and second.fields()["x00019-Avg"] == "1015"
    long = [r for r in caplog.records if "data segment of" in r.getMessage() and r.levelname == "WARNING"]
    assert len(long) == 1, [r.getMessage() for r in caplog.records]
    assert "some platforms take at most 1024 (the agent does not split packets)" in long[0].getMessage()


def test_readings_count_as_delivered_when_the_platform_answers_their_packet(tmp_path: Path) -> None:
    """The HJ 212 uplink's transmission rate is what the bureau got: a reading folded into a
    packet the platform has not answered is not delivered yet, and a device the uplink does
    not report (the meter) is never counted for it."""
    days = LocalDays("Asia/Shanghai")
    silent = Hj212Platform(answer=False).start()
    outbox = Outbox(tmp_path / "outbox.db", ["env"], commit_interval=0.01, day_of=days.day_of)
    outbox.start()
    worker = Hj212UplinkWorker("env", uplink_cfg(silent.port, realtime=False, overtime=0.3), outbox, tmp_path,
                               POINTS, {"dust-1": 1.0}, TZ)
    t0 = period_start(time.time())
    for i in range(10):  # one minute period of ten polls, two of them partial
        status = "partial" if i in (2, 5) else "ok"
        outbox.submit(Reading("dust-1", (t0 + i) * 1000, {"pm10": 70 + i}, status=status))
    outbox.submit(Reading("meter-1", t0 * 1000, {"voltage_l1": 230.0}))
    day = days.day_of(t0 * 1000)

    def env_counts() -> dict[str, tuple[int, int]]:
        outbox.sync()
        conn = connect_readonly(tmp_path / "outbox.db")
        try:
            counts = read_day(conn, day)
        finally:
            conn.close()
        return {dev: (c["env"].readings, c["env"].valid) for dev, c in counts.items() if "env" in c}

    worker.start()
    try:
        wait_for(lambda: len(silent.packets("2051")) >= 1, 10, "the minute packet")
        wait_for(lambda: outbox.reader().fetch(outbox.uplink_bits["env"], 0, None, 10) == [], 5, "readings taken")
        assert env_counts() == {}  # in the uplink's store, sent, not answered: not delivered
        silent.answer = True
        wait_for(lambda: worker.stats.waiting == 0, 10, "the packet answered")
        wait_for(lambda: env_counts() != {}, 5, "the delivery counted")
        assert env_counts() == {"dust-1": (10, 8)}
    finally:
        worker.stop()
        outbox.close()
        silent.stop()


def test_a_store_from_the_previous_release_is_upgraded_in_place(tmp_path: Path) -> None:
    """Its packets still go out; those made before the upgrade carry no counts (nothing is
    counted for them), and new periods fold and count as usual."""
    path = tmp_path / "hj212-env.db"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE polls(cn TEXT, start INTEGER, span REAL, device TEXT, readings INTEGER,
            PRIMARY KEY(cn, start, device));
        CREATE TABLE packets(id INTEGER PRIMARY KEY AUTOINCREMENT, cn TEXT NOT NULL,
            start INTEGER NOT NULL, vals TEXT NOT NULL, answered INTEGER NOT NULL DEFAULT 0, UNIQUE(cn, start));
        INSERT INTO polls VALUES ('2051', 1795000600, 600, 'dust-1', 3);
        INSERT INTO packets(cn, start, vals) VALUES ('2051', 1795000000, '{}');
    """)
    old.close()
    store = Hj212Store(path)
    try:
        assert store.unanswered(10)[0].start == 1795000000
        assert store.answered([1]) == []  # made before counts were kept
        made = store.close_due(1795000000 + 1300, 3, {"dust-1": 60.0})
        assert [p.start for p in made] == [1795000600]
        assert store.answered([made[0].id]) == [("dust-1", 1795000600 * 1000, 3, 0)]
        assert store.answered([made[0].id]) == []  # answered twice: counted once
    finally:
        store.close()
