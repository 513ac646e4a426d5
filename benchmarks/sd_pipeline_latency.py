"""Seconds per image (and per denoising step) of a whole Stable Diffusion pipeline: diffusers'
PyTorch pipeline vs OBStableDiffusionPipeline on ORT and OpenVINO (f32, and bf16 where the CPU
has it), interleaved, medians, same prompt and seed; with each image's mean abs pixel difference
to PyTorch's.

    HF_HUB_OFFLINE=1 python benchmarks/sd_pipeline_latency.py SD_FOLDER --artifact sd-onnx --steps 10 --size 512

Per step = per image / steps: it includes the text encoder and the VAE decoder once per image.
Without SD_FOLDER a tiny random pipeline is built (the test suite's, seconds per run).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np
import torch
from diffusers import StableDiffusionPipeline

from optibridge import OBStableDiffusionPipeline, export
from optibridge.artifact import is_artifact
from optibridge.bench import measure_interleaved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", help="a diffusers StableDiffusionPipeline folder (default: a tiny random one)")
    parser.add_argument("--artifact", help="the optibridge artifact (exported when missing)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scratch = tempfile.TemporaryDirectory(prefix="sd-bench-")
    folder = Path(args.folder) if args.folder else None
    if folder is None:
        sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
        from tiny_diffusers import build_tiny_sd

        folder = build_tiny_sd(Path(scratch.name) / "tiny-sd")
    artifact = Path(args.artifact) if args.artifact else Path(scratch.name) / "artifact"
    if not is_artifact(artifact):
        export(folder, artifact)

    reference = StableDiffusionPipeline.from_pretrained(folder)
    reference.set_progress_bar_config(disable=True)
    threads = {"intra_op_num_threads": args.threads}
    pipes: dict[str, Any] = {
        "pytorch eager fp32": reference,
        "ort fp32": OBStableDiffusionPipeline.from_pretrained(artifact, backend="ort", **threads),
        "openvino f32": OBStableDiffusionPipeline.from_pretrained(artifact, backend="openvino", inference_num_threads=args.threads),
        "openvino bf16": OBStableDiffusionPipeline.from_pretrained(artifact, backend="openvino", inference_num_threads=args.threads,
                                                                   inference_precision="bf16"),
    }

    def generate(pipe: Any) -> np.ndarray:
        return pipe("a photo of an astronaut riding a horse", num_inference_steps=args.steps, guidance_scale=7.5, height=args.size,
                    width=args.size, generator=torch.Generator().manual_seed(0), output_type="np").images

    want = generate(reference)
    diffs = {name: float(np.abs(generate(pipe) - want).mean()) for name, pipe in pipes.items()}
    with torch.inference_mode():
        stats = measure_interleaved({name: (lambda p=pipe: generate(p)) for name, pipe in pipes.items()}, warmup=1, runs=args.runs, settle=1)
    base = stats["pytorch eager fp32"].median
    print(f"{folder}: {args.size}×{args.size}, {args.steps} steps, guidance 7.5, {args.threads} threads, {args.runs} interleaved runs")
    print(f"{'candidate':<22}{'s/image':>10}{'s/step':>10}{'speed-up':>10}{'mean abs pixel diff':>22}")
    for name, s in stats.items():
        print(f"{name:<22}{s.median / 1000:>10.3f}{s.median / 1000 / args.steps:>10.4f}{base / s.median:>9.2f}×{diffs[name]:>22.2e}")
    scratch.cleanup()


if __name__ == "__main__":
    main()
