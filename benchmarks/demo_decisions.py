"""Does the CPU demo's tiny model learn the policy-matching decision? A plain training loop that says.

    python benchmarks/demo_decisions.py [--steps 1000] [--batch 64] [--trace forbids|present] [--mimetic 1.0]

The demo's table reports greedy well-formed rate and F1; this probe looks at the
one thing that decides them, the per-policy decision token (`yes`/`no`, or
`present`/`absent` with `--trace present`), under teacher forcing, every 250
steps, on in-distribution and held-out examples. It prints the share of those
tokens predicted right next to the majority baseline (about 75% of decisions
are "no"): a model that has learned nothing about matching sits at the baseline.

Same data, tokenizer and model as `training.demo` (without TRL, so that more
sequences fit in the same minutes); AdamW, cosine schedule, loss on the answer only.
`--mimetic S` initialises the last layer's query and key projections equal
(an orthogonal projection scaled by S), which makes "attend to the same token"
the starting pattern (mimetic initialisation, Trockman & Kolter 2023).
`--trace present` writes the trace as `S7: mirror present.`, so that the
decision token follows the thing it is about directly.
"""

from __future__ import annotations

import argparse
import math
import random
import time


def present_trace(mentioned, categories, things) -> str:
    return "\n".join(f"{pid}: {t} {'present' if t in mentioned else 'absent'}." for (pid, _), t in zip(categories, things))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--examples", type=int, default=20000)
    ap.add_argument("--trace", choices=["forbids", "present"], default="forbids")
    ap.add_argument("--mimetic", type=float, default=0.0)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()

    import torch
    import transformers

    import training.synthetic as synthetic
    from training.tiny import build_tiny, template_phrases

    torch.set_num_threads(a.threads)
    transformers.logging.set_verbosity_error()
    if a.trace == "present":
        synthetic.reasoning_for = present_trace
    train = synthetic.make_split(a.examples, seed=0)
    heldout = synthetic.make_split(256, seed=200_000, heldout=True)
    indist = synthetic.make_split(256, seed=300_000)
    corpus = [t for e in train[:9600] for t in (e.prompt, e.target())] + ["<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n"] * 50
    model, tok = build_tiny(corpus, None, seed=0, phrases=template_phrases([e.prompt for e in train[:500]]),
                            hidden=a.hidden, layers=a.layers, heads=a.heads)
    if a.mimetic:
        gen = torch.Generator().manual_seed(1)
        attn = model.model.layers[-1].self_attn
        out_f, in_f = attn.q_proj.weight.shape
        w = torch.linalg.qr(torch.randn(in_f, out_f, generator=gen))[0].T * a.mimetic
        for proj in (attn.q_proj, attn.k_proj):
            proj.weight.data.copy_(w)
            proj.bias.data.zero_()
    words = ("Ġyes", "Ġno") if a.trace == "forbids" else ("Ġpresent", "Ġabsent")
    decision_ids = [tok.convert_tokens_to_ids(w) for w in words]

    def encode(e):
        prompt = tok(tok.apply_chat_template(e.messages, add_generation_prompt=True, tokenize=False), add_special_tokens=False)["input_ids"]
        answer = tok(e.target() + tok.eos_token, add_special_tokens=False)["input_ids"]
        return prompt + answer, [-100] * len(prompt) + answer

    def batch(items):
        n = max(len(x) for x, _ in items)
        ids = torch.tensor([x + [tok.pad_token_id] * (n - len(x)) for x, _ in items])
        labels = torch.tensor([y + [-100] * (n - len(y)) for _, y in items])
        mask = torch.tensor([[1] * len(x) + [0] * (n - len(x)) for x, _ in items])
        return ids, labels, mask

    def decisions(b) -> tuple[float, float]:
        ids, labels, mask = b
        with torch.no_grad():
            pred = model(input_ids=ids, attention_mask=mask).logits[:, :-1].argmax(-1)
        gold = labels[:, 1:]
        at = (gold == decision_ids[0]) | (gold == decision_ids[1])
        majority = max((gold[at] == d).float().mean().item() for d in decision_ids)
        return (pred[at] == gold[at]).float().mean().item(), majority

    data = [encode(e) for e in train]
    held_b, ind_b = batch([encode(e) for e in heldout]), batch([encode(e) for e in indist])
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=a.weight_decay, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 50) * 0.5 * (1 + math.cos(math.pi * min(s, a.steps) / a.steps))
    )
    rng = random.Random(0)
    start = time.monotonic()
    print(f"trace={a.trace} mimetic={a.mimetic} model={a.layers}x{a.hidden}/{a.heads} heads, batch {a.batch}, lr {a.lr}")
    model.train()
    for step in range(1, a.steps + 1):
        ids, labels, mask = batch(rng.sample(data, a.batch))
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        if step % 250 == 0 or step == a.steps:
            model.eval()
            (ind, base), (held, _) = decisions(ind_b), decisions(held_b)
            model.train()
            print(f"step {step:5d}  sequences {step * a.batch:7d}  {time.monotonic() - start:6.0f}s  loss {loss.item():.4f}  "
                  f"decisions right: in-distribution {100 * ind:.1f}%  held-out {100 * held:.1f}%  (majority baseline {100 * base:.1f}%)",
                  flush=True)


if __name__ == "__main__":
    main()
