"""Where the agent's resident memory goes before it polls anything: RSS of a fresh
interpreter after each group of imports, in the agent's import order. Run as a process
(``python -m bench.rss_imports``); prints one JSON line of [step, RSS MB, added MB].
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

STEPS: list[tuple[str, list[str]]] = [
    ("interpreter", []),
    ("ssl (OpenSSL; asyncio, paho and the TLS set-up import it)", ["ssl"]),
    ("asyncio", ["asyncio"]),
    ("sqlite3, json, logging", ["sqlite3", "json", "logging"]),
    ("PyYAML", ["yaml"]),
    ("pydantic", ["pydantic"]),
    ("agent.config (config and profile models, catalog)", ["agent.config"]),
    ("pymodbus client", ["pymodbus.client"]),
    ("paho-mqtt", ["paho.mqtt.client"]),
    ("the rest of the agent (runtime, uplinks, outbox, cli)", ["agent.runtime", "agent.cli"]),
]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    out = []
    prev = rss_mb()
    for name, modules in STEPS:
        for m in modules:
            importlib.import_module(m)
        now = rss_mb()
        out.append([name, round(now, 1), round(now - prev, 1)])
        prev = now
    print(json.dumps(out))


if __name__ == "__main__":
    main()
