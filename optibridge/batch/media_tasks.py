"""The image and audio tasks of ``optibridge run``: each row names a file (an image, or a recording).

A relative path is read from the input file's folder (``base_dir``), an absolute one as it is. Each
file goes through the artifact's own image processor or feature extractor, as ``quantize`` does
with calibration files (:mod:`optibridge.steps.media`): recordings in WAV, FLAC, MP3 or OGG,
resampled to the model's rate. A file that cannot be read fails its row, named, not the batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import ArtifactError, InputError
from ..steps.media import open_image, read_recording, resample

MEDIA_TASKS = ("image-classification", "image-to-text", "audio-classification", "ctc", "automatic-speech-recognition")


def _row_error(message: str) -> Exception:
    return InputError(message)


def resolve(text: str, base_dir: str | None) -> Path:
    """The file a row names: relative to ``base_dir`` (the input file's folder) unless absolute."""
    path = Path(text).expanduser()
    if not path.is_absolute() and base_dir:
        path = Path(base_dir) / path
    if not path.is_file():
        raise InputError(f"{text}: no such file ({path}); relative paths are read from the input file's folder")
    return path


def _preprocessor(artifact_path: Path, auto_class: str, what: str) -> Any:
    import transformers

    try:
        return getattr(transformers, auto_class).from_pretrained(artifact_path, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{artifact_path} has no {what} (preprocessor_config.json), which `optibridge run` needs to read "
                            f"the files ({exc}); export from a folder that has one") from None


def _top_labels(logits: Any, id2label: dict[Any, str]) -> list[dict[str, Any]]:
    scores = np.asarray(logits, dtype=np.float64)
    scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
    scores /= scores.sum(axis=-1, keepdims=True)
    best = scores.argmax(axis=-1)
    labels = {int(k): str(v) for k, v in (id2label or {}).items()}
    return [{"label": labels.get(int(i), f"LABEL_{int(i)}"), "score": float(row[i])} for row, i in zip(scores, best)]


def media_runner(task: str, model: Any, artifact_path: Path, tokenizer: Any, base_dir: str | None,
                 max_new_tokens: int = 32) -> Callable[[list[str]], list[dict[str, Any]]]:
    """The function that turns a batch of file paths into one result per file, for ``task``
    (``max_new_tokens``: what a speech-to-text model generates at most per recording, greedily)."""
    if task == "image-classification":
        processor = _preprocessor(artifact_path, "AutoImageProcessor", "image processor")

        def classify_images(paths: list[str]) -> list[dict[str, Any]]:
            images = [open_image(text, resolve(text, base_dir), _row_error) for text in paths]
            pixels = processor(images=images, return_tensors="np")["pixel_values"]
            return _top_labels(model(pixel_values=pixels).logits, model.config.id2label)

        return classify_images
    if task == "image-to-text":  # captioners (and Pix2Struct): the image processor's inputs, greedy generate()
        processor = _preprocessor(artifact_path, "AutoImageProcessor", "image processor")
        if tokenizer is None:
            raise ArtifactError(f"{artifact_path} has no tokenizer to turn the captions' tokens into text; re-export it "
                                "from a folder that has one (exports before 2026-12-03 left it out)")

        def caption(paths: list[str]) -> list[dict[str, Any]]:
            import torch

            images = [open_image(text, resolve(text, base_dir), _row_error) for text in paths]
            inputs = {name: torch.as_tensor(value) for name, value in processor(images=images, return_tensors="np").items()}
            tokens = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
            return [{"generated_text": text.strip()} for text in tokenizer.batch_decode(tokens, skip_special_tokens=True)]

        return caption
    extractor = _preprocessor(artifact_path, "AutoFeatureExtractor", "feature extractor")
    rate = int(getattr(extractor, "sampling_rate", 16000))
    takes = set(model.artifact.metadata.input_names)

    def recordings(paths: list[str]) -> list[np.ndarray]:
        found = []
        for text in paths:
            samples, rate_found = read_recording(text, resolve(text, base_dir), _row_error)
            found.append(resample(samples, rate_found, rate, text, _row_error))
        return found

    def features(paths: list[str]) -> dict[str, Any]:
        batch = extractor(recordings(paths), sampling_rate=rate, padding=True, return_attention_mask=True, return_tensors="np")
        return {name: value for name, value in batch.items() if name in takes}

    if task == "audio-classification":
        return lambda paths: _top_labels(model(**features(paths)).logits, model.config.id2label)
    if tokenizer is None:
        raise ArtifactError(f"{artifact_path} has no tokenizer to turn the model's tokens into text; export from a folder that has one")
    if task == "automatic-speech-recognition":  # Whisper: transformers' ASR pipeline on the artifact's model
        from transformers import pipeline

        asr: Any = pipeline("automatic-speech-recognition", model=model, tokenizer=tokenizer, feature_extractor=extractor)  # an OBModel stands in for the PyTorch one

        def transcribe_seq2seq(paths: list[str]) -> list[dict[str, Any]]:
            found = asr(recordings(paths), batch_size=len(paths), generate_kwargs={"max_new_tokens": max_new_tokens})
            return [{"transcription": str(item["text"]).strip()} for item in found]

        return transcribe_seq2seq

    def transcribe(paths: list[str]) -> list[dict[str, Any]]:
        ids = np.asarray(model(**features(paths)).logits).argmax(axis=-1)
        return [{"transcription": text} for text in tokenizer.batch_decode(ids)]  # CTC: repeats and blanks collapsed

    return transcribe
