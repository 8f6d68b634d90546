"""Planning a reload from two real configs with catalog profiles (no agent running)."""

from __future__ import annotations

import warnings
from pathlib import Path

from agent.config import load_config
from agent.reload import plan_reload
from tests.helpers import write_config


def test_planning_a_reload_writes_no_serializer_warnings(tmp_path: Path) -> None:
    """Each SIGHUP compares every device's profile; the lamp controller's simulated points
    (``value: 0``) made pydantic print warnings to the journal on every reload."""
    def config(interval: str) -> Path:
        return write_config(tmp_path / f"config-{interval}.yaml", data_dir=tmp_path / "data",
                            buses={"lan": "{type: tcp, host: 127.0.0.1, port: 1502}"},
                            devices={"lamp-1": "{bus: lan, unit: 5, profile: generic-smart-pole-lamp-controller,"
                                               f" interval: {interval}}}"},
                            uplinks="  {}\n")

    old, new = load_config(config("30s")), load_config(config("10s"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plan = plan_reload(old, new)
    assert plan.devices == {"lamp-1"} and plan.new_devices == {"lamp-1"}
