"""`rater subscriptions load` and `rater replay` (SPEC §10) against the real broker, Redis
and a worker: what lands on the topics, and the one-line refusals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from rater.kafka import read_to_end
from rater.rating.clock import format_ms, now_ms
from rater.store import RedisStore
from tests.builders import cdr_doc, subscription_doc
from tests.integration.harness import REPO, Deployment, running_worker


def rater(deployment: Deployment, *args: str,
          timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rater.cli", *args], env=deployment.env(),
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)


async def test_subscriptions_load_publishes_upserts_and_waits_until_applied(
    tmp_path: Path,
) -> None:
    deployment = Deployment()
    subs = [subscription_doc(subscription_id=f"load-{i}", licenses=i + 1) for i in range(3)]
    path = tmp_path / "subs.json"
    path.write_bytes(orjson.dumps(subs))
    async with running_worker(deployment):
        result = rater(deployment, "subscriptions", "load", str(path), "--wait", "60")
    assert result.returncode == 0, result.stderr
    assert "published 3 subscription.upserted events" in result.stdout
    assert "all 3 subscriptions applied in Redis" in result.stdout
    settings = deployment.settings
    events = await read_to_end(settings.kafka_bootstrap, [settings.topics.subscription_events])
    assert sorted(m.key for m in events) == [b"load-0", b"load-1", b"load-2"]
    for message in events:
        event = orjson.loads(message.value)
        assert event["type"] == "subscription.upserted" and event["at"].endswith("Z")
        assert event["subscription"]["subscription_id"] == message.key.decode()
    store = RedisStore.from_settings(settings)
    try:
        snapshot = await store.snapshot("load-2", now_ms())
        assert snapshot is not None and snapshot.licenses == 3
    finally:
        await store.close()


async def test_replay_produces_every_line_keyed_by_its_subscription(tmp_path: Path) -> None:
    deployment = Deployment()
    await deployment.create_topics()
    started = format_ms(now_ms() - 60_000)
    lines = [orjson.dumps(cdr_doc(call_id=f"r-{i}", subscription_id=f"sub-{i % 2}",
                                  started_at=started)) for i in range(5)]
    lines.append(b"this is not json")  # the worker dead-letters it; replay sends it as is
    path = tmp_path / "cdrs.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n\n")
    result = rater(deployment, "replay", str(path))
    assert result.returncode == 0, result.stderr
    assert "produced 6 CDRs" in result.stdout
    assert result.stderr.rstrip().endswith("] 6/6")  # the progress bar
    settings = deployment.settings
    produced = await read_to_end(settings.kafka_bootstrap, [settings.topics.cdr])
    assert sorted(m.value for m in produced) == sorted(lines)
    keys = {m.value: m.key for m in produced}
    assert keys[lines[0]] == b"sub-0" and keys[lines[1]] == b"sub-1"
    assert keys[b"this is not json"] is None


@pytest.mark.parametrize(("content", "message"), [
    (None, "cannot read"),
    (b"{not json", "cannot read"),
    (b'{"subscription_id": "x"}', "expected a JSON array of subscriptions"),
    (b'[{"subscription_id": "x"}]', "invalid subscription"),
])
def test_subscriptions_load_refuses_bad_files_in_one_line(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "subs.json"
    if content is not None:
        path.write_bytes(content)
    result = rater(Deployment(), "subscriptions", "load", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rater: ") and message in lines[0]


async def test_subscriptions_load_says_when_no_worker_applies_them(tmp_path: Path) -> None:
    deployment = Deployment()
    await deployment.create_topics()
    path = tmp_path / "subs.json"
    path.write_bytes(orjson.dumps([subscription_doc(subscription_id="nobody-applies")]))
    result = rater(deployment, "subscriptions", "load", str(path), "--wait", "1")
    assert result.returncode == 2
    assert "1 subscriptions not applied by a worker after 1s" in result.stderr


def test_a_missing_topic_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "cdrs.jsonl"
    path.write_bytes(orjson.dumps(cdr_doc()) + b"\n")
    result = rater(Deployment(), "replay", "--quiet", str(path))  # no topics created
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "rater topics create" in lines[0], result.stderr
