"""The gateway service: everything a route handler needs, built once per app.

`Gateway` owns the policy store, the moderator (guards), the upstream client,
the block log and the metrics, and implements the moderated chat completion.
Route handlers in `gateway/routes.py` stay a few lines each.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

from gateway.apis import Api
from gateway.blocked_reply import blocked_reply
from gateway.blocklog.retention import RetentionTask
from gateway.blocklog.writer import BlockLog
from gateway.commands.checkreport import remote_check
from gateway.errors import BadRequest, ContentBlocked, GatewayError
from gateway.messages import Piece, guard_role, last_user_text, rebuild_turns
from gateway.metrics import Metrics
from gateway.moderations import to_openai_moderation
from gateway.pipeline import ALL_ENGINES, Decision, Moderator, strictest
from gateway.policystore import PolicyStore
from gateway.settings import Settings
from gateway.streams.chat import ChatStream, passthrough, prompt_estimate
from gateway.streams.responses import ResponsesStream
from gateway.upstream import Upstream
from guard.cache import build_cached
from guard.policies import Direction, GuardSettings, PolicySet
from guard.registry import build_guard
from guard.verdict import CheckRequest, Guard, Turn, Verdict

log = structlog.get_logger("rsafe.gateway")
T = TypeVar("T")


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
    if settings.guard_api_key is not None:
        options["api_key"] = settings.guard_api_key.get_secret_value()
    return GuardSettings(backend=settings.guard or base.backend, timeout_s=base.timeout_s, options=options)


def needs_model_guard(policies: PolicySet) -> bool:
    """Whether some enabled policy is judged by the model guard (`engine: model`)."""
    return any(p.engine == "model" and p.enabled for p in policies.policies)


def make_guard(settings: Settings, policies: PolicySet) -> Guard | None:
    """The model guard for `engine: model` policies; None when no such policy exists."""
    if not needs_model_guard(policies):
        return None
    gs = guard_settings(settings, policies)
    if gs.backend == "patterns":
        return build_guard(gs.backend, gs.options, policies)
    return build_cached(gs.backend, gs.options, policies)  # verdict cache: options.cache_size (0 = off)


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
        self.metrics.bind_store(self.store)  # reloads ok/rejected, version, loaded-at, read at scrape time
        self.retention = RetentionTask(settings.block_log, settings.block_log_retention_days)
        self.store.on_change(self._policies_changed)
        self.started_at = time.time()

    @property
    def policies(self) -> PolicySet:
        return self.store.current

    async def _policies_changed(self, old: PolicySet, new: PolicySet) -> None:
        self.moderator.timeout_s = new.settings.guard.timeout_s
        if self._injected_guard or guard_settings(self.settings, old) == guard_settings(self.settings, new):
            return
        guard = await asyncio.to_thread(make_guard, self.settings, new)
        previous, self.moderator.model_guard = self.moderator.model_guard, guard
        if previous is not None:
            await previous.aclose()

    async def start(self) -> None:
        self.retention.start()
        self.store.start()

    async def aclose(self) -> None:
        await self.retention.stop()
        await self.store.stop()
        await self.moderator.aclose()
        await self.upstream.aclose()
        self.blocklog.close()

    # --- moderation ------------------------------------------------------------------
    async def _check(self, ctx: RequestContext, direction: Direction, conversation: tuple[Turn, ...],
                     pieces: list[str], engines: frozenset[str] = ALL_ENGINES, roles: list[str] | None = None) -> Decision:
        return await self.moderator.check(
            self.policies, direction, conversation, pieces, model=ctx.model, key_id=ctx.key_id, engines=engines,
            roles=roles,
        )

    def record(self, ctx: RequestContext, decision: Decision, pieces: list[str]) -> None:
        """Metrics, the block log, and a warning when a guard failed."""
        policies = self.policies
        self.metrics.observe(decision)
        if decision.notable or policies.settings.log_allowed:
            self.blocklog.record(
                decision, request_id=ctx.request_id, route=ctx.route, model=ctx.model, key_id=ctx.key_id,
                content="\n".join(pieces), log_content=policies.settings.log_content, policy_version=policies.version,
            )
        if decision.error:
            log.warning(
                "guard_failure", request_id=ctx.request_id, direction=decision.direction.value,
                error=decision.error, action=decision.action, fail_open=decision.fail_open,
            )

    async def moderate(self, ctx: RequestContext, direction: Direction, conversation: tuple[Turn, ...],
                       pieces: list[str], roles: list[str] | None = None) -> Decision:
        decision = await self._check(ctx, direction, conversation, pieces, roles=roles)
        self.record(ctx, decision, pieces)
        return decision

    async def guarded_call(self, ctx: RequestContext, turns: tuple[Turn, ...], pieces: list[Piece],
                           call: Callable[[bool], Awaitable[T]]) -> tuple[T, Decision]:
        """Input check + upstream call. `call(rewritten)` makes the upstream call.

        `before` (`settings.input_mode`, or any active input policy with `input_mode: before`):
        check, then call. `concurrent`: the patterns (microseconds, and the only
        source of redactions) run first; then the model guard and the upstream call run
        side by side. Nothing from the upstream is used before the check passes; a block
        cancels the call (its connection is closed), a rewrite restarts it with the new text.
        A block raises ContentBlocked carrying the decision's x-rsafe-* headers.
        """
        texts = [p.text for p in pieces]
        roles = [guard_role(p.role) for p in pieces]
        if not texts or self.input_before(ctx):
            decision = await self.moderate(ctx, Direction.INPUT, turns, texts, roles)
            _raise_or_rewrite_input(decision, pieces, self.input_headers(decision))
            return await call(bool(decision.rewrites)), decision
        decision = await self._check(ctx, Direction.INPUT, turns, texts, frozenset({"patterns"}), roles)
        if decision.blocked:
            self.record(ctx, decision, texts)
        _raise_or_rewrite_input(decision, pieces, self.input_headers(decision))
        if decision.rewrites:
            turns, texts = rebuild_turns(turns, pieces), [p.text for p in pieces]
        upstream = asyncio.ensure_future(call(bool(decision.rewrites)))
        try:
            model_decision = await self._check(ctx, Direction.INPUT, turns, texts, frozenset({"model"}))
            decision.merge(model_decision)
            self.record(ctx, decision, texts)
            _raise_or_rewrite_input(model_decision, pieces, self.input_headers(decision))
            if model_decision.rewrites:
                upstream.cancel()
                await _drain(upstream)
                upstream = asyncio.ensure_future(call(True))
            return await upstream, decision
        finally:
            if not upstream.done():
                upstream.cancel()
                await _drain(upstream)
            elif not upstream.cancelled() and upstream.exception() is None and decision.blocked:
                await _close_result(upstream.result())

    def input_before(self, ctx: RequestContext) -> bool:
        """Must the input check complete before the upstream is called? Yes under
        `settings.input_mode: before`, or when an input policy active for this request (after the
        route rules) has `input_mode: before`: what it covers must never reach the provider."""
        policies = self.policies
        if policies.settings.input_mode == "before":
            return True
        if not any(p.input_mode == "before" for p in policies.policies):  # the common case: no scan
            return False
        return any(p.input_mode == "before" for p in policies.active(Direction.INPUT, ctx.model, ctx.key_id))

    def input_headers(self, decision: Decision) -> dict[str, str]:
        """The x-rsafe-* headers of an input decision (a block's error response carries them too)."""
        return {
            "x-rsafe-policy-version": self.policies.version,
            "x-rsafe-policies-checked": ",".join(decision.checked),
            "x-rsafe-input-decision": decision.action,
        }

    async def moderations(self, ctx: RequestContext, body: Any) -> dict[str, Any]:
        """`POST /v1/moderations`: OpenAI's response shape, keyed by policy id, plus the reasoning."""
        texts = moderation_inputs(body)
        ctx.model = body.get("model") if isinstance(body.get("model"), str) else None
        checked = await remote_check(self, ctx, body, texts)  # `rsafe check --url` (gateway/commands/checkreport.py)
        if checked is not None:
            return checked
        policies = self.policies
        active = policies.active(Direction.INPUT, ctx.model, ctx.key_id)

        async def verdict_for(text: str) -> tuple[Verdict | None, str | None]:
            request = CheckRequest(Direction.INPUT, (Turn("user", text),), active, policies.version)
            return await self.moderator.verdict(request)

        pairs = await asyncio.gather(*(verdict_for(t) for t in texts))
        return to_openai_moderation(
            [v for v, _ in pairs], active, model=ctx.model or "rsafe-" + (self.moderator.guard_name or "patterns"),
            errors=[e for _, e in pairs], request_id="modr-" + ctx.request_id.removeprefix("req_"),
        )

    async def handle(self, ctx: RequestContext, api: Api, body: Any, raw: bytes) -> tuple[Any, dict[str, str]]:
        """One moderated API call. Returns (JSON body or an async iterator of SSE bytes, headers)."""
        turns, pieces = api.read_input(body)
        ctx.model = body["model"]
        stream = bool(body.get("stream")) and api.stream_kind is not None

        async def call(rewritten: bool) -> Any:
            start = time.perf_counter()
            try:
                if stream:
                    return await self.upstream.stream(api.path, body, ctx.client_auth)
                return await self.upstream.post(api.path, body, None if rewritten else raw, ctx.client_auth)
            except GatewayError as exc:
                self.metrics.upstream_errors.labels(exc.code or "error").inc()
                raise
            finally:
                self.metrics.upstream_latency.labels(ctx.route).observe(time.perf_counter() - start)

        try:
            result, decision_in = await self.guarded_call(ctx, turns, pieces, call)
        except ContentBlocked as exc:
            if api.stream_kind is None or self.input_block(ctx, exc.param) != "completion":
                raise
            return blocked_reply(api.stream_kind, body, exc.policy_message, stream), {
                "x-rsafe-policy-version": self.policies.version, "x-rsafe-input-decision": "block"}
        headers = {
            "x-rsafe-policy-version": self.policies.version,
            "x-rsafe-policies-checked": ",".join(decision_in.checked),
            "x-rsafe-input-decision": decision_in.action,
        }
        if stream:
            return self._stream_output(ctx, api.stream_kind, turns, result, body), headers
        headers["x-rsafe-output-decision"] = await self._moderate_output(ctx, api, turns, result)
        return result, headers

    async def _moderate_output(self, ctx: RequestContext, api: Api, turns: tuple[Turn, ...], response: dict[str, Any]) -> str:
        units = api.output_units(response)
        question = _question(turns)

        async def moderate_unit(unit: Any) -> str:
            if not unit.pieces:
                return "allow"
            texts = [p.text for p in unit.pieces]
            reply = Turn("assistant", "\n".join(p.guard_text for p in unit.pieces))
            decision = await self.moderate(ctx, Direction.OUTPUT, question + (reply,), texts)
            if decision.blocked:
                api.block_unit(response, unit, decision.message())
            else:
                for index, new in decision.rewrites.items():
                    unit.pieces[index].write(new)
            return decision.action

        actions = await asyncio.gather(*(moderate_unit(u) for u in units))
        return strictest(actions)

    def input_block(self, ctx: RequestContext, policy_id: str | None) -> str:
        """How an input block is answered: the gateway key's `input_block`, else the policy's."""
        key = next((k for k in self.settings.gateway_keys if k.id == ctx.key_id), None)
        if key is not None and key.input_block is not None:
            return key.input_block
        policy = self.policies.by_id.get(policy_id or "")
        return policy.input_block if policy is not None else "error"

    def _stream_output(self, ctx: RequestContext, kind: str, turns: tuple[Turn, ...], events: AsyncIterator[Any],
                       body: dict[str, Any]) -> AsyncIterator[bytes]:
        question = _question(turns)

        async def check(text: str, pieces: list[str]) -> Decision:
            self.metrics.stream_windows.inc()
            return await self.moderate(ctx, Direction.OUTPUT, question + (Turn("assistant", text),), pieces)

        def cut(error: GatewayError) -> None:
            self.stream_cut(ctx, error)

        if not self.policies.active(Direction.OUTPUT, ctx.model, ctx.key_id):
            return passthrough(events, named=kind == "responses", on_cut=cut)
        settings = self.policies.settings.stream
        if kind == "responses":
            return ResponsesStream(settings, check, self.metrics.holdback, on_cut=cut).run(events)
        options = body.get("stream_options")
        usage = prompt_estimate(turns) if isinstance(options, dict) and options.get("include_usage") else None
        return ChatStream(settings, check, kind, self.metrics.holdback, on_cut=cut, prompt_tokens=usage).run(events)

    def stream_cut(self, ctx: RequestContext, error: GatewayError) -> None:
        """The upstream stream stopped early or broke: counted, logged, and one block-log line."""
        self.metrics.upstream_errors.labels(error.code or "error").inc()
        log.warning("upstream_stream_cut", request_id=ctx.request_id, route=ctx.route, error=error.message)
        self.blocklog.stream_cut(request_id=ctx.request_id, route=ctx.route, model=ctx.model, key_id=ctx.key_id,
                                 error=f"{error.code}: {error.message}", policy_version=self.policies.version)



def moderation_inputs(body: Any) -> list[str]:
    if not isinstance(body, dict) or "input" not in body:
        raise BadRequest("'input' is required", param="input")
    value = body["input"]
    items = value if isinstance(value, list) else [value]
    texts = []
    for item in items:
        if isinstance(item, str):
            texts.append(item)
        elif isinstance(item, dict) and item.get("type") == "text" and isinstance(item.get("text"), str):
            texts.append(item["text"])
        elif isinstance(item, dict) and item.get("type") == "image_url":
            continue  # images are not judged by text guards
        else:
            raise BadRequest("'input' must be a string, an array of strings, or text parts", param="input")
    if not texts:
        raise BadRequest("'input' has no text to moderate", param="input")
    return texts


def _question(turns: tuple[Turn, ...]) -> tuple[Turn, ...]:
    """The user turn an output answers (what an output check reads beside the reply), or none."""
    user = last_user_text(turns)
    return (Turn("user", user),) if user else ()


def _raise_or_rewrite_input(decision: Decision, pieces: list[Piece], headers: dict[str, str] | None = None) -> None:
    """Raise ContentBlocked (with the decision's x-rsafe-* headers) on a block; else write its rewrites into `pieces`."""
    if decision.blocked:
        assert decision.blocking is not None
        blocked = ContentBlocked(decision.message(), param=decision.blocking.id)
        blocked.decision_headers = headers or {}
        raise blocked
    for index, text in decision.rewrites.items():
        pieces[index].write(text)
        pieces[index].text = text


async def _drain(task: asyncio.Future[Any]) -> None:
    try:
        result = await task
    except (asyncio.CancelledError, Exception):  # noqa: BLE001 - a cancelled call's error is moot
        return
    await _close_result(result)


async def _close_result(result: Any) -> None:
    close = getattr(result, "aclose", None)
    if close is not None:
        await close()
