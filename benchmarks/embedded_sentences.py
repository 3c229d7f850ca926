"""When does reading each sentence apart pay? Recall and false alarms, side by side, on held-out rows.

    python benchmarks/embedded_sentences.py --data ../shared/data/train [--n 1500] [--over 0 64] [--payloads] [--out FILE.json]

Rebuilds the shipped training mix's validation split (`training.embedded.data.build_mix`, seed 0:
the rows the head was not trained on; never bench/), samples `--n` labelled rows (seed 1), and
checks each with the shipped embedded guard and the default model policies, once per
`sentences_over` value in `--over` (0: every many-sentence turn also has its sentences read
apart; 64: only turns longer than the 64-token window the head was trained on; -1: never).
With `--payloads`, each `--over` value runs a second time with `payloads: true` (the content a
writing request asks for also read apart; its column is the value with a `+p`). Prints, per turn length (tokens) and direction, recall on unsafe rows and the share of safe rows
flagged, and the wall time of each pass.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.guard_bench_util import model_policies  # noqa: E402
from guard.policies import Direction, PolicySet  # noqa: E402
from guard.registry import build_guard  # noqa: E402
from guard.verdict import CheckRequest, Turn  # noqa: E402

BUCKETS = (("<=64", 0, 64), ("65-126", 65, 126), (">126", 127, 1 << 30))


async def flagged(rows, ps: PolicySet, variant: str) -> tuple[list[bool], list[int], float]:
    over = int(variant.removesuffix("+p"))
    options = {"sentences": over >= 0, "sentences_over": max(0, over), "turn_cache": 0, "payloads": variant.endswith("+p")}
    guard = build_guard("embedded", options, ps)
    sem = asyncio.Semaphore(16)

    async def one(it) -> bool:
        d = Direction.OUTPUT if it.context else Direction.INPUT
        conv = (Turn("user", it.context), Turn("assistant", it.text)) if it.context else (Turn("user", it.text),)
        async with sem:
            return bool((await guard.check(CheckRequest(d, conv, model_policies(ps, d), "x"))).violated)

    start = time.perf_counter()
    try:
        out = await asyncio.gather(*[one(it) for it in rows])
        tokens = [len(t) for t in guard.encoder.tokenizer([it.text for it in rows], add_special_tokens=False)["input_ids"]]
    finally:
        await guard.aclose()
    return list(out), tokens, time.perf_counter() - start


def main() -> None:
    from training.embedded.data import build_mix

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--n", type=int, default=1500)
    ap.add_argument("--over", type=int, nargs="+", default=[0, 64])
    ap.add_argument("--payloads", action="store_true", help="also run each --over value with payloads read apart")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    rows = [it for it in build_mix(args.data, seed=0).val if it.label in (0, 1)]
    random.Random(1).shuffle(rows)
    rows = rows[: args.n]
    ps = PolicySet.load(ROOT / "policies.yaml")
    variants = [f"{o}{p}" for o in args.over for p in (("", "+p") if args.payloads else ("",))]
    runs = {v: asyncio.run(flagged(rows, ps, v)) for v in variants}
    tokens = next(iter(runs.values()))[1]
    report: dict = {"rows": len(rows), "seconds": {o: round(r[2], 1) for o, r in runs.items()}, "cells": []}
    print(f"{len(rows)} held-out rows; wall time per pass: " + ", ".join(f"{o}: {r[2]:.0f} s" for o, r in runs.items()))
    for name, lo, hi in BUCKETS:
        for direction in ("input", "output"):
            idx = [i for i, it in enumerate(rows) if lo <= tokens[i] <= hi and ("output" if it.context else "input") == direction]
            pos = [i for i in idx if rows[i].label == 1]
            neg = [i for i in idx if rows[i].label == 0]
            cell = {"tokens": name, "direction": direction, "unsafe": len(pos), "safe": len(neg),
                    "recall": {o: round(sum(r[0][i] for i in pos) / max(1, len(pos)), 3) for o, r in runs.items()},
                    "flagged_safe": {o: round(sum(r[0][i] for i in neg) / max(1, len(neg)), 3) for o, r in runs.items()}}
            report["cells"].append(cell)
            print(f"{name:7s} {direction:6s} unsafe {len(pos):4d} recall " + " ".join(f"{o}:{v:.3f}" for o, v in cell["recall"].items())
                  + f" | safe {len(neg):4d} flagged " + " ".join(f"{o}:{v:.3f}" for o, v in cell["flagged_safe"].items()))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
