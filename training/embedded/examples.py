"""Calibrate the embedded guard's examples rule and write its bank (see guard/embedded/examples.py).

    python -m training.embedded.examples --data ../shared/data/train --weights guard/embedded/weights --seed 0

Writes `bank.safetensors` (base sentence embeddings, fp16, of `--bank` benign prompts drawn
from alpaca_benign.jsonl) into the weights folder and the rule's `quantile` and `floor` into
its meta.json (`examples`), with the calibration's record under `info.examples_fit`.

How `quantile` and `floor` are picked, on training data only (never bench/ or benchmarks/):
simulated policies, two draws each, of two kinds:
- harm categories: CatQA subcategories and AART crime topics (at least 8 / 15 prompts);
- benign topics: k-means clusters (seeded) of alpaca_benign_val prompts, at least 40 each;
  the custom-policy case (competitor mentions, code requests), where nothing is harmful.
Each gets 3 unsafe examples from its rows and, 70% of the time, 2 safe examples from the
nearest other group; its positives are up to 40 of its other rows; its negatives are 300
rows of other groups and the benign pool (alpaca_benign_val outside the policy's own
cluster, MT-Bench, MITRE benign-but-scary prompts), none of them in the bank. The grid
point with the best mean F1 (harm and topic policies weighted equally) among those whose
policies match at most `--max-benign` of the benign pool on average wins. A harm policy's
false positives are benign texts only (one that fires on another category's harm still
blocks harm); a topic policy's are benign texts and other topics' rows.

Then the gate: for a policy with at least GATE_MIN_EXAMPLES unsafe examples, the head's own
verdict counts only where the text is also on the examples' topic (su at or above the
`gate` quantile of the bank): the head alone flags other categories' harm and some benign
text under a policy whose examples say what it is about. `gate` is picked on the same
simulated policies (each given a policy text as Policy.text writes one, scored by the head
at its input threshold), by mean F1, from GATES (1.0 would turn the head off for them).
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import random
from pathlib import Path

import torch
import torch.nn.functional as F

from guard.embedded.encoder import DIM, FEATURE_DIM, Encoder
from guard.embedded.examples import BANK_FILE, TYPICAL_LEVELS, Bank, policy_threshold, sentence_space
from guard.embedded.head import HeadMeta, load, overlay_path

ROOT = Path(__file__).resolve().parents[2]
QUANTILES = (0.99, 0.995, 0.998, 0.999)
FLOORS = (0.4, 0.45, 0.5, 0.55, 0.6)
GATES = (0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 1.0)
EXCLUDE = (None, *TYPICAL_LEVELS)  # Bank.off_topic levels tried (None: the whole bank)
BANK_CLUSTERS = 48
GATE_MIN_EXAMPLES = 3


def kmeans(x: torch.Tensor, k: int, seed: int, iters: int = 20) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centers = x[torch.randperm(len(x), generator=g)[:k]].clone()
    assign = torch.zeros(len(x), dtype=torch.long)
    for _ in range(iters):
        assign = (x @ centers.T).argmax(1)
        for j in range(k):
            m = assign == j
            if m.any():
                centers[j] = F.normalize(x[m].mean(0), dim=-1)
    return assign


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _groups(rows: list[dict], feats: torch.Tensor, level: int, minimum: int, prefix: str) -> list[tuple]:
    by: dict[str, list[int]] = collections.defaultdict(list)
    for i, r in enumerate(rows):
        cats = r.get("categories") or []
        if len(cats) > level:
            by[cats[level]].append(i)
    return [(f"{prefix}:{k}", "harm", feats[v], [rows[i]["prompt"] for i in v], f"{k}: requests about {k}.")
            for k, v in sorted(by.items()) if len(v) >= minimum]


def simulate(groups, benign_pool, pool_cluster, assign_of, seed: int) -> list[tuple]:
    """Per simulated policy: (kind, policy text, unsafe, safe, positives, other-group negatives,
    benign negatives); unsafe/safe in the sentence space, the rest full features."""
    rng = random.Random(seed)
    cent = torch.stack([F.normalize(sentence_space(g[2]).mean(0), dim=-1) for g in groups])
    policies = []
    for gi, (name, kind, members, texts, description) in enumerate(groups):
        others = torch.cat([g[2] for k, g in enumerate(groups) if k != gi])
        sims = cent @ cent[gi]
        sims[gi] = -1
        near = groups[int(sims.argmax())]
        keep = torch.ones(len(benign_pool), dtype=torch.bool)
        if name in assign_of:  # a benign-topic policy: its own cluster is not a negative
            keep &= pool_cluster != assign_of[name]
        benign = benign_pool[keep]
        for draw in range(2):
            order = list(range(len(members)))
            rng.shuffle(order)
            ui, pos = order[:3], members[order[3:43]]
            si = rng.sample(range(len(near[2])), 2) if rng.random() < 0.7 else []
            text = description + "\nViolating examples: " + " | ".join(texts[i][:200] for i in ui)
            if si:
                text += "\nNot violating: " + " | ".join(near[3][i][:200] for i in si)
            neg = others[rng.sample(range(len(others)), min(300, len(others)))]
            unsafe = sentence_space(members[ui])
            safe = sentence_space(near[2][si]) if si else None
            policies.append((kind, text, unsafe, safe, pos, neg, benign))
    return policies


def matches(x: torch.Tensor, unsafe: torch.Tensor, safe: torch.Tensor | None, tau: float) -> torch.Tensor:
    su = (x @ unsafe.T).max(1).values
    hit = su >= tau
    if safe is not None:
        hit &= su >= (x @ safe.T).max(1).values
    return hit


def _f1(tp: float, fp: float, fn: float) -> float:
    return 2 * tp / max(1.0, 2 * tp + fp + fn)


def _summary(f1s: dict[str, list[float]], rates: list[float], **point) -> dict:
    mean = {k: sum(v) / len(v) for k, v in f1s.items()}
    return {**point, "f1_harm": round(mean["harm"], 4), "f1_topic": round(mean["topic"], 4),
            "benign_flagged_mean": round(sum(rates) / len(rates), 5), "benign_flagged_max": round(max(rates), 4)}


def cluster_bank(texts: torch.Tensor, seed: int, k: int = BANK_CLUSTERS) -> Bank:
    """The bank with its k-means topics and each topic's member-to-centroid cosine quantiles."""
    assign = kmeans(texts, k, seed)
    centroids = torch.stack([F.normalize(texts[assign == j].mean(0), dim=-1) if (assign == j).any()
                             else torch.zeros(texts.shape[1]) for j in range(k)])
    typical = torch.ones(k, len(TYPICAL_LEVELS))
    for j in range(k):
        m = assign == j
        if int(m.sum()) >= 2:
            typical[j] = torch.quantile(texts[m] @ centroids[j], torch.tensor(TYPICAL_LEVELS))
    return Bank(texts, centroids.half().float(), assign, typical.half().float())  # as they ship (fp16)


