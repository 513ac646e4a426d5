"""Calibration samples: read from a file or a ``datasets`` folder, checked against the graph's inputs.

What a backend receives is :class:`CalibrationData`: for each graph, a list of ready feeds (one
sample per feed, all padded to one common length, because ONNX Runtime's histogram calibrators
need equal shapes). Every problem is a :class:`CalibrationError` raised before anything is
written: a missing or empty file, a format we cannot read, fields that are not the model's inputs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..artifact import Artifact, GraphSpec
from ..configs import CalibrationConfig, CalibrationData
from ..errors import CalibrationError
from .samples import (CALIBRATION_SENTENCES, choices_of, is_text_graph, is_vision_graph, is_waveform_graph, load_tokenizer, model_config, recorded_image_size,
                      text_length_limit, token_batch)

SUPPORTED = (".txt (one sample per line), .jsonl (a text field, or token-id fields named after the inputs), .npz (arrays named after "
             "the inputs), a folder of images (.jpg, .png, ...: vision models) or of .wav recordings (waveform models), or a folder "
             "written by datasets' save_to_disk")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")
AUDIO_SUFFIXES = (".wav",)
"""PCM WAV, read with the standard library (no audio package needed); the rate must be the model's."""
DATASET_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
"""Files save_to_disk writes: a folder with one of them is a dataset, not a folder of images."""


@dataclass(frozen=True)
class ImageFiles:
    """A folder of images as calibration samples (sorted, so a run is repeatable)."""

    folder: Path
    files: tuple[Path, ...]


@dataclass(frozen=True)
class AudioFiles:
    """A folder of WAV recordings as calibration samples (sorted)."""

    folder: Path
    files: tuple[Path, ...]
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


def _read_dataset(path: Path, column: str) -> list[Any]:
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
    if column in data.column_names:
        return [str(t) for t in data[column]]
    if "input_ids" in data.column_names:
        return [dict(row) for row in data]
    raise CalibrationError(
        f"dataset {path} has no column {column!r} (it has: {', '.join(data.column_names)}); pass the text column "
        "with --calibration-column, or store token ids in an input_ids column"
    )


def _media_files(path: Path) -> ImageFiles | AudioFiles | None:
    """The folder's image (or WAV) files, or None for a folder that is a dataset or holds neither."""
    if any((path / marker).is_file() for marker in DATASET_MARKERS):
        return None
    plain = [f for f in sorted(path.iterdir()) if f.is_file() and not f.is_symlink()]
    images = tuple(f for f in plain if f.suffix.lower() in IMAGE_SUFFIXES)
    sounds = tuple(f for f in plain if f.suffix.lower() in AUDIO_SUFFIXES)
    if images and sounds:
        raise CalibrationError(f"calibration folder {path} holds both images and WAV files; keep one kind per folder")
    return ImageFiles(path, images) if images else AudioFiles(path, sounds) if sounds else None


def read_samples(source: str, column: str = "text") -> list[Any] | dict[str, np.ndarray] | ImageFiles | AudioFiles:
    """Texts, token-id records, (for .npz) arrays keyed by input name, or a folder's image or WAV files."""
    path = Path(source).expanduser()
    if not path.exists():
        raise CalibrationError(f"calibration source {path} does not exist; give {SUPPORTED}")
    if path.is_dir() and (media := _media_files(path)) is not None:
        return media
    if path.is_dir():
        samples: list[Any] | dict[str, np.ndarray] = _read_dataset(path, column)
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
    """Token-id records of varied lengths as right-padded arrays (one row per record)."""
    names = set(records[0])
    for number, record in enumerate(records, start=1):
        if set(record) != names:
            raise CalibrationError(f"calibration record {number} in {source} has fields {sorted(record)}, the first one {sorted(names)}")
    _check_names(names, graph, source)
    lengths = [min(len(np.atleast_1d(r["input_ids"])), max_length) for r in records]
    width = max(lengths)
    arrays = {}
    for name in names:
        if name not in graph.input_names:
            continue
        out = np.zeros((len(records), width), dtype=np.int64)
        for row, record in enumerate(records):
            values = np.atleast_1d(np.asarray(record[name]))[:width]
            out[row, : len(values)] = values
        arrays[name] = out
    if "attention_mask" not in arrays and "attention_mask" in graph.input_names:
        mask = np.zeros((len(records), width), dtype=np.int64)
        for row, length in enumerate(lengths):
            mask[row, :length] = 1
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


def _image_feeds(artifact: Artifact, graph: GraphSpec, images: ImageFiles, limit: int) -> list[dict[str, np.ndarray]]:
    """Each image through the artifact's own image processor (resize, crop, normalise), one feed per image."""
    if not is_vision_graph(graph) or is_text_graph(graph):
        raise CalibrationError(
            f"calibration data {images.folder} is images, but graph takes {', '.join(graph.input_names)}; images calibrate "
            "models that take pixel_values alone (give text or an .npz file for this one)"
        )
    processor = _preprocessor(artifact, "AutoImageProcessor", "image processor", "images", "pixel_values")
    from PIL import Image, UnidentifiedImageError

    feeds = []
    for file in images.files[:limit]:
        try:
            with Image.open(file) as opened:
                image = opened.convert("RGB")
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
            raise CalibrationError(f"calibration image {file} cannot be read ({exc}); remove it or replace it") from None
        feeds.append(_feed(processor(images=image, return_tensors="np"), graph, "image processor"))
    return feeds


