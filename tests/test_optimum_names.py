"""Optimum / optimum-intel class names: one per task class, made from the task table; generative
names generate PyTorch's tokens; a name whose task is not implemented is not importable."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from transformers import AutoFeatureExtractor, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer, WhisperForConditionalGeneration

import optibridge.modeling as modeling
import optibridge.onnxruntime as ort_names
import optibridge.openvino as ov_names
from optibridge.modeling.tasks import task_class
from optibridge.tasks import TASKS

GREEDY = dict(max_new_tokens=12, min_new_tokens=12, do_sample=False)


@pytest.mark.parametrize("module,prefix", [(ort_names, "ORTModel"), (ov_names, "OVModel")])
def test_every_task_class_has_its_peer_name_and_only_those(module, prefix):
    ours = [name for name in modeling.__all__ if name.startswith("OBModelFor")]
    # the table covers every task; OBModelForCustomTasks runs any one-call task
    assert {getattr(modeling, name).task_name for name in ours} == set(TASKS) | {""}
    for task in TASKS:
        cls = task_class(task)
        peer = getattr(module, cls.__name__.replace("OBModel", prefix))
        assert issubclass(peer, cls) and peer.task_name == task
        assert peer is getattr(module, peer.__name__)  # built once
    assert sorted(n for n in module.__all__ if "ModelFor" in n) == sorted(n.replace("OBModel", prefix) for n in ours)
    assert set(module.__all__) <= set(dir(module))


def test_a_name_whose_task_is_not_implemented_is_not_importable():
    with pytest.raises(ImportError, match="has no ORTModelForTextToSpeechSeq2Seq: optibridge does not implement the task .* ORTModelForCausalLM"):
        from optibridge.onnxruntime import ORTModelForTextToSpeechSeq2Seq  # noqa: F401
    with pytest.raises(AttributeError, match="has no OVModelForTextToSpeechSeq2Seq: .*OVModelForSpeechSeq2Seq"):
        ov_names.OVModelForTextToSpeechSeq2Seq  # noqa: B018
    assert not hasattr(ort_names, "ORTModelForDepthEstimation")
    with pytest.raises(AttributeError, match="has no attribute 'something_else'"):
        ort_names.something_else  # noqa: B018


@pytest.mark.parametrize("module,name,points_to", [
    (ort_names, "QuantFormat", "optibridge quantize MODEL_DIR OUT"),
    (ort_names, "ORTConfig", "optibridge.quantize(MODEL_DIR"),
    (ort_names, "pipeline", "transformers.pipeline(task, model=ORTModelFor"),
    (ort_names, "ORTTrainer", "optibridge.training.OBTrainer"),
    (ov_names, "OVMixedQuantizationConfig", "--backend openvino --mode int8-weights"),
    (ov_names, "OVCalibrationDataset", "OVQuantizer.quantize(calibration_dataset=...) a datasets.Dataset"),
    (ov_names, "pipeline", "transformers.pipeline(task, model=OVModelFor"),
    (ov_names, "OVTrainer", "optibridge.training.OBTrainer"),
])
def test_the_peers_tool_classes_name_what_optibridge_offers_instead(module, name, points_to):
    """Optimum's quantizers, configs, pipeline and trainers are not re-created; importing one says what to use."""
    with pytest.raises(ImportError) as missing:
        exec(f"from {module.__name__} import {name}", {})
    message = str(missing.value)
    assert f"has no {'Optimum' if module is ort_names else 'optimum-intel'}'s {name}; " in message and points_to in message
    _check_named_commands(message)


def _check_named_commands(message: str) -> int:
    """The quantization modes and CLI commands ``message`` tells a user to run exist; returns how many it names."""
    from optibridge import QuantizationConfig
    from optibridge.cli import main

    modes = re.findall(r"--mode ([a-z0-9-]+)", message) + re.findall(r"mode='([a-z0-9-]+)'", message)
    for mode in modes:
        assert QuantizationConfig(mode=mode).mode == mode
    commands = re.findall(r"`optibridge (\w+) ", message)
    for command in commands:
        assert main([command, "--help"]) == 0
    return len(modes) + len(commands)


@pytest.mark.parametrize("argument", ["quantization_config", "load_in_4bit"])
def test_the_commands_a_refused_loading_argument_names_exist(argument, capsys):
    from optibridge.modeling.base import PEER_ARGUMENTS

    assert _check_named_commands(PEER_ARGUMENTS[argument]) >= 2  # `optibridge quantize` and its --mode


def test_ort_causal_lm_generates_pytorch_tokens(tiny_generative, exported_generative):
    from optibridge.onnxruntime import ORTModelForCausalLM

    path = tiny_generative("gpt2")
    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    inputs = tok(["the cat sat", "hello"], padding=True, return_tensors="pt")
    model = ORTModelForCausalLM.from_pretrained(exported_generative("gpt2").path)
    want = AutoModelForCausalLM.from_pretrained(path).eval().generate(**inputs, **GREEDY)
    got = model.generate(**inputs, **GREEDY)
    assert torch.equal(got, want) and len(set(got[0, -12:].tolist())) > 1


@pytest.mark.parametrize("module", [ort_names, ov_names], ids=["ort", "openvino"])
def test_seq2seq_names_generate_pytorch_tokens(module, tiny_generative, exported_generative):
    path = tiny_generative("t5")
    tok = AutoTokenizer.from_pretrained(path)
    inputs = tok(["the cat sat on the mat", "hello"], padding=True, return_tensors="pt")
    cls = module.ORTModelForSeq2SeqLM if module is ort_names else module.OVModelForSeq2SeqLM
    got = cls.from_pretrained(exported_generative("t5").path).generate(**inputs, **GREEDY)
    assert torch.equal(got, AutoModelForSeq2SeqLM.from_pretrained(path).eval().generate(**inputs, **GREEDY))


@pytest.mark.parametrize("module", [ort_names, ov_names], ids=["ort", "openvino"])
def test_speech_names_generate_pytorch_tokens(module, tiny_generative, exported_generative):
    path = tiny_generative("whisper")
    wave = np.random.default_rng(0).normal(0, 0.1, 12000).astype(np.float32)
    features = AutoFeatureExtractor.from_pretrained(path)(wave, sampling_rate=16000, return_tensors="pt")["input_features"]
    cls = module.ORTModelForSpeechSeq2Seq if module is ort_names else module.OVModelForSpeechSeq2Seq
    got = cls.from_pretrained(exported_generative("whisper").path).generate(features, **GREEDY)
    assert torch.equal(got, WhisperForConditionalGeneration.from_pretrained(path).eval().generate(features, **GREEDY))


def test_custom_tasks_refuse_a_generative_artifact_and_name_its_class(exported_generative):
    from optibridge.errors import ArtifactError

    with pytest.raises(ArtifactError, match="holds a text-generation model .* load it with OBModelForCausalLM"):
        ort_names.ORTModelForCustomTasks.from_pretrained(exported_generative("gpt2").path)
