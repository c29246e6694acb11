"""Files in chat, end to end: a signed, encrypted webhook → Redis/Celery → the platform's media
API (fake) → the parser child process (the knowledge loaders) → the OpenAI-compatible model
(fake, recording every prompt) → the reply.

Files are made here: PDFs by hand (tests/unit/knowledge/samples.py), DOCX with python-docx,
XLSX with openpyxl, scans with Pillow. Each test asserts the file's words reached the model,
or, for a file that cannot be read, the clear answer the customer got and that no model
guessed at it.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any

import docx
import pytest
from PIL import Image

from adapters.feishu import simulate as feishu_simulate
from adapters.wecom import simulate as wecom_simulate
from adapters.wecom_kf import simulate as wecom_kf_simulate
from bot.agent.documents import FILE_QUESTION, FILES_HEADER, TEXT_SUFFIX
from bot.pipeline import autoreply, files
from bot.pipeline import file_text as ft
from tests.fakes.base import serve
from tests.fakes.feishu_api import FeishuFakeState, make_feishu_app
from tests.fakes.openai_server import pictures_sent
from tests.fakes.wecom_kf_api import WeComKfFakeState, make_wecom_kf_app
from tests.integration.conftest import wait_for
from tests.unit.bot.test_file_text import a_zip, invoice_pdf, scanned_pdf
from tests.unit.knowledge.samples import make_xlsx

FEISHU_TOKEN = "feishu-files-token"
INVOICE_WORDS = "金额合计 1280.00 元"


def _wecom_post(wecom_app: Any, fields: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    now = int(time.time())
    inner = {
        "ToUserName": wecom_app.corp_id,
        "CreateTime": now,
        "AgentID": int(wecom_app.agent_id),
        "MsgId": str(secrets.randbelow(10**18) + 10**18),
        **fields,
    }
    return wecom_simulate.build_post(
        inner,
        corp_id=wecom_app.corp_id,
        agent_id=wecom_app.agent_id,
        token=wecom_app.token,
        aes_key=wecom_app.aes_key,
        timestamp=str(now),
        nonce=str(secrets.randbelow(10**9)),
        random_prefix=os.urandom(16),
    )


async def _send(client: Any, wecom_app: Any, **fields: Any) -> None:
    query, body = _wecom_post(wecom_app, fields)
    resp = await client.post("/webhooks/wecom", params=query, data=body)
    assert resp.status == 200, await resp.text()


async def _send_file(client: Any, wecom_app: Any, user: str, media_id: str, name: str) -> None:
    await _send(client, wecom_app, FromUserName=user, MsgType="file", MediaId=media_id,
                FileName=name)  # fmt: skip


def _system(request: Any) -> str:
    return str(request.json["messages"][0]["content"])


def _asked(request: Any) -> Any:
    return request.json["messages"][-1]["content"]


def _listed(folder: Path) -> list[Path]:
    return list(folder.iterdir())


def contract_docx() -> bytes:
    document = docx.Document()
    document.add_heading("购销合同", level=1)
    document.add_heading("第一条 标的", level=2)
    document.add_paragraph("卖方向买方提供 R3 路由器 100 台。")
    document.add_heading("第三条 付款方式", level=2)
    document.add_paragraph("买方应在收货后 30 日内一次付清货款，逾期按日万分之五支付违约金。")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


async def test_a_wecom_file_is_read_and_joins_the_conversation(
    make_settings, make_client, celery_worker, fakes, wecom_app, tmp_path
) -> None:
    fakes.wecom.add_media("PDF_1", invoice_pdf(pages=2), "application/pdf")
    sheet = make_xlsx(tmp_path / "报价.xlsx", [["品名", "单价"], ["路由器 R3", 199.5]])
    fakes.wecom.add_media("XLSX_1", sheet.read_bytes(), "application/octet-stream")
    # Every knowledge match counts as low here: two such turns would hand the chat over.
    handoff = {"low_confidence": 0.99, "low_confidence_turns": 2}
    settings = make_settings(**fakes.sections(wecom_app), handoff=handoff)
    client = await make_client(settings)
    celery_worker(settings)

    await _send_file(client, wecom_app, "zhangsan", "PDF_1", "发票.pdf")
    await wait_for(lambda: len(fakes.wecom.sent) == 1)
    assert [r.query["media_id"] for r in fakes.wecom.matching("/cgi-bin/media/get")] == ["PDF_1"]
    first = fakes.vllm.matching("/chat/completions")[0]
    # The file's words are data in the system message; a file alone asks what it holds.
    assert FILES_HEADER in _system(first)
    assert "《发票.pdf》" in _system(first)
    assert "（共 2 页）" in _system(first)
    assert INVOICE_WORDS in _system(first)
    assert _asked(first) == FILE_QUESTION
    assert fakes.wecom.sent[0]["content"] == f"ANSWER: {FILE_QUESTION}"

    # A question a minute later is asked with the invoice.
    await _send(client, wecom_app, FromUserName="zhangsan", MsgType="text",
                Content="帮我看看这张发票的金额对不对")  # fmt: skip
    await wait_for(lambda: len(fakes.wecom.sent) == 2)
    second = fakes.vllm.matching("/chat/completions")[1]
    assert _asked(second) == "帮我看看这张发票的金额对不对"
    assert INVOICE_WORDS in _system(second)
    # The stored turn is the placeholder, never the file's text: the history stays short.
    history = [m["content"] for m in second.json["messages"][1:-1]]
    assert "[文件] 发票.pdf" in history
    assert not any(INVOICE_WORDS in str(m) for m in history)
    # Questions about the file are not knowledge questions: however poorly the knowledge
    # base matches them, they do not count toward the low-confidence handoff.
    await _send(client, wecom_app, FromUserName="zhangsan", MsgType="text",
                Content="第二页写的附件是哪一份")  # fmt: skip
    await wait_for(lambda: len(fakes.wecom.sent) == 3)
    assert fakes.wecom.sent[2]["content"] == "ANSWER: 第二页写的附件是哪一份"

    # A workbook: every row the model needs; another customer never sees zhangsan's file.
    await _send_file(client, wecom_app, "lisi", "XLSX_1", "报价.xlsx")
    await wait_for(lambda: len(fakes.wecom.sent) == 4)
    third = next(r for r in fakes.vllm.matching("/chat/completions") if "品名" in _system(r))
    assert "品名 | 单价\n路由器 R3 | 199.5" in _system(third)
    assert INVOICE_WORDS not in _system(third)


@pytest.fixture
def feishu_api():
    state = FeishuFakeState(app_id="cli_files", app_secret=secrets.token_urlsafe(16))
    with serve(make_feishu_app(state)) as url:
        yield state, url


def _feishu_event(state: FeishuFakeState, message_id: str, msg_type: str, content: dict) -> dict:
    now = int(time.time())
    event = feishu_simulate.text_event(
        "", user_open_id="ou_wangwu", message_id=message_id, chat_id="oc_p2p",
        create_time_ms=now * 1000,
    )  # fmt: skip
    event["message"].update(message_type=msg_type, content=json.dumps(content))
    return feishu_simulate.envelope(
        "im.message.receive_v1", event, app_id=state.app_id, verification_token=FEISHU_TOKEN,
        event_id=secrets.token_hex(16), create_time_ms=now * 1000,
    )  # fmt: skip


async def test_a_feishu_contract_is_read_and_its_third_article_asked_about(
    make_settings, make_client, celery_worker, fakes, wecom_app, feishu_api
) -> None:
    state, url = feishu_api
    state.add_resource("om_file_1", "file_v3_contract", contract_docx(), "application/octet-stream")
    sections = fakes.sections(wecom_app)
    sections["feishu"] = {
        "app_id": state.app_id,
        "app_secret": state.app_secret,
        "verification_token": FEISHU_TOKEN,
        "api_base": url,
        "bot_open_id": "ou_bot",
    }
    settings = make_settings(**sections)
    client = await make_client(settings)
    celery_worker(settings)

    content = {"file_key": "file_v3_contract", "file_name": "购销合同.docx"}
    payload = _feishu_event(state, "om_file_1", "file", content)
    assert (await client.post("/webhooks/feishu", json=payload)).status == 200
    await wait_for(lambda: len(state.sent) == 1)
    (fetch,) = state.matching("/open-apis/im/v1/messages/om_file_1/resources/file_v3_contract")
    assert fetch.query == {"type": "file"}
    assert state.sent[0]["text"] == f"ANSWER: {FILE_QUESTION}"

    question = {"text": "这份合同第三条是什么意思"}
    payload = _feishu_event(state, "om_text_2", "text", question)
    assert (await client.post("/webhooks/feishu", json=payload)).status == 200
    await wait_for(lambda: len(state.sent) == 2)
    asked = fakes.vllm.matching("/chat/completions")[1]
    assert _asked(asked) == "这份合同第三条是什么意思"
    assert "《购销合同.docx》" in _system(asked)
    assert "第三条 付款方式" in _system(asked)
    assert "买方应在收货后 30 日内一次付清货款" in _system(asked)


async def test_files_that_cannot_be_read_get_a_clear_answer(
    make_settings, make_client, celery_worker, fakes, wecom_app
) -> None:
    fakes.wecom.add_media("ZIP", a_zip(**{"a.txt": "x"}), "application/pdf")  # a .pdf ZIP
    fakes.wecom.add_media("CUT", invoice_pdf()[:300], "application/pdf")
    old_word = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(4000)  # Word 97-2003
    fakes.wecom.add_media("OLD", old_word, "application/msword")
    fakes.wecom.add_media("BIG", "很长的说明。".encode() * 5000, "text/plain")
    fakes.wecom.add_media("SCAN", scanned_pdf(pages=1), "application/pdf")
    photo = io.BytesIO()
    Image.new("RGB", (40, 30), "white").save(photo, "PNG")
    fakes.wecom.add_media("PHOTO", photo.getvalue(), "image/png")
    sections = fakes.sections(wecom_app)
    sections["wecom"].update(media_max_bytes=20_000)
    settings = make_settings(**sections)
    client = await make_client(settings)
    celery_worker(settings)
    cases = {
        "u_zip": ("ZIP", "发票.pdf", ft.MISMATCH),
        "u_cut": ("CUT", "发票.pdf", ft.CORRUPT),
        "u_old": ("OLD", "合同.doc", ft.NOT_SUPPORTED),
        "u_big": ("BIG", "说明.txt", "too_large"),  # over WECOM_MEDIA_MAX_BYTES
        "u_scan": ("SCAN", "扫描件.pdf", ft.SCANNED),  # no vision model here
        "u_missing": ("NO_SUCH_MEDIA", "a.pdf", "failed"),  # media/get answers 40007
    }
    for user, (media_id, name, _) in cases.items():
        await _send_file(client, wecom_app, user, media_id, name)
    # A picture sent as a file, and no vision model: answered as a picture.
    await _send_file(client, wecom_app, "u_photo", "PHOTO", "发票照片.png")
    await wait_for(lambda: len(fakes.wecom.sent) == len(cases) + 1)
    answers = {m["touser"]: m["content"] for m in fakes.wecom.sent}
    assert answers.pop("u_photo") == autoreply.unsupported_reply("image")
    assert answers == {user: files.problem_reply(why) for user, (_, _, why) in cases.items()}
    assert len(set(answers.values())) == len(cases)  # each says what went wrong
    assert fakes.vllm.matching("/chat/completions") == []  # no model guessed at them
    counted = await _metric(client, "bot_files_read_total", platform="wecom", outcome=ft.MISMATCH)
    assert counted >= 1


async def _metric(client: Any, name: str, **labels: str) -> float:
    text = await (await client.get("/metrics")).text()
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if match and ",".join(sorted(match.group(1).split(","))) == want:
            return float(match.group(2))
    return 0.0


async def test_a_slow_download_gets_a_clear_answer_and_blocks_no_one(
    make_settings, make_client, celery_worker, fakes, wecom_app
) -> None:
    fakes.wecom.add_media("SLOW", invoice_pdf(), "application/pdf")
    fakes.wecom.media_delay_s = 5.0
    sections = fakes.sections(wecom_app)
    sections["wecom"].update(media_timeout_s=1.0)
    settings = make_settings(**sections)
    client = await make_client(settings)
    celery_worker(settings)
    await _send_file(client, wecom_app, "u_slow", "SLOW", "发票.pdf")
    await _send(client, wecom_app, FromUserName="u_text", MsgType="text", Content="在吗")
    await wait_for(lambda: len(fakes.wecom.sent) == 2)
    assert [(m["touser"], m["content"]) for m in fakes.wecom.sent] == [
        ("u_text", "ANSWER: 在吗"),
        ("u_slow", files.problem_reply("failed")),
    ]


async def test_a_parser_past_its_time_is_killed_and_the_customer_told(
    make_settings, make_client, celery_worker, fakes, wecom_app
) -> None:
    fakes.wecom.add_media("PDF", invoice_pdf(pages=3), "application/pdf")
    # No child process starts, imports pypdf and answers within 50 ms: it is killed.
    settings = make_settings(**fakes.sections(wecom_app), files={"parse_timeout_s": 0.05})
    client = await make_client(settings)
    celery_worker(settings)
    await _send_file(client, wecom_app, "u_parse", "PDF", "发票.pdf")
    await wait_for(lambda: len(fakes.wecom.sent) == 1)
    assert fakes.wecom.sent[0]["content"] == files.problem_reply(ft.TOO_SLOW)
    assert fakes.vllm.matching("/chat/completions") == []


async def test_without_a_model_the_customer_is_told_what_arrived(
    make_settings, make_client, celery_worker, fakes, wecom_app
) -> None:
    fakes.wecom.add_media("PDF", invoice_pdf(), "application/pdf")
    settings = make_settings(wecom=fakes.sections(wecom_app)["wecom"])
    assert not settings.vllm.enabled
    assert not settings.dashscope.enabled
    client = await make_client(settings)
    celery_worker(settings)
    await _send_file(client, wecom_app, "u_plain", "PDF", "发票.pdf")
    await wait_for(lambda: len(fakes.wecom.sent) == 1)
    said = fakes.wecom.sent[0]["content"]
    assert said.startswith(
        "已收到您的文件《发票.pdf》。开头是：“发票号码 No.20261204 金额合计 1280.00 元”。"
    )
    assert "转人工" in said


async def test_a_file_its_message_does_not_name_takes_the_name_of_its_download(
    make_settings, make_client, celery_worker, fakes, wecom_app
) -> None:
    # The message names only a media id; media/get names the file in Content-Disposition,
    # as WeCom does (raw UTF-8 in quotes) or as RFC 5987 has it.
    fakes.wecom.add_media("PDF", invoice_pdf(), "application/pdf", name="发票.pdf")
    fakes.wecom.add_media(
        "ZIP",
        a_zip(**{"a.txt": "x"}),
        "application/octet-stream",
        disposition="attachment; filename*=UTF-8''%E5%90%88%E5%90%8C.pdf",
    )
    settings = make_settings(wecom=fakes.sections(wecom_app)["wecom"])  # no model
    client = await make_client(settings)
    celery_worker(settings)
    await _send(client, wecom_app, FromUserName="u_named", MsgType="file", MediaId="PDF")
    await _send(client, wecom_app, FromUserName="u_zip", MsgType="file", MediaId="ZIP")
    await wait_for(lambda: len(fakes.wecom.sent) == 2)
    answers = {m["touser"]: m["content"] for m in fakes.wecom.sent}
    assert answers["u_named"].startswith("已收到您的文件《发票.pdf》。开头是：“发票号码")
    # The type check reads the name too: a "PDF" that is a ZIP, not just a ZIP.
    assert answers["u_zip"] == files.problem_reply(ft.MISMATCH)
    # Kept under the name, cleaned by adapters.media.file_name.
    folder = settings.core.data_dir / "media" / "wecom" / "default"
    made = sorted(p.name.split("-", 2)[-1] for p in await asyncio.to_thread(_listed, folder))
    assert made == sorted(["发票.pdf", "发票.pdf" + TEXT_SUFFIX, "合同.pdf"])


async def test_a_scanned_pdf_goes_to_the_vision_model_as_pictures(
    make_settings, make_client, celery_worker, fakes, wecom_app
) -> None:
    fakes.wecom.add_media("SCAN", scanned_pdf(pages=4), "application/pdf")
    fakes.vllm.vision = True
    sections = fakes.sections(wecom_app)
    sections["vllm"].update(vision=True, image_max_side=300)
    settings = make_settings(**sections, files={"scan_pages": 2})
    client = await make_client(settings)
    celery_worker(settings)
    await _send_file(client, wecom_app, "u_scan", "SCAN", "扫描发票.pdf")
    await wait_for(lambda: len(fakes.wecom.sent) == 1)
    request = fakes.vllm.matching("/chat/completions")[0]
    assert "扫描件，没有文字层；附上前 2 页的图片（共 4 页）" in _system(request)
    assert len(pictures_sent(request.json["messages"])) == 2  # the first two pages
    assert _asked(request)[0] == {"type": "text", "text": FILE_QUESTION}
    folder = settings.core.data_dir / "media" / "wecom" / "default"
    made = sorted(p.name.split("-", 2)[-1] for p in await asyncio.to_thread(_listed, folder))
    assert "扫描发票.pdf.page1.img" in made
    assert "扫描发票.pdf.page3.img" not in made


async def test_a_question_sent_with_the_file_is_answered_from_it(
    make_settings, make_client, celery_worker, fakes, wecom_app
) -> None:
    fakes.wecom.add_media("PDF", invoice_pdf(), "application/pdf")
    # The question follows the file at once: one turn answers both (burst coalescing).
    settings = make_settings(**fakes.sections(wecom_app), core={"burst_window_s": 1.5})
    client = await make_client(settings)
    celery_worker(settings)
    await _send_file(client, wecom_app, "u_burst", "PDF", "发票.pdf")
    await _send(client, wecom_app, FromUserName="u_burst", MsgType="text",
                Content="帮我看看这张发票的金额对不对")  # fmt: skip
    await wait_for(lambda: len(fakes.wecom.sent) == 1)
    (request,) = fakes.vllm.matching("/chat/completions")
    assert _asked(request) == "[文件] 发票.pdf\n帮我看看这张发票的金额对不对"
    assert INVOICE_WORDS in _system(request)
    await asyncio.sleep(1.0)
    assert len(fakes.wecom.sent) == 1  # one answer for the two messages


async def test_a_kf_customer_file_is_read(
    make_settings, make_client, celery_worker, fakes, wecom_app, tmp_path
) -> None:
    kf = WeComKfFakeState(corp_id="wwkffiles", secret="kf-secret", open_kfid="wkFILES")
    rows: list[list[object]] = [["订单号", "金额"], ["A1001", 88], ["A1002", 120]]
    sheet = make_xlsx(tmp_path / "账单.xlsx", rows).read_bytes()
    kf.media["KF_XLSX"] = (sheet, "application/octet-stream")
    kf.media_names["KF_XLSX"] = "账单.xlsx"
    aes_key = secrets.token_urlsafe(32)[:43].replace("-", "a").replace("_", "b")
    with serve(make_wecom_kf_app(kf)) as kf_url:
        sections = fakes.sections(wecom_app)
        sections["wecom_kf"] = {
            "WECOM_CORP_ID": kf.corp_id,
            "secret": kf.secret,
            "token": "kf-token",
            "aes_key": aes_key,
            "WECOM_API_BASE": kf_url,
        }
        settings = make_settings(**sections)
        client = await make_client(settings)
        celery_worker(settings)
        # 微信客服's message names a file by its media id only: its download names it.
        kf.add(external_userid="wmFiles", msgtype="file", file={"media_id": "KF_XLSX"})
        now = int(time.time())
        query, body = wecom_kf_simulate.build_callback(
            corp_id=kf.corp_id, token="kf-token", aes_key=aes_key, sync_token=kf.new_sync_token(),
            open_kfid=kf.open_kfid, create_time=now, timestamp=str(now),
            nonce=secrets.token_hex(4), random_prefix=os.urandom(16),
        )  # fmt: skip
        assert (await client.post("/webhooks/wecom_kf", params=query, data=body)).status == 200
        await wait_for(lambda: len(kf.sent) == 1)
    assert [r.query["media_id"] for r in kf.matching("/cgi-bin/media/get")] == ["KF_XLSX"]
    (request,) = fakes.vllm.matching("/chat/completions")
    assert "订单号 | 金额\nA1001 | 88\nA1002 | 120" in _system(request)
    assert "《账单.xlsx》" in _system(request)
    assert kf.sent[0]["content"] == f"ANSWER: {FILE_QUESTION}"
