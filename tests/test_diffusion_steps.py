"""Pipeline artifacts through bench, optimize and static quantization (tiny random SD 1.x pipeline,
the session's export from conftest.py). Nothing here asserts a timing: only that the measurements
exist and are positive, and the accuracy figures the steps record."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("diffusers")

from optibridge.artifact import Artifact  # noqa: E402
from optibridge.bench import load_run  # noqa: E402


def test_bench_measures_seconds_per_image_and_step_and_memory(sd_artifact: Artifact, tmp_path: Path) -> None:
    from optibridge.cli import main

    out = tmp_path / "bench"
    code = main(["bench", "--model", str(sd_artifact.path), "--configs", "ort:fp32", "--steps", "2", "--image-size", "32",
                 "--runs", "2", "--warmup", "0", "--threads", "1", "--no-progress", "--out", str(out)])
    assert code == 0
    run = load_run(out / "results.json")
    assert run.model["pipeline"] and run.settings["steps"] == 2
    cells = {c.name: c for c in run.cells}
    assert set(cells) == {"pytorch:eager", "ort:fp32"}
    for cell in cells.values():
        assert cell.ok, cell.reason
        assert cell.latency is not None and cell.latency.p50_ms > 0 and cell.latency.runs == 2
        images = cell.images
        assert images is not None and (images.steps, images.height, images.width) == (2, 32, 32)
        # a step is one UNet call inside the image: positive, and the steps are a part of the whole call
        assert 0 < images.step_ms * images.steps < cell.latency.p50_ms
        assert images.peak_rss_delta_mb > 0 and cell.peak_rss_mb is not None and cell.peak_rss_mb > images.peak_rss_delta_mb
    ort = cells["ort:fp32"]
    assert ort.speedup is not None and ort.speedup > 0 and ort.baseline is not None
    assert ort.images is not None and ort.images.baseline_step_ms is not None and ort.images.baseline_step_ms > 0
    assert ort.images.mean_abs_pixel_diff is not None and ort.images.mean_abs_pixel_diff < 1e-5  # same seed, same image
    assert ort.images.psnr_db is not None and ort.images.psnr_db > 80
    report = (out / "report.md").read_text()
    assert "| s/step |" in report and "| peak Δ MB |" in report and "| ort:fp32 | 1×2 | 32×32 |" in report


def test_bench_refuses_an_image_size_the_pipeline_cannot_make(sd_artifact: Artifact, capsys: pytest.CaptureFixture[str]) -> None:
    from optibridge.cli import main

    code = main(["bench", "--model", str(sd_artifact.path), "--configs", "ort:fp32", "--image-size", "33", "--no-progress"])
    assert code != 0
    assert "--image-size 33 is not a multiple of 8" in capsys.readouterr().err


def test_optimize_fuses_unet_attention_on_cpu_and_keeps_the_images(sd_artifact: Artifact, tmp_path: Path) -> None:
    from optibridge import OptimizationConfig, optimize

    result = optimize(sd_artifact.path, OptimizationConfig(level=2), tmp_path / "o2", backend="ort")
    unet = result.report["graphs"]["unet"]
    # ORT's "unet" model type with the CUDA-only fusions off: self-attention → Attention, cross → MultiHeadAttention
    assert unet["attention_fused"] and unet["fuser"] == "onnxruntime.transformers"
    assert unet["fused"].get("Attention", 0) + unet["fused"].get("MultiHeadAttention", 0) >= 2
    assert not {"GroupNorm", "NhwcConv", "BiasSplitGelu", "SkipGroupNorm"} & set(unet["fused"])  # no CUDA-only kernels
    images = result.step["image_accuracy"]
    assert images["images"] == 2 and images["mean_abs_pixel_diff"] < 1e-5 and images["psnr_db"] > 80


def test_static_int8_calibrates_on_the_float_pipeline_and_reports_psnr(sd_artifact: Artifact, tmp_path: Path) -> None:
    from optibridge import CalibrationConfig, QuantizationConfig, quantize

    result = quantize(sd_artifact.path, QuantizationConfig(mode="static", calibration=CalibrationConfig(num_samples=8)), tmp_path / "s8",
                      backend="ort")
    graphs = result.report["graphs"]
    assert graphs["unet"]["quantized"].get("QuantizeLinear", 0) > 0 and graphs["text_encoder"]["quantized"]
    assert graphs["vae_decoder"]["quantized"] == {} and graphs["vae_encoder"]["quantized"] == {}  # the VAE stays float
    calibration = result.step["calibration"]
    assert calibration["samples"] == 8 and "recorded from the float pipeline" in calibration["description"]
    images = result.step["image_accuracy"]
    assert 30 <= images["psnr_db"] < 100 and images["mean_abs_pixel_diff"] > 0  # changed, but within the gate


def test_static_int8_below_the_image_gate_is_refused_and_writes_nothing(sd_artifact: Artifact, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from optibridge import CalibrationConfig, QuantizationConfig, quantize
    from optibridge.diffusion import calibration
    from optibridge.errors import AccuracyBudgetError

    # The same quantization held to a gate no int8 result meets: the error names the PSNR, nothing is written.
    monkeypatch.setattr(calibration, "IMAGE_PSNR_GATE_DB", 200.0)
    monkeypatch.setattr(calibration.image_gate, "__defaults__", (200.0,))
    out = tmp_path / "refused"
    with pytest.raises(AccuracyBudgetError, match=r"PSNR \d+\.\d dB against the float pipeline.*below the 200 dB gate"):
        quantize(sd_artifact.path, QuantizationConfig(mode="static", calibration=CalibrationConfig(num_samples=2)), out, backend="ort")
    assert not out.exists()


def test_tune_judges_a_pipeline_on_its_images_and_keeps_the_fastest_within_a_psnr_budget(sd_artifact: Artifact, tmp_path: Path) -> None:
    """`optibridge tune` on a pipeline: each candidate's images against PyTorch's (PSNR); int8 (~41 dB on the
    tiny pipeline) misses psnr>=60 and is rejected by name, a float candidate is written with its images' figures."""
    from optibridge.cli import main

    out = tmp_path / "tuned"
    code = main(["tune", "--model", str(sd_artifact.path), "--accuracy-budget", "psnr>=60", "--configs", "ort:fp32,ort:int8-dynamic",
                 "--steps", "2", "--image-size", "32", "--runs", "2", "--warmup", "0", "--threads", "1", "--no-progress", str(out)])
    assert code == 0
    step = Artifact.load(out).metadata.steps[-1]
    assert step["step"] == "tune" and step["config"] == "fp32" and step["accuracy_budget"]["min_psnr_db"] == 60
    images = step["measured"]["images"]
    assert images["psnr_db"] > 60 and (images["steps"], images["height"], images["width"]) == (2, 32, 32)
    verdicts = {t["candidate"]: t["verdict"] for t in step["tried"]}
    assert verdicts["ort:int8-dynamic"].startswith("rejected: accuracy (images PSNR") and "< 60" in verdicts["ort:int8-dynamic"]


