"""Pictures for a vision model: the type from the bytes, downscaled JPEGs, clear refusals."""

from __future__ import annotations

import base64
import io
import zipfile

import pytest
from PIL import Image

from bot.llm import images


def _picture(size: tuple[int, int], fmt: str, mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, (10, 20, 30, 0) if mode == "RGBA" else (10, 20, 30)).save(out, fmt)
    return out.getvalue()


@pytest.mark.parametrize(
    ("fmt", "kind"),
    [
        ("JPEG", "image/jpeg"),
        ("PNG", "image/png"),
        ("GIF", "image/gif"),
        ("BMP", "image/bmp"),
        ("WEBP", "image/webp"),
    ],
)
def test_the_type_is_read_from_the_bytes(fmt: str, kind: str) -> None:
    assert images.sniff(_picture((8, 8), fmt)) == kind


@pytest.mark.parametrize(
    ("size", "expected"),
    [((2000, 1000), (640, 320)), ((300, 900), (213, 640)), ((50, 40), (50, 40))],
)
def test_pictures_become_jpegs_within_the_longest_side(
    size: tuple[int, int], expected: tuple[int, int]
) -> None:
    jpeg = images.downscale(_picture(size, "PNG"), max_side=640)
    assert images.sniff(jpeg) == "image/jpeg"
    with Image.open(io.BytesIO(jpeg)) as img:
        assert (img.format, img.size) == ("JPEG", expected)


def test_transparency_is_flattened_on_white() -> None:
    jpeg = images.downscale(_picture((20, 20), "PNG", mode="RGBA"), max_side=64)
    with Image.open(io.BytesIO(jpeg)) as img:
        assert img.getpixel((5, 5)) == pytest.approx((255, 255, 255), abs=3)


def test_a_zip_named_jpg_is_not_a_picture() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("a.txt", "x")
    with pytest.raises(images.ImageError) as info:
        images.downscale(out.getvalue(), max_side=640)
    assert info.value.reason == images.NOT_IMAGE


def test_a_truncated_picture_is_corrupt() -> None:
    whole = _picture((400, 300), "PNG")
    with pytest.raises(images.ImageError) as info:
        images.downscale(whole[:100], max_side=640)
    assert info.value.reason == images.CORRUPT


def test_a_huge_canvas_is_refused_before_decoding() -> None:
    # A small PNG that would decode to 100 megapixels.
    out = io.BytesIO()
    Image.new("1", (10_000, 10_000), 0).save(out, "PNG")
    bomb = out.getvalue()
    assert len(bomb) < 100_000
    with pytest.raises(images.ImageError) as info:
        images.downscale(bomb, max_side=640)
    assert info.value.reason == images.TOO_LARGE


def test_parts_are_openai_image_url_data_urls() -> None:
    content = images.with_pictures("看看", [b"abc"])
    assert content == [
        {"type": "text", "text": "看看"},
        {
            "type": "image_url",
            "image_url": {"url": "data:image/jpeg;base64," + base64.b64encode(b"abc").decode()},
        },
    ]
    assert images.with_pictures("看看", []) == "看看"
