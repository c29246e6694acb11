"""A fake DashScope Paraformer real-time recognition service: the WebSocket API at
``/api-ws/v1/inference``.

It checks what DashScope checks (the Bearer key at the handshake: 401 otherwise; a
``run-task`` with task_group audio, task asr, function recognition, a known model, a
supported format and sample rate: ``task-failed`` otherwise), answers ``task-started``,
takes binary audio frames until ``finish-task``, then sends an interim and a final
``result-generated`` and ``task-finished``. It records the task and the audio bytes, so
tests assert the format and duration that reached it. It cannot hear: it answers the texts
a test queued (`say`), else `default_text`.

    state = ParaformerFakeState(api_key="sk-test", model="paraformer-realtime-v2")
    state.fail_with = ("Throttling.RateQuota", "Requests rate limit exceeded")  # next task
    state.delay_s = 5                     # the result comes this late (a slow service)
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.base import FakeState

FORMATS = ("pcm", "wav", "mp3", "opus", "speex", "aac", "amr")
RATES = (8000, 16000)


@dataclass
class ParaformerTask:
    run_task: dict[str, Any]
    audio: bytearray = field(default_factory=bytearray)
    finished: bool = False

    @property
    def seconds(self) -> float:
        rate = int(self.run_task["payload"]["parameters"]["sample_rate"])
        return len(self.audio) / (rate * 2)


@dataclass
class ParaformerFakeState(FakeState):
    api_key: str = "sk-test-paraformer"
    model: str = "paraformer-realtime-v2"
    default_text: str = "你好。"
    queued: list[str] = field(default_factory=list)
    tasks: list[ParaformerTask] = field(default_factory=list)
    handshakes: int = 0
    fail_with: tuple[str, str] | None = None  # (error_code, error_message) for the next task

    def say(self, *texts: str) -> None:
        with self.lock:
            self.queued.extend(texts)

    def next_text(self) -> str:
        with self.lock:
            return self.queued.pop(0) if self.queued else self.default_text

    def take_failure(self) -> tuple[str, str] | None:
        with self.lock:
            found, self.fail_with = self.fail_with, None
            return found


def _event(task_id: str, event: str, payload: dict[str, Any] | None = None, **header: Any) -> str:
    body: dict[str, Any] = {"header": {"task_id": task_id, "event": event, "attributes": {}}}
    body["header"].update(header)
    body["payload"] = payload if payload is not None else {}
    return json.dumps(body, ensure_ascii=False)


def _problem(run_task: dict[str, Any], state: ParaformerFakeState) -> str:
    header, payload = run_task.get("header") or {}, run_task.get("payload") or {}
    if header.get("action") != "run-task" or header.get("streaming") != "duplex":
        return "invalid header"
    task = (payload.get("task_group"), payload.get("task"), payload.get("function"))
    if task != ("audio", "asr", "recognition"):
        return "invalid task"
    if payload.get("model") != state.model:
        return f"Model not found ({payload.get('model')})"
    params = payload.get("parameters") or {}
    if params.get("format") not in FORMATS or params.get("sample_rate") not in RATES:
        return "unsupported format or sample_rate"
    return ""


async def _results(
    ws: web.WebSocketResponse, task_id: str, task: ParaformerTask, text: str
) -> None:
    end = int(task.seconds * 1000)
    for final, said in ((False, text[: len(text) // 2]), (True, text)):
        sentence = {
            "begin_time": 0,
            "end_time": end if final else None,
            "text": said,
            "heartbeat": False,
            "sentence_end": final,
            "words": [],
        }
        usage = {"duration": max(1, round(task.seconds))} if final else None
        payload = {"output": {"sentence": sentence}, "usage": usage}
        await ws.send_str(_event(task_id, "result-generated", payload))
    await ws.send_str(_event(task_id, "task-finished", {"output": {}}))


def paraformer_app(state: ParaformerFakeState) -> web.Application:
    async def inference(request: web.Request) -> web.StreamResponse:
        with state.lock:
            state.handshakes += 1
        if request.headers.get("Authorization") != f"Bearer {state.api_key}":
            body = {"code": "InvalidApiKey", "message": "Invalid API-key provided."}
            return web.json_response(body, status=401)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        task: ParaformerTask | None = None
        async for msg in ws:
            if msg.type == WSMsgType.BINARY and task is not None:
                task.audio.extend(msg.data)
                continue
            if msg.type != WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            header = data.get("header") or {}
            task_id = str(header.get("task_id", ""))
            if header.get("action") == "run-task":
                problem = _problem(data, state)
                failure = state.take_failure()
                if problem or failure:
                    code, said = failure or ("InvalidParameter", problem)
                    failed = _event(task_id, "task-failed", error_code=code, error_message=said)
                    await ws.send_str(failed)
                    await ws.close()
                    break
                task = ParaformerTask(run_task=data)
                with state.lock:
                    state.tasks.append(task)
                await ws.send_str(_event(task_id, "task-started"))
            elif header.get("action") == "finish-task" and task is not None:
                task.finished = True
                if state.delay_s:
                    await asyncio.sleep(state.delay_s)
                await _results(ws, task_id, task, state.next_text())
        return ws

    app = web.Application()
    app.router.add_get("/api-ws/v1/inference", inference)
    return app
