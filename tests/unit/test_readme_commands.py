"""Every `bot …` and `make …` command README.md shows exists as written.

Commands are taken from the README's fenced shell blocks, to be typed as they are: a `bot`
command must parse with the real parser of bot/cli/main.py, a `make` target must be a target
of the Makefile. Inline code spans name commands in prose (`bot serve`, `bot kb`): they may
leave out what a command requires, but every word they show must exist. A renamed
subcommand, option or target fails here first.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from bot.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BOT_PREFIXES = ("bot", ".venv/bin/bot")


def _fenced_lines(text: str) -> list[str]:
    """Lines of the ```sh / ```bash / ```console / ``` blocks (not the diagrams' ``` blocks)."""
    lines: list[str] = []
    for lang, body in re.findall(r"^```([a-z]*)\n(.*?)^```", text, re.M | re.S):
        if lang in ("sh", "bash", "shell", "console"):
            lines += [line.removeprefix("$ ") for line in body.splitlines()]
    return lines


def _inline_spans(text: str) -> list[str]:
    prose = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return re.findall(r"`([^`\n]+)`", prose)


def _commands(text: str) -> list[tuple[list[str], bool]]:
    """Each shown `bot`/`make` command as (argv, complete: from a fenced block).

    `…` or `|` mark a sketch, not a command; a lone `bot` or `make` in prose is a name.
    """
    found = []
    lines = [(line, True) for line in _fenced_lines(text)]
    lines += [(span, False) for span in _inline_spans(text)]
    for line, complete in lines:
        if "…" in line or "|" in line:
            continue
        try:
            argv = shlex.split(line, comments=True)
        except ValueError:
            continue
        if len(argv) > 1 and (argv[0] in BOT_PREFIXES or argv[0] == "make"):
            found.append((argv, complete))
    return found


def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z0-9_.-]+):(?!=)", text, re.M))


def _bot_error(
    argv: list[str], capsys: pytest.CaptureFixture[str], *, complete: bool = True
) -> str | None:
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:
        error = capsys.readouterr().err.strip()
        if not complete and "the following arguments are required" in error:
            return None  # prose naming a command group (`bot kb`): the words exist
        return f"exit {exc.code}: {error}"
    return None


def test_readme_commands_exist(capsys: pytest.CaptureFixture[str]) -> None:
    commands = _commands(README.read_text(encoding="utf-8"))
    bot_commands = [(argv[1:], complete) for argv, complete in commands if argv[0] in BOT_PREFIXES]
    make_commands = [argv[1:] for argv, _ in commands if argv[0] == "make"]
    # What the quick start shows: if these vanish, the extraction broke, not the README.
    assert (["simulate", "wecom", "怎么退货"], True) in bot_commands
    assert (["chat"], True) in bot_commands
    assert (["users", "add", "NAME", "--role", "admin"], False) in bot_commands
    assert ["up"] in make_commands
    wrong = [
        f"bot {shlex.join(argv)}: {error}"
        for argv, complete in bot_commands
        if (error := _bot_error(argv, capsys, complete=complete))
    ]
    targets = _make_targets()
    wrong += [
        f"make {target}: no such Makefile target"
        for argv in make_commands
        for target in argv
        if not target.startswith("-") and "=" not in target and target not in targets
    ]
    assert wrong == []


def test_a_drifted_readme_fails(capsys: pytest.CaptureFixture[str]) -> None:
    """The same checks catch a subcommand, an option and a target that do not exist."""
    drifted = (
        "```sh\n.venv/bin/bot simulate wecom --colour red hi\nbot serv\nbot kb\nmake tests\n```\n"
        "Run `bot users ad NAME` or `bot kb`.\n"
    )
    commands = _commands(drifted)
    assert [(argv[0], complete) for argv, complete in commands] == [
        (".venv/bin/bot", True),
        ("bot", True),
        ("bot", True),
        ("make", True),
        ("bot", False),
        ("bot", False),
    ]
    errors = [
        _bot_error(argv[1:], capsys, complete=complete)
        for argv, complete in commands
        if argv[0] != "make"
    ]
    # An unknown option, an unknown subcommand, a group typed without its subcommand, a
    # misspelt subcommand in prose: wrong; a group named in prose: fine.
    assert [e is not None for e in errors] == [True, True, True, True, False]
    assert "tests" not in _make_targets()
    assert "test" in _make_targets()
