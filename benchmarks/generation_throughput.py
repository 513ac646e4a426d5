"""Generation throughput: PyTorch eager vs optibridge on ONNX Runtime, KV cache on both.

A GPT-2-small-sized model (n_embd 768, 12 layers, 12 heads, random weights: speed does not depend
on the values) generates 64 new tokens after a 32-token prompt, greedy, at batch 1 and 4.
min_new_tokens pins the length so both runtimes do exactly the same work. Runs alternate between
the runtimes (interleaved, with one untimed settle run before each timed one, see
optibridge.bench.timing) and medians are reported, with tokens/s = batch × 64 / median seconds.

    HF_HUB_OFFLINE=1 python benchmarks/generation_throughput.py [--runs 5] [--batch-sizes 1,4] [--json out.json]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="1,4")
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import onnxruntime  # noqa: F401  (only for the version line)

    console.print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, {args.threads} threads per runtime")
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        config = GPT2Config(n_embd=768, n_layer=12, n_head=12, vocab_size=50257, n_positions=1024)
        reference = GPT2LMHeadModel(config).eval()
        reference.generation_config.pad_token_id = config.eos_token_id
        reference.save_pretrained(Path(tmp) / "gpt2-small")
        started = time.perf_counter()
        model = optibridge.OBModelForCausalLM.from_pretrained(Path(tmp) / "gpt2-small", export=True, intra_op_num_threads=args.threads)
        console.print(f"exported + validated in {time.perf_counter() - started:.0f} s "
                      f"(max |diff| {model.artifact.metadata.validation['outputs'][-1]['max_abs_diff']:.1e})")
        model.generation_config.pad_token_id = config.eos_token_id

        table = Table(title=f"greedy generation, {args.prompt}-token prompt, {args.new_tokens} new tokens, median of {args.runs}")
        for column in ("batch", "PyTorch tok/s", "optibridge tok/s", "speed-up", "same tokens"):
            table.add_column(column, justify="right")
        results = {}
        for batch in [int(b) for b in args.batch_sizes.split(",")]:
            ids = torch.randint(100, 50000, (batch, args.prompt), generator=torch.Generator().manual_seed(batch))
            inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
            settings = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False)
            with torch.inference_mode():
                same = torch.equal(model.generate(**inputs, **settings), reference.generate(**inputs, **settings))

            def run_torch() -> None:
                with torch.inference_mode():
                    reference.generate(**inputs, **settings)

            stats = measure_interleaved({"pytorch": run_torch, "optibridge": lambda: model.generate(**inputs, **settings)},
                                        warmup=1, runs=args.runs, settle=1)
            tokens = batch * args.new_tokens
            tps = {name: tokens / (s.median / 1000) for name, s in stats.items()}
            results[batch] = {"tokens_per_s": tps, "speedup": stats["optibridge"].ratio_to(stats["pytorch"]), "same_tokens": same,
                              "median_ms": {k: v.median for k, v in stats.items()}}
            table.add_row(str(batch), f"{tps['pytorch']:.1f}", f"{tps['optibridge']:.1f}",
                          f"[bold]{results[batch]['speedup']:.2f}x[/]", "yes" if same else "NO")
        console.print(table)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
