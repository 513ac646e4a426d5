"""``OBModelForCausalLM``: a decoder LM whose forward runs the exported graph, driven by
transformers' own ``GenerationMixin`` — so greedy, sampling, beam search, stopping criteria,
``GenerationConfig`` and ``pipeline("text-generation")`` behave exactly as with PyTorch."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers.modeling_outputs import CausalLMOutputWithPast

from ..errors import InputError
from ..kv_cache import cache_from_pairs, cache_name, cache_pairs, cache_shapes, past_length, take_cache
from ..backend import LOGITS_TO_KEEP, is_stateful, takes_optional_input, torch_runner
from .base import DECODER_UNSUPPORTED_WHEN_SET, OBModel, refuse_when_set, register_task_class
from .generation import GenerativeModel
from .inputs import check_dropped_token_types, to_numpy
from .native_generate import DecoderLayout, NativeGenerationMixin, emittable
from .stateful import stateful_step


IMAGE_INPUTS = ("pixel_values", "pixel_attention_mask", "image_sizes", "image_grid_thw", "pixel_values_videos")


def refuse_image_inputs(extra: dict[str, Any], kwargs: dict[str, Any]) -> None:
    """A causal LM graph takes token ids only; image inputs would otherwise be dropped without a word."""
    given = next((name for name in IMAGE_INPUTS if kwargs.get(name) is not None), None)
    if given is None:
        return
    text_only = extra.get("text_only") or {}
    source = f"the text-only export of a {text_only['source_model_type']} model" if text_only.get("source_model_type") else "a text-only language model"
    raise InputError(
        f"{given}: image inputs are not supported; this artifact is {source} (its language model and LM head, "
        "without the vision tower), so it takes input_ids only. Pass text alone, or export a llava-style model with "
        "--task image-text-to-text (OBModelForVisualCausalLM) to give it images"
    )


@register_task_class
class OBModelForCausalLM(NativeGenerationMixin, GenerativeModel, OBModel):
    """Replaces ``AutoModelForCausalLM``: ``model.generate(**inputs)`` and text-generation pipelines.

    Greedy batch-1 ``generate()`` calls run in the backend's native decode loop where it has one
    (openvino-genai, onnxruntime-genai): see :mod:`.native_generate` and ``last_generation_engine``."""

    task_name = "text-generation"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        extra = self.artifact.metadata.extra
        layout = extra.get("kv_cache")
        self.use_cache = bool(extra.get("use_cache")) and layout is not None
        self._graph_has_cache = self.use_cache
        """The graph takes past_* inputs; with ``use_cache`` off they get an empty cache every step."""
        self._kv: dict[str, Any] = layout or {}  # the KV-cache layout; read only when the graph has a cache
        self._past_names = [f"past_key_values.{i}.{k}" for i in range(layout["num_layers"]) for k in ("key", "value")] if layout else []
        self._present_names = [f"present.{i}.{k}" for i in range(layout["num_layers"]) for k in ("key", "value")] if layout else []
        self._init_generation(self.artifact.path, self.config)
        self._native = None
        # Graphs of models without position_ids (ALiBi: bloom, falcon) have no such input.
        self._graph_inputs = frozenset(spec.name for spec in self.artifact.metadata.inputs)
        if not self.use_cache:
            self.generation_config.use_cache = False  # the graph recomputes the whole sequence each step

    @classmethod
    def from_pretrained(cls, *args: Any, generation_engine: str = "auto", **kwargs: Any) -> Any:
        """As :meth:`OBModel.from_pretrained`; ``generation_engine``: "auto", "native" or "transformers"
        (see :mod:`optibridge.modeling.native_generate`)."""
        model = super().from_pretrained(*args, **kwargs)
        model.set_generation_engine(generation_engine)
        return model

    def _decoder_layout(self) -> DecoderLayout | None:
        if not self._graph_has_cache or not self.use_cache:
            return None
        if self._kv.get("value_head_dim") not in (None, self._kv["head_dim"]):
            self._native_error = ("its cache keeps keys and values at different widths (multi-head latent attention), "
                                  "which the native engines' configs cannot describe")
            return None
        config = self.config
        context = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None) or 2048
        eos = self.generation_config.eos_token_id
        eos_ids = tuple(eos) if isinstance(eos, (list, tuple)) else (() if eos is None else (eos,))
        vocab = int(config.vocab_size)
        return DecoderLayout(int(self._kv["num_layers"]), int(self._kv["num_heads"]), int(self._kv["head_dim"]),
                             vocab, int(context), emittable(tuple(int(e) for e in eos_ids), vocab))

    def _validate_model_kwargs(self, model_kwargs: dict[str, Any]) -> None:
        """generate(): image inputs get optibridge's reason before transformers' "not used by the model"."""
        self._check_image_inputs(model_kwargs)
        # decoder graphs never take them: where PyTorch would use them, say so before transformers calls them "not used"
        check_dropped_token_types(model_kwargs.get("token_type_ids"), self.config)
        super()._validate_model_kwargs(model_kwargs)  # type: ignore[misc]  # transformers types self as its own GenerationMixin host

    def _check_image_inputs(self, kwargs: dict[str, Any]) -> None:
        refuse_image_inputs(self.artifact.metadata.extra, kwargs)

    def _image_feed(self, ids: np.ndarray, past: int, kwargs: dict[str, Any]) -> dict[str, np.ndarray]:
        """Graph inputs besides the tokens, mask and positions (a decoder that takes images adds them)."""
        return {}

    def _set_use_cache(self, use_cache: bool) -> None:
        if use_cache and not self._graph_has_cache:
            raise InputError(f"{self.artifact.path} was exported without a KV cache; re-export it with the cache to pass use_cache=True")
        self.use_cache = use_cache
        self.generation_config.use_cache = use_cache

    def forward(  # type: ignore[override]
        self,
        input_ids: Any = None,
        attention_mask: Any = None,
        position_ids: Any = None,
        past_key_values: Any = None,
        use_cache: bool | None = None,
        return_dict: bool | None = None,
        logits_to_keep: Any = 0,
        **kwargs: Any,
    ) -> Any:
        """One step: new tokens (and the cache of earlier ones) in, logits (and the grown cache) out.

        The cache comes as ``cache=`` (what ``generate()`` passes from transformers 5.24 on) or
        ``past_key_values=`` (earlier releases), and goes out under the installed release's name.
        ``logits_to_keep`` as in transformers: an int k > 0 keeps the logits of the last k positions
        (``generate()`` passes 1; a stateful OpenVINO decoder then skips the LM head for the rest of
        the prompt), 0 keeps all, a 1-D tensor names the positions to keep."""
        keep_last = _last_positions(logits_to_keep)
        past_key_values = take_cache(past_key_values, kwargs)
        for name in ("inputs_embeds", "labels"):
            if kwargs.get(name) is not None:
                raise InputError(f"{name} is not supported by exported models; pass input_ids")
        self._check_image_inputs(kwargs)
        refuse_when_set(kwargs, DECODER_UNSUPPORTED_WHEN_SET)
        check_dropped_token_types(kwargs.pop("token_type_ids", None), self.config)
        if input_ids is None:
            raise InputError("missing required input 'input_ids' (int64, shape (batch_size, sequence_length))")
        run_torch = torch_runner(self.session)
        if run_torch is not None and isinstance(input_ids, torch.Tensor):
            result = self._step_on_device(run_torch, input_ids, attention_mask, position_ids, past_key_values, use_cache, kwargs)
            result.logits = keep_logits(result.logits, logits_to_keep)
            return result if return_dict is not False else result.to_tuple()
        ids, as_torch = to_numpy("input_ids", input_ids)
        if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
            raise InputError(f"input_ids: expected integer token ids of shape (batch_size, sequence_length), got {ids.dtype} {tuple(ids.shape)}")
        ids = ids.astype(np.int64)
        batch, new = ids.shape
        past = past_length(past_key_values) if self.use_cache else 0
        if attention_mask is None:
            mask = np.ones((batch, past + new), np.int64)
        else:
            mask = to_numpy("attention_mask", attention_mask)[0].astype(np.int64)
            if mask.shape != (batch, past + new):
                raise InputError(
                    f"attention_mask has shape {tuple(mask.shape)}; expected (batch_size, past + new tokens) = {(batch, past + new)}"
                )
        if position_ids is None:
            positions = np.cumsum(mask, axis=-1) - 1
            positions = np.where(mask == 0, 1, positions)[:, -new:]
        else:
            positions = to_numpy("position_ids", position_ids)[0].astype(np.int64)
        feed = {"input_ids": ids, "attention_mask": mask, "position_ids": positions, **self._image_feed(ids, past, kwargs)}
        if "position_ids" not in self._graph_inputs:  # Optimum's gpt2 graph (optimum-onnx 0.1) derives them from the mask itself
            del feed["position_ids"]
        if self._graph_has_cache and is_stateful(self.session):  # the session keeps the cache (OpenVINO)
            logits, stateful_cache = stateful_step(self.session, feed, past, past_key_values, keep_last)
            logits = keep_logits(logits, logits_to_keep)  # a no-op where the session computed only those
            kept = stateful_cache if self.use_cache else None
            result = CausalLMOutputWithPast(logits=torch.from_numpy(logits) if as_torch else logits, **{cache_name(): kept})  # type: ignore[arg-type]  # numpy logits for numpy callers, our cache class: transformers types the fields as torch's
            return result if return_dict is not False else result.to_tuple()
        if self._graph_has_cache:
            pairs = cache_pairs(past_key_values) if past else []
            if pairs:
                flat = [t.detach().cpu().numpy() for pair in pairs for t in pair]
            else:
                flat = [np.zeros(shape, np.float32) for shape in cache_shapes(self._kv, batch)]
            feed.update(zip(self._past_names, flat))
        if keep_last and takes_optional_input(self.session, LOGITS_TO_KEEP):  # the graph skips the LM head for the rest
            feed[LOGITS_TO_KEEP] = np.array(keep_last, np.int64)
        outputs = self.session.run(feed)
        logits = keep_logits(outputs["logits"], logits_to_keep)  # a no-op where the graph computed only those
        cache = None
        if self.use_cache and use_cache is not False:
            presents = [torch.from_numpy(outputs[name]) for name in self._present_names]
            cache = cache_from_pairs(list(zip(presents[0::2], presents[1::2])), zero_copy=True)
        logits_out = torch.from_numpy(logits) if as_torch else logits
        result = CausalLMOutputWithPast(logits=logits_out, **{cache_name(): cache})
        return result if return_dict is not False else result.to_tuple()

    def _step_on_device(
        self, run_torch: Any, input_ids: torch.Tensor, attention_mask: Any, position_ids: Any, past_key_values: Any,
        use_cache: bool | None, kwargs: dict[str, Any],
    ) -> CausalLMOutputWithPast:
        """forward() through ``session.run_torch`` (CUDA IO binding, Gaudi): the present tensors the
        session returns go into the cache as they are and are bound as the next step's past, so the
        cache never passes through host memory."""
        from ..exporter.decoder import position_ids_from_mask

        if input_ids.ndim != 2 or input_ids.is_floating_point():
            raise InputError(f"input_ids: expected integer token ids of shape (batch_size, sequence_length), got {input_ids.dtype} {tuple(input_ids.shape)}")
        ids = input_ids.long()
        batch, new = ids.shape
        past = past_length(past_key_values) if self.use_cache else 0
        if attention_mask is None:
            mask = torch.ones((batch, past + new), dtype=torch.long, device=ids.device)
        else:
            mask = torch.as_tensor(attention_mask, device=ids.device).long()
            if tuple(mask.shape) != (batch, past + new):
                raise InputError(
                    f"attention_mask has shape {tuple(mask.shape)}; expected (batch_size, past + new tokens) = {(batch, past + new)}"
                )
        positions = position_ids_from_mask(mask, new) if position_ids is None else torch.as_tensor(position_ids, device=ids.device).long()
        images = self._image_feed(ids.cpu().numpy(), past, kwargs)
        feed = {"input_ids": ids, "attention_mask": mask, "position_ids": positions,
                **{name: torch.from_numpy(value).to(ids.device) for name, value in images.items()}}
        if "position_ids" not in self._graph_inputs:
            del feed["position_ids"]
        if self._graph_has_cache:
            flat = [t for pair in (cache_pairs(past_key_values) if past else []) for t in pair]
            if not flat:
                flat = [torch.zeros(shape, device=ids.device) for shape in cache_shapes(self._kv, batch)]
            feed.update(zip(self._past_names, flat))
        outputs = run_torch(feed)
        cache = None
        if self.use_cache and use_cache is not False:
            presents = [outputs[name] for name in self._present_names]
            cache = cache_from_pairs(list(zip(presents[0::2], presents[1::2])), zero_copy=True)
        return CausalLMOutputWithPast(logits=outputs["logits"], **{cache_name(): cache})


def _last_positions(logits_to_keep: Any) -> int:
    """k of ``logits_to_keep=k`` (0 for a tensor of positions, which is applied afterwards)."""
    if isinstance(logits_to_keep, (int, np.integer)) and not isinstance(logits_to_keep, bool):
        if logits_to_keep < 0:
            raise InputError(f"logits_to_keep must be >= 0 (0 keeps every position), got {logits_to_keep}")
        return int(logits_to_keep)
    if getattr(logits_to_keep, "ndim", None) != 1:
        raise InputError(f"logits_to_keep: expected an int or a 1-D tensor of positions, got {type(logits_to_keep).__name__}")
    return 0


def keep_logits(logits: Any, logits_to_keep: Any) -> Any:
    """``logits`` (batch, positions, vocab; numpy or torch) reduced as transformers' ``logits_to_keep`` says."""
    last = _last_positions(logits_to_keep)
    if last:
        return logits[:, -last:]
    if isinstance(logits_to_keep, (int, np.integer)):
        return logits
    positions = to_numpy("logits_to_keep", logits_to_keep)[0].astype(np.int64)
    if isinstance(logits, torch.Tensor):
        return logits[:, torch.from_numpy(positions).to(logits.device)]
    return logits[:, positions]
