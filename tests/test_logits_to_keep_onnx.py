"""The exported decoder graph's optional ``logits_to_keep`` input: the prompt's other positions skip
the LM head on ONNX Runtime, callers that do not know the input see the graph they always had."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from optibridge import OBModelForCausalLM
from optibridge.artifact import GraphSpec
from optibridge.exporter.logits_to_keep import add_logits_to_keep, lm_head

VOCAB, HIDDEN = 11, 4


def _ort_session(path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _prompt_feed(artifact, length):
    layout = artifact.metadata.extra["kv_cache"]
    feed = {"input_ids": np.random.default_rng(0).integers(3, 90, (2, length)), "attention_mask": np.ones((2, length), np.int64),
            "position_ids": np.tile(np.arange(length), (2, 1))}
    for name in artifact.metadata.input_names:
        if name.startswith("past_key_values."):
            feed[name] = np.zeros((2, layout["num_heads"], 0, layout["head_dim"]), np.float32)
    return feed


def test_the_exported_graph_slices_positions_before_the_lm_head_as_transformers_does(exported_generative):
    artifact = exported_generative("llama")
    spec = artifact.metadata.main_graph
    assert [t.name for t in spec.optional_inputs] == ["logits_to_keep"] and "logits_to_keep" not in spec.input_names
    session = _ort_session(artifact.path / spec.file)
    assert "logits_to_keep" not in [i.name for i in session.get_inputs()]  # what optibridge.json says, as check_interface wants
    feed = _prompt_feed(artifact, 6)
    every = session.run(["logits"], feed)[0]
    assert every.shape[:2] == (2, 6)
    for keep, positions in ((1, [5]), (4, [2, 3, 4, 5]), (0, list(range(6))), (99, list(range(6)))):
        kept = session.run(["logits"], {**feed, "logits_to_keep": np.array(keep, np.int64)})[0]
        assert kept.shape == (2, len(positions), every.shape[2])
        np.testing.assert_allclose(kept, every[:, positions], atol=1e-6)


def test_generate_asks_the_graph_for_the_last_position_only(exported_generative, tiny_generative):
    """generate() passes logits_to_keep=1; the ORT session itself then returns one row per prompt."""
    from transformers import AutoModelForCausalLM

    artifact = exported_generative("gpt2")
    model = OBModelForCausalLM.from_pretrained(artifact.path, generation_engine="transformers")
    assert model.session.optional_input_names == ["logits_to_keep"]
    returned = []
    run = model.session._inner.run

    def recording(feed):
        out = run(feed)
        returned.append((feed["input_ids"].shape[1], out["logits"].shape[1]))
        return out

    model.session._inner.run = recording
    ids = torch.randint(3, 90, (2, 9))
    ours = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=4, do_sample=False)
    reference = AutoModelForCausalLM.from_pretrained(tiny_generative("gpt2")).eval()
    with torch.no_grad():
        theirs = reference.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=4, do_sample=False)
    assert torch.equal(ours, theirs)
    assert returned[0] == (9, 1) and all(rows == 1 for _, rows in returned)  # the prompt's 9 positions, one row of logits
    returned.clear()
    full = model(input_ids=ids).logits  # a plain forward still has every position
    assert full.shape[1] == 9 and returned == [(9, 9)]


def test_optimized_and_quantized_graphs_keep_the_input(exported_generative, tmp_path):
    """onnxscript's fusions drop an input that has a default (it then reads as a constant); the ORT
    step gives it back, and quantizers keep it."""
    from optibridge import OptimizationConfig, QuantizationConfig, optimize, quantize

    artifact = exported_generative("llama")
    for name, made in (("O2", optimize(artifact.path, OptimizationConfig(level=2), tmp_path / "o2", backend="ort")),
                       ("int8", quantize(artifact.path, QuantizationConfig(mode="dynamic"), tmp_path / "int8", backend="ort")),
                       ("int4", quantize(artifact.path, QuantizationConfig(mode="int4"), tmp_path / "int4", backend="ort"))):
        spec = made.artifact.metadata.main_graph
        assert [t.name for t in spec.optional_inputs] == ["logits_to_keep"], name
        session = _ort_session(made.artifact.path / spec.file)
        feed = _prompt_feed(artifact, 5)
        kept = session.run(["logits"], {**feed, "logits_to_keep": np.array(2, np.int64)})[0]
        assert kept.shape[1] == 2, name


def test_loading_prints_no_onnxruntime_warning_about_the_default(exported_generative, capfd):
    artifact = exported_generative("llama")
    capfd.readouterr()
    OBModelForCausalLM.from_pretrained(artifact.path)
    assert "appears in graph inputs" not in capfd.readouterr().err
    # The warning is ONNX Runtime's own (proof that the check above can fail): a session at its default level prints it.
    import onnxruntime as ort

    ort.InferenceSession(str(artifact.path / artifact.metadata.main_graph.file), providers=["CPUExecutionProvider"])
    assert "appears in graph inputs" in capfd.readouterr().err


def test_an_io_binding_session_takes_no_optional_input(exported_generative):
    """ORT's IO binding cannot bind an input that has a default; the logits are selected afterwards."""
    artifact = exported_generative("llama")
    bound = OBModelForCausalLM.from_pretrained(artifact.path, io_binding=True)
    plain = OBModelForCausalLM.from_pretrained(artifact.path)
    assert bound.session.optional_input_names == []
    ids = torch.randint(3, 90, (1, 6))
    assert torch.allclose(bound(input_ids=ids, logits_to_keep=2).logits, plain(input_ids=ids).logits[:, -2:], atol=1e-6)


