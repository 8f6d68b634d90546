"""YAML with line marks, and validation problems as ``FILE:LINE: dotted.path: message``.

Config files and profile files both come in through here, so a technician sees the same
kind of message for a misspelt key in either.
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

PathKey = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class SourceError(Exception):
    """A file could not be loaded or validated; ``problems`` lists every finding."""

    def __init__(self, problems: list[Problem], warnings: list[Problem] | None = None) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems
        self.warnings = warnings or []  # found beside the problems, e.g. by `edge-agent check`


@dataclass(slots=True)
class Source:
    """A loaded YAML document: its data and the line of every mapping key."""

    file: str
    data: Any
    lines: dict[PathKey, int]

    def line_of(self, path: PathKey) -> int:
        """Line of the deepest known key along ``path`` (1-based; 0 if unknown)."""
        for i in range(len(path), -1, -1):
            line = self.lines.get(path[:i])
            if line:
                return line
        return 0


def _walk(node: yaml.Node, path: PathKey, lines: dict[PathKey, int], dups: list[tuple[PathKey, int, int]]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen and key != "<<":
                dups.append(((*path, key), seen[key], line))
            seen[key] = line
            lines[(*path, key)] = line
            _walk(value_node, (*path, key), lines, dups)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*path, str(i))] = item.start_mark.line + 1
            _walk(item, (*path, str(i)), lines, dups)


def load_source(path: str | Path) -> Source:
    """Parse a YAML file, keeping the line of every key. Raises SourceError."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SourceError([Problem(file, 0, "", f"cannot read: {exc.strerror or exc}")]) from exc
    return parse_source(text, file)


def parse_source(text: str, file: str) -> Source:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark else 0
        raise SourceError([Problem(file, line, "", f"YAML syntax: {exc.problem}")]) from exc
    except yaml.YAMLError as exc:
        raise SourceError([Problem(file, 0, "", f"YAML: {exc}")]) from exc
    lines: dict[PathKey, int] = {(): 1}
    dups: list[tuple[PathKey, int, int]] = []
    if node is not None:
        _walk(node, (), lines, dups)
    if dups:  # YAML would keep the last one silently: a second `dust-1` replaces the first
        raise SourceError([Problem(file, line, ".".join(key), f"duplicate key '{key[-1]}' (first at line {first});"
                                   " each key may appear once") for key, first, line in dups])
    return Source(file, data if data is not None else {}, lines)


def did_you_mean(word: str, choices: typing.Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{match[0]}'?" if match else ""


def _unwrap(annotation: Any) -> Any:
    """Strip Annotated and Optional around an annotation."""
    while True:
        origin = get_origin(annotation)
        if origin is typing.Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def _pick_model(annotation: Any, data: Any) -> type[BaseModel] | None:
    """The model an annotation stands for, choosing a union member by the data's ``type``."""
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        tag = data.get("type") if isinstance(data, dict) else None
        for m in members:
            if _tag_of(m) == tag:
                return m
    return None


def _model_at(model: type[BaseModel], path: PathKey, data: Any) -> type[BaseModel] | None:
    """The model that validates the mapping at ``path`` of ``data``."""
    current: Any = model
    i = 0
    while i < len(path):
        m = _pick_model(current, data)
        if m is None:
            return None
        field = m.model_fields.get(path[i])
        if field is None:
            return None
        data = data.get(path[i]) if isinstance(data, dict) else None
        current = _unwrap(field.annotation)
        i += 1
        if get_origin(current) in (dict, list) and i < len(path):
            current = get_args(current)[-1]
            data = data.get(path[i]) if isinstance(data, dict) else None
            i += 1
    return _pick_model(current, data)


def _tag_of(model: type[BaseModel]) -> str | None:
    field = model.model_fields.get("type")
    if field is None:
        return None
    args = get_args(field.annotation)
    return str(args[0]) if get_origin(field.annotation) is typing.Literal and args else None


def _clean_loc(loc: tuple[Any, ...], data: Any) -> tuple[str, ...]:
    """Map a pydantic error location onto the YAML path, dropping union tags it inserts."""
    out: list[str] = []
    for part in loc:
        s = str(part)
        if isinstance(data, dict) and s in data:
            out.append(s)
            data = data[s]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            out.append(s)
            data = data[part]
        elif isinstance(data, dict) and data.get("type") == s:
            continue  # discriminated-union tag
        elif s.startswith(("function-", "union[", "tagged-union[")):
            continue
        else:
            out.append(s)
            data = None
    return tuple(out)


def problems_from(exc: ValidationError, model: type[BaseModel], source: Source) -> list[Problem]:
    """Turn a pydantic error into located, technician-readable problems."""
    problems: list[Problem] = []
    for err in exc.errors(include_url=False):
        raw_loc = tuple(err["loc"])
        loc = _clean_loc(raw_loc, source.data)
        dotted = ".".join(loc)
        kind = err["type"]
        msg = err["msg"]
        if kind == "extra_forbidden":
            parent = _model_at(model, loc[:-1], source.data)
            allowed = [f.alias or n for n, f in parent.model_fields.items()] if parent else []
            foreign: dict[str, str] = getattr(parent, "foreign_keys", {}) if parent else {}
            msg = f"unknown key{did_you_mean(loc[-1], allowed)}"
            if loc[-1] in foreign:
                msg = f"'{loc[-1]}' {foreign[loc[-1]]}" if not foreign[loc[-1]][0].isupper() else foreign[loc[-1]]
            elif allowed and "did you mean" not in msg:
                msg += f" (allowed: {', '.join(sorted(allowed))})"
        elif kind == "missing":
            msg = "required key is missing"
        elif kind == "union_tag_invalid":
            ctx = err.get("ctx") or {}
            tag = str(ctx.get("tag", ""))
            expected = str(ctx.get("expected_tags", "")).replace("'", "").split(", ")
            msg = f"unknown type '{tag}'{did_you_mean(tag, expected)} (expected one of: {', '.join(expected)})"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        problems.append(Problem(source.file, source.line_of(loc), dotted, msg))
    return problems


def validate(model: type[BaseModel], source: Source, context: dict[str, Any] | None = None) -> Any:
    """Validate ``source.data`` against ``model``; raise SourceError with located problems."""
    if not isinstance(source.data, dict):
        raise SourceError([Problem(source.file, 1, "", "expected a mapping at the top level")])
    try:
        return model.model_validate(source.data, context=context)
    except ValidationError as exc:
        raise SourceError(problems_from(exc, model, source)) from exc
