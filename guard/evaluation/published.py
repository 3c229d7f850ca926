"""Published F1 (x100) of well-known guards on the same bench files.

Source: the GuardReasoner paper's tables (Liu et al., 2025), as quoted in issue 3.
Keys are our file stems; `None` where a guard has no published number.
"""

from __future__ import annotations

COLUMNS: list[tuple[str, str, str]] = [  # (file stem, column title, task)
    ("toxicchat_test", "ToxicChat", "prompt"),
    ("harmbench_prompt", "HarmBench prompt", "prompt"),
    ("openai_moderation", "OpenAI Mod", "prompt"),
    ("aegis_test", "Aegis", "prompt"),
    ("harmbench_response", "HarmBench resp", "response"),
    ("safe_rlhf_test", "SafeRLHF", "response"),
    ("beavertails_test", "BeaverTails", "response"),
    ("xstest_response", "XSTest resp", "response"),
]

PUBLISHED: dict[str, dict[str, float]] = {
    "OpenAI Moderation API": {
        "toxicchat_test": 25.4, "harmbench_prompt": 9.6, "openai_moderation": 79.0, "aegis_test": 31.9, "prompt": 42.7,
        "harmbench_response": 20.6, "safe_rlhf_test": 10.1, "beavertails_test": 15.7, "xstest_response": 46.6, "response": 16.6,
    },
    "Llama Guard 3 8B": {
        "toxicchat_test": 53.1, "harmbench_prompt": 98.9, "openai_moderation": 79.7, "aegis_test": 71.4, "prompt": 65.2,
        "harmbench_response": 85.1, "safe_rlhf_test": 44.4, "beavertails_test": 67.8, "xstest_response": 87.7, "response": 63.3,
    },
    "WildGuard 7B": {
        "toxicchat_test": 70.8, "harmbench_prompt": 98.9, "openai_moderation": 72.1, "aegis_test": 89.4, "prompt": 73.8,
        "harmbench_response": 86.3, "safe_rlhf_test": 64.2, "beavertails_test": 84.4, "xstest_response": 94.7, "response": 78.7,
    },
    "GuardReasoner 8B": {
        "toxicchat_test": 78.8, "harmbench_prompt": 91.9, "openai_moderation": 72.0, "aegis_test": 90.2, "prompt": 78.0,
        "harmbench_response": 85.5, "safe_rlhf_test": 70.0, "beavertails_test": 87.6, "xstest_response": 94.3, "response": 82.1,
    },
}
