"""Fit the answer judge's logistic model (`bot/agent/judge.py`) on the tuning sets.

Run from anywhere::

    .venv/bin/python -m benchmarks.answer_fit                 # fit, print the curve
    .venv/bin/python -m benchmarks.answer_fit --write         # and store the coefficients

Examples: every candidate the agent's no-model path considers (the retriever's first
`CANDIDATES` hits, codes reconciled) for every answerable single question, every part of
a multi-question message whose split matches its labelled parts, and every out-of-scope
question of the sets ``sample``, ``telecom`` and ``travel`` (never ``heldout``). A
candidate is a positive when its reply text holds every key fact of the question (the
judging of `benchmarks/answer_eval.py`); out-of-scope questions and ``none`` parts give
only negatives. The model is an L2-regularised logistic regression fitted by Newton's
method (numpy only). Printed: the coefficients, the AUC with which the chosen candidate's
probability tells a right choice from a wrong one or from an out-of-scope question (fitted
on all sets, and each set fitted on the other two), and the right / wrong / declined
curve over thresholds, from which `judge.THRESHOLD` is chosen.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.answer_eval import load
from bot.agent import codes, judge, questions
from knowledge.search.retrieval import KeywordRetriever

SETS = ("sample", "telecom", "travel")
# The features the model uses (judge.FEATURES has more: see --select).
USED = ("score", "singles_gap", "dice", "sentence")
CANDIDATES = 8
L2 = 1.0
JUDGE = Path(__file__).resolve().parents[1] / "bot" / "agent" / "judge.py"


@dataclass
class Query:
    """One question's candidates: feature rows, which are right, and whether any can be."""

    set: str
    kind: str  # "answerable" or "outside"
    rows: np.ndarray
    right: np.ndarray


def _flat(text: str) -> str:
    return "".join(text.split())


def collect(name: str) -> list[Query]:
    items, knowledge = load(name)
    retriever = KeywordRetriever.from_folder(knowledge)
    found: list[Query] = []

    def add(text: str, facts: Sequence[str] | None) -> None:
        hits = codes.reconcile(text, retriever.search(text, CANDIDATES), 0.35)
        if not hits:
            rows = np.zeros((0, len(judge.FEATURES)))
            found.append(Query(name, "answerable" if facts else "outside", rows, np.zeros(0)))
            return
        rows = np.array(judge.features(text, hits))
        needed = list(facts or ())
        right = np.array(
            [
                float(bool(needed) and all(_flat(f) in _flat(h.reply_text) for f in needed))
                for h in hits
            ]
        )
        found.append(Query(name, "answerable" if facts else "outside", rows, right))

    for q in items:
        kind = q["type"]
        if kind == "out_of_scope":
            add(q["text"], None)
        elif kind == "single" and "none" not in q["expect"][0]:
            add(q["text"], q["facts"][0])
        elif kind in ("multi", "burst"):
            parts = questions.split(q["text"])
            if len(parts) == len(q["expect"]):
                for part, expect, facts in zip(parts, q["expect"], q["facts"], strict=True):
                    add(part, None if "none" in expect else facts)
    return found


def fit(queries: Sequence[Query]) -> np.ndarray:
    """Intercept then coefficients."""
    x = np.vstack([q.rows for q in queries if len(q.rows)])
    y = np.concatenate([q.right for q in queries if len(q.rows)])
    x = np.hstack([np.ones((len(x), 1)), x])
    w = np.zeros(x.shape[1])
    penalty = L2 * np.eye(x.shape[1])
    penalty[0, 0] = 0.0
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        grad = x.T @ (p - y) + penalty @ w
        hess = (x * (p * (1 - p))[:, None]).T @ x + penalty
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def chosen(queries: Sequence[Query], w: np.ndarray) -> list[tuple[str, float, bool]]:
    """(kind, probability of the most probable candidate, whether that one is right)."""
    out = []
    for q in queries:
        if not len(q.rows):
            out.append((q.kind, 0.0, False))
            continue
        p = 1.0 / (1.0 + np.exp(-(w[0] + q.rows @ w[1:])))
        i = int(np.argmax(p))
        out.append((q.kind, float(p[i]), bool(q.right[i])))
    return out


