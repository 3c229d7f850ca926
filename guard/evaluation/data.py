"""Reading evaluation files: JSON Lines in the shared schema (../shared/data/README.md).

    {"id", "prompt", "response", "label": "safe"|"unsafe", "task": "prompt"|"response", "categories", "meta"}

A row may carry its own policies, `"policies": [{"id": "S1", "description": "..."}, ...]`:
that row is judged against those (as model-engine policies) instead of the policies file,
so one file can hold examples judged under different policy sets (the training demo's
held-out split draws its policies per example).

A path is a file or a folder of `*.jsonl` files. Rows that are not in the
schema (no label, unknown task, preference pairs) are skipped and counted, so
pointing the harness at a whole data folder does not crash on a file it
cannot score.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Example:
    id: str
    prompt: str
    response: str | None
    unsafe: bool
    task: str  # "prompt" | "response"
    categories: tuple[str, ...] = ()
    policies: tuple[tuple[str, str], ...] = ()  # the row's own (id, description) policies; () = the policies file


def _row_policies(value: object) -> tuple[tuple[str, str], ...] | None:
    """A row's `policies` as (id, description) pairs; None when malformed (the row is skipped)."""
    if value is None:
        return ()
    if not isinstance(value, list) or not value:
        return None
    out = []
    for item in value:
        if not (isinstance(item, dict) and isinstance(item.get("id"), str) and isinstance(item.get("description"), str)):
            return None
        out.append((item["id"], item["description"]))
    return tuple(out)


@dataclass
class EvalFile:
    name: str  # file stem, e.g. "toxicchat_test"
    path: Path
    task: str
    examples: list[Example] = field(default_factory=list)
    skipped: int = 0

    @property
    def has_categories(self) -> bool:
        return any(e.categories for e in self.examples)


def expand(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            out += sorted(path.glob("*.jsonl"))
        elif path.exists():
            out.append(path)
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
    return out


def read_file(path: Path, limit: int | None = None) -> EvalFile | None:
    """Parse one file; None when it holds no scorable row."""
    examples: list[Example] = []
    skipped = 0
    with path.open(encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                skipped += 1
                continue
            label, task = row.get("label"), row.get("task")
            if label not in ("safe", "unsafe") or task not in ("prompt", "response") or not isinstance(row.get("prompt"), str):
                skipped += 1
                continue
            if task == "response" and not isinstance(row.get("response"), str):
                skipped += 1
                continue
            policies = _row_policies(row.get("policies"))
            if policies is None:
                skipped += 1
                continue
            examples.append(
                Example(
                    id=str(row.get("id", n)),
                    prompt=row["prompt"],
                    response=row.get("response"),
                    unsafe=label == "unsafe",
                    task=task,
                    categories=tuple(row.get("categories") or ()),
                    policies=policies,
                )
            )
            if limit and len(examples) >= limit:
                break
    if not examples:
        return None
    tasks = {e.task for e in examples}
    task = tasks.pop() if len(tasks) == 1 else "mixed"
    return EvalFile(path.stem, path, task, examples, skipped)


def load(paths: list[Path], limit: int | None = None) -> tuple[list[EvalFile], list[Path]]:
    """(files with scorable rows, files skipped entirely)."""
    files, ignored = [], []
    for path in expand(paths):
        parsed = read_file(path, limit)
        (files.append(parsed) if parsed else ignored.append(path))
    return files, ignored
