"""Inputs for comparing a pipeline artifact's graphs after optimize/quantize: prompts through the
artifact's own tokenizer for the text encoder, O(1) latents at a valid size for the UNet and VAE.
Every size comes from the artifact's checked record (:mod:`.record`). Imports no diffusers."""

from __future__ import annotations

import numpy as np

from ..artifact import Artifact
from ..errors import ArtifactError
from .record import MAX_SAMPLE_VALUES, diffusion_record

Feed = tuple[dict[str, np.ndarray], str]
"""The graph's inputs by name, and a line saying what they are (the caller wraps them in its batch type)."""
PROMPTS = (
    "a red bicycle leaning against a brick wall",
    "an astronaut riding a horse on the moon, oil painting",
    "a bowl of ramen, studio lighting",
)
TEXT_LENGTH = 77
"""CLIP's prompt length, where a text encoder config does not give its own."""


class _Draws:
    """N(0, 1) samples, each refused before allocation when its shape holds more than MAX_SAMPLE_VALUES
    values (every size in it comes from the untrusted folder)."""

    def __init__(self, rng: np.random.Generator, graph: str) -> None:
        self.rng, self.graph = rng, graph

    def _check(self, shape: tuple[int, ...]) -> None:
        if int(np.prod(shape, dtype=np.float64)) > MAX_SAMPLE_VALUES:
            raise ArtifactError(f"the pipeline's configs make a {self.graph} sample of shape {shape}, over {MAX_SAMPLE_VALUES} values; "
                                "they are not a pipeline optibridge exported: re-export it")

    def normal(self, *shape: int) -> np.ndarray:
        self._check(shape)
        return self.rng.standard_normal(shape, dtype=np.float32)

    def uniform(self, *shape: int) -> np.ndarray:
        """Uniform in [-1, 1]: an image as the VAE encoder takes it."""
        self._check(shape)
        return self.rng.uniform(-1, 1, shape).astype(np.float32)


def native_size(artifact: Artifact) -> int:
    """The pipeline's own image side (UNet sample size × VAE scale), rounded down to a size its graphs take."""
    record = diffusion_record(artifact)
    multiple = record.size_multiple
    return max(multiple, record.latent_side() * record.vae_scale_factor // multiple * multiple)


def diffusion_batch(artifact: Artifact, graph_name: str, seed: int = 1, batch: int = 3) -> Feed:
    """A batch for one graph of a diffusion artifact, at a latent size other than the export's trace."""
    record = diffusion_record(artifact)
    draw = _Draws(np.random.default_rng(seed), graph_name)
    m, scale = record.latent_multiple, record.vae_scale_factor
    length = record.dim("text_encoder", "max_position_embeddings", TEXT_LENGTH)
    if graph_name in ("text_encoder", "text_encoder_2", "text_encoder_3"):  # each encoder has its own tokenizer folder
        from transformers import AutoTokenizer

        length = record.dim(graph_name, "max_position_embeddings", length)
        tokenizer = AutoTokenizer.from_pretrained(artifact.path / graph_name.replace("text_encoder", "tokenizer"))
        ids = tokenizer([PROMPTS[i % len(PROMPTS)] for i in range(batch)], padding="max_length", max_length=length, truncation=True,
                        return_tensors="np")["input_ids"].astype(np.int64)
        return {"input_ids": ids}, f"{batch} prompts through the pipeline's tokenizer, padded to {length}"
    unet = record.config("unet")
    h, w = 4 * m, 3 * m
    if graph_name == "unet":
        feed = {"sample": draw.normal(batch, record.dim("unet", "in_channels"), h, w),
                "timestep": np.linspace(999, 1, batch).astype(np.float32),
                "encoder_hidden_states": draw.normal(batch, length, record.dim("unet", "cross_attention_dim"))}
        if unet.get("addition_embed_type") == "text_time":  # SDXL: pooled text embeddings and the size/crop numbers
            pooled = record.dim("unet", "projection_class_embeddings_input_dim") - 6 * record.dim("unet", "addition_time_embed_dim")
            if pooled < 1:
                raise ArtifactError(f"{record.config_folders['unet']}/config.json: projection_class_embeddings_input_dim leaves "
                                    f"{pooled} pooled text features after the 6 time ids; re-export the pipeline")
            feed["text_embeds"] = draw.normal(batch, pooled)
            feed["time_ids"] = np.array([[h * scale, w * scale, 0, 0, h * scale, w * scale]] * batch, dtype=np.float32)
        if unet.get("time_cond_proj_dim"):  # LCM: the guidance scale's embedding
            feed["timestep_cond"] = draw.normal(batch, record.dim("unet", "time_cond_proj_dim"))
        return feed, f"{batch} rows of N(0,1) latents {h}×{w} at timesteps 999..1"
    if graph_name == "transformer" and record.family.transformer == "flux":  # T5's states, 2×2-packed latents, rotary ids
        rows, columns = h // 2, w // 2
        ids = np.zeros((rows, columns, 3), dtype=np.float32)
        ids[..., 1], ids[..., 2] = np.arange(rows)[:, None], np.arange(columns)[None, :]
        feed = {"hidden_states": draw.normal(batch, rows * columns, record.dim("transformer", "in_channels")),
                "timestep": np.linspace(0.999, 0.001, batch).astype(np.float32),  # the pipeline passes t / 1000
                "encoder_hidden_states": draw.normal(batch, length, record.dim("transformer", "joint_attention_dim")),
                "pooled_projections": draw.normal(batch, record.dim("transformer", "pooled_projection_dim")),
                "img_ids": ids.reshape(rows * columns, 3), "txt_ids": np.zeros((length, 3), dtype=np.float32)}
        if record.config("transformer").get("guidance_embeds"):
            feed["guidance"] = np.full((batch,), 3.5, dtype=np.float32)
        return feed, f"{batch} rows of N(0,1) packed latents {h}×{w} at timesteps 0.999..0.001"
    if graph_name == "transformer":  # SD3: CLIP's and T5's states in one sequence, the two CLIP projections pooled
        feed = {"hidden_states": draw.normal(batch, record.dim("transformer", "in_channels"), h, w),
                "timestep": np.linspace(999, 1, batch).astype(np.float32),
                "encoder_hidden_states": draw.normal(batch, 2 * length, record.dim("transformer", "joint_attention_dim")),
                "pooled_projections": draw.normal(batch, record.dim("transformer", "pooled_projection_dim"))}
        return feed, f"{batch} rows of N(0,1) latents {h}×{w} at timesteps 999..1"
    if graph_name == "vae_decoder":
        channels = record.dim("vae_decoder", "latent_channels", 4)
        return {"latent_sample": draw.normal(batch, channels, h, w)}, f"{batch} rows of N(0,1) latents {h}×{w}"
    if graph_name == "vae_encoder":
        image = draw.uniform(batch, 3, h * scale, w * scale)
        return {"sample": image}, f"{batch} uniform [-1, 1] images {h * scale}×{w * scale}"
    raise KeyError(f"no sample recipe for graph {graph_name!r} of a diffusion artifact")
