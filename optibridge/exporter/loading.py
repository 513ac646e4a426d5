"""Load the PyTorch model (and its preprocessor) to export, with errors that say what to fix."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ModelNotFoundError, UnsupportedModelError, first_line
from ..tasks import Task, get_task, infer_task
from ..tokenizer_check import TOKENIZER_FILES, usable_tokenizer
from .architectures import Architecture, get_architecture
from .text_only import is_multimodal_lm, load_language_model


@dataclass
class SourceModel:
    model: Any
    """The ``torch.nn.Module``, in eval mode."""
    config: Any
    task: Task
    architecture: Architecture
    task_inferred: bool
    name_or_path: str
    extra: dict[str, Any] = field(default_factory=dict)
    """Facts recorded in ``optibridge.json`` (``extra``) beside the exporter's own."""


def looks_like_path(name: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything else that is not on disk was meant as a path."""
    return os.path.isabs(name) or name.startswith((".", "~")) or name.count("/") > 1 or "\\" in name


def check_model_source(name_or_path: str) -> None:
    """Fail early and clearly on a local path that cannot be a transformers model folder."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelNotFoundError(f"{path} is a file; pass the folder that holds config.json and the weights")
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(
                f"{path} has no config.json, so it is not a transformers model folder; "
                "pass the folder written by model.save_pretrained(...) or a hub id"
            )
        return
    if looks_like_path(name_or_path):
        raise ModelNotFoundError(f"model folder {path} does not exist; check the path (or pass a hub id like org/name)")


TRUST_REMOTE_CODE_FIX = "--trust-remote-code (trust_remote_code=True in Python)"


def no_remote_code(hub_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The hub arguments with ``trust_remote_code`` always explicit: transformers *prompts* [y/N] when
    it is left unset (hidden behind a progress spinner, and ``y`` runs the folder's code)."""
    return {**hub_kwargs, "trust_remote_code": bool(hub_kwargs.get("trust_remote_code", False))}


def refuse_remote_code(name_or_path: str, exc: BaseException) -> None:
    """Turn transformers' "contains custom code" error into one line naming the flag."""
    text = str(exc)
    if "trust_remote_code" in text and ("custom code" in text or "execute" in text):
        raise UnsupportedModelError(
            f"{name_or_path} needs to run Python code shipped with the model (custom architecture); "
            f"read that code, then pass {TRUST_REMOTE_CODE_FIX} to allow it"
        ) from exc


def load_config(name_or_path: str, **hub_kwargs: Any) -> Any:
    from transformers import AutoConfig

    check_model_source(name_or_path)
    try:
        return AutoConfig.from_pretrained(name_or_path, **no_remote_code(hub_kwargs))
    except (OSError, ValueError) as exc:
        refuse_remote_code(name_or_path, exc)
        raise ModelNotFoundError(
            f"could not load a transformers config for {name_or_path!r}: {first_line(exc)}. "
            "Pass a local model folder, or a hub id with network access (or a filled cache with HF_HUB_OFFLINE=1)"
        ) from exc


def load_source_model(name_or_path: str, task: str | None = None, *, allow_new_weights: bool = False, **hub_kwargs: Any) -> SourceModel:
    """Load the model for ``task`` (inferred from ``config.architectures`` when None).

    Weights the checkpoint does not have (a task head it was not trained with) would be random:
    an error unless ``allow_new_weights``.
    """
    import transformers

    config = load_config(name_or_path, **hub_kwargs)
    model_type = getattr(config, "model_type", None) or "unknown"
    arch = get_architecture(model_type, get_task(task).name if task else None)
    resolved = get_task(task) if task else infer_task(getattr(config, "architectures", None), model_type, arch.tasks)
    arch = get_architecture(model_type, resolved.name)
    # BLIP's captioner is no encoder-decoder in transformers' terms, but exports as one (see .blip)
    if resolved.name == "image-to-text" and model_type != "blip" and not getattr(config, "is_encoder_decoder", False):
        raise UnsupportedModelError(
            f"task 'image-to-text' exports image captioners made of an image encoder and a text decoder "
            f"(vision-encoder-decoder); {model_type} is a decoder LM that takes images: export it with --task image-text-to-text "
            "(or --task text-generation for its language model alone, text inputs only)"
        )
    if resolved.name == "text-generation" and is_multimodal_lm(config):
        lm, text_only = load_language_model(name_or_path, config, **no_remote_code(hub_kwargs))
        source = SourceModel(lm, lm.config, resolved, get_architecture(lm.config.model_type, resolved.name), task is None, str(name_or_path))
        source.extra["text_only"] = text_only
        return source
    if resolved.auto_class == "SentenceTransformer":
        from .sentence import load_sentence_model

        if arch.modality != "text":
            raise UnsupportedModelError(f"task {resolved.name!r} embeds text; {model_type} is a {arch.modality} model")
        model = load_sentence_model(name_or_path, **hub_kwargs)
        return SourceModel(model, model.config, resolved, arch, task is None, str(name_or_path))
    auto_class = getattr(transformers, resolved.auto_class)
    try:
        # Eager attention: the reference math, and the graph shape ONNX Runtime's fusions recognise.
        model, loading_info = auto_class.from_pretrained(
            name_or_path, attn_implementation="eager", output_loading_info=True, **no_remote_code(hub_kwargs)
        )
    except (OSError, ValueError) as exc:
        refuse_remote_code(name_or_path, exc)
        raise UnsupportedModelError(
            f"could not load {name_or_path!r} as {resolved.auto_class} for task {resolved.name!r}: {first_line(exc)}"
        ) from exc
    if _only_pooler_missing(resolved, loading_info):
        # A checkpoint without a pooler (an MLM, roberta-base) exported for feature extraction: leave
        # the pooler out (its output would be random) rather than refuse; pooler_output is optional.
        try:
            model, loading_info = auto_class.from_pretrained(
                name_or_path, attn_implementation="eager", output_loading_info=True, add_pooling_layer=False,
                **no_remote_code(hub_kwargs),
            )
        except (OSError, ValueError, TypeError):  # a model class without that switch: judged as it is below
            pass
    if not allow_new_weights:
        check_no_new_weights(name_or_path, resolved, loading_info)
    model.eval()
    if resolved.name == "audio-xvector":
        from .inputs import VALIDATION_SHAPES, samples_per_step
        from .xvector import XVectorExport

        pooled = XVectorExport(model)
        pooled.check_against_the_model(VALIDATION_SHAPES.sequence * samples_per_step(resolved, model.config))
        return SourceModel(pooled, pooled.config, resolved, arch, task is None, str(name_or_path))
    if resolved.name == "image-to-text" and model_type == "blip":
        from .blip import BlipCaptioner

        captioner = BlipCaptioner(model).eval()
        arch = dataclasses.replace(arch, modality="vision")  # the encoder side takes pixel_values
        return SourceModel(captioner, captioner.config, resolved, arch, task is None, str(name_or_path))
    return SourceModel(model, model.config, resolved, arch, task is None, str(name_or_path))


def load_preprocessor(name_or_path: str, modality: str, **hub_kwargs: Any) -> Any | None:
    """The tokenizer (text) or image processor (vision) saved beside the model, if there is one.

    Never a made-up one: a local folder without tokenizer files, or a tokenizer that yields no
    tokens, gives None, so no tokenizer files are written into the artifact.
    """
    import transformers

    if modality == "processor":  # one processor joining both (llava's also expands <image> into its placeholder tokens)
        try:
            return transformers.AutoProcessor.from_pretrained(name_or_path, **no_remote_code(hub_kwargs))  # type: ignore[no-untyped-call]
        except Exception:  # none saved: the parts, as for any multimodal model
            modality = "multimodal"
    if modality == "multimodal":  # the tokenizer and the image processor, saved side by side
        parts = [p for p in (load_preprocessor(name_or_path, m, **hub_kwargs) for m in ("text", "vision")) if p is not None]
        return _SavedTogether(parts) if parts else None
    local = Path(name_or_path).expanduser()
    if modality == "text" and local.is_dir() and not any((local / name).is_file() for name in TOKENIZER_FILES):
        return None  # never make up a tokenizer the source does not have
    loaders = {"text": ("AutoTokenizer",), "audio": ("AutoProcessor", "AutoFeatureExtractor"),
               "speech": ("AutoProcessor", "AutoFeatureExtractor"), "patches": ("AutoProcessor", "AutoImageProcessor")}.get(
        modality, ("AutoImageProcessor",))
    # audio/speech/patches: the processor (feature extractor or image processor + tokenizer) where there is one
    for loader in loaders:
        try:
            found = getattr(transformers, loader).from_pretrained(name_or_path, **no_remote_code(hub_kwargs))
        except Exception:  # a model folder without a preprocessor is legitimate (tiny test models, custom code)
            continue
        return found if modality != "text" or usable_tokenizer(found) else None
    return None


def load_preprocessors(name_or_path: str, modality: str, generates_text: bool, **hub_kwargs: Any) -> Any | None:
    """:func:`load_preprocessor`, plus the tokenizer where the model generates text from another modality
    (Whisper, image captioners): decoding the output needs it, and a user loads it from the artifact."""
    found = load_preprocessor(name_or_path, modality, **hub_kwargs)
    if not generates_text or modality in ("text", "multimodal") or getattr(found, "tokenizer", None) is not None:
        return found  # (a processor that holds the tokenizer already saves it: Whisper's)
    parts = [p for p in (found, load_preprocessor(name_or_path, "text", **hub_kwargs)) if p is not None]
    return parts[0] if len(parts) == 1 else _SavedTogether(parts) if parts else None


class _SavedTogether:
    """Several preprocessors written into one folder by one ``save_pretrained`` call."""

    def __init__(self, parts: list[Any]) -> None:
        self.parts = parts

    def save_pretrained(self, directory: Any) -> None:
        for part in self.parts:
            part.save_pretrained(directory)


def _only_pooler_missing(task: Task, loading_info: dict[str, Any]) -> bool:
    missing = list(loading_info.get("missing_keys") or [])
    return task.name == "feature-extraction" and bool(missing) and not loading_info.get("mismatched_keys") and all(
        key.split(".")[-3:-2] == ["pooler"] or key.startswith("pooler.") for key in missing
    )


def check_no_new_weights(name_or_path: str, task: Task, loading_info: dict[str, Any]) -> None:
    """Refuse a model whose checkpoint left weights to random initialisation (e.g. a QA model
    exported as text-classification gets a fresh classifier): it would validate and mean nothing."""
    missing = list(loading_info.get("missing_keys") or [])
    mismatched = [str(entry[0]) if isinstance(entry, (tuple, list)) else str(entry) for entry in loading_info.get("mismatched_keys") or []]
    new = missing + mismatched
    if new:
        shown = ", ".join(sorted(new)[:4]) + (f" and {len(new) - 4} more" if len(new) > 4 else "")
        raise UnsupportedModelError(
            f"{name_or_path} has no trained weights for {len(new)} tensor(s) of {task.auto_class} ({shown}): they would be "
            f"random, so task {task.name!r} would give meaningless outputs. Pick the task the checkpoint was trained for "
            "(or omit --task), or pass --allow-new-weights (allow_new_weights=True) to export a fresh head on purpose"
        )
