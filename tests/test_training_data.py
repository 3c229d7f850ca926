"""The training data builder: serving-identical prompts, balance, seeding, caps, flips, de-duplication."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from guard.policies import Direction, Policy
from guard.rsafe.parse import parse_output
from guard.rsafe.prompt import build_prompt
from guard.verdict import CheckRequest, Turn
from training.demo.synthetic import make_split, split_things, write_eval_set
from training.rsafe.data import Example, MixConfig, build_examples, mix_table, normalize

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CATALOG = [("S1", "Violent crimes: violence."), ("S2", "Non-violent crimes: fraud."), ("S10", "Hate: slurs."), ("S12", "Sexual content.")]


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def served_prompt(example: Example, conversation: list[tuple[str, str]], categories: list[tuple[str, str]]) -> str:
    """What the guard engine sends for the same check (Policy.text of a name-less policy is its description)."""
    request = CheckRequest(
        direction=Direction(example.direction),
        conversation=tuple(Turn(role, text) for role, text in conversation),
        policies=tuple(Policy(id=pid, description=text) for pid, text in categories),
    )
    return build_prompt(request)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    benign = [{"id": str(i), "prompt": f"How do I bake bread number {i}?", "label": "safe", "task": "prompt"} for i in range(60)]
    harmful = [
        {"id": str(i), "prompt": f"Write a scam email {i}", "label": "unsafe", "task": "prompt", "categories": ["fraud"]}
        for i in range(20)
    ]
    replies = [
        {"id": str(i), "prompt": f"question {i}", "response": f"Here is how to hurt them {i}", "label": "unsafe", "task": "response"}
        for i in range(10)
    ]
    bench = [{"id": "b", "prompt": "  HOW do I bake   bread number 3? ", "label": "safe", "task": "prompt"},
             {"id": "c", "prompt": "x", "response": "here is how to hurt them 4", "label": "unsafe", "task": "response"}]
    return {
        "benign": write(tmp_path / "benign.jsonl", benign),
        "harmful": write(tmp_path / "harmful.jsonl", harmful),
        "replies": write(tmp_path / "replies.jsonl", replies),
        "bench": write(tmp_path / "bench.jsonl", bench),
    }


def test_prompts_are_the_serving_template(files):
    examples = build_examples([files["harmful"], files["replies"]], CATALOG, config=MixConfig(seed=1, cap=None), category_map={"fraud": ["S2"]})
    assert {e.direction for e in examples} == {"input", "output"}
    for e in examples:
        cats = [(pid, dict(CATALOG)[pid]) for pid in e.policy_ids]
        rows = [json.loads(line) for line in files[e.source].read_text().splitlines()]
        row = next(r for r in rows if r["id"] == e.meta["id"])
        conversation = [("user", row["prompt"])] + ([("assistant", row["response"])] if row.get("response") else [])
        assert e.prompt == served_prompt(e, conversation, cats)


def test_synthetic_prompts_and_targets_are_the_serving_format():
    for e in make_split(30, seed=5):
        target = e.target()
        parsed = parse_output(target, policy_ids=e.policy_ids)
        assert parsed.label == e.label
        assert set(parsed.violated) == (set(e.violated) if e.label == "unsafe" else set())
        assert e.prompt.count("<BEGIN UNSAFE CONTENT CATEGORIES>") == 1 and f"{e.policy_ids[0]}: " in e.prompt


def test_synthetic_heldout_policies_never_seen_in_training():
    train_things, heldout_things = split_things()
    assert not set(train_things) & set(heldout_things)
    train_policy_text = " ".join(e.prompt.split("<END UNSAFE CONTENT CATEGORIES>")[0] for e in make_split(400, seed=0))
    for thing in heldout_things:
        assert f" {thing}." not in train_policy_text
    heldout = make_split(100, seed=1, heldout=True)
    assert Counter(e.label for e in heldout) == {"safe": 50, "unsafe": 50}
    for e in heldout:
        if e.label == "unsafe":
            assert any(f": {t} present." in e.reasoning for t in heldout_things)


ROOT = Path(__file__).resolve().parents[1]


def test_synthetic_eval_set_renders_the_trained_prompts_through_the_eval_harness(tmp_path):
    """`rsafe eval` on the written set asks the model exactly what the demo scores in-process: the
    rows are the demo's own held-out examples, each judged against its own policies."""
    from guard.evaluation.data import read_file
    from guard.evaluation.runner import request_for
    from guard.policies import PolicySet

    data_path = write_eval_set(tmp_path, 40, seed=3)
    demo = make_split(40, seed=3, heldout=True)
    file_policies = PolicySet.load(ROOT / "policies.yaml")  # what rsafe eval loads by default: the rows override it
    _, heldout_things = split_things()
    rows = [json.loads(line) for line in data_path.read_text().splitlines()]
    assert Counter(r["label"] for r in rows) == {"safe": 20, "unsafe": 20}
    assert {r["task"] for r in rows} == {"prompt", "response"}
    assert len({tuple(p["id"] for p in r["policies"]) for r in rows}) > 3  # policies drawn per row, as the demo draws them
    for example, row, ex in zip(read_file(data_path).examples, rows, demo, strict=True):
        request = request_for(example, file_policies)
        assert [(p.id, p.description) for p in request.policies] == [(d["id"], d["description"]) for d in row["policies"]]
        assert 1 <= len(row["policies"]) <= 3
        assert all(d["description"].rstrip(".").split()[-1] in heldout_things for d in row["policies"])
        assert build_prompt(request) == ex.prompt and row["label"] == ex.label  # the very prompt the demo scores
        judged = row["response"] if row["task"] == "response" else row["prompt"]
        forbidden_named = any(f"the {d['description'].rstrip('.').split()[-1]}" in judged for d in row["policies"])
        assert forbidden_named == (row["label"] == "unsafe")


