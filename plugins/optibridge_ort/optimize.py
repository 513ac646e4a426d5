"""Graph optimization levels O1-O4 with ONNX Runtime's tools.

* O1: ONNX Runtime's basic (provider-independent) graph optimizations, saved offline.
* O2: transformer fusions. Two fusers exist and each recognises the graphs of one exporter
  (measured on BERT/MiniLM, ORT 1.31, onnxscript 0.7):
  ``onnxruntime.transformers.optimizer.optimize_model`` fuses Attention only on TorchScript
  graphs exported with eager attention (and needs num_heads/hidden_size); on dynamo graphs it
  fuses SkipLayerNorm/BiasGelu but no attention. ``onnxscript.rewriter.ort_fusions.optimize_for_ort``
  fuses Attention, SkipLayerNorm and BiasGelu on dynamo graphs (MultiHeadAttention and RMSNorm
  for Llama-style models) and no attention on TorchScript graphs. The fuser matching the
  artifact's exporter runs first; when it fuses no attention the other one is tried, and the
  graph with more fused attention is kept.
* O3: O2 + GELU approximation (Gelu/BiasGelu → FastGelu, tanh form; ~1e-3 difference).
* O4: O3 + float16 (inputs and outputs stay float32).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable

import onnx

from optibridge.artifact import Artifact
from optibridge.errors import BackendError, first_line
from optibridge.steps import OptimizationConfig
from optibridge.tied_weights import share_tied_weights

from . import graphs

FUSED_OP_TYPES = (
    "Attention", "MultiHeadAttention", "GroupQueryAttention", "PackedAttention", "SkipLayerNormalization",
    "EmbedLayerNormalization", "LayerNormalization", "SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization",
    "BiasGelu", "FastGelu", "Gelu", "GemmFastGelu", "BiasSplitGelu", "RotaryEmbedding", "BiasAdd",
)
ATTENTION_OP_TYPES = ("Attention", "MultiHeadAttention", "GroupQueryAttention", "PackedAttention")

# model_type → ORT optimizer model type. Unlisted encoders use "bert"; decoders with RMSNorm and
# rotary embeddings are left to onnxscript's fusions.
ORT_MODEL_TYPES = {
    **dict.fromkeys(("bert", "distilbert", "roberta", "xlm-roberta", "camembert", "electra", "albert", "mpnet",
                     "roformer", "mobilebert", "deberta-v2"), "bert"),
    **dict.fromkeys(("vit", "deit"), "vit"),
    "gpt2": "gpt2", "gpt_neox": "gpt_neox", "phi": "phi", "swin": "swin", "clip": "clip",
    **dict.fromkeys(("bart", "mbart", "marian"), "bart"),
    **dict.fromkeys(("t5", "mt5"), "t5"),
    "unet": "unet", "vae": "vae", "mmdit": "mmdit",  # diffusion pipeline graphs (diffusion_fusions.py)
}
ONNXSCRIPT_FIRST = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3"}
HEAD_KEYS = ("num_attention_heads", "n_head", "n_heads", "encoder_attention_heads", "num_heads")
HIDDEN_KEYS = ("true_hidden_size", "hidden_size", "n_embd", "dim", "d_model")


def _first(config: dict[str, Any], keys: tuple[str, ...]) -> int:
    return next((int(config[k]) for k in keys if isinstance(config.get(k), int)), 0)


def _quiet() -> None:
    # The fusers log every pattern they try at WARNING ("Failed to detect num_heads ..."); the
    # report says what was fused and warns when attention was not.
    for name in ("onnxruntime.transformers", "fusion_base", "onnx_model", "onnxscript", "onnx_ir"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _ort_fusions(model: onnx.ModelProto, model_type: str, config: dict[str, Any], device: str) -> onnx.ModelProto:
    from onnxruntime.transformers.optimizer import optimize_model

    from .diffusion_fusions import fusion_options, no_progress_bar, patch_unet_attention_fusion

    ort_type = ORT_MODEL_TYPES.get(model_type, "bert")
    options = None
    if ort_type in ("unet", "vae"):
        patch_unet_attention_fusion()
        options = fusion_options(ort_type, device)
    with no_progress_bar():
        optimized = optimize_model(
            model, model_type=ort_type, num_heads=_first(config, HEAD_KEYS), hidden_size=_first(config, HIDDEN_KEYS), opt_level=0,
            use_gpu=device == "gpu", optimization_options=options,
        )
    return optimized.model


def _onnxscript_fusions(model: onnx.ModelProto, model_type: str, config: dict[str, Any], device: str) -> onnx.ModelProto:
    import onnx_ir as ir
    from onnxscript.rewriter.ort_fusions import optimize_for_ort

    fused, _ = optimize_for_ort(ir.from_proto(model))
    return ir.to_proto(fused)


FUSERS: dict[str, Callable[[onnx.ModelProto, str, dict[str, Any], str], onnx.ModelProto]] = {
    "onnxruntime.transformers": _ort_fusions,
    "onnxscript.ort_fusions": _onnxscript_fusions,
}


def _attention_count(model: onnx.ModelProto) -> int:
    counts = graphs.op_counts(model)
    return sum(counts[op] for op in ATTENTION_OP_TYPES)


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    clone = onnx.ModelProto()
    clone.CopyFrom(model)
    return clone


def fuse(model: onnx.ModelProto, model_type: str, exporter: str, config: dict[str, Any], device: str) -> tuple[onnx.ModelProto, str, list[str]]:
    """Transformer fusions; returns the fused graph, the fuser that made it, and notes."""
    order = list(FUSERS)
    if exporter == "dynamo" or model_type in ONNXSCRIPT_FIRST:
        order.reverse()
    notes: list[str] = []
    best: tuple[onnx.ModelProto, str] | None = None
    for name in order:
        try:
            fused = FUSERS[name](_copy(model), model_type, config, device)
        except Exception as exc:  # a fuser that cannot parse the graph: try the other one
            notes.append(f"{name} failed on this graph ({first_line(exc)})")
            continue
        if best is None or _attention_count(fused) > _attention_count(best[0]):
            if best is not None:
                notes.append(f"{best[1]} fused no attention on this {exporter} graph; used {name}")
            best = (fused, name)
        if _attention_count(best[0]) > 0:
            break
    if best is None:
        raise BackendError(f"no transformer fuser could read this graph: {'; '.join(notes)}")
    return best[0], best[1], notes


def basic_optimizations(model: onnx.ModelProto) -> onnx.ModelProto:
    """ONNX Runtime's basic level (constant folding, redundant node elimination), saved offline."""
    import onnxruntime as ort

    with graphs.scratch_cwd() as scratch:
        source, target = scratch / "in.onnx", scratch / "basic.onnx"
        external = graphs.weight_bytes(model) > graphs.EXTERNAL_DATA_THRESHOLD
        graphs.save(model, source, external=external)
        options = ort.SessionOptions()
        options.log_severity_level = graphs.QUIET
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(target)
        if external:
            options.add_session_config_entry("session.optimized_model_external_initializers_file_name", "basic.onnx.data")
        ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
        return graphs.load(target)


