"""Which model types the exporter handles, and how: derived from transformers itself, with a
table for the exceptions.

Support follows from transformers: a model type can be exported for a task when the task's Auto
class maps it (``MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES`` and friends), and the graph's
inputs follow the model's ``forward()`` signature (``input_ids``/``attention_mask``/
``token_type_ids``, ``pixel_values``, ``input_values``, ``input_features``). A model type that is
not in the tested list below is still exported; validation against PyTorch is what proves it.

``TESTED`` is the list of model types the test suite proves for each task; ``EXCEPTIONS`` holds
the rows that change what the generic path would do, each saying why.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, replace
from typing import Any

from ..errors import UnsupportedModelError

TEXT_TASKS = (
    "feature-extraction", "text-classification", "token-classification",
    "question-answering", "fill-mask", "multiple-choice",
)
VISION_TASKS = ("feature-extraction", "image-classification")
DECODER_TASKS = ("text-generation",)
SEQ2SEQ_TASKS = ("text2text-generation",)
SPEECH_TASKS = ("automatic-speech-recognition",)

# The main input a model's forward() takes decides its modality.
MODALITY_BY_INPUT = (("input_ids", "text"), ("pixel_values", "vision"), ("input_values", "audio"), ("input_features", "speech"),
                     ("flattened_patches", "patches"))
"""``patches``: Pix2Struct's image encoder takes variable-resolution patches (each row's position first), with a mask."""


@dataclass(frozen=True)
class Architecture:
    model_type: str
    modality: str
    """"text", "vision", "audio" (raw waveform ``input_values``) or "speech" (``input_features``)."""
    tasks: tuple[str, ...]
    token_type_ids: bool | None = False
    """Whether the graph takes token_type_ids: True, False, or None for "when config.type_vocab_size > 1"."""
    tested: bool = True
    """In the tested list: the test suite proves this model type for ``tasks``."""
    reason: str = ""
    """Why this row exists (for exceptions to the generic path)."""

    def input_names(self, config: Any, task: Any = None) -> tuple[str, ...]:
        """Inputs of an encoder graph (decoder and seq2seq graphs are laid out by their exporters)."""
        if task is not None and task.modality == "multimodal":  # text and images together (CLIP, SigLIP)
            return ("input_ids", "attention_mask", "pixel_values")
        if self.modality == "vision":
            return ("pixel_values",)
        if self.modality == "speech":
            return ("input_features", "attention_mask")  # the mask is dropped where forward() has none
        if self.modality == "audio":
            return ("input_values", "attention_mask")  # the mask is dropped where forward() has none
        takes_types = self.token_type_ids
        if takes_types is None:
            takes_types = getattr(config, "type_vocab_size", 0) > 1
        return ("input_ids", "attention_mask") + (("token_type_ids",) if takes_types else ())


def _tested(model_type: str, modality: str, tasks: tuple[str, ...], token_type_ids: bool | None = False) -> Architecture:
    return Architecture(model_type, modality, tasks, token_type_ids)


# Model types the test suite proves, per task (tests/test_export_matrix.py and the generation tests).
ARCHITECTURES: dict[str, Architecture] = {
    a.model_type: a
    for a in (
        _tested("bert", "text", TEXT_TASKS + ("sentence-similarity",), True),  # all-MiniLM-L6-v2
        _tested("distilbert", "text", TEXT_TASKS),
        _tested("roberta", "text", TEXT_TASKS),
        _tested("xlm-roberta", "text", TEXT_TASKS),
        _tested("camembert", "text", TEXT_TASKS),
        _tested("albert", "text", TEXT_TASKS, True),
        _tested("electra", "text", TEXT_TASKS, True),
        _tested("deberta-v2", "text", TEXT_TASKS, None),
        _tested("mpnet", "text", TEXT_TASKS),
        _tested("roformer", "text", TEXT_TASKS, True),
        _tested("mobilebert", "text", TEXT_TASKS, True),
        _tested("vit", "vision", VISION_TASKS),
        _tested("deit", "vision", VISION_TASKS),
        _tested("convnext", "vision", VISION_TASKS),
        *(_tested(t, "text", DECODER_TASKS) for t in ("gpt2", "llama", "mistral", "qwen2", "qwen3", "phi3", "gemma", "gpt_neox")),
        *(_tested(t, "text", SEQ2SEQ_TASKS) for t in ("t5", "bart", "marian")),
        _tested("whisper", "speech", SPEECH_TASKS),
        # padded audio shortened by the encoder, its mask with it (tests/test_padded_speech_asr.py)
        _tested("moonshine", "audio", SPEECH_TASKS),
        _tested("speech_to_text", "speech", SPEECH_TASKS),
        # with its images (tests/test_visual_lm.py), or its language model alone (tests/test_text_only_lm.py)
        *(_tested(t, "text", ("image-text-to-text", "text-generation")) for t in ("llava", "llava_next")),
        _tested("gemma3", "text", ("image-text-to-text",)),  # with its images (tests/test_visual_lm.py)
        # mixture of experts (and DeepSeek's latent attention): tests/test_moe.py; deepseek_v2's complex
        # rotary embeddings: tests/test_complex_rotary.py
        *(_tested(t, "text", DECODER_TASKS) for t in ("mixtral", "qwen2_moe", "deepseek_v3", "deepseek_v2")),
    )
}
TESTED = ARCHITECTURES  # the name the rest of the docs use

# Rows that override what the generic path derives, each with its reason.
EXCEPTIONS: dict[str, Architecture] = {
    a.model_type: a
    for a in (
        Architecture(
            "deberta-v2", "text", TEXT_TASKS, None,
            reason="token_type_ids only when type_vocab_size > 1: deberta-v3 checkpoints have 0 and ignore them",
        ),
        Architecture(
            "deberta", "text", TEXT_TASKS, None, tested=False,
            reason="same token-type convention as deberta-v2",
        ),
    )
}


def auto_mapping(auto_class: str) -> dict[str, Any]:
    """``model_type → class name(s)`` of a transformers Auto class (its ``*_MAPPING_NAMES``)."""
    import transformers

    auto = getattr(transformers, auto_class, None)
    mapping = getattr(getattr(auto, "_model_mapping", None), "_model_mapping", None)
    return dict(mapping or {})


def tasks_for(model_type: str) -> tuple[str, ...]:
    """Tasks whose Auto class maps ``model_type``, in the order of the task table. A decoder LM that
    takes images (llava...) also has text-generation: its language model alone (optibridge.exporter.text_only)."""
    from ..tasks import TASKS

    found = tuple(name for name, task in TASKS.items() if model_type in auto_mapping(task.mapping or task.auto_class))
    if "text-generation" not in found and model_type in auto_mapping("AutoModelForImageTextToText"):
        found += ("text-generation",)
    return found


def model_class_for(model_type: str, task_name: str) -> Any | None:
    """The transformers class the task's Auto class builds for ``model_type`` (None when it maps none)."""
    import transformers

    from ..tasks import TASKS

    task = TASKS[task_name]
    names = auto_mapping(task.mapping or task.auto_class).get(model_type)
    if names is None:
        return None
    name = names[0] if isinstance(names, (list, tuple)) else names
    return getattr(transformers, name, None)


