"""Diffusion pipelines (Stable Diffusion, SDXL, Latent Consistency Models) exported to optibridge artifacts and run on any backend.

``import optibridge.diffusion`` imports no diffusers: the pipeline classes load it on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {
    "OBStableDiffusionPipeline": "optibridge.diffusion.pipelines",
    "OBStableDiffusionImg2ImgPipeline": "optibridge.diffusion.pipelines",
    "OBStableDiffusionInpaintPipeline": "optibridge.diffusion.pipelines",
    "OBStableDiffusionXLPipeline": "optibridge.diffusion.pipelines",
    "OBStableDiffusionXLImg2ImgPipeline": "optibridge.diffusion.pipelines",
    "OBStableDiffusionXLInpaintPipeline": "optibridge.diffusion.pipelines",
    "OBLatentConsistencyModelPipeline": "optibridge.diffusion.pipelines",
    "OBLatentConsistencyModelImg2ImgPipeline": "optibridge.diffusion.pipelines",
    "OBStableDiffusion3Pipeline": "optibridge.diffusion.pipelines",
    "OBStableDiffusion3Img2ImgPipeline": "optibridge.diffusion.pipelines",
    "OBStableDiffusion3InpaintPipeline": "optibridge.diffusion.pipelines",
    "OBFluxPipeline": "optibridge.diffusion.pipelines",
    "OBFluxImg2ImgPipeline": "optibridge.diffusion.pipelines",
    "OBFluxInpaintPipeline": "optibridge.diffusion.pipelines",
    "export_pipeline": "optibridge.diffusion.export",
    "OBDiffusionPipeline": "optibridge.diffusion.auto",
    "OBPipelineForText2Image": "optibridge.diffusion.auto",
    "OBPipelineForImage2Image": "optibridge.diffusion.auto",
    "OBPipelineForInpainting": "optibridge.diffusion.auto",
}
__all__ = [  # the names of _LAZY, spelled out so that linters see them
    "OBStableDiffusionImg2ImgPipeline", "OBStableDiffusionInpaintPipeline", "OBStableDiffusionPipeline",
    "OBStableDiffusionXLImg2ImgPipeline", "OBStableDiffusionXLInpaintPipeline", "OBStableDiffusionXLPipeline", "export_pipeline",
    "OBLatentConsistencyModelPipeline", "OBLatentConsistencyModelImg2ImgPipeline",
    "OBStableDiffusion3Pipeline", "OBStableDiffusion3Img2ImgPipeline", "OBStableDiffusion3InpaintPipeline",
    "OBFluxPipeline", "OBFluxImg2ImgPipeline", "OBFluxInpaintPipeline",
    "OBDiffusionPipeline", "OBPipelineForText2Image", "OBPipelineForImage2Image", "OBPipelineForInpainting",
]

if TYPE_CHECKING:
    from .auto import OBDiffusionPipeline, OBPipelineForImage2Image, OBPipelineForInpainting, OBPipelineForText2Image
    from .export import export_pipeline
    from .pipelines import (
        OBLatentConsistencyModelImg2ImgPipeline, OBLatentConsistencyModelPipeline, OBStableDiffusionImg2ImgPipeline, OBStableDiffusionInpaintPipeline, OBStableDiffusionPipeline, OBStableDiffusionXLImg2ImgPipeline,
        OBFluxImg2ImgPipeline, OBFluxInpaintPipeline, OBFluxPipeline,
        OBStableDiffusion3Img2ImgPipeline, OBStableDiffusion3InpaintPipeline, OBStableDiffusion3Pipeline,
        OBStableDiffusionXLInpaintPipeline, OBStableDiffusionXLPipeline,
    )


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'optibridge.diffusion' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
