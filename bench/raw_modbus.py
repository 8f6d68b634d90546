"""The poll path's limit: a bare pymodbus TCP client per device doing the agent's requests
on the agent's schedule, nothing else (no decoding, buffer, MQTT). Run as a process:

    python -m bench.raw_modbus --port 5020 --units 50 --seconds 20 --plan '[[3,0,20],[4,0,20]]'

prints one JSON line as soon as the measured window ends: CPU seconds of this process and
transactions in that window.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from pymodbus.client import AsyncModbusTcpClient


async def poll_unit(client: AsyncModbusTcpClient, unit: int, plan: list[tuple[int, int, int]],
                    interval: float, counts: dict[str, int]) -> None:
    calls = {1: client.read_coils, 2: client.read_discrete_inputs, 3: client.read_holding_registers,
             4: client.read_input_registers}
    next_at = time.monotonic()
    while True:
        for fc, address, count in plan:
            try:
                rr = await calls[fc](address, count=count, device_id=unit)
                counts["errors" if rr.isError() else "ok"] += 1
            except Exception:
                counts["errors"] += 1
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    plan = [tuple(p) for p in json.loads(args.plan)]
    clients = [AsyncModbusTcpClient("127.0.0.1", port=args.port, timeout=0.5, retries=1, name=f"raw-{u}",
                                    reconnect_delay=0, reconnect_delay_max=0)
               for u in range(1, args.units + 1)]
    for c in clients:
        if not await asyncio.wait_for(c.connect(), 5):
            raise SystemExit(f"bench.raw_modbus: cannot connect to 127.0.0.1:{args.port}")
    counts = {"ok": 0, "errors": 0}
    tasks = [asyncio.create_task(poll_unit(c, u, plan, args.interval, counts))
             for u, c in enumerate(clients, start=1)]
    await asyncio.sleep(args.warmup)
    cpu0, t0, n0 = time.process_time(), time.monotonic(), counts["ok"] + counts["errors"]
    await asyncio.sleep(args.seconds)
    cpu1, t1, n1 = time.process_time(), time.monotonic(), counts["ok"] + counts["errors"]
    result = {"cpu_s": cpu1 - cpu0, "seconds": t1 - t0, "transactions": n1 - n0, "errors": counts["errors"]}
    # the figures go out before the teardown, which once hung in pymodbus: they must not depend on it
    print(json.dumps(result), flush=True)
    for t in tasks:
        t.cancel()
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
    for c in clients:
        c.close()
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--units", type=int, required=True)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--plan", required=True, help="JSON list of [function_code, address, count]")
    args = p.parse_args()
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
