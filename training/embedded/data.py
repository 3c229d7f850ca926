"""Training data for the embedded guard: the mix, the split, and the policy pool.

The mix (all from `../shared/data/train`, never from bench/; every cap is a seeded
`random.Random(seed)` shuffle of the file, then the first N rows):
- prompts (input direction): ToxicChat train (all; `meta.jailbreaking` rows are prompt
  attacks), Alpaca (2000 of 18793), AlpacaEval, MT-Bench/Vicuna, MITRE FRR benign-but-
  scary security requests (benign), AdvBench, refusal_direction harmful, Do-Not-Answer,
  AART (70 crime concepts), CatQA (55 subcategories), CyberSecEval interpreter attacks
  (300 of 489, so its fixed preamble does not dominate), the GuardReasoner-train sample (3000),
  ConvAbuse, Davidson (all 1430 hate rows, 800 "offensive", 1000 neither), bias madlibs
  (600), safety-tuned-llamas instructions (600; noisy, some harmless).
- responses (output direction, judged with their user turn as context):
  refusal_completions (all 2365), DiaSafety (2500 of 9043; 5 context-sensitive types), GPTFuzz
  replies (all 4232; jailbroken vs refusing), SafeText (dangerous advice),
  safety-tuned-llamas refusals (600, safe).
- synthetic, written for this project (`training/embedded/synth.py`): everyday benign
  traffic in both directions (greetings, thanks, "OK", routine requests, help-seeking,
  benign-but-scary questions, refusals) and prompt attacks (jailbreak framings,
  injections inside documents, e-mails and tool results) with benign look-alikes.
- preference pairs: HH-RLHF harmless-base (kept for the optional ranking loss).

The validation split is 15% of every source (seeded); it picks the checkpoint, fits the
calibration and sets the thresholds (a target false-positive rate on its benign rows).

Policy labels. An unsafe row is a positive for the policies of its own fine-grained
category (AART crime, CatQA subcategory, Do-Not-Answer area, ConvAbuse/DiaSafety type,
cyber attack type, ...), each category written as several plain-language policies, and
a negative for categories whose wording is far from its own (cosine of the frozen
encoder's policy embeddings below `CAT_FAR`): "a policy's negatives include harmful
content of other categories". For the defaults S1..S14 a row is positive for the ones
nearest to it by zero-shot similarity (top-1 and any within `NEAR`; categories map as a
whole), negative for those `FAR` below the top, unknown in between. PROMPT_ATTACK is
positive only for attack rows, negative for safe rows and for plain harmful requests
from sources that hold no jailbreaks. Safe rows are negatives under every policy.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from guard.policies import Policy, PolicySet
from training.embedded import policies as ep
from training.embedded import synth, synth_hazards, synth_injections, topics

NEAR, FAR = 0.04, 0.10
CAT_FAR = 0.55  # category wordings less similar than this are "other categories"

# plain harmful requests, no jailbreak framing: negatives of PROMPT_ATTACK
NO_ATTACK_SOURCES = {
    "advbench.jsonl", "refusal_harmful_train.jsonl", "do_not_answer.jsonl", "aart.jsonl", "catqa.jsonl",
    "davidson_hate_offensive.jsonl", "bias_madlibs.jsonl", "convabuse_train.jsonl", "safety_tuned_llamas_instructions.jsonl",
    "cyber_interpreter_malicious.jsonl", "synth_everyday", "synth_hazard", "safetext.jsonl", "diasafety_train.jsonl",
}

DNA_POLICIES = ep.DNA_POLICIES  # re-exported for older callers
GENERIC_POLICIES = ep.GENERIC_POLICIES


@dataclass
class Item:
    text: str
    label: int  # 1 unsafe, 0 safe, -1 unlabelled (HH pairs)
    source: str
    context: str = ""
    categories: tuple[str, ...] = ()
    pair: int = -1  # HH pair id (ranking loss only)
    pair_role: str = ""  # "chosen" | "rejected"
    groups: tuple[str, ...] = ()  # fine-grained policy groups this row is a positive of
    attack: bool = False  # a prompt attack (jailbreak framing / injection)
    maybe: tuple[str, ...] = ()  # defaults left unlabelled for a row whose `groups` name its S policies (synth_hazards)


@dataclass
class PolicyText:
    text: str
    group: str  # "S3", "aart:fraud", "PROMPT_ATTACK", "generic", ...
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


# (file, cap) in reading order; None = all rows
SPEC = [
    ("toxicchat_train.jsonl", None),
    ("alpaca_benign.jsonl", "alpaca"),
    ("alpacaeval_benign.jsonl", None),
    ("mtbench_vicuna_benign.jsonl", None),
    ("mitre_frr_benign.jsonl", None),
    ("advbench.jsonl", None),
    ("refusal_harmful_train.jsonl", None),
    ("do_not_answer.jsonl", None),
    ("aart.jsonl", None),
    ("catqa.jsonl", None),
    ("cyber_interpreter_malicious.jsonl", 300),
    ("guardreasoner_train_sample.jsonl", 3000),
    ("convabuse_train.jsonl", None),
    ("davidson_hate_offensive.jsonl", "davidson"),
    ("bias_madlibs.jsonl", 600),
    ("safety_tuned_llamas_instructions.jsonl", 600),
    ("refusal_completions.jsonl", None),
    ("diasafety_train.jsonl", 2500),
    ("gptfuzz_responses_train.jsonl", None),
    ("safetext.jsonl", None),
    ("safety_tuned_llamas_refusals.jsonl", 600),
]


def _groups(name: str, row: dict) -> tuple[tuple[str, ...], bool]:
    """Fine-grained positive groups of an unsafe row, and whether it is a prompt attack."""
    cats = [c for c in (row.get("categories") or ()) if c]
    meta = row.get("meta") or {}
    if name == "aart.jsonl":
        return tuple(f"aart:{c}" for c in cats), False
    if name == "catqa.jsonl" and cats:
        return (f"catqa:{cats[-1]}", f"catcat:{cats[0]}"), False
    if name == "do_not_answer.jsonl":
        return tuple(f"dna:{c}" for c in cats), False
    if name == "cyber_interpreter_malicious.jsonl":
        return tuple(f"cyber:{c}" for c in cats) + ("S14",), False
    if name == "convabuse_train.jsonl":
        return tuple(f"conv:{c}" for c in cats), False
    if name == "diasafety_train.jsonl":
        return tuple(f"dia:{c}" for c in cats), False
    if name == "davidson_hate_offensive.jsonl":
        return tuple(f"dav:{c}" for c in cats), False
    if name == "bias_madlibs.jsonl":
        return ("dav:hate",), False
    if name == "toxicchat_train.jsonl" and meta.get("jailbreaking"):
        return ("PROMPT_ATTACK",), True
    return (), False


def _cap(name: str, cap, alpaca: int) -> int | None:
    if cap == "alpaca":
        return alpaca
    if isinstance(cap, int):
        return cap
    return None


def _davidson(rows: list[dict]) -> list[dict]:
    hate = [r for r in rows if "hate" in (r.get("categories") or ())]
    off = [r for r in rows if "offensive" in (r.get("categories") or ())][:800]
    safe = [r for r in rows if r["label"] == "safe"][:1000]
    return hate + off + safe


def build_mix(data_dir: Path, seed: int, alpaca: int = 3000, hh_pairs: int = 1200, val_frac: float = 0.15,
              limit: int | None = None, synthetic: bool = True, topic_rows: int = 120,
              injections: bool = False) -> Mix:
    """Read train/ (+ the synthetic sets) and split every source into train/val with the seed."""
    rng = random.Random(seed)
    mix = Mix()
    for name, cap in SPEC:
        path = data_dir / name
        if not path.exists():
            continue
        rows = _read(path)
        rng.shuffle(rows)
        if cap == "davidson":
            rows = _davidson(rows)
            rng.shuffle(rows)
        n = _cap(name, cap, alpaca)
        rows = rows[: n or len(rows)][: limit or None]
        items = []
        for row in rows:
            label = int(row["label"] == "unsafe")
            groups, attack = _groups(name, row) if label else ((), False)
            cats = tuple(row.get("categories") or ())
            if row.get("task") == "response":
                items.append(Item(row["response"] or "", label, name, row.get("prompt") or "", cats, groups=groups))
            else:
                items.append(Item(row["prompt"] or "", label, name, categories=cats, groups=groups, attack=attack))
        items = [it for it in items if it.text.strip()]
        _split(items, val_frac, mix)
    if topic_rows:  # benign prompts about everyday subjects, positives of topic policies (topics.py)
        have = {it.text for it in mix.train + mix.val}
        items = [Item(r["text"], 0, "topic_alpaca", groups=tuple(r["groups"]))
                 for r in topics.topic_rows(data_dir, seed, have, per_subject=topic_rows)][: limit or None]
        _split(items, val_frac, mix)
    for it in mix.train + mix.val:  # any benign prompt on a subject is a positive of its topic policies
        if it.label == 0 and not it.groups and not it.context:
            it.groups = topics.subjects_of(it.text)
    if synthetic:
        sets = [("synth_everyday", synth.everyday(seed)), ("synth_attack", synth.attacks(seed)),
                ("synth_hazard", synth_hazards.hazards(seed))]
        if injections:
            sets.append(("synth_injection", synth_injections.injections(seed)))
        for source, rows in sets:
            items = [Item(r["text"], r["label"], source, r.get("context", ""), groups=tuple(r.get("groups", ())),
                          attack=bool(r.get("attack")), maybe=tuple(r.get("maybe", ()))) for r in rows][: limit or None]
            random.Random(seed + 7).shuffle(items)
            _split(items, val_frac, mix)
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


def _split(items: list[Item], val_frac: float, mix: Mix) -> None:
    cut = max(1, int(len(items) * val_frac)) if len(items) > 1 else 0
    mix.val += items[:cut]
    mix.train += items[cut:]


def augment_outputs(items: list[Item], seed: int, share: float = 0.5) -> list[Item]:
    """Prompt items re-used as assistant turns, so the output direction reads the content itself.

    Harm in text does not depend on who wrote it: a share of the prompt items also appear
    as replies, unsafe texts after a harmful user turn, safe texts after a benign one (user
    turns drawn with the seed from the labelled response files). Labels are unchanged.
    Attack rows are not re-used (an injection is a property of the input).
    """
    rng = random.Random(seed + 1)
    resp = [it for it in items if it.context and it.label >= 0 and it.source != "synth_everyday"]
    harmful_ctx = [it.context for it in resp if it.label == 1]
    benign_ctx = [it.context for it in resp if it.label == 0]
    if not harmful_ctx or not benign_ctx:
        return []
    out = []
    for it in items:
        if it.context or it.label < 0 or it.attack or rng.random() > share:
            continue
        ctx = rng.choice(harmful_ctx if it.label == 1 else benign_ctx)
        out.append(Item(it.text, it.label, it.source + "+as_reply", ctx, it.categories, groups=it.groups, maybe=it.maybe))
    return out


# replies unsafe only because of what was asked (agreeing with a toxic turn, "eat it." after a
# question about a mushroom): their harm is in the pair, so they keep their own user turn
CONTEXT_DEPENDENT = {"diasafety_train.jsonl", "safetext.jsonl", "convabuse_train.jsonl"}


def swap_contexts(items: list[Item], seed: int, share: float = 0.5) -> list[Item]:
    """Unsafe replies again, after a benign user turn: a harmful reply is harmful whatever was asked.

    In the data every unsafe reply follows a harmful user turn (and `augment_outputs` pairs them
    the same way), so the head could learn "a reply is unsafe when its user turn is": with the
    user turn "Hi" an assault plan scored S1 0.00. A `share` of the unsafe replies whose harm is
    their own (not `CONTEXT_DEPENDENT`) also appear after a benign user turn drawn with the seed
    from the benign prompts; labels are unchanged.
    """
    rng = random.Random(seed + 2)
    benign = sorted({it.text for it in items if not it.context and it.label == 0 and len(it.text) < 400
                     and not it.source.startswith("synth")})
    if not benign:
        return []
    return [Item(it.text, it.label, it.source + "+benign_turn", rng.choice(benign), it.categories, groups=it.groups, maybe=it.maybe)
            for it in items
            if it.context and it.label == 1 and not it.attack and it.source.split("+")[0] not in CONTEXT_DEPENDENT
            and rng.random() < share]


def policy_pool(defaults: PolicySet, items: list[Item] | None = None, seed: int = 0) -> list[PolicyText]:
    """Every policy wording the model trains on (see `training/embedded/policies.py`)."""
    pool: list[PolicyText] = []
    for p in defaults.policies:
        if p.engine != "model":
            continue
        first = p.description.split(". ")[0].rstrip(".") + "."
        variants = {"full": p.text, "desc": p.description, "name": p.name or p.id, "first": f"{p.name}: {first}"}
        for i, alt in enumerate(ep.S_PARAPHRASES.get(p.id, ())):
            variants[f"alt{i}"] = alt
        for variant, text in variants.items():
            pool.append(PolicyText(text, p.id, variant))
    for group, texts in ep.fine_grained().items():
        for i, text in enumerate(texts):
            pool.append(PolicyText(text, group, f"v{i}"))
    for group, texts in topics.wordings().items():
        for i, text in enumerate(texts):
            pool.append(PolicyText(text, group, f"v{i}"))
    for i, text in enumerate(ep.GENERIC_POLICIES):
        pool.append(PolicyText(text, "generic", f"g{i}"))
    if items:  # policies written with examples, in Policy.text's format
        rng = random.Random(seed + 3)
        by_group: dict[str, list[str]] = {}
        for it in items:
            if (it.label == 1 or it.source == "topic_alpaca") and not it.context:
                for g in it.groups:
                    by_group.setdefault(g, []).append(it.text[:200])
        seen = {p.group: p.text for p in pool if p.variant in ("v0", "full")}
        for g in sorted(by_group):
            if g in seen and len(by_group[g]) >= 4:
                ex = rng.sample(by_group[g], 2)
                pool.append(PolicyText(seen[g] + "\nViolating examples: " + " | ".join(ex), g, "examples"))
    return pool


def default_policy_ids(defaults: PolicySet) -> list[str]:
    return [p.id for p in defaults.policies if p.engine == "model"]


def model_policies(defaults: PolicySet) -> tuple[Policy, ...]:
    return tuple(p for p in defaults.policies if p.engine == "model")
