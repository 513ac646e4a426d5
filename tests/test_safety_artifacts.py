"""An artifact folder is untrusted input: paths stay inside it, no code is imported or run from it,
graph bytes match their recorded hashes, and folders follow the umask (issue #14, items 1-5)."""

from __future__ import annotations

import builtins
import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from optibridge import OptimizationConfig, export, optimize
from optibridge.artifact import METADATA_FILE, Artifact, copy_artifact
from optibridge.errors import ArtifactError, UnsupportedModelError
from optibridge.modeling import OBModelForSequenceClassification


@pytest.fixture
def artifact_copy(tmp_path, exported):
    """A private copy of the tiny BERT classifier artifact (tests edit it)."""
    return copy_artifact(exported("bert", "text-classification"), tmp_path / "art").path


def _edit_manifest(folder: Path, change) -> None:
    data = json.loads((folder / METADATA_FILE).read_text())
    change(data)
    (folder / METADATA_FILE).write_text(json.dumps(data))


def _outside_graph(tmp_path: Path, folder: Path) -> Path:
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy2(folder / "model.onnx", other / "model.onnx")
    return other / "model.onnx"


# -- 1. path traversal ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "files-key"])
def test_manifest_paths_must_stay_inside_the_folder(tmp_path, artifact_copy, kind):
    foreign = _outside_graph(tmp_path, artifact_copy)
    if kind == "dotdot":
        _edit_manifest(artifact_copy, lambda d: d["graphs"]["model"].update(file="../other/model.onnx"))
    elif kind == "absolute":
        _edit_manifest(artifact_copy, lambda d: d["graphs"]["model"].update(file=str(foreign)))
    elif kind == "symlink":
        (artifact_copy / "model.onnx").unlink()
        (artifact_copy / "model.onnx").symlink_to(foreign)
    else:
        _edit_manifest(artifact_copy, lambda d: d["files"].update({"../../etc/passwd": {"sha256": "0" * 64, "bytes": 1}}))
    expected = {"dotdot": r"graphs\.model\.file.*'\.\.'", "absolute": r"graphs\.model\.file.*absolute",
                "symlink": "outside the artifact", "files-key": r"files\[.*'\.\.'"}[kind]
    with pytest.raises(ArtifactError, match=expected):
        Artifact.load(artifact_copy)
    with pytest.raises(ArtifactError, match="inside the artifact folder"):
        OBModelForSequenceClassification.from_pretrained(artifact_copy)


def test_optimize_never_writes_outside_the_artifact_folder(tmp_path, artifact_copy):
    foreign = _outside_graph(tmp_path, artifact_copy)
    before = foreign.read_bytes()
    _edit_manifest(artifact_copy, lambda d: d["graphs"]["model"].update(file="../other/model.onnx"))
    with pytest.raises(ArtifactError, match="climbs out"):
        optimize(artifact_copy, output_dir=tmp_path / "out")
    assert foreign.read_bytes() == before
    assert not (tmp_path / "out").exists()


# -- 2. output_class comes from an allow-list, nothing is imported -----------------------------------
def test_output_class_naming_a_module_beside_the_artifact_is_refused_and_not_imported(tmp_path, artifact_copy, monkeypatch):
    marker = tmp_path / "pwned"
    (artifact_copy / "evil_outputs.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\nclass Out: pass\n")
    monkeypatch.syspath_prepend(str(artifact_copy))  # as with `bench --model .` run from inside the folder
    _edit_manifest(artifact_copy, lambda d: d.update(output_class="evil_outputs.Out"))
    with pytest.raises(ArtifactError, match="not a transformers or optibridge output class"):
        OBModelForSequenceClassification.from_pretrained(artifact_copy)
    assert not marker.exists()
    assert "evil_outputs" not in sys.modules


@pytest.mark.parametrize("name, ok", [
    ("transformers.modeling_outputs.SequenceClassifierOutput", True),
    ("transformers.models.bert.modeling_bert.BertForPreTrainingOutput", True),
    ("transformers.models.bert.modeling_bert.BertModel", False),  # a transformers class, not an output
    ("os.system", False),
    ("transformers.models.bert..x", False),
])
def test_output_class_allow_list(name, ok):
    from optibridge.modeling.outputs import resolve_output_class

    if ok:
        assert resolve_output_class(name, "SequenceClassifierOutput").__name__ == name.rpartition(".")[2]
    else:
        with pytest.raises(ArtifactError, match="loading never imports other code"):
            resolve_output_class(name, "SequenceClassifierOutput")


