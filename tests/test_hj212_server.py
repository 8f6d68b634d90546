"""`edge-agent hj212-server` as a technician runs it: a real process on a real port."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

from agent.localbroker import free_port
from agent.uplinks.hj212.config import Hj212Uplink
from agent.uplinks.hj212.frame import FrameReader, encode
from agent.uplinks.hj212.worker import Hj212UplinkWorker
from buffer.outbox import Outbox
from drivers.reading import Reading
from tests.helpers import ROOT, edge_agent

RTD = ("QN=20261128083000000;ST=39;CN=2011;PW=123456;MN=010000A8900016F000169DC0;Flag=5;"
       "CP=&&DataTime=20261128083000;a34004-Rtd=35,a34004-Flag=N&&")


def test_server_checks_frames_answers_9014_and_prints_packets() -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "hj212-server", "--port", str(port),
                             "--host", "127.0.0.1", "--duration", "2"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not listen"
                time.sleep(0.1)
        with sock:
            bad = encode(RTD)[:-6] + b"0000\r\n"
            sock.sendall(bad + encode(RTD))
            reader, got = FrameReader(), []
            while not got:
                got = [s for s in reader.feed(sock.recv(4096)) if isinstance(s, str)]
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert got == ["QN=20261128083000000;ST=91;CN=9014;PW=123456;MN=010000A8900016F000169DC0;Flag=4;CP=&&&&"]
    assert proc.returncode == 0, err
    assert RTD in out.splitlines()
    assert "! bad frame (bad_crc): CRC 0000 where the data segment gives" in out


def test_help_names_the_pull() -> None:
    r = edge_agent("hj212-server", "--help")
    assert r.returncode == 0 and "--pull CN BEGIN END" in r.stdout


def test_server_pulls_history_from_a_logger() -> None:
    """`--pull` against a real HJ 212 uplink holding a period the platform never received."""
    tz = ZoneInfo("Asia/Shanghai")
    port = free_port()
    start = int(time.time() // 10 * 10) - 60
    begin = time.strftime("%Y%m%d%H%M%S", time.gmtime(start + 8 * 3600))
    end = time.strftime("%Y%m%d%H%M%S", time.gmtime(start + 8 * 3600 + 10))
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "hj212-server", "--port", str(port), "--host",
                             "127.0.0.1", "--pull", "2051", begin, end, "--duration", "20"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with tempfile.TemporaryDirectory() as tmp:
        box = Outbox(Path(tmp) / "outbox.db", ["env"], commit_interval=0.01)
        box.start()
        for i in range(10):
            box.submit(Reading("dust-1", (start + i) * 1000, {"pm10": 70 + i}))
        box.sync()
        cfg = Hj212Uplink.model_validate({"type": "hj212", "host": "127.0.0.1", "port": port, "mn": "MN1",
                                          "min_interval": 10, "realtime": False, "reconnect_min": 0.1,
                                          "reconnect_max": 0.2})
        worker = Hj212UplinkWorker("env", cfg, box, Path(tmp), {"dust-1": ["pm10"]}, {"dust-1": 1.0}, tz)
        worker.start()
        try:
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
            worker.stop()
            box.close()
    assert proc.returncode == 0, err
    records = [line for line in out.splitlines() if ";CN=2051;" in line and "a34002-Avg=74.5" in line]
    assert len(records) >= 2, out  # the stored packet as sent, and the pulled record (the request's QN)
    assert f"DataTime={begin}" in records[-1]
    assert "# pulled 1 records" in out
    assert "ExeRtn=1" in out
