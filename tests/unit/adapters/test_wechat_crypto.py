"""WXBizMsgCrypt (docs/protocols/wechat-crypto.md): every known answer, then tampering."""

from __future__ import annotations

import base64
import struct

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from adapters.wechat import crypto as wechat_crypto
from adapters.xml import build_xml
from bot.errors import ConfigError, DecryptError, SignatureError, StaleRequestError
from tests.vectors import (
    Case,
    PlainSignatureCase,
    RawAesQuirk,
    plain_signature_cases,
    raw_aes_quirks,
    wechat_cases,
)

CASES = wechat_cases()
SIGNED = [pytest.param(c, id=c.id) for c in CASES if c.signed]
DECRYPTABLE = [pytest.param(c, id=c.id) for c in CASES if c.decryptable]
REPRODUCIBLE = [pytest.param(c, id=c.id) for c in CASES if c.reproducible]
REPLIES = [pytest.param(c, id=c.id) for c in CASES if c.reply_xml]
PLAIN = [pytest.param(c, id=c.id) for c in plain_signature_cases()]
QUIRKS = [pytest.param(quirk, id=quirk.id) for quirk in raw_aes_quirks()]

# Our own material for the tampering tests (not a vector).
KEY_TEXT = ("cryptoUnitTestKey" * 3)[:43]
KEY = wechat_crypto.decode_aes_key(KEY_TEXT)
CORP = "ww-test-corp"
PREFIX = b"0123456789abcdef"


def test_vector_selection_is_complete() -> None:
    # Guards against a loader change silently dropping known answers.
    assert len(SIGNED) >= 14
    assert len(DECRYPTABLE) >= 17
    assert len(REPRODUCIBLE) >= 5
    assert len(REPLIES) >= 2
    assert len(PLAIN) >= 2
    assert len(QUIRKS) == 1


# --- known answers -----------------------------------------------------------------------


@pytest.mark.parametrize("case", SIGNED)
def test_signature_matches_vector(case: Case) -> None:
    computed = wechat_crypto.signature(case.token, case.timestamp, case.nonce, case.encrypted)
    assert computed == case.msg_signature


@pytest.mark.parametrize("case", SIGNED)
def test_verify_accepts_vector_at_its_time(case: Case) -> None:
    sent_s = int(case.timestamp) / (1000 if case.timestamp_ms else 1)
    wechat_crypto.verify(
        case.msg_signature,
        token=case.token,
        timestamp=case.timestamp,
        nonce=case.nonce,
        encrypted=case.encrypted,
        now=sent_s + 299,
        timestamp_ms=case.timestamp_ms,
    )


@pytest.mark.parametrize("case", PLAIN)
def test_plain_signature_matches_vector(case: PlainSignatureCase) -> None:
    assert wechat_crypto.plain_signature(case.token, case.timestamp, case.nonce) == case.signature


@pytest.mark.parametrize("case", DECRYPTABLE)
def test_decrypt_matches_vector(case: Case) -> None:
    assert case.plaintext is not None
    assert case.receive_id is not None
    plain = wechat_crypto.decrypt(
        case.encrypted,
        aes_key=wechat_crypto.decode_aes_key(case.encoding_aes_key),
        receiver_id=case.receive_id,
    )
    # Byte for byte: the platform XML keeps its "\n"
    # (docs/protocols/pitfalls.md#pitfall-11-do-not-strip-the-plaintext).
    assert plain == case.plaintext.encode("utf-8")


@pytest.mark.parametrize("case", REPRODUCIBLE)
def test_pinned_prefix_reproduces_vector(case: Case) -> None:
    assert case.plaintext is not None
    assert case.receive_id is not None
    encrypted = wechat_crypto.encrypt(
        case.plaintext.encode("utf-8"),
        aes_key=wechat_crypto.decode_aes_key(case.encoding_aes_key),
        receiver_id=case.receive_id,
        random_prefix=case.random.encode("ascii"),
    )
    assert encrypted == case.encrypted