# -- 3. integrity ------------------------------------------------------------------------------------
def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_same_size_change_to_a_graph_is_refused_on_load(artifact_copy):
    _flip_a_byte(artifact_copy / "model.onnx")
    with pytest.raises(ArtifactError, match="does not match its recorded SHA-256"):
        OBModelForSequenceClassification.from_pretrained(artifact_copy)
    assert Artifact.load(artifact_copy, verify_hashes=False).path == artifact_copy  # the documented opt-out


def test_second_load_of_unchanged_files_does_not_hash_again(artifact_copy, monkeypatch):
    from optibridge import integrity

    Artifact.load(artifact_copy)
    opened = []
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda file, *a, **k: opened.append(str(file)) or real_open(file, *a, **k))
    Artifact.load(artifact_copy)
    assert not [f for f in opened if f.endswith("model.onnx")]
    _flip_a_byte(artifact_copy / "model.onnx")  # a change (new mtime/ctime) misses the cache
    with pytest.raises(ArtifactError, match="SHA-256"):
        Artifact.load(artifact_copy)
    assert integrity._cache


@pytest.mark.parametrize("backend", ["ort", "openvino"])
def test_a_graph_changed_after_load_is_refused_when_read_again(artifact_copy, backend):
    """Backends read a graph file again after load (ORT's session created again after release(),
    OpenVINO's lazy compile): each read checks the file as load did, so a swapped file never runs."""
    if backend == "ort":
        model = OBModelForSequenceClassification.from_pretrained(artifact_copy, backend="ort")
        inputs = {"input_ids": [[5, 6, 7]], "attention_mask": [[1, 1, 1]]}
        before = model(**inputs).logits
        assert model.session.release()
    else:
        pytest.importorskip("openvino")
        model = OBModelForSequenceClassification.from_pretrained(artifact_copy, backend="openvino", compile=False)
        inputs = {"input_ids": [[5, 6, 7]], "attention_mask": [[1, 1, 1]]}
    original = (artifact_copy / "model.onnx").read_bytes()
    _flip_a_byte(artifact_copy / "model.onnx")
    with pytest.raises(ArtifactError, match="does not match its recorded SHA-256"):
        model(**inputs)
    (artifact_copy / "model.onnx").write_bytes(original)  # the recorded bytes again: read and run as before
    after = model(**inputs).logits
    if backend == "ort":
        assert (after == before).all()


@pytest.mark.parametrize("backend", ["ort", "openvino"])
def test_a_native_decode_loop_refuses_a_graph_changed_after_load(tmp_path, exported_generative, backend):
    """onnxruntime-genai and openvino-genai load the graph file at the first greedy generate(), long
    after load: a file changed in between is an error (not a quiet fall-back), and the backend's own
    session, loaded from the checked file, is kept."""
    import torch

    from optibridge import OBModelForCausalLM

    source = exported_generative("gpt2")
    if backend == "ort":
        pytest.importorskip("onnxruntime_genai")
        folder, changed = copy_artifact(source, tmp_path / "lm").path, "model.onnx"
    else:
        pytest.importorskip("openvino_genai")
        folder, changed = optimize(source.path, OptimizationConfig(level=1), tmp_path / "ir", backend="openvino").artifact.path, "model.bin"
    model = OBModelForCausalLM.from_pretrained(folder, backend=backend, **({"intra_op_num_threads": 1} if backend == "ort" else {}))
    prompt = torch.tensor([[5, 17, 42, 8]])
    before = model(input_ids=prompt).logits
    _flip_a_byte(folder / changed)
    with pytest.raises(ArtifactError, match="does not match its recorded SHA-256"):
        model.generate(input_ids=prompt, max_new_tokens=4, do_sample=False)
    assert (model(input_ids=prompt).logits == before).all()  # the session in memory still runs what was checked


