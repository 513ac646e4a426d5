"""Vision graphs take any image size where the model allows it, validated at a size other than the
traced one; where it does not, the size stays fixed, the artifact says why, and a wrong size is a clear error."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

from optibridge import OBModelForImageClassification
from optibridge.errors import InputError
from optibridge.exporter.image_sizes import ImageSizePlan, confirm_traceable, plan_image_sizes


@pytest.mark.parametrize("model_type", ["vit", "convnext"])
def test_image_classifiers_take_other_sizes_on_both_backends(model_type, exported, tiny_model):
    artifact = exported(model_type, "image-classification")
    record = artifact.metadata.extra["image_size"]
    assert record["dynamic"] and record["traced"] != record["validated"]  # validated at a size other than the traced one
    assert record["interpolate_pos_encoding"] is (model_type == "vit")  # ViT's position table is resized; ConvNeXt needs nothing
    assert artifact.metadata.inputs[0].shape == ("batch_size", 3, "height", "width")
    reference = transformers.AutoModelForImageClassification.from_pretrained(tiny_model(model_type, "image-classification")).eval()
    pixels = torch.randn(2, 3, 64, 40, generator=torch.Generator().manual_seed(5))  # neither traced nor validated
    extra = {"interpolate_pos_encoding": True} if record["interpolate_pos_encoding"] else {}
    with torch.no_grad():
        want = reference(pixel_values=pixels, **extra).logits.numpy()
    for backend in ("ort", "openvino"):
        got = OBModelForImageClassification.from_pretrained(artifact.path, backend=backend)(pixel_values=pixels).logits.numpy()
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_interpolate_pos_encoding_is_accepted_where_the_graph_does_it(exported):
    vit = OBModelForImageClassification.from_pretrained(exported("vit", "image-classification").path)
    assert vit(pixel_values=torch.zeros(1, 3, 40, 40), interpolate_pos_encoding=True).logits.shape == (1, 3)


class _SizeChecked(torch.nn.Module):
    """Like a model with a fixed position table: refuses any size but its own."""

    def forward(self, pixel_values: torch.Tensor, **_: object) -> torch.Tensor:
        if pixel_values.shape[-2:] != (32, 32):
            raise ValueError(f"Input image size ({pixel_values.shape[-2]}*{pixel_values.shape[-1]}) doesn't match model (32*32).")
        return pixel_values.mean((2, 3))


class _PythonSizes(torch.nn.Module):
    """Runs at any size in PyTorch, but turns the size into Python numbers that a trace freezes (as MobileViT does)."""

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor]:
        height, width = (int(d) for d in pixel_values.shape[-2:])
        return (pixel_values.reshape(pixel_values.shape[0], 3, height * width).mean(-1) * (height // 8),)


def test_a_model_that_refuses_other_sizes_keeps_its_own_and_says_why():
    config = transformers.ViTConfig(image_size=32, patch_size=8)
    plan = plan_image_sizes(lambda pixels, kwargs: _SizeChecked()(pixels, **kwargs), config, set(), 3)
    assert not plan.dynamic and plan.traced == plan.validated == (32, 32)
    assert "does not run at 48x40" in plan.reason and "doesn't match model" in plan.reason


def test_a_size_the_trace_freezes_is_caught_before_export():
    module = _PythonSizes()
    plan = ImageSizePlan((48, 40), (32, 32), True)
    args = lambda size, traced: (torch.randn(2 if traced else 3, 3, *size),)  # noqa: E731
    fixed = confirm_traceable(plan, module, args, "torchscript")
    assert not fixed.dynamic and fixed.traced == (32, 32) and "torchscript exporter's trace fixes" in fixed.reason
    assert confirm_traceable(plan, torch.nn.AvgPool2d(8), args, "torchscript").dynamic  # a size-agnostic module stays dynamic


class _PythonBatch(torch.nn.Module):
    """Any image size, but the batch size becomes a Python number that a trace freezes."""

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor]:
        return (pixel_values.mean((-2, -1)).reshape(int(pixel_values.shape[0]), -1).sum(0),)


class _MultiheadPool(torch.nn.Module):
    """Attention pooling through torch.nn.MultiheadAttention (SigLIP's head)."""

    def __init__(self) -> None:
        super().__init__()
        self.attention = torch.nn.MultiheadAttention(3, 1, batch_first=True)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor]:
        tokens = pixel_values.flatten(2).transpose(1, 2)
        return (self.attention(tokens[:, :1], tokens, tokens)[0],)


