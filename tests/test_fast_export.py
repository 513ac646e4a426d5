"""The fast (TorchScript) export path of generative models: its graphs hold at batch sizes and past
lengths other than the traced ones, and a fast graph that fails validation falls back to dynamo."""

from __future__ import annotations

import logging

import numpy as np
import onnxruntime as ort
import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

from optibridge.exporter.fast_path import exporter_attempts
from optibridge.kv_cache import cache_from_pairs, cache_name, cache_pairs, encoder_decoder_cache, output_cache

# Traced at batch 2, 5 new tokens, past 4 (decoder) / 2 new tokens, past 3 (seq2seq): every case differs.
SHAPES = [(1, 1, 0), (4, 3, 1), (3, 1, 11), (1, 6, 17)]  # (batch, new tokens, past length)


def _session(artifact, graph):
    return ort.InferenceSession(str(artifact.path / artifact.metadata.graphs[graph].file), providers=["CPUExecutionProvider"])


def _run(session, feed):
    names = [o.name for o in session.get_outputs()]
    inputs = {i.name for i in session.get_inputs()}
    return dict(zip(names, session.run(None, {k: v for k, v in feed.items() if k in inputs})))


@pytest.mark.parametrize("batch,new,past_len", SHAPES)
def test_fast_decoder_graph_matches_pytorch_at_new_batch_sizes_and_past_lengths(batch, new, past_len, tiny_generative, exported_generative):
    artifact = exported_generative("llama")
    assert artifact.metadata.exporter == "torchscript"  # really the fast path
    session = _session(artifact, "model")
    model = AutoModelForCausalLM.from_pretrained(tiny_generative("llama"), attn_implementation="eager").eval()
    layout = artifact.metadata.extra["kv_cache"]
    generator = torch.Generator().manual_seed(batch * 100 + past_len)
    shape = (batch, layout["num_heads"], past_len, layout["head_dim"])
    past = [(torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)) for _ in range(layout["num_layers"])]
    ids = torch.randint(5, 500, (batch, new), generator=generator)
    mask = torch.ones(batch, past_len + new, dtype=torch.long)
    mask[0, : past_len // 2] = 0  # a left-padded row
    positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, -new:]
    feed = {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "position_ids": positions.numpy()}
    for i, (key, value) in enumerate(past):
        feed[f"past_key_values.{i}.key"], feed[f"past_key_values.{i}.value"] = key.numpy(), value.numpy()
    got = _run(session, feed)
    with torch.no_grad():
        want = model(input_ids=ids, attention_mask=mask, position_ids=positions, **{cache_name(): cache_from_pairs(past)},
                     use_cache=True, return_dict=True)
    assert got["logits"].shape == (batch, new, want.logits.shape[-1])
    np.testing.assert_allclose(got["logits"], want.logits.numpy(), atol=1e-4, rtol=0)
    for i, (key, value) in enumerate(cache_pairs(output_cache(want))):
        assert got[f"present.{i}.key"].shape[2] == past_len + new
        np.testing.assert_allclose(got[f"present.{i}.key"], key.numpy(), atol=1e-4, rtol=0)
        np.testing.assert_allclose(got[f"present.{i}.value"], value.numpy(), atol=1e-4, rtol=0)


