"""Load the PyTorch model (and its preprocessor) to export, with errors that say what to fix."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelNotFoundError, UnsupportedModelError, first_line
from ..tasks import Task, get_task, infer_task
from .architectures import Architecture, get_architecture


@dataclass
class SourceModel:
    model: Any
    """The ``torch.nn.Module``, in eval mode."""
    config: Any
    task: Task
    architecture: Architecture
    task_inferred: bool
    name_or_path: str


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


def load_config(name_or_path: str, **hub_kwargs: Any) -> Any:
    from transformers import AutoConfig

    check_model_source(name_or_path)
    try:
        return AutoConfig.from_pretrained(name_or_path, **hub_kwargs)
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(
            f"could not load a transformers config for {name_or_path!r}: {first_line(exc)}. "
            "Pass a local model folder, or a hub id with network access (or a filled cache with HF_HUB_OFFLINE=1)"
        ) from exc


def load_source_model(name_or_path: str, task: str | None = None, **hub_kwargs: Any) -> SourceModel:
    """Load the model for ``task`` (inferred from ``config.architectures`` when None)."""
    import transformers

    config = load_config(name_or_path, **hub_kwargs)
    model_type = getattr(config, "model_type", None) or "unknown"
    arch = get_architecture(model_type, get_task(task).name if task else None)
    resolved = get_task(task) if task else infer_task(getattr(config, "architectures", None), model_type, arch.tasks)
    arch = get_architecture(model_type, resolved.name)
    if resolved.auto_class == "SentenceTransformer":
        from .sentence import load_sentence_model

        if arch.modality != "text":
            raise UnsupportedModelError(f"task {resolved.name!r} embeds text; {model_type} is a {arch.modality} model")
        model = load_sentence_model(name_or_path, **hub_kwargs)
        return SourceModel(model, model.config, resolved, arch, task is None, str(name_or_path))
    auto_class = getattr(transformers, resolved.auto_class)
    try:
        # Eager attention: the reference math, and the graph shape ONNX Runtime's fusions recognise.
        model = auto_class.from_pretrained(name_or_path, attn_implementation="eager", **hub_kwargs)
    except (OSError, ValueError) as exc:
        raise UnsupportedModelError(
            f"could not load {name_or_path!r} as {resolved.auto_class} for task {resolved.name!r}: {first_line(exc)}"
        ) from exc
    model.eval()
    return SourceModel(model, model.config, resolved, arch, task is None, str(name_or_path))


def load_preprocessor(name_or_path: str, modality: str, **hub_kwargs: Any) -> Any | None:
    """The tokenizer (text) or image processor (vision) saved beside the model, if there is one."""
    import transformers

    if modality == "multimodal":  # the tokenizer and the image processor, saved side by side
        parts = [p for p in (load_preprocessor(name_or_path, m, **hub_kwargs) for m in ("text", "vision")) if p is not None]
        return _SavedTogether(parts) if parts else None
    loaders = {"text": ("AutoTokenizer",), "audio": ("AutoProcessor", "AutoFeatureExtractor")}.get(modality, ("AutoImageProcessor",))
    for loader in loaders:  # audio: the processor (feature extractor + CTC tokenizer), else the feature extractor
        try:
            return getattr(transformers, loader).from_pretrained(name_or_path, **hub_kwargs)
        except Exception:  # a model folder without a preprocessor is legitimate (tiny test models, custom code)
            continue
    return None



class _SavedTogether:
    """Several preprocessors written into one folder by one ``save_pretrained`` call."""

    def __init__(self, parts: list[Any]) -> None:
        self.parts = parts

    def save_pretrained(self, directory: Any) -> None:
        for part in self.parts:
            part.save_pretrained(directory)
