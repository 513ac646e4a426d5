"""optibridge.training: QAT (NNCF) → int8 QDQ artifact, structured pruning, distillation, `optibridge train`.

Tiny BERTs on a synthetic task (is "cat" in the sentence?) that they learn in a few seconds.
Training runs on one thread: these matrices gain nothing from a second one, and on a loaded
machine two threads made each step 50x slower (thread hand-offs).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import onnx
from onnx import numpy_helper
import pytest
import torch
from training_data import bert_classifier, sentences, tokenized

from optibridge.hardware import needs_seven_bit_weights
from optibridge.training import DistillationConfig, OBTrainer, PruningConfig, QATConfig, TrainingConfigError
from optibridge.training.pruning import Pruner


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("training")


@pytest.fixture(scope="module")
def student_path(root: Path) -> Path:
    return bert_classifier(root / "student", layers=2, seed=0)


@pytest.fixture(scope="module")
def data(student_path: Path) -> dict[str, Any]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(student_path)
    return {"tokenizer": tokenizer, "train": tokenized(tokenizer, sentences(256, seed=0)),
            "dev": tokenized(tokenizer, sentences(128, seed=1))}


def _args(out: Path, epochs: float = 4, lr: float = 3e-3, seed: int = 0) -> Any:
    from transformers import TrainingArguments

    return TrainingArguments(str(out), num_train_epochs=epochs, per_device_train_batch_size=16, learning_rate=lr,
                             save_strategy="no", report_to=[], seed=seed, disable_tqdm=True, logging_strategy="no",
                             use_cpu=True)


def _accuracy(prediction: Any) -> dict[str, float]:
    return {"accuracy": float((np.argmax(prediction.predictions, -1) == prediction.label_ids).mean())}


def _model(path: Path) -> Any:
    from transformers import BertForSequenceClassification

    return BertForSequenceClassification.from_pretrained(path, attn_implementation="eager")


def _trainer(path: Path, data: dict[str, Any], out: Path, **kwargs: Any) -> OBTrainer:
    train = kwargs.pop("train", data["train"])
    return OBTrainer(model=kwargs.pop("model", None) or _model(path), args=_args(out, **kwargs.pop("args", {})),
                     train_dataset=train, eval_dataset=data["dev"], processing_class=data["tokenizer"],
                     compute_metrics=_accuracy, **kwargs)


def _dev_accuracy(model: Any, data: dict[str, Any]) -> float:
    """Accuracy of an OBModel (or PyTorch model) on the dev set, one padded batch."""
    texts = [t for t, _ in sentences(128, seed=1)]
    labels = np.array([label for _, label in sentences(128, seed=1)])
    with torch.no_grad():
        logits = model(**data["tokenizer"](texts, padding=True, return_tensors="pt")).logits
    return float((logits.argmax(-1).numpy() == labels).mean())


# -- configs and inputs: clear errors before training, nothing written ------------------------------


@pytest.mark.parametrize("value", [0.0, 1.0, 1.5, -0.2])
def test_sparsity_outside_zero_one_is_refused(value: float) -> None:
    with pytest.raises(TrainingConfigError, match="strictly between 0 and 1"):
        PruningConfig(target_sparsity=value)


def test_config_values_are_checked() -> None:
    with pytest.raises(TrainingConfigError, match="valid: heads\\+ffn, heads, ffn"):
        PruningConfig(structured="rows")
    with pytest.raises(TrainingConfigError, match="alpha must be in"):
        DistillationConfig(teacher="x", alpha=1.5)
    with pytest.raises(TrainingConfigError, match="preset"):
        QATConfig(preset="fast")
    with pytest.raises(TrainingConfigError, match="must be a QATConfig"):
        OBTrainer(model=None, quantization_config={"epochs": 1})


def test_teacher_of_another_task_or_vocabulary_is_refused(root: Path, student_path: Path, data: dict[str, Any]) -> None:
    from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification

    student = _model(student_path)
    small_vocab = BertForSequenceClassification(BertConfig(**{**student.config.to_dict(), "vocab_size": 100}))
    masked_lm = BertForMaskedLM(BertConfig(**{k: v for k, v in student.config.to_dict().items() if k != "architectures"}))
    out = root / "refused"
    with pytest.raises(TrainingConfigError, match="vocabulary has 100 tokens"):
        _trainer(student_path, data, out, model=student, distillation_config=DistillationConfig(teacher=small_vocab))
    with pytest.raises(TrainingConfigError, match="same task"):
        _trainer(student_path, data, out, model=student, distillation_config=DistillationConfig(teacher=masked_lm))
    assert not out.exists()


def test_structured_pruning_cut_changes_no_output(student_path: Path, data: dict[str, Any]) -> None:
    """Masked heads/channels contribute nothing, so cutting them out must give the same logits."""
    model = _model(student_path).eval()
    pruner = Pruner(model, PruningConfig(target_sparsity=0.5))
    pruner.update(1.0)
    batch = data["tokenizer"](["the cat sat on the mat", "a dog"], padding=True, return_tensors="pt")
    with torch.no_grad():
        masked = model(**batch).logits
        report = pruner.finalize()
        cut = model(**batch).logits
    assert report["heads_kept_per_layer"] == [2, 2] and report["ffn_channels_kept_per_layer"] == [32, 32]
    assert model.bert.encoder.layer[0].attention.self.query.out_features == 16
    assert model.config.intermediate_size == 32
    assert report["parameters_after"] < report["parameters_before"]
    torch.testing.assert_close(cut, masked, atol=1e-5, rtol=1e-5)


def test_unstructured_sparsity_is_kept_after_the_structured_cut(student_path: Path) -> None:
    model = _model(student_path)
    pruner = Pruner(model, PruningConfig(target_sparsity=0.5, unstructured=0.5))
    report = pruner.finalize()
    assert 0.49 <= report["weight_sparsity"] <= 0.55
    with torch.no_grad():
        model.bert.encoder.layer[0].intermediate.dense.weight.add_(1.0)  # what an optimizer step would do
    pruner.apply()  # the QAT phase re-zeroes after every step
    assert 0.49 <= pruner.weight_sparsity() <= 0.55


# -- QAT ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def teacher(root: Path, data: dict[str, Any]) -> Any:
    """A 4-layer teacher fine-tuned on the clean labels."""
    path = bert_classifier(root / "teacher", layers=4, seed=1)
    trainer = _trainer(path, data, root / "teacher-run")
    trainer.train()
    assert trainer.history[-1]["eval"]["eval_accuracy"] >= 0.95
    return trainer.model.eval()


@pytest.fixture(scope="module")
def qat_run(root: Path, student_path: Path, data: dict[str, Any], teacher: Any) -> dict[str, Any]:
    """QAT, 50 % heads+FFN pruning and distillation, all in one run."""
    trainer = _trainer(student_path, data, root / "qat-run", quantization_config=QATConfig(calibration_samples=16),
                       pruning_config=PruningConfig(target_sparsity=0.5), distillation_config=DistillationConfig(teacher=teacher))
    trainer.train()
    return {"trainer": trainer, "artifact": trainer.save_model(str(root / "qat-artifact"))}


def test_qat_artifact_is_a_real_int8_graph(qat_run: dict[str, Any]) -> None:
    artifact = qat_run["artifact"]
    graph = onnx.load(str(artifact.model_path))
    ops = [n.op_type for n in graph.graph.node]
    int8_weights = [t for t in graph.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 2]
    matmul_weights = [t for t in graph.graph.initializer if t.data_type == onnx.TensorProto.FLOAT and len(t.dims) == 2
                      and t.dims[0] >= 32 and t.dims[1] >= 32 and "embeddings" not in t.name]
    assert ops.count("DequantizeLinear") >= 12 and ops.count("QuantizeLinear") >= 6
    # every encoder matrix (2 layers x 6) and the pooler are stored as int8, none as float
    assert len(int8_weights) >= 13, [t.name for t in int8_weights]
    assert not matmul_weights, [t.name for t in matmul_weights]
    step = artifact.metadata.steps[-1]
    assert step["step"] == "train" and step["qat"]["framework"] == "nncf"
    assert step["qat"]["weights_folded_to_int8"] == len(int8_weights)
    # 7-bit weights where this CPU's int8 products would saturate (no VNNI), full 8-bit elsewhere
    assert step["qat"]["weight_bits"] == (7 if needs_seven_bit_weights("auto") else 8)
    linears = [t for t in int8_weights if "embeddings" not in t.name]  # an embedding is a lookup, not a dot product
    assert len(linears) >= 13
    largest = max(int(np.abs(numpy_helper.to_array(t).astype(np.int32)).max()) for t in linears)
    assert (largest <= 64) == (step["qat"]["weight_bits"] == 7), largest
    assert ("weight_values_clipped_to_7_bit" in step["qat"]) == (step["qat"]["weight_bits"] == 7)
    assert [p["phase"] for p in step["phases"]] == ["float", "qat"]
    assert step["pruning"]["heads_kept_per_layer"] == [2, 2] and step["distillation"]["alpha"] == 0.5


def test_qat_artifact_is_within_budget_of_the_float_model(qat_run: dict[str, Any], data: dict[str, Any]) -> None:
    from optibridge import OBModelForSequenceClassification

    step = qat_run["artifact"].metadata.steps[-1]
    report = step["qat"]["accuracy_vs_float"]["model"]["outputs"][0]
    assert report["cosine_mean"] >= 0.99 and report["top1_agreement"] >= 0.9, report
    float_accuracy = step["qat"]["float_eval_accuracy"]
    assert float_accuracy >= 0.85, "the float phase did not learn the task"
    assert step["eval_accuracy"] >= float_accuracy - 0.03
    model = OBModelForSequenceClassification.from_pretrained(qat_run["artifact"].path)
    assert _dev_accuracy(model, data) == pytest.approx(step["eval_accuracy"], abs=1 / 128 + 1e-9)


def test_qat_beats_or_matches_static_ptq_of_the_same_float_model(qat_run: dict[str, Any], root: Path, data: dict[str, Any]) -> None:
    from optibridge import OBModelForSequenceClassification, QuantizationConfig, quantize
    from optibridge.steps import CalibrationConfig
    from optibridge.training.artifact import export_model

    trainer = qat_run["trainer"]
    float_artifact = export_model(trainer.float_model, root / "float-ref", task=None, preprocessor=data["tokenizer"])
    calibration = root / "calibration.txt"
    calibration.write_text("\n".join(t for t, _ in sentences(32, seed=5)))
    config = QuantizationConfig(mode="static", calibration=CalibrationConfig(source=str(calibration), num_samples=32))
    ptq = quantize(float_artifact.path, config, root / "ptq-static")
    ptq_accuracy = _dev_accuracy(OBModelForSequenceClassification.from_pretrained(ptq.artifact.path), data)
    qat_accuracy = qat_run["artifact"].metadata.steps[-1]["eval_accuracy"]
    assert qat_accuracy >= ptq_accuracy, (qat_accuracy, ptq_accuracy)


def test_qat_artifact_runs_on_openvino(qat_run: dict[str, Any], data: dict[str, Any]) -> None:
    pytest.importorskip("openvino")
    from optibridge import OBModelForSequenceClassification

    ort_model = OBModelForSequenceClassification.from_pretrained(qat_run["artifact"].path)
    ov_model = OBModelForSequenceClassification.from_pretrained(qat_run["artifact"].path, backend="openvino")
    batch = data["tokenizer"]([t for t, _ in sentences(64, seed=3)], padding=True, return_tensors="pt")
    agree = (ort_model(**batch).logits.argmax(-1) == ov_model(**batch).logits.argmax(-1)).float().mean()
    assert agree >= 0.95


# -- distillation -------------------------------------------------------------------------------------


def test_distillation_beats_the_same_student_without_teacher(root: Path, data: dict[str, Any], teacher: Any) -> None:
    """The student sees labels with 30 % flipped; the teacher learnt the clean ones. Without the
    teacher the student follows the noise (measured 0.59 and 0.67 on two seeds), with it 1.0."""
    import random

    rng = random.Random(0)
    noisy = [{**row, "labels": 1 - row["labels"] if rng.random() < 0.3 else row["labels"]} for row in data["train"]]
    path = bert_classifier(root / "student-kd", layers=2, seed=2)
    accuracy = {}
    for name, config in (("alone", None), ("distilled", DistillationConfig(teacher=teacher, alpha=0.9, hidden_states=True))):
        trainer = _trainer(path, data, root / f"kd-{name}", train=noisy, distillation_config=config)
        trainer.train()
        accuracy[name] = trainer.history[-1]["eval"]["eval_accuracy"]
    assert accuracy["distilled"] >= accuracy["alone"] + 0.1, accuracy
    assert accuracy["distilled"] >= 0.9, accuracy


# -- the CLI ------------------------------------------------------------------------------------------


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_cli_refuses_data_without_the_needed_fields(root: Path, student_path: Path, capsys: Any) -> None:
    from optibridge.cli import main

    bad = _jsonl(root / "bad.jsonl", [{"text": "the cat", "label": "cat"}, {"sentence": "a dog", "label": "no"}])
    out = root / "cli-bad"
    assert main(["train", "--model", str(student_path), "--data", str(bad), str(out)]) == 1
    assert "bad.jsonl:2 has no 'text' field (it has: 'sentence', 'label')" in capsys.readouterr().err
    assert not out.exists()


def test_cli_trains_a_pruned_artifact_smaller_than_the_float_export(root: Path, student_path: Path, capsys: Any) -> None:
    from optibridge import OBModelForSequenceClassification, export
    from optibridge.cli import main

    rows = lambda count, seed: [{"text": t, "label": ["no", "cat"][label]} for t, label in sentences(count, seed)]  # noqa: E731
    train, dev = _jsonl(root / "train.jsonl", rows(256, 0)), _jsonl(root / "dev.jsonl", rows(128, 1))
    out = root / "cli-pruned"
    code = main(["train", "--model", str(student_path), "--data", str(train), "--eval", str(dev), "--prune", "0.5",
                 "--epochs", "4", "--lr", "3e-3", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "epoch 4: eval accuracy" in printed and "pruned: heads per layer [2, 2] of 4" in printed
    step = json.loads((out / "optibridge.json").read_text())["steps"][-1]
    assert step["eval_accuracy"] >= 0.85
    unpruned = export(student_path, root / "unpruned").artifact
    assert (out / "model.onnx").stat().st_size < unpruned.model_path.stat().st_size
    shapes = {tuple(t.dims) for t in onnx.load(str(out / "model.onnx")).graph.initializer}
    assert (32, 16) in shapes and (32, 32) in shapes and (32, 64) not in shapes  # q/k/v: 2 heads of 8; FFN: 32 channels
    model = OBModelForSequenceClassification.from_pretrained(out)
    assert model.config.id2label == {0: "cat", 1: "no"}



@pytest.mark.parametrize("reduce_range, bits", [(True, 7), (False, 8), (None, None)])
def test_qat_weights_are_7_bit_where_int8_saturates_unless_told(reduce_range: bool | None, bits: int | None) -> None:
    from optibridge.training.qat import weight_bits

    assert weight_bits(QATConfig(reduce_range=reduce_range)) == (bits or (7 if needs_seven_bit_weights("auto") else 8))


def test_folding_clips_dot_product_weights_to_7_bit_but_not_embedding_tables(tmp_path: Path) -> None:
    """What training moved past [-64, 64] is clipped where int8 products saturate; a Gather table is a lookup."""
    from onnx import helper

    from optibridge.training.qat import fold_weight_quantizers

    rng = np.random.default_rng(0)
    weight, table = rng.normal(0, 1, (8, 4)).astype(np.float32), rng.normal(0, 1, (10, 8)).astype(np.float32)
    scale = np.float32(np.abs(weight).max() / 127)  # a full-range scale: the largest weights land on +-127
    inits = [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(table, "t"), numpy_helper.from_array(scale, "s"),
             numpy_helper.from_array(np.float32(np.abs(table).max() / 127), "ts"), numpy_helper.from_array(np.int8(0), "z")]
    nodes = [helper.make_node("QuantizeLinear", ["w", "s", "z"], ["wq"]), helper.make_node("DequantizeLinear", ["wq", "s", "z"], ["wd"]),
             helper.make_node("QuantizeLinear", ["t", "ts", "z"], ["tq"]), helper.make_node("DequantizeLinear", ["tq", "ts", "z"], ["td"]),
             helper.make_node("Gather", ["td", "ids"], ["e"]), helper.make_node("MatMul", ["e", "wd"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("ids", onnx.TensorProto.INT64, [2])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 4])], inits)
    for limit, clipped in ((None, None), (64, int((np.abs(np.rint(weight / scale)) > 64).sum()))):
        path = tmp_path / f"{limit}.onnx"
        onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]), str(path))
        counts = fold_weight_quantizers(path, limit)
        folded = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
        assert counts["weights_folded_to_int8"] == 2 and counts.get("weight_values_clipped") == clipped
        assert np.abs(folded["tq"].astype(int)).max() == 127  # the table keeps its full range either way
        assert np.abs(folded["wq"].astype(int)).max() == (127 if limit is None else 64)
    assert clipped and clipped > 0
