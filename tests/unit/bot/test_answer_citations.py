"""An answer's citations survive the answer cache (a retried send must strip the same line),
and the plain-text line is what every chat platform has always shown."""

from __future__ import annotations

import json

from bot.agent.agent import Answer
from bot.domain import Source, sources_line


def test_citations_round_trip_through_the_cached_json() -> None:
    cited = (Source("policies.md", "发票"), Source("manual.md"))
    answer = Answer(text="好的" + sources_line(cited), citations=cited)
    again = Answer.from_json(answer.to_json())
    assert again.citations == cited
    assert again.text.endswith("\n\n参考：policies.md · 发票；manual.md")


def test_an_answer_cached_before_citations_existed_has_none() -> None:
    old = json.loads(Answer(text="hi").to_json())
    del old["citations"]
    assert Answer.from_json(json.dumps(old)).citations == ()
    assert sources_line(()) == ""
