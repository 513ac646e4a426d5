"""`optimize`: fusions per level, attention fused on bert-family graphs, checked, recorded, loadable; bad input writes nothing."""

from __future__ import annotations

import onnx
import pytest
import torch

from optibridge import (
    OBModelForFeatureExtraction, OBModelForImageClassification, OBModelForSequenceClassification, OptimizationConfig,
    QuantizationConfig, optimize, quantize,
)
from optibridge.artifact import Artifact
from optibridge.cli import main
from optibridge.errors import ArtifactError
from optibridge.steps import AccuracyBudgetError, ConfigError


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def op_types(artifact):
    return [n.op_type for n in onnx.load(str(artifact.model_path)).graph.node]


@pytest.mark.parametrize(
    "model_type,task,exporter,fuser",
    [
        ("bert", "text-classification", "auto", "onnxruntime.transformers"),
        ("bert", "text-classification", "dynamo", "onnxscript.ort_fusions"),
        ("distilbert", "text-classification", "auto", "onnxruntime.transformers"),
        ("roberta", "fill-mask", "auto", "onnxruntime.transformers"),
        ("electra", "token-classification", "auto", "onnxruntime.transformers"),
        ("vit", "image-classification", "dynamo", "onnxscript.ort_fusions"),
    ],
    ids=lambda v: v if isinstance(v, str) and "." not in v else None,
)
def test_o2_fuses_attention_within_1e4(model_type, task, exporter, fuser, exported, tmp_path):
    source = exported(model_type, task, exporter)
    result = optimize(source.path, OptimizationConfig(level=2), tmp_path / "o2")
    graph = result.report["graphs"]["model"]
    assert graph["fused"].get("Attention", 0) > 0 and graph["attention_fused"], graph
    assert graph["fused"].get("SkipLayerNormalization", 0) > 0
    assert graph["fuser"] == fuser
    assert result.accuracy["model"].max_abs_diff <= 1e-4
    assert "Attention" in op_types(result.artifact) and "Softmax" not in op_types(result.artifact)


@pytest.mark.slow
def test_o2_on_real_minilm_fuses_all_six_layers(minilm_artifact, tmp_path):
    result = optimize(minilm_artifact.path, OptimizationConfig(level=2), tmp_path / "o2")
    assert result.report["graphs"]["model"]["fused"]["Attention"] == 6
    assert result.accuracy["model"].max_abs_diff <= 1e-4


def test_levels_add_what_they_promise(exported, tmp_path):
    source = exported("bert", "feature-extraction")
    o1 = optimize(source.path, OptimizationConfig(level=1), tmp_path / "o1")
    assert "Attention" not in op_types(o1.artifact) and o1.accuracy["model"].max_abs_diff <= 1e-5
    o3 = optimize(source.path, OptimizationConfig(level=3), tmp_path / "o3")
    assert o3.report["graphs"]["model"]["fused"].get("FastGelu", 0) > 0
    assert o3.accuracy["model"].cosine >= 0.999  # the tanh approximation moves values slightly
    o4 = optimize(source.path, OptimizationConfig(level=4, device="gpu"), tmp_path / "o4")
    weights = onnx.load(str(o4.artifact.model_path)).graph.initializer
    assert any(w.data_type == onnx.TensorProto.FLOAT16 for w in weights)
    assert [t.dtype for t in o4.artifact.metadata.outputs] == ["float32", "float32"]  # IO stays float32


def test_the_step_is_recorded_and_the_artifact_loads_transparently(exported, tmp_path):
    source = exported("bert", "text-classification")
    result = optimize(source.path, OptimizationConfig(level=2), tmp_path / "o2")
    meta = Artifact.load(result.artifact.path, verify_hashes=True).metadata
    step = meta.steps[-1]
    assert step["step"] == "optimize" and OptimizationConfig.from_dict(step["config"]) == OptimizationConfig(level=2)
    assert step["report"]["graphs"]["model"]["fused"]["Attention"] == 2
    assert step["accuracy"]["model"]["outputs"][0]["name"] == "logits"
    assert (result.artifact.path / "tokenizer.json").is_file() and (result.artifact.path / "config.json").is_file()
    ids = torch.randint(5, 100, (2, 13))
    want = OBModelForSequenceClassification.from_pretrained(source.path)(input_ids=ids).logits
    got = OBModelForSequenceClassification.from_pretrained(result.artifact.path)(input_ids=ids).logits
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


