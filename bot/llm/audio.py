"""Voice messages decoded to what speech recognition takes: 16 kHz mono 16-bit WAV.

The platforms send AMR (WeCom app, 微信客服, Official Account), SILK v3 (WeChat's own voice
format, seen when such a file is forwarded), Opus in Ogg (Feishu) and the usual containers
(MP3, M4A, WAV, WebM). The format is read from the bytes, never from a name or a header.
ffmpeg decodes in a subprocess with a time limit, the demuxer forced to the sniffed format
and only local files allowed (a playlist must not make it fetch a URL); SILK is decoded
by silk-python in a thread. Output is capped at `max_seconds` (plus a little, to tell a long
message from one exactly at the cap). Nothing here runs on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import shutil
import wave
from dataclasses import dataclass
from pathlib import Path

# Reasons a voice message cannot be transcribed, as attachments record them (`Attachment.error`).
NOT_AUDIO = "not_audio"
CORRUPT = "corrupt"
TOO_LONG = "too_long"
NO_DECODER = "no_decoder"  # ffmpeg (or silk-python) is not installed

SAMPLE_RATE = 16_000
_BYTES_PER_S = SAMPLE_RATE * 2  # mono, 16-bit
# Shorter than this is no speech (a tap on the button).
MIN_SECONDS = 0.2
_STDERR_CHARS = 300
# SILK v3 runs at most 40 kbit/s: a file larger than this per second allowed is too long, and
# is refused before decoding (the decoder has no time cap of its own: 10 MB would be hours).
_SILK_MAX_BYTES_PER_S = 6_000

# Magic numbers (https://en.wikipedia.org/wiki/List_of_file_signatures; AMR: RFC 4867 §5;
# SILK v3: the header WeChat writes, optionally after one 0x02 byte) → ffmpeg demuxer.
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"#!AMR-WB\n", "amr"),  # the 3GPP AMR file demuxer reads both
    (0, b"#!AMR\n", "amr"),
    (0, b"#!SILK_V3", "silk"),
    (1, b"#!SILK_V3", "silk"),
    (0, b"OggS", "ogg"),
    (0, b"fLaC", "flac"),
    (0, b"ID3", "mp3"),
    (0, b"\x1a\x45\xdf\xa3", "matroska"),
    (4, b"ftyp", "mov"),
)


class AudioError(ValueError):
    """Audio that cannot be transcribed; `reason` is one of the constants above."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}" if self.detail else self.reason


@dataclass(frozen=True, slots=True)
class Decoded:
    """The WAV to send, and how long the speech is."""

    wav: bytes
    seconds: float
    source_format: str


def sniff(head: bytes) -> str:
    """The demuxer name of the audio format `head` starts with; "" when it is none we take."""
    for offset, magic, name in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    # An MP3 without an ID3 tag starts with a frame sync (11 bits set).
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return "mp3"
    return ""


def ffmpeg_path() -> str | None:
    """Where ffmpeg is, or None when it is not installed."""
    return shutil.which("ffmpeg")


def silk_available() -> bool:
    try:
        import pysilk  # noqa: F401
    except ImportError:
        return False
    return True


async def to_wav(path: Path, *, max_seconds: float, timeout_s: float) -> Decoded:
    """Decode the voice message at `path` (see module); AudioError when it cannot be."""
    head = await asyncio.to_thread(_head, path)
    fmt = sniff(head)
    if not fmt:
        raise AudioError(NOT_AUDIO, "unknown format")
    limit = max_seconds + 1.0
    if fmt == "silk":
        pcm = await _silk(path, limit, timeout_s)
    else:
        pcm = await _ffmpeg(path, fmt, limit, timeout_s)
    seconds = len(pcm) / _BYTES_PER_S
    if seconds > max_seconds:
        raise AudioError(TOO_LONG, f"over {max_seconds:.0f} s")
    if seconds < MIN_SECONDS:
        raise AudioError(CORRUPT, f"{seconds:.2f} s of audio decoded")
    return Decoded(wav=_wav(pcm), seconds=round(seconds, 2), source_format=fmt)


def _head(path: Path) -> bytes:
    with path.open("rb") as src:
        return src.read(16)


async def _ffmpeg(path: Path, fmt: str, limit_s: float, timeout_s: float) -> bytes:
    exe = ffmpeg_path()
    if exe is None:
        raise AudioError(NO_DECODER, "ffmpeg is not installed")
    args = [
        exe,
        *("-nostdin", "-hide_banner", "-loglevel", "error", "-threads", "1"),
        *("-protocol_whitelist", "file", "-f", fmt, "-i", f"file:{path}"),
        *("-t", f"{limit_s:.2f}", "-vn", "-ac", "1", "-ar", str(SAMPLE_RATE)),
        *("-f", "s16le", "-acodec", "pcm_s16le", "pipe:1"),
    ]
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        raise AudioError(CORRUPT, f"decoding took over {timeout_s:g} s") from None
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    if proc.returncode != 0 or not out:
        said = err.decode("utf-8", "replace").strip().splitlines()
        raise AudioError(
            CORRUPT, (said[-1] if said else f"ffmpeg exit {proc.returncode}")[:_STDERR_CHARS]
        )
    return out


async def _silk(path: Path, limit_s: float, timeout_s: float) -> bytes:
    if not silk_available():
        raise AudioError(NO_DECODER, "silk-python is not installed")
    size = await asyncio.to_thread(lambda: path.stat().st_size)
    if size > limit_s * _SILK_MAX_BYTES_PER_S:
        raise AudioError(TOO_LONG, f"{size} bytes of SILK is over {limit_s - 1:.0f} s")
    try:
        pcm = await asyncio.wait_for(asyncio.to_thread(_silk_decode, path), timeout_s)
    except TimeoutError:
        raise AudioError(CORRUPT, f"decoding took over {timeout_s:g} s") from None
    return pcm[: int(limit_s * _BYTES_PER_S)]


def _silk_decode(path: Path) -> bytes:
    import pysilk

    data = path.read_bytes()
    if data[:1] == b"\x02":  # WeChat's variant: one byte before the SILK header
        data = data[1:]
    out = io.BytesIO()
    try:
        pysilk.decode(io.BytesIO(data), out, SAMPLE_RATE)
    except Exception as exc:  # the decoder raises its own errors and ValueError
        raise AudioError(CORRUPT, f"SILK: {type(exc).__name__}") from None
    return out.getvalue()


def _wav(pcm: bytes) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(pcm)
    return out.getvalue()
