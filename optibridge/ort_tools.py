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

Static quantization follows Optimum's guide too::

    dataset = quantizer.get_calibration_dataset("glue", dataset_config_name="sst2", num_samples=100,
                                                dataset_split="train", preprocess_function=tokenize)
    ranges = quantizer.fit(dataset, AutoCalibrationConfig.minmax(dataset))
    quantizer.quantize(AutoQuantizationConfig.avx512_vnni(is_static=True), "out", calibration_tensors_range=ranges)

What differs: a setting left out takes optibridge's preset for that CPU class (7-bit weights on
AVX2/AVX-512 without VNNI, SmoothQuant), not Optimum's default. ``fit()`` does not compute the
activation ranges itself: it keeps the dataset's rows (the model's input columns), and ``quantize``
calibrates on them with optibridge's static step (the same as ``optibridge quantize --mode static
--calibration FOLDER``), so what ``fit`` returns is a handle for ``quantize``, not a dict of ranges.
So ``fit``'s ``operators_to_quantize`` and ``batch_size`` change nothing: which operators are
quantized is the quantization config's ``operators_to_quantize``, and calibration runs one row at
a time.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .artifact import Artifact, write_metadata
from .configs import CalibrationConfig as OBCalibrationConfig
from .configs import OptimizationConfig as OBOptimizationConfig
from .configs import QuantizationConfig as OBQuantizationConfig
from .errors import ConfigError
from .peer_tools import artifact_source, check_rows, load_calibration_dataset, save_rows

STATIC_NEEDS_FIT = ("static quantization calibrates on data: ranges = quantizer.fit(dataset, AutoCalibrationConfig.minmax(dataset)), "
                    "then quantizer.quantize(config, SAVE_DIR, calibration_tensors_range=ranges); or from text, "
                    "`optibridge quantize MODEL_DIR OUT --mode static --calibration FILE` (one sentence per line)")
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

    def to_optibridge(self, calibration: "CalibrationRanges | None" = None) -> OBQuantizationConfig:
        if self.is_static and calibration is None:
            raise ConfigError(STATIC_NEEDS_FIT)
        if calibration is not None and not self.is_static:
            raise ConfigError("calibration_tensors_range is for static quantization: build the config with is_static=True, "
                              "or leave the ranges out for dynamic quantization")
        return OBQuantizationConfig(mode="static" if self.is_static else "dynamic", preset=self.preset, per_channel=self.per_channel,
                                    reduce_range=self.reduce_range, op_types=self.operators_to_quantize,
                                    exclude_nodes=self.nodes_to_exclude, calibration=calibration.config if calibration else None)


@dataclass(frozen=True)
class CalibrationConfig:
    """Optimum's calibration config, as :class:`AutoCalibrationConfig` builds it: the rows and the method."""

    dataset: Any
    method: str = "minmax"
    percentile: float = 99.999


class AutoCalibrationConfig:
    """``AutoCalibrationConfig.minmax(dataset)``, ``.entropy(dataset)``, ``.percentiles(dataset, percentile=...)``:
    ONNX Runtime's calibration methods, as optibridge's static step runs them."""

    @staticmethod
    def minmax(dataset: Any, moving_average: bool = False, averaging_constant: float = 0.01) -> CalibrationConfig:
        if moving_average:
            raise ConfigError("minmax with moving_average is not offered: use AutoCalibrationConfig.minmax(dataset) "
                              "or .percentiles(dataset, percentile=99.999) to leave rare extremes out")
        return CalibrationConfig(dataset, "minmax")

    @staticmethod
    def entropy(dataset: Any, num_bins: int = 128, num_quantized_bins: int = 128) -> CalibrationConfig:
        if (num_bins, num_quantized_bins) != (128, 128):
            raise ConfigError("entropy calibration runs with ONNX Runtime's default bins (128 / 128): leave num_bins and "
                              "num_quantized_bins out")
        return CalibrationConfig(dataset, "entropy")

    @staticmethod
    def percentiles(dataset: Any, num_bins: int = 2048, percentile: float = 99.999) -> CalibrationConfig:
        if num_bins != 2048:
            raise ConfigError("percentile calibration runs with ONNX Runtime's default 2048 bins: leave num_bins out")
        return CalibrationConfig(dataset, "percentile", percentile)


