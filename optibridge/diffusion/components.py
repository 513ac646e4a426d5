"""The pipeline components, each a thin ``torch.nn.Module`` whose forward runs one graph of the
artifact on a backend session and returns what the diffusers/transformers module returns.

They are modules (with no parameters) because diffusers' pipelines find their device and dtype by
walking the components that are ``nn.Module``; ``config``, ``dtype`` and ``device`` are what the
pipelines read. Tensors cross to numpy at this edge only.
"""

from __future__ import annotations

import contextlib
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from ..backend import Session
from ..errors import BackendError


class SessionComponent(torch.nn.Module):
    """Base: one or more sessions, a config, float32 on the host."""

    def __init__(self, sessions: dict[str, Session], config: Any) -> None:
        super().__init__()
        self.sessions = sessions
        self.config = config

    @property
    def device(self) -> torch.device:
        # Sessions take and return host (numpy) arrays whatever device they run on, so the pipeline's
        # latents and generators live on the CPU.
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def to(self, *args: Any, **kwargs: Any) -> "SessionComponent":
        for target in list(args) + list(kwargs.values()):
            if isinstance(target, torch.dtype) and target != torch.float32:
                raise BackendError(f"exported pipeline components run in float32; {target} is chosen at optimize/quantize time")
        return self  # the device is chosen at load time (backend=/device=), never by moving tensors

    def _run(self, graph: str, **inputs: torch.Tensor) -> dict[str, np.ndarray]:
        session = self.sessions[graph]
        feed = {name: value.detach().cpu().numpy() for name, value in inputs.items() if name in session.input_names}
        return session.run(feed)


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array))


def _per_row(value: Any, batch: int) -> torch.Tensor:
    """A timestep (or guidance scale) as the graphs take it: one float32 per row; schedulers hand a scalar."""
    steps = torch.as_tensor(value, dtype=torch.float32).reshape(-1)
    return (steps.expand(batch) if steps.numel() == 1 else steps).contiguous()


class TextEncoder(SessionComponent):
    """Stands in for ``CLIPTextModel`` (``last_hidden_state``, ``pooler_output``),
    ``CLIPTextModelWithProjection`` (``text_embeds`` first; per-layer hidden states where exported: SDXL,
    SD3) or ``T5EncoderModel`` (``last_hidden_state`` alone: SD3's third encoder)."""

    def __init__(self, sessions: dict[str, Session], config: Any, graph: str) -> None:
        super().__init__(sessions, config)
        self.graph = graph

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool | None = None, return_dict: bool = True, **_: Any) -> Any:
        from transformers.modeling_outputs import BaseModelOutput, BaseModelOutputWithPooling
        from transformers.models.clip.modeling_clip import CLIPTextModelOutput

        names = self.sessions[self.graph].output_names
        layers = sorted((n for n in names if n.startswith("hidden_states.")), key=lambda n: int(n.split(".")[1]))
        if output_hidden_states and not layers:
            raise BackendError("the exported text encoder returns its last hidden state only: clip_skip is not supported")
        out = {k: _tensor(v) for k, v in self._run(self.graph, input_ids=input_ids.to(torch.int64)).items()}
        hidden = tuple(out[n] for n in layers) if output_hidden_states else None
        if "text_embeds" not in out and "pooler_output" not in out:
            result: Any = BaseModelOutput(last_hidden_state=out["last_hidden_state"], hidden_states=hidden)
        elif "text_embeds" in out:
            result = CLIPTextModelOutput(text_embeds=out["text_embeds"], last_hidden_state=out["last_hidden_state"], hidden_states=hidden)
        else:
            result = BaseModelOutputWithPooling(last_hidden_state=out["last_hidden_state"], pooler_output=out["pooler_output"],
                                                hidden_states=hidden)
        return result if return_dict else result.to_tuple()


class UNet(SessionComponent):
    """Stands in for ``UNet2DConditionModel``: the scheduler-driven denoiser, one call per step."""

    def __init__(self, sessions: dict[str, Session], config: Any) -> None:
        super().__init__(sessions, config)
        width = config.get("projection_class_embeddings_input_dim")
        if width:  # SDXL's pipeline checks its time ids against unet.add_embedding.linear_1.in_features
            self.add_embedding = SimpleNamespace(linear_1=SimpleNamespace(in_features=int(width)))

    def forward(self, sample: torch.Tensor, timestep: Any, encoder_hidden_states: torch.Tensor,
                timestep_cond: Any = None, cross_attention_kwargs: Any = None, added_cond_kwargs: Any = None,
                return_dict: bool = True, **unsupported: Any) -> Any:
        from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

        takes_cond = "timestep_cond" in self.sessions["unet"].input_names
        given = [k for k, v in {"timestep_cond": None if takes_cond else timestep_cond, "cross_attention_kwargs": cross_attention_kwargs,
                                **unsupported}.items() if v is not None and not (isinstance(v, (bool, dict)) and not v)]
        if given:
            raise BackendError(f"the exported UNet does not take {', '.join(given)}; leave them unset")
        if takes_cond and timestep_cond is None:
            raise BackendError("this UNet (a Latent Consistency Model's) needs timestep_cond, the guidance scale's embedding; "
                               "run it in its LatentConsistencyModel pipeline")
        steps = _per_row(timestep, sample.shape[0])
        added = {k: v.float() for k, v in (added_cond_kwargs or {}).items() if k in ("text_embeds", "time_ids")}
        if takes_cond:
            added["timestep_cond"] = timestep_cond.float()
        out = self._run("unet", sample=sample.float(), timestep=steps, encoder_hidden_states=encoder_hidden_states.float(),
                        **added)
        noise = _tensor(out["out_sample"])
        return UNet2DConditionOutput(sample=noise) if return_dict else (noise,)


