"""Uplink configuration as a technician meets it: `edge-agent check`, defaults, secrets."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.config import MqttUplink
from agent.uplinks.reconnect import backoff_delay
from tests.helpers import edge_agent

ROOT = Path(__file__).resolve().parents[1]
SECRET = "Zq9-very-secret"


def check(config: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return edge_agent("check", "-c", str(config), env={**os.environ, **env})


@pytest.mark.slow
def test_missing_certificates_and_password_files_are_problems() -> None:
    done = check(ROOT / "config" / "two-platforms.yaml")
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    # the certificates and the password file are not on this machine: the agent could not connect
    for key, name in (("central.tls.ca", "central/ca.pem"), ("central.tls.cert", "central/well-017.pem"),
                      ("central.tls.key", "central/well-017.key"), ("city-ops.password_file", "city-ops/password")):
        assert f"uplinks.{key}: /etc/edge-agent/{name}: No such file or directory" in out, key


@pytest.mark.slow
def test_check_never_prints_a_password(tmp_path: Path) -> None:
    (tmp_path / "pass").write_text(SECRET + "\n")
    cfg = tmp_path / "config.yaml"
    cfg.write_text("""\
gateway: {id: gw}
uplinks:
  a: {type: mqtt, host: mqtt.example.org, username: gw, password_file: pass}
  b: {type: mqtt, host: mqtt.example.org, username: gw, password_env: EDGE_TEST_PASSWORD}
""")
    done = check(cfg, EDGE_TEST_PASSWORD=SECRET)
    assert done.returncode == 0, done.stdout + done.stderr
    assert SECRET not in done.stdout + done.stderr
    # a password written into the config by mistake is refused without being echoed
    cfg.write_text(f"gateway: {{id: gw}}\nuplinks:\n  a: {{type: mqtt, host: h.example, password: {SECRET}}}\n")
    done = check(cfg)
    assert done.returncode == 1
    assert "uplinks.a.password: unknown key" in done.stdout
    assert SECRET not in done.stdout + done.stderr


def test_topic_templates_are_checked_with_file_and_line(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("""\
gateway: {id: gw}
uplinks:
  a:
    type: mqtt
    host: 127.0.0.1
    topics:
      telemetry: "{prefix}/{gatway}/up/{device}"
      status: "{prefix}/{gateway}/{device}/status"
      meta: "site/+/meta"
""")
    out = check(cfg).stdout
    assert f"{cfg}:7: uplinks.a.topics.telemetry: unknown placeholder '{{gatway}}'" in out
    assert "did you mean 'gateway'?" in out
    assert f"{cfg}:8: uplinks.a.topics.status: unknown placeholder '{{device}}'" in out
    assert f"{cfg}:9: uplinks.a.topics.meta:" in out and "wildcard" in out


def test_secure_and_v5_by_default() -> None:
    remote = MqttUplink.model_validate({"type": "mqtt", "host": "mqtt.example.org"})
    assert remote.tls_enabled and remote.effective_port == 8883 and remote.protocol == "5"
    local = MqttUplink.model_validate({"type": "mqtt", "host": "127.0.0.1"})
    assert not local.tls_enabled and local.effective_port == 1883
    assert MqttUplink.model_validate({"type": "mqtt", "host": "h", "protocol": 5}).protocol == "5"
    assert MqttUplink.model_validate({"type": "mqtt", "host": "h", "protocol": "3.1.1"}).protocol == "3.1.1"
    with pytest.raises(ValidationError):
        MqttUplink.model_validate({"type": "mqtt", "host": "h", "protocol": "3"})
    with pytest.raises(ValidationError, match="needs a 'username'"):
        MqttUplink.model_validate({"type": "mqtt", "host": "h", "password_env": "X"})
    with pytest.raises(ValidationError, match="must contain"):
        MqttUplink.model_validate({"type": "mqtt", "host": "h", "topics": {"meta": "edge/meta"}})


def test_reconnect_back_off_grows_with_jitter_and_is_capped() -> None:
    assert [backoff_delay(n, 1, 60, lambda: 1.0) for n in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert [backoff_delay(n, 1, 60, lambda: 0.0) for n in range(3)] == [0.5, 1, 2]
    delays = {backoff_delay(3, 1, 60) for _ in range(20)}
    assert len(delays) > 1 and all(4 <= d <= 8 for d in delays)  # jittered within [cap/2, cap]
