"""Optimum's ``ORTStableDiffusion*`` and optimum-intel's ``OVStableDiffusion*`` names for the pipelines.

``optibridge.onnxruntime`` and ``optibridge.openvino`` hand these out lazily, so importing those
modules does not import diffusers.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import BackendError
from ..onnxruntime import PROVIDER_BACKENDS
from .pipelines import (
    OBDiffusionPipelineMixin,
    OBStableDiffusionImg2ImgPipeline,
    OBStableDiffusionInpaintPipeline,
    OBStableDiffusionPipeline,
    OBStableDiffusionXLImg2ImgPipeline,
    OBStableDiffusionXLPipeline,
)



class ORTDiffusionPipelineSurface(OBDiffusionPipelineMixin):
    """Optimum's ``from_pretrained(provider=, session_options=)`` on an optibridge pipeline."""

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls, model_id: str | os.PathLike[str], *, provider: str = "CPUExecutionProvider", session_options: Any = None,
        use_io_binding: bool | None = None, **kwargs: Any,
    ) -> Any:
        if provider not in PROVIDER_BACKENDS:
            raise BackendError(f"unknown provider {provider!r}; supported: {', '.join(PROVIDER_BACKENDS)}")
        kwargs.setdefault("backend", PROVIDER_BACKENDS[provider])
        if kwargs["backend"] == "cuda":
            kwargs.setdefault("device", "cuda")
        if session_options is not None:
            kwargs["session_options"] = session_options
        return super().from_pretrained(model_id, **kwargs)


class OVDiffusionPipelineSurface(OBDiffusionPipelineMixin):
    """optimum-intel's ``from_pretrained(device="CPU", ov_config=, compile=)`` on the openvino backend."""

    default_backend = "openvino"

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls, model_id: str | os.PathLike[str], *, device: str = "CPU", ov_config: dict[str, Any] | None = None,
        compile: bool = True, **kwargs: Any,
    ) -> Any:
        # compile=False is accepted for compatibility: graphs are compiled on load (and again by reshape()).
        if ov_config:
            kwargs["ov_config"] = ov_config
        return super().from_pretrained(model_id, device=device, **kwargs)


def _alias(name: str, surface: type, base: type, module: str) -> type:
    return type(name, (surface, base), {"__doc__": f"Peer-compatible name for :class:`optibridge.{base.__name__}`.",
                                        "__module__": module, "task": base.task, "family": base.family})


ORTStableDiffusionPipeline = _alias("ORTStableDiffusionPipeline", ORTDiffusionPipelineSurface, OBStableDiffusionPipeline, "optibridge.onnxruntime")
ORTStableDiffusionImg2ImgPipeline = _alias("ORTStableDiffusionImg2ImgPipeline", ORTDiffusionPipelineSurface, OBStableDiffusionImg2ImgPipeline, "optibridge.onnxruntime")
ORTStableDiffusionInpaintPipeline = _alias("ORTStableDiffusionInpaintPipeline", ORTDiffusionPipelineSurface, OBStableDiffusionInpaintPipeline, "optibridge.onnxruntime")
OVStableDiffusionPipeline = _alias("OVStableDiffusionPipeline", OVDiffusionPipelineSurface, OBStableDiffusionPipeline, "optibridge.openvino")
OVStableDiffusionImg2ImgPipeline = _alias("OVStableDiffusionImg2ImgPipeline", OVDiffusionPipelineSurface, OBStableDiffusionImg2ImgPipeline, "optibridge.openvino")
OVStableDiffusionInpaintPipeline = _alias("OVStableDiffusionInpaintPipeline", OVDiffusionPipelineSurface, OBStableDiffusionInpaintPipeline, "optibridge.openvino")
ORTStableDiffusionXLPipeline = _alias("ORTStableDiffusionXLPipeline", ORTDiffusionPipelineSurface, OBStableDiffusionXLPipeline, "optibridge.onnxruntime")
ORTStableDiffusionXLImg2ImgPipeline = _alias("ORTStableDiffusionXLImg2ImgPipeline", ORTDiffusionPipelineSurface, OBStableDiffusionXLImg2ImgPipeline, "optibridge.onnxruntime")
OVStableDiffusionXLPipeline = _alias("OVStableDiffusionXLPipeline", OVDiffusionPipelineSurface, OBStableDiffusionXLPipeline, "optibridge.openvino")
OVStableDiffusionXLImg2ImgPipeline = _alias("OVStableDiffusionXLImg2ImgPipeline", OVDiffusionPipelineSurface, OBStableDiffusionXLImg2ImgPipeline, "optibridge.openvino")
