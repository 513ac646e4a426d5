"""The verbs ``optimize()`` and ``quantize()``: artifact in, checked artifact out.

Both follow one path: load and check the input artifact, let the backend write new graph files
into a staging folder, compare every graph with the float32 reference on fresh inputs, hold the
result to the accuracy budget, and record the step (config, resolved settings, fused/quantized
operator counts, measured accuracy) in ``optibridge.json``. A failure at any point (Ctrl-C
included) leaves nothing written and an existing output artifact intact.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..accuracy import AccuracyBudget, AccuracyReport, compare
from ..artifact import METADATA_FILE, SCRATCH, Artifact, check_output_dir, staged_directory, write_metadata
from ..backend import Backend, StepReport
from ..capabilities import ModeSpec
from ..configs import CalibrationData, OptimizationConfig, QuantizationConfig
from ..errors import AccuracyBudgetError, ArtifactError, ConfigError
from ..hardware import check_precision, detect_cpu
from .calibration import load_calibration
from .samples import is_text_graph, load_tokenizer, validation_batch

StepCallback = Callable[[str], None]

QUANTIZED_OPS = frozenset({
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "QLinearMatMul",
    "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "QAttention", "QGemm", "QLinearConv", "ConvInteger",
    "MatMulNBits", "GatherBlockQuantized", "QEmbedLayerNormalization", "DynamicQuantizeLSTM",
})


@dataclass
class StepResult:
    """What an optimize/quantize call did: the written artifact, the backend's report, the accuracy per graph."""

    artifact: Artifact
    step: dict[str, Any]
    report: StepReport
    accuracy: dict[str, AccuracyReport]
    notes: list[str] = field(default_factory=list)


def quantized_ops(artifact: Artifact) -> dict[str, int]:
    """Quantized operators already in the artifact's graphs (empty for a float model)."""
    import onnx

    found: dict[str, int] = {}
    for graph in artifact.metadata.graphs.values():
        if graph.format != "onnx":  # other formats (OpenVINO IR): the recorded quantize steps tell
            continue
        model = onnx.load(str(artifact.path / graph.file), load_external_data=False)
        for node in model.graph.node:
            if node.op_type in QUANTIZED_OPS:
                found[node.op_type] = found.get(node.op_type, 0) + 1
    return found


def _check_not_quantized(artifact: Artifact, doing: str) -> None:
    earlier = [s for s in artifact.metadata.steps if s.get("step") == "quantize"]
    ops = quantized_ops(artifact)
    if earlier or ops:
        what = f"a {earlier[-1]['config']['mode']} quantize step" if earlier else "quantized operators"
        found = f" ({', '.join(f'{k} ×{v}' for k, v in sorted(ops.items()))})" if ops else ""
        raise ArtifactError(
            f"{artifact.path} is already quantized: optibridge.json records {what}{found}. {doing} the float "
            "artifact it came from instead (quantizing twice compounds the error, and graph fusions must run before quantization)"
        )


def copy_side_files(artifact: Artifact, staging: Path) -> None:
    """Config, tokenizer and processor files travel with the graphs; the graphs are rewritten."""
    skip = set(artifact.graph_files()) | {METADATA_FILE}
    for item in artifact.path.iterdir():
        if item.name in skip:
            continue
        if item.is_dir():
            shutil.copytree(item, staging / item.name)
        else:
            shutil.copy2(item, staging / item.name)


def _new_metadata(artifact: Artifact, staging: Path, report: StepReport) -> Any:
    """The input's metadata with every graph's inputs/outputs re-read from the files just written.

    A backend that writes another format than ONNX returns the new :class:`GraphSpec` of those
    graphs in ``report["specs"]``, and facts a loader needs in ``report["metadata_extra"]``.
    """
    import onnx

    from ..exporter.torch_to_onnx import graph_spec

    metadata = copy.deepcopy(artifact.metadata)
    metadata.extra.update(report.get("metadata_extra", {}))
    specs = report.get("specs", {})
    for name, spec in metadata.graphs.items():
        if name in specs:
            metadata.graphs[name] = specs[name]
            continue
        model = onnx.load(str(staging / spec.file), load_external_data=False)
        metadata.graphs[name] = graph_spec(spec.file, model)
    return metadata


