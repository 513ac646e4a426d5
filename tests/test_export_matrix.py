"""Every supported architecture × task exports, validates, and runs at new shapes on ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers
from tiny_models import ARCHITECTURES as TINY, DECODERS, REQUIRED_ARCHITECTURES, SEQ2SEQ, all_model_tasks

from optibridge.exporter import ARCHITECTURES
from optibridge.modeling import TASK_CLASSES
from optibridge.tasks import TASKS

PAIRS = all_model_tasks()
MOE = ("mixtral", "qwen2_moe", "deepseek_v3", "deepseek_v2")  # tests/test_moe.py, tests/test_complex_rotary.py
PADDED_SPEECH = ("moonshine", "speech_to_text")  # tests/test_padded_speech_asr.py


def test_every_supported_architecture_has_a_tiny_model_and_the_same_tasks():
    # A completeness check: adding an architecture to the exporter without a test model fails here.
    assert set(ARCHITECTURES) == set(TINY) | set(DECODERS) | set(SEQ2SEQ) | {"whisper", "llava", "llava_next", "gemma3"} | set(MOE) | set(PADDED_SPEECH)
    generative = {**dict.fromkeys(DECODERS, ("text-generation",)), **dict.fromkeys(SEQ2SEQ, ("text2text-generation",)),
                  **dict.fromkeys(("whisper", *PADDED_SPEECH), ("automatic-speech-recognition",)), **dict.fromkeys(("llava", "llava_next"), ("image-text-to-text", "text-generation")),
                  "gemma3": ("image-text-to-text",),  # tiny_vision.py
                  **dict.fromkeys(MOE, ("text-generation",))}  # tests/test_moe.py, built by the coverage sweep's configs
    for model_type, arch in ARCHITECTURES.items():
        expected = TINY[model_type].tasks if model_type in TINY else generative[model_type]
        proven_elsewhere = {"sentence-similarity"} if model_type == "bert" else set()  # tests/test_sentence_embeddings.py
        assert set(arch.tasks) == set(expected) | proven_elsewhere, model_type


def test_the_issue_required_architectures_and_three_more_are_supported():
    assert set(REQUIRED_ARCHITECTURES) <= set(ARCHITECTURES)
    assert len(set(ARCHITECTURES) - set(REQUIRED_ARCHITECTURES)) >= 3


def _pytorch_model(path, task):
    auto = getattr(transformers, TASKS[task].auto_class)
    return auto.from_pretrained(path, attn_implementation="eager").eval()


def _fresh_inputs(model_type: str, task: str, config, batch: int, seq: int) -> dict[str, torch.Tensor]:
    """Inputs at yet another shape than export's trace and validation shapes, with padding."""
    g = torch.Generator().manual_seed(123)
    if TINY[model_type].modality == "vision":
        return {"pixel_values": torch.randn(batch, 3, config.image_size, config.image_size, generator=g)}
    shape = (batch, 2, seq) if task == "multiple-choice" else (batch, seq)
    ids = torch.randint(5, config.vocab_size, shape, generator=g)
    mask = torch.ones(shape, dtype=torch.int64)
    mask[-1, ..., seq // 3:] = 0
    ids[-1, ..., seq // 3:] = config.pad_token_id
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("model_type,task", PAIRS, ids=[f"{m}-{t}" for m, t in PAIRS])
def test_export_validates_and_matches_pytorch_at_new_shapes(model_type, task, exported, tiny_model):
    artifact = exported(model_type, task)
    meta = artifact.metadata
    assert meta.task == task and meta.model_type == model_type
    assert meta.validation["passed"] and meta.validation["atol"] == 1e-4
    assert all(o["max_abs_diff"] <= 1e-4 for o in meta.validation["outputs"])
    # dynamic batch axis on every input, dynamic sequence on text inputs
    for spec in meta.inputs:
        assert spec.shape[0] == "batch_size"
        if TINY[model_type].modality == "text":
            assert spec.shape[-1] == "sequence_length"
    assert set(meta.files) >= {"model.onnx", "config.json"}

    model = TASK_CLASSES[task].from_pretrained(artifact.path)
    reference = _pytorch_model(tiny_model(model_type, task), task)
    inputs = _fresh_inputs(model_type, task, reference.config, batch=3, seq=13)
    with torch.no_grad():
        expected = reference(**inputs)
    got = model(**inputs)
    assert type(got) is type(expected)
    for name in TASKS[task].outputs:
        if expected.get(name) is None:
            continue
        assert isinstance(got[name], torch.Tensor)
        np.testing.assert_allclose(got[name].numpy(), expected[name].numpy(), atol=1e-4, rtol=0)


@pytest.mark.parametrize("model_type,task", [("bert", "text-classification"), ("vit", "image-classification")])
def test_dynamo_exporter_gives_the_same_contract(model_type, task, exported):
    artifact = exported(model_type, task, exporter="dynamo")
    meta = artifact.metadata
    assert meta.exporter == "dynamo" and meta.validation["passed"]
    assert meta.outputs[0].shape[0] == "batch_size"  # dynamo's own axis names were replaced by ours
    assert not (artifact.path / "model.onnx.data").exists()  # small models keep weights inside model.onnx
