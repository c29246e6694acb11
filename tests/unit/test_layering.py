"""Import direction: domain/errors import nothing of ours; the agent and
knowledge never import adapters; only composition roots name platform adapter modules."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _ours(names: set[str]) -> set[str]:
    return {n for n in names if n.split(".")[0] in {"bot", "adapters", "workers", "knowledge"}}


def test_domain_and_errors_import_nothing_of_ours() -> None:
    for name in ("domain.py", "errors.py"):
        assert _ours(_imports(ROOT / "bot" / name)) == set(), name


def test_knowledge_and_agent_never_import_adapters_or_workers() -> None:
    files = [
        *(ROOT / "knowledge").rglob("*.py"),
        *(ROOT / "bot" / "agent").rglob("*.py"),
        *(ROOT / "bot" / "llm").rglob("*.py"),
    ]
    for path in files:
        bad = {n for n in _ours(_imports(path)) if n.split(".")[0] in {"adapters", "workers"}}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_adapters_import_only_domain_errors_and_llm_base() -> None:
    allowed = {"bot.domain", "bot.errors", "bot.llm.base"}
    for path in (ROOT / "adapters").rglob("*.py"):
        for name in _ours(_imports(path)):
            assert name.startswith("adapters") or name in allowed, f"{path.name} imports {name}"
