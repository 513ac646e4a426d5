"""Tiny random models for *any* transformers model type, built generically from its config class.

Start from the config class defaults and shrink the common size fields (hidden size, layers,
heads, FFN width, vocabulary, image/patch size, per-stage lists...) wherever the config has
them, recursing into sub-configs (``text_config``, ``vision_config``...). A type that cannot be
built this way raises :class:`TinyConfigError` with the cause, which the sweep records instead of
anyone hand-writing a config for it.

Weights are redrawn as N(0, 1/fan_in) so activations and logits stay O(1) through the layers and a
1e-4 tolerance means something (default inits give near-constant outputs that hide bugs).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch

VOCAB = 544  # holds tests/tiny_models.py's WordPiece vocabulary (538 tokens), for pipeline tests
HIDDEN = 32
HEADS = 4
KV_HEADS = 2
LAYERS = 2
FFN = 40  # divisible by the group counts of grouped convolutions (squeezebert)
IMAGE = 32
POSITIONS = 128

# field name → tiny value, applied where the config has the field as an int.
INT_FIELDS: dict[str, int] = {
    **dict.fromkeys(("hidden_size", "d_model", "n_embd", "dim", "embed_dim", "hidden_dim_size", "projection_dim",
                     "text_embed_dim", "vision_embed_dim", "word_embed_proj_dim", "pooler_hidden_size", "projection_size"), HIDDEN),
    **dict.fromkeys(("num_hidden_layers", "num_layers", "n_layer", "n_layers", "encoder_layers", "decoder_layers",
                     "num_decoder_layers", "num_encoder_layers", "encoder_num_hidden_layers", "decoder_num_hidden_layers"), LAYERS),
    **dict.fromkeys(("num_attention_heads", "n_head", "n_heads", "encoder_attention_heads", "decoder_attention_heads",
                     "num_heads"), HEADS),
    **dict.fromkeys(("num_key_value_heads", "num_kv_heads", "multi_query_group_num"), KV_HEADS),
    **dict.fromkeys(("intermediate_size", "d_ff", "ffn_dim", "encoder_ffn_dim", "decoder_ffn_dim", "n_inner",
                     "hidden_dim", "mlp_dim", "moe_intermediate_size", "shared_expert_intermediate_size"), FFN),
    **dict.fromkeys(("head_dim", "d_kv", "attention_head_dim", "kv_channels", "rotary_dim"), HIDDEN // HEADS),
    **dict.fromkeys(("max_position_embeddings", "n_positions", "max_target_positions"), POSITIONS),
    **dict.fromkeys(("num_experts", "num_local_experts", "n_routed_experts"), 4),
    **dict.fromkeys(("num_experts_per_tok", "moe_topk", "top_k"), 2),
    **dict.fromkeys(("num_detection_tokens", "num_queries"), 10),
    "embedding_size": 16,
    "image_size": IMAGE,
    "vocab_size": VOCAB,
    "num_mel_bins": 16,
    "max_source_positions": 50,
    "sliding_window": 64,
    # multi-head latent attention (deepseek v2/v3, minicpm3...): keys 12 wide, values 8, so the two differ
    "qk_rope_head_dim": 4,
    "qk_nope_head_dim": 8,
    "v_head_dim": 8,
    "kv_lora_rank": 16,
    "q_lora_rank": 16,
}
# Per-stage lists of hierarchical vision models (resnet, swin, convnext...): keep the stage count.
LIST_FIELDS = {
    "depths": lambda n: [1] * n,
    "num_heads": lambda n: [2] * n,
    "hidden_sizes": lambda n: [8 * (i + 1) for i in range(n)],
    "embed_dims": lambda n: [8 * (i + 1) for i in range(n)],
    "num_attention_heads": lambda n: [2] * n,
    "conv_dim": lambda n: [16] * n,  # wav2vec2-style feature encoders
    # per-head width of each stage (levit): kept below the first stage's width, whose multiple of it
    # is its subsampling attention's head count
    "key_dim": lambda n: [HIDDEN // HEADS] * n,
}
LAYOUT_HIDDEN = 48  # layout models split the hidden size 6 ways (4 box coordinates, 2 sides), then into heads
# Per-model-type facts no generic rule can see, applied to a config (or sub-config) of that model type.
TYPE_OVERRIDES: dict[str, dict[str, Any]] = {
    # its stem is always four stride-2 convolutions; patch_size only tells the attention biases that it is 16×
    "levit": {"patch_size": 16},
    # hidden_dim must equal the head's width, which the model derives as round_filters(1280) (width × 1280)
    "efficientnet": {"width_coefficient": 0.1, "depth_coefficient": 1.0, "hidden_dim": 128},
    # the backbone reports embedding_size and hidden_sizes as the stem's and stages' widths but builds them from
    # stem_channels / stage_*_channels: those follow the shrunk sizes, each stage starting where the last ended
    "hgnet_v2": {"stem_channels": [3, 16, 16], "stage_in_channels": [16, 8, 16, 24], "stage_mid_channels": [8] * 4,
                 "stage_out_channels": [8, 16, 24, 32], "stage_numb_of_layers": [2] * 4},
}
TOKEN_ID_FIELDS = ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id", "sep_token_id", "cls_token_id",
                   "mask_token_id", "unk_token_id", "forced_bos_token_id", "forced_eos_token_id")


class TinyConfigError(Exception):
    """This model type cannot be built tiny generically; the message is the cause."""


def shrink(values: dict[str, Any]) -> dict[str, Any]:
    """Overrides for one config's ``to_dict()`` (sub-configs handled by :func:`tiny_config`)."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, bool) or name in _base_fields():
            continue
        if name == "embedding_size" and isinstance(value, int):
            # some models need it equal to the hidden size (squeezebert); others factorise (albert)
            out[name] = HIDDEN if value == values.get("hidden_size") else min(value, 16)
        elif name in INT_FIELDS and isinstance(value, int):
            out[name] = min(value, INT_FIELDS[name])
        elif name in LIST_FIELDS and isinstance(value, list) and value and all(isinstance(v, int) for v in value):
            out[name] = LIST_FIELDS[name](len(value))
        elif name == "image_size" and isinstance(value, list) and len(value) == 2:  # (height, width): yolos
            out[name] = [IMAGE, IMAGE]
        elif name == "patch_size" and isinstance(value, int):
            out[name] = min(value, 4 if values.get("depths") else 8)
    if "embed_dim" in values and isinstance(values.get("depths"), list):  # swin-like: the first stage width
        out["embed_dim"] = 16
    if isinstance(values.get("window_size"), int) and isinstance(values.get("depths"), list):
        # windowed attention (swin): the last stage's grid must equal the window, as 7×7 does at 224 px
        patch = out.get("patch_size", values.get("patch_size", 4))
        out["window_size"] = 2
        out["image_size"] = patch * 2 * 2 ** (len(values["depths"]) - 1)
    if isinstance(values.get("qk_rope_head_dim"), int):  # multi-head latent attention
        if values.get("head_dim") == values["qk_rope_head_dim"]:
            out["head_dim"] = INT_FIELDS["qk_rope_head_dim"]  # some configs name the rotary width head_dim too
        if "qk_head_dim" in values:  # derived in __init__, so to_dict() carries the default's sum
            out["qk_head_dim"] = INT_FIELDS["qk_rope_head_dim"] + INT_FIELDS["qk_nope_head_dim"]
        if values.get("num_key_value_heads") == values.get("num_attention_heads"):
            out["num_key_value_heads"] = HEADS  # latent keys are expanded to every head: no grouping
    if values.get("num_experts_per_tok", 0) is None and any(isinstance(values.get(k), int) for k in ("n_routed_experts", "num_experts")):
        out["num_experts_per_tok"] = INT_FIELDS["num_experts_per_tok"]  # deepseek_v2's default leaves routing unset
    if ("out_features" in values or "out_indices" in values) and not _stages_kept(values):
        # backbone outputs named for the default depth, which shrinking cut: the last stage only
        out["out_features"] = out["out_indices"] = None
    if "max_2d_position_embeddings" in values and isinstance(values.get("hidden_size"), int):
        # layout models (lilt, layoutlmv3): the box embeddings' widths must add up to the hidden size
        out["hidden_size"] = LAYOUT_HIDDEN
        for name in ("coordinate_size", "shape_size"):
            if isinstance(values.get(name), int):
                out[name] = values[name] * LAYOUT_HIDDEN // values["hidden_size"]
    indices = values.get("backbone_out_indices")
    if isinstance(indices, list) and isinstance(out.get("num_hidden_layers"), int):
        # layers whose hidden states feed a neck (dpt: one per neck_hidden_sizes entry): keep their count
        out["num_hidden_layers"] = len(indices)
        out["backbone_out_indices"] = list(range(len(indices)))
    depths = values.get("depths")
    if isinstance(depths, (list, tuple)):
        for key in ("num_hidden_layers", "num_layers", "n_layer"):
            if values.get(key) == len(depths):  # swin-like: the stage count, which per-stage lists follow
                out.pop(key, None)
    layer_keys = [k for k in ("num_hidden_layers", "num_layers", "n_layer") if k in out]
    if layer_keys:
        # per-layer settings (layer_types, mlp_layer_types, a list of FFN widths...) follow the shrunk depth
        layers, default_layers = out[layer_keys[0]], values[layer_keys[0]]
        for name, value in values.items():
            if name in out or name in LIST_FIELDS:
                continue
            if isinstance(value, list) and len(value) == default_layers:
                kept = value[:layers]
                if name in INT_FIELDS and all(isinstance(v, int) for v in kept):
                    kept = [min(v, INT_FIELDS[name]) for v in kept]
                out[name] = kept
            elif isinstance(value, dict) and value and all(isinstance(k, int) or str(k).isdigit() for k in value):
                out[name] = {k: v for k, v in value.items() if int(k) < layers}  # per-layer overrides by index
    for name in TOKEN_ID_FIELDS:  # keep special tokens inside the shrunk vocabulary
        value = values.get(name)
        if isinstance(value, int) and value >= VOCAB:
            out[name] = 2
        elif isinstance(value, list):
            out[name] = [v if v < VOCAB else 2 for v in value]
    return out


