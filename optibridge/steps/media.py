"""Images and recordings as calibration samples, from a folder of files or a ``datasets`` column;
the readers (:func:`open_image`, :func:`read_recording`, :func:`resample`) serve ``optibridge run`` too.

Both sources reduce to labelled items (a file, or a dataset row's encoded bytes) that go through
the artifact's own image processor or feature extractor. A dataset is untrusted input like any
artifact: its cells are read as bytes (never decoded by code the dataset names), and a cell that
refers to a file by path may only name one inside the dataset's folder.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Union

import numpy as np

from ..artifact import Artifact, GraphSpec
from ..errors import CalibrationError, first_line
from .samples import is_text_graph, is_vision_graph, is_waveform_graph

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg")
"""PCM WAV is read with the standard library; FLAC, MP3 and OGG with soundfile (libsndfile). A
recording at another rate than the model's is resampled (scipy's polyphase filter)."""
RATE_RANGE = (1000, 384000)
"""Sampling rates accepted from a file or a dataset row (untrusted): telephone to studio audio."""
DATASET_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
"""Files save_to_disk writes: a folder with one of them is a dataset, not a folder of images."""

Content = Union[Path, bytes, "tuple[np.ndarray, int]"]
"""A file, its encoded bytes, or (for audio) decoded samples with their rate."""
Failure = Callable[[str], Exception]
"""Turns a reader's message ("image X cannot be read ...") into the error its caller raises."""


def calibration_error(message: str) -> Exception:
    return CalibrationError(f"calibration {message}")


@dataclass(frozen=True)
class ImageFiles:
    """Images as calibration samples: ``source`` names where they came from, ``items`` are (label, content)."""

    source: str
    items: tuple[tuple[str, Content], ...]


@dataclass(frozen=True)
class AudioFiles:
    """Recordings as calibration samples, as :class:`ImageFiles`."""

    source: str
    items: tuple[tuple[str, Content], ...]


def media_folder(path: Path) -> ImageFiles | AudioFiles | None:
    """The folder's image (or recording) files, sorted so a run is repeatable; None for a dataset folder or one holding neither."""
    if any((path / marker).is_file() for marker in DATASET_MARKERS):
        return None
    plain = [f for f in sorted(path.iterdir()) if f.is_file() and not f.is_symlink()]
    images = tuple((str(f), f) for f in plain if f.suffix.lower() in IMAGE_SUFFIXES)
    sounds = tuple((str(f), f) for f in plain if f.suffix.lower() in AUDIO_SUFFIXES)
    if images and sounds:
        raise CalibrationError(f"calibration folder {path} holds both images and recordings; keep one kind per folder")
    return ImageFiles(str(path), images) if images else AudioFiles(str(path), sounds) if sounds else None


def media_columns(data: Any) -> dict[str, str]:
    """The dataset's columns that hold images or recordings: name → "image" / "audio"."""
    import datasets

    found = {}
    for name, feature in data.features.items():
        if isinstance(feature, datasets.Image):
            found[name] = "image"
        elif isinstance(feature, datasets.Audio) or _is_array_struct(feature):
            found[name] = "audio"
    return found


def _is_array_struct(feature: Any) -> bool:
    """A column of {"array": [...], "sampling_rate": N} records: recordings stored as numbers."""
    return isinstance(feature, dict) and {"array", "sampling_rate"} <= set(feature)


def dataset_media(data: Any, column: str, folder: Path, limit: int) -> ImageFiles | AudioFiles:
    """The first ``limit`` rows of an image or audio column, as encoded bytes (or, for number records, samples)."""
    import datasets

    feature = data.features[column]
    rows = data.select(range(min(limit, len(data))))
    if isinstance(feature, (datasets.Image, datasets.Audio)):
        kind = datasets.Image if isinstance(feature, datasets.Image) else datasets.Audio
        rows = rows.cast_column(column, kind(decode=False))  # bytes as stored: no decoder package, no code run
    source = f"{folder} (column {column!r})"
    items: list[tuple[str, Content]] = []
    for number, cell in enumerate(rows[column]):
        label = f"{source} row {number}"
        items.append((label, _cell_content(cell, folder, label)))
    if not items:
        raise CalibrationError(f"calibration dataset {folder} has no rows")
    return (ImageFiles if isinstance(feature, datasets.Image) else AudioFiles)(source, tuple(items))


