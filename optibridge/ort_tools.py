"""Optimum's ``ORTQuantizer`` / ``ORTOptimizer`` and their configs, on optibridge's own steps.

Code written for ``optimum.onnxruntime`` runs with only its import changed::

    from optibridge.onnxruntime import AutoQuantizationConfig, ORTModelForSequenceClassification, ORTQuantizer

    quantizer = ORTQuantizer.from_pretrained(model)            # an ORTModelFor… or a saved folder
    config = AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=False)
    quantizer.quantize(save_dir="out", quantization_config=config)
    ORTModelForSequenceClassification.from_pretrained("out", file_name="model_quantized.onnx")

Each call runs :func:`optibridge.quantize` / :func:`optibridge.optimize` (accuracy checked against
the float graph, recorded in the artifact). The output is an optibridge artifact whose graph file
is named as Optimum names it (``model_quantized.onnx``, ``model_optimized.onnx``).

What differs: a setting left out takes optibridge's preset for that CPU class (7-bit weights on
AVX2/AVX-512 without VNNI, SmoothQuant), not Optimum's default; static quantization takes text
samples (``optibridge quantize --mode static --calibration FILE``), so ``fit()`` with a dataset of
tensors is refused with that command.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .artifact import Artifact, is_artifact, write_metadata
from .configs import OptimizationConfig as OBOptimizationConfig
from .configs import QuantizationConfig as OBQuantizationConfig
from .errors import ArtifactError, ConfigError
from .staging import pid_prefix

STATIC_INSTEAD = ("static quantization takes text samples in optibridge: run `optibridge quantize MODEL_DIR OUT --mode static "
                  "--calibration FILE` (one sentence per line, or JSONL / a datasets folder), or optibridge.quantize(MODEL_DIR, "
                  "optibridge.QuantizationConfig(mode='static', calibration=optibridge.CalibrationConfig(source=FILE)), OUT)")
logger = logging.getLogger(__name__)
PRESETS = {"arm64": "arm64", "avx2": "avx2", "avx512": "avx512", "avx512_vnni": "avx512-vnni"}


@dataclass(frozen=True)
class QuantizationConfig:
    """Optimum's ORT quantization config, as ``AutoQuantizationConfig`` builds it. ``None`` fields take
    optibridge's preset for ``preset`` (the CPU class)."""

    is_static: bool = False
    preset: str = "auto"
    per_channel: bool | None = None
    reduce_range: bool | None = None
    operators_to_quantize: tuple[str, ...] | None = None
    nodes_to_exclude: tuple[str, ...] = ()

    def to_optibridge(self) -> OBQuantizationConfig:
        if self.is_static:
            raise ConfigError(STATIC_INSTEAD)
        return OBQuantizationConfig(mode="dynamic", preset=self.preset, per_channel=self.per_channel, reduce_range=self.reduce_range,
                                    op_types=self.operators_to_quantize, exclude_nodes=self.nodes_to_exclude)


def _preset(name: str) -> Any:
    def build(is_static: bool, per_channel: bool | None = None, reduce_range: bool | None = None,
              operators_to_quantize: list[str] | None = None, nodes_to_exclude: list[str] | None = None) -> QuantizationConfig:
        if name == "arm64" and reduce_range:
            raise ConfigError("arm64 has no 16-bit saturation to avoid: drop reduce_range")
        return QuantizationConfig(is_static, PRESETS[name], per_channel, reduce_range,
                                  tuple(operators_to_quantize) if operators_to_quantize else None, tuple(nodes_to_exclude or ()))

    build.__name__ = name
    build.__doc__ = f"int8 settings for a {PRESETS[name]} CPU (optibridge's preset where an argument is left out)."
    return staticmethod(build)


class AutoQuantizationConfig:
    """``AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=False)`` and the other CPU classes."""

    arm64 = _preset("arm64")
    avx2 = _preset("avx2")
    avx512 = _preset("avx512")
    avx512_vnni = _preset("avx512_vnni")

    @staticmethod
    def tensorrt(*_: Any, **__: Any) -> QuantizationConfig:
        raise ConfigError("TensorRT int8 is not offered by this class; quantize for the CPU, or see `optibridge backends` "
                          "for what each GPU backend runs")


@dataclass(frozen=True)
class OptimizationConfig:
    """Optimum's ORT optimization config: ``optimization_level`` (ONNX Runtime's 0/1/2/99) plus the
    flags ``AutoOptimizationConfig`` sets (``enable_gelu_approximation`` for O3, ``fp16`` for O4)."""

    optimization_level: int = 1
    optimize_for_gpu: bool = False
    fp16: bool = False
    enable_gelu_approximation: bool = False

    def to_optibridge(self) -> OBOptimizationConfig:
        if self.optimization_level not in (1, 2, 99):
            raise ConfigError(f"optimization_level={self.optimization_level}: optibridge optimizes at 1 (basic), "
                              "2 or 99 (with transformer fusions); 0 would write the graph unchanged, so load the model as it is")
        level = 4 if self.fp16 else 3 if self.enable_gelu_approximation else min(self.optimization_level, 2)
        return OBOptimizationConfig(level=level, device="gpu" if self.optimize_for_gpu or self.fp16 else "cpu")


