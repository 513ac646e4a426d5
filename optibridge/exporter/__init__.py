"""torch → ONNX export: task → IO spec → ``torch.onnx.export`` → validation against PyTorch."""

from __future__ import annotations

import os
from typing import Any

from .architectures import ARCHITECTURES, Architecture, get_architecture
from .core import DEFAULT_ATOL, ExportResult, export_model, export_source
from .modules import (
    SEQ2SEQ_GRAPHS, causal_lm_step, encoder_module, graph_module, load_pytorch_model, seq2seq_decoder_step,
    seq2seq_encoder_step,
)
from .plan import Validator
from .validate import OutputCheck, ValidationReport

__all__ = [
    "ARCHITECTURES", "Architecture", "DEFAULT_ATOL", "ExportResult", "OutputCheck", "ValidationReport", "Validator",
    "export", "export_model", "export_source", "get_architecture", "validator",
    # the module behind each graph (for backends that run PyTorch: see optibridge.exporter.modules)
    "SEQ2SEQ_GRAPHS", "causal_lm_step", "encoder_module", "graph_module", "load_pytorch_model", "seq2seq_decoder_step",
    "seq2seq_encoder_step",
]


def validator(backend: str = "auto") -> Validator:
    """A :class:`Validator` on an installed backend (``"auto"``: the first usable one that runs on the CPU)."""
    from ..backends import get_registry

    impl = get_registry().require_available(backend, "cpu")
    version = impl.status().version or "unknown"
    return Validator(impl.name, version, lambda artifact, graph: impl.load(artifact, graph=graph, device="cpu"))


def export(
    model: str | os.PathLike[str], output_dir: str | os.PathLike[str], *, validate: bool = True,
    validation_backend: str = "auto", **kwargs: Any,
) -> ExportResult:
    """:func:`export_model` validated on ``validation_backend`` (an installed backend's name, or
    ``"auto"``): the exporter itself never looks up backends; the registry is consulted only here."""
    checker = validator(validation_backend) if validate else None
    from ..diffusion.families import is_pipeline_folder

    if is_pipeline_folder(model):  # a diffusers pipeline folder: one graph per component
        from ..diffusion.export import export_pipeline

        # a pipeline has no KV cache and loads no hub weights by repo id: only these options apply
        pipeline_options = {k: v for k, v in kwargs.items() if k in ("task", "opset", "atol", "exporter", "external_data", "on_step")}
        return export_pipeline(model, output_dir, validate=validate, validator=checker, **pipeline_options)
    return export_model(model, output_dir, validate=validate, validator=checker, **kwargs)
