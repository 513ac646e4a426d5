"""FP8 on Gaudi with Intel Neural Compressor's PyTorch API: measure, then quantize.

``quantize --mode fp8 --backend hpu`` runs the calibration samples through the model prepared in
MEASURE mode and writes the per-layer maxima into the artifact (``fp8/measure*``); loading that
artifact on the hpu backend converts the model to FP8 (QUANTIZE mode, ``maxabs_hw`` scales) with
those statistics. The ONNX graphs are copied unchanged: FP8 exists only on Gaudi.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from optibridge.artifact import Artifact
from optibridge.errors import BackendError

STATS_DIR = "fp8"
STATS_PREFIX = "measure"
FP8_FORMAT = "E4M3"
SCALE_METHOD = "maxabs_hw"


def inc_quantization() -> Any:
    level = os.environ.get("LOGLEVEL")
    os.environ["LOGLEVEL"] = "ERROR"  # INC reads its log level once, at import
    try:
        import neural_compressor.torch.quantization as quantization
    except ImportError:
        raise BackendError("fp8 needs Intel Neural Compressor's PyTorch API: pip install 'optibridge[inc]'") from None
    finally:
        if level is None:
            os.environ.pop("LOGLEVEL", None)
        else:
            os.environ["LOGLEVEL"] = level
    return quantization


def stats_prefix(folder: Path) -> str:
    return str(folder / STATS_DIR / STATS_PREFIX)


def fp8_step(artifact: Artifact) -> dict[str, Any] | None:
    """The artifact's fp8 quantize step, if it has one."""
    return next((s for s in artifact.metadata.steps if s.get("step") == "quantize" and s.get("config", {}).get("mode") == "fp8"), None)


def prepare_measure(model: Any, output_dir: Path) -> Any:
    q = inc_quantization()
    (output_dir / STATS_DIR).mkdir(parents=True, exist_ok=True)
    config = q.FP8Config(mode="MEASURE", observer="maxabs", fp8_config=FP8_FORMAT, dump_stats_path=stats_prefix(output_dir))
    return q.prepare(model, config)


def finish_measure(model: Any) -> None:
    inc_quantization().finalize_calibration(model)


def convert(model: Any, artifact_dir: Path) -> Any:
    """The model in FP8, with the scales measured into ``artifact_dir``."""
    if not (artifact_dir / STATS_DIR).is_dir():
        raise BackendError(f"{artifact_dir} records an fp8 step but has no {STATS_DIR}/ statistics; quantize it again")
    q = inc_quantization()
    config = q.FP8Config(mode="QUANTIZE", scale_method=SCALE_METHOD, fp8_config=FP8_FORMAT, dump_stats_path=stats_prefix(artifact_dir))
    return q.convert(model, config)
