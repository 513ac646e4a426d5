"""Whisper: encoder + decoder graphs, Whisper's own generate() and the ASR pipeline on a waveform."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoFeatureExtractor, AutoTokenizer, WhisperForConditionalGeneration, pipeline

from optibridge import OBModelForSpeechSeq2Seq
from optibridge.errors import InputError


@pytest.fixture(scope="module")
def whisper(tiny_generative, exported_generative):
    path = tiny_generative("whisper")
    return (
        path,
        OBModelForSpeechSeq2Seq.from_pretrained(exported_generative("whisper").path),
        WhisperForConditionalGeneration.from_pretrained(path).eval(),
        AutoFeatureExtractor.from_pretrained(path),
        AutoTokenizer.from_pretrained(path),
    )


def _waves(n):
    return [np.random.default_rng(i).normal(0, 0.1, 9000 + 1500 * i).astype(np.float32) for i in range(n)]


def test_artifact_has_encoder_and_decoder_graphs(exported_generative):
    meta = exported_generative("whisper").metadata
    assert meta.task == "automatic-speech-recognition" and meta.validation["passed"]
    assert meta.graphs["encoder"].input_names == ["input_features"]
    assert meta.graphs["encoder"].inputs[0].shape[0] == "batch_size"
    assert meta.graphs["encoder"].inputs[0].shape[2] == 100  # Whisper's encoder takes a fixed frame count


def test_generate_on_input_features_matches_pytorch(whisper):
    _, model, reference, features, _ = whisper
    batch = features(_waves(3), sampling_rate=16000, return_tensors="pt")["input_features"]
    for inputs in (batch, batch[:1]):
        ours = model.generate(inputs, max_new_tokens=32, min_new_tokens=32)
        assert torch.equal(ours, reference.generate(inputs, max_new_tokens=32, min_new_tokens=32))
        assert ours.shape[1] >= 32


def test_asr_pipeline_on_a_numpy_waveform(whisper):
    _, model, reference, features, tokenizer = whisper
    ours = pipeline("automatic-speech-recognition", model=model, tokenizer=tokenizer, feature_extractor=features)
    theirs = pipeline("automatic-speech-recognition", model=reference, tokenizer=tokenizer, feature_extractor=features)
    for wave in _waves(2):
        got = ours(wave, generate_kwargs={"max_new_tokens": 10})
        assert got == theirs(wave, generate_kwargs={"max_new_tokens": 10})
        assert isinstance(got["text"], str) and got["text"]


def test_wrong_feature_shape_is_a_clear_error(whisper):
    _, model, _, _, _ = whisper
    with pytest.raises(InputError, match=r"input_features: dimension 2 must be 100 \(expected shape \(batch_size, 16, 100\)\)"):
        model.get_encoder()(input_features=torch.zeros(1, 16, 40))
    with pytest.raises(InputError, match="missing required input 'decoder_input_ids'"):
        model(input_features=torch.zeros(1, 16, 100))
