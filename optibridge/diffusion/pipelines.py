"""``OBStableDiffusionPipeline`` and friends: diffusers' own pipelines with the artifact's graphs behind
the component interfaces, so prompts, arguments, callbacks and any diffusers scheduler work unchanged.

    from optibridge import OBStableDiffusionPipeline      # was: from diffusers import StableDiffusionPipeline
    pipe = OBStableDiffusionPipeline.from_pretrained("sd-artifact", backend="openvino")
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    image = pipe("a cat", num_inference_steps=20, generator=torch.Generator().manual_seed(0)).images[0]
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar

from diffusers import (
    FluxImg2ImgPipeline,
    FluxInpaintPipeline,
    FluxPipeline,
    LatentConsistencyModelImg2ImgPipeline,
    LatentConsistencyModelPipeline,
    SchedulerMixin,
    StableDiffusion3Img2ImgPipeline,
    StableDiffusion3InpaintPipeline,
    StableDiffusion3Pipeline,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLInpaintPipeline,
    StableDiffusionXLPipeline,
)

from ..artifact import Artifact, ArtifactMetadata, is_artifact, staged_directory, write_metadata
from ..backends import get_registry
from ..errors import ArtifactError, BackendError, InputError, first_line
from ..saturation import warn_if_int8_may_saturate
from .components import AutoencoderKL, FluxTransformer, SD3Transformer, TextEncoder, UNet
from .families import FAMILIES, MODEL_INDEX, graphs_for, is_pipeline_folder
from .record import DiffusionRecord, diffusion_record

logger = logging.getLogger(__name__)


def _folder(record: DiffusionRecord, graph: str) -> Path:
    folder = record.config_folders.get(graph)
    if folder is None:
        raise ArtifactError(f"optibridge.json field extra.diffusion.config_folders has no {graph!r}; re-export the pipeline")
    return folder


def _read_config(folder: Path) -> Any:
    from diffusers.configuration_utils import FrozenDict

    file = folder / "config.json"
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"cannot read {file} ({exc}); re-export the pipeline") from exc
    if not isinstance(data, dict):
        raise ArtifactError(f"{file} is not a JSON object; re-export the pipeline")
    return FrozenDict(data)  # type: ignore[no-untyped-call]  # diffusers leaves its __init__ unannotated


def _load_scheduler(artifact: Artifact) -> SchedulerMixin:
    import diffusers

    index = json.loads((artifact.path / MODEL_INDEX).read_text())
    entry = index.get("scheduler")
    name = entry[1] if isinstance(entry, list) and len(entry) == 2 else None
    # The artifact is untrusted: only a scheduler class diffusers itself exports is instantiated.
    cls = getattr(diffusers, str(name), None)
    if not (isinstance(cls, type) and issubclass(cls, SchedulerMixin)):
        raise ArtifactError(f"{artifact.path / MODEL_INDEX} names scheduler {name!r}, which is not a diffusers scheduler")
    scheduler: SchedulerMixin = cls.from_pretrained(artifact.path / "scheduler")  # type: ignore[no-untyped-call]  # diffusers: unannotated
    return scheduler


class OBDiffusionPipelineMixin:
    """Loading, saving and static shapes for a diffusers pipeline whose models are artifact graphs.

    Mixed in before the diffusers pipeline class; ``task`` picks which graphs must be present.
    """

    task: ClassVar[str] = "text-to-image"
    family: ClassVar[str] = "stable-diffusion"
    default_backend: ClassVar[str] = "auto"
    artifact: Artifact
    static_shapes: dict[str, int] | None
    _ob_state: dict[str, Any]  # backend, device, load options, and the temporary export folder to keep alive

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls, model_id: str | os.PathLike[str], *, export: bool | None = None, backend: str | None = None,
        device: str = "cpu", task: str | None = None, atol: float = 1e-4, graph_configs: Any = None, **options: Any,
    ) -> Any:
        """Load a pipeline artifact (``optibridge export --model SD_FOLDER OUT``), or export a diffusers
        pipeline folder first (``export=True``, or automatically when the folder is not an artifact).

        Keyword arguments beyond these are the backend's session options (``intra_op_num_threads``,
        ``performance_hint``, ``ov_config`` ...). ``graph_configs`` (an object with ``for_graphs(names)``
        giving each graph's weight compression, e.g. optimum-intel's ``OVPipelineQuantizationConfig``)
        compresses weights at load on a backend that takes the ``weight_quantization`` load option.
        Schedulers swap as in diffusers: assign ``pipe.scheduler``.
        """
        backend_name = backend or cls.default_backend
        backend_impl = get_registry().require_available(backend_name, device)  # before any export work
        keep_alive = None
        if is_artifact(model_id) and not export:
            artifact = Artifact.load(model_id)
        elif export is False or not is_pipeline_folder(model_id):
            raise ArtifactError(
                f"{model_id} is neither an optibridge pipeline artifact nor a diffusers pipeline folder (model_index.json); "
                "export one with `optibridge export --model SD_FOLDER OUT` and load OUT"
            )
        else:
            from ..exporter import export as validated_export  # brings a validator (export_pipeline alone has none)

            keep_alive = tempfile.TemporaryDirectory(prefix="optibridge-")
            artifact = validated_export(model_id, Path(keep_alive.name) / "artifact", task=task or cls.task, atol=atol).artifact
        cls._check_artifact(artifact)
        if str(device).lower() == "cpu":
            warn_if_int8_may_saturate(artifact.metadata.steps)
        load_options = dict(options)
        per_graph = {name: {"weight_quantization": config}
                     for name, config in (graph_configs.for_graphs(list(artifact.metadata.graphs)) if graph_configs else {}).items()}
        takes = backend_impl.option_names()  # None: the backend's load checks its options itself
        if per_graph and takes is not None and "weight_quantization" not in takes:
            raise BackendError(f"backend {backend_impl.name!r} cannot compress weights at load (it takes no weight_quantization "
                               "option): load on a backend that does (`optibridge backends`), or write a compressed artifact with "
                               "`optibridge quantize ARTIFACT OUT --mode int8-weights`")
        sessions = {name: backend_impl.load(artifact, graph=name, device=device, **load_options, **per_graph.get(name, {}))
                    for name in artifact.metadata.graphs}
        pipe = cls._assemble(artifact, sessions)
        pipe._ob_state = {"backend": backend_impl, "device": device, "options": load_options, "per_graph": per_graph,
                          "keep_alive": keep_alive}
        pipe.static_shapes = None
        return pipe

    @classmethod
    def _check_artifact(cls, artifact: Artifact) -> None:
        record = diffusion_record(artifact)  # every field checked: the folder is untrusted
        if record.family.name != cls.family:
            raise ArtifactError(
                f"{artifact.path} holds a {record.family.name} pipeline; {cls.__name__} runs {cls.family} pipelines"
            )
        missing = [g for g in graphs_for(cls.task, FAMILIES[cls.family]) if g not in artifact.metadata.graphs]
        if missing:
            raise ArtifactError(
                f"{artifact.path} has no {', '.join(missing)} graph, which {cls.__name__} needs ({cls.task}); re-export "
                f"the pipeline folder with `optibridge export --task {cls.task}`"
            )

    @classmethod
    def _assemble(cls, artifact: Artifact, sessions: dict[str, Any]) -> Any:
        from transformers import AutoConfig, AutoTokenizer

        record = diffusion_record(artifact)
        family = record.family
        vae_sessions: dict[str, Any] = {g: sessions[g] for g in ("vae_decoder", "vae_encoder") if g in sessions}
        denoiser = family.denoiser
        denoiser_class = {"sd3": SD3Transformer, "flux": FluxTransformer}.get(family.transformer, UNet)
        components: dict[str, Any] = {
            "vae": AutoencoderKL(vae_sessions, _read_config(_folder(record, "vae_decoder"))),
            denoiser: denoiser_class({denoiser: sessions[denoiser]}, _read_config(_folder(record, denoiser))),
            "scheduler": _load_scheduler(artifact),
        }
        for name in family.text_encoders:  # an optional one the folder saved as null (SD3's T5) stays None, as in diffusers
            components[name] = (TextEncoder({name: sessions[name]}, AutoConfig.from_pretrained(_folder(record, name)), name)
                                if name in sessions else None)
        for name in family.tokenizers:
            present = name not in family.optional or (artifact.path / name).is_dir()
            components[name] = AutoTokenizer.from_pretrained(artifact.path / name) if present else None
        components.update(family.pipeline_kwargs)  # no safety checker; no watermark (it needs the invisible-watermark package)
        pipe = cls(**components)  # type: ignore[call-arg]
        pipe.artifact = artifact
        pipe.set_progress_bar_config(disable=True)  # type: ignore[attr-defined]  # diffusers' pipeline, mixed in after
        return pipe

    # -- saving -----------------------------------------------------------------------------------
    def save_pretrained(self, save_directory: str | os.PathLike[str], **_: Any) -> None:
        """Write the artifact to ``save_directory``, with the scheduler the pipeline has now (a swapped
        one is saved and reloaded)."""
        if self._ob_state.get("per_graph"):
            raise ArtifactError("this pipeline's weights were compressed at load (quantization_config / load_in_8bit), which "
                                "save_pretrained does not write; write a compressed pipeline artifact with `optibridge quantize "
                                f"{self.artifact.path} OUT --backend {self.backend} --mode int8-weights` (or int4-weights)")
        source = self.artifact.path
        with staged_directory(save_directory) as staging:
            for item in source.iterdir():
                if item.name == "scheduler":
                    continue
                (shutil.copytree if item.is_dir() else shutil.copy2)(item, staging / item.name)
            self.scheduler.save_pretrained(staging / "scheduler")  # type: ignore[attr-defined]
            index = json.loads((source / MODEL_INDEX).read_text())
            index["scheduler"] = ["diffusers", type(self.scheduler).__name__]  # type: ignore[attr-defined]
            (staging / MODEL_INDEX).write_text(json.dumps(index, indent=2) + "\n")
            metadata = ArtifactMetadata.from_json(self.artifact.metadata.to_json())
            write_metadata(staging, metadata)
        self.artifact = Artifact.load(save_directory)

    # -- the call ---------------------------------------------------------------------------------
    @property
    def backend(self) -> str:
        name: str = self._ob_state["backend"].name
        return name

    def _check_size(self, height: int | None, width: int | None) -> None:
        record = diffusion_record(self.artifact)
        # The exported denoiser needs latents divisible by its down-sampling (UNet), patch size (SD3) or
        # 2×2 packing (Flux); diffusers wants multiples of 8.
        multiple = record.size_multiple
        for name, value in (("height", height), ("width", width)):
            if value is not None and int(value) % multiple:
                raise InputError(
                    f"{name}={value} is not a multiple of {multiple} (the VAE scale factor {record.vae_scale_factor} × the "
                    f"{record.family.denoiser}'s latent multiple {record.latent_multiple}, and diffusers' 8); use e.g. "
                    f"{name}={int(value) // multiple * multiple or multiple}"
                )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self._check_size(kwargs.get("height"), kwargs.get("width"))
        if self.static_shapes:
            self._check_static(args[0] if args else kwargs.get("prompt"), kwargs)
        return super().__call__(*args, **kwargs)  # type: ignore[misc]

    # -- static shapes (OpenVINO) ---------------------------------------------------------------
    def reshape(self, batch_size: int, height: int, width: int, num_images_per_prompt: int = 1,
                max_sequence_length: int | None = None) -> Any:
        """Fix the graphs' shapes for one image size and batch (faster on OpenVINO, as optimum-intel's
        ``reshape``): recompiles the text encoders, the denoiser and the VAE decoder with static inputs.
        The denoiser batch is doubled for classifier-free guidance (guidance_scale > 1; not in LCM or
        Flux pipelines, which embed the guidance scale). ``max_sequence_length`` fixes the T5 prompt
        length of SD3 and Flux (None: their pipelines' default; calls must then use the same). Backends
        without static shapes raise an error naming the option."""
        self._check_size(height, width)
        record = diffusion_record(self.artifact)
        family = record.family
        if max_sequence_length is not None and not family.t5_length:
            raise InputError(f"max_sequence_length is the T5 prompt length of SD3 and Flux pipelines; a {family.name} pipeline has no "
                             "T5 encoder: leave it unset")
        t5_length = family.t5_length if max_sequence_length is None else max_sequence_length
        for name, value in (("batch_size", batch_size), ("num_images_per_prompt", num_images_per_prompt),
                            ("max_sequence_length", t5_length if family.t5_length else 1)):
            if int(value) < 1:
                raise InputError(f"{name} must be at least 1, not {value}")
        latent_h, latent_w = height // record.vae_scale_factor, width // record.vae_scale_factor
        images = batch_size * num_images_per_prompt
        batches = {name: batch_size for name in family.text_encoders if name in self.artifact.metadata.graphs}
        batches.update({family.denoiser: 2 * images if family.guidance_batch else images, "vae_decoder": images})
        # Every named (dynamic) axis of a graph's inputs gets its size for this call shape.
        common = {"latent_height": latent_h, "latent_width": latent_w, "height": height, "width": width}
        axes = {graph: {**common, "batch": batch, "sequence": self.tokenizer.model_max_length}  # type: ignore[attr-defined]
                for graph, batch in batches.items()}
        if family.transformer == "sd3":  # the T5 prompt has its own length; the transformer reads CLIP's then T5's states
            if "text_encoder_3" in axes:
                axes["text_encoder_3"]["sequence"] = t5_length
            axes["transformer"]["sequence"] += t5_length  # without T5 the pipeline pads with zeros to the same length
        elif family.transformer == "flux":  # the transformer reads T5's states and the 2×2-packed latents
            axes["text_encoder_2"]["sequence"] = axes["transformer"]["sequence"] = t5_length
            axes["transformer"]["image_sequence"] = (latent_h // 2) * (latent_w // 2)
        shapes = {
            graph: {t.name: [d if isinstance(d, int) else axes[graph][d] for d in t.shape]
                    for t in self.artifact.metadata.graphs[graph].inputs}
            for graph in batches
        }
        state = self._ob_state
        for graph, graph_shapes in shapes.items():
            try:
                session = state["backend"].load(self.artifact, graph=graph, device=state["device"], static_shapes=graph_shapes,
                                                **state["options"], **state["per_graph"].get(graph, {}))
            except BackendError as exc:
                if "static_shapes" not in str(exc):
                    raise
                raise BackendError(
                    f"backend {self.backend!r} cannot fix static shapes ({first_line(exc)}); reshape() needs a backend that "
                    "takes the static_shapes load option: see `optibridge backends` and load the pipeline on one of those"
                ) from exc
            target = getattr(self, "vae" if graph == "vae_decoder" else graph)
            target.sessions[graph] = session
        self.static_shapes = {"batch_size": batch_size, "height": height, "width": width, "num_images_per_prompt": num_images_per_prompt}
        if family.t5_length:
            self.static_shapes["max_sequence_length"] = t5_length
        return self

    def _check_static(self, prompt: Any, kwargs: dict[str, Any]) -> None:
        fixed = self.static_shapes or {}
        batch = len(prompt) if isinstance(prompt, list) else 1
        asked = {"batch_size": batch, "height": kwargs.get("height", fixed["height"]), "width": kwargs.get("width", fixed["width"]),
                 "num_images_per_prompt": kwargs.get("num_images_per_prompt", 1) or 1}
        if "max_sequence_length" in fixed:
            asked["max_sequence_length"] = kwargs.setdefault("max_sequence_length", fixed["max_sequence_length"])
        wrong = {k: v for k, v in asked.items() if v != fixed[k]}
        if wrong:
            raise InputError(
                f"this pipeline was reshaped to static shapes {fixed}; the call asks for {wrong}. Call reshape() again "
                "with the new sizes, or load it again for dynamic shapes"
            )
        if diffusion_record(self.artifact).family.guidance_batch and kwargs.get("guidance_scale", 7.5) <= 1:
            raise InputError("a reshaped pipeline runs classifier-free guidance (the denoiser batch is doubled): use guidance_scale > 1")
        if "height" not in kwargs:
            kwargs["height"], kwargs["width"] = fixed["height"], fixed["width"]


class OBStableDiffusionPipeline(OBDiffusionPipelineMixin, StableDiffusionPipeline):
    """``StableDiffusionPipeline`` running the artifact's graphs on an optibridge backend."""

    task = "text-to-image"


class OBStableDiffusionImg2ImgPipeline(OBDiffusionPipelineMixin, StableDiffusionImg2ImgPipeline):
    """``StableDiffusionImg2ImgPipeline`` running the artifact's graphs (needs the ``vae_encoder`` graph)."""

    task = "image-to-image"


class OBStableDiffusionInpaintPipeline(OBDiffusionPipelineMixin, StableDiffusionInpaintPipeline):
    """``StableDiffusionInpaintPipeline`` running the artifact's graphs (needs the ``vae_encoder`` graph)."""

    task = "inpainting"


class OBStableDiffusionXLPipeline(OBDiffusionPipelineMixin, StableDiffusionXLPipeline):
    """``StableDiffusionXLPipeline`` (two text encoders) running the artifact's graphs."""

    task = "text-to-image"
    family = "stable-diffusion-xl"


class OBStableDiffusionXLImg2ImgPipeline(OBDiffusionPipelineMixin, StableDiffusionXLImg2ImgPipeline):
    """``StableDiffusionXLImg2ImgPipeline`` running the artifact's graphs (needs the ``vae_encoder`` graph)."""

    task = "image-to-image"
    family = "stable-diffusion-xl"


class OBStableDiffusionXLInpaintPipeline(OBDiffusionPipelineMixin, StableDiffusionXLInpaintPipeline):
    """``StableDiffusionXLInpaintPipeline`` running the artifact's graphs (a 9-channel UNet, the ``vae_encoder`` graph)."""

    task = "inpainting"
    family = "stable-diffusion-xl"


class OBLatentConsistencyModelPipeline(OBDiffusionPipelineMixin, LatentConsistencyModelPipeline):
    """``LatentConsistencyModelPipeline`` (LCM: 2-8 steps, the guidance scale embedded) running the artifact's graphs."""

    task = "text-to-image"
    family = "latent-consistency"


class OBLatentConsistencyModelImg2ImgPipeline(OBDiffusionPipelineMixin, LatentConsistencyModelImg2ImgPipeline):
    """``LatentConsistencyModelImg2ImgPipeline`` running the artifact's graphs (needs the ``vae_encoder`` graph)."""

    task = "image-to-image"
    family = "latent-consistency"


class OBStableDiffusion3Pipeline(OBDiffusionPipelineMixin, StableDiffusion3Pipeline):
    """``StableDiffusion3Pipeline`` (two CLIP encoders, a T5 encoder, the MMDiT transformer) running the artifact's graphs."""

    task = "text-to-image"
    family = "stable-diffusion-3"


class OBStableDiffusion3Img2ImgPipeline(OBDiffusionPipelineMixin, StableDiffusion3Img2ImgPipeline):
    """``StableDiffusion3Img2ImgPipeline`` running the artifact's graphs (needs the ``vae_encoder`` graph)."""

    task = "image-to-image"
    family = "stable-diffusion-3"


class OBStableDiffusion3InpaintPipeline(OBDiffusionPipelineMixin, StableDiffusion3InpaintPipeline):
    """``StableDiffusion3InpaintPipeline`` running the artifact's graphs (needs the ``vae_encoder`` graph)."""

    task = "inpainting"
    family = "stable-diffusion-3"


class OBFluxPipeline(OBDiffusionPipelineMixin, FluxPipeline):
    """``FluxPipeline`` (a CLIP and a T5 encoder, the Flux transformer on packed latents) running the artifact's graphs."""

    task = "text-to-image"
    family = "flux"


class OBFluxImg2ImgPipeline(OBDiffusionPipelineMixin, FluxImg2ImgPipeline):
    """``FluxImg2ImgPipeline`` running the artifact's graphs (needs the ``vae_encoder`` graph)."""

    task = "image-to-image"
    family = "flux"


class OBFluxInpaintPipeline(OBDiffusionPipelineMixin, FluxInpaintPipeline):
    """``FluxInpaintPipeline`` running the artifact's graphs (needs the ``vae_encoder`` graph)."""

    task = "inpainting"
    family = "flux"


def pipeline_class(family: str, task: str = "text-to-image") -> type[OBDiffusionPipelineMixin]:
    """The optibridge pipeline class that runs ``task`` for a ``family`` (what an artifact records)."""
    found: type[OBDiffusionPipelineMixin] = globals()["OB" + FAMILIES[family].tasks[task]]
    return found
