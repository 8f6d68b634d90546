"""Simulated dust monitor → agent (a real process) → `edge-agent hj212-server` (a real
process), beside an MQTT broker carrying the same readings: what each platform sees must
agree. The outage test stops and restarts the same platform in-process (and checks every
frame's bytes with the test's own Appendix A CRC)."""

from __future__ import annotations

import itertools
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agent.harness.collector import Collector, Received
from agent.harness.site import device, hj212_uplink, mqtt_uplink, tcp_bus, write_site
from agent.localbroker import LocalBroker, free_port
from agent.uplinks.hj212.factors import FACTORS
from agent.uplinks.hj212.packet import Packet, parse
from agent.uplinks.hj212.platform import Hj212Platform
from tests.helpers import ROOT, AgentProcess, SimulatorThread, wait_for
from tests.test_hj212_frame import appendix_a

pytestmark = pytest.mark.slow  # real processes, a broker, a simulator

TZ = ZoneInfo("Asia/Shanghai")
MN = "010000A8900016F000169DC0"
CODE = {point: f.code for point, f in FACTORS.items()}


@pytest.fixture
def sim() -> Iterator[SimulatorThread]:
    s = SimulatorThread(tcp={1: "renke-dust-all-in-one"}).start()
    yield s
    s.stop()


def site(tmp_path: Path, sim: SimulatorThread, broker: LocalBroker, hj212_port: int, rtd: str, minute: str) -> Path:
    env_bureau = hj212_uplink(hj212_port, MN, ["dust-1"], pw="123456", rtd_interval=rtd, min_interval=minute,
                              hourly=False, daily=False, overtime="1s", recount=1, reconnect_max="1s", backlog_rate=20)
    return write_site(
        tmp_path / "config.yaml", data_dir=tmp_path / "data", buses={"lan": tcp_bus(sim.tcp_port)},
        devices={"dust-1": device("lan", "renke-dust-all-in-one", 1, interval="1s")},
        uplinks={"central": mqtt_uplink(broker.port, reconnect_max="2s"), "env-bureau": env_bureau})


def data_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, TZ).strftime("%Y%m%d%H%M%S")


def epoch_of(text: str) -> int:
    return int(datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=TZ).timestamp())


def unique(readings: list[Received]) -> list[Received]:
    return sorted({r.seq: r for r in readings}.values(), key=lambda r: r.seq)


def expected_minute(readings: list[Received], start: int, span: int) -> dict[str, str]:
    """The minute packet's fields as the test computes them from the MQTT readings."""
    inside = [r for r in readings if start * 1000 <= r.ts < (start + span) * 1000 and r.status == "ok"]
    out = {"DataTime": data_time(start)}
    for point, code in CODE.items():
        values = [float(r.values[point]) for r in inside if point in r.values]
        if not values:
            continue
        out[f"{code}-Min"], out[f"{code}-Max"] = str(min(values)), str(max(values))
        out[f"{code}-Avg"] = str(round(statistics.fmean(values), 3))
        out[f"{code}-Flag"] = "N" if len(values) >= 0.75 * span else "D"
    return out


def assert_minute_matches(pkt: Packet, readings: list[Received], span: int) -> None:
    got = pkt.fields()
    want = expected_minute(readings, epoch_of(got["DataTime"]), span)
    assert set(got) == set(want), (got, want)
    for key, value in want.items():
        if key.endswith(("-Min", "-Max", "-Avg")):
            assert float(got[key]) == pytest.approx(float(value), abs=1e-3), (key, got, want)
        else:
            assert got[key] == value, (key, got, want)


