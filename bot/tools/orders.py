"""The order tools, the identity rule behind them, and the order answers without a model.

Authorisation is code, not prompt: every tool reads the customer from `ToolContext`
(filled by `resolve_customer` from the binding table before the loop) and nothing in the
arguments can select another one. An order that does not exist and an order of another
customer give the very same result (`NOT_FOUND`), so order numbers cannot be probed.
The one way to a new binding is proof of ownership: the order number plus the last four
digits of the phone number on it, at most `max_failures` failures per user per day, and
at most `max_target_failures` per order and per customer from all users together (a
guesser rotating identities meets the same wall).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bot.orders.base import DEFAULT_ORDER_ID_PATTERN, Order, OrderBackend, OrderBackendError
from bot.orders.bindings import CUSTOMER, ORDER, BindingSource, BindingStore
from bot.orders.format import event_json, order_json, order_text, orders_text
from bot.tools.registry import Tool, ToolContext, ToolError, no_arguments

log = logging.getLogger(__name__)

NOT_FOUND = "未找到该订单，或该订单不属于您的账号"
VERIFY_HINT = (
    "如果这是用户本人的订单，请让用户提供订单号和下单手机号后四位，"
    "再调用 verify_order_owner 验证身份"
)
MISMATCH = "订单号或手机号后四位不匹配"
LOCKED = "今日验证失败次数过多，请明天再试，或回复“转人工”联系人工客服"
BOUND_ELSEWHERE = "您的账号已绑定其他客户账户，如需更换请回复“转人工”联系人工客服"
UNAVAILABLE = "订单系统暂时不可用，请稍后再试"
ASK_PROOF = "为了保护您的隐私，请提供订单号和下单手机号后四位，验证后为您查询订单。"
LIST_LIMIT = 10
# The tools that show a customer's order data (the console masks them for editors).
ORDER_TOOLS = frozenset({"lookup_order", "list_my_orders", "track_shipment", "verify_order_owner"})

_ORDER_ID_SCHEMA = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$", "description": "订单号"}
_FOUR_DIGITS = re.compile(r"(?<![0-9])[0-9]{4}(?![0-9])")
# Messages about the customer's own orders that carry no order number.
_MY_ORDERS = (
    "我的订单",
    "查订单",
    "查询订单",
    "订单状态",
    "查物流",
    "查快递",
    "物流信息",
    "我的快递",
)


# Reads the customer id bound to (platform, app, user id); None: not bound.
CustomerOf = Callable[[str, str, str], Awaitable[str | None]]


async def resolve_customer(
    bindings: BindingStore, ctx: ToolContext, *, read: CustomerOf | None = None
) -> None:
    """Fill `ctx.customer_id` from the binding of the platform user (None: not bound).
    `read`: how to read it (the worker's asyncpg reader); default: `bindings` in a thread."""
    try:
        if read is not None:
            ctx.customer_id = await read(*ctx.platform_user)
            return
        binding = await asyncio.to_thread(bindings.get, *ctx.platform_user)
    except Exception:
        # Fail closed: an unreadable binding table means "not bound", never someone else.
        log.exception("cannot read the customer binding")
        binding = None
    ctx.customer_id = binding.customer_id if binding is not None else None


def _same(a: str, b: str) -> bool:
    # Constant time, on bytes: compare_digest refuses non-ASCII str.
    return hmac.compare_digest(a.encode(), b.encode())


def _not_found() -> dict[str, Any]:
    # One shape for "no such order", "not yours" and "not bound": nothing to tell apart.
    return {"found": False, "message": NOT_FOUND, "hint": VERIFY_HINT}


async def owned_order(backend: OrderBackend, ctx: ToolContext, order_id: str) -> Order | None:
    """The order when it belongs to the bound customer; None otherwise (whatever the reason)."""
    if not ctx.customer_id:
        return None
    try:
        order = await backend.get(order_id.strip())
    except OrderBackendError as exc:
        log.warning("order backend failed: %s", exc)
        raise ToolError(UNAVAILABLE) from exc
    if order is None or not order.customer_id:
        return None
    return order if _same(order.customer_id, ctx.customer_id) else None


@dataclass(frozen=True, slots=True)
class ProofOutcome:
    verified: bool
    message: str
    order: Order | None = None
    locked: bool = False

    def to_json(self) -> dict[str, Any]:
        result: dict[str, Any] = {"verified": self.verified, "message": self.message}
        if self.locked:
            result["locked"] = True
        if self.order is not None:
            result["order"] = order_json(self.order)
        return result


async def prove_ownership(
    backend: OrderBackend,
    bindings: BindingStore,
    ctx: ToolContext,
    order_id: str,
    phone_last4: str,
) -> ProofOutcome:
    """Bind the user to the order's customer when the phone's last four digits match."""
    platform, app, user = ctx.platform_user
    order_id = order_id.strip()
    reserved: list[tuple[str, str]] = []  # the (kind, target) counters this attempt holds

    async def give_back() -> None:
        await asyncio.to_thread(bindings.release_attempt, platform, app, user)
        for kind, target in reserved:
            await asyncio.to_thread(bindings.release_target, kind, target)

    try:
        allowed = await asyncio.to_thread(bindings.reserve_attempt, platform, app, user)
        if allowed:
            allowed = await asyncio.to_thread(bindings.reserve_target, ORDER, order_id)
            if allowed:
                reserved.append((ORDER, order_id))
    except OrderBackendError as exc:
        log.warning("proof refused: %s", exc)
        raise ToolError(UNAVAILABLE) from exc
    if not allowed:
        log.warning("proof refused for %s/%s: daily failure limit reached", platform, app)
        return ProofOutcome(False, LOCKED, locked=True)
    try:
        order = await backend.get(order_id)
    except OrderBackendError as exc:
        await give_back()
        raise ToolError(UNAVAILABLE) from exc
    if order is not None and order.customer_id:
        # Checked before the digits are compared: past the limit, a right guess learns
        # nothing either.
        try:
            allowed = await asyncio.to_thread(bindings.reserve_target, CUSTOMER, order.customer_id)
        except OrderBackendError as exc:
            raise ToolError(UNAVAILABLE) from exc
        if not allowed:
            log.warning("proof refused for %s/%s: the customer's daily limit", platform, app)
            return ProofOutcome(False, LOCKED, locked=True)
        reserved.append((CUSTOMER, order.customer_id))
    # Same answer whether the order is missing, has no phone on file or the digits differ.
    if (
        order is None
        or not order.customer_id
        or len(order.phone_last4) != 4
        or not _same(order.phone_last4, phone_last4.strip())
    ):
        log.info("proof of ownership failed on %s/%s", platform, app)
        return ProofOutcome(False, MISMATCH)
    existing = await asyncio.to_thread(bindings.get, platform, app, user)
    if (
        existing is not None
        and existing.customer_id != order.customer_id
        and existing.source != BindingSource.PROOF
    ):
        # An admin's or an import's binding is not overturned by a chat message.
        await give_back()
        return ProofOutcome(False, BOUND_ELSEWHERE)
    await asyncio.to_thread(
        bindings.bind, platform, app, user, order.customer_id, BindingSource.PROOF
    )
    await give_back()
    ctx.customer_id = order.customer_id
    return ProofOutcome(True, "验证成功，已绑定您的客户账号", order)


def order_tools(backend: OrderBackend, bindings: BindingStore) -> list[Tool]:
    """lookup_order, list_my_orders, track_shipment and verify_order_owner."""

    async def lookup_order(ctx: ToolContext, order_id: str) -> dict[str, Any]:
        order = await owned_order(backend, ctx, order_id)
        return {"found": True, "order": order_json(order)} if order else _not_found()

    async def list_my_orders(ctx: ToolContext) -> dict[str, Any]:
        if not ctx.customer_id:
            return {
                "bound": False,
                "message": "用户尚未绑定客户账号，无法列出订单",
                "hint": VERIFY_HINT,
            }
        try:
            orders = await backend.list_for_customer(ctx.customer_id, LIST_LIMIT)
        except OrderBackendError as exc:
            raise ToolError(UNAVAILABLE) from exc
        # Belt and braces: a backend that over-answers still shows only this customer's.
        mine = [order_json(o) for o in orders if o.customer_id == ctx.customer_id]
        return {"bound": True, "count": len(mine), "orders": mine}

    async def track_shipment(ctx: ToolContext, order_id: str) -> dict[str, Any]:
        order = await owned_order(backend, ctx, order_id)
        if order is None:
            return _not_found()
        try:
            events = await backend.shipment(order.order_id)
        except OrderBackendError as exc:
            raise ToolError(UNAVAILABLE) from exc
        return {
            "found": True,
            "order_id": order.order_id,
            "status": order.status,
            "carrier": order.carrier,
            "tracking_no": order.tracking_no,
            "events": [event_json(e) for e in events],  # latest first
        }

    async def verify_order_owner(
        ctx: ToolContext, order_id: str, phone_last4: str
    ) -> dict[str, Any]:
        outcome = await prove_ownership(backend, bindings, ctx, order_id, phone_last4)
        return outcome.to_json()

    order_arg = {
        "type": "object",
        "properties": {"order_id": _ORDER_ID_SCHEMA},
        "required": ["order_id"],
        "additionalProperties": False,
    }
    return [
        Tool(
            "lookup_order",
            "查询当前用户本人的一个订单：状态、商品、金额、物流公司和运单号。"
            "只能查到已绑定客户账号的订单；查不到时按结果提示用户验证身份。",
            order_arg,
            lookup_order,
            status="正在查询订单…",
        ),
        Tool(
            "list_my_orders",
            "列出当前用户本人最近的订单（最多 10 个）。",
            no_arguments(),
            list_my_orders,
            status="正在查询订单…",
        ),
        Tool(
            "track_shipment",
            "查询当前用户本人某个订单的物流轨迹（最新的在前）。",
            order_arg,
            track_shipment,
            status="正在查询物流…",
        ),
        Tool(
            "verify_order_owner",
            "用订单号和下单手机号后四位验证用户身份，成功后绑定其客户账号。"
            "只使用用户本人在对话中提供的号码。",
            {
                "type": "object",
                "properties": {
                    "order_id": _ORDER_ID_SCHEMA,
                    "phone_last4": {
                        "type": "string",
                        "pattern": "^[0-9]{4}$",
                        "description": "下单手机号后四位",
                    },
                },
                "required": ["order_id", "phone_last4"],
                "additionalProperties": False,
            },
            verify_order_owner,
            status="正在核对订单信息…",
        ),
    ]


async def answer_without_model(
    ctx: ToolContext,
    text: str,
    backend: OrderBackend,
    bindings: BindingStore,
    *,
    id_pattern: str | re.Pattern[str] = DEFAULT_ORDER_ID_PATTERN,
) -> str | None:
    """An order answer built from the backend alone; None when `text` is not about orders."""
    pattern = re.compile(id_pattern) if isinstance(id_pattern, str) else id_pattern
    # Full-width "ＱＨ２０２５…" and "８３２１", as phone keyboards often type them.
    text = unicodedata.normalize("NFKC", text)
    match = pattern.search(text)
    if match is None:
        if not any(word in text for word in _MY_ORDERS):
            return None
        if not ctx.customer_id:
            return ASK_PROOF
        try:
            orders = await backend.list_for_customer(ctx.customer_id, 5)
        except OrderBackendError:
            return UNAVAILABLE
        mine = [o for o in orders if o.customer_id == ctx.customer_id]
        return orders_text(mine) if mine else "暂未查到您账号下的订单。"
    order_id = match.group(0)
    rest = text[: match.start()] + " " + text[match.end() :]
    digits = _FOUR_DIGITS.search(rest)
    try:
        order = await owned_order(backend, ctx, order_id)
        if order is None and digits is not None:
            outcome = await prove_ownership(backend, bindings, ctx, order_id, digits.group(0))
            if not outcome.verified:
                return (
                    f"{MISMATCH}，请核对后重试。"
                    if outcome.message == MISMATCH
                    else outcome.message
                )
            order = outcome.order
        if order is None:
            return ASK_PROOF if not ctx.customer_id else f"{NOT_FOUND}。{ASK_PROOF}"
        events = await backend.shipment(order.order_id)
    except (ToolError, OrderBackendError):
        return UNAVAILABLE
    return order_text(order, events)
