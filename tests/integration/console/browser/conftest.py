"""Browser tests: the console and the chat page in Debian's Chromium, driven by Playwright.

`playwright install` cannot download browsers here; we drive the system's `chromium`
(`apt-get install chromium fonts-noto-cjk`, which .ci/run does). Without it these tests
fail with that instruction rather than skip. Each test saves screenshots under
build/screenshots/ (BOT_SCREENSHOTS overrides it).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.integration.conftest import REPO

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(os.environ.get("BOT_SCREENSHOTS", REPO / "build" / "screenshots"))
AXE = Path(__file__).with_name("vendor") / "axe.min.js"
# axe impacts that fail a page: what keeps someone from using it at all or badly.
BLOCKING = {"serious", "critical"}


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not shutil.which(CHROMIUM):
        pytest.fail(
            "the browser tests need Debian's chromium: apt-get install chromium fonts-noto-cjk"
        )
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        await launched.close()


@pytest.fixture
def shoot(request: pytest.FixtureRequest) -> Callable[[Page, str], Any]:
    """`await shoot(page, "name")` saves build/screenshots/<test>-<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    async def save(page: Page, name: str) -> Path:
        path = SCREENSHOTS / f"{request.node.name}-{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        return path

    return save


async def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    await page.add_script_tag(path=str(AXE))
    result = await page.evaluate("async () => await axe.run(document)")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]]}
        for v in result["violations"]
        if v["impact"] in BLOCKING
    ]
