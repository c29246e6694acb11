"""Pictures made for the tests with Pillow: an error code drawn as text, and broken files."""

from __future__ import annotations

import io
import zipfile

from PIL import Image, ImageDraw


def error_code_picture(code: str, size: tuple[int, int] = (2000, 1000), fmt: str = "PNG") -> bytes:
    """A screenshot-like picture of an error dialog showing `code`."""
    img = Image.new("RGB", size, (240, 240, 240))
    draw = ImageDraw.Draw(img)
    width, height = size
    draw.rectangle((width // 8, height // 4, width * 7 // 8, height * 3 // 4), fill=(255, 255, 255))
    draw.text((width // 4, height // 2), f"ERROR {code}", fill=(200, 0, 0), font_size=height // 10)
    out = io.BytesIO()
    img.save(out, format=fmt)
    return out.getvalue()


def zip_named_jpg() -> bytes:
    """A ZIP archive, as a `.jpg` that is not a picture arrives."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("invoice.txt", "not a picture")
    return out.getvalue()


def truncated_png() -> bytes:
    """A PNG cut off in the middle of its pixel data (a broken upload)."""
    whole = error_code_picture("E-0", size=(400, 300))
    return whole[: len(whole) // 2]