def gelu_approximation(model: onnx.ModelProto) -> int:
    from onnxruntime.transformers.fusion_gelu_approximation import FusionGeluApproximation
    from onnxruntime.transformers.onnx_model import OnnxModel

    wrapped = OnnxModel(model)
    before = graphs.op_counts(model)["FastGelu"]
    FusionGeluApproximation(wrapped).apply()
    wrapped.prune_graph()
    return graphs.op_counts(wrapped.model)["FastGelu"] - before


def to_float16(model: onnx.ModelProto) -> onnx.ModelProto:
    from onnxruntime.transformers.onnx_model import OnnxModel

    wrapped = OnnxModel(model)
    try:
        wrapped.convert_float_to_float16(use_symbolic_shape_infer=True, keep_io_types=True)
    except Exception:  # symbolic shape inference fails on some dynamo graphs; the plain pass still converts
        wrapped = OnnxModel(model)
        wrapped.convert_float_to_float16(use_symbolic_shape_infer=False, keep_io_types=True)
    return wrapped.model


def optimize_graph(model: onnx.ModelProto, config: OptimizationConfig, model_type: str, exporter: str,
                   model_config: dict[str, Any]) -> tuple[onnx.ModelProto, dict[str, Any]]:
    notes: list[str] = []
    fuser = None
    has_attention = graphs.op_counts(model)["Softmax"] > 0
    # ORT's unet/vae attention fusion matches the exported shape arithmetic, which the basic level
    # folds away (measured: 0 of 12 attentions fused after it, 12 before): fuse first for those.
    fuse_first = config.level >= 2 and ORT_MODEL_TYPES.get(model_type) in ("unet", "vae")
    optimized = model if fuse_first else basic_optimizations(model)
    if config.level >= 2:
        optimized, fuser, fuse_notes = fuse(optimized, model_type, exporter, model_config, config.device)
        graphs.restore_optional_inputs(model, optimized)  # before later passes could fold it as a constant
        notes += fuse_notes
    if fuse_first:
        optimized = basic_optimizations(optimized)
    if config.level >= 3:
        approximated = gelu_approximation(optimized)
        notes.append(f"GELU approximation: {approximated} node(s) now FastGelu")
    if config.level >= 4:
        optimized = to_float16(optimized)
        notes.append("weights and activations in float16 (graph inputs/outputs stay float32)")
    graphs.restore_optional_inputs(model, optimized)
    attention_fused = _attention_count(optimized) > 0
    if config.level >= 2 and has_attention and not attention_fused:
        other = "torchscript" if exporter == "dynamo" else "dynamo"
        notes.append(f"WARNING: attention was NOT fused ({model_type}, {exporter} exporter; neither ORT's nor onnxscript's "
                     f"fuser recognised it): the graph keeps the unfused MatMul/Softmax chain. Try re-exporting with "
                     f"--exporter {other} and optimizing again")
    entry = {"fused": graphs.count_delta(model, optimized, FUSED_OP_TYPES), "attention_fused": attention_fused,
             "has_attention": has_attention, "fuser": fuser, "notes": notes}
    return optimized, entry


