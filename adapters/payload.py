"""Reading a platform's JSON body: anything that is not one JSON object is a PayloadError.

JSON nested deeper than Python's recursion limit raises RecursionError, bytes that are not
UTF-8 raise UnicodeDecodeError: both are the sender's fault, so a 400, never a 500.
"""

from __future__ import annotations

import json
from typing import Any

from bot.domain import Platform
from bot.errors import PayloadError


def json_object(raw: bytes | str, what: str, platform: Platform) -> dict[str, Any]:
    """`raw` as a JSON object; PayloadError naming `what` otherwise."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise PayloadError(f"{what} is not JSON", platform) from exc
    if not isinstance(data, dict):
        raise PayloadError(f"{what} is not a JSON object", platform)
    return data
