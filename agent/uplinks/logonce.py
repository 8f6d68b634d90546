"""Logging a state change once: an uplink that keeps failing the same way says so once,
and its repeats go to debug until the uplink forgets the key (e.g. on a new connection)."""

from __future__ import annotations

import logging
from typing import ClassVar


class LogsOnce:
    """A mixin: ``_logged`` holds the keys already said, ``_once_log`` is the logger."""

    _once_log: ClassVar[logging.Logger]
    _logged: set[str]

    def _log_once(self, level: int, key: str, msg: str, *args: object) -> None:
        """Log a state change once; repeats go to debug."""
        if key in self._logged:
            self._once_log.debug(msg, *args)
            return
        self._logged.add(key)
        self._once_log.log(level, msg, *args)
