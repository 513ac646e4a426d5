"""The fast subset of the coverage sweep (tests/coverage/sweep.py, `make coverage` runs all of it):
model types across families that are in no tested row, built tiny from their config class defaults,
exported through the generic path, validated against PyTorch; decoders also generate step by step
next to PyTorch with every step's scores compared."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "coverage"))
from sweep import ISSUE_ARCHITECTURES, check, earlier_results, plan, primary_task, render  # noqa: E402

from optibridge.exporter.architectures import ARCHITECTURES  # noqa: E402

# Families: BERT-like encoders with other attention/embeddings, CNN and windowed-attention vision
# models, decoders with ALiBi (no position_ids) and with learned positions.
SUBSET = ("modernbert", "deberta", "squeezebert", "resnet", "swin", "regnet", "beit", "bloom")
COVERAGE_MD = Path(__file__).parent.parent / "COVERAGE.md"


def _committed_rows() -> dict:
    """COVERAGE.md's rows as the run that wrote it had them: earlier_results marks every parsed row as carried
    over; the rows that say "this run" were that run's own, the others stay carried over (``--carry-over``)."""
    lines = COVERAGE_MD.read_text().splitlines()
    this_run = {line.strip("| ").split(" | ")[0] for line in lines if line.endswith("| this run |")}
    return {m: dataclasses.replace(r, checked="" if m in this_run else r.checked) for m, r in earlier_results(COVERAGE_MD).items()}


COMMITTED = _committed_rows()


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
    # the committed table says what this run measured
    assert COMMITTED[model_type].status == "pass", f"COVERAGE.md says {COMMITTED[model_type].status} for {model_type}"


def test_coverage_md_is_what_the_sweep_renders_from_its_rows():
    """COVERAGE.md is generated, not edited: re-rendered from its own rows for the model types the
    installed transformers lists, it comes out the same (run `make coverage` after changing either)."""
    import re

    import torch
    import transformers

    text = COVERAGE_MD.read_text()
    made_with = re.search(r"transformers (\S+), torch (\S+)\. ", text)
    assert made_with, "COVERAGE.md has no version line"
    if made_with.groups() != (transformers.__version__, torch.__version__):  # `make test-latest`: another table
        pytest.skip(f"COVERAGE.md was generated with transformers {made_with[1]}, torch {made_with[2]}; regenerate it here")
    assert text == render(COMMITTED, plan())
