"""``OBModelForVision2Seq``: image captioners made of an image encoder and a text decoder
(``VisionEncoderDecoderModel``: ViT/Swin/... encoder, GPT-2/BERT/TrOCR... decoder with cross-attention).

The artifact has the seq2seq layout (``encoder`` on ``pixel_values``, ``decoder`` and
``decoder_with_past``), so everything but the encoder's input is :class:`OBModelForSeq2SeqLM`'s.
"""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from .base import register_task_class
from .seq2seq import OBModelForSeq2SeqLM


@register_task_class
class OBModelForVision2Seq(OBModelForSeq2SeqLM):
    """Replaces ``AutoModelForVision2Seq`` / ``VisionEncoderDecoderModel``:
    ``model.generate(pixel_values=image_processor(images, return_tensors="pt").pixel_values)``."""

    task_name = "image-to-text"
    main_input_name = "pixel_values"

    def forward(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        for name in ("input_ids", "input_features"):
            if kwargs.get(name) is not None and kwargs.get("encoder_outputs") is None:
                raise InputError(f"{name}: this image-to-text model's encoder takes pixel_values (images), not {name}")
        return super().forward(*args, **kwargs)
