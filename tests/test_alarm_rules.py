"""Alarm rules on a real SQLite buffer: hysteresis, for, rise, no_data, and the raised set
surviving a restart; config problems named by FILE:LINE."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent.alarms.config import AlarmRule
from agent.alarms.engine import STATE_KEY, AlarmEngine
from agent.alarms.store import read_store
from buffer.outbox import Outbox
from drivers.reading import Reading
from tests.helpers import edge_agent

T0 = 1_795_000_000_000


def rule(**fields: Any) -> AlarmRule:
    return AlarmRule.model_validate({"device": "level-1", "point": "water_level", **fields})


class Site:
    """An engine writing to a real outbox file, as the agent wires it."""

    def __init__(self, data: Path, rules: dict[str, AlarmRule]) -> None:
        self.db = data / "outbox.db"
        data.mkdir(exist_ok=True)
        self.rules = rules
        self.outbox = Outbox(self.db, ["central"], commit_interval=0.01)
        self.intervals: list[tuple[str, float | None]] = []
        saved, _ = read_store(self.db)
        self.engine = AlarmEngine(rules, lambda ev, st: self.outbox.submit_event(ev, STATE_KEY, st),
                                  lambda dev, iv: self.intervals.append((dev, iv)), saved)

    def feed(self, values: list[float | None], start: int = T0, step_ms: int = 1000) -> None:
        for i, v in enumerate(values):
            vals = {} if v is None else {"water_level": v}
            self.engine.feed(Reading("level-1", start + i * step_ms, vals, "ok" if vals else "timeout"))
        self.outbox.sync()

    def events(self) -> list[tuple[str, str]]:
        return [(e["alarm"], e["state"]) for e in read_store(self.db)[1]]

    def close(self) -> None:
        self.outbox.close()


def test_a_value_hovering_around_the_threshold_raises_once(tmp_path: Path) -> None:
    site = Site(tmp_path / "data", {"flood": rule(above=0.30, clear_at=0.25, severity="critical")})
    site.feed([0.20, 0.31, 0.29, 0.31, 0.30, 0.32, 0.28, 0.31, 0.26, 0.31])
    assert site.events() == [("flood", "raised")]
    site.feed([0.24, 0.26, 0.24, 0.31], start=T0 + 60_000)
    assert site.events() == [("flood", "raised"), ("flood", "cleared"), ("flood", "raised")]
    events = read_store(site.db)[1]
    assert events[0] | {"seq": 0} == {"seq": 0, "ts": T0 + 1000, "device": "level-1", "alarm": "flood",
                                      "state": "raised", "severity": "critical", "point": "water_level",
                                      "value": 0.31, "threshold": 0.3}
    assert events[1]["value"] == 0.24 and events[1]["threshold"] == 0.25
    # the events are readings in the outbox too, pending for the uplink, with their own seq
    rows = site.outbox.reader().fetch(site.outbox.uplink_bits["central"], 0, None, 100)
    assert [r.seq for r in rows if r.status == "alarm"] == [e["seq"] for e in events]
    site.close()


def test_for_holds_the_raise_and_fast_poll_follows_pending_and_raised(tmp_path: Path) -> None:
    site = Site(tmp_path / "data", {"flood": rule(above=0.3, clear_at=0.25, **{"for": "3s"}, fast_poll="1s")})
    site.feed([0.2, 0.4, 0.4, 0.2])  # pending for 2 s only, then back below clear_at
    assert site.events() == []
    assert site.intervals == [("level-1", 1.0), ("level-1", None)]
    site.feed([0.4, 0.4, 0.4, 0.4, 0.4], start=T0 + 10_000)
    assert site.events() == [("flood", "raised")]
    assert read_store(site.db)[1][0]["ts"] == T0 + 13_000
    site.close()


def test_a_raised_alarm_survives_a_restart_and_is_not_raised_again(tmp_path: Path) -> None:
    rules = {"flood": rule(above=0.3, fast_poll="2s"), "dry": rule(below=0.05)}
    site = Site(tmp_path / "data", rules)
    site.feed([0.1, 0.5, 0.6])
    site.close()
    state, _ = read_store(site.db)
    assert list(state) == ["flood"]
    again = Site(tmp_path / "data", rules)
    assert again.intervals == [("level-1", 2.0)]  # fast polling resumes with the alarm
    again.feed([0.7, 0.6], start=T0 + 60_000)
    assert again.events() == [("flood", "raised")]
    again.feed([0.2], start=T0 + 70_000)
    assert again.events() == [("flood", "raised"), ("flood", "cleared")]
    assert read_store(again.db)[0] == {}
    again.close()


def test_rate_of_rise_and_no_data(tmp_path: Path) -> None:
    site = Site(tmp_path / "data", {"surge": rule(rise="0.2 m in 5s"), "silent": rule(no_data="3s")})
    # +0.05 per second: 0.2 within 5 s after 4 s; raised once while it keeps rising
    site.feed([1.0, 1.05, 1.1, 1.15, 1.2, 1.25, 1.3, 1.4, 1.55])
    assert site.events() == [("surge", "raised")]
    site.feed([1.55, 1.55, 1.55, 1.55, 1.55, 1.55], start=T0 + 9000)
    assert site.events() == [("surge", "raised"), ("surge", "cleared")]
    site.feed([None, None, None, None, 1.5], start=T0 + 15_000)  # failed polls: no valid value
    events = read_store(site.db)[1]
    assert [(e["alarm"], e["state"]) for e in events[2:]] == [("silent", "raised"), ("silent", "cleared")]
    assert events[2]["ts"] == T0 + 17_000 and events[2]["value"] is None and events[2]["threshold"] == 3.0
    site.close()


def test_alarm_config_problems_name_file_and_line(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"""\
gateway: {{id: gw, data_dir: {tmp_path / "data"}}}
buses:
  lan: {{type: tcp, host: 127.0.0.1, port: 5020}}
