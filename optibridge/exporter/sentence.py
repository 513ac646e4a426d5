"""Load a sentence-transformers model as one module whose forward takes token tensors and returns
the token and pooled sentence embeddings (pooling, Dense and Normalize modules included)."""

from __future__ import annotations

from typing import Any

import torch

from ..errors import UnsupportedModelError, first_line


class SentenceEmbedder(torch.nn.Module):
    """``SentenceTransformer`` behind a transformers-style ``forward(input_ids, attention_mask, ...)``."""

    def __init__(self, st_model: Any) -> None:
        super().__init__()
        self.st_model = st_model
        self.config = st_model[0].auto_model.config
        self.export_extra = {"max_seq_length": getattr(st_model, "max_seq_length", None), **sentence_settings(st_model)}
        self.eval()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                return_dict: bool = True) -> Any:
        from ..modeling.sentence_output import SentenceEmbeddingOutput

        features = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            features["token_type_ids"] = token_type_ids
        out = self.st_model(features)
        return SentenceEmbeddingOutput(token_embeddings=out["token_embeddings"], sentence_embedding=out["sentence_embedding"])


def sentence_settings(st_model: Any) -> dict[str, Any]:
    """What ``SentenceTransformer.encode`` / ``similarity`` read from the model besides the graph: its named
    prompts, the one used by default, the similarity function, and whether pooling counts prompt tokens."""
    prompts = getattr(st_model, "prompts", None) or {}
    pooling = next((m for m in st_model if hasattr(m, "include_prompt")), None)
    dimension = getattr(st_model, "get_embedding_dimension", None) or st_model.get_sentence_embedding_dimension  # 6.x / 3-5
    return {
        "embedding_dimension": dimension(),
        "prompts": {str(k): str(v) for k, v in prompts.items()},
        "default_prompt_name": getattr(st_model, "default_prompt_name", None),
        "similarity_fn_name": str(getattr(st_model, "similarity_fn_name", None) or "cosine"),
        "include_prompt": bool(getattr(pooling, "include_prompt", True)),
    }


def load_sentence_model(name_or_path: str, **hub_kwargs: Any) -> SentenceEmbedder:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise UnsupportedModelError(
            "sentence embeddings need sentence-transformers at export time: pip install 'optibridge[sentence-transformers]'"
        ) from exc
    kwargs = {k: v for k, v in hub_kwargs.items() if k in ("revision", "cache_dir", "token", "local_files_only", "trust_remote_code")}
    try:
        # eager attention: the reference math, as for every other export
        model = SentenceTransformer(name_or_path, device="cpu", model_kwargs={"attn_implementation": "eager"}, **kwargs)
    except (OSError, ValueError) as exc:
        raise UnsupportedModelError(f"could not load {name_or_path!r} as a sentence-transformers model: {first_line(exc)}") from exc
    return SentenceEmbedder(model)
