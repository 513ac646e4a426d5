"""Decoder LMs that take images (llava, llava-next, gemma3), exported for ``image-text-to-text``.

Two graphs. ``vision_embeddings``: ``pixel_values`` (images, channels, height, width) → ``image_features``
(one row per image placeholder token, every image's rows in order): the vision tower's selected
layer, the class token dropped where the model's strategy says so, the projector (gemma3: its own
``get_image_features``). ``model``: the decoder of :mod:`.decoder` with one more input,
``image_features``; inside the graph the token embeddings of the placeholder tokens
(``config.image_token_id``) are replaced by those rows in order, as transformers' ``masked_scatter``
does, and the language model runs on the merged embeddings. Later steps (no placeholders) pass zero
rows. So the cache, the stateful OpenVINO form and every decoder tool work on this graph as on any
other decoder's.

Two variations, recorded in ``extra.image_tokens``: llava-next tiles each image by its size
(``packing: anyres``: the vision graph gives rows per tile and the newline row, and
:mod:`optibridge.image_packing` packs them with transformers' own code, outside the graphs), and
gemma3's placeholders of one image attend to each other both ways (``attention: image-blocks``: the
decoder graph derives the token types from the ids and hands them to the model). Models whose images
need grids, videos or more (qwen2-vl, llava-onevision, mllama) are refused by name; anything else is
held to PyTorch by the validation, images included."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
import torch

from ..errors import UnsupportedModelError
from ..image_packing import image_tiles, pack_rows, tiles_per_image
from ..image_placeholders import EXTRA_KEY, IMAGE_FEATURES, IMAGE_NEWLINE, VISION_GRAPH, ImageTokens
from .decoder import CausalLMStep, ExtraInputs, KVLayout, TracedCausalLMStep, export_decoder, kv_layout, position_ids_from_mask
from .inputs import token_batch
from .loading import SourceModel
from .plan import ExportedGraphs, SessionLoader
from .torch_to_onnx import export_module, graph_spec
from .validate import OutputCheck, ValidationReport, max_abs_diff

IMAGE_TOKENS_AXIS = "image_tokens"
IMAGES_AXIS = "num_images"
TILES_AXIS = "num_tiles"
NEEDS_MORE_THAN_PIXELS = ("image_sizes", "image_grid_thw", "pixel_attention_mask", "aspect_ratio_ids")
ANYRES_TYPES = ("llava_next",)
IMAGE_BLOCK_TYPES = ("gemma3",)
"""Each image's placeholders attend to each other both ways (token_type_ids); their own get_image_features gives the rows."""
"""Tiled by image size, packed by the model's own ``pack_image_features`` (:mod:`optibridge.image_packing`)."""


def _part(model: torch.nn.Module, name: str) -> Any:
    """``model.<name>``, or ``model.model.<name>`` (transformers moved the parts under ``.model`` in 4.52)."""
    found = getattr(model, name, None)
    return found if found is not None else getattr(getattr(model, "model", None), name, None)


class ImageFeatures(torch.nn.Module):
    """``pixel_values`` → the projected features, flattened to one row per placeholder token.

    Written out rather than calling ``get_image_features``: transformers 5 returns a per-image list
    from it, which a trace would unroll to the traced number of images."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        config = model.config
        self.vision = _part(model, "vision_tower")
        self.projector = _part(model, "multi_modal_projector")
        layer = getattr(config, "vision_feature_layer", -1)
        self.layers = [layer] if isinstance(layer, int) else list(layer)
        self.drop_class_token = getattr(config, "vision_feature_select_strategy", "default") == "default"
        self.eval()

    def projected(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(images or tiles, rows each, width)."""
        states = self.vision(pixel_values, output_hidden_states=True, return_dict=True).hidden_states
        selected = [states[i][:, 1:] if self.drop_class_token else states[i] for i in self.layers]
        features: torch.Tensor = self.projector(selected[0] if len(selected) == 1 else torch.cat(selected, dim=-1))
        return features

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        features = self.projected(pixel_values)
        return features.reshape(-1, features.shape[-1])


