"""The Celery app on Redis, configured explicitly from Settings by each process."""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery, concurrency
from celery.signals import setup_logging as celery_setup_logging

from bot.broker import celery_config
from bot.errors import ConfigError
from bot.logs import setup_logging
from bot.pipeline import voice
from bot.settings import Settings
from workers.transport import TRANSPORT

# `celery -A workers.celery_app worker -P custom` runs the bot's own pool (the default here).
os.environ.setdefault("CELERY_CUSTOM_WORKER_POOL", "workers.pool:AsyncPool")
concurrency.ALIASES.setdefault(  # type: ignore[attr-defined]  # not in celery-types
    "custom", os.environ["CELERY_CUSTOM_WORKER_POOL"]
)
app = Celery("bot", include=["workers.tasks"])
_settings: Settings | None = None


def configure(settings: Settings) -> Celery:
    """Point the app at the configured Redis and remember the settings for tasks."""
    global _settings
    # A Redis transport that reconnects after losing Redis mid-turn (workers/transport.py).
    app.conf.update(celery_config(settings), worker_pool="custom", broker_transport=TRANSPORT)
    _settings = settings
    # Speech recognition set up on a host without ffmpeg: said once, at start.
    problem = voice.decoder_problem(settings)
    if problem:
        logging.getLogger(__name__).error(problem)
    return app


def current_settings() -> Settings:
    """The settings of this process (configured at bootstrap, or from the environment)."""
    if _settings is None:
        configure(Settings.load())
    if _settings is None:  # configure() sets it; this keeps the type checker honest
        raise ConfigError("settings were not configured")
    return _settings


@celery_setup_logging.connect
def _celery_logging(**_kwargs: Any) -> None:
    level = _settings.core.log_level if _settings is not None else "INFO"
    setup_logging(level)
    logging.getLogger("celery").setLevel(logging.INFO)
