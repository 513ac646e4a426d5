"""The OpenVINO backend: every exported artifact runs on it through the same classes, at fp32 parity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_export_matrix import PAIRS, _fresh_inputs, _pytorch_model
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer, pipeline

from optibridge import OBModelForCausalLM, OBModelForFeatureExtraction, OBModelForSeq2SeqLM, OBModelForSequenceClassification
from optibridge.backends import get_registry
from optibridge.errors import BackendError
from optibridge.modeling import TASK_CLASSES
from optibridge.tasks import TASKS


def test_openvino_is_listed_with_the_devices_it_reports():
    status = {s.name: s for s in get_registry().statuses()}["openvino"]
    assert status.available and "cpu" in status.devices and "run" in status.features


@pytest.mark.parametrize("model_type,task", PAIRS, ids=[f"{m}-{t}" for m, t in PAIRS])
def test_every_encoder_artifact_matches_pytorch_on_openvino(model_type, task, exported, tiny_model):
    model = TASK_CLASSES[task].from_pretrained(exported(model_type, task).path, backend="openvino")
    assert model.backend == "openvino"
    reference = _pytorch_model(tiny_model(model_type, task), task)
    inputs = _fresh_inputs(model_type, task, reference.config, batch=3, seq=13)
    with torch.no_grad():
        expected = reference(**inputs)
    got = model(**inputs)
    for name in TASKS[task].outputs:
        if expected.get(name) is not None:
            np.testing.assert_allclose(got[name].numpy(), expected[name].numpy(), atol=1e-4, rtol=0)


def test_a_device_openvino_does_not_have_is_an_error_listing_the_ones_it_has(exported):
    with pytest.raises(BackendError, match=r"(has no device 'gpu'.*its devices: cpu)|(no device 'gpu' on this machine; its devices: CPU)"):
        OBModelForSequenceClassification.from_pretrained(exported("bert", "text-classification").path, backend="openvino", device="gpu")


def test_options_reach_the_compiled_model_and_unknown_ones_are_listed(exported, tmp_path):
    path = exported("bert", "text-classification").path
    options = dict(performance_hint="throughput", inference_num_threads=1, compiled_cache_dir=str(tmp_path / "cache"))
    model = OBModelForSequenceClassification.from_pretrained(path, backend="openvino", **options)
    compiled = model.session.compiled
    assert str(compiled.get_property("PERFORMANCE_HINT")).endswith("THROUGHPUT")
    assert int(compiled.get_property("INFERENCE_NUM_THREADS")) == 1
    assert "float32" in str(compiled.get_property("INFERENCE_PRECISION_HINT"))  # fp32 parity by default
    assert not model.session.loaded_from_cache
    again = OBModelForSequenceClassification.from_pretrained(path, backend="openvino", **options)
    assert again.session.loaded_from_cache  # the second load of the same model (same options) comes from the cache
    with pytest.raises(BackendError, match="unknown OpenVINO option.*valid options: performance_hint"):
        OBModelForSequenceClassification.from_pretrained(path, backend="openvino", threads=2)


def test_text_classification_pipeline_on_openvino(exported, tiny_model):
    path = tiny_model("bert", "text-classification")
    tok = AutoTokenizer.from_pretrained(path)
    ours = pipeline("text-classification", model=OBModelForSequenceClassification.from_pretrained(exported("bert", "text-classification").path, backend="openvino"), tokenizer=tok)
    theirs = pipeline("text-classification", model=_pytorch_model(path, "text-classification"), tokenizer=tok)
    sentences = ["the cat sat on the mat", "hello"]
    for got, want in zip(ours(sentences), theirs(sentences)):
        assert got["label"] == want["label"] and got["score"] == pytest.approx(want["score"], abs=1e-4)


@pytest.mark.parametrize("model_type", ["gpt2", "llama"])
def test_kv_cache_generation_on_openvino_matches_pytorch(model_type, tiny_generative, exported_generative):
    path = tiny_generative(model_type)
    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    batch = tok(["the cat sat on the mat and", "paris is", "hello there my good friend"], padding=True, return_tensors="pt")
    model = OBModelForCausalLM.from_pretrained(exported_generative(model_type).path, backend="openvino")
    greedy = dict(max_new_tokens=32, min_new_tokens=32, do_sample=False)
    assert torch.equal(model.generate(**batch, **greedy), AutoModelForCausalLM.from_pretrained(path).eval().generate(**batch, **greedy))


def test_seq2seq_generation_on_openvino_matches_pytorch(tiny_generative, exported_generative):
    path = tiny_generative("t5")
    tok = AutoTokenizer.from_pretrained(path)
    batch = tok(["the cat sat on the mat", "hello"], padding=True, return_tensors="pt")
    model = OBModelForSeq2SeqLM.from_pretrained(exported_generative("t5").path, backend="openvino")
    greedy = dict(max_new_tokens=16, min_new_tokens=16, do_sample=False)
    assert torch.equal(model.generate(**batch, **greedy), AutoModelForSeq2SeqLM.from_pretrained(path).eval().generate(**batch, **greedy))


def test_optimum_intel_style_names_run_on_openvino(tiny_model, tiny_generative, exported_generative, tmp_path):
    from optibridge.openvino import OVModelForCausalLM, OVModelForSequenceClassification

    path = tiny_model("bert", "text-classification")
    model = OVModelForSequenceClassification.from_pretrained(path, export=True, device="CPU", ov_config={"PERFORMANCE_HINT": "LATENCY"})
    assert model.backend == "openvino"
    assert str(model.session.compiled.get_property("PERFORMANCE_HINT")).endswith("LATENCY")
    model.save_pretrained(tmp_path / "saved")
    again = OVModelForSequenceClassification.from_pretrained(tmp_path / "saved")
    ids = torch.randint(5, 100, (2, 7))
    torch.testing.assert_close(model(input_ids=ids).logits, again(input_ids=ids).logits)
    lm = OVModelForCausalLM.from_pretrained(exported_generative("gpt2").path)
    tok = AutoTokenizer.from_pretrained(tiny_generative("gpt2"))
    inputs = tok(["the cat"], return_tensors="pt")
    reference = AutoModelForCausalLM.from_pretrained(tiny_generative("gpt2")).eval()
    assert torch.equal(lm.generate(**inputs, max_new_tokens=8, do_sample=False), reference.generate(**inputs, max_new_tokens=8, do_sample=False))


def test_outputs_compiles_only_what_the_named_outputs_need(exported, tiny_model):
    path = exported("bert", "feature-extraction").path
    tok = AutoTokenizer.from_pretrained(tiny_model("bert", "feature-extraction"))
    batch = tok(["a short one", "and a somewhat longer sentence"], padding=True, return_tensors="np")
    full = OBModelForFeatureExtraction.from_pretrained(path, backend="openvino")
    pruned = OBModelForFeatureExtraction.from_pretrained(path, backend="openvino", outputs=["last_hidden_state"])
    want, got = full(**batch), pruned(**batch)
    assert "pooler_output" in want and "pooler_output" not in got  # the pooler head is not computed at all
    assert pruned.session.computed_outputs == ["last_hidden_state"]
    assert not any("pooler" in op.get_friendly_name() for op in pruned.session.model.get_ordered_ops())
    assert any("pooler" in op.get_friendly_name() for op in full.session.model.get_ordered_ops())
    np.testing.assert_array_equal(got.last_hidden_state, want.last_hidden_state)
    with pytest.raises(BackendError, match=r"outputs=\['logits'\]: graph 'model' has the outputs last_hidden_state, pooler_output"):
        OBModelForFeatureExtraction.from_pretrained(path, backend="openvino", outputs=["logits"])
