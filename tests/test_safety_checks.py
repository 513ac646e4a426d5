"""Checks that cannot pass vacuously (issue #14, items 6-8): no made-up tokenizer, no accuracy
over zero elements, no exit code 0 when nothing was measured, no silent random heads."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from optibridge import export, optimize
from optibridge.accuracy import compare
from optibridge.artifact import METADATA_FILE, Artifact
from optibridge.bench.schema import BenchError
from optibridge.cli import main
from optibridge.errors import OptibridgeError, UnsupportedModelError

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "merges.txt", "spiece.model")


# -- 6. no made-up tokenizer; no accuracy figure over zero elements -------------------------------------
@pytest.fixture(scope="module")
def no_tokenizer_artifact(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("no-tokenizer")
    source = root / "model"
    shutil.copytree(tiny_model("bert", "text-classification"), source)
    for name in TOKENIZER_FILES + ("special_tokens_map.json",):
        (source / name).unlink(missing_ok=True)
    return export(source, root / "artifact").artifact


def test_export_writes_no_tokenizer_files_the_source_did_not_have(no_tokenizer_artifact):
    written = {p.name for p in no_tokenizer_artifact.path.iterdir()}
    assert not written & set(TOKENIZER_FILES), written


def test_steps_without_a_tokenizer_measure_on_seeded_random_ids_and_say_so(no_tokenizer_artifact, tmp_path):
    result = optimize(no_tokenizer_artifact.path, output_dir=tmp_path / "o2")
    report = result.accuracy["model"]
    assert "seeded random token ids inside the vocabulary" in report.inputs
    assert report.input_shapes["input_ids"][1] > 0
    assert all(out.vectors > 0 for out in report.outputs)
    vocab = json.loads((no_tokenizer_artifact.path / "config.json").read_text())["vocab_size"]
    from optibridge.steps.samples import validation_batch

    ids = validation_batch(no_tokenizer_artifact, "model").feed["input_ids"]
    assert 0 <= ids.min() and ids.max() < vocab and len(np.unique(ids)) > 10


@pytest.mark.parametrize("case", ["empty-sequence", "all-padding", "no-outputs"])
def test_an_accuracy_figure_over_zero_elements_is_an_error(case):
    logits = np.zeros((16, 0, 8), np.float32) if case == "empty-sequence" else np.ones((2, 3, 8), np.float32)
    mask = np.zeros((2, 3), np.int64) if case == "all-padding" else None
    reference = {} if case == "no-outputs" else {"logits": logits}
    with pytest.raises(OptibridgeError, match="zero elements|over nothing"):
        compare(reference, dict(reference), mask=mask)


# -- 7. exit codes; the PyTorch reference path ---------------------------------------------------------
def test_bench_exits_non_zero_when_every_requested_candidate_was_skipped(exported, capsys):
    artifact = exported("bert", "feature-extraction")
    code = main(["bench", "--model", str(artifact.path), "--backends", "no-such-backend", "--configs", "fp32",
                 "--batch-sizes", "1", "--seq-lens", "8", "--warmup", "0", "--runs", "1", "--no-progress"])
    assert code == 1
    assert "nothing requested was measured" in capsys.readouterr().err


def test_bench_reference_is_the_absolute_source_path_from_any_directory(tiny_model, tmp_path, monkeypatch):
    from optibridge.bench.runner import reference_model

    source = tiny_model("bert", "feature-extraction")
    monkeypatch.chdir(source.parent)
    artifact = export(source.name, tmp_path / "art").artifact  # typed as a relative path
    monkeypatch.chdir(tmp_path)
    assert reference_model(artifact) == str(source.resolve()) and os.path.isabs(reference_model(artifact))
    data = json.loads((artifact.path / METADATA_FILE).read_text())
    data["source"].update(local_path=None, model="./gone/model")
    (artifact.path / METADATA_FILE).write_text(json.dumps(data))
    with pytest.raises(BenchError, match="not a folder here; bench the transformers folder"):
        reference_model(Artifact.load(artifact.path))


# -- 8. silent random heads ----------------------------------------------------------------------------
def test_export_with_a_head_the_checkpoint_lacks_is_an_error_unless_allowed(tiny_model, tmp_path):
    qa_model = tiny_model("bert", "question-answering")
    with pytest.raises(UnsupportedModelError, match="--allow-new-weights") as info:
        export(qa_model, tmp_path / "out", task="text-classification")
    assert "classifier" in str(info.value)
    assert not (tmp_path / "out").exists()
    result = export(qa_model, tmp_path / "out", task="text-classification", allow_new_weights=True, validate=False)
    assert result.artifact.metadata.task == "text-classification"


def test_cli_export_refuses_a_new_head_with_one_line(tiny_model, tmp_path, capsys):
    code = main(["export", "--model", str(tiny_model("bert", "question-answering")), "--task", "text-classification", str(tmp_path / "o")])
    assert code != 0
    assert "--allow-new-weights" in capsys.readouterr().err
