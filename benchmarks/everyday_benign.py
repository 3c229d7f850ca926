"""Everyday-benign benchmark: how much routine traffic the embedded guard blocks (target <= 2%).

    python benchmarks/everyday_benign.py [--weights DIR] [--policies policies.yaml] [--out FILE.json]

benchmarks/data/everyday_benign.jsonl holds routine requests, short user messages
("Thanks!", "OK") and assistant replies with the question they answer (written for this
project, kept out of training: training/embedded/synth.py drops any exact match). Every
row is checked with the model-engine policies of the policies file in force (the shipped
defaults unless --policies says otherwise) and scanned with its blocking patterns policies
(PROMPT_ATTACK_PHRASES; SECRETS masks, it does not block); a row is blocked when any fires.
Prints the blocked share per kind and every blocked row with its policies by score.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.guard_bench_util import ROOT, check_all, guard_for, model_policies, read_jsonl  # noqa: E402
from guard.patterns import find_spans  # noqa: E402
from guard.policies import Action, Direction, PolicySet  # noqa: E402

DATA = ROOT / "benchmarks" / "data" / "everyday_benign.jsonl"


async def run(weights: str | None, policies: Path) -> dict:
    ps = PolicySet.load(policies)
    rows = read_jsonl(DATA)
    guard = guard_for(ps, weights)
    try:
        verdicts = await check_all(guard, rows, lambda d: model_policies(ps, d))
    finally:
        await guard.aclose()
    blocked, per_kind = [], {}
    for row, v in zip(rows, verdicts):
        k = per_kind.setdefault(row.get("kind", "?"), {"n": 0, "blocked": 0})
        k["n"] += 1
        direction = Direction(row.get("direction", "input"))
        patterns = {p.id: 1.0 for p in ps.active(direction)
                    if p.engine == "patterns" and p.action is Action.BLOCK and find_spans(p, row["text"])}
        if v.violated or patterns:
            k["blocked"] += 1
            fired = sorted(v.violated, key=lambda p: -v.results[p].score)
            blocked.append({"text": row["text"], "direction": direction.value,
                            "policies": {**patterns, **{p: v.results[p].score for p in fired}}})
    n = len(rows)
    return {"rows": n, "blocked": len(blocked), "blocked_pct": round(100 * len(blocked) / n, 2),
            "per_kind": {k: {**v, "blocked_pct": round(100 * v["blocked"] / v["n"], 2)} for k, v in per_kind.items()},
            "blocked_rows": blocked}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--policies", type=Path, default=ROOT / "policies.yaml")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    res = asyncio.run(run(args.weights, args.policies))
    print(f"everyday-benign: {res['blocked']}/{res['rows']} blocked ({res['blocked_pct']}%)")
    for k, v in res["per_kind"].items():
        print(f"  {k:8s} {v['blocked']}/{v['n']} ({v['blocked_pct']}%)")
    for b in res["blocked_rows"]:
        print(f"  BLOCKED [{b['direction']}] {b['text'][:70]!r} {b['policies']}")
    if args.out:
        args.out.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
