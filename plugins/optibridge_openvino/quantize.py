"""``quantize`` for OpenVINO with NNCF: int8 static (``nncf.quantize``) and int8/int4 weight-only
compression (``nncf.compress_weights``), written as OpenVINO IR.

Static int8 on all-MiniLM-L6-v2 (mean-pooled embedding cosine to float32, 16 held-out sentences,
40 calibration sentences, NNCF 3.4 / OpenVINO 2026.4):

* ``nncf.quantize`` with its defaults: 0.41 — it quantizes the attention MatMuls and softmax
  inputs like any CNN layer;
* ``model_type=TRANSFORMER`` (NNCF's transformer rules, SmoothQuant alpha 0.95): 0.992, min 0.969;
* + the FFN down-projections kept in float (their GELU inputs have outlier ranges, as with ORT): 0.997;
* + SmoothQuant alpha 0.5: 0.998, min 0.992.

The default since then (``exclude_ffn_down`` unset) plans by role (:func:`_by_role`): outlier
channels of the FFN down-projections computed by a float side path (:mod:`.outliers`), those
projections quantized without SmoothQuant and the rest with it; when the graph runs in bf16/f16
the calibration samples decide whether the attention stays int8 (:func:`_attention_by_validation`),
then which FFN down-projections, if any, go back to float (:mod:`.guided`). On all-MiniLM-L6-v2 with 40 natural sentences that is 5 of 6
down-projections int8 (before: 2) with min cosine 0.988 on the 60 evaluation sentences (docs/precision.md).
``exclude_ffn_down=True`` keeps them all in float, ``False`` quantizes them all (one plain NNCF run).

Weight compression keeps activations in float: ``int8-weights`` (asymmetric, per channel) and
``int4-weights`` (groups of ``block_size``; NNCF keeps the embeddings and the LM head in int8).
``f16-weights`` needs no NNCF: the IR stores its weights as float16 (OpenVINO's own
``compress_to_fp16``) and the CPU plugin converts them inside its MatMul kernels, so the arithmetic
stays float32 while a decoder reads half the bytes per token (random GPT-2-small on an AVX2-only
EPYC through openvino-genai: 3.3-3.8x PyTorch against 2.0-2.4x with float32 weights,
docs/generation.md).
"""

from __future__ import annotations

import fnmatch
import logging
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from optibridge.artifact import Artifact
from optibridge.errors import BackendError, first_line
from optibridge.hardware import needs_seven_bit_weights
from optibridge.probing import distribution_version
from optibridge.steps import CalibrationData, QuantizationConfig

from .convert import IR_FORMAT, finish_graph, openvino_extra, read_graph, save_graph, step_precision, write_ir
from .roles import attention_nodes, ffn_down_projections
from .stateful import is_stateful

F16_WEIGHTS = "f16-weights"
MODES = ("static", "int8-weights", "int4-weights", F16_WEIGHTS)
SYMMETRIC_MODES = ("int8-weights", "int4-weights")  # the modes with a zero point to keep or drop
INSTALL = "pip install 'optibridge[openvino-quant]'"
STATIC_SMOOTH_ALPHA = 0.5
LOW_BIT_TYPES = {"i8": "int8 weights", "u8": "int8 weights", "i4": "int4 weights", "u4": "int4 weights"}


def _nncf() -> Any:
    try:
        import nncf
    except ImportError:
        raise BackendError(f"quantizing with the openvino backend needs NNCF, which is not installed: {INSTALL}") from None
    nncf.set_log_level(logging.ERROR)
    return nncf


def check_mode(config: QuantizationConfig) -> None:
    if config.mode in MODES:
        if config.mode == "int4-weights" and config.int4_algorithm != "rtn":
            raise BackendError(f"--int4-algorithm {config.int4_algorithm} is ONNX Runtime's; the openvino backend compresses int4 weights data-free (rtn)")
        return
    # The verb checks the declared modes first (and names who does this one); a direct call lands here.
    raise BackendError(f"the openvino backend quantizes in modes {', '.join(MODES)}, not {config.mode!r}")


