"""What a platform's error code means and what the operator does about it.

A pure table, one entry per code, in Chinese and English; docs/troubleshooting.md has a
section per entry (`Errcode.anchor`). The bot logs `Errcode.line()` with a refusal it
knows and counts it in `bot_platform_errors_total` (bot/pipeline/refusals.py).

Codes are looked up in the platform's family: the WeCom app and 微信客服 share WeCom's
codes, and the WXBizMsgCrypt callback codes (-400xx, what Tencent's sample code and the
consoles report) apply to WeCom, 微信客服 and Official Account callbacks. Sources: the
errcodes our clients and fakes already handle (adapters/*/client.py), the platforms' error
pages as quoted in issue trackers (60020, 99991672, DingTalk's
Forbidden.AccessDenied.* answers, 10014), docs/protocols/wechat-crypto.md for -400xx.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from bot.domain import Platform
from bot.errors import DecryptError, SignatureError, WebhookError

WECOM = "wecom"
WECHAT_MP = "wechat_mp"
DINGTALK = "dingtalk"
FEISHU = "feishu"
CALLBACK = "callback"  # WXBizMsgCrypt: WeCom, 微信客服 and Official Account callbacks

DOCS = "docs/troubleshooting.md"


@dataclass(frozen=True, slots=True)
class Errcode:
    """One platform error code: what it means and the fix, in Chinese and English."""

    family: str
    code: str
    zh: str
    en: str
    fix_zh: str
    fix_en: str

    @property
    def anchor(self) -> str:
        """The id of its section in docs/troubleshooting.md."""
        return f"{self.family}-{self.code.lstrip('-')}".lower().replace(".", "-")

    def line(self) -> str:
        """The explanation a log line carries."""
        return f"{self.code}: {self.en} ({self.zh}); fix: {self.fix_en} ({DOCS}#{self.anchor})"


_TABLE = (
    # --- WeCom app and 微信客服 (qyapi.weixin.qq.com) ----------------------------------------
    Errcode(
        WECOM,
        "60020",
        "服务器 IP 不在应用的企业可信IP中",
        "this server's IP is not among the app's trusted IPs",
        "在企业微信管理后台「应用管理 → 该应用 → 企业可信IP」加入报错中 from ip 的公网出口 IP"
        "（须先设置可信域名或接收消息服务器 URL）",
        "add the public egress IP the error names (from ip) under 应用管理 → the app → "
        "企业可信IP in the WeCom admin console (a trusted domain or callback URL must be set "
        "first)",
    ),
    Errcode(
        WECOM,
        "40001",
        "Secret 不正确（或 access_token 已被别处刷新）",
        "wrong secret (or an access token another system refreshed)",
        "核对 WECOM_SECRET（自建应用的 Secret）或 WECOM_KF_SECRET（微信客服的 Secret）；"
        "同一 Secret 只让本服务取 token",
        "check WECOM_SECRET (the app's Secret) or WECOM_KF_SECRET (微信客服's Secret); let "
        "only this bot fetch tokens with that secret",
    ),
    Errcode(
        WECOM,
        "40013",
        "CorpID 不正确",
        "wrong corp id",
        "核对 WECOM_CORP_ID（管理后台「我的企业 → 企业信息 → 企业ID」）",
        "check WECOM_CORP_ID (我的企业 → 企业信息 → 企业ID in the admin console)",
    ),
    Errcode(
        WECOM,
        "40014",
        "access_token 无效",
        "invalid access token",
        "会自动刷新重试；反复出现说明别的系统在用同一 Secret 取 token，请停用它",
        "refreshed and retried automatically; if it repeats, another system fetches tokens "
        "with the same secret: stop it",
    ),
    Errcode(
        WECOM,
        "42001",
        "access_token 已过期",
        "access token expired",
        "会自动刷新重试；反复出现请检查服务器时间和 Redis 是否共享",
        "refreshed and retried automatically; if it repeats, check the server clock and that "
        "every process shares one Redis",
    ),
    Errcode(
        WECOM,
        "40056",
        "AgentId 不正确",
        "wrong agent id",
        "核对 WECOM_AGENT_ID（应用详情页的 AgentId）",
        "check WECOM_AGENT_ID (AgentId on the app's page)",
    ),
    Errcode(
        WECOM,
        "60011",
        "无权限：成员不在应用的可见范围内",
        "no permission: the member is outside the app's visible range",
        "在「应用管理 → 该应用 → 可见范围」加入该成员或其部门",
        "add the member or their department under 应用管理 → the app → 可见范围",
    ),
    Errcode(
        WECOM,
        "81013",
        "接收人全部无效或不在可见范围内",
        "every recipient is invalid or outside the app's visible range",
        "确认用户仍在企业中，并在「可见范围」内",
        "check the user is still in the corp and within the app's 可见范围",
    ),
    Errcode(
        WECOM,
        "95000",
        "open_kfid 无效",
        "invalid open_kfid (微信客服 account)",
        "确认该客服账号仍存在，且属于 WECOM_KF_SECRET 对应的应用",
        "check the 微信客服 account still exists and belongs to the app of WECOM_KF_SECRET",
    ),
    Errcode(
        WECOM,
        "95001",
        "超过客服消息下发条数限制",
        "over 微信客服's reply limit for this customer message",
        "客户发言后 48 小时内最多回复 5 条；等待客户再次发言",
        "at most 5 replies within 48 h of the customer's message: wait for their next one",
    ),
    Errcode(
        WECOM,
        "95018",
        "会话状态不允许机器人发送",
        "the session's state does not let the bot send",
        "会话已由人工接待或已结束；无需处理，客户再次发言后恢复",
        "a person holds the session or it ended: nothing to do, it resumes with the customer",
    ),
    # --- WeChat Official Account (api.weixin.qq.com) -----------------------------------------
    Errcode(
        WECHAT_MP,
        "40164",
        "服务器 IP 不在公众号的 IP 白名单中",
        "this server's IP is not in the Official Account's IP whitelist",
        "在公众平台「设置与开发 → 基本配置 → IP白名单」加入服务器的公网出口 IP",
        "add the server's public egress IP under 设置与开发 → 基本配置 → IP白名单",
    ),
    Errcode(
        WECHAT_MP,
        "40125",
        "AppSecret 不正确",
        "wrong AppSecret",
        "核对 WECHAT_MP_APP_SECRET（「基本配置」里重置后旧值失效）",
        "check WECHAT_MP_APP_SECRET (resetting it in 基本配置 voids the old one)",
    ),
    Errcode(
        WECHAT_MP,
        "40013",
        "AppID 不正确",
        "wrong AppID",
        "核对 WECHAT_MP_APP_ID",
        "check WECHAT_MP_APP_ID",
    ),
    Errcode(
        WECHAT_MP,
        "40001",
        "凭证无效（AppSecret 错误或 token 已被别处刷新）",
        "invalid credential (wrong AppSecret, or a token another system refreshed)",
        "核对 WECHAT_MP_APP_SECRET；同一公众号只让本服务取 token",
        "check WECHAT_MP_APP_SECRET; let only this bot fetch the account's tokens",
    ),
    Errcode(
        WECHAT_MP,
        "48001",
        "公众号没有该接口权限",
        "the account lacks this API (客服消息 needs a verified account)",
        "认证公众号后再用客服消息；此前回复只走被动回复（WECHAT_MP_CUSTOM_API=false）",
        "verify the account for customer-service messages; until then answers go as passive "
        "replies (WECHAT_MP_CUSTOM_API=false)",
    ),
    Errcode(
        WECHAT_MP,
        "45015",
        "超过 48 小时回复窗口",
        "outside the 48 h reply window",
        "粉丝 48 小时内未互动，无法再发客服消息；等待其下一条消息",
        "the follower has not written for 48 h: wait for their next message",
    ),
    Errcode(
        WECHAT_MP,
        "45047",
        "客服消息下发超过上限",
        "customer-service message quota used up",
        "等待粉丝再次发言后再回复",
        "wait for the follower's next message",
    ),
    # --- Feishu / Lark (open.feishu.cn) --------------------------------------------------------
    Errcode(
        FEISHU,
        "99991672",
        "应用缺少接口所需的权限（scope）",
        "the app lacks a scope the API needs",
        "在开发者后台「权限管理」开通报错列出的权限（如 im:message、im:message:send_as_bot），"
        "再创建版本并发布",
        "enable the scopes the error lists (im:message, im:message:send_as_bot…) under "
        "权限管理 in the developer console, then create and publish a version",
    ),
    Errcode(
        FEISHU,
        "99991663",
        "tenant_access_token 无效",
        "invalid tenant access token",
        "会自动刷新重试；反复出现请确认 FEISHU_APP_SECRET 未被重置、应用未停用",
        "refreshed and retried automatically; if it repeats, check FEISHU_APP_SECRET was not "
        "reset and the app is enabled",
    ),
    Errcode(
        FEISHU,
        "10014",
        "App Secret 不正确",
        "wrong app secret",
        "核对 FEISHU_APP_SECRET（开发者后台「凭证与基础信息」）",
        "check FEISHU_APP_SECRET (凭证与基础信息 in the developer console)",
    ),
    Errcode(
        FEISHU,
        "10003",
        "App ID 或 App Secret 不正确",
        "wrong app id or secret",
        "核对 FEISHU_APP_ID 与 FEISHU_APP_SECRET",
        "check FEISHU_APP_ID and FEISHU_APP_SECRET",
    ),
    Errcode(
        FEISHU,
        "230020",
        "触发群内发消息频率限制",
        "chat message rate limit",
        "会自动稍后重试；单个会话约 5 条/秒",
        "retried later automatically; about 5 messages a second per chat",
    ),
    # --- DingTalk (api.dingtalk.com) -----------------------------------------------------------
    Errcode(
        DINGTALK,
        "Forbidden.AccessDenied.AccessTokenPermissionDenied",
        "应用缺少该接口的权限",
        "the app lacks the permission this API needs",
        "在开发者后台「应用 → 权限管理」申请报错 requiredScopes 中的权限（如 qyapi_robot_sendmsg）",
        "apply for the permission in requiredScopes (qyapi_robot_sendmsg…) under the app's "
        "权限管理 in the developer console",
    ),
    Errcode(
        DINGTALK,
        "Forbidden.AccessDenied.IpNotInWhiteList",
        "服务器 IP 不在应用的出口 IP 白名单中",
        "this server's IP is not in the app's egress IP whitelist",
        "在开发者后台「应用 → 开发管理 → 服务器出口IP」加入服务器的公网出口 IP",
        "add the server's public egress IP under the app's 开发管理 → 服务器出口IP",
    ),
    Errcode(
        DINGTALK,
        "invalidClientIdOrSecret",
        "AppKey 或 AppSecret 不正确",
        "wrong app key or secret",
        "核对 DINGTALK_APP_KEY 与 DINGTALK_APP_SECRET（应用「凭证与基础信息」）",
        "check DINGTALK_APP_KEY and DINGTALK_APP_SECRET (the app's credentials page)",
    ),
    # --- Callbacks (WXBizMsgCrypt): what we refuse, and the consoles' verification says ------
    Errcode(
        CALLBACK,
        "-40001",
        "签名校验失败：Token 不一致",
        "signature check failed: the Token differs",
        "让 WECOM_TOKEN / WECOM_KF_TOKEN / WECOM_AIBOT_TOKEN / WECHAT_MP_TOKEN "
        "与后台回调配置的 Token 完全一致",
        "make WECOM_TOKEN / WECOM_KF_TOKEN / WECOM_AIBOT_TOKEN / WECHAT_MP_TOKEN equal to the "
        "Token of the console's callback settings",
    ),
    Errcode(
        CALLBACK,
        "-40004",
        "EncodingAESKey 非法",
        "invalid EncodingAESKey",
        "EncodingAESKey 必须是后台生成的 43 位字母数字，原样复制",
        "the EncodingAESKey is the console's 43 letters and digits: copy it as is",
    ),
    Errcode(
        CALLBACK,
        "-40005",
        "ReceiveId 不匹配：CorpID / AppID 不对",
        "receive id mismatch: wrong corp id or AppID",
        "核对 WECOM_CORP_ID（公众号为 WECHAT_MP_APP_ID）与发来消息的企业/公众号一致",
        "check WECOM_CORP_ID (WECHAT_MP_APP_ID for an Official Account) is the sender's",
    ),
    Errcode(
        CALLBACK,
        "-40007",
        "解密失败：EncodingAESKey 不一致",
        "decryption failed: the EncodingAESKey differs",
        "让 *_AES_KEY 与后台回调配置的 EncodingAESKey 完全一致",
        "make the *_AES_KEY setting equal to the console's EncodingAESKey",
    ),
)

_FAMILY = {
    Platform.WECOM.value: WECOM,
    Platform.WECOM_KF.value: WECOM,
    Platform.WECOM_AIBOT.value: WECOM,
    Platform.WECHAT_MP.value: WECHAT_MP,
    Platform.DINGTALK.value: DINGTALK,
    Platform.FEISHU.value: FEISHU,
}
_BY_CODE = {(entry.family, entry.code.lower()): entry for entry in _TABLE}


def entries() -> tuple[Errcode, ...]:
    """Every known code, in the order of docs/troubleshooting.md."""
    return _TABLE


def explain(platform: str, code: int | str | None) -> Errcode | None:
    """What `code` from `platform`'s API means, or None for a code not in the table."""
    if code is None or code == "":
        return None
    family = _FAMILY.get(str(platform))
    return _BY_CODE.get((family, str(code).lower())) if family else None


