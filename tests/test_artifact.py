"""The artifact folder: metadata round-trip, atomic writes, and clear errors on damaged folders."""

from __future__ import annotations

import json
import shutil

import pytest

from optibridge import export
from optibridge.artifact import Artifact, ArtifactMetadata, copy_artifact, staged_directory
from optibridge.errors import ArtifactError, ModelNotFoundError, UnsupportedModelError, ValidationError
from optibridge.modeling import OBModelForSequenceClassification


def test_metadata_round_trips_through_json(exported):
    meta = exported("bert", "text-classification").metadata
    again = ArtifactMetadata.from_json(meta.to_json())
    assert again == meta
    data = json.loads(meta.to_json())
    for key in ("source", "task", "opset", "graphs", "versions", "files", "validation"):
        assert data[key], key
    assert {"torch", "transformers", "onnx", "optibridge"} <= set(data["versions"])
    assert len(data["files"]["model.onnx"]["sha256"]) == 64
    assert data["graphs"]["model"]["file"] == "model.onnx"
    assert [t["name"] for t in data["graphs"]["model"]["inputs"]] == ["input_ids", "attention_mask", "token_type_ids"]


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


def test_failure_inside_staged_directory_leaves_existing_artifact_and_no_partial(tmp_path, exported):
    dest = tmp_path / "out"
    copy_artifact(exported("bert", "text-classification"), dest)
    before = {p.name: p.read_bytes() for p in dest.iterdir()}
    with pytest.raises(RuntimeError):
        with staged_directory(dest) as staging:
            (staging / "model.onnx").write_bytes(b"half")
            raise RuntimeError("boom")
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == before
    assert _listing(tmp_path) == ["out"]


def test_ctrl_c_during_export_writes_nothing_and_keeps_the_old_artifact(tmp_path, tiny_model, exported):
    dest = tmp_path / "out"
    copy_artifact(exported("bert", "text-classification"), dest)
    old_hash = Artifact.load(dest).metadata.files["model.onnx"]["sha256"]

    def interrupt(message: str) -> None:
        if message.startswith("validating"):  # model.onnx is already written in the staging folder
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export(tiny_model("distilbert", "text-classification"), dest, on_step=interrupt)
    assert Artifact.load(dest, verify_hashes=True).metadata.files["model.onnx"]["sha256"] == old_hash
    assert Artifact.load(dest).metadata.model_type == "bert"
    assert _listing(tmp_path) == ["out"]


def test_successful_export_replaces_an_existing_artifact(tmp_path, tiny_model, exported):
    dest = tmp_path / "out"
    copy_artifact(exported("bert", "text-classification"), dest)
    export(tiny_model("distilbert", "text-classification"), dest)
    assert Artifact.load(dest).metadata.model_type == "distilbert"
    assert _listing(tmp_path) == ["out"]


def test_refuses_to_replace_a_folder_that_is_not_an_artifact(tmp_path, tiny_model):
    dest = tmp_path / "precious"
    dest.mkdir()
    (dest / "notes.txt").write_text("keep me")
    with pytest.raises(ArtifactError, match="not empty and is not an optibridge artifact"):
        export(tiny_model("bert", "text-classification"), dest)
    assert (dest / "notes.txt").read_text() == "keep me"


