"""Tiny random Stable Diffusion 1.x pipelines, built locally from component configs (no downloads).

The sizes follow diffusers' own pipeline tests (a 2-block UNet with 32/64 channels, a 2-block VAE,
a 2-layer CLIP text encoder). Weights are redrawn as N(0, 1/fan_in) so every component's output is
O(1): with diffusers' default init some outputs are tiny and an image comparison would be vacuous.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tiny_models import _byte_vocab

if TYPE_CHECKING:
    from transformers import CLIPTokenizer

PIPELINE_CLASSES = {
    "text-to-image": "StableDiffusionPipeline",
    "image-to-image": "StableDiffusionImg2ImgPipeline",
    "inpainting": "StableDiffusionInpaintPipeline",
}
SDXL_PIPELINE_CLASSES = {"text-to-image": "StableDiffusionXLPipeline", "inpainting": "StableDiffusionXLInpaintPipeline"}
CROSS_ATTENTION_DIM = 32
MAX_TOKENS = 16
"""The tokenizer pads every prompt to this many tokens (SD uses 77)."""


def clip_tokenizer() -> "CLIPTokenizer":
    """A real CLIPTokenizer over a small byte-level vocabulary: every byte, every byte ending a word
    (``</w>``), a few merges, and CLIP's start/end tokens."""
    from transformers import CLIPTokenizer

    chars = list(_byte_vocab())[:256]  # every byte, spelled as byte-level BPE spells it
    merges = [("t", "h"), ("th", "e</w>"), ("a", "n"), ("o", "r"), ("i", "n"), ("e", "r</w>")]
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=MAX_TOKENS)
    ids = tokenizer("a cat the")["input_ids"]
    if len(ids) < 5 or len(set(ids[1:-1])) < 3:  # never trust a tokenizer without checking that it yields tokens
        raise RuntimeError(f"the tiny CLIP tokenizer is broken: 'a cat the' -> {ids}")
    return tokenizer


def _redraw(module: torch.nn.Module) -> None:
    """N(0, 1/fan_in) for every weight matrix/kernel: activations stay O(1) through the network."""
    with torch.no_grad():
        for parameter in module.parameters():
            if parameter.dim() > 1:
                fan_in = math.prod(parameter.shape[1:])
                parameter.normal_(0.0, 1.0 / math.sqrt(fan_in))


def build_components(seed: int = 0, in_channels: int = 4) -> dict[str, object]:
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=16, in_channels=in_channels, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=CROSS_ATTENTION_DIM, attention_head_dim=8, norm_num_groups=32,
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=32,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"), up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        sample_size=32,
    )
    text_config = CLIPTextConfig(
        vocab_size=600, hidden_size=CROSS_ATTENTION_DIM, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS, bos_token_id=0, eos_token_id=2, pad_token_id=1, projection_dim=32,
    )
    text_encoder = CLIPTextModel(text_config)
    for module in (unet, vae, text_encoder):
        _redraw(module)
        module.eval()
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True,
                              set_alpha_to_one=False, steps_offset=1)
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "scheduler": scheduler}


def build_tiny_sd(dest: Path, task: str = "text-to-image", seed: int = 0) -> Path:
    """Write a tiny random SD 1.x pipeline for ``task`` with ``save_pretrained``; returns ``dest``."""
    import diffusers

    dest = Path(dest)
    tokenizer = clip_tokenizer()
    components = build_components(seed, in_channels=9 if task == "inpainting" else 4)
    # The eos id of the text config must be the tokenizer's: CLIP pools at the first eos token.
    components["text_encoder"].config.eos_token_id = tokenizer.eos_token_id
    components["text_encoder"].config.bos_token_id = tokenizer.bos_token_id
    components["text_encoder"].config.pad_token_id = tokenizer.pad_token_id
    pipeline_class = getattr(diffusers, PIPELINE_CLASSES[task])
    pipe = pipeline_class(**components, tokenizer=tokenizer, safety_checker=None, feature_extractor=None,
                          requires_safety_checker=False)
    pipe.save_pretrained(dest)
    return dest


