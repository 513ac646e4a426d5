"""Optimum-Intel-compatible names: code written for ``optimum.intel`` runs with only its import changed.

    # from optimum.intel import OVModelForSequenceClassification
    from optibridge.openvino import OVModelForSequenceClassification

    model = OVModelForSequenceClassification.from_pretrained("./my-model", export=True, device="CPU",
                                                             ov_config={"PERFORMANCE_HINT": "LATENCY"})

Its loading arguments are taken as it takes them: ``device``, ``ov_config`` (raw OpenVINO
properties, applied after optibridge's defaults: fp32 precision), ``compile=False`` (compiled on
the first call or ``compile()``), ``stateful`` (keep a decoder's KV cache inside the compiled
model), ``load_in_8bit`` (NNCF int8 weights), ``dynamic_shapes``, ``use_cache``. So are its
attributes and methods: ``model`` (the ``ov.Model``), ``request``, ``ov_config``,
``model_save_dir``, ``preprocessors``, ``compile()``, ``reshape()``, ``half()``, ``to("GPU")``.

``ov_config`` holds raw OpenVINO properties, applied after optibridge's defaults (fp32 precision).

Precision: a model loads in f32 (PyTorch parity) unless its artifact records a lower precision
(``optibridge optimize/quantize --inference-precision bf16``, or a ``tune`` that chose it), or
``inference_precision="bf16"`` / ``"f16"`` is passed (``"auto"``: OpenVINO's own default for the
device, bf16 on CPUs with AMX/AVX-512 BF16). ``model.inference_precision`` says what runs.
"""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path
from typing import Any, Mapping, TypeVar

from .artifact import Artifact, ArtifactMetadata, check_output_dir, files_to_carry, staged_directory, write_metadata
from .errors import BackendError, ConfigError
from .modeling.generation import GenerativeModel
from .modeling.peers import PeerModel, PeerNames, pipeline_alias
from .ov_tools import (
    OVConfig,
    OVDynamicQuantizationConfig,
    OVPipelineQuantizationConfig,
    OVQuantizationConfig,
    OVQuantizer,
    OVWeightQuantizationConfig,
    config_from_dict,
)

ModelT = TypeVar("ModelT", bound="OVModel")


