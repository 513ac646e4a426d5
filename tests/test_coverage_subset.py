"""The fast subset of the coverage sweep (tests/coverage/sweep.py, `make coverage` runs all of it):
model types across families that are in no tested row, built tiny from their config class defaults,
exported through the generic path, validated against PyTorch; decoders also generate step by step
next to PyTorch with every step's scores compared."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "coverage"))
from sweep import ISSUE_ARCHITECTURES, check, primary_task  # noqa: E402

from optibridge.exporter.architectures import ARCHITECTURES  # noqa: E402

# Families: BERT-like encoders with other attention/embeddings, CNN and windowed-attention vision
# models, decoders with ALiBi (no position_ids) and with learned positions.
SUBSET = ("modernbert", "deberta", "squeezebert", "resnet", "swin", "regnet", "beit", "bloom")


def test_the_subset_is_outside_the_tested_list_and_holds_issue_architectures():
    assert not set(SUBSET) & set(ARCHITECTURES)
    assert {"modernbert", "resnet", "swin", "bloom"} <= set(ISSUE_ARCHITECTURES) & set(SUBSET)


@pytest.mark.parametrize("model_type", SUBSET)
def test_model_type_exports_validates_and_generates_like_pytorch(model_type, tmp_path):
    task = primary_task(model_type)
    result = check(model_type, task, tmp_path)
    assert result.status == "pass", result.cause
    assert result.max_diff is not None and result.max_diff <= 1e-4
    if task == "text-generation":
        assert "tokens identical" in result.generation
