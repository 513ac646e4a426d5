"""Which diffusers pipelines optibridge exports, as data: pipeline class → family and task, the
components each needs, and the graphs each task exports. Imports no diffusers (the core reads it).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelNotFoundError, UnsupportedModelError

MODEL_INDEX = "model_index.json"

DIFFUSION_TASKS = ("text-to-image", "image-to-image", "inpainting")
TASK_ALIASES = {"stable-diffusion": "text-to-image", "text2img": "text-to-image", "img2img": "image-to-image",
                "inpaint": "inpainting"}


@dataclass(frozen=True)
class PipelineFamily:
    name: str
    components: tuple[str, ...]
    """model_index.json entries that must be present (a folder each, except the scheduler's config)."""
    tasks: dict[str, str]
    """task → the diffusers pipeline class that runs it."""
    text_encoders: tuple[str, ...] = ("text_encoder",)
    tokenizers: tuple[str, ...] = ("tokenizer",)
    hidden_states: bool = False
    """Whether the pipeline reads the text encoders' per-layer hidden states (SDXL takes the penultimate)."""
    guidance_batch: bool = True
    """Classifier-free guidance doubles the denoiser batch (False: LCM embeds the guidance scale instead)."""
    safety_checker: bool = True
    """The pipeline class takes ``safety_checker`` / ``feature_extractor`` (SD 1.x, LCM); SDXL takes a watermarker."""
    denoiser: str = "unet"
    """The denoising model's component and graph name: ``unet``, or ``transformer`` (SD3, Flux)."""
    transformer: str = ""
    """Which transformer the denoiser is: ``sd3`` (MMDiT on patched latents) or ``flux`` (on 2×2-packed latent sequences)."""
    t5_length: int = 0
    """The T5 prompt length the pipeline pads to by default (``max_sequence_length``); 0 without a T5 encoder."""
    optional: tuple[str, ...] = ()
    """Components a folder may save as null (SD3 without its T5 encoder: the pipeline feeds zeros in its place)."""

    @property
    def required_text_encoders(self) -> tuple[str, ...]:
        return tuple(name for name in self.text_encoders if name not in self.optional)
    watermarker: bool = True
    """The pipeline class takes ``add_watermarker`` (SDXL; off: it needs the invisible-watermark package)."""

    @property
    def pipeline_kwargs(self) -> dict[str, Any]:
        """What the pipeline class is built with besides its models: no safety checker, no watermark."""
        if self.safety_checker:
            return {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
        return {"add_watermarker": False} if self.watermarker else {}


STABLE_DIFFUSION = PipelineFamily(
    "stable-diffusion",
    ("text_encoder", "tokenizer", "unet", "vae", "scheduler"),
    {"text-to-image": "StableDiffusionPipeline", "image-to-image": "StableDiffusionImg2ImgPipeline",
     "inpainting": "StableDiffusionInpaintPipeline"},
)
STABLE_DIFFUSION_XL = PipelineFamily(
    "stable-diffusion-xl",
    ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "unet", "vae", "scheduler"),
    {"text-to-image": "StableDiffusionXLPipeline", "image-to-image": "StableDiffusionXLImg2ImgPipeline",
     "inpainting": "StableDiffusionXLInpaintPipeline"},
    text_encoders=("text_encoder", "text_encoder_2"), tokenizers=("tokenizer", "tokenizer_2"), hidden_states=True,
    safety_checker=False,
)
# Latent Consistency Models (SD 1.x distilled to 2-8 steps): the SD components, a UNet that also takes the
# guidance scale's embedding (``timestep_cond``), no classifier-free guidance batch.
LATENT_CONSISTENCY = PipelineFamily(
    "latent-consistency",
    ("text_encoder", "tokenizer", "unet", "vae", "scheduler"),
    {"text-to-image": "LatentConsistencyModelPipeline", "image-to-image": "LatentConsistencyModelImg2ImgPipeline"},
    guidance_batch=False,
)
# Stable Diffusion 3: two CLIP encoders and a T5 encoder, the MMDiT transformer as denoiser (latents
# in patches), a 16-channel VAE and a flow-matching scheduler.
STABLE_DIFFUSION_3 = PipelineFamily(
    "stable-diffusion-3",
    ("text_encoder", "text_encoder_2", "text_encoder_3", "tokenizer", "tokenizer_2", "tokenizer_3", "transformer", "vae", "scheduler"),
    {"text-to-image": "StableDiffusion3Pipeline", "image-to-image": "StableDiffusion3Img2ImgPipeline",
     "inpainting": "StableDiffusion3InpaintPipeline"},
    text_encoders=("text_encoder", "text_encoder_2", "text_encoder_3"), tokenizers=("tokenizer", "tokenizer_2", "tokenizer_3"),
    hidden_states=True, safety_checker=False, denoiser="transformer", watermarker=False, transformer="sd3", t5_length=256,
    optional=("text_encoder_3", "tokenizer_3"),
)
# FLUX.1: a CLIP encoder (pooled output only) and a T5 encoder, the Flux transformer on 2×2-packed latent
# sequences with rotary position ids (dev embeds the guidance scale: no guidance batch).
FLUX = PipelineFamily(
    "flux",
    ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "transformer", "vae", "scheduler"),
    {"text-to-image": "FluxPipeline", "image-to-image": "FluxImg2ImgPipeline", "inpainting": "FluxInpaintPipeline"},
    text_encoders=("text_encoder", "text_encoder_2"), tokenizers=("tokenizer", "tokenizer_2"), guidance_batch=False,
    safety_checker=False, denoiser="transformer", watermarker=False, transformer="flux", t5_length=512,
)
FAMILIES = {f.name: f for f in (STABLE_DIFFUSION, STABLE_DIFFUSION_XL, LATENT_CONSISTENCY, STABLE_DIFFUSION_3, FLUX)}
PIPELINE_CLASSES: dict[str, tuple[PipelineFamily, str]] = {
    cls: (family, task) for family in FAMILIES.values() for task, cls in family.tasks.items()
}
"""diffusers pipeline class name → (family, task), for task inference from model_index.json."""


