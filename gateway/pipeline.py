"""The moderation pipeline: run the guards on a slice, merge verdicts into one decision.

Two judges run side by side on every check:
- the configured model guard (embedded, rsafe, cascade...) for `engine: model` policies,
- the patterns guard, per piece of text, for `engine: patterns` policies (it knows spans,
  which is what `rewrite: redact` needs).

Rules that never bend:
- A guard that raises, times out, or leaves a policy out of its verdict has *not* passed
  that policy: its `failure_mode` applies (closed = treated as violated; open = passed,
  and recorded as a fail-open, never as a plain pass).
- Precedence when several policies fire: block > rewrite > flag > allow.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from guard.patterns import INLINE_LIMIT, PatternsGuard, redact
from guard.policies import Action, Direction, FailureMode, Policy, PolicySet
from guard.verdict import CheckRequest, Guard, Span, Turn, Verdict

ACTIONS = ("allow", "flag", "rewrite", "block")  # weakest to strictest: the precedence of actions
_RANK = {a: i for i, a in enumerate(ACTIONS)}
ALL_ENGINES = frozenset({"model", "patterns"})  # what a policy's `engine` can be


def strictest(actions) -> str:
    """The action that wins among several (block > rewrite > flag > allow); allow for none."""
    return max(actions, key=_RANK.__getitem__, default="allow")


@dataclass(slots=True)
class PolicyOutcome:
    policy_id: str
    action: str  # what happened for this policy: block | rewrite | flag | fail_open
    reason: str  # violated | guard_error
    score: float | None = None


@dataclass(slots=True)
class Decision:
    direction: Direction
    action: str = "allow"  # allow | flag | rewrite | block
    outcomes: list[PolicyOutcome] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    blocking: Policy | None = None
    rewrites: dict[int, str] = field(default_factory=dict)  # piece index -> new text
    backend: str = ""
    decided_by: str | None = None
    reasoning: str | None = None
    latency_ms: float = 0.0
    error: str | None = None
    truncated: bool = False
    cached: bool = False

    @property
    def blocked(self) -> bool:
        return self.action == "block"

    @property
    def policy_ids(self) -> list[str]:
        return [o.policy_id for o in self.outcomes]

    @property
    def fail_open(self) -> list[str]:
        return [o.policy_id for o in self.outcomes if o.action == "fail_open"]

    @property
    def notable(self) -> bool:
        """Worth a block-log line even when the request went through."""
        return self.action != "allow" or bool(self.outcomes) or self.error is not None

    def message(self) -> str:
        return self.blocking.message if self.blocking else ""

    def merge(self, other: Decision) -> Decision:
        """Fold a second check of the same content (another engine) into this one."""
        self.checked += [pid for pid in other.checked if pid not in self.checked]
        seen = {o.policy_id for o in self.outcomes}
        self.outcomes += [o for o in other.outcomes if o.policy_id not in seen]
        if _RANK[other.action] > _RANK[self.action]:
            self.action = other.action
        self.blocking = self.blocking or other.blocking
        for index, text in other.rewrites.items():
            self.rewrites.setdefault(index, text)
        self.backend = self.backend or other.backend
        self.decided_by = self.decided_by or other.decided_by
        self.reasoning = self.reasoning or other.reasoning
        self.error = self.error or other.error
        self.truncated = self.truncated or other.truncated
        self.cached = self.cached and other.cached if self.backend else other.cached
        self.latency_ms += other.latency_ms
        return self


class Moderator:
    """Judges one direction of one request against the policies in force."""

    def __init__(self, model_guard: Guard | None, timeout_s: float) -> None:
        self.model_guard = model_guard
        self.patterns = PatternsGuard()
        self.timeout_s = timeout_s

    @property
    def guard_name(self) -> str | None:
        return self.model_guard.name if self.model_guard is not None else None

    async def aclose(self) -> None:
        if self.model_guard is not None:
            await self.model_guard.aclose()

    async def check(
        self,
        policies: PolicySet,
        direction: Direction,
        conversation: tuple[Turn, ...],
        pieces: Sequence[str],
        *,
        model: str | None = None,
        key_id: str | None = None,
        engines: frozenset[str] = ALL_ENGINES,
        roles: Sequence[str] | None = None,
    ) -> Decision:
        """`engines` narrows the check to one engine (concurrent input mode runs the patterns
        first, synchronously, so redaction happens before anything leaves for the upstream).
        `roles`: each piece's turn role (user, assistant, tool, system), for patterns policies
        with `roles:`; None scans every piece for every policy."""
        start = time.perf_counter()
        active = tuple(p for p in policies.active(direction, model, key_id) if p.engine in engines)
        model_policies = tuple(p for p in active if p.engine == "model")
        pattern_policies = tuple(p for p in active if p.engine == "patterns")
        decision = Decision(direction, checked=[p.id for p in active])

        model_task = None
        if model_policies and conversation:
            model_task = asyncio.ensure_future(
                self._judge(CheckRequest(direction, conversation, model_policies, policies.version))
            )
        try:
            if pattern_policies:
                await self._apply_patterns(decision, pattern_policies, pieces, roles)
            if model_task is not None:
                verdict, error = await model_task
                self._apply_model(decision, model_policies, verdict, error, len(pieces))
        finally:
            if model_task is not None and not model_task.done():
                model_task.cancel()
        decision.latency_ms = (time.perf_counter() - start) * 1000
        return decision

    async def verdict(self, request: CheckRequest) -> tuple[Verdict | None, str | None]:
        """Raw verdict for `/v1/moderations`: model policies by the model guard, patterns policies
        by the patterns guard, merged; (None, error) when the model guard failed."""
        model = tuple(p for p in request.policies if p.engine == "model")
        patterns = tuple(p for p in request.policies if p.engine == "patterns")
        merged = Verdict("patterns", decided_by="patterns")
        if patterns:
            merged = await self.patterns.check(CheckRequest(request.direction, request.conversation, patterns))
        if not model:
            return merged, None
        verdict, error = await self._judge(CheckRequest(request.direction, request.conversation, model, request.policy_version))
        if verdict is None:
            return None, error
        verdict.results.update(merged.results)
        return verdict, None

    async def _judge(self, request: CheckRequest) -> tuple[Verdict | None, str | None]:
        if self.model_guard is None:
            return None, "no model guard is configured for the model policies"
        try:
            verdict = await asyncio.wait_for(self.model_guard.check(request), self.timeout_s)
        except asyncio.TimeoutError:
            return None, f"guard timed out after {self.timeout_s:g}s"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any guard failure is a failure mode, never a pass
            return None, f"guard failed: {type(exc).__name__}: {exc}"
        if not isinstance(verdict, Verdict):
            return None, f"guard returned {type(verdict).__name__}, not a Verdict"
        return verdict, None

    async def _apply_patterns(self, decision: Decision, policies: tuple[Policy, ...], pieces: Sequence[str],
                              roles: Sequence[str] | None = None) -> None:
        # Linear-time (RE2), but a 4 MiB body is still tens of milliseconds to seconds of
        # CPU: long texts are scanned in a worker thread so other requests keep moving.
        if sum(len(text) for text in pieces) > INLINE_LIMIT:
            scanned = await asyncio.to_thread(self._scan_pieces, policies, pieces, roles)
        else:
            scanned = self._scan_pieces(policies, pieces, roles)
        for index, (spans_by_policy, redacted) in enumerate(scanned):
            for policy in policies:
                if not spans_by_policy.get(policy.id):
                    continue
                self._violate(decision, policy, "violated", 1.0)
                if policy.action is Action.REWRITE and policy.rewrite != "redact":
                    decision.rewrites[index] = policy.message
            if redacted is not None and index not in decision.rewrites:
                decision.rewrites[index] = redacted

    def _scan_pieces(
        self, policies: tuple[Policy, ...], pieces: Sequence[str], roles: Sequence[str] | None = None
    ) -> list[tuple[dict[str, tuple[Span, ...]], str | None]]:
        """Per piece: the spans per policy, and the piece with the `redact` policies' spans
        masked (None when nothing is to be masked). Pure, so it can run in a thread."""
        out = []
        for i, text in enumerate(pieces):
            spans_by_policy = self.patterns.scan(policies, text, roles[i] if roles is not None else None)
            redactions = [
                span
                for policy in policies
                if policy.action is Action.REWRITE and policy.rewrite == "redact"
                for span in spans_by_policy.get(policy.id, ())
            ]
            out.append((spans_by_policy, redact(text, redactions) if redactions else None))
        return out

    def _apply_model(
        self,
        decision: Decision,
        policies: tuple[Policy, ...],
        verdict: Verdict | None,
        error: str | None,
        n_pieces: int,
    ) -> None:
        if verdict is not None:
            decision.backend = verdict.backend
            decision.decided_by = verdict.decided_by or verdict.backend
            decision.reasoning = verdict.reasoning
            decision.truncated = verdict.truncated
            decision.cached = verdict.cached
        else:
            decision.backend = self.guard_name or ""
        missing = [p.id for p in policies if verdict is not None and p.id not in verdict.results]
        if error is None and missing:
            error = f"guard gave no verdict for {', '.join(missing)}"
        # Text the guard did not read was not judged: a policy it did not find violated in the
        # part it read is not passed either; its failure mode decides (closed by default).
        unread = verdict is not None and verdict.truncated
        if error is None and unread:
            error = "content longer than the guard reads (truncated): the failure mode applies to the unread part"
        decision.error = error
        for policy in policies:
            result = verdict.results.get(policy.id) if verdict is not None else None
            if result is None or (unread and not result.violated):
                # a guard fault is logged as guard_error (what metrics and log stats count); the
                # block log's `truncated` and `error` say when it was text left unread
                if policy.failure_mode is FailureMode.OPEN:
                    decision.outcomes.append(PolicyOutcome(policy.id, "fail_open", "guard_error"))
                else:
                    self._violate(decision, policy, "guard_error", None)
                    if policy.action is Action.REWRITE:
                        self._replace_all(decision, policy, n_pieces)
                continue
            if result.violated:
                self._violate(decision, policy, "violated", result.score)
                if policy.action is Action.REWRITE:
                    self._replace_all(decision, policy, n_pieces)

    @staticmethod
    def _replace_all(decision: Decision, policy: Policy, n_pieces: int) -> None:
        for index in range(n_pieces):
            decision.rewrites[index] = policy.message

    @staticmethod
    def _violate(decision: Decision, policy: Policy, reason: str, score: float | None) -> None:
        action = policy.action.value
        # A redaction that failed cannot know its spans: closing means blocking.
        if reason == "guard_error" and policy.action is Action.REWRITE and policy.rewrite == "redact":
            action = "block"
        if not any(o.policy_id == policy.id for o in decision.outcomes):
            decision.outcomes.append(PolicyOutcome(policy.id, action, reason, score))
        if _RANK[action] > _RANK[decision.action]:
            decision.action = action
        if action == "block" and decision.blocking is None:
            decision.blocking = policy
