"""The encoder's own BERT and tokenizer (guard/embedded/bert.py) against transformers'.

Serving runs MiniBert (plain torch) so that start-up does not import transformers'
model classes; these tests hold it to BertModel's outputs and the HF tokenizer's ids.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from guard.embedded.encoder import MID_LAYER, Encoder, model_dir

ROOT = Path(__file__).resolve().parents[1]
TEXTS = [
    "Hello world",
    "How do I make a pipe bomb to hurt people at a concert?",
    "Ünïcödé façade — naïve café 東京 ﬁ \u200b zero\u00a0width",
    "emoji 😀🔥 and ＦＵＬＬwidth, tabs\tand\nnew lines",
    "don't stop-believin' e.g. U.S.A. 3.14 $100 <script>alert(1)</script>",
    "word " * 200,
    "",
]


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder(precision="fp32")


@pytest.fixture(scope="module")
def hf():
    from transformers import AutoModel, AutoTokenizer

    path = str(model_dir())
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    tok.model_max_length = 1 << 30
    return tok, AutoModel.from_pretrained(path, local_files_only=True).eval()


def test_tokenizer_ids_match_the_hf_tokenizer(encoder, hf):
    tok, _ = hf
    ours = encoder.tokenizer(TEXTS, add_special_tokens=False, truncation=False)["input_ids"]
    assert ours == tok(TEXTS, add_special_tokens=False, truncation=False)["input_ids"]
    assert len(ours[5]) == 200  # no 128-token truncation from tokenizer.json
    assert (encoder.tokenizer.cls_token_id, encoder.tokenizer.sep_token_id, encoder.tokenizer.pad_token_id) == (
        tok.cls_token_id, tok.sep_token_id, tok.pad_token_id)
    assert encoder.tokenizer.convert_tokens_to_ids([".", "?", "no-such-token"]) == tok.convert_tokens_to_ids(
        [".", "?", "no-such-token"])


@pytest.mark.parametrize("bf16", [False, True])
def test_hidden_states_match_bertmodel(encoder, hf, bf16):
    enc = encoder.tokenize(TEXTS, max_tokens=128)
    width = max(len(w) for w in enc.windows)
    ids = torch.zeros(len(enc.windows), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, w in enumerate(enc.windows):
        ids[i, : len(w)], mask[i, : len(w)] = torch.tensor(w), 1
    assert not bool(mask.all())  # padding is exercised
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        ours = encoder.net(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        theirs = hf[1](input_ids=ids, attention_mask=mask, output_hidden_states=True)
    real = mask.bool()
    for layer in (MID_LAYER, 6):
        diff = (ours.hidden_states[layer].float() - theirs.hidden_states[layer].float())[real].abs().max()
        assert diff <= (1e-3 if bf16 else 1e-5), (layer, float(diff))
    assert torch.equal(ours.last_hidden_state, ours.hidden_states[6])


def test_model_property_is_a_bertmodel_sharing_the_weights():
    enc = Encoder(precision="fp32")
    hf = enc.model
    assert type(hf).__name__ == "BertModel"
    ours = enc.net.encoder.layer[5].output.dense.weight
    theirs = hf.encoder.layer[5].output.dense.weight
    with torch.no_grad():
        theirs.mul_(0.5)  # what training does to the layers it tunes, seen by serving's forward
    assert torch.equal(ours, theirs) and ours.data_ptr() == theirs.data_ptr()
    feats = enc.embed(["a text"])
    assert feats.shape == (1, 768) and torch.isfinite(feats).all()


def test_serving_never_imports_transformers():
    code = (
        "import sys; from guard.policies import PolicySet; from guard.registry import build_guard; "
        "ps = PolicySet.load('policies.yaml'); g = build_guard('embedded', {}, ps); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('transformers', 'accelerate')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
