"""Diffusion pipelines: export of a tiny random SD 1.x pipeline, image parity with diffusers' PyTorch
pipeline on ORT and OpenVINO, scheduler swap, save/reload, OpenVINO static shapes, bad input.

One export per session (through the CLI, with the VAE encoder so img2img runs from the same
artifact); 3 denoising steps on 32×32 images.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

pytest.importorskip("diffusers")
import torch  # noqa: E402

from optibridge.artifact import Artifact  # noqa: E402
from optibridge.errors import ArtifactError, BackendError, InputError, ModelNotFoundError, UnsupportedModelError  # noqa: E402

from tiny_diffusers import SD3_T5_TOKENS, build_tiny_flux, build_tiny_lcm, build_tiny_sd, build_tiny_sd3, build_tiny_sdxl  # noqa: E402

STEPS = 3
CALL = dict(num_inference_steps=STEPS, guidance_scale=7.5, height=32, width=32, output_type="np")
PIXEL_TOLERANCE = 1e-5
"""Mean abs pixel difference (pixels in [0, 1]) allowed against PyTorch; measured ~5e-7 here."""


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    # Tiny convolutions on 2 busy cores: PyTorch's second thread made each UNet call 30× slower here.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _images(pipe: Any, prompt: Any = "a cat on the mat", **kwargs: Any) -> np.ndarray:
    return pipe(prompt, generator=torch.Generator().manual_seed(0), **{**CALL, **kwargs}).images


def _torch_pipeline(folder: Path, cls_name: str = "StableDiffusionPipeline", scheduler: Any = None, **components: Any) -> Any:
    import diffusers

    pipe = getattr(diffusers, cls_name).from_pretrained(folder, **components)
    pipe.set_progress_bar_config(disable=True)
    if scheduler is not None:
        pipe.scheduler = scheduler.from_config(pipe.scheduler.config)
    return pipe


@pytest.fixture(scope="module")
def reference_images(sd_folder: Path) -> np.ndarray:
    return _images(_torch_pipeline(sd_folder))


# -- export ---------------------------------------------------------------------------------------

def test_export_writes_component_graphs_validated_at_new_shapes(sd_artifact: Artifact) -> None:
    meta = sd_artifact.metadata
    assert set(meta.graphs) == {"text_encoder", "unet", "vae_decoder", "vae_encoder"}
    assert meta.task == "image-to-image" and meta.extra["diffusion"]["pipeline_class"] == "StableDiffusionImg2ImgPipeline"
    unet = {t.name: t.shape for t in meta.graphs["unet"].inputs}
    assert unet["sample"] == ("batch", 4, "latent_height", "latent_width")
    assert {t.name: t.shape for t in meta.graphs["vae_decoder"].outputs}["sample"] == ("batch", 3, "height", "width")
    validation = meta.validation
    assert validation["passed"] and len(validation["outputs"]) == 5
    assert all(o["max_abs_diff"] < 1e-4 for o in validation["outputs"])
    # validated at shapes the graphs were not traced at (traced: batch 2, latents 4×6)
    assert validation["input_shapes"]["unet.sample"] == [3, 4, 6, 4]
    assert (sd_artifact.path / "scheduler" / "scheduler_config.json").is_file()
    assert (sd_artifact.path / "tokenizer" / "tokenizer.json").is_file()
    assert not list(sd_artifact.path.rglob("*.safetensors"))  # graphs only, no PyTorch weights


def test_task_is_inferred_from_model_index(sd_folder: Path, tmp_path: Path) -> None:
    from optibridge.diffusion.families import inspect_pipeline

    assert inspect_pipeline(sd_folder).task == "text-to-image"
    index = json.loads((sd_folder / "model_index.json").read_text())
    copy = tmp_path / "img2img"
    shutil.copytree(sd_folder, copy)
    (copy / "model_index.json").write_text(json.dumps({**index, "_class_name": "StableDiffusionImg2ImgPipeline"}))
    source = inspect_pipeline(copy)
    assert (source.task, source.task_inferred) == ("image-to-image", True)


# -- running ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["ort", "openvino"])
def test_images_match_pytorch_with_the_same_seed(sd_artifact: Artifact, reference_images: np.ndarray, backend: str) -> None:
    from optibridge import OBStableDiffusionPipeline

    pipe = OBStableDiffusionPipeline.from_pretrained(sd_artifact.path, backend=backend)
    images = _images(pipe)
    assert images.shape == reference_images.shape == (1, 32, 32, 3)
    assert reference_images.std() > 0.05  # a real image, not a flat one that any output would match
    assert np.abs(images - reference_images).mean() < PIXEL_TOLERANCE


def test_scheduler_swap_matches_pytorch_and_survives_save(sd_artifact: Artifact, sd_folder: Path,
                                                         reference_images: np.ndarray, tmp_path: Path) -> None:
    from diffusers import EulerDiscreteScheduler

    from optibridge import OBStableDiffusionPipeline

    pipe = OBStableDiffusionPipeline.from_pretrained(sd_artifact.path)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    images = _images(pipe)
    want = _images(_torch_pipeline(sd_folder, scheduler=EulerDiscreteScheduler))
    assert np.abs(images - want).mean() < PIXEL_TOLERANCE
    assert np.abs(images - reference_images).mean() > 1e-3  # the scheduler did change the result

    pipe.save_pretrained(tmp_path / "saved")
    reloaded = OBStableDiffusionPipeline.from_pretrained(tmp_path / "saved")
    assert isinstance(reloaded.scheduler, EulerDiscreteScheduler)
    assert np.abs(_images(reloaded) - want).mean() < PIXEL_TOLERANCE


def test_img2img_matches_pytorch(sd_artifact: Artifact, sd_folder: Path) -> None:
    from optibridge import OBStableDiffusionImg2ImgPipeline

    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    pipe = OBStableDiffusionImg2ImgPipeline.from_pretrained(sd_artifact.path)
    got = _images(pipe, image=image, strength=0.8, height=None, width=None)
    want = _images(_torch_pipeline(sd_folder, "StableDiffusionImg2ImgPipeline"), image=image, strength=0.8, height=None, width=None)
    assert want.std() > 0.05 and np.abs(got - want).mean() < PIXEL_TOLERANCE


def test_optimum_names_load_the_pipeline(sd_artifact: Artifact, reference_images: np.ndarray) -> None:
    from optibridge.onnxruntime import ORTStableDiffusionPipeline
    from optibridge.openvino import OVStableDiffusionPipeline

    ort_pipe = ORTStableDiffusionPipeline.from_pretrained(sd_artifact.path, provider="CPUExecutionProvider")
    ov_pipe = OVStableDiffusionPipeline.from_pretrained(sd_artifact.path, ov_config={"PERFORMANCE_HINT": "LATENCY"})
    assert (ort_pipe.backend, ov_pipe.backend) == ("ort", "openvino")
    assert np.abs(_images(ort_pipe) - reference_images).mean() < PIXEL_TOLERANCE
    with pytest.raises(BackendError, match="unknown provider"):
        ORTStableDiffusionPipeline.from_pretrained(sd_artifact.path, provider="ROCMExecutionProvider")


def test_task_named_loaders_pick_the_pipeline_class(sd_artifact: Artifact, sd_folder: Path, reference_images: np.ndarray) -> None:
    from optibridge import (
        OBDiffusionPipeline, OBPipelineForImage2Image, OBPipelineForInpainting, OBPipelineForText2Image,
        OBStableDiffusionImg2ImgPipeline, OBStableDiffusionPipeline,
    )
    from optibridge.onnxruntime import ORTPipelineForText2Image, ORTStableDiffusionPipeline
    from optibridge.openvino import OVDiffusionPipeline, OVPipelineForImage2Image, OVStableDiffusionImg2ImgPipeline

    pipe = OBPipelineForText2Image.from_pretrained(sd_artifact.path, backend="ort")
    assert type(pipe) is OBStableDiffusionPipeline and pipe.backend == "ort"
    assert np.abs(_images(pipe) - reference_images).mean() < PIXEL_TOLERANCE
    assert sd_artifact.metadata.task == "image-to-image"  # the task named at export decides for OBDiffusionPipeline
    assert type(OBDiffusionPipeline.from_pretrained(sd_artifact.path)) is OBStableDiffusionImg2ImgPipeline
    assert type(OBPipelineForImage2Image.from_pretrained(sd_artifact.path)) is OBStableDiffusionImg2ImgPipeline
    # the peers' names keep the peers' loading arguments
    ort_pipe = ORTPipelineForText2Image.from_pretrained(sd_artifact.path, provider="CPUExecutionProvider")
    assert type(ort_pipe) is ORTStableDiffusionPipeline and ort_pipe.backend == "ort"
    ov_pipe = OVPipelineForImage2Image.from_pretrained(sd_artifact.path, ov_config={"PERFORMANCE_HINT": "LATENCY"})
    assert type(ov_pipe) is OVStableDiffusionImg2ImgPipeline and ov_pipe.backend == "openvino"
    assert type(OVDiffusionPipeline.from_pretrained(sd_artifact.path)) is OVStableDiffusionImg2ImgPipeline
    assert type(OBPipelineForInpainting.from_pretrained(sd_artifact.path)).__name__ == "OBStableDiffusionInpaintPipeline"
    with pytest.raises(TypeError, match="call OBPipelineForText2Image.from_pretrained"):
        OBPipelineForText2Image()


def test_a_diffusers_folder_is_exported_on_load_validated_and_matches_pytorch(sd_folder: Path, reference_images: np.ndarray) -> None:
    from optibridge import OBStableDiffusionPipeline

    pipe = OBStableDiffusionPipeline.from_pretrained(sd_folder, backend="ort")  # once failed: no validator was passed
    assert pipe.artifact.metadata.validation["passed"] and pipe.artifact.metadata.task == "text-to-image"
    assert np.abs(_images(pipe) - reference_images).mean() < PIXEL_TOLERANCE


def test_task_named_loaders_read_a_diffusers_folder_and_refuse_other_artifacts(sd_folder: Path, exported: Any) -> None:
    from optibridge import OBPipelineForImage2Image, OBPipelineForText2Image, OBStableDiffusionPipeline
    from optibridge.diffusion.auto import pipeline_class_name

    assert pipeline_class_name(sd_folder, None) == "StableDiffusionPipeline"
    assert pipeline_class_name(sd_folder, "img2img") == "StableDiffusionImg2ImgPipeline"
    pipe = OBPipelineForText2Image.from_pretrained(sd_folder, backend="ort")  # exported on load, as the concrete class does
    assert type(pipe) is OBStableDiffusionPipeline and "vae_encoder" not in pipe.artifact.metadata.graphs
    with pytest.raises(ArtifactError, match="has no vae_encoder graph, which OBStableDiffusionImg2ImgPipeline needs"):
        OBPipelineForImage2Image.from_pretrained(pipe.artifact.path)  # exported for text-to-image
    with pytest.raises(ArtifactError, match="holds a 'feature-extraction' model, not a diffusion pipeline"):
        OBPipelineForText2Image.from_pretrained(exported("bert", "feature-extraction").path)


def test_openvino_reshape_fixes_static_shapes(sd_artifact: Artifact, reference_images: np.ndarray) -> None:
    from optibridge import OBStableDiffusionPipeline

    pipe = OBStableDiffusionPipeline.from_pretrained(sd_artifact.path, backend="openvino")
    pipe.reshape(batch_size=1, height=32, width=32, num_images_per_prompt=1)
    unet = pipe.unet.sessions["unet"].compiled
    assert all(port.get_partial_shape().is_static for port in unet.inputs)
    assert list(unet.inputs[0].get_shape()) == [2, 4, 16, 16]  # CFG doubles the batch; 32 px / VAE factor 2
    assert np.abs(_images(pipe) - reference_images).mean() < PIXEL_TOLERANCE
    with pytest.raises(InputError, match="static shapes"):
        _images(pipe, height=64, width=64)
    ort_pipe = OBStableDiffusionPipeline.from_pretrained(sd_artifact.path, backend="ort")
    with pytest.raises(BackendError, match="needs a backend that takes the static_shapes load option"):
        ort_pipe.reshape(batch_size=1, height=32, width=32)


# -- bad input ---------------------------------------------------------------------------------------

def test_size_not_a_multiple_of_the_vae_factor_is_an_error(sd_artifact: Artifact) -> None:
    from optibridge import OBStableDiffusionPipeline

    pipe = OBStableDiffusionPipeline.from_pretrained(sd_artifact.path)
    with pytest.raises(InputError, match="height=36 is not a multiple of 8"):
        _images(pipe, height=36)


def test_unsupported_family_and_missing_component_write_nothing(sd_folder: Path, tmp_path: Path) -> None:
    from optibridge import export

    index = json.loads((sd_folder / "model_index.json").read_text())
    sana = tmp_path / "sana"
    sana.mkdir()
    (sana / "model_index.json").write_text(json.dumps({**index, "_class_name": "SanaPipeline"}))
    with pytest.raises(UnsupportedModelError, match="SanaPipeline.*StableDiffusionPipeline"):
        export(sana, tmp_path / "out-sana")

    partial = tmp_path / "no-vae"
    shutil.copytree(sd_folder, partial, ignore=shutil.ignore_patterns("vae"))
    with pytest.raises(ModelNotFoundError, match="vae.*missing"):
        export(partial, tmp_path / "out-partial")
    no_entry = tmp_path / "no-unet-entry"
    shutil.copytree(sd_folder, no_entry)
    (no_entry / "model_index.json").write_text(json.dumps({k: v for k, v in index.items() if k != "unet"}))
    with pytest.raises(ModelNotFoundError, match="no 'unet' component"):
        export(no_entry, tmp_path / "out-no-entry")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["no-unet-entry", "no-vae", "sana"]  # nothing written


def test_pipeline_class_needs_its_graphs(sd_artifact: Artifact) -> None:
    from dataclasses import replace

    from optibridge.diffusion.pipelines import OBStableDiffusionImg2ImgPipeline

    graphs = {k: v for k, v in sd_artifact.metadata.graphs.items() if k != "vae_encoder"}
    text_only = Artifact(sd_artifact.path, replace(sd_artifact.metadata, graphs=graphs))
    with pytest.raises(ArtifactError, match="no vae_encoder graph.*--task image-to-image"):
        OBStableDiffusionImg2ImgPipeline._check_artifact(text_only)


def test_importing_optibridge_does_not_import_diffusers() -> None:
    code = ("import sys, optibridge, optibridge.exporter, optibridge.cli, optibridge.onnxruntime, optibridge.openvino, "
            "optibridge.diffusion; sys.exit(1 if 'diffusers' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def _run_example(folder: Path, artifact: Path) -> str:
    """examples/stable_diffusion.py on ``folder``: both schedulers' images within the tolerance of PyTorch's."""
    import os
    import re

    example = Path(__file__).parent.parent / "examples" / "stable_diffusion.py"
    done = subprocess.run(
        [sys.executable, str(example), str(folder), "--artifact", str(artifact), "--steps", "2", "--size", "32"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    diffs = [float(x) for x in re.findall(r"mean abs pixel diff vs PyTorch ([0-9.e+-]+)", done.stdout)]
    assert len(diffs) == 2 and max(diffs) < PIXEL_TOLERANCE, done.stdout
    return done.stdout


def test_example_script_matches_pytorch(sd_artifact: Artifact, sd_folder: Path) -> None:
    assert "swapped scheduler (EulerDiscreteScheduler)" in _run_example(sd_folder, sd_artifact.path)


def test_quantize_records_image_accuracy_against_the_float_pipeline(sd_artifact: Artifact, tmp_path: Path) -> None:
    from optibridge import QuantizationConfig, quantize

    result = quantize(sd_artifact.path, QuantizationConfig(mode="dynamic"), tmp_path / "int8")
    assert set(result.accuracy) == set(sd_artifact.metadata.graphs)
    images = result.step["image_accuracy"]
    # int8 changed the images (a real comparison), but not by much: measured 6.5e-3 mean, 41 dB here
    assert 1e-4 < images["mean_abs_pixel_diff"] < 0.03 and images["psnr_db"] > 30
    assert Artifact.load(tmp_path / "int8").metadata.steps[-1]["image_accuracy"]["psnr_db"] == images["psnr_db"]


def test_sdxl_two_text_encoders_match_pytorch_and_reshape(tmp_path: Path) -> None:
    from optibridge import OBStableDiffusionXLPipeline, export

    folder = build_tiny_sdxl(tmp_path / "tiny-sdxl")
    result = export(folder, tmp_path / "sdxl-artifact")
    graphs = result.artifact.metadata.graphs
    assert list(graphs) == ["text_encoder", "text_encoder_2", "unet", "vae_decoder"] and result.validation.passed
    assert {"text_embeds", "time_ids"} <= set(graphs["unet"].input_names)  # SDXL's added conditioning
    assert "hidden_states.1" in graphs["text_encoder_2"].output_names  # SDXL reads the penultimate layer
    want = _images(_torch_pipeline(folder, "StableDiffusionXLPipeline"))
    assert want.std() > 0.05
    pipe = OBStableDiffusionXLPipeline.from_pretrained(result.artifact.path, backend="openvino")
    assert np.abs(_images(pipe) - want).mean() < PIXEL_TOLERANCE
    pipe.reshape(batch_size=1, height=32, width=32)
    assert all(port.get_partial_shape().is_static for port in pipe.unet.sessions["unet"].compiled.inputs)
    assert np.abs(_images(pipe) - want).mean() < PIXEL_TOLERANCE

    # optimize/quantize feed SDXL's second text encoder and the UNet's added conditioning, and compare
    # images with the XL pipeline (both once failed on SDXL artifacts)
    from optibridge import QuantizationConfig, quantize

    quantized = quantize(result.artifact.path, QuantizationConfig(mode="int8-weights"), tmp_path / "sdxl-w8", backend="openvino")
    assert {"text_encoder_2", "unet"} <= {name for name, graph in quantized.report["graphs"].items() if graph["quantized"]}
    images = quantized.step["image_accuracy"]
    assert images["images"] >= 1 and 30 <= images["psnr_db"] < 100


def test_inpainting_matches_pytorch(tmp_path: Path) -> None:
    from optibridge import OBStableDiffusionInpaintPipeline, export

    folder = build_tiny_sd(tmp_path / "tiny-inpaint", task="inpainting")
    result = export(folder, tmp_path / "inpaint-artifact")  # task inferred from StableDiffusionInpaintPipeline
    assert result.task == "inpainting" and "vae_encoder" in result.artifact.metadata.graphs
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    pipe = OBStableDiffusionInpaintPipeline.from_pretrained(result.artifact.path)
    got = _images(pipe, image=image, mask_image=mask)
    want = _images(_torch_pipeline(folder, "StableDiffusionInpaintPipeline"), image=image, mask_image=mask)
    assert want.std() > 0.05 and np.abs(got - want).mean() < PIXEL_TOLERANCE


def test_sdxl_inpainting_matches_pytorch_under_every_name(tmp_path: Path) -> None:
    from optibridge import OBStableDiffusionXLInpaintPipeline, export
    from optibridge.onnxruntime import ORTStableDiffusionXLInpaintPipeline
    from optibridge.openvino import OVStableDiffusionXLInpaintPipeline

    folder = build_tiny_sdxl(tmp_path / "tiny-sdxl-inpaint", task="inpainting")
    result = export(folder, tmp_path / "sdxl-inpaint-artifact")  # task inferred from StableDiffusionXLInpaintPipeline
    assert result.task == "inpainting" and {"text_encoder_2", "vae_encoder"} <= set(result.artifact.metadata.graphs)
    assert issubclass(ORTStableDiffusionXLInpaintPipeline, OBStableDiffusionXLInpaintPipeline)
    assert issubclass(OVStableDiffusionXLInpaintPipeline, OBStableDiffusionXLInpaintPipeline)
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    want = _images(_torch_pipeline(folder, "StableDiffusionXLInpaintPipeline"), image=image, mask_image=mask)
    got = _images(ORTStableDiffusionXLInpaintPipeline.from_pretrained(result.artifact.path), image=image, mask_image=mask)
    assert want.std() > 0.05 and np.abs(got - want).mean() < PIXEL_TOLERANCE
    with pytest.raises(ArtifactError, match="stable-diffusion-xl"):  # the SD 1.x class refuses an SDXL artifact
        __import__("optibridge").OBStableDiffusionInpaintPipeline.from_pretrained(result.artifact.path, backend="ort")


def test_loading_a_pipeline_checks_its_int8_weights_against_the_cpu(sd_artifact: Artifact, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pipeline loader runs the same saturation check as OBModelFor* (tests/test_saturation.py has its logic)."""
    from optibridge import OBStableDiffusionPipeline

    seen: list[Any] = []
    monkeypatch.setattr("optibridge.diffusion.pipelines.warn_if_int8_may_saturate", seen.append)
    OBStableDiffusionPipeline.from_pretrained(sd_artifact.path)
    assert seen == [sd_artifact.metadata.steps]


