"""Decoder LMs with KV cache: generate() through transformers' own generation matches PyTorch."""

from __future__ import annotations

import pytest
import torch
from tiny_models import DECODERS
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig, StoppingCriteria, StoppingCriteriaList, pipeline

from optibridge import OBModelForCausalLM
from optibridge.errors import InputError
from optibridge.exporter.fast_path import fast_path_refusal
from optibridge.kv_cache import cache_name, output_cache

PROMPTS = ["the cat sat on the mat and", "paris is", "hello there my good friend how are you"]


def _load(path):
    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    return tok, AutoModelForCausalLM.from_pretrained(path).eval()


@pytest.mark.parametrize("model_type", DECODERS)
def test_greedy_32_tokens_match_pytorch_alone_and_in_a_left_padded_batch(model_type, tiny_generative, exported_generative):
    artifact = exported_generative(model_type)
    meta = artifact.metadata
    # the fast TorchScript path unless the model's masks are more than causal + padding (mistral's sliding window)
    assert meta.exporter == ("dynamo" if fast_path_refusal(AutoConfig.from_pretrained(artifact.path)) else "torchscript")
    assert meta.task == "text-generation" and meta.validation["passed"]
    checks = {o["name"]: o["max_abs_diff"] for o in meta.validation["outputs"]}
    assert checks["logits (first step, empty cache)"] <= 1e-4 and checks["logits (next step, with cache)"] <= 1e-4
    assert "past_key_values.0.key" in meta.input_names and "present.0.key" in meta.output_names
    # Every family's LM head is found: generate() below passes logits_to_keep=1 into the graph.
    assert [t.name for t in meta.main_graph.optional_inputs] == ["logits_to_keep"]

    tok, reference = _load(tiny_generative(model_type))
    model = OBModelForCausalLM.from_pretrained(artifact.path)
    batch = tok(PROMPTS, padding=True, return_tensors="pt")
    assert (batch["attention_mask"] == 0).any()  # really left-padded
    exactly_32 = dict(max_new_tokens=32, min_new_tokens=32, do_sample=False)
    ours = model.generate(**batch, **exactly_32)
    theirs = reference.generate(**batch, **exactly_32)
    assert ours.shape[1] == batch["input_ids"].shape[1] + 32
    assert torch.equal(ours, theirs)
    for row, prompt in enumerate(PROMPTS):
        alone = tok([prompt], return_tensors="pt")
        solo = model.generate(**alone, **exactly_32)
        assert torch.equal(solo, reference.generate(**alone, **exactly_32))
        # the left-padded batch row generates the same 32 tokens as the prompt alone
        assert torch.equal(ours[row, -32:], solo[0, -32:])


def test_step_logits_match_pytorch_with_empty_and_filled_cache(tiny_generative, exported_generative):
    tok, reference = _load(tiny_generative("llama"))
    model = OBModelForCausalLM.from_pretrained(exported_generative("llama").path)
    inputs = tok(PROMPTS, padding=True, return_tensors="pt")
    ours = model(**inputs, use_cache=True)
    mask0 = inputs["attention_mask"]
    with torch.no_grad():  # positions as generate() gives them: left padding does not count
        theirs = reference(**inputs, position_ids=(mask0.cumsum(-1) - 1).masked_fill(mask0 == 0, 1), use_cache=True)
    real = inputs["attention_mask"].bool()
    assert (ours.logits[real] - theirs.logits[real]).abs().max() <= 1e-4
    next_ids = ours.logits[:, -1:].argmax(-1)
    mask = torch.cat([inputs["attention_mask"], torch.ones(3, 1, dtype=torch.long)], dim=1)
    ours_cache = output_cache(ours)
    # the older spelling (transformers < 5.24, user code) and the newer one give the same step
    ours2 = model(input_ids=next_ids, attention_mask=mask, past_key_values=ours_cache)
    ours2_new = model(input_ids=next_ids, attention_mask=mask, cache=ours_cache)
    with torch.no_grad():
        positions = (mask.cumsum(-1) - 1)[:, -1:]
        theirs2 = reference(input_ids=next_ids, attention_mask=mask, position_ids=positions, **{cache_name(): output_cache(theirs)})
    assert output_cache(ours2).get_seq_length() == mask.shape[1]
    assert (ours2.logits - theirs2.logits).abs().max() <= 1e-4
    assert torch.equal(ours2.logits, ours2_new.logits)
    with pytest.raises(InputError, match="both cache and past_key_values"):
        model(input_ids=next_ids, attention_mask=mask, cache=ours_cache, past_key_values=ours_cache)


