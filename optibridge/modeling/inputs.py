"""Call-time input handling: torch/numpy/lists in, checked numpy arrays out, and back again."""

from __future__ import annotations

import functools
from typing import Any, Mapping, Sequence

import numpy as np

from ..artifact import TensorSpec
from ..errors import InputError
from .guards import value_bounds

# Inputs PyTorch fills in itself when they are left out; the exported graph needs them given.
DEFAULTS = {
    "attention_mask": lambda like: np.ones_like(like, dtype=np.int64),
    "token_type_ids": lambda like: np.zeros_like(like, dtype=np.int64),
}
# Inputs a tokenizer may return that the graph legitimately does not take (e.g. deberta-v2 with
# type_vocab_size=0 or roberta-family tokenizers asked for them), dropped once
# :func:`check_dropped_token_types` has shown that PyTorch computes the same without them.
DROPPABLE = frozenset({"token_type_ids"})


def to_numpy(name: str, value: Any) -> tuple[np.ndarray, bool]:
    """The value as a numpy array, and whether it came in as a torch tensor."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency, but keep numpy-only use working
        torch = None  # type: ignore[assignment]  # the module or None, as the check below reads it
    if torch is not None and isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy(), True
    if isinstance(value, np.ndarray):
        return value, False
    try:
        return np.asarray(value), False
    except Exception as exc:
        raise InputError(f"{name}: expected a torch tensor or numpy array, got {type(value).__name__}") from exc


def _shape_text(spec: TensorSpec) -> str:
    return "(" + ", ".join(str(d) for d in spec.shape) + ")"


def cast(spec: TensorSpec, array: np.ndarray) -> np.ndarray:
    want = np.dtype(spec.dtype)
    if array.dtype == want:
        return array
    if np.issubdtype(want, np.integer) and (np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_):
        return array.astype(want)
    if np.issubdtype(want, np.floating) and np.issubdtype(array.dtype, np.floating):
        return array.astype(want)
    if _is_mask(spec.name) and np.issubdtype(want, np.integer) and np.issubdtype(array.dtype, np.floating) \
            and bool(np.isin(array, (0.0, 1.0)).all()):
        return array.astype(want)  # a 0/1 mask in floats (Pix2Struct's image processor gives one): nothing is lost
    raise InputError(
        f"{spec.name}: expected {spec.dtype} values of shape {_shape_text(spec)}, got {array.dtype}; "
        + ("token ids and masks must be integers" if np.issubdtype(want, np.integer) else "pass floating-point values")
    )


def _is_mask(name: str) -> bool:
    return name == "attention_mask" or name.endswith("_attention_mask") or name == "pixel_mask"


def prepare_inputs(specs: Sequence[TensorSpec], given: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], bool]:
    """Check ``given`` against the graph's inputs; returns the feed and whether torch tensors came in."""
    expected = {s.name for s in specs}
    unexpected = sorted(k for k, v in given.items() if k not in expected and k not in DROPPABLE and v is not None)
    if unexpected:
        raise InputError(
            f"unexpected input(s) {', '.join(unexpected)}; this model takes: "
            + ", ".join(f"{s.name} {_shape_text(s)}" for s in specs)
        )
    arrays: dict[str, np.ndarray] = {}
    saw_torch = False
    for spec in specs:
        value = given.get(spec.name)
        if value is None:
            continue
        array, is_torch = to_numpy(spec.name, value)
        saw_torch |= is_torch
        if array.ndim != len(spec.shape):
            raise InputError(
                f"{spec.name}: expected a {len(spec.shape)}-D tensor of shape {_shape_text(spec)}, got shape {tuple(array.shape)}"
            )
        for axis, (want, got) in enumerate(zip(spec.shape, array.shape)):
            if isinstance(want, int) and want > 0 and want != got:
                raise InputError(
                    f"{spec.name}: dimension {axis} must be {want} (expected shape {_shape_text(spec)}), got shape {tuple(array.shape)}"
                    + _fixed_image_hint(spec, axis)
                )
        arrays[spec.name] = cast(spec, array)
    present = [s for s in specs if s.name in arrays]
    if not present:
        raise InputError("no inputs given; this model takes: " + ", ".join(f"{s.name} {_shape_text(s)}" for s in specs))
    _check_shared_axes(present, arrays)
    reference = arrays[present[0].name]
    for spec in specs:
        if spec.name in arrays:
            continue
        if spec.name not in DEFAULTS:
            raise InputError(f"missing required input {spec.name!r} ({spec.dtype}, shape {_shape_text(spec)})")
        arrays[spec.name] = DEFAULTS[spec.name](reference)
    return {s.name: arrays[s.name] for s in specs}, saw_torch


def _fixed_image_hint(spec: TensorSpec, axis: int) -> str:
    """For an image of the wrong height/width: the graph's size is fixed, and where to read why."""
    if spec.name != "pixel_values" or len(spec.shape) != 4 or axis not in (2, 3):
        return ""
    return (f"; this model takes {spec.shape[2]}x{spec.shape[3]} images only (its image size was fixed at export, "
            "optibridge.json extra.image_size says why): resize the images to that size, as its image processor does")


