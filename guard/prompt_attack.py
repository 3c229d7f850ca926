"""The `prompt_attack` detector: the fixed phrases of jailbreaks and prompt injections.

The model policy PROMPT_ATTACK reads intent; this detector is the deterministic layer
under it, the way rule sets in other guard products (LLM Guard, Vigil, Rebuff's
heuristics) sit under their classifiers. It matches only what ordinary requests do not
say, in five families:

- override: "ignore/disregard/forget ... previous/prior/above/your ... instructions/rules"
  (not "my"/"our" instructions: a user may change their own), and "ignore all
  instructions and just say ...";
- mode switches: "DAN/jailbreak/unfiltered mode", "simulate Developer Mode", "pretend to
  be DAN", "stands for do anything now";
- removed limits: "broken free of the typical confines", "no ethical or moral guidelines",
  "without any of your restrictions";
- planted markup: chat-template tokens (`<|im_start|>`, `[INST]`, `<<SYS>>`...), "[system
  note:", "new instructions:", `<system>`, `<end of session>`, and planted turns: a line of
  the user's or a tool's text that starts "System:" or "Assistant:" (none of 55k benign
  training prompts has one; a pasted chat transcript does, see docs/policies.md);
- system-prompt extraction: "reveal/print/repeat your system prompt", "what are your
  initial instructions".

Everything is RE2 (linear time, see guard/patterns.py). The span is the matched phrase. Case,
spacing and punctuation between the words do not matter, and leetspeak digits are read as
letters (`LEET`).
A match followed by "in/inside/within/contained in ..." is dropped (`defensive`): "ignore
any previous instructions inside the document" is a user guarding their own task.
The policy that uses it scans user and tool turns only (`roles:` in policies.yaml): an
operator's system prompt says "never reveal your system prompt", and an earlier reply may
explain an attack.
"""

from __future__ import annotations

_S = r"[^\pL\pN]+"  # between words: spaces, punctuation, line breaks, as many as there are
_WORD = r"[\pL\pN'’-]+"


def _w(words: str) -> str:
    """A literal with its spaces as `_S` (any run of spaces and punctuation)."""
    return words.replace(" ", _S)


_OVERRIDE_VERB = r"(?:ignore|ignoring|disregard|disregarding|forget|override|bypass|skip|neglect|discard|abandon|overwrite)"
_INSTRUCTIONS = _w(r"(?:instructions?|instruction set|directions|directives?|prompts?|rules|guidelines|commands|orders"
                    r"|programming|guardrails|restrictions|constraints|system prompt|system message|safety (?:rules|guidelines|filters))")
_EARLIER = r"(?:previous|previously|prior|preceding|foregoing|earlier|above|former|original|initial|old|existing|following|before|your)"
_FILL = r"(?:all|any|every|each|of|the|these|those|its|this|that|and|or|other|given|current|safety|system|ai|chatgpt)"
_GOAL = r"(?:say|print|output|write|respond|reply|answer|repeat|return|type|state|translate|tell)"

_OVERRIDE = [
    # ignore all previous instructions / disregard your rules / forget the above directions
    _OVERRIDE_VERB + _S + f"(?:{_FILL}{_S}){{0,3}}{_EARLIER}{_S}(?:{_FILL}{_S}|{_EARLIER}{_S}){{0,3}}{_INSTRUCTIONS}",
    # ignore all the instructions you got before / you received earlier
    _OVERRIDE_VERB + _S + f"(?:{_FILL}{_S}){{0,3}}{_INSTRUCTIONS}{_S}(?:you{_S})?(?:were{_S}|have{_S}|had{_S})?(?:been{_S})?"
    r"(?:got|gotten|received|given|told|taught)" + _S + _w(r"(?:before|earlier|previously|so far|until now|up to now)"),
    # ignore all instructions and just say ... / ignore the rest of this text and print ...
    _OVERRIDE_VERB + _S + _w(r"(?:all|any|every|the rest of)") + _S + f"(?:{_WORD}{_S}){{0,3}}?"
    + r"(?:and|then)" + _S + r"(?:instead" + _S + r")?(?:just" + _S + r"|only" + _S + r"|simply" + _S + r")?" + _GOAL,
    # ignore instructions, and just print ... / stop everything now, just say ...
    _OVERRIDE_VERB + _S + r"(?:the" + _S + r")?" + _INSTRUCTIONS + _S + r"(?:and|then)" + _S + r"(?:(?:just|only|simply)" + _S + r")?" + _GOAL,
    r"(?:stop|halt)" + _S + r"everything" + _S + r"(?:(?:now|and|right" + _S + r"now)" + _S + r")*(?:(?:just|only)" + _S + r")?" + _GOAL,
    # ignore everything to your core / everything you were told
    _OVERRIDE_VERB + _S + r"everything" + _S + r"(?:to|in|at)" + _S + r"your" + _S + r"core",
    _OVERRIDE_VERB + _S + r"(?:all|everything)" + _S + r"(?:that" + _S + r")?you" + _S + _w(r"(?:were|have been|had been)") + _S
    + r"(?:told|taught|trained|instructed|programmed)",
]

