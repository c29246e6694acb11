"""Build 微信客服 callback requests exactly as WeCom does: for tests and ``bot simulate wecom_kf``.

Pure: the caller passes the timestamp, nonce and random prefix. Same crypto as the WeCom app
(`wecom_simulate.seal`, receive id = CorpID); the inner XML only says "pull now"
(docs/protocols/wecom-kf.md).
"""

from __future__ import annotations

from typing import Unpack

from adapters.wechat.simulate import Stamp
from adapters.wecom.simulate import build_post
from adapters.wecom_kf.parse import SYNC_EVENT


def callback_fields(
    *, corp_id: str, sync_token: str, open_kfid: str, create_time: int
) -> dict[str, str | int]:
    """Return the decrypted fields of a ``kf_msg_or_event`` callback."""
    return {
        "ToUserName": corp_id,
        "CreateTime": create_time,
        "MsgType": "event",
        "Event": SYNC_EVENT,
        "Token": sync_token,
        "OpenKfId": open_kfid,
    }


def build_callback(
    *,
    corp_id: str,
    token: str,
    aes_key: str,
    sync_token: str,
    open_kfid: str,
    create_time: int,
    **stamp: Unpack[Stamp],
) -> tuple[dict[str, str], bytes]:
    """Build the signed, encrypted callback POST; return (query, body)."""
    fields = callback_fields(
        corp_id=corp_id, sync_token=sync_token, open_kfid=open_kfid, create_time=create_time
    )
    # The KF envelope has no AgentID of its own; an empty one is what seal writes.
    return build_post(fields, corp_id=corp_id, agent_id="", token=token, aes_key=aes_key, **stamp)
