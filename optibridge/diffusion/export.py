"""Export a diffusers pipeline folder to one artifact with a graph per component.

Graphs (batch, height and width dynamic in all of them):

- ``text_encoder``: ``input_ids`` → ``last_hidden_state``, ``pooler_output``
- ``unet``: ``sample``, ``timestep`` (float32, one per row), ``encoder_hidden_states`` → ``out_sample``
- ``transformer`` (Stable Diffusion 3, in place of the UNet): ``hidden_states``, ``timestep``,
  ``encoder_hidden_states``, ``pooled_projections`` → ``out_hidden_states``
- ``transformer`` (Flux): ``hidden_states`` (2×2-packed latents as a sequence), ``timestep``,
  ``encoder_hidden_states``, ``pooled_projections``, ``img_ids``, ``txt_ids`` (rotary position ids),
  ``guidance`` (FLUX.1-dev) → ``out_hidden_states``
- ``text_encoder_3`` (Stable Diffusion 3's T5; Flux's T5 is ``text_encoder_2``): ``input_ids`` → ``last_hidden_state``
- ``vae_decoder``: ``latent_sample`` → ``sample`` (the pipeline divides by the scaling factor itself)
- ``vae_encoder`` (image-to-image, inpainting): ``sample`` → ``latent_parameters``, the mean and
  log-variance of the latent distribution: sampling from it stays in PyTorch, so a seeded
  ``torch.Generator`` draws exactly what the PyTorch pipeline draws.

The scheduler, tokenizer, ``model_index.json`` and each component's ``config.json`` are copied in;
the weights are not. Each graph is validated against its PyTorch module at shapes other than the
traced ones before the artifact is moved into place.
"""

from __future__ import annotations

import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .._version import __version__
from ..artifact import Artifact, ArtifactMetadata, GraphSpec, check_output_dir, staged_directory, write_metadata
from ..errors import ModelNotFoundError, OptibridgeError, first_line
from ..exporter.core import ExportResult
from ..exporter.plan import Validator, record_validation
from ..exporter.torch_to_onnx import SIDE_FILE_MIN_BYTES, export_module, graph_spec, resolve_exporter
from ..exporter.validate import OutputCheck, ValidationReport, max_abs_diff
from .families import FLUX, MODEL_INDEX, STABLE_DIFFUSION, STABLE_DIFFUSION_3, PipelineFamily, PipelineSource, graphs_for, inspect_pipeline

OUTPUT_CLASSES = {
    "stable-diffusion": "diffusers.pipelines.stable_diffusion.pipeline_output.StableDiffusionPipelineOutput",
    "stable-diffusion-xl": "diffusers.pipelines.stable_diffusion_xl.pipeline_output.StableDiffusionXLPipelineOutput",
    "latent-consistency": "diffusers.pipelines.stable_diffusion.pipeline_output.StableDiffusionPipelineOutput",
    "stable-diffusion-3": "diffusers.pipelines.stable_diffusion_3.pipeline_output.StableDiffusion3PipelineOutput",
    "flux": "diffusers.pipelines.flux.pipeline_output.FluxPipelineOutput",
}
CONFIG_FOLDERS = {"text_encoder": "text_encoder", "text_encoder_2": "text_encoder_2", "text_encoder_3": "text_encoder_3",
                  "unet": "unet", "transformer": "transformer", "vae_decoder": "vae", "vae_encoder": "vae"}
"""Graph → the component folder whose config.json describes it."""


