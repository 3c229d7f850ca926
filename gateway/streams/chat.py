"""Output moderation of streams: the hold-back window, and the chat/completions stream.

Modes (policies.yaml `settings.stream.mode`):
- `window` (default): text is held back until the guard has passed it. Windows grow:
  the first is `first_window_chars` (the first words appear quickly), each next one
  doubles, up to `window_chars`. When a stream holds `window + overlap_chars`
  unchecked characters, the guard reads the last `window_chars` already released
  (context) plus everything held; on a
  pass all but the last `overlap_chars` are released, so text split across chunks
  or windows is always seen whole by a later check before it goes out. The tail
  is checked before the finish. Nothing after the last approved window reaches
  the client.
- `buffer`: nothing is released until the whole reply has been checked.
- `async`: text goes out at once and the stream is cut as soon as a check fails
  (up to one window of exposure; for users who prefer speed).

`Window` is the mechanism, one per moderated text stream (a chat choice, a
completions choice, a Responses output part). `ChatStream` applies it to chat and
legacy completions chunks; `gateway/streams/responses.py` to Responses API events.

A cut upstream stream (it stopped before every choice had its finish reason, or it broke) is
never passed off as complete: what is held back gets its final check, what passes is released,
and the stream ends with an OpenAI-shaped error event (`{"error": {...}}`, which the openai SDK
raises as `APIError`), or with `content_filter` if the final check blocks what was held;
`on_cut(error)` is told either way (the service logs it to the block log).
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.errors import GatewayError, UpstreamStreamCut
from gateway.pipeline import Decision
from gateway.upstream import DONE
from guard.policies import StreamSettings
from guard.verdict import Turn

# check(text_under_judgement, pieces) -> Decision ; the caller binds policies, context and logging.
CheckFn = Callable[[str, list[str]], Awaitable[Decision]]
# on_cut(error): the upstream stream was cut (the caller logs it).
CutFn = Callable[[GatewayError], None]

DONE_LINE = b"data: [DONE]\n\n"


def sse(event: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(event) + b"\n\n"


def prompt_estimate(turns: tuple[Turn, ...]) -> int:
    """Prompt tokens, estimated at 4 characters a token (for a usage chunk the upstream never sent)."""
    return math.ceil(sum(len(t.text) for t in turns) / 4)


def cut_error(error: GatewayError | None) -> GatewayError:
    """What a cut stream is reported as: the error it broke with, or that it just stopped."""
    return error or UpstreamStreamCut("the upstream stream ended before the reply was complete")


class Window:
    """Hold-back moderation of one growing text."""

    def __init__(self, settings: StreamSettings, check: CheckFn, holdback: Any = None) -> None:
        self.mode = settings.mode
        self.size = settings.window_chars
        self.overlap = settings.overlap_chars
        self.next = min(settings.first_window_chars, settings.window_chars)
        self.check = check
        self.held = ""
        # Released text re-read with each check: the last window's worth (at least the overlap),
        # so a classifier judges whole sentences rather than a 24-character fragment.
        self.tail_chars = max(self.overlap, self.size)
        self.tail = ""
        self.unchecked_since: float | None = None
        self.holdback = holdback  # a sink with .append(seconds): how long each released text waited

    def _released(self, text: str) -> str:
        if text:
            self.tail = (self.tail + text)[-self.tail_chars :]
        if text and self.holdback is not None and self.unchecked_since is not None:
            self.holdback.append(time.perf_counter() - self.unchecked_since)
        self.unchecked_since = time.perf_counter() if self.held else None
        return text

    async def feed(self, text: str) -> tuple[str, Decision | None]:
        """Add text; returns (text to release now, the blocking decision if the stream must end)."""
        if not text:
            return "", None
        if self.unchecked_since is None:
            self.unchecked_since = time.perf_counter()
        self.held += text
        if self.mode == "async":
            out = text
            if len(self.held) >= self.size:
                decision = await self._check(self.held, [self.held])
                self.held = self.held[-self.overlap :] if self.overlap else ""
                if decision.blocked:
                    return out, decision
            return self._released(out), None
        if self.mode == "window" and len(self.held) >= self.next + self.overlap:
            self.next = min(self.size, self.next * 2)
            decision = await self._check(self.tail + self.held, [self.held])
            if decision.blocked:
                self.held = ""
                return "", decision
            held = decision.rewrites.get(0, self.held)
            if 0 in decision.rewrites:
                self.held = ""
                return self._released(held), None
            keep = min(self.overlap, len(held))
            out, self.held = held[: len(held) - keep], held[len(held) - keep :]
            return self._released(out), None
        return "", None

    async def finish(self, extra: list[str] | None = None) -> tuple[str, Decision | None, dict[int, str]]:
        """Check what is left (plus `extra` texts, e.g. tool-call arguments, as pieces 1..n).
        Returns (text to release, blocking decision or None, rewrites of the extra pieces)."""
        extra = [e for e in (extra or []) if e]
        if not self.held and not extra:
            return "", None, {}
        if self.mode == "async":
            decision = await self._check(self.held + "".join("\n" + e for e in extra), [self.held, *extra])
            self.held = ""
            if decision.blocked:
                return "", decision, {}
            return "", None, {i - 1: t for i, t in decision.rewrites.items() if i > 0}
        text = self.tail + self.held + "".join("\n" + e for e in extra)
        decision = await self._check(text, [self.held, *extra])
        held, self.held = decision.rewrites.get(0, self.held), ""
        if decision.blocked:
            return "", decision, {}
        return self._released(held), None, {i - 1: t for i, t in decision.rewrites.items() if i > 0}

    async def _check(self, text: str, pieces: list[str]) -> Decision:
        return await self.check(text, pieces)


@dataclass(slots=True)
class _Choice:
    index: int
    window: Window
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    ended: bool = False
    released: bool = False  # some text of this choice has gone out


class ChatStream:
    """Moderates `chat.completion.chunk` streams (`kind="chat"`) and legacy `text_completion`
    streams (`kind="completions"`), one `Window` per choice.

    Tool-call deltas are accumulated per choice and released, checked, with the finish
    chunk. Chunks with no text (role, usage) pass through. On a block the choice ends with
    `finish_reason: "content_filter"`, the policy message kept apart from the text already
    released (`block_message`: in `delta.refusal`, or in a content chunk of its own after a
    blank line; legacy completions have no refusal field); when every choice has ended that way
    the upstream is closed, the usage chunk is sent if the client asked for one (`prompt_tokens`
    is then the prompt's estimate: the upstream never sent its count) and then `data: [DONE]`.
    """

    def __init__(self, settings: StreamSettings, check: CheckFn, kind: str = "chat", holdback: Any = None,
                 on_cut: CutFn | None = None, prompt_tokens: int | None = None) -> None:
        self.settings = settings
        self.check = check
        self.kind = kind
        self.holdback = holdback
        self.on_cut = on_cut
        self.choices: dict[int, _Choice] = {}
        self.template: dict[str, Any] = {}
        self.cut = False
        self.prompt_tokens = prompt_tokens  # None: the client did not ask for usage
        self.deltas = 0  # upstream text deltas: about one token each from OpenAI-compatible servers
        self.usage: dict[str, Any] | None = None  # the last usage an upstream chunk carried

    def _chunk(self, index: int, text: str | None = None, finish: str | None = None,
               tool_calls: list[dict[str, Any]] | None = None, refusal: str | None = None) -> bytes:
        if self.kind == "chat":
            delta: dict[str, Any] = {}
            if text:
                delta["content"] = text
            if refusal:
                delta["refusal"] = refusal
            if tool_calls:
                delta["tool_calls"] = tool_calls
            choice = {"index": index, "delta": delta, "finish_reason": finish}
        else:
            choice = {"index": index, "text": text or "", "logprobs": None, "finish_reason": finish}
        return sse({**self.template, "choices": [choice]})

    def _end(self, state: _Choice, decision: Decision) -> list[bytes]:
        state.ended = True
        self.cut = True
        message, out = decision.message(), []
        if message and self.kind == "chat" and self.settings.block_message == "refusal":
            out.append(self._chunk(state.index, refusal=message))
        elif message:
            out.append(self._chunk(state.index, ("\n\n" if state.released else "") + message))
        out.append(self._chunk(state.index, finish="content_filter"))
        if self.prompt_tokens is not None and all(c.ended for c in self.choices.values()):
            out.append(self._usage_chunk())  # the upstream is closed now: its usage chunk never comes
        return out

    def _usage_chunk(self) -> bytes:
        usage = self.usage or {"prompt_tokens": self.prompt_tokens or 0, "completion_tokens": self.deltas,
                               "total_tokens": (self.prompt_tokens or 0) + self.deltas, "rsafe_estimated": True}
        return sse({**self.template, "choices": [], "usage": usage})

    def run(self, events: AsyncIterator[Any]) -> AsyncIterator[bytes]:
        # every choice ended by a block: close the upstream now
        return drive(events, self._on_event, lambda: self.cut and all(c.ended for c in self.choices.values()), DONE_LINE,
                     self._on_end)

    async def _on_end(self, done: bool, error: GatewayError | None) -> list[bytes]:
        """Complete: every choice finished (with `[DONE]`, or without it when nothing is missing).
        Cut: held text gets its final check and what passes goes out (an unfinished tool call
        never does: it could be executed half-written), then the error event."""
        open_choices = [c for c in self.choices.values() if not c.ended]
        if error is None and not open_choices and (done or self.choices):
            return [DONE_LINE]
        out: list[bytes] = []
        for state in open_choices:
            released, blocked, _ = await state.window.finish()
            if blocked is not None:
                out += self._end(state, blocked)
            elif released:
                state.released = True
                out.append(self._chunk(state.index, released))
        error = cut_error(error)
        if self.on_cut is not None:
            self.on_cut(error)
        if open_choices and all(c.ended for c in open_choices):
            return [*out, DONE_LINE]  # what was left was blocked: that is how those choices end
        return [*out, sse(error.body()), DONE_LINE]

    async def _on_event(self, event: dict[str, Any]) -> list[bytes]:
        for key in ("id", "object", "created", "model", "system_fingerprint"):
            if key in event:
                self.template[key] = event[key]
        if isinstance(event.get("usage"), dict):
            self.usage = event["usage"]
        choices = event.get("choices") or []
        if not choices:
            return [sse(event)]  # the usage chunk and the like
        out: list[bytes] = []
        passthrough = []
        for choice in choices:
            index = choice.get("index", 0)
            state = self.choices.get(index)
            if state is None:
                state = self.choices[index] = _Choice(index, Window(self.settings, self.check, self.holdback))
            if state.ended:
                continue
            if self.kind == "chat":
                delta = choice.get("delta") or {}
                text, calls = delta.get("content") or "", delta.get("tool_calls") or []
                if not text and not calls and any(v is not None for k, v in delta.items()) and not choice.get("finish_reason"):
                    passthrough.append(choice)  # the role chunk
            else:
                text, calls = choice.get("text") or "", []
            for call in calls:
                _merge_call(state.tool_calls, call)
            if text:
                self.deltas += 1
                released, blocked = await state.window.feed(text)
                if released:
                    state.released = True
                    out.append(self._chunk(index, released))
                if blocked is not None:
                    out += self._end(state, blocked)
                    continue
            if choice.get("finish_reason"):
                out += await self._finish(state, choice["finish_reason"])
        if passthrough:
            out.insert(0, sse({**event, "choices": passthrough}))
        return out

    async def _finish(self, state: _Choice, reason: str) -> list[bytes]:
        calls = [state.tool_calls[i] for i in sorted(state.tool_calls)]
        released, blocked, rewrites = await state.window.finish([c["function"]["arguments"] for c in calls])
        if blocked is not None:
            return self._end(state, blocked)
        state.released = state.released or bool(released)
        out = [self._chunk(state.index, released)] if released else []
        if calls:
            args = [c for c in calls if c["function"]["arguments"]]
            for i, text in rewrites.items():
                args[i]["function"]["arguments"] = text
            out.append(self._chunk(state.index, tool_calls=[{"index": i, **c} for i, c in enumerate(calls)]))
        state.ended = True
        out.append(self._chunk(state.index, finish=reason))
        return out


def _merge_call(calls: dict[int, dict[str, Any]], call: dict[str, Any]) -> None:
    slot = calls.setdefault(call.get("index", 0), {"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
    if call.get("id"):
        slot["id"] = call["id"]
    if call.get("type"):
        slot["type"] = call["type"]
    fn = call.get("function") or {}
    slot["function"]["name"] += fn.get("name") or ""
    slot["function"]["arguments"] += fn.get("arguments") or ""


def sse_named(event: dict[str, Any]) -> bytes:
    """Responses API events carry their type as the SSE event name too."""
    return b"event: " + str(event.get("type", "message")).encode() + b"\n" + sse(event)


EndFn = Callable[[bool, GatewayError | None], Awaitable[list[bytes]]]


async def drive(
    events: AsyncIterator[Any],
    on_event: Callable[[dict[str, Any]], Awaitable[list[bytes]]],
    finished: Callable[[], bool] = lambda: False,
    tail: bytes | None = None,
    on_end: EndFn | None = None,
) -> AsyncIterator[bytes]:
    """Pump upstream events through `on_event` until the upstream stops or `finished()` (a block
    ended the stream: `tail` follows). When the upstream stops on its own, `on_end(done, error)`
    writes the end: `done` says it sent `[DONE]`, `error` is the `GatewayError` it broke with.
    The upstream stream is closed however this ends (block, client gone, error)."""
    try:
        iterator = aiter(events)
        done, error = False, None
        while True:
            try:
                event = await anext(iterator)
            except StopAsyncIteration:
                break
            except GatewayError as exc:
                if on_end is None:
                    raise
                error = exc
                break
            if event is DONE:
                done = True
                break
            for out in await on_event(event):
                yield out
            if finished():
                if tail is not None:
                    yield tail
                return
        if on_end is not None:
            for out in await on_end(done, error):
                yield out
        elif tail is not None:
            yield tail
    finally:
        close = getattr(events, "aclose", None)
        if close is not None:
            await close()


class Relay:
    """No output policy in force: relay the upstream's events as they come, and still tell a cut
    stream from a complete one (chat: every choice got its finish reason; Responses: a terminal
    event came)."""

    def __init__(self, named: bool = False, on_cut: CutFn | None = None) -> None:
        self.named = named
        self.on_cut = on_cut
        self.open: set[int] = set()  # chat choices seen without their finish reason yet
        self.seen = False
        self.terminal = False
        self.seq = -1

    def run(self, events: AsyncIterator[Any]) -> AsyncIterator[bytes]:
        return drive(events, self._on_event, on_end=self._on_end)

    async def _on_event(self, event: dict[str, Any]) -> list[bytes]:
        if self.named:
            self.terminal = self.terminal or event.get("type") in TERMINAL_EVENTS
            if isinstance(event.get("sequence_number"), int):
                self.seq = event["sequence_number"]
            return [sse_named(event)]
        for choice in event.get("choices") or []:
            index = choice.get("index", 0) if isinstance(choice, dict) else 0
            self.seen = True
            if isinstance(choice, dict) and choice.get("finish_reason"):
                self.open.discard(index)
            else:
                self.open.add(index)
        return [sse(event)]

    async def _on_end(self, done: bool, error: GatewayError | None) -> list[bytes]:
        complete = self.terminal if self.named else not self.open and (done or self.seen)
        if error is None and complete:
            return [] if self.named else [DONE_LINE]
        error = cut_error(error)
        if self.on_cut is not None:
            self.on_cut(error)
        if self.named:
            return [sse_named(responses_error(error, self.seq + 1))]
        return [sse(error.body()), DONE_LINE]


# Events after which a Responses stream is over (`error` is the API's in-band failure).
TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed", "error"})


def responses_error(error: GatewayError, sequence_number: int) -> dict[str, Any]:
    """A Responses `error` event in both shapes: the flat fields the API reference documents, and
    the nested `error` object the live API sends (the one the openai SDK raises `APIError` on)."""
    body = error.body()["error"]
    return {"type": "error", "code": body["code"], "message": body["message"], "param": body["param"],
            "error": body, "sequence_number": sequence_number}


def passthrough(events: AsyncIterator[Any], named: bool = False, on_cut: CutFn | None = None) -> AsyncIterator[bytes]:
    """No output policy in force: relay the upstream's events as they come (see `Relay`)."""
    return Relay(named, on_cut).run(events)