def test_latent_consistency_models_match_pytorch_under_every_name(tmp_path: Path) -> None:
    """LCM: the UNet takes the guidance scale's embedding (timestep_cond) and the pipeline runs no
    classifier-free guidance batch; text-to-image and img2img match diffusers' LCM pipelines, a
    reshaped OpenVINO pipeline runs its UNet at the image batch, and int8 weights keep the images."""
    from optibridge import OBLatentConsistencyModelImg2ImgPipeline, OBPipelineForImage2Image, QuantizationConfig, export, quantize
    from optibridge.onnxruntime import ORTLatentConsistencyModelPipeline, ORTPipelineForText2Image
    from optibridge.openvino import OVLatentConsistencyModelPipeline

    folder = build_tiny_lcm(tmp_path / "tiny-lcm")
    result = export(folder, tmp_path / "lcm-artifact", task="image-to-image")  # the family from LatentConsistencyModelPipeline
    graphs = result.artifact.metadata.graphs
    assert result.validation.passed and "vae_encoder" in graphs
    assert graphs["unet"].input_names == ["sample", "timestep", "encoder_hidden_states", "timestep_cond"]
    lcm = dict(num_inference_steps=4, guidance_scale=8.5)
    want = _images(_torch_pipeline(folder, "LatentConsistencyModelPipeline"), **lcm)
    assert want.std() > 0.05
    for cls in (ORTLatentConsistencyModelPipeline, OVLatentConsistencyModelPipeline, ORTPipelineForText2Image):
        pipe = cls.from_pretrained(result.artifact.path)
        assert type(pipe).__name__.endswith("LatentConsistencyModelPipeline")
        assert np.abs(_images(pipe, **lcm) - want).mean() < PIXEL_TOLERANCE

    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    want_img2img = _images(_torch_pipeline(folder, "LatentConsistencyModelImg2ImgPipeline"), image=image, strength=0.75, **lcm)
    pipe = OBPipelineForImage2Image.from_pretrained(result.artifact.path)
    assert isinstance(pipe, OBLatentConsistencyModelImg2ImgPipeline)
    assert np.abs(_images(pipe, image=image, strength=0.75, **lcm) - want_img2img).mean() < PIXEL_TOLERANCE

    reshaped = OVLatentConsistencyModelPipeline.from_pretrained(result.artifact.path).reshape(batch_size=1, height=32, width=32)
    unet_batch = [port.get_partial_shape()[0] for port in reshaped.unet.sessions["unet"].compiled.inputs]
    assert all(dim.is_static and dim.get_length() == 1 for dim in unet_batch)  # one image, no guidance copy
    assert np.abs(_images(reshaped, **lcm) - want).mean() < PIXEL_TOLERANCE

    quantized = quantize(result.artifact.path, QuantizationConfig(mode="int8-weights"), tmp_path / "lcm-w8", backend="openvino")
    assert "unet" in {name for name, graph in quantized.report["graphs"].items() if graph["quantized"]}
    images = quantized.step["image_accuracy"]
    assert images["images"] >= 1 and 20 <= images["psnr_db"] < 100


