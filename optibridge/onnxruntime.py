"""Optimum-compatible names: code written for ``optimum.onnxruntime`` runs with only its import changed.

    # from optimum.onnxruntime import ORTModelForSequenceClassification
    from optibridge.onnxruntime import ORTModelForSequenceClassification

    model = ORTModelForSequenceClassification.from_pretrained("./my-model", export=True)
    model.save_pretrained("./my-model-onnx")

Optimum's loading arguments are taken as it takes them: ``provider=`` / ``providers=`` pick the
optibridge backend (CPUExecutionProvider → ``ort``, CUDA/TensorRT → ``cuda``), ``provider_options=``
go to that provider, ``session_options=`` (an ``onnxruntime.SessionOptions``) is used as given and
``use_io_binding=`` switches IO binding on or off (on the CPU too). Its attributes are there:
``model`` (the InferenceSession), ``model_save_dir``, ``model_path``/``path``, ``provider(s)``,
``provider_options``, ``use_io_binding``, ``preprocessors``. One difference, on purpose: a provider
this machine cannot run is an error, where ONNX Runtime would quietly run on the CPU.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

from .errors import BackendError
from .modeling.peers import PeerModel, PeerNames, pipeline_alias
from .ort_tools import (
    AutoCalibrationConfig, AutoOptimizationConfig, AutoQuantizationConfig, CalibrationConfig, OptimizationConfig, ORTOptimizer,
    ORTQuantizer, QuantizationConfig,
)

PROVIDER_BACKENDS = {
    "CPUExecutionProvider": "ort",
    "CUDAExecutionProvider": "cuda",
    "TensorrtExecutionProvider": "cuda",
}
ModelT = TypeVar("ModelT", bound="ORTModel")


def backend_options(provider: str, providers: list[str] | None, provider_options: dict[str, Any] | None,
                    use_io_binding: bool | None) -> dict[str, Any]:
    """Optimum's provider arguments → optibridge's backend, device and backend options."""
    chosen = providers[0] if providers else provider
    for name in [chosen, *(providers or [])]:
        if name not in PROVIDER_BACKENDS:
            raise BackendError(f"unknown provider {name!r}; supported: {', '.join(PROVIDER_BACKENDS)}")
    backend = PROVIDER_BACKENDS[chosen]
    options: dict[str, Any] = {"backend": backend}
    if use_io_binding is not None:
        options["io_binding"] = use_io_binding
    if backend == "cuda":
        options["device"] = "cuda"
        options["provider"] = "tensorrt" if chosen == "TensorrtExecutionProvider" else "cuda"
        options.update(provider_options or {})  # device_id, gpu_mem_limit, trt_*: checked by the cuda backend
    elif provider_options:
        options["provider_options"] = provider_options
    return options


def _require_gpu_provider(asked: list[str], device: str) -> None:
    """A GPU provider that cannot run here is an error, never ONNX Runtime's quiet CPU run; the error says
    how to ask for the CPU, since code written for Optimum often lists CUDA first "just in case"."""
    from .backends import get_registry

    try:
        get_registry().require_available("cuda", device)
    except BackendError as exc:
        fallback = " (optibridge does not fall back to the later CPUExecutionProvider)" if "CPUExecutionProvider" in asked else ""
        raise BackendError(f"{exc}. To run on the CPU instead, pass provider='CPUExecutionProvider'{fallback}") from None


class ORTModel(PeerModel):
    """Optimum's ``ORTModel`` surface on top of :class:`~optibridge.modeling.OBModel`."""

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls: type[ModelT],
        model_id: str | os.PathLike[str],
        *,
        provider: str = "CPUExecutionProvider",
        providers: list[str] | None = None,
        provider_options: dict[str, Any] | None = None,
        session_options: Any = None,
        use_io_binding: bool | None = None,
        **kwargs: Any,
    ) -> ModelT:
        for key, value in backend_options(provider, providers, provider_options, use_io_binding).items():
            kwargs.setdefault(key, value)
        if session_options is not None:
            kwargs["session_options"] = session_options
        if kwargs.get("backend") == "cuda":
            _require_gpu_provider(providers or [provider], kwargs.get("device", "cuda"))
        return super().from_pretrained(model_id, **kwargs)

    @property
    def model(self) -> Any:
        """The ``onnxruntime.InferenceSession`` of a one-graph model (Optimum exposes it as ``.model``)."""
        if "model" not in self.sessions:  # encoder-decoders have several; Whisper's generate() reads its own .model
            return super().model  # type: ignore[misc]
        return getattr(self.session, "session", self.session)

    @property
    def model_path(self) -> Path:
        """The main graph file (``model.onnx``; ``encoder.onnx`` for encoder-decoders)."""
        return Path(self.artifact.model_path)

    @property
    def path(self) -> Path:
        return self.model_path

    @property
    def providers(self) -> list[str]:
        """The providers the session really runs on, as ONNX Runtime reports them."""
        return list(getattr(self.session, "providers", []))

    @property
    def provider(self) -> str:
        return self.providers[0]

    @property
    def provider_options(self) -> dict[str, Any]:
        """The options of :attr:`provider` as ONNX Runtime applied them."""
        session = getattr(self.session, "session", None)
        return dict(session.get_provider_options().get(self.provider, {})) if session is not None else {}

    @property
    def use_io_binding(self) -> bool:
        """Whether calls bind torch tensors directly (IO binding) instead of copying through numpy."""
        return bool(getattr(self.session, "accepts_torch", False))