def test_info_lists_the_optional_input(exported_generative, capsys):
    from optibridge.cli import main

    assert main(["info", str(exported_generative("llama").path)]) == 0
    assert "input  logits_to_keep: int64[] (optional: the graph has a default)" in capsys.readouterr().out


def test_manifests_without_the_field_read_as_no_optional_inputs():
    spec = GraphSpec.from_dict({"file": "model.onnx", "inputs": [], "outputs": []})
    assert spec.optional_inputs == ()


# The LM-head search on hand-made graphs.

def _graph(tail: list[onnx.NodeProto], extra_initializers=(), head_op="MatMul", logits_rank=3) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Relu", ["hidden"], ["h"])]  # something computed, as a decoder's last norm is
    if head_op == "Gemm":
        nodes.append(helper.make_node("Gemm", ["h", "weight"], ["projected"]))
    else:
        nodes.append(helper.make_node("MatMul", ["h", "weight"], ["projected"]))
    nodes += tail
    dims = ["batch", "positions", VOCAB][-logits_rank:]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "positions", HIDDEN][-logits_rank:])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, dims)],
        [numpy_helper.from_array(rng.normal(size=(HIDDEN, VOCAB)).astype(np.float32), "weight"), *extra_initializers])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _constant(name, shape):
    return numpy_helper.from_array(np.random.default_rng(1).normal(size=shape).astype(np.float32), name)


def test_the_head_is_found_through_a_bias_a_scale_and_a_soft_cap_and_slices_the_same_logits(tmp_path):
    tail = [helper.make_node("Add", ["projected", "bias"], ["biased"]), helper.make_node("Div", ["biased", "cap"], ["scaled"]),
            helper.make_node("Tanh", ["scaled"], ["logits"])]
    model = _graph(tail, [_constant("bias", (VOCAB,)), _constant("cap", ())])
    assert lm_head(model).op_type == "MatMul"
    assert add_logits_to_keep(model) and not add_logits_to_keep(model)  # added once
    onnx.checker.check_model(model)
    onnx.save(model, tmp_path / "m.onnx")
    session = _ort_session(tmp_path / "m.onnx")
    hidden = np.random.default_rng(2).normal(size=(2, 5, HIDDEN)).astype(np.float32)
    every = session.run(None, {"hidden": hidden})[0]
    np.testing.assert_allclose(session.run(None, {"hidden": hidden, "logits_to_keep": np.array(3)})[0], every[:, 2:], atol=1e-6)


def test_a_transposed_weight_is_found_a_batched_one_is_not():
    """A tied embedding arrives as Transpose(table) (dynamo's GPT-2); a (1, hidden, vocab) weight could
    broadcast a two-dimensional activation whose axis 1 is not positions."""
    tied = _graph([helper.make_node("Identity", ["projected"], ["logits"])])
    tied.graph.initializer[0].CopyFrom(_constant("table", (VOCAB, HIDDEN)))
    tied.graph.node.insert(0, helper.make_node("Transpose", ["table"], ["weight"], perm=[1, 0]))
    assert lm_head(tied) is not None
    batched = _graph([helper.make_node("Identity", ["projected"], ["logits"])])
    batched.graph.initializer[0].CopyFrom(_constant("weight", (1, HIDDEN, VOCAB)))
    assert lm_head(batched) is None


@pytest.mark.parametrize("case", ["per-position constant", "reshape", "gemm", "rank-2 logits", "weight computed"])
def test_the_search_refuses_what_slicing_would_change(case):
    if case == "per-position constant":  # a (positions, vocab) table: slicing positions would misplace it
        model = _graph([helper.make_node("Add", ["projected", "table"], ["logits"])], [_constant("table", (5, VOCAB))])
    elif case == "reshape":
        model = _graph([helper.make_node("Reshape", ["projected", "shape"], ["logits"])],
                       [numpy_helper.from_array(np.array([0, -1, VOCAB], np.int64), "shape")])
    elif case == "gemm":  # two-dimensional: positions folded into the rows
        model = _graph([helper.make_node("Identity", ["projected"], ["logits"])], head_op="Gemm")
    elif case == "rank-2 logits":
        model = _graph([helper.make_node("Identity", ["projected"], ["logits"])], logits_rank=2)
    else:  # the right-hand side is an activation, not a weight (attention-like)
        model = _graph([helper.make_node("MatMul", ["projected", "projected_t"], ["logits"]),
                        helper.make_node("Transpose", ["projected"], ["projected_t"], perm=[0, 2, 1])])
    before = model.SerializeToString()
    assert lm_head(model) is None and not add_logits_to_keep(model)
    assert model.SerializeToString() == before
