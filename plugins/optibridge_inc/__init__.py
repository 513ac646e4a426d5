"""optibridge plugin: Intel Neural Compressor's weight-only int4 quantizers (RTN, AWQ, GPTQ) on the
PyTorch model before export; any backend with an ``int4`` mode then packs the weights."""

from .plugin import MODES

__all__ = ["MODES"]
