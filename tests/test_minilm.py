"""The real all-MiniLM-L6-v2 weights: ORT matches PyTorch on a padded batch of varied sentences."""

from __future__ import annotations

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer, pipeline

from optibridge import OBModelForFeatureExtraction

SENTENCES = [
    "Ok.",
    "The quick brown fox jumps over the lazy dog.",
    "ONNX Runtime runs exported transformer graphs on many kinds of hardware.",
    "A much longer sentence, with punctuation, numbers like 3.14159 and 42, and words that the tokenizer splits "
    "into several word pieces: internationalization, electroencephalography.",
    "Paris is the capital of France.",
]


def test_last_hidden_state_matches_pytorch_on_a_padded_batch(minilm_path, minilm_artifact):
    tok = AutoTokenizer.from_pretrained(minilm_path)
    inputs = tok(SENTENCES, padding=True, return_tensors="pt")
    lengths = inputs["attention_mask"].sum(1)
    assert len(set(lengths.tolist())) == len(SENTENCES)  # every row has a different amount of padding
    reference = AutoModel.from_pretrained(minilm_path).eval()
    with torch.no_grad():
        want = reference(**inputs)
    got = OBModelForFeatureExtraction.from_pretrained(minilm_artifact.path)(**inputs)
    diff = (got.last_hidden_state - want.last_hidden_state).abs().max().item()
    assert diff <= 1e-4, diff
    torch.testing.assert_close(got.pooler_output, want.pooler_output, atol=1e-4, rtol=0)


def test_feature_extraction_pipeline_matches_pytorch(minilm_path, minilm_artifact):
    tok = AutoTokenizer.from_pretrained(minilm_path)
    ours = pipeline("feature-extraction", model=OBModelForFeatureExtraction.from_pretrained(minilm_artifact.path), tokenizer=tok)
    theirs = pipeline("feature-extraction", model=AutoModel.from_pretrained(minilm_path), tokenizer=tok)
    for sentence in SENTENCES:
        np.testing.assert_allclose(np.array(ours(sentence)), np.array(theirs(sentence)), atol=1e-4)


def test_artifact_records_the_real_model(minilm_artifact):
    meta = minilm_artifact.metadata
    assert meta.task == "feature-extraction" and meta.model_type == "bert"
    assert [o.name for o in meta.outputs] == ["last_hidden_state", "pooler_output"]
    assert meta.outputs[0].shape == ("batch_size", "sequence_length", 384)
    assert (minilm_artifact.path / "tokenizer.json").is_file()