_QUANTIZE = ("quantize the saved model with optibridge: `optibridge quantize MODEL_DIR OUT --mode dynamic` (or --mode static "
             "--calibration FILE; --preset avx512-vnni|avx2|arm64 as AutoQuantizationConfig's), or "
             "optibridge.quantize(MODEL_DIR, optibridge.QuantizationConfig(mode='dynamic'), OUT); then load OUT with its "
             "ORTModelFor… class (docs/optimum_migration.md)")
_INSTEAD = {
    **dict.fromkeys(("ORTConfig", "QuantizationMode", "QuantFormat"), _QUANTIZE),
    "pipeline": "pass the model to transformers' own pipeline: transformers.pipeline(task, model=ORTModelFor….from_pretrained(DIR), "
                "tokenizer=...); the ORTModelFor… classes are drop-in models",
    **dict.fromkeys(("ORTTrainer", "ORTSeq2SeqTrainer", "ORTTrainingArguments", "ORTSeq2SeqTrainingArguments"),
                    "training on ONNX Runtime is not offered: train in PyTorch with optibridge.training.OBTrainer "
                    "(transformers' Trainer, plus QAT, pruning, distillation; docs/training.md), which writes an artifact"),
}
_NAMES = PeerNames("ORTModel", ORTModel, __name__, "Optimum", _INSTEAD)

def __dir__() -> list[str]:
    return sorted([*globals(), *_NAMES.names(), *_DIFFUSION_NAMES, *_AUTO_PIPELINES])


# Optimum's ORTStableDiffusion* names: built on first use, because the pipelines import diffusers.
_DIFFUSION_NAMES = {
    "ORTStableDiffusionPipeline": "OBStableDiffusionPipeline",
    "ORTStableDiffusionImg2ImgPipeline": "OBStableDiffusionImg2ImgPipeline",
    "ORTStableDiffusionInpaintPipeline": "OBStableDiffusionInpaintPipeline",
    "ORTStableDiffusionXLPipeline": "OBStableDiffusionXLPipeline",
    "ORTStableDiffusionXLImg2ImgPipeline": "OBStableDiffusionXLImg2ImgPipeline",
    "ORTStableDiffusionXLInpaintPipeline": "OBStableDiffusionXLInpaintPipeline",
    "ORTLatentConsistencyModelPipeline": "OBLatentConsistencyModelPipeline",
    "ORTLatentConsistencyModelImg2ImgPipeline": "OBLatentConsistencyModelImg2ImgPipeline",
    "ORTStableDiffusion3Pipeline": "OBStableDiffusion3Pipeline",
    "ORTStableDiffusion3Img2ImgPipeline": "OBStableDiffusion3Img2ImgPipeline",
    "ORTStableDiffusion3InpaintPipeline": "OBStableDiffusion3InpaintPipeline",
    "ORTFluxPipeline": "OBFluxPipeline",  # Optimum names no Flux img2img/inpaint class for ORT
}


class _ORTPipeline:
    """Optimum's loading arguments on a diffusion pipeline (mixed in before the optibridge pipeline class)."""

    @classmethod
    def from_pretrained(cls, model_id: str | os.PathLike[str], *, provider: str = "CPUExecutionProvider",
                        providers: list[str] | None = None, provider_options: dict[str, Any] | None = None,
                        session_options: Any = None, use_io_binding: bool | None = None, **kwargs: Any) -> Any:
        for key, value in backend_options(provider, providers, provider_options, use_io_binding).items():
            kwargs.setdefault(key, value)
        if session_options is not None:
            kwargs["session_options"] = session_options
        return super().from_pretrained(model_id, **kwargs)  # type: ignore[misc]  # the pipeline class after this one has it


# Optimum's task-named loaders (ORTPipelineForText2Image ...): the concrete ORTStableDiffusion* class picked on load.
_AUTO_PIPELINES = ("ORTDiffusionPipeline", "ORTPipelineForText2Image", "ORTPipelineForImage2Image", "ORTPipelineForInpainting")


def __getattr__(name: str) -> Any:
    if name in _AUTO_PIPELINES:
        from .diffusion.auto import auto_alias

        return auto_alias(name, "ORT", __name__, "Optimum")
    if name in _DIFFUSION_NAMES:
        return pipeline_alias(name, _ORTPipeline, _DIFFUSION_NAMES[name], __name__, "Optimum")
    return _NAMES.get(name)


__all__ = ["ORTModel", "ORTQuantizer", "ORTOptimizer", "AutoQuantizationConfig", "QuantizationConfig", "AutoCalibrationConfig", "CalibrationConfig", "AutoOptimizationConfig",
           "OptimizationConfig", *_NAMES.names(), *_DIFFUSION_NAMES, *_AUTO_PIPELINES]
