"""The one progress bar of the commands: `[#####.....] 1200/3000` on stderr, in place."""

from __future__ import annotations

import sys
from typing import TextIO


class ProgressBar:
    WIDTH = 30

    def __init__(self, total: int, label: str = "", every: int = 1000,
                 stream: TextIO | None = None) -> None:
        self.total = max(total, 0)
        self.label = f"{label} " if label else ""
        self.every = every
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0

    def advance(self, count: int = 1) -> None:
        before, self.done = self.done, self.done + count
        if self.done // self.every != before // self.every or self.done >= self.total:
            self.draw()

    def draw(self) -> None:
        filled = self.WIDTH * min(self.done, self.total) // self.total if self.total else self.WIDTH
        print(f"\r{self.label}[{'#' * filled}{'.' * (self.WIDTH - filled)}] "
              f"{self.done}/{self.total}", end="", file=self.stream, flush=True)

    def finish(self) -> None:
        self.draw()
        print(file=self.stream)
