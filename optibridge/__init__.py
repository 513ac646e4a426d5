"""optibridge: export transformers models to ONNX and run them faster, as drop-in replacements.

``import optibridge`` is cheap and imports no runtime: the public names below load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

_LAZY = {
    "export": "optibridge.exporter",
    "ExportResult": "optibridge.exporter",
    "Artifact": "optibridge.artifact",
    "get_registry": "optibridge.backends",
    "OBModel": "optibridge.modeling",
    "OBModelForFeatureExtraction": "optibridge.modeling",
    "OBModelForSequenceClassification": "optibridge.modeling",
    "OBModelForTokenClassification": "optibridge.modeling",
    "OBModelForQuestionAnswering": "optibridge.modeling",
    "OBModelForMaskedLM": "optibridge.modeling",
    "OBModelForMultipleChoice": "optibridge.modeling",
    "OBModelForImageClassification": "optibridge.modeling",
    "OBModelForCTC": "optibridge.modeling",
    "OBModelForAudioClassification": "optibridge.modeling",
    "OBModelForAudioFrameClassification": "optibridge.modeling",
    "OBModelForAudioXVector": "optibridge.modeling",
    "OBModelForSemanticSegmentation": "optibridge.modeling",
    "OBModelForObjectDetection": "optibridge.modeling",
    "OBModelForZeroShotImageClassification": "optibridge.modeling",
    "OBModelForImageToImage": "optibridge.modeling",
    "OBModelForCustomTasks": "optibridge.modeling",
    "OBModelForCausalLM": "optibridge.modeling",
    "OBModelForSeq2SeqLM": "optibridge.modeling",
    "OBModelForSpeechSeq2Seq": "optibridge.modeling",
    "OBModelForVision2Seq": "optibridge.modeling",
    "OBModelForPix2Struct": "optibridge.modeling",
    "OBModelForVisualCausalLM": "optibridge.modeling",
    "OBStableDiffusionPipeline": "optibridge.diffusion",
    "OBStableDiffusionImg2ImgPipeline": "optibridge.diffusion",
    "OBStableDiffusionInpaintPipeline": "optibridge.diffusion",
    "OBStableDiffusionXLPipeline": "optibridge.diffusion",
    "OBStableDiffusionXLImg2ImgPipeline": "optibridge.diffusion",
    "OBStableDiffusionXLInpaintPipeline": "optibridge.diffusion",
    "OBLatentConsistencyModelPipeline": "optibridge.diffusion",
    "OBLatentConsistencyModelImg2ImgPipeline": "optibridge.diffusion",
    "OBStableDiffusion3Pipeline": "optibridge.diffusion",
    "OBStableDiffusion3Img2ImgPipeline": "optibridge.diffusion",
    "OBStableDiffusion3InpaintPipeline": "optibridge.diffusion",
    "OBFluxPipeline": "optibridge.diffusion",
    "OBFluxImg2ImgPipeline": "optibridge.diffusion",
    "OBFluxInpaintPipeline": "optibridge.diffusion",
    "OBDiffusionPipeline": "optibridge.diffusion",
    "OBPipelineForText2Image": "optibridge.diffusion",
    "OBPipelineForImage2Image": "optibridge.diffusion",
    "OBPipelineForInpainting": "optibridge.diffusion",
    "OBModelForSentenceEmbedding": "optibridge.modeling",
    "optimize": "optibridge.steps",
    "quantize": "optibridge.steps",
    "OptimizationConfig": "optibridge.steps",
    "QuantizationConfig": "optibridge.steps",
    "CalibrationConfig": "optibridge.steps",
    "AccuracyBudget": "optibridge.accuracy",
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:
    from .accuracy import AccuracyBudget
    from .artifact import Artifact
    from .backends import get_registry
    from .diffusion import (
        OBDiffusionPipeline, OBLatentConsistencyModelImg2ImgPipeline, OBLatentConsistencyModelPipeline, OBPipelineForImage2Image,
        OBPipelineForInpainting, OBPipelineForText2Image, OBStableDiffusionImg2ImgPipeline, OBStableDiffusionInpaintPipeline, OBStableDiffusionPipeline, OBStableDiffusionXLImg2ImgPipeline,
        OBFluxImg2ImgPipeline, OBFluxInpaintPipeline, OBFluxPipeline,
        OBStableDiffusion3Img2ImgPipeline, OBStableDiffusion3InpaintPipeline, OBStableDiffusion3Pipeline,
        OBStableDiffusionXLInpaintPipeline, OBStableDiffusionXLPipeline,
    )
    from .exporter import ExportResult, export
    from .modeling import (
        OBModel, OBModelForCausalLM, OBModelForFeatureExtraction, OBModelForImageClassification, OBModelForMaskedLM,
        OBModelForMultipleChoice, OBModelForQuestionAnswering, OBModelForSeq2SeqLM, OBModelForSequenceClassification,
        OBModelForTokenClassification,
    )
    from .steps import CalibrationConfig, OptimizationConfig, QuantizationConfig, optimize, quantize


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'optibridge' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
