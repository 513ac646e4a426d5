"""Per-step UNet latency of a Stable Diffusion 1.5-shaped UNet: PyTorch eager vs ONNX Runtime vs
OpenVINO f32, bf16, int8 weights and int8 static (NNCF), interleaved, medians.

The UNet has SD 1.5's real shapes (``--config sd15``: 4 blocks of 320/640/1280/1280 channels,
cross-attention 768, ~860M parameters, 3.4 GB fp32) with random weights: latency does not depend
on the weight values. One step is one UNet call at batch 2 (classifier-free guidance), latents
64×64 (a 512×512 image), 77 text tokens. ``--config tiny`` is the 2-block test UNet (seconds).

The UNet is exported with optibridge's pipeline exporter wrapper (weights in an external .data
file past 2 GB). Exporting the full UNet takes minutes and ~3× its size in memory; run it with
``nice`` on a shared machine. To stay within ~10 GB, only PyTorch and ONE runtime are loaded at a
time: each runtime is timed interleaved with PyTorch (its own round-robin), then freed, so every
ratio comes from one run on one machine state. ``--latent 32`` runs 256×256 images instead.

The export can be made once and timed later: ``--onnx PATH`` reuses the export at PATH (written
there first when it is missing, with ``PATH.json`` recording the config and a fingerprint of the
weights so a reuse is checked against the UNet rebuilt from the same seed); ``--export-only``
stops after writing it.

    HF_HUB_OFFLINE=1 nice -n 19 python benchmarks/sd_unet_latency.py --config sd15 --export-only --onnx /work/sd15/unet.onnx
    HF_HUB_OFFLINE=1 python benchmarks/sd_unet_latency.py --config sd15 --onnx /work/sd15/unet.onnx --runs 5 --json sd15.json
"""

from __future__ import annotations

import argparse
import gc
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


CALIBRATION_FEEDS = 4
"""int8 static candidates: calibration feeds (each one UNet call at the timed shape)."""


def build_unet(name: str) -> tuple[torch.nn.Module, int, int]:
    from diffusers import UNet2DConditionModel

    config = dict(CONFIGS[name])
    latent, tokens = config.pop("latent"), config.pop("tokens")
    torch.manual_seed(0)
    return UNet2DConditionModel(**config).eval(), latent, tokens


def rss_gb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024**2
    return 0.0


def calibration_feeds(feed: dict[str, np.ndarray], count: int = CALIBRATION_FEEDS) -> list[dict[str, np.ndarray]]:
    """Feeds for int8 static ranges: fresh latents and text states at timesteps across the schedule
    (random weights: the ranges only need to be plausible for the latency to be real)."""
    rng = np.random.default_rng(1)
    return [{"sample": rng.standard_normal(feed["sample"].shape, dtype=np.float32),
             "timestep": np.full(feed["timestep"].shape, 999.0 * (count - i) / count, dtype=np.float32),
             "encoder_hidden_states": rng.standard_normal(feed["encoder_hidden_states"].shape, dtype=np.float32)} for i in range(count)]


def runtimes(path: Path, threads: int, bf16: bool, feed: dict[str, np.ndarray]) -> dict[str, Callable[[], Callable[[dict[str, np.ndarray]], np.ndarray]]]:
    """name → a loader returning one call; each loads only when asked (one runtime in memory at a time)."""

    def ort_fp32() -> Callable[[dict[str, np.ndarray]], np.ndarray]:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return lambda feed: session.run(None, feed)[0]

    def openvino(precision: str, int8_weights: bool = False, int8_static: bool = False) -> Callable[[], Callable[[dict[str, np.ndarray]], np.ndarray]]:
        def load() -> Callable[[dict[str, np.ndarray]], np.ndarray]:
            import openvino as ov

            core = ov.Core()
            model = core.read_model(str(path))
            if int8_weights:
                import nncf

                model = nncf.compress_weights(model)  # int8 weights (asymmetric, per channel); activations stay float
            if int8_static:  # what `optibridge quantize --backend openvino --mode static` does to a pipeline's UNet
                from optibridge_openvino.pipeline_quantize import quantize_unet

                model = quantize_unet(model, calibration_feeds(feed))
            compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY",
                                                         "INFERENCE_NUM_THREADS": str(threads)})
            del model
            request = compiled.create_infer_request()
            return lambda feed: next(iter(request.infer(feed).values()))
        return load

    found: dict[str, Callable[[], Callable[[dict[str, np.ndarray]], np.ndarray]]] = {
        "ort fp32": ort_fp32, "openvino f32": openvino("f32"), "openvino int8-weights f32": openvino("f32", True),
        "openvino int8-static f32": openvino("f32", int8_static=True),
    }
    if bf16:  # OpenVINO computes bf16 only where the CPU has AVX-512 BF16 / AMX
        found.update({"openvino bf16": openvino("bf16"), "openvino int8-weights bf16": openvino("bf16", True),
                      "openvino int8-static bf16": openvino("bf16", int8_static=True)})
    return found


