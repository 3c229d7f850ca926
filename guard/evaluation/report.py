"""Write what an eval run found: eval.json, eval.md (ours beside the published rows), PNG charts."""

from __future__ import annotations

import json
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from guard.evaluation.published import COLUMNS, PUBLISHED


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def comparison_table(summary: dict[str, Any], ours: str) -> str:
    """The headline table: one column per known bench file, weighted averages, published rows."""
    files = summary["files"]
    cols = [c for c in COLUMNS if c[0] in files] or []
    prompt_cols = [c for c in cols if c[2] == "prompt"]
    resp_cols = [c for c in cols if c[2] == "response"]
    head = ["guard", *[c[1] for c in prompt_cols], "prompt W.avg", *[c[1] for c in resp_cols], "response W.avg"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in PUBLISHED.items():
        vals = [row.get(c[0]) for c in prompt_cols] + [row.get("prompt")] + [row.get(c[0]) for c in resp_cols] + [row.get("response")]
        lines.append("| " + " | ".join([name, *("–" if v is None else f"{v:.1f}" for v in vals)]) + " |")
    avg = summary["averages"]
    ours_vals = [_pct(files[c[0]]["f1"]) for c in prompt_cols] + [_pct(avg["prompt"]["weighted_f1"])]
    ours_vals += [_pct(files[c[0]]["f1"]) for c in resp_cols] + [_pct(avg["response"]["weighted_f1"])]
    lines.append("| " + " | ".join([f"**{ours}** (this run)", *(f"**{v}**" for v in ours_vals)]) + " |")
    return "\n".join(lines)


def detail_table(summary: dict[str, Any]) -> str:
    head = "| file | task | n | unsafe | precision | recall | F1 | FPR | p50 ms | p95 ms | truncated | errors |"
    lines = [head, "|" + "---|" * 12]
    for name, v in summary["files"].items():
        lines.append(
            f"| {name} | {v['task']} | {v['n']} | {v['unsafe']} | {_pct(v['precision'])} | {_pct(v['recall'])} | "
            f"{_pct(v['f1'])} | {_pct(v['fpr'])} | {v['latency_ms']['p50']:.1f} | {v['latency_ms']['p95']:.1f} | "
            f"{v['truncated']} | {v['errors']} |"
        )
    for task in ("prompt", "response"):
        a = summary["averages"][task]
        if a["files"]:
            lines.append(f"| **{task} weighted avg** | {task} | {a['n']} | | | | **{_pct(a['weighted_f1'])}** | | | | | |")
    return "\n".join(lines)


def category_tables(summary: dict[str, Any]) -> str:
    out = []
    for name, v in summary["files"].items():
        cats = v.get("categories")
        if not cats:
            continue
        out.append(f"### {name}: one plain-language policy per category (`{cats['policies_file']}`)\n")
        out.append("| category | n positive | precision | recall | F1 |")
        out.append("|---|---|---|---|---|")
        for cid, m in cats["per_category"].items():
            out.append(f"| {cid} | {m['unsafe']} | {_pct(m['precision'])} | {_pct(m['recall'])} | {_pct(m['f1'])} |")
        out.append(f"| **macro F1** | | | | **{_pct(cats['macro_f1'])}** |")
        out.append(f"| any category (unsafe vs safe) | {cats['any_category']['unsafe']} | {_pct(cats['any_category']['precision'])} | "
                   f"{_pct(cats['any_category']['recall'])} | {_pct(cats['any_category']['f1'])} |\n")
    return "\n".join(out)


def write(out: Path, summary: dict[str, Any], run_info: dict[str, Any], latencies: list[float]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    run_info = {
        **run_info,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {platform.system()} {platform.release()}, {_cpus()} CPU cores, python {platform.python_version()}",
    }
    doc = {"run": run_info, **summary}
    written = [out / "eval.json", out / "eval.md"]
    (out / "eval.json").write_text(json.dumps(doc, indent=2) + "\n")
    md = [
        f"# Guard evaluation: `{run_info['guard']}`\n",
        f"- command: `{run_info['command']}`",
        f"- date: {run_info['date']}; machine: {run_info['machine']}",
        f"- policies: {_policies_line(run_info)}; concurrency {run_info['concurrency']}\n",
        "## F1 on unsafe (x100), beside published guards (GuardReasoner paper tables)\n",
        comparison_table(summary, run_info["guard"]),
        "\nPublished W.avg columns average all four prompt (or response) files of the paper; ours averages the files of this run.",
        "\n## Per file\n",
        detail_table(summary),
        "",
    ]
    failed = [(name, v) for name, v in summary["files"].items() if v.get("error_examples")]
    if failed:  # errors count as unsafe (fail closed); say why they happened
        md += ["## Failed checks (first distinct messages per file)\n"]
        md += [f"- {name} ({v['errors']} errors): " + "; ".join(f"`{e}`" for e in v["error_examples"]) for name, v in failed]
        md += [""]
    cats = category_tables(summary)
    if cats:
        md += ["## Per category (user-written policies the guard never trained on)\n", cats]
    (out / "eval.md").write_text("\n".join(md) + "\n")
    try:
        from guard.evaluation.charts import f1_chart, latency_chart

        written.append(f1_chart(out / "f1_vs_published.png", summary, run_info["guard"]))
        written.append(latency_chart(out / "latency.png", latencies, run_info["guard"]))
    except ImportError:  # matplotlib is the `eval` extra; the numbers stand without charts
        pass
    return written


def _policies_line(run_info: dict[str, Any]) -> str:
    used = run_info.get("policies_used")
    if not used:
        return f"`{run_info['policies']}`"
    return (f"`{used['path']}` (version `{used['version']}`, sha256 `{used['sha256'][:16]}`; "
            f"{len(used['ids'])} {used['engine']} policies: {', '.join(used['ids'])})")


def _cpus() -> int:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 0
