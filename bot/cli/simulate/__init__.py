"""`bot simulate PLATFORM`: send a webhook to a running server exactly as the platform would."""

from bot.cli.simulate.chat import web
from bot.cli.simulate.dingtalk import dingtalk
from bot.cli.simulate.feishu import feishu
from bot.cli.simulate.wechat_mp import wechat_mp
from bot.cli.simulate.wecom import SIM_OPEN_KFID, wecom, wecom_kf
from bot.cli.simulate.wecom_aibot import wecom_aibot

__all__ = [
    "SIM_OPEN_KFID",
    "dingtalk",
    "feishu",
    "web",
    "wechat_mp",
    "wecom",
    "wecom_aibot",
    "wecom_kf",
]