def weight_fingerprint(unet: torch.nn.Module) -> float:
    """Sum of |w| over every parameter: the same seed and torch build rebuild the same weights."""
    with torch.no_grad():
        return float(sum(float(p.detach().double().abs().sum()) for p in unet.parameters()))


def export_record(config: str, unet: torch.nn.Module, params: int) -> dict[str, Any]:
    return {"config": config, "parameters": params, "weight_fingerprint": weight_fingerprint(unet), "torch": torch.__version__}


def check_saved_export(path: Path, expected: dict[str, Any]) -> None:
    """Refuse a saved export that is incomplete or was made from another UNet (its max abs diff would be meaningless)."""
    sidecar = path.with_name(path.name + ".json")
    if not sidecar.is_file():
        raise SystemExit(f"{path} exists but {sidecar.name} does not: the export there did not finish (or was not made by this "
                         f"script); delete {path} (and {path.name}.data) and run again to re-export")
    saved = json.loads(sidecar.read_text())
    if saved.get("config") != expected["config"] or saved.get("parameters") != expected["parameters"]:
        raise SystemExit(f"{path} holds the {saved.get('config')!r} UNet ({saved.get('parameters')} parameters), not "
                         f"{expected['config']!r}; pass another --onnx path for this config")
    fingerprint = float(saved.get("weight_fingerprint", 0.0))
    if abs(fingerprint - expected["weight_fingerprint"]) > 1e-9 * max(1.0, abs(fingerprint)):
        raise SystemExit(f"{path} was exported from other weights than the UNet rebuilt here (torch {saved.get('torch')} there, "
                         f"{torch.__version__} here?): its max abs diff to PyTorch would mean nothing; re-export it")
    data = path.with_name(path.name + ".data")
    if expected["parameters"] * 4 > EXTERNAL_DATA_THRESHOLD and not data.is_file():
        raise SystemExit(f"{path} needs its weights file {data.name} beside it; it is missing: re-export")