def optimize_artifact(artifact: Artifact, config: OptimizationConfig, output_dir: Path) -> dict[str, Any]:
    """Optimize every graph of ``artifact`` into ``output_dir`` (the backend's ``optimize``)."""
    _quiet()
    try:
        model_config = json.loads((artifact.path / "config.json").read_text())
    except (OSError, ValueError):
        model_config = {}
    report: dict[str, Any] = {"graphs": {}, "notes": []}
    for name, spec in artifact.metadata.graphs.items():
        model = graphs.load(artifact.path / spec.file)
        model_type, graph_config = artifact.metadata.model_type, model_config
        if "diffusion" in artifact.metadata.extra:  # each pipeline graph has its own model type and config
            from .diffusion_fusions import graph_model_type

            model_type, graph_config = graph_model_type(artifact, name)
        try:
            optimized, entry = optimize_graph(model, config, model_type, artifact.metadata.exporter, graph_config)
            share_tied_weights(optimized)  # constant folding wrote the LM head's transposed copy of the embedding back
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(f"ONNX Runtime could not optimize graph {name!r} at O{config.level}: {first_line(exc)}") from exc
        graphs.save(optimized, output_dir / spec.file, external=graphs.has_external_data(artifact, name))
        report["graphs"][name] = entry
    report["settings"] = {"level": config.level, "device": config.device,
                          "fusers": sorted({g["fuser"] for g in report["graphs"].values() if g["fuser"]})}
    return report
