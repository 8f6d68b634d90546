"""A gateway without a real-time clock: readings taken before the clock is known good are
held in the buffer, get corrected timestamps when it is, and only then reach the platform.
The agent runs in-process with a fake clock source; the broker, the slave and the buffer
are real."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path

import pytest

from agent.clock import ClockGuard
from agent.config import load_config
from agent.harness.collector import Collector
from agent.harness.site import device, mqtt_uplink, tcp_bus, write_site
from agent.ipc import ask
from agent.localbroker import LocalBroker
from agent.runtime import Agent
from buffer.clockfix import ClockFix
from buffer.inspection import read_stats
from buffer.outbox import Outbox
from drivers.reading import Reading
from tests.helpers import SimulatorThread, wait_for

DAY_MS = 86_400_000


class FakeClock:
    """A boot that began when this object was made; the wall clock off by ``wall_offset_ms``."""

    def __init__(self, boot: str, wall_offset_ms: int = 0, synced: bool | None = True) -> None:
        self.boot = boot
        self.wall_offset_ms = wall_offset_ms
        self.synced = synced
        self.boot_base = time.monotonic_ns() // 1_000_000 - 1000  # this "boot" began a second ago

    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self.wall_offset_ms

    def boot_ms(self) -> int:
        return time.monotonic_ns() // 1_000_000 - self.boot_base

    def boot_id(self) -> str:
        return self.boot

    def ntp_synced(self) -> bool | None:
        return self.synced


class InProcessAgent:
    """The real Agent in its own event loop thread, stopped as SIGTERM would."""

    def __init__(self, config: Path, clock: FakeClock) -> None:
        self.loaded = load_config(config)
        self.clock = clock
        self.stop_event: asyncio.Event | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stop_event = asyncio.Event()
        await Agent(self.loaded, clock_source=self.clock).run(self.stop_event)

    def start(self) -> InProcessAgent:
        self.thread.start()
        wait_for(lambda: self.stop_event is not None, 10, "the agent to start")
        return self

    def stop(self) -> None:
        assert self.loop is not None and self.stop_event is not None
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(20)
        assert not self.thread.is_alive()


@pytest.mark.slow
def test_readings_taken_while_unsynced_arrive_with_corrected_times(tmp_path: Path, broker: LocalBroker) -> None:
    sim = SimulatorThread(tcp={1: "eastron-sdm630"}).start()
    cfg = write_site(tmp_path / "config.yaml", data_dir=tmp_path / "data", buses={"lan": tcp_bus(sim.tcp_port)},
                     devices={"meter-1": device("lan", "eastron-sdm630", 1, interval="200ms")},
                     uplinks={"central": mqtt_uplink(broker.port, reconnect_max="1s")})
    collector = Collector(broker.port, host=broker.host).start()
    try:
        # before the "reboot": a good clock
        agent = InProcessAgent(cfg, FakeClock("boot-1")).start()
        wait_for(lambda: len(collector.readings()) >= 5, 20, "readings before the reboot")
        agent.stop()
        wait_for(lambda: len(collector.readings()) == len(set(collector.seqs())) and
                 max(collector.seqs()) >= len(collector.readings()), 5, "the last readings before the reboot")
        last_before = max(r.ts for r in collector.readings())
        before = len(collector.readings())
        # after it: the Pi guessed a time three days back, and NTP has not synced yet
        clock = FakeClock("boot-2", wall_offset_ms=-3 * DAY_MS, synced=False)
        unsynced_from = time.time_ns() // 1_000_000
        agent = InProcessAgent(cfg, clock).start()
        time.sleep(2.0)
        assert len(collector.readings()) == before  # held back: nothing published with a wrong time
        state = ask(tmp_path / "data", "clock")  # what `status` shows, from the running daemon
        assert state["good"] is False and "before the last time seen" in str(state["reason"])
        unsynced_until = time.time_ns() // 1_000_000
        clock.wall_offset_ms, clock.synced = 0, True  # NTP steps the clock
        wait_for(lambda: len(collector.readings()) >= before + 15, 20, "the held readings")
        agent.stop()
    finally:
        collector.stop()
        sim.stop()
    now = time.time_ns() // 1_000_000
    after = collector.readings()[before:]
    assert all(last_before < r.ts <= now for r in after), [r.ts - last_before for r in after]
    held = [r for r in after if r.ts <= unsynced_until]
    assert len(held) >= 7  # about 2 s at 200 ms
    # each one stamped with the time it was really taken, from the boot clock
    assert all(unsynced_from - 50 <= r.ts for r in held), [r.ts - unsynced_from for r in held]
    seqs = collector.seqs()
    assert sorted(set(seqs)) == list(range(min(seqs), max(seqs) + 1))


@pytest.mark.slow
def test_held_readings_of_a_boot_that_never_synced_go_out_before_the_next_boot(
        tmp_path: Path, broker: LocalBroker) -> None:
    sim = SimulatorThread(tcp={1: "eastron-sdm630"}).start()
    cfg = write_site(tmp_path / "config.yaml", data_dir=tmp_path / "data", buses={"lan": tcp_bus(sim.tcp_port)},
                     devices={"meter-1": device("lan", "eastron-sdm630", 1, interval="200ms")},
                     uplinks={"central": mqtt_uplink(broker.port)})
    collector = Collector(broker.port, host=broker.host).start()
    try:
        agent = InProcessAgent(cfg, FakeClock("boot-1")).start()
        wait_for(lambda: len(collector.readings()) >= 3, 20, "readings before the reboot")
        agent.stop()
        time.sleep(0.3)
        last_before = max(r.ts for r in collector.readings())
        before = len(collector.readings())
        agent = InProcessAgent(cfg, FakeClock("boot-2", wall_offset_ms=-DAY_MS, synced=False)).start()
        time.sleep(1.0)
        agent.stop()  # power cut before NTP ever answered
        assert len(collector.readings()) == before
        boot3 = FakeClock("boot-3")
        agent = InProcessAgent(cfg, boot3).start()
        wait_for(lambda: len(collector.readings()) >= before + 8, 20, "the earlier boot's readings")
        agent.stop()
    finally:
        collector.stop()
        sim.stop()
    now = time.time_ns() // 1_000_000
    assert all(last_before <= r.ts <= now for r in collector.readings()[before:])


def test_a_clock_jump_is_logged_once_and_readings_are_held_until_the_clock_is_good(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock("b", synced=None)  # no NTP state: only the last time seen vouches for the clock
    events: list[str] = []
    guard = ClockGuard(tmp_path, 10.0, clock, on_good=lambda fix: events.append(f"good {fix.boot_id}"),
                       on_bad=lambda: events.append("bad"))
    ts, tag = guard.stamp()
    assert tag is None and abs(ts - time.time() * 1000) < 1000
    caplog.set_level(logging.INFO, "agent.clock")
    clock.wall_offset_ms = -60_000  # set back a minute
    for _ in range(5):
        ts, tag = guard.stamp()
        assert tag == "b" and ts == pytest.approx(clock.boot_ms(), abs=50)
    assert sum("jumped by -60s" in r.message for r in caplog.records) == 1
    assert sum("not known good" in r.message for r in caplog.records) == 1
    clock.wall_offset_ms = 0
    clock.wall_offset_ms = 1000  # past the last time seen: good again
    assert guard.stamp()[1] is None
    assert events == ["good b", "bad", "good b"]
    guard.persist(force=True)
    assert ClockGuard(tmp_path, 10.0, FakeClock("c", -5000, synced=False)).good is False  # before the last seen


def test_the_buffer_holds_back_and_then_corrects_readings_of_an_unknown_clock(tmp_path: Path) -> None:
    """What `buffer stats` and an uplink see of held readings, before and after the fix."""
    ob = Outbox(tmp_path / "outbox.db", ["central"])
    ob.start()
    try:
        ob.submit(Reading("m", 5_000, {"v": 1}, clock="boot-a"))  # 5 s after boot, clock unknown
        ob.submit(Reading("m", 6_000, {"v": 2}, clock="boot-a"))
        assert ob.sync()
        reader = ob.reader()
        assert reader.fetch(ob.uplink_bits["central"], 0, None, 10) == []  # no uplink gets them
        stats = read_stats(tmp_path / "outbox.db")
        assert stats.held == 2 and stats.as_dict()["held_for_clock"] == 2
        boot_start = 1_795_000_000_000
        ob.release_held(ClockFix("boot-a", boot_start, boot_start, floor_ms=0))
        ob.submit(Reading("m", 7_000, {"v": 3}, clock="boot-a"))  # a straggler of the same boot
        assert ob.sync()
        wait_for(lambda: ob.counters.clock_releases == 1, 5, "the release")
        rows = reader.fetch(ob.uplink_bits["central"], 0, None, 10)
        assert [r.ts - boot_start for r in rows] == [5_000, 6_000, 7_000]
        assert read_stats(tmp_path / "outbox.db").held == 0
        reader.close()
    finally:
        ob.close()