def _cell_content(cell: Any, folder: Path, label: str) -> Content:
    if not isinstance(cell, dict):
        raise CalibrationError(f"{label} holds a {type(cell).__name__}, not an image or recording")
    if "array" in cell:
        try:
            samples = np.asarray(cell["array"], dtype=np.float32)
            rate = int(cell["sampling_rate"])
        except (TypeError, ValueError) as exc:
            raise CalibrationError(f"{label}: its array / sampling_rate are not numbers ({exc})") from None
        if samples.ndim != 1 or not samples.size:
            raise CalibrationError(f"{label}: the recording must be a non-empty 1-D array of samples, not shape {samples.shape}")
        return samples, rate
    if isinstance(cell.get("bytes"), bytes):
        return bytes(cell["bytes"])
    return _file_inside(folder, cell.get("path"), label)


def _file_inside(folder: Path, name: Any, label: str) -> Path:
    """A cell that names a file instead of holding it: only a plain file inside the dataset's folder is read."""
    if not isinstance(name, str) or not name:
        raise CalibrationError(f"{label} holds neither bytes nor a file name")
    root = folder.resolve()
    file = (root / name).resolve()
    if root not in file.parents or not file.is_file() or (root / name).is_symlink():
        raise CalibrationError(
            f"{label} names the file {name!r}, which is not a plain file inside {folder}; store the bytes in the dataset "
            "(save_to_disk embeds them when the column is cast to datasets.Image() / datasets.Audio())"
        )
    return file


def image_feeds(artifact: Artifact, graph: GraphSpec, images: ImageFiles, limit: int) -> list[dict[str, np.ndarray]]:
    """Each image through the artifact's own image processor (resize, crop, normalise), one feed per image."""
    if not is_vision_graph(graph) or is_text_graph(graph):
        raise CalibrationError(
            f"calibration data {images.source} is images, but graph takes {', '.join(graph.input_names)}; images calibrate "
            "models that take pixel_values alone (give text or an .npz file for this one)"
        )
    processor = _preprocessor(artifact, "AutoImageProcessor", "image processor", "images", "pixel_values")
    return [_feed(processor(images=open_image(label, content), return_tensors="np"), graph, "image processor")
            for label, content in images.items[:limit]]


def open_image(label: str, content: Content, fail: Failure = calibration_error) -> Any:
    from PIL import Image, UnidentifiedImageError

    if isinstance(content, tuple):
        raise fail(f"image {label} is an array of samples, not an image")
    try:
        with Image.open(io.BytesIO(content) if isinstance(content, bytes) else content) as opened:
            return opened.convert("RGB")
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise fail(f"image {label} cannot be read ({exc}); remove it or replace it") from None


def audio_feeds(artifact: Artifact, graph: GraphSpec, sounds: AudioFiles, limit: int) -> list[dict[str, np.ndarray]]:
    """Each recording through the artifact's feature extractor, all padded to the longest (the
    calibrators need one shape), with the attention mask where the graph takes one."""
    if not is_waveform_graph(graph):
        raise CalibrationError(
            f"calibration data {sounds.source} is audio, but graph takes {', '.join(graph.input_names)}; recordings "
            "calibrate models that take input_values"
        )
    extractor = _preprocessor(artifact, "AutoFeatureExtractor", "feature extractor", "recordings", "input_values")
    wanted = int(getattr(extractor, "sampling_rate", 16000))
    recordings = []
    for label, content in sounds.items[:limit]:
        samples, rate = content if isinstance(content, tuple) else read_recording(label, content)
        recordings.append(resample(samples, rate, wanted, label))
    longest = max(len(r) for r in recordings)
    feeds = []
    for samples in recordings:
        processed = extractor(samples, sampling_rate=wanted, padding="max_length", max_length=longest,
                              return_attention_mask=True, return_tensors="np")
        feeds.append(_feed(processed, graph, "feature extractor"))
    return feeds


