"""README.md's quick start, typed as it is written.

The commands are the shell blocks of the README's "Quick start" section, not a copy: a README
change changes what runs here. In a fresh folder laid out like a checkout (the Makefile, the
examples, and `.venv` whose `bin` is the installed one), the command that starts the bot
(`make up`) runs in one terminal with only BOT_PORT set, so that parallel tests do not
collide (the README's port, 8080, is one setting away); the other commands run in a second
terminal in the same folder with nothing exported, each through `sh -c` exactly as written.
Each must exit 0 without a traceback and show the sample knowledge's answer. Then Ctrl-C
(SIGINT to the terminal's process group) stops everything: nothing may be left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psutil
import pytest

from bot.cli import embedded
from bot.cli.main import build_parser
from knowledge.loaders import load_faq_csv
from tests.integration.conftest import REPO, SAMPLE_KB

README = REPO / "README.md"
BOT_SCRIPT = Path(sys.executable).parent / "bot"
SHELL_BLOCK = re.compile(r"^```(?:sh|bash|shell|console)\n(.*?)^```", re.M | re.S)
# The bot's own settings and a parent `make`'s state: a new terminal has none of them.
NOT_IN_A_NEW_SHELL = (
    "BOT_",
    "REDIS_",
    "DATABASE_",
    "WECOM_",
    "DINGTALK_",
    "FEISHU_",
    "WECHAT_",
    "VLLM_",
    "DASHSCOPE_",
    "EMBEDDING_",
    "ORDERS_",
    "TEST_",
    "MAKEFLAGS",
    "MFLAGS",
    "MAKELEVEL",
)


def quick_start(text: str) -> list[str]:
    """The command lines of the shell blocks between "## Quick start" and the next section."""
    section = text.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for block in SHELL_BLOCK.findall(section) for line in block.splitlines()]
    lines = [line.strip().removeprefix("$ ") for line in lines]
    return [line for line in lines if line and not line.startswith("#")]


def quick_start_prose(text: str) -> list[str]:
    """The `bot …` commands the section's prose shows as inline code, outside its blocks."""
    section = text.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    prose = re.sub(r"^```.*?^```", "", section, flags=re.M | re.S)
    spans = re.findall(r"`([^`\n]+)`", prose)
    return [span for span in spans if len(_argv(span)) > 1 and Path(_argv(span)[0]).name == "bot"]


def _argv(line: str) -> list[str]:
    return shlex.split(line, comments=True)


def _starts_the_bot(line: str) -> bool:
    argv = _argv(line)
    return argv[-1:] == ["up"] and (argv[0] == "make" or Path(argv[0]).name == "bot")


def _runs_this_suite(line: str) -> bool:
    # `make test` is the suite this test belongs to: running it here would recurse.
    argv = _argv(line)
    return argv[0] == "make" and "test" in argv[1:]


def _new_shell(**extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(NOT_IN_A_NEW_SHELL)}
    # This checkout's code, whichever checkout the shared .venv was installed from.
    return {**keep, "PYTHONPATH": str(REPO), **extra}


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A folder laid out like a fresh checkout after `make install`, writing nothing elsewhere."""
    if not BOT_SCRIPT.is_file():
        pytest.skip(f"no installed `bot` script beside {sys.executable}")
    folder = tmp_path / "cs-bot"
    folder.mkdir()
    shutil.copy2(REPO / "Makefile", folder)
    shutil.copy2(REPO / "pyproject.toml", folder)
    shutil.copytree(REPO / "examples", folder / "examples")
    venv = folder / ".venv"
    venv.mkdir()
    (venv / "bin").symlink_to(BOT_SCRIPT.parent, target_is_directory=True)
    (venv / ".installed").touch()  # Makefile's stamp, newer than pyproject.toml: installed
    # Nothing would be (re)installed: `make up` only runs `bot up`.
    assert (
        subprocess.run(["make", "-q", ".venv/.installed"], cwd=folder, check=False).returncode == 0
    )
    return folder


@dataclass
class Terminal:
    """The first terminal: a long-running command, its output read as it comes."""

    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    tree: list[psutil.Process] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.output:
            assert self.proc.poll() is None, (
                f"it stopped (exit {self.proc.returncode}):\n{self.output}"
            )
            assert time.monotonic() < deadline, f"no {text!r} after {timeout_s} s:\n{self.output}"
            time.sleep(0.2)

    def ctrl_c(self, timeout_s: float) -> None:
        """What Ctrl-C does: SIGINT to every process of the terminal's foreground group."""
        os.killpg(self.proc.pid, signal.SIGINT)
        self.proc.wait(timeout=timeout_s)
        self._reader.join(timeout=10)  # the rest of its output

    def close(self) -> None:
        """Kill what is left of it, in whatever process group (`bot up` starts its children
        in groups of their own): the test failed, or found strays."""
        if self.proc.poll() is None:
            with contextlib.suppress(psutil.Error):
                self.tree += psutil.Process(self.proc.pid).children(recursive=True)
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        for proc in self.tree:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        self._reader.join(timeout=10)
        assert self.proc.stdout is not None
        if not self._reader.is_alive():  # else a killed process's pipe is not yet closed
            self.proc.stdout.close()

    def processes(self) -> list[psutil.Process]:
        """It and every process it started so far (kept, to be killed if the test fails)."""
        me = psutil.Process(self.proc.pid)
        self.tree = [me, *me.children(recursive=True)]
        return self.tree


