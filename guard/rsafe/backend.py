"""The `rsafe` guard: RSafe prompt -> model engine -> parsed, per-policy verdict.

One check asks the model once per reasoning mode: policies with `reasoning:
never` (or every policy, with `reasoning: false` in the options) share one
direct-answer prompt with a small token budget; the others share one reasoning
prompt whose budget is the largest of their per-policy budgets (default
`max_tokens`, 512 as in the RSafe paper). Both calls run concurrently.

Any unreadable answer raises `GuardFailure` (see `parse.py`), so the pipeline
applies each policy's failure mode, closed by default.

Options (`settings.guard.options` in policies.yaml; `--guard-url`/`--guard-model` and
RSAFE_GUARD_URL/MODEL/API_KEY override them through the gateway's Settings):

    engine: vllm | transformers          (default vllm)
    url: http://guard:8000 | [url, ...]  vllm: one or several servers (also `urls`)
    model: NAME or DIR                   vllm: served model name (default: first in /v1/models)
                                         transformers: the checkpoint directory
    endpoint: chat | completions         vllm (default chat)
    completion_template: "{prompt}"      vllm completions: wraps the prompt text
    api_key, extra_body, temperature (0 = greedy), max_in_flight (64)
    device (cpu), dtype (float32), batch_size (8), threads   transformers
    timeout_s                            per model call (default: settings.guard.timeout_s)
    max_tokens: 512                      reasoning budget
    direct_max_tokens: 32                budget without reasoning
    policy_budgets: {S1: 1024}           per-policy reasoning budget
    reasoning: true                      false = never reason (latency-critical deployments)
    reasoning_chars: 4000                reasoning kept in the verdict (block log), bounded
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from guard.errors import GuardConfigError, GuardFailure, validate_options
from guard.policies import Policy, PolicySet
from guard.rsafe.engines import Engine, Prompt
from guard.rsafe.parse import parse_output
from guard.rsafe.prompt import TEMPLATE_VERSION, build_messages, build_prompt
from guard.verdict import CheckRequest, PolicyResult, Verdict


class RSafeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: Literal["vllm", "transformers"] = "vllm"
    url: tuple[str, ...] = ()
    model: str | None = None
    endpoint: Literal["chat", "completions"] = "chat"
    completion_template: str = "{prompt}"
    api_key: str | None = None
    extra_body: dict[str, Any] = {}
    temperature: float = Field(default=0.0, ge=0.0)
    max_in_flight: int = Field(default=64, ge=1)
    device: str = "cpu"
    dtype: str = "float32"
    batch_size: int = Field(default=8, ge=1)
    threads: int | None = Field(default=None, ge=1)
    timeout_s: float | None = Field(default=None, gt=0)
    max_tokens: int = Field(default=512, ge=1)
    direct_max_tokens: int = Field(default=32, ge=1)
    policy_budgets: dict[str, int] = {}
    reasoning: bool = True
    reasoning_chars: int = Field(default=4000, ge=0)

    @field_validator("url", mode="before")
    @classmethod
    def _urls(cls, v: Any) -> Any:
        if isinstance(v, str):
            return tuple(u.strip() for u in v.split(",") if u.strip())
        return v


def parse_options(options: Mapping[str, Any]) -> RSafeOptions:
    data = dict(options)
    if "urls" in data:
        data["url"] = tuple(data.get("url") or ()) + tuple(data.pop("urls") or ())
    return validate_options(RSafeOptions, data, "rsafe guard options")


class RSafeGuard:
    """The reasoning guard over any `Engine`."""

    def __init__(self, engine: Engine, opts: RSafeOptions, name: str = "rsafe") -> None:
        self.engine = engine
        self.opts = opts
        self.name = name
        # Part of the verdict-cache key: another model or template is another guard.
        self.cache_tag = f"{name}:{engine.name}:{opts.model}:{TEMPLATE_VERSION}:{opts.reasoning}"

    def _groups(self, policies: tuple[Policy, ...]) -> list[tuple[bool, tuple[Policy, ...], int]]:
        """(reasoning?, policies, token budget) for each model call of one check."""
        direct = tuple(p for p in policies if not self.opts.reasoning or p.reasoning == "never")
        direct_ids = {p.id for p in direct}
        reasoned = tuple(p for p in policies if p.id not in direct_ids)
        groups = []
        if reasoned:
            budget = max(self.opts.policy_budgets.get(p.id, self.opts.max_tokens) for p in reasoned)
            groups.append((True, reasoned, budget))
        if direct:
            groups.append((False, direct, self.opts.direct_max_tokens))
        return groups

    async def _ask(self, request: CheckRequest, reasoning: bool, policies: tuple[Policy, ...], budget: int):
        sub = CheckRequest(request.direction, request.conversation, policies, request.policy_version)
        prompt = Prompt(build_prompt(sub, reasoning=reasoning), tuple(build_messages(sub, reasoning=reasoning)))
        gen = await self.engine.generate(prompt, budget)
        return parse_output(
            gen.text, finished=gen.finished, policy_ids=[p.id for p in policies], require_think=reasoning
        )

    async def check(self, request: CheckRequest) -> Verdict:
        start = time.perf_counter()
        policies = tuple(p for p in request.policies if p.engine == "model")
        groups = self._groups(policies)
        try:
            parsed = await asyncio.gather(*(self._ask(request, r, ps, b) for r, ps, b in groups))
        except GuardFailure:
            raise
        except Exception as exc:
            raise GuardFailure(f"rsafe guard failed: {exc!r}") from exc
        results: dict[str, PolicyResult] = {}
        reasoning_parts = []
        for (_, ps, _), out in zip(groups, parsed, strict=True):
            for p in ps:
                hit = p.id in out.violated
                results[p.id] = PolicyResult(p.id, hit, 1.0 if hit else 0.0)
            if out.reasoning:
                reasoning_parts.append(out.reasoning)
        reasoning = "\n\n".join(reasoning_parts)
        if len(reasoning) > self.opts.reasoning_chars:
            reasoning = reasoning[: self.opts.reasoning_chars] + " [...]"
        return Verdict(
            backend=self.name,
            results=results,
            reasoning=reasoning or None,
            latency_ms=(time.perf_counter() - start) * 1000,
            decided_by=self.name,
        )

    async def aclose(self) -> None:
        await self.engine.aclose()


def make_engine(opts: RSafeOptions, timeout_s: float) -> Engine:
    if opts.engine == "transformers":
        if not opts.model:
            raise GuardConfigError("rsafe transformers engine needs options.model: a checkpoint directory")
        from guard.rsafe.local import TransformersEngine

        return TransformersEngine(
            opts.model, device=opts.device, dtype=opts.dtype, batch_size=opts.batch_size, threads=opts.threads
        )
    from guard.rsafe.vllm_client import VLLMEngine

    return VLLMEngine(
        list(opts.url),
        opts.model,
        endpoint=opts.endpoint,
        completion_template=opts.completion_template,
        timeout_s=timeout_s,
        max_in_flight=opts.max_in_flight,
        temperature=opts.temperature,
        api_key=opts.api_key,
        extra_body=opts.extra_body,
    )


def build(options: dict[str, Any], policies: PolicySet | None) -> RSafeGuard:
    """Registry factory (`guard.rsafe:build`)."""
    opts = parse_options(options)
    timeout_s = opts.timeout_s or (policies.settings.guard.timeout_s if policies is not None else 30.0)
    return RSafeGuard(make_engine(opts, timeout_s), opts)