def read_recording(label: str, content: Path | bytes, fail: Failure = calibration_error) -> tuple[np.ndarray, int]:
    """Mono float32 samples and the rate of a recording: PCM WAV through the standard library, other
    formats (FLAC, MP3, OGG) through soundfile."""
    is_wav = content[:4] == b"RIFF" if isinstance(content, bytes) else content.suffix.lower() == ".wav"
    if is_wav:
        return read_wav(label, content, fail)
    try:
        import soundfile
    except ImportError:
        raise fail(f"recording {label} is not a WAV file; reading FLAC, MP3 and OGG needs soundfile: "
                               "pip install 'optibridge[calibration]' (or convert the recordings to 16-bit PCM WAV)") from None
    try:
        samples, rate = soundfile.read(io.BytesIO(content) if isinstance(content, bytes) else str(content), dtype="float32",
                                       always_2d=True)
    except (RuntimeError, OSError, ValueError, TypeError) as exc:  # soundfile's LibsndfileError is a RuntimeError
        raise fail(f"recording {label} cannot be read ({first_line(exc)}); remove or convert it") from None
    if not samples.size:
        raise fail(f"recording {label} holds no samples")
    return samples.mean(axis=1), int(rate)


def resample(samples: np.ndarray, rate: int, wanted: int, label: str, fail: Failure = calibration_error) -> np.ndarray:
    """``samples`` at ``wanted`` Hz: unchanged when already there, else scipy's polyphase resampler
    (an anti-aliasing FIR filter, as torchaudio and librosa offer)."""
    if rate == wanted:
        return samples
    if not RATE_RANGE[0] <= rate <= RATE_RANGE[1]:
        raise fail(f"recording {label} claims {rate} Hz, outside {RATE_RANGE[0]}-{RATE_RANGE[1]} Hz; "
                               "check the file")
    try:
        from scipy.signal import resample_poly
    except ImportError:
        raise fail(f"recording {label} is sampled at {rate} Hz and the model takes {wanted} Hz; "
                               "resampling needs scipy: pip install 'optibridge[calibration]' (or resample the files)") from None
    step = math.gcd(rate, wanted)
    return np.asarray(resample_poly(samples, wanted // step, rate // step), dtype=np.float32)


def read_wav(label: str, content: Path | bytes, fail: Failure = calibration_error) -> tuple[np.ndarray, int]:
    """Mono float32 samples in [-1, 1] and the sampling rate of a PCM WAV file or its bytes (8/16/32-bit)."""
    import wave

    try:
        with wave.open(io.BytesIO(content) if isinstance(content, bytes) else str(content), "rb") as handle:
            width, channels, rate = handle.getsampwidth(), handle.getnchannels(), handle.getframerate()
            raw = handle.readframes(handle.getnframes())
    except (OSError, EOFError, wave.Error) as exc:
        raise fail(f"recording {label} cannot be read as PCM WAV ({exc}); remove or convert it") from None
    kinds = {1: (np.uint8, 128.0, 128.0), 2: (np.int16, 0.0, 32768.0), 4: (np.int32, 0.0, 2147483648.0)}
    if width not in kinds or channels < 1:
        raise fail(f"recording {label} is {8 * width}-bit with {channels} channel(s); write 16-bit PCM")
    dtype, offset, scale = kinds[width]
    samples = (np.frombuffer(raw, dtype=dtype).astype(np.float32) - offset) / scale
    return samples.reshape(-1, channels).mean(axis=1), rate


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
