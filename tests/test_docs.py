"""The docs technicians read are generated or checked here, so they cannot drift from the code."""

from __future__ import annotations

import json
import re
from pathlib import Path

from agent.cli import build_parser
from agent.docs import (
    PROFILE_SCHEMA_PATH,
    REFERENCE_PATH,
    SCHEMA_PATH,
    profile_schema_text,
    reference_text,
    schema_text,
)

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_config_schema_is_generated_from_the_models() -> None:
    assert SCHEMA_PATH.read_text() == schema_text(), "config/schema.json is stale: run `make docs`"


def test_profile_schema_is_generated_from_every_protocols_model() -> None:
    assert PROFILE_SCHEMA_PATH.read_text() == profile_schema_text(), \
        "config/profile-schema.json is stale: run `make docs`"


def test_profile_schema_accepts_the_catalog_and_refuses_foreign_keys() -> None:
    """What an editor does with the schema: every shipped profile validates; a DL/T 645 key on a
    Modbus point and a Modbus key on a DL/T 645 point do not."""
    import jsonschema
    import yaml

    schema = json.loads(PROFILE_SCHEMA_PATH.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    from drivers.catalog import catalog

    for path in catalog().values():
        data = yaml.safe_load(path.read_text())
        assert not list(validator.iter_errors(data)), path
        if data.get("protocol") == "dlt645":
            data["points"][next(iter(data["points"]))]["table"] = "holding"
        else:
            data["points"][next(iter(data["points"]))]["signed"] = True
        assert list(validator.iter_errors(data)), f"{path}: a foreign key passed the schema"


def test_config_reference_is_generated_from_the_models() -> None:
    assert REFERENCE_PATH.read_text() == reference_text(), "docs/config-reference.md is stale: run `make docs`"


def _commands() -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return set(sub.choices)  # type: ignore[arg-type]


def test_readme_documents_every_command_and_only_real_ones() -> None:
    commands = _commands()
    mentioned = set(re.findall(r"edge-agent ([a-z][a-z0-9-]*[a-z0-9])", README))
    assert commands <= mentioned, f"README lacks: {sorted(commands - mentioned)}"
    assert mentioned <= commands, f"README mentions commands that do not exist: {sorted(mentioned - commands)}"


def test_readme_gives_the_two_commands_and_ci_runs_the_test_one() -> None:
    assert "make demo" in README and "make test" in README
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_readme_links_resolve() -> None:
    for link in re.findall(r"\]\((?!https?://)([^)#]+)", README):
        assert (ROOT / link).exists(), f"README links to missing {link}"


def test_systemd_unit_runs_the_contract_command_with_dialout() -> None:
    unit = (ROOT / "systemd" / "edge-agent.service").read_text()
    assert "ExecStart=/usr/local/bin/edge-agent run -c /etc/edge-agent/config.yaml" in unit
    assert "Restart=always" in unit  # SIGHUP reloads; any exit (a watchdog kill too) restarts
    assert "SupplementaryGroups=dialout" in unit
