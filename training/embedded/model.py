"""The trainable encoder split for the embedded guard: a frozen prefix, cached, and tuned top layers.

all-MiniLM-L6-v2 has 6 layers. We fine-tune the top `k` (default 2) and keep the rest
frozen, so the frozen part runs once per text: `PrefixCache` stores each text's
hidden states after layer 6-k (stored bf16, packed), the middle-layer mean the guard's features
use (hidden_states[3], unchanged while k <= 3) and the base model's sentence embedding
(for zero-shot labelling). `TopLayers.features` then runs only the tuned layers and pools exactly as
`guard.embedded.encoder.Encoder.features` does (mean of the last layer, L2-normalized,
concatenated with the mean of hidden_states[3]), so training and serving see the same
features. Both compute under bf16 autocast only where the CPU has native bf16 (as the guard
does; on an AVX2-only CPU autocast emulates bf16 matmuls about 50x slower than fp32). The shipped overlay (`encoder.safetensors`) holds only the tuned layers.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from guard.embedded.encoder import DIM, MID_LAYER, Encoder, cpu_has_bf16

N_LAYERS = 6


class PrefixCache:
    def __init__(self, encoder: Encoder, k: int, max_tokens: int) -> None:
        assert 0 <= k <= N_LAYERS - MID_LAYER, "tuned layers must sit above the middle layer the features read"
        self.enc, self.k, self.max_tokens = encoder, k, max_tokens
        self.bf16 = cpu_has_bf16()  # kept in the cache key: shards of the two precisions never mix
        self.index: dict[str, int] = {}
        self.offsets: list[int] = [0]
        self.chunks: list[torch.Tensor] = []
        self.mid: list[torch.Tensor] = []
        self.base: list[torch.Tensor] = []

    def _key(self, text: str) -> str:
        return hashlib.sha1(f"{self.k}|{self.max_tokens}|{'bf16|' if self.bf16 else 'fp32|'}{text}".encode()).hexdigest()

    def _put(self, t: str, h: torch.Tensor, mid: torch.Tensor, base: torch.Tensor) -> None:
        self.index[t] = len(self.offsets) - 1
        self.chunks.append(h)
        self.offsets.append(self.offsets[-1] + h.shape[0])
        self.mid.append(mid)
        self.base.append(base)

    def add(self, texts: list[str], folder: Path | None = None, batch: int = 64, save_every: int = 100) -> None:
        """Run the frozen layers over texts not seen yet. With `folder`, results are kept there in
        shards keyed by text (sha1), so an interrupted or repeated run resumes instead of redoing."""
        wanted = {t for t in texts if t not in self.index}
        if folder is not None and folder.exists():
            keys = {self._key(t): t for t in wanted}
            for shard in sorted(folder.glob("shard-*.pt")):
                for key, (h, mid, base) in torch.load(shard).items():
                    t = keys.get(key)
                    if t is not None and t not in self.index:
                        self._put(t, h, mid, base)
        new = sorted({t for t in wanted if t not in self.index}, key=lambda t: (len(t), t))
        model = self.enc.model
        pending: dict[str, tuple] = {}

        def flush():
            if folder is not None and pending:
                folder.mkdir(parents=True, exist_ok=True)
                torch.save(dict(pending), folder / f"shard-{len(list(folder.glob('shard-*.pt'))):05d}-{time.time_ns()}.pt")
            pending.clear()

        for n, s in enumerate(tqdm(range(0, len(new), batch), desc=f"prefix (frozen {N_LAYERS - self.k} layers)", unit="batch", mininterval=30)):
            if n and n % save_every == 0:
                flush()
            part = new[s : s + batch]
            input_ids, attention_mask = self._first_windows(part)
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
                out = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
            m = attention_mask.unsqueeze(-1).float()
            denom = m.sum(1).clamp(min=1.0)
            mid = (out.hidden_states[MID_LAYER].float() * m).sum(1) / denom
            base = F.normalize((out.last_hidden_state.float() * m).sum(1) / denom, dim=-1)
            h = out.hidden_states[N_LAYERS - self.k].to(torch.bfloat16)
            lens = attention_mask.sum(1).tolist()
            for i, t in enumerate(part):
                self._put(t, h[i, : lens[i]].clone(), mid[i].clone(), base[i].clone())
                pending[self._key(t)] = (self.chunks[-1], self.mid[-1], self.base[-1])
        flush()
        self._mid = torch.stack(self.mid) if self.mid else torch.zeros(0, DIM)
        self._base = torch.stack(self.base) if self.base else torch.zeros(0, DIM)

    def _first_windows(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """The first window of each text, as Encoder.tokenize builds it: [CLS] body [SEP]."""
        tok = self.enc.tokenizer
        body = self.max_tokens - 2
        ids = tok(texts, add_special_tokens=False, truncation=False)["input_ids"]
        wins = [[tok.cls_token_id, *t[:body], tok.sep_token_id] for t in ids]
        width = max(len(w) for w in wins)
        input_ids = torch.full((len(wins), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(wins), width), dtype=torch.long)
        for j, w in enumerate(wins):
            input_ids[j, : len(w)] = torch.tensor(w)
            mask[j, : len(w)] = 1
        return input_ids, mask

    def base_emb(self, texts: list[str]) -> torch.Tensor:
        return self._base[[self.index[t] for t in texts]]

    def batch(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(hidden [B, L, DIM] bf16, mask [B, L], mid [B, DIM]) for texts already added."""
        rows = [self.index[t] for t in texts]
        seqs = [self.chunks[r] for r in rows]
        width = max(s.shape[0] for s in seqs)
        h = torch.zeros(len(seqs), width, DIM, dtype=torch.bfloat16)
        mask = torch.zeros(len(seqs), width, dtype=torch.long)
        for i, s in enumerate(seqs):
            h[i, : s.shape[0]] = s
            mask[i, : s.shape[0]] = 1
        return h, mask, self._mid[rows]

    def length(self, text: str) -> int:
        r = self.index[text]
        return self.offsets[r + 1] - self.offsets[r]