def graphs_for(task: str, family: PipelineFamily = STABLE_DIFFUSION) -> tuple[str, ...]:
    """The graphs an artifact for ``task`` must hold: the VAE encoder only where images go in; an optional
    text encoder (SD3's T5) where the folder had it."""
    base = (*family.required_text_encoders, family.denoiser, "vae_decoder")
    return base + ("vae_encoder",) if task in ("image-to-image", "inpainting") else base


def is_pipeline_folder(model: str | os.PathLike[str]) -> bool:
    """A local diffusers pipeline folder (written by ``DiffusionPipeline.save_pretrained``)."""
    return (Path(model).expanduser() / MODEL_INDEX).is_file()


def normalize_task(task: str) -> str:
    resolved = TASK_ALIASES.get(task, task)
    if resolved not in DIFFUSION_TASKS:
        raise UnsupportedModelError(f"unknown task {task!r} for a diffusion pipeline; choose one of: {', '.join(DIFFUSION_TASKS)}")
    return resolved


@dataclass(frozen=True)
class PipelineSource:
    """A pipeline folder, checked: its family, its task, and its model_index.json."""

    path: Path
    family: PipelineFamily
    task: str
    task_inferred: bool
    pipeline_class: str
    """The class named in model_index.json."""
    index: dict[str, Any]
    absent: tuple[str, ...] = ()
    """Optional components the folder saved as null (SD3 without T5)."""

    @property
    def text_encoders(self) -> tuple[str, ...]:
        return tuple(name for name in self.family.text_encoders if name not in self.absent)

    @property
    def tokenizers(self) -> tuple[str, ...]:
        return tuple(name for name in self.family.tokenizers if name not in self.absent)


def inspect_pipeline(model: str | os.PathLike[str], task: str | None = None) -> PipelineSource:
    """Read ``model_index.json``; an error naming the problem for an unsupported family or a missing component."""
    path = Path(model).expanduser()
    index_file = path / MODEL_INDEX
    try:
        index = json.loads(index_file.read_text())
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"cannot read {index_file} ({exc}); pass a folder written by DiffusionPipeline.save_pretrained") from exc
    if not isinstance(index, dict):
        raise ModelNotFoundError(f"{index_file} is not a JSON object; pass a folder written by DiffusionPipeline.save_pretrained")
    class_name = str(index.get("_class_name", ""))
    if class_name not in PIPELINE_CLASSES:
        supported = ", ".join(sorted(PIPELINE_CLASSES))
        raise UnsupportedModelError(
            f"{path} holds a {class_name or 'pipeline without _class_name'}; optibridge exports these diffusers pipelines: {supported}"
        )
    family, inferred = PIPELINE_CLASSES[class_name]
    resolved = normalize_task(task) if task else inferred
    if resolved not in family.tasks:
        raise UnsupportedModelError(f"the {family.name} family has no task {resolved!r}; choose one of: {', '.join(family.tasks)}")
    absent = []
    for component in family.components:
        entry = index.get(component)
        if component in family.optional and entry in ([None, None], None):
            absent.append(component)
            continue
        if not isinstance(entry, list) or len(entry) != 2 or entry[0] is None:
            raise ModelNotFoundError(
                f"{index_file} has no {component!r} component, which a {class_name} needs; "
                "save the complete pipeline (pipe.save_pretrained) and export that folder"
            )
        folder = path / component
        config = "scheduler_config.json" if component == "scheduler" else None
        if not folder.is_dir() or (config and not (folder / config).is_file()):
            raise ModelNotFoundError(f"{folder} is missing (model_index.json lists {component!r}); the pipeline folder is incomplete")
    return PipelineSource(path, family, resolved, task is None, class_name, index, tuple(absent))
