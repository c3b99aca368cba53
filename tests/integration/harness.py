"""A real worker process and real Kafka I/O for integration, fault and benchmark runs.

`Deployment` gives each test module its own topic prefix, app id (consumer
group and Redis key prefix) and web port, so modules never share state.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from rater.config import Settings
from rater.kafka import TopicReader, ensure_topics, producer

REPO = Path(__file__).resolve().parents[2]
LOG_DIR = REPO / "rater-data" / "test-logs"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Deployment:
    """One isolated rater deployment on the shared local stack."""

    name: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:10]}")
    extra_env: dict[str, str] = field(default_factory=dict)
    partitions: int = 3

    def env(self, **more: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RATER_")}
        env.update({
            "RATER_KAFKA_BOOTSTRAP": os.environ.get("RATER_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
            "RATER_REDIS_URL": os.environ.get("RATER_REDIS_URL", "redis://127.0.0.1:6379/0"),
            "RATER_REDIS_CLUSTER": os.environ.get("RATER_REDIS_CLUSTER", "0"),
            "RATER_APP_ID": self.name,
            "RATER_TOPIC_PREFIX": f"{self.name}.",
            "RATER_TOPIC_PARTITIONS": str(self.partitions),
            "RATER_STARTUP_RETRY_S": "20",
        })
        env.update(self.extra_env)
        env.update(more)
        return env

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.env())

    async def create_topics(self) -> None:
        await ensure_topics(self.settings)


class Worker:
    """`rater worker` in a subprocess, its log in rater-data/test-logs/."""

    def __init__(
        self, deployment: Deployment, port: int | None = None,
        command: list[str] | None = None, **env: str,
    ) -> None:
        self.deployment = deployment
        self.command = command or [sys.executable, "-m", "rater.cli", "worker"]
        self.port = port or free_port()
        self.env = deployment.env(RATER_WEB_PORT=str(self.port), **env)
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{deployment.name}-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait_ready: bool = True, timeout: float = 90.0) -> Worker:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command,
            env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
            start_new_session=True,
        )
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                code = self.process.returncode
                raise AssertionError(f"worker exited with {code}:\n{self.tail()}")
            if self.http_status("/readyz") == 200:
                return
            time.sleep(0.5)
        raise AssertionError(f"worker not ready after {timeout:.0f}s:\n{self.tail()}")

    def http_status(self, path: str) -> int | None:
        try:
            with urllib.request.urlopen(self.url + path, timeout=2) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except OSError:
            return None

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=5) as answer:
            body: bytes = answer.read()
            return body

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()


@contextlib.asynccontextmanager
async def running_worker(deployment: Deployment, **env: str) -> AsyncIterator[Worker]:
    """Topics created, a worker started and ready; stopped on exit (a module fixture body)."""
    await deployment.create_topics()
    worker = Worker(deployment, **env).start()
    try:
        yield worker
    finally:
        worker.stop()


async def produce(
    settings: Settings, topic: str, records: Iterable[tuple[bytes | None, bytes]]
) -> int:
    out = producer(settings)
    await out.start()
    count = 0
    try:
        pending = []
        for key, value in records:
            pending.append(await out.send(topic, value=value, key=key))
            count += 1
        await asyncio.gather(*pending)
    finally:
        await out.stop()
    return count


async def consume(
    settings: Settings,
    topics: list[str],
    done: Callable[[dict[str, list[Any]]], bool],
    timeout: float = 60.0,
    decode: bool = True,
) -> dict[str, list[Any]]:
    """Read `topics` from the beginning until `done(seen)` holds; fail after `timeout`."""
    seen: dict[str, list[Any]] = {t: [] for t in topics}
    deadline = time.monotonic() + timeout
    async with TopicReader(settings.kafka_bootstrap, topics) as reader:
        while not done(seen):
            if time.monotonic() > deadline:
                counts = {t: len(v) for t, v in seen.items()}
                raise AssertionError(f"timed out after {timeout:.0f}s waiting; seen {counts}")
            for m in await reader.batch():
                seen[m.topic].append(orjson.loads(m.value) if decode else m)
    return seen
