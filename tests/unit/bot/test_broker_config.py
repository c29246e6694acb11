"""The broker settings that decide how soon a killed worker's turns come back."""

from __future__ import annotations

import pytest

from bot.broker import celery_config
from bot.settings import Settings


@pytest.mark.parametrize("visibility", [3.0, 60.0, 900.0])
def test_a_killed_sweeper_cannot_hold_redelivery_back_for_long(visibility: float) -> None:
    settings = Settings.load(
        None, core={"redis_url": "redis://127.0.0.1:6379/0", "visibility_timeout_s": visibility}
    )
    options = celery_config(settings)["broker_transport_options"]
    assert options["visibility_timeout"] == visibility
    # kombu's default lock of the unacked sweep is 300 s: a worker killed mid-sweep would
    # delay every redelivery that long.
    assert options["unacked_mutex_expire"] <= max(2, visibility / 2)
    assert options["unacked_mutex_expire"] <= 30
    # Sweeps run at least ten times per visibility timeout (every one scans).
    assert options["unacked_restore_interval"] * options["unacked_restore_throttle"] <= max(
        1, visibility / 10
    )
