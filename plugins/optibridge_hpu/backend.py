"""The Habana Gaudi backend: the PyTorch model through ``habana_frameworks.torch`` behind the
artifact's IO contract (Gaudi does not run ONNX).

``from_pretrained(..., backend="hpu")`` still takes an artifact (exporting one on the fly from a
model folder, on the CPU): its metadata — input/output names, KV-cache layout, output class — is
what drives the ``OBModelFor*`` classes. The .onnx files themselves are never read here.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optibridge import probing
from optibridge.artifact import Artifact
from optibridge.backend import Backend, BackendStatus
from optibridge.capabilities import ModeSpec
from optibridge.device import Device
from optibridge.errors import BackendError

from . import fp8
from .runtime import HpuRuntime
from .session import HpuSession, load_torch_model, step_module

if TYPE_CHECKING:
    from optibridge.steps import CalibrationData, QuantizationConfig

AUTOCAST = {"bf16": "bfloat16", "bfloat16": "bfloat16", "fp32": None, "float32": None}
VALID_OPTIONS = ("hpu_graphs", "autocast", "source_model")


def missing_pieces() -> list[str]:
    """What this machine lacks for Gaudi, found without importing habana_frameworks (its import patches torch)."""
    missing = []
    if not probing.module_present("habana_frameworks"):
        missing.append("habana_frameworks (Intel Gaudi software stack) not installed")
    if not probing.habana_devices():
        missing.append("no Gaudi device (/dev/accel/accel*)" + ("" if probing.hl_smi_present() else "; hl-smi not on PATH"))
    return missing


def parse_device(device: str) -> str:
    try:
        parsed = Device.parse(device)
    except BackendError:
        parsed = None
    if parsed is None or parsed.kind != "hpu":
        raise BackendError(f"backend 'hpu' runs on Gaudi: device must be 'hpu' or 'hpu:N', not {device!r}")
    return str(parsed)


class HpuBackend(Backend):
    name = "hpu"
    description = "Habana Gaudi through habana_frameworks.torch (runs the PyTorch model, not ONNX)"
    priority = 30
    modes = (ModeSpec("fp8", "Neural Compressor FP8 (E4M3) on the PyTorch model on Gaudi, scales measured on calibration data",
                      "fp8", needs_calibration=True),)
    device_syntax = "hpu or hpu:N"

    def __init__(self) -> None:
        self._models: dict[tuple[str, str, str], Any] = {}  # one torch model per artifact, shared by its graphs

    def status(self) -> BackendStatus:
        missing = missing_pieces()
        if missing:
            return BackendStatus(self.name, False, reason="; ".join(missing))
        devices = probing.habana_devices()
        return BackendStatus(self.name, True, devices=("hpu",), version=probing.distribution_version("habana-torch-plugin"),
                             features=("run", "quantize"), details={"device_files": devices})

    def load(self, artifact: Artifact, *, graph: str = "model", device: str = "hpu", **options: Any) -> HpuSession:
        """Options: ``hpu_graphs`` (default True), ``autocast`` ("bf16" default, or "fp32"),
        ``source_model`` (the transformers folder; default: the one recorded at export)."""
        unknown = sorted(set(options) - set(VALID_OPTIONS))
        if unknown:
            raise BackendError(f"unknown option(s) {', '.join(unknown)} for backend 'hpu'; valid: {', '.join(VALID_OPTIONS)}")
        autocast = str(options.get("autocast", "bf16")).lower()
        if autocast not in AUTOCAST:
            raise BackendError(f"autocast must be one of {', '.join(AUTOCAST)}, not {options['autocast']!r}")
        device = parse_device(device)
        missing = missing_pieces()
        if missing:
            raise BackendError(f"backend 'hpu' is not usable here: {'; '.join(missing)}")
        import torch

        runtime = HpuRuntime.load()
        model = self._model(artifact, device, runtime, options.get("source_model"))
        module = runtime.place(step_module(model, artifact, graph), device, bool(options.get("hpu_graphs", True)))
        dtype = getattr(torch, AUTOCAST[autocast]) if AUTOCAST[autocast] else None
        return HpuSession(module, artifact.metadata.graphs[graph], runtime, device=device, dtype=dtype)

    def _model(self, artifact: Artifact, device: str, runtime: HpuRuntime, source: str | None) -> Any:
        key = (str(artifact.path.resolve()), device, source or "")
        if key not in self._models:
            model = load_torch_model(artifact, source).eval().to(device)
            if fp8.fp8_step(artifact) is not None:
                model = fp8.convert(model, artifact.path)
            self._models = {key: model}  # keep one model: the last artifact loaded
        return self._models[key]

    def quantize(
        self, artifact: Artifact, config: "QuantizationConfig", output_dir: Path, calibration: "CalibrationData | None" = None,
    ) -> dict[str, Any]:
        """FP8 (``mode="fp8"``): measure activation ranges on the calibration samples with Neural
        Compressor and store them in the artifact; the model is converted when the artifact loads."""
        if config.mode != "fp8":
            raise BackendError(f"backend 'hpu' quantizes to fp8 only (Neural Compressor on Gaudi), not {config.mode!r}; "
                               "for int8/int4 ONNX graphs use backend='ort' or 'openvino'")
        missing = missing_pieces()
        if missing:
            raise BackendError(f"backend 'hpu' is not usable here: {'; '.join(missing)}")
        if calibration is None:  # the verb loads it (the mode declares needs_calibration); a direct call must pass it
            raise BackendError("fp8 measurement needs calibration samples: pass calibration= (quantize() loads them)")
        runtime = HpuRuntime.load()
        model = fp8.prepare_measure(load_torch_model(artifact, config.source_model).eval().to("hpu"), output_dir)
        samples = 0
        for name, spec in artifact.metadata.graphs.items():
            session = HpuSession(runtime.place(step_module(model, artifact, name), "hpu", False), spec, runtime)
            for feed in calibration.feeds(name):
                session.run(feed)
                samples += 1
        if samples == 0:
            raise BackendError("fp8 measurement got no calibration samples for this model; pass --calibration FILE")
        fp8.finish_measure(model)
        for spec in artifact.metadata.graphs.values():  # the ONNX graphs stay float: FP8 exists on Gaudi only
            for file in (spec.file, spec.file + ".data"):
                if (artifact.path / file).is_file():
                    shutil.copy2(artifact.path / file, output_dir / file)
        measured = sorted(p.name for p in (output_dir / fp8.STATS_DIR).iterdir())
        return {
            "graphs": {name: {"quantized": {}, "notes": ["FP8 applies to the PyTorch model on Gaudi at load time"]}
                       for name in artifact.metadata.graphs},
            "settings": {"format": fp8.FP8_FORMAT, "scale_method": fp8.SCALE_METHOD, "observer": "maxabs",
                         "statistics": [f"{fp8.STATS_DIR}/{n}" for n in measured], "samples": samples},
            "notes": ["ONNX graphs copied unchanged; the hpu backend converts Linear layers to FP8 when it loads this artifact"],
        }
