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


def _per_image(found: Any, count: int) -> list[list[dict[str, Any]]]:
    """A pipeline's results as one list per image: given one image it may answer with that image's
    flat list (empty when nothing was found)."""
    if count == 1 and (not found or isinstance(found[0], dict)):
        return [list(found)]
    return [list(items) for items in found]


class _Images:
    """Rows that name images: each through the artifact's image processor."""

    def __init__(self, model: Any, artifact_path: Path, tokenizer: Any, options: Any) -> None:
        self.model, self.tokenizer, self.options, self.base_dir = model, tokenizer, options, options.base_dir
        self.artifact_path = artifact_path
        self.processor = _preprocessor(artifact_path, "AutoImageProcessor", "image processor")
        self._pipelines: dict[str, Any] = {}

    def images(self, paths: list[str]) -> list[Any]:
        """The images the rows name, opened (a missing or unreadable file fails its row)."""
        return [open_image(text, resolve(text, self.base_dir), _row_error) for text in paths]

    def inputs(self, paths: list[str]) -> dict[str, np.ndarray]:
        return dict(self.processor(images=self.images(paths), return_tensors="np"))

    def classify(self, paths: list[str]) -> list[dict[str, Any]]:
        return _top_labels(self.model(pixel_values=self.inputs(paths)["pixel_values"]).logits, self.model.config.id2label)

    def caption(self, paths: list[str]) -> list[dict[str, Any]]:
        """Greedy ``generate()`` on what the processor gives (``pixel_values``; Pix2Struct's patches and mask)."""
        import torch

        inputs = {name: torch.as_tensor(value) for name, value in self.inputs(paths).items()}
        tokens = self.model.generate(**inputs, max_new_tokens=self.options.max_new_tokens, do_sample=False)
        return [{"generated_text": text.strip()} for text in self.tokenizer.batch_decode(tokens, skip_special_tokens=True)]

    def answer(self, paths: list[str]) -> list[dict[str, Any]]:
        """A decoder LM that takes images (llava): the run's prompt about each image, through the artifact's processor
        (its chat template where it has one), greedy ``generate()``; the new tokens, decoded."""
        import torch

        from ..modeling.visual_lm import image_prompt

        processor = self._joint_processor()
        prompt = image_prompt(processor, self.options.prompt)
        batch = processor(images=self.images(paths), text=[prompt] * len(paths), return_tensors="pt", padding=True)
        inputs = {name: torch.as_tensor(value) for name, value in batch.items()}
        tokens = self.model.generate(**inputs, max_new_tokens=self.options.max_new_tokens, do_sample=False)
        new = tokens[:, inputs["input_ids"].shape[1]:]
        return [{"generated_text": text.strip()} for text in processor.batch_decode(new, skip_special_tokens=True)]

    def _joint_processor(self) -> Any:
        if not hasattr(self, "_joint"):
            self._joint = _preprocessor(self.artifact_path, "AutoProcessor", "processor")
            if getattr(self._joint, "tokenizer", None) is not None:
                self._joint.tokenizer.padding_side = "left"  # a decoder continues the last token of every row
        return self._joint

    def classify_zero_shot(self, paths: list[str]) -> list[dict[str, Any]]:
        """The best of the run's candidate labels, as transformers' zero-shot-image-classification pipeline scores them."""
        found = self._pipeline("zero-shot-image-classification")(self.images(paths), candidate_labels=list(self.options.labels),
                                                                 hypothesis_template=self.options.template)
        return [{"label": str(ranked[0]["label"]), "score": float(ranked[0]["score"])} for ranked in found]


    def _pipeline(self, name: str) -> Any:
        """transformers' pipeline for ``name`` on the artifact's model (an OBModel stands in for the PyTorch one)."""
        if name not in self._pipelines:
            import transformers

            make: Any = transformers.pipeline  # typed per task name literal; the name here is one of ours
            self._pipelines[name] = make(name, model=self.model, tokenizer=self.tokenizer, image_processor=self.processor)
        return self._pipelines[name]

    def detect(self, paths: list[str]) -> list[dict[str, Any]]:
        """Every object scored at least the run's threshold: label, score, box in the image's pixels."""
        found = _per_image(self._pipeline("object-detection")(self.images(paths), threshold=self.options.threshold), len(paths))
        return [{"objects": [{"label": str(o["label"]), "score": float(o["score"]), "box": {k: int(v) for k, v in o["box"].items()}}
                             for o in objects]} for objects in found]

    def segment(self, paths: list[str]) -> list[dict[str, Any]]:
        """The classes present in each image's label map, with the fraction of its pixels each covers."""
        found = _per_image(self._pipeline("image-segmentation")(self.images(paths), subtask="semantic"), len(paths))
        return [{"segments": [{"label": str(s["label"]), "fraction": float(np.asarray(s["mask"]).astype(bool).mean())} for s in segments]}
                for segments in found]


