"""The optional Prometheus endpoint (``metrics: {listen: 127.0.0.1:9108}``).

prometheus-client is imported only here, and this module only when metrics are configured:
a Pi without them does not pay its memory. Each scrape reads the same live status as
``edge-agent status`` (see :mod:`agent.health.status`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .settings import parse_listen
from .status import StatusSource

log = logging.getLogger(__name__)

STATES = ("ok", "degraded", "offline")


def _gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"edge_agent_{name}", doc, labels=labels)


class AgentCollector(Collector):
    def __init__(self, source: StatusSource) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        snap = self.source.snapshot_sync()
        yield from self._devices(snap)
        yield from self._uplinks(snap)
        yield from self._buffer(snap)
        yield from self._completeness(snap.get("completeness"))

    def _devices(self, snap: dict[str, Any]) -> Iterator[Metric]:
        polls = CounterMetricFamily("edge_agent_polls", "polls that asked the bus, since start", labels=["device"])
        errors = CounterMetricFamily("edge_agent_poll_errors", "polls that got no value, since start",
                                     labels=["device"])
        state = _gauge("device_state", "1 for the device's current state", ["device", "state"])
        age = _gauge("device_last_ok_age_seconds", "age of the last reading with values", ["device"])
        for dev, d in snap["devices"].items():
            polls.add_metric([dev], d["polls_total"])
            errors.add_metric([dev], d["errors_total"])
            for s in STATES:
                state.add_metric([dev, s], 1.0 if d["state"] == s else 0.0)
            if d["last_ok_age"] is not None:
                age.add_metric([dev], d["last_ok_age"])
        yield from (polls, errors, state, age)

    def _uplinks(self, snap: dict[str, Any]) -> Iterator[Metric]:
        now = snap["now"]
        up = _gauge("uplink_connected", "1 while the uplink's broker connection is up", ["uplink"])
        waiting = _gauge("uplink_waiting_readings", "readings in the buffer not yet delivered", ["uplink"])
        oldest = _gauge("uplink_oldest_waiting_age_seconds", "age of the oldest undelivered reading", ["uplink"])
        refused = CounterMetricFamily("edge_agent_uplink_refused", "publishes the broker refused", labels=["uplink"])
        for name, u in snap["uplinks"].items():
            up.add_metric([name], 1.0 if u["connected"] else 0.0)
            waiting.add_metric([name], u.get("waiting", 0))
            oldest.add_metric([name], (now - u["oldest_waiting"]) / 1000 if u.get("oldest_waiting") else 0.0)
            refused.add_metric([name], u["refused"])
        yield from (up, waiting, oldest, refused)

    def _buffer(self, snap: dict[str, Any]) -> Iterator[Metric]:
        b = snap["buffer"]
        for name, doc, value in (("buffer_bytes", "bytes the buffer uses on disk", b["used_bytes"]),
                                 ("buffer_max_bytes", "the buffer's cap", b["max_bytes"]),
                                 ("buffer_readings", "readings in the buffer", b.get("readings", 0))):
            g = _gauge(name, doc, [])
            g.add_metric([], value)
            yield g
        evicted = CounterMetricFamily("edge_agent_buffer_evicted", "readings a full buffer dropped", labels=[])
        evicted.add_metric([], b["evicted"])
        yield evicted

    def _completeness(self, today: dict[str, Any] | None) -> Iterator[Metric]:
        counts = _gauge("completeness_readings", "today's readings (local day): expected, received, valid",
                        ["device", "kind"])
        delivered = _gauge("completeness_delivered_readings", "today's readings each uplink delivered",
                           ["device", "uplink"])
        rates = _gauge("completeness_rate", "today's transmission and effective rates (uplink '' = polled)",
                       ["device", "uplink", "rate"])
        for dev, d in (today or {}).get("devices", {}).items():
            for kind in ("expected", "received", "valid"):
                if d[kind] is not None:
                    counts.add_metric([dev, kind], d[kind])
            for name, n in d["delivered"].items():
                delivered.add_metric([dev, name], n)
            pairs = [("", d), *d["uplinks"].items()]
            for name, r in pairs:
                for kind in ("transmission_rate", "effective_rate"):
                    if r[kind] is not None:
                        rates.add_metric([dev, name, kind], r[kind])
        yield from (counts, delivered, rates)


class MetricsServer:
    def __init__(self, listen: str, source: StatusSource) -> None:
        self.host, self.port = parse_listen(listen)
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.registry.register(AgentCollector(source))
        self._server: Any = None

    def start(self) -> None:
        try:
            self._server, _thread = start_http_server(self.port, self.host, registry=self.registry)
        except OSError as exc:
            log.warning("metrics: cannot listen on %s:%d (%s); no metrics endpoint", self.host, self.port,
                        exc.strerror or exc)
            return
        log.info("metrics: Prometheus endpoint on http://%s:%d/metrics", self.host, self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
