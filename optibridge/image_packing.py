"""llava-next's "anyres" images: which tiles each image has, and how the vision graph's rows per tile
become the rows its placeholder tokens take.

The tiling (``image_size_to_num_patches``) and the packing (``pack_image_features``: the tiles put
back in the image's layout, the padding cut off by the image's size, a newline row after each line)
are transformers' own functions of the model's class, called with the model's config: the same code
PyTorch runs, not a copy that could drift from it.
"""

from __future__ import annotations

import sys
from types import SimpleNamespace
from typing import Any

import numpy as np

from .errors import ArtifactError, InputError


def _model_class(config: Any) -> Any:
    """The base model class of ``config.model_type`` (LlavaNextModel), which holds ``pack_image_features``."""
    import transformers

    from .exporter.architectures import auto_mapping

    name = auto_mapping("AutoModel").get(getattr(config, "model_type", ""))
    found = getattr(transformers, name if isinstance(name, str) else (name or [""])[0], None)
    if found is None or not hasattr(found, "pack_image_features"):
        raise ArtifactError(f"{getattr(config, 'model_type', '?')}: the artifact says its images are tiled (anyres), but transformers has "
                            "no packing for this model type; re-export the model")
    return found


def tiles_per_image(config: Any, image_sizes: Any) -> list[int]:
    """How many tiles (the base image included) each image of ``image_sizes`` ((height, width) rows) has."""
    module = sys.modules[_model_class(config).__module__]
    sizes = np.asarray(image_sizes).reshape(-1, 2)
    return [int(module.image_size_to_num_patches(image_size=[int(h), int(w)], grid_pinpoints=config.image_grid_pinpoints,
                                                 patch_size=config.vision_config.image_size)) for h, w in sizes]


def image_tiles(pixel_values: np.ndarray, tiles: list[int]) -> np.ndarray:
    """The real tiles, one after the other: from (images, tiles at most, C, H, W), as processors pad them,
    or already (all tiles, C, H, W)."""
    if pixel_values.ndim == 5:
        if len(pixel_values) != len(tiles) or any(count > pixel_values.shape[1] for count in tiles):
            raise InputError(f"pixel_values hold {len(pixel_values)} image(s) of {pixel_values.shape[1]} tiles; image_sizes ask for "
                             f"{tiles}: pass both from the same processor call")
        return np.concatenate([image[:count] for image, count in zip(pixel_values, tiles)])
    if pixel_values.ndim == 4 and len(pixel_values) == sum(tiles):
        return pixel_values
    raise InputError(f"pixel_values of shape {tuple(pixel_values.shape)} do not hold the {sum(tiles)} tiles image_sizes ask for "
                     "(expected (images, tiles, channels, height, width) from the model's processor)")


def pack_rows(config: Any, features: np.ndarray, newline: np.ndarray, image_sizes: Any, tiles: list[int]) -> tuple[np.ndarray, list[int]]:
    """The placeholder rows of every image, in order, and how many each image has: ``features`` (all
    tiles, rows per tile, width) through the model class's ``pack_image_features``."""
    import torch

    per_image = torch.split(torch.from_numpy(np.ascontiguousarray(features)), tiles)
    sizes = torch.as_tensor(np.asarray(image_sizes).reshape(-1, 2))
    strategy = getattr(config, "vision_feature_select_strategy", "default")
    with torch.no_grad():
        packed, lengths = _model_class(config).pack_image_features(SimpleNamespace(config=config), list(per_image), sizes, strategy,
                                                                   image_newline=torch.from_numpy(np.asarray(newline)))
    return torch.cat(list(packed)).numpy(), [int(n) for n in lengths]
