"""Optimum-Intel-compatible names: code written for ``optimum.intel`` runs with only its import changed.

    # from optimum.intel import OVModelForSequenceClassification
    from optibridge.openvino import OVModelForSequenceClassification

    model = OVModelForSequenceClassification.from_pretrained("./my-model", export=True, device="CPU",
                                                             ov_config={"PERFORMANCE_HINT": "LATENCY"})

``ov_config`` holds raw OpenVINO properties, applied after optibridge's defaults (fp32 precision).
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

from .modeling import tasks as _tasks
from .modeling.aliases import alias
from .modeling.base import OBModel
from .modeling.causal_lm import OBModelForCausalLM
from .modeling.seq2seq import OBModelForSeq2SeqLM

ModelT = TypeVar("ModelT", bound="OVModel")


class OVModel(OBModel):
    """optimum-intel's ``OVModel`` surface: the ``openvino`` backend, ``device=`` and ``ov_config=``."""

    default_backend = "openvino"

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls: type[ModelT], model_id: str | os.PathLike[str], *, device: str = "CPU", ov_config: dict[str, Any] | None = None,
        compile: bool = True, **kwargs: Any,
    ) -> ModelT:
        # compile=False (compile later) is accepted for compatibility; models are compiled on load.
        if ov_config:
            kwargs["ov_config"] = ov_config
        return super().from_pretrained(model_id, device=device, **kwargs)


def _alias(name: str, base: type[OBModel]) -> type[OVModel]:
    return alias(name, OVModel, base, __name__, "optimum-intel")


OVModelForFeatureExtraction = _alias("OVModelForFeatureExtraction", _tasks.OBModelForFeatureExtraction)
OVModelForSequenceClassification = _alias("OVModelForSequenceClassification", _tasks.OBModelForSequenceClassification)
OVModelForTokenClassification = _alias("OVModelForTokenClassification", _tasks.OBModelForTokenClassification)
OVModelForQuestionAnswering = _alias("OVModelForQuestionAnswering", _tasks.OBModelForQuestionAnswering)
OVModelForMaskedLM = _alias("OVModelForMaskedLM", _tasks.OBModelForMaskedLM)
OVModelForMultipleChoice = _alias("OVModelForMultipleChoice", _tasks.OBModelForMultipleChoice)
OVModelForImageClassification = _alias("OVModelForImageClassification", _tasks.OBModelForImageClassification)
OVModelForZeroShotImageClassification = _alias("OVModelForZeroShotImageClassification", _tasks.OBModelForZeroShotImageClassification)
OVModelForSemanticSegmentation = _alias("OVModelForSemanticSegmentation", _tasks.OBModelForSemanticSegmentation)
OVModelForObjectDetection = _alias("OVModelForObjectDetection", _tasks.OBModelForObjectDetection)
OVModelForCTC = _alias("OVModelForCTC", _tasks.OBModelForCTC)
OVModelForAudioClassification = _alias("OVModelForAudioClassification", _tasks.OBModelForAudioClassification)
OVModelForCausalLM = _alias("OVModelForCausalLM", OBModelForCausalLM)
OVModelForSeq2SeqLM = _alias("OVModelForSeq2SeqLM", OBModelForSeq2SeqLM)

__all__ = [
    "OVModel", "OVModelForAudioClassification", "OVModelForCTC", "OVModelForCausalLM", "OVModelForFeatureExtraction", "OVModelForImageClassification", "OVModelForMaskedLM",
    "OVModelForMultipleChoice", "OVModelForQuestionAnswering", "OVModelForSeq2SeqLM", "OVModelForSequenceClassification",
    "OVModelForObjectDetection", "OVModelForSemanticSegmentation", "OVModelForTokenClassification", "OVModelForZeroShotImageClassification",
]
