"""The limit: a bare aiokafka loop consume -> orjson decode -> produce, at-least-once.

Run as its own process (like the worker): `python -m benchmarks.passthrough ...`.
Per fetched batch it decodes every value, sends the original bytes to the output
topic, waits for the broker's acks (acks=all) and only then commits the offsets:
the same delivery contract the rater keeps, without any rating. It stops after
`--count` records or when `--timeout` runs out.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


async def run(args: argparse.Namespace) -> int:
    consumer = AIOKafkaConsumer(
        args.input, bootstrap_servers=args.bootstrap, group_id=args.group,
        enable_auto_commit=False, auto_offset_reset="earliest",
        max_partition_fetch_bytes=2 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024,
    )
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, acks="all", linger_ms=5,
                                max_batch_size=256 * 1024)
    await consumer.start()
    await producer.start()
    done = 0
    deadline = time.monotonic() + args.timeout
    loads = orjson.loads
    try:
        while done < args.count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=args.max_records)
            pending = []
            for messages in batch.values():
                for message in messages:
                    try:  # noqa: SIM105 (cheaper than contextlib.suppress per record)
                        loads(message.value)
                    except orjson.JSONDecodeError:
                        pass
                    pending.append(await producer.send(args.output, message.value,
                                                       message.key))
            if pending:
                await asyncio.gather(*pending)
                await consumer.commit()
                done += len(pending)
    finally:
        await producer.stop()
        await consumer.stop()
    print(orjson.dumps({"processed": done}).decode(), flush=True)
    return 0 if done >= args.count else 1


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--max-records", type=int, default=2000)
    parser.add_argument("--timeout", type=float, default=120.0)
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
