"""How often the `prompt_attack` detector fires, per source: attacks found and benign text hit.

    python benchmarks/prompt_attack_phrases.py --data ../shared/data/train [--show NAME ...] [--out FILE.json]

Scans the prompts (and replies) of every JSONL file in `--data` (rows with `prompt`, `response`,
`label`; ToxicChat's `meta.jailbreaking` rows are counted apart), and the project's own
everyday-benign and custom-policy benchmark rows, with the detector of the shipped
PROMPT_ATTACK_PHRASES policy (guard/prompt_attack.py). Prints matched / rows per source;
`--show` prints the matched phrase in context for the sources whose name contains NAME.
The policy judges input only, so the reply rows say what it would do if pointed at replies.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from guard.patterns import find_spans  # noqa: E402
from guard.policies import Policy  # noqa: E402

DETECTOR = Policy(id="PROMPT_ATTACK_PHRASES", engine="patterns", detectors=("prompt_attack",))


def _rows(path: Path) -> Iterator[dict]:
    with path.open() as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def sources(data: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name in ("everyday_benign", "custom_policy_tests"):
        out[f"benchmarks/{name}"] = [r["text"] for r in _rows(ROOT / "benchmarks" / "data" / f"{name}.jsonl")]
    for path in sorted(data.glob("*.jsonl")):
        for r in _rows(path):
            jailbreak = bool((r.get("meta") or {}).get("jailbreaking"))
            label = "jailbreak" if jailbreak else r.get("label", "?")
            for field in ("prompt", "response"):
                if r.get(field):
                    out.setdefault(f"{path.stem} {label} {field}s", []).append(r[field])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="a folder of JSONL files (e.g. ../shared/data/train)")
    ap.add_argument("--show", nargs="*", default=[])
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    result = {}
    for name, texts in sources(args.data).items():
        hits = [(t, find_spans(DETECTOR, t)) for t in texts]
        hits = [(t, s) for t, s in hits if s]
        result[name] = {"rows": len(texts), "matched": len(hits)}
        print(f"{name:55s} {len(hits):5d} / {len(texts):6d}  {100 * len(hits) / max(1, len(texts)):5.1f}%")
        if any(s in name for s in args.show):
            for text, spans in hits[:20]:
                print("      ", repr(text[max(0, spans[0].start - 40) : spans[0].end + 40]))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
