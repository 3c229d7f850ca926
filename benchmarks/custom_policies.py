"""Custom-policy benchmark: policies outside S1-S14, with and without their examples.

    python benchmarks/custom_policies.py [--weights DIR] [--out FILE.json]

benchmarks/data/custom_policies.yaml: six policies a business might write (competitor
mentions, medical advice, politics, code requests, someone's personal data, investment
advice), each with 3 unsafe and 2 safe examples. benchmarks/data/custom_policy_tests.jsonl:
test texts written separately from the examples (none is an example), 12 per policy and
24 that violate none. Each text is checked with all six in force; per policy, a text is a
positive when it was written for that policy. Reports per-policy F1 and the macro F1,
once with the policies as written and once with their examples removed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.guard_bench_util import ROOT, check_all, guard_for, read_jsonl  # noqa: E402
from guard.policies import PolicySet  # noqa: E402

POLICIES = ROOT / "benchmarks" / "data" / "custom_policies.yaml"
TESTS = ROOT / "benchmarks" / "data" / "custom_policy_tests.jsonl"


def f1(tp: int, fp: int, fn: int) -> float:
    return 200 * tp / max(1, 2 * tp + fp + fn)


async def score(guard, ps: PolicySet, rows: list[dict], tag: str) -> dict:
    pol = tuple(p for p in ps.policies if p.engine == "model")
    verdicts = await check_all(guard, rows, lambda _d: pol)
    per = {}
    for p in pol:
        tp = sum(1 for r, v in zip(rows, verdicts) if r["policy"] == p.id and p.id in v.violated)
        fp = sum(1 for r, v in zip(rows, verdicts) if r["policy"] != p.id and p.id in v.violated)
        fn = sum(1 for r, v in zip(rows, verdicts) if r["policy"] == p.id and p.id not in v.violated)
        per[p.id] = {"f1": round(f1(tp, fp, fn), 1), "tp": tp, "fp": fp, "fn": fn}
    macro = round(sum(v["f1"] for v in per.values()) / len(per), 1)
    return {"setting": tag, "macro_f1": macro, "per_policy": per}


async def run(weights: str | None) -> dict:
    raw = PolicySet.load(POLICIES)
    data = raw.spec.model_dump(mode="json")
    for p in data["policies"]:
        p["examples"] = {"unsafe": [], "safe": []}
    bare = PolicySet.from_dict(data)
    rows = read_jsonl(TESTS)
    examples = {t.strip().lower() for p in raw.policies for t in (*p.examples.unsafe, *p.examples.safe)}
    assert not any(r["text"].strip().lower() in examples for r in rows), "a test text is also an example"
    guard = guard_for(raw, weights)
    try:
        with_ex = await score(guard, raw, rows, "with examples")
        without = await score(guard, bare, rows, "without examples")
    finally:
        await guard.aclose()
    return {"with_examples": with_ex, "without_examples": without, "rows": len(rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    res = asyncio.run(run(args.weights))
    for key in ("without_examples", "with_examples"):
        r = res[key]
        print(f"{r['setting']:17s} macro F1 {r['macro_f1']:5.1f}  " + "  ".join(f"{k} {v['f1']:.0f}" for k, v in r["per_policy"].items()))
    if args.out:
        args.out.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
