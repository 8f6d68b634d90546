"""`buffer stats` and `drop-uplink` beside an HJ 212 uplink: its readings leave the buffer once
folded into aggregates; the packets its platform has not answered wait in its own store."""

from __future__ import annotations

import json
from pathlib import Path

from agent.harness.site import device, hj212_uplink, mqtt_uplink, tcp_bus, write_site
from agent.uplinks.hj212.store import Hj212Store, store_path
from buffer.outbox import Outbox
from drivers.reading import Reading
from tests.helpers import edge_agent


def site(tmp_path: Path, with_hj212: bool) -> Path:
    """A dust monitor reported to an MQTT platform and, ``with_hj212``, to the bureau as 'env'."""
    uplinks = {"city": mqtt_uplink(1883)}
    if with_hj212:
        uplinks["env"] = hj212_uplink(9000, "010000A8900016F000169DC0", ["dust-1"])
    return write_site(tmp_path / "config.yaml", gateway="site-cmd", data_dir="data", buses={"lan": tcp_bus(1502)},
                      devices={"dust-1": device("lan", "renke-dust-all-in-one", 1, interval="10s")}, uplinks=uplinks)


def test_stats_show_the_hj212_packets_waiting_for_the_platform(tmp_path: Path) -> None:
    cfg = site(tmp_path, with_hj212=True)
    data = tmp_path / "data"
    data.mkdir()
    box = Outbox(data / "outbox.db", ["city", "env"])
    box.start()
    box.submit(Reading("dust-1", 1_795_000_000_000, {"pm2_5": 35}))
    assert box.sync()
    box.ack("env", [1])  # folded into the uplink's aggregates
    assert box.sync()
    box.close()
    store = Hj212Store(store_path(data, "env"))
    store.conn.executemany("INSERT INTO packets(cn, start, vals) VALUES (?, ?, ?)",
                           [("2051", 1_795_000_000 + 600 * i, "{}") for i in range(3)])
    store.close()

    out = edge_agent("buffer", "stats", "-c", str(cfg))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    env = next(i for i, line in enumerate(lines) if line.split()[:2] == ["env", "0"])
    assert lines[env + 1].split() == ["3", "HJ", "212", "packets", "stored,", "not", "yet", "answered", "by", "the",
                                      "platform"]
    assert not any("HJ 212" in line for line in lines[:env])  # nothing of the kind for the MQTT uplink
    js = json.loads(edge_agent("buffer", "stats", "-c", str(cfg), "--json").stdout)
    assert js["hj212_unanswered"] == {"env": 3}


def test_drop_uplink_gives_up_the_hj212_packets_too(tmp_path: Path) -> None:
    """Without this an uplink of the same name configured later (another platform, maybe)
    would send the dropped uplink's old packets."""
    cfg = site(tmp_path, with_hj212=False)
    data = tmp_path / "data"
    data.mkdir()
    Outbox(data / "outbox.db", ["city", "env"]).close()
    store = Hj212Store(store_path(data, "env"))
    store.conn.executemany("INSERT INTO packets(cn, start, vals) VALUES (?, ?, ?)",
                           [("2051", 1_795_000_000 + 600 * i, "{}") for i in range(2)])
    store.close()
    out = edge_agent("buffer", "drop-uplink", "-c", str(cfg), "env")
    assert out.returncode == 0, out.stderr
    assert "hj212-env.db.dropped (2 packets the platform never answered)" in out.stdout
    assert not store_path(data, "env").exists() and (data / "hj212-env.db.dropped").exists()
    again = Hj212Store(store_path(data, "env"))  # an uplink 'env' configured again starts empty
    assert again.count_unanswered() == 0
    again.close()
