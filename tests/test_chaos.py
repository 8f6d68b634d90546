"""Chaos: a fast site under every fault at once, at random (seeded) moments, several times.

    simulated devices ──► agent ──► fault proxy ──► mosquitto ──► platform (persistent session)

The fault proxy cuts connections, holds them (partition) and black-holes bytes on live
connections; mosquitto is stopped and started again; the agent is killed with SIGKILL and
started again. At the end the path is healed and drained. Pass: every committed seq
arrived, except ranges that were evicted *and* announced; duplicates are counted.

The seed is printed; ``CHAOS_SEED=<n>`` replays a run's fault schedule.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from agent.harness.collector import Collector
from agent.localbroker import LocalBroker
from tests.buffer_helpers import (
    BROKER_EXTRA,
    announced,
    buffer_site,
    committed_high_water,
    count_upto,
    expand,
    redelivered,
    stored_seqs,
    tcp_site,
)
from tests.faultproxy import FaultProxy
from tests.helpers import AgentProcess, SimulatorThread, wait_for

pytestmark = pytest.mark.slow  # real processes, brokers or lines: `pytest -m "not slow"` skips them

CHAOS_SECONDS = 75.0
DEVICES, INTERVAL = 10, "150ms"
FAULTS = ["cut"] * 3 + ["partition"] * 2 + ["blackhole"] * 2 + ["drop"] + ["broker"] * 2 + ["kill"] * 3


# -- the fault proxy itself ----------------------------------------------------------------

def _echo_server() -> tuple[socket.socket, int]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return

            def echo(c: socket.socket = conn) -> None:
                with c:
                    while data := c.recv(4096):
                        c.sendall(data)
            threading.Thread(target=echo, daemon=True).start()
    threading.Thread(target=serve, daemon=True).start()
    return srv, srv.getsockname()[1]


def _answer(c: socket.socket, timeout: float) -> bytes | None:
    c.settimeout(timeout)
    try:
        return c.recv(4096)
    except TimeoutError:
        return None


def test_the_fault_proxy_cuts_holds_and_black_holes() -> None:
    srv, port = _echo_server()
    proxy = FaultProxy(seed=1).start(0, port)
    try:
        c = socket.create_connection(("127.0.0.1", proxy.port))
        c.sendall(b"a")
        assert _answer(c, 2) == b"a"
        proxy.partition(True)  # held, not lost
        c.sendall(b"b")
        assert _answer(c, 0.3) is None
        proxy.partition(False)
        assert _answer(c, 2) == b"b"
        proxy.drop_bytes(True)  # lost, and the connection looks alive
        c.sendall(b"c")
        assert _answer(c, 0.3) is None
        proxy.drop_bytes(False)
        c.sendall(b"d")
        assert _answer(c, 0.3) is None, "a black-holed connection must stay black-holed"
        c2 = socket.create_connection(("127.0.0.1", proxy.port))
        c2.sendall(b"e")
        assert _answer(c2, 2) == b"e"
        assert proxy.cut() == 2
        assert _answer(c2, 2) == b""  # the client sees the connection closed
        assert proxy.stats.bytes_dropped >= 2
    finally:
        proxy.stop()
        srv.close()


# -- the chaos run ---------------------------------------------------------------------------

class Chaos:
    def __init__(self, tmp_path: Path, seed: int) -> None:
        self.rng = random.Random(seed)
        self.tmp = tmp_path
        self.db = tmp_path / "data" / "outbox.db"
        self.broker = LocalBroker(workdir=tmp_path / "broker", persistent=True, extra=BROKER_EXTRA).start()
        self.collector = Collector(self.broker.port, host=self.broker.host).start()
        self.proxy = FaultProxy(seed=seed).start(0, self.broker.port)
        self.sim = SimulatorThread(tcp=tcp_site(DEVICES)).start()
        self.config = buffer_site(tmp_path / "config.yaml", data_dir=tmp_path / "data", sim_port=self.sim.tcp_port,
                                  broker_port=self.proxy.port, devices=DEVICES, interval=INTERVAL,
                                  ack_timeout="2s", keepalive="5s")
        self.agent = AgentProcess(self.config, tmp_path / "agent.log").start()
        self.done: Counter[str] = Counter()
        self.log: list[str] = []
        self.t0 = time.monotonic()

    def note(self, what: str) -> None:
        self.log.append(f"{time.monotonic() - self.t0:6.1f}s {what}")

    def hold(self, lo: float, hi: float) -> float:
        d = self.rng.uniform(lo, hi)
        time.sleep(d)
        return d

    def fault(self, kind: str) -> None:
        if kind == "cut":
            self.note(f"cut {self.proxy.cut()} connections")
        elif kind == "partition":
            self.proxy.partition(True)
            d = self.hold(1, 4)
            self.proxy.partition(False)
            self.note(f"partition for {d:.1f}s")
        elif kind == "blackhole":
            self.proxy.drop_bytes(True)
            d = self.hold(1, 4)
            self.proxy.drop_bytes(False)
            self.note(f"black hole for {d:.1f}s")
        elif kind == "drop":
            self.proxy.drop_bytes(0.02)
            d = self.hold(3, 6)
            self.proxy.drop_bytes(False)
            self.note(f"2 % chunk loss for {d:.1f}s")
        elif kind == "broker":
            self.broker.stop()
            d = self.hold(1, 4)
            self.broker.start()
            self.note(f"broker down for {d:.1f}s")
        elif kind == "kill":
            self.agent.stop(signal.SIGKILL)
            d = self.hold(0.2, 2)
            self.agent = AgentProcess(self.config, self.tmp / "agent.log").start()
            self.note(f"agent SIGKILLed, restarted after {d:.1f}s")
        self.done[kind] += 1

    def run(self) -> None:
        faults = list(FAULTS)
        self.rng.shuffle(faults)
        gap = CHAOS_SECONDS / (len(faults) + 1)
        for kind in faults:
            time.sleep(self.rng.uniform(0.3 * gap, 1.2 * gap))
            self.fault(kind)

    def drained(self) -> bool:
        """Nothing left in the buffer but the last moments' live readings, all of them arrived."""
        high = committed_high_water(self.db)
        left = stored_seqs(self.db)
        return len(left) < 50 and count_upto(self.collector, high) >= high - len(left) - 50

    def stop(self) -> int:
        rc = self.agent.stop()
        self.proxy.stop()
        self.collector.stop()
        self.broker.stop()
        self.sim.stop()
        return rc


