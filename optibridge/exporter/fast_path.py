"""The fast export path for decoder LMs: TorchScript instead of dynamo, with a dynamo fallback.

The dynamo exporter spends most of a generative export in torch.export's capture and
decompositions (≈ 8 s for a tiny llama where the TorchScript tracer takes < 0.5 s). A plain
TorchScript trace of a transformers 5.x decoder step is wrong at other sizes, though: the mask code
computes its sizes as Python ints (``kv_length = past + new``, ``torch.arange(kv_length)``), which
the tracer records as constants, and the cache's lazy start concatenates a 1-D ``torch.tensor([])``
constant (the Concat OpenVINO's CPU plugin rejects). ``decoder.TracedCausalLMStep`` hands the model a
4-D additive mask computed from tensor shapes only (transformers uses a 4-D mask as it is) and a
cache holding the past tensors themselves, so nothing size-dependent is baked in.

Whether the graph is right is decided by the validator at new shapes (batch, past length), as for
every graph: :func:`exporter_attempts` puts the fast path first only when validation runs, and
``export()`` re-exports with dynamo when the fast graph fails (saying so in its log).
"""

from __future__ import annotations

from typing import Any

FAST = "torchscript"
FALLBACK = "dynamo"


def fast_path_refusal(config: Any) -> str | None:
    """Why a decoder cannot take the fast path (``None``: it can). Masks other than causal + padding
    (sliding windows, chunked attention) would be replaced by the plain causal one; validation at
    short lengths could not see that, so those models go straight to dynamo."""
    try:
        from torch.onnx import utils as _legacy  # noqa: F401  (gone in torch versions without TorchScript export)
    except ImportError:
        return "this torch has no TorchScript exporter"
    if getattr(config, "_attn_implementation", None) not in (None, "eager", "sdpa"):
        return f"attention implementation {config._attn_implementation!r}"
    # a multimodal model's language model says it in its text config
    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    for part in (config, text):
        if getattr(part, "sliding_window", None) or getattr(part, "attention_chunk_size", None):
            return "sliding-window or chunked attention"
        layer_types = getattr(part, "layer_types", None) or []
        if any(kind != "full_attention" for kind in layer_types):
            return "layers with other attention types"
    return None


def exporter_attempts(requested: str, kind: str, config: Any, *, validate: bool, opset: int | None) -> list[str]:
    """The exporters an export tries, in order. Decoder LMs with ``auto``: the fast path, then dynamo
    should the fast graph fail, but only when validation runs (it is what proves the fast graph).
    Encoders with ``auto``: TorchScript, then dynamo should it fail."""
    from torch.onnx import _constants

    from .torch_to_onnx import resolve_exporter

    if requested != "auto":
        return [resolve_exporter(requested, kind)]
    if kind not in ("decoder", "seq2seq"):
        # encoders: TorchScript where torch has it, dynamo should it raise (an operator it cannot write,
        # UperNet's adaptive pooling at a fixed size); validation judges either graph alike
        first = resolve_exporter(requested, kind)
        return [first, FALLBACK] if first == FAST else [first]
    fits_opset = opset is None or opset <= _constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET
    if validate and fits_opset and fast_path_refusal(config) is None:
        return [FAST, FALLBACK]
    return [FALLBACK]
