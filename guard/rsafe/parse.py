"""Reading the guard model's answer: the verdict, the violated ids, the reasoning.

Only the model's own final answer counts, and anything ambiguous is an error
(`GuardFailure`), which the pipeline turns into each policy's failure mode
(closed by default). Never "allowed" for an answer we could not read.

The rules, in order:

1. `finished=False` (the generation stopped at the token limit) is an error: a
   truncated answer may be missing a later, different verdict.
2. With `require_think`, the output must hold exactly one `</think>`, after at
   most one `<think>` (a missing opening tag is accepted: chat templates that
   prefill `<think>` in the generation prompt return only the rest). Without it
   (no-reasoning mode) a think block is optional; if present it must still be
   well formed.
3. The answer region is the text after `</think>` (or the whole text when there
   is no think block). The verdict is the last `\\boxed{...}` in that region.
   No box there is an error; if boxes appear only inside the reasoning the error
   says so. Two boxes after `</think>` that disagree are an error.
4. The label must be `safe` or `unsafe` (case, spaces, `\\text{}` and trailing
   punctuation are forgiven); anything else is an error.
5. Violated ids come from a `Violated: S2, S9` line after the box.
   - unsafe and the line names known ids: those ids;
   - unsafe without the line (a model trained on the paper's format), or naming
     only unknown ids: every active policy (`policy_ids`) is violated. Failing
     wide is the closed choice: the gateway then applies every policy's action;
   - safe with `Violated: none` or no line: no ids; safe while naming known
     ids is a contradiction, hence an error.

`format_ok` and `boxed_answer` are the reward-side views (RSafe: format is 1
when the whole output matches `<think>.*</think>.*\\boxed{.*}`), pure and cheap,
so `training/` rewards and serving read answers the same way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from guard.errors import GuardFailure

_FORMAT = re.compile(r"<think>.*</think>.*\\boxed\{.*\}.*", re.DOTALL)
_BOX_START = re.compile(r"\\boxed\s*\{")
_WRAPPER = re.compile(r"^\\(?:text|textbf|mathrm|mathbf|texttt)\s*\{(.*)\}$", re.DOTALL)
_VIOLATED = re.compile(r"^[\s>*_`|-]*violated(?:\s+(?:policies|categories))?\s*[:=]\s*(.*)$", re.IGNORECASE | re.MULTILINE)
_ID_TOKEN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_NONE_WORDS = {"none", "n/a", "na", "nothing", "-", ""}

Label = Literal["safe", "unsafe"]


@dataclass(frozen=True, slots=True)
class ParsedOutput:
    label: Label
    violated: tuple[str, ...]
    reasoning: str


def format_ok(text: str) -> bool:
    """RSafe's format reward condition: `<think>.*</think>.*\\boxed{.*}` over the whole output."""
    return _FORMAT.fullmatch(text.strip()) is not None


def _boxes(text: str) -> list[tuple[int, int, str]]:
    """Every `\\boxed{...}` with balanced braces: (start, end, inner text)."""
    out = []
    for m in _BOX_START.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
            i += 1
        if depth == 0:
            out.append((m.start(), i, text[m.end() : i - 1]))
    return out


def boxed_answer(text: str) -> str | None:
    """The last boxed answer after `</think>` (whole text if there is none), normalized.

    Returns the normalized content (`'safe'`, `'unsafe'` or whatever else the box
    holds) or None when there is no box. Reward functions compare it to the label.
    """
    region = text.rsplit("</think>", 1)[-1]
    boxes = _boxes(region)
    return _normalize(boxes[-1][2]) if boxes else None


def _normalize(inner: str) -> str:
    s = inner.strip()
    while True:
        m = _WRAPPER.match(s)
        if not m:
            break
        s = m.group(1).strip()
    return s.strip(" \t\n\"'`*.!").lower()


def parse_output(
    text: str,
    *,
    finished: bool = True,
    policy_ids: Sequence[str] = (),
    require_think: bool = True,
) -> ParsedOutput:
    """Parse one model answer or raise `GuardFailure` saying why it is unreadable."""
    if not finished:
        raise GuardFailure("guard answer truncated at the token limit (no final verdict)")
    opens, closes = text.count("<think>"), text.count("</think>")
    if require_think or opens or closes:
        if opens == 0 and closes == 0:
            raise GuardFailure("guard answer has no <think> ... </think> block")
        if opens > 1 or closes != 1:
            raise GuardFailure(f"guard answer has a malformed think block ({opens} <think>, {closes} </think>)")
        end = text.index("</think>")
        # No opening tag: chat templates that prefill "<think>\n" in the generation
        # prompt (Qwen3, DeepSeek-R1 style) return only the rest of the block.
        start = text.index("<think>") + len("<think>") if opens else 0
        if end < start:
            raise GuardFailure("guard answer closes </think> before opening <think>")
        reasoning = text[start:end].strip()
        region = text[end + len("</think>") :]
    else:
        reasoning, region = "", text

    boxes = _boxes(region)
    if not boxes:
        if _boxes(reasoning):
            raise GuardFailure("guard answer boxed a verdict only inside its reasoning")
        raise GuardFailure("guard answer has no \\boxed{} verdict")
    labels = [_normalize(inner) for _, _, inner in boxes]
    label = labels[-1]
    if label not in ("safe", "unsafe"):
        raise GuardFailure(f"guard answer has an unknown label {label[:40]!r}")
    if any(other != label for other in labels[:-1]):
        raise GuardFailure("guard answer gives two different verdicts")

    named = _violated_ids(region[boxes[-1][1] :], policy_ids)
    if label == "safe":
        if named:
            raise GuardFailure(f"guard answer says safe but names violated policies {', '.join(named)}")
        return ParsedOutput("safe", (), reasoning)
    return ParsedOutput("unsafe", named or tuple(policy_ids), reasoning)


def _violated_ids(tail: str, policy_ids: Sequence[str]) -> tuple[str, ...]:
    """Known ids named on the first `Violated:` line after the box (in answer order, unique)."""
    m = _VIOLATED.search(tail)
    if not m:
        return ()
    raw = m.group(1).strip().strip(".")
    if raw.lower() in _NONE_WORDS:
        return ()
    by_lower = {pid.lower(): pid for pid in policy_ids}
    out: list[str] = []
    for token in _ID_TOKEN.findall(raw):
        pid = token if not policy_ids else by_lower.get(token.lower())
        if pid and pid not in out:
            out.append(pid)
    return tuple(out)
