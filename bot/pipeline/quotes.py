"""A reply that quotes an earlier message: the quoted text becomes part of the question.

Run by the worker before the turn, for an adapter that reads quotes through its API
(`adapters.base.ReadsQuotes`: Feishu names the quoted message, its text is fetched). Never
fails the turn: a quote that cannot be read is logged, and the reply is answered on its own.
The form matches the WeCom 智能机器人's, whose callbacks carry the quote inline.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import cast

from adapters.base import ReadsQuotes, has
from bot.domain import InboundMessage
from bot.errors import BotError
from bot.runtime import Runtime

log = logging.getLogger(__name__)

MAX_QUOTE_CHARS = 500  # a long quoted answer is cut: the question matters more


async def read(msg: InboundMessage, rt: Runtime) -> InboundMessage:
    """`msg` with the text it quotes appended, when it quotes one."""
    if not msg.question:
        return msg
    try:
        sender = rt.sender(msg.platform, msg.app)
    except KeyError:
        return msg
    if not has(sender, ReadsQuotes):  # the class's answer, remembered: every text asks
        return msg
    try:
        said = await cast(ReadsQuotes, sender).quoted_text(rt.http, msg)
    except BotError as exc:
        log.warning("quote of %s %s %s not read: %s", msg.platform, msg.app, msg.event_id, exc)
        return msg
    said = " ".join(said.split())[:MAX_QUOTE_CHARS]
    if not said:
        return msg
    return dataclasses.replace(msg, text=f"{msg.text.strip()}\n（引用：{said}）")
