"""Files a customer sent (PDF, DOCX, XLSX, TXT/CSV/MD), read as text for the conversation.

Run by the worker after the media are fetched (bot/pipeline/media.py) and before pictures
are prepared (bot/pipeline/vision.py). Each saved file is parsed by the knowledge loaders in
a child process (`bot.pipeline.file_text`), never on the event loop nor in one of its
threads: it gets FILES_PARSE_TIMEOUT_S and FILES_PARSE_MEMORY_MB, then it is killed, so a
hostile document costs one answer, not the worker. The text (at most FILES_MAX_CHARS, the
first FILES_MAX_PAGES pages) is written beside the file and the attachment points at it; the
agent puts it in the prompt as fenced data (bot/agent/documents.py). It is the
conversation's, not the knowledge base's: the latest files stay with the conversation for
FILES_MEMORY_S, so "这份合同第三条是什么意思" a minute later is asked with the contract.

- With a model: a file on its own is a question ("what is in it?"), answered by the model.
- Without one: the customer is told the file arrived, what it begins with, and that a
  person or a question in words is needed (`reply`): no pretending to have read it.
- A picture sent as a file is handed to the vision step as a picture; a scanned PDF's first
  pages too (FILES_SCAN_PAGES, with VLLM_VISION); without a vision model, a clear note.
- Whatever cannot be read (wrong type, a ``.pdf`` that is a ZIP, corrupt, encrypted, too
  big, too slow, a failed download) keeps the placeholder, and `reply` says which.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import glob
import json
import logging
import sys
from pathlib import Path
from typing import Any

from bot import keys, metrics
from bot.agent.documents import TEXT_SUFFIX
from bot.domain import Attachment, Content, InboundMessage
from bot.pipeline import file_text, slots
from bot.runtime import Runtime
from bot.settings import Settings

log = logging.getLogger(__name__)

MAX_FILES = 2  # at most this many files' text goes with one question
BUSY = "busy"  # every decoder slot stayed taken for BOT_DECODE_WAIT_S (bot/pipeline/slots.py)
_KILL_WAIT_S = 5.0


def documents(msg: InboundMessage) -> list[Attachment]:
    """The files of `msg` read as text (the attachment's path is the text)."""
    return [a for a in msg.attachments if _ready(a)]


async def prepare(msg: InboundMessage, rt: Runtime) -> InboundMessage:
    """`msg` with its files read, or with the conversation's recent ones (see module)."""
    settings = rt.settings
    cfg = settings.files
    if not cfg.active:
        return msg
    done: list[Attachment] = []
    for item in msg.attachments:
        done.extend(await _read(item, settings, msg.platform.value))
    msg = dataclasses.replace(msg, attachments=tuple(done))
    fresh = documents(msg)[:MAX_FILES]
    key = keys.documents(msg.conversation_key)
    if fresh:
        if cfg.memory_s > 0:
            listed = json.dumps([a.to_json() for a in fresh], ensure_ascii=False)
            await rt.redis.set(key, listed, ex=cfg.memory_s)
        if _model_on(settings):
            # A file on its own is a question now: the model reads it.
            return dataclasses.replace(msg, placeholder=False)
        return msg  # `reply` tells the customer what arrived
    if msg.placeholder or not msg.question or cfg.memory_s <= 0:
        return msg
    earlier = await _remembered(rt, key)
    if earlier:
        log.info("%s %s %s asked with %d earlier file(s)", *_ids(msg), len(earlier))
        return dataclasses.replace(msg, attachments=(*msg.attachments, *earlier))
    return msg


def _model_on(settings: Settings) -> bool:
    return settings.vllm.enabled or settings.dashscope.enabled


def _ready(item: Attachment) -> bool:
    return (
        item.kind is Content.FILE
        and bool(item.path)
        and not item.error
        and item.path.endswith(TEXT_SUFFIX)
    )


async def _read(item: Attachment, settings: Settings, platform: str) -> list[Attachment]:
    """The attachment read (its text file), or with the reason it was not; a picture or a
    scan's pages as picture attachments for the vision step."""
    if item.kind is not Content.FILE or not item.path or item.error or _ready(item):
        return [item]
    source = Path(item.path)
    dest = source.with_name(source.name + TEXT_SUFFIX)
    if await asyncio.to_thread(dest.is_file):  # a retried job: read before
        shots = await asyncio.to_thread(_page_pictures, source)
        pages = [Attachment(Content.IMAGE, item.ref, path=str(p)) for p in shots]
        return [dataclasses.replace(item, path=str(dest)), *pages]
    outcome = await parse(source, item.name or source.name, settings)
    if not outcome.get("ok"):
        reason = str(outcome.get("reason") or file_text.CORRUPT)
        log.warning("file %s not read: %s (%s)", source.name, reason, outcome.get("detail", ""))
        metrics.FILES_READ.labels(platform, reason).inc()
        return [dataclasses.replace(item, error=reason)]
    kind = str(outcome.get("kind"))
    counted = "picture" if kind == file_text.IMAGE else "scan" if outcome.get("scans") else "read"
    metrics.FILES_READ.labels(platform, counted).inc()
    if kind == file_text.IMAGE:
        # A picture sent as a file (a photographed invoice): the vision step shows it.
        return [dataclasses.replace(item, kind=Content.IMAGE)]
    text = _with_note(outcome, settings)
    await asyncio.to_thread(_write, dest, text)
    pages = [Attachment(Content.IMAGE, item.ref, path=p) for p in outcome.get("scans") or []]
    log.info("file %s read: %s, %d characters, %d page picture(s)", source.name, kind,
             len(text), len(pages))  # fmt: skip
    return [dataclasses.replace(item, path=str(dest), size=len(text)), *pages]


def _with_note(outcome: dict[str, Any], settings: Settings) -> str:
    """The text, after one line saying how much of the file it is."""
    pages, read = int(outcome.get("pages") or 0), int(outcome.get("read_pages") or 0)
    notes = []
    if outcome.get("scans"):
        notes.append(f"扫描件，没有文字层；附上前 {read} 页的图片（共 {pages} 页）")
    elif pages:
        notes.append(f"共 {pages} 页" + (f"，只读了前 {read} 页" if read < pages else ""))
    if outcome.get("truncated"):
        notes.append(f"内容过长，只保留了前 {settings.files.max_chars} 个字符")
    head = f"（{'；'.join(notes)}）\n" if notes else ""
    return head + str(outcome.get("text") or "")


def _page_pictures(source: Path) -> list[Path]:
    """The page pictures an earlier try made of a scan (file_text writes ``name.pageN.img``)."""
    return sorted(source.parent.glob(glob.escape(source.name) + ".page*.img"))


def _write(dest: Path, text: str) -> None:
    part = dest.with_name(dest.name + ".part")
    part.write_text(text, encoding="utf-8")
    part.replace(dest)


async def parse(source: Path, name: str, settings: Settings) -> dict[str, Any]:
    """Parse `source` in a child process within the configured limits; its JSON outcome:
    ``{"ok": true, "kind", "text", "pages", "read_pages", "truncated", "scans"}`` or
    ``{"ok": false, "reason", "detail"}``."""
    cfg = settings.files
    scan_pages = cfg.scan_pages if settings.sees_images else 0
    request = {
        "path": str(source),
        "name": name,
        "memory_bytes": cfg.parse_memory_mb * 1024 * 1024,
        "scan_stem": str(source),  # a scan's page pictures go beside it
        "limits": {
            "max_pages": cfg.max_pages,
            "max_chars": cfg.max_chars,
            "max_rows": cfg.max_rows,
            "max_unzipped_bytes": cfg.max_unzipped_mb * 1024 * 1024,
            "scan_pages": scan_pages,
        },
    }
    try:
        async with slots.decoders(settings).hold(settings.core.decode_wait_s):
            return await _run_parser(request, cfg.parse_timeout_s)
    except slots.SlotsBusyError:
        return {"ok": False, "reason": BUSY, "detail": "no parser free"}


async def _run_parser(request: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.pipeline.file_text",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(
            child.communicate(json.dumps(request).encode()), timeout=timeout_s
        )
    except TimeoutError:
        await _kill(child)
        return {"ok": False, "reason": file_text.TOO_SLOW, "detail": "parser killed"}
    except BaseException:
        await _kill(child)  # the turn was cancelled: no parser is left behind
        raise
    try:
        outcome = json.loads(out)
    except ValueError:
        # Killed by its memory limit, or crashed: the last line of what it said.
        last = err.decode(errors="replace").strip().splitlines()[-1:] or [""]
        reason = file_text.TOO_LARGE if "MemoryError" in last[0] else file_text.CORRUPT
        return {"ok": False, "reason": reason, "detail": f"exit {child.returncode}: {last[0]}"}
    return outcome if isinstance(outcome, dict) else {"ok": False, "reason": file_text.CORRUPT}


async def _kill(child: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        child.kill()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(child.wait(), timeout=_KILL_WAIT_S)


async def _remembered(rt: Runtime, key: str) -> list[Attachment]:
    raw = await rt.redis.get(key)
    if not raw:
        return []
    try:
        items = json.loads(raw)
    except ValueError:
        return []
    found = [Attachment.from_json(a) for a in items if isinstance(a, dict)]
    ready = [a for a in found if _ready(a)][:MAX_FILES]
    # Files may have been cleared since (BOT_MEDIA_KEEP_S): only those still there go along.
    return await asyncio.to_thread(lambda: [a for a in ready if Path(a.path).is_file()])


# --- What the customer is told when the file is not answered by a model -------------------

_OR_WORDS = "或用文字描述您的问题。"
_PROBLEMS = {
    "too_large": "抱歉，文件太大，没能收到。请发送小一些的文件（例如只含相关页面的 PDF），",
    "refused": "抱歉，文件没能收到，请重新发送，",
    "failed": "抱歉，文件没能收到，请稍后重新发送，",
    BUSY: "抱歉，现在要读的文件较多，这个文件没能及时读完。请稍后重新发送，",
    file_text.NOT_SUPPORTED: (
        "抱歉，这种文件我暂时打不开。我能阅读 PDF、Word（.docx）、Excel（.xlsx）和"
        "文本文件（.txt、.csv、.md），请转换后重新发送，"
    ),
    file_text.MISMATCH: (
        "抱歉，这个文件的内容和它的扩展名不符（例如名为 .pdf，实际却不是 PDF），"
        "我没有打开它。请发送原始文件，"
    ),
    file_text.CORRUPT: "抱歉，这个文件好像已损坏，我没能打开。请重新导出后发送，",
    file_text.ENCRYPTED: "抱歉，这个文件设置了打开密码，我没法阅读。请发送未加密的版本，",
    file_text.EMPTY: "这个文件里没有找到文字内容。如果是图片或扫描件，请直接发送图片，",
    file_text.SCANNED: (
        "这份 PDF 是扫描件（没有文字层），我暂时读不了图片里的文字。请发送文字版 PDF 或 Word，"
        "或回复“转人工”由客服为您查看，"
    ),
    file_text.TOO_LARGE: "抱歉，这个文件太大或太复杂，我没能读完。请发送只含相关内容的文件，",
    file_text.TOO_SLOW: "抱歉，这个文件太大或太复杂，我没能及时读完。请发送只含相关内容的文件，",
}
_PREVIEW_CHARS = 80


def problem_reply(error: str) -> str:
    """What the customer is told about a file that could not be read (`Attachment.error`)."""
    return _PROBLEMS.get(error, _PROBLEMS["failed"]) + _OR_WORDS


async def reply(msg: InboundMessage, settings: Settings) -> str | None:
    """The answer to a file message no model answers (see module); None: the usual one."""
    if not settings.files.active:
        return None
    files = [a for a in msg.attachments if a.kind is Content.FILE]
    if not files:
        pictures = [a for a in msg.attachments if a.kind is Content.IMAGE]
        if not pictures:
            return None
        # A picture sent as a file, not shown to a model: answered as a picture.
        from bot.pipeline.autoreply import unsupported_reply  # autoreply imports this module

        error = pictures[0].error if settings.sees_images else ""
        return unsupported_reply(Content.IMAGE, error)
    item = files[0]
    if item.error:
        return problem_reply(item.error)
    if not _ready(item):
        return None
    text = await asyncio.to_thread(_preview, Path(item.path))
    name = f"《{item.name}》" if item.name else ""
    said = f"已收到您的文件{name}。"
    if text:
        said += f"开头是：“{text}”。"
    return (
        said + "我目前只能收下文件，还不能根据内容回答问题。请用文字告诉我您想了解什么，"
        "或回复“转人工”由客服为您查看。"
    )


def _preview(path: Path) -> str:
    try:
        with path.open(encoding="utf-8") as handle:
            text = handle.read(_PREVIEW_CHARS * 4)
    except OSError:
        return ""
    lines = [line for line in text.splitlines() if line.strip()]
    if lines and lines[0].startswith("（") and lines[0].endswith("）"):
        lines = lines[1:]  # the note on pages, not the file's words
    flat = " ".join(" ".join(lines).split())
    return flat[:_PREVIEW_CHARS] + ("…" if len(flat) > _PREVIEW_CHARS else "")


def _ids(msg: InboundMessage) -> tuple[str, str, str]:
    return (msg.platform.value, msg.app, msg.event_id)