def test_optimized_vision_model_loads_through_its_class(exported, tmp_path):
    source = exported("vit", "image-classification", "dynamo")
    result = optimize(source.path, OptimizationConfig(level=2), tmp_path / "o2")
    pixels = torch.randn(2, 3, 32, 32)
    want = OBModelForImageClassification.from_pretrained(source.path)(pixel_values=pixels).logits
    got = OBModelForImageClassification.from_pretrained(result.artifact.path)(pixel_values=pixels).logits
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


def test_quantizing_the_optimized_graph_works_and_loads(exported, tmp_path):
    o2 = optimize(exported("bert", "feature-extraction").path, OptimizationConfig(level=2), tmp_path / "o2")
    q = quantize(o2.artifact.path, QuantizationConfig(mode="dynamic"), tmp_path / "q")
    assert [s["step"] for s in q.artifact.metadata.steps] == ["export", "optimize", "quantize"]
    assert q.report["graphs"]["model"]["quantized"].get("QAttention", 0) > 0
    out = OBModelForFeatureExtraction.from_pretrained(q.artifact.path)(input_ids=torch.randint(5, 100, (2, 9)))
    assert out.last_hidden_state.shape == (2, 9, 32)


# -- bad input ------------------------------------------------------------------------------------

def test_o4_on_a_cpu_target_is_refused_with_the_reason(exported, tmp_path, capsys):
    with pytest.raises(ConfigError, match="O4 converts the graph to float16, which CPUs .* --force"):
        OptimizationConfig(level=4)
    code, _, err = run_cli(capsys, "optimize", exported("bert", "feature-extraction").path, "-O", "4", tmp_path / "out")
    assert code == 1 and "error: O4 converts the graph to float16" in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
    assert OptimizationConfig(level=4, force=True).level == 4


def test_accuracy_budget_miss_writes_nothing(exported, tmp_path):
    with pytest.raises(AccuracyBudgetError, match=r"O3 misses the accuracy budget max-abs-diff<=1e-09 \(.*nothing was written"):
        optimize(exported("bert", "feature-extraction").path, OptimizationConfig(level=3), tmp_path / "out",
                 accuracy_budget="max-abs-diff<=1e-9")
    assert list(tmp_path.iterdir()) == []


def test_optimizing_a_quantized_artifact_is_refused(exported, tmp_path):
    q = quantize(exported("bert", "feature-extraction").path, QuantizationConfig(mode="dynamic"), tmp_path / "q")
    with pytest.raises(ArtifactError, match="is already quantized.*Optimize the float artifact it came from"):
        optimize(q.artifact.path, OptimizationConfig(level=2), tmp_path / "o2")
    assert not (tmp_path / "o2").exists()


# -- the command line ------------------------------------------------------------------------------

def test_cli_prints_fused_counts_and_accuracy(exported, tmp_path, capsys):
    code, out, err = run_cli(capsys, "optimize", exported("bert", "text-classification").path, "-O", "2", tmp_path / "o2")
    assert code == 0, err
    assert "Attention ×2" in out and "SkipLayerNormalization ×4" in out and "max abs diff" in out and "wrote" in out


def test_cli_warns_loudly_when_attention_is_not_fused(exported, tmp_path, capsys):
    code, out, err = run_cli(capsys, "optimize", exported("deberta-v2", "feature-extraction").path, "-O", "2", tmp_path / "o2")
    assert code == 0, err
    assert "WARNING: attention was NOT fused (deberta-v2, torchscript exporter" in out


def test_cli_help_teaches_with_examples(capsys):
    code, out, _ = run_cli(capsys, "optimize", "--help")
    assert code == 0 and "optibridge optimize ./minilm-onnx -O 2 ./minilm-o2" in out and "--accuracy-budget" in out