def _ignored(nncf: Any, model: Any, config: QuantizationConfig, notes: list[str], *, ffn_down: bool) -> Any:
    names: list[str] = []
    if config.exclude_nodes:
        all_names = [op.get_friendly_name() for op in model.get_ordered_ops()]
        names = [n for n in all_names if any(n == p or fnmatch.fnmatchcase(n, p) for p in config.exclude_nodes)]
        if not names:
            raise BackendError(f"--exclude-nodes {', '.join(config.exclude_nodes)} matches no node of the graph; node names look like {', '.join(all_names[3:6])}")
        notes.append(f"{len(names)} node(s) kept in float by --exclude-nodes")
    if ffn_down:
        ffn = ffn_down_projections(model)
        names += ffn
        if ffn:
            notes.append(f"{len(ffn)} FFN down-projection MatMul(s) kept in float (their GELU/SiLU inputs have outlier ranges)")
    if config.exclude_ops:
        notes.append(f"operator type(s) {', '.join(config.exclude_ops)} kept in float by --exclude-ops")
    return nncf.IgnoredScope(names=sorted(set(names)), types=list(config.exclude_ops), validate=False)


def _static(nncf: Any, model: Any, config: QuantizationConfig, feeds: list[Mapping[str, np.ndarray]],
            precision: str | None = None) -> tuple[Any, dict[str, Any], list[str]]:
    notes: list[str] = []
    inputs = {port.get_any_name() for port in model.inputs}
    dataset = nncf.Dataset([{k: v for k, v in feed.items() if k in inputs} for feed in feeds])
    guided = config.exclude_ffn_down is None  # the default: quantize them all, put back what the samples show harmful
    ffn_down = bool(config.exclude_ffn_down)
    ignored = _ignored(nncf, model, config, notes, ffn_down=ffn_down)
    alpha = (config.smooth_alpha or STATIC_SMOOTH_ALPHA) if config.smooth is not False else -1.0  # -1 turns it off
    if config.calibration is not None and config.calibration.method != "minmax":
        notes.append(f"calibration method {config.calibration.method!r} is ONNX Runtime's; NNCF used its own range estimators")
    if config.per_channel is False:
        notes.append("--per-tensor is an ONNX Runtime setting; NNCF quantizes weights per channel")
    seven_bit = needs_seven_bit_weights(config.preset, config.reduce_range)
    if seven_bit:
        notes.append(f"7-bit weights (NNCF overflow fix on every MatMul): {_seven_bit_reason(config)}")
    settings = {"engine": "nncf.quantize", "model_type": "transformer", "subset_size": len(feeds),
                "smooth_quant_alpha": alpha if alpha > 0 else None, "ignored_nodes": len(ignored.names),
                "ignored_types": list(ignored.types), "keep_ffn_down": "by validation" if guided else ffn_down,
                "weight_bits": 7 if seven_bit else 8}
    if config.split_outliers and not guided:
        notes.append("--split-outliers belongs to the default plan; with --keep-ffn-down / --quantize-ffn-down nothing is split")
    if not guided:  # the fixed choices: one NNCF run over the graph as it is
        quantized = _nncf_quantize(nncf, model, dataset, len(feeds), list(ignored.names), list(ignored.types), alpha, seven_bit)
        return quantized, settings, notes
    from .guided import DEFAULT_MIN_COSINE, MAX_VALIDATION_SAMPLES, cosine_scorer

    split = config.split_outliers is not False
    target = config.min_cosine or DEFAULT_MIN_COSINE
    validation = feeds[:MAX_VALIDATION_SAMPLES]
    score = cosine_scorer(model, validation, precision)

    def plan(float_attention: bool, plan_notes: list[str]) -> Any:
        return _by_role(nncf, model.clone(), dataset, feeds, ignored, alpha, float_attention, seven_bit, split, settings, plan_notes)

    quantized, scored = plan(False, notes), None
    if precision in ("bf16", "f16"):
        # A second plan (float attention) splits the same channels and skips the same SmoothQuant: its notes would repeat.
        quantized, scored = _attention_by_validation(quantized, lambda: plan(True, []), score, target, precision,
                                                     settings, notes)
    else:
        settings["attention"] = "int8"  # under f32 float attention costs ~5 % and buys nothing measurable
    quantized, settings["guided"] = _guided(model, quantized, score, scored, target, len(validation), precision, seven_bit, notes,
                                            required=config.min_cosine is not None)
    return quantized, settings, notes


