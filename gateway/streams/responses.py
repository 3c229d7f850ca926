"""Output moderation of Responses API streams (`POST /v1/responses` with `stream: true`).

`response.output_text.delta` events go through a hold-back `Window` per output part
(output_index, content_index), exactly as chat chunks do; function-call argument deltas
are held and checked whole at `response.function_call_arguments.done`. The `.done`
events and the final `response.completed` carry the released (possibly rewritten) text,
so the client's accumulated text and the final object agree. Every event we emit gets a
fresh `sequence_number`, because held deltas are merged.

A block ends the stream the way OpenAI streams a refusal, so that the openai SDK's
`responses.stream(...).get_final_response()` and openai-agents, which both need
`response.completed`, get a final response: the open text part is closed with what was released
(`response.output_text.done`, `response.content_part.done`), a `refusal` content part carries
the policy message (`response.content_part.added`, `response.refusal.delta`,
`response.refusal.done`, `response.content_part.done`), the message item is done
(`status: "incomplete"`), and `response.completed` carries the response with
`status: "incomplete"` and `incomplete_details.reason == "content_filter"` (what a blocked
non-streamed reply says too). The upstream is then closed. One exception: when a tool call is
still open (its arguments were blocked), completing the response would hand a half-checked call
to clients that run it, so the stream ends with `response.incomplete` (content_filter) instead.

A stream that stops before a terminal event (`response.completed`, `.incomplete`, `.failed`,
`error`), or breaks, was cut: held text gets its final check, what passes is released, and the
stream ends with an `error` event (the openai SDK raises `APIError`), or `response.incomplete`
if the held text was blocked.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

from gateway.apis import block_response
from gateway.errors import GatewayError
from gateway.pipeline import Decision
from gateway.streams.chat import TERMINAL_EVENTS, CheckFn, CutFn, Window, cut_error, drive, responses_error, sse_named
from guard.policies import StreamSettings

Key = tuple[int, int]


class ResponsesStream:
    def __init__(self, settings: StreamSettings, check: CheckFn, holdback: Any = None, on_cut: CutFn | None = None) -> None:
        self.settings = settings
        self.check = check
        self.holdback = holdback
        self.on_cut = on_cut
        self.windows: dict[Key, Window] = {}
        self.templates: dict[Key, dict[str, Any]] = {}  # the last delta event per text part
        self.released: dict[Key, str] = {}  # what the client has been sent, per text part
        self.args: dict[int, str] = {}  # released function-call arguments, per output index
        self.pending_args: dict[int, str] = {}
        self.response: dict[str, Any] = {}
        self.items: dict[int, dict[str, Any]] = {}  # output items added, by output index
        self.items_done: dict[int, dict[str, Any]] = {}  # ... and those sent done
        self.parts: dict[Key, dict[str, Any]] = {}  # content parts added
        self.parts_done: set[Key] = set()
        self.seq = 0
        self.ended = False
        self.terminal = False  # the upstream sent a terminal event

    def _emit(self, event: dict[str, Any]) -> bytes:
        event = {**event, "sequence_number": self.seq}
        self.seq += 1
        return sse_named(event)

    def _window(self, key: Key) -> Window:
        if key not in self.windows:
            self.windows[key] = Window(self.settings, self.check, self.holdback)
            self.released[key] = ""
        return self.windows[key]

    def _delta(self, template: dict[str, Any], text: str) -> bytes:
        key = (template.get("output_index", 0), template.get("content_index", 0))
        self.released[key] = self.released.get(key, "") + text
        return self._emit({**template, "type": "response.output_text.delta", "delta": text})

    def _blocked(self, decision: Decision, key: Key | None = None) -> list[bytes]:
        """End the stream on a block (see the module docstring). `key`: the text part blocked."""
        self.ended = True
        message = decision.message()
        response = copy.deepcopy(self.response) or {"object": "response"}
        open_items = {i: item for i, item in self.items.items() if i not in self.items_done}
        if any(item.get("type") != "message" for item in open_items.values()):
            block_response(response, message)
            return [self._emit({"type": "response.incomplete", "response": response})]
        out: list[bytes] = []
        target = key[0] if key is not None and key[0] in open_items else min(open_items, default=None)
        if target is None:  # no message open: the refusal gets one of its own
            target = max(self.items, default=-1) + 1
            open_items[target] = self.items[target] = {
                "type": "message", "id": "msg_rsafe_refusal", "status": "in_progress", "role": "assistant", "content": []}
            out.append(self._emit({"type": "response.output_item.added", "output_index": target, "item": self.items[target]}))
        for part_key in sorted(k for k in self.parts if k[0] in open_items and k not in self.parts_done):
            part = self.parts[part_key]
            where = self._where(part_key)
            if part.get("type") == "output_text":
                part = {**part, "text": self.released.get(part_key, "")}
                out.append(self._emit({"type": "response.output_text.done", **where, "text": part["text"], "logprobs": []}))
            out.append(self._emit({"type": "response.content_part.done", **where, "part": part}))
            self.parts[part_key] = part
        key = (target, 1 + max((c for i, c in self.parts if i == target), default=-1))
        where = self._where(key)
        self.parts[key] = {"type": "refusal", "refusal": message}
        out += [
            self._emit({"type": "response.content_part.added", **where, "part": {"type": "refusal", "refusal": ""}}),
            self._emit({"type": "response.refusal.delta", **where, "delta": message}),
            self._emit({"type": "response.refusal.done", **where, "refusal": message}),
            self._emit({"type": "response.content_part.done", **where, "part": self.parts[key]}),
        ]
        for index in sorted(open_items):
            content = [self.parts[k] for k in sorted(self.parts) if k[0] == index]
            self.items_done[index] = {**open_items[index], "status": "incomplete", "content": content}
            out.append(self._emit({"type": "response.output_item.done", "output_index": index, "item": self.items_done[index]}))
        response.pop("output_text", None)
        response.update(status="incomplete", incomplete_details={"reason": "content_filter"},
                        output=[self.items_done[i] for i in sorted(self.items_done)])
        return [*out, self._emit({"type": "response.completed", "response": response})]

    def _where(self, key: Key) -> dict[str, Any]:
        return {"item_id": self.items.get(key[0], {}).get("id"), "output_index": key[0], "content_index": key[1]}

    def run(self, events: AsyncIterator[Any]) -> AsyncIterator[bytes]:
        return drive(events, self._on_event, lambda: self.ended, on_end=self._on_end)

    async def _on_end(self, done: bool, error: GatewayError | None) -> list[bytes]:
        if error is None and self.terminal:
            return []
        out: list[bytes] = []
        for key, window in self.windows.items():
            released, blocked, _ = await window.finish()
            if blocked is not None:
                out += self._blocked(blocked, key)
                break
            if released:
                out.append(self._delta(self.templates.get(key, {"output_index": key[0], "content_index": key[1]}), released))
        error = cut_error(error)
        if self.on_cut is not None:
            self.on_cut(error)
        if self.ended:
            return out  # the held text was blocked: that ended the stream
        return [*out, self._emit(responses_error(error, self.seq))]

    async def _on_event(self, event: dict[str, Any]) -> list[bytes]:
        kind = event.get("type", "")
        self.terminal = self.terminal or kind in TERMINAL_EVENTS
        if isinstance(event.get("response"), dict):
            self.response = event["response"]
        key = (event.get("output_index", 0), event.get("content_index", 0))
        self._track(kind, event, key)
        if kind == "response.output_text.delta":
            self.templates[key] = event
            released, blocked = await self._window(key).feed(event.get("delta") or "")
            out = [self._delta(event, released)] if released else []
            return out + (self._blocked(blocked, key) if blocked else [])
        if kind == "response.output_text.done":
            released, blocked, _ = await self._window(key).finish()
            if blocked:
                return self._blocked(blocked, key)
            out = [self._delta(event, released)] if released else []
            return out + [self._emit({**event, "text": self.released.get(key, "")})]
        if kind == "response.function_call_arguments.delta":
            index = event.get("output_index", 0)
            self.pending_args[index] = self.pending_args.get(index, "") + (event.get("delta") or "")
            return []
        if kind == "response.function_call_arguments.done":
            index = event.get("output_index", 0)
            args = event.get("arguments") or self.pending_args.pop(index, "")
            _, blocked, rewrites = await Window(self.settings, self.check).finish([args])
            if blocked:
                return self._blocked(blocked)
            self.args[index] = rewrites.get(0, args)
            delta = {**event, "type": "response.function_call_arguments.delta", "delta": self.args[index]}
            delta.pop("arguments", None)
            return [self._emit(delta), self._emit({**event, "arguments": self.args[index]})]
        if kind in ("response.content_part.done", "response.output_item.done", "response.completed"):
            self._patch(event)
            if kind == "response.content_part.done" and isinstance(event.get("part"), dict):
                self.parts[key] = event["part"]
            if kind == "response.output_item.done" and isinstance(event.get("item"), dict):
                self.items_done[event.get("output_index", 0)] = event["item"]
        return [self._emit(event)]

    def _track(self, kind: str, event: dict[str, Any], key: Key) -> None:
        """Which output items and content parts the client has been told of (a block closes them)."""
        if kind == "response.output_item.added" and isinstance(event.get("item"), dict):
            self.items[event.get("output_index", 0)] = copy.deepcopy(event["item"])
        elif kind == "response.content_part.added" and isinstance(event.get("part"), dict):
            self.parts[key] = copy.deepcopy(event["part"])
        elif kind == "response.content_part.done":
            self.parts_done.add(key)

    def _patch(self, event: dict[str, Any]) -> None:
        """Make the summary events carry what was actually released."""
        if event.get("type") == "response.content_part.done" and isinstance(event.get("part"), dict):
            key = (event.get("output_index", 0), event.get("content_index", 0))
            if key in self.released:
                event["part"]["text"] = self.released[key]
            return
        items = [event["item"]] if isinstance(event.get("item"), dict) else []
        if isinstance(event.get("response"), dict):
            items = [i for i in event["response"].get("output") or [] if isinstance(i, dict)]
            event["response"].pop("output_text", None)
        for position, item in enumerate(items):
            index = event.get("output_index", position)
            if item.get("type") == "function_call" and index in self.args:
                item["arguments"] = self.args[index]
            for c, part in enumerate(item.get("content") or []):
                if isinstance(part, dict) and (index, c) in self.released:
                    part["text"] = self.released[(index, c)]
