"""What arrives on an RTU line, judged against the request in flight.

pymodbus's RTU framer drops a frame with a bad CRC without a word and lets the request time
out; garbage is hunted through the same way. This class sits in the client's
``trace_packet`` hook, sees every byte first, and hands the framer only a frame it has
checked (unit, function, byte count, CRC). Everything else becomes a typed verdict:
``crc_error`` or ``short_frame`` as soon as the frame is complete or the line falls quiet,
``garbage`` when bytes that form no frame for us stop arriving. Until it accepts, the hook
returns nothing to the framer, so pymodbus keeps the whole receive buffer and each call
shows every byte since the request went out.

RTU has no transaction id. A slave that answers after the timeout puts its answer on the
line while the master waits for the next one; if the next request to that slave has the
same function and byte count, the late answer would be read as its values. So every request
sent is remembered per unit until it is answered or ``late_window`` has passed; an arriving
frame is matched to the oldest request it can answer (function and byte count). :meth:`conflict`
tells the bus to hold back a request while a *different* request of the same shape may still
be answered, so all requests a frame could answer ask for the same registers, and a frame is
accepted only if it matches the request in flight.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from ..errors import CrcError, DriverError, GarbageFrame, NoResponse, ShortFrame
from .wire import BAD, FRAME, NEED, Expected, answers, frame_at, shape_of


@dataclass(slots=True, eq=False)
class Sent:
    key: tuple[int, int, int]  # (function, address, count)
    fc: int
    data_bytes: int
    expires: float


@dataclass(slots=True)
class LineStats:
    late_frames: int = 0  # late answers recognised and discarded
    stray_frames: int = 0  # well-formed frames nobody asked for
    held_back: int = 0  # requests delayed because a same-shaped answer was still owed


class RtuLine:
    def __init__(self, quiet_gap: float, late_window: float) -> None:
        self.quiet_gap = quiet_gap
        self.late_window = late_window
        self.stats = LineStats()
        self.last_rx = 0.0
        self._owed: dict[int, deque[Sent]] = {}
        self._expect: Expected | None = None
        self._current: Sent | None = None
        self._verdict: asyncio.Future[DriverError] | None = None
        self._buf = b""
        self._handled: set[int] = set()
        self._leftover = b""
        self._done = False
        self._quiet: asyncio.TimerHandle | None = None
        self.received_any = False

    # -- the bus's side ---------------------------------------------------------------------

    def begin(self, expect: Expected, verdict: asyncio.Future[DriverError]) -> None:
        self._expect = expect
        self._verdict = verdict
        self._done = False
        self.received_any = False

    def end(self) -> None:
        self._expect = None
        self._verdict = None
        self._current = None
        if self._quiet is not None:
            self._quiet.cancel()
            self._quiet = None

    def conflict(self, unit: int, expect: Expected, now: float) -> float:
        """Seconds to hold back ``expect``: until no different request of its shape is owed by ``unit``."""
        q = self._owed.get(unit)
        if not q:
            return 0.0
        self._expire(q, now)
        wait = 0.0
        for s in q:
            if s.key != expect.key and s.fc == expect.fc and s.data_bytes == expect.data_bytes:
                wait = max(wait, s.expires - now)
        return wait

    def failure(self) -> DriverError:
        """The error for an attempt that ended without an accepted frame (pymodbus timed out)."""
        exp = self._expect
        assert exp is not None
        verdict = self._classify_leftover(final=True)
        return verdict or NoResponse(f"unit {exp.unit}: no answer to fc{exp.fc} @{exp.address}+{exp.count}")

    def answered(self) -> None:
        """The slave answered the request in flight (badly): it owes nothing for it any more."""
        exp = self._expect
        if exp is not None and self._current is not None:
            q = self._owed.get(exp.unit)
            if q is not None:
                for j, s in enumerate(q):
                    if s is self._current:
                        del q[j]
                        break

    async def quiet(self, limit: float) -> None:
        """Wait until nothing has arrived for ``quiet_gap`` (at most ``limit`` seconds): a resync."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while True:
            now = loop.time()
            rest = self.last_rx + self.quiet_gap - now
            if rest <= 0 or now >= deadline:
                return
            await asyncio.sleep(min(rest, deadline - now))

    # -- pymodbus's side: the trace_packet hook -----------------------------------------------

    def trace(self, sending: bool, data: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if sending:
            self._buf, self._leftover = b"", b""
            self._handled = set()
            exp = self._expect
            if exp is not None and len(data) >= 2 and data[0] == exp.unit:
                self._current = Sent(exp.key, exp.fc, exp.data_bytes, now + self.late_window)
                self._owed.setdefault(exp.unit, deque()).append(self._current)
            return data
        self.last_rx = now
        if data.startswith(self._buf):
            self._buf = data
        else:  # pymodbus dropped its buffer (overflow) or cut it after our answer
            self._buf, self._handled = data, set()
        if self._expect is None or self._done:
            self._scan(now)
            return b""
        self.received_any = True
        accepted = self._scan(now)
        if accepted is not None:
            self._done = True
            return accepted
        if self._leftover and not self._done:
            if self._quiet is not None:
                self._quiet.cancel()
            self._quiet = loop.call_later(self.quiet_gap, self._on_quiet)
        return b""

    # -- internals ----------------------------------------------------------------------------

    def _expire(self, q: deque[Sent], now: float) -> None:
        while q and q[0].expires <= now:
            q.popleft()

    def _attribute(self, frame: bytes, now: float) -> Sent | None:
        """The oldest request still owed by the frame's unit that the frame can answer."""
        q = self._owed.get(frame[0])
        if not q:
            return None
        self._expire(q, now)
        shape = shape_of(frame)
        for j, s in enumerate(q):
            if answers(shape, s.fc, s.data_bytes):
                del q[j]
                return s
        return None

    def _scan(self, now: float) -> bytes | None:
        """Walk the buffer: attribute complete frames once, accept ours, judge the rest."""
        buf, exp = self._buf, self._expect
        leftover = bytearray()
        accepted: bytes | None = None
        i = 0
        while i < len(buf):
            st, n = frame_at(buf, i)
            if st == FRAME:
                if i not in self._handled:
                    self._handled.add(i)
                    frame = buf[i : i + n]
                    if self._on_frame(frame, now) is not None:
                        accepted = frame
                        self._done = True  # frames after ours are still attributed
                i += n
                continue
            if exp is not None and not self._done and buf[i] == exp.unit and len(buf) - i >= 2:
                fc = buf[i + 1]
                ours = (len(buf) - i >= 3 or fc != exp.fc) and exp.owns(fc, buf[i + 2] if len(buf) - i >= 3 else -1)
                if ours and st == BAD and any(frame_at(buf, j)[0] == FRAME for j in range(i + 1, i + n)):
                    self._finish(ShortFrame(f"unit {exp.unit}: the answer to fc{exp.fc} @{exp.address}+"
                                            f"{exp.count} is cut short by another frame"), answered=True)
                    return None
                if ours and st == BAD:
                    self._finish(CrcError(f"unit {exp.unit}: CRC error in the answer to fc{exp.fc} "
                                          f"@{exp.address}+{exp.count}"), answered=True)
                    return None
                if ours and st == NEED:
                    leftover += buf[i:]  # the rest of our frame is on its way
                    break
            leftover.append(buf[i])
            i += 1
        self._leftover = bytes(leftover)
        return accepted

    def _on_frame(self, frame: bytes, now: float) -> bytes | None:
        exp = self._expect
        sent = self._attribute(frame, now)
        if exp is None or self._done or frame[0] != exp.unit:
            if sent is None:
                self.stats.stray_frames += 1
            else:
                self.stats.late_frames += 1
            return None
        if sent is not None and sent.key == exp.key:
            return frame
        if sent is not None:
            self.stats.late_frames += 1
            return None
        self.stats.stray_frames += 1
        if frame[1] & 0x7F == exp.fc:
            self._finish(ShortFrame(f"unit {exp.unit}: {frame[2]} data bytes for fc{exp.fc} "
                                    f"@{exp.address}+{exp.count}, expected {exp.data_bytes}"), answered=True)
        return None

    def _on_quiet(self) -> None:
        self._quiet = None
        if self._expect is None or self._done:
            return
        verdict = self._classify_leftover(final=False)
        if verdict is not None:
            self._finish(verdict, answered=isinstance(verdict, ShortFrame))

    def _classify_leftover(self, final: bool) -> DriverError | None:
        exp = self._expect
        left = self._leftover
        if exp is None or not left:
            return None
        if left[0] == exp.unit and len(left) >= 2 and left[1] in (exp.fc, exp.fc | 0x80):
            return ShortFrame(f"unit {exp.unit}: {len(left)} bytes of a {exp.length}-byte answer to "
                              f"fc{exp.fc} @{exp.address}+{exp.count}")
        if final or len(left) >= 3:
            return GarbageFrame(f"unit {exp.unit}: {len(left)} bytes that are no answer to fc{exp.fc} "
                                f"@{exp.address}+{exp.count}: {left[:16].hex(' ')}")
        return None

    def _finish(self, error: DriverError, answered: bool) -> None:
        self._done = True
        if answered:
            self.answered()
        if self._verdict is not None and not self._verdict.done():
            self._verdict.set_result(error)