@dataclass
class CalibrationRanges:
    """What :meth:`ORTQuantizer.fit` returns: the calibration rows it kept, written as a ``datasets`` folder,
    and the method. ``quantize(..., calibration_tensors_range=...)`` computes the ranges from them."""

    folder: Path
    config: OBCalibrationConfig
    rows: int
    _keep: Any = None  # the temporary folder, removed when this handle goes


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
        return cls(*artifact_source(model_or_path, file_name or (file_names[0] if file_names else None)))


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
    """Optimum's ``ORTQuantizer``: dynamic and static int8 through :func:`optibridge.quantize`."""

    def __init__(self, source: Path, keep_alive: Any = None) -> None:
        super().__init__(source, keep_alive)
        self._datasets: list[Any] = []
        self._calibration: CalibrationConfig | None = None

    def get_calibration_dataset(self, dataset_name: str, num_samples: int = 100, dataset_config_name: str | None = None,
                                dataset_split: str | None = None, preprocess_function: Any = None, preprocess_batch: bool = True,
                                seed: int = 2016, token: Any = None, use_auth_token: Any = None) -> Any:
        """``num_samples`` shuffled rows of a ``datasets`` dataset (a hub name or a local folder/builder), mapped
        through ``preprocess_function`` (the tokenizer or image processor call), as Optimum's helper returns them."""
        return load_calibration_dataset(dataset_name, num_samples, dataset_config_name, dataset_split, preprocess_function,
                                        preprocess_batch, seed, token if token is not None else use_auth_token)

    def fit(self, dataset: Any, calibration_config: CalibrationConfig, onnx_augmented_model_name: Any = None,
            operators_to_quantize: Any = None, batch_size: int = 1, use_external_data_format: bool = False,
            use_gpu: bool = False, force_symmetric_range: bool = False) -> CalibrationRanges:
        """Keep ``dataset``'s rows for calibration (see the module docstring); returns the handle to pass
        to ``quantize`` as ``calibration_tensors_range``."""
        self._datasets, self._calibration = [], None
        self.partial_fit(dataset, calibration_config, use_gpu=use_gpu, force_symmetric_range=force_symmetric_range)
        return self.compute_ranges()

    def partial_fit(self, dataset: Any, calibration_config: CalibrationConfig, onnx_augmented_model_name: Any = None,
                    operators_to_quantize: Any = None, batch_size: int = 1, use_external_data_format: bool = False,
                    use_gpu: bool = False, force_symmetric_range: bool = False) -> None:
        """Add ``dataset``'s rows to what :meth:`compute_ranges` calibrates on."""
        if not isinstance(calibration_config, CalibrationConfig):
            raise ConfigError(f"calibration_config must come from AutoCalibrationConfig.minmax/entropy/percentiles(dataset), "
                              f"not {type(calibration_config).__name__}")
        if use_gpu or force_symmetric_range:
            raise ConfigError("calibration runs on the CPU with ONNX Runtime's ranges as measured: drop use_gpu / force_symmetric_range")
        if self._calibration is not None and calibration_config.method != self._calibration.method:
            raise ConfigError(f"partial_fit got method {calibration_config.method!r} after {self._calibration.method!r}: use one method")
        check_rows(dataset, Artifact.load(self.source).metadata.input_names)
        self._datasets.append(dataset)
        self._calibration = calibration_config

    def compute_ranges(self) -> CalibrationRanges:
        """The rows given so far, written (the model's input columns only) for ``quantize`` to calibrate on."""
        if self._calibration is None:
            raise ConfigError("nothing to calibrate on: call partial_fit(dataset, AutoCalibrationConfig.minmax(dataset)) first")
        saved = save_rows(self._datasets, Artifact.load(self.source).metadata.input_names)
        config = OBCalibrationConfig(source=str(saved.folder), method=self._calibration.method, num_samples=saved.rows,
                                     max_length=saved.longest, percentile=self._calibration.percentile)
        return CalibrationRanges(saved.folder, config, saved.rows, saved.keep)

    def quantize(self, quantization_config: QuantizationConfig, save_dir: str | os.PathLike[str], file_suffix: str | None = "quantized",
                 calibration_tensors_range: CalibrationRanges | None = None, use_external_data_format: bool = False,
                 preprocessor: Any = None) -> Path:
        """Quantize into ``save_dir`` (a new or empty folder); returns it. Static quantization calibrates on
        the rows ``fit`` kept. The weights go beside the graph by size, whatever ``use_external_data_format``
        says (it only changes the layout)."""
        from .steps import quantize

        if calibration_tensors_range is not None and not isinstance(calibration_tensors_range, CalibrationRanges):
            raise ConfigError("calibration_tensors_range must be what this quantizer's fit() returned; optibridge computes "
                              "the ranges itself and takes no dict of ranges")
        if preprocessor is not None:
            raise ConfigError("a QuantizationPreprocessor is not applied: leave nodes in float with "
                              "AutoQuantizationConfig.<cpu>(..., nodes_to_exclude=[...]) or operators_to_quantize=[...]")
        quantize(self.source, quantization_config.to_optibridge(calibration_tensors_range), save_dir, on_step=logger.info)
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