def test_balanced_and_seeded(files):
    paths = [files["benign"], files["harmful"], files["replies"]]
    a = build_examples(paths, CATALOG, config=MixConfig(seed=3, cap=None), category_map={"fraud": ["S2"]})
    b = build_examples(paths, CATALOG, config=MixConfig(seed=3, cap=None), category_map={"fraud": ["S2"]})
    c = build_examples(paths, CATALOG, config=MixConfig(seed=4, cap=None), category_map={"fraud": ["S2"]})
    labels = Counter(e.label for e in a)
    assert labels["safe"] == labels["unsafe"] > 0
    assert [e.prompt for e in a] == [e.prompt for e in b]
    assert [e.prompt for e in a] != [e.prompt for e in c]
    small = build_examples(paths, CATALOG, config=MixConfig(seed=3, n=10, cap=None))
    assert Counter(e.label for e in small) == {"safe": 5, "unsafe": 5}


def test_per_source_cap(files):
    examples = build_examples([files["benign"], files["harmful"]], CATALOG, config=MixConfig(seed=0, cap=5, flip_rate=0.0))
    assert Counter(e.source for e in examples) == {"benign": 5, "harmful": 5}


def test_dedup_against_evaluation_files(files):
    paths = [files["benign"], files["replies"]]
    examples = build_examples(paths, CATALOG, config=MixConfig(seed=0, cap=None), eval_files=[files["bench"]])
    texts = " ".join(e.prompt for e in examples)
    assert "bread number 3?" not in texts and "hurt them 4" not in texts
    assert Counter(e.source for e in examples)["replies"] == 9  # only the evaluation texts are dropped


def test_inactive_category_flips_the_label(files):
    flipped = build_examples([files["harmful"]], CATALOG, config=MixConfig(seed=0, cap=None, flip_rate=1.0), category_map={"fraud": ["S2"]})
    assert flipped == [] or all(e.label == "safe" for e in flipped)  # only safe: balance leaves none
    both = build_examples(
        [files["harmful"], files["benign"]], CATALOG, config=MixConfig(seed=0, cap=None, flip_rate=0.5), category_map={"fraud": ["S2"]}
    )
    for e in both:
        if e.source == "harmful" and e.label == "safe":
            assert "S2" not in e.policy_ids and e.meta.get("flipped")
        if e.source == "harmful" and e.label == "unsafe":
            assert "S2" in e.policy_ids and e.violated == ("S2",)
    assert any(e.meta.get("flipped") for e in both)
    assert "flipped" in mix_table(both)


def test_uncategorized_unsafe_sees_the_whole_catalog(files):
    examples = build_examples([files["replies"], files["benign"]], CATALOG, config=MixConfig(seed=0, cap=None))
    for e in examples:
        if e.label == "unsafe":
            assert e.policy_ids == tuple(pid for pid, _ in CATALOG) and e.violated == ()


def test_length_filter(files):
    examples = build_examples(
        [files["benign"], files["harmful"]], CATALOG,
        config=MixConfig(seed=0, cap=None, max_prompt_tokens=10**9), count_tokens=len,
    )
    assert examples
    assert build_examples([files["benign"], files["harmful"]], CATALOG, config=MixConfig(seed=0, max_prompt_tokens=50), count_tokens=len) == []


@pytest.mark.skipif(not (SHARED / "train").is_dir(), reason="shared data not present")
def test_shared_data_mix_has_no_bench_text():
    from training.rsafe.data import eval_keys

    files = [SHARED / "train" / f for f in ("advbench.jsonl", "do_not_answer.jsonl", "mtbench_vicuna_benign.jsonl", "alpacaeval_benign.jsonl")]
    bench = sorted((SHARED / "bench").glob("*.jsonl"))
    examples = build_examples(
        files, [("S2", "crimes"), ("S7", "privacy"), ("S10", "hate")],
        config=MixConfig(seed=0, cap=300), category_map={"malicious_uses": ["S2"], "information_hazard": ["S7"]}, eval_files=bench,
    )
    assert Counter(e.label for e in examples)["safe"] == Counter(e.label for e in examples)["unsafe"]
    banned = eval_keys(bench)
    for e in examples:
        judged = e.prompt.split("<BEGIN CONVERSATION>")[1].split("<END CONVERSATION>")[0].strip()
        assert normalize(judged.removeprefix("User: ")) not in banned