class OVModel(PeerModel):
    """optimum-intel's ``OVModel`` surface on top of :class:`~optibridge.modeling.OBModel`."""

    default_backend = "openvino"

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls: type[ModelT], model_id: str | os.PathLike[str], *, device: str = "CPU", ov_config: dict[str, Any] | None = None,
        compile: bool = True, stateful: bool | None = None, load_in_8bit: bool = False, dynamic_shapes: bool = True,
        quantization_config: OVWeightQuantizationConfig | OVQuantizationConfig | Mapping[str, Any] | None = None, **kwargs: Any,
    ) -> ModelT:
        """``stateful=None`` keeps the artifact as it is (an IR made stateful by ``optimize --backend
        openvino`` stays so; an ONNX decoder is fed its cache); True makes a decoder stateful at load.
        ``quantization_config`` (an :class:`OVWeightQuantizationConfig` or its dict) compresses the
        weights at load, as ``load_in_8bit`` does for int8."""
        if quantization_config is not None:
            if load_in_8bit:
                raise ConfigError("pass load_in_8bit=True or quantization_config, not both")
            config = config_from_dict(quantization_config) if isinstance(quantization_config, Mapping) else quantization_config
            if not isinstance(config, OVWeightQuantizationConfig):
                raise ConfigError("int8 activations need calibration rows, which loading does not take: quantize with "
                                  "OVQuantizer(model).quantize(calibration_dataset=..., save_directory=DIR, "
                                  "ov_config=OVConfig(quantization_config=OVQuantizationConfig())), then load DIR")
            kwargs["weight_quantization"] = config.to_quantization_config()
            if isinstance(config, OVDynamicQuantizationConfig):  # the runtime hints it stands for; the caller's own win
                ov_config = {**config.runtime_hints(generative=issubclass(cls, GenerativeModel)), **(ov_config or {})}
        if ov_config:
            kwargs["ov_config"] = ov_config
        if stateful is not None:
            kwargs["stateful"] = stateful
        kwargs.update(compile=compile, load_in_8bit=load_in_8bit, dynamic_shapes=dynamic_shapes)
        return super().from_pretrained(model_id, device=device, **kwargs)

    def _each_session(self, method: str, *args: Any) -> None:
        for name, session in self.sessions.items():
            if not hasattr(session, method):
                raise BackendError(f"{method}() needs the openvino backend; graph {name!r} runs on {session.backend!r}")
            getattr(session, method)(*args)

    # -- attributes ---------------------------------------------------------------------------------
    @property
    def model(self) -> Any:
        """The ``ov.Model`` of a one-graph model."""
        if "model" not in self.sessions:  # encoder-decoders have several; Whisper's generate() reads its own .model
            return super().model  # type: ignore[misc]
        return self.session.model

    @property
    def request(self) -> Any:
        """The OpenVINO infer request; None until the model is compiled (``compile=False``)."""
        return getattr(self.session, "request", None)

    @property
    def is_dynamic(self) -> bool:
        """False once ``reshape()`` fixed every input's shape."""
        return not all(getattr(session, "static_shapes", None) for session in self.sessions.values())

    @property
    def stateful(self) -> bool:
        """Whether a decoder keeps its KV cache inside the compiled model."""
        return any(getattr(session, "stateful", False) for session in self.sessions.values())

    @property
    def ov_config(self) -> dict[str, Any]:
        """The OpenVINO properties the model is (or will be) compiled with."""
        return dict(getattr(self.session, "config", {}))

    @property
    def device(self) -> Any:
        """Where inputs and outputs live: the host (OpenVINO copies them to its device); ``_device`` is the OpenVINO device."""
        import torch

        return torch.device("cpu")

    @property
    def _device(self) -> str:
        return str(getattr(self.session, "ov_device", self.session.device)).upper()

    # -- methods ------------------------------------------------------------------------------------
    def compile(self) -> None:
        """Compile now (after ``compile=False``, ``reshape`` or ``half``); otherwise the first call does."""
        self._each_session("compile")

    def reshape(self: ModelT, batch_size: int, sequence_length: int, height: int | None = None, width: int | None = None) -> ModelT:
        """Static input shapes (-1 keeps an axis dynamic), which OpenVINO runs faster; compiled again on the next call.
        A generative model's inputs grow every step: its shapes stay dynamic, with a warning (as optimum-intel)."""
        if self.task.kind != "encoder":
            warnings.warn(f"reshape() fixes the input shapes of encoder models; a {self.task.kind} model's inputs grow every "
                          "generation step, so its shapes stay dynamic (nothing changed)", UserWarning, stacklevel=2)
            return self
        named = {"batch_size": batch_size, "sequence_length": sequence_length}
        shapes = {}
        for spec in self.artifact.metadata.inputs:
            dims = [named.get(axis, -1) if isinstance(axis, str) else axis for axis in spec.shape]
            if spec.name == "pixel_values" and len(dims) == 4:
                dims[2], dims[3] = height or dims[2], width or dims[3]
            shapes[spec.name] = tuple(dims)
        self.session.reshape(shapes)
        return self

    def half(self: ModelT) -> ModelT:
        """Weights stored as float16 (they run in the inference precision, float32 unless ov_config says otherwise)."""
        self._each_session("half")
        return self

    def save_pretrained(self, save_directory: str | os.PathLike[str], **_: Any) -> None:
        """Write the model as it runs. Unchanged, the artifact is copied as it is; changed in memory
        (``load_in_8bit``, ``half()``, ``reshape()``, ``stateful=True``), every graph is written as
        OpenVINO IR with those changes, and a ``save_pretrained`` step records them: what was run is
        what is saved, as optimum-intel saves its in-memory model."""
        edits = {name: list(getattr(session, "edits", ())) for name, session in self.sessions.items()}
        if not any(edits.values()):
            super().save_pretrained(save_directory)
            return
        metadata = write_changed_model(self.artifact, self.sessions, edits, save_directory)
        self._save_generation_config(Path(save_directory), metadata)

    def to(self: ModelT, *args: Any, **kwargs: Any) -> ModelT:
        """``to("GPU")`` / ``to("CPU")`` as optimum-intel takes them: run on that OpenVINO device from the next
        call (a device this machine lacks is an error naming the ones it has). torch dtypes/devices as OBModel."""
        import torch

        for target in (*args, *kwargs.values()):
            if isinstance(target, torch.device):
                target = target.type
            if isinstance(target, str):
                self._each_session("set_device", target)
            elif target is not None:
                super().to(target)
        return self


