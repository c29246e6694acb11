"""Speech made for the tests: espeak-ng says a sentence, ffmpeg and the AMR-NB codec encode it
as the platforms send it (AMR from the WeChat family, Opus in Ogg from Feishu, SILK v3).

Debian's ffmpeg has no AMR encoder, so AMR-NB frames come from libopencore-amrnb (the
codec library, called through ctypes; Debian package libopencore-amrnb0) and are written
in the RFC 4867 file format ffmpeg and the platforms use.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import subprocess
import wave
from pathlib import Path

_AMR_MODE_122 = 7  # MR122: 12.2 kbit/s, 32-byte frames
_AMR_FRAME_SAMPLES = 160  # 20 ms at 8 kHz


def spoken_wav(text: str, path: Path, *, voice: str = "cmn") -> Path:
    """`text` said by espeak-ng, as a WAV file at `path`."""
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True, timeout=30)
    return path


def pcm(source: Path, rate: int) -> bytes:
    """`source` as mono 16-bit PCM at `rate`, by ffmpeg."""
    return subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-nostdin", "-i", str(source), "-ac", "1",
         "-ar", str(rate), "-f", "s16le", "pipe:1"],
        check=True, capture_output=True, timeout=30,
    ).stdout  # fmt: skip


def seconds_of(source: Path) -> float:
    return len(pcm(source, 16_000)) / 32_000


def amr(source: Path, dest: Path) -> Path:
    """`source` encoded as AMR-NB 12.2k (``#!AMR\\n`` + frames), as WeCom and WeChat send it."""
    lib = ctypes.CDLL(ctypes.util.find_library("opencore-amrnb") or "libopencore-amrnb.so.0")
    lib.Encoder_Interface_init.restype = ctypes.c_void_p
    lib.Encoder_Interface_Encode.argtypes = [
        ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_short),
        ctypes.POINTER(ctypes.c_ubyte), ctypes.c_int,
    ]  # fmt: skip
    lib.Encoder_Interface_exit.argtypes = [ctypes.c_void_p]
    samples = pcm(source, 8000)
    step = _AMR_FRAME_SAMPLES * 2
    samples += b"\0" * (-len(samples) % step)
    state = lib.Encoder_Interface_init(0)
    out = bytearray(b"#!AMR\n")
    frame = (ctypes.c_ubyte * 64)()
    try:
        for start in range(0, len(samples), step):
            chunk = (ctypes.c_short * _AMR_FRAME_SAMPLES).from_buffer_copy(
                samples[start : start + step]
            )
            n = lib.Encoder_Interface_Encode(state, _AMR_MODE_122, chunk, frame, 0)
            out += bytes(frame[:n])
    finally:
        lib.Encoder_Interface_exit(state)
    dest.write_bytes(bytes(out))
    return dest


def opus_ogg(source: Path, dest: Path) -> Path:
    """`source` as Opus in Ogg, as Feishu sends voice."""
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-nostdin", "-y", "-i", str(source), "-ac", "1",
         "-ar", "16000", "-c:a", "libopus", "-b:a", "24k", str(dest)],
        check=True, timeout=30,
    )  # fmt: skip
    return dest


def silk(source: Path, dest: Path) -> Path:
    """`source` as SILK v3 at 24 kHz with WeChat's leading 0x02 byte (silk-python encodes)."""
    import pysilk

    out = io.BytesIO()
    pysilk.encode(io.BytesIO(pcm(source, 24_000)), out, 24_000, 24_000, tencent=True)
    dest.write_bytes(out.getvalue())
    return dest


def wav_seconds(data: bytes) -> tuple[float, int, int]:
    """(seconds, sample rate, channels) of a WAV."""
    with wave.open(io.BytesIO(data)) as wav:
        return wav.getnframes() / wav.getframerate(), wav.getframerate(), wav.getnchannels()
