"""The CPU demonstration of the reasoning guard's pipeline: `python -m training.demo` runs `run.main`.

`run` (the demo itself), `tiny` (a tokenizer and a random Qwen2 built on the spot),
`pretrain` (the base-model stand-in), `synthetic` (the policy-following task),
`oracle` (the teacher behind a real OpenAI-compatible endpoint), `gpu_smoke`
(a few GRPO steps with vLLM rollouts on CUDA: `python -m training.demo.gpu_smoke`).
"""
