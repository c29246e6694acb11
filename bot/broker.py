"""The Celery queue as the rest of the bot sees it: task names, broker settings, a publisher.

An inbound message goes on the queue in the same Redis step that deduplicates and tickets
it (bot/pipeline/intake.py), as the task message `handle_message_parts` writes. Other tasks
(document ingestion) go through a `Publisher`: its own small Celery app that only sends,
so nobody reconfigures the worker's app (`workers.celery_app`) to publish. Both apps take
their broker settings from `celery_config`.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import uuid
from typing import Any

from celery import Celery

from bot.errors import ConfigError
from bot.keys import QUEUE
from bot.settings import Settings

HANDLE_MESSAGE = "workers.tasks.handle_message"
INGEST_DOCUMENT = "workers.tasks.ingest_document"


def celery_config(settings: Settings) -> dict[str, Any]:
    """Broker, serialisation and acknowledgement settings shared by senders and workers."""
    core = settings.core
    if not core.redis_url:
        raise ConfigError("REDIS_URL is not set (run `bot up` for an embedded Redis)")
    return {
        "broker_url": core.redis_url,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 3,
        "broker_transport_options": {
            # Unacked (running or crashed) messages come back after this long.
            "visibility_timeout": core.visibility_timeout_s,
            "unacked_restore_interval": max(1, int(core.visibility_timeout_s / 10)),
            "unacked_restore_throttle": 1,
            # The sweep's lock outlives a worker killed during a sweep by this long; kombu's
            # 300 s default would hold every redelivery back for five minutes after such a
            # kill. Two sweeps at once are harmless: each message is restored in a WATCHed
            # transaction, once.
            "unacked_mutex_expire": max(2, min(30, int(core.visibility_timeout_s / 2))),
            "socket_connect_timeout": 3,
            "socket_timeout": 10,
            "socket_keepalive": True,
        },
        "task_default_queue": QUEUE,
        "task_ignore_result": True,
        "result_backend": None,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "worker_hijack_root_logger": False,
        "task_serializer": "json",
        "accept_content": ["json"],
        "enable_utc": True,
    }


# What the body of every task message ends with (Celery protocol 2: no callbacks, no chain).
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
_HOST = socket.gethostname()
# Stand-ins in the message template for what differs per message.
_ID, _SUMMARY = "@TASK-ID@", "@SUMMARY@"


@functools.cache
def _template(pid: int) -> tuple[str, str]:
    """The task message after the body's `seq`, with stand-ins for the task id and summary,
    once per process (`origin` names the process)."""
    headers: dict[str, Any] = {
        "lang": "py",
        "task": HANDLE_MESSAGE,
        "id": _ID,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": _ID,
        "parent_id": None,
        "argsrepr": _SUMMARY,
        "origin": f"gen{pid}@{_HOST}",
        "ignore_result": True,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    properties = {
        "correlation_id": _ID,
        "reply_to": "",
        "delivery_mode": 2,
        "delivery_info": {"exchange": "", "routing_key": QUEUE},
        "priority": 0,
        "body_encoding": None,
        "delivery_tag": _ID,  # unique too: one random id serves both
    }
    body_tail = f"}}, {json.dumps(_EMBED)}]"
    mid = (
        json.dumps(body_tail)[1:]
        + ', "content-encoding": "utf-8", "content-type": "application/json", "headers": '
        + json.dumps(headers)[:-1]
        + ', "kwargsrepr": "{\'seq\': '
    )
    tail = '}"}, "properties": ' + json.dumps(properties) + "}"
    return mid, tail


def handle_message_parts(payload_json: str, summary: str) -> tuple[str, str, str]:
    """The `handle_message` task message for the payload `payload_json` (the message's
    JSON text), cut where its `seq` goes, twice.

    Joined as ``head + seq + mid + seq + tail`` (by the intake script, which draws the
    ticket in the same step) it is the protocol-2 task message Celery's `send_task` puts on
    the Redis list `QUEUE`, but for two things: its body is raw JSON (`body_encoding`
    null, which kombu reads as is) rather than base64, and `summary` stands in for the
    arguments in Celery's logs and Flower (never the customer's text). Digits need no JSON
    escaping, so escaping the pieces one by one escapes the whole. Everything but the
    payload, the id and the summary comes from a template made once per process.
    """
    task_id = f'"{uuid.uuid4()}"'
    mid, tail = _template(os.getpid())
    mid = mid.replace(f'"{_ID}"', task_id).replace(f'"{_SUMMARY}"', json.dumps(summary))
    head = '{"body": ' + json.dumps(f'[[{payload_json}], {{"seq": ')[:-1]
    return head, mid, tail.replace(f'"{_ID}"', task_id)


class Publisher:
    """Sends task messages to the queue; blocking calls (run them off the event loop)."""

    def __init__(self, settings: Settings) -> None:
        self._app = Celery("bot-publisher", set_as_current=False)
        self._app.conf.update(celery_config(settings))

    def ingest_document(self, job_id: str, kb: str, files: list[list[str]]) -> None:
        """Queue the ingestion of uploaded files ([path, source] pairs) into `kb`."""
        self._app.send_task(INGEST_DOCUMENT, args=[job_id, kb, files], queue=QUEUE)

    def ping(self) -> None:
        """Raise unless the broker answers within about two seconds."""
        with self._app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)

    def close(self) -> None:
        self._app.close()
