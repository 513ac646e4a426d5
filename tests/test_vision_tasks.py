"""Semantic segmentation and object detection: image graphs, parity with PyTorch at another batch size,
and the object-detection pipeline."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
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


def test_run_writes_the_classes_of_each_label_map_as_the_segmentation_pipeline_finds_them(tmp_path):
    """`optibridge run` on a semantic-segmentation artifact: each image's classes and the fraction of its
    pixels each covers, as transformers' image-segmentation pipeline finds them on the PyTorch model."""
    from PIL import Image
    from tiny_vision import write_images

    from optibridge.batch import run_file

    source = build_tiny("segformer", "semantic-segmentation", tmp_path / "segformer", num_labels=4,
                        id2label={0: "sky", 1: "road", 2: "tree", 3: "car"}, label2id={"sky": 0, "road": 1, "tree": 2, "car": 3})
    reference = transformers.AutoModelForSemanticSegmentation.from_pretrained(source).eval()
    height, width = image_size(reference.config)
    processor_class = getattr(transformers, "SegformerImageProcessorPil", transformers.SegformerImageProcessor)
    processor = processor_class(size={"height": height, "width": width})
    processor.save_pretrained(source)
    artifact = export(source, tmp_path / "onnx").artifact
    folder = write_images(tmp_path / "photos", 3)
    rows = tmp_path / "rows.txt"
    rows.write_text("".join(f"photos/{i}.png\n" for i in range(3)))
    run_file(artifact.path, rows, tmp_path / "segments.parquet", batch_size=2)
    out = pq.read_table(tmp_path / "segments.parquet").to_pydict()
    assert out["error"] == [None] * 3
    segmenter = transformers.pipeline("image-segmentation", model=reference, image_processor=processor)
    for i, got in enumerate(out["segments"]):
        want = segmenter(Image.open(folder / f"{i}.png").convert("RGB"), subtask="semantic")
        fractions = {w["label"]: float(np.asarray(w["mask"]).astype(bool).mean()) for w in want}
        assert [g["label"] for g in got] == list(fractions) and len(fractions) >= 2  # a map of one class would test little
        # the label map is an argmax of upsampled logits: a pixel at a near-tie may flip (1e-6 logit differences)
        np.testing.assert_allclose([g["fraction"] for g in got], list(fractions.values()), atol=1e-3)
        assert abs(sum(fractions.values()) - 1.0) < 1e-6


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

    # `optibridge run` over image files: each row's objects are the pipeline's on the PyTorch model, the
    # threshold keeps only those scored at least it
    from tiny_vision import write_images

    from optibridge.batch import run_file

    folder = write_images(tmp_path / "photos", 3)
    rows = tmp_path / "rows.txt"
    rows.write_text("".join(f"photos/{i}.png\n" for i in range(3)))
    reference_pipeline = transformers.pipeline("object-detection", model=reference, image_processor=processor)
    want = [reference_pipeline(Image.open(folder / f"{i}.png").convert("RGB"), threshold=0.0) for i in range(3)]
    scores = sorted(o["score"] for objects in want for o in objects)
    # about half the objects pass; the cut lies between two scores at least 1e-3 apart, so no object sits on it
    # (an object scored exactly at the cut passed on PyTorch and, 1e-7 lower, not on the graph: a flake on AVX2)
    gaps = [i for i in range(1, len(scores)) if scores[i] - scores[i - 1] > 1e-3]
    middle = min(gaps, key=lambda i: abs(i - len(scores) // 2))
    threshold = (scores[middle - 1] + scores[middle]) / 2
    for cut in (0.0, threshold):
        run_file(artifact.path, rows, tmp_path / f"cut-{cut}.parquet", batch_size=2, threshold=cut)
        out = pq.read_table(tmp_path / f"cut-{cut}.parquet").to_pydict()
        assert out["error"] == [None] * 3
        kept = [[o for o in objects if o["score"] >= cut] for objects in want]
        assert sum(map(len, out["objects"])) == sum(map(len, kept)) > 0
        assert sum(map(len, kept)) < len(scores) if cut else sum(map(len, kept)) == len(scores)
        for got_objects, want_objects in zip(out["objects"], kept):
            assert [o["label"] for o in got_objects] == [o["label"] for o in want_objects]
            assert [o["box"] for o in got_objects] == [o["box"] for o in want_objects]
            np.testing.assert_allclose([o["score"] for o in got_objects], [o["score"] for o in want_objects], atol=1e-4)
    # one image per call and nothing above the threshold: every row still gets its (empty) list
    run_file(artifact.path, rows, tmp_path / "none.parquet", batch_size=1, threshold=1.0)
    out = pq.read_table(tmp_path / "none.parquet").to_pydict()
    assert out["objects"] == [[], [], []] and out["error"] == [None] * 3


def test_image_to_image_upscales_as_pytorch_at_any_multiple_of_its_window(tmp_path):
    """Swin2SR: the export takes any size its window divides, validated at one it was not traced at; both
    backends match PyTorch at untraced sizes and batch sizes; a size PyTorch cannot run is a clear error."""
    from optibridge import OBModelForImageToImage
    from optibridge.errors import InputError
    from optibridge.onnxruntime import ORTModelForImageToImage
    from optibridge.openvino import OVModelForImageToImage

    source = build_tiny("swin2sr", "image-to-image", tmp_path / "swin2sr", upscale=2)
    artifact = export(source, tmp_path / "onnx").artifact  # task inferred from ...ForImageSuperResolution
    meta = artifact.metadata
    assert meta.task == "image-to-image" and meta.validation["passed"]
    reference = transformers.AutoModelForImageToImage.from_pretrained(source).eval()
    window = reference.config.window_size * reference.config.patch_size
    record = meta.extra["image_size"]
    assert record["dynamic"] and record["multiple_of"] == window and record["traced"] != record["validated"]
    for batch, size in ((2, (6 * window, 3 * window)), (1, (2 * window, 9 * window))):
        pixels = torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            want = reference(pixel_values=pixels)
        assert want.reconstruction.shape == (batch, 3, 2 * size[0], 2 * size[1])
        for cls in (ORTModelForImageToImage, OVModelForImageToImage, OBModelForImageToImage):
            got = cls.from_pretrained(artifact.path)(pixel_values=pixels)
            assert type(got) is type(want)
            np.testing.assert_allclose(got.reconstruction.numpy(), want.reconstruction.numpy(), atol=1e-4, rtol=0)
    odd = torch.randn(1, 3, 2 * window + 1, 2 * window)
    with pytest.raises(RuntimeError, match="is invalid for input of size"):  # PyTorch cannot run it either
        reference(pixel_values=odd)
    with pytest.raises(InputError, match=rf"pixel_values is {2 * window + 1}x{2 * window}; this model takes heights and widths "
                                         rf"in multiples of {window}"):
        OBModelForImageToImage.from_pretrained(artifact.path)(pixel_values=odd)
