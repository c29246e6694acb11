"""The worker's broker transport: kombu's Redis transport, made to survive losing Redis.

When the broker connection breaks, Celery (5.7) `collect()`s it, which drops the transport's
client (the kombu `Connection`) while channels of that connection may still be open: closing
them, and acknowledging or rejecting a message a task was running when Redis went away, then
builds a Redis client from the client that is gone and fails with
`AttributeError: 'NoneType' object has no attribute 'hostname'`. Celery takes that for an
unrecoverable error and the worker exits, leaving every queued message to wait for a manual
restart (issue 11, finding 3: Redis down mid-turn).

Here such a channel raises a Redis `ConnectionError` instead, which kombu and Celery handle as
any broken connection: the consumer reconnects, an acknowledgement that cannot be written is
logged. Nothing is lost: the message stays in Redis's unacked index and comes back after the
visibility timeout, where its replied- and sent-markers keep the turn from answering twice.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

# For `broker_transport` (bot/broker.py's URL stays redis://…; only the class changes).
TRANSPORT = "workers.transport:Transport"


class Channel(kombu_redis.Channel):
    """A Redis channel that knows when its connection is gone."""

    def _create_client(self, asynchronous: bool = False) -> Any:
        if self.connection is None or self.connection.client is None:
            raise RedisConnectionError("the broker connection of this channel was closed")
        return super()._create_client(asynchronous)  # type: ignore[misc]  # not in the stubs


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with `Channel` above."""

    Channel = Channel