def _attention_by_validation(quantized: Any, float_attention: Callable[[], Any], score: Callable[[Any], np.ndarray],
                             target: float, precision: str, settings: dict[str, Any], notes: list[str]) -> tuple[Any, np.ndarray | None]:
    """int8 attention under a bf16/f16 kernel if the calibration samples stay at ``target``; else the plan
    redone with the attention's inputs in float. Returns the model and its validation cosines when known.

    Why measured: on an AMX Xeon int8 Q/K under OpenVINO's bf16 attention put all-MiniLM-L6-v2's worst
    calibration sentence at cosine 0.93 (0.998 in f32), and float attention was the faster there too; on a
    Zen 5 EPYC (AVX-512 BF16, no AMX) the same samples stay at 0.990 and int8 attention is ~4 % faster at
    batch 8 (docs/precision.md, 2026-12-03).
    """
    int8 = score(quantized)
    summary = {"min_cosine": round(float(int8.min()), 5), "mean_cosine": round(float(int8.mean()), 5)}
    settings["attention_check"] = {"int8": summary, "target_min_cosine": target}
    if int8.min() >= target:
        settings["attention"] = "int8"
        notes.append(f"attention in int8 under {precision}: the calibration samples stay at min cosine {summary['min_cosine']} "
                     f"(target {target})")
        return quantized, int8
    settings["attention"] = "float"
    notes.append(f"attention inputs kept in float under {precision}: with int8 Q/K the worst calibration sample fell to "
                 f"{summary['min_cosine']} (target {target})")
    return float_attention(), None


def _seven_bit_reason(config: QuantizationConfig) -> str:
    if config.reduce_range:
        return "asked for by --reduce-range"
    return (f"preset {config.preset} has no VNNI, its int8 products sum in 16 bits and saturate with 8-bit weights "
            "(--full-range for a VNNI target); on such CPUs OpenVINO int8 static measured no faster than f32, "
            "ONNX Runtime int8 dynamic 1.4-1.8x faster than f32 (docs/precision.md)")


def _nncf_quantize(nncf: Any, model: Any, dataset: Any, subset: int, ignored_names: list[str], ignored_types: list[str],
                   alpha: float, seven_bit: bool) -> Any:
    """One ``nncf.quantize`` run. ``seven_bit``: NNCF's overflow fix on every MatMul/Convolution weight
    (its default covers only a first convolution, none in a transformer)."""
    from nncf.quantization.advanced_parameters import (AdvancedQuantizationParameters, AdvancedSmoothQuantParameters,
                                                       OverflowFix)

    advanced = AdvancedQuantizationParameters(smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=alpha),
                                              overflow_fix=OverflowFix.ENABLE if seven_bit else OverflowFix.DISABLE)
    scope = nncf.IgnoredScope(names=sorted(set(ignored_names)), types=ignored_types, validate=False)
    return nncf.quantize(model, dataset, model_type=nncf.ModelType.TRANSFORMER, subset_size=subset,
                         ignored_scope=scope, advanced_parameters=advanced)


def _by_role(nncf: Any, work: Any, dataset: Any, feeds: list[Mapping[str, np.ndarray]], ignored: Any, alpha: float,
             float_attention: bool, seven_bit: bool, split: bool, settings: dict[str, Any], notes: list[str]) -> Any:
    """The default static plan (measured on all-MiniLM-L6-v2 and BERT-base, docs/precision.md): outlier
    channels of the FFN down-projections to a float side path (:mod:`.outliers`); the attention's own
    inputs in float if ``float_attention``; the FFN down-projections quantized without SmoothQuant, then
    the rest with it (``split`` False: nothing split, SmoothQuant on every projection). ``work`` is
    rewritten in place."""
    from .outliers import split_outlier_channels

    side, split_record = split_outlier_channels(work, feeds) if split else ([], {"split": {}, "off": "--no-split-outliers"})
    if split_record["split"]:
        channels = sum(len(s["channels"]) for s in split_record["split"].values())
        notes.append(f"{channels} outlier channel(s) of {len(split_record['split'])} FFN down-projection(s) "
                     "computed by a float side path (the int8 range then fits the other channels)")
    settings["outlier_split"] = split_record
    attention = attention_nodes(work) if float_attention else []
    keep_float = list(ignored.names) + side + attention
    plain = set(ffn_down_projections(work)) - set(keep_float)
    if alpha <= 0 or not plain or not split:
        return _nncf_quantize(nncf, work, dataset, len(feeds), keep_float, list(ignored.types), alpha, seven_bit)
    others = [op.get_friendly_name() for op in work.get_ordered_ops() if op.get_friendly_name() not in plain]
    first = _nncf_quantize(nncf, work, dataset, len(feeds), keep_float + others, list(ignored.types), -1.0, seven_bit)
    notes.append(f"{len(plain)} FFN down-projection(s) quantized without SmoothQuant (their outliers are split off; "
                 f"its scales would only move error into their weights), the rest with alpha {alpha}")
    settings["smooth_quant_skipped"] = len(plain)
    return _nncf_quantize(nncf, first, dataset, len(feeds), keep_float + sorted(plain), list(ignored.types), alpha, seven_bit)