@pytest.mark.parametrize("batch,new,past_len", SHAPES[1:])
def test_fast_seq2seq_decoder_with_past_matches_pytorch_at_new_batch_sizes_and_past_lengths(batch, new, past_len, tiny_generative, exported_generative):
    artifact = exported_generative("t5")
    assert artifact.metadata.exporter == "torchscript"
    session = _session(artifact, "decoder_with_past")
    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_generative("t5")).eval()
    layout = artifact.metadata.extra["kv_cache"]
    generator = torch.Generator().manual_seed(batch * 100 + past_len)
    encoder_length = 7
    hidden = torch.randn(batch, encoder_length, model.config.d_model, generator=generator)
    enc_mask = torch.ones(batch, encoder_length, dtype=torch.long)
    enc_mask[0, 5:] = 0  # a right-padded encoder row

    def pair(length):
        shape = (batch, layout["num_heads"], length, layout["head_dim"])
        return torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)

    self_pairs = [pair(past_len) for _ in range(layout["num_layers"])]
    cross_pairs = [pair(encoder_length) for _ in range(layout["num_layers"])]
    ids = torch.randint(5, 500, (batch, new), generator=generator)
    feed = {"input_ids": ids.numpy(), "encoder_attention_mask": enc_mask.numpy(), "encoder_hidden_states": hidden.numpy()}
    for i in range(layout["num_layers"]):
        for kind, (key, value) in (("decoder", self_pairs[i]), ("encoder", cross_pairs[i])):
            feed[f"past_key_values.{i}.{kind}.key"], feed[f"past_key_values.{i}.{kind}.value"] = key.numpy(), value.numpy()
    got = _run(session, feed)
    with torch.no_grad():
        want = model(encoder_outputs=(hidden,), attention_mask=enc_mask, decoder_input_ids=ids,
                     **{cache_name(): encoder_decoder_cache(self_pairs, cross_pairs)}, use_cache=True, return_dict=True)
    np.testing.assert_allclose(got["logits"], want.logits.numpy(), atol=1e-4, rtol=0)
    presents = cache_pairs(output_cache(want).self_attention_cache)
    assert got["present.0.decoder.key"].shape[2] == past_len + new
    np.testing.assert_allclose(got["present.1.decoder.value"], presents[1][1].numpy(), atol=1e-4, rtol=0)


def test_a_fast_graph_that_fails_validation_is_exported_again_with_dynamo(tiny_generative, tmp_path, monkeypatch, caplog):
    from optibridge import export
    from optibridge.exporter import decoder

    def no_causality(attention_mask, input_ids, dtype):  # a broken fast path: every token sees the future
        return torch.zeros(attention_mask.shape[0], 1, input_ids.shape[1], attention_mask.shape[1], dtype=dtype)

    monkeypatch.setattr(decoder, "additive_causal_mask", no_causality)
    steps: list[str] = []
    with caplog.at_level(logging.WARNING, logger="optibridge.exporter.core"):
        result = export(tiny_generative("llama"), tmp_path / "out", on_step=steps.append)
    meta = result.artifact.metadata
    assert meta.exporter == "dynamo" and meta.validation["passed"]
    said = [s for s in steps if "exporting it again with dynamo" in s]
    assert len(said) == 1 and "torchscript export of llama did not hold" in said[0] and "ValidationError" in said[0]
    assert any("exporting it again with dynamo" in r.getMessage() for r in caplog.records)


def test_the_fast_path_is_tried_only_where_validation_can_judge_it(tiny_generative):
    llama = AutoConfig.from_pretrained(tiny_generative("llama"))
    mistral = AutoConfig.from_pretrained(tiny_generative("mistral"))
    assert exporter_attempts("auto", "decoder", llama, validate=True, opset=None) == ["torchscript", "dynamo"]
    assert exporter_attempts("auto", "seq2seq", llama, validate=True, opset=None) == ["torchscript", "dynamo"]
    assert exporter_attempts("auto", "decoder", llama, validate=False, opset=None) == ["dynamo"]  # nothing would check it
    assert exporter_attempts("auto", "decoder", llama, validate=True, opset=21) == ["dynamo"]  # past TorchScript's opsets
    assert exporter_attempts("auto", "decoder", mistral, validate=True, opset=None) == ["dynamo"]  # sliding window
    assert exporter_attempts("dynamo", "decoder", llama, validate=True, opset=None) == ["dynamo"]
    assert exporter_attempts("torchscript", "decoder", llama, validate=True, opset=None) == ["torchscript"]
    # encoders: TorchScript, then dynamo should it raise; a chosen exporter is the only one
    assert exporter_attempts("auto", "encoder", llama, validate=True, opset=None) == ["torchscript", "dynamo"]
    assert exporter_attempts("torchscript", "encoder", llama, validate=True, opset=None) == ["torchscript"]