@pytest.mark.parametrize("model_type", ["gpt2", "llama"])
def test_a_model_exported_without_cache_still_generates_the_same_tokens(model_type, tiny_generative, exported_generative):
    artifact = exported_generative(model_type, use_cache=False)
    assert artifact.metadata.extra["use_cache"] is False
    assert not any(name.startswith("past_key_values") for name in artifact.metadata.input_names)
    tok, reference = _load(tiny_generative(model_type))
    model = OBModelForCausalLM.from_pretrained(artifact.path)
    batch = tok(PROMPTS, padding=True, return_tensors="pt")
    assert torch.equal(model.generate(**batch, max_new_tokens=12, do_sample=False),
                       reference.generate(**batch, max_new_tokens=12, do_sample=False))


def test_beam_search_sampling_stopping_criteria_and_generation_config(tiny_generative, exported_generative):
    tok, reference = _load(tiny_generative("qwen2"))
    model = OBModelForCausalLM.from_pretrained(exported_generative("qwen2").path)
    batch = tok(PROMPTS, padding=True, return_tensors="pt")

    beams = dict(max_new_tokens=10, num_beams=3, num_return_sequences=2, do_sample=False)
    assert torch.equal(model.generate(**batch, **beams), reference.generate(**batch, **beams))

    sampled = []
    for candidate in (model, reference):
        torch.manual_seed(7)
        sampled.append(candidate.generate(**batch, max_new_tokens=10, do_sample=True, top_k=20, temperature=0.9))
    assert torch.equal(*sampled)

    class StopAfter(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), input_ids.shape[1] >= batch["input_ids"].shape[1] + 4)

    stopped = model.generate(**batch, max_new_tokens=30, stopping_criteria=StoppingCriteriaList([StopAfter()]))
    assert stopped.shape[1] == batch["input_ids"].shape[1] + 4

    config = GenerationConfig(max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)
    assert torch.equal(model.generate(**batch, generation_config=config), reference.generate(**batch, generation_config=config))


def test_text_generation_pipeline_matches_pytorch(tiny_generative, exported_generative):
    tok, reference = _load(tiny_generative("gpt2"))
    model = OBModelForCausalLM.from_pretrained(exported_generative("gpt2").path)
    ours = pipeline("text-generation", model=model, tokenizer=tok)(PROMPTS, max_new_tokens=8, do_sample=False)
    theirs = pipeline("text-generation", model=reference, tokenizer=tok)(PROMPTS, max_new_tokens=8, do_sample=False)
    assert ours == theirs


def test_export_on_the_fly_and_reload_after_save(tiny_generative, tmp_path):
    path = tiny_generative("gemma")
    model = OBModelForCausalLM.from_pretrained(path, export=True)
    model.save_pretrained(tmp_path / "saved")
    assert (tmp_path / "saved" / "generation_config.json").is_file()
    again = OBModelForCausalLM.from_pretrained(tmp_path / "saved")
    tok, _ = _load(path)
    inputs = tok(PROMPTS[:1], return_tensors="pt")
    assert torch.equal(model.generate(**inputs, max_new_tokens=5), again.generate(**inputs, max_new_tokens=5))


