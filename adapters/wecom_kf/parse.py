"""微信客服's kf/sync_msg answers as typed items (docs/protocols/wecom-kf.md); pure."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from bot.domain import Platform
from bot.errors import PayloadError

log = logging.getLogger(__name__)

PLATFORM = Platform.WECOM_KF
SYNC_EVENT = "kf_msg_or_event"
ENTER_SESSION = "enter_session"
SESSION_STATUS_CHANGE = "session_status_change"
# kf/sync_msg: 1000 is both the default and the maximum page size (docs/protocols/wecom-kf.md).
SYNC_LIMIT = 1000

# Placeholders for the customer message types the bot cannot read (docs/protocols/wecom-kf.md
# msgtype list).
MEDIA_TEXT = {
    "image": "[图片]",
    "voice": "[语音]",
    "video": "[视频]",
    "file": "[文件]",
    "location": "[位置]",
    "link": "[链接]",
    "business_card": "[名片]",
    "miniprogram": "[小程序]",
}

# msg_list[].origin (docs/protocols/wecom-kf.md): 3 customer, 4 system event, 5 servicer via the
# WeCom client.
ORIGIN_CUSTOMER = 3
ORIGIN_SYSTEM = 4
ORIGIN_SERVICER = 5


@dataclass(frozen=True, slots=True)
class KfItem:
    """One entry of kf/sync_msg's msg_list, the fields we use."""

    msgid: str
    open_kfid: str
    external_userid: str
    send_time: int
    origin: int
    msgtype: str
    content: str = ""  # text.content
    event_type: str = ""  # event.event_type
    welcome_code: str = ""  # event.welcome_code (enter_session)
    scene: str = ""
    servicer_userid: str = ""
    change_type: int = 0  # event.change_type (session_status_change)
    media_id: str = ""  # image/file/voice/….media_id (fetched through media/get)


class SyncPage(NamedTuple):
    """One answer of kf/sync_msg: its items, the cursor to continue from, more to come."""

    items: list[KfItem]
    next_cursor: str
    has_more: bool


def _str(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def _int(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return 0


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def parse_sync_msg(data: Mapping[str, Any]) -> SyncPage:
    """Parse a successful kf/sync_msg answer; malformed entries are skipped with a warning."""
    raw = data.get("msg_list") or []
    if not isinstance(raw, list):
        raise PayloadError("sync_msg: msg_list is not a list", PLATFORM)
    items: list[KfItem] = []
    for entry in raw:
        if not isinstance(entry, dict) or not entry.get("msgid"):
            log.warning("wecom_kf sync_msg: entry without msgid skipped")
            continue
        text = _mapping(entry.get("text"))
        event = _mapping(entry.get("event"))
        items.append(
            KfItem(
                msgid=_str(entry["msgid"]),
                open_kfid=_str(entry.get("open_kfid") or event.get("open_kfid")),
                # Events carry the customer inside `event`, messages at the top level.
                external_userid=_str(entry.get("external_userid") or event.get("external_userid")),
                send_time=_int(entry.get("send_time")),
                origin=_int(entry.get("origin")),
                msgtype=_str(entry.get("msgtype")),
                content=_str(text.get("content")),
                event_type=_str(event.get("event_type")),
                welcome_code=_str(event.get("welcome_code")),
                scene=_str(event.get("scene")),
                servicer_userid=_str(entry.get("servicer_userid") or event.get("servicer_userid")),
                change_type=_int(event.get("change_type")),
                # The media object is named by the type: {"msgtype":"file","file":{…}}.
                media_id=_str(_mapping(entry.get(_str(entry.get("msgtype")))).get("media_id")),
            )
        )
    return SyncPage(items, _str(data.get("next_cursor")), _int(data.get("has_more")) == 1)
