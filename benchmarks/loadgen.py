"""Open-loop HTTP load generator (its own process): POST at a fixed rate for a fixed time.

`python -m benchmarks.loadgen --url URL --rate 2000 --seconds 10 [--token T] --bodies FILE`

Request i is due at start + i/rate whatever happened to earlier ones; its latency is
counted from that due time, so a server that falls behind shows it in the tail
(no coordinated omission). Prints one JSON line: sent, ok, errors by status,
achieved rate, p50/p90/p99/max latency in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter

import aiohttp
import orjson


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


async def run(args: argparse.Namespace) -> dict[str, object]:
    with open(args.bodies, "rb") as source:
        bodies = [line for line in source.read().splitlines() if line]
    headers = {"Content-Type": "application/json"}
    if args.token:
        headers["Authorization"] = f"Bearer {args.token}"
    connector = aiohttp.TCPConnector(limit=args.connections, force_close=False)
    timeout = aiohttp.ClientTimeout(total=10)
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    tasks: list[asyncio.Task[None]] = []
    async with aiohttp.ClientSession(connector=connector, headers=headers,
                                     timeout=timeout) as session:

        async def one(body: bytes, due: float) -> None:
            try:
                async with session.post(args.url, data=body) as answer:
                    await answer.read()
                    statuses[str(answer.status)] += 1
                    if answer.status == 200:
                        latencies.append((time.perf_counter() - due) * 1000)
            except (aiohttp.ClientError, TimeoutError) as exc:
                statuses[type(exc).__name__] += 1

        # warm the connection pool without counting it
        await asyncio.gather(*(one(bodies[i % len(bodies)], time.perf_counter())
                               for i in range(min(args.connections, 50))))
        latencies.clear()
        statuses.clear()
        started = time.perf_counter()
        sent = 0
        total = int(args.rate * args.seconds)
        while sent < total:
            now = time.perf_counter()
            due_count = min(total, int((now - started) * args.rate) + 1)
            while sent < due_count:
                due = started + sent / args.rate
                tasks.append(asyncio.create_task(one(bodies[sent % len(bodies)], due)))
                sent += 1
            await asyncio.sleep(0.001)
        await asyncio.wait(tasks, timeout=30)
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "target_rate": args.rate, "seconds": args.seconds, "sent": sent,
        "ok": len(latencies), "statuses": dict(statuses),
        "achieved_rate": round(len(latencies) / elapsed, 1),
        "p50_ms": percentile(latencies, 0.5), "p90_ms": percentile(latencies, 0.9),
        "p99_ms": percentile(latencies, 0.99), "max_ms": latencies[-1] if latencies else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--bodies", required=True)
    parser.add_argument("--token", default="")
    parser.add_argument("--rate", type=float, default=2000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    if not 0 < args.rate <= 20_000 or not 0 < args.seconds <= 900:
        parser.error("rate must be in (0, 20000] and seconds in (0, 900]")
    print(orjson.dumps(asyncio.run(run(args))).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
