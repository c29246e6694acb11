"""Files customers send, read as text: the type from the bytes, the knowledge loaders, the caps,
and the child process that runs them (bot/pipeline/file_text.py). Files are made here."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from bot.pipeline import file_text as ft
from tests.unit.knowledge.samples import encrypt_pdf, make_docx, make_pdf, make_xlsx

LIMITS = ft.Limits()


def invoice_pdf(pages: int = 1) -> bytes:
    first = ["发票号码 No.20261204", "金额合计 1280.00 元"]
    return make_pdf([first] + [[f"第 {n} 页 附件"] for n in range(2, pages + 1)], cjk=True)


def a_zip(**members: str) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return out.getvalue()


def scanned_pdf(pages: int = 2) -> bytes:
    """A PDF of pictures only, as a scanner makes it (Pillow writes each page as a JPEG)."""
    shots = []
    for n in range(pages):
        page = Image.new("RGB", (600, 800), "white")
        ImageDraw.Draw(page).text((40, 40), f"INVOICE PAGE {n + 1}", fill="black")
        shots.append(page)
    out = io.BytesIO()
    shots[0].save(out, "PDF", save_all=True, append_images=shots[1:])
    return out.getvalue()


def test_a_text_pdf_is_read_with_its_page_count() -> None:
    found = ft.extract(invoice_pdf(pages=3), "发票.pdf", LIMITS)
    assert (found.kind, found.pages, found.read_pages, found.truncated) == ("pdf", 3, 3, False)
    assert "金额合计 1280.00 元" in found.text
    assert "第 3 页 附件" in found.text


def test_pages_and_characters_are_capped() -> None:
    found = ft.extract(invoice_pdf(pages=5), "发票.pdf", ft.Limits(max_pages=2))
    assert (found.pages, found.read_pages) == (5, 2)
    assert "第 2 页" in found.text
    assert "第 3 页" not in found.text
    long_text = ("一二三四五六七八九十" * 300).encode()
    cut = ft.extract(long_text, "说明.txt", ft.Limits(max_chars=500))
    assert (len(cut.text), cut.truncated) == (500, True)


def test_docx_and_xlsx_are_read_through_the_loaders(tmp_path: Path) -> None:
    docx = make_docx(tmp_path / "合同.docx").read_bytes()
    found = ft.extract(docx, "合同.docx", LIMITS)
    assert found.kind == "docx"
    assert "# R3 路由器手册 / 保修" in found.text
    assert "主机 | 2 年 | 人为损坏除外" in found.text
    rows: list[list[object]] = [["品名", "数量", "单价"], ["路由器", 2, 199.5], ["网线", 10, 5]]
    sheet = make_xlsx(tmp_path / "报价.xlsx", rows).read_bytes()
    found = ft.extract(sheet, "报价.xlsx", LIMITS)
    assert found.kind == "xlsx"
    assert "品名 | 数量 | 单价\n路由器 | 2 | 199.5\n网线 | 10 | 5" in found.text
    assert "# 报价 · 备注" in found.text  # every sheet, not only the first
    capped = ft.extract(sheet, "报价.xlsx", ft.Limits(max_rows=2))
    assert "网线" not in capped.text


def test_text_files_in_chinese_windows_encodings() -> None:
    found = ft.extract("名称,金额\n发票,100\n".encode("gbk"), "账单.csv", LIMITS)
    assert (found.kind, found.text) == ("text", "名称,金额\n发票,100")
    with_bom = "\ufeff# 标题\n正文".encode()
    assert ft.extract(with_bom, "a.md", LIMITS).text == "# 标题\n正文"


@pytest.mark.parametrize(
    ("data", "name", "reason"),
    [
        (a_zip(**{"a.txt": "x"}), "发票.pdf", ft.MISMATCH),  # a .pdf that is a ZIP
        (b"%PDF-1.4 not really", "发票.docx", ft.MISMATCH),
        (a_zip(**{"a.txt": "x"}), "archive.zip", ft.NOT_SUPPORTED),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500), "旧合同.doc", ft.NOT_SUPPORTED),
        (bytes(range(256)) * 4, "data.bin", ft.NOT_SUPPORTED),
        (b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog", "坏.pdf", ft.CORRUPT),
        (b"PK\x03\x04 truncated", "坏.docx", ft.CORRUPT),
        (b"   \n\n  ", "空.txt", ft.EMPTY),
    ],
)
def test_files_we_do_not_read_say_why(data: bytes, name: str, reason: str) -> None:
    with pytest.raises(ft.FileError) as caught:
        ft.extract(data, name, LIMITS)
    assert caught.value.reason == reason


def test_an_encrypted_pdf_and_a_zip_bomb_are_refused() -> None:
    locked = encrypt_pdf(invoice_pdf(), user_password="secret", owner_password="owner")
    with pytest.raises(ft.FileError) as caught:
        ft.extract(locked, "发票.pdf", LIMITS)
    assert caught.value.reason == ft.ENCRYPTED
    bomb = a_zip(**{"word/document.xml": "0" * 2_000_000})
    with pytest.raises(ft.FileError) as caught:
        ft.extract(bomb, "合同.docx", ft.Limits(max_unzipped_bytes=1_000_000))
    assert caught.value.reason == ft.TOO_LARGE


def test_a_scan_gives_page_pictures_only_when_asked(tmp_path: Path) -> None:
    data = scanned_pdf(pages=3)
    with pytest.raises(ft.FileError) as caught:
        ft.extract(data, "扫描.pdf", LIMITS, tmp_path / "x")
    assert caught.value.reason == ft.SCANNED
    found = ft.extract(data, "扫描.pdf", ft.Limits(scan_pages=2), tmp_path / "x")
    assert (found.pages, found.read_pages, found.text) == (3, 2, "")
    assert [Path(p).name for p in found.scans] == ["x.page1.img", "x.page2.img"]
    with Image.open(found.scans[0]) as page:
        assert page.size == (600, 800)


def test_a_picture_sent_as_a_file_is_a_picture() -> None:
    out = io.BytesIO()
    Image.new("RGB", (10, 10)).save(out, "PNG")
    assert ft.extract(out.getvalue(), "发票照片.png", LIMITS).kind == "image"
    with pytest.raises(ft.FileError) as caught:
        ft.extract(out.getvalue(), "发票.pdf", LIMITS)
    assert caught.value.reason == ft.MISMATCH


def test_the_child_process_answers_json(tmp_path: Path) -> None:
    source = tmp_path / "发票.pdf"
    source.write_bytes(invoice_pdf())
    request = {"path": str(source), "name": "发票.pdf", "limits": {"max_chars": 1000}}
    done = subprocess.run(
        [sys.executable, "-m", "bot.pipeline.file_text"],
        input=json.dumps(request).encode(),
        capture_output=True,
        timeout=60,
        check=True,
    )
    outcome = json.loads(done.stdout)
    assert outcome["ok"] is True
    assert "金额合计 1280.00 元" in outcome["text"]
    source.write_bytes(a_zip(**{"a.txt": "x"}))
    done = subprocess.run(
        [sys.executable, "-m", "bot.pipeline.file_text"],
        input=json.dumps(request).encode(),
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert json.loads(done.stdout)["reason"] == ft.MISMATCH


def test_settings_names_and_every_refusal_has_its_own_answer(monkeypatch) -> None:
    from bot.pipeline import files
    from bot.settings import Settings

    monkeypatch.setenv("FILES_ENABLED", "false")
    monkeypatch.setenv("FILES_MAX_PAGES", "7")
    monkeypatch.setenv("FILES_PARSE_TIMEOUT_S", "3.5")
    settings = Settings.load(None)
    assert (settings.files.active, settings.files.max_pages) == (False, 7)
    assert settings.files.parse_timeout_s == 3.5
    reasons = [ft.NOT_SUPPORTED, ft.MISMATCH, ft.CORRUPT, ft.ENCRYPTED, ft.EMPTY, ft.SCANNED,
               ft.TOO_LARGE, ft.TOO_SLOW, "too_large", "refused", "failed"]  # fmt: skip
    answers = {files.problem_reply(r) for r in reasons}
    assert len(answers) == len(reasons)
    assert all(a.endswith("或用文字描述您的问题。") for a in answers)
    assert files.problem_reply("something new") == files.problem_reply("failed")


def test_a_parser_over_its_memory_limit_says_the_file_is_too_large(tmp_path: Path) -> None:
    """75 MB of paragraphs packed into 340 KB: python-docx needs far more than 256 MiB."""
    import asyncio

    from bot.pipeline import files
    from bot.settings import Settings

    packed = io.BytesIO()
    source = zipfile.ZipFile(make_docx(tmp_path / "small.docx"))
    with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as out:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "word/document.xml":
                paragraph = b"<w:p><w:r><w:t>" + b"A" * 500 + b"</w:t></w:r></w:p>"
                data = data.replace(b"</w:body>", paragraph * 150_000 + b"</w:body>")
            out.writestr(item, data)
    big = tmp_path / "big.docx"
    big.write_bytes(packed.getvalue())
    settings = Settings.load(
        None,
        core={"database_url": "sqlite://"},
        files={"parse_memory_mb": 256, "parse_timeout_s": 60},
    )
    outcome = asyncio.run(files.parse(big, "big.docx", settings))
    assert (outcome["ok"], outcome["reason"]) == (False, ft.TOO_LARGE)


def test_a_damaged_file_is_damaged_however_big_the_worker_is(tmp_path: Path) -> None:
    """Linux carries a parent's peak memory into its child's ru_maxrss: a 300 MiB worker
    made every damaged PDF look 'too large' under a 512 MiB parser limit."""
    source = tmp_path / "cut.pdf"
    source.write_bytes(invoice_pdf()[:300])
    request = {"path": str(source), "name": "发票.pdf", "memory_bytes": 512 * 2**20,
               "limits": {"max_chars": 1000}}  # fmt: skip
    parent = (
        "import subprocess, sys\n"
        "ballast = bytearray(b'x') * (300 * 2**20)\n"  # touched, so resident
        "done = subprocess.run([sys.executable, '-m', 'bot.pipeline.file_text'],\n"
        "                      input=sys.stdin.buffer.read(), capture_output=True, check=True)\n"
        "sys.stdout.buffer.write(done.stdout)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", parent],
        input=json.dumps(request).encode(),
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert json.loads(done.stdout)["reason"] == ft.CORRUPT
