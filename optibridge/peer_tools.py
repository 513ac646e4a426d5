"""What the peers' quantizer classes share (:class:`optibridge.onnxruntime.ORTQuantizer`,
:class:`optibridge.openvino.OVQuantizer`): the artifact they read, from a model or a folder, and
calibration rows as their users give them, a ``datasets`` dataset mapped through the tokenizer or
processor (``get_calibration_dataset``). The rows' model-input columns are written as a
``datasets`` folder, which the static step reads like ``optibridge quantize --calibration FOLDER``
(docs/optimum_migration.md).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .artifact import is_artifact
from .errors import ArtifactError, ConfigError
from .staging import pid_prefix


def artifact_source(model_or_path: Any, file_name: str | None = None) -> tuple[Path, Any]:
    """The artifact folder behind an ``ORTModelFor…`` / ``OVModelFor…`` or a folder (an optibridge artifact,
    or one Optimum / optimum-intel wrote, imported; ``file_name`` picks its graph), and what keeps it on disk."""
    path = getattr(getattr(model_or_path, "artifact", None), "path", None)
    if path is not None and is_artifact(path):
        return Path(path), model_or_path  # after export=True its folder lives as long as the model
    folder = Path(path if path is not None else model_or_path)
    if is_artifact(folder):
        return folder, None
    from .optimum_folders import import_optimum_folder, is_optimum_folder

    if not is_optimum_folder(folder):
        raise ArtifactError(f"{folder} is neither an optibridge artifact nor a folder Optimum wrote; export it first "
                            f"(ORTModelFor….from_pretrained(MODEL, export=True).save_pretrained(DIR), or `optibridge export`)")
    keep_alive = tempfile.TemporaryDirectory(prefix=pid_prefix("optibridge-"))
    import_optimum_folder(folder, Path(keep_alive.name) / "artifact", file_name=file_name)
    return Path(keep_alive.name) / "artifact", keep_alive


def datasets_module() -> Any:
    try:
        import datasets
    except ImportError:
        raise ConfigError("calibration datasets need the datasets package: pip install 'optibridge[calibration]'") from None
    return datasets


def load_calibration_dataset(dataset_name: str, num_samples: int | None, dataset_config_name: str | None, dataset_split: str | None,
                             preprocess_function: Any, preprocess_batch: bool, seed: int, token: Any, **load_options: Any) -> Any:
    """``num_samples`` shuffled rows of a ``datasets`` dataset (a hub name or a local folder/builder),
    mapped through ``preprocess_function`` (the tokenizer or processor call)."""
    datasets = datasets_module()
    data = datasets.load_dataset(dataset_name, name=dataset_config_name, split=dataset_split or "train", token=token, **load_options)
    data = data.shuffle(seed=seed)
    if num_samples is not None:
        data = data.select(range(min(num_samples, len(data))))
    return data.map(preprocess_function, batched=preprocess_batch) if preprocess_function is not None else data


def check_rows(dataset: Any, inputs: Sequence[str]) -> None:
    """A dataset the static step can calibrate on: rows, and at least one of the model's input columns."""
    if dataset is None or len(dataset) == 0:
        raise ConfigError("the calibration dataset is empty: give rows of the model's inputs (input_ids, pixel_values, ...)")
    columns = list(getattr(dataset, "column_names", ()))
    if not any(name in columns for name in inputs):
        raise ConfigError(f"the calibration dataset has columns {', '.join(columns)} but none of the model's inputs "
                          f"({', '.join(inputs)}): map it through the tokenizer or processor first "
                          f"(get_calibration_dataset(..., preprocess_function=...))")


@dataclass
class SavedRows:
    """The model-input columns of the rows, written where the static step reads them."""

    folder: Path
    rows: int
    longest: int
    """The longest row of input_ids (2 for models without token ids): the calibration max_length."""
    keep: Any  # the temporary folder, removed when this goes


def save_rows(parts: Sequence[Any], inputs: Sequence[str]) -> SavedRows:
    """``parts`` (datasets) concatenated, reduced to the model's input columns, saved to a temporary folder."""
    datasets = datasets_module()
    data = datasets.concatenate_datasets(list(parts)) if len(parts) > 1 else parts[0]
    data = data.remove_columns([c for c in data.column_names if c not in inputs])
    keep = tempfile.TemporaryDirectory(prefix=pid_prefix("optibridge-calibration-"))
    folder = Path(keep.name) / "rows"
    data.save_to_disk(str(folder))
    longest = max(len(row) for row in data["input_ids"]) if "input_ids" in data.column_names else 2
    return SavedRows(folder, len(data), max(longest, 2), keep)
