"""Reading and rewriting the moderated text inside OpenAI chat payloads.

Only what the guard needs is looked at; everything else in the payload is passed
through untouched. A `Piece` is one moderated string with a way to write it back,
so that `rewrite: redact` masks in place without disturbing images, tool schemas
or unknown fields.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.errors import BadRequest
from guard.verdict import Turn

# Every message the client sends reaches the model, so every one is judged on the way in,
# whatever its role: a system or developer prompt and an "earlier reply" the client wrote
# itself can carry harm as well as a user turn can. The guard's own role names; a role
# the gateway does not know (e.g. "human") is judged as a user turn.
INPUT_ROLES = {
    "user": "user", "tool": "tool", "function": "tool", "assistant": "assistant",
    "system": "system", "developer": "system",
}  # fmt: skip


def guard_role(role: str) -> str:
    return INPUT_ROLES.get(role, "user")


@dataclass(slots=True)
class Piece:
    role: str
    text: str
    write: Callable[[str], None]
    turn: int = -1  # index of the conversation turn this piece belongs to (input side)
    arguments: bool = False  # tool-call arguments: JSON, read by the guard as its string values

    @property
    def guard_text(self) -> str:
        return json_strings(self.text) if self.arguments else self.text


def json_strings(text: str) -> str:
    """The keys and string values of a JSON document, one per line (what a text guard should read
    of tool-call arguments: quoting and escapes must not hide their words); the text itself if it
    is not JSON."""
    try:
        doc = json.loads(text)
    except ValueError:
        return text
    out: list[str] = []
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, dict):
            for key, value in reversed(node.items()):
                stack.append(value)
                stack.append(key)
        elif isinstance(node, list):
            stack.extend(reversed(node))
        elif node is not None:
            out.append(json.dumps(node))
    return "\n".join(out)


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
            elif isinstance(part, dict) and part.get("type") == "refusal" and isinstance(part.get("refusal"), str):
                pieces.append(Piece(role, part["refusal"], setter(part, "refusal")))
    elif content is not None:
        raise BadRequest("'content' must be a string, an array of content parts, or null", param="messages")
    if isinstance(message.get("refusal"), str):
        pieces.append(Piece(role, message["refusal"], setter(message, "refusal")))
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
            pieces.append(Piece(role, fn["arguments"], setter(fn, "arguments"), arguments=True))
    legacy = message.get("function_call")
    if isinstance(legacy, dict) and isinstance(legacy.get("arguments"), str):
        pieces.append(Piece(role, legacy["arguments"], setter(legacy, "arguments"), arguments=True))
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
    """The conversation the guard reads, one turn per message, and every piece of text in it."""
    turns: list[Turn] = []
    judged: list[Piece] = []
    for message in messages:
        role = guard_role(message["role"])
        add_turn(turns, judged, role, message_pieces(message, role))
    return tuple(turns), judged


def add_turn(turns: list[Turn], judged: list[Piece], role: str, pieces: list[Piece]) -> None:
    """Append one message to the guard's conversation; all of its text is judged."""
    text = "\n".join(p.guard_text for p in pieces if p.text)
    if text:
        for piece in pieces:
            piece.turn = len(turns)
        turns.append(Turn(role, text))  # type: ignore[arg-type]
    judged.extend(pieces)


def rebuild_turns(turns: tuple[Turn, ...], pieces: list[Piece]) -> tuple[Turn, ...]:
    """The conversation again after pieces were rewritten (a redaction): the model guard must
    read the redacted text, not the original."""
    texts: dict[int, list[str]] = {}
    for piece in pieces:
        if piece.turn >= 0 and piece.text:
            texts.setdefault(piece.turn, []).append(piece.guard_text)
    return tuple(Turn(t.role, "\n".join(texts[i])) if i in texts else t for i, t in enumerate(turns))


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
