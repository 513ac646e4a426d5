"""Optimum / optimum-intel ``from_pretrained`` arguments, attributes and methods, run as their users
write them, against PyTorch (≤ 1e-4; greedy tokens identical)."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, PreTrainedTokenizerBase

from optibridge.errors import ArtifactError, BackendError, InputError
from optibridge.onnxruntime import ORTModelForCausalLM, ORTModelForSequenceClassification
from optibridge.openvino import OVModelForCausalLM, OVModelForSequenceClassification

GREEDY = dict(max_new_tokens=10, min_new_tokens=10, do_sample=False)


@pytest.fixture(scope="module")
def bert(tiny_model, exported):
    path = tiny_model("bert", "text-classification")
    ids = torch.randint(5, 100, (2, 7))
    with torch.inference_mode():
        want = AutoModelForSequenceClassification.from_pretrained(path).eval()(input_ids=ids).logits
    return path, exported("bert", "text-classification"), ids, want


@pytest.fixture(scope="module")
def gpt2(tiny_generative, exported_generative):
    path = tiny_generative("gpt2")
    inputs = AutoTokenizer.from_pretrained(path)(["the cat sat on"], return_tensors="pt")
    want = AutoModelForCausalLM.from_pretrained(path).eval().generate(**inputs, **GREEDY)
    return exported_generative("gpt2"), inputs, want


def _close(got, want, atol=1e-4):
    torch.testing.assert_close(got, want, atol=atol, rtol=0)


# -- ONNX Runtime ---------------------------------------------------------------------------------
def test_ort_attributes_as_optimum_has_them(bert):
    _, artifact, ids, want = bert
    model = ORTModelForSequenceClassification.from_pretrained(artifact.path)
    assert model.model_save_dir == artifact.path and model.model_path == artifact.path / "model.onnx" == model.path
    assert model.provider == "CPUExecutionProvider" and model.providers == ["CPUExecutionProvider"]
    assert model.provider_options == {} and model.use_io_binding is False
    assert model.input_names == {"input_ids": 0, "attention_mask": 1, "token_type_ids": 2} and model.output_names == {"logits": 0}
    tokenizers = [p for p in model.preprocessors if isinstance(p, PreTrainedTokenizerBase)]
    assert len(tokenizers) == 1 and tokenizers[0]("a cat")["input_ids"]
    _close(model(input_ids=ids).logits, want)


def test_ort_subfolder_file_name_and_config(bert, tmp_path):
    _, artifact, ids, want = bert
    shutil.copytree(artifact.path, tmp_path / "repo" / "onnx")
    config = AutoModelForSequenceClassification.from_pretrained(bert[0]).config
    config.id2label = {0: "bad", 1: "good"}
    model = ORTModelForSequenceClassification.from_pretrained(tmp_path / "repo", subfolder="onnx", file_name="model.onnx", config=config)
    assert model.config is config and model.model_save_dir == tmp_path / "repo" / "onnx"
    _close(model(input_ids=ids).logits, want)
    with pytest.raises(ArtifactError, match="has no graph file 'model_quantized.onnx'; its graph files: model.onnx"):
        ORTModelForSequenceClassification.from_pretrained(artifact.path, file_name="model_quantized.onnx")


def test_ort_io_binding_is_honoured_on_the_cpu(bert):
    _, artifact, ids, want = bert
    model = ORTModelForSequenceClassification.from_pretrained(artifact.path, use_io_binding=True)
    runtime_session = getattr(model.session, "_inner", model.session)  # under the input-checking wrapper
    assert model.use_io_binding is True and type(runtime_session).__name__ == "IOBindingSession"
    _close(model(input_ids=ids).logits, want)
    assert ORTModelForSequenceClassification.from_pretrained(artifact.path, use_io_binding=False).use_io_binding is False


def test_ort_providers_and_provider_options(bert):
    _, artifact, ids, want = bert
    model = ORTModelForSequenceClassification.from_pretrained(artifact.path, providers=["CPUExecutionProvider"], provider_options={})
    _close(model(input_ids=ids).logits, want)
    with pytest.raises(BackendError, match="CPU execution provider takes no provider options \\(got arena_extend_strategy\\)"):
        ORTModelForSequenceClassification.from_pretrained(artifact.path, provider_options={"arena_extend_strategy": "kSameAsRequested"})
    with pytest.raises(BackendError, match="unknown provider 'ROCMExecutionProvider'"):
        ORTModelForSequenceClassification.from_pretrained(artifact.path, providers=["ROCMExecutionProvider"])


def test_a_gpu_provider_that_cannot_run_here_says_how_to_ask_for_the_cpu(bert, monkeypatch):
    from optibridge.backends import get_registry

    _, artifact, _, _ = bert
    real = get_registry().require_available

    def no_gpu(name, device):
        if name == "cuda":
            raise BackendError("backend 'cuda' is not usable here: no CUDA device")
        return real(name, device)

    monkeypatch.setattr(get_registry(), "require_available", no_gpu)  # so the test means the same on a GPU machine
    with pytest.raises(BackendError, match=re.escape("no CUDA device. To run on the CPU instead, pass provider='CPUExecutionProvider' "
                                                     "(optibridge does not fall back to the later CPUExecutionProvider)")):
        ORTModelForSequenceClassification.from_pretrained(artifact.path, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    with pytest.raises(BackendError, match=r"no CUDA device. To run on the CPU instead, pass provider='CPUExecutionProvider'$"):
        ORTModelForSequenceClassification.from_pretrained(artifact.path, provider="CUDAExecutionProvider")


def test_ort_export_with_hub_arguments(bert):
    path, _, ids, want = bert
    model = ORTModelForSequenceClassification.from_pretrained(path, export=True, force_download=False, local_files_only=True)
    _close(model(input_ids=ids).logits, want)


@pytest.mark.parametrize("cls,argument,says", [
    (ORTModelForSequenceClassification, {"from_transformers": True}, re.escape("from_transformers (Optimum's old name for export: pass export=True)")),
    (ORTModelForSequenceClassification, {"use_auth_token": "x"}, re.escape("pass token=...")),
    (ORTModelForSequenceClassification, {"exprot": True}, r"unknown argument\(s\) exprot; .* backend 'ort' takes .*intra_op_num_threads"),
    (ORTModelForSequenceClassification, {"quantization_config": {"bits": 4}}, re.escape("`optibridge quantize DIR OUT --mode int4`")),
    (OVModelForSequenceClassification, {"compile_only": True}, "compile-only load is not offered"),
    (OVModelForSequenceClassification, {"perfomance_hint": "LATENCY"}, r"unknown argument\(s\) perfomance_hint; .* backend 'openvino' takes .*performance_hint"),
])
def test_arguments_optibridge_does_not_take_are_refused_before_the_export(bert, monkeypatch, cls, argument, says):
    import optibridge.modeling.base as base

    monkeypatch.setattr(base, "export_model", lambda *a, **k: pytest.fail("exported before checking the arguments"))
    with pytest.raises(InputError, match=says):
        cls.from_pretrained(bert[0], export=True, **argument)


def test_use_cache_false_recomputes_and_keeps_the_tokens(gpt2):
    artifact, inputs, want = gpt2
    for cls in (ORTModelForCausalLM, OVModelForCausalLM):
        model = cls.from_pretrained(artifact.path, use_cache=False)
        assert model.generation_config.use_cache is False
        assert torch.equal(model.generate(**inputs, **GREEDY), want)


# -- OpenVINO -------------------------------------------------------------------------------------
def test_ov_compile_false_defers_until_the_first_call(bert):
    _, artifact, ids, want = bert
    model = OVModelForSequenceClassification.from_pretrained(artifact.path, compile=False, ov_config={"PERFORMANCE_HINT": "LATENCY"})
    assert model.request is None
    assert model.ov_config["PERFORMANCE_HINT"] == "LATENCY" and model.model_save_dir == artifact.path
    assert type(model.model).__name__ == "Model"  # the ov.Model, readable before compiling
    _close(model(input_ids=ids).logits, want)
    assert model.request is not None
    explicit = OVModelForSequenceClassification.from_pretrained(artifact.path, compile=False)
    explicit.compile()
    assert explicit.request is not None


def test_ov_reshape_to_static_shapes(bert):
    _, artifact, ids, want = bert
    model = OVModelForSequenceClassification.from_pretrained(artifact.path, compile=False)
    assert model.is_dynamic and model.input_names["input_ids"] == 0
    model.reshape(2, 7).compile()
    assert not model.is_dynamic
    assert [d.get_length() for d in model.model.input("input_ids").get_partial_shape()] == [2, 7]
    _close(model(input_ids=ids).logits, want)
    with pytest.raises(InputError, match="reshaped to the static shape \\(2, 7\\): pad the inputs"):
        model(input_ids=ids[:, :5])
    model.reshape(-1, -1)
    assert model.is_dynamic
    _close(model(input_ids=ids[:1]).logits, want[:1])


def test_ov_half_stores_fp16_weights(bert):
    _, artifact, ids, want = bert
    model = OVModelForSequenceClassification.from_pretrained(artifact.path).half()
    kinds = {op.get_output_element_type(0).get_type_name() for op in model.model.get_ops() if op.get_type_name() == "Constant"}
    assert "f16" in kinds
    _close(model(input_ids=ids).logits, want, atol=2e-2)  # fp16 weights: close, not equal


def test_ov_to_device(bert):
    import openvino as ov

    _, artifact, ids, want = bert
    model = OVModelForSequenceClassification.from_pretrained(artifact.path)
    assert model.to("CPU") is model and model._device == "CPU" and model.device == torch.device("cpu")
    _close(model(input_ids=ids).logits, want)
    missing = next(d for d in ("GPU", "NPU", "GPU.3") if d not in ov.Core().available_devices)
    with pytest.raises(BackendError, match=f"OpenVINO has no device '{missing}' on this machine; its devices: CPU"):
        model.to(missing)


def test_ov_stateful_at_load_generates_pytorch_tokens(gpt2):
    artifact, inputs, want = gpt2
    assert not OVModelForCausalLM.from_pretrained(artifact.path, stateful=False).stateful
    model = OVModelForCausalLM.from_pretrained(artifact.path, stateful=True)
    assert model.stateful and model.request.query_state()
    with pytest.warns(UserWarning, match="its shapes stay dynamic"):  # optimum-intel code may call it: a warning, not an error
        assert model.reshape(1, 16) is model
    assert model.is_dynamic and model.session.edits == ["made stateful at load (stateful=True)"]  # no reshape recorded
    assert torch.equal(model.generate(**inputs, **GREEDY), want)


def test_ov_load_in_8bit_compresses_weights_with_nncf(gpt2):
    artifact, inputs, want = gpt2
    model = OVModelForCausalLM.from_pretrained(artifact.path, load_in_8bit=True)
    kinds = [op.get_output_element_type(0).get_type_name() for op in model.model.get_ops() if op.get_type_name() == "Constant"]
    assert kinds.count("u8") + kinds.count("i8") >= 4
    exact = OVModelForCausalLM.from_pretrained(artifact.path)
    ids = inputs["input_ids"]
    got, ref = model(input_ids=ids).logits, exact(input_ids=ids).logits
    assert not torch.equal(got, ref) and torch.nn.functional.cosine_similarity(got.flatten(), ref.flatten(), dim=0) > 0.99


def _constant_kinds(model):
    return [op.get_output_element_type(0).get_type_name() for op in model.model.get_ops() if op.get_type_name() == "Constant"]


def test_ov_save_pretrained_writes_what_load_in_8bit_made(gpt2, tmp_path):
    """optimum-intel's save_pretrained saves the in-memory model: int8 weights stay int8 on reload."""
    from optibridge.artifact import Artifact

    artifact, inputs, _ = gpt2
    model = OVModelForCausalLM.from_pretrained(artifact.path, load_in_8bit=True, stateful=True)
    ids = inputs["input_ids"]
    logits, tokens = model(input_ids=ids).logits, model.generate(**inputs, **GREEDY)
    model.save_pretrained(tmp_path / "int8")
    saved = Artifact.load(tmp_path / "int8", verify_hashes=True, require_hashes=True)
    def graph_bytes(folder):
        return sum(f.stat().st_size for f in folder.iterdir() if f.suffix in (".bin", ".onnx", ".data"))

    assert saved.metadata.main_graph.format == "openvino-ir" and graph_bytes(saved.path) < 0.5 * graph_bytes(artifact.path)
    assert saved.metadata.steps[-1] == {"step": "save_pretrained", "backend": "openvino", "edits": {"model": [
        "made stateful at load (stateful=True)", "int8 weights (load_in_8bit=True)"]}}
    assert saved.metadata.extra["openvino"]["stateful_graphs"] == ["model"] and saved.metadata.extra["openvino"]["weights"] == "int8"
    again = OVModelForCausalLM.from_pretrained(saved.path)  # no load_in_8bit: the weights are int8 in the file
    assert again.session.stateful and _constant_kinds(again).count("u8") >= 4
    assert torch.equal(again(input_ids=ids).logits, logits) and torch.equal(again.generate(**inputs, **GREEDY), tokens)
    assert (tmp_path / "int8" / "tokenizer.json").is_file() and (tmp_path / "int8" / "generation_config.json").is_file()