class UNetStep(torch.nn.Module):
    """One denoising step; SDXL's UNet also takes the pooled text embeddings and the size/crop ``time_ids``,
    an LCM UNet the guidance scale's embedding (``timestep_cond``). The exporters pass inputs by
    position: ``input_names`` says which is which."""

    def __init__(self, unet: torch.nn.Module, input_names: list[str]) -> None:
        super().__init__()
        self.unet = unet
        self.input_names = input_names
        self.eval()

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        named = dict(zip(self.input_names, inputs))
        added = {"text_embeds": named["text_embeds"], "time_ids": named["time_ids"]} if "text_embeds" in named else None
        noise: torch.Tensor = self.unet(named["sample"], named["timestep"], encoder_hidden_states=named["encoder_hidden_states"],
                                        timestep_cond=named.get("timestep_cond"), added_cond_kwargs=added, return_dict=False)[0]
        return noise


class TransformerStep(torch.nn.Module):
    """One denoising step of a pipeline transformer (SD3's MMDiT, Flux's), called with its inputs by name;
    the exporters pass them by position and ``input_names`` says which is which (Flux's ``guidance`` only
    where the model embeds it)."""

    def __init__(self, transformer: torch.nn.Module, input_names: list[str]) -> None:
        super().__init__()
        self.transformer = transformer
        self.input_names = input_names
        self.eval()

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        named = dict(zip(self.input_names, inputs))
        noise: torch.Tensor = self.transformer(**named, return_dict=False)[0]
        return noise


class _VaeDecode(torch.nn.Module):
    def __init__(self, vae: torch.nn.Module) -> None:
        super().__init__()
        self.vae: Any = vae  # diffusers' AutoencoderKL: untyped, and torch types a Module's attributes as Tensor | Module
        self.eval()

    def forward(self, latent_sample: torch.Tensor) -> torch.Tensor:
        image: torch.Tensor = self.vae.decode(latent_sample, return_dict=False)[0]
        return image


class _VaeEncode(torch.nn.Module):
    def __init__(self, vae: torch.nn.Module) -> None:
        super().__init__()
        self.vae: Any = vae  # as in _VaeDecode
        self.eval()

    def forward(self, sample: torch.Tensor) -> torch.Tensor:
        parameters: torch.Tensor = self.vae.encode(sample, return_dict=False)[0].parameters
        return parameters


class _TextEncode(torch.nn.Module):
    """``last_hidden_state``, the pooled output (``pooler_output``, or ``text_embeds`` of a
    ``CLIPTextModelWithProjection``; a T5 encoder has none), and with ``hidden_states`` every layer's states."""

    def __init__(self, text_encoder: torch.nn.Module, hidden_states: bool) -> None:
        super().__init__()
        self.text_encoder = text_encoder
        self.hidden_states = hidden_states
        self.eval()

    def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.text_encoder(input_ids, output_hidden_states=self.hidden_states, return_dict=True)
        pooled = out.text_embeds if "text_embeds" in out else out.get("pooler_output")
        return (out.last_hidden_state, *(() if pooled is None else (pooled,)), *(out.hidden_states if self.hidden_states else ()))


@dataclass
class _GraphPlan:
    """One component graph: its traced module, trace and validation inputs, names and axes."""

    name: str
    module: torch.nn.Module
    trace: dict[str, torch.Tensor]
    fresh: dict[str, torch.Tensor]
    outputs: tuple[str, ...]
    axes: dict[str, dict[int, str]]


def load_components(source: PipelineSource) -> dict[str, Any]:
    """The PyTorch modules to export, each loaded by the class model_index.json names for it."""
    import diffusers
    import transformers

    modules: dict[str, Any] = {}
    for name in (*source.text_encoders, source.family.denoiser, "vae"):
        library, class_name = source.index[name]
        owner = {"diffusers": diffusers, "transformers": transformers}.get(library)
        cls = getattr(owner, class_name, None) if owner is not None else None
        if cls is None:
            raise ModelNotFoundError(
                f"model_index.json names {library}.{class_name} for {name!r}, which this diffusers/transformers does not have"
            )
        kwargs = {"attn_implementation": "eager"} if library == "transformers" else {}
        try:
            modules[name] = cls.from_pretrained(source.path / name, **kwargs).eval()
        except (OSError, ValueError) as exc:
            raise ModelNotFoundError(f"could not load {name} from {source.path / name}: {first_line(exc)}") from exc
    return modules