def _check_shared_axes(specs: list[TensorSpec], arrays: dict[str, np.ndarray]) -> None:
    """Inputs that share a named axis (batch_size, sequence_length) must agree on its size."""
    seen: dict[str, tuple[str, int]] = {}
    for spec in specs:
        for axis, size in zip(spec.shape, arrays[spec.name].shape):
            if not isinstance(axis, str):
                continue
            if axis in seen and seen[axis][1] != size:
                other, other_size = seen[axis]
                raise InputError(
                    f"{spec.name} has {axis}={size} but {other} has {axis}={other_size}; inputs must agree on {axis}"
                )
            seen.setdefault(axis, (spec.name, size))


def _stand_in(tensor: Any) -> np.ndarray:
    """A numpy array with the tensor's shape and dtype and no data (a broadcast view of one zero),
    so :func:`prepare_inputs` can check a device tensor without copying it to the host."""
    import torch

    try:
        dtype = torch.empty((), dtype=tensor.dtype).numpy().dtype
    except TypeError:  # bfloat16 and other types numpy lacks: checked as the float they are
        dtype = np.dtype(np.float32) if tensor.dtype.is_floating_point else np.dtype(np.int64)
    return np.broadcast_to(np.zeros((), dtype), tuple(tensor.shape))


def prepare_torch_inputs(specs: Sequence[TensorSpec], given: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`prepare_inputs` for a session that takes torch tensors (see ``Session.run_torch``):
    the same checks, but torch tensors stay where they are (cast on their device when needed);
    only numpy/list values and filled-in defaults are made into tensors (on the CPU)."""
    import torch

    shadows = {k: _stand_in(v) if isinstance(v, torch.Tensor) else v for k, v in given.items()}
    checked, _ = prepare_inputs(specs, shadows)
    feed = {}
    for name, array in checked.items():
        value = given.get(name)
        if isinstance(value, torch.Tensor):
            if value.is_floating_point() and array.dtype.kind != "f" and bool(((value != 0) & (value != 1)).any()):
                raise InputError(f"{name}: a mask holds 0 and 1 only; got other values in a {value.dtype} tensor")
            feed[name] = value.to(torch.from_numpy(np.zeros((), array.dtype)).dtype)
        else:
            feed[name] = torch.from_numpy(np.ascontiguousarray(array))
    return feed


def _forward_names_token_types(config: Any) -> bool | None:
    """Whether the PyTorch class the model was saved from takes ``token_type_ids`` (None: unknown class)."""
    names = [a for a in (getattr(config, "architectures", None) or []) if isinstance(a, str)]
    return _class_takes_token_types(names[0]) if names and names[0].isidentifier() else None


@functools.lru_cache(maxsize=64)
def _class_takes_token_types(class_name: str) -> bool | None:
    """Per class, once: this runs on every call that passes token_type_ids."""
    import inspect

    import transformers

    cls = getattr(transformers, class_name, None)
    if cls is None or not callable(getattr(cls, "forward", None)):
        return None
    return "token_type_ids" in inspect.signature(cls.forward).parameters


def check_dropped_token_types(value: Any, config: Any) -> None:
    """``token_type_ids`` given to a graph that does not take them are dropped; refuse them where PyTorch
    would not compute the same without them, instead of returning a different answer.

    - ``type_vocab_size`` 0 (deberta-v3): PyTorch ignores them too.
    - ``type_vocab_size`` >= 1 (roberta has 1): the graph embeds type 0 everywhere, so all zeros are
      what PyTorch computes; any other value is not (PyTorch reads another row, or raises for roberta).
    - no type table (GPT-2, Llama, ...): harmless only if the PyTorch class does not take them at all
      (Llama); GPT-2 adds them through its token embedding, so it would differ even for zeros.
    """
    if value is None:
        return
    types = getattr(config, "type_vocab_size", None)
    if isinstance(types, int) and not isinstance(types, bool):
        if types == 0:
            return
        size = value.numel() if hasattr(value, "numel") else np.asarray(value).size
        if size == 0 or value_bounds(value) == (0, 0):  # reduced where the tensor lives, no copy to the host
            return
        raise InputError(
            f"token_type_ids hold non-zero values, but this model's graph was exported without them (it uses type 0 "
            f"everywhere; config.type_vocab_size = {types}); pass zeros or leave them out"
        )
    takes = _forward_names_token_types(config)
    if takes is False:
        return
    arch = (getattr(config, "architectures", None) or ["this model"])[0]
    reason = (f"{arch} adds them to its input embeddings in PyTorch" if takes
              else "whether PyTorch would use them cannot be told from config.architectures")
    raise InputError(
        f"token_type_ids given, but the exported graph does not take them and {reason}, so the result would "
        "differ from PyTorch's; leave them out (the output then matches PyTorch called without them)"
    )