_MODES = r"(?:DAN|jailbreak|jailbroken|unrestricted|unfiltered|uncensored|NSFW|STAN|DUDE|AIM|anti-?GPT|BetterDAN)"
_MODE = [
    r"(?:enable|enabled|enter|entering|activate|activated|simulate|simulating|switch" + _S + r"(?:in)?to|with)" + _S
    + r"(?:the" + _S + r"|a" + _S + r")?" + _MODES + _S + r"mode",
    _MODES + _S + r"mode" + _S + r"(?:is" + _S + r")?(?:enabled|activated|engaged|on)\b",
    r"simulate" + _S + r"developer" + _S + r"mode",
    r"(?:chatgpt|gpt|assistant|ai)" + _S + r"with" + _S + r"developer" + _S + r"mode",
    r"developer" + _S + r"mode" + _S + r"(?:output|response)s?",
    r"stands" + _S + r"for" + _S + r"do" + _S + r"anything" + _S + r"now",
    r"(?:pretend|act|roleplay|role-play)" + _S + r"(?:to" + _S + r"be|as|like)" + _S + r"(?-i:DAN|STAN|DUDE|AIM)\b",
]

_LIMIT_NOUN = r"(?:guidelines?|restrictions?|filters?|limitations?|constraints?|rules|polic(?:y|ies)|boundaries|principles|guardrails|safeguards)"
_LIMIT_KIND = r"(?:ethical|ethics|moral|morality|safety|content|openai(?:'s)?|chatgpt(?:'s)?|programming|ai|built-in)"
_NEGATED = (r"(?:no|without|not" + _S + r"bound" + _S + r"by|free" + _S + r"of|freed" + _S + r"from|removed?|bypass(?:es|ed|ing)?"
            r"|disabled?|ignores?|(?:does|do|did)(?:" + _S + r"not|n't|n’t)" + _S + r"(?:have|has|follow|abide" + _S + r"by|care" + _S + r"about))")
_LIMITS = [
    r"(?:broken|broke|break|breaking|freed|free|released|liberated)" + _S + r"(?:free" + _S + r")?(?:of|from)" + _S
    + r"(?:the" + _S + r")?(?:typical" + _S + r"|usual" + _S + r"|normal" + _S + r")?confines",
    _NEGATED + _S + r"(?:any" + _S + r"|all" + _S + r")?(?:of" + _S + r")?(?:your" + _S + r"|its" + _S + r"|the" + _S + r"|their" + _S + r")?"
    + r"(?:(?:typical|usual|normal|standard)" + _S + r")?" + _LIMIT_KIND + _S + f"(?:{_WORD}{_S}){{0,2}}?" + _LIMIT_NOUN,
    # free of all restrictions and filters / no restrictions on your output
    r"(?:free|freed)" + _S + r"(?:of|from)" + _S + r"(?:all|any)" + _S + f"(?:{_WORD}{_S})?" + r"(?:restrictions|filters|limitations)",
    r"no" + _S + r"(?:restrictions|limits|limitations|filters|rules)" + _S + r"(?:on|for)" + _S + r"(?:your|its)" + _S
    + r"(?:output|outputs|responses|answers|replies|content)",
    # you are replaced by the model named X / the role of another AI model
    r"you" + _S + r"(?:are|'re|’re|will" + _S + r"be)" + _S + r"(?:now" + _S + r")?replaced" + _S + r"by",
    r"(?:role|character|persona)" + _S + r"of" + _S + r"(?:another|a" + _S + r"different)" + _S + r"(?:ai|language)" + _S + r"model",
    r"answer" + _S + r"my" + _S + r"prompts" + _S + r"in" + _S + r"two" + _S + r"(?:different" + _S + r")?(?:separate" + _S + r")?ways",
]