@pytest.mark.parametrize("case", REPLIES)
def test_encrypted_reply_xml_matches_vector(case: Case) -> None:
    body = build_xml(
        {
            "Encrypt": case.encrypted,
            "MsgSignature": case.msg_signature,
            "TimeStamp": int(case.timestamp),
            "Nonce": case.nonce,
        }
    )
    assert body == case.reply_xml.encode("utf-8")


@pytest.mark.parametrize("quirk", QUIRKS)
def test_sixteen_byte_pad_is_accepted_but_unframed_text_is_not(quirk: RawAesQuirk) -> None:
    # The Rust sample pads to 16 (pad 14) and has no random/length framing. Its padding is
    # valid under K=32 rules (1..32), so decrypt must get past padding and stop at framing.
    assert quirk.pad_byte <= 16
    with pytest.raises(DecryptError) as caught:
        wechat_crypto.decrypt(
            quirk.encrypted,
            aes_key=wechat_crypto.decode_aes_key(quirk.encoding_aes_key),
            receiver_id="",
        )
    assert "padding" not in caught.value.reason
    assert "length" in caught.value.reason


# --- keys ----------------------------------------------------------------------------------


def test_key_with_nonzero_trailing_bits_decodes() -> None:
    # 'G' = 000110: the last two bits are discarded; strict decoders refuse this key.
    lenient = wechat_crypto.decode_aes_key("A" * 42 + "G")
    assert len(lenient) == 32
    assert lenient == wechat_crypto.decode_aes_key("A" * 42 + "E")


@pytest.mark.parametrize(
    "bad",
    ["", "A" * 42, "A" * 44, "A" * 42 + "=", "A" * 42 + "+", "A" * 41 + "é" + "A", " " + "A" * 42],
)
def test_bad_key_is_config_error_without_echo(bad: str) -> None:
    with pytest.raises(ConfigError) as caught:
        wechat_crypto.decode_aes_key(bad)
    if bad:
        assert bad not in str(caught.value)


# --- verify: tampering and time ------------------------------------------------------------

_SIGNED_FIELDS = {
    "token": "test-token",
    "timestamp": "1700000000",
    "nonce": "n0nce",
    "encrypted": wechat_crypto.encrypt(b"hi", aes_key=KEY, receiver_id=CORP, random_prefix=PREFIX),
}
_GOOD_SIGNATURE = wechat_crypto.signature(**_SIGNED_FIELDS)


def _verify(
    expected: str | None = None,
    *,
    now: float = 1700000000,
    timestamp_ms: bool = False,
    changes: dict[str, str] | None = None,
) -> None:
    """Verify _SIGNED_FIELDS with some changed; expected defaults to their signature."""
    fields = {**_SIGNED_FIELDS, **(changes or {})}
    wechat_crypto.verify(
        _GOOD_SIGNATURE if expected is None else expected,
        token=fields["token"],
        timestamp=fields["timestamp"],
        nonce=fields["nonce"],
        encrypted=fields["encrypted"],
        now=now,
        timestamp_ms=timestamp_ms,
    )


def test_good_signature_passes() -> None:
    _verify()


@pytest.mark.parametrize("field", ["token", "timestamp", "nonce", "encrypted"])
def test_any_changed_input_is_rejected(field: str) -> None:
    original = _SIGNED_FIELDS[field]
    changes = {field: original[:-1] + ("2" if original.endswith("1") else "1")}
    with pytest.raises(SignatureError):
        _verify(changes=changes)


@pytest.mark.parametrize(
    "expected",
    [
        "",
        _GOOD_SIGNATURE.upper(),
        _GOOD_SIGNATURE[:-1],
        _GOOD_SIGNATURE + "0",
        "é" * 40,
        wechat_crypto.plain_signature("test-token", "1700000000", "n0nce"),
    ],
)
def test_wrong_signature_is_rejected(expected: str) -> None:
    with pytest.raises(SignatureError):
        _verify(expected)