class ServerProcess:
    """``edge-agent hj212-server --port N`` as a technician runs it; its output lines, timed."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "hj212-server", "--port", str(self.port),
                                      "--host", "127.0.0.1"], cwd=ROOT, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        wait_for(lambda: any("listening" in line for _, line in self.lines), 15, "hj212-server to listen")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.time(), line.rstrip("\n")))

    def packets(self, cn: str) -> list[tuple[float, Packet]]:
        return [(at, p) for at, p in ((at, parse(line)) for at, line in list(self.lines) if line.startswith("QN="))
                if p.cn == cn]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self._reader.join(5)


def test_realtime_and_minute_packets_match_the_polled_readings(tmp_path: Path, broker: LocalBroker,
                                                               sim: SimulatorThread) -> None:
    server = ServerProcess()
    collector = Collector(broker.port, host=broker.host).start()
    agent = AgentProcess(site(tmp_path, sim, broker, server.port, "2s", "10s"), tmp_path / "agent.log").start()
    try:
        wait_for(lambda: len(server.packets("2051")) >= 3, 45, "three minute packets at hj212-server")
        time.sleep(1)
    finally:
        rc = agent.stop()
        collector.stop()
        server.stop()
    assert rc == 0, agent.log()
    assert not [line for _, line in server.lines if line.startswith("!")]  # every frame's length and CRC good
    readings = unique(collector.readings("dust-1"))
    by_second = {r.ts // 1000: r for r in readings}
    rtd = server.packets("2011")
    assert len(rtd) >= 8
    arrivals = [at for at, _ in rtd]
    assert statistics.fmean(b - a for a, b in itertools.pairwise(arrivals)) == pytest.approx(2, abs=0.3)
    for _, pkt in rtd:
        fields = pkt.fields()
        reading = by_second[epoch_of(fields["DataTime"])]
        assert len(reading.values) == 9
        for point, code in CODE.items():
            if point not in reading.values:
                assert f"{code}-Rtd" not in fields
                continue
            assert float(fields[f"{code}-Rtd"]) == pytest.approx(float(reading.values[point])), (point, fields)
            assert fields[f"{code}-Flag"] == "N"
        assert pkt.flag == 5 and pkt.st == "39" and pkt.mn == MN and len(pkt.qn or "") == 17
    minutes = [p for _, p in server.packets("2051")]
    for pkt in minutes:
        assert_minute_matches(pkt, readings, 10)
    assert [p.fields()["a34002-Flag"] for p in minutes[1:]] == ["N"] * (len(minutes) - 1)  # full periods
    assert len({p.fields()["DataTime"] for p in minutes}) == len(minutes)


def assert_frames_pass_appendix_a(stream: bytes, count: int) -> None:
    """Every frame the agent sent, checked with the test's own Appendix A CRC and length."""
    frames = stream.split(b"\r\n")
    assert frames[-1] == b"" and len(frames) - 1 == count
    for frame in frames[:-1]:
        data = frame[6:-4]
        assert frame[:2] == b"##" and int(frame[2:6]) == len(data), frame
        assert frame[-4:] == b"%04X" % appendix_a(data), frame


def test_outage_loses_no_minute_packet_and_history_answers_the_same(tmp_path: Path, broker: LocalBroker,
                                                                    sim: SimulatorThread) -> None:
    run, span = 50.0, 5
    platform = Hj212Platform().start()
    port = platform.port
    seen: list[Packet] = []
    collector = Collector(broker.port, host=broker.host).start()
    agent = AgentProcess(site(tmp_path, sim, broker, port, "1s", f"{span}s"), tmp_path / "agent.log").start()
    began = time.time()
    try:
        time.sleep(15)
        seen += platform.packets()
        platform.stop()  # the platform is down for a fifth of the run
        down = time.time()
        time.sleep(run / 5)
        platform = Hj212Platform(port=port).start()
        up = time.time()
        time.sleep(began + run - time.time())
        last = int(time.time() // span * span) - span  # the last period surely closed
        wait_for(lambda: data_time(last) in {p.fields().get("DataTime") for p in platform.packets("2051")},
                 20, "the last period's minute packet")
        outage = platform.pull("2051", data_time(down // span * span), data_time(up))
    finally:
        rc = agent.stop()
        collector.stop()
        seen += platform.packets()
        platform.stop()
    assert rc == 0, agent.log()
    readings = unique(collector.readings("dust-1"))
    seqs = [r.seq for r in readings]  # MQTT carried every reading while the HJ 212 platform was down
    assert seqs == list(range(seqs[0], seqs[-1] + 1))
    assert any(down <= r.ts / 1000 <= up for r in readings)
    minutes = [p for p in seen if p.cn == "2051"]
    by_time: dict[str, Packet] = {}
    for pkt in minutes:
        assert_minute_matches(pkt, readings, span)  # none with a wrong value, duplicates included
        by_time.setdefault(pkt.fields()["DataTime"], pkt)
    first = min(epoch_of(t) for t in by_time)
    wanted = [data_time(t) for t in range(first, last + 1, span)]
    assert [t for t in wanted if t not in by_time] == []  # none missing
    assert len(wanted) >= 8
    assert any(down <= epoch_of(t) + span <= up for t in wanted)  # some closed while the platform was down
    assert outage and [p.fields() for p in outage] == [by_time[p.fields()["DataTime"]].fields() for p in outage]
    assert {p.fields()["DataTime"] for p in outage} >= {t for t in wanted if down <= epoch_of(t) + span <= up}
    assert "Traceback" not in agent.log()
    assert_frames_pass_appendix_a(bytes(platform.stream), len(platform.received))
