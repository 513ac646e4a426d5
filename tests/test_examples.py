"""The examples that document this session's features run as written (subprocesses, like a user)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from optibridge.backends import get_registry

EXAMPLES = Path(__file__).parent.parent / "examples"


def run_example(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    return subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.slow
def test_openvino_example_writes_an_ir_and_an_int8_model_within_budget():
    done = run_example("openvino_minilm.py")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "IR: model.xml" in done.stdout and "cosine int8 vs fp32 per sentence" in done.stdout
    assert "FFN down-projections; worst calibration sample" in done.stdout
    cosines = [float(x) for x in done.stdout.split("per sentence: [")[1].split("]")[0].split(",")]
    assert min(cosines) >= 0.99


@pytest.mark.parametrize("backend", ["cuda", "hpu"])
def test_gpu_example_names_what_is_missing_where_the_device_is_not(backend):
    if get_registry().get(backend).status().available:
        pytest.skip(f"{backend} is usable here: the example runs on it instead (tests marked gpu/hpu cover that)")
    done = run_example("gpu_backends.py", "--backend", backend)
    assert done.returncode == 1
    assert f"cannot run on {backend} here: backend '{backend}' is not usable here: " in done.stdout
    assert ("onnxruntime-gpu" if backend == "cuda" else "habana_frameworks") in done.stdout


@pytest.mark.slow
def test_optimum_migration_example_matches_pytorch_at_every_step():
    done = run_example("optimum_migration.py")
    assert done.returncode == 0, done.stderr[-2000:]
    checks = [line for line in done.stdout.splitlines() if "max abs diff to PyTorch" in line]
    assert len(checks) == 5, done.stdout
    for line in checks:  # "... max abs diff to PyTorch 3.1e-06 (limit 1e-04)"
        diff, limit = line.split("PyTorch ")[1].replace("(limit ", "").rstrip(")").split()
        assert float(diff) < float(limit) <= 1e-4, line
    assert "provider CPUExecutionProvider, io binding True" in done.stdout and "[2,16]" in done.stdout
    cosines = [line for line in done.stdout.splitlines() if "worst sentence cosine to PyTorch" in line]
    assert [line.split("  ")[0] for line in cosines] == [
        "ORTQuantizer int8 (dynamic)", "ORTQuantizer int8 (static)", "OVWeightQuantizationConfig(bits=8) at load",
        "its save_pretrained, reloaded", "OVQuantizer int8 (static)"]
    for line in cosines:  # "... worst sentence cosine to PyTorch 0.99871 (limit 0.98)"
        assert 0.98 < float(line.split("PyTorch ")[1].split()[0]) < 1.0, line  # int8: close, not exact


def test_openvino_f16_weights_example_halves_the_ir_and_keeps_pytorchs_tokens():
    done = run_example("openvino_f16_weights.py", "--tokens", "16", "--rounds", "1")
    assert done.returncode == 0, done.stderr[-2000:]
    f32_mb, f16_mb = (float(x.split()[0]) for x in done.stdout.split("weights ")[1:3])  # "IR sizes: float32 weights X MB, float16 weights Y MB"
    assert f16_mb < 0.6 * f32_mb, done.stdout
    assert "(weights: float16)" in done.stdout and "inference precision: f32" in done.stdout
    assert "same tokens as PyTorch: True" in done.stdout
    if importlib.util.find_spec("openvino_genai") is not None:  # two pipelines in one process, once a crash (eos past the vocabulary)
        assert "(loop: openvino-genai)" in done.stdout
    assert len([line for line in done.stdout.splitlines() if "x PyTorch" in line]) == 3


def test_semantic_search_example_agrees_with_sentence_transformers():
    done = run_example("semantic_search.py")
    assert done.returncode == 0, done.stderr[-2000:]
    verdicts = [line for line in done.stdout.splitlines() if "same best documents as sentence-transformers" in line]
    assert len(verdicts) == 2 and all("sentence-transformers: True;" in line for line in verdicts), done.stdout
    for line in verdicts:  # "... largest score difference 1.8e-07"
        assert float(line.rsplit(" ", 1)[1]) <= 1e-4, line
    assert "'What should I cook tonight?' -> 'A recipe for tomato soup with basil.'" in done.stdout


def test_image_captioning_example_matches_each_models_own_generate():
    done = run_example("image_captioning.py")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "same as BLIP's generate(): True" in done.stdout and "same as its generate(): True" in done.stdout
    assert "optibridge run: 2 captions written" in done.stdout


def test_image_text_to_text_example_matches_llava_generate():
    done = run_example("image_text_to_text.py")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "exported image-text-to-text graphs: model, vision_embeddings" in done.stdout
    assert "same tokens as LlavaForConditionalGeneration.generate(): True" in done.stdout
    assert "pipeline: <image> what is in the picture? " in done.stdout
