"""PDF loading: the text layer, Chinese through a CID font, and every way a PDF can fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from knowledge.loaders import Chunk, LoadError, load_document, load_file

from .samples import encrypt_pdf, make_pdf


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_the_text_layer_of_every_page_is_loaded(tmp_path: Path) -> None:
    pdf = make_pdf([["Returns are accepted within 7 days.", "Shipping is free."], ["Page two."]])
    chunks = load_document(_write(tmp_path / "policy.pdf", pdf))
    assert chunks == [
        Chunk(
            text="Returns are accepted within 7 days.\nShipping is free.\nPage two.",
            source="policy.pdf",
            section="policy",
            headings=("policy",),
        )
    ]


def test_chinese_text_through_a_cid_font_is_loaded_and_chunked(tmp_path: Path) -> None:
    lines = ["退货政策：签收后七天内可以申请退货。", "运费由买家承担；质量问题除外。"]
    path = _write(tmp_path / "退货.pdf", make_pdf([lines], cjk=True))
    chunks = load_document(path, max_chars=20)
    assert [c.text for c in chunks] == lines
    assert {c.section for c in chunks} == {"退货"}


def test_a_pdf_with_only_an_owner_password_opens(tmp_path: Path) -> None:
    pdf = encrypt_pdf(
        make_pdf([["Readable without a password."]]), user_password="", owner_password="owner"
    )
    result = load_file(_write(tmp_path / "owner.pdf", pdf))
    assert [c.text for c in result.chunks] == ["Readable without a password."]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (
            encrypt_pdf(make_pdf([["Secret."]]), user_password="secret", owner_password="owner"),
            "encrypted PDF",
        ),
        (make_pdf([[]]), r"no text layer \(scanned\?\)"),
        (b"\x8f\x13 random bytes, not a PDF at all" * 20, "corrupt PDF"),
        (make_pdf([["Cut short."]])[:300], "corrupt PDF"),
    ],
    ids=["encrypted", "scanned", "random", "truncated"],
)
def test_an_unreadable_pdf_is_a_clear_load_error(tmp_path: Path, data: bytes, reason: str) -> None:
    with pytest.raises(LoadError, match=reason) as caught:
        load_document(_write(tmp_path / "bad.pdf", data))
    assert caught.value.path == "bad.pdf"