def test_ov_weight_quantization_config_at_load_is_quantize_int4_weights(gpt2, tmp_path):
    """optimum-intel's quantization_config=OVWeightQuantizationConfig(bits=4) at load: the same NNCF
    compression as `optibridge quantize --backend openvino --mode int4-weights`, and save_pretrained keeps it."""
    from optibridge import QuantizationConfig, quantize
    from optibridge.artifact import Artifact
    from optibridge.openvino import OVWeightQuantizationConfig

    artifact, inputs, _ = gpt2
    ids = inputs["input_ids"]
    config = OVWeightQuantizationConfig(bits=4, sym=True, group_size=16)
    model = OVModelForCausalLM.from_pretrained(artifact.path, quantization_config=config)
    kinds = _constant_kinds(model)
    assert kinds.count("i4") >= 4 and "u4" not in kinds  # symmetric int4
    offline = quantize(artifact.path, QuantizationConfig(mode="int4-weights", symmetric=True, block_size=16), tmp_path / "q", backend="openvino")
    _close(model(input_ids=ids).logits, OVModelForCausalLM.from_pretrained(offline.artifact.path)(input_ids=ids).logits, atol=1e-5)
    exact = OVModelForCausalLM.from_pretrained(artifact.path)(input_ids=ids).logits
    assert not torch.equal(model(input_ids=ids).logits, exact)
    from_dict = OVModelForCausalLM.from_pretrained(artifact.path, quantization_config={"bits": 4, "sym": True, "group_size": 16})
    assert torch.equal(from_dict(input_ids=ids).logits, model(input_ids=ids).logits)

    model.save_pretrained(tmp_path / "saved")
    saved = Artifact.load(tmp_path / "saved")
    assert saved.metadata.steps[-1]["edits"] == {"model": ["int4 weights (quantization_config: mode=int4_sym, group_size=16)"]}
    assert saved.metadata.extra["openvino"]["weights"] == "int4"
    assert torch.equal(OVModelForCausalLM.from_pretrained(saved.path)(input_ids=ids).logits, model(input_ids=ids).logits)


