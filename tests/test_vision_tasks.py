"""Semantic segmentation and object detection: image graphs, parity with PyTorch at another batch size,
and the object-detection pipeline."""

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


def test_object_detection_matches_pytorch_and_its_pipeline(tmp_path):
    from PIL import Image

    from optibridge import OBModelForObjectDetection

    source = build_tiny("yolos", "object-detection", tmp_path / "yolos", num_labels=3,
                        id2label={0: "cat", 1: "dog", 2: "car"}, label2id={"cat": 0, "dog": 1, "car": 2})
    reference = transformers.AutoModelForObjectDetection.from_pretrained(source).eval()
    height, width = reference.config.image_size
    processor = transformers.YolosImageProcessorPil(size={"height": height, "width": width}, do_pad=False)
    processor.save_pretrained(source)
    artifact = export(source, tmp_path / "onnx").artifact
    assert artifact.metadata.task == "object-detection" and artifact.metadata.validation["passed"]
    model = OBModelForObjectDetection.from_pretrained(artifact.path)
    pixels = torch.randn(3, 3, height, width, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = reference(pixel_values=pixels)
    got = model(pixel_values=pixels)
    assert type(got) is type(want)
    for name in ("logits", "pred_boxes"):
        np.testing.assert_allclose(got[name].numpy(), want[name].numpy(), atol=1e-4, rtol=0)
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (48, 40, 3), dtype=np.uint8))
    run = lambda m: transformers.pipeline("object-detection", model=m, image_processor=processor)(image, threshold=0.0)  # noqa: E731
    expected, found = run(reference), run(model)
    assert len(found) == len(expected) > 0
    assert [f["label"] for f in found] == [e["label"] for e in expected]
    np.testing.assert_allclose([f["score"] for f in found], [e["score"] for e in expected], atol=1e-4)
