"""``OBModelForVision2Seq``: image captioners made of an image encoder and a text decoder
(``VisionEncoderDecoderModel``: ViT/Swin/... encoder, GPT-2/BERT/TrOCR... decoder with cross-attention;
BLIP; Pix2Struct, whose encoder takes variable-resolution ``flattened_patches`` with a mask).

The artifact has the seq2seq layout (``encoder`` on ``pixel_values``, ``decoder`` and
``decoder_with_past``), so everything but the encoder's input is :class:`OBModelForSeq2SeqLM`'s.
"""

from __future__ import annotations

from typing import Any

from ..errors import ArtifactError, InputError
from .base import register_task_class
from .seq2seq import OBModelForSeq2SeqLM


@register_task_class
class OBModelForVision2Seq(OBModelForSeq2SeqLM):
    """Replaces ``AutoModelForVision2Seq`` / ``VisionEncoderDecoderModel``:
    ``model.generate(pixel_values=image_processor(images, return_tensors="pt").pixel_values)``;
    Pix2Struct: ``model.generate(**processor(images=images, return_tensors="pt"))`` (``flattened_patches``
    and their ``attention_mask``)."""

    task_name = "image-to-text"
    main_input_name = "pixel_values"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # generate() finds the encoder's input by this name: Pix2Struct's is flattened_patches
        self.main_input_name = self.artifact.metadata.graphs["encoder"].input_names[0]
        self._encoder.main_input_name = self.main_input_name

    def forward(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        for name in ("input_ids", "input_features", "pixel_values", "flattened_patches"):
            if name != self.main_input_name and kwargs.get(name) is not None and kwargs.get("encoder_outputs") is None:
                raise InputError(f"{name}: this image-to-text model's encoder takes {self.main_input_name}, not {name}")
        return super().forward(*args, **kwargs)


class OBModelForPix2Struct(OBModelForVision2Seq):
    """Optimum's ``ORTModelForPix2Struct`` (screenshots, charts, documents: ``google/pix2struct-*``, DePlot,
    MatCha): the image-to-text class for an artifact whose encoder takes Pix2Struct's ``flattened_patches``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.main_input_name != "flattened_patches":
            raise ArtifactError(f"{self.artifact.path}: its encoder takes {self.main_input_name}, not Pix2Struct's flattened_patches; "
                                "load it with OBModelForVision2Seq (ORTModelForVision2Seq)")
