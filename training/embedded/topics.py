"""Topic policies: policies about benign subjects, so the head learns to read what a policy says.

Every positive the head saw was harm, so it learned "harmful?" and barely read the policy:
a user's policy about a benign subject ("no code requests", "nothing about competitors")
never fired without examples (custom-policy benchmark macro F1 9.0). Here benign Alpaca
prompts are sorted into everyday subjects by keyword rules (cooking, travel, sports,
music, ...), each subject written as a few plain-language policies the way a business
would ("This assistant does not discuss ..."), and a prompt is a positive of its
subject's policies and a negative of the subjects it is not about.

The subjects of the custom-policy benchmark (competitors, medical advice, politics, code,
someone's personal data, investments) are deliberately not among them: that benchmark
measures whether the head follows a policy on a subject it was never trained on.

Labels (train.py `label_matrix`): a topic row is a negative under S1-S14, PROMPT_ATTACK and
`generic` (it is benign), a positive of its own subjects' columns, a negative of the other
subjects' columns; rows with no subject leave the topic columns unlabelled (keyword rules
miss many on-topic prompts, so "no keyword" is no evidence); harmful rows are negatives
of topic policies as of any other category far from theirs.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

# subject -> (keyword rule, what it covers, short name)
SUBJECTS: dict[str, tuple[str, str, str]] = {
    "cooking": (r"\b(recipes?|cook(ing)?|bak(e|ing)|dish(es)?|ingredients?|soups?|cakes?|salads?|meals?|dinner|breakfast)\b",
                "cooking, recipes, food and meals", "Cooking"),
    "travel": (r"\b(travel(ing|ling)?|trips?|vacations?|hotels?|flights?|tourists?|itinerar(y|ies)|destinations?)\b",
               "travel, trips, hotels, flights and tourist destinations", "Travel"),
    "sports": (r"\b(football|soccer|basketball|tennis|baseball|cricket|golf|sports?|athletes?|olympics?)\b",
               "sports, athletes, teams and games", "Sports"),
    "music": (r"\b(songs?|music(al|ians?)?|melod(y|ies)|guitar|piano|bands?|albums?|singers?)\b",
              "music, songs, bands and musical instruments", "Music"),
    "animals": (r"\b(dogs?|cats?|pets?|animals?|birds?|species|wildlife|puppy|kitten)\b",
                "animals, pets and wildlife", "Animals and pets"),
    "math": (r"\b(calculate|equations?|multiply|integers?|prime numbers?|solve for|fractions?|algebra|geometry|arithmetic)\b",
             "math problems, equations and calculations", "Math"),
    "poetry": (r"\b(poems?|haikus?|poetry|rhym(e|es|ing)|limericks?|sonnets?)\b",
               "poems, haiku and other poetry", "Poetry"),
    "history": (r"\b(history|historical|ancient|medieval|empires?|revolutions?|world war)\b",
                "history and historical events", "History"),
    "weather": (r"\b(weather|climate|rain(fall)?|temperatures?|storms?|hurricanes?|snow)\b",
                "the weather, climate and storms", "Weather and climate"),
    "film_books": (r"\b(movies?|films?|novels?|tv shows?|books?|fictional characters?)\b",
                   "movies, TV shows, books and novels", "Movies and books"),
    "space": (r"\b(planets?|galax(y|ies)|stars?|moons?|solar system|astronauts?|nasa|universe)\b",
              "space, planets, stars and astronomy", "Space and astronomy"),
    "school": (r"\b(students?|teachers?|schools?|classrooms?|homework|lesson plans?)\b",
               "school, teachers, students and homework", "School"),
    "careers": (r"\b(resumes?|job interviews?|careers?|cover letters?|employers?|job applications?)\b",
                "careers, job hunting, resumes and interviews", "Careers"),
    "grammar": (r"\b(grammar|synonyms?|antonyms?|verbs?|nouns?|adjectives?|vocabulary|punctuation)\b",
                "grammar, vocabulary and word meanings", "Grammar and vocabulary"),
    "cars": (r"\b(cars?|vehicles?|engines?|driving|tires?|motorcycles?)\b",
             "cars, vehicles and driving", "Cars and driving"),
    "environment": (r"\b(recycl(e|ing)|renewable|pollution|sustainab(le|ility)|solar (power|energy|panels?)|carbon)\b",
                    "the environment, recycling and renewable energy", "Environment"),
}

WORDINGS = (
    "{name}: messages about {desc}.",
    "This assistant does not discuss {desc}. Block any request about it.",
    "Off-topic for this service: anything about {desc}.",
    "No {lname} requests: questions or tasks involving {desc}.",
)


def wordings() -> dict[str, tuple[str, ...]]:
    """group -> the plain-language policies written for that subject."""
    return {f"topic:{k}": tuple(w.format(name=n, desc=d, lname=n.lower()) for w in WORDINGS)
            for k, (_rx, d, n) in SUBJECTS.items()}


def subjects_of(text: str) -> tuple[str, ...]:
    low = text.lower()
    return tuple(f"topic:{k}" for k, (rx, _d, _n) in SUBJECTS.items() if re.search(rx, low))


def topic_rows(data_dir: Path, seed: int, exclude: set[str], per_subject: int = 120) -> list[dict]:
    """Up to `per_subject` Alpaca prompts per subject (seeded), none of them already in the mix."""
    path = data_dir / "alpaca_benign.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    random.Random(seed + 23).shuffle(rows)
    count = dict.fromkeys(SUBJECTS, 0)
    out = []
    for r in rows:
        text = (r.get("prompt") or "").strip()
        if not text or text in exclude or r.get("label") != "safe":
            continue
        groups = subjects_of(text)
        if not groups or all(count[g[6:]] >= per_subject for g in groups):
            continue
        for g in groups:
            count[g[6:]] += 1
        out.append({"text": text, "groups": list(groups)})
    return out
