"""How long Redis keeps a request waiting: `PING` round trips at a fixed interval from a
process of its own that does nothing else (benchmark only).

`python -m benchmarks.redis_probe --port 6379 --seconds 10 [--interval-ms 2]` prints one
JSON line: percentiles of the round trip in ms. Redis runs one command (or one Lua
script) at a time and, with `appendfsync always`, fsyncs the AOF before it answers
anything written in the same event-loop turn, so a PING that arrives while a rating
script runs or the AOF is being synced waits for it: the same wait an authorize
request's Redis read sees, without the worker's event loop in the way.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time

import orjson


def probe(host: str, port: int, seconds: float, interval_s: float) -> dict[str, object]:
    rtts: list[float] = []
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and len(rtts) < 1_000_000:
            started = time.perf_counter()
            sock.sendall(b"PING\r\n")
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = sock.recv(64)
                if not chunk:
                    raise ConnectionError("Redis closed the connection")
                reply += chunk
            rtts.append((time.perf_counter() - started) * 1000)
            time.sleep(interval_s)
    rtts.sort()
    n = len(rtts)

    def at(q: float) -> float | None:
        return round(rtts[min(n - 1, int(q * n))], 3) if n else None

    return {"n": n, "p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "p999": at(0.999),
            "max": round(rtts[-1], 3) if n else None,
            "over_5ms": sum(1 for r in rtts if r >= 5.0),
            "over_20ms": sum(1 for r in rtts if r >= 20.0)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6379)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--interval-ms", type=float, default=2.0)
    args = parser.parse_args()
    if not 0 < args.seconds <= 900 or not 0.1 <= args.interval_ms <= 1000:
        parser.error("seconds in (0, 900], interval-ms in [0.1, 1000]")
    result = probe(args.host, args.port, args.seconds, args.interval_ms / 1000)
    print(orjson.dumps(result).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
