"""The OpenAI endpoints the gateway moderates, each as a small adapter.

An adapter knows, for its endpoint: the upstream path, how to read the moderated text
out of a request (`read_input`), and how to moderate a whole (non-streamed) response
(`output_units` + `block_unit`). Streams are handled in `gateway/streams/chat.py` and
`gateway/streams/responses.py`. Everything an adapter does not read passes through.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from gateway.errors import BadRequest
from gateway.messages import (
    Piece, add_turn, choice_pieces, guard_role, input_pieces, message_pieces, replace_choice, setter, validate_chat_request,
)
from guard.verdict import Turn


@dataclass(slots=True)
class Unit:
    """One independently moderated part of a response (a choice), with its pieces."""

    target: dict[str, Any]
    pieces: list[Piece]


class Api(Protocol):
    """What the service needs of a moderated endpoint."""

    name: str  # metrics and block-log route label
    path: str  # the upstream path
    stream_kind: str | None  # "chat" | "completions" | "responses" | None (no streaming)

    def read_input(self, body: Any) -> tuple[tuple[Turn, ...], list[Piece]]: ...

    def output_units(self, response: dict[str, Any]) -> list[Unit]: ...

    def block_unit(self, response: dict[str, Any], unit: Unit, message: str) -> None: ...


def _require_model(body: Any) -> None:
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise BadRequest("'model' is required and must be a string", param="model")


def _string_list(container: dict[str, Any], key: str, role: str) -> list[Piece]:
    """`key` holding a string or a list of strings (token arrays are passed through unread)."""
    value = container.get(key)
    if isinstance(value, str):
        return [Piece(role, value, setter(container, key))]
    if isinstance(value, list):
        return [Piece(role, v, setter(value, i)) for i, v in enumerate(value) if isinstance(v, str)]
    if value is None:
        raise BadRequest(f"'{key}' is required", param=key)
    raise BadRequest(f"'{key}' must be a string or an array", param=key)


class ChatApi:
    name = "chat_completions"
    path = "/chat/completions"
    stream_kind = "chat"

    def read_input(self, body: Any) -> tuple[tuple[Turn, ...], list[Piece]]:
        return input_pieces(validate_chat_request(body))

    def output_units(self, response: dict[str, Any]) -> list[Unit]:
        return [Unit(c, choice_pieces(c)) for c in response.get("choices") or [] if isinstance(c, dict)]

    def block_unit(self, response: dict[str, Any], unit: Unit, message: str) -> None:
        replace_choice(unit.target, message)


class CompletionsApi:
    name = "completions"
    path = "/completions"
    stream_kind = "completions"

    def read_input(self, body: Any) -> tuple[tuple[Turn, ...], list[Piece]]:
        _require_model(body)
        pieces = _string_list(body, "prompt", "user")
        return tuple(Turn("user", p.text) for p in pieces if p.text), pieces

    def output_units(self, response: dict[str, Any]) -> list[Unit]:
        units = []
        for choice in response.get("choices") or []:
            if isinstance(choice, dict) and isinstance(choice.get("text"), str):
                units.append(Unit(choice, [Piece("assistant", choice["text"], setter(choice, "text"))]))
        return units

    def block_unit(self, response: dict[str, Any], unit: Unit, message: str) -> None:
        unit.target["text"] = message
        unit.target["finish_reason"] = "content_filter"


class EmbeddingsApi:
    name = "embeddings"
    path = "/embeddings"
    stream_kind = None

    def read_input(self, body: Any) -> tuple[tuple[Turn, ...], list[Piece]]:
        _require_model(body)
        pieces = _string_list(body, "input", "user")
        return tuple(Turn("user", p.text) for p in pieces if p.text), pieces

    def output_units(self, response: dict[str, Any]) -> list[Unit]:
        return []

    def block_unit(self, response: dict[str, Any], unit: Unit, message: str) -> None:  # pragma: no cover
        raise AssertionError("embeddings have no output to moderate")


class ResponsesApi:
    """The Responses API: `input` (a string or items) in, `output` items out."""

    name = "responses"
    path = "/responses"
    stream_kind = "responses"

    def read_input(self, body: Any) -> tuple[tuple[Turn, ...], list[Piece]]:
        """Everything in the request that reaches the model: `instructions`, then every `input`
        item with text (messages of any role, earlier function calls and their outputs)."""
        _require_model(body)
        turns: list[Turn] = []
        judged: list[Piece] = []
        instructions = body.get("instructions")
        if isinstance(instructions, str):
            add_turn(turns, judged, "system", [Piece("system", instructions, setter(body, "instructions"))])
        elif instructions is not None:
            raise BadRequest("'instructions' must be a string", param="instructions")
        items = body.get("input")
        if isinstance(items, str):
            add_turn(turns, judged, "user", _string_list(body, "input", "user"))
            return tuple(turns), judged
        if not isinstance(items, list):
            raise BadRequest("'input' is required and must be a string or an array of items", param="input")
        for item in items:
            if not isinstance(item, dict):
                raise BadRequest("each 'input' item must be an object", param="input")
            role, pieces = _item_pieces(item)
            add_turn(turns, judged, role, pieces)
        return tuple(turns), judged

    def output_units(self, response: dict[str, Any]) -> list[Unit]:
        pieces: list[Piece] = []
        for item in response.get("output") or []:
            if not isinstance(item, dict):
                continue
            if item.get("type") == "message":
                pieces += message_pieces(item, "assistant")
            elif item.get("type") == "function_call" and isinstance(item.get("arguments"), str):
                pieces.append(Piece("assistant", item["arguments"], setter(item, "arguments")))
        return [Unit(response, pieces)] if pieces else []

    def block_unit(self, response: dict[str, Any], unit: Unit, message: str) -> None:
        block_response(response, message)


def _item_pieces(item: dict[str, Any]) -> tuple[str, list[Piece]]:
    """One Responses `input` item: its guard role and the text in it (none for references)."""
    kind = item.get("type", "message")
    if kind == "message":
        role = guard_role(item["role"]) if isinstance(item.get("role"), str) else "user"
        return role, message_pieces(item, role)
    if kind in ("function_call_output", "custom_tool_call_output") and isinstance(item.get("output"), str):
        return "tool", [Piece("tool", item["output"], setter(item, "output"))]
    for key in ("arguments", "input"):  # function_call / custom_tool_call the client says the model made
        if kind in ("function_call", "custom_tool_call") and isinstance(item.get(key), str):
            return "assistant", [Piece("assistant", item[key], setter(item, key), arguments=key == "arguments")]
    return "user", []


def block_response(response: dict[str, Any], message: str) -> None:
    """How the Responses API reports content filtering: status `incomplete`,
    `incomplete_details.reason == "content_filter"`; the output is the policy message."""
    response["status"] = "incomplete"
    response["incomplete_details"] = {"reason": "content_filter"}
    response["output"] = [{
        "type": "message", "id": "msg_rsafe_blocked", "status": "incomplete", "role": "assistant",
        "content": [{"type": "output_text", "text": message, "annotations": []}],
    }]
    response.pop("output_text", None)


CHAT, COMPLETIONS, EMBEDDINGS, RESPONSES = ChatApi(), CompletionsApi(), EmbeddingsApi(), ResponsesApi()