devices:
  level-1: {{bus: lan, unit: 1, profile: generic-submersible-level-transmitter, interval: 1m,
            report: {{water_levl: {{deadband: 2%}}}}}}
uplinks:
  city: {{type: mqtt, host: 127.0.0.1, on_change: true}}
alarms:
  flood: {{device: level-1, point: water_level, above: 0.3, clear_at: 0.25, fast_poll: 2m}}
  surge: {{device: level-1, point: water_level, rise: 0.2 cm in 5m}}
  dust: {{device: dust-1, point: pm10, above: 150}}
  typo: {{device: level-1, point: waterlevel, below: 0.1}}
""")
    out = edge_agent("check", "-c", str(cfg))
    assert out.returncode == 1
    lines = out.stdout.splitlines()
    assert f"{cfg}:10: alarms.flood.fast_poll: fast_poll 2m is slower than the device's interval 1m" in lines
    assert f"{cfg}:11: alarms.surge.rise: '0.2 cm in 5m' is in cm, point water_level is in m" in lines
    assert f"{cfg}:12: alarms.dust.device: unknown device 'dust-1'" in lines
    assert any(line.startswith(f"{cfg}:13: alarms.typo.point: ") and "did you mean 'water_level'" in line
               for line in lines)
    assert any(line.startswith(f"{cfg}:6: devices.level-1.report.water_levl: ") for line in lines)
    cfg.write_text(cfg.read_text().replace("clear_at: 0.25", "clear_at: 0.35").replace("rise: 0.2 cm in 5m",
                                                                                    "rise: quickly"))
    out = edge_agent("check", "-c", str(cfg))
    assert f"{cfg}:10: alarms.flood: clear_at 0.35 must not be above 'above' 0.3" in out.stdout
    assert f"{cfg}:11: alarms.surge.rise: 'quickly' is not a rate of rise" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr
    assert json.loads((Path(__file__).resolve().parents[1] / "config/schema.json").read_text())[
        "properties"]["alarms"]


def test_buffer_export_leaves_alarm_events_out(tmp_path: Path) -> None:
    site = Site(tmp_path / "data", {"flood": rule(above=0.3)})
    for i, level in enumerate([0.1, 0.5]):
        reading = Reading("level-1", T0 + i * 1000, {"water_level": level})
        site.outbox.submit(reading)
        site.engine.feed(reading)
    site.outbox.sync()
    site.close()
    assert site.events() == [("flood", "raised")]
    out = edge_agent("buffer", "export", "--db", str(site.db), "--format", "jsonl")
    assert out.returncode == 0, out.stderr
    exported = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["values"] for r in exported] == [{"water_level": 0.1}, {"water_level": 0.5}]
