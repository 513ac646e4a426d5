"""ORT's fusions for the graphs of a diffusion pipeline artifact (``optimize -O 2``).

Each graph gets the optimizer model type made for it: ``clip`` for the text encoders, ``unet`` for
the denoiser, ``vae`` for the VAE graphs. ORT's ``unet``/``vae`` defaults target CUDA: GroupNorm,
SkipGroupNorm, NhwcConv, BiasSplitGelu, BiasAdd and packed QKV/KV have no CPU kernel (a session
on the CPU provider refuses the graph: "Could not find an implementation for NhwcConv"). On the
CPU only the fusions with CPU kernels are kept: Attention (self), MultiHeadAttention (cross) and
SkipLayerNormalization, measured on a tiny SD 1.x UNet (TorchScript export, ORT 1.32): max abs
diff 1.5e-6 to the unfused graph.
"""

from __future__ import annotations

import contextlib
import io
import sys
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np

from optibridge.artifact import Artifact
from optibridge.diffusion.record import diffusion_record

GRAPH_MODEL_TYPES = {"text_encoder": "clip", "text_encoder_2": "clip", "text_encoder_3": "t5", "unet": "unet", "transformer": "mmdit",
                     "vae_decoder": "vae", "vae_encoder": "vae"}
CUDA_ONLY_FUSIONS = ("enable_group_norm", "enable_skip_group_norm", "enable_nhwc_conv", "enable_bias_splitgelu", "enable_bias_add",
                     "enable_packed_qkv", "enable_packed_kv")


def graph_model_type(artifact: Artifact, graph: str) -> tuple[str, dict[str, Any]]:
    """The ORT optimizer model type of one graph of a pipeline artifact, and its component's config."""
    return GRAPH_MODEL_TYPES.get(graph, "bert"), diffusion_record(artifact).config(graph)


def fusion_options(model_type: str, device: str) -> Any:
    """ORT's fusion options for ``unet``/``vae`` on ``device``: the CUDA-only fusions off on the CPU."""
    from onnxruntime.transformers.fusion_options import FusionOptions

    options = FusionOptions(model_type)
    if device != "gpu":
        for flag in CUDA_ONLY_FUSIONS:
            setattr(options, flag, False)
    return options


@contextmanager
def no_progress_bar() -> Iterator[None]:
    """ORT's unet/vae optimizer draws a tqdm bar on stderr (TQDM_DISABLE is read only when tqdm is
    imported): stderr goes to a buffer while it runs; exceptions still propagate."""
    with contextlib.redirect_stderr(io.StringIO()):
        yield


def _num_heads_from_concat(self: Any, reshape_q: Any, is_torch2: bool = False) -> int:
    """``FusionAttentionUnet.get_num_heads`` for numpy 2, where ``int()`` of a 1-element array raises
    TypeError (ORT 1.32 calls it on the [1]-shaped head count of PyTorch 2 graphs)."""
    if not is_torch2:
        return int(_ORIGINAL[0](self, reshape_q, is_torch2))
    parent = self.model.get_parent(reshape_q, 1)
    if parent is not None and parent.op_type == "Concat" and len(parent.input) == 4:
        value = self.model.get_constant_value(parent.input[2])
        if isinstance(value, np.ndarray) and value.size == 1 and int(value.reshape(())) > 0:
            return int(value.reshape(()))
    return 0


_ORIGINAL: list[Any] = []


def patch_unet_attention_fusion() -> None:
    """Install :func:`_num_heads_from_concat`. ORT's transformer tools import their modules both as
    ``onnxruntime.transformers.x`` and as bare ``x`` (they put their folder on sys.path): both copies."""
    import onnxruntime.transformers.optimizer  # noqa: F401  (loads the bare-named modules too)

    for name in ("onnxruntime.transformers.fusion_attention_unet", "fusion_attention_unet"):
        module = sys.modules.get(name)
        if module is None or module.FusionAttentionUnet.get_num_heads is _num_heads_from_concat:
            continue
        if not _ORIGINAL:
            _ORIGINAL.append(module.FusionAttentionUnet.get_num_heads)
        module.FusionAttentionUnet.get_num_heads = _num_heads_from_concat
