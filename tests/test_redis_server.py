"""The private Redis the tests start (tests/redis_server.py): what the cluster's tests rely on."""

from __future__ import annotations

import pytest
import redis
from redis_server import SYSTEM_PORT, RedisServer


def test_it_listens_on_loopback_only_without_persistence(clean_redis: RedisServer):
    assert clean_redis.port != SYSTEM_PORT
    assert clean_redis.url == f"redis://127.0.0.1:{clean_redis.port}/0"
    settings = {
        name: clean_redis.command("CONFIG", "GET", name)[name]
        for name in ("bind", "port", "save", "appendonly", "client-output-buffer-limit")
    }
    assert settings["bind"] == "127.0.0.1"
    assert settings["port"] == str(clean_redis.port)
    assert settings["save"] == ""
    assert settings["appendonly"] == "no"
    assert "pubsub 268435456 67108864 60" in settings["client-output-buffer-limit"]


def test_a_restart_keeps_the_port_and_loses_the_data(clean_redis: RedisServer, redis_client):
    port = clean_redis.port
    redis_client.set("k", "v")
    clean_redis.restart()
    assert clean_redis.port == port
    assert redis_client.get("k") is None  # the same client reconnects by itself


def test_down_refuses_connections_until_the_block_ends(clean_redis: RedisServer, redis_client):
    with clean_redis.down():
        assert not clean_redis.running
        with pytest.raises(redis.ConnectionError):
            redis_client.ping()
    assert redis_client.ping()


def test_a_frozen_server_accepts_but_does_not_answer(clean_redis: RedisServer):
    with clean_redis.client(socket_timeout=0.2) as client:
        client.ping()
        with clean_redis.frozen(), pytest.raises(redis.TimeoutError):
            client.ping()
        assert client.ping()


def test_reset_puts_back_settings_and_keys_and_the_server_itself(clean_redis: RedisServer):
    original = clean_redis.command("CONFIG", "GET", "maxmemory")["maxmemory"]
    clean_redis.command("CONFIG", "SET", "maxmemory", "10mb", "maxmemory-policy", "allkeys-lru")
    clean_redis.command("SET", "k", "v")
    clean_redis.stop_server()
    clean_redis.reset()
    assert clean_redis.running
    clean_redis.command("SET", "k", "v")
    clean_redis.command("CONFIG", "SET", "maxmemory", "10mb", "maxmemory-policy", "allkeys-lru")
    clean_redis.reset()
    assert clean_redis.command("CONFIG", "GET", "maxmemory")["maxmemory"] == original
    assert clean_redis.command("CONFIG", "GET", "maxmemory-policy") == {
        "maxmemory-policy": "noeviction"
    }
    assert clean_redis.command("DBSIZE") == 0


def test_commands_reach_the_server_such_as_killing_subscribers(clean_redis: RedisServer):
    with clean_redis.client() as client:
        subscriber = client.pubsub()
        subscriber.subscribe("chatd:test")
        assert subscriber.get_message(timeout=5)["type"] == "subscribe"
        assert clean_redis.command("CLIENT", "KILL", "TYPE", "pubsub") == 1
        with pytest.raises(redis.ConnectionError):
            subscriber.get_message(timeout=5)
        subscriber.close()
