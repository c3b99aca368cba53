"""Real Chromium for the console tests: Debian's package, driven by Playwright.

Playwright's own browser download is never used: `chromium()` launches
/usr/bin/chromium, installing Debian's `chromium` first when it is missing (the test
runs as root, like CI), or fails the test saying what to install. It never skips.
`Watched` pages record every console error and uncaught page error, and every dialog
(an `alert()` that fires means script got through the escaping).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import REPO

CHROMIUM = Path("/usr/bin/chromium")
ARTEFACTS = REPO / "rater-data" / "test-artefacts" / "console"
# --no-sandbox: the tests run as root, where Chromium's sandbox refuses to start
LAUNCH_ARGS = ["--no-sandbox", "--disable-dev-shm-usage"]
INSTALL_TIMEOUT_S = 900


def chromium() -> Path:
    """The system Chromium, installed with apt-get when missing; otherwise a loud failure."""
    if CHROMIUM.exists():
        return CHROMIUM
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.fail(f"{CHROMIUM} is missing and cannot be installed here: install Debian's "
                    "`chromium` package (apt-get install chromium)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True,
                              timeout=INSTALL_TIMEOUT_S, check=False)
        if done.returncode != 0:
            pytest.fail(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-500:]}")
    if not CHROMIUM.exists():
        pytest.fail(f"apt-get installed chromium but {CHROMIUM} is not there")
    return CHROMIUM


@dataclass
class Watched:
    """A page and everything it reported."""

    page: Any
    name: str
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))
        self.page.on("dialog", self._dialog)

    def _console(self, message: Any) -> None:
        if message.type in ("error", "warning"):
            self.errors.append(f"console {message.type}: {message.text} at {self.page.url}")

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def shot(self, what: str) -> Path:
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTEFACTS / f"{self.name}-{what}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def assert_clean(self) -> None:
        assert not self.errors, f"the browser reported errors: {self.errors}"
        assert not self.dialogs, f"a dialog fired (script ran): {self.dialogs}"
