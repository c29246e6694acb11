"""The decoder cap (BOT_DECODE_CONCURRENCY): a burst of voice, files and pictures never runs
more than that many ffmpeg or parser children or Pillow downscales at once in one worker
process, across the threads and event loops the worker runs tasks in.

Voice: a stand-in ffmpeg on PATH (a shell script) logs when each decode starts and ends, so
the overlap is measured from its log. Files: the real parser children are counted in /proc
while they run. Pictures: Pillow's resize is wrapped (it still resizes) to log when each
starts and ends, slowed so that overlap shows on a loaded machine.
"""

from __future__ import annotations

import asyncio
import os
import stat
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.domain import Attachment, Content, InboundMessage, Platform
from bot.llm import images
from bot.pipeline import autoreply, files, slots, vision, voice
from bot.settings import Settings
from tests.integration.pictures import error_code_picture

SLOW_FFMPEG = """#!/bin/sh
echo "start $(date +%s.%N)" >> "{log}"
sleep 0.4
head -c 32000 /dev/zero
echo "end $(date +%s.%N)" >> "{log}"
"""


def _settings(limit: int, wait_s: float = 30) -> Settings:
    return Settings.load(None, core={"decode_concurrency": limit, "decode_wait_s": wait_s})


def _in_threads(n_threads: int, per_thread: int, job: Callable[[int], Awaitable[Any]]) -> list[Any]:
    """`job(i)` for n_threads * per_thread values of i: each thread runs its share on its own
    event loop, as the worker's task threads do."""
    results: list[Any] = []
    lock = threading.Lock()

    def run(first: int) -> None:
        async def share() -> list[Any]:
            return await asyncio.gather(
                *(job(first + k) for k in range(per_thread)), return_exceptions=True
            )

        got = asyncio.run(share())
        with lock:
            results.extend(got)

    threads = [threading.Thread(target=run, args=(t * per_thread,)) for t in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def _most_at_once(intervals: list[tuple[float, float]]) -> int:
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    now = most = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


@pytest.fixture
def slow_ffmpeg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir()
    log = tmp_path / "ffmpeg.log"
    script = folder / "ffmpeg"
    script.write_text(SLOW_FFMPEG.format(log=log))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return log


def _decodes(log: Path) -> list[tuple[float, float]]:
    starts = [float(line.split()[1]) for line in log.read_text().splitlines() if "start" in line]
    ends = [float(line.split()[1]) for line in log.read_text().splitlines() if "end" in line]
    assert len(starts) == len(ends)
    # Each decode takes 0.4 s: pair the sorted starts and ends in order (FIFO is close
    # enough for counting overlap: any pairing gives the same count of the most at once).
    return list(zip(sorted(starts), sorted(ends), strict=True))


@pytest.mark.parametrize(("limit", "expected"), [(2, 2), (6, 6)])
def test_voice_decodes_are_capped_per_process(
    slow_ffmpeg: Path, tmp_path: Path, limit: int, expected: int
) -> None:
    recording = tmp_path / "voice.amr"
    recording.write_bytes(b"#!AMR\n" + bytes(320))  # the stand-in ignores what it is given
    settings = _settings(limit)

    started = time.monotonic()
    results = _in_threads(3, 2, lambda _: voice.decode(recording, settings))
    took = time.monotonic() - started

    assert all(r.seconds == 1.0 for r in results), results
    intervals = _decodes(slow_ffmpeg)
    assert len(intervals) == 6
    # Six decodes from three threads: at most `limit` ran at once, and as many as allowed did.
    assert _most_at_once(intervals) == expected
    if limit == 2:
        assert took >= 3 * 0.4  # three rounds of two
    assert slots.decoders(settings).held == 0


def test_a_decode_that_waits_too_long_is_told_busy_and_takes_no_slot(
    slow_ffmpeg: Path, tmp_path: Path
) -> None:
    recording = tmp_path / "voice.amr"
    recording.write_bytes(b"#!AMR\n" + bytes(320))
    settings = _settings(1, wait_s=0.1)
    results = _in_threads(1, 3, lambda _: voice.decode(recording, settings))
    busy = [r for r in results if isinstance(r, slots.SlotsBusyError)]
    assert len(busy) == 2  # the first decoded; the others gave up after 0.1 s
    assert len(_decodes(slow_ffmpeg)) == 1
    assert slots.decoders(settings).held == 0


def _parsers() -> int:
    """This process's file-parser children running now (from /proc)."""
    me = str(os.getpid())
    found = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        ppid = status.rsplit(")", 1)[1].split()[1]
        if ppid == me and b"bot.pipeline.file_text" in cmdline:
            found += 1
    return found


@pytest.mark.parametrize("limit", [2, 6])
def test_file_parsers_are_capped_per_process(tmp_path: Path, limit: int) -> None:
    document = tmp_path / "说明.txt"
    document.write_text("退货请在七天内申请。\n" * 50, encoding="utf-8")
    settings = _settings(limit)
    seen: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.append(_parsers())
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        results = _in_threads(3, 2, lambda _: files.parse(document, document.name, settings))
    finally:
        done.set()
        watcher.join()
    assert all(r["ok"] for r in results), results
    assert max(seen) <= limit
    if limit == 2:
        assert max(seen) == 2  # the cap, reached
    else:
        assert max(seen) > 2  # the measurement sees more at once when more are allowed
    assert slots.decoders(settings).held == 0


async def test_a_cancelled_waiter_leaves_no_slot_behind() -> None:
    pool = slots.Slots(1)

    async def hold_long() -> None:
        async with pool.hold(5):
            await asyncio.sleep(10)

    async with pool.hold(1):
        waiter = asyncio.ensure_future(hold_long())
        await asyncio.sleep(0.05)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
    assert pool.held == 0
    async with pool.hold(0.1):  # free at once: the cancelled waiter took nothing with it
        assert pool.held == 1


@pytest.fixture
def slow_pillow(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, float]]:
    """When each Pillow resize (the downscale's `thumbnail`) started and ended."""
    from PIL import Image

    spans: list[tuple[float, float]] = []
    lock = threading.Lock()
    resize = Image.Image.thumbnail

    def thumbnail(self: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        time.sleep(0.3)  # a phone photo's resize, long enough to see the overlap
        out = resize(self, *args, **kwargs)
        with lock:
            spans.append((started, time.monotonic()))
        return out

    monkeypatch.setattr(Image.Image, "thumbnail", thumbnail)
    return spans


def _photos(folder: Path, n: int) -> list[Path]:
    made = []
    for i in range(n):
        photo = folder / f"photo{i}.png"
        photo.write_bytes(error_code_picture(f"E-{i}", size=(1200, 600)))
        made.append(photo)
    return made


@pytest.mark.parametrize(("limit", "expected"), [(2, 2), (6, 6)])
def test_picture_downscales_are_capped_per_process(
    slow_pillow: list[tuple[float, float]], tmp_path: Path, limit: int, expected: int
) -> None:
    photos = _photos(tmp_path, 6)
    settings = _settings(limit)
    results = _in_threads(3, 2, lambda i: vision.downscale(photos[i], settings))
    assert all(isinstance(r, tuple) and r[0].is_file() for r in results), results
    assert len(slow_pillow) == 6
    # Six photos from three threads: at most `limit` resized at once, and as many as allowed.
    assert _most_at_once(slow_pillow) == expected
    assert slots.decoders(settings).held == 0


async def test_a_picture_that_finds_no_free_slot_gets_the_busy_answer(
    tmp_path: Path, open_runtime: Any, make_settings: Any
) -> None:
    (photo,) = _photos(tmp_path, 1)
    vllm = {"base_url": "http://127.0.0.1:9/v1", "model": "qwen2.5-vl", "vision": True}
    settings = make_settings(core={"decode_concurrency": 1, "decode_wait_s": 0.1}, vllm=vllm)
    msg = InboundMessage(
        platform=Platform.WECOM,
        app="default",
        event_id="busy-1",
        conversation_id="u1",
        sender_id="u1",
        text="[图片]",
        content=Content.IMAGE,
        placeholder=True,
        attachments=(Attachment(Content.IMAGE, "m1", path=str(photo), size=1),),
    )
    rt = await open_runtime(settings)
    async with slots.decoders(settings).hold(1):  # an ffmpeg holds the only slot
        prepared = await vision.prepare(msg, rt)
    (item,) = prepared.attachments
    assert (item.error, item.path, prepared.placeholder) == (images.BUSY, str(photo), True)
    assert "稍后" in autoreply.unsupported_reply(Content.IMAGE, item.error)
    assert slots.decoders(settings).held == 0
