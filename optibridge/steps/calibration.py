"""Calibration samples: read from a file or a ``datasets`` folder, checked against the graph's inputs.

What a backend receives is :class:`CalibrationData`: for each graph, a list of ready feeds (one
sample per feed, all padded to one common length, because ONNX Runtime's histogram calibrators
need equal shapes). Every problem is a :class:`CalibrationError` raised before anything is
written: a missing or empty file, a format we cannot read, fields that are not the model's inputs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..artifact import Artifact, GraphSpec
from ..configs import CalibrationConfig, CalibrationData
from ..errors import CalibrationError
from .media import AudioFiles, ImageFiles, audio_feeds, dataset_media, image_feeds, media_columns, media_folder
from .samples import (CALIBRATION_SENTENCES, choices_of, is_text_graph, is_vision_graph, is_waveform_graph, load_tokenizer, model_config, recorded_image_size,
                      text_length_limit, token_batch)

SUPPORTED = (".txt (one sample per line), .jsonl (a text field, or token-id fields named after the inputs), .npz (arrays named after "
             "the inputs), a folder of images (.jpg, .png, ...: vision models) or of recordings (.wav, .flac, .mp3, .ogg: waveform "
             "models), or a folder written by datasets' save_to_disk (a text, image or audio column, or the model's input columns)")
MODEL_INPUT_COLUMNS = ("input_ids", "pixel_values", "input_values", "input_features")
"""Dataset columns that are already model inputs (a tokenizer's or processor's output): read as records."""
DEFAULT_COLUMN = "text"


class DatasetRows(list):  # type: ignore[type-arg]
    """Rows of a dataset's model-input columns; its other columns (labels, raw text) are not inputs, so
    each graph takes only the fields it has."""


__all__ = ["CalibrationData", "load_calibration", "read_samples"]  # CalibrationData lives in configs (kept for existing imports)

# Inputs a sample may leave out: they are filled like a tokenizer would (all ones / all zeros).
DEFAULTABLE = ("attention_mask", "token_type_ids")


def _read_text_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _read_jsonl(path: Path, column: str) -> list[Any]:
    records: list[Any] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise CalibrationError(f"{path}:{number} is not valid JSON ({exc}); write one JSON object per line") from None
        if isinstance(record, str):
            records.append(record)
        elif isinstance(record, dict) and isinstance(record.get(column), str):
            records.append(record[column])
        elif isinstance(record, dict):
            records.append(record)
        else:
            raise CalibrationError(f"{path}:{number} holds a {type(record).__name__}; write objects like {{\"{column}\": \"...\"}}")
    return records


def _read_dataset(path: Path, column: str, limit: int) -> list[Any] | ImageFiles | AudioFiles:
    try:
        import datasets
    except ImportError:
        raise CalibrationError(
            f"{path} is a folder; reading a datasets folder needs the datasets package: pip install 'optibridge[calibration]'"
        ) from None
    try:
        data = datasets.load_from_disk(str(path))
    except Exception as exc:  # FileNotFoundError, or datasets' own errors for a non-dataset folder
        raise CalibrationError(f"{path} is not a folder written by datasets' save_to_disk ({exc}); use {SUPPORTED}") from None
    if isinstance(data, datasets.DatasetDict):
        split = "train" if "train" in data else next(iter(data))
        data = data[split]
    media = media_columns(data)
    if column not in data.column_names and column == DEFAULT_COLUMN and len(media) == 1:
        column = next(iter(media))  # one image or audio column: no need to name it
    if column in media:
        return dataset_media(data, column, path, limit)
    if column in data.column_names:
        return [str(t) for t in data[column]]
    if any(name in data.column_names for name in MODEL_INPUT_COLUMNS):
        return DatasetRows(dict(row) for row in data.select(range(min(limit, len(data)))))
    raise CalibrationError(
        f"dataset {path} has no column {column!r} (it has: {', '.join(data.column_names)}); name the text, image or audio "
        "column with --calibration-column, or store the model's inputs (input_ids, pixel_values, ...) as columns"
    )


def read_samples(source: str, column: str = DEFAULT_COLUMN, limit: int | None = None) -> list[Any] | dict[str, np.ndarray] | ImageFiles | AudioFiles:
    """Texts, model-input records, (for .npz) arrays keyed by input name, or images / recordings (a folder's
    files or a dataset column). ``limit`` bounds what is read from a dataset."""
    path = Path(source).expanduser()
    if not path.exists():
        raise CalibrationError(f"calibration source {path} does not exist; give {SUPPORTED}")
    if path.is_dir() and (media := media_folder(path)) is not None:
        return media
    if path.is_dir():
        from_dataset = _read_dataset(path, column, limit if limit is not None else 1 << 62)
        if not isinstance(from_dataset, list):
            return from_dataset
        samples: list[Any] | dict[str, np.ndarray] = from_dataset
    elif path.suffix == ".npz":
        with np.load(path) as arrays:
            samples = {name: arrays[name] for name in arrays.files}
        if not samples or min(len(a) for a in samples.values()) == 0:
            raise CalibrationError(f"calibration file {path} holds no samples (no arrays, or arrays with 0 rows)")
        return samples
    elif path.suffix in (".jsonl", ".json", ".ndjson"):
        samples = _read_jsonl(path, column)
    elif path.suffix in (".txt", ".text", ""):
        samples = _read_text_lines(path)
    else:
        raise CalibrationError(f"cannot read calibration file {path} ({path.suffix}); use {SUPPORTED}")
    if not samples:
        raise CalibrationError(f"calibration source {path} holds no samples; give at least one non-empty line/row")
    return samples


def _check_names(given: set[str], graph: GraphSpec, source: str) -> None:
    expected = set(graph.input_names)
    unexpected = sorted(given - expected - {"token_type_ids"})
    missing = sorted(expected - given - set(DEFAULTABLE))
    if unexpected or missing:
        parts = []
        if unexpected:
            parts.append(f"has input(s) the model does not take: {', '.join(unexpected)}")
        if missing:
            parts.append(f"lacks input(s): {', '.join(missing)}")
        raise CalibrationError(
            f"calibration data {source} does not match the model's inputs: it {' and '.join(parts)}; "
            f"the model takes: {', '.join(graph.input_names)}"
        )


def _feeds_from_arrays(arrays: dict[str, np.ndarray], graph: GraphSpec, source: str, limit: int) -> list[dict[str, np.ndarray]]:
    _check_names(set(arrays), graph, source)
    rows = min(len(a) for a in arrays.values())
    specs = {s.name: s for s in graph.inputs}
    for name, array in arrays.items():
        if name not in specs:
            continue
        spec = specs[name]
        if array.ndim != len(spec.shape):
            raise CalibrationError(
                f"calibration array {name!r} in {source} has shape {array.shape}, but the model takes {spec.describe()} "
                "(first axis: one row per sample)"
            )
        for axis, (want, got) in enumerate(zip(spec.shape, array.shape)):
            if axis and isinstance(want, int) and want > 0 and want != got:
                raise CalibrationError(f"calibration array {name!r} in {source}: axis {axis} is {got}, the model needs {want} ({spec.describe()})")
    feeds = []
    for row in range(min(rows, limit)):
        feed = {}
        for spec in graph.inputs:
            if spec.name in arrays:
                feed[spec.name] = np.asarray(arrays[spec.name][row : row + 1]).astype(spec.dtype)
            else:
                like = feed.get("input_ids", next(iter(feed.values())))
                feed[spec.name] = (np.ones_like if spec.name == "attention_mask" else np.zeros_like)(like, dtype=spec.dtype)
        feeds.append(feed)
    return feeds


def _pad_records(records: list[dict[str, Any]], graph: GraphSpec, source: str, max_length: int) -> dict[str, np.ndarray]:
    """Model-input records (a tokenizer's or processor's rows) as arrays with one row per record:
    sequences of varied length (token ids, waveforms) right-padded with zeros and masked, the rest
    (pixel_values, input_features) stacked as they are."""
    names = set(records[0])
    for number, record in enumerate(records, start=1):
        if set(record) != names:
            raise CalibrationError(f"calibration record {number} in {source} has fields {sorted(record)}, the first one {sorted(names)}")
    _check_names(names, graph, source)
    by_name = {name: [np.asarray(record[name]) for record in records] for name in names if name in graph.input_names}
    for name, rows in by_name.items():
        if all(row.ndim >= 2 and row.shape[0] == 1 for row in rows):  # a processor called on one example: [1, ...]
            by_name[name] = [row[0] for row in rows]
    sequence = next((name for name in ("input_ids", "input_values") if name in by_name), None)
    lengths = [len(np.atleast_1d(row)) for row in by_name[sequence]] if sequence else []
    if sequence == "input_ids":  # waveforms are not cut at a token length
        lengths = [min(length, max_length) for length in lengths]
    arrays = {}
    for name, rows in by_name.items():
        if lengths and all(row.ndim <= 1 for row in rows):  # the sequence and its mask / token types
            out = np.zeros((len(rows), max(lengths)), dtype=np.int64 if rows[0].dtype.kind in "iub" else np.float32)
            for index, row in enumerate(rows):
                values = np.atleast_1d(row)[: max(lengths)]
                out[index, : len(values)] = values
            arrays[name] = out
        elif len({row.shape for row in rows}) == 1:
            arrays[name] = np.stack(rows)
        else:
            shapes = ", ".join(sorted({str(row.shape) for row in rows}))
            raise CalibrationError(f"calibration rows of {name!r} in {source} have different shapes ({shapes}); "
                                   "give them one shape (the processor's padding=...)")
    if "attention_mask" not in arrays and "attention_mask" in graph.input_names and lengths:
        mask = np.zeros((len(records), max(lengths)), dtype=np.int64)
        for index, length in enumerate(lengths):
            mask[index, :length] = 1
        arrays["attention_mask"] = mask
    return arrays


def _text_feeds(artifact: Artifact, graph: GraphSpec, texts: list[str], config: CalibrationConfig, source: str) -> list[dict[str, np.ndarray]]:
    tokenizer = load_tokenizer(artifact.path)
    if tokenizer is None and config.source is not None:
        raise CalibrationError(
            f"calibration data {source} is text, but {artifact.path} has no tokenizer to turn it into token ids; "
            "save the tokenizer into the artifact folder, or give token ids (.jsonl with input_ids, or .npz)"
        )
    vocab = int(model_config(artifact.path).get("vocab_size") or 100)
    max_length = text_length_limit(artifact, config.max_length)  # never past the model's position table
    if tokenizer is not None:
        longest = max(len(tokenizer(t, truncation=True, max_length=max_length)["input_ids"]) for t in texts)
    else:
        longest = min(max_length, 32)
    return [
        token_batch(graph, tokenizer, [text] * choices_of(graph), vocab_size=vocab,
                    pad_to=longest, max_length=max_length, seed=i, image_size=recorded_image_size(artifact)).feed
        for i, text in enumerate(texts)
    ]


def load_calibration(artifact: Artifact, config: CalibrationConfig, graphs: list[str] | None = None) -> CalibrationData:
    """Read, check and tokenize the calibration samples for ``graphs`` (default: every graph).

    A graph the samples cannot feed (e.g. the decoder of a seq2seq artifact given plain text) is
    an error only when it is the only graph; otherwise it gets no samples.
    """
    names = graphs or list(artifact.metadata.graphs)
    if config.source is None:
        samples: Any = list(CALIBRATION_SENTENCES)
        source = "optibridge's built-in sentences"
    else:
        samples = read_samples(config.source, config.column, config.num_samples)
        source = samples.source if isinstance(samples, (ImageFiles, AudioFiles)) else str(config.source)
    batches: dict[str, list[dict[str, np.ndarray]]] = {}
    problems: list[str] = []
    for name in names:
        graph = artifact.metadata.graphs[name]
        try:
            if isinstance(samples, ImageFiles):
                feeds = image_feeds(artifact, graph, samples, config.num_samples)
            elif isinstance(samples, AudioFiles):
                feeds = audio_feeds(artifact, graph, samples, config.num_samples)
            elif isinstance(samples, dict):
                feeds = _feeds_from_arrays(samples, graph, source, config.num_samples)
            elif all(isinstance(s, str) for s in samples):
                if not is_text_graph(graph):
                    images = (" or a folder of images (--calibration DIR)" if is_vision_graph(graph) else
                              " or a folder of recordings (.wav, .flac, ...: --calibration DIR)" if is_waveform_graph(graph) else "")
                    raise CalibrationError(
                        f"calibration data {source} is text, but graph {name!r} takes {', '.join(graph.input_names)}; "
                        f"give an .npz file with arrays named after those inputs (--calibration FILE.npz){images}"
                    )
                feeds = _text_feeds(artifact, graph, samples[: config.num_samples], config, source)
            else:
                records = [s for s in samples if isinstance(s, dict)][: config.num_samples]
                if isinstance(samples, DatasetRows):
                    records = [{k: v for k, v in r.items() if k in graph.input_names or k == "token_type_ids"} for r in records]
                if len(records) != min(len(samples), config.num_samples):
                    raise CalibrationError(f"calibration data {source} mixes text and token-id records; use one kind")
                arrays = _pad_records(records, graph, source, config.max_length)
                feeds = _feeds_from_arrays(arrays, graph, source, config.num_samples)
        except CalibrationError as exc:
            problems.append(str(exc))
            continue
        batches[name] = feeds
    if not batches:
        raise CalibrationError(problems[0] if problems else f"calibration data {source} feeds none of the graphs")
    lengths = {feed[key].shape[-1] for feeds in batches.values() for feed in feeds for key in ("input_ids",) if key in feed}
    count = max(len(b) for b in batches.values())
    kind = "image(s)" if isinstance(samples, ImageFiles) else "recording(s)" if isinstance(samples, AudioFiles) else "sample(s)"
    return CalibrationData(batches, config, f"{count} {kind} from {source}", builtin=config.source is None, lengths=lengths)
