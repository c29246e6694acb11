"""Media retention: files customers sent are deleted once older than BOT_MEDIA_KEEP_S."""

from __future__ import annotations

import os
from pathlib import Path

from bot.pipeline.media import prune

NOW = 1_700_000_000.0


def _file(folder: Path, name: str, age_s: float) -> Path:
    path = folder / name
    path.write_bytes(b"x")
    os.utime(path, (NOW - age_s, NOW - age_s))
    return path


def test_only_files_older_than_the_keep_time_are_deleted(tmp_path: Path) -> None:
    old = _file(tmp_path, "a-0-image.jpg", age_s=3601)
    young = _file(tmp_path, "b-0-image.jpg", age_s=3599)
    (tmp_path / "sub").mkdir()  # folders are left alone
    assert prune(tmp_path, keep_s=3600, now=NOW) == 1
    assert (old.exists(), young.exists(), (tmp_path / "sub").is_dir()) == (False, True, True)


def test_a_missing_folder_is_nothing_to_prune(tmp_path: Path) -> None:
    assert prune(tmp_path / "none", keep_s=60, now=NOW) == 0
