"""Voice decoding (bot/llm/audio.py) on real speech: espeak-ng, encoded as the platforms send it,
decoded by ffmpeg or silk-python to 16 kHz mono WAV; broken and hostile input."""

from __future__ import annotations

import asyncio
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from bot.llm import audio
from tests.integration import speech

SAID = "请问退货需要几天？"


@pytest.fixture(scope="module")
def said(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("said")
    wav = speech.spoken_wav(SAID, folder / "said.wav")
    return {
        "seconds": speech.seconds_of(wav),
        "wav": wav,
        "amr": speech.amr(wav, folder / "said.amr"),
        "ogg": speech.opus_ogg(wav, folder / "said.ogg"),
        "silk": speech.silk(wav, folder / "said.silk"),
    }


def _decode(path: Path, max_seconds: float = 60, timeout_s: float = 10) -> audio.Decoded:
    return asyncio.run(audio.to_wav(path, max_seconds=max_seconds, timeout_s=timeout_s))


@pytest.mark.parametrize(
    ("kind", "fmt", "tolerance_s"),
    [("amr", "amr", 0.05), ("ogg", "ogg", 0.05), ("silk", "silk", 0.05), ("wav", "wav", 0.01)],
)
def test_each_platform_format_becomes_16k_mono_wav_of_the_same_length(
    said: dict[str, Any], kind: str, fmt: str, tolerance_s: float
) -> None:
    decoded = _decode(said[kind])
    assert decoded.source_format == fmt
    seconds, rate, channels = speech.wav_seconds(decoded.wav)
    assert (rate, channels) == (16000, 1)
    assert abs(seconds - said["seconds"]) < tolerance_s, (seconds, said["seconds"])
    assert decoded.seconds == pytest.approx(seconds, abs=0.01)


def test_the_silk_header_without_wechats_leading_byte_is_read_too(
    said: dict[str, Any], tmp_path: Path
) -> None:
    plain = tmp_path / "plain.silk"
    plain.write_bytes(said["silk"].read_bytes()[1:])
    assert plain.read_bytes().startswith(b"#!SILK_V3")
    assert abs(_decode(plain).seconds - said["seconds"]) < 0.05


def test_too_long_is_refused_without_decoding_it_all(said: dict[str, Any]) -> None:
    with pytest.raises(audio.AudioError) as caught:
        _decode(said["amr"], max_seconds=1)
    assert caught.value.reason == audio.TOO_LONG
    with pytest.raises(audio.AudioError) as caught:
        _decode(said["silk"], max_seconds=1)
    assert caught.value.reason == audio.TOO_LONG


def test_a_silk_file_too_big_for_the_cap_is_refused_before_decoding(tmp_path: Path) -> None:
    # 1 MB claiming to be SILK would be minutes of speech: refused by its size, at once.
    path = tmp_path / "voice.silk"
    path.write_bytes(b"\x02#!SILK_V3" + b"\x00" * 1_000_000)
    started = time.monotonic()
    with pytest.raises(audio.AudioError) as caught:
        _decode(path, max_seconds=60)
    assert caught.value.reason == audio.TOO_LONG
    assert time.monotonic() - started < 0.5


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"#!AMR\n" + bytes(range(256)) * 4, audio.CORRUPT),  # the header, then noise
        (b"#!SILK_V3" + b"\xff" * 300, audio.CORRUPT),
        (b"OggS" + b"\0" * 200, audio.CORRUPT),
        (b"", audio.NOT_AUDIO),
        (b"<html>not a voice message</html>", audio.NOT_AUDIO),
        # A playlist would make ffmpeg fetch URLs: it is no format we decode.
        (b"#EXTM3U\n#EXTINF:1,\nhttp://127.0.0.1:1/x.amr\n", audio.NOT_AUDIO),
    ],
)
def test_broken_and_hostile_files_get_a_reason(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "voice.amr"
    path.write_bytes(content)
    with pytest.raises(audio.AudioError) as caught:
        _decode(path)
    assert caught.value.reason == reason


def test_a_zip_named_amr_is_not_audio(tmp_path: Path) -> None:
    path = tmp_path / "voice.amr"
    with zipfile.ZipFile(path, "w") as out:
        out.writestr("a.txt", "x")
    with pytest.raises(audio.AudioError) as caught:
        _decode(path)
    assert caught.value.reason == audio.NOT_AUDIO


def test_without_ffmpeg_the_reason_is_no_decoder(
    said: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no ffmpeg there
    assert audio.ffmpeg_path() is None
    with pytest.raises(audio.AudioError) as caught:
        _decode(said["amr"])
    assert caught.value.reason == audio.NO_DECODER
    # SILK needs no ffmpeg.
    assert _decode(said["silk"]).seconds > 1


def test_a_decoder_past_its_time_is_stopped(said: dict[str, Any]) -> None:
    # No ffmpeg starts and decodes in a millisecond: it is killed, and the reason given.
    started = time.monotonic()
    with pytest.raises(audio.AudioError) as caught:
        _decode(said["amr"], timeout_s=0.001)
    assert caught.value.reason == audio.CORRUPT
    assert "decoding took over" in caught.value.detail
    assert time.monotonic() - started < 2
