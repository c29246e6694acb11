"""Configuration from the environment and `.env`, names as in docs/configuration.md.

Each platform has one pydantic-settings model whose prefix matches its environment names;
`Settings` composes them. A platform with none of its variables set is off; one with only
some of them set is a `ConfigError` naming what is missing (never the values).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bot.errors import ConfigError
from bot.settings import apps as appconfig
from bot.settings.apps import AppConfig
from bot.settings.asr import AsrSettings
from bot.settings.base import Section, describe
from bot.settings.core import CoreSettings
from bot.settings.features import AgentSettings, ConsoleSettings, HandoffSettings, OrdersSettings
from bot.settings.files import FilesSettings
from bot.settings.models import DashScopeSettings, EmbeddingSettings, RerankSettings, VLLMSettings
from bot.settings.platforms import SECTIONS as PLATFORM_SECTIONS
from bot.settings.platforms import (
    DingTalkSettings,
    FeishuSettings,
    WeChatMPSettings,
    WeComAiBotSettings,
    WeComKfSettings,
    WeComSettings,
)
from bot.settings.webchat import WebChatSettings

_SECTIONS: dict[str, type[Section]] = {
    "vllm": VLLMSettings,
    "dashscope": DashScopeSettings,
    "embedding": EmbeddingSettings,
    **PLATFORM_SECTIONS,
    "handoff": HandoffSettings,
    "agent": AgentSettings,
    "orders": OrdersSettings,
    "rerank": RerankSettings,
    "console": ConsoleSettings,
    "webchat": WebChatSettings,
    "files": FilesSettings,
    "asr": AsrSettings,
}


class Settings:
    """All configuration, composed of one model per concern; build it explicitly."""

    def __init__(
        self,
        core: CoreSettings,
        vllm: VLLMSettings,
        dashscope: DashScopeSettings,
        embedding: EmbeddingSettings,
        wecom: WeComSettings,
        wecom_kf: WeComKfSettings,
        dingtalk: DingTalkSettings,
        feishu: FeishuSettings,
        wechat_mp: WeChatMPSettings,
        handoff: HandoffSettings | None = None,
        agent: AgentSettings | None = None,
        orders: OrdersSettings | None = None,
        rerank: RerankSettings | None = None,
        console: ConsoleSettings | None = None,
        webchat: WebChatSettings | None = None,
        wecom_aibot: WeComAiBotSettings | None = None,
        files: FilesSettings | None = None,
        asr: AsrSettings | None = None,
    ) -> None:
        self.core = core
        self.vllm = vllm
        self.dashscope = dashscope
        self.embedding = embedding
        self.wecom = wecom
        self.wecom_kf = wecom_kf
        self.dingtalk = dingtalk
        self.feishu = feishu
        self.wechat_mp = wechat_mp
        self.wecom_aibot = wecom_aibot or WeComAiBotSettings(_env_file=None)  # type: ignore[call-arg]
        # A section left out is read from the environment only (tests pass what they mean).
        self.handoff = handoff or HandoffSettings(_env_file=None)  # type: ignore[call-arg]
        self.handoff.check()
        self.agent = agent or AgentSettings(_env_file=None)  # type: ignore[call-arg]
        self.orders = orders or OrdersSettings(_env_file=None)  # type: ignore[call-arg]
        self.orders.check()
        self.console = console or ConsoleSettings(_env_file=None)  # type: ignore[call-arg]
        self.webchat = webchat or WebChatSettings(_env_file=None)  # type: ignore[call-arg]
        self.rerank = rerank or RerankSettings(_env_file=None)  # type: ignore[call-arg]
        self.rerank.check()
        self.files = files or FilesSettings(_env_file=None)  # type: ignore[call-arg]
        self.asr = asr or AsrSettings(_env_file=None)  # type: ignore[call-arg]
        self.asr.check()
        # Named apps of bot.toml, (platform, app) -> bot.appconfig.AppConfig; filled by load().
        self.apps: dict[tuple[str, str], AppConfig] = {}
        platforms = (wecom, wecom_kf, self.wecom_aibot, dingtalk, feishu, wechat_mp)
        for section in (vllm, dashscope, embedding, *platforms):
            section.check()

    def vision_backends(self) -> tuple[str, ...]:
        """The model backends that see pictures, as the router names them (vLLM with
        VLLM_VISION, DashScope with DASHSCOPE_VISION_MODEL); empty: pictures are not shown."""
        found = (
            ("vllm", self.vllm.vision),
            ("dashscope", self.dashscope.enabled and bool(self.dashscope.vision_model)),
        )
        return tuple(name for name, sees in found if sees)

    @property
    def sees_images(self) -> bool:
        """Whether some model backend sees pictures (see `vision_backends`)."""
        return bool(self.vision_backends())

    @classmethod
    def load(cls, env_file: str | Path | None = ".env", **overrides: Any) -> Settings:
        """Read the environment (and `env_file`); keyword dicts override per section.

        Example: ``Settings.load(None, core={"redis_url": "redis://..."})``.
        """
        try:
            core = CoreSettings(_env_file=env_file, **overrides.pop("core", {}))  # type: ignore[call-arg]
            sections = {
                name: model(_env_file=env_file, **overrides.pop(name, {}))  # type: ignore[call-arg]
                for name, model in _SECTIONS.items()
            }
        except ValidationError as exc:
            raise ConfigError(describe(exc)) from None
        if overrides:
            raise ConfigError(f"unknown settings sections: {', '.join(sorted(overrides))}")
        settings = cls(core=core, **sections)  # type: ignore[arg-type]
        appconfig.apply(settings, env_file)
        return settings
