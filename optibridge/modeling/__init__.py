"""Drop-in model classes: ``OBModelFor<Task>`` replace the transformers classes of the same task."""

from .base import OBModel
from .causal_lm import OBModelForCausalLM
from .seq2seq import OBModelForSeq2SeqLM
from .tasks import (
    TASK_CLASSES, OBModelForFeatureExtraction, OBModelForImageClassification, OBModelForMaskedLM,
    OBModelForMultipleChoice, OBModelForQuestionAnswering, OBModelForSequenceClassification,
    OBModelForTokenClassification,
)

__all__ = [
    "OBModel", "OBModelForCausalLM", "OBModelForFeatureExtraction", "OBModelForImageClassification", "OBModelForMaskedLM",
    "OBModelForMultipleChoice", "OBModelForQuestionAnswering", "OBModelForSeq2SeqLM", "OBModelForSequenceClassification",
    "OBModelForTokenClassification", "TASK_CLASSES",
]
