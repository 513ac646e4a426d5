"""optimum-intel's ``OVQuantizer`` and its configs, on optibridge's own OpenVINO steps.

Code written for ``optimum.intel`` runs with only its import changed::

    from optibridge.openvino import OVConfig, OVModelForSequenceClassification, OVQuantizationConfig, OVQuantizer

    quantizer = OVQuantizer.from_pretrained(model)          # an OVModelFor…, a PyTorch model, or a saved folder
    dataset = quantizer.get_calibration_dataset("glue", dataset_config_name="sst2", num_samples=300,
                                                dataset_split="train", preprocess_function=tokenize)
    quantizer.quantize(calibration_dataset=dataset, save_directory="int8",
                       ov_config=OVConfig(quantization_config=OVQuantizationConfig()))
    OVModelForSequenceClassification.from_pretrained("int8")

``OVQuantizationConfig`` runs optibridge's OpenVINO static plan (``optibridge quantize --backend
openvino --mode static``: NNCF, with the FFN down-projections' outlier channels in a float side path
and any projection put back in float that the calibration rows show harmful, docs/precision.md);
``OVWeightQuantizationConfig`` (or no config and no dataset, as optimum-intel) compresses the
weights only, data-free. The output is an optibridge artifact, accuracy checked against the float
model and recorded. What optibridge does differently is refused with what to use instead, never
ignored: a config field the plan does not honour, a dataset named in the config (give the rows),
and an ``nncf.Dataset`` (give a ``datasets`` dataset or a list of input dicts).
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

from .artifact import Artifact
from .configs import CalibrationConfig, QuantizationConfig
from .errors import ConfigError
from .peer_tools import SavedRows, artifact_source, check_rows, datasets_module, load_calibration_dataset, save_rows
from .staging import pid_prefix

logger = logging.getLogger(__name__)
CALIBRATE_WITH = ("give the rows: quantizer.quantize(calibration_dataset=quantizer.get_calibration_dataset(NAME, "
                  "preprocess_function=...), ...)")


def _check_known(cls: type, data: Mapping[str, Any], hint: str) -> None:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{cls.__name__} got {', '.join(unknown)}, which optibridge does not apply (it takes "
                          f"{', '.join(sorted(known))}); {hint}")


@dataclass
class OVWeightQuantizationConfig:
    """optimum-intel's weight-only quantization, as its users write it::

        OVModelForCausalLM.from_pretrained(path, quantization_config=OVWeightQuantizationConfig(bits=4, sym=True))

    It runs the same NNCF compression as ``optibridge quantize --backend openvino --mode int4-weights``
    (``int8-weights`` for ``bits=8``): data-free, every weight (embeddings and LM head in int8 under
    ``bits=4``). ``save_pretrained`` then writes the compressed IR. What needs data or a mix of
    precisions (``dataset``, ``awq``, ``scale_estimation``, ``gptq``, ``ratio`` below 1) is refused with
    what to use instead."""

    bits: int = 8
    sym: bool = False
    group_size: int | None = None
    """Weights per scale under ``bits=4`` (default 128, as optimum-intel's); ``bits=8`` is per channel."""
    ratio: float = 1.0

    def __post_init__(self) -> None:
        if self.bits not in (4, 8):
            raise ConfigError(f"OVWeightQuantizationConfig(bits={self.bits}): bits is 4 or 8")
        if self.ratio != 1.0:
            raise ConfigError(f"OVWeightQuantizationConfig(ratio={self.ratio}): a mix of int4 and int8 layers is not offered; "
                              "ratio=1.0 compresses every layer to int4 (embeddings and LM head stay int8)")
        if self.bits == 8 and self.group_size not in (None, -1):
            raise ConfigError(f"OVWeightQuantizationConfig(bits=8, group_size={self.group_size}): int8 weights are per channel; "
                              "drop group_size")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "OVWeightQuantizationConfig":
        _check_known(cls, data, "for int8 weights and activations from calibration data use OVQuantizer with "
                     "OVQuantizationConfig (or `optibridge quantize DIR OUT --backend openvino --mode static --calibration FILE`), "
                     "for data-aware int4 `--mode inc-awq` or `inc-gptq`")
        return cls(**data)

    def to_quantization_config(self) -> QuantizationConfig:
        """The optibridge config of the same compression (what ``quantize`` records)."""
        if self.bits == 8:
            return QuantizationConfig(mode="int8-weights", symmetric=self.sym)
        block = 128 if self.group_size in (None, -1) else self.group_size
        return QuantizationConfig(mode="int4-weights", symmetric=self.sym, block_size=block)


@dataclass
class OVQuantizationConfig:
    """optimum-intel's full (weights and activations) int8 quantization: optibridge's OpenVINO static plan.

    Honoured: ``num_samples`` (rows calibrated on; default all given), ``smooth_quant_alpha``
    (SmoothQuant strength; negative turns it off; default optibridge's), ``ignored_scope`` names and
    types (kept in float), ``overflow_fix="enable"`` (7-bit weights, for CPUs without VNNI).
    Refused, each with the reason: ``bits`` other than 8, ``dtype`` other than int8, ``sym=True``
    (the plan keeps NNCF's transformer scheme, asymmetric activations), another ``model_type``,
    ``fast_bias_correction=False``, ``overflow_fix="first_layer"``, regex ``patterns`` in the ignored
    scope, and a ``dataset`` named here (give the rows to ``OVQuantizer.quantize``)."""

    bits: int = 8
    sym: bool = False
    ignored_scope: Any = None
    num_samples: int | None = None
    model_type: str = "transformer"
    fast_bias_correction: bool = True
    overflow_fix: str = "disable"
    dataset: Any = None
    tokenizer: Any = None
    processor: Any = None
    smooth_quant_alpha: float | None = None
    dtype: str | None = "int8"

    def __post_init__(self) -> None:
        refused = {
            "bits": (self.bits != 8, "activations and weights are int8: bits=8"),
            "dtype": (self.dtype not in (None, "int8"), "other formats (f8e4m3, f8e5m2) are not offered: dtype='int8'"),
            "sym": (self.sym, "the plan keeps NNCF's transformer scheme (symmetric weights, asymmetric activations): drop sym"),
            "model_type": (self.model_type != "transformer", "the plan is built for transformer graphs: model_type='transformer'"),
            "fast_bias_correction": (not self.fast_bias_correction, "NNCF's fast bias correction is what runs: drop it"),
            "overflow_fix": (self.overflow_fix not in ("disable", "enable"),
                             "'enable' (7-bit weights for CPUs without VNNI) or 'disable'"),
            "dataset": (self.dataset is not None, CALIBRATE_WITH),
        }
        for name, (wrong, fix) in refused.items():
            if wrong:
                raise ConfigError(f"OVQuantizationConfig({name}={getattr(self, name)!r}) is not offered: {fix}")
        if self.num_samples is not None and (isinstance(self.num_samples, bool) or not isinstance(self.num_samples, int)
                                             or self.num_samples < 1):
            raise ConfigError(f"OVQuantizationConfig(num_samples={self.num_samples!r}): a positive number of rows")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "OVQuantizationConfig":
        _check_known(cls, data, "see docs/optimum_migration.md for what the static plan takes")
        return cls(**data)

    def ignored(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(node names, operator types) of ``ignored_scope``, an ``nncf.IgnoredScope`` or its dict."""
        scope = self.ignored_scope
        if scope is None:
            return (), ()
        def get(key: str) -> tuple[str, ...]:
            value = scope.get(key) if isinstance(scope, Mapping) else getattr(scope, key, None)
            return tuple(value or ())

        if get("patterns") or get("subgraphs"):
            raise ConfigError("ignored_scope patterns / subgraphs are not offered: list the node names (ignored_scope={'names': "
                              "[...]}), or use optibridge.QuantizationConfig(exclude_nodes=('*/output/dense/*',)) for glob patterns")
        return get("names"), get("types")

    def to_quantization_config(self, calibration: CalibrationConfig) -> QuantizationConfig:
        names, types = self.ignored()
        alpha = self.smooth_quant_alpha
        return QuantizationConfig(mode="static", calibration=calibration, exclude_nodes=names, exclude_ops=types,
                                  smooth=False if alpha is not None and alpha < 0 else None,
                                  smooth_alpha=alpha if alpha is not None and alpha > 0 else None,
                                  reduce_range=True if self.overflow_fix == "enable" else None)


QuantizationConfigs = (OVWeightQuantizationConfig, OVQuantizationConfig)
FULL_QUANTIZATION_ONLY = {"model_type", "smooth_quant_alpha", "fast_bias_correction", "overflow_fix"}


@dataclass
class OVDynamicQuantizationConfig(OVWeightQuantizationConfig):
    """optimum-intel's weights-plus-dynamic-activations config (deprecated there since OpenVINO 2024.6,
    whose CPU plugin quantizes activations of compressed MatMuls by itself): the weights are compressed
    as :class:`OVWeightQuantizationConfig` does, and loading sets the runtime hints it stood for,
    ``DYNAMIC_QUANTIZATION_GROUP_SIZE`` and, for a generative model, ``KV_CACHE_PRECISION=u8`` (an
    ``ov_config`` entry given by the caller wins). ``weights_group_size`` is optimum-intel's name for
    ``group_size``."""

    activations_group_size: int = 32
    weights_group_size: int | None = None

    def __post_init__(self) -> None:
        if self.weights_group_size is not None:
            self.group_size = self.weights_group_size
        super().__post_init__()
        if isinstance(self.activations_group_size, bool) or not isinstance(self.activations_group_size, int) \
                or self.activations_group_size < 1:
            raise ConfigError(f"OVDynamicQuantizationConfig(activations_group_size={self.activations_group_size!r}): a positive "
                              "whole number of activations per scale (32, 64, ...)")

    def runtime_hints(self, generative: bool) -> dict[str, str]:
        """The OpenVINO properties this config stands for at compile time."""
        hints = {"DYNAMIC_QUANTIZATION_GROUP_SIZE": str(self.activations_group_size)}
        if generative:
            hints["KV_CACHE_PRECISION"] = "u8"
        return hints


class OVPipelineQuantizationConfig:
    """optimum-intel's per-component config for a diffusion pipeline, as its users write it::

        OVStableDiffusionXLPipeline.from_pretrained(path, quantization_config=OVPipelineQuantizationConfig(
            quantization_configs={"unet": OVWeightQuantizationConfig(bits=8)}))

    Keys are the pipeline's graph names (``unet`` or ``transformer``, ``text_encoder``..., ``vae_decoder``);
    ``default_config`` covers the graphs not named. Each config compresses weights at load, as
    :class:`OVWeightQuantizationConfig` does for a model. What needs calibration data (``dataset``,
    ``num_samples``, an :class:`OVQuantizationConfig`) is refused with the command that does it."""

    def __init__(self, quantization_configs: Mapping[str, Any], default_config: Any = None, **kwargs: Any) -> None:
        data_driven = sorted(k for k, v in kwargs.items() if v is not None)
        if data_driven:
            raise ConfigError(f"OVPipelineQuantizationConfig got {', '.join(data_driven)}: a pipeline quantized from calibration "
                              "prompts is made with `optibridge quantize PIPELINE_ARTIFACT OUT --backend openvino --mode static`")
        self.quantization_configs = {str(k): self._weights_only(k, v) for k, v in dict(quantization_configs).items()}
        self.default_config = None if default_config is None else self._weights_only("default_config", default_config)

    @staticmethod
    def _weights_only(name: str, config: Any) -> OVWeightQuantizationConfig:
        found = config_from_dict(config) if isinstance(config, Mapping) else config
        if not isinstance(found, OVWeightQuantizationConfig):
            raise ConfigError(f"OVPipelineQuantizationConfig[{name!r}] is a {type(found).__name__}: int8 activations need calibration "
                              "prompts; use `optibridge quantize PIPELINE_ARTIFACT OUT --backend openvino --mode static`, or "
                              "OVWeightQuantizationConfig for weights only")
        return found

    def for_graphs(self, graphs: Sequence[str]) -> dict[str, QuantizationConfig]:
        """The optibridge weight compression of each graph this config covers."""
        unknown = sorted(set(self.quantization_configs) - set(graphs))
        if unknown:
            raise ConfigError(f"OVPipelineQuantizationConfig names {', '.join(unknown)}, which this pipeline does not have; "
                              f"its graphs are {', '.join(graphs)}")
        chosen = {g: self.quantization_configs.get(g, self.default_config) for g in graphs}
        return {g: config.to_quantization_config() for g, config in chosen.items() if config is not None}


def config_from_dict(data: Mapping[str, Any]) -> OVWeightQuantizationConfig | OVQuantizationConfig:
    """A config dict as optimum-intel saves it: weight-only unless it says otherwise (``weight_only``) or has
    fields only full quantization has."""
    data = dict(data)
    weight_only = data.pop("weight_only", None)
    if weight_only is False or (weight_only is None and set(data) & FULL_QUANTIZATION_ONLY):
        return OVQuantizationConfig.from_dict(data)
    if "activations_group_size" in data:
        return OVDynamicQuantizationConfig.from_dict(data)
    return OVWeightQuantizationConfig.from_dict(data)


class OVConfig:
    """optimum-intel's ``OVConfig``: the holder of a ``quantization_config`` (a config object or its dict)."""

    def __init__(self, input_info: Any = None, save_onnx_model: bool = False,
                 quantization_config: OVWeightQuantizationConfig | OVQuantizationConfig | Mapping[str, Any] | None = None,
                 dtype: str | None = None, **kwargs: Any) -> None:
        if save_onnx_model:
            raise ConfigError("save_onnx_model is not offered: the artifact keeps the ONNX graph it was quantized from "
                              "only if you keep the export folder (optibridge export DIR)")
        kwargs.pop("optimum_version", None)
        if kwargs:
            raise ConfigError(f"OVConfig got {', '.join(sorted(kwargs))}; it takes quantization_config (and input_info, dtype)")
        if isinstance(quantization_config, Mapping):
            quantization_config = config_from_dict(quantization_config)
        if quantization_config is not None and not isinstance(quantization_config, QuantizationConfigs):
            raise ConfigError(f"quantization_config must be an OVWeightQuantizationConfig, an OVQuantizationConfig or a dict, "
                              f"not {type(quantization_config).__name__}")
        if quantization_config is None and dtype not in (None, "fp32", "f32", "fp16", "f16"):
            raise ConfigError(f"OVConfig(dtype={dtype!r}) without a quantization_config: give OVWeightQuantizationConfig(bits=...) "
                              "or OVQuantizationConfig(); dtype alone selects fp16 or fp32 weights")
        self.input_info = input_info
        self.quantization_config = quantization_config
        self.dtype = dtype if quantization_config is None else "int8" if isinstance(quantization_config, OVQuantizationConfig) \
            else f"int{quantization_config.bits}"


class OVQuantizer:
    """optimum-intel's ``OVQuantizer``: int8 static and weight compression through :func:`optibridge.quantize`."""

    def __init__(self, model: Any, task: str | None = None, seed: int = 42, trust_remote_code: bool = False, **kwargs: Any) -> None:
        if trust_remote_code:
            raise ConfigError("trust_remote_code is not offered: optibridge runs no code from a model folder")
        if kwargs:
            raise ConfigError(f"OVQuantizer got {', '.join(sorted(kwargs))}; it takes model, task, seed")
        self.seed = seed
        self.source, self._keep_alive = _source(model, task)

    @classmethod
    def from_pretrained(cls, model: Any, trust_remote_code: bool = False, **kwargs: Any) -> "OVQuantizer":
        """An ``OVModelFor…`` (its artifact), a transformers ``PreTrainedModel`` (exported first, validated
        against itself), or a folder: an optibridge artifact, or one Optimum / optimum-intel wrote."""
        return cls(model, trust_remote_code=trust_remote_code, **kwargs)

    def get_calibration_dataset(self, dataset_name: str, num_samples: int | None = 100, dataset_config_name: str | None = None,
                                dataset_split: str = "train", preprocess_function: Any = None, preprocess_batch: bool = True,
                                token: Any = None, cache_dir: str | None = None, streaming: bool = False, **dataset_kwargs: Any) -> Any:
        """``num_samples`` shuffled rows (this quantizer's ``seed``) of a ``datasets`` dataset, a hub name or a
        local folder, mapped through ``preprocess_function`` (the tokenizer or processor call)."""
        if streaming:
            raise ConfigError("streaming datasets are not offered: calibration takes num_samples rows, so load them "
                              "(streaming=False)")
        if cache_dir is not None:
            dataset_kwargs["cache_dir"] = cache_dir
        return load_calibration_dataset(dataset_name, num_samples, dataset_config_name, dataset_split, preprocess_function,
                                        preprocess_batch, self.seed, token, **dataset_kwargs)

    def quantize(self, calibration_dataset: Any = None, save_directory: str | os.PathLike[str] | None = None,
                 ov_config: OVConfig | None = None, file_name: str | None = None, batch_size: int = 1,
                 data_collator: Any = None, remove_unused_columns: bool = False, immediate_save: bool = False,
                 **kwargs: Any) -> Path:
        """Quantize into ``save_directory`` (a new or empty folder) and return it; load it with its
        ``OVModelFor…`` class. Without a quantization config: int8 weights when no dataset is given, full
        int8 with one (as optimum-intel), float16 weights for ``OVConfig(dtype="fp16")``. Calibration runs
        one row at a time (``batch_size`` changes nothing)."""
        from .steps import quantize

        if kwargs:
            raise ConfigError(f"OVQuantizer.quantize got {', '.join(sorted(kwargs))}; give the config as ov_config=OVConfig("
                              "quantization_config=...)")
        if save_directory is None:
            raise ConfigError("save_directory is needed: optibridge writes the quantized model there; load it with "
                              "OVModelFor….from_pretrained(save_directory)")
        if file_name is not None:
            raise ConfigError("file_name is not offered: the artifact names its graphs in optibridge.json, and "
                              "OVModelFor….from_pretrained(save_directory) finds them")
        if data_collator is not None:
            raise ConfigError("data_collator is not applied: map the dataset through the tokenizer or processor "
                              "(get_calibration_dataset(..., preprocess_function=...)); rows are calibrated one at a time")
        if ov_config is not None and not isinstance(ov_config, OVConfig):
            raise ConfigError(f"ov_config must be an OVConfig, not {type(ov_config).__name__}")
        config = ov_config.quantization_config if ov_config is not None else None
        half = config is None and ov_config is not None and ov_config.dtype in ("fp16", "f16")
        if config is None:
            config = OVWeightQuantizationConfig(bits=8) if calibration_dataset is None else OVQuantizationConfig()
        keep = None  # the calibration rows' folder, removed when quantize returns
        if half:  # OVConfig(dtype="fp16"): float16 weights, what optimum-intel's --weight-format fp16 writes
            step = QuantizationConfig(mode="f16-weights")
        elif isinstance(config, OVWeightQuantizationConfig):
            if calibration_dataset is not None:
                logger.warning("weight-only compression is data-free here: the calibration dataset is not used")
            step = config.to_quantization_config()
        elif calibration_dataset is None:
            raise ConfigError(f"OVQuantizationConfig quantizes activations too, which needs calibration rows: {CALIBRATE_WITH}")
        else:
            saved = self._rows(calibration_dataset)
            keep = saved.keep
            step = config.to_quantization_config(CalibrationConfig(
                source=str(saved.folder), num_samples=min(config.num_samples or saved.rows, saved.rows), max_length=saved.longest))
        try:
            quantize(self.source, step, save_directory, backend="openvino", on_step=logger.info)
        finally:
            if keep is not None:
                keep.cleanup()
        return Path(save_directory)

    def _rows(self, rows: Any) -> SavedRows:
        datasets = datasets_module()
        if isinstance(rows, list):  # optimum-intel's older form: a list of input dicts
            rows = datasets.Dataset.from_list([dict(row) for row in rows]) if rows else None
        elif not isinstance(rows, datasets.Dataset):
            raise ConfigError(f"calibration_dataset must be a datasets.Dataset (or a list of input dicts), not {type(rows).__name__}; "
                              "an nncf.Dataset is not read")
        inputs = Artifact.load(self.source).metadata.input_names
        check_rows(rows, inputs)
        return save_rows([rows], inputs)


def _source(model: Any, task: str | None) -> tuple[Path, Any]:
    """The artifact to quantize: an OV/ORT model's, a folder's, or a PyTorch model exported into a temporary folder."""
    if hasattr(model, "save_pretrained") and hasattr(model, "config") and not hasattr(model, "artifact"):
        from .exporter import export

        keep = tempfile.TemporaryDirectory(prefix=pid_prefix("optibridge-"))
        model.save_pretrained(Path(keep.name) / "source")
        export(Path(keep.name) / "source", Path(keep.name) / "artifact", task=task, on_step=logger.info)
        return Path(keep.name) / "artifact", keep
    return artifact_source(model)
