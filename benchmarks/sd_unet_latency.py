"""Per-step UNet latency of a Stable Diffusion 1.5-shaped UNet: PyTorch eager vs ONNX Runtime vs
OpenVINO fp32 and bf16, interleaved, medians.

The UNet has SD 1.5's real shapes (``--config sd15``: 4 blocks of 320/640/1280/1280 channels,
cross-attention 768, ~860M parameters, 3.4 GB fp32) with random weights: latency does not depend
on the weight values. One step is one UNet call at batch 2 (classifier-free guidance), latents
64×64 (a 512×512 image), 77 text tokens. ``--config tiny`` is the 2-block test UNet (seconds).

The UNet is exported with optibridge's pipeline exporter wrapper (weights in an external .data
file past 2 GB). Exporting the full UNet takes minutes and ~3× its size in memory; run it with
``nice`` on a shared machine.

    HF_HUB_OFFLINE=1 nice python benchmarks/sd_unet_latency.py --config sd15 --runs 5 --json sd15.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

from optibridge.bench import measure_interleaved
from optibridge.diffusion.export import UNetStep
from optibridge.exporter.torch_to_onnx import EXTERNAL_DATA_THRESHOLD, export_module

CONFIGS: dict[str, dict[str, Any]] = {
    "sd15": dict(block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
                 layers_per_block=2, sample_size=64, latent=64, tokens=77),
    "tiny": dict(block_out_channels=(32, 64), cross_attention_dim=32, attention_head_dim=8, layers_per_block=2,
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                 sample_size=16, latent=32, tokens=16),
}


def build_unet(name: str) -> tuple[torch.nn.Module, int, int]:
    from diffusers import UNet2DConditionModel

    config = dict(CONFIGS[name])
    latent, tokens = config.pop("latent"), config.pop("tokens")
    torch.manual_seed(0)
    return UNet2DConditionModel(**config).eval(), latent, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="sd15")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    unet, latent, tokens = build_unet(args.config)
    params = sum(p.numel() for p in unet.parameters())
    gen = torch.Generator().manual_seed(0)
    inputs = {"sample": torch.randn(2, 4, latent, latent, generator=gen), "timestep": torch.tensor([500.0, 500.0]),
              "encoder_hidden_states": torch.randn(2, tokens, int(unet.config.cross_attention_dim), generator=gen)}
    feed = {k: v.numpy() for k, v in inputs.items()}
    step = UNetStep(unet)

    with tempfile.TemporaryDirectory(prefix="sd-unet-") as scratch:
        path = Path(scratch) / "unet.onnx"
        started = time.perf_counter()
        latent_axes = {0: "batch", 2: "latent_height", 3: "latent_width"}
        export_module(step, tuple(inputs.values()), list(inputs), ["out_sample"],
                      {"sample": latent_axes, "timestep": {0: "batch"}, "encoder_hidden_states": {0: "batch", 1: "sequence"}},
                      {"out_sample": latent_axes}, path, exporter="torchscript", opset=None,
                      external_data=params * 4 > EXTERNAL_DATA_THRESHOLD)
        export_s = time.perf_counter() - started

        import onnxruntime as ort
        import openvino as ov

        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        ort_session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        core = ov.Core()
        compiled = {precision: core.compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": precision,
                                                                     "PERFORMANCE_HINT": "LATENCY",
                                                                     "INFERENCE_NUM_THREADS": str(args.threads)})
                    for precision in ("f32", "bf16")}
        requests = {p: c.create_infer_request() for p, c in compiled.items()}

        with torch.inference_mode():
            reference = step(*inputs.values()).numpy()
        candidates: dict[str, Callable[[], Any]] = {
            "pytorch eager fp32": lambda: step(*inputs.values()),
            "ort fp32": lambda: ort_session.run(None, feed),
            "openvino f32": lambda: requests["f32"].infer(feed),
            "openvino bf16": lambda: requests["bf16"].infer(feed),
        }
        diffs = {
            "ort fp32": float(np.abs(ort_session.run(None, feed)[0] - reference).max()),
            "openvino f32": float(np.abs(next(iter(requests["f32"].infer(feed).values())) - reference).max()),
            "openvino bf16": float(np.abs(next(iter(requests["bf16"].infer(feed).values())) - reference).max()),
        }
        with torch.inference_mode():
            stats = measure_interleaved(candidates, warmup=1, runs=args.runs, settle=1)

    base = stats["pytorch eager fp32"].median
    print(f"UNet {args.config}: {params / 1e6:.0f}M parameters, batch 2 (CFG), latents {latent}×{latent}, {tokens} tokens; "
          f"export {export_s:.0f} s; {args.threads} threads; {platform.processor() or platform.machine()}")
    print(f"{'candidate':<22}{'median s/step':>14}{'speed-up':>10}{'max abs diff':>14}")
    for name, s in stats.items():
        print(f"{name:<22}{s.median / 1000:>14.3f}{base / s.median:>9.2f}×{diffs.get(name, 0.0):>14.2e}")
    if args.json:
        args.json.write_text(json.dumps({"config": args.config, "parameters": params, "export_s": export_s,
                                         "threads": args.threads, "python": sys.version.split()[0],
                                         "results": {k: {"median_s": v.median / 1000, "runs": v.runs,
                                                         "max_abs_diff": diffs.get(k)} for k, v in stats.items()}}, indent=2))


if __name__ == "__main__":
    main()