def callback(code: int) -> Errcode | None:
    """A WXBizMsgCrypt callback code (-40001…), as the consoles and samples report them."""
    return _BY_CODE.get((CALLBACK, str(code)))


_CALLBACK_PLATFORMS = {
    Platform.WECOM.value,
    Platform.WECOM_KF.value,
    Platform.WECOM_AIBOT.value,
    Platform.WECHAT_MP.value,
}


def refused_callback(platform: str, exc: WebhookError) -> Errcode | None:
    """The callback code the platform's console would show for a webhook we refused.

    A bad signature or an undecryptable body from the platform itself means a Token or an
    EncodingAESKey that differs from the console's (anyone else's request fails the same way).
    """
    if str(platform) not in _CALLBACK_PLATFORMS:
        return None
    if isinstance(exc, SignatureError):
        return callback(-40001)
    if isinstance(exc, DecryptError):
        # adapters/wechat/crypto.py names the receive-id check; the others follow a wrong key.
        return callback(-40005 if "receive id" in exc.reason else -40007)
    return None


# The address a refusal names: WeCom's 60020 "… from ip: 203.0.113.7, more info …", WeChat's
# 40164 "invalid ip 203.0.113.7 ipv6 ::ffff:203.0.113.7, not in whitelist …".
_SEEN_IP = re.compile(r"(?:from ip:|invalid ip)\s*([0-9A-Fa-f.:]+)")


def seen_ip(errmsg: str) -> str:
    """The caller's address as a platform's IP refusal names it; "" when it names none."""
    found = _SEEN_IP.search(errmsg)
    if not found:
        return ""
    try:  # only an address goes on into a fix text, nothing else the errmsg says
        return str(ipaddress.ip_address(found.group(1).rstrip(".,")))
    except ValueError:
        return ""