def closeness(policies) -> list[dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """Per simulated policy and part (pos / neg / benign): (su, ss), the texts' closeness to its
    unsafe and safe examples (ss -1 without safe ones); computed once for the whole grid."""
    out = []
    for _kind, _text, unsafe, safe, pos, neg, benign in policies:
        parts = {}
        for part, x in (("pos", pos), ("neg", neg), ("benign", benign)):
            xs = sentence_space(x)
            su = (xs @ unsafe.T).max(1).values
            ss = (xs @ safe.T).max(1).values if safe is not None else torch.full_like(su, -1.0)
            parts[part] = (su, ss)
        out.append(parts)
    return out


def evaluate(policies, near, bank: Bank, quantile: float, floor: float, level: float | None = None) -> dict:
    """The examples rule alone, at one grid point (`near`: `closeness(policies)`)."""
    f1s: dict[str, list[float]] = {"harm": [], "topic": []}
    rates = []
    for (kind, _text, unsafe, _safe, pos, _neg, _benign), parts in zip(policies, near):
        tau = policy_threshold(unsafe, bank, quantile, floor, level)
        hit = {k: (su >= tau) & (su >= ss) for k, (su, ss) in parts.items()}
        tp = int(hit["pos"].sum())
        rate = float(hit["benign"].float().mean())
        fp = rate * 300 + (int(hit["neg"].sum()) if kind == "topic" else 0)
        f1s[kind].append(_f1(tp, fp, len(pos) - tp))
        rates.append(rate)
    return _summary(f1s, rates, quantile=quantile, floor=floor, **({"exclude_topic": level} if level is not None else {}))


def evaluate_gates(policies, bank: Bank, encoder: Encoder, head_path: Path, quantile: float, floor: float,
                   level: float | None = None) -> list[dict]:
    """Head and rule together, for each gate in GATES (every simulated policy has 3 examples)."""
    head, meta = load(head_path)
    threshold = meta.thresholds["input"]
    pol = encoder.embed([p[1] for p in policies], max_tokens=256)[:, :DIM]
    out: dict[float, tuple[dict, list]] = {g: ({"harm": [], "topic": []}, []) for g in GATES}
    for k, (kind, _text, unsafe, safe, pos, neg, benign) in enumerate(policies):
        tau = policy_threshold(unsafe, bank, quantile, floor, level)
        parts = {}
        for part, x in (("pos", pos), ("neg", neg), ("benign", benign)):
            with torch.no_grad():
                z = head.grid(x, torch.zeros(len(x), FEATURE_DIM), torch.zeros(len(x)), pol[k : k + 1])[:, 0]
            flagged = torch.sigmoid(z / meta.temperature + meta.bias) >= threshold
            xs = sentence_space(x)
            su = (xs @ unsafe.T).max(1).values
            if safe is not None:  # matches a safe example more closely than any unsafe one: allowed
                ss = (xs @ safe.T).max(1).values
                near_safe = (ss > su) & (ss >= policy_threshold(safe, bank, quantile, floor, level))
            else:
                near_safe = torch.zeros_like(flagged)
            parts[part] = (flagged & ~near_safe, su, matches(xs, unsafe, safe, tau))
        for g in GATES:
            gate = policy_threshold(unsafe, bank, g, -1.0, level) if g > 0 else -1.0
            hit = {part: (h & (su >= gate)) | m for part, (h, su, m) in parts.items()}  # the gate, as the guard applies it
            tp = int(hit["pos"].sum())
            rate = float(hit["benign"].float().mean())
            fp = rate * 300 + (int(hit["neg"].sum()) if kind == "topic" else 0)  # 300 benign rows' worth
            out[g][0][kind].append(_f1(tp, fp, len(pos) - tp))
            out[g][1].append(rate)
    return [_summary(f1s, rates, gate=g) for g, (f1s, rates) in out.items()]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="the training data folder (../shared/data/train)")
    ap.add_argument("--weights", type=Path, default=ROOT / "guard/embedded/weights")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bank", type=int, default=2048, help="benign prompts in the shipped bank")
    ap.add_argument("--topics", type=int, default=40)
    ap.add_argument("--max-benign", type=float, default=0.001, help="mean share of benign texts a policy may match")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--exclude-topic", action="store_true",
                    help="also try Bank.off_topic levels and ship the bank's clusters (not in the shipped weights)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if overlay_path(args.weights) is not None:
        raise SystemExit("the examples rule reads the base encoder's sentence space: weights with an overlay cannot use it")
    encoder = Encoder(precision="auto")

    alpaca = [r["prompt"] for r in _rows(args.data / "alpaca_benign.jsonl")]
    random.Random(args.seed).shuffle(alpaca)
    bank = cluster_bank(sentence_space(encoder.embed(alpaca[: args.bank])).half().float(), args.seed)  # as it ships
    val = _rows(args.data / "alpaca_benign_val.jsonl")
    v = encoder.embed([r["prompt"] for r in val])
    extra = [r["prompt"] for f in ("mtbench_vicuna_benign.jsonl", "mitre_frr_benign.jsonl") for r in _rows(args.data / f)]
    benign_pool = torch.cat([v, encoder.embed(extra)])
    assign = kmeans(sentence_space(v), args.topics, args.seed)
    pool_cluster = torch.cat([assign, torch.full((len(extra),), -1, dtype=torch.long)])
    catqa, aart = _rows(args.data / "catqa.jsonl"), _rows(args.data / "aart.jsonl")
    groups = _groups(catqa, encoder.embed([r["prompt"] for r in catqa]), 1, 8, "catqa")
    groups += _groups(aart, encoder.embed([r["prompt"] for r in aart]), 0, 15, "aart")
    assign_of = {}
    for j in range(args.topics):
        ids = torch.nonzero(assign == j).squeeze(1)
        if len(ids) >= 40:
            groups.append((f"topic:{j}", "topic", v[ids], [val[i]["prompt"] for i in ids.tolist()],
                           "Custom topic: content on the topic the examples show."))
            assign_of[f"topic:{j}"] = j
    policies = simulate(groups, benign_pool, pool_cluster, assign_of, args.seed)
    near = closeness(policies)
    grid = [evaluate(policies, near, bank, q, f, lv) for q, f, lv in itertools.product(QUANTILES, FLOORS, EXCLUDE if args.exclude_topic else (None,))]
    allowed = [g for g in grid if g["benign_flagged_mean"] <= args.max_benign] or grid
    best = max(allowed, key=lambda g: g["f1_harm"] + g["f1_topic"])
    gates = evaluate_gates(policies, bank, encoder, args.weights, best["quantile"], best["floor"], best.get("exclude_topic"))
    gate = max(gates, key=lambda g: g["f1_harm"] + g["f1_topic"])

    from safetensors.torch import save_file

    assert bank.centroids is not None and bank.assign is not None and bank.typical is not None
    tensors = {"bank": bank.texts.half().contiguous()}
    if args.exclude_topic:
        tensors.update(centroids=bank.centroids.half().contiguous(), assign=bank.assign.to(torch.int16).contiguous(),
                       typical=bank.typical.half().contiguous())
    save_file(tensors, str(args.weights / BANK_FILE))
    (args.weights / BANK_FILE).chmod(0o644)  # safetensors writes 0600; the guard may run as another user
    meta_path = args.weights / "meta.json"
    meta = HeadMeta.from_json(meta_path.read_text())
    meta.examples = {"rule": "nearest", "quantile": best["quantile"], "floor": best["floor"],
                     **({"exclude_topic": best.get("exclude_topic")} if args.exclude_topic else {}),
                     "gate": gate["gate"], "gate_min_examples": GATE_MIN_EXAMPLES}
    meta.info["examples_fit"] = {
        "command": f"python -m training.embedded.examples --data ../shared/data/train --weights {_shown(args.weights)} --seed {args.seed}"
                   + (" --exclude-topic" if args.exclude_topic else ""),
        "bank": args.bank, "simulated_policies": len(policies),
        "kinds": dict(collections.Counter(p[0] for p in policies)), "max_benign": args.max_benign,
        "rule_alone": best, "with_head": gate, "grid": grid, "gates": gates,
    }
    meta_path.write_text(meta.to_json() + "\n")
    print(json.dumps({"rule_alone": best, "with_head": gate, "gates": gates, "simulated_policies": len(policies)}, indent=2))
    return meta.examples


if __name__ == "__main__":
    main()