class OwnImageFeatures(torch.nn.Module):
    """Models whose ``get_image_features`` returns one tensor (gemma3): called as it is, rows flattened."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.eval()

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.model.get_image_features(pixel_values=pixel_values)  # type: ignore[operator]
        features: torch.Tensor = getattr(out, "pooler_output", out)
        return features.reshape(-1, features.shape[-1])


def image_features_module(model: torch.nn.Module) -> torch.nn.Module:
    return OwnImageFeatures(model) if getattr(model.config, "model_type", "") in IMAGE_BLOCK_TYPES else ImageFeatures(model)


class TileFeatures(ImageFeatures):
    """llava-next: ``pixel_values`` (tiles, C, H, W) → (tiles, rows each, width), and the learned newline row
    the packing appends (:mod:`optibridge.image_packing`, outside the graph: it depends on each image's size)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__(model)
        self.newline = _part(model, "image_newline")

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        # + a zero that depends on the input's (dynamic) tile count: TorchScript's constant folding would
        # otherwise turn the output into an initializer and drop its name
        return self.projected(pixel_values), self.newline + torch.zeros_like(pixel_values[:, 0, 0, 0]).sum()


def merge_image_features(embeds: torch.Tensor, input_ids: torch.Tensor, features: torch.Tensor, token_id: int) -> torch.Tensor:
    """``embeds`` with the k-th placeholder position's row replaced by ``features[k]`` (row-major over
    the batch, as ``masked_scatter``), for as many placeholders as there are rows: a placeholder id the
    model generates later (no rows then) keeps its embedding, as in transformers. Tensor ops only, so
    that a trace keeps every count symbolic; a spare zero row keeps the lookup valid without features."""
    flat = (input_ids == token_id).reshape(-1)
    order = flat.long().cumsum(0) - 1
    available = torch.ones_like(features[:, 0], dtype=torch.long).sum()
    replaced = flat & (order < available)
    rows = torch.cat([features.to(embeds.dtype), torch.zeros_like(embeds[0, :1])], dim=0)
    gathered = rows.index_select(0, torch.where(replaced, order, torch.zeros_like(order))).reshape_as(embeds)
    return torch.where(replaced.reshape(input_ids.shape).unsqueeze(-1), gathered, embeds)


class _MergesImages:
    """The decoder step taking ``image_features`` after ``position_ids``; mixed into either step class."""

    token_id: int
    image_blocks: bool = False
    """gemma3: the placeholder tokens of one image attend to each other both ways (token_type_ids 1 tell the model)."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                image_features: torch.Tensor, *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
        embeds = self.model.get_input_embeddings()(input_ids)  # type: ignore[attr-defined]
        merged = merge_image_features(embeds, input_ids, image_features, self.token_id)
        tokens = {"inputs_embeds": merged}
        if self.image_blocks:
            tokens["token_type_ids"] = (input_ids == self.token_id).long()
        outputs: tuple[torch.Tensor, ...] = self.step(tokens, input_ids, attention_mask, position_ids, past)  # type: ignore[attr-defined]
        return outputs


# The graph's inputs differ from the text step's (image_features after position_ids): so does forward's signature.
class ImageCausalLMStep(_MergesImages, CausalLMStep):  # type: ignore[misc]
    pass


class TracedImageCausalLMStep(_MergesImages, TracedCausalLMStep):  # type: ignore[misc]
    pass


def image_inputs(tokens: ImageTokens) -> Callable[[torch.nn.Module, bool, bool], ExtraInputs]:
    """:class:`ExtraInputs` for the decoder export: the merging step, one image's placeholders in the
    trace's first row (none in the second), and as many feature rows."""

    def make(model: torch.nn.Module, use_cache: bool, traced: bool) -> ExtraInputs:
        step = (TracedImageCausalLMStep if traced else ImageCausalLMStep)(model, use_cache)
        step.token_id = tokens.token_id
        step.image_blocks = tokens.attention == "image-blocks"

        def prepare(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
            features = torch.randn(tokens.per_image, tokens.width, generator=torch.Generator().manual_seed(0))
            return with_placeholders(ids, mask, tokens.token_id, [tokens.per_image, 0]), [features]

        return ExtraInputs(step, prepare, [IMAGE_FEATURES], {IMAGE_FEATURES: {0: IMAGE_TOKENS_AXIS}}, new_tokens=tokens.per_image)

    return make


def transformers_version() -> str:
    import transformers

    return str(transformers.__version__)


def image_tokens(model: torch.nn.Module) -> ImageTokens:
    """The model's placeholder facts, or an error naming why this path cannot export it."""
    config: Any = model.config
    model_type = getattr(config, "model_type", "?")
    if getattr(config, "is_encoder_decoder", False) or model_type in ("blip", "pix2struct", "vision-encoder-decoder"):
        raise UnsupportedModelError(f"{model_type} is an image captioner with an encoder and a decoder: export it with --task image-to-text")
    token_id = getattr(config, "image_token_id", None)
    if token_id is None:
        token_id = getattr(config, "image_token_index", None)
    get_features = getattr(model, "get_image_features", None)
    if token_id is None or get_features is None or _part(model, "vision_tower") is None or _part(model, "multi_modal_projector") is None:
        raise UnsupportedModelError(
            f"{model_type}: image-text-to-text exports llava-style models (a vision tower, a projector, image placeholder tokens); "
            f"this one is not. --task text-generation exports its language model alone (text inputs only)"
        )
    needs = [name for name, p in inspect.signature(get_features).parameters.items()
             if name in NEEDS_MORE_THAN_PIXELS and p.default is inspect.Parameter.empty]
    anyres = needs == ["image_sizes"] and model_type in ANYRES_TYPES and _part(model, "image_newline") is not None
    if (needs and not anyres) or model_type in ("qwen2_vl", "qwen2_5_vl", "llava_next_video", "llava_onevision", "mllama"):
        what = ", ".join(needs) or "image sizes, grids or token types"
        raise UnsupportedModelError(
            f"{model_type}: its images need {what} besides the pixels, which this export does not handle yet (llava-style models only); "
            "--task text-generation exports its language model alone (text inputs only)"
        )
    if model_type in IMAGE_BLOCK_TYPES and int(transformers_version().split(".")[0]) < 5:
        raise UnsupportedModelError(
            f"{model_type}: its image blocks (placeholders attending both ways) reach the model only at a step it sees as the "
            f"prefill, which transformers {transformers_version()} decides from the cache object, not the data: exporting it with "
            "images needs transformers >= 5; --task text-generation exports its language model alone"
        )
    vision_config = config.vision_config
    size = int(getattr(vision_config, "image_size", 224))
    channels = int(getattr(vision_config, "num_channels", 3))
    with torch.no_grad():
        features = image_features_module(model)(torch.zeros(1, channels, size, size))  # one image, or one tile of it
    return ImageTokens(int(token_id), int(features.shape[0]), int(features.shape[1]), size, channels, "anyres" if anyres else "flat",
                       "image-blocks" if model_type in IMAGE_BLOCK_TYPES else "causal")


def with_placeholders(ids: torch.Tensor, mask: torch.Tensor, token_id: int, counts: list[int]) -> torch.Tensor:
    """``ids`` with ``counts[i]`` placeholder tokens right after row i's padding (where a processor puts an
    image at the start of the prompt); the rest of the row stays text."""
    ids = ids.clone()
    ids[ids == token_id] = max(0, token_id - 1)  # no stray placeholder in the text part
    for row, count in enumerate(counts):
        start = int((mask[row] == 0).sum())
        if start + count > ids.shape[1]:
            raise ValueError(f"row {row}: {count} placeholders do not fit after {start} pads in {ids.shape[1]} tokens")
        ids[row, start:start + count] = token_id
    return ids


def sample_pixels(tokens: ImageTokens, images: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(images, tokens.channels, tokens.image_size, tokens.image_size, generator=generator)


def export_visual_lm(
    source: SourceModel, staging: Path, *, opset: int | None, external_data: bool, use_cache: bool = True, exporter: str = "dynamo"
) -> ExportedGraphs:
    """Both graphs (see the module docstring), validated together on a left-padded batch with images."""
    model = source.model
    tokens = image_tokens(model)
    exported = export_decoder(source, staging, opset=opset, external_data=external_data, use_cache=use_cache, exporter=exporter,
                              extra_inputs=image_inputs(tokens))
    tiled = tokens.packing == "anyres"
    vision = TileFeatures(model) if tiled else image_features_module(model)
    outputs, axes = ([IMAGE_FEATURES, IMAGE_NEWLINE], {IMAGE_FEATURES: {0: TILES_AXIS}}) if tiled else \
        ([IMAGE_FEATURES], {IMAGE_FEATURES: {0: IMAGE_TOKENS_AXIS}})
    path = staging / f"{VISION_GRAPH}.onnx"
    export_module(
        vision, (sample_pixels(tokens, 2, seed=0),), ["pixel_values"], outputs, {"pixel_values": {0: TILES_AXIS if tiled else IMAGES_AXIS}},
        axes, path, exporter=exporter, opset=opset, external_data=external_data, dynamic_shapes=({0: torch.export.Dim.AUTO},),
    )
    exported.graphs[VISION_GRAPH] = graph_spec(path.name, onnx.load(str(path), load_external_data=False))
    exported.extra[EXTRA_KEY] = tokens.to_extra()
    layout = kv_layout(model) if use_cache else None
    config = source.config

    def validate(load: SessionLoader, atol: float, backend: str) -> ValidationReport:
        return validate_visual_lm(model, load(VISION_GRAPH), load("model"), layout, tokens, config, atol, backend)

    exported.validate = validate
    return exported


def _two_images(model: torch.nn.Module, vision: Any, tokens: ImageTokens, config: Any) -> tuple[dict[str, torch.Tensor], np.ndarray, np.ndarray, list[int]]:
    """Two images for the validation: the PyTorch model's image inputs, the rows PyTorch's vision part gives,
    the rows the vision graph gives (packed as the model class does, for tiled models), and rows per image."""
    if tokens.packing == "flat":
        pixels = sample_pixels(tokens, 2, seed=1)
        with torch.no_grad():
            want = image_features_module(model)(pixels).numpy()
        return {"pixel_values": pixels}, want, vision.run({"pixel_values": pixels.numpy()})[IMAGE_FEATURES], [tokens.per_image] * 2
    side = tokens.image_size
    sizes = np.array([[side * 5 // 4, side * 3 // 2], [side * 2, side]])  # (height, width): two aspect ratios, two tilings
    tiles = tiles_per_image(config, sizes)
    generator = torch.Generator().manual_seed(1)
    pixels = torch.randn(2, max(tiles), tokens.channels, side, side, generator=generator)
    flat = image_tiles(pixels.numpy(), tiles)
    out = vision.run({"pixel_values": flat})
    got, lengths = pack_rows(config, out[IMAGE_FEATURES], out[IMAGE_NEWLINE], sizes, tiles)
    with torch.no_grad():
        reference, newline = TileFeatures(model)(torch.from_numpy(flat))
    want, _ = pack_rows(config, reference.numpy(), newline.numpy(), sizes, tiles)
    return {"pixel_values": pixels, "image_sizes": torch.as_tensor(sizes)}, want, got, lengths


def validate_visual_lm(model: torch.nn.Module, vision: Any, decoder: Any, layout: KVLayout | None, tokens: ImageTokens,
                       config: Any, atol: float, backend: str) -> ValidationReport:
    """Two images and one text-only row (left-padded) through both graphs against the PyTorch model
    called with ``pixel_values``; then one step with the cache and no image rows, one row's new token
    being the placeholder id (it keeps its embedding, as in transformers)."""
    from ..kv_cache import cache_name, output_cache

    image_inputs, want_features, features, lengths = _two_images(model, vision, tokens, config)
    new = max(lengths) + 6
    ids, mask = token_batch(config.get_text_config(decoder=True), 3, new, seed=1, pads=[0, 3, 2], side="left")
    ids = with_placeholders(ids, mask, tokens.token_id, [lengths[0], 0, lengths[1]])
    positions = position_ids_from_mask(mask, new)
    shapes = {name: tuple(value.shape) for name, value in image_inputs.items()}
    report = ValidationReport(atol=atol, backend=backend, input_shapes={**shapes, "input_ids": tuple(ids.shape)})
    if tokens.attention == "image-blocks":  # what its processor passes: 1 on the placeholders
        image_inputs = {**image_inputs, "token_type_ids": (ids == tokens.token_id).long()}
    with torch.no_grad():
        want = model(input_ids=ids, **image_inputs, attention_mask=mask, position_ids=positions, use_cache=bool(layout), return_dict=True)
    diff = max_abs_diff(want_features, features)
    report.outputs.append(OutputCheck(f"{IMAGE_FEATURES} (2 images)", diff, tuple(want_features.shape), tuple(features.shape), diff <= atol))
    feed = {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "position_ids": positions.numpy(), IMAGE_FEATURES: features}
    if layout:
        feed.update(zip(layout.past_names(), layout.empty(3)))
    got = decoder.run({k: v for k, v in feed.items() if k in decoder.input_names})
    real = mask.bool().numpy()
    diff = max_abs_diff(want.logits.numpy()[real], got["logits"][real])
    report.outputs.append(OutputCheck("logits (first step, images)", diff, tuple(want.logits.shape), tuple(got["logits"].shape), diff <= atol))
    if not layout:
        return report
    next_ids, _ = token_batch(config.get_text_config(decoder=True), 3, 1, seed=2)
    next_ids[0, 0] = tokens.token_id  # a placeholder id generated after the prompt keeps its embedding (no rows then)
    mask2 = torch.cat([mask, torch.ones(3, 1, dtype=torch.long)], dim=1)
    positions2 = position_ids_from_mask(mask2, 1)
    feed2 = {"input_ids": next_ids.numpy(), "attention_mask": mask2.numpy(), "position_ids": positions2.numpy(),
             IMAGE_FEATURES: np.zeros((0, tokens.width), np.float32)}
    feed2.update((name, got[present]) for name, present in zip(layout.past_names(), layout.present_names()))
    got2 = decoder.run({k: v for k, v in feed2.items() if k in decoder.input_names})
    with torch.no_grad():
        want2 = model(input_ids=next_ids, attention_mask=mask2, position_ids=positions2,
                      **{cache_name(): output_cache(want)}, use_cache=True, return_dict=True)
    diff2 = max_abs_diff(want2.logits.numpy(), got2["logits"])
    report.outputs.append(OutputCheck("logits (next step, with cache)", diff2, tuple(want2.logits.shape), tuple(got2["logits"].shape), diff2 <= atol))
    return report