@pytest.fixture
def first_terminal() -> Iterator[list[Terminal]]:
    started: list[Terminal] = []
    yield started
    for terminal in started:
        terminal.close()


# A terminal's foreground job takes Ctrl-C with the default action. This test may run in a
# process that ignores SIGINT (an xdist worker can), and an ignored signal stays ignored
# across fork and exec, where a shell cannot reset it (POSIX): `bot up` then never saw the
# Ctrl-C, and the test waited for it in vain. The job starts with SIGINT back at default.
_AS_A_TERMINAL_JOB = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execvp('sh', ['sh', '-c', sys.argv[1]])"
)


def _start(line: str, folder: Path, port: int) -> Terminal:
    proc = subprocess.Popen(
        [sys.executable, "-c", _AS_A_TERMINAL_JOB, line],
        cwd=folder,
        # As on a terminal: each line shown when it is printed, not when a pipe buffer fills.
        env=_new_shell(BOT_PORT=str(port), PYTHONUNBUFFERED="1"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's job
    )
    return Terminal(proc)


def _type_at_a_terminal(
    line: str, folder: Path, replies: dict[str, list[str]], timeout_s: float = 120
) -> tuple[int, str]:
    """Run `line` at a terminal (a pty), typing the next reply to each prompt it shows.

    A prompt is what the command printed after its last newline, waiting: `password: `
    asked by getpass, `你> ` by `bot chat`. Returns the exit status and what the terminal
    showed (the typed replies echoed, except passwords).
    """
    queued = {prompt: list(answers) for prompt, answers in replies.items()}
    master, slave = os.openpty()
    proc = subprocess.Popen(
        ["sh", "-c", line],
        cwd=folder,
        env=_new_shell(),  # nothing exported: it finds `bot up` through ./data
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    shown, answered_at = b"", -1
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if not select.select([master], [], [], 0.2)[0]:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every process holding the terminal has exited
                break
            if not chunk:
                break
            shown += chunk
            tail = shown.rsplit(b"\n", 1)[-1].decode(errors="replace")
            for prompt, answers in queued.items():
                if tail.endswith(prompt) and answers and answered_at != len(shown):
                    answered_at = len(shown)
                    os.write(master, answers.pop(0).encode() + b"\n")
        else:
            raise AssertionError(f"$ {line}: still running after {timeout_s} s:\n{shown!r}")
        return proc.wait(timeout=30), shown.decode().replace("\r\n", "\n")
    finally:
        os.close(master)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


async def _sign_in(base: str, username: str, password: str) -> str:
    """Sign in at /console/ as a browser does; returns the page it lands on."""
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1, an address
    async with aiohttp.ClientSession(base, cookie_jar=jar) as http:
        async with http.get("/console/login") as form:
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', await form.text())
        assert csrf is not None
        fields = {"username": username, "password": password, "csrf_token": csrf[1]}
        async with http.post("/console/login", data={**fields, "next": "/console/"}) as page:
            assert page.status == 200, await page.text()
            return page.url.path


def _process_group(pgid: int) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid:
                found.append(proc)
        except (ProcessLookupError, psutil.Error):
            continue
    return found


def _banner_commands(banner: str) -> list[list[str]]:
    """The `bot …` commands the banner suggests, as a user would copy them."""
    commands = []
    for line in banner.splitlines():
        for part in re.split(r"\s{2,}", line.strip()):
            try:
                argv = shlex.split(part)
            except ValueError:
                continue
            if len(argv) > 1 and Path(argv[0]).name == "bot":
                commands.append(argv)
    return commands


@pytest.mark.timeout(300)
def test_the_quick_start_works_as_written(checkout: Path, first_terminal: list[Terminal]) -> None:
    text = README.read_text(encoding="utf-8")
    lines = quick_start(text)
    starters = [line for line in lines if _starts_the_bot(line)]
    assert len(starters) == 1, lines  # one command starts the bot (`make up`)
    after = lines[lines.index(starters[0]) + 1 :]
    second_terminal = [line for line in after if not _runs_this_suite(line)]
    assert second_terminal, lines  # what to try while it runs
    prose = [line for line in quick_start_prose(text) if not _starts_the_bot(line)]
    faq = load_faq_csv(SAMPLE_KB / "faq.csv")
    answers = {entry.answer for entry in faq}
    asked = {word for line in second_terminal for word in _argv(line)}
    # What a user types where a command asks (`bot chat`): a question the README's commands
    # do not ask, then an empty line to quit. Other commands do not read it.
    question = next(e for e in faq if not asked & set(e.questions)).similar[0]

    for _attempt in range(3):  # the free port may be taken by a test beside this one
        port = embedded.free_port()
        up = _start(starters[0], checkout, port)
        first_terminal.append(up)
        try:
            # Ready when it says where to chat, as the README promises.
            up.wait_for(f"http://127.0.0.1:{port}/", timeout_s=120)
            break
        except AssertionError:
            if up.proc.poll() is None or f"port {port} is in use" not in up.output:
                raise
    else:
        pytest.fail("no free port for `bot up` in three tries")
    up.wait_for("Press Ctrl-C to stop.", timeout_s=30)
    tree = up.processes()
    redis_url = re.search(r"Redis: started an embedded server at (redis://\S+)", up.output)
    assert redis_url is not None, up.output  # its own Redis, named, not whatever is on 6379
    assert re.search(rf"Redis: +{re.escape(redis_url[1])} \(embedded", up.output), up.output
    redis_port = int(redis_url[1].rsplit(":", 1)[1].split("/")[0])

    # At a terminal, a user answers what a command asks: `bot chat` a question the README's
    # commands do not ask, then an empty line to quit; `users add` a password, twice.
    password = "quick-start-" + os.urandom(4).hex()
    replies = {"你> ": [question, ""], "password: ": [password], "again: ": [password]}
    for line in second_terminal:
        code, shown = _type_at_a_terminal(line, checkout, replies)
        seen = f"$ {line}\n{shown}"
        assert code == 0, seen
        assert "Traceback" not in seen, seen
        # The answer to the question it asks (or `bot chat` was asked); any answer of the
        # sample FAQ when the README asks something the FAQ does not say word for word.
        words = set(_argv(line))
        expected = {e.answer for e in faq if words & set(e.questions)}
        expected = expected or {e.answer for e in faq if question in e.questions}
        assert any(answer in shown for answer in expected or answers), seen

    # The prose's commands (the first admin): typed as shown, then what they promise.
    for line in prose:
        code, shown = _type_at_a_terminal(line, checkout, replies)
        seen = f"$ {line}\n{shown}"
        assert code == 0, seen
        assert "Traceback" not in seen, seen
        argv = _argv(line)
        if argv[1:3] == ["users", "add"]:
            landed = asyncio.run(_sign_in(f"http://127.0.0.1:{port}", argv[3], password))
            assert landed.startswith("/console/"), seen
            assert landed != "/console/login", seen  # signed in, not sent back to the form

    # The banner's commands can be typed as printed, from this folder.
    suggested = _banner_commands(up.output)
    assert len(suggested) >= 3, up.output
    for argv in suggested:
        typed = shutil.which(argv[0], path=_new_shell()["PATH"]) or (checkout / argv[0])
        assert os.access(typed, os.X_OK), argv
        build_parser().parse_args(argv[1:])

    up.ctrl_c(timeout_s=60)
    assert "Traceback" not in up.output, up.output
    assert "a process stopped" not in up.output, up.output  # all stopped by bot up, in order
    assert [p for p in tree if p.is_running()] == [], up.output
    assert _process_group(up.proc.pid) == []
    assert not embedded.port_open("127.0.0.1", port)
    assert not embedded.port_open("127.0.0.1", redis_port)
    assert not (checkout / "data" / "up.env").exists()  # nothing left pointing at it


def test_the_quick_start_is_found() -> None:
    """The extraction finds the README's commands: a broken one fails here, not silently."""
    text = (
        "# x\n\n## Quick start\n\n```sh\nmake up   # starts it\nmake test\n```\n\nprose\n\n"
        '```\ndiagram\n```\n\n```sh\n$ .venv/bin/bot simulate web "hi"  # try\n```\n\n'
        "## Next\n\n```sh\nmake lint\n```\n"
    )
    lines = quick_start(text)
    assert lines == ["make up   # starts it", "make test", '.venv/bin/bot simulate web "hi"  # try']
    assert [_starts_the_bot(line) for line in lines] == [True, False, False]
    assert [_runs_this_suite(line) for line in lines] == [False, True, False]
    assert _starts_the_bot(".venv/bin/bot up")
    prose = (
        "# x\n\n## Quick start\n\n`bot up` prints `http://x/`; add one with `bot users add A`.\n"
    )
    assert quick_start_prose(prose) == ["bot up", "bot users add A"]
    readme = quick_start(README.read_text(encoding="utf-8"))
    assert any(_starts_the_bot(line) for line in readme)
