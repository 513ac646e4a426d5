"""Support follows from transformers: model types outside the tested list are exported, validated and
reported as such; only what transformers itself cannot load is refused."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "coverage"))
from tiny_configs import build_tiny  # noqa: E402

from optibridge import export  # noqa: E402
from optibridge.errors import UnsupportedModelError, ValidationError  # noqa: E402
from optibridge.exporter.architectures import ARCHITECTURES, EXCEPTIONS, get_architecture  # noqa: E402


@pytest.fixture(scope="module")
def ernie(tmp_path_factory):
    return build_tiny("ernie", "text-classification", tmp_path_factory.mktemp("ernie") / "model")


def test_the_generic_path_derives_tasks_and_inputs_from_transformers():
    arch = get_architecture("ernie")
    assert not arch.tested and arch.modality == "text"
    assert {"text-classification", "fill-mask", "token-classification"} <= set(arch.tasks)
    assert arch.token_type_ids is None  # ErnieModel.forward takes token_type_ids: kept when the vocab has types
    assert get_architecture("resnet").modality == "vision"
    assert get_architecture("wav2vec2").modality == "audio"
    assert "text-generation" in get_architecture("bloom").tasks


def test_every_exception_row_says_why_it_is_there():
    assert EXCEPTIONS and all(row.reason for row in EXCEPTIONS.values())
    assert get_architecture("deberta-v2").tested  # an exception row for a tested type stays tested


def test_an_untested_model_type_is_exported_validated_and_says_so(ernie, tmp_path):
    result = export(ernie, tmp_path / "out")
    assert "ernie" not in ARCHITECTURES
    assert result.task == "text-classification" and result.validation.passed
    assert result.note == "ernie is not in the tested list for text-classification; export validated against PyTorch: ok"
    assert [s.name for s in result.artifact.metadata.inputs] == ["input_ids", "attention_mask", "token_type_ids"]


def test_the_cli_prints_the_untested_note(ernie, tmp_path, capsys):
    from optibridge.cli import main

    assert main(["export", "--model", str(ernie), str(tmp_path / "out")]) == 0
    assert "ernie is not in the tested list for text-classification; export validated against PyTorch: ok" in capsys.readouterr().out


def test_an_untested_model_type_that_fails_validation_names_it_and_writes_nothing(ernie, tmp_path):
    with pytest.raises(ValidationError, match=r"^ernie is not in the tested list for text-classification; exported graph differs from PyTorch by more than atol=1e-12 \(logits: "):
        export(ernie, tmp_path / "out", atol=1e-12)
    assert not (tmp_path / "out").exists()


def test_a_tested_type_with_an_untested_task_is_tried():
    arch = get_architecture("bert", "text-generation")  # BertLMHeadModel: in transformers' causal-LM mapping
    assert not arch.tested and "text-generation" in arch.tasks


def test_only_what_transformers_cannot_load_is_refused():
    with pytest.raises(UnsupportedModelError, match="transformers maps model type 'no-such-type' to none of optibridge's tasks"):
        get_architecture("no-such-type")
    with pytest.raises(UnsupportedModelError, match="task 'image-classification' is not supported for ernie; supported tasks for ernie: feature-extraction, text-classification"):
        get_architecture("ernie", "image-classification")