def test_task_is_inferred_for_a_causal_lm_and_the_cli_exports_it(tiny_generative, tmp_path, capsys):
    from optibridge.cli import main

    assert main(["export", "--model", str(tiny_generative("gpt2")), str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "task: text-generation (inferred" in out
    assert "logits (next step, with cache)" in out


def test_optimum_cli_with_past_task_names_export_the_cached_decoder(tiny_generative, tmp_path, capsys):
    from optibridge.artifact import Artifact
    from optibridge.cli import main

    assert main(["export", "--model", str(tiny_generative("gpt2")), "--task", "text-generation-with-past", str(tmp_path / "out")]) == 0
    meta = Artifact.load(tmp_path / "out").metadata
    assert meta.task == "text-generation" and meta.extra["use_cache"] is True and "past_key_values.0.key" in meta.input_names


def test_torchscript_is_refused_for_encoder_decoder_models(tiny_generative, tmp_path):
    from optibridge import export
    from optibridge.errors import OptibridgeError

    with pytest.raises(OptibridgeError, match="encoder-decoder models export with the dynamo exporter only"):
        export(tiny_generative("t5"), tmp_path / "out", exporter="torchscript")
    assert not (tmp_path / "out").exists()


def test_bad_inputs_are_clear_errors(exported_generative):
    model = OBModelForCausalLM.from_pretrained(exported_generative("llama").path)
    with pytest.raises(InputError, match="missing required input 'input_ids'"):
        model(attention_mask=torch.ones(1, 3, dtype=torch.long))
    with pytest.raises(InputError, match="input_ids: expected integer token ids"):
        model(input_ids=torch.rand(1, 3))
    with pytest.raises(InputError, match="attention_mask has shape \\(1, 2\\); expected"):
        model(input_ids=torch.ones(1, 3, dtype=torch.long), attention_mask=torch.ones(1, 2, dtype=torch.long))
    ids = torch.ones(1, 3, dtype=torch.long)
    # The graph computes neither: an error, not an output without them (generate() used to return tuples of None).
    for asked in ("output_attentions", "output_hidden_states"):
        with pytest.raises(InputError, match=f"{asked} is not supported by exported models"):
            model(input_ids=ids, **{asked: True})
        with pytest.raises(InputError, match=f"{asked} is not supported by exported models"):
            model.generate(ids, max_new_tokens=2, return_dict_in_generate=True, **{asked: True})
    with pytest.raises(InputError, match="head_mask is not supported"):
        model(input_ids=ids, head_mask=torch.ones(2, 2))
    assert model(input_ids=ids, output_attentions=False, output_hidden_states=None).logits.shape[:2] == (1, 3)


def test_token_type_ids_gpt2_would_use_are_refused_not_dropped(tiny_generative, exported_generative):
    # GPT-2 adds token_type_ids through its token embedding (zeros too); the graph has no such input, so
    # dropping them would return other logits than PyTorch's.
    tok, reference = _load(tiny_generative("gpt2"))
    model = OBModelForCausalLM.from_pretrained(exported_generative("gpt2").path)
    batch = tok(PROMPTS[:1], return_tensors="pt")
    types = torch.zeros_like(batch["input_ids"])
    with torch.no_grad():
        assert not torch.allclose(reference(**batch, token_type_ids=types).logits, reference(**batch).logits, atol=1e-3)
    for given in (types, types + 1):
        with pytest.raises(InputError, match="GPT2LMHeadModel adds them to its input embeddings"):
            model(**batch, token_type_ids=given)
        with pytest.raises(InputError, match="leave them out"):
            model.generate(**batch, token_type_ids=given, max_new_tokens=2)
    torch.testing.assert_close(model(**batch).logits, reference(**batch).logits, atol=1e-4, rtol=0)


def test_token_type_ids_pytorch_ignores_are_ignored_here_too(tiny_generative, exported_generative):
    tok, reference = _load(tiny_generative("llama"))  # LlamaForCausalLM.forward has no token_type_ids
    model = OBModelForCausalLM.from_pretrained(exported_generative("llama").path)
    batch = tok(PROMPTS[:1], return_tensors="pt")
    types = torch.ones_like(batch["input_ids"])
    with torch.no_grad():
        want = reference(**batch, token_type_ids=types).logits
    assert torch.equal(want, reference(**batch).logits)
    torch.testing.assert_close(model(**batch, token_type_ids=types).logits, want, atol=1e-4, rtol=0)


def test_cli_no_cache_exports_a_decoder_without_past_inputs(tiny_generative, tmp_path, capsys):
    from optibridge.artifact import Artifact
    from optibridge.cli import main

    assert main(["export", "--model", str(tiny_generative("llama")), "--no-cache", str(tmp_path / "out")]) == 0
    meta = Artifact.load(tmp_path / "out").metadata
    assert meta.extra["use_cache"] is False and meta.input_names == ["input_ids", "attention_mask", "position_ids"]


def test_logits_to_keep_selects_positions_as_transformers_does(tiny_generative, exported_generative):
    """generate() passes logits_to_keep=1 to any forward that takes it; a direct call may ask for any k or positions."""
    tok, reference = _load(tiny_generative("llama"))
    model = OBModelForCausalLM.from_pretrained(exported_generative("llama").path)
    assert model._supports_logits_to_keep()  # what generate() checks before passing it
    ids = tok(["the cat sat on the mat and"], return_tensors="pt")["input_ids"]
    assert ids.shape[1] >= 4
    for keep in (0, 1, 3, torch.tensor([0, 2])):
        ours = model(input_ids=ids, logits_to_keep=keep).logits
        with torch.no_grad():
            theirs = reference(input_ids=ids, logits_to_keep=keep).logits
        assert ours.shape == theirs.shape and (ours - theirs).abs().max() <= 1e-4
    with pytest.raises(InputError, match="logits_to_keep must be >= 0"):
        model(input_ids=ids, logits_to_keep=-1)