def build_tiny_sdxl(dest: Path, seed: int = 0, task: str = "text-to-image") -> Path:
    """A tiny random SDXL pipeline: two CLIP text encoders (the second with a projection), a UNet
    with SDXL's text/time added conditioning (9 input channels for inpainting), the SD VAE."""
    import diffusers
    from diffusers import EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = clip_tokenizer()
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    text_config = dict(vocab_size=600, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                       max_position_embeddings=MAX_TOKENS, projection_dim=32, **ids)
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(CLIPTextConfig(hidden_size=32, **text_config))
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(hidden_size=32, **text_config))
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=16, in_channels=9 if task == "inpainting" else 4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=64, attention_head_dim=(2, 4), use_linear_projection=True, norm_num_groups=32,
        addition_embed_type="text_time", addition_time_embed_dim=8, transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=80,  # 6 time ids × 8 + the second encoder's 32-wide projection
    )
    vae = build_components(seed)["vae"]
    for module in (unet, text_encoder, text_encoder_2):
        _redraw(module)
        module.eval()
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
                                       timestep_spacing="leading")
    pipeline_class = getattr(diffusers, SDXL_PIPELINE_CLASSES[task])
    pipe = pipeline_class(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
                                     tokenizer_2=tokenizer, unet=unet, scheduler=scheduler, add_watermarker=False)
    dest = Path(dest)
    pipe.save_pretrained(dest)
    return dest


LCM_PIPELINE_CLASSES = {"text-to-image": "LatentConsistencyModelPipeline", "image-to-image": "LatentConsistencyModelImg2ImgPipeline"}


def build_tiny_lcm(dest: Path, seed: int = 0, task: str = "text-to-image") -> Path:
    """A tiny random Latent Consistency Model pipeline: the SD components with a UNet that takes the
    guidance scale's embedding (``time_cond_proj_dim``) and diffusers' LCMScheduler."""
    import diffusers
    from diffusers import LCMScheduler, UNet2DConditionModel

    tokenizer = clip_tokenizer()
    components = build_components(seed)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=CROSS_ATTENTION_DIM, attention_head_dim=8, norm_num_groups=32, time_cond_proj_dim=32,
    )
    _redraw(unet)
    text_encoder = components["text_encoder"]
    text_encoder.config.eos_token_id, text_encoder.config.bos_token_id = tokenizer.eos_token_id, tokenizer.bos_token_id
    text_encoder.config.pad_token_id = tokenizer.pad_token_id
    scheduler = LCMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", set_alpha_to_one=True,
                             steps_offset=1, timestep_spacing="leading")
    pipe = getattr(diffusers, LCM_PIPELINE_CLASSES[task])(
        vae=components["vae"], text_encoder=text_encoder, tokenizer=tokenizer, unet=unet.eval(), scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    dest = Path(dest)
    pipe.save_pretrained(dest)
    return dest


SD3_PIPELINE_CLASSES = {"text-to-image": "StableDiffusion3Pipeline", "image-to-image": "StableDiffusion3Img2ImgPipeline",
                        "inpainting": "StableDiffusion3InpaintPipeline"}
SD3_T5_TOKENS = 24
"""The T5 prompt length the tiny SD3 pipeline is run with (``max_sequence_length``; SD3 uses 256)."""


def build_tiny_sd3(dest: Path, seed: int = 0, task: str = "text-to-image", t5: bool = True) -> Path:
    """A tiny random Stable Diffusion 3 pipeline: two CLIP text encoders with projections, a T5
    encoder, the MMDiT transformer (patch size 2) and a 16-channel VAE with SD3's shift factor,
    driven by the flow-matching Euler scheduler. The CLIP states (32 + 32 wide) fill the T5 width
    (64) exactly, as SD3's 768 + 1280 are padded to 4096. ``t5=False`` saves the pipeline without its
    T5 encoder, as users run SD3 to save memory (the pipeline feeds zeros in its place). The T5 tokenizer is the tiny WordPiece one: the
    pipeline only needs ids the T5 embedding table holds."""
    import diffusers
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel
    from tiny_models import make_tokenizer
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, T5Config, T5EncoderModel

    tokenizer = clip_tokenizer()
    t5_tokenizer = make_tokenizer(("input_ids", "attention_mask"), 512)
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    text_config = dict(vocab_size=600, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                       max_position_embeddings=MAX_TOKENS, projection_dim=32, hidden_size=32, **ids)
    torch.manual_seed(seed)
    text_encoder = CLIPTextModelWithProjection(CLIPTextConfig(**text_config))
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**text_config))
    text_encoder_3 = T5EncoderModel(T5Config(vocab_size=len(t5_tokenizer), d_model=64, d_ff=37, d_kv=16, num_layers=2, num_heads=4,
                                             relative_attention_num_buckets=8, pad_token_id=t5_tokenizer.pad_token_id))
    transformer = SD3Transformer2DModel(
        sample_size=16, patch_size=2, in_channels=16, num_layers=2, attention_head_dim=8, num_attention_heads=4,
        joint_attention_dim=64, caption_projection_dim=32, pooled_projection_dim=64, out_channels=16, pos_embed_max_size=32,
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=16, norm_num_groups=32,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"), up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        sample_size=32, shift_factor=0.0609, scaling_factor=1.5035, use_quant_conv=False, use_post_quant_conv=False,
    )
    for module in (text_encoder, text_encoder_2, text_encoder_3, transformer, vae):
        _redraw(module)
        module.eval()
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    pipe = getattr(diffusers, SD3_PIPELINE_CLASSES[task])(
        transformer=transformer, scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
        text_encoder_2=text_encoder_2, tokenizer_2=tokenizer, text_encoder_3=text_encoder_3 if t5 else None,
        tokenizer_3=t5_tokenizer if t5 else None)
    dest = Path(dest)
    pipe.save_pretrained(dest)
    return dest


