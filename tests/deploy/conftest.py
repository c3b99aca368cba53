"""Fixtures of the deploy-artefact tests."""

from __future__ import annotations

import shutil

import pytest


@pytest.fixture(scope="session")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found on PATH: install it with `apt-get install prometheus` "
            "(Debian/Ubuntu) or put the promtool of a Prometheus release on PATH",
            pytrace=False,
        )
    return path
