"""The API's per-request Redis calls over one pipelined connection.

`POST /v1/authorize` makes one Redis call (the snapshot script), a session request one
or two (the session script, after the session index's lookup or write). Through
redis-py's asyncio client each call cost the worker about 100 to 200 µs of CPU and four to
five event-loop turns (pool checkout with a zero-timeout readiness read, the send in a
task of its own under `socket_timeout`, the reply; a script object in a pipeline adds a
SCRIPT EXISTS round trip): on a loop shared with rating, each turn waits for everything
else that is ready (docs/performance.md, "Call set-up latency beside rating"). Here a
call is one `write` of the packed commands on a connection shared by all callers, the
replies come back in order (Redis answers a connection's commands in the order it read
them), hiredis parses them, and the caller resumes in the next turn: about 25 µs of CPU.

Only for standalone Redis over plain TCP (`redis://`), and only for calls that may be
sent twice without harm: the snapshot (its only writes, the sweep of expired sessions,
are idempotent), the session scripts (a repeated request is answered from the stored
answer, SPEC §11.7) and the session index's SET / GETEX / ZADD LT. Failures leave as
redis-py's own exceptions (so `rater.store.errors.redis_errors` turns them into
`StoreUnavailable`); a connection found dead is replaced and the call sent once more,
as the store's redis-py client does after a Redis restart.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any
from urllib.parse import unquote, urlparse

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError


class _Protocol(asyncio.Protocol):
    """One connection: every command written is owed one reply, in order."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader(encoding="utf-8", replyError=ResponseError)
        self.owed: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            if not self.owed:  # a reply nobody asked for: the stream is out of step
                self.fail()
                return
            waiter = self.owed.popleft()
            if not waiter.done():
                waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        error = RedisConnectionError(f"connection to Redis lost: {exc or 'closed'}")
        while self.owed:
            waiter = self.owed.popleft()
            if not waiter.done():
                waiter.set_exception(error)

    def fail(self) -> None:
        """Give up the connection: every reply still owed fails (`connection_lost`)."""
        self.lost = True
        if self.transport is not None:
            self.transport.abort()

    def send(self, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        assert self.transport is not None
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.owed.append(waiter)
        self.transport.write(hiredis.pack_command(args))
        return waiter


class PipelinedConnection:
    """Commands and EVALSHA over one shared, pipelined connection."""

    def __init__(self, host: str, port: int, db: int = 0, username: str | None = None,
                 password: str | None = None, timeout_s: float = 10.0,
                 connect_timeout_s: float = 5.0) -> None:
        self.host, self.port, self.db = host, port, db
        self.username, self.password = username, password
        self.timeout_s, self.connect_timeout_s = timeout_s, connect_timeout_s
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None

    @classmethod
    def for_url(cls, url: str, timeout_s: float = 10.0,
                connect_timeout_s: float = 5.0) -> PipelinedConnection | None:
        """A connection for a plain `redis://host:port/db` URL; None for anything else
        (TLS, unix sockets, options in the query), which keeps to redis-py."""
        parsed = urlparse(url)
        if parsed.scheme != "redis" or parsed.query or not parsed.hostname:
            return None
        path = parsed.path.strip("/")
        if path and not path.isdigit():
            return None
        return cls(parsed.hostname, parsed.port or 6379, int(path or 0),
                   unquote(parsed.username) if parsed.username else None,
                   unquote(parsed.password) if parsed.password else None,
                   timeout_s, connect_timeout_s)

    async def evalsha(self, sha: str, keys: list[str], args: list[Any]) -> Any:
        """The script's reply. NoScriptError when Redis does not know the script (the
        caller loads it); ResponseError for a script error; RedisConnectionError or
        RedisTimeoutError when Redis cannot be reached or does not answer in time."""
        [reply] = await self.execute(("EVALSHA", sha, len(keys), *keys, *args))
        return reply

    async def execute(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Each command's reply, the commands written together and in this order. The
        first error reply is raised (NoScriptError for an unknown script), after every
        reply has come: the commands before it have run."""
        for attempt in (1, 2):
            protocol = await self._connection()
            waiters = [protocol.send(command) for command in commands]
            try:
                async with asyncio.timeout(self.timeout_s):
                    replies = await asyncio.gather(*waiters)
            except TimeoutError:
                protocol.fail()  # the replies still owed are out of step with their callers
                raise RedisTimeoutError(
                    f"no answer from Redis within {self.timeout_s}s") from None
            except RedisConnectionError:
                if attempt == 2:
                    raise
                continue  # a connection that died since its last use: once more, anew
            for reply in replies:
                if isinstance(reply, ResponseError):
                    if str(reply).startswith("NOSCRIPT"):
                        raise NoScriptError(str(reply))
                    raise reply
            return replies
        raise AssertionError("unreachable")  # pragma: no cover

    async def _connection(self) -> _Protocol:
        protocol = self._protocol
        if protocol is not None and not protocol.lost:
            return protocol
        if self._connecting is None:  # one connection attempt for every caller waiting
            self._connecting = asyncio.ensure_future(self._connect())
        connecting = self._connecting
        try:
            return await asyncio.shield(connecting)
        finally:
            if self._connecting is connecting and connecting.done():
                self._connecting = None

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, protocol = await loop.create_connection(_Protocol, self.host, self.port)
                setup: list[tuple[Any, ...]] = []
                if self.password is not None:
                    setup.append(("AUTH", self.username, self.password) if self.username
                                 else ("AUTH", self.password))
                if self.db:
                    setup.append(("SELECT", self.db))
                for reply in [await protocol.send(c) for c in setup]:
                    if isinstance(reply, ResponseError):
                        protocol.fail()
                        raise RedisConnectionError(f"Redis refused the connection: {reply}")
        except (OSError, TimeoutError) as exc:
            raise RedisConnectionError(
                f"cannot connect to Redis at {self.host}:{self.port}: {exc}") from None
        self._protocol = protocol
        return protocol

    async def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None