TWO_PROMPTS = ["a cat on the mat", "a red cube"]


def _assert_text_to_image_matches(folder: Path, artifact: Path, family: str, loaders: tuple[Any, ...], **call: Any) -> np.ndarray:
    """Every loader in ``loaders`` builds ``{family}Pipeline`` and draws diffusers' images for two prompts; returns them."""
    want = _images(_torch_pipeline(folder, f"{family}Pipeline"), TWO_PROMPTS, **call)
    assert want.shape == (2, 32, 32, 3) and want.std() > 0.05 and np.abs(want[0] - want[1]).mean() > 0.01
    for cls in loaders:
        pipe = cls.from_pretrained(artifact)
        assert type(pipe).__name__.endswith(f"{family}Pipeline")
        assert np.abs(_images(pipe, TWO_PROMPTS, **call) - want).mean() < PIXEL_TOLERANCE
    return want


def _assert_img2img_and_inpainting_match(folder: Path, artifact: Path, family: str, img2img_class: type, inpaint_loader: Any,
                                         **call: Any) -> None:
    """The task-named img2img loader picks ``img2img_class`` and ``inpaint_loader`` loads the inpainting
    class; both give diffusers' ``{family}Img2ImgPipeline`` / ``{family}InpaintPipeline`` images."""
    from optibridge import OBPipelineForImage2Image

    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    want_img2img = _images(_torch_pipeline(folder, f"{family}Img2ImgPipeline"), image=image, strength=0.6, **call)
    pipe = OBPipelineForImage2Image.from_pretrained(artifact)
    assert isinstance(pipe, img2img_class)
    assert np.abs(_images(pipe, image=image, strength=0.6, **call) - want_img2img).mean() < PIXEL_TOLERANCE
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    want_inpaint = _images(_torch_pipeline(folder, f"{family}InpaintPipeline"), image=image, mask_image=mask, **call)
    got = _images(inpaint_loader.from_pretrained(artifact), image=image, mask_image=mask, **call)
    assert want_inpaint.std() > 0.05 and np.abs(got - want_inpaint).mean() < PIXEL_TOLERANCE


