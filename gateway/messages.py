"""Reading and rewriting the moderated text inside OpenAI chat payloads.

Only what the guard needs is looked at; everything else in the payload is passed
through untouched. A `Piece` is one moderated string with a way to write it back,
so that `rewrite: redact` masks in place without disturbing images, tool schemas
or unknown fields.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.errors import BadRequest
from guard.verdict import Turn

# Roles whose text is judged on the way in. The app's own system/developer prompt is not
# sent to the guard (a known source of false positives), but it is still forwarded.
INPUT_ROLES = {"user": "user", "tool": "tool", "function": "tool", "assistant": "assistant"}


@dataclass(slots=True)
class Piece:
    role: str
    text: str
    write: Callable[[str], None]


def setter(container: Any, key: Any) -> Callable[[str], None]:
    def write(value: str) -> None:
        container[key] = value

    return write


def message_pieces(message: dict[str, Any], role: str) -> list[Piece]:
    """Text of one message: string content, text parts, tool-call arguments."""
    pieces: list[Piece] = []
    content = message.get("content")
    if isinstance(content, str):
        pieces.append(Piece(role, content, setter(message, "content")))
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and part.get("type") in ("text", "input_text", "output_text"):
                if isinstance(part.get("text"), str):
                    pieces.append(Piece(role, part["text"], setter(part, "text")))
    elif content is not None:
        raise BadRequest("'content' must be a string, an array of content parts, or null", param="messages")
    for call in message.get("tool_calls") or ():
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
            pieces.append(Piece(role, fn["arguments"], setter(fn, "arguments")))
    return pieces


def validate_chat_request(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise BadRequest("'model' is required and must be a string", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' is required and must be a non-empty array", param="messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise BadRequest(f"messages[{i}] must be an object with a 'role'", param=f"messages[{i}]")
    return messages


def input_pieces(messages: list[dict[str, Any]]) -> tuple[tuple[Turn, ...], list[Piece]]:
    """The conversation slice the guard reads, and the judged pieces (user and tool turns)."""
    turns: list[Turn] = []
    judged: list[Piece] = []
    for message in messages:
        role = INPUT_ROLES.get(message["role"])
        if role is None:
            continue
        add_turn(turns, judged, role, message_pieces(message, role))
    return tuple(turns), judged


def add_turn(turns: list[Turn], judged: list[Piece], role: str, pieces: list[Piece]) -> None:
    """Append one message to the guard's conversation; user/tool text is also judged."""
    text = "\n".join(p.text for p in pieces if p.text)
    if text:
        turns.append(Turn(role, text))  # type: ignore[arg-type]
    if role != "assistant":
        judged.extend(pieces)


def last_user_text(turns: tuple[Turn, ...]) -> str:
    for turn in reversed(turns):
        if turn.role == "user":
            return turn.text
    return ""


def choice_pieces(choice: dict[str, Any]) -> list[Piece]:
    message = choice.get("message")
    if not isinstance(message, dict):
        return []
    return message_pieces(message, "assistant")


def replace_choice(choice: dict[str, Any], text: str) -> None:
    """Swap a blocked reply for the policy message; tool calls are dropped with it."""
    message = choice.setdefault("message", {"role": "assistant"})
    message["content"] = text
    message.pop("tool_calls", None)
    message.pop("function_call", None)
    choice["finish_reason"] = "content_filter"
