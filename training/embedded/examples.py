"""Fit the examples term of the embedded guard (see guard/embedded/examples.py).

    python -m training.embedded.examples --data ../shared/data/train --weights guard/embedded/weights --seed 0

Runs after `training.embedded` on the weights it wrote, on the validation split of the
same mix (same seed), so no row the encoder trained on is an example or a scored text.
Simulated policies, each drawn `--draws` times:
- harm categories: a fine-grained group of the data (AART crime, CatQA subcategory,
  Do-Not-Answer area, ...) with at least 6 validation prompts; its first wording is the
  description. Negatives: benign prompts (random and the ones nearest the category) and
  harmful prompts of categories whose centroid is far (cosine < 0.5);
- benign topics: k-means clusters of the benign validation prompts (seeded), described only
  as "content on the topic the examples show": policies about things that are not harmful
  (the custom-policy case: competitor mentions, code requests). Negatives: other clusters.
Examples: 3 unsafe rows of the policy (and, 70% of the time, 2 safe rows near it) are
written into the policy as `examples`, exactly as Policy.text lists them, and removed from
the scored rows. The four parameters a..d minimise the log loss of the calibrated head
logit plus the shift; meta.json gets them under `examples` only if the term does not flag
more benign rows than the head alone (+1 point); the fit's record goes to `info.examples_fit`.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from guard.embedded.encoder import DIM, FEATURE_DIM, Encoder
from guard.embedded.examples import example_space
from guard.embedded.head import load, overlay_path
from training.embedded.data import build_mix
from training.embedded.policies import fine_grained

ROOT = Path(__file__).resolve().parents[2]


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


def policy_text(name: str, description: str, unsafe: list[str], safe: list[str]) -> str:
    parts = [f"{name}: {description}"]
    if unsafe:
        parts.append("Violating examples: " + " | ".join(unsafe))
    if safe:
        parts.append("Not violating: " + " | ".join(safe))
    return "\n".join(parts)


def f1(pred: np.ndarray, y: np.ndarray) -> float:
    tp = float((pred & (y == 1)).sum())
    return 2 * tp / max(1.0, 2 * tp + float((pred & (y == 0)).sum()) + float((~pred & (y == 1)).sum()))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/train")
    ap.add_argument("--weights", type=Path, default=ROOT / "guard/embedded/weights")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--alpaca", type=int, default=2000)
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--topics", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--space", choices=["mid", "last"], default="mid", help="features the similarity is measured in")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed + 21)
    head, meta = load(args.weights)
    encoder = Encoder(precision="auto", overlay=overlay_path(args.weights))
    mix = build_mix(args.data, args.seed, alpaca=args.alpaca, hh_pairs=0)
    items = [it for it in mix.val if not it.context and it.label >= 0 and it.text.strip()]
    texts = [it.text for it in items]
    feats = encoder.embed(texts, max_tokens=meta.max_tokens)
    mu = feats[:, DIM : 2 * DIM].mean(0)
    space = {"space": args.space, "mu": [round(float(v), 5) for v in mu]} if args.space == "mid" else {"space": "last"}
    emb = example_space(feats, space)
    benign = [i for i, it in enumerate(items) if it.label == 0]
    wordings = fine_grained()
    groups: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        if it.label == 1:
            for g in it.groups:
                if g in wordings:
                    groups.setdefault(g, []).append(i)
    groups = {g: v for g, v in groups.items() if len(v) >= 6}
    centroid = {g: F.normalize(emb[v].mean(0), dim=-1) for g, v in groups.items()}
    assign = kmeans(emb[benign], args.topics, args.seed)
    topics = {j: [benign[i] for i in torch.nonzero(assign == j).squeeze(1).tolist()] for j in range(args.topics)}
    topics = {j: v for j, v in topics.items() if len(v) >= 12}
    tcent = {j: F.normalize(emb[v].mean(0), dim=-1) for j, v in topics.items()}

    sims = []  # (policy text, unsafe ex idx, safe ex idx, scored idx, labels)
    for _ in range(args.draws):
        for g, members in sorted(groups.items()):
            ex = rng.sample(members, 3)
            near = sorted(benign, key=lambda i: -float(emb[i] @ centroid[g]))[:20]
            safe_ex = rng.sample(near, 2) if rng.random() < 0.7 else []
            far_harm = [i for h, v in groups.items() if float(centroid[h] @ centroid[g]) < 0.5 for i in v]
            neg = rng.sample([i for i in benign if i not in safe_ex], min(40, len(benign))) + [i for i in near if i not in safe_ex]
            neg += rng.sample(far_harm, min(20, len(far_harm)))
            pos = [i for i in members if i not in ex]
            scored = list(dict.fromkeys(pos + neg))
            labels = [1 if i in pos else 0 for i in scored]
            text = policy_text(wordings[g][0].split(".")[0], wordings[g][0], [texts[i][:200] for i in ex], [texts[i][:200] for i in safe_ex])
            sims.append((text, ex, safe_ex, scored, labels))
        for j, members in sorted(topics.items()):
            ex = rng.sample(members, 3)
            others = sorted((h for h in topics if h != j), key=lambda h: -float(tcent[h] @ tcent[j]))
            safe_ex = rng.sample(topics[others[0]], 2) if rng.random() < 0.7 and others else []
            neg = [i for h in others for i in rng.sample(topics[h], min(6, len(topics[h]))) if i not in safe_ex]
            pos = [i for i in members if i not in ex][:40]
            scored = pos + neg
            labels = [1] * len(pos) + [0] * len(neg)
            text = policy_text("Custom topic", "Content on the topic the examples show.", [texts[i][:200] for i in ex], [texts[i][:200] for i in safe_ex])
            sims.append((text, ex, safe_ex, scored, labels))

    pol = encoder.embed([s[0] for s in sims], max_tokens=256)[:, :DIM]
    rows_z, rows_su, rows_ss, rows_hs, rows_y, kind, is_benign = [], [], [], [], [], [], []
    with torch.no_grad():
        for k, (text, ex, safe_ex, scored, labels) in enumerate(sims):
            c = feats[scored]
            logit = head.grid(c, torch.zeros(len(scored), FEATURE_DIM), torch.zeros(len(scored)), pol[k : k + 1]).squeeze(1)
            rows_z.append(logit / meta.temperature + meta.bias)
            rows_su.append((emb[scored] @ emb[ex].T).max(1).values)
            rows_ss.append((emb[scored] @ emb[safe_ex].T).max(1).values if safe_ex else torch.zeros(len(scored)))
            rows_hs.append(torch.full((len(scored),), 1.0 if safe_ex else 0.0))
            rows_y.append(torch.tensor(labels, dtype=torch.float))
            is_benign.extend(items[i].label == 0 for i in scored)
            kind += ["topic" if text.startswith("Custom topic") else "harm"] * len(scored)
    z, su, ss, hs, y = (torch.cat(t) for t in (rows_z, rows_su, rows_ss, rows_hs, rows_y))
    params = torch.zeros(4, requires_grad=True)
    opt = torch.optim.LBFGS([params], lr=0.5, max_iter=200)

    def shift():
        a, b, c, d = params
        return a * su + b * ss * hs + c * hs + d

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(z + shift(), y) + 1e-3 * (params**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    a, b, c, d = (round(float(v), 4) for v in params.detach())
    thr = meta.thresholds.get("input", 0.5)
    kind_arr = np.array(kind)
    yy = y.numpy().astype(int)
    before = torch.sigmoid(z).numpy() >= thr
    after = torch.sigmoid(z + shift().detach()).numpy() >= thr
    report = {}
    for name in ("harm", "topic"):
        m = kind_arr == name
        report[name] = {"f1_head_only": round(f1(before[m], yy[m]), 4), "f1_with_examples": round(f1(after[m], yy[m]), 4), "rows": int(m.sum())}
    # Safety check before shipping the term: on the simulated policies' benign negatives (rows
    # that violate nothing), the term must not flag more than the head alone (+1 point). A fit
    # that wins log loss by raising every score (a large constant) fails it and is not shipped.
    benign_neg = (yy == 0) & np.isin(np.arange(len(yy)), np.nonzero(np.array(is_benign))[0])
    fpr_before = float(before[benign_neg].mean()) if benign_neg.any() else 0.0
    fpr_after = float(after[benign_neg].mean()) if benign_neg.any() else 0.0
    accepted = fpr_after <= fpr_before + 0.01
    meta.examples = {"a": a, "b": b, "c": c, "d": d, **space} if accepted else {}
    meta.info["examples_fit"] = {"command": "python -m training.embedded.examples --data ../shared/data/train --weights guard/embedded/weights --seed 0",
                                 "simulated_policies": len(sims), "threshold": thr, **report,
                                 "params": {"a": a, "b": b, "c": c, "d": d, "space": space["space"]},
                                 "benign_flagged_head_only": round(fpr_before, 4), "benign_flagged_with_examples": round(fpr_after, 4),
                                 "accepted": accepted}
    (args.weights / "meta.json").write_text(meta.to_json() + "\n")
    print(json.dumps({"examples": meta.examples, **report}))
    return meta.examples


if __name__ == "__main__":
    main()
