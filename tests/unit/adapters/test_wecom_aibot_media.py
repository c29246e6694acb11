"""The AI bot's encrypted media: AES-256-CBC with the EncodingAESKey, and the host allow-list."""

from __future__ import annotations

import base64
import os

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from adapters import media
from adapters.wechat import crypto
from adapters.wecom_aibot import media as aibot_media
from bot.domain import Attachment, Content
from bot.errors import PayloadError

AES = crypto.decode_aes_key("jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C")


def test_files_decrypt_as_wecom_encrypts_them() -> None:
    for size in (0, 1, 31, 32, 33, 1000):
        plain = os.urandom(size)
        sealed = aibot_media.encrypt_file(plain, AES)
        assert len(sealed) % 32 == 0  # PKCS#7 to 32
        assert len(sealed) > size  # always padded
        assert aibot_media.decrypt_file(sealed, AES) == plain
    # Known answer: the key's first 16 bytes are the IV, so one block of 32 pad bytes is fixed.
    enc = Cipher(algorithms.AES(AES), modes.CBC(AES[:16])).encryptor()
    assert aibot_media.encrypt_file(b"", AES) == enc.update(bytes([32]) * 32) + enc.finalize()


def test_media_urls_only_from_allowed_hosts() -> None:
    hosts = media.host_list("myqcloud.com, http://127.0.0.1:8080")
    allowed = [
        "https://ww-aibot-img-1.cos.ap-guangzhou.myqcloud.com/a?sign=1",
        "https://myqcloud.com/x",
        "http://127.0.0.1:8080/aibot-media/x",
    ]
    refused = [
        "http://x.myqcloud.com/a",  # not https
        "https://evilmyqcloud.com/a",
        "https://myqcloud.com.evil.com/a",
        "http://127.0.0.1:8081/x",
        "http://169.254.169.254/latest",
        "https://u:p@x.myqcloud.com/a",
        "file:///etc/passwd",
    ]
    assert [media.allowed_url(u, hosts) for u in allowed] == [True] * len(allowed)
    assert [media.allowed_url(u, hosts) for u in refused] == [False] * len(refused)


def test_what_does_not_decrypt_is_refused() -> None:
    sealed = aibot_media.encrypt_file(b"picture bytes", AES)
    for bad in (b"", sealed[:-1], sealed[:-16] + bytes(16)):
        with pytest.raises(PayloadError):
            aibot_media.decrypt_file(bad, AES)


def test_attachments_of_image_file_and_mixed_messages() -> None:
    image = {"msgtype": "image", "image": {"url": "https://a.myqcloud.com/1"}}
    assert aibot_media.attachments(image, "image") == (
        Attachment(Content.IMAGE, "https://a.myqcloud.com/1"),
    )
    file = {"msgtype": "file", "file": {"url": " https://a.myqcloud.com/2 "}}
    assert aibot_media.attachments(file, "file") == (
        Attachment(Content.FILE, "https://a.myqcloud.com/2"),
    )
    items = [
        {"msgtype": "text", "text": {"content": "看看"}},
        {"msgtype": "image", "image": {"url": "https://a.myqcloud.com/3"}},
        {"msgtype": "image", "image": {"url": 7}},
        "junk",
    ]
    mixed = {"msgtype": "mixed", "mixed": {"msg_item": items}}
    assert aibot_media.attachments(mixed, "mixed") == (
        Attachment(Content.IMAGE, "https://a.myqcloud.com/3"),
    )
    assert aibot_media.attachments({"msgtype": "text", "text": {"content": "x"}}, "text") == ()
    assert aibot_media.attachments({"msgtype": "mixed", "mixed": "no"}, "mixed") == ()


def test_a_long_connection_message_key_decodes_in_every_spelling() -> None:
    raw = os.urandom(32)
    for spelled in (
        base64.b64encode(raw).decode(),  # standard, as the SDKs send it
        base64.b64encode(raw).decode().rstrip("="),  # padding lost
        base64.urlsafe_b64encode(raw).decode(),  # URL-safe letters
        " " + base64.b64encode(raw).decode() + "\n",
    ):
        assert aibot_media.message_key(spelled) == raw


@pytest.mark.parametrize(
    ("aeskey", "why"),
    [
        ("", "without its aeskey"),
        ("not base64 at all!", "not base64"),
        (base64.b64encode(bytes(range(16))).decode(), "16 bytes, not 32"),
        ("中文", "not base64"),
    ],
)
def test_a_bad_message_key_is_refused_without_naming_it(aeskey: str, why: str) -> None:
    with pytest.raises(PayloadError) as caught:
        aibot_media.message_key(aeskey)
    assert why in caught.value.reason
    assert not aeskey.strip() or aeskey not in str(caught.value)


def test_long_connection_attachments_carry_their_own_key() -> None:
    k1, k2 = (base64.b64encode(os.urandom(32)).decode() for _ in range(2))
    image = {"msgtype": "image", "image": {"url": "https://a.myqcloud.com/1", "aeskey": k1}}
    (got,) = aibot_media.attachments(image, "image", keyed=True)
    assert (got.ref, got.key) == ("https://a.myqcloud.com/1", k1)
    assert k1 not in repr(got)  # never shown in a log line or a traceback
    assert Attachment.from_json(got.to_json()) == got  # through the queue and back
    # Webhook mode reads no key from the message (the EncodingAESKey opens its files).
    assert aibot_media.attachments(image, "image")[0].key == ""
    items = [
        {"msgtype": "image", "image": {"url": "https://a.myqcloud.com/2", "aeskey": k2}},
        {"msgtype": "image", "image": {"url": "https://a.myqcloud.com/3"}},  # no key: refused
    ]
    mixed = {"msgtype": "mixed", "mixed": {"msg_item": items}}
    assert [a.key for a in aibot_media.attachments(mixed, "mixed", keyed=True)] == [k2, ""]
    file = {"msgtype": "file", "file": {"url": "https://a.myqcloud.com/4", "aeskey": k1}}
    assert aibot_media.attachments(file, "file", keyed=True)[0].key == k1
    # Without a key the JSON stays as before.
    assert "key" not in Attachment(Content.IMAGE, "u").to_json()
