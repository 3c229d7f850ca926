"""The bench files ship with the repository (data/bench/), and `rsafe eval` reads them by default,
naming the policies file and version it judged against."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path

from typer.testing import CliRunner

from rsafe.cli import app
from guard.policies import PolicySet

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "data" / "bench"


def _readme_rows() -> dict[str, dict[str, str]]:
    rows = {}
    for line in (BENCH / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0].endswith(".jsonl"):
            rows[cells[0]] = {"rows": cells[1], "unsafe": cells[2], "task": cells[3], "licence": cells[5]}
    return rows


def test_every_bench_file_is_listed_with_its_counts_and_a_licence_text():
    listed = _readme_rows()
    shipped = sorted(p.name for p in BENCH.glob("*.jsonl"))
    assert shipped == sorted(listed) and len(shipped) == 8
    for name, row in listed.items():
        records = [json.loads(line) for line in (BENCH / name).read_text(encoding="utf-8").split("\n") if line.strip()]
        labels = Counter(r["label"] for r in records)
        assert (str(len(records)), str(labels["unsafe"])) == (row["rows"], row["unsafe"]), name
        assert {r["task"] for r in records} == {row["task"]}, name
        licences = re.findall(r"`([^`]+\.txt)`", row["licence"])
        assert licences, f"{name}: no licence file named"
        for licence in licences:
            assert (BENCH / "LICENSES" / licence).is_file(), licence


def test_the_makefile_and_the_docs_use_the_shipped_files():
    assert "--data data/bench" in (ROOT / "Makefile").read_text()
    for doc in ("README.md", "docs/evaluation.md"):
        assert "../shared/data/bench" not in (ROOT / doc).read_text(), doc


def test_eval_defaults_to_the_shipped_files_and_names_its_policies(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the repository: a default relative to the cwd would break
    edited = tmp_path / "edited.yaml"
    edited.write_text((ROOT / "policies.yaml").read_text() + "\n# an edit\n")
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["eval", "--guard", "patterns", "--limit", "2", "--out", str(out),
                                      "--policies", str(edited)])
    assert result.exit_code == 0, result.output
    version = PolicySet.load(edited).version
    sha = hashlib.sha256(edited.read_bytes()).hexdigest()
    assert f"policies: {edited.resolve()} (version {version}, sha256 {sha[:16]}" in result.output
    run = json.loads((out / "eval.json").read_text())["run"]
    assert run["policies_used"]["sha256"] == sha and run["policies_used"]["version"] == version
    patterns = [p.id for p in PolicySet.load(edited).policies if p.engine == "patterns" and p.enabled]
    assert {"SECRETS", "PROMPT_ATTACK_PHRASES"} <= set(patterns)
    assert run["policies_used"]["ids"] == patterns  # the patterns guard judges the patterns policies
    assert set(json.loads((out / "eval.json").read_text())["files"]) == {p.stem for p in BENCH.glob("*.jsonl")}
    assert f"version `{version}`, sha256 `{sha[:16]}`" in (out / "eval.md").read_text()


def test_eval_with_a_missing_data_folder_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(app, ["eval", "--guard", "patterns", "--data", str(tmp_path / "nope"),
                                      "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "no such file or folder" in result.output
    assert "Traceback" not in result.output
