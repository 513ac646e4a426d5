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
    artifact = exported_generative("whisper")
    meta = artifact.metadata
    # the feature extractor and the tokenizer travel with the graphs (until 2026-12-03 neither did):
    # the ASR pipeline and `optibridge run` load them from the artifact
    assert AutoFeatureExtractor.from_pretrained(artifact.path).feature_size == 16
    assert AutoTokenizer.from_pretrained(artifact.path).decode([0]) is not None
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


def test_optibridge_run_transcribes_recordings_as_the_asr_pipeline_does(whisper, exported_generative, tmp_path):
    """`optibridge run` on a Whisper artifact: each row a recording (one at 8 kHz, resampled); the
    transcription is the ASR pipeline's on the PyTorch model for the same samples."""
    import wave

    import numpy as np

    from optibridge.batch import run_file
    from optibridge.steps.media import read_recording, resample

    _, _, reference, features, tokenizer = whisper
    waves = _waves(2)
    for i, (samples, rate) in enumerate(((waves[0], 16000), (waves[1][::2], 8000))):
        with wave.open(str(tmp_path / f"{i}.wav"), "wb") as handle:
            handle.setnchannels(1)
            handle.setsampwidth(2)
            handle.setframerate(rate)
            handle.writeframes((np.clip(samples, -1, 1) * 32767).astype(np.int16).tobytes())
    rows = tmp_path / "rows.txt"
    rows.write_text("0.wav\n1.wav\n")
    run_file(exported_generative("whisper").path, rows, tmp_path / "out.parquet", batch_size=2, max_new_tokens=10)
    import pyarrow.parquet as pq

    out = pq.read_table(tmp_path / "out.parquet").to_pydict()
    asr = pipeline("automatic-speech-recognition", model=reference, tokenizer=tokenizer, feature_extractor=features)
    want = []
    for i in range(2):
        samples, rate = read_recording(f"{i}.wav", tmp_path / f"{i}.wav")
        want.append(asr(resample(samples, rate, 16000, "x"), generate_kwargs={"max_new_tokens": 10})["text"].strip())
    assert out["error"] == [None, None] and all(want)
    assert out["transcription"] == want
