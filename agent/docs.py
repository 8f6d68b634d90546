"""Generated documentation: the config JSON Schema, the config reference, supported devices.

``python -m agent.docs`` writes them; tests/test_docs.py fails when the committed files
differ from what the models generate, so the docs cannot drift from the code.
"""

from __future__ import annotations

import json
import types
import typing
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from .alarms.config import AlarmRule, ReportPoint
from .config import (
    Buffer,
    Clock,
    Config,
    Device,
    Gateway,
    Logging,
    MqttUplink,
    RtuOverTcpBus,
    SerialBus,
    TcpBus,
    Tls,
    Topics,
)
from .control.config import DeviceControl, Location, Schedule, Step
from .health.settings import Health, Metrics
from .uplinks.hj212.config import Hj212Uplink
from .uplinks.hj212.factors import table_markdown

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = ROOT / "config" / "schema.json"
PROFILE_SCHEMA_PATH = ROOT / "config" / "profile-schema.json"
REFERENCE_PATH = ROOT / "docs" / "config-reference.md"

SECTIONS: list[tuple[str, type[BaseModel], str]] = [
    ("gateway", Gateway, "The gateway itself."),
    ("buses.<id> (type: serial)", SerialBus, "Modbus RTU on an RS-485 port."),
    ("buses.<id> (type: tcp)", TcpBus, "Modbus TCP."),
    ("buses.<id> (type: rtu-over-tcp)", RtuOverTcpBus,
     "Modbus RTU frames through a serial-to-Ethernet converter (DTU)."),
    ("devices.<id>", Device, "One field device: which bus, which address, which profile."),
    ("devices.<id>.control", DeviceControl,
     "Writes to the device: only the points listed in `allow` (writable in the profile) are ever written."),
    ("devices.<id>.report.<point>", ReportPoint,
     "Report by exception for one point: uplinks with `on_change: true` get its value only when it moved"
     " beyond the deadband, or when none was sent for max_silence. The buffer still keeps every reading."),
    ("uplinks.<id> (type: mqtt)", MqttUplink, "One platform's MQTT broker."),
    ("uplinks.<id>.tls", Tls, "TLS settings of an uplink."),
    ("uplinks.<id>.topics", Topics,
     "Topic templates; `{prefix}`, `{gateway}`, `{device}` and `{profile}` are filled in."),
    ("uplinks.<id> (type: hj212)", Hj212Uplink,
     "One environmental platform over HJ 212-2017 (the agent is the TCP client). Points go out under"
     " these factor codes (`factors:` adds or changes codes; `units:` converts):\n\n" + table_markdown()),
    ("buffer", Buffer, "The SQLite store-and-forward buffer."),
    ("logging", Logging, "Log output (to stderr; journald under systemd: `<N>` priorities, no timestamps)."),
    ("clock", Clock, "Time on a gateway without a real-time clock: until the system clock is known good (NTP"
                     " synchronised, or later than the last time the agent saw), readings are stamped from the"
                     " boot clock and held in the buffer; when it is, they get their UTC times and go out."),
    ("health", Health, "The completeness figures published retained on each native uplink's health topic"
     " (see [operations.md](operations.md))."),
    ("metrics", Metrics, "An optional Prometheus endpoint (prometheus-client, loaded only when this is set)."),
    ("alarms.<id>", AlarmRule,
     "An edge alarm on one point, evaluated on every reading with the uplink up or down: exactly one of"
     " `above`, `below` (with `clear_at` for hysteresis), `rise` or `no_data`. A condition that holds for"
     " `for` raises the alarm (an event, once); the fall past `clear_at` clears it (once). Events go to"
     " `{prefix}/{gateway}/alarm/{device}`, the active set retained on `{prefix}/{gateway}/alarms`."),
    ("schedules.<id>", Schedule, "A local lighting schedule, run by the gateway with or without an uplink."),
    ("schedules.<id>.location", Location, "Where the poles stand: sun times are computed for it (astral)."),
    ("schedules.<id>.steps[]", Step, "One step, every day: at a local time or a sun event, set these values."),
]


