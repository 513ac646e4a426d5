"""Generation throughput: PyTorch eager vs optibridge on ONNX Runtime and OpenVINO, KV cache on all.

A GPT-2-small-sized model (n_embd 768, 12 layers, 12 heads, random weights: speed does not depend
on the values) generates 64 new tokens after a 32-token prompt, greedy, at batch 1 and 4.
min_new_tokens pins the length so every runtime does exactly the same work. Candidates: ``ort``
(the exported graph, cache handed back each step), ``ov`` (the same ONNX graph on OpenVINO),
``ov-stateful`` (``optimize --backend openvino``: an IR that keeps the cache inside the compiled
model) and ``ov-int8w`` (``quantize --backend openvino --mode int8-weights``, stateful too). Runs
alternate between the candidates (interleaved, with one untimed settle run before each timed one,
see optibridge.bench.timing) and medians are reported, with tokens/s = batch × 64 / median seconds.
Each candidate takes four prompts of the same shape in turn, every token different from the call
before's: openvino-genai skips the prefill of the prompt it has just seen, which one prompt timed
over and over would reward (``--same-prompt`` does that, to show by how much).

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
from typing import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch
from rich.console import Console
from rich.table import Table
from transformers import GPT2Config, GPT2LMHeadModel

import optibridge
from optibridge.bench import measure_interleaved
from optibridge.bench.measure import in_turn

console = Console(width=None if sys.stdout.isatty() else 120)


CANDIDATES = ("ort", "ort-genai", "ov", "ov-stateful", "ov-stateful-genai", "ov-bf16", "ov-bf16-genai",
              "ov-bf16-f16w-genai", "ov-int8w", "ov-int8w-genai", "ov-int4w-genai")
DEFAULT_CANDIDATES = "ort,ort-genai,ov-stateful,ov-stateful-genai,ov-bf16,ov-bf16-genai,ov-int8w,ov-int8w-genai,ov-int4w-genai"


def candidate_artifact(name: str, onnx_artifact: Path, tmp: Path) -> Path:
    """The artifact a candidate loads; the OpenVINO IR ones are written next to the ONNX artifact once."""
    from optibridge import OptimizationConfig, QuantizationConfig

    base = name.removesuffix("-genai")
    if base in ("ort", "ov"):
        return onnx_artifact
    out = tmp / base
    if out.exists():
        return out
    if base == "ov-stateful":
        return optibridge.optimize(onnx_artifact, OptimizationConfig(level=1), out, backend="openvino").artifact.path
    if base in ("ov-bf16", "ov-bf16-f16w"):
        # as `optimize --inference-precision bf16` writes it (bf16 recorded); -f16w: also `-O 4 --force`,
        # weights stored as float16 (half the memory a load peaks at; rounded twice, f32 → f16 → bf16)
        half = base.endswith("f16w")
        config = OptimizationConfig(level=4 if half else 1, force=half, inference_precision="bf16")
        return optibridge.optimize(onnx_artifact, config, out, backend="openvino").artifact.path
    mode = {"ov-int8w": "int8-weights", "ov-int4w": "int4-weights"}[base]
    return optibridge.quantize(onnx_artifact, QuantizationConfig(mode=mode), out, backend="openvino").artifact.path


def load_options(name: str, threads: int) -> dict[str, object]:
    """from_pretrained arguments: ``-genai`` candidates use the native loop (openvino-genai /
    onnxruntime-genai), the others transformers' generate loop; ``ov-bf16`` computes in bf16."""
    engine = "auto" if name.endswith("-genai") else "transformers"
    if name.startswith("ort"):
        return {"intra_op_num_threads": threads, "generation_engine": engine}
    options: dict[str, object] = {"backend": "openvino", "inference_num_threads": threads, "performance_hint": "LATENCY",
                                  "generation_engine": engine}
    if name.startswith("ov-bf16"):
        options["inference_precision"] = "bf16"
    return options


# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork+exec, so a child of
# this (large) process would report the parent's peak.
MEMORY_PROBE = """
import sys, torch, optibridge, json, transformers, openvino, onnxruntime  # imports before the baseline, as for a peer
def peak_mb():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
path, options = sys.argv[1], json.loads(sys.argv[2])
before = peak_mb()
model = optibridge.OBModelForCausalLM.from_pretrained(path, **options)
model.generate(input_ids=torch.arange(100, 132)[None], max_new_tokens=4, min_new_tokens=4, pad_token_id=0)
print(json.dumps({"mb": peak_mb() - before, "engine": model.last_generation_engine}))
"""


def peak_rss_rise_mb(path: Path, options: dict[str, object]) -> float:
    """Peak RSS added by loading the candidate and generating 4 tokens, in a fresh process (after the
    runtime imports, so the figure is the model's, comparable with a peer's loaded the same way)."""
    import subprocess

    done = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(path), json.dumps(options)], capture_output=True, text=True, check=True)
    return float(json.loads(done.stdout.strip().splitlines()[-1])["mb"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="1")
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--candidates", default=DEFAULT_CANDIDATES, help=f"comma-separated, from: {', '.join(CANDIDATES)}")
    parser.add_argument("--memory", action="store_true", help="also measure each candidate's peak RSS rise (subprocess)")
    parser.add_argument("--same-prompt", action="store_true",
                        help="time one prompt over and over (flatters openvino-genai, which then skips the prefill)")
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
        paths = {name: candidate_artifact(name, artifact.path, Path(tmp)) for name in wanted}
        models = {name: optibridge.OBModelForCausalLM.from_pretrained(paths[name], **load_options(name, args.threads)) for name in wanted}
        memory = {name: peak_rss_rise_mb(paths[name], load_options(name, args.threads)) for name in wanted} if args.memory else {}
        console.print("precision: " + ", ".join(f"{n} {m.inference_precision}" for n, m in models.items()))
        if memory:
            console.print("peak RSS rise of loading + 4 tokens (MB): " + ", ".join(f"{n} {v:.0f}" for n, v in memory.items()))
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

            prompts = [inputs] if args.same_prompt else [{**inputs, "input_ids": ids + k} for k in range(4)]

            def each_in_turn(model: object) -> Callable[[], object]:
                next_prompt = in_turn(prompts)

                def run() -> object:
                    with torch.inference_mode():
                        return model.generate(**next_prompt(), **settings)  # type: ignore[attr-defined]
                return run

            runners = {"pytorch": each_in_turn(reference)}
            runners.update({name: each_in_turn(model) for name, model in models.items()})
            stats = measure_interleaved(runners, warmup=1, runs=args.runs, settle=1)
            tokens = batch * args.new_tokens
            tps = {name: tokens / (s.median / 1000) for name, s in stats.items()}
            speedup = {name: stats[name].ratio_to(stats["pytorch"]) for name in models}
            engines = {name: model.last_generation_engine for name, model in models.items()}
            results[batch] = {"engines": engines, "memory_mb": memory, "load_average": os.getloadavg(), "tokens_per_s": tps, "speedup": speedup, "same_tokens": same,
                              "median_ms": {k: v.median for k, v in stats.items()}}
            mismatched = [name for name, ok in same.items() if not ok]
            table.add_row(str(batch), f"{tps['pytorch']:.1f}", *(f"{tps[n]:.1f} ([bold]{speedup[n]:.2f}x[/])" for n in models),
                          "NO: " + ", ".join(mismatched) if mismatched else "all")
        console.print(table)
        console.print(f"load average after: {os.getloadavg()}")
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
