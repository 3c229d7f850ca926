"""Training examples in the guard's exact prompt, built from JSONL files in the shared schema.

Every example is rendered by `guard.rsafe.prompt.render`, the function the
serving path calls through `build_prompt`: a model is trained on the very text
it will be served, for input checks (the User turn) and output checks (the
Agent turn, with the User turn as context).

How the mix is made (all draws from one `random.Random(seed)`):
1. Read each file; drop rows whose text appears in any file named as
   evaluation data (exact match after lower-casing and folding white space,
   on the prompt and on the response), and rows whose prompt is too long for
   the tokenizer budget.
2. Per-source cap: at most `cap` rows from any one file (shuffled first), so a
   20k-row benign file does not drown a 500-row harmful one.
3. Policy set per example, drawn from the catalog (`policies.yaml`'s model
   policies). A row whose source categories map to catalog ids (`category_map`)
   gets a random subset; with probability `flip_rate` the subset leaves out
   every mapped category, and the label becomes `safe` ("told the category is
   not active"). Unsafe rows without a mapped category see the whole catalog,
   because we cannot know which policy they break. Safe rows get a random
   subset: a safe text stays safe under fewer policies.
4. Balance: as many safe as unsafe examples (after flips), `n // 2` each when
   `n` is given, sampled without replacement.
`print_mix` reports the result per source and label.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guard.rsafe.prompt import render, render_answer

_WS = re.compile(r"\s+")


@dataclass(frozen=True)
class Example:
    """One training prompt and its gold answer."""

    prompt: str  # the user-turn text the guard sends (render/build_prompt)
    label: str  # "safe" | "unsafe"
    violated: tuple[str, ...]  # gold violated ids; () when unsafe but the category is unknown
    policy_ids: tuple[str, ...]  # the active policy ids, in prompt order
    direction: str
    source: str
    reasoning: str | None = None  # a known-good reasoning (synthetic data), else None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def messages(self) -> list[dict[str, str]]:
        return [{"role": "user", "content": self.prompt}]

    def target(self, name_ids: bool = True) -> str | None:
        """The answer in the served format when the reasoning is known (synthetic data).

        `name_ids=False` leaves out the `Violated:` line (the parser then reads
        an unsafe answer as violating every active policy: fail wide).
        """
        if self.reasoning is None:
            return None
        violated = (self.violated or self.policy_ids) if name_ids else ()
        return render_answer(self.label, violated, self.reasoning)

    def row(self) -> dict[str, Any]:
        """A TRL conversational row; the extra columns reach the reward functions."""
        return {
            "prompt": self.messages,
            "label": self.label,
            "violated": list(self.violated),
            "policy_ids": list(self.policy_ids),
            "direction": self.direction,
            "source": self.source,
        }


def make_example(
    direction: str,
    conversation: Sequence[tuple[str, str]],
    categories: Sequence[tuple[str, str]],
    *,
    label: str,
    violated: Sequence[str] = (),
    source: str = "",
    reasoning: str | None = None,
) -> Example:
    return Example(
        prompt=render(direction, conversation, categories),
        label=label,
        violated=tuple(violated),
        policy_ids=tuple(pid for pid, _ in categories),
        direction=str(direction),
        source=source,
        reasoning=reasoning,
        meta={"conversation": [tuple(turn) for turn in conversation]},
    )


def normalize(text: str | None) -> str:
    return _WS.sub(" ", (text or "").lower()).strip()


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def eval_keys(paths: Iterable[str | Path]) -> set[str]:
    """Normalized prompt and response texts of every evaluation row."""
    keys: set[str] = set()
    for path in paths:
        for row in read_jsonl(path):
            for key in ("prompt", "response"):
                if row.get(key):
                    keys.add(normalize(row[key]))
    return keys


def _conversation(row: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    if row.get("task") == "response" and row.get("response"):
        return "output", [("user", row["prompt"]), ("assistant", row["response"])]
    return "input", [("user", row["prompt"])]


@dataclass(frozen=True)
class MixConfig:
    seed: int = 0
    n: int | None = None  # total examples (balanced); None = as many as balance allows
    cap: int | None = 2000  # per-source cap before balancing
    flip_rate: float = 0.25  # categorized unsafe rows shown without their category
    min_policies: int = 3
    max_prompt_tokens: int | None = 1536


def sample_policies(
    rng: random.Random, catalog: Sequence[tuple[str, str]], min_k: int, must: Sequence[str] = (), avoid: Sequence[str] = ()
) -> list[tuple[str, str]]:
    """A random subset of the catalog (kept in catalog order) holding `must` and none of `avoid`."""
    pool = [c for c in catalog if c[0] not in must and c[0] not in avoid]
    extra = rng.randint(max(0, min(min_k, len(pool)) - len(must)), len(pool)) if pool else 0
    chosen = set(must) | {pid for pid, _ in rng.sample(pool, extra)}
    return [c for c in catalog if c[0] in chosen]


def build_examples(
    files: Sequence[str | Path],
    catalog: Sequence[tuple[str, str]],
    *,
    config: MixConfig = MixConfig(),
    category_map: dict[str, Sequence[str]] | None = None,
    eval_files: Sequence[str | Path] = (),
    count_tokens: Callable[[str], int] | None = None,
) -> list[Example]:
    """The balanced example list (see the module docstring for every step)."""
    rng = random.Random(config.seed)
    category_map = category_map or {}
    known = {pid for pid, _ in catalog}
    banned = eval_keys(eval_files)
    safe: list[Example] = []
    unsafe: list[Example] = []
    for path in files:
        rows = [r for r in read_jsonl(path) if r.get("label") in ("safe", "unsafe") and r.get("prompt")]
        rows = [r for r in rows if normalize(r["prompt"]) not in banned and normalize(r.get("response")) not in banned]
        rng.shuffle(rows)
        source = Path(path).stem
        kept = 0
        for row in rows:
            if config.cap is not None and kept >= config.cap:
                break
            direction, conversation = _conversation(row)
            gold = sorted({pid for c in row.get("categories") or [] for pid in category_map.get(c, ()) if pid in known})
            label = row["label"]
            if label == "unsafe" and gold and rng.random() < config.flip_rate:
                cats, label, gold = sample_policies(rng, catalog, config.min_policies, avoid=gold), "safe", []
            elif label == "unsafe" and gold:
                cats = sample_policies(rng, catalog, config.min_policies, must=gold)
            elif label == "unsafe":
                cats = list(catalog)
            else:
                cats = sample_policies(rng, catalog, config.min_policies)
            ex = make_example(direction, conversation, cats, label=label, violated=gold, source=source)
            if count_tokens is not None and config.max_prompt_tokens and count_tokens(ex.prompt) > config.max_prompt_tokens:
                continue
            ex.meta["id"] = row.get("id")
            if row["label"] != label:
                ex.meta["flipped"] = True
            (unsafe if label == "unsafe" else safe).append(ex)
            kept += 1
    per_class = min(len(safe), len(unsafe))
    if config.n is not None:
        per_class = min(per_class, config.n // 2)
    out = rng.sample(safe, per_class) + rng.sample(unsafe, per_class)
    rng.shuffle(out)
    return out


def mix_table(examples: Sequence[Example]) -> str:
    """Counts per source and label (plus flips and directions), as printable text."""
    by = Counter((e.source, e.label) for e in examples)
    flips = Counter(e.source for e in examples if e.meta.get("flipped"))
    sources = sorted({e.source for e in examples})
    lines = [f"{'source':<28}{'safe':>7}{'unsafe':>8}{'flipped':>9}"]
    for s in sources:
        lines.append(f"{s:<28}{by[(s, 'safe')]:>7}{by[(s, 'unsafe')]:>8}{flips[s]:>9}")
    dirs = Counter(e.direction for e in examples)
    total_safe = sum(v for (s, lab), v in by.items() if lab == "safe")
    lines.append(f"{'total':<28}{total_safe:>7}{len(examples) - total_safe:>8}{sum(flips.values()):>9}")
    lines.append("directions: " + ", ".join(f"{k}={v}" for k, v in sorted(dirs.items())))
    return "\n".join(lines)


def print_mix(examples: Sequence[Example], seed: int | None = None) -> None:
    head = f"training mix ({len(examples)} examples" + (f", seed {seed})" if seed is not None else ")")
    print(head)
    print(mix_table(examples))


def catalog_from_policies(path: str | Path) -> list[tuple[str, str]]:
    """(id, text) of the model-engine policies in a policies.yaml: the categories the guard is shown."""
    from guard.policies import PolicySet

    return [(p.id, p.text) for p in PolicySet.load(path).policies if p.engine == "model" and p.enabled]


def examples_to_jsonl(path: str | Path, examples: Iterable[Example]) -> None:
    write_jsonl(path, (e.row() | {"reasoning": e.reasoning} for e in examples))


def example_from_row(row: dict[str, Any]) -> Example:
    return Example(
        prompt=row["prompt"][0]["content"],
        label=row["label"],
        violated=tuple(row.get("violated") or ()),
        policy_ids=tuple(row.get("policy_ids") or ()),
        direction=row.get("direction", "input"),
        source=row.get("source", ""),
        reasoning=row.get("reasoning"),
    )


def cli(
    files: list[Path],
    out: Path = Path("runs/data/train.jsonl"),
    policies: Path = Path("policies.yaml"),
    eval_files: list[Path] | None = None,
    category_map: Path | None = None,
    n: int | None = None,
    cap: int | None = 2000,
    flip_rate: float = 0.25,
    seed: int = 0,
    tokenizer: str | None = None,
    max_prompt_tokens: int = 1536,
) -> None:
    """Build the training mix. Typer-compatible: `rsafe train data FILES... --eval-files ...`."""
    import yaml

    count = None
    if tokenizer:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(tokenizer)
        count = lambda text: len(tok(text)["input_ids"])  # noqa: E731
    mapping = yaml.safe_load(category_map.read_text(encoding="utf-8")) if category_map else {}
    config = MixConfig(seed=seed, n=n, cap=cap, flip_rate=flip_rate, max_prompt_tokens=max_prompt_tokens)
    examples = build_examples(
        files, catalog_from_policies(policies), config=config, category_map=mapping,
        eval_files=eval_files or [], count_tokens=count,
    )
    print_mix(examples, seed)
    examples_to_jsonl(out, examples)
    print(f"wrote {out}")


if __name__ == "__main__":
    import typer

    typer.run(cli)
