"""Pictures for a vision model: checked, downscaled and encoded as OpenAI `image_url` parts.

The type is read from the bytes, never from a file name or a Content-Type header (a `.jpg`
that is a ZIP is not a picture). Pillow decodes only what the sniff allows, refuses
decompression bombs, and every picture is sent as a JPEG no longer than `max_side` on its
longer side: a VL model's cost grows with pixels, and a phone photo has far more than a
question needs. Content parts: https://platform.openai.com/docs/guides/vision (vLLM serves the
same format for its multimodal models, https://docs.vllm.ai/en/latest/features/multimodal_inputs.html).
"""

from __future__ import annotations

import base64
import io
import warnings
from collections.abc import Sequence
from typing import Any

from bot.llm.base import ChatMessage

# Reasons a picture cannot be shown, as attachments record them (`Attachment.error`).
NOT_IMAGE = "not_image"
CORRUPT = "corrupt"
TOO_LARGE = "too_large"
BUSY = "busy"  # every decoder slot stayed taken for BOT_DECODE_WAIT_S (bot/pipeline/slots.py)
# Decoding this many pixels would take hundreds of MB: refused before decoding.
MAX_PIXELS = 40_000_000
JPEG_QUALITY = 85
# What stands for a picture when a model that cannot see is asked (the router's fallback).
PICTURE_TEXT = "[图片]"

# Magic numbers of the formats Pillow decodes here, https://en.wikipedia.org/wiki/List_of_file_signatures
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
)
_PIL_FORMATS = {
    "image/jpeg": "JPEG",
    "image/png": "PNG",
    "image/gif": "GIF",
    "image/bmp": "BMP",
    "image/webp": "WEBP",
}


class ImageError(ValueError):
    """A picture that cannot be shown to the model; `reason` is NOT_IMAGE, CORRUPT or TOO_LARGE."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}" if self.detail else self.reason


def sniff(data: bytes) -> str:
    """The picture type the bytes say they are ("" when they are no picture we read)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((kind for magic, kind in _MAGIC if data.startswith(magic)), "")


def downscale(data: bytes, *, max_side: int, max_pixels: int = MAX_PIXELS) -> bytes:
    """`data` (a picture of a sniffed type) as a JPEG at most `max_side` pixels on a side.

    Raises ImageError: NOT_IMAGE for other bytes, TOO_LARGE over `max_pixels`, CORRUPT when
    the picture does not decode.
    """
    from PIL import Image, UnidentifiedImageError

    kind = sniff(data)
    if not kind:
        raise ImageError(NOT_IMAGE, "the bytes are not a JPEG, PNG, GIF, BMP or WebP picture")
    try:
        with warnings.catch_warnings():
            # Pillow warns, then raises, on huge pictures: we decide by our own limit below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[_PIL_FORMATS[kind]]) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise ImageError(TOO_LARGE, f"{width}x{height} pixels")
                img.seek(0)  # the first frame of an animation
                img.load()
                picture = _rgb(img)
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        # Pillow reports truncated or malformed data with any of these.
        raise ImageError(CORRUPT, type(exc).__name__) from exc
    except Image.DecompressionBombError as exc:
        raise ImageError(TOO_LARGE, "decompression bomb") from exc
    picture.thumbnail((max_side, max_side))
    out = io.BytesIO()
    picture.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return out.getvalue()


def _rgb(img: Any) -> Any:
    """The picture on a white background, in RGB (JPEG has no transparency)."""
    from PIL import Image

    if img.mode in ("RGBA", "LA", "P"):
        rgba = img.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return img.convert("RGB")


def image_part(jpeg: bytes) -> dict[str, Any]:
    """One OpenAI `image_url` content part carrying a JPEG as a data URL."""
    url = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
    return {"type": "image_url", "image_url": {"url": url}}


def with_pictures(text: str, jpegs: Sequence[bytes]) -> str | list[dict[str, Any]]:
    """A user message's content: `text`, then each picture (just `text` when there are none)."""
    if not jpegs:
        return text
    return [{"type": "text", "text": text}, *(image_part(j) for j in jpegs)]


def has_pictures(messages: Sequence[ChatMessage]) -> bool:
    """Whether any message carries an image part."""
    return any(
        isinstance(m.get("content"), list)
        and any(isinstance(p, dict) and p.get("type") == "image_url" for p in m["content"])
        for m in messages
    )


def text_only(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """`messages` for a model that cannot see: each picture becomes the text "[图片]"."""
    out: list[ChatMessage] = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            pieces = [
                str(p.get("text", "")) if p.get("type") == "text" else PICTURE_TEXT
                for p in content
                if isinstance(p, dict)
            ]
            m = {**m, "content": "\n".join(piece for piece in pieces if piece)}
        out.append(m)
    return out