def test_stable_diffusion_3_matches_pytorch_under_every_name(tmp_path: Path) -> None:
    """SD3: two CLIP encoders (penultimate states) and a T5 encoder, the MMDiT transformer in place of
    the UNet, a 16-channel VAE with a shift factor, the flow-matching scheduler. Text-to-image, img2img
    and inpainting match diffusers' SD3 pipelines on both backends; a reshaped OpenVINO pipeline fixes
    the T5 prompt length too; dynamic int8 keeps the images; what the graph cannot run is refused."""
    from optibridge import OBStableDiffusion3Img2ImgPipeline, QuantizationConfig, export, quantize
    from optibridge.onnxruntime import ORTPipelineForText2Image, ORTStableDiffusion3Pipeline
    from optibridge.openvino import OVStableDiffusion3InpaintPipeline, OVStableDiffusion3Pipeline

    folder = build_tiny_sd3(tmp_path / "tiny-sd3", task="image-to-image")
    result = export(folder, tmp_path / "sd3-artifact")  # family and task from StableDiffusion3Img2ImgPipeline
    graphs = result.artifact.metadata.graphs
    assert result.task == "image-to-image" and result.validation.passed
    assert list(graphs) == ["text_encoder", "text_encoder_2", "text_encoder_3", "transformer", "vae_decoder", "vae_encoder"]
    assert graphs["transformer"].input_names == ["hidden_states", "timestep", "encoder_hidden_states", "pooled_projections"]
    assert graphs["text_encoder_3"].output_names == ["last_hidden_state"] and "hidden_states.1" in graphs["text_encoder"].output_names
    sd3 = dict(max_sequence_length=SD3_T5_TOKENS)
    want = _assert_text_to_image_matches(folder, result.artifact.path, "StableDiffusion3",
                                         (ORTStableDiffusion3Pipeline, OVStableDiffusion3Pipeline, ORTPipelineForText2Image), **sd3)

    _assert_img2img_and_inpainting_match(folder, result.artifact.path, "StableDiffusion3", OBStableDiffusion3Img2ImgPipeline,
                                         OVStableDiffusion3InpaintPipeline, **sd3)

    reshaped = OVStableDiffusion3Pipeline.from_pretrained(result.artifact.path).reshape(batch_size=2, height=32, width=32, **sd3)
    shapes = {port.get_any_name(): port.get_partial_shape().to_shape() for port in reshaped.transformer.sessions["transformer"].compiled.inputs}
    assert list(shapes["hidden_states"]) == [4, 16, 16, 16]  # 2 images doubled for guidance, 16 channels, 32 px / VAE scale 2
    assert list(shapes["encoder_hidden_states"])[:2] == [4, 16 + SD3_T5_TOKENS]  # CLIP's 16 tokens then T5's
    assert np.abs(_images(reshaped, TWO_PROMPTS) - want).mean() < PIXEL_TOLERANCE  # the fixed T5 length is filled in
    with pytest.raises(InputError, match="max_sequence_length"):
        _images(reshaped, TWO_PROMPTS, max_sequence_length=SD3_T5_TOKENS + 8)
    with pytest.raises(BackendError, match="skip_layers"):  # skip-layer guidance needs the PyTorch transformer
        _images(ORTStableDiffusion3Pipeline.from_pretrained(result.artifact.path), skip_guidance_layers=[1], skip_layer_guidance_start=0.0,
                skip_layer_guidance_stop=1.0, **sd3)

    assert "swapped scheduler (FlowMatchEulerDiscreteScheduler)" in _run_example(folder, result.artifact.path)

    quantized = quantize(result.artifact.path, QuantizationConfig(mode="dynamic"), tmp_path / "sd3-dyn", backend="ort")
    assert {"text_encoder_3", "transformer"} <= {name for name, graph in quantized.report["graphs"].items() if graph["quantized"]}
    images = quantized.step["image_accuracy"]
    assert images["images"] >= 1 and 30 <= images["psnr_db"] < 100