def write_changed_model(artifact: Artifact, sessions: dict[str, Any], edits: dict[str, list[str]],
                        save_directory: str | os.PathLike[str]) -> ArtifactMetadata:
    """``artifact`` with each graph as its session holds it in memory (``session.save_into``), staged;
    returns the metadata written."""
    from .steps.run import copy_side_files

    carry = files_to_carry(save_directory)  # a tokenizer saved there stays
    check_output_dir(save_directory, inputs=(artifact.path,), carry=carry)
    with staged_directory(Path(save_directory), carry=carry) as staging:
        copy_side_files(artifact, staging)
        metadata = copy.deepcopy(artifact.metadata)
        for session in sessions.values():
            session.save_into(staging, metadata)
        metadata.steps.append({"step": "save_pretrained", "backend": "openvino",
                               "edits": {name: changes for name, changes in edits.items() if changes}})
        write_metadata(staging, metadata)
    return metadata


_QUANTIZE = ("quantize with optibridge: `optibridge quantize MODEL_DIR OUT --backend openvino --mode int8-weights` (or int4-weights "
             "[--block-size 128 --symmetric], f16-weights, or static --calibration FILE for activations too; NNCF does the work), "
             "or optibridge.quantize(MODEL_DIR, optibridge.QuantizationConfig(mode='int4-weights'), OUT, backend='openvino'); "
             "then load OUT with its OVModelFor… class. At load: from_pretrained(..., load_in_8bit=True) (docs/optimum_migration.md)")
_INSTEAD = {
    "OVMixedQuantizationConfig": _QUANTIZE,
    "OVCalibrationDataset": "give OVQuantizer.quantize(calibration_dataset=...) a datasets.Dataset of the model's inputs "
                            "(quantizer.get_calibration_dataset(NAME, preprocess_function=...)) or a list of input dicts",
    "pipeline": "pass the model to transformers' own pipeline: transformers.pipeline(task, model=OVModelFor….from_pretrained(DIR), "
                "tokenizer=...); the OVModelFor… classes are drop-in models",
    **dict.fromkeys(("OVTrainer", "OVTrainingArguments"),
                    "use optibridge.training.OBTrainer (transformers' Trainer, plus NNCF QAT, pruning, distillation; "
                    "docs/training.md), which writes an artifact the OVModelFor… classes load"),
}
_NAMES = PeerNames("OVModel", OVModel, __name__, "optimum-intel", _INSTEAD)

def __dir__() -> list[str]:
    return sorted({*globals(), *_NAMES.names(), *_DIFFUSION_NAMES, *_AUTO_PIPELINES, *_SENTENCE_NAMES})