def test_ov_dynamic_quantization_config_compresses_weights_and_sets_its_runtime_hints(gpt2):
    """optimum-intel's OVDynamicQuantizationConfig: the weights as OVWeightQuantizationConfig compresses them,
    and the compiled model runs with the activation group size it names (the KV cache in u8 for a
    generative model); the caller's ov_config wins; a dict with activations_group_size is this config."""
    from optibridge.openvino import OVDynamicQuantizationConfig, OVWeightQuantizationConfig

    artifact, inputs, _ = gpt2
    ids = inputs["input_ids"]
    model = OVModelForCausalLM.from_pretrained(artifact.path, quantization_config=OVDynamicQuantizationConfig(bits=8, activations_group_size=64))
    compiled = model.session.compiled
    assert int(compiled.get_property("DYNAMIC_QUANTIZATION_GROUP_SIZE")) == 64
    assert str(compiled.get_property("KV_CACHE_PRECISION")) in ("u8", "<Type: 'uint8_t'>")
    assert _constant_kinds(model).count("u8") >= 4  # int8 weights, as the weight-only config gives
    weights_only = OVModelForCausalLM.from_pretrained(artifact.path, quantization_config=OVWeightQuantizationConfig(bits=8))
    assert int(weights_only.session.compiled.get_property("DYNAMIC_QUANTIZATION_GROUP_SIZE")) != 64
    exact = OVModelForCausalLM.from_pretrained(artifact.path)(input_ids=ids).logits
    for quantized in (model, weights_only):  # int8 weights and activations in groups: close to the float logits, not equal
        got = quantized(input_ids=ids).logits
        cosine = torch.nn.functional.cosine_similarity(got.flatten(), exact.flatten(), dim=0)
        assert 0.99 < cosine < 1.0, cosine
    mine = OVModelForCausalLM.from_pretrained(artifact.path, quantization_config={"bits": 8, "activations_group_size": 64},
                                              ov_config={"DYNAMIC_QUANTIZATION_GROUP_SIZE": "0"})
    assert int(mine.session.compiled.get_property("DYNAMIC_QUANTIZATION_GROUP_SIZE")) == 0
    from optibridge.errors import ConfigError

    with pytest.raises(ConfigError, match="activations_group_size=0"):
        OVDynamicQuantizationConfig(activations_group_size=0)


