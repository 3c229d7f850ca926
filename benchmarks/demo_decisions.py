"""Does the CPU demo's tiny model learn the policy-matching decision? A plain training loop that says.

    python benchmarks/demo_decisions.py [--steps 1000] [--batch 64] [--trace forbids|present|content] [--mimetic 1.0]
        [--unseen-heldout] [--things N] [--pretrain N]

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
decision token follows the thing it is about directly; `--trace content` walks the
judged turn instead (`the mirror forbidden by S7.` / `the candle allowed.`).
`--unseen-heldout` keeps held-out things out of the training text altogether
(the tokenizer still has them); `--things N` replaces the 96 English things by
N pseudo-words, each one token; `--pretrain N` first runs N steps of a short
matching game over *all* things (`training.demo.pretrain`, the base-model stand-in the demo now uses).
"""

from __future__ import annotations

import argparse
import math
import random
import time


def present_trace(mentioned, categories, things) -> str:
    return "\n".join(f"{pid}: {t} {'present' if t in mentioned else 'absent'}." for (pid, _), t in zip(categories, things))


def content_trace(mentioned, categories, things) -> str:
    by_thing = {t: pid for (pid, _), t in zip(categories, things)}
    return "\n".join(f"the {t} {'forbidden by ' + by_thing[t] if t in by_thing else 'allowed'}." for t in mentioned)


def pseudo_words(n: int, seed: int = 7) -> list[str]:
    cons, vows = "bdfgklmnprstvz", "aeiou"
    sylls = [c + v for c in cons for v in vows]
    words = sorted({a + b + c for a in sylls for b in sylls for c in sylls})
    return sorted(random.Random(seed).sample(words, n))


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
    ap.add_argument("--trace", choices=["forbids", "present", "content"], default="forbids")
    ap.add_argument("--mimetic", type=float, default=0.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pretrain", type=int, default=0, help="first run N steps of a matching game over all things")
    ap.add_argument("--things", type=int, default=0, help="replace the 96 things by N pseudo-words (single tokens)")
    ap.add_argument("--unseen-heldout", action="store_true",
                    help="training content never mentions held-out things (the tokenizer still knows them)")
    a = ap.parse_args()

    import torch
    import transformers

    from training.demo import synthetic
    from training.demo.pretrain import decision_accuracy, encode_game, matching_game, pad_batch, train_step
    from training.demo.tiny import build_tiny, mimetic_init, template_phrases

    torch.set_num_threads(a.threads)
    transformers.logging.set_verbosity_error()
    synthetic.reasoning_for = {"present": present_trace, "content": content_trace}.get(a.trace, synthetic.reasoning_for)
    if a.things:
        synthetic.THINGS = tuple(pseudo_words(a.things))
    train = synthetic.make_split(a.examples, seed=0)
    if a.unseen_heldout:
        train_things, _ = synthetic.split_things()
        rng0 = random.Random(0)
        train = [synthetic.sample_example(rng0, train_things, train_things, unsafe=i % 2 == 0) for i in range(a.examples)]
    heldout = synthetic.make_split(256, seed=200_000, heldout=True)
    indist = synthetic.make_split(256, seed=300_000)
    corpus = [t for e in train[:9600] for t in (e.prompt, e.target())] + ["<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n"] * 50
    corpus += [f"the {t}" for t in synthetic.THINGS] * 20 if a.unseen_heldout else []
    model, tok = build_tiny(corpus, None, seed=0, phrases=template_phrases([e.prompt for e in train[:500]]) + [" " + t for t in synthetic.THINGS] * bool(a.things),
                            hidden=a.hidden, layers=a.layers, heads=a.heads)
    print(tok.convert_ids_to_tokens(tok(train[0].target())["input_ids"]))
    if a.mimetic:
        mimetic_init(model, a.mimetic)
    words = {"forbids": ("Ġyes", "Ġno"), "present": ("Ġpresent", "Ġabsent"), "content": ("Ġforbidden", "Ġallowed")}[a.trace]
    decision_ids = [tok.convert_tokens_to_ids(w) for w in words]

    def encode(e):
        prompt = tok(tok.apply_chat_template(e.messages, add_generation_prompt=True, tokenize=False), add_special_tokens=False)["input_ids"]
        answer = tok(e.target() + tok.eos_token, add_special_tokens=False)["input_ids"]
        return prompt + answer, [-100] * len(prompt) + answer

    def batch(items):
        return pad_batch(items, tok.pad_token_id)

    def decisions(b) -> tuple[float, float]:
        return decision_accuracy(model, b, decision_ids)

    data = [encode(e) for e in train]
    game_rng = random.Random(5)
    game = []
    for _ in range(20000 if a.pretrain else 0):
        game.append(encode_game(tok, *matching_game(game_rng, synthetic.THINGS)))
    game_b = batch(game[-256:]) if game else None
    game = game[:-256]
    if game:
        print("game:", repr(tok.decode(game[0][0])), "tokens", len(game[0][0]))
    held_b, ind_b = batch([encode(e) for e in heldout]), batch([encode(e) for e in indist])
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=a.weight_decay, betas=(0.9, 0.98))
    total = a.steps + a.pretrain
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 50) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total))
    )
    rng = random.Random(0)
    start = time.monotonic()
    print(f"trace={a.trace} mimetic={a.mimetic} unseen_heldout={a.unseen_heldout} wd={a.weight_decay} model={a.layers}x{a.hidden}/{a.heads} heads, batch {a.batch}, lr {a.lr}")
    model.train()
    for step in range(1, total + 1):
        loss = train_step(model, batch(rng.sample(game if step <= a.pretrain else data, a.batch)), opt, sched)
        if step % 250 == 0 or step == total:
            model.eval()
            (ind, base), (held, _) = decisions(ind_b), decisions(held_b)
            game_note = f"  game decisions {100 * decisions(game_b)[0]:.1f}%" if game_b else ""
            model.train()
            print(f"step {step:5d}  sequences {step * a.batch:7d}  {time.monotonic() - start:6.0f}s  {'game' if step <= a.pretrain else 'guard'} loss {loss:.4f}  "
                  f"decisions right: in-distribution {100 * ind:.1f}%  held-out {100 * held:.1f}%  (majority baseline {100 * base:.1f}%){game_note}",
                  flush=True)


if __name__ == "__main__":
    main()