class SD3Transformer(SessionComponent):
    """Stands in for ``SD3Transformer2DModel``: one call per denoising step on patched latents."""

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                pooled_projections: torch.Tensor | None = None, timestep: Any = None, block_controlnet_hidden_states: Any = None,
                joint_attention_kwargs: Any = None, return_dict: bool = True, skip_layers: Any = None, **unsupported: Any) -> Any:
        from diffusers.models.modeling_outputs import Transformer2DModelOutput

        given = [k for k, v in {"block_controlnet_hidden_states": block_controlnet_hidden_states, "joint_attention_kwargs": joint_attention_kwargs,
                                "skip_layers": skip_layers, **unsupported}.items() if v is not None and not (isinstance(v, (bool, dict, list)) and not v)]
        if given:
            raise BackendError(f"the exported SD3 transformer does not take {', '.join(given)} (ControlNet residuals, skip-layer "
                               "guidance and attention processors run in PyTorch only); leave them unset")
        if encoder_hidden_states is None or pooled_projections is None or timestep is None:
            raise BackendError("the exported SD3 transformer needs encoder_hidden_states, pooled_projections and timestep")
        out = self._run("transformer", hidden_states=hidden_states.float(), timestep=_per_row(timestep, hidden_states.shape[0]),
                        encoder_hidden_states=encoder_hidden_states.float(), pooled_projections=pooled_projections.float())
        noise = _tensor(out["out_hidden_states"])
        return Transformer2DModelOutput(sample=noise) if return_dict else (noise,)


class FluxTransformer(SessionComponent):
    """Stands in for ``FluxTransformer2DModel``: one call per denoising step on the packed latent sequence."""

    def cache_context(self, name: str) -> contextlib.AbstractContextManager[None]:
        """diffusers' cache hooks (first-block and TaylorSeer caches) run in PyTorch only: nothing to switch here."""
        return contextlib.nullcontext()

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                pooled_projections: torch.Tensor | None = None, timestep: Any = None, img_ids: torch.Tensor | None = None,
                txt_ids: torch.Tensor | None = None, guidance: torch.Tensor | None = None, joint_attention_kwargs: Any = None,
                controlnet_block_samples: Any = None, controlnet_single_block_samples: Any = None, return_dict: bool = True,
                controlnet_blocks_repeat: bool = False, **unsupported: Any) -> Any:
        from diffusers.models.modeling_outputs import Transformer2DModelOutput

        given = [k for k, v in {"joint_attention_kwargs": joint_attention_kwargs, "controlnet_block_samples": controlnet_block_samples,
                                "controlnet_single_block_samples": controlnet_single_block_samples, **unsupported}.items()
                 if v is not None and not (isinstance(v, (bool, dict, list)) and not v)]
        if given:
            raise BackendError(f"the exported Flux transformer does not take {', '.join(given)} (ControlNet residuals, IP-Adapter "
                               "embeddings and attention processors run in PyTorch only); leave them unset")
        names = self.sessions["transformer"].input_names
        if "guidance" in names and guidance is None:
            raise BackendError("this Flux transformer (FLUX.1-dev style) embeds the guidance scale: pass guidance, as FluxPipeline does")
        tensors = {"encoder_hidden_states": encoder_hidden_states, "pooled_projections": pooled_projections,
                   "img_ids": img_ids, "txt_ids": txt_ids}
        missing = [k for k, v in {**tensors, "timestep": timestep}.items() if v is None]
        if missing:
            raise BackendError(f"the exported Flux transformer needs {', '.join(missing)}")
        batch = hidden_states.shape[0]
        inputs = {"hidden_states": hidden_states.float(), "timestep": _per_row(timestep, batch)}
        for name, value in tensors.items():
            tensor: torch.Tensor = value  # type: ignore[assignment]  # None was refused above
            # diffusers once passed the position ids with a batch axis; the graph takes one [sequence, 3] table
            inputs[name] = (tensor[0] if name.endswith("_ids") and tensor.ndim == 3 else tensor).float()
        if "guidance" in names:
            inputs["guidance"] = _per_row(guidance, batch)
        noise = _tensor(self._run("transformer", **inputs)["out_hidden_states"])
        return Transformer2DModelOutput(sample=noise) if return_dict else (noise,)


class AutoencoderKL(SessionComponent):
    """Stands in for ``AutoencoderKL``: ``decode`` runs the decoder graph, ``encode`` the encoder graph
    (when the artifact has it) and returns the latent distribution, sampled in PyTorch."""

    def decode(self, z: torch.Tensor, return_dict: bool = True, generator: Any = None) -> Any:
        from diffusers.models.autoencoders.vae import DecoderOutput

        image = _tensor(self._run("vae_decoder", latent_sample=z.float())["sample"])
        return DecoderOutput(sample=image) if return_dict else (image,)

    def encode(self, x: torch.Tensor, return_dict: bool = True) -> Any:
        from diffusers.models.modeling_outputs import AutoencoderKLOutput
        from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

        if "vae_encoder" not in self.sessions:
            raise BackendError(
                "this artifact has no vae_encoder graph (it was exported for text-to-image); re-export it with "
                "--task image-to-image (or inpainting) to get one"
            )
        moments = _tensor(self._run("vae_encoder", sample=x.float())["latent_parameters"])
        dist = DiagonalGaussianDistribution(moments)
        return AutoencoderKLOutput(latent_dist=dist) if return_dict else (dist,)

    def forward(self, sample: torch.Tensor, **_: Any) -> Any:
        return self.decode(self.encode(sample).latent_dist.mode())
