"""The trained part of the embedded guard: a small MLP that scores (content, policy) pairs.

Why this shape: the encoder is frozen, so everything policy-specific must come
from the policy's own embedding. The head sees the content features, the
context features (the user turn, for output checks), the policy embedding, and
their interactions (element-wise product, absolute difference, cosine). The
interactions are what let it generalize to a policy it never saw: it learns
"harmful *and* about what this text describes" rather than a fixed list of
categories. The output is a logit; `temperature`/`bias` (fitted on the
validation split) turn it into a calibrated probability.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from guard.embedded.encoder import DIM, FEATURE_DIM

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


class PolicyHead(nn.Module):
    def __init__(self, hidden: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        in_dim = 2 * FEATURE_DIM + 1 + 3 * DIM + 1
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, 64),
            nn.GELU(),
            nn.Linear(64, 1),
        )

    @staticmethod
    def pair_features(content: torch.Tensor, context: torch.Tensor, has_context: torch.Tensor, policy: torch.Tensor) -> torch.Tensor:
        """[N, F] content/context features and [N, DIM] policy embeddings -> head input."""
        c = content[:, :DIM]  # the normalized sentence embedding
        cos = (c * policy).sum(-1, keepdim=True)
        return torch.cat(
            [content, context, has_context.unsqueeze(-1), policy, c * policy, (c - policy).abs(), cos], dim=-1
        )

    def forward(self, content, context, has_context, policy) -> torch.Tensor:
        return self.net(self.pair_features(content, context, has_context, policy)).squeeze(-1)

    def grid(self, content: torch.Tensor, context: torch.Tensor, has_context: torch.Tensor, policies: torch.Tensor) -> torch.Tensor:
        """Logits for every (text, policy) combination: [B, F] x [P, DIM] -> [B, P]."""
        b, p = content.shape[0], policies.shape[0]
        rep = lambda t: t.unsqueeze(1).expand(b, p, *t.shape[1:]).reshape(b * p, *t.shape[1:])  # noqa: E731
        pol = policies.unsqueeze(0).expand(b, p, DIM).reshape(b * p, DIM)
        return self.forward(rep(content), rep(context), rep(has_context), pol).view(b, p)

    def serve_grid(self, content: torch.Tensor, context: torch.Tensor, has_context: torch.Tensor,
                   policies: torch.Tensor) -> torch.Tensor:
        """`grid`, computed the cheap way (serving): the first layer is linear in the pair
        features, so the parts that depend on the text alone or on the policy alone are
        multiplied once per text and once per policy, and only the three interaction parts
        (768 + 1 of the 2,690 inputs) once per pair. Equal to `grid` up to float rounding."""
        first = self.net[0]
        w = first.weight  # [hidden, in]
        f = FEATURE_DIM
        spans = [2 * f + 1, DIM, DIM, DIM, 1]  # [content, context, has] | policy | c*p | |c-p| | cos
        w_text, w_pol, w_mul, w_abs, w_cos = w.split(spans, dim=1)
        c = content[:, :DIM]
        per_text = torch.cat([content, context, has_context.unsqueeze(-1)], dim=-1) @ w_text.T  # [B, H]
        per_pol = policies @ w_pol.T + first.bias  # [P, H]
        mul = (c.unsqueeze(1) * policies.unsqueeze(0))  # [B, P, DIM]
        pairs = mul @ w_mul.T + (c.unsqueeze(1) - policies.unsqueeze(0)).abs() @ w_abs.T
        pairs = pairs + mul.sum(-1, keepdim=True) * w_cos.T  # cos = <c, p>
        h = per_text.unsqueeze(1) + per_pol.unsqueeze(0) + pairs  # [B, P, H]
        return self.net[1:](h).squeeze(-1)


@dataclass
class HeadMeta:
    """What ships beside the weights: calibration, default thresholds, provenance."""

    temperature: float = 1.0
    bias: float = 0.0
    thresholds: dict[str, float] = field(default_factory=lambda: {"input": 0.5, "output": 0.5})
    max_tokens: int = 128
    hidden: int = 256
    examples: dict = field(default_factory=dict)  # the examples rule (guard/embedded/examples.py)
    info: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> HeadMeta:
        return cls(**json.loads(text))


def save(head: PolicyHead, meta: HeadMeta, out: Path) -> None:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().to(torch.float16) for k, v in head.state_dict().items()}
    save_file(state, str(out / "head.safetensors"))
    (out / "meta.json").write_text(meta.to_json() + "\n")


def overlay_path(path: Path = WEIGHTS_DIR) -> Path | None:
    """The fine-tuned encoder layers shipped beside the head, if any."""
    p = Path(path) / "encoder.safetensors"
    return p if p.exists() else None


def load(path: Path = WEIGHTS_DIR) -> tuple[PolicyHead, HeadMeta]:
    from safetensors.torch import load_file

    from guard.errors import GuardConfigError

    try:
        meta = HeadMeta.from_json((path / "meta.json").read_text())
        state = load_file(str(path / "head.safetensors"))
    except Exception as exc:  # OSError, bad JSON/fields, or safetensors' own error for a corrupt file
        raise GuardConfigError(f"embedded guard weights unreadable at {path}: {exc}") from exc
    head = PolicyHead(hidden=meta.hidden)
    head.load_state_dict({k: v.float() for k, v in state.items()})
    return head.eval(), meta
