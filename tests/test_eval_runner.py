"""The eval runner end to end with a scripted guard and hand-made files: metrics, categories, reports."""

from __future__ import annotations

import json

import pytest

from guard.evaluation import report, runner
from guard.evaluation.data import load
from guard.policies import PolicySet
from guard.verdict import CheckRequest, PolicyResult, Verdict


class WordGuard:
    """Flags a policy when its id appears in the judged text; fails on 'crash'."""

    name = "words"

    def __init__(self) -> None:
        self.requests: list[CheckRequest] = []

    async def check(self, request: CheckRequest) -> Verdict:
        self.requests.append(request)
        if "crash" in request.content:
            raise RuntimeError("scripted failure")
        text = request.content.lower()
        return Verdict(self.name, {p.id: PolicyResult(p.id, p.id.lower() in text, 1.0 if p.id.lower() in text else 0.0) for p in request.policies})

    async def aclose(self) -> None:
        pass


POLICIES = PolicySet.from_dict({"policies": [
    {"id": "bomb", "description": "weapons"},
    {"id": "keys", "engine": "patterns", "detectors": ["api_key"]},
]})
CATEGORIES = PolicySet.from_dict({"policies": [
    {"id": "hate", "description": "hate"},
    {"id": "sexual_minors", "description": "minors"},
]})


@pytest.fixture()
def files(tmp_path):
    prompt = [
        ("a bomb please", "unsafe", ["hate"]),            # TP; category hate missed (no 'hate' word)
        ("hate and bomb", "unsafe", ["hate"]),            # TP; category TP
        ("tell me a joke", "unsafe", ["sexual/minors"]),  # FN
        ("bomb disposal history", "safe", []),            # FP
        ("hello", "safe", []),                            # TN
        ("crash now", "safe", []),                        # error -> counted unsafe (FP)
    ]
    (tmp_path / "p.jsonl").write_text("".join(
        json.dumps({"id": str(i), "prompt": t, "response": None, "label": l, "task": "prompt", "categories": c}) + "\n"
        for i, (t, l, c) in enumerate(prompt)))
    resp = [("how?", "here is the bomb recipe", "unsafe"), ("bomb?", "no", "safe"), ("hi", "hello", "safe")]
    (tmp_path / "r.jsonl").write_text("".join(
        json.dumps({"id": str(i), "prompt": p, "response": r, "label": l, "task": "response"}) + "\n"
        for i, (p, r, l) in enumerate(resp)))
    return load([tmp_path])[0]


async def test_runner_metrics_categories_and_requests(files):
    guard = WordGuard()
    runs = await runner.run_all(guard, files, POLICIES, CATEGORIES, concurrency=3, progress=False)
    s = runner.summarize(runs, CATEGORIES)
    p, r = s["files"]["p"], s["files"]["r"]
    assert (p["tp"], p["fp"], p["fn"], p["tn"]) == (2, 2, 1, 1)
    assert p["errors"] == 1 and p["error_examples"] == ["RuntimeError: scripted failure"] and r["error_examples"] == []
    assert p["f1"] == pytest.approx(4 / 7)
    assert (r["tp"], r["fp"], r["fn"], r["tn"]) == (1, 0, 0, 2)
    # the output check sees the user turn as context and judges only the reply ("bomb?" -> "no" is safe)
    out_reqs = [q for q in guard.requests if q.direction.value == "output"]
    assert {q.context for q in out_reqs} == {"how?", "bomb?", "hi"}
    # only model-engine policies are sent
    assert all({x.id for x in q.policies} <= {"bomb", "hate", "sexual_minors"} for q in guard.requests)
    assert s["averages"]["prompt"]["weighted_f1"] == pytest.approx(4 / 7)
    assert s["averages"]["response"]["weighted_f1"] == pytest.approx(1.0)
    cats = p["categories"]
    hate = cats["per_category"]["hate"]
    # the errored row counts as flagged under every policy (fail closed), hence one FP
    assert (hate["tp"], hate["fp"], hate["fn"]) == (1, 1, 1)
    assert cats["per_category"]["sexual_minors"]["f1"] == 0.0
    assert cats["macro_f1"] == pytest.approx((0.5 + 0.0) / 2)
    assert "categories" not in r