def schema_text() -> str:
    schema = Config.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "edge-agent configuration"
    return json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def profile_schema_text() -> str:
    """One JSON Schema for every protocol's profiles: ``protocol:`` picks the model."""
    from drivers import protocols

    defs: dict[str, Any] = {}
    refs: dict[str, str] = {}
    for name in protocols.names():
        model = protocols.get(name).profile_model
        schema = model.model_json_schema(ref_template="#/$defs/{model}")
        defs.update(schema.pop("$defs", {}))
        defs[model.__name__] = schema
        refs[name] = f"#/$defs/{model.__name__}"
    choice: dict[str, Any] = {"$ref": refs[protocols.DEFAULT]}
    for name in sorted(refs, reverse=True):
        if name != protocols.DEFAULT:
            choice = {"if": {"properties": {"protocol": {"const": name}}, "required": ["protocol"]},
                      "then": {"$ref": refs[name]}, "else": choice}
    out: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "edge-agent device profile",
        "description": "A device profile (drivers/profiles/<vendor>/<model>.yaml, or a file a config names). "
                       f"'protocol' picks the protocol's own profile and point model; without it, "
                       f"{protocols.DEFAULT}.",
        "type": "object",
        "properties": {"protocol": {"enum": sorted(refs), "default": protocols.DEFAULT}},
        **choice,
        "$defs": defs,
    }
    return json.dumps(out, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def _field_type(field: FieldInfo) -> str:
    for meta in field.metadata:
        schema = getattr(meta, "json_schema", None)
        if isinstance(schema, dict) and "pattern" in schema:
            kind = _pattern_kind(schema)
            return kind if field.is_required() or field.default is not None else f"{kind} or null"
    return _type_name(field.annotation)


def _pattern_kind(schema: dict[str, Any]) -> str:
    """A text value with a syntax of its own: its ``title``, else duration or size."""
    return str(schema.get("title") or ("duration" if "ms" in schema["pattern"] else "size"))


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        args = get_args(annotation)
        for meta in args[1:]:
            schema = getattr(meta, "json_schema", None)
            if isinstance(schema, dict) and "pattern" in schema:
                return _pattern_kind(schema)
        return _type_name(args[0])
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(annotation) if a is not type(None))
    if origin is dict:
        return "mapping"
    if origin is list:
        return "list"
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return "mapping"
        return {"str": "text", "int": "integer", "float": "number", "bool": "true/false"}.get(
            annotation.__name__, annotation.__name__)
    return str(annotation)


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        return "(see below)"
    value = field.default
    if value is None:
        return "—"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and any(getattr(m, "json_schema", None) for m in field.metadata):
        from .units import format_duration

        return f"`{format_duration(value)}`"
    if isinstance(value, int) and value >= 1024 * 1024 and value % (1024 * 1024) == 0:
        return f"`{value // (1024 * 1024)}MiB`"
    return f"`{value}`"


def reference_text() -> str:
    out = [
        "# Configuration reference",
        "",
        "Generated from the models in `agent/config.py` by `make docs`; a test fails when this",
        "file and the code disagree. One YAML file; unknown keys are errors (`edge-agent check`",
        "names the file, line and key, and suggests the closest valid key); a key given twice in",
        "one mapping is an error too (YAML would silently keep the last one). Durations accept",
        "`500ms`, `10s`, `5m`, `1h`; sizes accept `KiB`, `MiB`, `GiB`. The machine-readable form",
        "is [config/schema.json](../config/schema.json).",
        "",
    ]
    for title, model, blurb in SECTIONS:
        out += [f"## `{title}`", "", blurb, "", "| key | type | default | meaning |", "|---|---|---|---|"]
        fields = sorted(model.model_fields.items(), key=lambda kv: kv[0] != "type")
        for name, field in fields:
            desc = (field.description or "").replace("|", "\\|")
            out.append(f"| `{field.alias or name}` | {_field_type(field)} | {_default(field)} | {desc} |")
        out.append("")
    return "\n".join(out)


def write_all() -> list[Path]:
    written = []
    for path, text in ((SCHEMA_PATH, schema_text()), (REFERENCE_PATH, reference_text()),
                       (PROFILE_SCHEMA_PATH, profile_schema_text())):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    from drivers.catalog_doc import DOC_PATH, render_supported_devices

    devices = ROOT / DOC_PATH
    devices.write_text(render_supported_devices(), encoding="utf-8")
    written.append(devices)
    return written


if __name__ == "__main__":
    for p in write_all():
        print(f"wrote {p.relative_to(ROOT)}")