class AutoOptimizationConfig:
    """``AutoOptimizationConfig.O2()`` and the others: O1 basic, O2 + transformer fusions, O3 + GELU
    approximation, O4 + fp16 (a GPU target)."""

    @staticmethod
    def with_optimization_level(optimization_level: str, for_gpu: bool = False) -> OptimizationConfig:
        levels = {"O1": OptimizationConfig(1, for_gpu), "O2": OptimizationConfig(2, for_gpu),
                  "O3": OptimizationConfig(2, for_gpu, enable_gelu_approximation=True),
                  "O4": OptimizationConfig(2, True, fp16=True, enable_gelu_approximation=True)}
        if optimization_level not in levels:
            raise ConfigError(f"optimization level {optimization_level!r}: choose O1, O2, O3 or O4")
        return levels[optimization_level]

    @staticmethod
    def O1(for_gpu: bool = False) -> OptimizationConfig:  # noqa: N802  (Optimum's names)
        return AutoOptimizationConfig.with_optimization_level("O1", for_gpu)

    @staticmethod
    def O2(for_gpu: bool = False) -> OptimizationConfig:  # noqa: N802
        return AutoOptimizationConfig.with_optimization_level("O2", for_gpu)

    @staticmethod
    def O3(for_gpu: bool = False) -> OptimizationConfig:  # noqa: N802
        return AutoOptimizationConfig.with_optimization_level("O3", for_gpu)

    @staticmethod
    def O4(for_gpu: bool = True) -> OptimizationConfig:  # noqa: N802
        return AutoOptimizationConfig.with_optimization_level("O4", for_gpu)


class _Tool:
    """What ORTQuantizer and ORTOptimizer share: the artifact they read, from a model or a folder."""

    def __init__(self, source: Path, keep_alive: Any = None) -> None:
        self.source = source
        self._keep_alive = keep_alive  # what keeps ``source`` on disk: the model, or a folder Optimum wrote imported as an artifact

    @classmethod
    def from_pretrained(cls, model_or_path: Any, file_name: str | None = None, file_names: list[str] | None = None) -> Any:
        """An ``ORTModelFor…`` (its artifact) or a folder: an optibridge artifact, or one Optimum wrote
        (``file_name`` / ``file_names`` pick its graph, as Optimum's take them)."""
        file_name = file_name or (file_names[0] if file_names else None)
        path = getattr(getattr(model_or_path, "artifact", None), "path", None)
        if path is not None and is_artifact(path):
            return cls(Path(path), keep_alive=model_or_path)  # after export=True its folder lives as long as the model
        folder = Path(path if path is not None else model_or_path)
        if is_artifact(folder):
            return cls(folder)
        from .optimum_folders import import_optimum_folder, is_optimum_folder

        if not is_optimum_folder(folder):
            raise ArtifactError(f"{folder} is neither an optibridge artifact nor a folder Optimum wrote; export it first "
                                f"(ORTModelFor….from_pretrained(MODEL, export=True).save_pretrained(DIR), or `optibridge export`)")
        keep_alive = tempfile.TemporaryDirectory(prefix=pid_prefix("optibridge-"))
        import_optimum_folder(folder, Path(keep_alive.name) / "artifact", file_name=file_name)
        return cls(Path(keep_alive.name) / "artifact", keep_alive)


def _name_graphs(folder: Path, suffix: str) -> None:
    """Name each ONNX graph file as Optimum does (``model.onnx`` → ``model_quantized.onnx``)."""
    artifact = Artifact.load(folder)
    metadata = artifact.metadata
    for name, spec in metadata.graphs.items():
        if spec.format != "onnx":
            continue
        renamed = f"{Path(spec.file).stem}_{suffix}.onnx"
        os.replace(folder / spec.file, folder / renamed)  # its external data keeps its own name, which the graph records
        metadata.graphs[name] = replace(spec, file=renamed)
    write_metadata(folder, metadata)


class ORTQuantizer(_Tool):
    """Optimum's ``ORTQuantizer``: dynamic int8 through :func:`optibridge.quantize`."""

    def fit(self, *_: Any, **__: Any) -> Any:
        raise ConfigError(STATIC_INSTEAD)

    def partial_fit(self, *_: Any, **__: Any) -> Any:
        raise ConfigError(STATIC_INSTEAD)

    def quantize(self, quantization_config: QuantizationConfig, save_dir: str | os.PathLike[str], file_suffix: str | None = "quantized",
                 calibration_tensors_range: Any = None, use_external_data_format: bool = False, preprocessor: Any = None) -> Path:
        """Quantize into ``save_dir`` (a new or empty folder); returns it. The weights go beside the
        graph by size, whatever ``use_external_data_format`` says (it only changes the layout)."""
        from .steps import quantize

        if calibration_tensors_range is not None:
            raise ConfigError(STATIC_INSTEAD)
        if preprocessor is not None:
            raise ConfigError("a QuantizationPreprocessor is not applied: leave nodes in float with "
                              "AutoQuantizationConfig.<cpu>(..., nodes_to_exclude=[...]) or operators_to_quantize=[...]")
        quantize(self.source, quantization_config.to_optibridge(), save_dir, on_step=logger.info)
        if file_suffix:
            _name_graphs(Path(save_dir), file_suffix)
        return Path(save_dir)


class ORTOptimizer(_Tool):
    """Optimum's ``ORTOptimizer``: graph fusions through :func:`optibridge.optimize`."""

    def optimize(self, optimization_config: OptimizationConfig, save_dir: str | os.PathLike[str], file_suffix: str | None = "optimized",
                 use_external_data_format: bool | None = None, one_external_file: bool = True) -> Path:
        """Optimize into ``save_dir`` (a new or empty folder); returns it. The weights go beside the
        graph by size (``use_external_data_format`` and ``one_external_file`` only change the layout)."""
        from .steps import optimize

        optimize(self.source, optimization_config.to_optibridge(), save_dir, on_step=logger.info)
        if file_suffix:
            _name_graphs(Path(save_dir), file_suffix)
        return Path(save_dir)