def export_unet(step: torch.nn.Module, inputs: dict[str, torch.Tensor], path: Path, params: int) -> float:
    started = time.perf_counter()
    latent_axes = {0: "batch", 2: "latent_height", 3: "latent_width"}
    export_module(step, tuple(inputs.values()), list(inputs), ["out_sample"],
                  {"sample": latent_axes, "timestep": {0: "batch"}, "encoder_hidden_states": {0: "batch", 1: "sequence"}},
                  {"out_sample": latent_axes}, path, exporter="torchscript", opset=None,
                  external_data=params * 4 > EXTERNAL_DATA_THRESHOLD)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="sd15")
    parser.add_argument("--latent", type=int, help="latent height and width (default: the config's; 64 = 512×512 images)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--settle", type=int, default=0, help="untimed calls before each timed one (a step takes seconds: 0 is fine)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--only", help="comma-separated runtimes to measure (default: all)")
    parser.add_argument("--json", type=Path, help="write the results here (rewritten after each runtime)")
    parser.add_argument("--onnx", type=Path, help="the UNet's ONNX export: reused when it exists (checked against PATH.json), "
                        "else written there (default: a temporary folder, removed at the end)")
    parser.add_argument("--export-only", action="store_true", help="write the export (--onnx) and stop: no timing")
    args = parser.parse_args()
    if args.export_only and args.onnx is None:
        parser.error("--export-only needs --onnx PATH (where to keep the export)")
    torch.set_num_threads(args.threads)
    from optibridge.hardware import detect_cpu

    cpu = detect_cpu()
    bf16 = cpu.bf16

    unet, latent, tokens = build_unet(args.config)
    latent = args.latent or latent
    params = sum(p.numel() for p in unet.parameters())
    gen = torch.Generator().manual_seed(0)
    inputs = {"sample": torch.randn(2, 4, latent, latent, generator=gen), "timestep": torch.tensor([500.0, 500.0]),
              "encoder_hidden_states": torch.randn(2, tokens, int(unet.config.cross_attention_dim), generator=gen)}
    feed = {k: v.numpy() for k, v in inputs.items()}
    step = UNetStep(unet)
    record: dict[str, Any] = {"config": args.config, "parameters": params, "latent": latent, "threads": args.threads,
                              "cpu": cpu.model or platform.processor(), "python": sys.version.split()[0], "results": {}}
    print(f"UNet {args.config}: {params / 1e6:.0f}M parameters, batch 2 (CFG), latents {latent}×{latent}, {tokens} tokens; "
          f"{args.threads} threads; {record['cpu']}; RSS {rss_gb():.1f} GB", flush=True)
    saved = export_record(args.config, unet, params) if args.onnx is not None else None

    with tempfile.TemporaryDirectory(prefix="sd-unet-") as scratch:
        path = args.onnx.expanduser().resolve() if args.onnx is not None else Path(scratch) / "unet.onnx"
        if args.onnx is not None and path.exists():
            assert saved is not None
            check_saved_export(path, saved)
            record["export"] = f"reused {path}"
            print(f"reusing the export at {path}", flush=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            record["export_s"] = export_unet(step, inputs, path, params)
            if saved is not None:  # written last: its presence says the export finished
                path.with_name(path.name + ".json").write_text(json.dumps({**saved, "export_s": record["export_s"]}, indent=2))
            gc.collect()
            print(f"exported to {path} in {record['export_s']:.0f} s; RSS {rss_gb():.1f} GB", flush=True)
        if args.export_only:
            return
        time_runtimes(args, path, step, inputs, feed, record, bf16)


def time_runtimes(args: argparse.Namespace, path: Path, step: torch.nn.Module, inputs: dict[str, torch.Tensor],
                  feed: dict[str, np.ndarray], record: dict[str, Any], bf16: bool) -> None:
    with torch.inference_mode():
        reference = step(*inputs.values()).numpy()

    def torch_call() -> object:
        with torch.inference_mode():
            return step(*inputs.values())

    wanted = set(args.only.split(",")) if args.only else None
    print(f"{'candidate':<28}{'median s/step':>14}{'PyTorch s/step':>16}{'speed-up':>10}{'max abs diff':>14}{'RSS GB':>8}", flush=True)
    for name, load in runtimes(path, args.threads, bf16, feed).items():
        if wanted is not None and name not in wanted:
            continue
        started = time.perf_counter()
        run = load()
        load_s = time.perf_counter() - started
        diff = float(np.abs(run(feed) - reference).max())
        stats = measure_interleaved({"pytorch": torch_call, name: lambda run=run: run(feed)}, warmup=args.warmup, runs=args.runs,
                                    settle=args.settle)
        mine, base = stats[name], stats["pytorch"]
        rss = rss_gb()
        record["results"][name] = {"median_s": mine.median / 1000, "pytorch_median_s": base.median / 1000,
                                   "speedup": mine.ratio_to(base), "max_abs_diff": diff, "load_s": load_s, "runs": mine.runs,
                                   "noisy": mine.looks_noisy() or base.looks_noisy(), "rss_gb": rss}
        print(f"{name:<28}{mine.median / 1000:>14.3f}{base.median / 1000:>16.3f}{mine.ratio_to(base):>9.2f}×{diff:>14.2e}{rss:>8.1f}",
              flush=True)
        del run, stats
        gc.collect()
        if args.json:
            args.json.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
