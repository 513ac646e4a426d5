"""Whether an image graph takes any height/width, decided by asking the PyTorch model.

Convolutional and windowed models (ResNet, ConvNeXt, Swin, SegFormer) run at any size; ViT-family
models do when called with ``interpolate_pos_encoding=True`` (their position table is resized to
the patch grid). A model that runs at a second size keeps dynamic ``height``/``width`` axes, and
the export is validated at that second size; one that does not keeps the size it was traced at,
and the artifact records why (``extra["image_size"]``), so a wrong-sized input is a clear error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..errors import first_line
from .inputs import image_size

HEIGHT_AXIS = "height"
WIDTH_AXIS = "width"
INTERPOLATE = "interpolate_pos_encoding"


@dataclass(frozen=True)
class ImageSizePlan:
    traced: tuple[int, int]
    validated: tuple[int, int]
    """The size validation runs at: another one when ``dynamic`` (the model's own size; the trace
    then ran at a larger, non-square one), else the traced one."""
    dynamic: bool
    call_kwargs: dict[str, Any] = field(default_factory=dict)
    """Fixed keyword arguments of every call (``interpolate_pos_encoding=True`` for ViT-style models)."""
    reason: str = ""
    multiple_of: int = 1
    """Dynamic sizes the model runs at are multiples of this (its window of patches), others fail in PyTorch too."""

    def axes(self, batch_axis: str) -> dict[int, str]:
        """Dynamic axes of a ``pixel_values`` input (batch, channels, height, width)."""
        return {0: batch_axis, 2: HEIGHT_AXIS, 3: WIDTH_AXIS} if self.dynamic else {0: batch_axis}

    def record(self) -> dict[str, Any]:
        """What ``optibridge.json`` says about the image size (``extra["image_size"]``)."""
        record = {"dynamic": self.dynamic, "traced": list(self.traced), "validated": list(self.validated),
                  "interpolate_pos_encoding": bool(self.call_kwargs.get(INTERPOLATE)), "reason": self.reason}
        return {**record, "multiple_of": self.multiple_of} if self.multiple_of > 1 else record


def patch_step(config: Any) -> int:
    """A size step the model's patch grid divides evenly (8 when the config names no patch size)."""
    patch = getattr(config, "patch_size", None)
    if isinstance(patch, (list, tuple)) and patch:
        patch = patch[0]
    return int(patch) if isinstance(patch, int) and patch > 0 else 8


def other_sizes(config: Any) -> list[tuple[tuple[int, int], int]]:
    """Second, non-square sizes to try, in order, each with the step it stands for: two and one patch
    steps larger than the model's own; then, for windowed models, two and one whole windows of patches
    larger (Swin2SR runs only at multiples of its window, the size its image processor pads to)."""
    height, width = image_size(config)
    step = patch_step(config)
    sizes = [((height + 2 * step, width + step), 1)]
    window = getattr(config, "window_size", None)
    if isinstance(window, int) and window > 1:
        sizes.append(((height + 2 * step * window, width + step * window), step * window))
    return sizes


def plan_image_sizes(
    run: Callable[[torch.Tensor, dict[str, Any]], Any], config: Any, takes: set[str], channels: int
) -> ImageSizePlan:
    """Try the model at a second size (``run(pixels, kwargs)`` calls it); dynamic only when that works
    and, with ``interpolate_pos_encoding``, the traced size still gives the model's default output."""
    own = image_size(config)
    kwargs = {INTERPOLATE: True} if INTERPOLATE in takes else {}
    generator = torch.Generator().manual_seed(7)
    pixels = torch.randn(1, channels, *own, generator=generator)
    refusal, runs_at = "", None
    for other, multiple in other_sizes(config):
        try:
            with torch.no_grad():
                run(torch.randn(1, channels, *other, generator=generator), kwargs)
                if kwargs and not _same(run(pixels, kwargs), run(pixels, {})):
                    return ImageSizePlan(own, own, False, {}, f"{INTERPOLATE}=True changes the output at the model's own size")
        except Exception as exc:  # the model's own refusal (a fixed position table, a size check) is the reason
            refusal = f"the PyTorch model does not run at {other[0]}x{other[1]}: {first_line(exc)}"
            continue
        runs_at = other, multiple
        break
    if runs_at is None:
        return ImageSizePlan(own, own, False, {}, refusal)
    other, multiple = runs_at
    how = f"with {INTERPOLATE}=True" if kwargs else "the model takes any size"
    if multiple > 1:
        how = f"the model takes sizes in multiples of {multiple} ({refusal})"
    # Traced at the non-square size and validated at the model's own: a square trace lets torch.export
    # assume height == width (ViT's interpolation compares them) and bake that into the graph.
    return ImageSizePlan(other, own, True, kwargs, how, multiple)


