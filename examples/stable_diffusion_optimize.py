"""Optimize, quantize and benchmark a Stable Diffusion pipeline artifact, each judged on its images.

    python examples/stable_diffusion_optimize.py sd-onnx --steps 20 --size 512

``sd-onnx`` is an artifact written by ``optibridge export --model SD_FOLDER sd-onnx``. The script
writes ``sd-onnx-O2`` (ONNX Runtime's UNet attention fusions), ``sd-onnx-int8-static-ort`` and
``sd-onnx-int8-static-openvino`` (int8 calibrated on what the float pipeline feeds its text encoder
and UNet, by ONNX Runtime's quantizer and by NNCF; each refused when the images fall below the PSNR
gate), then measures PyTorch vs each configuration with ``optibridge bench``. The same from the shell:

    optibridge optimize sd-onnx -O 2 --backend ort sd-onnx-O2
    optibridge quantize sd-onnx --mode static --backend ort sd-onnx-int8-static-ort
    optibridge quantize sd-onnx --mode static --backend openvino sd-onnx-int8-static-openvino
    optibridge bench --model sd-onnx --configs ort:fp32,ort:O2,ort:int8-static,openvino:fp32,openvino:int8-static,openvino:bf16 --steps 20
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from optibridge import OptimizationConfig, QuantizationConfig, optimize, quantize
from optibridge.cli import main as cli
from optibridge.errors import AccuracyBudgetError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", help="a pipeline artifact (optibridge export --model SD_FOLDER OUT)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, help="image height and width (default: the pipeline's own)")
    args = parser.parse_args()

    fused = optimize(args.artifact, OptimizationConfig(level=2), f"{args.artifact}-O2", backend="ort", overwrite=True)
    print("O2 unet:", fused.report["graphs"]["unet"]["fused"], "| images:", fused.step["image_accuracy"])
    for backend in ("ort", "openvino"):
        try:
            static = quantize(args.artifact, QuantizationConfig(mode="static"), f"{args.artifact}-int8-static-{backend}",
                              backend=backend, overwrite=True)
            print(f"{backend} int8 static:", static.step["calibration"]["description"], "| images:", static.step["image_accuracy"])
        except AccuracyBudgetError as exc:  # the images moved too far from the float pipeline's: nothing written
            print(f"{backend} int8 static refused:", exc)
    configs = "ort:fp32,ort:O2,ort:int8-static,openvino:fp32,openvino:int8-static,openvino:bf16"
    bench = ["bench", "--model", args.artifact, "--configs", configs,
             "--steps", str(args.steps), "--no-progress"]
    raise SystemExit(cli(bench + (["--image-size", str(args.size)] if args.size else [])))


if __name__ == "__main__":
    main()
