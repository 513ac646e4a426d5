"""Shared by the generation benchmarks: each candidate's tokens against PyTorch's, then every
``generate()`` timed interleaved (medians) and printed as a ratio to PyTorch's."""

from __future__ import annotations

from typing import Any, Callable

import torch

from optibridge.bench import measure_interleaved


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
