"""Helpers for the HTTP API tests: a keyed worker, tokens of every kind, plain HTTP.

Builds on tests/integration/harness.py (Deployment, Worker, produce, consume):
`ApiDeployment.start()` creates the deployment's topics, writes an RSA public
key for the worker (`RATER_JWT_KEY=@file`) and starts `rater worker`; `Tokens`
mints good and bad bearer tokens for it; `http()` is urllib without exceptions.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import shutil
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.client import HTTPConnection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
import redis
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from rater.cli.inputs import upsert_events
from rater.config import Settings
from rater.rating.clock import format_ms, now_ms
from rater.store.keys import KeySpace
from rater.web.tokens import generate_rsa_keypair, issue_token
from tests.integration.harness import REPO, Deployment, Worker, consume, produce

ISSUER = "https://idp.rater.test/"
AUDIENCE = "rater-api"
READY_TIMEOUT_S = 60.0


def require_stack() -> None:
    """Fail (never skip) with a clear message when Kafka or Redis is not listening."""
    settings = Settings.from_env({
        "RATER_KAFKA_BOOTSTRAP": os.environ.get("RATER_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
        "RATER_REDIS_URL": os.environ.get("RATER_REDIS_URL", "redis://127.0.0.1:6379/0"),
    })
    targets = [hp.strip() for hp in settings.kafka_bootstrap.split(",")]
    redis_url = urlsplit(settings.redis_url)
    targets.append(f"{redis_url.hostname or '127.0.0.1'}:{redis_url.port or 6379}")
    for target in targets:
        host, _, port = target.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=3):
                pass
        except OSError as exc:
            pytest.fail(f"the local stack is not reachable at {target} ({exc}); "
                        "run `deploy/local/stack up` (make test does)")


@dataclass
class Tokens:
    """Bearer tokens for one worker's key, issuer and audience, good ones and bad ones."""

    private_pem: str
    other_private_pem: str

    def mint(self, subject: str = "alice@example.test", *, roles: Mapping[str, str] | None = None,
             scope: str | None = None, expires_in: int = 3600, audience: str = AUDIENCE,
             issuer: str = ISSUER, private_pem: str | None = None) -> str:
        return issue_token(
            private_pem or self.private_pem, subject=subject, roles=roles, scope=scope,
            expires_in=expires_in, issuer=issuer, audience=audience, algorithm="RS256",
        )

    def owner(self, account: str, subject: str = "owner@example.test") -> str:
        return self.mint(subject, roles={account: "owner"})

    def contributor(self, account: str, subject: str = "contrib@example.test") -> str:
        return self.mint(subject, roles={account: "contributor"})

    def reader(self, account: str, subject: str = "reader@example.test") -> str:
        return self.mint(subject, roles={account: "reader"})

    def authorizer(self) -> str:
        return self.mint("pbx-1", scope="call_authorizer")

    def expired(self, account: str) -> str:
        # beyond the verifier's 30 s leeway
        return self.mint(roles={account: "owner"}, scope="call_authorizer", expires_in=-300)

    def wrong_signature(self, account: str) -> str:
        return self.mint(roles={account: "owner"}, scope="call_authorizer",
                         private_pem=self.other_private_pem)

    def wrong_audience(self, account: str) -> str:
        return self.mint(roles={account: "owner"}, scope="call_authorizer", audience="other-api")

    def wrong_issuer(self, account: str) -> str:
        return self.mint(roles={account: "owner"}, scope="call_authorizer",
                         issuer="https://evil.test/")

    def alg_none(self, account: str) -> str:
        now = int(time.time())
        claims = {"sub": "mallory", "iss": ISSUER, "aud": AUDIENCE, "iat": now,
                  "exp": now + 3600, "roles": {account: "owner"}, "scope": "call_authorizer"}

        def part(doc: Any) -> str:
            return base64.urlsafe_b64encode(orjson.dumps(doc)).rstrip(b"=").decode()

        return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."

    def hs256_with_public_key(self, account: str, public_pem: str) -> str:
        """RS256/HS256 key confusion: HMAC-signed with the public key as the secret."""
        now = int(time.time())
        claims = {"sub": "mallory", "iss": ISSUER, "aud": AUDIENCE, "iat": now,
                  "exp": now + 3600, "roles": {account: "owner"}}
        header = {"alg": "HS256", "typ": "JWT"}

        def part(doc: Any) -> bytes:
            return base64.urlsafe_b64encode(orjson.dumps(doc)).rstrip(b"=")

        signing_input = part(header) + b"." + part(claims)
        signature = hmac.new(public_pem.encode(), signing_input, hashlib.sha256).digest()
        return (signing_input + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode()


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    raw: bytes

    @property
    def json(self) -> Any:
        try:
            return orjson.loads(self.raw)
        except orjson.JSONDecodeError:
            raise AssertionError(f"HTTP {self.status}: body is not JSON: {self.raw[:300]!r}") \
                from None

    def error_body(self) -> dict[str, Any]:
        """The `{"error", "detail"}` body every error must carry (SPEC §7)."""
        body = self.json
        assert isinstance(body, dict), body
        assert isinstance(body.get("error"), str) and body["error"], body
        assert isinstance(body.get("detail"), str) and body["detail"], body
        assert self.headers.get("Content-Type", "").startswith("application/json"), self.headers
        return body


def http(method: str, url: str, *, token: str | None = None, body: Any = None,
         raw: bytes | None = None, headers: Mapping[str, str] | None = None,
         timeout: float = 10.0) -> Reply:
    data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
    request = urllib.request.Request(url, data=data, method=method)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return Reply(answer.status, dict(answer.headers), answer.read())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, dict(exc.headers), exc.read())


