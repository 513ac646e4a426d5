"""Checks for the offline tiny-model zoo in ``tests/tiny_models.py``."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoTokenizer, pipeline
from transformers.models.auto import modeling_auto

try:
    from tiny_models import (
        ARCHITECTURES,
        REQUIRED_ARCHITECTURES,
        TASK_LABELS,
        TASK_TO_AUTO_CLASS,
        VOCAB_SIZE,
        all_model_tasks,
        build_tiny_model,
        make_tokenizer,
    )
except ImportError:  # tests/ imported as a package
    from tests.tiny_models import (
        ARCHITECTURES,
        REQUIRED_ARCHITECTURES,
        TASK_LABELS,
        TASK_TO_AUTO_CLASS,
        VOCAB_SIZE,
        all_model_tasks,
        build_tiny_model,
        make_tokenizer,
    )

MAX_MODEL_BYTES = 2 * 1024 * 1024

# Row 0 is the shorter example, so it is the padded one in every batch.
SENTENCES = ["the cat sat on the mat", "Paris is the capital of France and a very beautiful city ."]
QUESTIONS = ["where did the cat sit ?", "what is the capital of France ?"]
CONTEXTS = ["the cat sat on the mat .", "Paris is the capital of France ."]
MC_PROMPTS = ["the cat sat on the", "Paris is the capital of"]
MC_CHOICES = [["mat", "dog"], ["France and a very beautiful country", "the big old world"]]
NUM_CHOICES = 2

_MAPPING_NAMES = {
    "feature-extraction": modeling_auto.MODEL_MAPPING_NAMES,
    "text-classification": modeling_auto.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
    "token-classification": modeling_auto.MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES,
    "question-answering": modeling_auto.MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES,
    "fill-mask": modeling_auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    "multiple-choice": modeling_auto.MODEL_FOR_MULTIPLE_CHOICE_MAPPING_NAMES,
    "image-classification": modeling_auto.MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES,
}


def _encode_text(tokenizer, task: str, rows: list[int], padding=True) -> dict[str, torch.Tensor]:
    if task == "question-answering":
        return tokenizer([QUESTIONS[i] for i in rows], [CONTEXTS[i] for i in rows], padding=padding, return_tensors="pt")
    if task == "multiple-choice":
        firsts = [MC_PROMPTS[i] for i in rows for _ in range(NUM_CHOICES)]
        seconds = [c for i in rows for c in MC_CHOICES[i]]
        enc = tokenizer(firsts, seconds, padding=padding, return_tensors="pt")
        return {k: v.view(len(rows), NUM_CHOICES, -1) for k, v in enc.items()}
    return tokenizer([SENTENCES[i] for i in rows], padding=padding, return_tensors="pt")


def _random_images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)) for h, w in [(40, 50), (64, 48)]]


def test_table_covers_required_architectures():
    assert set(REQUIRED_ARCHITECTURES) <= set(ARCHITECTURES)
    assert len(ARCHITECTURES) >= 9
    for model_type, arch in ARCHITECTURES.items():
        assert arch.model_type == model_type
        assert arch.modality in ("text", "vision")
        assert arch.tasks and set(arch.tasks) <= set(TASK_TO_AUTO_CLASS)


@pytest.mark.parametrize("model_type", sorted(ARCHITECTURES))
def test_tasks_match_installed_auto_mappings(model_type):
    arch = ARCHITECTURES[model_type]
    supported = {task for task, names in _MAPPING_NAMES.items() if model_type in names}
    if arch.modality == "vision":
        supported &= {"feature-extraction", "image-classification"}
    assert set(arch.tasks) == supported


@pytest.mark.parametrize("model_type", sorted(m for m, a in ARCHITECTURES.items() if a.modality == "text"))
def test_text_config_agrees_with_tokenizer(model_type):
    tokenizer = make_tokenizer()
    config = ARCHITECTURES[model_type].config()
    assert config.vocab_size >= len(tokenizer) == VOCAB_SIZE
    assert config.pad_token_id == tokenizer.pad_token_id
    assert tokenizer.mask_token == "[MASK]"


def test_tokenizer_knows_ordinary_english():
    tokenizer = make_tokenizer()
    for text in ["the cat sat on the mat", "Paris is the capital of France."]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.unk_token_id not in ids
        assert len(ids) == len(text.replace(".", " .").split())  # one piece per word


@pytest.mark.parametrize(
    ("model_type", "task"), all_model_tasks(), ids=[f"{m}-{t}" for m, t in all_model_tasks()]
)
def test_build_and_run(model_type, task, tmp_path):
    arch = ARCHITECTURES[model_type]
    path = build_tiny_model(model_type, task, tmp_path / "model")
    assert path == tmp_path / "model"
    model_bytes = sum(f.stat().st_size for f in path.glob("*.safetensors"))
    assert 0 < model_bytes < MAX_MODEL_BYTES

    model = TASK_TO_AUTO_CLASS[task].from_pretrained(path).eval()
    assert model.config.model_type == model_type

    if arch.modality == "text":
        tokenizer = AutoTokenizer.from_pretrained(path)
        assert tokenizer.pad_token_id == model.config.pad_token_id
        assert len(tokenizer) <= model.config.vocab_size
        batch = _encode_text(tokenizer, task, [0, 1])
        single = _encode_text(tokenizer, task, [0], padding=False)
        assert (batch["attention_mask"] == 0).any(), "batch should be padded"
        seq_len = batch["input_ids"].shape[-1]
    else:
        processor = AutoImageProcessor.from_pretrained(path)
        batch = processor(images=_random_images(), return_tensors="pt")
        assert tuple(batch["pixel_values"].shape) == (2, 3, 32, 32)
        single = None

    with torch.no_grad():
        out = model(**batch)

    num_labels = len(TASK_LABELS[task]) if task in TASK_LABELS else None
    if task == "feature-extraction":
        fields = ["last_hidden_state"]
    elif task == "question-answering":
        fields = ["start_logits", "end_logits"]
    else:
        fields = ["logits"]
    for field in fields:
        value = getattr(out, field, None)
        assert value is not None, f"missing {field}"
        assert value.shape[0] == 2
        assert torch.isfinite(value).all()

    if task == "text-classification" or task == "image-classification":
        assert tuple(out.logits.shape) == (2, num_labels)
        assert model.config.id2label == dict(enumerate(TASK_LABELS[task]))
    elif task == "token-classification":
        assert tuple(out.logits.shape) == (2, seq_len, num_labels)
    elif task == "fill-mask":
        assert tuple(out.logits.shape) == (2, seq_len, model.config.vocab_size)
    elif task == "multiple-choice":
        assert tuple(out.logits.shape) == (2, NUM_CHOICES)
    elif task == "question-answering":
        assert tuple(out.start_logits.shape) == (2, seq_len)

    if single is not None:
        # The padded row must match the same example run alone (padding
        # masks/position ids are handled correctly).
        with torch.no_grad():
            out_single = model(**single)
        for field in fields:
            alone = getattr(out_single, field)[0]
            padded = getattr(out, field)[0]
            for dim, size in enumerate(alone.shape):
                padded = padded.narrow(dim, 0, size)
            torch.testing.assert_close(padded, alone, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("model_type", ["bert", "roberta", "deberta-v2"])
def test_fill_mask_pipeline(model_type, tmp_path):
    path = build_tiny_model(model_type, "fill-mask", tmp_path / "model")
    fill = pipeline("fill-mask", model=str(path), tokenizer=str(path))
    results = fill(["Paris is the [MASK] of France.", "the cat sat on the [MASK] ."], top_k=3)
    assert len(results) == 2 and all(len(r) == 3 for r in results)
    assert all(isinstance(r["token_str"], str) for rs in results for r in rs)


@pytest.mark.parametrize("model_type", ["vit", "deit", "convnext"])
def test_image_classification_pipeline(model_type, tmp_path):
    path = build_tiny_model(model_type, "image-classification", tmp_path / "model")
    classify = pipeline("image-classification", model=str(path))
    results = classify(_random_images()[0])
    assert {r["label"] for r in results} == set(TASK_LABELS["image-classification"])


def test_build_is_deterministic(tmp_path):
    from safetensors.torch import load_file

    a = load_file(build_tiny_model("bert", "text-classification", tmp_path / "a", seed=1) / "model.safetensors")
    b = load_file(build_tiny_model("bert", "text-classification", tmp_path / "b", seed=1) / "model.safetensors")
    c = load_file(build_tiny_model("bert", "text-classification", tmp_path / "c", seed=2) / "model.safetensors")
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