def test_an_encoder_torchscript_cannot_write_is_exported_with_dynamo(tiny_model, tmp_path, monkeypatch):
    """UperNet's pyramid pooling at a fixed size is an operator TorchScript's exporter refuses; any such
    refusal now gets a dynamo export, validated like the first try would have been."""
    from optibridge import export
    from optibridge.exporter import encoder

    real = encoder.export_graph

    def refuse_torchscript(*args, exporter, **kwargs):
        if exporter == "torchscript":
            raise RuntimeError("Unsupported: ONNX export of operator adaptive_avg_pool2d")
        return real(*args, exporter=exporter, **kwargs)

    monkeypatch.setattr(encoder, "export_graph", refuse_torchscript)
    steps: list[str] = []
    result = export(tiny_model("bert", "text-classification"), tmp_path / "out", on_step=steps.append)
    assert result.artifact.metadata.exporter == "dynamo" and result.validation.passed
    assert any("torchscript export of bert did not hold" in s and "adaptive_avg_pool2d" in s for s in steps)


@pytest.mark.parametrize("traced", [True, False], ids=["traced-step", "plain-step"])
def test_the_traced_step_holds_even_when_traced_with_an_empty_cache(traced, tiny_generative, tmp_path):
    """transformers' DynamicLayer returns a literal 0 as the past length of an empty cache, which a plain
    trace bakes into the mask; the fast path's step derives every size from tensors and does not."""
    from optibridge.exporter.decoder import CausalLMStep, TracedCausalLMStep
    from optibridge.exporter.torch_to_onnx import export_module

    model = AutoModelForCausalLM.from_pretrained(tiny_generative("llama"), attn_implementation="eager").eval()
    step = (TracedCausalLMStep if traced else CausalLMStep)(model, use_cache=True)
    layers, heads, head_dim = model.config.num_hidden_layers, model.config.num_key_value_heads, model.config.head_dim
    names = [f"past.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]
    tokens = {0: "batch", 1: "new"}
    axes = {"input_ids": tokens, "position_ids": tokens, "attention_mask": {0: "batch", 1: "total"}, **{n: {0: "batch", 2: "past"} for n in names}}
    ids = torch.randint(5, 500, (2, 4))
    empty = [torch.zeros(2, heads, 0, head_dim) for _ in names]
    export_module(step, (ids, torch.ones(2, 4, dtype=torch.long), torch.arange(4).expand(2, 4), *empty),
                  ["input_ids", "attention_mask", "position_ids", *names], ["logits"], axes, {"logits": tokens},
                  tmp_path / "step.onnx", exporter="torchscript", opset=None, external_data=False)
    session = ort.InferenceSession(str(tmp_path / "step.onnx"), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(3)
    past = [torch.randn(3, heads, 5, head_dim, generator=generator) for _ in names]
    ids2 = torch.randint(5, 500, (3, 2), generator=generator)
    mask2 = torch.ones(3, 7, dtype=torch.long)
    positions2 = torch.tensor([[5, 6]] * 3)
    feed = {"input_ids": ids2.numpy(), "attention_mask": mask2.numpy(), "position_ids": positions2.numpy(),
            **{n: t.numpy() for n, t in zip(names, past)}}
    with torch.no_grad():
        want = model(input_ids=ids2, attention_mask=mask2, position_ids=positions2,
                     **{cache_name(): cache_from_pairs(list(zip(past[0::2], past[1::2])))}, use_cache=True).logits.numpy()
    try:
        diff = float(np.abs(_run(session, feed)["logits"] - want).max())
        outcome, holds = f"max abs diff {diff:.3g}", diff <= 1e-4
    except ort.capi.onnxruntime_pybind11_state.Fail as exc:  # the baked 2-wide mask meets the 7-wide scores
        outcome, holds = str(exc)[:200], False
    assert holds == traced, outcome


def test_a_multimodal_models_sliding_window_sends_it_to_dynamo():
    """The window lives in the text config of a model that takes images (gemma3): the fast path reads it there too."""
    import transformers

    from optibridge.exporter.fast_path import fast_path_refusal

    text = transformers.Gemma3TextConfig(vocab_size=300, hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
                                         num_key_value_heads=2, head_dim=8, sliding_window=4, layer_types=["sliding_attention", "full_attention"])
    config = transformers.Gemma3Config(text_config=text.to_dict(), vision_config=transformers.SiglipVisionConfig().to_dict())
    assert fast_path_refusal(config) == "sliding-window or chunked attention"
    assert fast_path_refusal(transformers.LlavaConfig()) is None
