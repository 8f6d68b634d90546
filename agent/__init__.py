"""edge-agent: the agent side of the pipeline (config, scheduler, uplinks, CLI)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("edge-agent")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+src"