@pytest.mark.parametrize("config,says", [
    ({"bits": 4, "awq": True, "dataset": "wikitext2"}, "OVWeightQuantizationConfig got awq, dataset, which optibridge does not apply .*--mode inc-awq"),
    ({"bits": 4, "ratio": 0.8}, r"ratio=0.8\): a mix of int4 and int8 layers is not offered"),
    ({"bits": 3}, r"bits=3\): bits is 4 or 8"),
])
def test_ov_weight_quantization_config_refuses_what_it_does_not_apply(gpt2, config, says):
    from optibridge.errors import ConfigError

    with pytest.raises(ConfigError, match=says):
        OVModelForCausalLM.from_pretrained(gpt2[0].path, quantization_config=config)
    with pytest.raises(ConfigError, match="load_in_8bit=True or quantization_config, not both"):
        OVModelForCausalLM.from_pretrained(gpt2[0].path, quantization_config={"bits": 8}, load_in_8bit=True)


@pytest.mark.parametrize("cls", [ORTModelForCausalLM, OVModelForCausalLM])
def test_save_pretrained_writes_the_generation_config_in_memory(gpt2, tmp_path, cls):
    """As transformers and optimum-intel: settings changed on model.generation_config are saved."""
    from optibridge.artifact import Artifact

    model = cls.from_pretrained(gpt2[0].path, **({"load_in_8bit": True} if cls is OVModelForCausalLM else {}))
    model.generation_config.max_new_tokens = 7
    model.generation_config.repetition_penalty = 1.3
    model.save_pretrained(tmp_path / "saved")
    again = cls.from_pretrained(tmp_path / "saved")
    assert (again.generation_config.max_new_tokens, again.generation_config.repetition_penalty) == (7, 1.3)
    assert Artifact.load(again.artifact.path).modified_files() == []  # the manifest records the file as written


