"""Tiny image captioners (ViT encoder + GPT-2 decoder with cross-attention; BLIP) and tiny multimodal
decoder LM (llava: CLIP vision tower + llama), built offline from configs with N(0, 1/fan_in) weights."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import transformers

sys.path.insert(0, str(Path(__file__).parent / "coverage"))
from tiny_configs import redraw_weights  # noqa: E402
from tiny_models import VOCAB_SIZE, make_tokenizer  # noqa: E402

BOS, EOS, PAD = 2, 3, 0  # the tiny tokenizer's [CLS], [SEP], [PAD]
IMAGE = 32


def build_tiny_captioner(dest: Path) -> Path:
    """``VisionEncoderDecoderModel`` (ViT 32 px / patch 8 → GPT-2 with cross-attention), tokenizer and image processor."""
    encoder = transformers.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                                     image_size=IMAGE, patch_size=8)
    decoder = transformers.GPT2Config(vocab_size=VOCAB_SIZE, n_embd=24, n_layer=2, n_head=4, n_positions=64,
                                      add_cross_attention=True, is_decoder=True, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD)
    config = transformers.VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id, config.pad_token_id, config.eos_token_id = BOS, PAD, EOS
    torch.manual_seed(0)
    model = transformers.VisionEncoderDecoderModel(config).eval()
    redraw_weights(model)
    model.save_pretrained(dest)
    model.generation_config.save_pretrained(dest)
    make_tokenizer().save_pretrained(dest)
    transformers.ViTImageProcessorPil(size={"height": IMAGE, "width": IMAGE}).save_pretrained(dest)
    return Path(dest)


def build_tiny_blip(dest: Path) -> Path:
    """``BlipForConditionalGeneration`` (vision 32 px / patch 8, BERT-style text decoder), tokenizer, image processor."""
    vision = transformers.BlipVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                                           image_size=IMAGE, patch_size=8)
    text = transformers.BlipTextConfig(vocab_size=VOCAB_SIZE, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                                       num_attention_heads=4, encoder_hidden_size=32, max_position_embeddings=64,
                                       bos_token_id=BOS, sep_token_id=EOS, eos_token_id=EOS, pad_token_id=PAD)
    config = transformers.BlipConfig(vision_config=vision.to_dict(), text_config=text.to_dict())
    config.architectures = ["BlipForConditionalGeneration"]
    torch.manual_seed(0)
    model = transformers.BlipForConditionalGeneration(config).eval()
    redraw_weights(model)
    model.save_pretrained(dest)
    make_tokenizer().save_pretrained(dest)
    transformers.BlipImageProcessorPil(size={"height": IMAGE, "width": IMAGE}).save_pretrained(dest)
    return Path(dest)


def build_tiny_llava(dest: Path) -> Path:
    """``LlavaForConditionalGeneration`` (CLIP vision tower + projector + llama) and its ``LlavaProcessor``: the tiny
    tokenizer with an ``<image>`` token (the last id of the vocabulary; left padding) and a 32 px CLIP image processor."""
    tokenizer = make_tokenizer(model_input_names=("input_ids", "attention_mask"))  # as llama's: no token types
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    tokenizer.padding_side = tokenizer.init_kwargs["padding_side"] = "left"  # saved: a decoder pads on the left
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    text = transformers.LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=40, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                                    bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD)
    vision = transformers.CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                                           image_size=IMAGE, patch_size=8, projection_dim=32)
    config = transformers.LlavaConfig(vision_config=vision, text_config=text, image_token_id=image_token_id,
                                      vision_feature_layer=-1)
    config.architectures = ["LlavaForConditionalGeneration"]
    torch.manual_seed(0)
    model = transformers.LlavaForConditionalGeneration(config).eval()
    redraw_weights(model)
    model.generation_config.pad_token_id = PAD
    model.save_pretrained(dest)
    model.generation_config.save_pretrained(dest)
    images = transformers.CLIPImageProcessor(size={"shortest_edge": IMAGE}, crop_size={"height": IMAGE, "width": IMAGE})
    transformers.LlavaProcessor(image_processor=images, tokenizer=tokenizer, patch_size=8, vision_feature_select_strategy="default",
                                num_additional_image_tokens=1, image_token="<image>").save_pretrained(dest)
    return Path(dest)


def build_tiny_llava_next(dest: Path) -> Path:
    """``LlavaNextForConditionalGeneration`` (images tiled by size: 32 px tiles, grids up to 2x2) and its ``LlavaNextProcessor``."""
    tokenizer = make_tokenizer(model_input_names=("input_ids", "attention_mask"))
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    tokenizer.padding_side = tokenizer.init_kwargs["padding_side"] = "left"
    text = transformers.LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=40, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                    bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD)
    vision = transformers.CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                                           image_size=IMAGE, patch_size=8, projection_dim=32)
    grids = [[IMAGE, IMAGE], [IMAGE, 2 * IMAGE], [2 * IMAGE, IMAGE], [2 * IMAGE, 2 * IMAGE]]
    config = transformers.LlavaNextConfig(vision_config=vision.to_dict(), text_config=text.to_dict(), vision_feature_layer=-1,
                                          image_token_index=tokenizer.convert_tokens_to_ids("<image>"), image_grid_pinpoints=grids)
    config.architectures = ["LlavaNextForConditionalGeneration"]
    torch.manual_seed(0)
    model = transformers.LlavaNextForConditionalGeneration(config).eval()
    redraw_weights(model)
    with torch.no_grad():
        model.model.image_newline.normal_()  # O(1), as the other weights
    model.generation_config.pad_token_id = PAD
    model.save_pretrained(dest)
    model.generation_config.save_pretrained(dest)
    images = transformers.LlavaNextImageProcessor(size={"shortest_edge": IMAGE}, crop_size={"height": IMAGE, "width": IMAGE},
                                                  image_grid_pinpoints=grids)
    transformers.LlavaNextProcessor(image_processor=images, tokenizer=tokenizer, patch_size=8, vision_feature_select_strategy="default",
                                    num_additional_image_tokens=1, image_token="<image>").save_pretrained(dest)
    return Path(dest)


def build_tiny_gemma3(dest: Path) -> Path:
    """``Gemma3ForConditionalGeneration``: SigLIP (32 px / patch 8) pooled to 4 placeholder rows per image, a gemma3 text
    model with a sliding-window layer (window 4) and a full one, so that both the window and each image's two-way
    block shape the logits. No processor (gemma3's needs its tokenizer's image tokens): prompts are built by hand."""
    text = transformers.Gemma3TextConfig(vocab_size=300, hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
                                         num_key_value_heads=2, head_dim=8, max_position_embeddings=256, sliding_window=4,
                                         layer_types=["sliding_attention", "full_attention"], bos_token_id=2, eos_token_id=1, pad_token_id=0)
    vision = transformers.SiglipVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                                             image_size=IMAGE, patch_size=8)
    config = transformers.Gemma3Config(text_config=text.to_dict(), vision_config=vision.to_dict(), mm_tokens_per_image=4,
                                       image_token_index=299, boi_token_index=297, eoi_token_index=298)
    config.architectures = ["Gemma3ForConditionalGeneration"]
    torch.manual_seed(0)
    model = transformers.Gemma3ForConditionalGeneration(config).eval()
    redraw_weights(model)
    model.generation_config.pad_token_id = 0
    model.save_pretrained(dest)
    model.generation_config.save_pretrained(dest)
    return Path(dest)


def build_tiny_pix2struct(dest: Path) -> Path:
    """``Pix2StructForConditionalGeneration`` (16-pixel patches, 2+2 layers) and its image processor (16 patches per image)."""
    vision = transformers.Pix2StructVisionConfig(hidden_size=32, patch_embed_hidden_size=16 * 16 * 3, d_ff=37, d_kv=8, num_hidden_layers=2,
                                                 num_attention_heads=4, seq_len=64)
    text = transformers.Pix2StructTextConfig(vocab_size=VOCAB_SIZE, hidden_size=32, d_ff=37, d_kv=8, num_layers=2, num_heads=4,
                                             decoder_start_token_id=PAD, pad_token_id=PAD, eos_token_id=EOS)
    config = transformers.Pix2StructConfig(vision_config=vision.to_dict(), text_config=text.to_dict(), decoder_start_token_id=PAD,
                                           pad_token_id=PAD, eos_token_id=EOS)
    config.architectures = ["Pix2StructForConditionalGeneration"]
    torch.manual_seed(0)
    model = transformers.Pix2StructForConditionalGeneration(config).eval()
    redraw_weights(model)
    model.save_pretrained(dest)
    transformers.Pix2StructImageProcessor(max_patches=16, patch_size={"height": 16, "width": 16}).save_pretrained(dest)
    return Path(dest)


def write_images(folder: Path, count: int, seed: int = 0) -> Path:
    """``count`` random RGB PNGs of different sizes (32 high, 40, 48, ... wide) in a new ``folder``: images a
    processor must resize. Returns the folder."""
    import numpy as np
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (32, 40 + 8 * i, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder
