"""Optimum-compatible names: code written for ``optimum.onnxruntime`` runs with only its import changed.

    # from optimum.onnxruntime import ORTModelForSequenceClassification
    from optibridge.onnxruntime import ORTModelForSequenceClassification

    model = ORTModelForSequenceClassification.from_pretrained("./my-model", export=True)
    model.save_pretrained("./my-model-onnx")

Optimum's ``provider=`` and ``session_options=`` arguments are accepted: the provider picks the
optibridge backend (CPUExecutionProvider → ``ort``, CUDA/TensorRT → ``cuda``) and an
``onnxruntime.SessionOptions`` object is used as given.
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

from .errors import BackendError
from .modeling import tasks as _tasks
from .modeling.aliases import alias
from .modeling.base import OBModel

PROVIDER_BACKENDS = {
    "CPUExecutionProvider": "ort",
    "CUDAExecutionProvider": "cuda",
    "TensorrtExecutionProvider": "cuda",
}
ModelT = TypeVar("ModelT", bound="ORTModel")


class ORTModel(OBModel):
    """Optimum's ``ORTModel`` surface on top of :class:`~optibridge.modeling.OBModel`."""

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls: type[ModelT],
        model_id: str | os.PathLike[str],
        *,
        provider: str = "CPUExecutionProvider",
        session_options: Any = None,
        use_io_binding: bool | None = None,
        **kwargs: Any,
    ) -> ModelT:
        if provider not in PROVIDER_BACKENDS:
            raise BackendError(f"unknown provider {provider!r}; supported: {', '.join(PROVIDER_BACKENDS)}")
        kwargs.setdefault("backend", PROVIDER_BACKENDS[provider])
        if kwargs["backend"] == "cuda":
            kwargs.setdefault("device", "cuda")
        if session_options is not None:
            kwargs["session_options"] = session_options
        # use_io_binding only matters on GPUs; on the CPU provider ORT binds host memory anyway.
        return super().from_pretrained(model_id, **kwargs)

    @property
    def model(self) -> Any:
        """The underlying ``onnxruntime.InferenceSession`` (Optimum exposes it as ``.model``)."""
        return getattr(self.session, "session", self.session)

    @property
    def providers(self) -> list[str]:
        return list(getattr(self.session, "providers", []))


def _alias(name: str, base: type[OBModel]) -> type[ORTModel]:
    return alias(name, ORTModel, base, __name__, "Optimum")


ORTModelForFeatureExtraction = _alias("ORTModelForFeatureExtraction", _tasks.OBModelForFeatureExtraction)
ORTModelForSequenceClassification = _alias("ORTModelForSequenceClassification", _tasks.OBModelForSequenceClassification)
ORTModelForTokenClassification = _alias("ORTModelForTokenClassification", _tasks.OBModelForTokenClassification)
ORTModelForQuestionAnswering = _alias("ORTModelForQuestionAnswering", _tasks.OBModelForQuestionAnswering)
ORTModelForMaskedLM = _alias("ORTModelForMaskedLM", _tasks.OBModelForMaskedLM)
ORTModelForMultipleChoice = _alias("ORTModelForMultipleChoice", _tasks.OBModelForMultipleChoice)
ORTModelForImageClassification = _alias("ORTModelForImageClassification", _tasks.OBModelForImageClassification)
ORTModelForZeroShotImageClassification = _alias("ORTModelForZeroShotImageClassification", _tasks.OBModelForZeroShotImageClassification)
ORTModelForSemanticSegmentation = _alias("ORTModelForSemanticSegmentation", _tasks.OBModelForSemanticSegmentation)
ORTModelForObjectDetection = _alias("ORTModelForObjectDetection", _tasks.OBModelForObjectDetection)
ORTModelForCTC = _alias("ORTModelForCTC", _tasks.OBModelForCTC)
ORTModelForAudioClassification = _alias("ORTModelForAudioClassification", _tasks.OBModelForAudioClassification)

__all__ = [
    "ORTModel", "ORTModelForAudioClassification", "ORTModelForCTC", "ORTModelForFeatureExtraction", "ORTModelForImageClassification", "ORTModelForMaskedLM",
    "ORTModelForMultipleChoice", "ORTModelForQuestionAnswering", "ORTModelForSequenceClassification",
    "ORTModelForObjectDetection", "ORTModelForSemanticSegmentation", "ORTModelForTokenClassification", "ORTModelForZeroShotImageClassification",
]