class _Recordings:
    """Rows that name recordings: read, resampled to the feature extractor's rate, through it."""

    def __init__(self, model: Any, artifact_path: Path, tokenizer: Any, options: Any) -> None:
        self.model, self.tokenizer, self.options, self.base_dir = model, tokenizer, options, options.base_dir
        self.extractor = _preprocessor(artifact_path, "AutoFeatureExtractor", "feature extractor")
        self.rate = int(getattr(self.extractor, "sampling_rate", 16000))

    def samples(self, paths: list[str]) -> list[np.ndarray]:
        found = []
        for text in paths:
            samples, rate = read_recording(text, resolve(text, self.base_dir), _row_error)
            found.append(resample(samples, rate, self.rate, text, _row_error))
        return found

    def features(self, paths: list[str]) -> dict[str, Any]:
        """Padded to the longest recording, with the mask where the graph takes one."""
        batch = self.extractor(self.samples(paths), sampling_rate=self.rate, padding=True, return_attention_mask=True, return_tensors="np")
        takes = set(self.model.artifact.metadata.input_names)
        return {name: value for name, value in batch.items() if name in takes}

    def classify(self, paths: list[str]) -> list[dict[str, Any]]:
        return _top_labels(self.model(**self.features(paths)).logits, self.model.config.id2label)

    def transcribe_ctc(self, paths: list[str]) -> list[dict[str, Any]]:
        ids = np.asarray(self.model(**self.features(paths)).logits).argmax(axis=-1)
        return [{"transcription": text} for text in self.tokenizer.batch_decode(ids)]  # repeats and blanks collapsed

    def transcribe_seq2seq(self, paths: list[str]) -> list[dict[str, Any]]:
        """Whisper: transformers' ASR pipeline on the artifact's model (greedy, ``max_new_tokens``)."""
        if not hasattr(self, "_asr"):
            from transformers import pipeline

            self._asr: Any = pipeline("automatic-speech-recognition", model=self.model, tokenizer=self.tokenizer,
                                      feature_extractor=self.extractor)  # an OBModel stands in for the PyTorch one
        found = self._asr(self.samples(paths), batch_size=len(paths), generate_kwargs={"max_new_tokens": self.options.max_new_tokens})
        return [{"transcription": str(item["text"]).strip()} for item in found]


RUNNERS: dict[str, tuple[type, str, bool]] = {
    "image-classification": (_Images, "classify", False),
    "zero-shot-image-classification": (_Images, "classify_zero_shot", True),
    "image-to-text": (_Images, "caption", True),
    "image-text-to-text": (_Images, "answer", True),
    "object-detection": (_Images, "detect", False),
    "semantic-segmentation": (_Images, "segment", False),
    "audio-classification": (_Recordings, "classify", False),
    "ctc": (_Recordings, "transcribe_ctc", True),
    "automatic-speech-recognition": (_Recordings, "transcribe_seq2seq", True),
}
"""task → (reader, its method, whether the result is decoded with the tokenizer)."""


def media_runner(task: str, model: Any, artifact_path: Path, tokenizer: Any, options: Any) -> Callable[[list[str]], list[dict[str, Any]]]:
    """The function that turns a batch of file paths into one result per file, for ``task``; ``options``
    is the run's :class:`~optibridge.batch.predict.TaskOptions` (``base_dir``, ``max_new_tokens`` for a
    captioner, a visual LM or Whisper, ``prompt`` for a visual LM, ``labels`` and ``template`` for zero-shot classification)."""
    reader, method, decodes = RUNNERS[task]
    if decodes and tokenizer is None:
        raise ArtifactError(f"{artifact_path} has no tokenizer to turn the model's tokens into text; re-export it from a folder "
                            "that has one (speech and image-to-text exports before 2026-12-03 left it out)")
    if task == "zero-shot-image-classification" and len(options.labels) < 2:
        raise InputError("zero-shot-image-classification scores each image against candidate labels: give at least two "
                         "(--labels 'cat,dog,a red car')")
    runner: Callable[[list[str]], list[dict[str, Any]]] = getattr(reader(model, artifact_path, tokenizer, options), method)
    return runner


MEDIA_TASKS = tuple(RUNNERS)
