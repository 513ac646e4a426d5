"""`optibridge info`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..console import console
from ..image_placeholders import EXTRA_KEY, VISION_GRAPH


def info(artifact_dir: Path = typer.Argument(..., help="An artifact folder."),
         verify: bool = typer.Option(False, "--verify", help="Also refuse graph files without a recorded SHA-256, and list changed config files."),
         no_verify: bool = typer.Option(False, "--no-verify", help="Check file sizes only, not the recorded SHA-256 (faster on huge graphs).")) -> None:
    """Show what an artifact folder holds: source, task, inputs/outputs, validation, steps.

    Graph files are always checked against the SHA-256 recorded in optibridge.json unless --no-verify.
    """
    from ..artifact import Artifact
    from ..errors import OptibridgeError

    if verify and no_verify:
        raise OptibridgeError("--verify and --no-verify contradict each other; give one")
    artifact = Artifact.load(artifact_dir, verify_hashes=not no_verify, require_hashes=verify)
    meta = artifact.metadata
    console.print(f"[bold]{artifact.path}[/]  task={meta.task}  model_type={meta.model_type}  source={meta.source.get('model')}")
    console.print(f"exporter={meta.exporter} opset={meta.opset} size={artifact.size_bytes() / 1e6:.1f} MB")
    for name, graph in meta.graphs.items():
        console.print(f"graph {name}: {graph.file} ({graph.format})", markup=False)
    rows = [("input", spec, "") for spec in meta.inputs]
    rows += [("input", spec, " (optional: the graph has a default)") for spec in meta.main_graph.optional_inputs]
    rows += [("output", spec, "") for spec in meta.outputs]
    for kind, spec, note in rows:
        console.print(f"  {kind:6} {spec.describe()}{note}", markup=False)
    if meta.validation:
        console.print(f"validation: passed={meta.validation['passed']} atol={meta.validation['atol']} on {meta.validation['backend']}")
    for backend, facts in sorted(meta.extra.items()):
        if not isinstance(facts, dict):
            continue
        if facts.get("inference_precision"):
            console.print(f"inference precision: {facts['inference_precision']} (recorded for backend {backend})", markup=False)
        if isinstance(facts.get("weights"), str) and facts["weights"] != "float32":  # float16 storage, int8/int4 compression
            console.print(f"weights: {facts['weights']} (recorded for backend {backend})", markup=False)
    image = meta.extra.get("image_size")
    if isinstance(image, dict):
        multiple = image.get("multiple_of")
        kind = f"multiples of {multiple}" if isinstance(multiple, int) and multiple > 1 else "any"
        sizes = "{} (validated at {}x{}, traced at {}x{})".format(kind, *image.get("validated", ()), *image.get("traced", ())) \
            if image.get("dynamic") else "fixed {}x{}".format(*image.get("traced", ()))
        console.print(f"image size: {sizes}; {image.get('reason', '')}", markup=False)
    text_only = meta.extra.get("text_only")
    if isinstance(text_only, dict):
        console.print(f"text only: the language model of a {text_only.get('source_model_type')} model; image inputs are not supported", markup=False)
    images = meta.extra.get(EXTRA_KEY)
    if isinstance(images, dict):  # shown as recorded (the loader checks it)
        side = f"{images.get('image_size')}x{images.get('image_size')}"
        unit = f"{side} tile (each image tiled by its size, then packed)" if images.get("packing") == "anyres" else f"{side} image"
        console.print(f"images: {images.get('per_image')} placeholder tokens (id {images.get('token_id')}) per {unit}, "
                      f"filled by the {VISION_GRAPH} graph", markup=False)
    console.print("steps: " + " → ".join(s["step"] for s in meta.steps))
    for step in meta.steps:
        settings = step.get("settings")
        if not isinstance(settings, dict):  # the manifest is untrusted: a malformed record is not shown
            continue
        name = step["step"] if isinstance(step.get("step"), str) else "step"
        _print_static_plan(console, name, settings)
        guided = settings.get("guided")
        if isinstance(guided, dict) and isinstance(guided.get("validation"), dict):
            kept = [str(node) for node in guided.get("kept_in_float", [])]
            console.print(f"{name}: {len(kept)} of {guided.get('candidates')} FFN down-projection(s) kept in float by validation "
                          f"(target min cosine {guided.get('target_min_cosine')} on {guided.get('validation_samples')} calibration samples: "
                          f"worst {guided['validation'].get('min_cosine')}, mean {guided['validation'].get('mean_cosine')}; "
                          f"all quantized: worst {(guided.get('all_quantized') or {}).get('min_cosine')})"
                          + "".join(f"\n  {name}" for name in kept), markup=False, highlight=False)
    if verify:
        console.print("[green]graph files match their recorded SHA-256[/]")
        for name in artifact.modified_files():
            console.print(f"[yellow]note:[/] {name} changed since export (config/preprocessor files may be re-saved)")


def _print_static_plan(console: Any, step: str, settings: dict[str, Any]) -> None:
    """What an int8 step planned by role (OpenVINO static, ONNX Runtime dynamic; docs/precision.md); the manifest is untrusted
    input, so only well-formed values are shown."""
    record = settings.get("outlier_split")
    split = record.get("split") if isinstance(record, dict) else None
    if isinstance(split, dict) and split:
        rows = [(str(node), found["channels"]) for node, found in split.items()
                if isinstance(found, dict) and isinstance(found.get("channels"), list)]
        channels = sum(len(c) for _, c in rows)
        console.print(f"{step}: {channels} outlier channel(s) of {len(rows)} FFN down-projection(s) computed by a float side path"
                      + "".join(f"\n  {node}: channels {c}" for node, c in rows), markup=False, highlight=False)
    if settings.get("attention") in ("float", "int8"):
        found = settings.get("attention_check")
        check: dict[str, Any] = found if isinstance(found, dict) else {}
        int8: dict[str, Any] = check["int8"] if isinstance(check.get("int8"), dict) else {}
        worst, target = int8.get("min_cosine"), check.get("target_min_cosine")
        checked = (f" (with int8 Q/K the worst calibration sample reached {worst:.5f}, target {target})"
                   if isinstance(worst, float) and isinstance(target, float) else "")
        console.print(f"{step}: attention inputs {settings['attention']}{checked}", markup=False, highlight=False)
