"""Words of the customer bindings page."""

from __future__ import annotations

ZH: dict[str, str] = {
    "nav.bindings": "客户绑定",
    "bind.title": "客户绑定",
    "bind.hint": (
        "绑定把平台上的一个用户对应到订单系统里的客户编号，机器人的订单工具只查询这个客户的订单。"
        "用户也可以自己用订单号和手机尾号验证绑定。"
    ),
    "bind.read_only": "只读：添加和解除绑定需要管理员。",
    "bind.search_title": "搜索绑定",
    "bind.search": "用户 ID 或客户编号",
    "bind.search_submit": "搜索",
    "bind.platform": "平台",
    "bind.app": "应用",
    "bind.user": "用户 ID",
    "bind.customer": "客户编号",
    "bind.source": "绑定方式",
    "bind.when": "绑定时间",
    "bind.source.admin": "管理员添加",
    "bind.source.import": "批量导入",
    "bind.source.proof": "用户验证",
    "bind.unbind": "解除绑定",
    "bind.confirm": "确定解除用户 {user} 与客户 {customer} 的绑定吗？",
    "bind.empty": "还没有绑定。",
    "bind.none_found": "没有匹配的绑定。",
    "bind.pages": "分页",
    "bind.page": "第 {n} 页",
    "bind.prev": "上一页",
    "bind.next": "下一页",
    "bind.add": "添加绑定",
    "bind.add_hint": (
        "用于客服处理的个案。这个用户已有绑定时，会改绑到新的客户编号（原绑定记在操作日志中）。"
    ),
    "bind.choose": "请选择…",
    "bind.added": "已绑定。",
    "bind.rebound": "已改绑到新的客户编号，原来的绑定记在操作日志中。",
    "bind.removed": "已解除绑定。",
    "bind.invalid": "无法绑定：{reason}",
    "bind.not_found": "没有这条绑定（可能已被解除）。",
}

EN: dict[str, str] = {
    "nav.bindings": "Customer bindings",
    "bind.title": "Customer bindings",
    "bind.hint": (
        "A binding says which customer of the order system a platform user is; the bot's "
        "order tools only look up that customer's orders. Users can also bind themselves "
        "with an order number and their phone number's last four digits."
    ),
    "bind.read_only": "Read-only: binding and unbinding are for admins.",
    "bind.search_title": "Search bindings",
    "bind.search": "User id or customer id",
    "bind.search_submit": "Search",
    "bind.platform": "Platform",
    "bind.app": "App",
    "bind.user": "User id",
    "bind.customer": "Customer id",
    "bind.source": "Bound by",
    "bind.when": "Bound at",
    "bind.source.admin": "an admin",
    "bind.source.import": "import",
    "bind.source.proof": "the user's proof",
    "bind.unbind": "Unbind",
    "bind.confirm": "Unbind user {user} from customer {customer}?",
    "bind.empty": "No bindings yet.",
    "bind.none_found": "No binding matches.",
    "bind.pages": "Pages",
    "bind.page": "Page {n}",
    "bind.prev": "Previous",
    "bind.next": "Next",
    "bind.add": "Add a binding",
    "bind.add_hint": (
        "For support cases. A user who is already bound moves to the new customer id (the "
        "old binding is in the audit log)."
    ),
    "bind.choose": "Choose…",
    "bind.added": "Bound.",
    "bind.rebound": "Moved to the new customer id; the old binding is in the audit log.",
    "bind.removed": "Unbound.",
    "bind.invalid": "Cannot bind: {reason}",
    "bind.not_found": "There is no such binding (it may have been removed).",
}
