"""PNG charts for eval reports (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from guard.evaluation.published import COLUMNS, PUBLISHED  # noqa: E402


def f1_chart(path: Path, summary: dict[str, Any], ours: str) -> Path:
    files = summary["files"]
    cols = [c for c in COLUMNS if c[0] in files]
    labels = [c[1] for c in cols] + ["prompt W.avg", "response W.avg"]
    series = {name: [row.get(c[0]) for c in cols] + [row.get("prompt"), row.get("response")] for name, row in PUBLISHED.items()}
    avg = summary["averages"]
    series[f"{ours} (this run)"] = [100 * files[c[0]]["f1"] for c in cols] + [
        100 * (avg["prompt"]["weighted_f1"] or 0), 100 * (avg["response"]["weighted_f1"] or 0)
    ]
    fig, ax = plt.subplots(figsize=(max(8, 1.3 * len(labels)), 4.5))
    width = 0.8 / len(series)
    for k, (name, vals) in enumerate(series.items()):
        xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(labels))]
        ax.bar(xs, [v if v is not None else 0 for v in vals], width, label=name,
               edgecolor="black" if "this run" in name else None)
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_ylabel("F1 on unsafe (x100)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8, ncol=2)
    ax.set_title("F1 per benchmark vs published guards")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def latency_chart(path: Path, latencies: list[float], ours: str) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(latencies or [0.0], bins=60, color="#4a7ab5")
    ax.set_xlabel("latency per check (ms)")
    ax.set_ylabel("checks")
    ax.set_title(f"{ours}: latency per item")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