def forward_parameters(model_class: Any) -> set[str]:
    try:
        return set(inspect.signature(model_class.forward).parameters)
    except (TypeError, ValueError, AttributeError):
        return set()


def derive_architecture(model_type: str, task_name: str | None = None) -> Architecture:
    """The generic row: tasks from the Auto mappings, modality and inputs from ``forward()``."""
    tasks = tasks_for(model_type)
    if not tasks:
        raise UnsupportedModelError(
            f"transformers maps model type {model_type!r} to none of optibridge's tasks "
            f"(tested model types: {', '.join(sorted(ARCHITECTURES))})"
        )
    probe = task_name if task_name in tasks else tasks[0]
    params = forward_parameters(model_class_for(model_type, probe))
    modality = next((m for name, m in MODALITY_BY_INPUT if name in params), "text")
    return Architecture(model_type, modality, tasks, None if "token_type_ids" in params else False, tested=False)


def get_architecture(model_type: str, task: str | None = None) -> Architecture:
    """How to export ``model_type``: the tested row, an exception row, or the generic derivation.

    Only a task transformers itself cannot load for this model type is refused (the error lists
    the ones it can); anything else is exported and validated."""
    arch = EXCEPTIONS.get(model_type) or ARCHITECTURES.get(model_type) or derive_architecture(model_type, task)
    if model_type in ARCHITECTURES and model_type in EXCEPTIONS:
        arch = replace(arch, tested=True)
    if task is not None and task not in arch.tasks:
        available = tasks_for(model_type) if arch.tested else arch.tasks
        if task in available:  # transformers maps it: try it, validation decides
            return replace(arch, tasks=arch.tasks + (task,), tested=False)
        raise UnsupportedModelError(
            f"task {task!r} is not supported for {model_type}; supported tasks for {model_type}: {', '.join(available or arch.tasks)}"
        )
    return arch
