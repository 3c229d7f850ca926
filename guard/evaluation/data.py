"""Reading evaluation files: JSON Lines in the shared schema (../shared/data/README.md).

    {"id", "prompt", "response", "label": "safe"|"unsafe", "task": "prompt"|"response", "categories", "meta"}

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
            examples.append(
                Example(
                    id=str(row.get("id", n)),
                    prompt=row["prompt"],
                    response=row.get("response"),
                    unsafe=label == "unsafe",
                    task=task,
                    categories=tuple(row.get("categories") or ()),
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
