"""微信客服's API: kf/sync_msg, kf/send_msg (and the welcome), kf/service_state/trans.

The token is WeCom's `gettoken` with the 微信客服 secret (its own token, its own key);
errcodes as for WeCom plus the 95xxx refusals of 微信客服. Official pages: 接收消息和事件
https://kf.weixin.qq.com/api/doc/path/94670 (kf/sync_msg), 发送消息
https://kf.weixin.qq.com/api/doc/path/94677, 发送欢迎语等事件响应消息
https://kf.weixin.qq.com/api/doc/path/95122.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import aiohttp

from adapters.wecom.client import WeComClient
from adapters.wecom_kf.parse import SYNC_LIMIT, SyncPage, parse_sync_msg
from bot.domain import Platform
from bot.errors import PlatformRejectedError

log = logging.getLogger(__name__)

# kf/service_state values (docs/protocols/wecom-kf.md#session-states).
STATE_QUEUE = 2
STATE_HUMAN = 3
# Refusals because of the platform's reply limits: 48 h after the customer's last message, at most 5
# messages per customer message, or a session no longer in state 0/1 (docs/protocols/wecom-kf.md).
# Checked against the 微信客服 global error-code table (mirror: kancloud.cn/wikizhima/
# wechatkf-api/2376708) and errmsgs seen in the wild: 95000 invalid open_kfid; 95001
# 发送客服消息次数限制 (the 5-message limit); 95018 "send msg session status invalid" (the session
# is not in state 0/1, e.g. a human holds it). 95013 (session ended) is still from memory [?]. The
# live page (open.work.weixin.qq.com/kf/doc) was not reachable from here. Every 95xxx is a permanent
# refusal anyway (open_kfid, msg token, welcome code, limits): none is retried.
_LIMIT_ERRCODES = frozenset({95001, 95013, 95018, 45047})


def _is_kf_refusal(errcode: int) -> bool:
    return 95000 <= errcode < 96000


class WeComKfClient(WeComClient):
    """Calls 微信客服's API with the corp id and the 微信客服 secret."""

    platform: ClassVar[Platform] = Platform.WECOM_KF
    CREDENTIAL_NAME: ClassVar[str] = "KF secret"

    async def sync(
        self, http: aiohttp.ClientSession, *, open_kfid: str, sync_token: str, cursor: str
    ) -> SyncPage:
        """Fetch one page of kf/sync_msg from `cursor` ("" for the beginning)."""
        payload = {
            "cursor": cursor,
            "token": sync_token,
            "limit": SYNC_LIMIT,
            "voice_format": 0,
            "open_kfid": open_kfid,
        }
        data = await self.post(http, "/cgi-bin/kf/sync_msg", payload)
        return parse_sync_msg(data)

    async def transfer(
        self,
        http: aiohttp.ClientSession,
        *,
        open_kfid: str,
        external_userid: str,
        service_state: int,
        servicer_userid: str = "",
    ) -> None:
        """Move a session with kf/service_state/trans: 2 queue, 3 a human, 4 end.

        docs/protocols/wecom-kf.md#session-states
        """
        payload: dict[str, Any] = {
            "open_kfid": open_kfid,
            "external_userid": external_userid,
            "service_state": service_state,
        }
        if servicer_userid:
            payload["servicer_userid"] = servicer_userid
        await self.post(http, "/cgi-bin/kf/service_state/trans", payload)
        log.info(
            "wecom_kf %s session of %s moved to state %d", self.app, external_userid, service_state
        )

    def raise_for_errcode(self, errcode: int, what: str) -> None:
        """WeCom's mapping, plus 微信客服's own refusals (never retried)."""
        if errcode in _LIMIT_ERRCODES:
            # Recorded by the pipeline as a failed delivery; retrying cannot reopen the window.
            raise PlatformRejectedError(
                f"{what} refused: outside the 48 h window, over 5 replies, or session closed",
                self.platform,
                errcode,
            )
        if _is_kf_refusal(errcode):
            raise PlatformRejectedError(f"{what} refused by 微信客服", self.platform, errcode)
        super().raise_for_errcode(errcode, what)
