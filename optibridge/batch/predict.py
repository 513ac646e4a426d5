"""Run an artifact's task over a batch of rows: the work one process (or one Ray actor) does.

:class:`Predictor` loads the artifact once and turns a pyarrow table of rows into a table of
results, one output row per input row, in the same order:

* ``feature-extraction``   -> ``embedding``: the last hidden states mean-pooled over the real
  tokens (attention mask), not normalised -- sentence-transformers' ``mean`` pooling;
* ``sentence-similarity``  -> ``embedding``: what ``SentenceTransformer.encode`` returns (the model's
  own pooling and normalisation, in the graph; inputs cut at its ``max_seq_length``);
* ``text-classification``  -> ``label``, ``score`` (the top class after softmax);
* ``token-classification`` -> ``entities`` (transformers' pipeline, ``aggregation_strategy="simple"``);
* ``text-generation`` / ``text2text-generation`` -> ``generated_text`` (greedy, ``max_new_tokens``;
  for decoder LMs only the continuation, not the prompt).
* ``image-classification`` / ``audio-classification`` -> ``label``, ``score`` (the top class after
  softmax), ``ctc`` -> ``transcription`` (greedy CTC decoding), ``automatic-speech-recognition``
  (Whisper) -> ``transcription`` (greedy, ``max_new_tokens``), ``image-to-text`` -> ``generated_text``
  (a caption, greedy), ``zero-shot-image-classification`` -> ``label``, ``score`` (the best of
  ``labels``): each row names an image or recording file (:mod:`.media_tasks`).

A row the tokenizer or the model rejects never takes its batch down silently: the batch is
retried row by row, and each failing row gets its reason in the ``error`` column (``on_error=
"skip"``) or raises :class:`RowError` naming its row id (``on_error="fail"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import ArtifactError, InputError, first_line
from ..image_placeholders import DEFAULT_IMAGE_PROMPT
from .media_tasks import MEDIA_TASKS, media_runner

TASK_OUTPUTS = {
    "feature-extraction": ("embedding",),
    "sentence-similarity": ("embedding",),
    "text-classification": ("label", "score"),
    "token-classification": ("entities",),
    "text-generation": ("generated_text",),
    "text2text-generation": ("generated_text",),
    "image-classification": ("label", "score"),
    "zero-shot-image-classification": ("label", "score"),
    "image-to-text": ("generated_text",),
    "image-text-to-text": ("generated_text",),
    "audio-classification": ("label", "score"),
    "ctc": ("transcription",),
    "automatic-speech-recognition": ("transcription",),
    "object-detection": ("objects",),
    "semantic-segmentation": ("segments",),
}
"""The columns each supported task adds to every row (besides ``error``)."""
ERROR_COLUMN = "error"
ON_ERROR = ("fail", "skip")


class RowError(InputError):
    """An input row the tokenizer or the model rejected, with ``on_error="fail"``."""

    def __init__(self, row: int | str, reason: str) -> None:
        where = f"row {row}" if isinstance(row, int) else f"a row ({row})"
        super().__init__(f"{where}: {reason} (fix or drop that row, or pass --on-error skip to record the error and go on)")
        self.row = row
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:  # Ray ships exceptions between processes by pickling
        return (RowError, (self.row, self.reason))


@dataclass(frozen=True)
class TaskOptions:
    """How rows are turned into results; part of what a resumed run must match."""

    column: str = "text"
    max_new_tokens: int = 32
    max_length: int | None = None
    """Truncate inputs to this many tokens (default: the tokenizer's ``model_max_length``)."""
    on_error: str = "fail"
    base_dir: str | None = None
    """Image and audio tasks: the folder relative paths in the rows are read from (the input file's)."""
    labels: tuple[str, ...] = ()
    """zero-shot-image-classification: the candidate labels every image is scored against."""
    template: str = "This is a photo of {}."
    """zero-shot-image-classification: the sentence each label is put in (transformers' pipeline default)."""
    threshold: float = 0.5
    """object-detection: the lowest score a detected object is kept at (transformers' pipeline default)."""
    prompt: str = DEFAULT_IMAGE_PROMPT
    """image-text-to-text: what every image is asked (the image's placeholder goes first unless the prompt places it)."""

    def __post_init__(self) -> None:
        if self.on_error not in ON_ERROR:
            raise InputError(f"on_error must be one of {', '.join(ON_ERROR)}, not {self.on_error!r}")
        object.__setattr__(self, "labels", tuple(str(label).strip() for label in self.labels if str(label).strip()))
        if "{}" not in self.template:
            raise InputError(f"the label template must hold {{}} where the label goes, not {self.template!r}")
        if not 0.0 <= float(self.threshold) <= 1.0:
            raise InputError(f"threshold is a score from 0 to 1, not {self.threshold}")
        if not self.prompt.strip():
            raise InputError("the prompt is empty: give what every image is asked (--prompt 'What is in the picture?')")
        if self.max_new_tokens < 1:
            raise InputError(f"max_new_tokens must be >= 1, not {self.max_new_tokens}")


def output_schema(task: str) -> Any:
    """The pyarrow fields a task's results have (fixed, so every shard has the same schema)."""
    import pyarrow as pa

    entity = pa.struct([("entity_group", pa.string()), ("score", pa.float32()), ("word", pa.string()),
                        ("start", pa.int64()), ("end", pa.int64())])
    box = pa.struct([(side, pa.int64()) for side in ("xmin", "ymin", "xmax", "ymax")])
    detected = pa.struct([("label", pa.string()), ("score", pa.float32()), ("box", box)])
    segment = pa.struct([("label", pa.string()), ("fraction", pa.float32())])
    types = {"embedding": pa.list_(pa.float32()), "label": pa.string(), "score": pa.float32(),
             "entities": pa.list_(entity), "generated_text": pa.string(), "transcription": pa.string(),
             "objects": pa.list_(detected), "segments": pa.list_(segment)}
    return [pa.field(name, types[name]) for name in TASK_OUTPUTS[task]] + [pa.field(ERROR_COLUMN, pa.string())]


def check_task(task: str, path: Path | str) -> None:
    if task not in TASK_OUTPUTS:
        raise ArtifactError(
            f"{path} was exported for {task!r}; `optibridge run` runs {', '.join(TASK_OUTPUTS)} (load other tasks with "
            "their OBModelFor<Task> class)"
        )


@dataclass
class Predictor:
    """Loads an artifact once; ``predictor(table)`` returns ``table`` with the results of every row added.

    ``table`` holds the text column (``options.column``) and, where there is one, ``id_column``,
    which errors name rows by. The result is ``table`` plus the task's output columns and ``error``.
    """

    artifact: str
    options: TaskOptions = field(default_factory=TaskOptions)
    backend: str = "auto"
    device: str = "cpu"
    session_options: dict[str, Any] = field(default_factory=dict)
    id_column: str | None = "id"

    def __post_init__(self) -> None:
        from ..artifact import Artifact
        from ..modeling.tasks import task_class
        from ..steps.samples import load_tokenizer

        artifact = Artifact.load(self.artifact)
        self.task = artifact.metadata.task
        check_task(self.task, artifact.path)
        tokenizer = load_tokenizer(artifact.path)
        if tokenizer is None and self.task not in MEDIA_TASKS:
            raise ArtifactError(f"{artifact.path} has no usable tokenizer files; export it from a folder that has the tokenizer")
        self.tokenizer: Any = tokenizer  # None only for the image and audio tasks (CTC decodes with it)
        self.model = task_class(self.task).from_pretrained(artifact.path, backend=self.backend, device=self.device, **self.session_options)
        self._run = media_runner(self.task, self.model, artifact.path, tokenizer, self.options) if self.task in MEDIA_TASKS else self._runner()

    # -- one batch ------------------------------------------------------------------------------
    def __call__(self, table: Any) -> Any:
        import pyarrow as pa

        schema = output_schema(self.task)
        clash = [f.name for f in schema if f.name in table.column_names]
        if clash:
            raise InputError(f"the rows already have column(s) {', '.join(clash)}, which this {self.task} run adds; rename them")
        texts = table.column(self.options.column).to_pylist()
        has_ids = self.id_column is not None and self.id_column in table.column_names
        ids = table.column(self.id_column).to_pylist() if has_ids else None
        results, errors = self.predict(texts, ids)
        for spec in schema[:-1]:
            table = table.append_column(spec, pa.array([None if r is None else r[spec.name] for r in results], spec.type))
        return table.append_column(schema[-1], pa.array(errors, pa.string()))

    def predict(self, texts: Sequence[Any], ids: Sequence[int] | None = None) -> tuple[list[dict[str, Any] | None], list[str | None]]:
        """Results per row (None where the row failed) and errors per row (None where it ran).

        ``ids`` name the rows in a :class:`RowError`; without them a row is named by its text."""
        results: list[dict[str, Any] | None] = [None] * len(texts)
        errors: list[str | None] = [None] * len(texts)
        good = []
        for i, text in enumerate(texts):
            if isinstance(text, str):
                good.append(i)
            else:
                wanted = "a file path" if self.task in MEDIA_TASKS else "text"
                errors[i] = f"column {self.options.column!r} holds {type(text).__name__ if text is not None else 'null'}, not {wanted}"
        try:
            batch = self._run([texts[i] for i in good]) if good else []
            for i, result in zip(good, batch):
                results[i] = result
        except Exception:  # which row? run them one by one
            for i in good:
                try:
                    results[i] = self._run([texts[i]])[0]
                except Exception as exc:
                    errors[i] = f"{type(exc).__name__}: {first_line(exc)}"
        if self.options.on_error == "fail":
            for i, error in enumerate(errors):
                if error is not None:
                    raise RowError(int(ids[i]) if ids is not None else f"text {str(texts[i])[:40]!r}", error)
        return results, errors

    # -- the tasks ------------------------------------------------------------------------------
    def _runner(self) -> Callable[[list[str]], list[dict[str, Any]]]:
        if self.task == "feature-extraction":
            return self._embed
        if self.task == "sentence-similarity":
            return self._sentence_embed
        if self.task in ("text-classification", "token-classification"):
            from transformers import pipeline

            extra = {"aggregation_strategy": "simple"} if self.task == "token-classification" else {}
            self._pipeline = pipeline(self.task, model=self.model, tokenizer=self.tokenizer, **extra)  # type: ignore[call-overload]  # an OBModel stands in for a PreTrainedModel
            return self._classify if self.task == "text-classification" else self._entities
        if self.task == "text-generation":
            self.tokenizer.padding_side = "left"  # a decoder continues the last token of every row
        return self._generate

    def _tokenize(self, texts: list[str], default_length: int | None = None) -> dict[str, Any]:
        max_length = self.options.max_length or default_length or _sane_max_length(self.tokenizer)
        found = self.tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="np")
        names = set(self.model.artifact.metadata.input_names) | {"input_ids", "attention_mask"}
        return {k: v for k, v in found.items() if k in names}

    def _embed(self, texts: list[str]) -> list[dict[str, Any]]:
        inputs = self._tokenize(texts)
        hidden = np.asarray(self.model(**inputs).last_hidden_state, dtype=np.float32)
        mask = inputs["attention_mask"][..., None].astype(np.float32)
        pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
        return [{"embedding": row.tolist()} for row in pooled]

    def _sentence_embed(self, texts: list[str]) -> list[dict[str, Any]]:
        inputs = self._tokenize(texts, default_length=self.model.max_seq_length)  # type: ignore[attr-defined]  # the sentence class
        pooled = np.asarray(self.model(**inputs).sentence_embedding, dtype=np.float32)
        return [{"embedding": row.tolist()} for row in pooled]

    def _classify(self, texts: list[str]) -> list[dict[str, Any]]:
        found = self._pipeline(texts, batch_size=len(texts), truncation=True)
        return [{"label": str(r["label"]), "score": float(r["score"])} for r in found]

    def _entities(self, texts: list[str]) -> list[dict[str, Any]]:
        found = self._pipeline(texts, batch_size=len(texts))
        if texts and isinstance(found, list) and found and isinstance(found[0], dict):
            found = [found]  # one text: the pipeline returns its entities, not a list of lists
        return [{"entities": [{"entity_group": str(e.get("entity_group", e.get("entity"))), "score": float(e["score"]),
                               "word": str(e["word"]), "start": _int(e.get("start")), "end": _int(e.get("end"))} for e in row]}
                for row in found]

    def _generate(self, texts: list[str]) -> list[dict[str, Any]]:
        import torch

        inputs = {k: torch.as_tensor(v) for k, v in self._tokenize(texts).items()}
        output = self.model.generate(**inputs, max_new_tokens=self.options.max_new_tokens, do_sample=False)  # type: ignore[attr-defined]  # a generation task's class
        if self.task == "text-generation":
            output = output[:, inputs["input_ids"].shape[1]:]
        decoded = self.tokenizer.batch_decode(output, skip_special_tokens=True)
        return [{"generated_text": text} for text in decoded]


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _sane_max_length(tokenizer: Any) -> int | None:
    """``model_max_length``, unless it is transformers' "no limit" sentinel (~1e30)."""
    length = getattr(tokenizer, "model_max_length", None)
    return int(length) if isinstance(length, int) and length < 1_000_000 else None
