"""`optibridge train`: fine-tune a text classifier with QAT / pruning / distillation into an artifact."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape

from ..console import console

TRAIN_TASKS = ("text-classification",)


def train(
    output_dir: Path = typer.Argument(..., help="Artifact folder to write (created; replaced only if it is an artifact)."),
    model: str = typer.Option(..., "--model", "-m", help="Local transformers model folder (a fresh classification head is added when it has none)."),
    task: str = typer.Option("text-classification", "--task", "-t", help="Task to train: text-classification."),
    data: Path = typer.Option(..., "--data", help="Training data: JSONL, one {'text': ..., 'label': ...} per line."),
    eval_data: Optional[Path] = typer.Option(None, "--eval", help="Evaluation data (same format): accuracy after each epoch."),
    qat: bool = typer.Option(False, "--qat", help="Quantization-aware training (NNCF) after the float epochs: an int8 QDQ artifact."),
    qat_epochs: float = typer.Option(1.0, "--qat-epochs", help="Epochs of the QAT phase."),
    prune: Optional[float] = typer.Option(None, "--prune", help="Remove this share (0-1) of attention heads and FFN channels."),
    prune_target: str = typer.Option("heads+ffn", "--prune-target", help="heads+ffn | heads | ffn."),
    teacher: Optional[str] = typer.Option(None, "--teacher", help="Teacher model folder of the same task and vocabulary (distillation)."),
    alpha: float = typer.Option(0.5, "--alpha", help="Distillation: weight of the teacher's term."),
    temperature: float = typer.Option(2.0, "--temperature", help="Distillation temperature."),
    epochs: float = typer.Option(3.0, "--epochs", help="Float fine-tuning epochs."),
    batch_size: int = typer.Option(16, "--batch-size", help="Training batch size."),
    learning_rate: float = typer.Option(5e-5, "--lr", help="Learning rate of the float phase."),
    max_length: int = typer.Option(128, "--max-length", help="Truncate inputs to this many tokens."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
) -> None:
    """Fine-tune a classifier (optionally pruned, distilled, quantization-aware) into an optibridge artifact.

    Examples:

        optibridge train --model ./minilm --data train.jsonl --eval dev.jsonl --qat OUT

        optibridge train --model ./bert --data train.jsonl --prune 0.5 --teacher ./bert-large-ft OUT
    """
    from ..artifact import check_output_dir
    from ..training import DistillationConfig, PruningConfig, QATConfig, TrainingConfigError
    from ..training.data import read_jsonl

    # Everything that can be checked is checked before a model is loaded or a step trained.
    if task not in TRAIN_TASKS:
        raise TrainingConfigError(f"optibridge train supports --task {', '.join(TRAIN_TASKS)}, not {task!r}; "
                                  "for other tasks use optibridge.training.OBTrainer in Python")
    check_output_dir(output_dir)
    train_rows = read_jsonl(data)
    eval_rows = read_jsonl(eval_data) if eval_data is not None else None
    configs: dict[str, Any] = {
        "quantization_config": QATConfig(epochs=qat_epochs) if qat else None,
        "pruning_config": PruningConfig(target_sparsity=prune, structured=prune_target) if prune is not None else None,
        "distillation_config": DistillationConfig(teacher=teacher, temperature=temperature, alpha=alpha) if teacher else None,
    }
    trainer = _build_trainer(model, train_rows, eval_rows, configs, output_dir, epochs=epochs, batch_size=batch_size,
                             learning_rate=learning_rate, max_length=max_length, seed=seed)
    try:
        trainer.train()
    finally:
        shutil.rmtree(trainer.args.output_dir, ignore_errors=True)  # Trainer's scratch folder, not the artifact
    for record in trainer.history:
        metrics = record.get("eval", {})
        console.print(f"{record['phase']} phase: {record['epochs']:g} epoch(s) in {record['seconds']:.0f} s, train loss "
                      f"{record['train_loss']:.4f}" + (f", eval accuracy {metrics['eval_accuracy']:.3f}" if "eval_accuracy" in metrics else ""))
    with console.status("exporting") as status:
        artifact = trainer.save_artifact(output_dir, on_step=lambda message: status.update(message))
    _report(artifact)


def _build_trainer(model_ref: str, train_rows: list[Any], eval_rows: list[Any] | None, configs: dict[str, Any], output_dir: Path, *,
                   epochs: float, batch_size: int, learning_rate: float, max_length: int, seed: int) -> Any:
    import tempfile

    import numpy as np
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback, TrainingArguments

    from ..exporter.loading import check_model_source
    from ..training import OBTrainer
    from ..training.data import encode, label_names

    check_model_source(model_ref)
    tokenizer = AutoTokenizer.from_pretrained(model_ref)
    labels = label_names(train_rows, *([eval_rows] if eval_rows else []))
    classifier = AutoModelForSequenceClassification.from_pretrained(
        model_ref, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)},
        attn_implementation="eager", ignore_mismatched_sizes=True,
    )
    label2id = {str(k): v for k, v in classifier.config.label2id.items()}
    train_set = encode(train_rows, tokenizer, label2id, max_length, "--data")
    eval_set = encode(eval_rows, tokenizer, label2id, max_length, "--eval") if eval_rows else None

    def accuracy(prediction: Any) -> dict[str, float]:
        return {"accuracy": float((np.argmax(prediction.predictions, axis=-1) == prediction.label_ids).mean())}

    class _EpochLine(TrainerCallback):
        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any) -> None:
            if metrics and "eval_accuracy" in metrics:
                console.print(f"epoch {state.epoch:.0f}: eval accuracy {metrics['eval_accuracy']:.3f}, loss {metrics['eval_loss']:.4f}")

    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix=".optibridge-train-"), num_train_epochs=epochs, per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size * 2, learning_rate=learning_rate, seed=seed, save_strategy="no", report_to=[],
        eval_strategy="epoch" if eval_set else "no", logging_strategy="epoch", use_cpu=True, disable_tqdm=False,
    )
    trainer = OBTrainer(model=classifier, args=args, train_dataset=train_set, eval_dataset=eval_set, processing_class=tokenizer,
                        compute_metrics=accuracy if eval_set else None, task="text-classification", **configs)
    trainer.add_callback(_EpochLine())
    return trainer


def _report(artifact: Any) -> None:
    step = artifact.metadata.steps[-1]
    qat, pruning = step.get("qat"), step.get("pruning")
    if pruning:
        console.print(f"pruned: heads per layer {pruning['heads_kept_per_layer']} of {pruning['heads_per_layer']}, FFN channels "
                      f"{pruning['ffn_channels_kept_per_layer'][0]} of {pruning['ffn_channels_per_layer']}; parameters "
                      f"{pruning['parameters_before']:,} → {pruning['parameters_after']:,}")
    if qat:
        ops = ", ".join(f"{k} ×{v}" for k, v in sorted(qat["quantized_ops"].items()))
        report = qat["accuracy_vs_float"][artifact.metadata.main_graph_name]["outputs"][0]
        line = (f"int8 (QDQ: {ops}) vs the fine-tuned float graph: cosine {report['cosine_mean']:.4f}"
                + (f", top-1 agreement {report['top1_agreement']:.1%}" if report.get("top1_agreement") is not None else ""))
        if qat.get("float_eval_accuracy") is not None:
            line += f"; eval accuracy float {qat['float_eval_accuracy']:.3f} → int8 {step['eval_accuracy']:.3f}"
        console.print(escape(line), highlight=False)
    elif step.get("eval_accuracy") is not None:
        console.print(f"eval accuracy of the exported graph (ONNX Runtime): {step['eval_accuracy']:.3f}")
    console.print(f"[green]wrote[/] {artifact.path} ({artifact.size_bytes() / 1e6:.1f} MB)")
