"""Metrics and data reading of the eval harness, on hand-made inputs with known answers."""

from __future__ import annotations

import json

import pytest

from guard.evaluation.data import load, read_file
from guard.evaluation.metrics import Binary, percentile, weighted_f1


def test_binary_metrics_by_hand():
    truth = [True, True, True, False, False, False, False, True]
    pred = [True, True, False, True, False, False, False, False]
    m = Binary.of(truth, pred)
    assert (m.tp, m.fp, m.fn, m.tn) == (2, 1, 2, 3)
    assert m.precision == pytest.approx(2 / 3)
    assert m.recall == pytest.approx(0.5)
    assert m.f1 == pytest.approx(2 * 2 / (2 * 2 + 1 + 2))
    assert m.fpr == pytest.approx(0.25)
    d = m.as_dict()
    assert d["n"] == 8 and d["unsafe"] == 4


def test_binary_degenerate_cases():
    assert Binary.of([False, False], [False, False]).f1 == 0.0
    assert Binary.of([True], [True]).f1 == 1.0
    assert Binary.of([True, True], [False, False]).precision == 0.0
    with pytest.raises(ValueError):
        Binary.of([True], [])


def test_percentile_and_weighted_average():
    assert percentile([], 50) == 0.0
    assert percentile([5.0], 95) == 5.0
    assert percentile([1, 2, 3, 4], 50) == pytest.approx(2.5)
    assert percentile(list(range(101)), 95) == pytest.approx(95)
    assert weighted_f1([(1.0, 1), (0.0, 3)]) == pytest.approx(0.25)
    assert weighted_f1([]) is None


def test_reading_skips_rows_outside_the_schema(tmp_path):
    path = tmp_path / "mixed.jsonl"
    rows = [
        {"id": "1", "prompt": "hi", "response": None, "label": "safe", "task": "prompt"},
        {"id": "2", "prompt": "bad", "response": None, "label": "unsafe", "task": "prompt", "categories": ["hate"]},
        {"id": "3", "prompt": "x", "label": "maybe", "task": "prompt"},
        {"id": "4", "prompt": "q", "response": None, "label": "safe", "task": "response"},
        {"chosen": "a", "rejected": "b"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n\n")
    f = read_file(path)
    assert [e.id for e in f.examples] == ["1", "2"]
    assert f.skipped == 4 and f.task == "prompt" and f.has_categories
    assert read_file(path, limit=1).examples[0].id == "1"
    (tmp_path / "pairs.jsonl").write_text(json.dumps({"chosen": "a", "rejected": "b"}) + "\n")
    files, ignored = load([tmp_path])
    assert [x.name for x in files] == ["mixed"] and [p.name for p in ignored] == ["pairs.jsonl"]
    with pytest.raises(FileNotFoundError):
        load([tmp_path / "nope"])