def _weights_moved_out(folder: Path, outside: Path, kind: str) -> str:
    """Rewrite the graph so its largest initializer is external data beyond the folder (an absolute path,
    ``..``, or a symlink the manifest does not list), re-recording the graph's hash as a forger would."""
    import onnx
    from onnx import TensorProto

    from optibridge.artifact import ArtifactMetadata, file_digest

    model = onnx.load(str(folder / "model.onnx"))
    tensor = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    secret = outside / "secret.bin"
    secret.write_bytes(tensor.raw_data)
    location = {"absolute": str(secret), "dotdot": os.path.relpath(secret, folder), "symlink": "weights.bin"}[kind]
    if kind == "symlink":
        os.symlink(secret, folder / "weights.bin")
    size = len(tensor.raw_data)
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(size))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(folder / "model.onnx"))
    metadata = ArtifactMetadata.from_json((folder / METADATA_FILE).read_text())
    metadata.files["model.onnx"] = file_digest(folder / "model.onnx")
    (folder / METADATA_FILE).write_text(metadata.to_json())
    return tensor.name


@pytest.mark.parametrize("reader", ["ort", "openvino", "optimize"])
@pytest.mark.parametrize("kind", ["absolute", "dotdot", "symlink"])
def test_a_graph_whose_external_weights_lie_outside_the_folder_is_refused(tmp_path, artifact_copy, kind, reader):
    """The graph file itself can point its weights anywhere. ONNX Runtime, OpenVINO and onnx (read
    by optimize/quantize) all refuse such a location; each refusal is a one-line ArtifactError that
    says why, and nothing is written."""
    if reader == "openvino":
        pytest.importorskip("openvino")
    outside = tmp_path / "outside"
    outside.mkdir()
    _weights_moved_out(artifact_copy, outside, kind)
    why = "(outside|[Aa]bsolute|escapes|symbolic link)"
    if reader == "optimize":
        with pytest.raises(ArtifactError, match=f"model.onnx cannot be read: .*{why}"):
            optimize(artifact_copy, OptimizationConfig(level=1), tmp_path / "optimized")
        assert not (tmp_path / "optimized").exists()
        return
    with pytest.raises(ArtifactError) as refused:
        OBModelForSequenceClassification.from_pretrained(artifact_copy, backend=reader)
    message = str(refused.value)
    assert re.search(why, message), message
    if reader == "ort":
        assert message.startswith("ONNX Runtime could not load"), message
    else:
        assert "Exception from src" not in message and "\n" not in message.strip(), message


def test_info_verify_refuses_a_graph_without_a_recorded_hash(artifact_copy, capsys):
    from optibridge.cli import main

    _edit_manifest(artifact_copy, lambda d: d["files"].pop("model.onnx"))
    assert main(["info", str(artifact_copy)]) == 0  # a plain look still works
    assert main(["info", "--verify", str(artifact_copy)]) == 1
    assert "records no SHA-256 for the graph file model.onnx" in capsys.readouterr().err


