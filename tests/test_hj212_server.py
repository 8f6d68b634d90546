"""`edge-agent hj212-server` as a technician runs it: a real process on a real port."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

from agent.localbroker import free_port
from agent.uplinks.hj212.frame import FrameReader, encode
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
