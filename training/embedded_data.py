"""Training data for the embedded guard: the mix, the split, and the policy pool.

The mix (all from `../shared/data/train`, never from bench/):
- prompts (input direction): all of ToxicChat train (the only realistic, mostly-benign
  user traffic), a seeded sample of Alpaca instructions (benign), AlpacaEval and
  MT-Bench/Vicuna (benign), AdvBench, the refusal_direction harmful split and
  Do-Not-Answer (all unsafe). Alpaca is subsampled so benign:unsafe stays ~3:1.
- responses (output direction): refusal_completions (assistant replies, labels from
  Llama Guard 2, noisy), judged with their user turn as context.
- preference pairs: HH-RLHF harmless-base, last assistant turn of `rejected` vs
  `chosen` for the same conversation. They carry no absolute label, so they only
  feed a ranking loss (rejected should score higher than chosen).

The validation split is 15% of every source file, chosen with the seed; it is used
for early stopping, calibration and the default thresholds.

Output augmentation: a share of prompt items also appear as assistant replies
(see `augment_outputs`), because the only labelled replies (refusal_completions)
otherwise teach a refusal-vs-compliance shortcut.

Policy labels. Most files say only safe/unsafe, not *which* policy is violated, but
the head must learn "unsafe with respect to this policy". So each unsafe item is
given its covering policies among the defaults (S1..S14) by zero-shot similarity
between the item and each policy's text (top-1, plus any within `NEAR` of it);
policies far below the top (`FAR`) are negatives; those in between are ignored.
Do-Not-Answer's risk areas add five more policies with exact labels, and a few
generic "anything harmful" policies are positive for every unsafe item. Each
default policy also appears in several wordings (name only, description only,
full text) so the head learns to read text rather than to recognize eight
fixed embeddings.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from guard.policies import Policy, PolicySet

DNA_POLICIES = {
    "information_hazard": "Information hazards: requests for private or sensitive information about people or "
    "organizations, or for dangerous knowledge that could enable serious harm, such as personal data, "
    "security details or instructions for dangerous activities.",
    "malicious_uses": "Malicious uses: helping someone commit illegal or unethical acts, such as fraud, "
    "cyberattacks, weapons, drugs, deception, or causing harm to others.",
    "discrimination_exclusion_toxicity_hateful_offensive": "Toxic and discriminatory content: hateful, "
    "offensive, obscene or sexually explicit language, insults, stereotypes or discrimination against groups.",
    "misinformation_harms": "Misinformation harms: spreading false or misleading claims, or giving unreliable "
    "medical, legal or financial advice that could lead people to harm.",
    "human_chatbox": "Unhealthy human-chatbot interaction: treating the assistant as a human, asking about its "
    "feelings, body or private life, or relying on it for mental health crises instead of real help.",
}

GENERIC_POLICIES = (
    "Harmful content: anything unsafe, unethical, dangerous, hateful, sexual or illegal.",
    "Block any request or reply that could cause harm to people, breaks the law, or is offensive.",
    "Unsafe content of any kind.",
)

NEAR, FAR = 0.04, 0.10


@dataclass
class Item:
    text: str
    label: int  # 1 unsafe
    source: str
    context: str = ""
    categories: tuple[str, ...] = ()
    pair: int = -1  # HH pair id (ranking loss only)
    pair_role: str = ""  # "chosen" | "rejected"


@dataclass
class PolicyText:
    text: str
    group: str  # "S3", "dna:malicious_uses", "generic"
    variant: str


@dataclass
class Mix:
    train: list[Item] = field(default_factory=list)
    val: list[Item] = field(default_factory=list)


def _read(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _last_exchange(transcript: str) -> tuple[str, str]:
    parts = re.split(r"\n\n(Human|Assistant): ", "\n\n" + transcript.strip())
    turns = list(zip(parts[1::2], parts[2::2]))
    reply = turns[-1][1] if turns and turns[-1][0] == "Assistant" else ""
    user = next((t for r, t in reversed(turns[:-1]) if r == "Human"), "")
    return user.strip(), reply.strip()


def build_mix(data_dir: Path, seed: int, alpaca: int = 3000, hh_pairs: int = 1200, val_frac: float = 0.15, limit: int | None = None) -> Mix:
    """Read train/ and split every file into train/val with the seed (see module doc)."""
    rng = random.Random(seed)
    mix = Mix()
    spec = [
        ("toxicchat_train.jsonl", None),
        ("alpaca_benign.jsonl", alpaca),
        ("alpacaeval_benign.jsonl", None),
        ("mtbench_vicuna_benign.jsonl", None),
        ("advbench.jsonl", None),
        ("refusal_harmful_train.jsonl", None),
        ("do_not_answer.jsonl", None),
        ("refusal_completions.jsonl", None),
    ]
    for name, cap in spec:
        path = data_dir / name
        if not path.exists():
            continue
        rows = _read(path)
        rng.shuffle(rows)
        rows = rows[: cap or len(rows)][: limit or None]
        items = []
        for row in rows:
            if row.get("task") == "response":
                items.append(Item(row["response"] or "", int(row["label"] == "unsafe"), name, row.get("prompt") or ""))
            else:
                items.append(Item(row["prompt"] or "", int(row["label"] == "unsafe"), name, categories=tuple(row.get("categories") or ())))
        cut = max(1, int(len(items) * val_frac)) if len(items) > 1 else 0
        mix.val += items[:cut]
        mix.train += items[cut:]
    hh = data_dir / "hh_rlhf_harmless_pairs.jsonl"
    if hh.exists():
        rows = _read(hh)
        rng.shuffle(rows)
        n = 0
        for row in rows:
            if n >= min(hh_pairs, limit or hh_pairs):
                break
            u1, chosen = _last_exchange(row["chosen"])
            u2, rejected = _last_exchange(row["rejected"])
            if u1 != u2 or not chosen or not rejected or chosen == rejected:
                continue
            for role, text in (("chosen", chosen), ("rejected", rejected)):
                mix.train.append(Item(text, -1, "hh_rlhf_harmless_pairs.jsonl", u1, pair=n, pair_role=role))
            n += 1
    return mix


def augment_outputs(items: list[Item], seed: int, share: float = 0.5) -> list[Item]:
    """Prompt items re-used as assistant turns, so the output head reads the content itself.

    refusal_completions alone teaches the output direction a shortcut (harmful user
    turn + "not a refusal" = unsafe, with model-specific quirks) and misses plainly
    harmful replies. Harm in text does not depend on who wrote it, so a share of the
    prompt items also appear as replies: unsafe texts after a harmful user turn,
    safe texts after a benign one (user turns drawn from refusal_completions with the
    seed). Labels are unchanged. No new text is needed: the features are cached.
    """
    rng = random.Random(seed + 1)
    harmful_ctx = [it.context for it in items if it.context and it.source == "refusal_completions.jsonl" and it.label == 1]
    benign_ctx = [it.context for it in items if it.context and it.source == "refusal_completions.jsonl" and it.label == 0]
    if not harmful_ctx or not benign_ctx:
        return []
    out = []
    for it in items:
        if it.context or it.label < 0 or rng.random() > share:
            continue
        ctx = rng.choice(harmful_ctx if it.label == 1 else benign_ctx)
        out.append(Item(it.text, it.label, it.source + "+as_reply", ctx, it.categories))
    return out


def policy_pool(defaults: PolicySet) -> list[PolicyText]:
    """Every policy wording the head trains on (defaults in several forms, DNA areas, generic)."""
    pool: list[PolicyText] = []
    for p in defaults.policies:
        if p.engine != "model":
            continue
        first = p.description.split(". ")[0].rstrip(".") + "."
        variants = {"full": p.text, "desc": p.description, "name": p.name or p.id, "first": f"{p.name}: {first}"}
        for variant, text in variants.items():
            pool.append(PolicyText(text, p.id, variant))
    for cat, text in DNA_POLICIES.items():
        pool.append(PolicyText(text, f"dna:{cat}", "full"))
    for i, text in enumerate(GENERIC_POLICIES):
        pool.append(PolicyText(text, "generic", f"g{i}"))
    return pool


def default_policy_ids(defaults: PolicySet) -> list[str]:
    return [p.id for p in defaults.policies if p.engine == "model"]


def model_policies(defaults: PolicySet) -> tuple[Policy, ...]:
    return tuple(p for p in defaults.policies if p.engine == "model")
