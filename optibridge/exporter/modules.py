"""The PyTorch module behind each graph the exporter writes, as public functions.

A backend that runs the PyTorch model instead of the ONNX graph (Habana Gaudi) serves the
artifact's IO contract with exactly the modules the exporter traced, so both compute the same
function by construction. These are the only exporter names such a plugin needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from ..errors import UnsupportedModelError
from ..tasks import TASKS

if TYPE_CHECKING:
    import torch

    from ..artifact import Artifact

SEQ2SEQ_GRAPHS = ("encoder", "decoder", "decoder_with_past")
"""Graph names of a seq2seq artifact, in the order they run."""


def load_pytorch_model(model: str, task: str | None = None, **hub_kwargs: Any) -> torch.nn.Module:
    """The transformers model (hub id or local folder) for ``task``, loaded as the exporter loads it."""
    from .loading import load_source_model

    loaded: torch.nn.Module = load_source_model(model, task, **hub_kwargs).model
    return loaded


def encoder_module(model: torch.nn.Module, input_names: tuple[str, ...], output_names: tuple[str, ...]) -> torch.nn.Module:
    """One-call models (encoders, vision): positional ``input_names`` in, the ``output_names`` fields out, as a tuple."""
    from .torch_to_onnx import OutputSelector

    return OutputSelector(model, input_names, output_names)


def causal_lm_step(model: torch.nn.Module, use_cache: bool) -> torch.nn.Module:
    """A decoder LM's graph: ids, mask (and the flattened past when ``use_cache``) in; logits (and present) out."""
    from .decoder import CausalLMStep

    return CausalLMStep(model, use_cache)


def seq2seq_encoder_step(model: torch.nn.Module, speech: bool) -> torch.nn.Module:
    """A seq2seq model's ``encoder`` graph (``speech``: the input is ``input_features``, not ids)."""
    from .seq2seq import EncoderStep

    return EncoderStep(model, speech=speech)


def seq2seq_decoder_step(model: torch.nn.Module, with_past: bool) -> torch.nn.Module:
    """A seq2seq model's ``decoder`` (``with_past=False``) or ``decoder_with_past`` graph."""
    from .seq2seq import DecoderStep

    return DecoderStep(model, with_past=with_past)


def graph_module(model: torch.nn.Module, artifact: Artifact, graph: str) -> torch.nn.Module:
    """The module behind graph ``graph`` of ``artifact``: same positional inputs and tuple outputs as that graph."""
    spec = artifact.metadata.graphs[graph]
    kind = TASKS[artifact.metadata.task].kind
    if kind == "encoder":
        return encoder_module(model, tuple(spec.input_names), tuple(spec.output_names))
    if kind == "decoder":
        return causal_lm_step(model, bool(artifact.metadata.extra.get("use_cache")))
    factories: dict[str, Callable[[], torch.nn.Module]] = {
        "encoder": lambda: seq2seq_encoder_step(model, speech=spec.input_names == ["input_features"]),
        "decoder": lambda: seq2seq_decoder_step(model, with_past=False),
        "decoder_with_past": lambda: seq2seq_decoder_step(model, with_past=True),
    }
    if graph not in factories:
        raise UnsupportedModelError(f"no exported module for graph {graph!r} of a {kind} artifact; its graphs are {', '.join(SEQ2SEQ_GRAPHS)}")
    return factories[graph]()