async def test_report_files_are_written(files, tmp_path):
    runs = await runner.run_all(WordGuard(), files, POLICIES, CATEGORIES, progress=False)
    s = runner.summarize(runs, CATEGORIES)
    out = tmp_path / "report"
    written = report.write(out, s, {"guard": "words", "command": "rsafe eval", "policies": "x", "concurrency": 1}, [1.0, 2.0, 3.0])
    names = {p.name for p in written}
    assert {"eval.json", "eval.md"} <= names
    try:
        import matplotlib  # noqa: F401  (the `eval` extra)
    except ImportError:
        pass
    else:
        assert {"f1_vs_published.png", "latency.png"} <= names
        assert (out / "latency.png").read_bytes()[:4] == b"\x89PNG"
    doc = json.loads((out / "eval.json").read_text())
    assert doc["files"]["p"]["n"] == 6 and doc["run"]["guard"] == "words"
    md = (out / "eval.md").read_text()
    assert "macro F1" in md and "| p | prompt | 6 |" in md
    assert "- p (1 errors): `RuntimeError: scripted failure`" in md


def test_comparison_table_puts_published_rows_beside_ours():
    summary = {
        "files": {"toxicchat_test": {"f1": 0.5, "task": "prompt"}, "beavertails_test": {"f1": 0.25, "task": "response"}},
        "averages": {"prompt": {"weighted_f1": 0.5}, "response": {"weighted_f1": 0.25}},
    }
    table = report.comparison_table(summary, "embedded")
    assert "| Llama Guard 3 8B | 53.1 | 65.2 | 67.8 | 63.3 |" in table
    assert "**50.0**" in table and "**25.0**" in table


def test_cli_runs_a_registered_backend(tmp_path):
    from typer.testing import CliRunner
    import typer

    from guard.evaluation.cli import eval_command

    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"id": "1", "prompt": "my key sk-abcdefghijklmnopqrstuvwxyz123456", "response": None, "label": "unsafe", "task": "prompt"}) + "\n"
                    + json.dumps({"id": "2", "prompt": "hello", "response": None, "label": "safe", "task": "prompt"}) + "\n")
    pol = tmp_path / "p.yaml"
    pol.write_text("policies:\n  - id: keys\n    engine: patterns\n    detectors: [api_key]\n")
    app = typer.Typer()
    app.command("eval")(eval_command)
    app.command("noop")(lambda: None)
    result = CliRunner().invoke(app, ["eval", "--guard", "patterns", "--data", str(data), "--policies", str(pol), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "o" / "eval.json").read_text())
    assert doc["files"]["d"]["f1"] == 1.0


async def test_a_row_with_its_own_policies_is_judged_against_those(tmp_path):
    """`policies` on a row replaces the file's for that row (the training demo draws them per
    example); a malformed one skips the row; the per-category pass keeps the category policies."""
    rows = [
        {"id": "own", "prompt": "zebra here", "label": "unsafe", "task": "prompt", "categories": ["hate"],
         "policies": [{"id": "zebra", "description": "Do not mention zebra."}]},
        {"id": "file", "prompt": "zebra and bomb", "label": "unsafe", "task": "prompt"},
        {"id": "bad", "prompt": "x", "label": "safe", "task": "prompt", "policies": [{"id": "no description"}]},
        {"id": "empty", "prompt": "x", "label": "safe", "task": "prompt", "policies": []},
    ]
    (tmp_path / "own.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (f,), _ = load([tmp_path / "own.jsonl"])
    assert [e.id for e in f.examples] == ["own", "file"] and f.skipped == 2
    guard = WordGuard()
    (run,) = await runner.run_all(guard, [f], POLICIES, CATEGORIES, concurrency=1, progress=False)
    assert [o.violated for o in run.outcomes] == [["zebra"], ["bomb"]]  # the row's policy, then the file's
    seen = [(r.content, tuple(p.id for p in r.policies)) for r in guard.requests]
    assert ("zebra here", ("zebra",)) in seen and ("zebra and bomb", ("bomb",)) in seen
    assert ("zebra here", ("hate", "sexual_minors")) in seen  # the category pass is not overridden
