"""An uplink's command settings as the daemon reads them: the key file beside the config, and
an unreadable key refusing every command with the reason (never accepting unsigned ones)."""

from __future__ import annotations

import json
from pathlib import Path

from agent.config import MqttUplink
from agent.control.audit import AuditLog
from agent.control.commands import CommandDesk, sign
from agent.control.mqtt_commands import channel_of


def uplink(**kw: object) -> MqttUplink:
    return MqttUplink.model_validate({"type": "mqtt", "host": "127.0.0.1", "commands": True, **kw})


def test_the_key_file_is_read_beside_the_config(tmp_path: Path) -> None:
    (tmp_path / "cmd.key").write_bytes(b"k-1\n")
    channel = channel_of("city-ops", uplink(command_key_file="cmd.key", command_max_age="5m"), tmp_path)
    assert (channel.commands, channel.key, channel.max_age, channel.unusable) == (True, b"k-1", 300, None)


def test_an_unreadable_key_refuses_every_command_with_the_reason(tmp_path: Path) -> None:
    channel = channel_of("city-ops", uplink(command_key_file="missing.key"), tmp_path)
    audit = AuditLog(tmp_path / "control.db")
    try:
        body = {"id": "c-1", "values": {"dim_level": 60}}
        d = CommandDesk(audit).decide(channel, None, "lamp-1", json.dumps({**body, "sig": sign(body, b"")}))
    finally:
        audit.close()
    assert d.status == "refused" and d.writes == []
    assert d.reason.startswith("cannot read command_key_file missing.key: ")
