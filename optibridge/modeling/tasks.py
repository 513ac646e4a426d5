"""One class per task; the behaviour lives in :class:`OBModel` and the task table."""

from __future__ import annotations

from .base import OBModel, register_task_class


@register_task_class
class OBModelForFeatureExtraction(OBModel):
    """Replaces ``AutoModel`` (returns ``last_hidden_state`` and, where the model has one, ``pooler_output``)."""

    task_name = "feature-extraction"


@register_task_class
class OBModelForSequenceClassification(OBModel):
    task_name = "text-classification"


@register_task_class
class OBModelForTokenClassification(OBModel):
    task_name = "token-classification"


@register_task_class
class OBModelForQuestionAnswering(OBModel):
    task_name = "question-answering"


@register_task_class
class OBModelForMaskedLM(OBModel):
    task_name = "fill-mask"


@register_task_class
class OBModelForMultipleChoice(OBModel):
    task_name = "multiple-choice"


@register_task_class
class OBModelForImageClassification(OBModel):
    task_name = "image-classification"


@register_task_class
class OBModelForCTC(OBModel):
    """Replaces ``AutoModelForCTC`` (wav2vec2, hubert, wavlm...): waveform in, per-frame logits out;
    works in ``pipeline("automatic-speech-recognition")``."""

    task_name = "ctc"


@register_task_class
class OBModelForAudioClassification(OBModel):
    task_name = "audio-classification"


@register_task_class
class OBModelForZeroShotImageClassification(OBModel):
    """Replaces ``AutoModelForZeroShotImageClassification`` (CLIP, SigLIP): texts and images in (their
    batch sizes independent), ``logits_per_image``/``logits_per_text`` and both embeddings out."""

    task_name = "zero-shot-image-classification"
    main_input_name = "pixel_values"


@register_task_class
class OBModelForSemanticSegmentation(OBModel):
    """Replaces ``AutoModelForSemanticSegmentation`` (segformer, beit, mobilevit...): per-pixel class logits."""

    task_name = "semantic-segmentation"


@register_task_class
class OBModelForObjectDetection(OBModel):
    """Replaces ``AutoModelForObjectDetection`` (yolos, detr...): class logits and boxes per query."""

    task_name = "object-detection"


TASK_CLASSES: dict[str, type[OBModel]] = {
    cls.task_name: cls
    for cls in (
        OBModelForFeatureExtraction, OBModelForSequenceClassification, OBModelForTokenClassification,
        OBModelForQuestionAnswering, OBModelForMaskedLM, OBModelForMultipleChoice, OBModelForImageClassification,
        OBModelForCTC, OBModelForAudioClassification, OBModelForZeroShotImageClassification, OBModelForSemanticSegmentation,
        OBModelForObjectDetection,
    )
}


def task_class(task: str) -> type[OBModel]:
    """The OBModelFor<Task> class that runs ``task`` (generative classes included)."""
    if task in TASK_CLASSES:
        return TASK_CLASSES[task]
    from .causal_lm import OBModelForCausalLM
    from . import seq2seq

    from .sentence import OBModelForSentenceEmbedding

    generative: dict[str, type[OBModel]] = {
        "sentence-similarity": OBModelForSentenceEmbedding,
        "text-generation": OBModelForCausalLM,
        "text2text-generation": seq2seq.OBModelForSeq2SeqLM,
        "automatic-speech-recognition": seq2seq.OBModelForSpeechSeq2Seq,
    }
    return generative[task]