def _guided(model: Any, quantized: Any, score: Callable[[Any], np.ndarray], scored: np.ndarray | None, target: float,
            samples: int, precision: str | None, seven_bit: bool, notes: list[str], required: bool = True) -> tuple[Any, dict[str, Any]]:
    """``required``: the user set the target (--min-cosine): out of reach it is an error; the default target is
    a goal, and out of reach the most accurate plan tried is kept, with a note saying so."""
    from .guided import keep_sensitive_in_float

    hint = (" (the weights are 7-bit here, against int8 saturation on a CPU without VNNI: on all-MiniLM-L6-v2 that "
            "alone puts the worst sample near 0.98, docs/precision.md)") if seven_bit else ""
    quantized, record = keep_sensitive_in_float(quantized, ffn_down_projections(model), score, target, hint, scored, required)
    record["validation_samples"] = samples
    record["inference_precision"] = precision or "f32"
    kept = record["kept_in_float"]
    if not record["target_reached"]:
        notes.append(f"WARNING: the default target min cosine {target} is out of reach here{hint}: with all {len(kept)} FFN "
                     f"down-projection(s) in float the worst of {samples} calibration sample(s) is at "
                     f"{record['validation']['min_cosine']} (mean {record['validation']['mean_cosine']}); that model was "
                     "written. --mode dynamic keeps more accuracy; --min-cosine makes a target a requirement")
        logging.getLogger("optibridge").warning(notes[-1].removeprefix("WARNING: "))  # Python callers (OVQuantizer) see it too
        return quantized, record
    notes.append(f"{len(kept)} of {record['candidates']} FFN down-projection MatMul(s) kept in float to reach min cosine "
                 f"{target} on {samples} calibration sample(s): worst {record['validation']['min_cosine']}, "
                 f"mean {record['validation']['mean_cosine']} (all quantized: {record['all_quantized']['min_cosine']})")
    return quantized, record


def _weights(nncf: Any, model: Any, config: QuantizationConfig) -> tuple[Any, dict[str, Any], list[str]]:
    notes: list[str] = []
    if config.int4_compute is not None:
        notes.append(f"int4 compute {config.int4_compute!r} is ONNX Runtime's setting; the OpenVINO CPU plugin picks its own arithmetic at run time")
    ignored = _ignored(nncf, model, config, notes, ffn_down=bool(config.exclude_ffn_down))
    if config.mode == "int8-weights":
        # asymmetric by default (NNCF's, optimum-intel's); symmetric skips the zero point per weight:
        # GPT-2-small decoded 3-18% faster on an AVX2 EPYC, no faster on a VNNI Xeon, and it is
        # slightly less accurate (docs/generation.md)
        mode = nncf.CompressWeightsMode.INT8_SYM if config.weights_symmetric(False) else nncf.CompressWeightsMode.INT8_ASYM
        extra: dict[str, Any] = {}
        settings: dict[str, Any] = {"bits": 8, "mode": mode.value, "granularity": "per channel"}
    else:
        mode = nncf.CompressWeightsMode.INT4_SYM if config.weights_symmetric(True) else nncf.CompressWeightsMode.INT4_ASYM
        extra = {"group_size": config.block_size, "ratio": 1.0}
        settings = {"bits": 4, "mode": mode.value, "group_size": config.block_size, "ratio": 1.0,
                    "backup": "int8_asym (embeddings, LM head)"}
    compressed = nncf.compress_weights(model, mode=mode, ignored_scope=ignored, **extra)
    settings.update(engine="nncf.compress_weights", ignored_nodes=len(ignored.names))
    return compressed, settings, notes


def low_bit_counts(model: Any) -> dict[str, int]:
    """FakeQuantize nodes (static int8) and low-bit weight constants (weight compression)."""
    counts: dict[str, int] = {}
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        key = kind if kind == "FakeQuantize" else (LOW_BIT_TYPES.get(op.get_output_element_type(0).get_type_name()) if kind == "Constant" else None)
        if key:
            counts[key] = counts.get(key, 0) + 1
    return counts


