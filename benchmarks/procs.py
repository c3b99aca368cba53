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


def stack_pids() -> dict[str, int]:
    """The local stack's Kafka and Redis (deploy/local/stack pid files), when found."""
    root = Path(__file__).resolve().parent.parent / "deploy" / "local" / ".data"
    pids = {}
    for name, path in (("kafka", root / "kafka" / "kafka.pid"),
                       ("redis", root / "redis" / "redis.pid")):
        try:
            pid = int(path.read_text().strip())
        except (OSError, ValueError):
            continue
        if Path(f"/proc/{pid}").exists():
            pids[name] = pid
    return pids


class CpuTimeline:
    """CPU seconds of the process under test, Kafka, Redis and the machine, sampled over
    time, so shares can be taken over exactly the measured window afterwards."""

    def __init__(self, pid: int) -> None:
        self.pids = {"process": pid, **stack_pids()}
        self.samples: list[tuple[float, dict[str, float]]] = []
        self.sample()

    def sample(self) -> bool:
        busy, total = machine_cpu()
        row = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        row["machine_busy"], row["machine_total"] = busy, total
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
        out = {k: round((b[k] - a[k]) / span, 2) for k in self.pids}
        cores = (b["machine_total"] - a["machine_total"]) / span
        out["machine_busy_cores"] = round((b["machine_busy"] - a["machine_busy"]) / span, 2)
        out["machine_cores"] = round(cores, 2)
        # whatever else ran on the machine meanwhile (other tests, the benchmark itself)
        out["other_cores"] = round(out["machine_busy_cores"]
                                   - sum(out[k] for k in self.pids), 2)
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