def latent_multiple(denoiser_config: Any, family: PipelineFamily) -> int:
    """Latent height/width must divide by this: each UNet down block but the last halves them; SD3's
    transformer cuts the latents into patches; Flux's pipeline packs them 2×2."""
    if family.transformer == "flux":
        return 2 * int(denoiser_config.patch_size)
    if family.transformer:
        return int(denoiser_config.patch_size)
    return int(2 ** (len(denoiser_config.block_out_channels) - 1))


def vae_scale_factor(vae_config: Any) -> int:
    return int(2 ** (len(vae_config.block_out_channels) - 1))


def _text_plan(name: str, encoder: Any, hidden_states: bool, sequence_length: int, gen: torch.Generator) -> _GraphPlan:
    vocab = int(encoder.config.vocab_size)
    if getattr(encoder.config, "model_type", "") == "t5":  # SD3's third encoder: its last states only, no pooled output
        pooled: tuple[str, ...] = ()
        hidden_states = False
    else:
        pooled = ("text_embeds" if hasattr(encoder, "text_projection") else "pooler_output",)
    layers = [f"hidden_states.{i}" for i in range(int(encoder.config.num_hidden_layers) + 1)] if hidden_states else []
    seq = {0: "batch", 1: "sequence"}
    return _GraphPlan(
        name, _TextEncode(encoder, hidden_states), {"input_ids": torch.randint(0, vocab, (2, sequence_length), generator=gen)},
        {"input_ids": torch.randint(0, vocab, (3, sequence_length - 2), generator=gen)}, ("last_hidden_state", *pooled, *layers),
        {"input_ids": seq, "last_hidden_state": seq, **dict.fromkeys(pooled, {0: "batch"}), **dict.fromkeys(layers, seq)},
    )


def flux_image_ids(rows: int, columns: int) -> torch.Tensor:
    """Flux's rotary position table of a packed latent grid: (0, row, column) for each cell, row-major."""
    ids = torch.zeros(rows, columns, 3)
    ids[..., 1] = torch.arange(rows)[:, None]
    ids[..., 2] = torch.arange(columns)[None, :]
    return ids.reshape(rows * columns, 3)


