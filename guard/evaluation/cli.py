"""`rsafe eval` (and `python -m guard.evaluation`): score a guard backend on JSONL sets.

    rsafe eval --guard embedded --data data/bench --out reports/embedded

The policies every row is judged against (`--policies`, default: the project's policies.yaml,
which you may have edited) are named on the console, in eval.json and in eval.md: path, policy
version, and the file's SHA-256, so a run can be matched to the exact file it used.

The function is Typer-compatible so the gateway CLI can register it as is:
`app.command("eval")(eval_command)`.
"""

from __future__ import annotations

import asyncio
import hashlib
import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
import yaml

ROOT = Path(__file__).resolve().parents[2]
CATEGORY_POLICIES = Path(__file__).resolve().parents[1] / "evalpolicies" / "openai_categories.yaml"
BENCH = ROOT / "data" / "bench"  # shipped with the repository (data/bench/README.md: sources, licences)


def eval_command(
    guard: Annotated[str, typer.Option(help="guard backend name from the registry (embedded, rsafe, cascade, patterns)")] = "embedded",
    data: Annotated[Optional[list[Path]], typer.Option(help="JSONL file or folder of them (repeatable) [default: data/bench]")] = None,
    out: Annotated[Path, typer.Option(help="report folder (eval.json, eval.md, PNG charts)")] = Path("reports/eval"),
    policies: Annotated[Path, typer.Option(help="policies file whose model-engine policies judge every row (a row with its own `policies` is judged against those)")] = ROOT / "policies.yaml",
    category_policies: Annotated[Path, typer.Option(help="one policy per category, for files that carry `categories`")] = CATEGORY_POLICIES,
    limit: Annotated[Optional[int], typer.Option(help="at most this many rows per file (quick looks)")] = None,
    concurrency: Annotated[int, typer.Option(help="checks in flight at once (1 = per-item latency)")] = 1,
    timeout_s: Annotated[float, typer.Option(help="per-check timeout; a timeout counts as unsafe and as an error")] = 30.0,
    option: Annotated[Optional[list[str]], typer.Option(help="backend option KEY=VALUE (repeatable), e.g. weights=DIR")] = None,
) -> None:
    """Evaluate a guard: per-file precision/recall/F1/FPR/latency, weighted averages, per-category F1."""
    from guard import threads
    from guard.evaluation import data as data_mod
    from guard.evaluation import report, runner
    from guard.policies import PolicySet
    from guard.registry import build_guard

    paths = data or [BENCH]
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise typer.BadParameter(f"no such file or folder: {', '.join(map(str, missing))}", param_hint="--data")
    files, ignored = data_mod.load(paths, limit)
    for path in ignored:
        typer.echo(f"skipped {path}: no rows in the eval schema", err=True)
    if not files:
        raise typer.BadParameter("no scorable rows in --data", param_hint="--data")
    policy_set = PolicySet.load(policies)
    cat_set = PolicySet.load(category_policies) if category_policies and Path(category_policies).exists() else None
    engine = runner.engine_for(guard)
    used = policies_used(policies, policy_set, engine)
    typer.echo(f"policies: {used['path']} (version {used['version']}, sha256 {used['sha256'][:16]}, "
               f"{len(used['ids'])} {engine} policies: {', '.join(used['ids'])})")
    own = sum(1 for f in files for e in f.examples if e.policies)
    if own:
        typer.echo(f"{own} of {sum(len(f.examples) for f in files)} rows carry their own policies and are judged against those")
    options = dict(policy_set.settings.guard.options) if policy_set.settings.guard.backend == guard else {}
    for item in option or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--option")
        options[key.strip()] = yaml.safe_load(value)
    threads.configure(guard, options)  # process-wide, so set by this entry point (guard/threads.py)
    backend = build_guard(guard, options, policy_set)

    async def go():
        try:
            return await runner.run_all(backend, files, policy_set, cat_set, concurrency, timeout_s, engine=engine)
        finally:
            await backend.aclose()

    runs = asyncio.run(go())
    summary = runner.summarize(runs, cat_set)
    latencies = [o.latency_ms for r in runs for o in r.outcomes]
    info = {
        "guard": guard,
        "command": _command_line(),
        "policies": str(policies),
        "policy_version": policy_set.version,
        "policies_used": used,
        "rows_with_own_policies": own,
        "category_policies": None if cat_set is None else policies_used(category_policies, cat_set, engine),
        "concurrency": concurrency,
        "options": {k: str(v) for k, v in options.items()},
        "limit": limit,
        "data": [str(p) for p in paths],
    }
    written = report.write(out, summary, info, latencies)
    avg = summary["averages"]
    for name, v in summary["files"].items():
        typer.echo(f"{name:24s} {v['task']:8s} n={v['n']:5d} F1={100 * v['f1']:5.1f} P={100 * v['precision']:5.1f} "
                   f"R={100 * v['recall']:5.1f} FPR={100 * v['fpr']:5.1f} p50={v['latency_ms']['p50']:.1f}ms errors={v['errors']}")
        for message in v.get("error_examples", []):
            typer.echo(f"{'':24s} failed check: {message}")
        if v.get("categories"):
            typer.echo(f"{'':24s} per-category macro F1={100 * (v['categories']['macro_f1'] or 0):.1f}")
    for task in ("prompt", "response"):
        if avg[task]["files"]:
            typer.echo(f"{task} weighted F1 = {100 * avg[task]['weighted_f1']:.1f}")
    typer.echo(f"policies: {used['path']} (version {used['version']}, sha256 {used['sha256'][:16]})")
    typer.echo("wrote " + ", ".join(str(p) for p in written))


def policies_used(path: Path, policy_set, engine: str = "model") -> dict:
    """Which policies a run judged against: the file (resolved), its policy version, the SHA-256 of
    its bytes (stable across gateway versions, unlike the version, which hashes the parsed schema
    with its defaults), and the ids of the enabled policies of the engine the guard runs."""
    path = Path(path).resolve()
    ids = [p.id for p in policy_set.policies if p.engine == engine and p.enabled]
    return {"path": str(path), "version": policy_set.version, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "engine": engine, "ids": ids}


def _command_line() -> str:
    """How this run was invoked, for the report (rsafe eval ... or python -m guard.evaluation ...)."""
    argv = list(sys.argv)
    if argv and argv[0].endswith("__main__.py"):
        argv[0:1] = ["python", "-m", "guard.evaluation"]
    elif argv and Path(argv[0]).name == "rsafe":
        argv[0] = "rsafe"
    return " ".join(shlex.quote(a) for a in argv)


def main() -> None:
    typer.run(eval_command)


if __name__ == "__main__":
    main()
