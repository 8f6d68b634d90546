"""The device catalog: profiles shipped under ``drivers/profiles/<vendor>/<model>.yaml``.

A config names a profile by catalog name or by a path to a YAML file; both resolve here.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from . import protocols
from .profile import Profile
from .yamlsource import Problem, SourceError, did_you_mean, load_source, validate

CATALOG_DIR = Path(__file__).parent / "profiles"


def load_profile_file(path: str | Path) -> Profile:
    """Load and validate one profile file. Raises SourceError with located problems."""
    source = load_source(path)
    name = source.data.get("protocol", protocols.DEFAULT) if isinstance(source.data, dict) else protocols.DEFAULT
    try:
        protocol = protocols.get(str(name))
    except protocols.UnknownProtocol as exc:
        raise SourceError([Problem(source.file, source.line_of(("protocol",)), "protocol", str(exc))]) from None
    profile: Profile = validate(protocol.profile_model, source)
    found = protocol.profile_problems(profile) if protocol.profile_problems else []
    if found:
        raise SourceError([Problem(source.file, source.line_of(("points", point, key)), f"points.{point}.{key}", why)
                           for point, key, why in found])
    return profile


@cache
def catalog() -> dict[str, Path]:
    """Catalog name → file, for every profile shipped with the agent."""
    out: dict[str, Path] = {}
    for path in sorted(CATALOG_DIR.rglob("*.yaml")):
        if path.name.endswith(".fixture.yaml"):
            continue
        name = load_profile_file(path).name
        if name in out:
            raise SourceError([Problem(str(path), 1, "name", f"profile name '{name}' is already used by {out[name]}")])
        out[name] = path
    return out


def looks_like_path(ref: str) -> bool:
    return "/" in ref or ref.endswith((".yaml", ".yml"))


def resolve_profile(ref: str, base_dir: Path | None = None) -> Profile:
    """A profile by catalog name, or by path (relative to ``base_dir``, the config's folder)."""
    if looks_like_path(ref):
        path = Path(ref)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        return _profile_file(path)
    names = catalog()
    if ref not in names:
        raise LookupError(f"unknown profile '{ref}'{did_you_mean(ref, names)}")
    return _cached_catalog_profile(ref)


_PROFILE_FILES: dict[tuple[Path, int, int], Profile] = {}  # (resolved file, mtime, size) → profile
_PROFILE_FILES_MAX = 64


def _profile_file(path: Path) -> Profile:
    """One profile object for every device that names the same unchanged file (fifty meters
    of one model share one), loaded again when the file changes. Errors name the file as
    the config gave it."""
    try:
        stat = path.stat()
    except OSError:
        raise SourceError([Problem(str(path), 0, "", "profile file not found")]) from None
    key = (path.resolve(), stat.st_mtime_ns, stat.st_size)
    profile = _PROFILE_FILES.get(key)
    if profile is None:
        profile = load_profile_file(path)
        if len(_PROFILE_FILES) >= _PROFILE_FILES_MAX:
            _PROFILE_FILES.clear()
        _PROFILE_FILES[key] = profile
    return profile


@cache
def _cached_catalog_profile(name: str) -> Profile:
    return load_profile_file(catalog()[name])
