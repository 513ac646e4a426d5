"""`optibridge optimize`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..console import console
from ._steps import print_accuracy, print_operator_counts, print_written


def optimize(
    artifact_dir: Path = typer.Argument(..., help="Artifact folder to optimize (written by `optibridge export`)."),
    output_dir: Path = typer.Argument(..., help="Artifact folder to write (created; replaced only if it is an artifact)."),
    level: int = typer.Option(2, "-O", "--level", help="1 basic | 2 + transformer fusions | 3 + GELU approximation | 4 + fp16 (GPU)."),
    device: str = typer.Option("cpu", "--device", help="Target device the graph is optimized for: cpu | gpu."),
    force: bool = typer.Option(False, "--force", help="Allow -O 4 (fp16) for a CPU target."),
    accuracy_budget: Optional[str] = typer.Option(
        None, "--accuracy-budget",
        help="Fail (writing nothing) when accuracy vs the input is worse, e.g. 'cosine>=0.999' or 'max-abs-diff<=1e-4'.",
    ),
    backend: str = typer.Option(
        "auto", "--backend", help="Backend that optimizes (default auto: the first usable one that can); installed: {backends}.",
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an existing output artifact even when it holds files it does not own (they are deleted).",
    ),
    inference_precision: Optional[str] = typer.Option(
        None, "--inference-precision",
        help="Compile the graphs in f32 | bf16 | f16 when loaded, on a backend that declares that precision (recorded in the artifact; needs a CPU with those instructions).",
    ),
) -> None:
    """Optimize an artifact's graphs: operator fusions, checked against the input graphs.

    Examples:

        optibridge optimize ./minilm-onnx -O 2 ./minilm-o2

        optibridge optimize ./bert-onnx -O 3 --accuracy-budget 'max-abs-diff<=1e-3' ./bert-o3

        optibridge optimize ./bert-onnx -O 4 --device gpu ./bert-fp16

        optibridge optimize ./bert-onnx --backend openvino --inference-precision bf16 ./bert-ov-bf16

    Levels: O1 the runtime's basic graph optimizations; O2 adds the transformer fusions
    (attention, skip/LayerNorm, bias-GELU, RMSNorm for Llama-style models); O3 adds the GELU
    approximation; O4 converts to float16 for GPU targets (refused for a CPU target unless
    --force). The command prints how many operators of each kind were fused, warns when
    attention was not, and compares the result with the input on fresh inputs (max abs diff,
    cosine, top-1); optibridge.json records the step, its settings and that accuracy.
    """
    from ..accuracy import AccuracyBudget
    from ..artifact import Artifact
    from ..steps import OptimizationConfig
    from ..steps import optimize as run_optimize

    config = OptimizationConfig(level=level, device=device, force=force, inference_precision=inference_precision)
    budget = AccuracyBudget.parse(accuracy_budget) if accuracy_budget else None
    with console.status("starting") as status:
        result = run_optimize(artifact_dir, config, output_dir, backend=backend, accuracy_budget=budget,
                              on_step=lambda message: status.update(message), overwrite=overwrite)
    console.print(f"O{level} for {device} with backend {result.step['backend']} "
                  f"(fusers: {', '.join(result.step['settings'].get('fusers', [])) or 'none'})")
    print_operator_counts(result, "fused", "fused operators (new nodes per type)")
    print_accuracy(result)
    print_written(result.artifact, Artifact.load(artifact_dir))