def test_a_budget_that_does_not_fit_the_model_is_refused_before_any_work(sd_artifact: Artifact, exported, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from optibridge import QuantizationConfig, quantize
    from optibridge.cli import main
    from optibridge.errors import AccuracyBudgetError, ConfigError

    assert main(["tune", "--model", str(sd_artifact.path), "--accuracy-budget", "0.99", str(tmp_path / "a")]) == 1
    assert "diffusion pipeline: it is judged on its images" in capsys.readouterr().err
    assert main(["tune", "--model", str(exported("bert", "text-classification").path), "--accuracy-budget", "psnr>=30", str(tmp_path / "b")]) == 1
    assert "not a pipeline" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="psnr term judges a diffusion pipeline's images"):
        quantize(exported("bert", "text-classification").path, QuantizationConfig(mode="dynamic"), tmp_path / "c",
                 accuracy_budget="psnr>=30")
    # on a pipeline, quantize holds its images to the PSNR term: int8 (~41 dB) misses 60 dB and nothing is written
    with pytest.raises(AccuracyBudgetError, match=r"images PSNR \d+\.\d dB < 60"):
        quantize(sd_artifact.path, QuantizationConfig(mode="dynamic"), tmp_path / "d", backend="ort", accuracy_budget="psnr>=60")
    assert not any((tmp_path / name).exists() for name in "abcd")
