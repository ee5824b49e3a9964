"""The Redis serving copy keeps failed writes as owed, retries them with capped exponential
backoff and asks for a re-sync when too many are owed or Redis lost its data.

A real redis-server on a free port is stopped (SHUTDOWN NOSAVE), paused (SIGSTOP) and restarted
empty; no Redis mock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest
import redis

from streams.metrics import metrics
from streams.serving import RedisServing
from streams.settings import Settings
from tests.redisserver import RedisServer


@pytest.fixture
def server(tmp_path):
    srv = RedisServer(tmp_path).start()
    yield srv
    srv.stop()


def _serving(server: RedisServer, **kw) -> RedisServing:
    kw = {"prefix": "t:", "backoff_s": 0.05, "backoff_max_s": 0.2, **kw}
    return RedisServing(server.url, **kw)


def _get(server: RedisServer, key: str) -> bytes | None:
    return redis.Redis.from_url(server.url).get(key)


async def _until(predicate, timeout: float = 5.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_writes_while_down_are_owed_latest_wins_and_retried_after_restart(server):
    serving = _serving(server)
    assert await serving.put_many("profile", [("u1", b"a1")]) == 1
    server.stop()
    assert await serving.put_many("profile", [("u1", b"a2"), ("u2", b"b1")]) == 0
    assert await serving.put_many("profile", [("u1", b"a3")]) == 0  # within the pause: owed at once
    assert await serving.put_many("rec", [("u1", b"r1")]) == 0
    assert serving.owed == 3  # (profile, u1) once, with its latest value
    assert metrics.get("redis_behind") == 3
    assert await serving.retry_owed() == 0  # still down
    server.start()  # empty
    await _until(serving.available)
    assert await serving.retry_owed() == 3
    assert serving.owed == 0 and metrics.get("redis_behind") == 0
    assert _get(server, "t:profile:u1") == b"a3"
    assert _get(server, "t:profile:u2") == b"b1"
    assert _get(server, "t:rec:u1") == b"r1"
    await serving.close()


async def test_a_successful_newer_write_clears_the_owed_one(server):
    serving = _serving(server)
    server.stop()
    await serving.put_many("profile", [("u1", b"old"), ("u2", b"x")])
    server.start()
    await _until(serving.available)
    assert await serving.put_many("profile", [("u1", b"new")]) == 1
    assert serving.owed == 1  # only u2
    assert await serving.retry_owed() == 1
    assert _get(server, "t:profile:u1") == b"new"
    await serving.close()


async def test_the_pause_doubles_per_failure_up_to_the_cap_and_resets_on_success(server):
    serving = _serving(server, backoff_s=0.05, backoff_max_s=0.3)
    server.stop()
    pauses = []
    for _ in range(5):
        await _until(serving.available)
        await serving.retry_owed() if serving.owed else await serving.put_many("profile", [("u", b"v")])
        assert not serving.available()
        pauses.append(serving.pause_s)
    assert pauses == [0.05, 0.1, 0.2, 0.3, 0.3]
    # within the pause nothing is tried: a put only records the value
    t0 = time.monotonic()
    await serving.put_many("profile", [("u", b"w")])
    assert time.monotonic() - t0 < 0.01
    server.start()
    await _until(serving.available)
    assert await serving.retry_owed() == 1
    assert serving.pause_s == 0 and _get(server, "t:profile:u") == b"w"
    await serving.close()


async def test_a_paused_redis_times_out_and_is_caught_up_when_it_resumes(server):
    serving = _serving(server)
    server.pause()
    try:
        t0 = time.monotonic()
        assert await serving.put_many("rec", [("u1", b"v1")]) == 0
        assert time.monotonic() - t0 < 2.5  # the socket timeout, not a hang
    finally:
        server.resume()
    await _until(serving.available)
    # the timed-out write may or may not have landed; the owed copy makes sure it did
    assert await serving.retry_owed() == 1
    assert _get(server, "t:rec:u1") == b"v1"
    await serving.close()


async def test_more_owed_than_the_bound_drops_them_and_asks_for_a_resync(server):
    serving = _serving(server, max_owed=3)
    server.stop()
    await serving.put_many("profile", [("u1", b"1"), ("u2", b"2"), ("u3", b"3")])
    assert serving.owed == 3 and not serving.resync_needed
    await serving.put_many("rec", [("u4", b"4")])
    assert serving.owed == 0 and serving.resync_needed
    assert metrics.get("redis_behind") == 0 and metrics.get("redis_resync_needed") == 1
    # later failures are owed again (bounded again)
    await serving.put_many("rec", [("u5", b"5")])
    assert serving.owed == 1
    await serving.close()


async def test_a_redis_restarted_empty_is_noticed_by_the_marker_key(server):
    serving = _serving(server)
    assert await serving.check() is True
    assert await serving.check() is True
    server.stop()
    server.start()  # empty: the marker key is gone
    for _ in range(2):  # the first try may meet the broken connection (a failure, then a pause)
        await _until(serving.available)
        assert await serving.check() is False
    assert serving.resync_needed and metrics.get("redis_resync_needed") == 1
    await serving.close()


async def test_first_contact_after_a_failure_asks_for_a_resync(server):
    serving = _serving(server)
    server.stop()
    await serving.put_many("profile", [("u1", b"1")])
    server.start()
    await _until(serving.available)
    assert await serving.check() is False and serving.resync_needed
    await serving.close()


async def test_resync_writes_skip_keys_written_or_owed_since_it_began(server):
    serving = _serving(server, max_owed=0)
    server.stop()
    await serving.put_many("profile", [("u0", b"x")])  # over the bound of 0: re-sync needed
    assert serving.resync_needed
    server.start()
    await _until(serving.available)
    token = serving.begin_resync()
    await serving.put_many("profile", [("u1", b"live")])  # newer than anything a re-sync reads
    n = await serving.put_resynced("profile", [("u1", b"from-topic", 60), ("u2", b"from-topic", 60),
                                               ("u3", None, 60)])
    assert n == 2
    serving.end_resync(token, ok=True)
    assert not serving.resync_needed and metrics.get("redis_resync_needed") == 0
    assert _get(server, "t:profile:u1") == b"live"
    assert _get(server, "t:profile:u2") == b"from-topic"
    assert 0 < redis.Redis.from_url(server.url).ttl("t:profile:u2") <= 60


async def test_a_resync_does_not_clear_a_flag_raised_while_it_ran(server):
    serving = _serving(server, max_owed=0)
    serving.mark_resync("test")
    token = serving.begin_resync()
    serving.mark_resync("again")
    serving.end_resync(token, ok=True)
    assert serving.resync_needed
    token = serving.begin_resync()
    serving.end_resync(token, ok=False)
    assert serving.resync_needed
    token = serving.begin_resync()
    serving.end_resync(token, ok=True)
    assert not serving.resync_needed
    await serving.close()


async def test_auth_settings_reach_the_client(tmp_path):
    srv = RedisServer(tmp_path, "--requirepass", "s3cret", "--user", "app", "on", ">apppass", "~*", "+@all").start()
    try:
        base = Settings(kafka_broker="", redis_url=srv.url, redis_prefix="t:")
        denied = RedisServing.from_settings(base)
        assert await denied.put_many("profile", [("u", b"v")]) == 0 and denied.owed == 1
        await denied.close()
        for settings in (dataclasses.replace(base, redis_password="s3cret"),
                         dataclasses.replace(base, redis_username="app", redis_password="apppass")):
            serving = RedisServing.from_settings(settings)
            assert await serving.put_many("profile", [("u", b"v")]) == 1
            assert await serving.get("profile", "u") == b"v"
            await serving.close()
    finally:
        srv.proc.kill()
        srv.proc.wait()


def test_redis_settings_become_client_options_and_tls_needs_rediss():
    s = Settings.from_env({"REDIS_URL": "rediss://r:6380/0", "COURSEPULSE_REDIS_USERNAME": "app",
                           "COURSEPULSE_REDIS_PASSWORD": "pw", "COURSEPULSE_REDIS_TLS_CA_FILE": "/ca.pem",
                           "COURSEPULSE_REDIS_TLS_CERT_FILE": "/c.pem", "COURSEPULSE_REDIS_TLS_KEY_FILE": "/k.pem"})
    assert s.redis_options() == {"username": "app", "password": "pw", "ssl_ca_certs": "/ca.pem",
                                 "ssl_certfile": "/c.pem", "ssl_keyfile": "/k.pem"}
    assert "pw" not in repr(s)
    assert Settings().redis_options() == {}
    # the TLS files reach redis-py's TLS connections
    serving = RedisServing.from_settings(s)
    pool = serving._client.connection_pool  # noqa: SLF001
    assert pool.connection_class.__name__ == "SSLConnection"
    assert pool.connection_kwargs["ssl_ca_certs"] == "/ca.pem"
    with pytest.raises(ValueError, match="rediss://"):
        Settings.from_env({"REDIS_URL": "redis://r:6379/0", "COURSEPULSE_REDIS_TLS_CA_FILE": "/ca.pem"})
    with pytest.raises(ValueError, match="rediss://"):
        Settings.from_env({"COURSEPULSE_REDIS_TLS_CERT_FILE": "/c.pem"})
    with pytest.raises(ValueError, match="COURSEPULSE_REDIS_MAX_OWED"):
        Settings.from_env({"COURSEPULSE_REDIS_MAX_OWED": "-1"})