def test_the_check_runs_at_other_batch_sizes_and_knows_torchscripts_multihead_attention():
    from optibridge.exporter.traceable import traceable_attention_modules

    plan = ImageSizePlan((48, 40), (32, 32), True)
    args = lambda size, traced: (torch.randn(2 if traced else 3, 3, *size),)  # noqa: E731
    assert not confirm_traceable(plan, _PythonBatch(), args, "torchscript").dynamic  # traced batch 2, checked at 3
    pool = _MultiheadPool()
    fixed = confirm_traceable(plan, pool, args, "torchscript")
    assert not fixed.dynamic and "MultiheadAttention" in fixed.reason
    with traceable_attention_modules(pool):  # what export_encoder traces with TorchScript
        assert confirm_traceable(plan, pool, args, "torchscript").dynamic


class _PyramidPool(torch.nn.Module):
    def __init__(self, grid: int) -> None:
        super().__init__()
        self.pool = torch.nn.AdaptiveAvgPool2d(grid)

    def forward(self, pixels):
        return self.pool(pixels).flatten(1)


def test_pooling_to_a_grid_keeps_the_models_size_and_global_pooling_does_not():
    """Adaptive pooling to 2x2 (UperNet's pyramid) gets windows sized for the traced input in either exporter's
    graph: the image size stays the model's own. Pooling to 1x1 (every classifier's head) takes any size."""
    plan = ImageSizePlan((48, 40), (32, 32), True)
    args = lambda size, traced: (torch.randn(2 if traced else 3, 3, *size),)  # noqa: E731
    auto = torch.export.Dim.AUTO
    for exporter in ("torchscript", "dynamo"):
        shapes = ({0: auto, 2: auto, 3: auto},) if exporter == "dynamo" else None
        fixed = confirm_traceable(plan, _PyramidPool(2), args, exporter, shapes)
        assert not fixed.dynamic and fixed.traced == (32, 32) and "adaptive pooling" in fixed.reason
        assert confirm_traceable(plan, _PyramidPool(1), args, exporter, shapes).dynamic


def test_wrong_size_on_a_fixed_graph_names_the_size_and_the_reason(exported_mobilevit):
    meta = exported_mobilevit.metadata
    assert meta.extra["image_size"]["dynamic"] is False and meta.extra["image_size"]["reason"]
    assert meta.inputs[0].shape == ("batch_size", 3, 32, 32)
    model = OBModelForImageClassification.from_pretrained(exported_mobilevit.path)
    assert model(pixel_values=torch.zeros(2, 3, 32, 32)).logits.shape == (2, 3)
    with pytest.raises(InputError, match=r"dimension 2 must be 32 .*takes 32x32 images only .*extra.image_size says why"):
        model(pixel_values=torch.zeros(1, 3, 48, 32))


@pytest.fixture(scope="module")
def exported_mobilevit(tmp_path_factory):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "coverage"))
    from tiny_configs import build_tiny

    from optibridge import export

    root = tmp_path_factory.mktemp("mobilevit")
    return export(build_tiny("mobilevit", "image-classification", root / "src"), root / "onnx").artifact


def test_a_classifier_whose_sizes_live_in_its_vision_config_exports_at_that_size(tmp_path):
    """SigLIP's classifier has no top-level image_size: the sample images once came at the 224-pixel default
    and the model (a 32-pixel position table here) refused them."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "coverage"))
    from tiny_configs import build_tiny

    from optibridge import export

    source = build_tiny("siglip", "image-classification", tmp_path / "siglip")
    config = transformers.AutoConfig.from_pretrained(source)
    assert not hasattr(config, "image_size") and config.vision_config.image_size == 32
    result = export(source, tmp_path / "onnx")
    assert result.validation.passed and result.validation.max_abs_diff <= 1e-4
    assert result.artifact.metadata.extra["image_size"]["validated"] == [32, 32]
    model = OBModelForImageClassification.from_pretrained(result.artifact.path)
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = transformers.AutoModelForImageClassification.from_pretrained(source)(pixel_values=pixels).logits
    assert np.abs(model(pixel_values=pixels).logits.numpy() - want.numpy()).max() <= 1e-4
