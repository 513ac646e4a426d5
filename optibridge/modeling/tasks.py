"""One class per task; the behaviour lives in :class:`OBModel` and the task table."""

from __future__ import annotations

from ..errors import UnsupportedModelError
from ..tasks import TASKS
from .base import CLASS_FOR_TASK, OBModel, register_task_class


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
class OBModelForAudioFrameClassification(OBModel):
    """Replaces ``AutoModelForAudioFrameClassification`` (wav2vec2-family): waveform in, logits per frame out."""

    task_name = "audio-frame-classification"


@register_task_class
class OBModelForAudioXVector(OBModel):
    """Replaces ``AutoModelForAudioXVector`` (wav2vec2-family): waveform in, speaker ``embeddings`` and their
    classifier ``logits`` out (cosine similarity of two embeddings verifies a speaker)."""

    task_name = "audio-xvector"


@register_task_class
class OBModelForImageToImage(OBModel):
    """Replaces ``AutoModelForImageToImage`` (Swin2SR super-resolution): ``pixel_values`` in, the restored
    (upscaled) image out as ``reconstruction``."""

    task_name = "image-to-image"


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


from .sentence import OBModelForSentenceEmbedding  # noqa: E402,F401 (registers the sentence-similarity class)

TASK_CLASSES: dict[str, type[OBModel]] = {task: cls for task, cls in CLASS_FOR_TASK.items() if TASKS[task].kind == "encoder"}
"""The one-call (encoder) task classes, read from the one table (kept for existing imports)."""


def task_class(task: str) -> type[OBModel]:
    """The OBModelFor<Task> class that runs ``task`` (generative classes included)."""
    if task not in CLASS_FOR_TASK:
        from . import causal_lm  # noqa: F401 (importing it registers OBModelForCausalLM)
        from . import seq2seq

        from . import sentence  # noqa: F401 (importing it registers OBModelForSentenceEmbedding)

        seq2seq.OBModelForSpeechSeq2Seq  # noqa: B018 (built on first access, which registers it)
    if task not in CLASS_FOR_TASK:
        raise UnsupportedModelError(f"no OBModelFor<Task> class runs {task!r}; tasks with one: {', '.join(sorted(CLASS_FOR_TASK))}")
    return CLASS_FOR_TASK[task]
