"""GPU check: a few GRPO steps on CUDA with vLLM rollouts, on a small randomly initialised model.

    python -m training.demo.gpu_smoke            # needs a CUDA GPU, vllm and trl installed

It builds the demo's tiny checkpoint (hidden 128, 2 heads: head_dim 64, which
vLLM's kernels accept), runs `GRPOTrainer` for a few steps with
`use_vllm=True, vllm_mode="colocate"` (the paper configs' rollout path) and the
`rsafe` + `length` rewards, and prints one JSON line: device, steps, seconds,
final loss, mean reward. The loss must be finite and the weights must move;
it exits non-zero otherwise. Record its output in docs/training.md with the
card and the date.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: this check needs a GPU", file=sys.stderr)
        return 2
    from training.demo.synthetic import make_split
    from training.demo.tiny import build_tiny, template_phrases
    from training.rsafe.grpo import train_grpo

    examples = make_split(64, seed=0)
    corpus = [t for e in examples for t in (e.prompt, e.target())] + ["<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n"] * 5
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        model, tok = build_tiny(corpus, base, seed=0, phrases=template_phrases([e.prompt for e in examples]), heads=2)
        before = [p.detach().clone() for p in model.parameters()]
        start = time.monotonic()
        trainer = train_grpo(
            str(base), tok, [e.row() for e in examples], Path(tmp) / "grpo",
            rewards=["rsafe", "length"], reward_params={"length_target_chars": 8}, save=False,
            args={"max_steps": 3, "per_device_train_batch_size": 16, "num_generations": 4, "max_completion_length": 32,
                  "learning_rate": 1e-3, "temperature": 1.0, "bf16": True, "use_vllm": True, "vllm_mode": "colocate",
                  "vllm_gpu_memory_utilization": 0.2, "vllm_max_model_length": 512, "logging_steps": 1},
        )
        seconds = time.monotonic() - start
    logs = [h for h in trainer.state.log_history if "loss" in h]
    moved = any(not torch.equal(b.cpu(), a.detach().float().cpu().to(b.dtype)) for b, a in zip(before, trainer.model.parameters()))
    report = {
        "device": torch.cuda.get_device_name(0),
        "steps": trainer.state.global_step,
        "seconds": round(seconds, 1),
        "loss": logs[-1]["loss"] if logs else None,
        "reward": logs[-1].get("reward") if logs else None,
        "weights_moved": moved,
    }
    print(json.dumps(report))
    return 0 if logs and math.isfinite(logs[-1]["loss"]) and moved else 1


if __name__ == "__main__":
    raise SystemExit(main())
