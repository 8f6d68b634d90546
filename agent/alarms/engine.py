"""The alarm engine: every reading, as it is polled, moves each alarm of its device between
``ok``, ``pending`` and ``raised``; each raise and each clear is one event.

- ``above``/``below``: a value past the threshold makes the alarm *pending*; it is raised
  when it stayed pending for ``for`` (at once without ``for``). It stays pending, and once
  raised stays raised, until the value is back past ``clear_at`` (the threshold when not
  given): a value hovering around the threshold raises once and never flaps.
- ``rise``: the value minus the lowest value within the window reached the amount; it clears
  when the rise over the window is below the amount again.
- ``no_data``: the point had no valid value for that long (failed and offline polls still
  arrive as readings, so this works with the device dead); a valid value clears it.

Events are readings with status ``alarm`` handed to the outbox together with the set of
raised alarms they lead to (one transaction): an alarm raised before a restart is raised
still after it, and not raised again. ``pending`` is not kept across a restart.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from buffer.outbox import ALARM_STATUS
from drivers.reading import Reading

from .config import AlarmRule

log = logging.getLogger(__name__)

STATE_KEY = "alarms"  # the buffer's meta key for the raised alarms
Emit = Callable[[Reading, str], None]  # (event, state JSON) → the outbox, in one commit
Hasten = Callable[[str, float | None], None]  # (device, fast interval or None to restore)


@dataclass(slots=True)
class RuleState:
    state: str = "ok"  # ok | pending | raised
    since: int = 0  # ms: when it became pending, or was raised
    value: float | None = None  # the value at the last change of state
    threshold: float | None = None
    last_good: int = 0  # ms of the last valid value (no_data)
    history: deque[tuple[int, float]] = field(default_factory=deque)  # (ts, value) within a rise window
    clock: str | None = None  # the time base of last_good and history: None (UTC) or a boot id
    since_clock: str | None = None  # the time base of since


def rebase(st: RuleState, clock: str | None, ts: int, latest: Mapping[str | None, int]) -> None:
    """Move a rule's times onto the time base of a reading stamped ``ts`` on ``clock``.

    While the clock is not known good readings carry boot-clock times (agent/clock.py); when
    it becomes good (or jumps) the next reading is on another base. Times of the old base are
    shifted so that its latest reading falls on ``ts``: ``for:``, ``no_data`` and ``rise``
    keep counting across the change (losing at most one poll interval) instead of comparing
    a boot-clock ms with a UTC ms, and a raised alarm's ``since`` is not shown in 1970."""
    if st.clock != clock:
        prev = latest.get(st.clock)
        if prev is None:  # nothing seen on that base yet: start the timers afresh
            st.last_good = 0
            st.history.clear()
        else:
            delta = ts - prev
            st.last_good = st.last_good + delta if st.last_good else 0
            st.history = deque((t + delta, v) for t, v in st.history)
        st.clock = clock
    if st.since_clock != clock and st.state != "ok":
        prev = latest.get(st.since_clock)
        if prev is not None:
            st.since, st.since_clock = st.since + ts - prev, clock
        elif st.state == "pending":
            st.since, st.since_clock = ts, clock
        # a raised alarm restored from the buffer keeps its UTC since until UTC readings come


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one value says about a condition: past it (raise), back from it (clear), or neither."""

    raise_: bool
    clear: bool
    value: float | None
    threshold: float | None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def evaluate(rule: AlarmRule, st: RuleState, reading: Reading) -> Verdict | None:
    """The verdict of one reading on one rule; None when the reading says nothing about it."""
    value = _number(reading.values.get(rule.point))
    if rule.no_data is not None:
        if value is not None:
            st.last_good = reading.ts
            return Verdict(False, True, value, rule.no_data)
        st.last_good = st.last_good or reading.ts
        silent = (reading.ts - st.last_good) / 1000
        return Verdict(silent >= rule.no_data, False, None, rule.no_data)
    if value is None:
        return None
    if rule.above is not None:
        clear_at = rule.clear_at if rule.clear_at is not None else rule.above
        past = value > rule.above
        return Verdict(past, value < clear_at, value, rule.above if past else clear_at)
    if rule.below is not None:
        clear_at = rule.clear_at if rule.clear_at is not None else rule.below
        past = value < rule.below
        return Verdict(past, value > clear_at, value, rule.below if past else clear_at)
    assert rule.rise is not None
    st.history.append((reading.ts, value))
    horizon = reading.ts - rule.rise.window * 1000
    while st.history and st.history[0][0] < horizon:
        st.history.popleft()
    rise = value - min(v for _, v in st.history)
    return Verdict(rise >= rule.rise.amount, rise < rule.rise.amount, round(rise, 9), rule.rise.amount)


class AlarmEngine:
    def __init__(self, rules: Mapping[str, AlarmRule], emit: Emit, hasten: Hasten | None = None,
                 saved: Mapping[str, Any] | None = None) -> None:
        self.rules = dict(rules)
        self.emit = emit
        self._clock: str | None = None
        self._latest: dict[str | None, int] = {}  # the latest reading's ts on each time base
        self.hasten = hasten
        self.states = {name: RuleState() for name in self.rules}
        self.by_device: dict[str, list[str]] = {}
        for name, rule in self.rules.items():
            self.by_device.setdefault(rule.device, []).append(name)
        self._fast: dict[str, float | None] = {}
        for name, facts in (saved or {}).items():
            if name in self.states and isinstance(facts, dict):
                st = self.states[name]
                st.state, st.since = "raised", int(facts.get("since", 0))
                st.value, st.threshold = facts.get("value"), facts.get("threshold")
        self.version = 0
        self.published = (0, self._active_json())  # (version, retained payload), read by uplink threads
        for device in self.by_device:
            self._update_interval(device)

    # -- feeding ----------------------------------------------------------------------
    def feed(self, reading: Reading) -> None:
        names = self.by_device.get(reading.device)
        if not names:
            return
        self._clock = reading.clock  # an event is stamped like the reading that caused it (agent/clock.py)
        for name in names:
            rule, st = self.rules[name], self.states[name]
            rebase(st, reading.clock, reading.ts, self._latest)
            verdict = evaluate(rule, st, reading)
            if verdict is not None:
                self._step(name, rule, st, verdict, reading.ts)
        self._latest[reading.clock] = reading.ts
        self._update_interval(reading.device)

    def _step(self, name: str, rule: AlarmRule, st: RuleState, verdict: Verdict, ts: int) -> None:
        if st.state == "ok" and verdict.raise_:
            st.state, st.since, st.since_clock = "pending", ts, self._clock
            log.info("alarm %s: pending (%s = %s)", name, rule.point, verdict.value)
        if st.state == "pending":
            if verdict.clear and not verdict.raise_:
                st.state = "ok"
                log.info("alarm %s: no longer pending (%s = %s)", name, rule.point, verdict.value)
            elif ts - st.since >= rule.for_ * 1000:
                st.state, st.since, st.value, st.threshold = "raised", ts, verdict.value, verdict.threshold
                st.since_clock = self._clock
                self._event(name, rule, "raised", verdict, ts)
        elif st.state == "raised" and verdict.clear and not verdict.raise_:
            st.state, st.since, st.value, st.threshold = "ok", ts, verdict.value, verdict.threshold
            st.since_clock = self._clock
            self._event(name, rule, "cleared", verdict, ts)

    def _event(self, name: str, rule: AlarmRule, state: str, verdict: Verdict, ts: int) -> None:
        event = {"alarm": name, "state": state, "severity": rule.severity, "point": rule.point,
                 "value": verdict.value, "threshold": verdict.threshold}
        level = logging.WARNING if state == "raised" else logging.INFO
        log.log(level, "ALARM %s %s (%s): %s.%s = %s, threshold %s", name, state.upper(), rule.severity,
                 rule.device, rule.point, verdict.value, verdict.threshold)
        raised = {n: {"since": s.since, "value": s.value, "threshold": s.threshold}
                  for n, s in self.states.items() if s.state == "raised"}
        self.emit(Reading(rule.device, ts, event, ALARM_STATUS, clock=self._clock),  # type: ignore[arg-type]
                  json.dumps(raised))
        self.version += 1
        self.published = (self.version, self._active_json())

    def _update_interval(self, device: str) -> None:
        """The fastest fast_poll among the device's pending and raised alarms, or None."""
        fast = [self.rules[n].fast_poll for n in self.by_device.get(device, ())
                if self.states[n].state != "ok" and self.rules[n].fast_poll is not None]
        interval = min(f for f in fast if f is not None) if fast else None
        if self._fast.get(device) != interval:
            self._fast[device] = interval
            if self.hasten is not None:
                self.hasten(device, interval)

    def fast_interval(self, device: str) -> float | None:
        """The interval the device's pending and raised alarms ask for now (None: its own)."""
        return self._fast.get(device)

    # -- what is shown --------------------------------------------------------------------
    def active(self) -> list[dict[str, Any]]:
        """The raised alarms, oldest first."""
        out = [{"alarm": n, "device": self.rules[n].device, "point": self.rules[n].point,
                "severity": self.rules[n].severity, "since": s.since, "value": s.value, "threshold": s.threshold}
               for n, s in self.states.items() if s.state == "raised"]
        return sorted(out, key=lambda a: (a["since"], a["alarm"]))

    def _active_json(self) -> str:
        return json.dumps({"ts": int(time.time() * 1000), "active": self.active()}, separators=(",", ":"))

    def snapshot(self) -> list[dict[str, Any]]:
        """Every rule with its state (the control socket's ``alarms`` operation)."""
        return [{"alarm": n, "device": r.device, "point": r.point, "condition": r.describe(),
                 "severity": r.severity, "fast_poll": r.fast_poll, "state": self.states[n].state,
                 "since": self.states[n].since or None, "value": self.states[n].value}
                for n, r in self.rules.items()]