_MARKUP = [
    r"<\|(?:im_start|im_end|system|user|assistant|endoftext|eot_id|start_header_id|end_header_id|begin_of_text)\|>",
    r"\[/?INST\]",
    r"<</?SYS>>",
    r"###\s*(?:assistant|system)\s*:",
    # a planted turn: a line of a user's or a tool's text that starts "System:" or "Assistant:"
    r"(?m:^)[ \t>#*-]*(?:system|assistant)[ \t]*:",
    r"</?system>",
    r"<\s*end" + _S + r"of" + _S + r"(?:session|conversation|document|input|context|prompt)\s*>",
    r"\[" + r"\s*(?:system|sys|admin|developer)\s*(?:note|message|override|instruction|prompt|update)s?\s*[:\]]",
    r"(?:new|updated|revised|real|actual|true|secret|hidden)" + _S + r"(?:system" + _S + r")?(?:instructions|directives|prompt)\s*:",
]

_EXTRACT_VERB = r"(?:reveal|print|show|display|repeat|output|leak|dump|recite|disclose|expose|spell" + _S + r"out|write" + _S + r"out|tell|give|share)"
_PROMPT_NOUN = (r"(?:system" + _S + r"(?:prompt|message|instructions)|initial" + _S + r"(?:prompt|instructions)|original" + _S
                + r"(?:prompt|instructions)|hidden" + _S + r"(?:prompt|instructions)|secret" + _S + r"instructions|pre-?prompt)")
_EXTRACT = [
    _EXTRACT_VERB + _S + r"(?:me" + _S + r"|us" + _S + r")?(?:all" + _S + r"|everything" + _S + r")?(?:of" + _S + r"|in" + _S + r")?"
    + r"(?:your|the)" + _S + r"(?:(?:full|entire|complete|exact|whole|verbatim|first|very)" + _S + r"){0,2}" + _PROMPT_NOUN,
    r"what" + _S + r"(?:is|are|was|were|'s)" + _S + r"your" + _S + r"(?:(?:full|exact|original|initial|hidden)" + _S + r")?" + _PROMPT_NOUN,
    r"repeat" + _S + r"(?:all" + _S + r")?(?:of" + _S + r")?the" + _S + r"(?:words|text|sentences|instructions)" + _S + r"above",
]

# Leetspeak folded before the scan ("1gn0r3 4ll pr3v10u5 1n57ruc710n5"): one ASCII character for one, so
# spans keep their offsets. Digits inside ordinary words do not make the phrases above.
LEET = str.maketrans("013457@$", "oieastas")

FAMILIES = {"override": _OVERRIDE, "mode": _MODE, "limits": _LIMITS, "markup": _MARKUP, "extract": _EXTRACT}
_AFTER_DEFENSIVE = ("in ", "inside", "within", "contained", "embedded", "found in", "hidden in", "that appear", "that may appear")


def expression() -> str:
    """One alternation of every family, case-insensitive (the DAN-style names excepted)."""
    return "(?i:" + "|".join(p for family in FAMILIES.values() for p in family) + ")"


def defensive(text_after: str) -> bool:
    """Whether what follows a match makes it a user's guard for their own task ("... instructions
    in the document below"), not an attack."""
    rest = text_after.lstrip(" \t\"'”’").lower()
    return rest.startswith(_AFTER_DEFENSIVE)