def test_chaos_loses_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed = int(os.environ.get("CHAOS_SEED", str(random.SystemRandom().randrange(1_000_000))))
    print(f"\nchaos seed = {seed}  (replay: CHAOS_SEED={seed})")
    chaos = Chaos(tmp_path, seed)
    try:
        wait_for(lambda: count_upto(chaos.collector, 10**9) > 20, 30, "the first readings")
        chaos.run()
        chaos.note("healed; draining")
        deadline = time.monotonic() + 60
        while not chaos.drained() and time.monotonic() < deadline:
            time.sleep(0.5)
        chaos.note("drained" if chaos.drained() else "NOT drained after 60s")
        time.sleep(1)
    finally:
        rc = chaos.stop()
        print("\n".join(chaos.log))
    assert rc == 0, chaos.agent.log()[-3000:]
    committed = committed_high_water(chaos.db)
    buffered = stored_seqs(chaos.db)
    received_all = chaos.collector.seqs()
    received = set(received_all)
    told = expand(announced(chaos.collector.status()))
    missing = set(range(1, committed + 1)) - received - buffered - told
    duplicates = len(received_all) - len(received)
    log = chaos.agent.log()
    with capsys.disabled():  # the verdict belongs in CI's output, not only in a failure report
        print(f"\nchaos (seed {seed}): committed = {committed}, received = {len(received)}, "
              f"still buffered = {len(buffered)}, evicted and announced = {len(told)}")
        print(f"chaos faults: {dict(chaos.done)}; proxy: {chaos.proxy.stats}; uplink stalls detected:"
              f" {log.count('no PUBACK')}")
        # the broker itself resends (DUP flag) what the platform's own lost PUBACKs left unconfirmed
        first_delivery = Counter(received_all) - Counter(redelivered(chaos.collector))
        sent_twice = sum(first_delivery.values()) - len(first_delivery)  # the agent published these again
        ratio = sent_twice / max(1, len(received))
        print(f"chaos: lost = {len(missing)}, duplicates = {duplicates} ({duplicates / max(1, len(received)):.2%}"
              f" of {len(received)} readings): {sent_twice} published twice by the agent ({ratio:.2%}),"
              f" {len(redelivered(chaos.collector))} redelivered by the broker to the platform")
    assert not missing, f"lost seqs: {sorted(missing)[:50]}"
    # The aim is under 1 %: seen here 0.5-1.8 % on a quiet machine (1.1-2.0 % before acknowledgements
    # were committed sooner and sessions started slow), up to 4 % with other test suites running.
    # What is left is QoS 1's own: PUBACKs lost with the link, publishes a partition delivered late.
    # The bound catches a gross regression without failing at random on a loaded machine.
    assert ratio < 0.05, f"{sent_twice} readings published twice: {ratio:.2%} of those delivered (bound 5 %)"
    assert chaos.done == Counter(FAULTS)
    assert not received - set(range(1, committed + 1)), "a seq arrived that was never committed"
    assert len(buffered) < 50, "the buffer did not drain"