def test_optimize_refuses_a_corrupted_input_instead_of_laundering_it(tmp_path, artifact_copy):
    _flip_a_byte(artifact_copy / "model.onnx")
    with pytest.raises(ArtifactError, match="SHA-256"):
        optimize(artifact_copy, output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


# -- 4. trust_remote_code ----------------------------------------------------------------------------
def _custom_code_model(tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "custom"
    folder.mkdir()
    marker = tmp_path / "custom-code-ran"
    (folder / "configuration_custom.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "from transformers import PretrainedConfig\n"
        "class CustomConfig(PretrainedConfig):\n    model_type = 'optibridge-custom'\n"
    )
    (folder / "config.json").write_text(json.dumps({
        "model_type": "optibridge-custom", "auto_map": {"AutoConfig": "configuration_custom.CustomConfig"},
    }))
    return folder, marker


def test_custom_code_is_refused_in_one_line_naming_the_flag_and_never_prompted(tmp_path, monkeypatch):
    folder, marker = _custom_code_model(tmp_path)

    def no_prompt(*_a, **_k):
        raise AssertionError("prompted for input")

    monkeypatch.setattr(builtins, "input", no_prompt)
    with pytest.raises(UnsupportedModelError, match="--trust-remote-code") as info:
        export(folder, tmp_path / "out")
    assert "\n" not in str(info.value)
    assert not marker.exists()


def test_artifact_config_with_auto_map_runs_no_code_on_load(tmp_path, artifact_copy, monkeypatch):
    marker = tmp_path / "artifact-code-ran"
    (artifact_copy / "configuration_evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    config = json.loads((artifact_copy / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "configuration_evil.EvilConfig"}
    (artifact_copy / "config.json").write_text(json.dumps(config))
    monkeypatch.setattr(builtins, "input", lambda *_a, **_k: pytest.fail("prompted for input"))
    model = OBModelForSequenceClassification.from_pretrained(artifact_copy)
    assert model.config.model_type == "bert"
    assert not marker.exists()


# -- 5. umask ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("umask, mode", [(0o022, 0o755), (0o077, 0o700), (0o002, 0o775)])
def test_artifact_folder_follows_the_umask(tmp_path, exported, umask, mode):
    old = os.umask(umask)
    try:
        written = copy_artifact(exported("bert", "text-classification"), tmp_path / "out")
    finally:
        os.umask(old)
    assert written.path.stat().st_mode & 0o777 == mode


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_external_weights_files_follow_the_umask_like_the_graph(tmp_path, tiny_model, umask):
    """onnx creates a graph's external-data file owner-only (0o600): the export and ORT's steps give
    it the mode of every other file of the artifact, so whoever may read model.onnx can load it."""
    from optibridge import QuantizationConfig, quantize

    old = os.umask(umask)
    try:
        exported = export(tiny_model("bert", "feature-extraction"), tmp_path / "external", external_data=True).artifact
        quantized = quantize(exported.path, QuantizationConfig(mode="dynamic"), tmp_path / "int8").artifact
    finally:
        os.umask(old)
    for artifact in (exported, quantized):
        modes = {name: (artifact.path / name).stat().st_mode & 0o777 for name in ("model.onnx", "model.onnx.data", METADATA_FILE)}
        assert modes == dict.fromkeys(modes, 0o666 & ~umask), modes


def test_info_shows_only_well_formed_static_plan_records(artifact_copy, capsys):
    from optibridge.cli import main

    hostile = [{"step": "quantize", "settings": {"outlier_split": ["not", "a", "dict"], "attention": "[red]x[/]"}},
               {"step": "quantize", "settings": {"outlier_split": {"split": {"a/MatMul": {"channels": [1, 2]}, "b": "junk"}},
                                                 "attention": "float"}},
               {"step": "quantize", "settings": {"attention": "int8", "attention_check": ["junk"]}},
               {"step": "quantize", "settings": {"attention": "int8", "attention_check": {"int8": {"min_cosine": "[red]y[/]"},
                                                                                          "target_min_cosine": 0.99}}},
               {"step": "quantize", "settings": {"attention": "int8", "attention_check": {"int8": {"min_cosine": 0.5},
                                                                                          "target_min_cosine": 0.99}}},
               {"step": "quantize", "settings": "not a dict"}]
    _edit_manifest(artifact_copy, lambda d: d["steps"].extend(hostile))
    assert main(["info", str(artifact_copy)]) == 0
    out = capsys.readouterr().out
    assert "2 outlier channel(s) of 1 FFN down-projection(s)" in out and "a/MatMul: channels [1, 2]" in out
    assert "attention inputs float" in out and "[red]" not in out and "junk" not in out
    assert out.count("attention inputs int8") == 3 and out.count("worst calibration sample reached 0.50000, target 0.99") == 1


@pytest.mark.parametrize("message, expected", [
    ("Exception from src/inference/src/cpp/core.cpp:132:\nCheck 'false' failed at src/frontends/common/src/frontend.cpp:47:\n"
     "Loading input model\nPath 'w.bin' resolves to '/x/w.bin' which is outside the base directory '/y'\n\n",
     "Loading input model: Path 'w.bin' resolves to '/x/w.bin' which is outside the base directory '/y'"),
    ("[ONNXRuntimeError] : 1 : FAIL : Load model failed.\nsecond line", "[ONNXRuntimeError] : 1 : FAIL : Load model failed"),
    ("Exception from src/plugins/intel_cpu/src/node.cpp:10:", "Exception from src/plugins/intel_cpu/src/node.cpp:10:"),
    ("", "RuntimeError"),
])
def test_a_runtime_error_is_shown_by_its_cause_not_its_source_location(message, expected):
    """OpenVINO heads its errors with C++ source locations; a one-line error of ours shows the cause."""
    from optibridge.errors import first_line

    assert first_line(RuntimeError(message)) == expected


# -- a pipeline artifact's diffusion record -------------------------------------------------------
@pytest.fixture
def sd_copy(tmp_path, sd_artifact):
    """A private copy of the tiny Stable Diffusion artifact (tests edit it)."""
    return copy_artifact(sd_artifact, tmp_path / "sd").path


@pytest.mark.parametrize("graph", ["unet", "vae_decoder"])
def test_a_diffusion_record_naming_a_folder_outside_the_artifact_is_refused(tmp_path, sd_copy, graph):
    from optibridge import OBStableDiffusionImg2ImgPipeline
    from optibridge.diffusion.samples import diffusion_batch

    outside = tmp_path / "outside"
    shutil.copytree(sd_copy / "unet", outside)  # a plausible config, so only the path can be what is refused
    _edit_manifest(sd_copy, lambda d: d["extra"]["diffusion"]["config_folders"].update({graph: "../outside"}))
    with pytest.raises(ArtifactError, match=rf"config_folders\.{graph}.*'\.\.'"):
        OBStableDiffusionImg2ImgPipeline.from_pretrained(sd_copy)
    with pytest.raises(ArtifactError, match=rf"config_folders\.{graph}"):
        diffusion_batch(Artifact.load(sd_copy), "unet")


@pytest.mark.parametrize("field, value", [("in_channels", 10**9), ("cross_attention_dim", -4), ("in_channels", "4"),
                                          ("sample_size", 10**7)])
def test_sizes_from_a_pipeline_component_config_are_bounded_before_anything_is_allocated(sd_copy, field, value):
    from optibridge.diffusion.samples import diffusion_batch, native_size

    config = json.loads((sd_copy / "unet" / "config.json").read_text())
    config[field] = value
    (sd_copy / "unet" / "config.json").write_text(json.dumps(config))
    artifact = Artifact.load(sd_copy)
    with pytest.raises(ArtifactError, match=rf"unet/config\.json field '{field}' is {re.escape(repr(value))}; it must be a whole number"):
        diffusion_batch(artifact, "unet") if field != "sample_size" else native_size(artifact)
    # the graphs the config does not size still get their samples
    feed, _ = diffusion_batch(artifact, "vae_decoder")
    assert feed["latent_sample"].shape[0] == 3 and feed["latent_sample"].size > 0


@pytest.mark.parametrize("field, value", [("vae_scale_factor", 10**6), ("latent_multiple", 0), ("vae_scale_factor", "8"),
                                          ("family", "../stable-diffusion")])
def test_a_diffusion_record_with_bad_numbers_or_family_is_refused_by_name(sd_copy, field, value):
    from optibridge import OBStableDiffusionImg2ImgPipeline, OBPipelineForImage2Image

    _edit_manifest(sd_copy, lambda d: d["extra"]["diffusion"].update({field: value}))
    for loader in (OBStableDiffusionImg2ImgPipeline, OBPipelineForImage2Image):
        with pytest.raises(ArtifactError, match=rf"extra\.diffusion\.{field} is {re.escape(repr(value))}"):
            loader.from_pretrained(sd_copy)


def test_sizes_each_in_bounds_whose_product_is_huge_are_refused_before_allocation(sd_copy):
    """Every size within its bound (65,536) can still multiply into gigabytes: the sample's shape is checked too."""
    from optibridge.diffusion.samples import diffusion_batch

    config = json.loads((sd_copy / "unet" / "config.json").read_text())
    config.update(in_channels=60000)
    (sd_copy / "unet" / "config.json").write_text(json.dumps(config))
    _edit_manifest(sd_copy, lambda d: d["extra"]["diffusion"].update(latent_multiple=64))  # latents 256×192
    with pytest.raises(ArtifactError, match=r"unet sample of shape \(3, 60000, 256, 192\), over 134217728 values"):
        diffusion_batch(Artifact.load(sd_copy), "unet")
