"""`rater history-sink` as a subprocess of a test, its log in rater-data/test-logs/."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from tests.integration.harness import LOG_DIR, REPO


class SinkProcess:
    def __init__(self, env: dict[str, str], name: str) -> None:
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("RATER_")}, **env}
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{name}-history-sink.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> SinkProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "rater.cli", "history-sink"], env=self.env, cwd=REPO,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        if self.alive():
            assert self.process is not None
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> int | None:
        """SIGTERM, and the exit code (None when it had to be killed)."""
        if not self.alive():
            return self.process.returncode if self.process is not None else None
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