@pytest.mark.parametrize("skew_s", [-301, 301, 10**6])
def test_stale_timestamp_is_rejected(skew_s: int) -> None:
    with pytest.raises(StaleRequestError):
        _verify(now=1700000000 + skew_s)


@pytest.mark.parametrize("skew_s", [-300, 0, 300])
def test_timestamp_at_window_edge_passes(skew_s: int) -> None:
    _verify(now=1700000000 + skew_s)


@pytest.mark.parametrize("timestamp", ["", "abc", "17e8", "-1700000000", " 1700000000", "١٢٣"])
def test_non_numeric_timestamp_is_stale(timestamp: str) -> None:
    # Correctly signed over the odd timestamp, so only the timestamp check can refuse it.
    signed = wechat_crypto.signature(**{**_SIGNED_FIELDS, "timestamp": timestamp})
    with pytest.raises(StaleRequestError):
        _verify(signed, changes={"timestamp": timestamp})


def test_millisecond_timestamps() -> None:
    ms = "1700000000123"
    signed = wechat_crypto.signature(**{**_SIGNED_FIELDS, "timestamp": ms})
    _verify(signed, changes={"timestamp": ms}, now=1700000100, timestamp_ms=True)
    with pytest.raises(StaleRequestError):
        # Read as seconds, the same value is far in the future.
        _verify(signed, changes={"timestamp": ms}, now=1700000100)


# --- decrypt: every check --------------------------------------------------------------------


def _seal_raw(plaintext: bytes) -> str:
    """AES-CBC over exactly these bytes (padding and framing included), as a forger would."""
    encryptor = Cipher(algorithms.AES(KEY), modes.CBC(KEY[:16])).encryptor()
    return base64.b64encode(encryptor.update(plaintext) + encryptor.finalize()).decode()


def _frame(msg: bytes, receive_id: bytes = CORP.encode(), msg_len: int | None = None) -> bytes:
    length = len(msg) if msg_len is None else msg_len
    return PREFIX + struct.pack(">I", length) + msg + receive_id


def _pad_to_32(data: bytes, pad: int | None = None) -> bytes:
    value = 32 - len(data) % 32 if pad is None else pad
    return data + bytes([value]) * value


def _decrypt(encrypted: str, receiver_id: str = CORP) -> bytes:
    return wechat_crypto.decrypt(encrypted, aes_key=KEY, receiver_id=receiver_id)


@pytest.mark.parametrize("text", ["", "a", "我是中文abcd123", "<xml>\n</xml>\n", "长" * 700])
def test_round_trip(text: str) -> None:
    msg = text.encode()
    sealed = wechat_crypto.encrypt(msg, aes_key=KEY, receiver_id=CORP, random_prefix=PREFIX)
    assert _decrypt(sealed) == msg


@pytest.mark.parametrize("pad", range(1, 33))
def test_every_pad_value_from_1_to_32_is_accepted(pad: int) -> None:
    # Choose the message length so that encrypt() pads with exactly `pad` bytes.
    overhead = len(_frame(b""))
    msg = b"x" * ((32 - (overhead + pad) % 32) % 32 + 32)
    assert 32 - len(_frame(msg)) % 32 == pad
    sealed = wechat_crypto.encrypt(msg, aes_key=KEY, receiver_id=CORP, random_prefix=PREFIX)
    assert _decrypt(sealed) == msg


def test_full_block_of_padding_when_aligned() -> None:
    msg = b"y" * (64 - len(_frame(b"")))
    sealed = base64.b64decode(
        wechat_crypto.encrypt(msg, aes_key=KEY, receiver_id=CORP, random_prefix=PREFIX)
    )
    assert len(sealed) == 96  # 64 bytes of framed text + 32 x 0x20