def _flux_plan(transformer: Any, sequence_length: int, gen: torch.Generator) -> _GraphPlan:
    config = transformer.config
    m = latent_multiple(config, FLUX)

    def inputs(batch: int, h: int, w: int, seq: int) -> dict[str, torch.Tensor]:
        packed = (h // 2) * (w // 2)
        found = {"hidden_states": torch.randn(batch, packed, int(config.in_channels), generator=gen),
                 "timestep": torch.rand(batch, generator=gen),  # the pipeline passes t / 1000
                 "encoder_hidden_states": torch.randn(batch, seq, int(config.joint_attention_dim), generator=gen),
                 "pooled_projections": torch.randn(batch, int(config.pooled_projection_dim), generator=gen),
                 "img_ids": flux_image_ids(h // 2, w // 2),
                 "txt_ids": torch.zeros(seq, 3)}
        if config.guidance_embeds:
            found["guidance"] = torch.full((batch,), 3.5)
        return found

    axes = {"hidden_states": {0: "batch", 1: "image_sequence"}, "timestep": {0: "batch"},
            "encoder_hidden_states": {0: "batch", 1: "sequence"}, "pooled_projections": {0: "batch"},
            "img_ids": {0: "image_sequence"}, "txt_ids": {0: "sequence"}, "guidance": {0: "batch"},
            "out_hidden_states": {0: "batch", 1: "image_sequence"}}
    trace = inputs(2, 2 * m, 3 * m, sequence_length)
    axes = {k: v for k, v in axes.items() if k in trace or k == "out_hidden_states"}
    return _GraphPlan("transformer", TransformerStep(transformer, list(trace)), trace, inputs(3, 3 * m, 3 * m, sequence_length - 3),
                      ("out_hidden_states",), axes)


def _sd3_plan(transformer: Any, sequence_length: int, gen: torch.Generator) -> _GraphPlan:
    config = transformer.config
    m = latent_multiple(config, STABLE_DIFFUSION_3)

    def inputs(batch: int, h: int, w: int, seq: int) -> dict[str, torch.Tensor]:
        return {"hidden_states": torch.randn(batch, int(config.in_channels), h, w, generator=gen),
                "timestep": torch.randint(1, 1000, (batch,), generator=gen).float(),
                "encoder_hidden_states": torch.randn(batch, seq, int(config.joint_attention_dim), generator=gen),
                "pooled_projections": torch.randn(batch, int(config.pooled_projection_dim), generator=gen)}

    latent = {0: "batch", 2: "latent_height", 3: "latent_width"}
    axes = {"hidden_states": latent, "timestep": {0: "batch"}, "encoder_hidden_states": {0: "batch", 1: "sequence"},
            "pooled_projections": {0: "batch"}, "out_hidden_states": latent}
    trace = inputs(2, 2 * m, 3 * m, 2 * sequence_length)
    return _GraphPlan("transformer", TransformerStep(transformer, list(trace)), trace, inputs(3, 3 * m, 2 * m, 2 * sequence_length - 3),
                      ("out_hidden_states",), axes)


def _unet_plan(unet: Any, sequence_length: int, gen: torch.Generator) -> _GraphPlan:
    m = latent_multiple(unet.config, STABLE_DIFFUSION)
    channels, cross = int(unet.config.in_channels), int(unet.config.cross_attention_dim)
    # SDXL: pooled text embeddings and 6 size/crop numbers per row, embedded by the UNet
    added = unet.config.addition_embed_type == "text_time"
    pooled_dim = int(unet.config.projection_class_embeddings_input_dim or 0) - 6 * int(unet.config.addition_time_embed_dim or 0)
    guidance_dim = int(unet.config.time_cond_proj_dim or 0)  # LCM: the guidance scale's embedding

    def unet_inputs(batch: int, h: int, w: int) -> dict[str, torch.Tensor]:
        inputs = {"sample": torch.randn(batch, channels, h, w, generator=gen),
                  "timestep": torch.randint(1, 1000, (batch,), generator=gen).float(),
                  "encoder_hidden_states": torch.randn(batch, sequence_length, cross, generator=gen)}
        if added:
            inputs["text_embeds"] = torch.randn(batch, pooled_dim, generator=gen)
            inputs["time_ids"] = torch.tensor([[8.0 * h, 8.0 * w, 0.0, 0.0, 8.0 * h, 8.0 * w]] * batch)
        if guidance_dim:
            inputs["timestep_cond"] = torch.randn(batch, guidance_dim, generator=gen)
        return inputs

    latent = {0: "batch", 2: "latent_height", 3: "latent_width"}
    unet_axes = {"sample": latent, "timestep": {0: "batch"}, "encoder_hidden_states": {0: "batch", 1: "sequence"}, "out_sample": latent}
    if added:
        unet_axes.update(text_embeds={0: "batch"}, time_ids={0: "batch"})
    if guidance_dim:
        unet_axes.update(timestep_cond={0: "batch"})
    unet_trace = unet_inputs(2, 2 * m, 3 * m)
    return _GraphPlan("unet", UNetStep(unet, list(unet_trace)), unet_trace, unet_inputs(3, 3 * m, 2 * m), ("out_sample",), unet_axes)


def _plans(modules: dict[str, Any], source: PipelineSource, sequence_length: int) -> list[_GraphPlan]:
    gen = torch.Generator().manual_seed(0)
    denoiser, vae = modules[source.family.denoiser], modules["vae"]
    m = latent_multiple(denoiser.config, source.family)
    latent_channels = int(vae.config.latent_channels)
    scale = vae_scale_factor(vae.config)
    image = {0: "batch", 2: "height", 3: "width"}
    latent = {0: "batch", 2: "latent_height", 3: "latent_width"}
    plans = [_text_plan(name, modules[name], source.family.hidden_states, sequence_length, gen) for name in source.text_encoders]
    if source.family.transformer == "flux":
        plans.append(_flux_plan(denoiser, sequence_length, gen))
    elif source.family.transformer == "sd3":
        plans.append(_sd3_plan(denoiser, sequence_length, gen))
    else:
        plans.append(_unet_plan(denoiser, sequence_length, gen))
    plans.append(
        _GraphPlan("vae_decoder", _VaeDecode(vae), {"latent_sample": torch.randn(2, latent_channels, 2 * m, 3 * m, generator=gen)},
                   {"latent_sample": torch.randn(1, latent_channels, 3 * m, 2 * m, generator=gen)}, ("sample",),
                   {"latent_sample": latent, "sample": image}),
    )
    if "vae_encoder" in graphs_for(source.task, source.family):
        plans.append(_GraphPlan(
            "vae_encoder", _VaeEncode(vae), {"sample": torch.rand(2, 3, 2 * m * scale, 3 * m * scale, generator=gen) * 2 - 1},
            {"sample": torch.rand(1, 3, 3 * m * scale, 2 * m * scale, generator=gen) * 2 - 1}, ("latent_parameters",),
            {"sample": image, "latent_parameters": latent},
        ))
    return plans


def _dynamic_shapes(plan: _GraphPlan) -> tuple[Any, ...]:
    """torch.export's dynamic shapes for ``plan``: one spec per input, inside one tuple where forward takes ``*inputs``."""
    import inspect

    specs = tuple({i: torch.export.Dim.AUTO for i in plan.axes[k]} for k in plan.trace)
    varargs = any(p.kind is p.VAR_POSITIONAL for p in inspect.signature(plan.module.forward).parameters.values())
    return (specs,) if varargs else specs


def _copy_support_files(source: PipelineSource, staging: Path, graphs: dict[str, GraphSpec]) -> None:
    shutil.copy2(source.path / MODEL_INDEX, staging / MODEL_INDEX)
    for folder in ("scheduler", *source.tokenizers):
        shutil.copytree(source.path / folder, staging / folder)
    for folder in sorted({CONFIG_FOLDERS[g] for g in graphs}):
        (staging / folder).mkdir(exist_ok=True)
        shutil.copy2(source.path / folder / "config.json", staging / folder / "config.json")


def export_pipeline(
    model: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    task: str | None = None,
    opset: int | None = None,
    atol: float = 1e-4,
    exporter: str = "auto",
    validate: bool = True,
    validator: Validator | None = None,
    external_data: bool | None = None,
    on_step: Callable[[str], None] | None = None,
) -> ExportResult:
    """Export the diffusers pipeline folder ``model`` into the artifact folder ``output_dir``."""
    step = on_step or (lambda message: None)
    check_output_dir(output_dir)
    source = inspect_pipeline(model, task)
    if exporter == "auto" and source.family.transformer == "flux":
        exporter = "dynamo"  # the Flux transformer's RMSNorm (aten::rms_norm) has no TorchScript export at opset 20
    exporter = resolve_exporter(exporter)
    step(f"loading the {source.pipeline_class} components from {source.path}")
    modules = load_components(source)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.path / "tokenizer")
    sequence_length = int(min(tokenizer.model_max_length, modules["text_encoder"].config.max_position_embeddings))
    plans = _plans(modules, source, sequence_length)

    with staged_directory(output_dir) as staging:
        graphs: dict[str, GraphSpec] = {}
        for plan in plans:
            step(f"exporting {plan.name} with the {exporter} exporter")
            big = external_data if external_data is not None else (
                sum(p.numel() * p.element_size() for p in plan.module.parameters()) > SIDE_FILE_MIN_BYTES)
            file = staging / f"{plan.name}.onnx"
            export_module(
                plan.module, tuple(plan.trace.values()), list(plan.trace), list(plan.outputs),
                {k: v for k, v in plan.axes.items() if k in plan.trace}, {k: v for k, v in plan.axes.items() if k in plan.outputs},
                file, exporter=exporter, opset=opset, external_data=big,
                dynamic_shapes=_dynamic_shapes(plan),
            )
            import onnx

            graphs[plan.name] = graph_spec(file.name, onnx.load(str(file), load_external_data=False))
        _copy_support_files(source, staging, graphs)
        metadata = _metadata(source, graphs, staging, exporter, modules)
        write_metadata(staging, metadata)
        report = None
        if validate:
            if validator is None:
                raise OptibridgeError("internal: export(validate=True) needs a validator (optibridge.exporter.export passes one)")
            step(f"validating every graph against PyTorch on {validator.backend} at new shapes")
            report = _validate(Artifact(staging, metadata), plans, atol, validator)
            record_validation(staging, metadata, report, validator, failure="exported graphs differ from PyTorch",
                              advice="Raise --atol if this is acceptable, or try another --exporter / --opset")
        step("writing the artifact")
    return ExportResult(Artifact.load(output_dir), source.task, source.task_inferred, report)


def _validate(artifact: Artifact, plans: list[_GraphPlan], atol: float, validator: Validator) -> ValidationReport:
    report = ValidationReport(atol=atol, backend=validator.backend, input_shapes={
        f"{plan.name}.{k}": tuple(v.shape) for plan in plans for k, v in plan.fresh.items()})
    for plan in plans:
        session = validator.load(artifact, plan.name)
        got = session.run({k: v.numpy() for k, v in plan.fresh.items()})
        with torch.no_grad():
            want = plan.module(*plan.fresh.values())
        want = want if isinstance(want, tuple) else (want,)
        for name, ref in zip(plan.outputs, want):
            ref_np, out = ref.numpy(), got[name]
            diff = max_abs_diff(ref_np, out) if ref_np.shape == out.shape else float("inf")
            report.outputs.append(OutputCheck(f"{plan.name} {name}", diff, tuple(ref_np.shape), tuple(out.shape), diff <= atol))
    return report


def _metadata(source: PipelineSource, graphs: dict[str, GraphSpec], staging: Path, exporter: str, modules: dict[str, Any]) -> ArtifactMetadata:
    import diffusers
    import onnx
    import transformers

    first = onnx.load(str(staging / graphs[source.family.denoiser].file), load_external_data=False)
    opset = next((o.version for o in first.opset_import if o.domain in ("", "ai.onnx")), 0)
    denoiser_config, vae_config = modules[source.family.denoiser].config, modules["vae"].config
    return ArtifactMetadata(
        task=source.task,
        model_type=source.family.name,
        source={"model": str(source.path), "local_path": str(source.path.resolve()), "revision": None,
                "architectures": [source.pipeline_class]},
        graphs=graphs,
        output_class=OUTPUT_CLASSES[source.family.name],
        opset=opset,
        exporter=exporter,
        versions={"optibridge": __version__, "torch": torch.__version__, "diffusers": diffusers.__version__,
                  "transformers": transformers.__version__, "onnx": onnx.__version__, "numpy": np.__version__,
                  "python": platform.python_version()},
        steps=[{"step": "export", "exporter": exporter, "opset": opset}],
        extra={"diffusion": {
            "family": source.family.name,
            "pipeline_class": source.family.tasks[source.task],
            "source_pipeline_class": source.pipeline_class,
            "config_folders": {g: CONFIG_FOLDERS[g] for g in graphs},
            "vae_scale_factor": vae_scale_factor(vae_config),
            "latent_multiple": latent_multiple(denoiser_config, source.family),
        }},
    )
