"""``OBModelForSeq2SeqLM`` (T5, BART, Marian) and ``OBModelForSpeechSeq2Seq`` (Whisper).

The encoder graph runs once per ``generate()``; the ``decoder`` graph runs the first step and
returns the cross-attention keys/values, which ``decoder_with_past`` reuses at every later step.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import torch
from transformers.modeling_outputs import BaseModelOutput, Seq2SeqLMOutput

from ..backend import torch_runner
from ..encoder_outputs import ENCODER_MASK, EncoderOutputWithMask
from ..errors import InputError
from ..kv_cache import cache_name, cache_pairs, encoder_decoder_cache, take_cache
from ..optimum_folders import USE_CACHE_BRANCH, merged_decoder_feed
from .base import DECODER_UNSUPPORTED_WHEN_SET, OBModel, refuse_when_set, register_task_class
from .generation import GenerativeModel
from .inputs import prepare_inputs, prepare_torch_inputs, to_numpy


class EncoderRunner:
    """What ``generate()`` calls as ``model.get_encoder()``: runs the encoder graph."""

    def __init__(self, owner: "OBModelForSeq2SeqLM") -> None:
        self.owner = owner
        self.main_input_name = owner.main_input_name

    def __call__(self, *args: Any, **kwargs: Any) -> BaseModelOutput:
        return self.forward(*args, **kwargs)

    def forward(self, input_ids: Any = None, attention_mask: Any = None, input_features: Any = None, pixel_values: Any = None,
                flattened_patches: Any = None, input_values: Any = None, **_: Any) -> BaseModelOutput:
        session = self.owner.sessions["encoder"]
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "input_features": input_features, "pixel_values": pixel_values,
                 "flattened_patches": flattened_patches, "input_values": input_values}
        # Same checks (names, dtypes, ranks, fixed sizes) and defaults as the encoder-only classes.
        specs = list(self.owner.artifact.metadata.graphs["encoder"].inputs)
        takes = {spec.name for spec in specs}
        if input_features is not None and "attention_mask" in takes:  # frames first (Speech2Text): the mask is per frame
            if attention_mask is None:
                frames = tuple(input_features.shape[:2])
                given["attention_mask"] = torch.ones(frames, dtype=torch.long) if isinstance(input_features, torch.Tensor) else np.ones(frames, np.int64)
            elif len(getattr(attention_mask, "shape", ())) == 3:  # as the model does with a mask of the features' shape
                given["attention_mask"] = attention_mask[:, :, -1]
        # Whisper's encoder ignores an attention_mask in PyTorch too; its graph has none.
        given = {k: v for k, v in given.items() if v is not None and (k in takes or k != "attention_mask")}
        run_torch = torch_runner(session)
        if run_torch is not None and any(isinstance(v, torch.Tensor) for v in given.values()):
            # on the session's device (CUDA IO binding, Gaudi): the hidden states stay there
            return _encoder_output(run_torch(prepare_torch_inputs(specs, given)))
        feed = prepare_inputs(specs, given)[0]
        return _encoder_output({name: torch.from_numpy(value) for name, value in session.run(feed).items()})


def _encoder_output(outputs: dict[str, torch.Tensor]) -> BaseModelOutput:
    """The states; for an encoder that shortens padded audio (Moonshine, Speech2Text) also the mask at their length,
    which the decoder graphs take in place of the input's mask."""
    if ENCODER_MASK in outputs:
        return EncoderOutputWithMask(last_hidden_state=outputs["last_hidden_state"], attention_mask=outputs[ENCODER_MASK])
    return BaseModelOutput(last_hidden_state=outputs["last_hidden_state"])


