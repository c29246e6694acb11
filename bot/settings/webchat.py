"""The web chat page and widget (BOT_WEBCHAT_*): title, welcome text, suggested questions, and
where the documents an answer cites can be read."""

from __future__ import annotations

import re
from urllib.parse import quote

from pydantic import Field, field_validator

from bot.settings.base import Section, env_config

DEFAULT_WELCOME = "您好，我是智能客服助手，请问有什么可以帮您？"
_SPLIT = re.compile(r"\s*[|\n]\s*")
MAX_SUGGESTIONS = 8


def _web_url(value: str, name: str) -> str:
    if value and not value.startswith(("https://", "http://")):
        raise ValueError(f"{name} must start with https:// or http://")
    return value


class WebChatSettings(Section):
    """What the chat page says before the customer does, and links for cited documents.

    Suggested questions are configured, never guessed: they are shown to every visitor, so
    they are the operator's choice (none by default). BOT_WEBCHAT_SUGGESTIONS separates them
    with `|` or new lines.
    """

    model_config = env_config("BOT_WEBCHAT_")

    title: str = Field(default="在线客服", min_length=1, max_length=40)
    welcome: str = Field(default=DEFAULT_WELCOME, max_length=500)  # empty: no welcome bubble
    suggestions: str = ""
    # A cited document's link: its own in source_links ({"policies.md": "https://..."}),
    # else source_base_url + its name (documents published on a help site under the same
    # names); neither: the title alone.
    source_base_url: str = ""
    source_links: dict[str, str] = Field(default_factory=dict)

    @field_validator("source_base_url")
    @classmethod
    def _base_is_web(cls, value: str) -> str:
        return _web_url(value.strip(), "BOT_WEBCHAT_SOURCE_BASE_URL")

    @field_validator("source_links")
    @classmethod
    def _links_are_web(cls, value: dict[str, str]) -> dict[str, str]:
        # Only web links: a javascript: or data: URL would run in the customer's page.
        return {k: _web_url(v.strip(), f"BOT_WEBCHAT_SOURCE_LINKS[{k}]") for k, v in value.items()}

    @field_validator("suggestions")
    @classmethod
    def _few_suggestions(cls, value: str) -> str:
        if len([s for s in _SPLIT.split(value) if s]) > MAX_SUGGESTIONS:
            raise ValueError(f"BOT_WEBCHAT_SUGGESTIONS: at most {MAX_SUGGESTIONS} questions")
        return value

    @property
    def suggestion_list(self) -> list[str]:
        """The suggested questions, in order, each at most 100 characters."""
        return [s[:100] for s in _SPLIT.split(self.suggestions.strip()) if s]

    def source_url(self, title: str) -> str | None:
        """Where the customer can read the cited document `title`; None: nowhere."""
        if title in self.source_links:
            return self.source_links[title]
        if self.source_base_url:
            return self.source_base_url.rstrip("/") + "/" + quote(title)
        return None
