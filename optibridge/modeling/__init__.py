"""Drop-in model classes: ``OBModelFor<Task>`` replace the transformers classes of the same task."""

from .base import OBModel
from .causal_lm import OBModelForCausalLM
from .custom import OBModelForCustomTasks
from .seq2seq import OBModelForSeq2SeqLM
from .tasks import (
    TASK_CLASSES, OBModelForAudioClassification, OBModelForAudioFrameClassification, OBModelForAudioXVector, OBModelForCTC, OBModelForFeatureExtraction, OBModelForObjectDetection, OBModelForSemanticSegmentation,
    OBModelForZeroShotImageClassification, OBModelForImageClassification, OBModelForImageToImage, OBModelForMaskedLM,
    OBModelForMultipleChoice, OBModelForQuestionAnswering, OBModelForSequenceClassification,
    OBModelForTokenClassification,
)
from .vision2seq import OBModelForPix2Struct, OBModelForVision2Seq
from .visual_lm import OBModelForVisualCausalLM

__all__ = [
    "OBModel", "OBModelForAudioClassification", "OBModelForCustomTasks", "OBModelForAudioFrameClassification", "OBModelForAudioXVector", "OBModelForCTC", "OBModelForCausalLM", "OBModelForFeatureExtraction",
    "OBModelForImageClassification", "OBModelForImageToImage", "OBModelForMaskedLM", "OBModelForMultipleChoice", "OBModelForObjectDetection", "OBModelForPix2Struct",
    "OBModelForQuestionAnswering", "OBModelForSemanticSegmentation", "OBModelForSeq2SeqLM", "OBModelForSequenceClassification",
    "OBModelForSentenceEmbedding", "OBModelForSpeechSeq2Seq", "OBModelForTokenClassification", "OBModelForVision2Seq", "OBModelForVisualCausalLM", "OBModelForZeroShotImageClassification",
    "TASK_CLASSES",
]


def __getattr__(name: str) -> object:
    if name == "OBModelForSentenceEmbedding":  # imports transformers' ModelOutput
        from . import sentence

        return sentence.OBModelForSentenceEmbedding
    if name == "OBModelForSpeechSeq2Seq":  # built on first use (imports Whisper's generation code)
        from . import seq2seq

        return seq2seq.OBModelForSpeechSeq2Seq
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