def test_stable_diffusion_3_without_its_t5_encoder(tmp_path: Path) -> None:
    """An SD3 folder saved with text_encoder_3=None (to save memory) exports without that graph, and the
    pipeline feeds the transformer zeros in its place, as diffusers does: same images, reshaped too."""
    from optibridge import export
    from optibridge.openvino import OVStableDiffusion3Pipeline

    folder = build_tiny_sd3(tmp_path / "tiny-sd3-no-t5", t5=False)
    result = export(folder, tmp_path / "sd3-no-t5")
    assert list(result.artifact.metadata.graphs) == ["text_encoder", "text_encoder_2", "transformer", "vae_decoder"]
    # diffusers loads such a folder only when told the T5 parts are None
    reference = _torch_pipeline(folder, "StableDiffusion3Pipeline", text_encoder_3=None, tokenizer_3=None)
    want = _images(reference, TWO_PROMPTS, max_sequence_length=SD3_T5_TOKENS)
    assert want.std() > 0.05 and np.abs(want[0] - want[1]).mean() > 0.01
    pipe = OVStableDiffusion3Pipeline.from_pretrained(result.artifact.path)
    assert np.abs(_images(pipe, TWO_PROMPTS, max_sequence_length=SD3_T5_TOKENS) - want).mean() < PIXEL_TOLERANCE
    reshaped = OVStableDiffusion3Pipeline.from_pretrained(result.artifact.path).reshape(batch_size=2, height=32, width=32,
                                                                                       max_sequence_length=SD3_T5_TOKENS)
    assert reshaped.text_encoder_3 is None and reshaped.tokenizer_3 is None
    assert np.abs(_images(reshaped, TWO_PROMPTS) - want).mean() < PIXEL_TOLERANCE


