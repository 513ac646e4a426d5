"""Shared by the generation benchmarks: their command line, the optibridge candidates, each candidate's
tokens against PyTorch's, then every ``generate()`` timed interleaved (medians) and printed as a ratio
to PyTorch's."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Callable

import torch

from optibridge.bench import measure_interleaved


def generation_arguments(description: str, model_class: str, prompt_tokens: int, prompt_help: str | None = None) -> argparse.Namespace:
    """The benchmarks' options: a ``model_class`` folder (default: a random one), its artifact, token counts,
    runs and threads; sets torch's thread count."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("folder", nargs="?", help=f"a {model_class} folder (default: a random one, see above)")
    parser.add_argument("--artifact", help="the optibridge artifact (exported when missing)")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--prompt-tokens", type=int, default=prompt_tokens, help=prompt_help)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    return args


def candidates(model_class: Any, artifact: Path, threads: int) -> dict[str, Any]:
    """ONNX Runtime, OpenVINO stateful, and OpenVINO stateful with int8 weights (NNCF, at load: faster, not bit-exact)."""
    return {
        "ort": model_class.from_pretrained(artifact, backend="ort", intra_op_num_threads=threads),
        "openvino": model_class.from_pretrained(artifact, backend="openvino", stateful=True, inference_num_threads=threads),
        "openvino-int8w": model_class.from_pretrained(artifact, backend="openvino", stateful=True, load_in_8bit=True,
                                                      inference_num_threads=threads),
    }


def compare_and_time(reference: Callable[[], torch.Tensor], models: dict[str, Any], kwargs: dict[str, Any], prompt_length: int,
                     runs: int, heading: str) -> None:
    """``reference()`` is PyTorch's ``generate(**kwargs)``; each model's ``generate(**kwargs)`` is checked
    against it (share of new tokens equal), then all are timed round-robin and printed under ``heading``."""
    with torch.no_grad():
        want = reference()
    calls: dict[str, Callable[[], Any]] = {"pytorch": reference}
    for name, model in models.items():
        got = model.generate(**kwargs)
        same = float((got[:, prompt_length:] == want[:, prompt_length:]).float().mean())
        engine = getattr(model, "last_generation_engine", None)
        print(f"{name}: new tokens equal to PyTorch's: {same:.0%}" + (f" (engine: {engine})" if engine else ""))
        calls[name] = lambda model=model: model.generate(**kwargs)
    with torch.no_grad():
        timed = measure_interleaved(calls, warmup=1, runs=runs)
    base = timed["pytorch"].median
    print(heading)
    for name, stats in timed.items():
        print(f"  {name:15s} {stats.median / 1000:7.2f} s per generate()  {base / stats.median:5.2f}x PyTorch  "
              f"(range {stats.min / 1000:.2f}-{max(stats.samples) / 1000:.2f} s)")