def _stages_kept(values: dict[str, Any]) -> bool:
    """Whether a backbone's chosen outputs (``out_indices``, stage 0 the stem) still exist once shrunk: a
    per-stage list (``depths``) keeps the stage count, so they do. Heads are sized for the outputs chosen
    (RT-DETR's encoder takes 3 feature maps), so they must be kept where they can be."""
    indices = values.get("out_indices")
    depths = values.get("depths")
    return (isinstance(indices, list) and isinstance(depths, list) and bool(indices)
            and all(isinstance(i, int) and -len(depths) - 1 <= i <= len(depths) for i in indices))


@functools.cache
def _base_fields() -> frozenset[str]:
    """Fields every config carries, not a model's sizes: on transformers 4.x they include the generation
    defaults (``top_k`` = 50), which must not be shrunk like an MoE's ``top_k`` (an invalid GenerationConfig)."""
    from transformers import PretrainedConfig

    return frozenset(PretrainedConfig().to_dict())


def tiny_config(model_type: str) -> Any:
    """A small config for ``model_type`` from its class defaults, or :class:`TinyConfigError`."""
    from transformers import CONFIG_MAPPING

    try:
        config_class = CONFIG_MAPPING[model_type]
        default = config_class()
    except Exception as exc:
        raise TinyConfigError(f"default config: {type(exc).__name__}: {_first(exc)}") from exc
    if _needs_timm(default):
        # a timm backbone by default (detr, table-transformer...); use_timm_backbone=False is the model's own
        # route to a transformers backbone (resnet), the one left without timm installed
        try:
            default = config_class(use_timm_backbone=False)
        except Exception as exc:
            raise TinyConfigError(f"default config without timm: {type(exc).__name__}: {_first(exc)}") from exc
    values = default.to_dict()
    overrides = {**shrink(values), **TYPE_OVERRIDES.get(model_type, {})}
    for name in getattr(default, "sub_configs", {}) or {}:
        sub = getattr(default, name, None)
        if sub is not None and hasattr(sub, "to_dict"):
            sub_values = sub.to_dict()
            overrides[name] = {**sub_values, **shrink(sub_values), **TYPE_OVERRIDES.get(sub_values.get("model_type"), {})}
    if values.get("is_encoder_decoder") and values.get("decoder_start_token_id") is None and values.get("bos_token_id") is None:
        # T5Config's defaults have no start token (generate() refuses to run, PyTorch's too); every T5
        # checkpoint's config.json sets the pad id, as MT5Config's defaults do
        overrides["decoder_start_token_id"] = overrides.get("pad_token_id", values.get("pad_token_id"))
    try:
        return config_class(**{**_constructor_values(values), **overrides})
    except Exception as exc:
        raise TinyConfigError(f"shrunk config: {type(exc).__name__}: {_first(exc)}") from exc


