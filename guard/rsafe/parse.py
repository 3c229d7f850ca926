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
5. Violated ids come only from the model's own answer line, read in the
   structure `prompt.render_answer` teaches: `\\boxed{unsafe}`, then
   `Violated: S2, S9` as the next non-blank line (or the rest of the box's
   line) *and the last line of the output*. The line must start with the word
   (markdown emphasis forgiven): a `| `-fenced or `>`-quoted line is quoted
   content, never the answer. It is trusted only when it is that last line, no
   other `Violated:` line (fenced or not) appears anywhere after `</think>`,
   and every id it names is an active policy. Lines are split the way
   `str.splitlines()` splits (every Unicode line break), like the fence does.
   - unsafe with a trusted line: those ids;
   - unsafe otherwise (no line: a model trained on the paper's format; a line
     that is not last, i.e. the model went on writing, e.g. quoting the
     conversation; a second Violated line; an unknown id; `none`): the ids
     cannot be trusted, so **every** active policy (`policy_ids`, the
     policies judged in this model call) is violated. Failing wide is the closed choice: the pipeline then applies
     every policy's action, block > rewrite > flag, i.e. the strictest active
     policy's, and content that plants `Violated: <a flag policy>` for the
     model to quote can only make the decision stricter, never weaker;
   - safe with `Violated: none` or no line: no ids; safe while any Violated
     line after `</think>` (the answer line or a quoted one) names something
     other than none is a contradiction, hence an error.
   With no `policy_ids` (reward and eval callers that judge without a policy
   set) the trusted line's ids are returned as written.

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
# A line that mentions a Violated list at its start, behind any quoting or markup
# (`| ` fences, `>` quotes, bullets, emphasis): used to spot every such line.
_VIOLATED_ANY = re.compile(
    r"[\W_]*+violated(?:\s+(?:policies|categories))?[^\w:=]*+[:=]\s*(.*)", re.IGNORECASE | re.DOTALL
)
# The model's own answer line: only whitespace and markdown emphasis may precede the word.
_ANSWER_LINE = re.compile(
    r"[\s*_`]*+violated(?:\s+(?:policies|categories))?[\s*_`]*+[:=]\s*(.*)", re.IGNORECASE | re.DOTALL
)
_ID_TOKEN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_ID_SPLIT = re.compile(r"(?:[,;\s]|\band\b|&)+", re.IGNORECASE)
_NONE_WORDS = {"none", "n/a", "na", "nothing", "-", ""}
_BLANK_REST = " \t.,;:!*_`$)]\\"  # may follow the box on its line (`$\\boxed{x}$.`) and still be "nothing"

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

    answer, others = _violated_lines(region, boxes[-1][1])
    if label == "safe":
        for raw in ([answer] if answer is not None else []) + others:
            if _names_policies(raw, policy_ids):
                raise GuardFailure(f"guard answer says safe but names violated policies {raw.strip()[:40]!r}")
        return ParsedOutput("safe", (), reasoning)
    named = _trusted_ids(answer, others, policy_ids)
    return ParsedOutput("unsafe", named or tuple(policy_ids), reasoning)


def _violated_lines(region: str, box_end: int) -> tuple[str | None, list[str]]:
    """(the answer line's id list, or None; the id lists of every other Violated line in the region).

    The answer line is the first non-blank text after the final box (the rest of
    the box's line, else the next non-blank line). It counts only if it starts
    with the word itself and nothing but blank lines follows it.
    """
    lines = region.splitlines()
    box_idx = len(region[:box_end].splitlines()) - 1  # region[:box_end] ends with the box's "}"
    tail_lines = region[box_end:].splitlines()
    rest = tail_lines[0] if tail_lines else ""
    if rest.strip(_BLANK_REST):
        idx, text = box_idx, rest
    else:
        idx = next((i for i in range(box_idx + 1, len(lines)) if lines[i].strip()), None)
        text = lines[idx] if idx is not None else ""
    answer = None
    if idx is not None and not any(ln.strip() for ln in lines[idx + 1 :]):
        m = _ANSWER_LINE.match(text)
        answer = m.group(1) if m else None
    scan = list(lines)
    if answer is not None:
        if idx == box_idx:  # the answer shares the box's line: still read what precedes the box
            scan[idx] = lines[idx][: len(lines[idx]) - len(rest)]
        else:
            scan[idx] = ""
    others = [m.group(1) for ln in scan if (m := _VIOLATED_ANY.match(ln))]
    return answer, others


def _tokens(raw: str) -> list[str]:
    """The ids a Violated list names, as written; [] for `none` and the like."""
    s = raw.strip().strip("*_`").strip().rstrip(".").strip()
    if s.lower() in _NONE_WORDS:
        return []
    return [t for t in (t.strip("*_`'\"()[]") for t in _ID_SPLIT.split(s)) if t]


def _names_policies(raw: str, policy_ids: Sequence[str]) -> bool:
    """Whether a Violated list on a safe verdict contradicts it: a known id, or anything not led by `none`."""
    tokens = _tokens(raw)
    known = {pid.lower() for pid in policy_ids}
    return bool(tokens) and (tokens[0].lower() not in _NONE_WORDS or any(t.lower() in known for t in tokens))


def _trusted_ids(answer: str | None, others: list[str], policy_ids: Sequence[str]) -> tuple[str, ...]:
    """The answer line's ids when it can be trusted, else () (the caller then fails wide)."""
    if answer is None or others:
        return ()
    by_lower = {pid.lower(): pid for pid in policy_ids}
    out: list[str] = []
    for token in _tokens(answer):
        pid = by_lower.get(token.lower()) if policy_ids else (token if _ID_TOKEN.fullmatch(token) else None)
        if pid is None:
            return ()  # an unknown id: the line is not an answer we can read
        if pid not in out:
            out.append(pid)
    return tuple(out)
