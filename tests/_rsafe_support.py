"""Shared helpers for the RSafe guard tests: policies, requests, scripted engines and guards."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path

from guard.policies import Direction, Policy, PolicySet
from guard.rsafe.engines import Generation, Prompt
from guard.verdict import CheckRequest, PolicyResult, Turn, Verdict

REPO = Path(__file__).resolve().parents[1]
TINY_CACHE = REPO / ".cache" / "rsafe-tiny"  # gitignored; built once per machine

POLICIES = (
    Policy(id="S1", name="Violent crimes", description="Helping with violence against people."),
    Policy(id="S2", name="Non-violent crimes", description="Fraud, theft, hacking."),
    Policy(id="S9", name="Weapons", description="Weapons of mass destruction.", reasoning="always"),
    Policy(id="S6", name="Advice", description="Dangerous medical advice.", reasoning="never"),
)
IDS = tuple(p.id for p in POLICIES)


def ensure_vllm_env() -> None:
    """Make `.venv-vllm` (cached by scripts/vllm_env.sh), or skip/fail the calling fixture with the reason.

    `RSAFE_SKIP_VLLM=1` opts out explicitly (a visible skip); any other failure
    to build the environment FAILS: the vLLM tests are never skipped silently.
    """
    import os
    import subprocess

    import pytest

    if os.environ.get("RSAFE_SKIP_VLLM") == "1":
        pytest.skip("RSAFE_SKIP_VLLM=1: real vLLM integration test explicitly disabled")
    setup = subprocess.run(
        ["bash", str(REPO / "scripts" / "vllm_env.sh")], check=False, capture_output=True, text=True, timeout=1500
    )
    if setup.returncode != 0:
        pytest.fail(f"cannot create .venv-vllm (scripts/vllm_env.sh):\n{setup.stdout[-2000:]}\n{setup.stderr[-4000:]}")


def policy_set(**guard: object) -> PolicySet:
    return PolicySet.from_dict(
        {"policies": [p.model_dump(mode="json") for p in POLICIES], "settings": {"guard": guard}}
    )


def request(text: str, direction: Direction = Direction.INPUT, policies=POLICIES, context: str = "") -> CheckRequest:
    if direction is Direction.OUTPUT:
        turns = (Turn("user", context or "hello"), Turn("assistant", text))
    else:
        turns = (Turn("user", text),)
    return CheckRequest(direction, turns, tuple(policies), "v-test")


def conversation_block(prompt: str) -> str:
    """What a model 'sees' as the conversation: from the first BEGIN to the last END marker (generous)."""
    start = prompt.index("<BEGIN CONVERSATION>") + len("<BEGIN CONVERSATION>")
    return prompt[start : prompt.rindex("<END CONVERSATION>")].strip()


class ScriptedEngine:
    """An engine whose reply is a function of the prompt; records what it was asked."""

    name = "scripted"

    def __init__(self, reply: Callable[[Prompt, int], str | Generation], delay: float = 0.0) -> None:
        self.reply = reply
        self.delay = delay
        self.calls: list[tuple[Prompt, int]] = []
        self.closed = False

    async def generate(self, prompt: Prompt, max_tokens: int) -> Generation:
        self.calls.append((prompt, max_tokens))
        if self.delay:
            await asyncio.sleep(self.delay)
        out = self.reply(prompt, max_tokens)
        return out if isinstance(out, Generation) else Generation(out, True)

    async def aclose(self) -> None:
        self.closed = True


class ScriptedGuard:
    """A guard returning fixed scores per policy id (violated when score >= 0.5)."""

    def __init__(self, name: str, scores: dict[str, float | None], delay: float = 0.0, fail: Exception | None = None):
        self.name = name
        self.scores = scores
        self.delay = delay
        self.fail = fail
        self.seen: list[tuple[str, ...]] = []
        self.closed = False

    async def check(self, req: CheckRequest) -> Verdict:
        self.seen.append(tuple(p.id for p in req.policies))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        results = {}
        for p in req.policies:
            if p.id in self.scores:
                s = self.scores[p.id]
                results[p.id] = PolicyResult(p.id, bool(s is not None and s >= 0.5), s)
        return Verdict(self.name, results, reasoning=f"{self.name} says so", decided_by=self.name)

    async def aclose(self) -> None:
        self.closed = True


def ids_in_categories(prompt: str) -> list[str]:
    block = prompt.split("<BEGIN UNSAFE CONTENT CATEGORIES>")[1].split("<END UNSAFE CONTENT CATEGORIES>")[0]
    return re.findall(r"^(\S+): ", block, re.MULTILINE)


# The answer the "trained" tiny model gives to every RSafe prompt.
TRAINED_ANSWER = "<think>\nIt asks for violence.\n</think>\n\\boxed{unsafe}\nViolated: S1"


def tiny_model(answer: str | None) -> Path:
    """A tiny Qwen2 checkpoint (random, or taught `answer`), built once under .cache/."""
    from training.demo.tiny import cached_guard_model

    return cached_guard_model(TINY_CACHE, answer=answer)