def _preprocessor(artifact: Artifact, auto_class: str, what: str, media: str, input_name: str) -> Any:
    """The artifact's own image processor / feature extractor (never remote code), or the error naming the fix."""
    import transformers

    try:
        return getattr(transformers, auto_class).from_pretrained(artifact.path, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise CalibrationError(
            f"{artifact.path} has no {what} (preprocessor_config.json) to turn {media} into {input_name} ({exc}); "
            f"export from a folder that has one, or give an .npz file with an {input_name} array"
        ) from None


def _feed(processed: Any, graph: GraphSpec, what: str) -> dict[str, np.ndarray]:
    feed = {spec.name: np.asarray(processed[spec.name]).astype(spec.dtype) for spec in graph.inputs if spec.name in processed}
    missing = [spec.name for spec in graph.inputs if spec.name not in feed]
    if missing:
        raise CalibrationError(f"the {what} gives no {', '.join(missing)}, which the graph takes; give an .npz file")
    return feed


def _read_wav(file: Path) -> tuple[np.ndarray, int]:
    """Mono float32 samples in [-1, 1] and the sampling rate of a PCM WAV file (8/16/32-bit)."""
    import wave

    try:
        with wave.open(str(file), "rb") as handle:
            width, channels, rate = handle.getsampwidth(), handle.getnchannels(), handle.getframerate()
            raw = handle.readframes(handle.getnframes())
    except (OSError, EOFError, wave.Error) as exc:
        raise CalibrationError(f"calibration recording {file} cannot be read as PCM WAV ({exc}); remove or convert it") from None
    kinds = {1: (np.uint8, 128.0, 128.0), 2: (np.int16, 0.0, 32768.0), 4: (np.int32, 0.0, 2147483648.0)}
    if width not in kinds or channels < 1:
        raise CalibrationError(f"calibration recording {file} is {8 * width}-bit with {channels} channel(s); write 16-bit PCM")
    dtype, offset, scale = kinds[width]
    samples = (np.frombuffer(raw, dtype=dtype).astype(np.float32) - offset) / scale
    return samples.reshape(-1, channels).mean(axis=1), rate


def _audio_feeds(artifact: Artifact, graph: GraphSpec, sounds: AudioFiles, limit: int) -> list[dict[str, np.ndarray]]:
    """Each recording through the artifact's feature extractor, all padded to the longest (the
    calibrators need one shape), with the attention mask where the graph takes one."""
    if not is_waveform_graph(graph):
        raise CalibrationError(
            f"calibration data {sounds.folder} is audio, but graph takes {', '.join(graph.input_names)}; recordings "
            "calibrate models that take input_values"
        )
    extractor = _preprocessor(artifact, "AutoFeatureExtractor", "feature extractor", "recordings", "input_values")
    wanted = int(getattr(extractor, "sampling_rate", 16000))
    recordings = []
    for file in sounds.files[:limit]:
        samples, rate = _read_wav(file)
        if rate != wanted:
            raise CalibrationError(f"calibration recording {file} is sampled at {rate} Hz; the model takes {wanted} Hz: resample it")
        recordings.append(samples)
    longest = max(len(r) for r in recordings)
    feeds = []
    for samples in recordings:
        processed = extractor(samples, sampling_rate=wanted, padding="max_length", max_length=longest,
                              return_attention_mask=True, return_tensors="np")
        feeds.append(_feed(processed, graph, "feature extractor"))
    return feeds


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
        samples = read_samples(config.source, config.column)
        source = str(config.source)
    batches: dict[str, list[dict[str, np.ndarray]]] = {}
    problems: list[str] = []
    for name in names:
        graph = artifact.metadata.graphs[name]
        try:
            if isinstance(samples, ImageFiles):
                feeds = _image_feeds(artifact, graph, samples, config.num_samples)
            elif isinstance(samples, AudioFiles):
                feeds = _audio_feeds(artifact, graph, samples, config.num_samples)
            elif isinstance(samples, dict):
                feeds = _feeds_from_arrays(samples, graph, source, config.num_samples)
            elif all(isinstance(s, str) for s in samples):
                if not is_text_graph(graph):
                    images = (" or a folder of images (--calibration DIR)" if is_vision_graph(graph) else
                              " or a folder of 16-bit PCM WAV recordings (--calibration DIR)" if is_waveform_graph(graph) else "")
                    raise CalibrationError(
                        f"calibration data {source} is text, but graph {name!r} takes {', '.join(graph.input_names)}; "
                        f"give an .npz file with arrays named after those inputs (--calibration FILE.npz){images}"
                    )
                feeds = _text_feeds(artifact, graph, samples[: config.num_samples], config, source)
            else:
                records = [s for s in samples if isinstance(s, dict)][: config.num_samples]
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
