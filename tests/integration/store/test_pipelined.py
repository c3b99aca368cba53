"""The API's pipelined path (rater.store.pipelined): the same replies as redis-py, in
order under concurrency, commands sent together run in their order, scripts Redis does
not know loaded on the way, and every failure as the redis-py error that the store turns
into StoreUnavailable."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from rater.store import RedisStore, StoreUnavailable
from rater.store.keys import SESSION_KEEP_MS, SESSION_SWEEP_MAX
from rater.store.pipelined import PipelinedConnection
from tests.builders import make_subscription
from tests.integration.conftest import stack_settings


def fresh_store() -> RedisStore:
    return RedisStore.from_settings(stack_settings(app_id=f"t{uuid.uuid4().hex[:10]}"))


async def test_snapshots_are_the_same_as_through_redis_py() -> None:
    store = fresh_store()
    try:
        assert store._pipelined is not None
        await store.upsert_subscription(make_subscription(subscription_id="sub-1"))
        key = store.sub_key("sub-1")
        for at_ms, user_id in ((1_790_000_000_000, ""), (1_800_000_000_000, "user-1")):
            args = [at_ms, at_ms, SESSION_KEEP_MS, SESSION_SWEEP_MAX, user_id]
            through_redis_py = await store._snapshot(keys=[key], args=args)
            assert await store._pipelined.evalsha(store._snapshot.sha, [key], args) \
                == through_redis_py
        assert await store.snapshot("sub-unknown", 1_790_000_000_000) is None
        assert (await store.snapshot("sub-1", 1_790_000_000_000)) is not None
    finally:
        await store.client.delete(store.sub_key("sub-1"))
        await store.close()


async def test_concurrent_calls_each_get_their_own_reply() -> None:
    store = fresh_store()
    try:
        assert store._pipelined is not None
        sha = await store.client.script_load(f"-- {uuid.uuid4()}\nreturn ARGV[1]")
        replies = await asyncio.gather(
            *(store._pipelined.evalsha(sha, [], [f"call-{i}"]) for i in range(300)))
        assert replies == [f"call-{i}" for i in range(300)]
    finally:
        await store.close()


async def test_a_script_redis_does_not_know_is_loaded_through_redis_py() -> None:
    store = fresh_store()
    try:
        assert store._pipelined is not None
        script = store.client.register_script(f"-- {uuid.uuid4()}\nreturn 'known'")
        with pytest.raises(NoScriptError):
            await store._pipelined.evalsha(script.sha, [], [])
        assert await store.request_script(script, [], []) == "known"  # loaded on the way
        assert await store._pipelined.evalsha(script.sha, [], []) == "known"
    finally:
        await store.close()


async def test_commands_before_a_script_run_first_in_one_round_trip() -> None:
    """A session set-up's SET and ZADD, then its script: the script sees what they wrote,
    also when Redis first has to be given the script."""
    store = fresh_store()
    key = f"t:{uuid.uuid4().hex}"
    try:
        assert store._pipelined is not None
        script = store.client.register_script(
            f"-- {uuid.uuid4()}\nreturn redis.call('GET', KEYS[1]) .. ARGV[1]")
        before = [("SET", key, "a", "PX", 60_000), ("APPEND", key, "b")]
        # the script is new to Redis: loaded, and everything sent once more (SET again)
        assert await store.request_script(script, [key], ["!"], before) == "ab!"
        assert await store.request_script(script, [key], ["?"], before) == "ab?"
        assert await store.request_command("GET", key) == "ab"
        replies = await store._pipelined.execute(("SET", key, "x"), ("GET", key))
        assert replies == ["OK", "x"]
    finally:
        await store.client.delete(key)
        await store.close()


async def test_without_the_pipelined_connection_redis_py_sends_the_same() -> None:
    """TLS, unix sockets or URL options keep to redis-py: the same order and replies."""
    pipelined = fresh_store()
    store = RedisStore(pipelined.client, pipelined.prefix)
    key = f"t:{uuid.uuid4().hex}"
    try:
        assert store._pipelined is None
        script = store.client.register_script(
            f"-- {uuid.uuid4()}\nreturn redis.call('GET', KEYS[1]) .. ARGV[1]")
        before = [("SET", key, "a", "PX", 60_000), ("APPEND", key, "b")]
        assert await store.request_script(script, [key], ["!"], before) == "ab!"
        assert await store.request_script(script, [key], ["?"]) == "ab?"
        assert await store.request_command("GET", key) == "ab"
    finally:
        await store.client.delete(key)
        await pipelined.close()


async def test_no_redis_is_a_connection_error_and_to_the_api_store_unavailable() -> None:
    reader = PipelinedConnection("127.0.0.1", 1, connect_timeout_s=2)  # nothing listens on 1
    with pytest.raises(RedisConnectionError):
        await reader.evalsha("0" * 40, [], [])
    settings = stack_settings(app_id=f"t{uuid.uuid4().hex[:10]}",
                              redis_url="redis://127.0.0.1:1/0")
    store = RedisStore.from_settings(settings)
    try:
        with pytest.raises(StoreUnavailable):
            await store.snapshot("sub-1", 1_790_000_000_000)
    finally:
        await store.close()


class _Server:
    """A TCP server on 127.0.0.1 that reads commands and, per connection, either never
    answers (`mute`) or answers the first with +OK and then hangs up."""

    def __init__(self, mute: bool) -> None:
        self.mute = mute
        self.connections = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        data = await reader.read(65536)
        if self.mute or not data:
            await reader.read()  # until the client goes away
        else:
            writer.write(b"+OK\r\n")
            await writer.drain()
        writer.close()

    async def start(self) -> tuple[asyncio.Server, int]:
        server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        return server, server.sockets[0].getsockname()[1]


async def test_no_answer_in_time_is_a_timeout_and_the_connection_is_replaced() -> None:
    mute = _Server(mute=True)
    server, port = await mute.start()
    try:
        reader = PipelinedConnection("127.0.0.1", port, timeout_s=0.2)
        for _ in range(2):
            with pytest.raises(RedisTimeoutError):
                await reader.evalsha("0" * 40, [], [])
        assert mute.connections == 2  # the stream was out of step: a new connection
        await reader.close()
    finally:
        server.close()


async def test_a_connection_that_died_is_replaced_and_the_call_retried_once() -> None:
    hangs_up = _Server(mute=False)
    server, port = await hangs_up.start()
    try:
        reader = PipelinedConnection("127.0.0.1", port, timeout_s=5)
        assert await reader.evalsha("0" * 40, [], []) == "OK"
        await asyncio.sleep(0.1)  # the server hangs up after its answer
        assert await reader.evalsha("0" * 40, [], []) == "OK"
        assert hangs_up.connections == 2
        await reader.close()
    finally:
        server.close()


def test_only_plain_tcp_urls_take_the_pipelined_path() -> None:
    reader = PipelinedConnection.for_url("redis://:s%40cret@127.0.0.5:6380/3")
    assert reader is not None
    assert (reader.host, reader.port, reader.db, reader.password) == (
        "127.0.0.5", 6380, 3, "s@cret")
    for url in ("rediss://127.0.0.1:6379/0", "unix:///tmp/redis.sock",
                "redis://127.0.0.1:6379/0?socket_timeout=3"):
        assert PipelinedConnection.for_url(url) is None
