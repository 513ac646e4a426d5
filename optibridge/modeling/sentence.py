"""Sentence embeddings for sentence-transformers models: the pooling (and normalisation, where the
model has a Normalize module) run inside the exported graph, so ``encode()`` returns what
``SentenceTransformer.encode`` returns, with the arguments code written for it passes (prompts,
``convert_to_tensor``, ``truncate_dim``, token embeddings), and ``similarity()`` scores as it does."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import ArtifactError, InputError
from .base import OBModel, register_task_class
from .guards import positive_int
from .sentence_output import SentenceEmbeddingOutput

__all__ = ["OBModelForSentenceEmbedding", "SentenceEmbeddingOutput"]

OUTPUT_VALUES = ("sentence_embedding", "token_embeddings")


def _as_matrix(value: Any) -> Any:
    import torch

    tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value, dtype=np.float32))
    return tensor.unsqueeze(0) if tensor.dim() == 1 else tensor


def _cosine(a: Any, b: Any) -> Any:
    import torch

    return torch.nn.functional.normalize(a, dim=-1) @ torch.nn.functional.normalize(b, dim=-1).T


def _dot(a: Any, b: Any) -> Any:
    return a @ b.T


def _euclidean(a: Any, b: Any) -> Any:
    import torch

    return -torch.cdist(a, b, p=2.0)


def _manhattan(a: Any, b: Any) -> Any:
    import torch

    return -torch.cdist(a, b, p=1.0)


SIMILARITY_FUNCTIONS: dict[str, Callable[[Any, Any], Any]] = {
    "cosine": _cosine, "dot": _dot, "euclidean": _euclidean, "manhattan": _manhattan,
}
"""sentence-transformers' similarity functions by name (distances negated: higher is more similar)."""


def _pairwise(name: str, a: Any, b: Any) -> Any:
    import torch

    if name == "cosine":
        return (torch.nn.functional.normalize(a, dim=-1) * torch.nn.functional.normalize(b, dim=-1)).sum(-1)
    if name == "dot":
        return (a * b).sum(-1)
    return -torch.linalg.vector_norm(a - b, ord=2.0 if name == "euclidean" else 1.0, dim=-1)


def _prompts(extra: Mapping[str, Any]) -> dict[str, str]:
    """The artifact's named prompts; optibridge.json is untrusted, so anything but str -> str is left out."""
    found = extra.get("prompts")
    if not isinstance(found, dict):
        return {}
    return {k: v for k, v in found.items() if isinstance(k, str) and isinstance(v, str)}