class TopLayers:
    """The tuned layers of the encoder's own BertModel (trained in place)."""

    def __init__(self, encoder: Encoder, k: int) -> None:
        self.model = encoder.model
        self.k = k
        self.bf16 = cpu_has_bf16()
        self.layers = self.model.encoder.layer[N_LAYERS - k :] if k else torch.nn.ModuleList()
        for p in self.layers.parameters():
            p.requires_grad_(True)

    def parameters(self):
        return self.layers.parameters()

    def features(self, h: torch.Tensor, mask: torch.Tensor, mid: torch.Tensor) -> torch.Tensor:
        """[B, 2*DIM] float32, pooled like Encoder.features."""
        if not self.k:  # a frozen encoder: the cache holds its last layer already
            m = mask.unsqueeze(-1).float()
            last = (h.float() * m).sum(1) / m.sum(1).clamp(min=1.0)
            return torch.cat([F.normalize(last, dim=-1), mid.float()], dim=-1)
        if not self.bf16:
            h = h.float()  # the cache stores bf16; without autocast the fp32 layers need fp32 input
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            ext, _ = self.model._create_attention_masks(attention_mask=mask, encoder_attention_mask=None, embedding_output=h,
                                                        encoder_hidden_states=None, cache=None)
            x = h
            for layer in self.layers:
                x = layer(x, attention_mask=ext)
                if isinstance(x, tuple):
                    x = x[0]
        m = mask.unsqueeze(-1).float()
        last = (x.float() * m).sum(1) / m.sum(1).clamp(min=1.0)
        return torch.cat([F.normalize(last, dim=-1), mid.float()], dim=-1)

    def state(self) -> dict[str, torch.Tensor]:
        prefix = f"encoder.layer."
        out = {}
        for i, layer in enumerate(self.layers):
            for name, v in layer.state_dict().items():
                out[f"{prefix}{N_LAYERS - self.k + i}.{name}"] = v.detach().clone()
        return out

    def load(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state, strict=False)


def save_overlay(state: dict[str, torch.Tensor], out: Path) -> None:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous().to(torch.float16) for k, v in state.items()}, str(out / "encoder.safetensors"))
