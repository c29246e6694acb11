"""Words of the setup check page (the checks of `bot doctor`)."""

from __future__ import annotations

ZH: dict[str, str] = {
    "nav.setup_check": "系统检查",
    "sc.intro": (
        "检查 Redis、数据库、各平台应用的凭据、回调密钥、公网地址、权限与可信 IP、模型与向量维度"
        "（与命令行 bot doctor 相同）。检查会向平台和模型发少量请求，不会向任何用户发消息。"
    ),
    "sc.run": "运行检查",
    "sc.not_run": "尚未运行。点击「运行检查」开始，约需 10 秒。",
    "sc.check": "检查项",
    "sc.result": "结果",
    "sc.detail": "详情",
    "sc.fix": "怎么办",
    "sc.ok": "✓ 通过",
    "sc.fail": "✗ 失败",
    "sc.warn": "! 注意",
    "sc.skip": "– 跳过",
    "sc.all_good": "检查完成：{total} 项，没有失败。",
    "sc.summary": "检查完成：{fail} 项失败，{warn} 项需要注意（共 {total} 项）。",
}

EN: dict[str, str] = {
    "nav.setup_check": "Setup check",
    "sc.intro": (
        "Checks Redis, the database, each platform app's credentials, callback keys, public "
        "URL, scopes and trusted IP, the models and the embedding dimension (the same as "
        "`bot doctor` on the command line). It sends a few requests to the platforms and "
        "models and no message to anyone."
    ),
    "sc.run": "Run the checks",
    "sc.not_run": "Not run yet. Press “Run the checks”; it takes about 10 s.",
    "sc.check": "Check",
    "sc.result": "Result",
    "sc.detail": "Detail",
    "sc.fix": "What to do",
    "sc.ok": "✓ passed",
    "sc.fail": "✗ failed",
    "sc.warn": "! warning",
    "sc.skip": "– skipped",
    "sc.all_good": "Done: {total} checks, none failed.",
    "sc.summary": "Done: {fail} failed, {warn} warnings ({total} checks).",
}