def _needs_timm(config: Any) -> bool:
    """Whether ``config`` has a timm backbone (``TimmBackbone``) while timm is not installed."""
    from transformers.utils import is_timm_available

    backbone = getattr(config, "backbone_config", None)
    return getattr(backbone, "model_type", None) == "timm_backbone" and not is_timm_available()


def _constructor_values(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k not in ("model_type", "transformers_version", "architectures")}


def redraw_weights(model: torch.nn.Module, seed: int = 0) -> None:
    """Every matrix/filter ~ N(0, 1/fan_in) (fan_in = elements per output row); batch norm scales 1."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() > 1 and parameter.is_floating_point():
                fan_in = parameter[0].numel()
                parameter.copy_(torch.randn(parameter.shape, generator=generator) / fan_in**0.5)
        for module in model.modules():
            # batch norm scales at 1, as trained ones are near: some inits draw them ~N(0, 0.02) (efficientnet),
            # which, with the unit running variance of an untrained model, shrinks every block's output 50×
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.weight is not None:
                module.weight.fill_(1.0)


IMAGE_TASKS = ("image-classification", "semantic-segmentation", "object-detection")


def calibrate_batch_norm(model: torch.nn.Module, config: Any, seed: int = 0) -> None:
    """Batch norm running statistics from one batch of random images, as training leaves them. An untrained
    model's (mean 0, variance 1) normalise nothing: blocks without a residual (efficientnet: SiLU, then a
    sigmoid gate) then shrink activations ~10× each, until the logits sit far below the validation tolerance."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return
    vision = getattr(config, "vision_config", None) or config
    size = getattr(vision, "image_size", 224)
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randn(32, int(getattr(vision, "num_channels", 3)), height, width, generator=generator)
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average: after one batch, that batch's statistics
        norm.train()
    try:
        with torch.no_grad():
            model(pixel_values=pixels)
    except Exception:  # a model that needs more than images: it keeps the untrained statistics
        for norm in norms:
            norm.reset_running_stats()
    finally:
        for norm, momentum in zip(norms, momenta):
            # a channel the batch leaves (near) constant, dead after a ReLU, would be scaled by up to 1/sqrt(eps):
            # that amplifies rounding 300× and compares the exporter's arithmetic order, not its graph
            norm.running_var.clamp_(min=1e-2)
            norm.momentum = momentum
            norm.eval()


