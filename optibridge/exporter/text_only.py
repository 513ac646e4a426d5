"""The text-only path for decoder LMs that also take images (llava, mistral3, gemma3, ...).

Exported for ``text-generation``, such a model becomes its language model and LM head alone: a plain
causal LM of its ``text_config`` type (llama, mistral, gemma3_text...) with the multimodal model's
weights, which the decoder exporter then handles like any other. The vision tower and projector
are left out, so the artifact takes token ids only; image inputs are not supported by this path
(``image-text-to-text``, :mod:`.visual_lm`, exports llava-style models with their images).
Before export the extracted LM is checked against the multimodal model called with text only.
"""

from __future__ import annotations

from typing import Any

from ..errors import UnsupportedModelError, first_line


TEXT_ONLY_NOTE = "text-only export of a multimodal model: image inputs are not supported (pixel_values is refused)"
PARITY_ATOL = 1e-5


def is_multimodal_lm(config: Any) -> bool:
    """A decoder LM with a vision part whose text config is a causal LM transformers knows."""
    from .architectures import auto_mapping

    text = getattr(config, "text_config", None)
    if text is None or getattr(config, "vision_config", None) is None or getattr(config, "is_encoder_decoder", False):
        return False
    return getattr(text, "model_type", None) in auto_mapping("AutoModelForCausalLM")


def load_language_model(name_or_path: str, config: Any, **hub_kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """The multimodal model's language model + LM head as a plain causal LM, and the facts to record
    (``extra["text_only"]``). ``hub_kwargs`` must already say ``trust_remote_code`` explicitly."""
    import transformers

    model_type = config.model_type
    try:
        full = transformers.AutoModelForImageTextToText.from_pretrained(  # type: ignore[no-untyped-call]
            name_or_path, attn_implementation="eager", **hub_kwargs
        ).eval()
    except (OSError, ValueError) as exc:
        raise UnsupportedModelError(f"could not load {name_or_path!r} ({model_type}) to take its language model: {first_line(exc)}") from exc
    text_config = config.get_text_config(decoder=True)
    try:
        lm = transformers.AutoModelForCausalLM.from_config(text_config, attn_implementation="eager").eval()  # type: ignore[no-untyped-call]
        lm.get_decoder().load_state_dict(full.get_decoder().state_dict())
        lm.get_output_embeddings().load_state_dict(full.get_output_embeddings().state_dict())
    except Exception as exc:  # a language model that is not a plain causal LM of its text config
        raise UnsupportedModelError(
            f"{model_type}: its language model does not load into {text_config.model_type}'s causal LM "
            f"({type(exc).__name__}: {first_line(exc)}); the text-only path cannot export this model type"
        ) from exc
    if getattr(full, "generation_config", None) is not None:
        lm.generation_config = full.generation_config
    check_same_logits(full, lm, model_type)
    lm.config.architectures = [type(lm).__name__]
    return lm, {"source_model_type": model_type, "source_architectures": getattr(config, "architectures", None), "note": TEXT_ONLY_NOTE}


def check_same_logits(full: Any, lm: Any, model_type: str) -> None:
    """The extracted LM must give the multimodal model's logits on text (else the export would differ)."""
    import torch

    vocab = int(lm.config.vocab_size)
    image_ids = {getattr(full.config, name, None) for name in ("image_token_id", "image_token_index", "video_token_id")}
    ids = torch.randint(min(3, vocab - 1), vocab, (2, 7), generator=torch.Generator().manual_seed(0))
    for special in image_ids - {None}:  # text only: no image placeholder tokens
        ids[ids == special] = min(3, vocab - 1)
    with torch.no_grad():
        want = full(input_ids=ids).logits
        got = lm(input_ids=ids).logits
    diff = float((want - got).abs().max()) if want.shape == got.shape else float("inf")
    if not diff <= PARITY_ATOL:
        raise UnsupportedModelError(
            f"{model_type}: its language model alone differs from the full model called with text only (max diff {diff:.3g}); "
            "the text-only path cannot export this model type"
        )
