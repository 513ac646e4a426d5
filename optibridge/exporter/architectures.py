"""Architectures the exporter supports, as a table of named fields.

A row says which inputs the graph takes and which tasks are exported. Adding an encoder that
behaves like the ones here is one row; a class is only warranted where behaviour differs.
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class Architecture:
    model_type: str
    modality: str
    """"text" or "vision"."""
    tasks: tuple[str, ...]
    token_type_ids: bool | None = False
    """Whether the graph takes token_type_ids: True, False, or None for "when config.type_vocab_size > 0"."""

    def input_names(self, config: Any) -> tuple[str, ...]:
        """Inputs of an encoder graph (decoder and seq2seq graphs are laid out by their exporters)."""
        if self.modality == "vision":
            return ("pixel_values",)
        if self.modality == "speech":
            return ("input_features",)
        takes_types = self.token_type_ids
        if takes_types is None:
            takes_types = getattr(config, "type_vocab_size", 0) > 0
        return ("input_ids", "attention_mask") + (("token_type_ids",) if takes_types else ())


def _text(model_type: str, *, token_type_ids: bool | None = False, tasks: tuple[str, ...] = TEXT_TASKS) -> Architecture:
    return Architecture(model_type, "text", tasks, token_type_ids)


def _vision(model_type: str) -> Architecture:
    return Architecture(model_type, "vision", VISION_TASKS)


def _decoder(model_type: str) -> Architecture:
    return Architecture(model_type, "text", DECODER_TASKS)


def _seq2seq(model_type: str) -> Architecture:
    return Architecture(model_type, "text", SEQ2SEQ_TASKS)


ARCHITECTURES: dict[str, Architecture] = {
    a.model_type: a
    for a in (
        _text("bert", token_type_ids=True),
        _text("distilbert"),
        _text("roberta"),
        _text("xlm-roberta"),
        _text("camembert"),
        _text("albert", token_type_ids=True),
        _text("electra", token_type_ids=True),
        _text("deberta-v2", token_type_ids=None),
        _text("mpnet"),
        _text("roformer", token_type_ids=True),
        _text("mobilebert", token_type_ids=True),
        _vision("vit"),
        _vision("deit"),
        _vision("convnext"),
        _decoder("gpt2"),
        _decoder("llama"),
        _decoder("mistral"),
        _decoder("qwen2"),
        _decoder("qwen3"),
        _decoder("phi3"),
        _decoder("gemma"),
        _decoder("gpt_neox"),
        _seq2seq("t5"),
        _seq2seq("bart"),
        _seq2seq("marian"),
        Architecture("whisper", "speech", SPEECH_TASKS),
    )
}


def get_architecture(model_type: str, task: str | None = None) -> Architecture:
    """The table row for ``model_type``; the error lists what is supported."""
    arch = ARCHITECTURES.get(model_type)
    if arch is None:
        raise UnsupportedModelError(
            f"architecture {model_type!r} is not supported by the exporter yet; "
            f"supported: {', '.join(sorted(ARCHITECTURES))}"
        )
    if task is not None and task not in arch.tasks:
        raise UnsupportedModelError(
            f"task {task!r} is not supported for {model_type}; supported tasks for {model_type}: {', '.join(arch.tasks)}"
        )
    return arch