def check_accuracy(backend: Backend, reference: Artifact, candidate: Artifact, avoid_lengths: set[int] | None = None) -> dict[str, AccuracyReport]:
    """Run every graph of both artifacts on the same fresh inputs and compare their outputs."""
    reports = {}
    for name in reference.metadata.graphs:
        batch = validation_batch(reference, name, avoid_lengths or ())
        ref_session = backend.load(reference, graph=name)
        new_session = backend.load(candidate, graph=name)
        ref_out = ref_session.run({k: v for k, v in batch.feed.items() if k in ref_session.input_names})
        new_out = new_session.run({k: v for k, v in batch.feed.items() if k in new_session.input_names})
        reports[name] = compare(ref_out, new_out, mask=batch.mask, input_shapes=batch.shapes, inputs=batch.description)
    return reports


def _enforce(budget: AccuracyBudget | None, accuracy: dict[str, AccuracyReport], what: str) -> None:
    if budget is None:
        return
    missed = [f"{graph}: {v}" if len(accuracy) > 1 else v for graph, report in accuracy.items() for v in budget.violations(report)]
    if missed:
        raise AccuracyBudgetError(
            f"{what} misses the accuracy budget {budget.describe()} ({'; '.join(missed)}); nothing was written. "
            "Try per-channel weights, excluding the sensitive operators (--exclude-ops/--exclude-nodes), "
            "more or better calibration data, or another mode"
        )


def _backend(name: str, feature: str, mode: str | None = None) -> Backend:
    from ..backends import get_registry

    # No device check: optimizing and quantizing run wherever the backend's runtime does (the
    # hpu backend's FP8 measurement runs on its Gaudi, not on "cpu").
    return get_registry().get(name, feature=feature, mode=mode) if name == "auto" else get_registry().require_available(name, None)


def _mode_spec(config: QuantizationConfig, backend: str) -> tuple[ModeSpec, str]:
    """The declared spec of ``config.mode`` and the mode the backend itself runs (``then`` for a pre-export mode).

    Checked before any file is read: an unknown mode lists the registered ones, a mode of another
    backend names who does it.
    """
    from ..backends import get_registry

    registry = get_registry()
    spec = registry.mode(config.mode)
    backend_mode = spec.then or spec.name
    if backend != "auto":
        registry.mode(backend_mode, registry.get(backend))
    return spec, backend_mode


def _start(
    verb: str, artifact_dir: str | os.PathLike[str], output_dir: str | os.PathLike[str] | None, backend: str,
    accuracy_budget: AccuracyBudget | str | float | None, on_step: StepCallback | None, mode: str | None = None,
    overwrite: bool = False,
) -> tuple[Artifact, Backend, AccuracyBudget | None, StepCallback, Path]:
    """The checks both verbs make before any work: output path, budget, input artifact, backend."""
    if output_dir is None:
        raise ConfigError(f"{verb.lower()} needs an output folder (output_dir)")
    budget = accuracy_budget if accuracy_budget is None or isinstance(accuracy_budget, AccuracyBudget) else AccuracyBudget.parse(str(accuracy_budget))
    # Verified first, every graph hashed: a corrupted input must not come out with fresh, matching hashes.
    artifact = Artifact.load(artifact_dir, verify_hashes=True, require_hashes=True)
    if budget is not None and budget.judges_images and "diffusion" not in artifact.metadata.extra:
        raise ConfigError(f"the accuracy budget's psnr term judges a diffusion pipeline's images; {artifact.path} holds a "
                          f"{artifact.metadata.task!r} model: use cosine, top1 or max-abs-diff")
    check_output_dir(output_dir, overwrite=overwrite, inputs=(artifact.path,))
    _check_not_quantized(artifact, verb)
    impl = _backend(backend, verb.lower(), mode)
    unreadable = sorted(artifact.graph_formats - set(impl.graph_formats))
    if unreadable:
        raise ArtifactError(
            f"{artifact.path} holds {', '.join(unreadable)} graphs, which backend {impl.name!r} cannot read "
            f"(it reads {', '.join(impl.graph_formats)}); {verb.lower()} the ONNX artifact it was made from"
        )
    return artifact, impl, budget, on_step or (lambda message: None), Path(output_dir)


