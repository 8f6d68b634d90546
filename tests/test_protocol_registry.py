"""A third protocol from a test folder, through the registry alone: checked, polled, published.

The toy protocol (tests/toyproto) talks to a real TCP server in this test; the agent
runs in this process (the registration is this process's), with a real mosquitto and a
real SQLite buffer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.cli import main as cli_main
from agent.config import load_config
from agent.harness.collector import Collector
from agent.harness.site import device, mqtt_uplink, serial_bus, tcp_bus, write_site
from agent.localbroker import LocalBroker
from agent.runtime import run_agent
from drivers import protocols
from drivers.catalog import load_profile_file
from drivers.yamlsource import SourceError
from tests.helpers import wait_for
from tests.toyproto.protocol import TOY

TOY_PROFILE = Path(__file__).parent / "toyproto" / "toy-thermo.yaml"
AGENT = Path(__file__).resolve().parents[1] / "agent"


@pytest.fixture
def toy_registered() -> Iterator[None]:
    protocols.register(TOY)
    yield
    protocols._loaded.pop("toy", None)
    protocols.PROTOCOLS.pop("toy", None)


class ToyServer:
    """Toy devices on a TCP port: unit 3 knows t and h, and answers ERR for anything else."""

    def __init__(self) -> None:
        self.values = {"t": "231", "h": "48"}
        self.requests: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port = 0
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            unit, _, key = line.decode().split()
            self.requests.append(line.decode().strip())
            answer = f"{unit} {key} {self.values[key]}" if unit == "3" and key in self.values else f"{unit} ERR"
            writer.write(answer.encode() + b"\n")
        writer.close()

    def start(self) -> ToyServer:
        self.thread.start()
        server = asyncio.run_coroutine_threadsafe(asyncio.start_server(self._handle, "127.0.0.1", 0), self.loop)
        self.server = server.result(5)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close() -> None:
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def test_the_agent_names_no_protocol() -> None:
    """Only registry look-ups, help text and docs: no dispatch on a protocol's name or classes
    (simulate maps its speed options by name)."""
    out = subprocess.run(["grep", "-rn", "dlt645\\|DLT645\\|modbus", str(AGENT)], capture_output=True, text=True).stdout
    code = out.splitlines()
    allowed = ("pymodbus", "EPILOG", "help=", "--dlt645", "dlt645-agent", "\"dlt645\" (",
               "speeds = {\"modbus\"", "drivers/modbus/buslock.py", "edge-agent simulate")
    stray = [line for line in code if not any(a in line for a in allowed)]
    assert stray == []


def test_a_toy_profile_is_validated_by_its_own_model(toy_registered: None, tmp_path: Path) -> None:
    profile = load_profile_file(TOY_PROFILE)
    assert type(profile).__name__ == "ToyProfile" and profile.points["temperature"].key == "t"
    bad = tmp_path / "bad.yaml"
    bad.write_text(TOY_PROFILE.read_text().replace("{key: h}", "{key: h, address: 7}"))
    with pytest.raises(SourceError) as caught:
        load_profile_file(bad)
    assert [str(p) for p in caught.value.problems] == [
        f"{bad}:7: points.humidity.address: 'address' belongs to Modbus points, not to a toy point"]
    typo = tmp_path / "typo.yaml"
    typo.write_text(TOY_PROFILE.read_text().replace("protocol: toy", "protocol: tyo"))
    with pytest.raises(SourceError, match=f"{typo}:4: protocol: unknown protocol 'tyo'; did you mean 'toy'"):
        load_profile_file(typo)


@pytest.mark.slow
def test_a_toy_device_is_polled_and_published_end_to_end(toy_registered: None, tmp_path: Path,
                                                          broker: LocalBroker) -> None:
    toy = ToyServer().start()
    cfg = write_site(
        tmp_path / "c.yaml", data_dir=tmp_path / "data", buses={"lan": tcp_bus(toy.port, timeout="1s")},
        devices={"thermo-1": device("lan", TOY_PROFILE, 3, interval="500ms")},
        uplinks={"central": mqtt_uplink(broker.port)})
    (tmp_path / "data").mkdir()
    loaded = load_config(cfg)
    collector = Collector(broker.port, host=broker.host).start()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    agent = threading.Thread(target=loop.run_until_complete, args=(run_agent(loaded, stop),))
    agent.start()
    try:
        wait_for(lambda: len(collector.readings("thermo-1")) >= 3, 20, "three toy readings at the broker")
    finally:
        loop.call_soon_threadsafe(stop.set)
        agent.join(15)
        collector.stop()
        toy.stop()
    readings = collector.readings("thermo-1")
    assert all(r.status == "partial" for r in readings)
    assert all(r.values == {"temperature": 23.1, "humidity": 48.0} for r in readings)
    assert all(r.errors == {"pressure": "exception_02"} for r in readings)
    assert collector.meta()["thermo-1"]["units"] == {"temperature": "°C", "humidity": "%RH", "pressure": "kPa"}
    assert "3 GET t" in toy.requests and "3 GET p" in toy.requests


def test_check_applies_the_protocols_address_rule_and_bus_types(toy_registered: None, tmp_path: Path) -> None:
    cfg = write_site(
        tmp_path / "c.yaml", data_dir=tmp_path / "data", buses={"rs485": serial_bus("/dev/null")},
        devices={"thermo-1": device("rs485", TOY_PROFILE, 120)})
    with pytest.raises(SourceError) as caught:
        load_config(cfg)
    messages = [str(p) for p in caught.value.problems]
    assert f"{cfg}:7: devices.thermo-1.unit: toy units are 1 to 99" in messages
    assert (f"{cfg}:7: devices.thermo-1.bus: Toy line protocol devices need a bus of type tcp, not serial"
            in messages)


@pytest.fixture
def toy_with_tools() -> Iterator[None]:
    protocols.register(dataclasses.replace(TOY, tools="tests.toyproto.tools:TOOLS"))
    yield
    protocols._loaded.pop("toy", None)
    protocols.PROTOCOLS.pop("toy", None)


def test_a_protocol_offers_probe_through_the_registry_alone(toy_with_tools: None,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    toy = ToyServer().start()
    where = f"127.0.0.1:{toy.port}"
    try:
        status = cli_main(["probe", "--protocol", "toy", "--host", where, "--station", "3", "--key", "t", "--key", "h"])
        out = capsys.readouterr().out
        assert status == 0, out
        assert out.splitlines() == [f"station 3 @ {where} (toy line): t: 231", f"station 3 @ {where} (toy line): h: 48"]
        assert cli_main(["probe", "--toy", "--host", where, "--station", "3", "--key", "p"]) == 1  # its shorthand
        assert capsys.readouterr().out == f"station 3 @ {where} (toy line): p: ERR\n"
    finally:
        toy.stop()
    assert toy.requests == ["3 GET t", "3 GET h", "3 GET p"]
    for args, message in [
        (["--host", where, "--key", "t"], "--station and --key are for toy devices: add --toy"),
        (["--toy", "--host", where, "--unit", "3"],
         "--unit, --table, --address and --count are for Modbus devices: add --protocol modbus"),
        (["--toy", "--port", "/dev/null", "--key", "t"], "toy devices are probed over the network: use --host"),
        (["--toy", "--host", where], "nothing to ask: give --key"),
    ]:
        assert cli_main(["probe", *args]) == 2
        assert capsys.readouterr().err == f"edge-agent probe: {message}\n"


def test_probe_help_lists_each_protocols_options_and_examples(toy_with_tools: None,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli_main(["probe", "--help"])
    helped = capsys.readouterr().out
    assert "--protocol {modbus,dlt645,toy}" in helped
    assert "toy devices:\n  --protocol toy: 9600 8N1 unless --baudrate/--parity say otherwise" in helped
    assert re.search(r"^  --toy +same as --protocol toy$", helped, re.M) and "--station STATION" in helped
    assert "edge-agent probe --toy --host 192.0.2.7:7000 --station 3 --key t" in helped