@pytest.mark.parametrize(
    "padded",
    [
        pytest.param(_pad_to_32(_frame(b"hello"))[:-1] + b"\x00", id="pad-byte-0"),
        pytest.param(_frame(b"hello").ljust(63, b"z") + b"\x21", id="pad-33"),
        pytest.param(_frame(b"hello").ljust(63, b"z") + b"\xff", id="pad-255"),
        pytest.param(
            _frame(b"hello").ljust(59, b"z") + b"\x05\x05\x04\x05\x05", id="inconsistent-pad"
        ),
        pytest.param(
            _frame(b"hello").ljust(59, b"z") + b"\x04\x05\x05\x05\x05", id="pad-too-short"
        ),
    ],
)
def test_corrupt_padding_is_rejected(padded: bytes) -> None:
    assert len(padded) % 16 == 0
    with pytest.raises(DecryptError, match="padding"):
        _decrypt(_seal_raw(padded))


def test_pad_longer_than_plaintext_is_rejected() -> None:
    with pytest.raises(DecryptError, match="padding"):
        _decrypt(_seal_raw(b"\x20" * 16))


def test_wrong_receive_id_is_rejected() -> None:
    sealed = wechat_crypto.encrypt(b"hi", aes_key=KEY, receiver_id="ww-other", random_prefix=PREFIX)
    with pytest.raises(DecryptError, match="receive id"):
        _decrypt(sealed)
    # A prefix of the right id is not the right id either.
    with pytest.raises(DecryptError, match="receive id"):
        _decrypt(
            wechat_crypto.encrypt(b"hi", aes_key=KEY, receiver_id=CORP, random_prefix=PREFIX),
            receiver_id=CORP[:-1],
        )


def test_empty_receive_id_works_for_wecom_bots() -> None:
    # WeCom 智能机器人 seals with receive id "" (docs/protocols/wechat-crypto.md table).
    sealed = wechat_crypto.encrypt(b"hi", aes_key=KEY, receiver_id="", random_prefix=PREFIX)
    assert _decrypt(sealed, receiver_id="") == b"hi"
    with pytest.raises(DecryptError, match="receive id"):
        _decrypt(sealed)


@pytest.mark.parametrize("msg_len", [6, 1000, 2**32 - 1])
def test_message_length_beyond_plaintext_is_rejected(msg_len: int) -> None:
    framed = PREFIX + struct.pack(">I", msg_len) + b"hello"
    with pytest.raises(DecryptError, match="length"):
        _decrypt(_seal_raw(_pad_to_32(framed)))


def test_plaintext_shorter_than_header_is_rejected() -> None:
    with pytest.raises(DecryptError, match="shorter"):
        _decrypt(_seal_raw(_pad_to_32(b"0123456789")))


def test_invalid_utf8_message_is_rejected() -> None:
    with pytest.raises(DecryptError, match="UTF-8"):
        _decrypt(_seal_raw(_pad_to_32(_frame(b"\xff\xfe"))))


@pytest.mark.parametrize(
    "encrypted",
    [
        pytest.param("", id="empty"),
        pytest.param(base64.b64encode(b"x" * 17).decode(), id="17-bytes"),
        pytest.param(base64.b64encode(b"x" * 40).decode(), id="40-bytes"),
        pytest.param("not base64!", id="not-base64"),
        pytest.param("QUJD" * 4 + "=", id="bad-base64-padding"),
    ],
)
def test_ciphertext_of_bad_shape_is_rejected(encrypted: str) -> None:
    with pytest.raises(DecryptError):
        _decrypt(encrypted)


def test_decrypt_errors_never_carry_key_or_plaintext() -> None:
    sealed = wechat_crypto.encrypt(
        b"secret-text", aes_key=KEY, receiver_id=CORP, random_prefix=PREFIX
    )
    with pytest.raises(DecryptError) as caught:
        _decrypt(sealed, receiver_id="ww-other")
    text = repr(caught.value) + str(caught.value)
    assert "secret-text" not in text
    assert KEY_TEXT not in text
    assert CORP not in text


def test_encrypt_refuses_a_short_prefix() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        wechat_crypto.encrypt(b"x", aes_key=KEY, receiver_id=CORP, random_prefix=b"short")
