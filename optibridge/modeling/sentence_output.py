"""The output type of sentence-embedding graphs, in a module of its own so that the exporter can
build it without importing the model classes (which import the exporter)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from transformers.utils.generic import ModelOutput


@dataclass
class SentenceEmbeddingOutput(ModelOutput):
    """What a sentence-transformers pipeline computes: per-token and pooled sentence embeddings."""

    token_embeddings: Any = None
    sentence_embedding: Any = None
