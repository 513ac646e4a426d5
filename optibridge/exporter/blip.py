"""BLIP's captioner (``BlipForConditionalGeneration``) presented as the encoder-decoder that the
seq2seq exporter exports: its vision model is the encoder, its BERT-style text decoder (self- and
cross-attention, an ``EncoderDecoderCache``) the decoder.

BLIP's own ``generate()`` is not transformers' encoder-decoder generation: it runs the text decoder as
a decoder-only LM over the image features, on a prompt of ``text_config.bos_token_id``, stopping at
``sep_token_id``. The same search written as encoder-decoder generation starts from
``decoder_start_token_id = bos`` with ``eos = sep``: the saved config says so (and
``is_encoder_decoder``), so ``OBModelForVision2Seq.generate(pixel_values=...)`` returns what
``BlipForConditionalGeneration.generate(pixel_values)`` returns (unconditional captioning; a text
prompt becomes ``decoder_input_ids``).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from transformers import GenerationConfig
from transformers.modeling_outputs import BaseModelOutput, Seq2SeqLMOutput

from ..kv_cache import cache_name, output_cache


class BlipImageEncoder(torch.nn.Module):
    """The vision model, returning what an encoder returns."""

    main_input_name = "pixel_values"

    def __init__(self, vision_model: torch.nn.Module) -> None:
        super().__init__()
        self.vision_model = vision_model

    def forward(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False, return_dict: bool = True,
                **_: Any) -> BaseModelOutput:
        hidden = self.vision_model(pixel_values=pixel_values, interpolate_pos_encoding=interpolate_pos_encoding)[0]
        return BaseModelOutput(last_hidden_state=hidden)


class BlipCaptioner(torch.nn.Module):
    """``encoder_outputs`` + ``decoder_input_ids`` (+ cache) → logits, as a seq2seq LM's forward."""

    text_decoder: Any  # BlipTextLMHeadModel
    config: Any
    generation_config: Any

    def __init__(self, blip: Any) -> None:
        super().__init__()
        self.vision_model = blip.vision_model
        self.text_decoder = blip.text_decoder
        text = blip.config.text_config
        config = copy.deepcopy(blip.config)
        config.is_encoder_decoder = True
        config.decoder_start_token_id = text.bos_token_id
        config.bos_token_id, config.eos_token_id, config.pad_token_id = text.bos_token_id, text.sep_token_id, text.pad_token_id
        self.config = config
        self.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
            decoder_start_token_id=text.bos_token_id, bos_token_id=text.bos_token_id, eos_token_id=text.sep_token_id,
            pad_token_id=text.pad_token_id, max_length=blip.generation_config.max_length,
        )
        self._encoder = BlipImageEncoder(self.vision_model)

    def get_encoder(self) -> BlipImageEncoder:
        return self._encoder

    def forward(self, encoder_outputs: Any, decoder_input_ids: torch.Tensor, decoder_attention_mask: torch.Tensor | None = None,
                use_cache: bool = True, return_dict: bool = True, **kwargs: Any) -> Seq2SeqLMOutput:
        out = self.text_decoder(
            input_ids=decoder_input_ids, attention_mask=decoder_attention_mask, encoder_hidden_states=encoder_outputs[0],
            **{cache_name(): kwargs.get(cache_name())}, use_cache=use_cache, return_dict=True,
        )
        return Seq2SeqLMOutput(logits=out.logits, **{cache_name(): output_cache(out)})
