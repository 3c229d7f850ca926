"""The gateway service: everything a route handler needs, built once per app.

`Gateway` owns the policy store, the moderator (guards), the upstream client,
the block log and the metrics, and implements the moderated chat completion.
Route handlers in `gateway/routes.py` stay a few lines each.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import structlog

from gateway.blocklog import BlockLog
from gateway.errors import ContentBlocked
from gateway.messages import choice_pieces, input_pieces, last_user_text, replace_choice, validate_chat_request
from gateway.metrics import Metrics
from gateway.pipeline import Decision, Moderator
from gateway.policystore import PolicyStore
from gateway.settings import Settings
from gateway.streaming import StreamModerator, passthrough
from gateway.upstream import Upstream
from guard.policies import Direction, GuardSettings, PolicySet
from guard.registry import build_guard
from guard.verdict import Guard, Turn

log = structlog.get_logger("rsafe.gateway")


@dataclass(slots=True)
class RequestContext:
    request_id: str
    route: str
    key_id: str | None = None
    client_auth: str | None = None
    model: str | None = None


def guard_settings(settings: Settings, policies: PolicySet) -> GuardSettings:
    """policies.yaml's guard section, with the CLI/environment overrides applied."""
    base = policies.settings.guard
    options = dict(base.options)
    if settings.guard_url:
        options["url"] = settings.guard_url
    if settings.guard_model:
        options["model"] = settings.guard_model
    return GuardSettings(backend=settings.guard or base.backend, timeout_s=base.timeout_s, options=options)


def make_guard(settings: Settings, policies: PolicySet) -> Guard | None:
    """The model guard for `engine: model` policies; None when no such policy exists."""
    if not any(p.engine == "model" and p.enabled for p in policies.policies):
        return None
    gs = guard_settings(settings, policies)
    return build_guard(gs.backend, gs.options, policies)


class Gateway:
    def __init__(self, settings: Settings, upstream: Upstream | None = None, guard: Guard | None = None) -> None:
        self.settings = settings
        self.store = PolicyStore(settings.policies, settings.policies_poll_s)
        policies = self.store.current
        self._injected_guard = guard is not None
        self.moderator = Moderator(guard if guard is not None else make_guard(settings, policies), policies.settings.guard.timeout_s)
        self.upstream = upstream or Upstream(settings)
        self.blocklog = BlockLog(settings.block_log, settings.block_log_max_bytes, settings.block_log_backups)
        self.metrics = Metrics()
        self.store.on_change(self._policies_changed)
        self.started_at = time.time()

    @property
    def policies(self) -> PolicySet:
        return self.store.current

    async def _policies_changed(self, old: PolicySet, new: PolicySet) -> None:
        self.metrics.policy_reloads.labels("ok").inc()
        self.moderator.timeout_s = new.settings.guard.timeout_s
        if self._injected_guard or guard_settings(self.settings, old) == guard_settings(self.settings, new):
            return
        guard = await asyncio.to_thread(make_guard, self.settings, new)
        previous, self.moderator.model_guard = self.moderator.model_guard, guard
        if previous is not None:
            await previous.aclose()

    async def start(self) -> None:
        self.store.start()

    async def aclose(self) -> None:
        await self.store.stop()
        await self.moderator.aclose()
        await self.upstream.aclose()
        self.blocklog.close()

    # --- moderation ------------------------------------------------------------------
    async def moderate(
        self, ctx: RequestContext, direction: Direction, conversation: tuple[Turn, ...], pieces: list[str]
    ) -> Decision:
        policies = self.policies
        decision = await self.moderator.check(
            policies, direction, conversation, pieces, model=ctx.model, key_id=ctx.key_id
        )
        self.metrics.observe(decision)
        if decision.notable or policies.settings.log_allowed:
            content = "\n".join(pieces)
            self.blocklog.record(
                decision, request_id=ctx.request_id, route=ctx.route, model=ctx.model, key_id=ctx.key_id,
                content=content, log_content=policies.settings.log_content, policy_version=policies.version,
            )
        if decision.error:
            log.warning(
                "guard_failure", request_id=ctx.request_id, direction=direction.value, error=decision.error,
                action=decision.action, fail_open=decision.fail_open,
            )
        return decision

    async def check_input(self, ctx: RequestContext, messages: list[dict[str, Any]]) -> tuple[Decision, tuple[Turn, ...]]:
        turns, pieces = input_pieces(messages)
        decision = await self.moderate(ctx, Direction.INPUT, turns, [p.text for p in pieces])
        if decision.blocked:
            assert decision.blocking is not None
            raise ContentBlocked(decision.message(), param=decision.blocking.id)
        for index, text in decision.rewrites.items():
            pieces[index].write(text)
        return decision, turns

    # --- chat completions -------------------------------------------------------------
    async def chat(self, ctx: RequestContext, body: dict[str, Any], raw: bytes) -> tuple[Any, dict[str, str]]:
        """Returns (JSON body or an async iterator of SSE bytes, response headers)."""
        messages = validate_chat_request(body)
        ctx.model = body["model"]
        decision_in, turns = await self.check_input(ctx, messages)
        headers = {
            "x-rsafe-policy-version": self.policies.version,
            "x-rsafe-policies-checked": ",".join(decision_in.checked),
            "x-rsafe-input-decision": decision_in.action,
        }
        forward_raw = None if decision_in.rewrites else raw
        start = time.perf_counter()
        if body.get("stream"):
            events = await self.upstream.stream("/chat/completions", body, ctx.client_auth)
            self.metrics.upstream_latency.labels(ctx.route).observe(time.perf_counter() - start)
            return self._stream_output(ctx, turns, events), headers
        response = await self.upstream.post("/chat/completions", body, forward_raw, ctx.client_auth)
        self.metrics.upstream_latency.labels(ctx.route).observe(time.perf_counter() - start)
        headers["x-rsafe-output-decision"] = await self._moderate_choices(ctx, turns, response)
        return response, headers

    async def _moderate_choices(self, ctx: RequestContext, turns: tuple[Turn, ...], response: dict[str, Any]) -> str:
        choices = [c for c in response.get("choices") or [] if isinstance(c, dict)]
        user = last_user_text(turns)

        async def one(choice: dict[str, Any]) -> str:
            pieces = choice_pieces(choice)
            if not pieces:
                return "allow"
            text = "\n".join(p.text for p in pieces)
            conversation = ((Turn("user", user),) if user else ()) + (Turn("assistant", text),)
            decision = await self.moderate(ctx, Direction.OUTPUT, conversation, [p.text for p in pieces])
            if decision.blocked:
                replace_choice(choice, decision.message())
            else:
                for index, new in decision.rewrites.items():
                    pieces[index].write(new)
            return decision.action

        actions = await asyncio.gather(*(one(c) for c in choices))
        rank = ["allow", "flag", "rewrite", "block"]
        return max(actions, key=rank.index, default="allow")

    def _stream_output(self, ctx: RequestContext, turns: tuple[Turn, ...], events: AsyncIterator[Any]) -> AsyncIterator[bytes]:
        user = last_user_text(turns)
        context = (Turn("user", user),) if user else ()

        async def check(text: str, pieces: list[str]) -> Decision:
            self.metrics.stream_windows.inc()
            return await self.moderate(ctx, Direction.OUTPUT, context + (Turn("assistant", text),), pieces)

        if not self.policies.active(Direction.OUTPUT, ctx.model, ctx.key_id):
            return passthrough(events)
        return StreamModerator(self.policies.settings.stream, check).run(events)

