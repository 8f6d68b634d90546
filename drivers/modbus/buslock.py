"""The lock that makes a bus single-owner, with a back seat for slaves that stopped answering.

Waiters are served first come, first served, except that a *low* waiter (a request to a unit
whose last request timed out) lets normal waiters go first, and arrives a moment late
(``grace``) so that polls due at the same instant queue ahead of it. A dead slave's retry then
runs in the bus's idle time instead of making the live slaves wait for its timeout. On a bus
that is never idle a low waiter goes first once it has waited ``promote_after`` seconds, so
it is late but never starved.
"""

from __future__ import annotations

import asyncio
from collections import deque


class BusLock:
    def __init__(self, grace: float = 0.01, promote_after: float = 2.0) -> None:
        self.grace = grace
        self.promote_after = promote_after
        self._locked = False
        self._normal: deque[asyncio.Future[None]] = deque()
        self._low: deque[tuple[float, asyncio.Future[None]]] = deque()

    def locked(self) -> bool:
        return self._locked

    async def acquire(self, low: bool = False) -> None:
        loop = asyncio.get_running_loop()
        if low and self.grace:
            await asyncio.sleep(self.grace)
        if not self._locked and not self._normal and (low or not self._low):
            self._locked = True
            return
        fut: asyncio.Future[None] = loop.create_future()
        entry = (loop.time(), fut)
        if low:
            self._low.append(entry)
        else:
            self._normal.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # the lock was handed to us as we were cancelled: pass it on
            elif low:
                self._low.remove(entry)
            else:
                self._normal.remove(fut)
            raise

    def release(self) -> None:
        now = asyncio.get_running_loop().time()
        while self._low and (self._low[0][1].done() or now - self._low[0][0] >= self.promote_after):
            _, fut = self._low.popleft()
            if not fut.done():
                fut.set_result(None)  # waited long enough: handed over, stays locked
                return
        while self._normal:
            fut = self._normal.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        while self._low:
            _, fut = self._low.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self._locked = False
