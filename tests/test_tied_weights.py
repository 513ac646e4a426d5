"""A tied embedding is stored once: the LM head reads the embedding table through a Transpose."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from optibridge import OptimizationConfig, QuantizationConfig, optimize, quantize
from optibridge.tied_weights import materialize_tied_weights, share_tied_weights

VOCAB, HIDDEN = 40, 8


def _lm(table: np.ndarray, head: np.ndarray, *, head_read_twice: bool = False) -> onnx.ModelProto:
    """``Gather(table, ids) @ head`` (and ``+ head`` read by a second node when asked)."""
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "positions"])
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "positions", VOCAB])]
    nodes = [helper.make_node("Gather", ["table", "ids"], ["hidden"]), helper.make_node("MatMul", ["hidden", "head"], ["logits"])]
    if head_read_twice:
        nodes.append(helper.make_node("Identity", ["head"], ["head_out"]))
        outputs.append(helper.make_tensor_value_info("head_out", TensorProto.FLOAT, [HIDDEN, VOCAB]))
    graph = helper.make_graph(nodes, "lm", [ids], outputs,
                              [numpy_helper.from_array(table, "table"), numpy_helper.from_array(head, "head")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _logits(model: onnx.ModelProto) -> np.ndarray:
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ids = np.array([[0, 5, 39, 7], [3, 3, 1, 2]], dtype=np.int64)
    return session.run(["logits"], {"ids": ids})[0]


@pytest.fixture
def table() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((VOCAB, HIDDEN)).astype(np.float32)


def test_a_head_equal_to_the_transposed_table_reads_the_table(table):
    model = _lm(table, table.T.copy())
    before = _logits(model)

    tied = share_tied_weights(model)

    assert (tied.shared, tied.bytes_saved) == (1, table.nbytes)
    assert [t.name for t in model.graph.initializer] == ["table"]
    producer = {out: node for node in model.graph.node for out in node.output}
    head = next(n for n in model.graph.node if n.op_type == "MatMul")
    assert producer[head.input[1]].op_type == "Transpose" and producer[head.input[1]].input[0] == "table"
    assert np.array_equal(_logits(model), before)  # the same arithmetic, bit for bit


def test_a_head_one_value_away_from_the_table_keeps_its_own_weights(table):
    head = table.T.copy()
    head[3, 5] = np.nextafter(head[3, 5], np.float32(np.inf))
    model = _lm(table, head)
    kept = model.SerializeToString()

    assert share_tied_weights(model).shared == 0
    assert model.SerializeToString() == kept


def test_a_head_weight_something_else_reads_is_left_as_it_is(table):
    model = _lm(table, table.T.copy(), head_read_twice=True)
    assert share_tied_weights(model).shared == 0
    assert {t.name for t in model.graph.initializer} == {"table", "head"}


def test_a_head_weight_a_subgraph_reads_is_left_as_it_is(table):
    model = _lm(table, table.T.copy())
    branch = helper.make_graph([helper.make_node("Identity", ["head"], ["branch_out"])], "branch", [],
                               [helper.make_tensor_value_info("branch_out", TensorProto.FLOAT, [HIDDEN, VOCAB])])
    model.graph.input.append(helper.make_tensor_value_info("flag", TensorProto.BOOL, []))
    model.graph.node.append(helper.make_node("If", ["flag"], ["head_out"], then_branch=branch, else_branch=branch))
    model.graph.output.append(helper.make_tensor_value_info("head_out", TensorProto.FLOAT, [HIDDEN, VOCAB]))

    assert share_tied_weights(model).shared == 0  # the body reads "head" by name: dropping it would break the graph
    assert {t.name for t in model.graph.initializer} == {"table", "head"}


def test_a_table_the_caller_can_feed_is_not_shared(table):
    model = _lm(table, table.T.copy())
    model.graph.input.append(helper.make_tensor_value_info("table", TensorProto.FLOAT, [VOCAB, HIDDEN]))
    assert share_tied_weights(model).shared == 0  # a fed table would change the head too


def test_materializing_gives_the_head_a_constant_weight_again(table):
    model = _lm(table, table.T.copy())
    before = _logits(model)
    share_tied_weights(model)

    assert materialize_tied_weights(model) == 1

    assert not [n for n in model.graph.node if n.op_type == "Transpose"]
    head = next(n for n in model.graph.node if n.op_type == "MatMul")
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert np.array_equal(weights[head.input[1]], table.T)
    assert np.array_equal(_logits(model), before)


def _tables(path, vocab: int, hidden: int) -> list[str]:
    """Initializers of the graph shaped like the embedding, either way round."""
    graph = onnx.load(str(path), load_external_data=False).graph
    return [t.name for t in graph.initializer if sorted(t.dims) == sorted([vocab, hidden])]


@pytest.fixture(scope="module")
def gpt2(exported_generative):
    artifact = exported_generative("gpt2")
    config = json.loads((artifact.path / "config.json").read_text())
    assert config.get("tie_word_embeddings", True)  # GPT-2 ties its head to the token embedding
    return artifact, config["vocab_size"], config["n_embd"]


def test_an_exported_tied_lm_stores_its_embedding_once(gpt2):
    artifact, vocab, hidden = gpt2
    assert len(_tables(artifact.path / "model.onnx", vocab, hidden)) == 1


def test_each_seq2seq_decoder_graph_stores_the_shared_embedding_once(exported_generative):
    artifact = exported_generative("t5")  # T5 ties its LM head to the shared embedding
    config = json.loads((artifact.path / "config.json").read_text())
    decoders = [spec.file for name, spec in artifact.metadata.graphs.items() if name.startswith("decoder")]
    assert decoders
    for file in decoders:
        assert len(_tables(artifact.path / file, config["vocab_size"], config["d_model"])) == 1, file


def test_onnx_runtime_steps_keep_one_copy_or_quantize_the_head(gpt2, tmp_path):
    artifact, vocab, hidden = gpt2
    o2 = optimize(artifact.path, OptimizationConfig(level=2), tmp_path / "o2")
    assert len(_tables(o2.artifact.path / "model.onnx", vocab, hidden)) == 1  # constant folding wrote a copy; dropped again

    int8 = quantize(artifact.path, QuantizationConfig(mode="dynamic"), tmp_path / "int8")
    graph = onnx.load(str(int8.artifact.path / "model.onnx"), load_external_data=False).graph
    tables = set(_tables(int8.artifact.path / "model.onnx", vocab, hidden))
    float_matmuls = [n.name for n in graph.node if n.op_type == "MatMul"
                     and any(i.endswith(".transposed_for_matmul") or i in tables for i in n.input)]
    assert not float_matmuls  # the head is quantized, as when its weight was a copy of its own
    assert any(n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") for n in graph.node)


def test_an_int8_head_kept_in_float_reads_the_one_table(gpt2, tmp_path):
    artifact, vocab, hidden = gpt2
    graph = onnx.load(str(artifact.path / "model.onnx"), load_external_data=False).graph
    head = next(n.name for n in graph.node if n.op_type == "MatMul" and _transposed_table(graph, n.input[1]))

    int8 = quantize(artifact.path, QuantizationConfig(mode="dynamic", exclude_nodes=(head,)), tmp_path / "int8")

    quantized = onnx.load(str(int8.artifact.path / "model.onnx"), load_external_data=False).graph
    assert len(_tables(int8.artifact.path / "model.onnx", vocab, hidden)) == 1  # no second, transposed copy for the head
    kept = next(n for n in quantized.node if n.name == head)
    assert kept.op_type == "MatMul" and _transposed_table(quantized, kept.input[1])


def _transposed_table(graph: onnx.GraphProto, name: str) -> bool:
    """``name`` is a Transpose of an initializer (the shared table), not of a computed tensor (attention's keys)."""
    constants = {t.name for t in graph.initializer}
    return any(n.op_type == "Transpose" and name in n.output and n.input[0] in constants for n in graph.node)