# optimum-intel's OVStableDiffusion* names: built on first use, because the pipelines import diffusers.
_DIFFUSION_NAMES = {
    "OVStableDiffusionPipeline": "OBStableDiffusionPipeline",
    "OVStableDiffusionImg2ImgPipeline": "OBStableDiffusionImg2ImgPipeline",
    "OVStableDiffusionInpaintPipeline": "OBStableDiffusionInpaintPipeline",
    "OVStableDiffusionXLPipeline": "OBStableDiffusionXLPipeline",
    "OVStableDiffusionXLImg2ImgPipeline": "OBStableDiffusionXLImg2ImgPipeline",
    "OVStableDiffusionXLInpaintPipeline": "OBStableDiffusionXLInpaintPipeline",
    "OVLatentConsistencyModelPipeline": "OBLatentConsistencyModelPipeline",
    "OVLatentConsistencyModelImg2ImgPipeline": "OBLatentConsistencyModelImg2ImgPipeline",
    "OVStableDiffusion3Pipeline": "OBStableDiffusion3Pipeline",
    "OVStableDiffusion3Img2ImgPipeline": "OBStableDiffusion3Img2ImgPipeline",
    "OVStableDiffusion3InpaintPipeline": "OBStableDiffusion3InpaintPipeline",
    "OVFluxPipeline": "OBFluxPipeline",
    "OVFluxImg2ImgPipeline": "OBFluxImg2ImgPipeline",
    "OVFluxInpaintPipeline": "OBFluxInpaintPipeline",
}


class _OVPipeline:
    """optimum-intel's loading arguments on a diffusion pipeline (mixed in before the optibridge pipeline class)."""

    default_backend = "openvino"

    @classmethod
    def from_pretrained(cls, model_id: str | os.PathLike[str], *, device: str = "CPU",
                        ov_config: dict[str, Any] | None = None, compile: bool = True, load_in_8bit: bool = False,
                        quantization_config: OVPipelineQuantizationConfig | OVWeightQuantizationConfig | Mapping[str, Any] | None = None,
                        **kwargs: Any) -> Any:
        """``load_in_8bit=True`` compresses every graph's weights to int8 at load; ``quantization_config``
        (an :class:`OVWeightQuantizationConfig` for every graph, or an :class:`OVPipelineQuantizationConfig`
        per graph) as optimum-intel takes it. ``compile=False`` is accepted: pipeline graphs are compiled
        on load (and again by ``reshape()``)."""
        if ov_config:
            kwargs["ov_config"] = ov_config
        if load_in_8bit and quantization_config is not None:
            raise ConfigError("pass load_in_8bit=True or quantization_config, not both")
        if load_in_8bit:
            quantization_config = OVWeightQuantizationConfig(bits=8)
        if quantization_config is not None:
            if not isinstance(quantization_config, OVPipelineQuantizationConfig):
                quantization_config = OVPipelineQuantizationConfig({}, default_config=quantization_config)
            kwargs["graph_configs"] = quantization_config
        return super().from_pretrained(model_id, device=device, **kwargs)  # type: ignore[misc]  # the pipeline class after this one has it


_SENTENCE_NAMES = ("OVSentenceTransformer",)

# optimum-intel's task-named loaders (OVPipelineForText2Image ...): the concrete OVStableDiffusion* class picked on load.
_AUTO_PIPELINES = ("OVDiffusionPipeline", "OVPipelineForText2Image", "OVPipelineForImage2Image", "OVPipelineForInpainting")


def __getattr__(name: str) -> Any:
    if name in _SENTENCE_NAMES:  # optimum-intel's name for a sentence-transformers model
        from .modeling.peers import alias
        from .modeling.sentence import OBModelForSentenceEmbedding

        made = alias(name, OVModel, OBModelForSentenceEmbedding, __name__, "optimum-intel")
        globals()[name] = made
        return made
    if name in _AUTO_PIPELINES:
        from .diffusion.auto import auto_alias

        return auto_alias(name, "OV", __name__, "optimum-intel")
    if name in _DIFFUSION_NAMES:
        return pipeline_alias(name, _OVPipeline, _DIFFUSION_NAMES[name], __name__, "optimum-intel")
    return _NAMES.get(name)


__all__ = ["OVModel", "OVWeightQuantizationConfig", "OVDynamicQuantizationConfig", "OVPipelineQuantizationConfig", "OVQuantizationConfig", "OVConfig", "OVQuantizer", *_SENTENCE_NAMES, *_NAMES.names(), *_DIFFUSION_NAMES, *_AUTO_PIPELINES]