def test_validation_failure_fails_the_export_and_writes_nothing(tmp_path, tiny_model, monkeypatch):
    from optibridge.exporter import encoder

    real = encoder.compare_outputs

    def perturbed(reference, actual, **kwargs):
        return real(reference, {k: v + 1e-2 for k, v in actual.items()}, **kwargs)

    monkeypatch.setattr(encoder, "compare_outputs", perturbed)
    with pytest.raises(ValidationError, match=r"differs from PyTorch by more than atol=0.0001 \(logits: 0.01"):
        export(tiny_model("bert", "text-classification"), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_external_data_keeps_weights_in_one_side_file(tmp_path, tiny_model):
    result = export(tiny_model("bert", "feature-extraction"), tmp_path / "out", external_data=True)
    files = set(result.artifact.metadata.files)
    assert {"model.onnx", "model.onnx.data"} <= files
    assert result.artifact.metadata.files["model.onnx.data"]["bytes"] > result.artifact.metadata.files["model.onnx"]["bytes"]
    assert result.validation.passed  # ORT found the weights through the external reference


def test_weights_go_beside_the_graph_by_default_only_above_the_size_that_pays(tmp_path, tiny_model, monkeypatch):
    """Default (external_data=None): weights beside the graph above SIDE_FILE_MIN_BYTES (ONNX Runtime
    maps that file: less load memory), inside it below; --no-external-data keeps one file anyway.
    The tiny model stands for a large one by lowering the threshold; both layouts give equal logits."""
    from transformers import AutoModelForSequenceClassification

    from optibridge.exporter import core

    model = tiny_model("bert", "text-classification")
    assert core.parameter_bytes(AutoModelForSequenceClassification.from_pretrained(model)) < core.SIDE_FILE_MIN_BYTES
    single = export(model, tmp_path / "small").artifact
    monkeypatch.setattr(core, "SIDE_FILE_MIN_BYTES", 1024)
    beside = export(model, tmp_path / "large").artifact
    forced = export(model, tmp_path / "forced", external_data=False).artifact
    assert "model.onnx.data" in beside.metadata.files
    assert "model.onnx.data" not in single.metadata.files and "model.onnx.data" not in forced.metadata.files
    assert not (tmp_path / "small" / "model.onnx.data").exists()
    inputs = {"input_ids": [[5, 6, 7, 8]], "attention_mask": [[1, 1, 1, 1]]}
    expected = OBModelForSequenceClassification.from_pretrained(single.path, backend="ort")(**inputs).logits
    got = OBModelForSequenceClassification.from_pretrained(beside.path, backend="ort")(**inputs).logits
    assert (got == expected).all()


def test_truncated_model_file_is_reported_before_loading(tmp_path, exported):
    dest = copy_artifact(exported("bert", "text-classification"), tmp_path / "a").path
    data = (dest / "model.onnx").read_bytes()
    (dest / "model.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="truncated or was modified; re-export"):
        OBModelForSequenceClassification.from_pretrained(dest)


def test_corrupt_model_file_of_the_right_size_is_a_clear_error(tmp_path, exported):
    dest = copy_artifact(exported("bert", "text-classification"), tmp_path / "a").path
    size = (dest / "model.onnx").stat().st_size
    (dest / "model.onnx").write_bytes(b"\x07garbage" * (size // 8) + b"\x00" * (size % 8))
    with pytest.raises(ArtifactError, match="does not match its recorded SHA-256"):
        OBModelForSequenceClassification.from_pretrained(dest)
    with pytest.raises(ArtifactError, match="could not load .*model.onnx.*re-export"):
        OBModelForSequenceClassification.from_pretrained(dest, verify_hashes=False)  # the runtime's own check


def test_missing_model_file(tmp_path, exported):
    dest = copy_artifact(exported("bert", "text-classification"), tmp_path / "a").path
    (dest / "model.onnx").unlink()
    with pytest.raises(ArtifactError, match="model.onnx is missing"):
        Artifact.load(dest)


def test_model_path_that_does_not_exist(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        export(tmp_path / "nope", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_folder_without_config_json(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(ModelNotFoundError, match="has no config.json"):
        export(tmp_path / "model", tmp_path / "out")


def test_a_model_type_outside_the_tested_list_is_tried_not_refused(tmp_path):
    # xlnet is in no tested row: export loads it (and here says what is missing) instead of refusing it.
    from transformers import XLNetConfig

    XLNetConfig(d_model=16, n_layer=1, n_head=2, vocab_size=50).save_pretrained(tmp_path / "xlnet")
    with pytest.raises(UnsupportedModelError, match=r"could not load .* as AutoModel for task 'feature-extraction': .*no file named model.safetensors"):
        export(tmp_path / "xlnet", tmp_path / "out")


def test_unsupported_task_for_an_architecture_lists_its_tasks(tmp_path, tiny_model):
    with pytest.raises(UnsupportedModelError, match="task 'image-classification' is not supported for bert; supported tasks for bert: feature-extraction"):
        export(tiny_model("bert", "text-classification"), tmp_path / "out", task="image-classification")


def test_unknown_task_name_lists_the_tasks(tmp_path, tiny_model):
    with pytest.raises(UnsupportedModelError, match="unknown task 'summarize'; supported tasks: feature-extraction"):
        export(tiny_model("bert", "text-classification"), tmp_path / "out", task="summarize")


def test_task_is_inferred_from_config_architectures(tmp_path, tiny_model):
    result = export(tiny_model("roberta", "fill-mask"), tmp_path / "out")
    assert result.task == "fill-mask" and result.task_inferred


def test_config_and_preprocessor_files_travel_with_the_artifact(exported):
    text = exported("bert", "text-classification").path
    vision = exported("vit", "image-classification").path
    assert (text / "tokenizer_config.json").is_file() and (text / "config.json").is_file()
    assert (vision / "preprocessor_config.json").is_file()


def test_copy_artifact_does_not_touch_the_source(tmp_path, exported):
    src = exported("bert", "text-classification")
    before = src.metadata.files
    copy = copy_artifact(src, tmp_path / "copy")
    assert copy.metadata.files == before
    shutil.rmtree(copy.path)
    Artifact.load(src.path, verify_hashes=True)


def test_a_bad_output_path_fails_before_any_model_is_loaded(tmp_path, monkeypatch):
    from optibridge.exporter import core

    def must_not_load(*args, **kwargs):
        raise AssertionError("the model was loaded before the output path was checked")

    monkeypatch.setattr(core, "load_source_model", must_not_load)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ArtifactError, match="exists and is a file"):
        export("org/any-model", tmp_path / "file")


def test_re_saving_the_tokenizer_into_an_artifact_is_allowed_and_reported(tmp_path, exported, tiny_model):
    from transformers import AutoTokenizer

    dest = copy_artifact(exported("bert", "text-classification"), tmp_path / "a").path
    tok = AutoTokenizer.from_pretrained(tiny_model("bert", "text-classification"))
    tok.add_special_tokens({"additional_special_tokens": ["[NEW]"]})
    tok.save_pretrained(dest)  # what Optimum users do after model.save_pretrained(dest)
    artifact = Artifact.load(dest, verify_hashes=True)
    assert "tokenizer.json" in artifact.modified_files()
    assert "model.onnx" not in artifact.modified_files()
    OBModelForSequenceClassification.from_pretrained(dest)
