"""TLS and logins against a real mosquitto with TLS listeners and a throwaway CA.

One broker serves every case: a plain listener for the test's subscriber, a TLS listener
with a good certificate and password logins, one with an expired certificate, one with a
certificate for another host name, and one that requires client certificates.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.harness.collector import Collector
from agent.localbroker import LocalBroker, free_port
from agent.uplinks.mqtt import MqttUplinkWorker
from tests.certs import Pki, tls_listener
from tests.helpers import wait_for
from tests.mqtt_support import Rig, broker_lines, password_file, uplink

pytestmark = pytest.mark.slow  # real processes, brokers or lines: `pytest -m "not slow"` skips them

PASSWORD = "s3cret-Pa55word"


@dataclass
class TlsSite:
    broker: LocalBroker
    pki: Pki
    plain: int
    good: int
    expired: int
    wrong_host: int
    mutual: int
    client_cert: Path
    client_key: Path
    dir: Path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsSite]:
    d = tmp_path_factory.mktemp("tls")
    pki = Pki(d / "pki")
    good = pki.issue("broker", ("127.0.0.1", "localhost"))
    expired = pki.issue("broker-expired", ("127.0.0.1", "localhost"), expired=True)
    wrong = pki.issue("broker-wrong-host", ("mqtt.wrong.example",))
    client = pki.issue("site-001", client=True)
    passwords = password_file(d / "passwd", {"site-001": PASSWORD})
    ports = [free_port() for _ in range(5)]
    extra = broker_lines(
        "per_listener_settings true",
        f"listener {ports[0]} 127.0.0.1", "allow_anonymous true",
        tls_listener(ports[1], good), "allow_anonymous false", f"password_file {passwords}",
        tls_listener(ports[2], expired), "allow_anonymous true",
        tls_listener(ports[3], wrong), "allow_anonymous true",
        tls_listener(ports[4], good, pki.cert, require_certificate=True), "allow_anonymous true",
    )
    broker = LocalBroker(port=ports[0], workdir=d / "broker", default_listener=False, extra=extra).start()
    yield TlsSite(broker, pki, *ports, client.cert, client.key, d)
    broker.stop()


def _first_error(rig: Rig, name: str = "central", timeout: float = 10) -> str:
    worker: MqttUplinkWorker = rig.workers[name]
    wait_for(lambda: bool(worker.stats.last_error), timeout, f"uplink {name} to report an error")
    return worker.stats.last_error


def test_tls_with_a_private_ca_and_a_password_delivers(site: TlsSite, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    (tmp_path / "central.pass").write_text(PASSWORD + "\n")
    rec = Collector(site.plain, "edge/#").start()
    cfg = uplink(site.good, tls={"ca": str(site.pki.cert)}, username="site-001", password_file="central.pass")
    rig = Rig(tmp_path, {"central": cfg}).start()
    try:
        rig.submit(n=5)
        wait_for(lambda: len(set(rec.seqs())) == 5, 10, "5 readings over TLS")
    finally:
        rig.stop()
        rec.stop()
    assert rig.workers["central"].stats.connects == 1
    assert any("connected to 127.0.0.1" in m and "TLS" in m for m in caplog.messages)
    assert all(PASSWORD not in m for m in caplog.messages)


def test_each_tls_and_login_failure_has_its_own_clear_message(site: TlsSite, tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    other_ca = Pki(tmp_path / "other-ca", "some other CA")
    (tmp_path / "wrong.pass").write_text("not-the-password\n")
    cases = {
        "unknown CA": uplink(site.good, tls={"ca": str(other_ca.cert)}),
        "expired": uplink(site.expired, tls={"ca": str(site.pki.cert)}),
        "hostname": uplink(site.wrong_host, tls={"ca": str(site.pki.cert)}),
        "login": uplink(site.good, tls={"ca": str(site.pki.cert)}, username="site-001",
                        password_file="wrong.pass"),
    }
    rig = Rig(tmp_path / "data", cases, base_dir=tmp_path).start()
    try:
        errors = {name: _first_error(rig, name) for name in cases}
    finally:
        rig.stop()
    assert "signed by an unknown CA" in errors["unknown CA"] and "tls.ca" in errors["unknown CA"]
    assert "certificate has expired" in errors["expired"]
    assert "not valid for host '127.0.0.1'" in errors["hostname"]
    assert "login refused" in errors["login"] and "user 'site-001'" in errors["login"]
    assert "check username and the password" in errors["login"]
    # four distinct messages, each naming its cause and no other
    causes = ("unknown CA", "expired", "not valid for host", "login refused")
    for name, text in errors.items():
        assert sum(cause in text for cause in causes) == 1, (name, text)
    # each is logged, once, at ERROR; the password is never logged
    for text in errors.values():
        assert sum(text in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR) == 1, text
    assert all("not-the-password" not in m for m in caplog.messages)
    assert all(w.stats.connects == 0 for w in rig.workers.values())


def test_mutual_tls(site: TlsSite, tmp_path: Path) -> None:
    rec = Collector(site.plain, "edge/#").start()
    with_cert = uplink(site.mutual, tls={"ca": str(site.pki.cert), "cert": str(site.client_cert),
                                         "key": str(site.client_key)})
    without = uplink(site.mutual, tls={"ca": str(site.pki.cert)}, client_id="site-test-nocert")
    rig = Rig(tmp_path, {"with-cert": with_cert, "without-cert": without}).start()
    try:
        rig.submit(n=3)
        wait_for(lambda: len(set(rec.seqs())) == 3, 10, "3 readings over mutual TLS")
        error = _first_error(rig, "without-cert")
    finally:
        rig.stop()
        rec.stop()
    assert "requires a client certificate" in error and "tls.cert" in error, error
    assert [s for s, _ in rig.pending("without-cert")] == [1, 2, 3]  # kept for when it is fixed
    assert rig.pending("with-cert") == []


def test_tls_insecure_skips_the_host_name_check_only(site: TlsSite, tmp_path: Path) -> None:
    other_ca = Pki(tmp_path / "other-ca", "some other CA")
    cases = {"wrong-host": uplink(site.wrong_host, tls={"ca": str(site.pki.cert), "insecure": True}),
             "unknown-ca": uplink(site.good, tls={"ca": str(other_ca.cert), "insecure": True})}
    rig = Rig(tmp_path, cases).start()
    try:
        wait_for(lambda: rig.workers["wrong-host"].stats.connects >= 1, 10, "a connection despite the host name")
        error = _first_error(rig, "unknown-ca")
    finally:
        rig.stop()
    assert "signed by an unknown CA" in error
    assert rig.workers["unknown-ca"].stats.connects == 0
