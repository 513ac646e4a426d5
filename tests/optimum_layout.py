"""Folders laid out as Optimum writes them, built from optibridge artifacts (no Optimum offline).

Optimum's file names (model.onnx, model_quantized.onnx, encoder_model.onnx, decoder_model.onnx,
decoder_with_past_model.onnx, decoder_model_merged.onnx with its ``use_cache_branch`` input,
openvino_model.xml/.bin) and IO names (``past_key_values.{i}.key``, ``present.{i}.decoder.key``)
are reproduced from its documentation; the graphs inside are optibridge's own exports, which use
the same IO names. The merged decoder is assembled here the way Optimum's is shaped: one ``If``
node on ``use_cache_branch`` whose branches are the two decoders.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from optibridge.artifact import METADATA_FILE, Artifact

SEQ2SEQ_NAMES = {"encoder": "encoder_model.onnx", "decoder": "decoder_model.onnx", "decoder_with_past": "decoder_with_past_model.onnx"}


def write_optimum_folder(artifact: Artifact, dest: Path, *, merged: bool = False, extra_graphs: dict[str, Path] | None = None) -> Path:
    """``artifact`` re-laid out as an Optimum folder (config/tokenizer files copied, no optibridge.json)."""
    dest.mkdir(parents=True)
    graph_files = set(artifact.graph_files())
    for item in artifact.path.iterdir():
        if item.is_file() and item.name != METADATA_FILE and item.name not in graph_files:
            shutil.copy2(item, dest / item.name)
    graphs = artifact.metadata.graphs
    if "encoder" in graphs:
        shutil.copy2(artifact.path / graphs["encoder"].file, dest / SEQ2SEQ_NAMES["encoder"])
        if merged:
            import onnx

            model = merge_decoders(onnx.load(str(artifact.path / graphs["decoder"].file)),
                                   onnx.load(str(artifact.path / graphs["decoder_with_past"].file)))
            onnx.save(model, str(dest / "decoder_model_merged.onnx"))
        else:
            for name in ("decoder", "decoder_with_past"):
                shutil.copy2(artifact.path / graphs[name].file, dest / SEQ2SEQ_NAMES[name])
    else:
        main = graphs["model"]
        target = "openvino_model.xml" if main.format == "openvino-ir" else "model.onnx"
        shutil.copy2(artifact.path / main.file, dest / target)
        if main.format == "openvino-ir":
            shutil.copy2(artifact.path / main.side_file, dest / "openvino_model.bin")
    for name, source in (extra_graphs or {}).items():
        shutil.copy2(source, dest / name)
    return dest


def merge_decoders(no_past, with_past):
    """One decoder graph for both steps: ``If(use_cache_branch)`` → the with-past graph, else the first-step one.
    Both branches return Optimum's outputs in one order; the with-past branch passes its cross-attention
    keys/values through (they do not change after the first step)."""
    import onnx
    from onnx import TensorProto, helper

    outputs = [o.name for o in no_past.graph.output]
    ranks = {o.name: len(o.type.tensor_type.shape.dim) for o in no_past.graph.output}

    def value(name, original):  # same rank, every axis free: the branches differ in sequence lengths
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, [None] * ranks[original])

    def branch(model, prefix):
        produced = {o.name for o in model.graph.output}
        nodes = list(model.graph.node)
        results = []
        for name in outputs:
            source = name if name in produced else "past_key_values." + name[len("present."):]
            nodes.append(helper.make_node("Identity", [source], [prefix + name]))
            results.append(value(prefix + name, name))
        return helper.make_graph(nodes, prefix + "branch", [], results, initializer=list(model.graph.initializer))

    inputs = {i.name: i for i in no_past.graph.input}
    inputs.update({i.name: i for i in with_past.graph.input})
    flag = helper.make_tensor_value_info("use_cache_branch", TensorProto.BOOL, [1])
    node = helper.make_node("If", ["use_cache_branch"], outputs, then_branch=branch(with_past, "then_"), else_branch=branch(no_past, "else_"))
    graph_outputs = [value(name, name) for name in outputs]
    graph = helper.make_graph([node], "merged_decoder", [*inputs.values(), flag], graph_outputs)
    functions = {(f.domain, f.name): f for f in [*no_past.functions, *with_past.functions]}
    opsets = {o.domain: o.version for o in [*no_past.opset_import, *with_past.opset_import]}
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()], functions=list(functions.values()))
    model.ir_version = no_past.ir_version
    onnx.checker.check_model(model)
    return model