def _size_dependent_pool(output_size: Any) -> bool:
    sizes = output_size if isinstance(output_size, (tuple, list)) else (output_size,)
    return any(size not in (1, None) for size in sizes)


def _round_up(size: int, multiple: int) -> int:
    return -(-size // multiple) * multiple


def _same(a: Any, b: Any) -> bool:
    def tensors(out: Any) -> list[torch.Tensor]:
        if isinstance(out, torch.Tensor):
            return [out]
        values = out.values() if hasattr(out, "values") else out
        return [v for v in values if isinstance(v, torch.Tensor)]

    pairs = list(zip(tensors(a), tensors(b)))
    return bool(pairs) and all(x.shape == y.shape and torch.allclose(x, y, atol=1e-5, rtol=0) for x, y in pairs)



def confirm_traceable(
    plan: ImageSizePlan, module: torch.nn.Module, make_args: Callable[[tuple[int, int], bool], tuple[torch.Tensor, ...]],
    exporter: str, dynamic_shapes: Any = None,
) -> ImageSizePlan:
    """Keep a dynamic plan only if the exporter's trace at ``plan.traced`` still computes the model at
    ``plan.validated``: some models turn sizes into Python numbers (MobileViT's unfolding, Perceiver's
    position grid), which a trace freezes. Otherwise the fixed plan, saying so.

    ``make_args(size, traced)`` gives the module's arguments at an image size: with ``traced`` at the
    trace's batch sizes, else at other ones, one per batch axis the graph names (a text + image graph
    gets as many texts as images in neither), so a trace that bakes a batch size in along with the
    image size fails here, not in validation.

    TorchScript's ONNX export of ``torch.nn.MultiheadAttention`` writes the key length as a constant
    although the jit trace replayed in PyTorch recomputes it (SigLIP's pooling head passes the check
    below, then fails in ONNX Runtime at another size): the encoder exporter traces those modules as
    plain ops (:mod:`.traceable`), so one still found here is a variant that swap does not cover, and
    the model keeps its size with that exporter."""
    if not plan.dynamic:
        return plan
    import warnings

    pools = [m for m in module.modules() if isinstance(m, (torch.nn.AdaptiveAvgPool2d, torch.nn.AdaptiveMaxPool2d))]
    if any(_size_dependent_pool(m.output_size) for m in pools):
        # pooling to a grid other than 1×1 (UperNet's pyramid: 2, 3, 6) has windows that depend on the input size;
        # both exporters write them for the traced size
        own = plan.validated
        return ImageSizePlan(own, own, False, {}, "adaptive pooling to a grid larger than 1x1 is exported for one input size")
    if exporter != "dynamo" and any(isinstance(m, torch.nn.MultiheadAttention) for m in module.modules()):
        own = plan.validated
        return ImageSizePlan(own, own, False, {}, f"the {exporter} exporter writes torch.nn.MultiheadAttention's key length "
                                                  "as a constant")
    by_export = exporter == "dynamo"
    # torch.export's program keeps guards the ONNX graph has not (ViT: "patches != 16", true at the
    # traced size only when it differs from the model's own): check it at a third size
    check = plan.validated if not by_export else (_round_up(plan.validated[0] + 16, plan.multiple_of),
                                                  _round_up(plan.validated[1] + 24, plan.multiple_of))
    traced_args, other_args = make_args(plan.traced, True), make_args(check, False)
    why = "its outputs differ at another size"
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings: the comparison below is the verdict
            expected = module(*other_args)
            if by_export:
                program = torch.export.export(module, traced_args, dynamic_shapes=dynamic_shapes, strict=False)
                got = program.module()(*other_args)
            else:
                got = torch.jit.trace(module, traced_args, check_trace=False, strict=False)(*other_args)  # type: ignore[no-untyped-call]
        same = _same(got, expected)
    except Exception as exc:  # a guard or shape error of the traced graph at the other size
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        same, why = False, (lines[-1][:200] if lines else type(exc).__name__)  # TorchScript puts the cause last
    if same:
        return plan
    own = plan.validated
    return ImageSizePlan(own, own, False, {}, f"the {exporter} exporter's trace fixes this model's image size ({why})")
