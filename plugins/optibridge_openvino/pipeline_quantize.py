"""Static int8 of a diffusion pipeline's graphs with NNCF (``quantize --backend openvino --mode static``
on a pipeline artifact).

The samples are what the float pipeline feeds its text encoder(s) and UNet on the calibration prompts
(:func:`optibridge.diffusion.calibration.pipeline_calibration`, shared with the ort backend), and the
core keeps the result only when its images stay within the PSNR gate of the float pipeline's. The
VAE graphs get no samples and are written as float IR. The text encoders take the text-model path
(``quantize._static``: ``nncf.quantize`` with transformer rules, SmoothQuant, FFN down-projections in
float). For the UNet, the schemes tried on the tiny test pipelines (images vs the float pipeline,
2 prompts, 3 steps, NNCF 3.4 / OpenVINO 2026.4; docs/diffusers.md has the table):

* ``matmul`` (default): MatMuls static, convolutions float, SmoothQuant off unless asked for —
  40.3 dB on SD 1.x, 34.0 dB on SDXL (with SmoothQuant α 0.5: 40.6 and 22.4 dB);
* ``full``: the text-model path on the whole UNet, convolutions static too — 31.2 dB / 21.4 dB;
* ``hybrid``: MatMul weights only (``compress_weights``), convolutions static, the split
  optimum-intel uses for diffusion UNets — 31.7 dB on SD 1.x.

Int8 activations on the convolutions cost ~9 dB, so they stay float, as in ORT's static int8.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import numpy as np

from optibridge.errors import BackendError
from optibridge.hardware import needs_seven_bit_weights
from optibridge.steps import QuantizationConfig

UNET_GRAPH = "unet"
UNET_SCHEMES = ("matmul", "full", "hybrid")
UNET_SCHEME = "matmul"
"""The UNet's scheme (see the module docstring); the measured best on the tiny pipeline."""

StaticPath = Callable[[Any, Any, QuantizationConfig, list[Mapping[str, np.ndarray]]], tuple[Any, dict[str, Any], list[str]]]


def _hybrid(nncf: Any, model: Any, feeds: list[Mapping[str, np.ndarray]], config: QuantizationConfig) -> tuple[Any, dict[str, Any], list[str]]:
    """MatMul weights int8 (weight-only), then the rest NNCF's transformer rules quantize (the convolutions) int8 static."""
    from .quantize import _nncf_quantize

    compressed = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM,
                                       ignored_scope=nncf.IgnoredScope(types=["Convolution"], validate=False))
    inputs = {port.get_any_name() for port in model.inputs}
    dataset = nncf.Dataset([{k: v for k, v in feed.items() if k in inputs} for feed in feeds])
    seven_bit = needs_seven_bit_weights(config.preset, config.reduce_range)  # the static convolutions saturate like MatMuls
    quantized = _nncf_quantize(nncf, compressed, dataset, len(feeds), [], ["MatMul"], alpha=-1.0, seven_bit=seven_bit)  # SmoothQuant off
    settings = {"engine": "nncf.compress_weights + nncf.quantize", "matmul_weights": "int8_asym per channel",
                "static": "convolutions", "model_type": "transformer", "subset_size": len(feeds),
                "weight_bits": 7 if seven_bit else 8}
    return quantized, settings, ["hybrid: MatMul weights int8 (activations float), convolutions int8 static"]


def quantize_pipeline_graph(nncf: Any, model: Any, graph: str, config: QuantizationConfig, feeds: list[Mapping[str, np.ndarray]],
                            static: StaticPath, scheme: str | None = None) -> tuple[Any, dict[str, Any], list[str]]:
    """One calibrated graph of a pipeline; ``static`` is the text-model path (``quantize._static``)."""
    if graph != UNET_GRAPH:
        model, settings, notes = static(nncf, model, config, feeds)
        return model, {**settings, "scheme": "full"}, notes
    scheme = scheme or UNET_SCHEME
    if scheme == "hybrid":
        model, settings, notes = _hybrid(nncf, model, feeds, config)
    elif scheme == "matmul":
        # SmoothQuant off unless asked for: on the tiny SDXL UNet it took the images from 34.3 to 22.4 dB
        smooth = False if config.smooth is None else config.smooth
        narrowed = dataclasses.replace(config, exclude_ops=(*config.exclude_ops, "Convolution"), smooth=smooth)
        model, settings, notes = static(nncf, model, narrowed, feeds)
        notes = [n for n in notes if not n.startswith("operator type(s)") or config.exclude_ops]  # not the user's --exclude-ops
        notes.append("convolutions kept in float: int8 activations there cost ~9 dB of image PSNR on the test pipeline")
    elif scheme == "full":
        model, settings, notes = static(nncf, model, config, feeds)
    else:
        raise BackendError(f"unknown UNet quantization scheme {scheme!r}; one of {', '.join(UNET_SCHEMES)}")
    return model, {**settings, "scheme": scheme}, notes


def quantize_unet(model: Any, feeds: list[Mapping[str, np.ndarray]], scheme: str | None = None) -> Any:
    """A UNet ``ov.Model`` made int8 static as a pipeline's UNet is (benchmarks/sd_unet_latency.py uses it)."""
    from .quantize import _nncf, _static

    quantized, _, _ = quantize_pipeline_graph(_nncf(), model, UNET_GRAPH, QuantizationConfig(mode="static"), feeds, _static, scheme)
    return quantized