def auc(pos: Sequence[float], neg: Sequence[float]) -> float:
    if not pos or not neg:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def curve(picks: Sequence[tuple[str, float, bool]], t: float) -> tuple[float, float, float]:
    """Right and wrong shares of answerable questions, out-of-scope declined, at `t`."""
    ans = [(p, ok) for kind, p, ok in picks if kind == "answerable"]
    out = [p for kind, p, _ in picks if kind == "outside"]
    right = sum(p >= t and ok for p, ok in ans) / max(1, len(ans))
    wrong = sum(p >= t and not ok for p, ok in ans) / max(1, len(ans))
    declined = sum(p < t for p in out) / max(1, len(out))
    return right, wrong, declined


def report(name: str, picks: Sequence[tuple[str, float, bool]]) -> None:
    right = [p for kind, p, ok in picks if kind == "answerable" and ok]
    wrong = [p for kind, p, ok in picks if kind == "answerable" and not ok]
    out = [p for kind, p, _ in picks if kind == "outside"]
    print(
        f"{name:<22} AUC right vs wrong {auc(right, wrong):.3f}, "
        f"right vs out-of-scope {auc(right, out):.3f}"
    )


def write(w: np.ndarray, used: Sequence[str]) -> None:
    text = JUDGE.read_text(encoding="utf-8")
    lines = "".join(f'    "{name}": {c:.3f},\n' for name, c in zip(used, w[1:], strict=True))
    text = re.sub(r"^INTERCEPT = .*$", f"INTERCEPT = {w[0]:.3f}", text, flags=re.M)
    text = re.sub(
        r"^COEFFICIENTS: dict\[str, float\] = \{\n(?:    .*\n)*\}",
        f"COEFFICIENTS: dict[str, float] = {{\n{lines}}}",
        text,
        flags=re.M,
    )
    JUDGE.write_text(text, encoding="utf-8")
    print(f"written to {JUDGE}")


def only(queries: Sequence[Query], used: Sequence[str]) -> list[Query]:
    """`queries` with the feature columns `used` only."""
    cols = [judge.FEATURES.index(name) for name in used]
    return [Query(q.set, q.kind, q.rows[:, cols], q.right) for q in queries]


def cross(by_set: dict[str, list[Query]], used: Sequence[str]) -> tuple[float, float]:
    """Each set scored by a model fitted on the others: mean AUC of the chosen candidate's
    probability (right vs wrong or out-of-scope), mean share of answerable questions whose
    chosen candidate is right."""
    aucs, tops = [], []
    for name in SETS:
        held = fit(only([q for m in SETS if m != name for q in by_set[m]], used))
        picks = chosen(only(by_set[name], used), held)
        right = [p for kind, p, ok in picks if kind == "answerable" and ok]
        other = [p for kind, p, ok in picks if not (kind == "answerable" and ok)]
        aucs.append(auc(right, other))
        tops.append(float(np.mean([ok for kind, _, ok in picks if kind == "answerable"])))
    return float(np.mean(aucs)), float(np.mean(tops))


def select(by_set: dict[str, list[Query]]) -> list[str]:
    """Forward selection: add the feature that raises `cross` (AUC + top share) most."""
    used: list[str] = []
    best = 0.0
    while True:
        tried = [
            (sum(cross(by_set, [*used, name])), name) for name in judge.FEATURES if name not in used
        ]
        if not tried or max(tried)[0] <= best + 0.002:
            return used
        best, name = max(tried)
        used.append(name)
        print(f"  + {name:<14} AUC + top share {best:.3f}")


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    p.add_argument("--write", action="store_true", help="store the coefficients in judge.py")
    p.add_argument("--select", action="store_true", help="choose the features again")
    args = p.parse_args(argv)
    by_set = {name: collect(name) for name in SETS}
    used = select(by_set) if args.select else list(USED)
    every = only([q for qs in by_set.values() for q in qs], used)
    w = fit(every)
    print("intercept", f"{w[0]:.3f}")
    for name, c in zip(used, w[1:], strict=True):
        print(f"  {name:<12} {c:+.3f}")
    picks = chosen(every, w)
    report("all sets (fitted on all)", picks)
    for name in SETS:
        held = fit([q for q in every if q.set != name])
        report(f"{name} (fitted on others)", chosen(only(by_set[name], used), held))
    print("threshold  right  wrong  out-of-scope declined   (answerable: singles and parts)")
    for t in np.arange(0.2, 0.85, 0.05):
        r, wr, d = curve(picks, float(t))
        print(f"{t:9.2f}  {r:5.0%}  {wr:5.0%}  {d:5.0%}")
    if args.write:
        write(w, used)


if __name__ == "__main__":
    main()