def test_ov_save_pretrained_keeps_half_and_reshape_and_copies_an_unchanged_model(bert, tmp_path):
    from optibridge.artifact import Artifact

    _, artifact, ids, want = bert
    model = OVModelForSequenceClassification.from_pretrained(artifact.path).half()
    model.reshape(2, 7)
    logits = model(input_ids=ids).logits
    model.save_pretrained(tmp_path / "f16")
    saved = Artifact.load(tmp_path / "f16", verify_hashes=True, require_hashes=True)
    assert saved.metadata.steps[-1]["edits"] == {"model": ["float16 weights (half())", "reshape(input_ids=[2, 7], attention_mask=[2, 7], token_type_ids=[2, 7])"]}
    assert saved.metadata.extra["openvino"]["weights"] == "float16"  # reshape() after half() keeps the storage recorded
    again = OVModelForSequenceClassification.from_pretrained(saved.path)
    assert "f16" in _constant_kinds(again) and again.model.input("input_ids").get_partial_shape().is_dynamic  # dynamic_shapes=True
    static = OVModelForSequenceClassification.from_pretrained(saved.path, dynamic_shapes=False)  # the IR as saved
    assert static.model.input("input_ids").get_partial_shape().is_static and torch.equal(static(input_ids=ids).logits, logits)
    _close(again(input_ids=ids).logits, logits, atol=1e-5)  # compiled for dynamic shapes: other kernels, same math
    _close(again(input_ids=ids[:1, :5]).logits, model.__class__.from_pretrained(artifact.path).half()(input_ids=ids[:1, :5]).logits)

    OVModelForSequenceClassification.from_pretrained(artifact.path).save_pretrained(tmp_path / "same")
    assert Artifact.load(tmp_path / "same").metadata.steps == artifact.metadata.steps  # nothing changed: a copy
    assert (tmp_path / "same" / "model.onnx").read_bytes() == (artifact.path / "model.onnx").read_bytes()


