"""``OBModelForVisualCausalLM``: a decoder LM that takes images (llava, llava-next, gemma3), exported for
``image-text-to-text`` (:mod:`optibridge.exporter.visual_lm`).

The prompt's first step runs the ``vision_embeddings`` graph on ``pixel_values`` and hands its rows
to the decoder graph, which puts them in place of the image placeholder tokens; later steps (no
placeholders) hand it none. Everything else is :class:`OBModelForCausalLM`: transformers'
``generate()``, the KV cache, the stateful OpenVINO form.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from ..image_packing import image_tiles, pack_rows, tiles_per_image
from ..image_placeholders import IMAGE_FEATURES, IMAGE_NEWLINE, VISION_GRAPH, ImageTokens
from .base import register_task_class
from .causal_lm import IMAGE_INPUTS, OBModelForCausalLM
from .inputs import to_numpy

IMAGE_TOKEN_TYPES = "_image_token_types"
"""Where forward() hands gemma3's token_type_ids to the image step (checked there, never fed to the graph)."""
NO_NATIVE_LOOP = "image inputs run in transformers' loop (the native loops take token ids only)"


@register_task_class
class OBModelForVisualCausalLM(OBModelForCausalLM):
    """Replaces ``AutoModelForImageTextToText`` (``LlavaForConditionalGeneration``, ``LlavaNextForConditionalGeneration``,
    ``Gemma3ForConditionalGeneration``): ``model.generate(**processor(images=..., text=..., return_tensors="pt"))``."""

    task_name = "image-text-to-text"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.main_input_name = "input_ids"  # as llava's: generate() starts from the prompt's tokens
        self.image_tokens = ImageTokens.from_extra(self.artifact.metadata.extra, str(self.artifact.path))
        self._native_error = NO_NATIVE_LOOP

    def forward(  # type: ignore[override]  # more named inputs than the text LM's (generate() checks the names)
        self, input_ids: Any = None, attention_mask: Any = None, position_ids: Any = None, past_key_values: Any = None,
        use_cache: bool | None = None, return_dict: bool | None = None, logits_to_keep: Any = 0, pixel_values: Any = None,
        image_sizes: Any = None, token_type_ids: Any = None, **kwargs: Any,
    ) -> Any:
        """:meth:`OBModelForCausalLM.forward` with the images: ``pixel_values`` (and, for llava-next, ``image_sizes``)
        are read when ``input_ids`` hold placeholder tokens (the prompt's step) and ignored after it, as transformers does.
        gemma3's processor also gives ``token_type_ids`` (1 on the placeholders): the graph derives them from the ids,
        so they are checked against them and not fed."""
        if self.image_tokens.attention == "image-blocks":
            kwargs[IMAGE_TOKEN_TYPES] = token_type_ids
        elif token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids  # the text LM's rules (refused unless harmless)
        return super().forward(input_ids, attention_mask, position_ids, past_key_values, use_cache, return_dict, logits_to_keep,
                               pixel_values=pixel_values, image_sizes=image_sizes, **kwargs)

    def _validate_model_kwargs(self, model_kwargs: dict[str, Any]) -> None:
        if self.image_tokens.attention == "image-blocks":  # the processor's placeholder types: checked at the prompt's step
            model_kwargs = {name: value for name, value in model_kwargs.items() if name != "token_type_ids"}
        super()._validate_model_kwargs(model_kwargs)

    @staticmethod
    def preprocess_inputs(text: str, image: Any = None, processor: Any = None, tokenizer: Any = None, config: Any = None,
                          video: Any = None, audio: Any = None) -> Any:
        """optimum-intel's helper: the processor's tensors for one prompt about ``image`` (``generate(**inputs)``
        takes them). The prompt goes through the processor's chat template where it has one; otherwise the
        image's placeholder goes first unless ``text`` places it. ``tokenizer`` is accepted and unused (the
        processor holds one); ``config`` gives the patch size to a processor saved without it."""
        if processor is None:
            raise InputError("preprocess_inputs needs the model's processor: AutoProcessor.from_pretrained(<the artifact folder>)")
        for name, value in (("video", video), ("audio", audio)):
            if value is not None:
                raise InputError(f"{name} inputs are not supported: this model takes images and text")
        if getattr(processor, "patch_size", 0) is None:
            patch = getattr(getattr(config, "vision_config", None), "patch_size", None)
            if patch is None:
                raise InputError("the processor has no patch_size (saved by an older transformers): pass config=model.config")
            processor.patch_size = patch
        prompt = image_prompt(processor, text, with_image=image is not None)
        return processor(images=image, text=prompt, return_tensors="pt")

    def _expand_inputs_for_generation(self, expand_size: int = 1, is_encoder_decoder: bool = False, input_ids: Any = None,
                                      **model_kwargs: Any) -> Any:
        """Beam search and ``num_return_sequences`` repeat each prompt row: repeat each row's *images* with
        it (transformers repeats every tensor along its first axis, which for a row with two images
        would put the wrong images under the copies)."""
        images = {name: model_kwargs.pop(name) for name in ("pixel_values", "image_sizes") if model_kwargs.get(name) is not None}
        expanded_ids, model_kwargs = super()._expand_inputs_for_generation(expand_size, is_encoder_decoder, input_ids, **model_kwargs)  # type: ignore[misc]
        if "pixel_values" in images and expand_size > 1 and input_ids is not None:
            rows = self.image_rows(images["pixel_values"], images.get("image_sizes"))[1]
            order = image_order(input_ids, self.image_tokens.token_id, rows, expand_size)
            images = {name: _take(value, order) if order is not None else _repeat(value, expand_size) for name, value in images.items()}
        model_kwargs.update(images)
        return expanded_ids, model_kwargs

    def _check_image_inputs(self, kwargs: dict[str, Any]) -> None:
        allowed = ("pixel_values", "image_sizes") if self.image_tokens.packing == "anyres" else ("pixel_values",)
        given = next((name for name in IMAGE_INPUTS if name not in allowed and kwargs.get(name) is not None), None)
        if given is not None:
            raise InputError(f"{given}: not supported; this model's vision graph takes {' and '.join(allowed)}")

    def image_features(self, pixel_values: Any, image_sizes: Any = None) -> np.ndarray:
        """The rows the images give, one per placeholder token, every image's in order."""
        return self.image_rows(pixel_values, image_sizes)[0]

    def image_rows(self, pixel_values: Any, image_sizes: Any = None) -> tuple[np.ndarray, list[int]]:
        """The vision graph's rows for ``pixel_values`` (llava: (images, channels, height, width); llava-next: the
        processor's (images, tiles, ...) with ``image_sizes``), and how many each image gives."""
        tokens = self.image_tokens
        pixels, _ = to_numpy("pixel_values", pixel_values)
        expected = (tokens.channels, tokens.image_size, tokens.image_size)
        rank = 4 if tokens.packing == "flat" else pixels.ndim
        if pixels.ndim != rank or rank not in (4, 5) or tuple(pixels.shape[-3:]) != expected or not np.issubdtype(pixels.dtype, np.floating):
            layout = "images" if tokens.packing == "flat" else "images, tiles"
            raise InputError(
                f"pixel_values: expected floats of shape ({layout}, {', '.join(map(str, expected))}), got {pixels.dtype} {tuple(pixels.shape)}; "
                "prepare the images with the model's processor (AutoProcessor / AutoImageProcessor)"
            )
        pixels = pixels.astype(np.float32)
        if tokens.packing == "flat":
            features: np.ndarray = self.sessions[VISION_GRAPH].run({"pixel_values": pixels})[IMAGE_FEATURES]
            return features, [tokens.per_image] * len(pixels)
        if image_sizes is None:
            raise InputError("image_sizes: required with pixel_values for this model (each image is tiled by its size); "
                             "pass what the model's processor returns with the pixels")
        sizes, _ = to_numpy("image_sizes", image_sizes)
        tiles = tiles_per_image(self.config, sizes)
        out = self.sessions[VISION_GRAPH].run({"pixel_values": image_tiles(pixels, tiles)})
        return pack_rows(self.config, out[IMAGE_FEATURES], out[IMAGE_NEWLINE], sizes, tiles)

    def _image_feed(self, ids: np.ndarray, past: int, kwargs: dict[str, Any]) -> dict[str, np.ndarray]:
        tokens = self.image_tokens
        placeholders = int((ids == tokens.token_id).sum())
        types = kwargs.pop(IMAGE_TOKEN_TYPES, None)
        if types is not None and past == 0:
            given = to_numpy("token_type_ids", types)[0]
            if given.shape != ids.shape or not np.array_equal(given != 0, ids == tokens.token_id):
                raise InputError("token_type_ids must be 1 exactly on the image placeholder tokens (as the model's processor "
                                 f"makes them, id {tokens.token_id}); the graph derives them from input_ids: leave them out or pass the processor's")
        pixel_values = kwargs.get("pixel_values")
        if placeholders == 0 or (pixel_values is None and past > 0):
            # After the prompt there is nothing to place: a placeholder id the model generates keeps its embedding (as in transformers)
            if pixel_values is not None and past == 0:
                raise InputError(
                    f"pixel_values were given but input_ids hold no image placeholder token (id {tokens.token_id}); build the "
                    "prompt with the model's processor, which puts one per image feature"
                )
            return {IMAGE_FEATURES: np.zeros((0, tokens.width), np.float32)}
        if pixel_values is None:
            raise InputError(f"input_ids hold {placeholders} image placeholder token(s) (id {tokens.token_id}) but no pixel_values were given")
        features, rows = self.image_rows(pixel_values, kwargs.get("image_sizes"))
        if features.shape[0] != placeholders:
            raise InputError(
                f"input_ids hold {placeholders} image placeholder token(s) but {len(rows)} image(s) give {features.shape[0]} feature rows "
                f"({', '.join(map(str, rows))}); build the prompt with the model's processor"
            )
        return {IMAGE_FEATURES: features}


