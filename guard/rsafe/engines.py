"""What a model engine looks like to the RSafe guard, and the result it returns.

An engine turns one prompt into one generation. The guard builds the prompt
(`guard.rsafe.prompt`) and parses the answer (`guard.rsafe.parse`); engines
only move text to a model and back, so the vLLM client, the in-process
transformers runner and test doubles are interchangeable.

Engines are called concurrently (one coroutine per check) and do their own
batching: vLLM batches concurrent HTTP requests server-side, the transformers
engine gathers concurrent calls into one `generate` on its worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Generation:
    text: str
    finished: bool  # False when generation stopped at the token limit


@dataclass(frozen=True, slots=True)
class Prompt:
    """The same prompt in both forms an engine may want."""

    text: str  # the single user-turn text (completions endpoints, raw models)
    messages: tuple[dict[str, str], ...]  # chat form (chat endpoints, chat templates)


class Engine(Protocol):
    name: str

    async def generate(self, prompt: Prompt, max_tokens: int) -> Generation: ...

    async def aclose(self) -> None: ...
