"""The tasks optibridge exports, as data.

A :class:`Task` says which transformers Auto class loads a model for it, which outputs the ONNX
graph returns, and which ``ModelOutput`` type those outputs are wrapped back into.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UnsupportedModelError


@dataclass(frozen=True)
class Task:
    name: str
    auto_class: str
    """Name of the ``transformers`` Auto class that loads a PyTorch model for this task."""
    outputs: tuple[str, ...]
    """Output fields exported, in order. Optional ones (pooler_output) are kept when the model has them."""
    output_class: str
    """Default ``transformers.modeling_outputs`` class; the exporter records the exact one the model returns."""
    modality: str
    """"text", "vision", "audio" (waveform) or "speech" (features): decides the inputs and the dummy data."""
    head_suffixes: tuple[str, ...]
    """Endings of ``config.architectures`` entries that mean this task (task inference)."""
    pipeline: str | None = None
    """The ``transformers.pipeline`` task name, where one exists."""
    optional_outputs: tuple[str, ...] = ()
    choices_axis: bool = False
    """Inputs carry an extra ``num_choices`` axis: (batch, num_choices, sequence)."""
    mapping: str | None = None
    """The transformers Auto class whose mapping lists the model types that can do this task
    (default: ``auto_class``)."""
    kind: str = "encoder"
    """"encoder" (one graph, one call), "decoder" (causal LM with KV cache) or "seq2seq"
    (encoder + decoder graphs): decides how the exporter traces and how the model class runs."""


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task(
            "feature-extraction", "AutoModel", ("last_hidden_state", "pooler_output"),
            "BaseModelOutput", "text", ("Model",), "feature-extraction",
            optional_outputs=("pooler_output",),
        ),
        Task(
            "text-classification", "AutoModelForSequenceClassification", ("logits",),
            "SequenceClassifierOutput", "text", ("ForSequenceClassification",), "text-classification",
        ),
        Task(
            "token-classification", "AutoModelForTokenClassification", ("logits",),
            "TokenClassifierOutput", "text", ("ForTokenClassification",), "token-classification",
        ),
        Task(
            "question-answering", "AutoModelForQuestionAnswering", ("start_logits", "end_logits"),
            "QuestionAnsweringModelOutput", "text", ("ForQuestionAnswering",), "question-answering",
        ),
        Task(
            "fill-mask", "AutoModelForMaskedLM", ("logits",),
            "MaskedLMOutput", "text", ("ForMaskedLM", "ForPreTraining"), "fill-mask",
        ),
        Task(
            "multiple-choice", "AutoModelForMultipleChoice", ("logits",),
            "MultipleChoiceModelOutput", "text", ("ForMultipleChoice",), None, choices_axis=True,
        ),
        Task(
            "image-classification", "AutoModelForImageClassification", ("logits",),
            "ImageClassifierOutput", "vision",
            ("ForImageClassification", "ForImageClassificationWithTeacher"), "image-classification",
        ),
        Task(
            "semantic-segmentation", "AutoModelForSemanticSegmentation", ("logits",), "SemanticSegmenterOutput", "vision",
            ("ForSemanticSegmentation",), "image-segmentation",
        ),
        Task(
            "object-detection", "AutoModelForObjectDetection", ("logits", "pred_boxes"), "ModelOutput", "vision",
            ("ForObjectDetection",), "object-detection",
        ),
        # Image restoration / super-resolution (Swin2SR): an image in, an image (upscaled) out.
        Task(
            "image-to-image", "AutoModelForImageToImage", ("reconstruction",), "ImageSuperResolutionOutput", "vision",
            ("ForImageSuperResolution",),
        ),
        Task(
            "zero-shot-image-classification", "AutoModelForZeroShotImageClassification",
            ("logits_per_image", "logits_per_text", "text_embeds", "image_embeds"), "ModelOutput", "multimodal", (),
            "zero-shot-image-classification",
        ),
        Task(
            "ctc", "AutoModelForCTC", ("logits",), "CausalLMOutput", "audio", ("ForCTC",), "automatic-speech-recognition",
        ),
        Task(
            "audio-classification", "AutoModelForAudioClassification", ("logits",), "SequenceClassifierOutput", "audio",
            ("ForSequenceClassification",), "audio-classification",
        ),
        # Per-frame labels (speaker diarization, voice activity) and speaker embeddings (x-vectors):
        # wav2vec2-family heads; no transformers pipeline runs them.
        Task(
            "audio-frame-classification", "AutoModelForAudioFrameClassification", ("logits",), "TokenClassifierOutput",
            "audio", ("ForAudioFrameClassification",),
        ),
        Task(
            "audio-xvector", "AutoModelForAudioXVector", ("logits", "embeddings"), "XVectorOutput", "audio", ("ForXVector",),
        ),
        Task(
            "sentence-similarity", "SentenceTransformer", ("token_embeddings", "sentence_embedding"),
            "SentenceEmbeddingOutput", "text", (), None, mapping="AutoModel",
        ),
        Task(
            "text-generation", "AutoModelForCausalLM", ("logits",),
            "CausalLMOutputWithPast", "text", ("ForCausalLM", "LMHeadModel"), "text-generation", kind="decoder",
        ),
        Task(
            "text2text-generation", "AutoModelForSeq2SeqLM", ("logits",),
            "Seq2SeqLMOutput", "text", ("ForConditionalGeneration", "MTModel"), "text2text-generation", kind="seq2seq",
        ),
        Task(
            "automatic-speech-recognition", "AutoModelForSpeechSeq2Seq", ("logits",),
            "Seq2SeqLMOutput", "speech", ("ForConditionalGeneration",), "automatic-speech-recognition", kind="seq2seq",
        ),
        # Image captioners with an image encoder and a text decoder (vision-encoder-decoder, BLIP's
        # captioner: exporter/blip.py; Pix2Struct's patch encoder and T5-style decoder); the transformers
        # pipeline is "image-text-to-text" (5.x has no "image-to-text" pipeline). BLIP and Pix2Struct are
        # named whole: other *ForConditionalGeneration are seq2seq text models or decoder LMs that take images.
        Task(
            "image-to-text", "AutoModelForImageTextToText", ("logits",), "Seq2SeqLMOutput", "vision",
            ("VisionEncoderDecoderModel", "BlipForConditionalGeneration", "Pix2StructForConditionalGeneration"), "image-text-to-text",
            kind="seq2seq",
        ),
        # Decoder LMs that take images (llava, llava-next, gemma3): a vision graph and a decoder that merges its rows into
        # the placeholder tokens' embeddings (exporter/visual_lm.py). Captioners keep image-to-text
        # (their longer suffixes win task inference).
        Task(
            "image-text-to-text", "AutoModelForImageTextToText", ("logits",), "CausalLMOutputWithPast", "multimodal",
            ("ForConditionalGeneration",), "image-text-to-text", kind="decoder",
        ),
    )
}

# Names other tools use for the same tasks, so that commands written for them keep working.
TASK_ALIASES: dict[str, str] = {
    "default": "feature-extraction",
    "sequence-classification": "text-classification",
    "sentiment-analysis": "text-classification",
    "ner": "token-classification",
    "masked-lm": "fill-mask",
    "causal-lm": "text-generation",
    "seq2seq-lm": "text2text-generation",
    "translation": "text2text-generation",
    "summarization": "text2text-generation",
    "speech2seq-lm": "automatic-speech-recognition",
    "sentence-embeddings": "sentence-similarity",
    "automatic-speech-recognition-ctc": "ctc",
    "vision2seq-lm": "image-to-text",
}


WITH_PAST = "-with-past"
"""optimum-cli's suffix for "export with the KV cache" (``text-generation-with-past``); optibridge's
generative exports carry the cache unless ``--no-cache`` says otherwise, so the suffix names the default."""


def get_task(name: str) -> Task:
    """Look a task up by name or alias (optimum-cli's ``...-with-past`` names included); the error lists
    every supported name."""
    base = name[: -len(WITH_PAST)] if name.endswith(WITH_PAST) else name
    key = TASK_ALIASES.get(base, base)
    try:
        task = TASKS[key]
    except KeyError:
        raise UnsupportedModelError(
            f"unknown task {name!r}; supported tasks: {', '.join(TASKS)}"
        ) from None
    if base != name and task.kind == "encoder":
        raise UnsupportedModelError(
            f"task {name!r}: {WITH_PAST!r} applies to generative tasks (a KV cache); {task.name!r} has none, "
            f"use --task {task.name}"
        )
    return task


def infer_task(architectures: list[str] | None, model_type: str, supported: tuple[str, ...]) -> Task:
    """Infer the task from ``config.architectures`` (e.g. ``BertForMaskedLM`` → fill-mask), choosing
    only among the tasks the architecture supports.

    The longest matching suffix wins (``LMHeadModel`` over ``Model``). Without ``architectures``
    the base model's task is assumed, or the architecture's only task.
    """
    candidates = [TASKS[name] for name in supported]
    if not architectures:
        return TASKS["feature-extraction"] if "feature-extraction" in supported else candidates[0]
    arch = architectures[0]
    best: tuple[int, Task] | None = None
    for task in candidates:
        for suffix in task.head_suffixes:
            if arch.endswith(suffix) and (best is None or len(suffix) > best[0]):
                best = (len(suffix), task)
    if best is None:
        raise UnsupportedModelError(
            f"cannot infer the task from architectures={architectures} ({model_type}); "
            f"pass --task, one of: {', '.join(supported)}"
        )
    return best[1]
