"""A fake OpenAI-compatible speech recognition server: ``POST /v1/audio/transcriptions``.

It reads the real multipart/form-data body (``file``, ``model``, ``language``,
``response_format``) the way vLLM and OpenAI do, refuses what they refuse (no file, an
unknown model: 404 with an OpenAI error body; audio it cannot read: 400), and records what
it received, WAV parameters included, so tests assert the bytes, format and duration that
reached it. It cannot hear: it answers the texts a test queued (`say`), else `default_text`.

    state = AsrFakeState(model="whisper-test")
    state.say("你好，我的订单什么时候发货？")
    state.fail_next(status=429)           # FakeState: 429, 5xx, or delay_s for a timeout
    with serve(asr_app(state)) as url:    # ASR_BASE_URL = f"{url}/v1"
        ...
    state.received[0].seconds             # how long the WAV that reached it was
"""

from __future__ import annotations

import asyncio
import io
import wave
from dataclasses import dataclass, field

from aiohttp import BodyPartReader, web

from tests.fakes.base import FakeState, RecordedRequest, injected_failure

MAX_UPLOAD_BYTES = 25 * 1024 * 1024  # OpenAI's limit on one file


@dataclass
class Transcription:
    """One request as the server understood it."""

    model: str
    language: str
    response_format: str
    filename: str
    content_type: str
    audio: bytes
    authorization: str
    seconds: float = 0.0
    sample_rate: int = 0
    channels: int = 0
    sample_width: int = 0


@dataclass
class AsrFakeState(FakeState):
    model: str = "whisper-test"
    default_text: str = "你好"
    queued: list[str] = field(default_factory=list)
    received: list[Transcription] = field(default_factory=list)
    # When set: the next answers are these bytes, written in `dribble`-byte chunks (a JSON
    # answer split across TCP writes, or one far too large).
    raw_answer: bytes | None = None
    dribble: int = 0

    def say(self, *texts: str) -> None:
        """The next transcriptions answer these texts, in order."""
        with self.lock:
            self.queued.extend(texts)

    def _next_text(self) -> str:
        with self.lock:
            return self.queued.pop(0) if self.queued else self.default_text


def _error(status: int, message: str, kind: str = "invalid_request_error") -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return web.json_response(body, status=status)


async def _read_form(request: web.Request) -> dict[str, tuple[bytes, str, str]]:
    """name -> (value, filename, content type) of each multipart part."""
    parts: dict[str, tuple[bytes, str, str]] = {}
    reader = await request.multipart()
    while True:
        part = await reader.next()
        if part is None:
            return parts
        if not isinstance(part, BodyPartReader) or not part.name:
            continue
        data = await part.read(decode=False)
        if len(data) > MAX_UPLOAD_BYTES:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_UPLOAD_BYTES, actual_size=len(data))
        parts[part.name] = (
            bytes(data),
            part.filename or "",
            part.headers.get("Content-Type", ""),
        )


async def _dribble(request: web.Request, body: bytes, size: int) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for start in range(0, len(body), size):
        await resp.write(body[start : start + size])
        await asyncio.sleep(0.01)
    await resp.write_eof()
    return resp


def asr_app(state: AsrFakeState) -> web.Application:
    async def transcriptions(request: web.Request) -> web.Response:
        # Every call is recorded (the body is parsed below, into `received`).
        headers = {k.lower(): v for k, v in request.headers.items()}
        state.record(
            RecordedRequest(request.method, request.path, dict(request.query), headers, b"")
        )
        failure = await injected_failure(state)
        if failure is not None:
            return failure
        if not request.content_type.startswith("multipart/form-data"):
            return _error(400, "Expected multipart/form-data")
        form = await _read_form(request)
        if "file" not in form:
            return _error(400, "Missing required field: file")
        model = form.get("model", (b"", "", ""))[0].decode()
        if model != state.model:
            return _error(404, f"The model `{model}` does not exist.", "NotFoundError")
        audio, filename, content_type = form["file"]
        got = Transcription(
            model=model,
            language=form.get("language", (b"", "", ""))[0].decode(),
            response_format=form.get("response_format", (b"json", "", ""))[0].decode(),
            filename=filename,
            content_type=content_type,
            audio=audio,
            authorization=request.headers.get("Authorization", ""),
        )
        try:
            with wave.open(io.BytesIO(audio)) as wav:
                got.sample_rate = wav.getframerate()
                got.channels = wav.getnchannels()
                got.sample_width = wav.getsampwidth()
                got.seconds = wav.getnframes() / got.sample_rate
        except (wave.Error, EOFError, ZeroDivisionError):
            return _error(400, "Invalid audio file: could not decode")
        with state.lock:
            state.received.append(got)
        if state.raw_answer is not None:
            return await _dribble(request, state.raw_answer, state.dribble or len(state.raw_answer))
        text = state._next_text()
        if got.response_format == "text":
            return web.Response(text=text)
        return web.json_response({"text": text})

    app = web.Application(client_max_size=MAX_UPLOAD_BYTES + 1024 * 1024)
    app.router.add_post("/v1/audio/transcriptions", transcriptions)
    return app
