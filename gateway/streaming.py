"""Output moderation of streamed chat completions.

Modes (policies.yaml `settings.stream.mode`):
- `window` (default): text is held back until the guard has passed it. When a
  choice holds `window_chars + overlap_chars` unchecked characters, the guard reads
  the last `overlap_chars` already released (context) plus everything held; on a
  pass all but the last `overlap_chars` are released, so text split across chunks
  or windows is always seen whole by a later check before it goes out. The tail
  is checked before the finish chunk. Nothing after the last approved window
  reaches the client.
- `buffer`: nothing is released until the whole reply has been checked.
- `async`: chunks go out at once; the stream is cut as soon as a check fails
  (up to one window of exposure, documented).

Tool-call deltas are accumulated per choice and released, checked, with the finish
chunk. Each choice (`n > 1`) is moderated on its own. Chunks with no text (role,
usage) pass through. On a block the choice ends with `finish_reason:
"content_filter"`; when every choice has ended the upstream is closed and
`data: [DONE]` is sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.pipeline import Decision
from gateway.upstream import DONE
from guard.policies import StreamSettings

# check(text_under_judgement, pieces) -> Decision ; the caller binds policies, context and logging.
CheckFn = Callable[[str, list[str]], Awaitable[Decision]]

DONE_LINE = b"data: [DONE]\n\n"


def sse(event: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(event) + b"\n\n"


@dataclass(slots=True)
class _Choice:
    index: int
    held: str = ""
    released_tail: str = ""
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    ended: bool = False


class StreamModerator:
    def __init__(self, settings: StreamSettings, check: CheckFn) -> None:
        self.mode = settings.mode
        self.window = settings.window_chars
        self.overlap = settings.overlap_chars
        self.check = check
        self.choices: dict[int, _Choice] = {}
        self.template: dict[str, Any] = {"object": "chat.completion.chunk"}
        self.windows_checked = 0
        self.cut = False  # some choice was ended by a block

    # --- chunk building ---------------------------------------------------------------
    def _chunk(self, index: int, delta: dict[str, Any], finish: str | None = None) -> bytes:
        event = {**self.template, "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}
        return sse(event)

    def _release(self, state: _Choice, text: str) -> list[bytes]:
        if not text:
            return []
        state.released_tail = (state.released_tail + text)[-self.overlap :] if self.overlap else ""
        return [self._chunk(state.index, {"content": text})]

    def _cut(self, state: _Choice, decision: Decision) -> list[bytes]:
        state.ended = True
        state.held = ""
        self.cut = True
        delta = {"content": decision.message()} if decision.message() else {}
        return [self._chunk(state.index, delta, "content_filter")]

    # --- checks ---------------------------------------------------------------------
    async def _judge(self, state: _Choice, final: bool) -> tuple[list[bytes], bool]:
        """Check what `state` holds; returns (chunks to send, still open)."""
        self.windows_checked += 1
        args = "".join(c["function"]["arguments"] for c in state.tool_calls.values()) if final else ""
        text = state.released_tail + state.held + (("\n" + args) if args else "")
        pieces = [state.held] + ([args] if args else [])
        decision = await self.check(text, pieces)
        if decision.blocked:
            return self._cut(state, decision), False
        held = decision.rewrites.get(0, state.held)
        if final or 0 in decision.rewrites:
            release, state.held = held, ""
        else:
            keep = min(self.overlap, len(held))
            release, state.held = held[: len(held) - keep], held[len(held) - keep :]
        if final and 1 in decision.rewrites:
            self._rewrite_args(state, decision.rewrites[1])
        return self._release(state, release), True

    @staticmethod
    def _rewrite_args(state: _Choice, new_args: str) -> None:
        calls = list(state.tool_calls.values())
        for call in calls:
            call["function"]["arguments"] = ""
        if calls:
            calls[0]["function"]["arguments"] = new_args

    # --- the stream -----------------------------------------------------------------
    async def run(self, events: AsyncIterator[Any]) -> AsyncIterator[bytes]:
        try:
            async for event in events:
                if event is DONE:
                    break
                for out in await self._on_event(event):
                    yield out
                if self.choices and all(c.ended for c in self.choices.values()) and self.cut:
                    break
            yield DONE_LINE
        finally:
            close = getattr(events, "aclose", None)
            if close is not None:
                await close()

    async def _on_event(self, event: dict[str, Any]) -> list[bytes]:
        for key in ("id", "object", "created", "model", "system_fingerprint"):
            if key in event:
                self.template[key] = event[key]
        choices = event.get("choices") or []
        if not choices:
            return [sse(event)]  # usage chunk and the like
        out: list[bytes] = []
        passthrough = []
        for choice in choices:
            index = choice.get("index", 0)
            state = self.choices.setdefault(index, _Choice(index))
            if state.ended:
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content") or ""
            calls = delta.get("tool_calls") or []
            other = {k: v for k, v in delta.items() if k not in ("content", "tool_calls") and v is not None}
            if other and not state.held and not text and not calls:
                passthrough.append(choice)
            for call in calls:
                self._merge_call(state, call)
            if text:
                out += await self._on_text(state, text)
            if choice.get("finish_reason") and not state.ended:
                out += await self._on_finish(state, choice["finish_reason"])
        if passthrough:
            out.insert(0, sse({**event, "choices": passthrough}))
        return out

    async def _on_text(self, state: _Choice, text: str) -> list[bytes]:
        if self.mode == "async":
            state.held += text
            out = self._release(state, text)
            if len(state.held) >= self.window:
                self.windows_checked += 1
                decision = await self.check(state.held, [state.held])
                state.held = state.held[-self.overlap :] if self.overlap else ""
                if decision.blocked:
                    return out + self._cut(state, decision)
            return out
        state.held += text
        if self.mode == "window" and len(state.held) >= self.window + self.overlap:
            out, _ = await self._judge(state, final=False)
            return out
        return []

    async def _on_finish(self, state: _Choice, reason: str) -> list[bytes]:
        if self.mode == "async":
            decision = await self.check(state.held, [state.held]) if state.held or state.tool_calls else None
            if decision is not None and decision.blocked:
                return self._cut(state, decision)
            out = []
        else:
            out, alive = await self._judge(state, final=True) if (state.held or state.tool_calls) else ([], True)
            if not alive:
                return out
        if state.tool_calls:
            calls = [{"index": i, **c} for i, c in sorted(state.tool_calls.items())]
            out.append(self._chunk(state.index, {"tool_calls": calls}))
        state.ended = True
        out.append(self._chunk(state.index, {}, reason))
        return out

    @staticmethod
    def _merge_call(state: _Choice, call: dict[str, Any]) -> None:
        slot = state.tool_calls.setdefault(
            call.get("index", 0), {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
        )
        if call.get("id"):
            slot["id"] = call["id"]
        if call.get("type"):
            slot["type"] = call["type"]
        fn = call.get("function") or {}
        if fn.get("name"):
            slot["function"]["name"] += fn["name"]
        if fn.get("arguments"):
            slot["function"]["arguments"] += fn["arguments"]


async def passthrough(events: AsyncIterator[Any]) -> AsyncIterator[bytes]:
    """No output policy in force: relay the upstream's events as they come."""
    try:
        async for event in events:
            if event is DONE:
                break
            yield sse(event)
        yield DONE_LINE
    finally:
        close = getattr(events, "aclose", None)
        if close is not None:
            await close()