def http_chunked(method: str, url: str, chunks: Iterable[bytes], token: str) -> Reply:
    """A request with `Transfer-Encoding: chunked` (no Content-Length to judge the size by)."""
    parts = urlsplit(url)
    connection = HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        connection.request(method, parts.path, body=iter(list(chunks)), encode_chunked=True,
                           headers={"Authorization": f"Bearer {token}",
                                    "Content-Type": "application/json"})
        answer = connection.getresponse()
        return Reply(answer.status, dict(answer.getheaders()), answer.read())
    finally:
        connection.close()


def safe_anchor_day(today: int | None = None) -> int:
    """An anchor day whose period boundary is about two weeks away from today (UTC)."""
    day = datetime.now(UTC).day if today is None else today
    return (day + 14) % 28 + 1


def started_ago(seconds: int) -> str:
    return format_ms(now_ms() - seconds * 1000)


@dataclass
class ApiDeployment:
    """A deployment (own topics, app id, Redis prefix) with one API worker."""

    tmp: Path
    jwt: bool = True
    deployment: Deployment = field(default_factory=Deployment)
    tokens: Tokens = field(init=False)
    public_pem: str = field(init=False)
    worker: Worker | None = None

    def __post_init__(self) -> None:
        private, public = generate_rsa_keypair()
        other_private, _ = generate_rsa_keypair()
        self.tokens = Tokens(private, other_private)
        self.public_pem = public

    @property
    def settings(self) -> Settings:
        return self.deployment.settings

    @property
    def url(self) -> str:
        assert self.worker is not None
        return self.worker.url

    def start(self) -> ApiDeployment:
        require_stack()
        asyncio.run(self.deployment.create_topics())
        env: dict[str, str] = {"RATER_JWT_ALGORITHM": "RS256"}
        if self.jwt:
            key_file = self.tmp / f"{self.deployment.name}-public.pem"
            key_file.write_text(self.public_pem)
            env.update(RATER_JWT_KEY=f"@{key_file}", RATER_JWT_ISSUER=ISSUER,
                       RATER_JWT_AUDIENCE=AUDIENCE)
        self.deployment.extra_env.update(env)
        self.worker = Worker(self.deployment)
        self.worker.start(wait_ready=False)
        try:
            self.worker.wait_ready(READY_TIMEOUT_S)
        except AssertionError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        self._drop_redis_keys()
        asyncio.run(self._drop_topics())
        # Faust's default datadir is `<app id>-data` in the worker's cwd (the repo)
        shutil.rmtree(REPO / f"{self.settings.app_id}-data", ignore_errors=True)

    async def _drop_topics(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            mine = [t for t in existing if t.startswith(self.settings.topic_prefix)
                    or t.startswith(f"{self.settings.app_id}-")]
            if mine:
                await admin.delete_topics(mine)
        except KafkaError:
            pass  # best effort: unique names never collide with a later run
        finally:
            await admin.close()

    def _drop_redis_keys(self) -> None:
        client = sync_redis(self.settings)
        try:
            batch = list(client.scan_iter(match=f"{self.settings.key_prefix}:*", count=1000))
            if batch:
                client.delete(*batch)
        finally:
            client.close()

    def failure_context(self) -> str:
        return f"\n--- worker log tail ---\n{self.worker.tail() if self.worker else '(none)'}"

    # -- Kafka -----------------------------------------------------------------

    def produce(self, topic: str, docs: Iterable[Mapping[str, Any]], key_field: str =
                "subscription_id") -> None:
        records = [(str(doc[key_field]).encode(), orjson.dumps(doc)) for doc in docs]
        asyncio.run(produce(self.settings, topic, records))

    def load_subscriptions(self, docs: list[dict[str, Any]]) -> None:
        asyncio.run(produce(self.settings, self.settings.topics.subscription_events,
                            upsert_events(docs)))
        for doc in docs:  # wait until the worker has applied them
            url = self.usage_url(doc["subscription_id"])
            token = self.tokens.reader(doc["billing_account_id"])

            def visible(url: str = url, token: str = token) -> bool:
                return http("GET", url, token=token).status == 200

            self.wait_for(visible, f"subscription {doc['subscription_id']} on the usage endpoint")

    def read(self, topic: str, done: Callable[[list[Any]], bool], timeout: float = 30.0,
             what: str = "records") -> list[Any]:
        try:
            seen = asyncio.run(consume(self.settings, [topic], lambda s: done(s[topic]), timeout))
        except AssertionError as exc:
            raise AssertionError(f"{what} on {topic}: {exc}{self.failure_context()}") from None
        return list(seen[topic])

    def rated(self, subscription_id: str, call_ids: Iterable[str]) -> dict[str, Any]:
        """Wait until every call id is on calls.rated; their rated records by call id."""
        wanted = set(call_ids)

        def done(records: list[Any]) -> bool:
            got = {r["call_id"] for r in records if r["subscription_id"] == subscription_id}
            return wanted <= got

        records = self.read(self.settings.topics.rated, done, what=f"rated calls {wanted}")
        return {r["call_id"]: r for r in records
                if r["subscription_id"] == subscription_id and r["call_id"] in wanted}

    def wait_for(self, predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}{self.failure_context()}")
            time.sleep(0.2)

    # -- HTTP ------------------------------------------------------------------

    def usage_url(self, subscription_id: str) -> str:
        return f"{self.url}/v1/subscriptions/{subscription_id}/usage"

    def users_url(self, subscription_id: str, **query: Any) -> str:
        params = "&".join(f"{k}={v}" for k, v in query.items())
        return f"{self.url}/v1/subscriptions/{subscription_id}/usage/users" + (
            f"?{params}" if params else "")

    def payg_url(self, subscription_id: str) -> str:
        return f"{self.url}/v1/subscriptions/{subscription_id}/payg"

    @property
    def authorize_url(self) -> str:
        return f"{self.url}/v1/authorize"

    def authorize(self, attempt: Mapping[str, Any]) -> dict[str, Any]:
        reply = http("POST", self.authorize_url, token=self.tokens.authorizer(), body=attempt)
        assert reply.status == 200, (reply.status, reply.raw)
        body: dict[str, Any] = reply.json
        return body

    @property
    def keys(self) -> KeySpace:
        """This deployment's Redis key layout (rater.store.keys)."""
        return KeySpace(self.settings.key_prefix)

    def redis_hash(self, key: str) -> dict[str, str]:
        """One Redis hash as stored, e.g. `api.redis_hash(api.keys.limits(sub))`."""
        client = sync_redis(self.settings, decode_responses=True)
        try:
            found: dict[str, str] = client.hgetall(key)
            return found
        finally:
            client.close()

    def redis_state(self, subscription_id: str) -> dict[str, Any]:
        """Every Redis key of one subscription with its full content."""
        client = sync_redis(self.settings, decode_responses=True)
        try:
            state: dict[str, Any] = {}
            pattern = f"{self.settings.key_prefix}:{{{subscription_id}}}:*"
            for key in sorted(client.scan_iter(match=pattern, count=1000)):
                state[key] = client.hgetall(key)
            return state
        finally:
            client.close()


def sync_redis(settings: Settings, **options: Any) -> Any:
    """A plain client for test assertions; cluster-aware under RATER_REDIS_CLUSTER=1."""
    if settings.redis_cluster:
        return redis.RedisCluster.from_url(settings.redis_url, **options)
    return redis.Redis.from_url(settings.redis_url, **options)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
