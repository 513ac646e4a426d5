"""Generation throughput: PyTorch eager vs optibridge on ONNX Runtime and OpenVINO, KV cache on all.

A GPT-2-small-sized model (n_embd 768, 12 layers, 12 heads, random weights: speed does not depend
on the values) generates 64 new tokens after a 32-token prompt, greedy, at batch 1 and 4.
min_new_tokens pins the length so every runtime does exactly the same work. Candidates: ``ort``
(the exported graph, cache handed back each step), ``ov`` (the same ONNX graph on OpenVINO),
``ov-stateful`` (``optimize --backend openvino``: an IR that keeps the cache inside the compiled
model) and ``ov-int8w`` (``quantize --backend openvino --mode int8-weights``, stateful too). Runs
alternate between the candidates (interleaved, with one untimed settle run before each timed one,
see optibridge.bench.timing) and medians are reported, with tokens/s = batch × 64 / median seconds.

    HF_HUB_OFFLINE=1 python benchmarks/generation_throughput.py [--runs 5] [--batch-sizes 1,4]
        [--candidates ort,ov,ov-stateful,ov-int8w] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch
from rich.console import Console
from rich.table import Table
from transformers import GPT2Config, GPT2LMHeadModel

import optibridge
from optibridge.bench import measure_interleaved

console = Console(width=None if sys.stdout.isatty() else 120)


CANDIDATES = ("ort", "ov", "ov-stateful", "ov-int8w")


def load_candidate(name: str, onnx_artifact: Path, tmp: Path, threads: int) -> optibridge.OBModelForCausalLM:
    """One candidate model; the OpenVINO IR ones are written next to the ONNX artifact first."""
    from optibridge import OptimizationConfig, QuantizationConfig

    if name == "ort":
        return optibridge.OBModelForCausalLM.from_pretrained(onnx_artifact, intra_op_num_threads=threads)
    path = onnx_artifact
    if name == "ov-stateful":
        path = optibridge.optimize(onnx_artifact, OptimizationConfig(level=1), tmp / name, backend="openvino").artifact.path
    elif name == "ov-int8w":
        path = optibridge.quantize(onnx_artifact, QuantizationConfig(mode="int8-weights"), tmp / name, backend="openvino").artifact.path
    return optibridge.OBModelForCausalLM.from_pretrained(path, backend="openvino", inference_num_threads=threads,
                                                          performance_hint="LATENCY")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="1,4")
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--candidates", default="ort,ov,ov-stateful,ov-int8w",
                        help="comma-separated: ort, ov, ov-stateful, ov-int8w (default: all)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    wanted = [c.strip() for c in args.candidates.split(",") if c.strip()]
    unknown = sorted(set(wanted) - set(CANDIDATES))
    if unknown:
        parser.error(f"unknown candidate(s) {', '.join(unknown)}; valid: {', '.join(CANDIDATES)}")
    torch.set_num_threads(args.threads)
    import onnxruntime  # noqa: F401  (only for the version line)
    import openvino  # noqa: F401

    console.print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, openvino {openvino.__version__}, "
                  f"{args.threads} threads per runtime")
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        config = GPT2Config(n_embd=768, n_layer=12, n_head=12, vocab_size=50257, n_positions=1024)
        reference = GPT2LMHeadModel(config).eval()
        reference.generation_config.pad_token_id = config.eos_token_id
        reference.save_pretrained(Path(tmp) / "gpt2-small")
        started = time.perf_counter()
        artifact = optibridge.export(Path(tmp) / "gpt2-small", Path(tmp) / "onnx").artifact
        console.print(f"exported + validated in {time.perf_counter() - started:.0f} s "
                      f"(max |diff| {artifact.metadata.validation['outputs'][-1]['max_abs_diff']:.1e})")
        models = {name: load_candidate(name, artifact.path, Path(tmp), args.threads) for name in wanted}
        for model in models.values():
            model.generation_config.pad_token_id = config.eos_token_id

        table = Table(title=f"greedy generation, {args.prompt}-token prompt, {args.new_tokens} new tokens, median of {args.runs}")
        table.add_column("batch", justify="right")
        table.add_column("PyTorch tok/s", justify="right")
        for name in models:
            table.add_column(f"{name} tok/s (speed-up)", justify="right")
        table.add_column("same tokens", justify="right")
        results = {}
        for batch in [int(b) for b in args.batch_sizes.split(",")]:
            ids = torch.randint(100, 50000, (batch, args.prompt), generator=torch.Generator().manual_seed(batch))
            inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
            settings = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False)
            with torch.inference_mode():
                expected = reference.generate(**inputs, **settings)
                same = {name: torch.equal(model.generate(**inputs, **settings), expected) for name, model in models.items()}

            def run_torch() -> None:
                with torch.inference_mode():
                    reference.generate(**inputs, **settings)

            runners = {"pytorch": run_torch}
            runners.update({name: (lambda m=model: m.generate(**inputs, **settings)) for name, model in models.items()})
            stats = measure_interleaved(runners, warmup=1, runs=args.runs, settle=1)
            tokens = batch * args.new_tokens
            tps = {name: tokens / (s.median / 1000) for name, s in stats.items()}
            speedup = {name: stats[name].ratio_to(stats["pytorch"]) for name in models}
            results[batch] = {"tokens_per_s": tps, "speedup": speedup, "same_tokens": same,
                              "median_ms": {k: v.median for k, v in stats.items()}}
            mismatched = [name for name, ok in same.items() if not ok]
            table.add_row(str(batch), f"{tps['pytorch']:.1f}", *(f"{tps[n]:.1f} ([bold]{speedup[n]:.2f}x[/])" for n in models),
                          "NO: " + ", ".join(mismatched) if mismatched else "all")
        console.print(table)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