def _finish(
    backend: Backend, artifact: Artifact, staging: Path, step: dict[str, Any], report: StepReport,
    budget: AccuracyBudget | None, avoid_lengths: set[int], what: str, on_step: StepCallback,
) -> tuple[dict[str, AccuracyReport], dict[str, Any]]:
    """Metadata, accuracy against ``artifact``, budget, step record: the common tail of both verbs."""
    metadata = _new_metadata(artifact, staging, report)
    write_metadata(staging, metadata)
    on_step(f"checking accuracy against the float32 graphs of {artifact.path.name}")
    accuracy = check_accuracy(backend, artifact, Artifact(staging, metadata), avoid_lengths)
    _enforce(budget, accuracy, what)
    if "diffusion" in artifact.metadata.extra:  # a pipeline is judged on its images: same prompts and seeds
        from ..diffusion.accuracy import compare_images

        on_step("generating images with both pipelines to compare them")
        step["image_accuracy"] = compare_images(artifact.path, staging, backend=backend.name).to_dict()
        missed = budget.image_violations(step["image_accuracy"]["psnr_db"]) if budget is not None else []
        if missed and budget is not None:
            raise AccuracyBudgetError(f"{what} misses the accuracy budget {budget.describe()} ({'; '.join(missed)}, against the float "
                                      "pipeline, same prompts and seeds); nothing was written. Try another mode or backend")
    step.update(
        report={k: v for k, v in report.items() if k not in ("settings", "specs", "metadata_extra")},
        settings=report.get("settings", {}),
        accuracy={name: r.to_dict() for name, r in accuracy.items()},
        accuracy_budget=budget.to_dict() if budget else None,
        versions={backend.name: backend.status().version or "unknown"},
    )
    metadata.steps.append(step)
    write_metadata(staging, metadata)
    return accuracy, step


def _check_precision_support(backend: Backend, config: OptimizationConfig | QuantizationConfig) -> None:
    """A lower inference precision is a backend feature (``optibridge backends``): refuse it before any work."""
    precision = config.inference_precision
    if precision in (None, "f32"):
        return
    check_precision(precision)  # names the CPU flags it needs when this CPU lacks them
    features = backend.status().features
    if precision not in features:
        raise ConfigError(
            f"backend {backend.name!r} cannot run graphs in {precision} (it offers: {', '.join(features)}); "
            f"use a backend that lists {precision} in `optibridge backends`, or leave inference_precision unset"
        )


def optimize(
    artifact_dir: str | os.PathLike[str],
    config: OptimizationConfig | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    *,
    backend: str = "auto",
    accuracy_budget: AccuracyBudget | str | float | None = None,
    on_step: StepCallback | None = None,
    overwrite: bool = False,
) -> StepResult:
    """Optimize every graph of an artifact (fusions per ``config.level``) into ``output_dir``.

    The result is compared with the input on fresh inputs (max abs diff, cosine, top-1 per
    output) and recorded in ``optibridge.json``; with ``accuracy_budget`` (e.g. ``"cosine>=0.99"``)
    a worse result raises :class:`~optibridge.steps.errors.AccuracyBudgetError` and writes nothing.
    """
    config = config or OptimizationConfig()
    artifact, impl, budget, step_cb, out = _start("Optimize", artifact_dir, output_dir, backend, accuracy_budget, on_step,
                                                  overwrite=overwrite)
    _check_precision_support(impl, config)
    with staged_directory(out, overwrite=overwrite) as staging:
        copy_side_files(artifact, staging)
        step_cb(f"optimizing {len(artifact.metadata.graphs)} graph(s) at O{config.level} with {impl.name}")
        report = impl.optimize(artifact, config, staging)
        step = {"step": "optimize", "backend": impl.name, "config": config.to_dict()}
        accuracy, step = _finish(impl, artifact, staging, step, report, budget, set(), f"O{config.level}", step_cb)
        step_cb("writing the artifact")
    return StepResult(Artifact.load(out), step, report, accuracy, list(report.get("notes", [])))


def resolve_preset(config: QuantizationConfig) -> tuple[QuantizationConfig, str]:
    """Replace ``preset="auto"`` by this CPU's preset; returns the config and a line saying what was chosen."""
    if config.preset != "auto":
        return config, f"preset {config.preset} (given)"
    cpu = detect_cpu()
    preset = cpu.preset()
    line = f"preset {preset} (detected on {cpu.model or cpu.machine}: {', '.join(cpu.features()) or 'no int8 features'})"
    return dataclasses.replace(config, preset=preset), line


# Optional uses of samples (QuantizationConfig fields), as notes and errors name them.
SAMPLE_USES = {"smooth": "smoothing", "split_outliers": "the outlier split"}


