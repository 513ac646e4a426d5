"""Folders in Optimum's layout load directly and through `optibridge import-optimum`, matching PyTorch.

The folders are built by tests/optimum_layout.py from optibridge's own exports (Optimum cannot be
downloaded here); file names and IO names are Optimum's."""

from __future__ import annotations

import shutil

import pytest
import torch
from optimum_layout import write_optimum_folder
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification, AutoTokenizer

from optibridge.artifact import Artifact, is_artifact
from optibridge.cli import main
from optibridge.errors import ArtifactError
from optibridge.onnxruntime import ORTModelForCausalLM, ORTModelForSeq2SeqLM, ORTModelForSequenceClassification
from optibridge.openvino import OVModelForCausalLM, OVModelForSequenceClassification

GREEDY = dict(max_new_tokens=10, min_new_tokens=10, do_sample=False)


@pytest.fixture(scope="module")
def bert_folder(tiny_model, exported, tmp_path_factory):
    """model.onnx + model_quantized.onnx (ORT dynamic int8, as ORTQuantizer names it) + config + tokenizer."""
    from optibridge import QuantizationConfig, quantize

    artifact = exported("bert", "text-classification")
    root = tmp_path_factory.mktemp("optimum-bert")
    int8 = quantize(artifact.path, QuantizationConfig(mode="dynamic"), root / "int8").artifact
    folder = write_optimum_folder(artifact, root / "folder", extra_graphs={"model_quantized.onnx": int8.path / int8.metadata.main_graph.file})
    ids = torch.randint(5, 100, (2, 7))
    with torch.inference_mode():
        want = AutoModelForSequenceClassification.from_pretrained(tiny_model("bert", "text-classification")).eval()(input_ids=ids).logits
    return folder, int8, ids, want


def test_encoder_folder_loads_and_file_name_picks_the_quantized_graph(bert_folder):
    folder, int8, ids, want = bert_folder
    model = ORTModelForSequenceClassification.from_pretrained(folder)
    assert not is_artifact(folder) and model.model_path.name == "model.onnx"
    torch.testing.assert_close(model(input_ids=ids).logits, want, atol=1e-4, rtol=0)
    quantized = ORTModelForSequenceClassification.from_pretrained(folder, file_name="model_quantized.onnx")
    expected = ORTModelForSequenceClassification.from_pretrained(int8.path)(input_ids=ids).logits
    got = quantized(input_ids=ids).logits
    assert torch.equal(got, expected) and not torch.equal(got, want)
    with pytest.raises(ArtifactError, match="has no graph file 'model_int8.onnx'; it has: model.onnx, model_quantized.onnx"):
        ORTModelForSequenceClassification.from_pretrained(folder, file_name="model_int8.onnx")


def test_folder_with_several_graphs_and_no_model_onnx_asks_for_file_name(bert_folder, tmp_path):
    import shutil

    folder = bert_folder[0]
    shutil.copytree(folder, tmp_path / "f")
    (tmp_path / "f" / "model.onnx").rename(tmp_path / "f" / "model_optimized.onnx")
    with pytest.raises(ArtifactError, match="several graph files \\(model_optimized.onnx, model_quantized.onnx\\): pick one with file_name="):
        ORTModelForSequenceClassification.from_pretrained(tmp_path / "f")


