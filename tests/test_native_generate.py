"""Native decode loops behind OBModelForCausalLM.generate(): onnxruntime-genai and openvino-genai.

Greedy tokens must equal PyTorch's; the engine that ran is reported; what a native loop does not
reproduce falls back to transformers with a reason (or is refused with generation_engine="native")."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from transformers import AutoModelForCausalLM, GenerationConfig

from optibridge import OBModelForCausalLM
from optibridge.errors import InputError
from optibridge.modeling.native_generate import DecoderLayout, GreedyRequest, greedy_request

PROMPT = torch.tensor([[5, 17, 42, 8, 23, 11, 64, 3]])
EXACTLY_16 = dict(max_new_tokens=16, min_new_tokens=16, do_sample=False)


def _reference(path):
    return AutoModelForCausalLM.from_pretrained(path).eval()


def _expected(path, **settings):
    with torch.inference_mode():
        return _reference(path).generate(input_ids=PROMPT, attention_mask=torch.ones_like(PROMPT), **settings)


def test_greedy_request_takes_plain_greedy_calls_and_names_what_it_cannot_run():
    config = GenerationConfig(eos_token_id=2, pad_token_id=0)
    request = greedy_request(config, (), {"input_ids": PROMPT, "max_new_tokens": 5, "min_new_tokens": 2})
    assert isinstance(request, GreedyRequest)
    assert (request.max_new_tokens, request.min_new_tokens, request.eos_token_ids) == (5, 2, (2,))
    assert greedy_request(GenerationConfig(max_length=20), (), {"input_ids": PROMPT}).max_new_tokens == 12  # type: ignore[union-attr]
    reasons = {
        "sampling": greedy_request(config, (), {"input_ids": PROMPT, "do_sample": True}),
        "beams": greedy_request(config, (), {"input_ids": PROMPT, "num_beams": 2}),
        "penalty": greedy_request(config, (), {"input_ids": PROMPT, "repetition_penalty": 1.3}),
        "config penalty": greedy_request(GenerationConfig(repetition_penalty=1.3), (), {"input_ids": PROMPT}),
        "batch": greedy_request(config, (), {"input_ids": PROMPT.repeat(2, 1)}),
        "padding": greedy_request(config, (), {"input_ids": PROMPT, "attention_mask": torch.tensor([[0] + [1] * 7])}),
    }
    assert reasons["sampling"] == reasons["beams"] == "sampling or beam search (the native loop runs greedy search only)"
    assert "repetition_penalty" in reasons["penalty"] and "repetition_penalty=1.3" in reasons["config penalty"]
    assert "batch 1" in reasons["batch"] and "padding" in reasons["padding"]


@pytest.mark.parametrize("model_type", ["gpt2", "llama"])
def test_onnxruntime_genai_gives_pytorch_greedy_tokens_and_reports_itself(model_type, tiny_generative, exported_generative):
    pytest.importorskip("onnxruntime_genai")
    path = tiny_generative(model_type)
    model = OBModelForCausalLM.from_pretrained(exported_generative(model_type).path, intra_op_num_threads=1)
    ours = model.generate(input_ids=PROMPT, attention_mask=torch.ones_like(PROMPT), **EXACTLY_16)
    assert model.last_generation_engine == "onnxruntime-genai" and model.generation_fallback_reason is None
    expected = _expected(path, **EXACTLY_16)
    assert ours.shape == (1, PROMPT.shape[1] + 16) and torch.equal(ours, expected)
    # an end-of-sequence id the loop was not loaded with: transformers runs it, same tokens, with the reason
    stop = int(expected[0, PROMPT.shape[1] + 3])
    theirs = _expected(path, max_new_tokens=16, eos_token_id=stop, pad_token_id=0)
    assert torch.equal(model.generate(input_ids=PROMPT, max_new_tokens=16, eos_token_id=stop, pad_token_id=0), theirs)
    assert model.last_generation_engine == "transformers" and "eos_token_id" in model.generation_fallback_reason


@pytest.mark.parametrize("position", [0, 3])
def test_onnxruntime_genai_returns_the_eos_token_it_stopped_on(position, tiny_generative, exported_generative):
    # onnxruntime-genai leaves the eos out of its sequence; transformers (and Optimum) end the output with it
    pytest.importorskip("onnxruntime_genai")
    path = tiny_generative("gpt2")
    free_run = _expected(path, **EXACTLY_16)[0, PROMPT.shape[1]:].tolist()
    stop = free_run[position]
    assert stop not in free_run[:position]  # so the reference stops exactly at `position`
    model = OBModelForCausalLM.from_pretrained(exported_generative("gpt2").path, intra_op_num_threads=1)
    model.generation_config.eos_token_id = stop  # before the native loop loads: the id it is loaded with
    ours = model.generate(input_ids=PROMPT, max_new_tokens=16, pad_token_id=0)
    assert model.last_generation_engine == "onnxruntime-genai"
    expected = _expected(path, max_new_tokens=16, eos_token_id=stop, pad_token_id=0)
    assert expected.shape[1] == PROMPT.shape[1] + position + 1 and int(expected[0, -1]) == stop
    assert torch.equal(ours, expected)


def test_unsupported_settings_fall_back_with_a_reason_or_are_refused(tiny_generative, exported_generative):
    pytest.importorskip("onnxruntime_genai")
    path = tiny_generative("gpt2")
    artifact = exported_generative("gpt2")
    model = OBModelForCausalLM.from_pretrained(artifact.path, intra_op_num_threads=1)
    penalised = dict(max_new_tokens=8, do_sample=False, repetition_penalty=1.5)
    assert torch.equal(model.generate(input_ids=PROMPT, **penalised), _expected(path, **penalised))
    assert model.last_generation_engine == "transformers"
    assert model.generation_fallback_reason == "generate() argument 'repetition_penalty'"

    strict = OBModelForCausalLM.from_pretrained(artifact.path, generation_engine="native")
    with pytest.raises(InputError, match="generation_engine='native' cannot run this call: sampling or beam search"):
        strict.generate(input_ids=PROMPT, max_new_tokens=4, num_beams=2)
    plain = OBModelForCausalLM.from_pretrained(artifact.path, generation_engine="transformers")
    assert torch.equal(plain.generate(input_ids=PROMPT, **EXACTLY_16), _expected(path, **EXACTLY_16))
    assert plain.last_generation_engine == "transformers"
    with pytest.raises(InputError, match="generation_engine must be one of auto, native, transformers"):
        OBModelForCausalLM.from_pretrained(artifact.path, generation_engine="fast")


@pytest.mark.parametrize("model_type", ["gpt2", "llama"])
def test_openvino_genai_runs_the_stateful_ir_with_the_recorded_precision(model_type, tiny_generative, exported_generative, tmp_path):
    pytest.importorskip("openvino_genai")
    from optibridge import OptimizationConfig, optimize

    path = tiny_generative(model_type)
    ir = optimize(exported_generative(model_type).path, OptimizationConfig(level=1), tmp_path / "ir", backend="openvino").artifact
    model = OBModelForCausalLM.from_pretrained(ir.path, backend="openvino", inference_num_threads=1)
    ours = model.generate(input_ids=PROMPT, attention_mask=torch.ones_like(PROMPT), **EXACTLY_16)
    assert model.last_generation_engine == "openvino-genai"
    assert torch.equal(ours, _expected(path, **EXACTLY_16))
    # the pipeline is compiled with the session's precision and an f32 KV cache (OpenVINO's u8 default changes tokens)
    decoder = model.native_decoder()
    assert model.inference_precision == "f32"
    assert decoder.properties["INFERENCE_PRECISION_HINT"] == "f32" and decoder.properties["KV_CACHE_PRECISION"] == "f32"
    # an eos id per call: openvino-genai stops there, as transformers does
    stop = int(ours[0, PROMPT.shape[1] + 2])
    stopped = model.generate(input_ids=PROMPT, max_new_tokens=16, eos_token_id=stop, pad_token_id=0)
    assert model.last_generation_engine == "openvino-genai"
    assert torch.equal(stopped, _expected(path, max_new_tokens=16, eos_token_id=stop, pad_token_id=0))


def test_a_native_loop_that_fails_at_run_time_falls_back_to_transformers(tiny_generative, exported_generative):
    from optibridge.errors import BackendError

    class Refusing:
        engine = "refusing"
        layout = DecoderLayout(1, 1, 1, 64, 64, ())

        def greedy(self, request):
            raise BackendError("refusing could not run this graph: Model input was not found")

    model = OBModelForCausalLM.from_pretrained(exported_generative("gpt2").path, intra_op_num_threads=1)
    model._native = Refusing()
    assert torch.equal(model.generate(input_ids=PROMPT, **EXACTLY_16), _expected(tiny_generative("gpt2"), **EXACTLY_16))
    assert model.last_generation_engine == "transformers" and "Model input was not found" in model.generation_fallback_reason
    assert model.native_decoder() is None  # not retried on the next call


class Recording:
    """A native loop that records what it is asked and answers fixed tokens."""

    engine = "recording"

    def __init__(self, vocab_size: int) -> None:
        self.layout = DecoderLayout(1, 1, 1, vocab_size, 64, ())
        self.requests: list[GreedyRequest] = []

    def greedy(self, request):
        self.requests.append(request)
        return [1] * request.max_new_tokens


def test_eos_ids_outside_the_vocabulary_never_reach_a_native_loop(exported_generative):
    # A native loop suppresses eos ids by index while min_new_tokens holds: an id past the logits
    # made openvino-genai write outside its buffer. They can never be generated, so they are dropped.
    model = OBModelForCausalLM.from_pretrained(exported_generative("gpt2").path, intra_op_num_threads=1)
    vocab = model.config.vocab_size
    model._native = recording = Recording(vocab)
    model.generate(input_ids=PROMPT, max_new_tokens=3, min_new_tokens=2, eos_token_id=[vocab + 5, 3, vocab])
    model.generate(input_ids=PROMPT, max_new_tokens=3, min_new_tokens=2, eos_token_id=vocab + 5)
    assert model.last_generation_engine == "recording"
    kept, none_left = recording.requests
    assert (kept.eos_token_ids, kept.min_new_tokens) == ((3,), 2)
    assert (none_left.eos_token_ids, none_left.min_new_tokens) == ((), 0)  # nothing left to suppress


def test_onnxruntime_genai_is_not_loaded_with_eos_ids_outside_the_vocabulary(tiny_generative, exported_generative):
    pytest.importorskip("onnxruntime_genai")
    model = OBModelForCausalLM.from_pretrained(exported_generative("gpt2").path, intra_op_num_threads=1)
    inside = model.generation_config.eos_token_id
    outside = model.config.vocab_size + 5
    model.generation_config.eos_token_id = [outside, inside]
    assert model.native_decoder().layout.eos_token_ids == (inside,)  # loaded with the one it can emit
    assert torch.equal(model.generate(input_ids=PROMPT, **EXACTLY_16),
                       _expected(tiny_generative("gpt2"), eos_token_id=[outside, inside], **EXACTLY_16))
    assert model.last_generation_engine == "onnxruntime-genai"

    alone = OBModelForCausalLM.from_pretrained(exported_generative("gpt2").path, intra_op_num_threads=1)
    alone.generation_config.eos_token_id = outside  # none left: it has no "ignore eos" switch, so transformers runs it
    ours = alone.generate(input_ids=PROMPT, **EXACTLY_16)
    assert alone.last_generation_engine == "transformers"
    assert "needs an end-of-sequence id inside the vocabulary" in alone.generation_fallback_reason
    assert torch.equal(ours, _expected(tiny_generative("gpt2"), eos_token_id=outside, **EXACTLY_16))


def test_openvino_genai_runs_calls_without_an_eos_id_in_the_vocabulary(tiny_generative, exported_generative, tmp_path):
    pytest.importorskip("openvino_genai")
    from optibridge import OptimizationConfig, optimize

    path = tiny_generative("gpt2")
    ir = optimize(exported_generative("gpt2").path, OptimizationConfig(level=1), tmp_path / "ir", backend="openvino").artifact
    model = OBModelForCausalLM.from_pretrained(ir.path, backend="openvino", inference_num_threads=1)
    outside = model.config.vocab_size + 5
    for eos in (None, outside):  # openvino-genai refuses a negative id; one past the logits corrupted its heap
        ours = model.generate(input_ids=PROMPT, eos_token_id=eos, pad_token_id=0, **EXACTLY_16)
        assert model.last_generation_engine == "openvino-genai", model.generation_fallback_reason
        assert torch.equal(ours, _expected(path, eos_token_id=eos, pad_token_id=0, **EXACTLY_16))


def test_onnxruntime_genai_takes_the_place_of_the_plain_session_and_gives_it_back_on_demand(tiny_generative, exported_generative):
    """One copy of the weights at a time: the plain InferenceSession is freed before onnxruntime-genai
    loads the graph, and created again, with the same results, when transformers' loop needs it."""
    pytest.importorskip("onnxruntime_genai")
    path = tiny_generative("gpt2")
    model = OBModelForCausalLM.from_pretrained(exported_generative("gpt2").path, intra_op_num_threads=1)
    before = model(input_ids=PROMPT).logits
    first = weakref.ref(model.session.session)
    assert torch.equal(model.generate(input_ids=PROMPT, **EXACTLY_16), _expected(path, **EXACTLY_16))
    assert model.last_generation_engine == "onnxruntime-genai"
    gc.collect()
    assert first() is None  # freed when the native loop loaded
    penalised = dict(max_new_tokens=8, do_sample=False, repetition_penalty=1.5)  # transformers' loop: the session comes back
    assert torch.equal(model.generate(input_ids=PROMPT, **penalised), _expected(path, **penalised))
    assert model.last_generation_engine == "transformers"
    torch.testing.assert_close(model(input_ids=PROMPT).logits, before, rtol=0, atol=0)
    assert torch.equal(model.generate(input_ids=PROMPT, **EXACTLY_16), _expected(path, **EXACTLY_16))  # native again
    assert model.last_generation_engine == "onnxruntime-genai"

    refused = OBModelForCausalLM.from_pretrained(exported_generative("gpt2").path, intra_op_num_threads=1)
    refused.generation_config.eos_token_id = None  # onnxruntime-genai declines before loading: the session stays
    kept = refused.session.session
    refused.generate(input_ids=PROMPT, **EXACTLY_16)
    assert refused.last_generation_engine == "transformers" and refused.session.session is kept
