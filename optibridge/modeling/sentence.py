"""Sentence embeddings for sentence-transformers models: the pooling (and normalisation, where the
model has a Normalize module) run inside the exported graph, so ``encode()`` returns what
``SentenceTransformer.encode`` returns."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .base import OBModel, register_task_class
from .sentence_output import SentenceEmbeddingOutput

__all__ = ["OBModelForSentenceEmbedding", "SentenceEmbeddingOutput"]


@register_task_class
class OBModelForSentenceEmbedding(OBModel):
    """Replaces ``SentenceTransformer`` for inference: ``model.encode(sentences)``; calling the model
    with tokenizer outputs returns a :class:`SentenceEmbeddingOutput`."""

    task_name = "sentence-similarity"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tokenizer: Any = None

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.artifact.path)
        return self._tokenizer

    def encode(
        self, sentences: str | Sequence[str], batch_size: int = 32, normalize_embeddings: bool = False,
        convert_to_numpy: bool = True,
    ) -> Any:
        """Embeddings of ``sentences`` (one row each, or one vector for a single string), as
        ``SentenceTransformer.encode`` gives them: truncated at the model's ``max_seq_length``."""
        single = isinstance(sentences, str)
        texts = [sentences] if single else list(sentences)
        max_length = self.artifact.metadata.extra.get("max_seq_length")
        rows = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer(texts[start:start + batch_size], padding=True, truncation=True, max_length=max_length, return_tensors="np")
            rows.append(self(**dict(batch)).sentence_embedding)
        embeddings = np.concatenate(rows) if rows else np.zeros((0, 0), np.float32)
        if normalize_embeddings:
            embeddings = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
        if not convert_to_numpy:
            import torch

            tensors = torch.from_numpy(embeddings)
            return tensors[0] if single else tensors
        return embeddings[0] if single else embeddings