@register_task_class
class OBModelForSeq2SeqLM(GenerativeModel, OBModel):
    """Replaces ``AutoModelForSeq2SeqLM``: ``model.generate(**tokenizer(texts, return_tensors="pt"))``."""

    task_name = "text2text-generation"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        layout = self.artifact.metadata.extra["kv_cache"]
        layers = range(layout["num_layers"])
        self._first_outputs = [(f"present.{i}.decoder.{p}", f"present.{i}.encoder.{p}") for i in layers for p in ("key", "value")]
        self._past_inputs = [f"past_key_values.{i}.{kind}.{p}" for i in layers for kind in ("decoder", "encoder") for p in ("key", "value")]
        self._later_outputs = [f"present.{i}.decoder.{p}" for i in layers for p in ("key", "value")]
        # what the encoder graph takes first (input_ids, input_features, input_values, pixel_values): generate(inputs=...) names it so
        self.main_input_name = str(layout.get("encoder_input") or self.main_input_name)
        self._init_generation(self.artifact.path, self.config)
        self._encoder = EncoderRunner(self)

    def _set_use_cache(self, use_cache: bool) -> None:
        """False: generate() runs the first-step decoder on the whole output so far at every step."""
        self.generation_config.use_cache = use_cache

    @property
    def use_cache(self) -> bool:
        """Whether generate() feeds the decoder its KV cache (Optimum's attribute; set by ``use_cache=`` at load)."""
        return self.generation_config.use_cache is not False

    def get_encoder(self) -> EncoderRunner:
        return self._encoder

    @property
    def encoder(self) -> EncoderRunner:
        """generate() validates encoder keyword arguments against ``model.encoder.forward``."""
        return self._encoder

    def forward(  # type: ignore[override]
        self,
        input_ids: Any = None,
        attention_mask: Any = None,
        decoder_input_ids: Any = None,
        encoder_outputs: Any = None,
        past_key_values: Any = None,
        use_cache: bool | None = None,
        input_features: Any = None,
        return_dict: bool | None = None,
        pixel_values: Any = None,
        flattened_patches: Any = None,
        input_values: Any = None,
        **kwargs: Any,
    ) -> Any:
        """One decoder step (running the encoder first when ``encoder_outputs`` is not given).
        The cache comes as ``cache=`` or ``past_key_values=`` (see ``OBModelForCausalLM.forward``)."""
        if kwargs.get("labels") is not None:
            raise InputError("labels are not supported by exported models (inference only)")
        refuse_when_set(kwargs, DECODER_UNSUPPORTED_WHEN_SET)
        if encoder_outputs is None:
            encoder_outputs = self._encoder(input_ids=input_ids, attention_mask=attention_mask, input_features=input_features,
                                            pixel_values=pixel_values, flattened_patches=flattened_patches, input_values=input_values)
        hidden_t = encoder_outputs[0]
        shortened = getattr(encoder_outputs, "attention_mask", None)
        if shortened is not None:  # padded audio: the input's mask is at the audio's length, this one at the states'
            attention_mask = shortened
        past = take_cache(past_key_values, kwargs)
        if decoder_input_ids is None:
            raise InputError("missing required input 'decoder_input_ids' (int64, shape (batch_size, decoder_sequence_length))")
        if self._on_device and isinstance(decoder_input_ids, torch.Tensor) and isinstance(hidden_t, torch.Tensor):
            result = self._step_on_device(decoder_input_ids, hidden_t, attention_mask, past, use_cache)
            return result if return_dict is not False else result.to_tuple()
        hidden = to_numpy("encoder_hidden_states", hidden_t)[0].astype(np.float32)
        batch, source_length = hidden.shape[:2]
        if attention_mask is None:
            encoder_mask = np.ones((batch, source_length), np.int64)
        else:
            encoder_mask = to_numpy("attention_mask", attention_mask)[0].astype(np.int64)
        ids = to_numpy("decoder_input_ids", decoder_input_ids)[0].astype(np.int64)
        feed = {"input_ids": ids, "encoder_attention_mask": encoder_mask, "encoder_hidden_states": hidden}
        logits, cache = self._decode(feed, past, use_cache, self._run_numpy, lambda t: t.detach().cpu().numpy())
        result = Seq2SeqLMOutput(logits=logits, **{cache_name(): cache},
                                 encoder_last_hidden_state=hidden_t if isinstance(hidden_t, torch.Tensor) else torch.from_numpy(hidden))
        return result if return_dict is not False else result.to_tuple()

    @property
    def _on_device(self) -> bool:
        """Whether every graph's session takes torch tensors (``run_torch``: CUDA IO binding, Gaudi)."""
        return all(torch_runner(session) is not None for session in self.sessions.values())

    def _step_on_device(self, decoder_input_ids: torch.Tensor, hidden: torch.Tensor, attention_mask: Any, past: Any,
                        use_cache: bool | None) -> Seq2SeqLMOutput:
        """forward() through ``run_torch``: the encoder states, the cross-attention keys/values of the
        first step and each step's self-attention presents stay where the session put them and are
        bound as the next step's inputs, so the cache never passes through host memory."""
        if decoder_input_ids.ndim != 2 or decoder_input_ids.is_floating_point():
            raise InputError(f"decoder_input_ids: expected integer token ids of shape (batch_size, decoder_sequence_length), "
                             f"got {decoder_input_ids.dtype} {tuple(decoder_input_ids.shape)}")
        batch, source_length = hidden.shape[:2]
        if attention_mask is None:
            encoder_mask = torch.ones((batch, source_length), dtype=torch.long, device=hidden.device)
        else:
            encoder_mask = torch.as_tensor(attention_mask, device=hidden.device).long()
        feed = {"input_ids": decoder_input_ids.long(), "encoder_attention_mask": encoder_mask, "encoder_hidden_states": hidden.float()}
        logits, cache = self._decode(feed, past, use_cache, self._run_torch, lambda t: t)
        return Seq2SeqLMOutput(logits=logits, **{cache_name(): cache}, encoder_last_hidden_state=hidden)

    def _decode(self, feed: dict[str, Any], past: Any, use_cache: bool | None,
                run: Callable[[str, dict[str, Any]], dict[str, torch.Tensor]], as_feed: Callable[[torch.Tensor], Any]) -> tuple[torch.Tensor, Any]:
        """One decoder step: ``decoder`` on an empty cache (it also returns the cross-attention
        keys/values), else ``decoder_with_past``. ``run`` returns torch tensors; ``as_feed`` turns a
        cached tensor into what ``run`` takes."""
        if past is None or past.self_attention_cache.get_seq_length() == 0:
            out = run("decoder", feed)
            self_pairs = [(out[k], out[v]) for (k, _), (v, _) in zip(self._first_outputs[0::2], self._first_outputs[1::2])]
            cross_pairs = [(out[k], out[v]) for (_, k), (_, v) in zip(self._first_outputs[0::2], self._first_outputs[1::2])]
        else:
            cross_pairs = cache_pairs(past.cross_attention_cache)
            flat = [as_feed(t) for s, c in zip(cache_pairs(past.self_attention_cache), cross_pairs) for t in (*s, *c)]
            feed.update(zip(self._past_inputs, flat))
            out = run("decoder_with_past", feed)
            presents = [out[name] for name in self._later_outputs]
            self_pairs = list(zip(presents[0::2], presents[1::2]))
        cache = encoder_decoder_cache(self_pairs, cross_pairs, zero_copy=True) if use_cache is not False else None
        return out["logits"], cache

    def _graph_feed(self, graph: str, feed: dict[str, Any]) -> dict[str, Any]:
        """The inputs ``graph`` takes; an Optimum merged decoder (one graph for both roles) also gets its branch flag."""
        names = self.sessions[graph].input_names
        feed = {k: v for k, v in feed.items() if k in names}
        if USE_CACHE_BRANCH in names:
            feed = merged_decoder_feed(self.artifact.metadata.graphs[graph], graph == "decoder_with_past", feed)
        return feed

    def _run_numpy(self, graph: str, feed: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(v) for k, v in self.sessions[graph].run(self._graph_feed(graph, feed)).items()}

    def _run_torch(self, graph: str, feed: dict[str, Any]) -> dict[str, torch.Tensor]:
        run_torch = torch_runner(self.sessions[graph])
        assert run_torch is not None, "used only when every session takes torch tensors"
        return run_torch(self._graph_feed(graph, feed))


