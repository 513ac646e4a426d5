"""Speech recognition models whose encoder takes padded audio with a mask and shortens it: Moonshine (raw
waveform, ``input_values``) and Speech2Text (log-mel frames, ``input_features``). The encoder graph also
returns the mask at its output length; generate() and the ASR pipeline match PyTorch on padded batches."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForSpeechSeq2Seq, Wav2Vec2FeatureExtractor, pipeline

from optibridge import OBModelForSpeechSeq2Seq, export
from optibridge.encoder_outputs import ENCODER_MASK
from optibridge.exporter.padded_speech import padded_inputs

sys.path.insert(0, str(Path(__file__).parent / "coverage"))
from tiny_configs import build_tiny  # noqa: E402
from tiny_models import make_tokenizer  # noqa: E402

CASES = {"moonshine": ("audio", "input_values"), "speech_to_text": ("speech", "input_features")}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    built = {}
    for model_type in CASES:
        folder = tmp_path_factory.mktemp(model_type)
        source = build_tiny(model_type, "automatic-speech-recognition", folder / "model")
        if model_type == "moonshine":  # what Moonshine's processor holds: a raw-waveform extractor and a tokenizer
            Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=False,
                                     return_attention_mask=True).save_pretrained(source)
            make_tokenizer(("input_ids", "attention_mask")).save_pretrained(source)
        # Moonshine: TorchScript cannot export its decoder (the auto exporter would try it first, then dynamo)
        exporter = "dynamo" if model_type == "moonshine" else "auto"
        artifact = export(source, folder / "onnx", task="automatic-speech-recognition", exporter=exporter).artifact
        built[model_type] = (source, artifact, OBModelForSpeechSeq2Seq.from_pretrained(artifact.path),
                             AutoModelForSpeechSeq2Seq.from_pretrained(source).eval())
    return built


@pytest.mark.parametrize("model_type", CASES)
def test_the_encoder_graph_takes_any_length_and_gives_the_shortened_mask(models, model_type):
    _, artifact, model, _ = models[model_type]
    encoder = artifact.metadata.graphs["encoder"]
    assert encoder.input_names == [CASES[model_type][1], "attention_mask"]
    assert isinstance(encoder.inputs[0].shape[1], str)  # a dynamic length, unlike Whisper's fixed window
    assert encoder.output_names == ["last_hidden_state", ENCODER_MASK]
    assert artifact.metadata.validation["passed"]
    assert model.main_input_name == CASES[model_type][1]
    values, mask = padded_inputs(CASES[model_type][0], model.config, 2, 10, [0, 5], seed=3)
    out = model.get_encoder()(**{CASES[model_type][1]: values}, attention_mask=mask)
    short = out.attention_mask
    assert short.shape == out.last_hidden_state.shape[:2] and short.shape[1] < values.shape[1]
    assert short[0].all() and 0 < int(short[1].sum()) < short.shape[1]  # the padded row's frames are masked


@pytest.mark.parametrize("model_type", CASES)
def test_generate_on_a_padded_batch_matches_pytorch(models, model_type):
    _, _, model, reference = models[model_type]
    modality, name = CASES[model_type]
    values, mask = padded_inputs(modality, reference.config, 3, 12, [0, 4, 7], seed=5)
    for options in ({}, {"num_beams": 2}):
        with torch.no_grad():
            want = reference.generate(**{name: values}, attention_mask=mask, max_new_tokens=8, min_new_tokens=8, do_sample=False, **options)
        got = model.generate(**{name: values}, attention_mask=mask, max_new_tokens=8, min_new_tokens=8, do_sample=False, **options)
        assert torch.equal(got, want), options
    # without a mask, padding is audio: generate() makes the all-ones mask PyTorch's does
    unmasked = model.generate(**{name: values}, max_new_tokens=8, min_new_tokens=8, do_sample=False)
    with torch.no_grad():
        assert torch.equal(unmasked, reference.generate(**{name: values}, max_new_tokens=8, min_new_tokens=8, do_sample=False))
    # and the mask matters: the padded rows' scores change when their padding is taken as audio
    start = torch.full((3, 1), reference.config.decoder_start_token_id)
    masked = model(**{name: values}, attention_mask=mask, decoder_input_ids=start).logits
    plain = model(**{name: values}, decoder_input_ids=start).logits
    assert torch.allclose(masked[0], plain[0], atol=1e-5) and (masked[1:] - plain[1:]).abs().amax() > 1e-3


def test_asr_pipeline_on_waveforms_of_two_lengths_matches_pytorch(models):
    source, artifact, model, reference = models["moonshine"]
    features = Wav2Vec2FeatureExtractor.from_pretrained(artifact.path)  # travelled with the graphs
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(artifact.path)
    waves = [np.random.default_rng(i).normal(0, 0.3, 12000 + 5000 * i).astype(np.float32) for i in range(2)]
    ours = pipeline("automatic-speech-recognition", model=model, tokenizer=tokenizer, feature_extractor=features)
    theirs = pipeline("automatic-speech-recognition", model=reference, tokenizer=tokenizer, feature_extractor=features)
    kwargs = {"generate_kwargs": {"max_new_tokens": 6, "min_new_tokens": 6}, "batch_size": 2}
    got = ours(waves, **kwargs)
    assert got == theirs(waves, **kwargs)
    assert all(isinstance(row["text"], str) and row["text"] for row in got)
    assert isinstance(model, OBModelForSpeechSeq2Seq) and type(model).__name__ == "MoonshineForConditionalGeneration"  # what the pipeline reads
