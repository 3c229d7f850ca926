"""A base-model stand-in for the CPU demo: teach a from-scratch model to *read* before it is a guard.

The paper starts from Qwen2.5-7B-Instruct, which already knows how to tell
whether a word it is asked about occurs in a text. A 2-layer model built from
nothing does not, and the guard data alone does not teach it on a CPU budget:
the decision tokens are ~5% of each answer, and "no" is right 75% of the time,
so tens of thousands of guard sequences leave the decisions at chance (the
probes in docs/training.md). This module supplies that skill the way a base
model gets it, from generic text before any guard training: a *matching game*
over every thing the task knows (held-out ones included, as a real base model
has seen every word), with every answer token a decision:

    Do not mention candle.
    Any mention of cotton.

    Write a poem about the cotton.

    - candle absent.
    - cotton present.

It is not the guard task: no chat template, no RSafe prompt, no policy ids, no
verdict, and no safe/unsafe anywhere, so no label of the guard task leaks into
the base model. A plain torch loop (AdamW, loss on the answer lines only), run
until the game's held-out texts are answered right or the step budget ends.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from training.demo import synthetic


@dataclass(frozen=True)
class PretrainConfig:
    max_steps: int = 3000
    batch: int = 64
    lr: float = 1e-3
    warmup: int = 50
    target: float = 0.995  # stop once this share of held-out game decisions is right
    eval_every: int = 100
    seed: int = 0


def matching_game(rng: random.Random, things: Sequence[str]) -> tuple[str, str]:
    """(question, answer): 1-3 names, a sentence mentioning some of them, then which names occur in it."""
    template = rng.choice(synthetic.USER_TEMPLATES + synthetic.AGENT_TEMPLATES)
    slots = synthetic._slots(template)
    targets = rng.sample(list(things), rng.randint(1, 3))
    present = [t for t in targets if rng.random() < 0.5][:slots]
    others = [t for t in rng.sample(list(things), slots + 3) if t not in targets][: slots - len(present)]
    mentioned = present + others
    rng.shuffle(mentioned)
    head = "\n".join(rng.choice(synthetic.POLICY_TEMPLATES).format(t=t) for t in targets)
    answer = "\n".join(f"- {t} {'present' if t in present else 'absent'}." for t in targets)
    return f"{head}\n\n{synthetic._fill(template, mentioned)}\n\n", answer


def game_texts(n: int, seed: int, things: Sequence[str] = synthetic.THINGS) -> list[str]:
    """Whole game texts (for the tokenizer's corpus)."""
    rng = random.Random(seed)
    return ["".join(matching_game(rng, things)) for _ in range(n)]


def pad_batch(items: Sequence[tuple[list[int], list[int]]], pad_id: int):
    """(ids, labels) pairs -> right-padded (input_ids, labels, attention_mask) tensors."""
    import torch

    n = max(len(x) for x, _ in items)
    ids = torch.tensor([x + [pad_id] * (n - len(x)) for x, _ in items])
    labels = torch.tensor([y + [-100] * (n - len(y)) for _, y in items])
    mask = torch.tensor([[1] * len(x) + [0] * (n - len(x)) for x, _ in items])
    return ids, labels, mask


def decision_accuracy(model, batch, decision_ids: Sequence[int]) -> tuple[float, float]:
    """Teacher-forced share of the decision tokens predicted right, and the majority baseline's share."""
    import torch

    ids, labels, mask = batch
    with torch.no_grad():
        pred = model(input_ids=ids, attention_mask=mask).logits[:, :-1].argmax(-1)
    gold = labels[:, 1:]
    at = torch.isin(gold, torch.tensor(list(decision_ids)))
    majority = max((gold[at] == d).float().mean().item() for d in decision_ids)
    return (pred[at] == gold[at]).float().mean().item(), majority


def train_step(model, batch, opt, sched) -> float:
    """One AdamW step (gradient clipped at 1.0) on a padded batch; returns the loss."""
    import torch

    ids, labels, mask = batch
    loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()
    opt.zero_grad()
    return loss.item()


def encode_game(tokenizer, question: str, answer: str) -> tuple[list[int], list[int]]:
    """Token ids of a game text and its labels (the answer only, closed by EOS)."""
    q = tokenizer(question, add_special_tokens=False)["input_ids"]
    a = tokenizer(answer + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    return q + a, [-100] * len(q) + a


def pretrain(model, tokenizer, config: PretrainConfig = PretrainConfig(), *, things: Sequence[str] = synthetic.THINGS,
             log: Callable[[str], None] = print) -> dict[str, float]:
    """Train `model` in place on the matching game; returns steps, seconds and held-out game accuracy."""
    import torch

    decision_ids = tokenizer.convert_tokens_to_ids(["Ġpresent", "Ġabsent"])

    def sample(rng: random.Random, n: int):
        return pad_batch([encode_game(tokenizer, *matching_game(rng, things)) for _ in range(n)], tokenizer.pad_token_id)

    rng, eval_rng = random.Random(config.seed), random.Random(config.seed + 1_000_003)
    held = sample(eval_rng, 256)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.1, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / config.warmup))
    start, acc, step, loss = time.monotonic(), 0.0, 0, float("nan")
    model.train()
    for step in range(1, config.max_steps + 1):
        loss = train_step(model, sample(rng, config.batch), opt, sched)
        if step % config.eval_every == 0 or step == config.max_steps:
            model.eval()
            acc = decision_accuracy(model, held, decision_ids)[0]
            model.train()
            log(f"pretrain step {step}: loss {loss:.4f}, held-out game decisions {100 * acc:.1f}% ({time.monotonic() - start:.0f}s)")
            if acc >= config.target:
                break
    model.eval()
    if not math.isfinite(loss):
        raise RuntimeError("pretraining diverged")
    return {"steps": step, "seconds": round(time.monotonic() - start, 1), "game_accuracy": acc}
