"""Semantic segmentation: per-pixel logits from an image graph, parity with PyTorch at another batch size."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

sys.path.insert(0, str(Path(__file__).parent / "coverage"))
from tiny_configs import build_tiny  # noqa: E402

from optibridge import export  # noqa: E402
from optibridge.exporter.inputs import image_size  # noqa: E402


@pytest.mark.parametrize("model_type", ["segformer"])  # mobilevit passes too (coverage sweep)
def test_semantic_segmentation_matches_pytorch(model_type, tmp_path):
    from optibridge import OBModelForSemanticSegmentation

    source = build_tiny(model_type, "semantic-segmentation", tmp_path / model_type)
    artifact = export(source, tmp_path / "onnx").artifact  # task inferred from ...ForSemanticSegmentation
    assert artifact.metadata.task == "semantic-segmentation" and artifact.metadata.validation["passed"]
    reference = transformers.AutoModelForSemanticSegmentation.from_pretrained(source).eval()
    height, width = image_size(reference.config)  # the traced size (224 where the config names none)
    pixels = torch.randn(3, reference.config.num_channels, height, width, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = reference(pixel_values=pixels)
    got = OBModelForSemanticSegmentation.from_pretrained(artifact.path)(pixel_values=pixels)
    assert type(got) is type(want) and got.logits.shape == want.logits.shape
    np.testing.assert_allclose(got.logits.numpy(), want.logits.numpy(), atol=1e-4, rtol=0)