def _calibration_for(
    artifact: Artifact, config: QuantizationConfig, spec: ModeSpec, notes: list[str],
) -> tuple[QuantizationConfig, CalibrationData | None]:
    """Load the samples the mode needs, and settle whether smoothing runs. Smoothing and the outlier
    split both need samples. Smoothing runs unless turned off; the split, left unset, is the mode's
    choice (ONNX Runtime's dynamic int8 follows smoothing), so it loads samples only when asked for.
    Without samples both are off."""
    needs = spec.needs_calibration
    optional = {name: getattr(config, name) for name in SAMPLE_USES} if spec.uses_samples else {}
    wanted = [name for name, value in optional.items() if value or (name == "smooth" and value is None)]
    if not needs and not wanted:
        return config, None
    if "diffusion" in artifact.metadata.extra:  # a pipeline calibrates on what its float pipeline feeds its graphs
        if not needs:
            return dataclasses.replace(config, smooth=False, split_outliers=False), None
        from ..diffusion.calibration import pipeline_calibration

        return config, pipeline_calibration(artifact, config.with_calibration())
    if config.calibration is None and not needs:
        # Statistics from the built-in sentences only make sense for a text model whose tokenizer
        # is in the folder; otherwise smoothing and the split are off unless data is given.
        main = artifact.metadata.main_graph
        if not (is_text_graph(main) and load_tokenizer(artifact.path) is not None):
            asked = [SAMPLE_USES[name] for name in wanted if optional[name] is True]
            if asked:
                raise ConfigError(f"{' and '.join(asked)} need{'s' if len(asked) == 1 else ''} samples: "
                                  "pass a calibration file (--calibration) for this model")
            notes.append(f"{' and '.join(SAMPLE_USES[name] for name in wanted)} off: no calibration data given and "
                         "the artifact has no tokenizer for the built-in sentences")
            return dataclasses.replace(config, smooth=False, split_outliers=False), None
    calibration = load_calibration(artifact, config.with_calibration())
    if "smooth" in wanted and config.smooth is None:  # the split stays unset: where it runs is the mode's choice
        config = dataclasses.replace(config, smooth=True)
    return config, calibration


def quantize(
    artifact_dir: str | os.PathLike[str],
    config: QuantizationConfig | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    *,
    backend: str = "auto",
    accuracy_budget: AccuracyBudget | str | float | None = None,
    on_step: StepCallback | None = None,
    overwrite: bool = False,
) -> StepResult:
    """Quantize every graph of an artifact into ``output_dir`` (see :class:`QuantizationConfig`).

    Checks first (nothing is written on any error): the artifact is not quantized already, the
    preset is known, the calibration data exists, is not empty and matches the model's inputs.
    The result is compared with the float32 input on inputs of another shape than calibration's,
    recorded in ``optibridge.json``, and held to ``accuracy_budget``.
    """
    config = config or QuantizationConfig()
    spec, backend_mode = _mode_spec(config, backend)
    artifact, impl, budget, step_cb, out = _start("Quantize", artifact_dir, output_dir, backend, accuracy_budget, on_step, backend_mode,
                                                  overwrite=overwrite)
    backend_spec = impl.mode(backend_mode) or spec
    _check_precision_support(impl, config)
    notes: list[str] = []
    if backend_spec.cpu_preset:  # int8 settings depend on the CPU; weight-only modes do not
        config, preset_line = resolve_preset(config)
        if impl.uses_cpu_presets:
            notes.append(preset_line)
    step_cb("reading calibration data")
    config, calibration = _calibration_for(artifact, config, spec if spec.prepare else backend_spec, notes)
    with staged_directory(out, overwrite=overwrite) as staging:
        source = artifact
        scratch = staging / SCRATCH  # temporary work stays inside the staging folder (removed with it)
        if spec.prepare is not None:
            step_cb(f"{config.mode}: quantizing the PyTorch model, then exporting it")
            scratch.mkdir()
            source, prepare_notes = spec.prepare(artifact, config, calibration, scratch)
            notes.extend(prepare_notes)
        copy_side_files(artifact, staging)
        step_cb(f"quantizing {len(artifact.metadata.graphs)} graph(s): {config.mode} with {impl.name}")
        backend_config = dataclasses.replace(config, mode=backend_mode)
        report = impl.quantize(source, backend_config, staging, calibration=None if spec.prepare else calibration)
        report["notes"] = notes + list(report.get("notes", []))
        step = {"step": "quantize", "backend": impl.name, "config": config.to_dict(),
                "calibration": calibration.to_dict() if calibration else None}
        avoid = calibration.lengths if calibration else set()
        accuracy, step = _finish(impl, artifact, staging, step, report, budget, avoid, f"{config.mode} quantization", step_cb)
        images = step.get("image_accuracy")
        if calibration is not None and isinstance(images, dict):  # calibrated int8 of a pipeline: kept only if its images hold
            from ..diffusion.calibration import image_gate

            image_gate(images, config.mode)
        step_cb("writing the artifact")
    return StepResult(Artifact.load(out), step, report, accuracy, list(report["notes"]))