@register_task_class
class OBModelForSentenceEmbedding(OBModel):
    """Replaces ``SentenceTransformer`` for inference: ``model.encode(sentences)`` and
    ``model.similarity(a, b)``; calling the model with tokenizer outputs returns a
    :class:`SentenceEmbeddingOutput`."""

    task_name = "sentence-similarity"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tokenizer: Any = None
        extra = self.artifact.metadata.extra
        self.prompts: dict[str, str] = _prompts(extra)
        name = extra.get("default_prompt_name")
        self.default_prompt_name: str | None = name if isinstance(name, str) and name in self.prompts else None
        self._similarity_fn_name = "cosine"
        try:
            self.similarity_fn_name = extra.get("similarity_fn_name") or "cosine"
        except InputError as exc:
            raise ArtifactError(f"{self.artifact.path}/optibridge.json: {exc}") from None

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.artifact.path)
        return self._tokenizer

    @property
    def max_seq_length(self) -> int | None:
        return positive_int(self.artifact.metadata.extra.get("max_seq_length"))

    @property
    def similarity_fn_name(self) -> str:
        """"cosine" (the default), "dot", "euclidean" or "manhattan", as the model was saved with; settable."""
        return self._similarity_fn_name

    @similarity_fn_name.setter
    def similarity_fn_name(self, name: Any) -> None:
        key = getattr(name, "value", name)  # sentence-transformers' SimilarityFunction enum, or its value
        if not isinstance(key, str) or key not in SIMILARITY_FUNCTIONS:
            raise InputError(f"similarity function {key!r} is not one of {', '.join(SIMILARITY_FUNCTIONS)}")
        self._similarity_fn_name = str(key)

    def get_sentence_embedding_dimension(self) -> int | None:
        """Length of one sentence embedding, as recorded at export (None for an artifact that does not say)."""
        spec = next((o for o in self.artifact.metadata.outputs if o.name == "sentence_embedding"), None)
        return positive_int(self.artifact.metadata.extra.get("embedding_dimension", spec.shape[-1] if spec is not None and spec.shape else None))

    get_embedding_dimension = get_sentence_embedding_dimension

    def tokenize(self, texts: Sequence[Any], padding: str | bool = True) -> dict[str, Any]:
        """Token ids of ``texts`` (strings, or (first, second) pairs) as ``SentenceTransformer.tokenize`` gives
        them: torch tensors, cut at the model's ``max_seq_length``; ``model(features)`` embeds them."""
        rows = list(texts)
        if rows and all(isinstance(t, (tuple, list)) and len(t) == 2 and all(isinstance(x, str) for x in t) for t in rows):
            columns: list[list[str]] = [[t[0].strip() for t in rows], [t[1].strip() for t in rows]]
        elif all(isinstance(t, str) for t in rows):
            columns = [[t.strip() for t in rows]]
        else:
            raise InputError("tokenize() takes strings or (first, second) string pairs")
        return dict(self.tokenizer(*columns, padding=padding, truncation="longest_first", max_length=self.max_seq_length,
                                   return_tensors="pt"))

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Tokenizer outputs by keyword, or, as a sentence-transformers module is called, one dict of them
        (``model(model.tokenize(texts))``); returns ``token_embeddings`` and ``sentence_embedding``."""
        if len(args) == 1 and not kwargs and isinstance(args[0], Mapping):
            # sentence-transformers' features also carry metadata (modality, text_keys): the tensors are the inputs
            kwargs = {key: value for key, value in args[0].items() if hasattr(value, "shape")}
            args = ()
        return super().forward(*args, **kwargs)

    def similarity(self, embeddings1: Any, embeddings2: Any) -> Any:
        """Every row of ``embeddings1`` against every row of ``embeddings2`` (a torch matrix), with the
        model's similarity function, as ``SentenceTransformer.similarity``."""
        return SIMILARITY_FUNCTIONS[self.similarity_fn_name](_as_matrix(embeddings1), _as_matrix(embeddings2))

    def similarity_pairwise(self, embeddings1: Any, embeddings2: Any) -> Any:
        """Row i against row i (a torch vector), as ``SentenceTransformer.similarity_pairwise``."""
        a, b = _as_matrix(embeddings1), _as_matrix(embeddings2)
        if a.shape != b.shape:
            raise InputError(f"similarity_pairwise needs two embedding matrices of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
        return _pairwise(self.similarity_fn_name, a, b)

    def _resolve_prompt(self, prompt: str | None, prompt_name: str | None) -> str:
        if prompt is None:
            name = prompt_name if prompt_name is not None else self.default_prompt_name
            if name is None:
                return ""
            if name not in self.prompts:
                raise InputError(f"prompt_name {name!r} is not one of this model's prompts: {sorted(self.prompts) or 'none'}")
            prompt = self.prompts[name]
        if prompt and self.artifact.metadata.extra.get("include_prompt") is False:
            raise InputError("this model's pooling leaves the prompt's tokens out, which its exported graph does not do; "
                             "encode without a prompt, or run the model in sentence-transformers")
        return prompt

    def encode(
        self, sentences: str | Sequence[str] | None = None, prompt_name: str | None = None, prompt: str | None = None,
        batch_size: int = 32, show_progress_bar: bool | None = None, output_value: str = "sentence_embedding",
        precision: str = "float32", convert_to_numpy: bool = True, convert_to_tensor: bool = False, device: Any = None,
        normalize_embeddings: bool = False, truncate_dim: int | None = None, *, inputs: str | Sequence[str] | None = None,
        **unsupported: Any,
    ) -> Any:
        """Embeddings of ``sentences`` as ``SentenceTransformer.encode`` gives them (truncated at the
        model's ``max_seq_length``): one row per sentence, or one vector for a single string; a numpy
        array, a torch matrix with ``convert_to_tensor=True``, or a list of torch vectors with
        ``convert_to_numpy=False``. ``output_value="token_embeddings"``: one [tokens, dim] tensor per
        sentence, padding cut off. Sentences are batched longest first (less padding) and returned in
        the order given."""
        texts, single = self._texts(sentences, inputs)
        self._refuse(unsupported, output_value, precision, device, batch_size, truncate_dim)
        prefix = self._resolve_prompt(prompt, prompt_name)
        texts = [prefix + text for text in texts] if prefix else texts
        rows = self._run(texts, batch_size, output_value, bool(show_progress_bar))
        if output_value == "token_embeddings":
            return rows[0] if single else rows
        embeddings = np.stack(rows) if rows else np.zeros((0,), np.float32)
        if truncate_dim is not None and rows:
            embeddings = embeddings[:, :truncate_dim]
        if normalize_embeddings and rows:
            embeddings = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
        if convert_to_tensor or not convert_to_numpy:
            import torch

            tensors = torch.from_numpy(np.ascontiguousarray(embeddings))
            if single:
                return tensors[0]
            return tensors if convert_to_tensor else list(tensors)
        return embeddings[0] if single else embeddings

    @staticmethod
    def _texts(sentences: Any, inputs: Any) -> tuple[list[str], bool]:
        if sentences is not None and inputs is not None:
            raise InputError("pass the sentences once: as the first argument or as inputs=, not both")
        given = inputs if sentences is None else sentences
        if given is None:
            raise InputError("encode() needs the sentences: a string or a list of strings")
        single = isinstance(given, str)
        texts = [given] if single else list(given.tolist() if isinstance(given, np.ndarray) else given)
        bad = next((t for t in texts if not isinstance(t, str)), None)
        if bad is not None:
            raise InputError(f"encode() embeds text; got a {type(bad).__name__} among the sentences")
        return texts, single

    def _refuse(self, unsupported: Mapping[str, Any], output_value: str, precision: str, device: Any, batch_size: int,
                truncate_dim: int | None) -> None:
        if unsupported:
            raise InputError(f"encode() got argument(s) optibridge does not take: {', '.join(sorted(unsupported))} "
                             "(pool/chunk_size: one process runs the graph; drop them)")
        if output_value not in OUTPUT_VALUES:
            raise InputError(f"output_value={output_value!r}: choose one of {', '.join(OUTPUT_VALUES)}")
        if precision != "float32":
            raise InputError(f"precision={precision!r} quantizes embeddings after the model; encode in float32, then "
                             "sentence_transformers.quantization.quantize_embeddings(embeddings, precision=...)")
        if device is not None and str(device) != str(self.device):
            raise InputError(f"device={device!r}: this model runs on {self.device} ({self.backend}); "
                             "load it with from_pretrained(..., backend=...) for another device")
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
        if truncate_dim is not None and (not isinstance(truncate_dim, int) or truncate_dim <= 0):
            raise InputError(f"truncate_dim must be a positive integer, got {truncate_dim!r}")

    def _run(self, texts: list[str], batch_size: int, output_value: str, progress: bool) -> list[Any]:
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # longest first: similar lengths share a batch
        starts: Any = range(0, len(texts), batch_size)
        if progress:
            from rich.progress import track

            starts = track(starts, description="Batches")
        import torch

        rows: list[Any] = [None] * len(texts)
        for start in starts:
            chosen = order[start:start + batch_size]
            batch = self.tokenizer([texts[i] for i in chosen], padding=True, truncation=True, max_length=self.max_seq_length,
                                   return_tensors="np")
            out = self(**dict(batch))
            for row, index in enumerate(chosen):
                if output_value == "token_embeddings":
                    length = int(np.asarray(batch["attention_mask"][row]).nonzero()[0].max()) + 1
                    rows[index] = torch.from_numpy(np.array(out.token_embeddings[row, :length]))
                else:
                    rows[index] = np.asarray(out.sentence_embedding[row])
        return rows
