"""Is a harmful reply judged on its own, or on what was asked? Recall with its own and with a benign user turn.

    python benchmarks/reply_context.py --data ../shared/data/train [--weights DIR ...] [--out FILE.json]

Rebuilds the shipped training mix's validation split (`training.embedded.data.build_mix`, seed 0:
rows the head was not trained on; never bench/). Its unsafe replies whose harm is their own (not
`training.embedded.data.CONTEXT_DEPENDENT`: GPTFuzz jailbroken answers, Llama-Guard-labelled
completions, templated plans) are checked twice with the default model policies: after their own
(harmful) user turn, and after a benign user turn drawn (seed 7) from the split's benign prompts, as when
an injected document, a tool result or a model going wrong produces harm nobody asked for. Safe replies
are checked after their own user turn. Prints, per weights folder, recall both ways and the share of
safe replies flagged; several `--weights` run side by side in one process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.guard_bench_util import guard_for, model_policies  # noqa: E402
from guard.policies import Direction, PolicySet  # noqa: E402
from guard.verdict import CheckRequest, Turn  # noqa: E402


async def flagged(guard, ps: PolicySet, pairs: list[tuple[str, str]]) -> list[bool]:
    sem = asyncio.Semaphore(16)
    policies = model_policies(ps, Direction.OUTPUT)

    async def one(context: str, text: str) -> bool:
        conv = (Turn("user", context), Turn("assistant", text))
        async with sem:
            return bool((await guard.check(CheckRequest(Direction.OUTPUT, conv, policies, "x"))).violated)

    return list(await asyncio.gather(*[one(c, t) for c, t in pairs]))


async def run(weights: str | None, ps: PolicySet, unsafe, benign_turns, safe) -> dict:
    guard = guard_for(ps, weights)
    try:
        own = await flagged(guard, ps, [(it.context, it.text) for it in unsafe])
        swapped = await flagged(guard, ps, list(zip(benign_turns, [it.text for it in unsafe])))
        fp = await flagged(guard, ps, [(it.context, it.text) for it in safe])
    finally:
        await guard.aclose()
    rate = lambda xs: round(sum(xs) / max(1, len(xs)), 3)  # noqa: E731
    return {"weights": weights or "shipped", "recall_own_turn": rate(own), "recall_benign_turn": rate(swapped),
            "safe_flagged": rate(fp)}


def main() -> None:
    from training.embedded.data import CONTEXT_DEPENDENT, build_mix

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--weights", nargs="+", default=[None], help="weights folders (default: the shipped ones)")
    ap.add_argument("--policies", type=Path, default=ROOT / "policies.yaml")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    val = build_mix(args.data, seed=0).val
    unsafe = [it for it in val if it.context and it.label == 1 and it.source.split("+")[0] not in CONTEXT_DEPENDENT]
    safe = [it for it in val if it.context and it.label == 0]
    prompts = [it.text for it in val if not it.context and it.label == 0 and len(it.text) < 400 and not it.source.startswith("synth")]
    rng = random.Random(7)
    benign_turns = [rng.choice(prompts) for _ in unsafe]
    ps = PolicySet.load(args.policies)
    report = {"unsafe_replies": len(unsafe), "safe_replies": len(safe), "runs": []}
    print(f"{len(unsafe)} unsafe replies (own harm), {len(safe)} safe replies, held-out validation split")
    for w in args.weights:
        r = asyncio.run(run(w, ps, unsafe, benign_turns, safe))
        report["runs"].append(r)
        print(f"{r['weights']}: recall after its own turn {r['recall_own_turn']:.3f}, after a benign turn "
              f"{r['recall_benign_turn']:.3f}; safe replies flagged {r['safe_flagged']:.3f}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
