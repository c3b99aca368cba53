"""The fault suite's own Kafka + Redis (and Redis Cluster), on ports of their own.

Other people run tests on the default stack (Kafka 9092, Redis 6379) while
this suite kills brokers and Redis servers, so everything here runs on a
separate instance of `deploy/local/stack` (Kafka 19092/19093, Redis 16379,
data in rater-data/faults/stack) and a 3-primary Redis Cluster from
`deploy/local/redis-cluster` (17001-17003), both started and stopped by the
suite. Ports can be moved with FAULTS_KAFKA_PORT, FAULTS_KAFKA_CONTROLLER_PORT,
FAULTS_REDIS_PORT and FAULTS_CLUSTER_PORTS.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

REPO = Path(__file__).resolve().parents[2]
STACK = REPO / "deploy" / "local" / "stack"
CLUSTER = REPO / "deploy" / "local" / "redis-cluster"
SHIM_SOURCE = Path(__file__).resolve().parent / "fsync_tracker.c"
# outside deploy/ (tests/deploy walks it) and git-ignored; kept after a run for post-mortems
DATA = REPO / "rater-data" / "faults"


def _clean_env(**more: str) -> dict[str, str]:
    drop = ("RATER_", "KAFKA_", "REDIS_", "PG_", "LD_PRELOAD", "FSYNC_TRACKER")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(more)
    return env


def process_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting for its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while process_alive(pid):
        if time.monotonic() > deadline:
            raise AssertionError(f"process {pid} still alive after {timeout:.0f}s")
        time.sleep(0.05)


def read_pid(path: Path) -> int:
    text = path.read_text().strip() if path.exists() else ""
    if not text.isdigit():
        raise AssertionError(f"no pid in {path}")
    return int(text)


@dataclass
class FaultStack:
    """One Kafka broker and one Redis, driven through deploy/local/stack."""

    kafka_port: int = int(os.environ.get("FAULTS_KAFKA_PORT", "19092"))
    controller_port: int = int(os.environ.get("FAULTS_KAFKA_CONTROLLER_PORT", "19093"))
    redis_port: int = int(os.environ.get("FAULTS_REDIS_PORT", "16379"))
    # never started here (up --no-pg), but `down` looks at its port: not the shared 5432
    pg_port: int = int(os.environ.get("FAULTS_PG_PORT", "15432"))
    directory: Path = field(default_factory=lambda: DATA / "stack")
    appendfsync: str = "always"

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def redis_dir(self) -> Path:
        return self.directory / "redis"

    @property
    def aof_dir(self) -> Path:
        return self.redis_dir / "appendonlydir"

    def env(self, **more: str) -> dict[str, str]:
        return _clean_env(
            KAFKA_PORT=str(self.kafka_port),
            KAFKA_CONTROLLER_PORT=str(self.controller_port),
            REDIS_PORT=str(self.redis_port),
            PG_PORT=str(self.pg_port),
            RATER_STACK_DIR=str(self.directory),
            REDIS_APPENDFSYNC=self.appendfsync,
            **more,
        )

    def stack(self, *args: str, timeout: float = 240.0, **env: str) -> str:
        done = subprocess.run(
            [str(STACK), *args], env=self.env(**env), cwd=REPO, capture_output=True,
            text=True, timeout=timeout,
        )
        if done.returncode != 0:
            raise AssertionError(
                f"deploy/local/stack {' '.join(args)} failed ({done.returncode}):\n"
                f"{done.stdout}\n{done.stderr}"
            )
        return done.stdout

    def up(self) -> None:
        """Fresh data (a previous run's is purged), then Kafka and Redis (no PostgreSQL:
        nothing here needs the call history, and the default stack's may hold 5432)."""
        self.stack("down", "--purge")
        self.stack("up", "--no-pg")

    def down(self) -> None:
        """Stop both; the data and logs stay in `directory` for a post-mortem."""
        self.stack("down")

    # ------------------------------------------------------------- redis ---

    def redis_pid(self) -> int:
        return read_pid(self.redis_dir / "redis.pid")

    def redis_client(self) -> redis.Redis:
        return redis.Redis(port=self.redis_port, socket_timeout=10)

    def redis_config(self, name: str) -> str:
        client = redis.Redis(port=self.redis_port, socket_timeout=10, decode_responses=True)
        try:
            return str(client.config_get(name)[name])
        finally:
            client.close()

    def kill_redis(self, sig: int = signal.SIGKILL) -> None:
        pid = self.redis_pid()
        os.kill(pid, sig)
        wait_gone(pid, 30)

    def start_redis(self, appendfsync: str | None = None, **env: str) -> None:
        if appendfsync is not None:
            self.appendfsync = appendfsync
        self.stack("up", "--redis-only", **env)

    def restart_redis(self, appendfsync: str, **env: str) -> None:
        """A clean restart (SHUTDOWN fsyncs everything) with another fsync policy."""
        pid = self.redis_pid()
        with contextlib.suppress(redis.ConnectionError):
            self.redis_client().shutdown()
        wait_gone(pid, 30)
        self.start_redis(appendfsync, **env)

    def pause_redis(self) -> None:
        os.kill(self.redis_pid(), signal.SIGSTOP)

    def resume_redis(self) -> None:
        os.kill(self.redis_pid(), signal.SIGCONT)

    # ------------------------------------------------------------- kafka ---

    def kafka_pid(self) -> int:
        return read_pid(self.directory / "kafka" / "kafka.pid")

    def stop_kafka(self, sig: int = signal.SIGTERM) -> None:
        pid = self.kafka_pid()
        os.kill(pid, sig)
        wait_gone(pid, 60)

    def start_kafka(self) -> None:
        self.stack("up", "--kafka-only")


def build_fsync_tracker(out_dir: Path) -> Path:
    """Compile fsync_tracker.c (gcc) into `out_dir`; fails loudly without a compiler."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "fsync_tracker.so"
    done = subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O2", "-Wall", "-o", str(target), str(SHIM_SOURCE), "-ldl"],
        capture_output=True, text=True, timeout=120,
    )
    if done.returncode != 0:
        raise AssertionError(f"building the fsync tracker failed:\n{done.stderr}")
    return target


@dataclass
class HostCrash:
    """Emulates a power loss of the Redis host: what was not fsynced is gone.

    `arm()` restarts Redis cleanly (everything durable) under the fsync tracker;
    `crash()` SIGKILLs it and cuts every append-only file back to the last size
    an fsync made durable (files created after `arm()` and never fsynced vanish
    to nothing). Returns the number of bytes Redis had written but not fsynced.
    """

    stack: FaultStack
    shim: Path
    log: Path = field(init=False)
    baseline: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.log = self.stack.directory / "fsync-tracker.log"

    def arm(self, appendfsync: str) -> None:
        self.log.unlink(missing_ok=True)
        self.stack.restart_redis(
            appendfsync, LD_PRELOAD=str(self.shim), FSYNC_TRACKER_LOG=str(self.log)
        )
        self.baseline = {p.name: p.stat().st_size for p in self.stack.aof_dir.glob("*.aof")}

    def durable_sizes(self) -> dict[str, int]:
        sizes: dict[str, int] = {}
        if self.log.exists():
            for line in self.log.read_text().splitlines():
                size, _, path = line.partition(" ")
                sizes[Path(path).name] = int(size)
        return sizes

    def unsynced_bytes(self) -> int:
        durable = self.durable_sizes()
        total = 0
        for path in self.stack.aof_dir.glob("*.aof"):
            keep = durable.get(path.name, self.baseline.get(path.name, 0))
            total += max(0, path.stat().st_size - keep)
        return total

    def crash(self, wait_unsynced_s: float = 3.0, settle_s: float = 0.0) -> int:
        """Crash at an instant when Redis holds written-but-unsynced bytes, if one comes
        within `wait_unsynced_s` (with appendfsync always, none normally does). With
        `settle_s`, only bytes that stayed unsynced that long count: killed the instant
        they appear, the worker may not yet have acted on the script replies they belong
        to, and a batch it never acknowledged is simply retried."""
        deadline = time.monotonic() + wait_unsynced_s
        while time.monotonic() < deadline:
            if self.unsynced_bytes() == 0:
                time.sleep(0.005)
                continue
            durable = self.durable_sizes()
            time.sleep(settle_s)
            if self.durable_sizes() == durable:  # no fsync since: those bytes are still out
                break
        self.stack.kill_redis(signal.SIGKILL)
        durable = self.durable_sizes()
        lost = 0
        for path in self.stack.aof_dir.glob("*.aof"):
            keep = durable.get(path.name, self.baseline.get(path.name, 0))
            size = path.stat().st_size
            if size > keep:
                lost += size - keep
                os.truncate(path, keep)
        return lost

    def restart(self, appendfsync: str | None = None) -> None:
        """Redis back without the tracker, replaying the (cut) append-only file."""
        self.stack.start_redis(appendfsync)


@dataclass
class ClusterStack:
    """Three Redis Cluster primaries on loopback, via deploy/local/redis-cluster."""

    ports: tuple[int, ...] = tuple(
        int(p) for p in os.environ.get("FAULTS_CLUSTER_PORTS", "17001,17002,17003").split(",")
    )
    directory: Path = field(default_factory=lambda: DATA / "cluster")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def run(self, *args: str) -> str:
        done = subprocess.run(
            [str(CLUSTER), *args], cwd=REPO, capture_output=True, text=True, timeout=120,
            env=_clean_env(REDIS_CLUSTER_PORTS=" ".join(map(str, self.ports)),
                           RATER_CLUSTER_DIR=str(self.directory)),
        )
        if done.returncode != 0:
            raise AssertionError(
                f"deploy/local/redis-cluster {' '.join(args)} failed ({done.returncode}):\n"
                f"{done.stdout}\n{done.stderr}"
            )
        return done.stdout

    def up(self) -> None:
        self.run("down", "--purge")
        self.run("up")

    def down(self) -> None:
        self.run("down")