class _WhisperStrides:
    """WhisperGenerationMixin reads ``model.encoder.conv1/conv2.stride`` off the PyTorch module tree
    to count input frames; an exported model has no module tree, so this answers just that."""

    def __init__(self, config: Any) -> None:
        stride = SimpleNamespace(stride=(1,)), SimpleNamespace(stride=(2,))  # Whisper's two convolutions
        self.encoder = SimpleNamespace(conv1=stride[0], conv2=stride[1])
        self.config = config


def _speech_class() -> type:
    """Built lazily: importing the Whisper generation code costs time that text users need not pay."""
    from transformers import GenerationMixin
    from transformers.models.whisper.generation_whisper import WhisperGenerationMixin

    @register_task_class
    class OBModelForSpeechSeq2Seq(WhisperGenerationMixin, OBModelForSeq2SeqLM):
        """Replaces ``AutoModelForSpeechSeq2Seq``: ``generate(input_features)`` with Whisper's own generation logic
        for Whisper, transformers' plain ``generate()`` for the others (Moonshine's ``input_values``, Speech2Text's
        frames), and ``pipeline("automatic-speech-recognition")``."""

        task_name = "automatic-speech-recognition"

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._strides = _WhisperStrides(self.config)
            named = _pipeline_named_class(type(self), self.config)
            if named is not None:
                self.__class__ = named

        def generate(self, *args: Any, **kwargs: Any) -> Any:
            if getattr(self.config, "model_type", "whisper") == "whisper":
                return WhisperGenerationMixin.generate(self, *args, **kwargs)
            return GenerationMixin.generate(self, *args, **kwargs)

        @property
        def model(self) -> Any:
            return self._strides

    OBModelForSpeechSeq2Seq.__module__ = __name__
    return OBModelForSpeechSeq2Seq


_NAMED_FOR_PIPELINES: dict[tuple[type, str], type] = {}


def _pipeline_named_class(cls: type, config: Any) -> type | None:
    """A subclass of ``cls`` carrying the transformers class's name, for models other than Whisper.

    transformers' ASR pipeline decodes with ``generate()`` only when the model's *class name* is one of
    ``AutoModelForSpeechSeq2Seq``'s (Whisper it knows by model type); any other name gets CTC decoding, which
    calls the model without decoder ids. So a Moonshine or Speech2Text model answers to its own class's name,
    and stays an instance of ``cls`` (and of OBModelForSpeechSeq2Seq) in every other respect."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES

    model_type = getattr(config, "model_type", "whisper")
    name = MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES.get(model_type)
    if model_type == "whisper" or not isinstance(name, str) or not name.isidentifier():
        return None
    key = (cls, name)
    if key not in _NAMED_FOR_PIPELINES:
        _NAMED_FOR_PIPELINES[key] = type(name, (cls,), {"__module__": cls.__module__, "__qualname__": f"{cls.__qualname__}[{name}]"})
    return _NAMED_FOR_PIPELINES[key]


def __getattr__(name: str) -> Any:
    if name == "OBModelForSpeechSeq2Seq":
        cls = _speech_class()
        globals()[name] = cls
        return cls
    raise AttributeError(name)
