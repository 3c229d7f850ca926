"""The policy model: `policies.yaml` parsed into typed, validated objects.

A `PolicySet` is immutable once loaded; reloading builds a new one. Its
`version` is a hash of the normalized content, so caches keyed by it are
invalidated by any edit.

Validation errors name the YAML line and the field (`PolicyError`), because the
person reading them is editing the file in an editor.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from guard.errors import PolicyError

SCHEMA_VERSION = 1


class Direction(str, Enum):
    INPUT = "input"
    OUTPUT = "output"


class Action(str, Enum):
    BLOCK = "block"
    REWRITE = "rewrite"
    FLAG = "flag"


class FailureMode(str, Enum):
    CLOSED = "closed"
    OPEN = "open"


# OpenAI's moderation categories (`/v1/moderations`), which a policy can say it covers.
OpenAICategory = Literal[
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent",
    "self-harm", "self-harm/intent", "self-harm/instructions", "sexual", "sexual/minors",
    "violence", "violence/graphic",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Examples(_Strict):
    unsafe: tuple[str, ...] = ()
    safe: tuple[str, ...] = ()


class Policy(_Strict):
    """One thing to stop, in plain language, and what to do about it."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    name: str = ""
    description: str = ""
    examples: Examples = Examples()
    applies_to: tuple[Direction, ...] = (Direction.INPUT, Direction.OUTPUT)
    action: Action = Action.BLOCK
    # `redact` masks the matched spans in place (needs spans: patterns engine);
    # `replace` swaps the whole content for `message`.
    rewrite: Literal["redact", "replace"] = "replace"
    failure_mode: FailureMode = FailureMode.CLOSED
    message: str = "This content was blocked by the gateway's safety policy."
    # Which engine judges it: the configured model guard, or deterministic patterns.
    engine: Literal["model", "patterns"] = "model"
    # Patterns engine: built-in detectors, regexes and words.
    detectors: tuple[Literal["api_key", "private_key", "email", "phone", "credit_card", "prompt_attack"], ...] = ()
    regex: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    # Patterns engine, input checks: the roles of the turns scanned (empty: every role). Turns
    # of other roles are not scanned for this policy (the model guard still reads them all).
    roles: tuple[Literal["system", "user", "assistant", "tool"], ...] = ()
    # Model engine: decision threshold on the guard's probability (embedded/cascade).
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    # Reasoning guard: force the reasoning path / per-policy token budget.
    reasoning: Literal["auto", "always", "never"] = "auto"
    enabled: bool = True
    # `before`: content this policy covers must never reach the upstream. When an active input
    # policy says so, the whole input check completes before the upstream call starts, whatever
    # `settings.input_mode` is. None: `settings.input_mode` decides.
    input_mode: Literal["before"] | None = None
    # `/v1/moderations` also reports a violation under these OpenAI category keys.
    openai_categories: tuple[OpenAICategory, ...] = ()
    # An input block answered as an HTTP 400 error (default) or as a 200 completion carrying
    # the message with `finish_reason: "content_filter"` (for chat UIs, scanners); a gateway
    # key's own `input_block` wins over this.
    input_block: Literal["error", "completion"] = "error"

    @field_validator("applies_to", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        if isinstance(v, str):
            return ("input", "output") if v == "both" else (v,)
        return v

    @field_validator("regex")
    @classmethod
    def _compiles(cls, v: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        from guard.patterns import compile_regex  # RE2, as the patterns guard runs it

        for pattern in v:
            try:
                compile_regex(pattern)
            except ValueError as exc:
                raise ValueError(
                    f"policy {info.data.get('id', '?')}: invalid regular expression {pattern!r} for RE2 "
                    f"(linear-time; no lookaround, no backreferences): {exc}"
                ) from exc
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        if self.engine == "patterns" and not (self.detectors or self.regex or self.keywords):
            raise ValueError("a patterns policy needs at least one of detectors, regex, keywords")
        if self.engine == "model" and not self.description.strip():
            raise ValueError("a model policy needs a description of what violates it")
        if self.roles and self.engine != "patterns":
            raise ValueError("roles: needs engine: patterns (a model guard reads every turn)")
        if self.action == Action.REWRITE and self.rewrite == "redact" and self.engine != "patterns":
            raise ValueError("rewrite: redact needs engine: patterns (only patterns know the spans)")
        return self

    def applies(self, direction: Direction) -> bool:
        return self.enabled and direction in self.applies_to

    @property
    def text(self) -> str:
        """What a model guard reads: name, description and examples."""
        parts = [f"{self.name}: {self.description}".strip(": ") if self.name else self.description]
        if self.examples.unsafe:
            parts.append("Violating examples: " + " | ".join(self.examples.unsafe))
        if self.examples.safe:
            parts.append("Not violating: " + " | ".join(self.examples.safe))
        return "\n".join(p for p in parts if p)


class PolicyOverride(_Strict):
    action: Action | None = None
    failure_mode: FailureMode | None = None
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    enabled: bool | None = None


class RouteRule(_Strict):
    """Per-route overrides, matched by model name (glob) and/or gateway key id."""

    model: str | None = None
    key: str | None = None
    disable: tuple[str, ...] = ()
    overrides: dict[str, PolicyOverride] = {}

    def matches(self, model: str | None, key_id: str | None) -> bool:
        if self.model is not None and not fnmatch.fnmatchcase(model or "", self.model):
            return False
        if self.key is not None and self.key != key_id:
            return False
        return True


class StreamSettings(_Strict):
    mode: Literal["window", "buffer", "async"] = "window"
    window_chars: int = Field(default=160, ge=16)
    overlap_chars: int = Field(default=48, ge=0)
    # Windows grow: the first check comes after this many characters (so the first words
    # appear quickly), then each window doubles up to window_chars.
    first_window_chars: int = Field(default=24, ge=8)
    # Where a block's policy message goes in a chat stream: `refusal` (the chunk's `delta.refusal`,
    # apart from the released text) or `content` (a content chunk of its own, after a blank line).
    block_message: Literal["refusal", "content"] = "refusal"

    @model_validator(mode="after")
    def _overlap(self) -> StreamSettings:
        if self.overlap_chars >= self.window_chars:
            raise ValueError("overlap_chars must be smaller than window_chars")
        return self


class GuardSettings(_Strict):
    backend: str = "embedded"
    timeout_s: float = Field(default=5.0, gt=0)
    # Backend-specific options, validated by the backend's own factory.
    options: dict[str, Any] = {}


class PolicySettings(_Strict):
    guard: GuardSettings = GuardSettings()
    stream: StreamSettings = StreamSettings()
    input_mode: Literal["concurrent", "before"] = "concurrent"
    log_allowed: bool = False
    log_content: bool = False


class PolicyFile(_Strict):
    version: int = SCHEMA_VERSION
    settings: PolicySettings = PolicySettings()
    policies: tuple[Policy, ...]
    routes: tuple[RouteRule, ...] = ()

    @field_validator("version")
    @classmethod
    def _known(cls, v: int) -> int:
        if v != SCHEMA_VERSION:
            raise ValueError(f"unsupported policies.yaml version {v} (this gateway reads {SCHEMA_VERSION})")
        return v

    @model_validator(mode="after")
    def _unique_and_known(self) -> PolicyFile:
        ids = [p.id for p in self.policies]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate policy ids: {', '.join(dupes)}")
        known = set(ids)
        for rule in self.routes:
            unknown = (set(rule.disable) | set(rule.overrides)) - known
            if unknown:
                raise ValueError(f"route names unknown policy ids: {', '.join(sorted(unknown))}")
        return self


class PolicySet:
    """A loaded, immutable policy file plus what is derived from it."""

    def __init__(self, spec: PolicyFile, source: str = "<memory>") -> None:
        self.spec = spec
        self.source = source
        canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True)
        self.version = hashlib.sha256(canonical.encode()).hexdigest()[:12]
        self.by_id = {p.id: p for p in spec.policies}

    @property
    def settings(self) -> PolicySettings:
        return self.spec.settings

    @property
    def policies(self) -> tuple[Policy, ...]:
        return self.spec.policies

    def active(self, direction: Direction, model: str | None = None, key_id: str | None = None) -> tuple[Policy, ...]:
        """Policies in force for one direction after the route overrides apply."""
        rules = [r for r in self.spec.routes if r.matches(model, key_id)]
        out = []
        for policy in self.spec.policies:
            if any(policy.id in r.disable for r in rules):
                continue
            for rule in rules:
                override = rule.overrides.get(policy.id)
                if override is not None:
                    changes = override.model_dump(exclude_none=True)
                    policy = policy.model_copy(update=changes)
            if policy.applies(direction):
                out.append(policy)
        return tuple(out)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<memory>") -> PolicySet:
        try:
            return cls(PolicyFile.model_validate(data), source)
        except ValidationError as exc:
            raise PolicyError(_describe(exc, None, source)) from exc

    @classmethod
    def from_yaml(cls, text: str, source: str = "<string>") -> PolicySet:
        try:
            node = yaml.compose(text)
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{source}:{mark.line + 1}" if mark else source
            raise PolicyError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
        if not isinstance(data, dict):
            raise PolicyError(f"{source}: expected a mapping with a 'policies' list at the top level")
        try:
            return cls(PolicyFile.model_validate(data), source)
        except ValidationError as exc:
            raise PolicyError(_describe(exc, node, source)) from exc

    @classmethod
    def load(cls, path: str | Path) -> PolicySet:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PolicyError(f"{path}: cannot read: {exc.strerror or exc}") from exc
        return cls.from_yaml(text, str(path))


def _describe(exc: ValidationError, root: yaml.Node | None, source: str) -> str:
    """One line per problem: `file:line: field.path: message`."""
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        line = _line_of(root, loc) if root is not None else None
        where = f"{source}:{line}" if line else source
        field = ".".join(str(p) for p in loc) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {field}: {msg}")
    return "\n".join(lines)


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """Walk the composed YAML tree along a pydantic error location."""
    best = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = None
            for key, value in node.value:
                if key.value == str(part):
                    found = value
                    best = key.start_mark.line + 1
                    break
            if found is None:
                return best
            node = found
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            best = node.start_mark.line + 1
        else:
            return best
    return best