def build_tiny(model_type: str, task: str, dest: Path, seed: int = 0, **overrides: Any) -> Path:
    """Build, redraw and save a tiny model of ``model_type`` for ``task`` into ``dest`` (``overrides``
    set config fields, e.g. a vocabulary size that matches a tokenizer)."""
    import transformers

    from optibridge.exporter.architectures import model_class_for

    config = tiny_config(model_type)
    model_class = model_class_for(model_type, task)
    if model_class is None:
        raise TinyConfigError(f"transformers has no class for {model_type} / {task}")
    if task in ("text-classification", "image-classification", "audio-classification"):
        config.num_labels = 3
    config.architectures = [model_class.__name__]
    for name, value in overrides.items():
        setattr(config, name, value)
    torch.manual_seed(seed)
    try:
        try:
            model = model_class._from_config(config, attn_implementation="eager")
        except (ValueError, TypeError):
            model = model_class._from_config(config)
    except Exception as exc:
        raise TinyConfigError(f"building {model_class.__name__}: {type(exc).__name__}: {_first(exc)}") from exc
    redraw_weights(model.eval(), seed)
    if task in IMAGE_TASKS:
        calibrate_batch_norm(model, config, seed)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest)
    if getattr(model, "generation_config", None) is not None and model.can_generate():
        model.generation_config.save_pretrained(dest)
    del transformers
    return dest


def _first(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""
