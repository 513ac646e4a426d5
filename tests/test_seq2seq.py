"""Encoder-decoder LMs (T5, BART, Marian): encoder + two decoder graphs, generate() matches PyTorch."""

from __future__ import annotations

import pytest
import torch
from tiny_models import SEQ2SEQ
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from optibridge import OBModelForSeq2SeqLM
from optibridge.errors import InputError

TEXTS = ["the cat sat on the mat", "paris is the capital of france and a city", "hello"]


@pytest.mark.parametrize("model_type", SEQ2SEQ)
def test_greedy_and_beam_search_match_pytorch(model_type, tiny_generative, exported_generative):
    artifact = exported_generative(model_type)
    meta = artifact.metadata
    assert meta.task == "text2text-generation" and meta.validation["passed"]
    assert set(meta.graphs) == {"encoder", "decoder", "decoder_with_past"}
    assert "past_key_values.0.encoder.key" in meta.graphs["decoder_with_past"].input_names
    assert "present.0.encoder.key" in meta.graphs["decoder"].output_names
    checks = {o["name"]: o["max_abs_diff"] for o in meta.validation["outputs"]}
    assert checks["logits (next decoder step, with cache)"] <= 1e-4

    path = tiny_generative(model_type)
    tok = AutoTokenizer.from_pretrained(path)
    reference = AutoModelForSeq2SeqLM.from_pretrained(path).eval()
    model = OBModelForSeq2SeqLM.from_pretrained(artifact.path)
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    greedy = dict(max_new_tokens=32, min_new_tokens=32, do_sample=False)
    ours = model.generate(**batch, **greedy)
    assert ours.shape[1] == 33  # start token + 32
    assert torch.equal(ours, reference.generate(**batch, **greedy))
    for row, text in enumerate(TEXTS):  # padding in the encoder batch changes nothing per row
        assert torch.equal(model.generate(**tok([text], return_tensors="pt"), **greedy)[0], ours[row])
    beams = dict(max_new_tokens=8, num_beams=3, do_sample=False)
    assert torch.equal(model.generate(**batch, **beams), reference.generate(**batch, **beams))


def test_use_cache_false_is_reported_and_keeps_the_tokens(tiny_generative, exported_generative):
    # Optimum's ORTModelForSeq2SeqLM exposes use_cache; False recomputes the decoder over the whole output
    from optibridge.onnxruntime import ORTModelForSeq2SeqLM

    path = tiny_generative("t5")
    batch = AutoTokenizer.from_pretrained(path)(TEXTS, padding=True, return_tensors="pt")
    greedy = dict(max_new_tokens=6, min_new_tokens=6, do_sample=False)
    cached = ORTModelForSeq2SeqLM.from_pretrained(exported_generative("t5").path)
    uncached = ORTModelForSeq2SeqLM.from_pretrained(exported_generative("t5").path, use_cache=False)
    assert cached.use_cache is True and uncached.use_cache is False
    assert torch.equal(uncached.generate(**batch, **greedy), cached.generate(**batch, **greedy))


def test_forward_returns_seq2seq_output_with_both_caches(tiny_generative, exported_generative):
    path = tiny_generative("bart")
    tok = AutoTokenizer.from_pretrained(path)
    model = OBModelForSeq2SeqLM.from_pretrained(exported_generative("bart").path)
    reference = AutoModelForSeq2SeqLM.from_pretrained(path).eval()
    inputs = tok(TEXTS, padding=True, return_tensors="pt")
    start = torch.full((3, 1), reference.config.decoder_start_token_id)
    out = model(**inputs, decoder_input_ids=start)
    with torch.no_grad():
        want = reference(**inputs, decoder_input_ids=start)
    assert type(out).__name__ == "Seq2SeqLMOutput"
    assert (out.logits - want.logits).abs().max() <= 1e-4
    assert out.past_key_values.self_attention_cache.get_seq_length() == 1
    assert out.past_key_values.cross_attention_cache.get_seq_length() == inputs["input_ids"].shape[1]
    with pytest.raises(InputError, match="missing required input 'decoder_input_ids'"):
        model(**inputs)
    for asked in ("output_attentions", "output_hidden_states"):  # not silently left out of the output
        with pytest.raises(InputError, match=f"{asked} is not supported by exported models"):
            model(**inputs, decoder_input_ids=start, **{asked: True})
