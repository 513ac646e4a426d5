"""``OBTrainer.save_model``: the trained model as an optibridge artifact, through optibridge's export.

The model in memory goes through :func:`optibridge.exporter.export_source` (same graphs, same
validation against PyTorch, same staged write as ``optibridge export``). With QAT, the fine-tuned
float model is exported too, as the reference: the int8 artifact's ``train`` step records its
accuracy against that float graph (cosine, top-1 agreement on fresh inputs) and, when there is an
evaluation set, the task accuracy of both.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..artifact import METADATA_FILE, Artifact, check_output_dir, staged_directory, write_metadata
from .config import TrainingConfigError

StepCallback = Callable[[str], None]


def _source(model: Any, task: str | None) -> Any:
    from ..exporter.architectures import get_architecture
    from ..exporter.loading import SourceModel
    from ..tasks import get_task, infer_task

    model_type = model.config.model_type
    arch = get_architecture(model_type)
    resolved = get_task(task) if task else infer_task([type(model).__name__], model_type, arch.tasks)
    get_architecture(model_type, resolved.name)
    return SourceModel(model, model.config, resolved, arch, task is None, getattr(model, "name_or_path", "") or "trained model")


def export_model(model: Any, output_dir: Path, *, task: str | None, preprocessor: Any, exporter: str = "auto",
                 atol: float | None = None, on_step: StepCallback | None = None) -> Artifact:
    """Export an in-memory model (eval mode) into ``output_dir`` with optibridge's exporter and validation."""
    from ..exporter import DEFAULT_ATOL, export_source, validator

    model.eval()
    model.config.architectures = [type(model).__name__]
    source = _source(model, task)
    result = export_source(source, output_dir, model_ref=source.name_or_path, preprocessor=preprocessor,
                           exporter=exporter, atol=atol or DEFAULT_ATOL, validator=validator(), on_step=on_step)
    return result.artifact


def task_accuracy(artifact: Artifact, batches: list[dict[str, torch.Tensor]]) -> float | None:
    """Share of correctly classified samples of ``batches`` (sequence classification), run with ONNX Runtime."""
    if artifact.metadata.task != "text-classification" or not batches:
        return None
    from ..backends import get_registry

    session = get_registry().require_available("auto", "cpu").load(artifact)
    correct = total = 0
    for batch in batches:
        feed = {k: v.numpy() for k, v in batch.items() if k in session.input_names}
        logits = session.run(feed)["logits"]
        labels = batch["labels"].numpy()
        correct += int((np.argmax(logits, axis=-1) == labels).sum())
        total += len(labels)
    return correct / total if total else None


def write_training_artifact(
    output_dir: str | Path,
    *,
    model: Any,
    float_model: Any | None,
    task: str | None,
    preprocessor: Any,
    step: dict[str, Any],
    eval_batches: list[dict[str, torch.Tensor]],
    qat_atol: float,
    on_step: StepCallback | None = None,
) -> Artifact:
    """Export ``model`` (the QAT model when ``float_model`` is given) and write the artifact with its ``train`` step."""
    say = on_step or (lambda message: None)
    dest = check_output_dir(output_dir)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{dest.name}.train-", dir=dest.parent) as scratch:
        scratch_dir = Path(scratch)
        if float_model is None:
            artifact = export_model(model, scratch_dir / "model", task=task, preprocessor=preprocessor, on_step=say)
            step["eval_accuracy"] = task_accuracy(artifact, eval_batches)
        else:
            artifact = _export_qat(model, float_model, scratch_dir, task, preprocessor, step, eval_batches, qat_atol, say)
        with staged_directory(dest) as staging:
            for item in artifact.path.iterdir():
                if item.name != METADATA_FILE:
                    (shutil.copytree if item.is_dir() else shutil.copy2)(item, staging / item.name)
            metadata = copy.deepcopy(artifact.metadata)
            metadata.steps.append(step)
            write_metadata(staging, metadata)
    return Artifact.load(dest)


def _export_qat(model: Any, float_model: Any, scratch: Path, task: str | None, preprocessor: Any, step: dict[str, Any],
                eval_batches: list[dict[str, torch.Tensor]], qat_atol: float, say: StepCallback) -> Artifact:
    from ..backends import get_registry
    from ..exporter.torch_to_onnx import graph_spec
    from ..steps.run import check_accuracy, quantized_ops
    from .qat import SEVEN_BIT_MAGNITUDE, fold_weight_quantizers, qdq_export_mode

    say("exporting the fine-tuned float model (the reference for the int8 graph)")
    reference = export_model(float_model, scratch / "float", task=task, preprocessor=preprocessor)
    say("exporting the QAT model as a QDQ int8 graph")
    model.eval()
    with qdq_export_mode(model) as count:
        if not count:
            raise TrainingConfigError("the QAT model holds no fake quantizers: NNCF found nothing to quantize")
        exported = export_model(model, scratch / "int8-qdq", task=task, preprocessor=preprocessor, exporter="torchscript", atol=qat_atol)
    seven_bit = step["qat"]["weight_bits"] == 7  # no int8 product may saturate on the CPU it was trained for
    folded = fold_weight_quantizers(exported.model_path, SEVEN_BIT_MAGNITUDE if seven_bit else None)
    metadata = copy.deepcopy(exported.metadata)
    import onnx

    metadata.graphs[metadata.main_graph_name] = graph_spec(exported.metadata.main_graph.file, onnx.load(str(exported.model_path)))
    write_metadata(exported.path, metadata)
    artifact = Artifact(exported.path, metadata)
    say("checking the int8 graph against the fine-tuned float graph")
    backend = get_registry().require_available("auto", "cpu")
    accuracy = check_accuracy(backend, reference, artifact)
    float_eval = task_accuracy(reference, eval_batches)
    int8_eval = task_accuracy(artifact, eval_batches)
    step["qat"].update(
        quantized_ops=quantized_ops(artifact), weights_folded_to_int8=folded["weights_folded_to_int8"],
        **({"weight_values_clipped_to_7_bit": folded["weight_values_clipped"]} if seven_bit else {}),
        accuracy_vs_float={name: report.to_dict() for name, report in accuracy.items()},
        float_bytes=reference.size_bytes(), int8_bytes=artifact.size_bytes() if metadata.files else None,
        float_eval_accuracy=float_eval,
    )
    step["eval_accuracy"] = int8_eval
    return artifact
