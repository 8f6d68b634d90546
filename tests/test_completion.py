"""``edge-agent completion bash`` as a user installs it: sourced by a real bash, asked what
it completes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import edge_agent

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")


@pytest.fixture(scope="module")
def script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = edge_agent("completion", "bash")
    assert out.returncode == 0, out.stderr
    path = tmp_path_factory.mktemp("completion") / "edge-agent"
    path.write_text(out.stdout)
    return path


def complete(script: Path, line: str, cwd: Path | None = None) -> list[str]:
    words = line.split(" ")
    quoted = " ".join(f"'{w}'" for w in words)
    program = (f"source '{script}'; COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; _edge_agent;"
               " printf '%s\\n' \"${COMPREPLY[@]}\"")
    out = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=30, cwd=cwd)
    assert out.returncode == 0, out.stderr
    return [w for w in out.stdout.splitlines() if w]


def test_commands_actions_and_options_complete(script: Path) -> None:
    assert complete(script, "edge-agent bu") == ["buffer"]
    assert set(complete(script, "edge-agent ")) >= {"run", "check", "buffer", "completion", "--version"}
    assert complete(script, "edge-agent buffer st") == ["stats"]
    assert complete(script, "edge-agent buffer stats --j") == ["--json"]
    assert complete(script, "edge-agent run --log") == ["--log-level"]
    assert complete(script, "edge-agent completion b") == ["bash"]


def test_option_values_and_file_names_complete(script: Path, tmp_path: Path) -> None:
    assert complete(script, "edge-agent run --log-level d") == ["debug"]
    assert complete(script, "edge-agent run -c --log-level w") == ["warning"]
    (tmp_path / "site.yaml").write_text("")
    assert complete(script, "edge-agent check -c si", cwd=tmp_path) == ["site.yaml"]


def test_version() -> None:
    out = edge_agent("--version")
    assert out.returncode == 0 and out.stdout.startswith("edge-agent ")
