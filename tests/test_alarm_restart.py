"""An alarm with fast_poll raised when the agent stops: the real Agent built on the real
buffer it left (in-process, nothing polled), and a reload that rebuilds the device."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from agent.alarms.engine import STATE_KEY
from agent.config import load_config
from agent.harness.site import device, tcp_bus, write_site
from agent.reload import reload_config
from agent.runtime import Agent
from buffer.outbox import ALARM_STATUS, Outbox
from drivers.reading import Reading

T0 = 1_795_000_000_000


def site(tmp_path: Path, interval: str) -> Path:
    dusty = {"device": "dust-1", "point": "pm2_5", "above": 75, "fast_poll": "2s"}
    return write_site(tmp_path / "config.yaml", data_dir=tmp_path / "data", buses={"lan": tcp_bus(1502)},
                      devices={"dust-1": device("lan", "renke-dust-all-in-one", 1, interval=interval)},
                      extra={"alarms": {"dusty": dusty}})


def test_an_agent_restarted_with_a_raised_fast_poll_alarm_starts_and_polls_fast(tmp_path: Path) -> None:
    cfg = site(tmp_path, "30s")
    (tmp_path / "data").mkdir()
    left = Outbox(tmp_path / "data" / "outbox.db", [])  # what the previous run left: the alarm raised
    left.start()
    left.submit_event(Reading("dust-1", T0, {"alarm": "dusty", "state": "raised"}, ALARM_STATUS), STATE_KEY,
                      json.dumps({"dusty": {"since": T0, "value": 120.0, "threshold": 75.0}}))
    assert left.sync()
    left.close()

    async def main() -> tuple[float, float]:
        agent = Agent(load_config(cfg))  # raised AttributeError: the agent could not start at all
        agent.outbox.start()
        try:
            at_start = agent.pollers["dust-1"].interval
            site(tmp_path, "60s")  # the device is rebuilt by the reload
            assert await reload_config(agent)
            return at_start, agent.pollers["dust-1"].interval
        finally:
            await agent.stop_pollers(list(agent.pollers))
            agent.outbox.close()
            agent.audit.close()

    assert asyncio.run(main()) == (2.0, 2.0)
