"""The Guard protocol and the typed request/verdict it speaks.

A guard receives a conversation slice (`CheckRequest`) and the policies in force,
and answers a `Verdict`: one `PolicyResult` per policy it judged, plus what it
has to say about how (reasoning, latency, which path decided). A guard that
cannot judge raises `guard.errors.GuardFailure` (or any exception): the pipeline
turns that into each policy's failure mode. A guard never returns "allowed"
for a policy it did not judge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from guard.policies import Direction, Policy

Role = Literal["user", "assistant", "tool", "system"]


@dataclass(frozen=True, slots=True)
class Turn:
    role: Role
    text: str


@dataclass(frozen=True, slots=True)
class CheckRequest:
    """What to judge.

    `conversation` is what the guard reads. For an input check every turn is judged,
    whatever its role (system and developer prompts, tool results and assistant turns
    the client supplied all reach the model); for an output check the judged turn is
    the last (assistant) turn, the turns before it are context.
    """

    direction: Direction
    conversation: tuple[Turn, ...]
    policies: tuple[Policy, ...]
    policy_version: str = ""

    @property
    def judged(self) -> tuple[Turn, ...]:
        if self.direction is Direction.OUTPUT:
            return self.conversation[-1:]
        return self.conversation

    @property
    def content(self) -> str:
        """The judged text as one string (what a single-text classifier reads)."""
        return "\n\n".join(t.text for t in self.judged)

    @property
    def context(self) -> str:
        """For output checks: the user turn the judged reply answers ('' if none)."""
        if self.direction is Direction.OUTPUT:
            for turn in reversed(self.conversation[:-1]):
                if turn.role == "user":
                    return turn.text
        return ""


@dataclass(frozen=True, slots=True)
class Span:
    """A matched region of the judged text: `start:end` index into `CheckRequest.content`."""

    start: int
    end: int
    label: str


@dataclass(frozen=True, slots=True)
class PolicyResult:
    policy_id: str
    violated: bool
    score: float | None = None  # calibrated probability of violation, when the guard has one
    spans: tuple[Span, ...] = ()


@dataclass(slots=True)
class Verdict:
    backend: str
    results: dict[str, PolicyResult] = field(default_factory=dict)
    reasoning: str | None = None
    latency_ms: float = 0.0
    decided_by: str | None = None  # cascade: which path decided; otherwise the backend
    truncated: bool = False  # the content was longer than the guard reads
    cached: bool = False

    @property
    def violated(self) -> list[str]:
        return [pid for pid, r in self.results.items() if r.violated]


@runtime_checkable
class Guard(Protocol):
    """A backend. `check` must not block the event loop (run model code in a thread)."""

    name: str

    async def check(self, request: CheckRequest) -> Verdict: ...

    async def aclose(self) -> None: ...