def _take(value: Any, order: list[int]) -> Any:
    import torch

    return torch.as_tensor(value)[torch.tensor(order, dtype=torch.long)]


def _repeat(value: Any, copies: int) -> Any:
    import torch

    return torch.as_tensor(value).repeat_interleave(copies, dim=0)


def image_order(input_ids: Any, token_id: int, rows: list[int], copies: int) -> list[int] | None:
    """The images' order once each prompt row is repeated ``copies`` times: row r owns the next images in
    order whose ``rows`` add up to its placeholder count. None where the counts do not add up (the
    forward step then reports the mismatch)."""
    import torch

    counts = (torch.as_tensor(input_ids) == token_id).sum(dim=1).tolist()
    order: list[int] = []
    image = 0
    for count in counts:
        owned = []
        while count > 0 and image < len(rows):
            owned.append(image)
            count -= rows[image]
            image += 1
        if count != 0:
            return None
        order += owned * copies
    return order if image == len(rows) else None


def image_prompt(processor: Any, text: str, with_image: bool = True) -> str:
    """``text`` as the model's prompt: through the processor's chat template where it has one (the image first,
    then the text), otherwise with the image's placeholder put first unless ``text`` places it."""
    if getattr(processor, "chat_template", None):
        content = ([{"type": "image"}] if with_image else []) + [{"type": "text", "text": text}]
        return str(processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False))
    token = str(getattr(processor, "image_token", None) or "<image>")
    return f"{token}\n{text}" if with_image and token not in text else text
