"""Processes under test: start, sample (RSS, CPU), profile with py-spy, stop."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0.0, 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


def listening_pid(port: int) -> int | None:
    """The process listening on 127.0.0.1:`port` (or any address), from /proc: the socket's
    inode in /proc/net/tcp*, then the process holding it. None when not found."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # local address "ADDR:PORT" in hex, state 0A = LISTEN
            if len(fields) > 9 and fields[3] == "0A" and \
                    int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    return int(proc.name)
        except OSError:
            continue
    return None


def stack_pids() -> dict[str, int]:
    """The stack's Kafka broker and Redis, found by the ports they listen on (the stack
    may run from another checkout's data directory, so its pid files are not ours)."""
    from urllib.parse import urlparse

    bootstrap = os.environ.get("RATER_KAFKA_BOOTSTRAP", "127.0.0.1:9092").split(",")[0]
    redis_port = urlparse(os.environ.get("RATER_REDIS_URL", "redis://127.0.0.1:6379/0")).port
    pids = {}
    for name, port in (("kafka", int(bootstrap.rsplit(":", 1)[1])), ("redis", redis_port or 6379)):
        pid = listening_pid(port)
        if pid is not None:
            pids[name] = pid
    return pids


def run_delay_seconds(pid: int) -> float:
    """Time the process's main thread spent runnable but waiting for a CPU (schedstat):
    for an event-loop process, how long the loop was held up by CPU contention."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def cpu_pressure_seconds() -> float:
    """The machine's CPU pressure (PSI 'some'): total time at least one task waited for a CPU."""
    try:
        first = Path("/proc/pressure/cpu").read_text().split("\n", 1)[0]
        return int(first.rsplit("total=", 1)[1]) / 1e6
    except (OSError, IndexError, ValueError):
        return 0.0


class CpuTimeline:
    """CPU seconds of the process under test, Kafka, Redis, any other named processes (a
    load generator, the benchmark itself) and the machine, sampled over time, so shares can
    be taken over exactly the measured window afterwards. Also the process's run-queue
    wait (its main thread runnable, no CPU free) and the machine's CPU pressure."""

    def __init__(self, pid: int, others: dict[str, int] | None = None) -> None:
        self.pids = {"process": pid, **stack_pids(), **(others or {})}
        self.samples: list[tuple[float, dict[str, float]]] = []
        self.sample()

    def add(self, name: str, pid: int) -> None:
        """Follow one more process from now on (its share counts from its first sample)."""
        self.pids[name] = pid
        self.sample()

    def sample(self) -> bool:
        busy, total = machine_cpu()
        # a process that has exited (and was reaped) is left out of the row, so its share
        # is taken up to its last sample instead of falling to zero
        row = {name: cpu_seconds(pid) for name, pid in self.pids.items()
               if Path(f"/proc/{pid}/stat").exists()}
        row["machine_busy"], row["machine_total"] = busy, total
        row["run_delay"] = run_delay_seconds(self.pids["process"])
        if "redis" in self.pids:  # one thread runs every command and script
            row["redis_run_delay"] = run_delay_seconds(self.pids["redis"])
        row.setdefault("process", 0.0)
        row["pressure"] = cpu_pressure_seconds()
        self.samples.append((time.time(), row))
        return True

    def shares(self, start: float, end: float) -> dict[str, float]:
        """CPU share (1.0 = one core) of each over [start, end] (epoch seconds)."""
        inside = [s for s in self.samples if start - 0.3 <= s[0] <= end + 0.3]
        if len(inside) < 2:
            inside = self.samples[-2:] if len(self.samples) >= 2 else []
        if len(inside) < 2:
            return {}
        (t0, a), (t1, b) = inside[0], inside[-1]
        span = max(t1 - t0, 1e-6)
        out = {}
        for k in self.pids:
            # a process first sampled inside the window counts from its first sample
            seen = [(t, row[k]) for t, row in inside if k in row]
            if len(seen) >= 2:
                out[k] = round((seen[-1][1] - seen[0][1]) / max(seen[-1][0] - seen[0][0], 1e-6), 2)
        cores = (b["machine_total"] - a["machine_total"]) / span
        out["machine_busy_cores"] = round((b["machine_busy"] - a["machine_busy"]) / span, 2)
        out["machine_cores"] = round(cores, 2)
        # whatever else ran on the machine meanwhile (other tests, the benchmark itself)
        out["other_cores"] = round(out["machine_busy_cores"]
                                   - sum(out[k] for k in self.pids if k in out), 2)
        # share of the window the process's main thread waited for a CPU while runnable
        out["process_run_queue_wait"] = round((b["run_delay"] - a["run_delay"]) / span, 3)
        if "redis_run_delay" in a and "redis_run_delay" in b:
            out["redis_run_queue_wait"] = round(
                (b["redis_run_delay"] - a["redis_run_delay"]) / span, 3)
        # share of the window some task on the machine waited for a CPU (PSI)
        out["cpu_pressure"] = round((b["pressure"] - a["pressure"]) / span, 3)
        return out


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def stop(process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGTERM the process group we started, then SIGKILL after `timeout`."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


class Profiler:
    """py-spy attached to one pid, writing a flame graph SVG when stopped."""

    def __init__(self, pid: int, out: Path, rate: int = 97, max_s: float = 600.0,
                 fmt: str | None = None) -> None:
        # BENCH_FLAME_FORMAT=raw: collapsed stacks (text) instead of an SVG, for scripts
        fmt = fmt or os.environ.get("BENCH_FLAME_FORMAT", "flamegraph")
        self.out = out
        self.process: subprocess.Popen[bytes] | None = None
        exe = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which(
            "py-spy")
        if exe is None:
            return
        out.parent.mkdir(parents=True, exist_ok=True)
        self.log = out.with_suffix(".log")
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [exe, "record", "--pid", str(pid), "--output", str(out), "--format",
                 fmt, "--rate", str(rate), "--nonblocking", "--duration",
                 str(int(max_s))],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def finish(self) -> Path | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        if self.out.exists():
            self.log.unlink(missing_ok=True)  # py-spy's own chatter; kept only on failure
            return self.out
        return None


def wait_port(port: int, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode}")
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listening on port {port} after {timeout:.0f}s")