FLUX_PIPELINE_CLASSES = {"text-to-image": "FluxPipeline", "image-to-image": "FluxImg2ImgPipeline", "inpainting": "FluxInpaintPipeline"}


def build_tiny_flux(dest: Path, seed: int = 0, task: str = "text-to-image") -> Path:
    """A tiny random FLUX.1-dev-style pipeline: a CLIP text encoder (its pooled output only), a T5
    encoder, the Flux transformer (one double-stream and one single-stream block, guidance embedded,
    rotary axes 4+6+6 = the head width) on 2×2-packed latents of a 4-channel VAE with a shift factor,
    driven by the flow-matching Euler scheduler with Flux's resolution-dependent shift."""
    import diffusers
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from tiny_models import make_tokenizer
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    tokenizer = clip_tokenizer()
    t5_tokenizer = make_tokenizer(("input_ids", "attention_mask"), 512)
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=600, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                                                max_position_embeddings=MAX_TOKENS, projection_dim=32, hidden_size=32, **ids))
    text_encoder_2 = T5EncoderModel(T5Config(vocab_size=len(t5_tokenizer), d_model=64, d_ff=37, d_kv=16, num_layers=2, num_heads=4,
                                             relative_attention_num_buckets=8, pad_token_id=t5_tokenizer.pad_token_id))
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=64, pooled_projection_dim=32, guidance_embeds=True, axes_dims_rope=(4, 6, 6),
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=32,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"), up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        sample_size=32, shift_factor=0.1159, scaling_factor=0.3611, use_quant_conv=False, use_post_quant_conv=False,
    )
    for module in (text_encoder, text_encoder_2, transformer, vae):
        _redraw(module)
        module.eval()
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    pipe = getattr(diffusers, FLUX_PIPELINE_CLASSES[task])(
        transformer=transformer, scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
        text_encoder_2=text_encoder_2, tokenizer_2=t5_tokenizer)
    dest = Path(dest)
    pipe.save_pretrained(dest)
    return dest