def test_import_optimum_writes_an_artifact_with_the_chosen_graph(bert_folder, tmp_path, capsys):
    folder, int8, ids, _ = bert_folder
    code = main(["import-optimum", str(folder), str(tmp_path / "out"), "--file-name", "model_quantized.onnx"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "task text-classification: loads as OBModelForSequenceClassification on backend 'ort'" in out
    artifact = Artifact.load(tmp_path / "out", verify_hashes=True)
    assert artifact.metadata.source["imported_from"] == "optimum" and not (tmp_path / "out" / "model.onnx").exists()
    model = ORTModelForSequenceClassification.from_pretrained(tmp_path / "out")
    assert torch.equal(model(input_ids=ids).logits, ORTModelForSequenceClassification.from_pretrained(int8.path)(input_ids=ids).logits)


def test_import_optimum_refuses_a_damaged_graph(bert_folder, tmp_path, capsys):
    import shutil

    shutil.copytree(bert_folder[0], tmp_path / "f")
    (tmp_path / "f" / "model.onnx").write_bytes(b"not onnx")
    assert main(["import-optimum", str(tmp_path / "f"), str(tmp_path / "out")]) != 0
    assert "model.onnx is not a readable ONNX model" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_decoder_folder_generates_pytorch_tokens(tiny_generative, exported_generative, tmp_path):
    path = tiny_generative("gpt2")
    folder = write_optimum_folder(exported_generative("gpt2"), tmp_path / "gpt2")
    inputs = AutoTokenizer.from_pretrained(path)(["the cat sat on"], return_tensors="pt")
    want = AutoModelForCausalLM.from_pretrained(path).eval().generate(**inputs, **GREEDY)
    for cls in (ORTModelForCausalLM, OVModelForCausalLM):
        model = cls.from_pretrained(folder)
        assert model.use_cache and torch.equal(model.generate(**inputs, **GREEDY), want)


@pytest.mark.parametrize("merged", [False, True], ids=["three-graphs", "merged-decoder"])
def test_seq2seq_folder_generates_pytorch_tokens(merged, tiny_generative, exported_generative, tmp_path):
    path = tiny_generative("t5")
    folder = write_optimum_folder(exported_generative("t5"), tmp_path / "t5", merged=merged)
    assert (folder / "decoder_model_merged.onnx").exists() == merged
    tok = AutoTokenizer.from_pretrained(path)
    inputs = tok(["the cat sat on the mat", "hello"], padding=True, return_tensors="pt")
    want = AutoModelForSeq2SeqLM.from_pretrained(path).eval().generate(**inputs, **GREEDY)
    assert torch.equal(ORTModelForSeq2SeqLM.from_pretrained(folder).generate(**inputs, **GREEDY), want)


def test_optimum_intel_ir_folder_loads(bert_folder, exported, tmp_path):
    from optibridge import OptimizationConfig, optimize

    _, _, ids, want = bert_folder
    ir = optimize(exported("bert", "text-classification").path, OptimizationConfig(level=1), tmp_path / "ir", backend="openvino").artifact
    folder = write_optimum_folder(ir, tmp_path / "ov")
    assert sorted(p.name for p in folder.glob("openvino_model.*")) == ["openvino_model.bin", "openvino_model.xml"]
    model = OVModelForSequenceClassification.from_pretrained(folder)
    assert model.artifact.metadata.main_graph.format == "openvino-ir"
    torch.testing.assert_close(model(input_ids=ids).logits, want, atol=1e-4, rtol=0)
    model.save_pretrained(tmp_path / "saved")  # written as the artifact import-optimum makes of the folder
    saved = OVModelForSequenceClassification.from_pretrained(tmp_path / "saved")
    assert is_artifact(tmp_path / "saved") and saved.artifact.metadata.source["imported_from"] == "optimum"
    assert torch.equal(saved(input_ids=ids).logits, model(input_ids=ids).logits)


def test_optimum_intel_stateful_decoder_folder_generates_pytorch_tokens(tiny_generative, exported_generative, tmp_path):
    """optimum-intel's OVModelForCausalLM folders (and the OpenVINO/* hub models) hold a stateful IR: the KV cache in
    state variables, a beam_idx input. Checked by hand against a folder optimum-intel 1.27 wrote (docs/optimum_migration.md)."""
    from optibridge import OptimizationConfig, optimize

    path = tiny_generative("gpt2")
    ir = optimize(exported_generative("gpt2").path, OptimizationConfig(level=1), tmp_path / "ir", backend="openvino").artifact
    folder = write_optimum_folder(ir, tmp_path / "ov")
    xml = (folder / "openvino_model.xml").read_text()
    assert 'name="beam_idx"' in xml and 'variable_id="past_key_values.0.keypresent.0.key"' in xml  # optimum-intel's layout
    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    one = tok(["the cat sat on"], return_tensors="pt")
    batch = tok(["the cat sat on the mat", "hello"], padding=True, return_tensors="pt")
    reference = AutoModelForCausalLM.from_pretrained(path).eval()
    want = reference.generate(**one, **GREEDY)
    assert len(set(want[0, -10:].tolist())) > 2  # not one token repeated
    for engine, ran in {"native": "openvino-genai", "transformers": "transformers"}.items():
        model = OVModelForCausalLM.from_pretrained(folder, generation_engine=engine)
        assert torch.equal(model.generate(**one, **GREEDY), want) and model.last_generation_engine == ran
    metadata = model.artifact.metadata
    assert metadata.extra["cache_in_state"] == ["model"] and model.stateful and metadata.extra["kv_cache"]["num_layers"] == reference.config.n_layer
    assert "past_key_values.1.value" in metadata.main_graph.input_names and "beam_idx" not in metadata.main_graph.input_names
    past = next(t for t in metadata.main_graph.inputs if t.name == "past_key_values.0.key")
    assert past.dtype == "float32" and past.shape[1] == reference.config.n_head  # from the variable's type and shape
    assert torch.equal(model.generate(**batch, **GREEDY), reference.generate(**batch, **GREEDY))
    model.save_pretrained(tmp_path / "saved")
    saved = OVModelForCausalLM.from_pretrained(tmp_path / "saved")
    assert is_artifact(tmp_path / "saved") and torch.equal(saved.generate(**one, **GREEDY), want)

    half = folder.parent / "ov-f16-cache"
    shutil.copytree(folder, half)  # a cache kept in f16 is declared so (what the stateless run() then feeds)
    (half / "openvino_model.xml").write_text(xml.replace('variable_type="f32"', 'variable_type="f16"'))
    from optibridge.optimum_folders import read_optimum_folder

    spec = read_optimum_folder(half).metadata.main_graph
    assert {t.dtype for t in spec.inputs if t.name.startswith("past_key_values.")} == {"float16"}

    (folder / "openvino_model.xml").write_text(xml.replace("past_key_values.0.keypresent.0.key", "cache_0"))
    with pytest.raises(ArtifactError, match="state variable 'cache_0' that is not a KV-cache pair"):
        OVModelForCausalLM.from_pretrained(folder)


def test_a_model_loaded_from_an_optimum_folder_saves_as_an_artifact(bert_folder, tmp_path):
    folder, int8, ids, _ = bert_folder
    model = ORTModelForSequenceClassification.from_pretrained(folder, file_name="model_quantized.onnx")
    model.save_pretrained(tmp_path / "saved")
    saved = ORTModelForSequenceClassification.from_pretrained(tmp_path / "saved")
    assert is_artifact(tmp_path / "saved") and saved.model_path.name == "model_quantized.onnx"
    assert not (tmp_path / "saved" / "model.onnx").exists()  # only the graph that was loaded
    assert torch.equal(saved(input_ids=ids).logits, model(input_ids=ids).logits)