def quantize_artifact(artifact: Artifact, config: QuantizationConfig, output_dir: Path,
                      calibration: CalibrationData | None = None) -> dict[str, Any]:
    check_mode(config)
    if config.mode == F16_WEIGHTS:
        return _f16_weights(artifact, config, output_dir)
    nncf = _nncf()
    report: dict[str, Any] = {"graphs": {}, "specs": {}, "notes": config.ignored_symmetric(SYMMETRIC_MODES)}
    precision = step_precision(config, report["notes"])
    settings: dict[str, Any] = {}
    stateful = []
    pipeline = "diffusion" in artifact.metadata.extra  # static: the graphs with recorded samples, the VAE stays float
    per_graph: dict[str, dict[str, Any]] = {}  # a pipeline's graphs are quantized in different ways
    for name, spec in artifact.metadata.graphs.items():
        model = read_graph(artifact, name)
        before = low_bit_counts(model)
        feeds = calibration.feeds(name) if calibration is not None and config.mode == "static" else []
        if config.mode == "static" and pipeline and not feeds:
            report["specs"][name] = save_graph(model, output_dir, spec)
            report["graphs"][name] = {"quantized": {}, "format": "openvino-ir", "notes": ["kept in float: no calibration samples for this graph"]}
            continue
        try:
            if config.mode == "static":
                if not feeds:
                    raise BackendError(f"static quantization needs calibration samples for graph {name!r}")
                if is_stateful(model):
                    raise BackendError(f"graph {name!r} is a stateful IR; quantize the ONNX artifact it was optimized from (it is made stateful after quantization)")
                if pipeline:
                    from .pipeline_quantize import quantize_pipeline_graph

                    def static(nncf: Any, model: Any, config: QuantizationConfig, feeds: list[Mapping[str, np.ndarray]]) -> tuple[Any, dict[str, Any], list[str]]:
                        return _static(nncf, model, config, feeds, precision)

                    model, settings, notes = quantize_pipeline_graph(nncf, model, name, config, feeds, static)
                    per_graph[name] = settings
                else:
                    model, settings, notes = _static(nncf, model, config, feeds, precision)
            else:
                model, settings, notes = _weights(nncf, model, config)
        except (BackendError, KeyboardInterrupt):
            raise
        except Exception as exc:  # NNCF raises its own and plain errors on graphs it cannot handle
            raise BackendError(f"NNCF could not quantize graph {name!r} ({config.mode}): {first_line(exc)}") from exc
        after = low_bit_counts(model)
        quantized = {k: v - before.get(k, 0) for k, v in after.items() if v > before.get(k, 0)}
        if not quantized:
            raise BackendError(f"{config.mode} quantization changed nothing in graph {name!r}: no MatMul/Gemm left to quantize after the exclusions")
        if finish_graph(artifact, name, model, notes):
            stateful.append(name)
        report["specs"][name] = save_graph(model, output_dir, spec)
        report["graphs"][name] = {"quantized": quantized, "format": "openvino-ir", "notes": notes}
    report["metadata_extra"] = openvino_extra(artifact, stateful, config.mode if config.mode != "static" else "int8 (static)", precision)
    if per_graph:
        settings = {"graphs": per_graph}
    report["settings"] = {**settings, "inference_precision": precision or "f32", "stateful": bool(stateful), "nncf": distribution_version("nncf"),
                          "openvino": distribution_version("openvino")}
    return report


def _f16_weights(artifact: Artifact, config: QuantizationConfig, output_dir: Path) -> dict[str, Any]:
    """Every graph written as IR with float16 weights (decoders stateful), computed in float32 unless
    the step records another inference precision."""
    import openvino as ov

    report: dict[str, Any] = {"graphs": {}, "specs": {}, "notes": config.ignored_symmetric(SYMMETRIC_MODES)}
    precision = step_precision(config, report["notes"])
    if precision == "bf16":
        report["notes"].append("bf16 with float16 weights rounds every weight twice (f32 -> f16 -> bf16); "
                               "bf16 alone keeps greedy tokens closer to float32")
    stateful = write_ir(artifact, output_dir, report, compress_to_fp16=True)
    core = ov.Core()
    for name, spec in report["specs"].items():
        stored = sum(1 for op in core.read_model(str(output_dir / spec.file)).get_ordered_ops()
                     if op.get_type_name() == "Constant" and op.get_output_element_type(0).get_type_name() == "f16")
        if not stored:
            raise BackendError(f"f16-weights changed nothing in graph {name!r}: it has no float32 weights to store as float16")
        report["graphs"][name] = {"quantized": {"f16 weights": stored}, "format": IR_FORMAT, "notes": report["graphs"][name]["notes"]}
    report["metadata_extra"] = openvino_extra(artifact, stateful, "float16", precision)
    report["settings"] = {"weights": "float16", "compress_to_fp16": True, "inference_precision": precision or "f32",
                          "stateful": bool(stateful), "openvino": distribution_version("openvino")}
    return report
