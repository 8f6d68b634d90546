from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.localbroker import LocalBroker, find_mosquitto


def pytest_configure(config: pytest.Config) -> None:
    missing = [name for name, found in (("mosquitto", find_mosquitto()), ("socat", shutil.which("socat")))
               if not found]
    if missing:
        raise pytest.UsageError(f"the tests need {', '.join(missing)} (make test installs them)")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalBroker]:
    b = LocalBroker(workdir=tmp_path / "broker", persistent=True).start()
    yield b
    b.stop()