def test_flux_matches_pytorch_under_every_name(tmp_path: Path) -> None:
    """FLUX.1 (dev style: the guidance scale embedded): a CLIP encoder's pooled output and a T5 encoder,
    the Flux transformer on 2×2-packed latent sequences with rotary position ids (exported with the
    dynamo exporter: TorchScript has no RMSNorm at opset 20). Text-to-image, img2img and inpainting
    match diffusers' Flux pipelines on both backends; a reshaped OpenVINO pipeline runs the transformer
    at the image batch (no guidance copy); ORT attention fusion and dynamic int8 keep the images."""
    from optibridge import OBFluxImg2ImgPipeline, OptimizationConfig, QuantizationConfig, export, optimize, quantize
    from optibridge.onnxruntime import ORTFluxPipeline, ORTPipelineForText2Image
    from optibridge.openvino import OVFluxInpaintPipeline, OVFluxPipeline

    folder = build_tiny_flux(tmp_path / "tiny-flux", task="image-to-image")
    result = export(folder, tmp_path / "flux-artifact")
    graphs = result.artifact.metadata.graphs
    assert result.task == "image-to-image" and result.validation.passed and result.artifact.metadata.exporter == "dynamo"
    assert list(graphs) == ["text_encoder", "text_encoder_2", "transformer", "vae_decoder", "vae_encoder"]
    assert graphs["transformer"].input_names == ["hidden_states", "timestep", "encoder_hidden_states", "pooled_projections",
                                                 "img_ids", "txt_ids", "guidance"]
    flux = dict(max_sequence_length=SD3_T5_TOKENS, guidance_scale=3.5)
    want = _assert_text_to_image_matches(folder, result.artifact.path, "Flux", (ORTFluxPipeline, OVFluxPipeline, ORTPipelineForText2Image),
                                         **flux)

    _assert_img2img_and_inpainting_match(folder, result.artifact.path, "Flux", OBFluxImg2ImgPipeline, OVFluxInpaintPipeline, **flux)

    reshaped = OVFluxPipeline.from_pretrained(result.artifact.path).reshape(batch_size=2, height=32, width=32,
                                                                            max_sequence_length=SD3_T5_TOKENS)
    shapes = {port.get_any_name(): list(port.get_partial_shape().to_shape())
              for port in reshaped.transformer.sessions["transformer"].compiled.inputs}
    assert shapes["hidden_states"] == [2, 64, 16]  # no guidance copy; 32 px / VAE scale 2 = 16×16 latents, packed 2×2
    assert shapes["encoder_hidden_states"][:2] == [2, SD3_T5_TOKENS] and shapes["txt_ids"] == [SD3_T5_TOKENS, 3]
    assert np.abs(_images(reshaped, TWO_PROMPTS, guidance_scale=3.5) - want).mean() < PIXEL_TOLERANCE
    with pytest.raises(InputError, match="max_sequence_length"):
        _images(reshaped, TWO_PROMPTS, guidance_scale=3.5, max_sequence_length=SD3_T5_TOKENS + 8)

    optimized = optimize(result.artifact.path, OptimizationConfig(level=2), tmp_path / "flux-o2", backend="ort")
    assert optimized.report["graphs"]["transformer"]["attention_fused"]
    assert optimized.step["image_accuracy"]["psnr_db"] > 80
    quantized = quantize(result.artifact.path, QuantizationConfig(mode="dynamic"), tmp_path / "flux-dyn", backend="ort")
    assert {"text_encoder_2", "transformer"} <= {name for name, graph in quantized.report["graphs"].items() if graph["quantized"]}
    images = quantized.step["image_accuracy"]
    assert images["images"] >= 1 and 30 <= images["psnr_db"] < 100


def test_max_sequence_length_is_refused_where_there_is_no_t5_encoder(sd_artifact: Artifact) -> None:
    from optibridge import OBStableDiffusionPipeline

    pipe = OBStableDiffusionPipeline.from_pretrained(sd_artifact.path, backend="openvino")
    with pytest.raises(InputError, match="no T5 encoder"):
        pipe.reshape(batch_size=1, height=32, width=32, max_sequence_length=77)