def test_ov_dynamic_shapes_on_an_ir_saved_with_static_shapes(bert, tmp_path):
    import openvino as ov

    from optibridge import OptimizationConfig, optimize
    from optibridge.artifact import Artifact, write_metadata

    _, artifact, ids, want = bert
    ir = optimize(artifact.path, OptimizationConfig(level=1), tmp_path / "ir", backend="openvino").artifact
    xml = ir.path / ir.metadata.main_graph.file
    model = ov.Core().read_model(str(xml))
    model.reshape({"input_ids": [1, 4], "attention_mask": [1, 4], "token_type_ids": [1, 4]})
    ov.save_model(model, str(tmp_path / "static.xml"), compress_to_fp16=False)
    del model  # its weights are mapped from the .bin about to be replaced
    shutil.move(tmp_path / "static.xml", xml)
    shutil.move(tmp_path / "static.bin", xml.with_suffix(".bin"))
    write_metadata(ir.path, ir.metadata)
    ir = Artifact.load(ir.path)
    static = OVModelForSequenceClassification.from_pretrained(ir.path, dynamic_shapes=False)
    assert static.model.input("input_ids").get_partial_shape().is_static
    dynamic = OVModelForSequenceClassification.from_pretrained(ir.path)  # dynamic_shapes=True, optimum-intel's default
    assert dynamic.model.input("input_ids").get_partial_shape().is_dynamic
    _close(dynamic(input_ids=ids).logits, want)


def test_ov_without_nncf_load_in_8bit_says_what_to_install(bert, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_nncf(name, *args, **kwargs):
        if name == "nncf":
            raise ImportError("No module named 'nncf'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_nncf)
    with pytest.raises(BackendError, match="needs NNCF, which is not installed: pip install 'optibridge\\[openvino-quant\\]'"):
        OVModelForSequenceClassification.from_pretrained(bert[1].path, load_in_8bit=True)


def test_ov_preprocessors_and_np_inputs(bert):
    _, artifact, ids, want = bert
    model = OVModelForSequenceClassification.from_pretrained(artifact.path)
    assert any(isinstance(p, PreTrainedTokenizerBase) for p in model.preprocessors)
    np.testing.assert_allclose(model(input_ids=ids.numpy()).logits, want.numpy(), atol=1e-4)
