"""Sessions under threads and bad tensors (issue #14, items 9-11): threaded calls equal sequential
ones on every backend here; ids, positions and batches the graph would misread are clear errors."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from optibridge.errors import InputError
from optibridge.modeling import OBModelForCausalLM, OBModelForSequenceClassification

THREADS, CALLS = 8, 20


def _inputs(vocab: int, thread: int, call: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1000 * thread + call)
    batch, length = int(rng.integers(1, 4)), int(rng.integers(3, 17))  # mixed shapes across calls
    return {"input_ids": rng.integers(5, vocab, size=(batch, length)), "attention_mask": np.ones((batch, length), np.int64)}


@pytest.mark.parametrize("backend", ["ort", "openvino"])
def test_threaded_calls_equal_sequential_ones(exported, backend):
    artifact = exported("bert", "text-classification")
    model = OBModelForSequenceClassification.from_pretrained(artifact.path, backend=backend)
    vocab = model.config.vocab_size
    expected = {(t, c): model(**_inputs(vocab, t, c)).logits for t in range(THREADS) for c in range(CALLS)}
    got: dict[tuple[int, int], np.ndarray] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def work(thread: int) -> None:
        start.wait()
        for call in range(CALLS):
            try:
                got[(thread, call)] = model(**_inputs(vocab, thread, call)).logits
            except BaseException as exc:  # collected: an exception in a thread must fail the test
                errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[:3]
    assert len(got) == THREADS * CALLS
    for key, logits in expected.items():
        np.testing.assert_allclose(got[key], logits, rtol=0, atol=1e-5, err_msg=str(key))


@pytest.fixture(scope="module")
def classifier(exported):
    return OBModelForSequenceClassification.from_pretrained(exported("bert", "text-classification").path)


@pytest.mark.parametrize("backend", ["ort", "openvino"])
@pytest.mark.parametrize("bad", ["negative", "past-vocab"])
def test_token_ids_outside_the_vocabulary_are_refused(exported, backend, bad):
    model = OBModelForSequenceClassification.from_pretrained(exported("bert", "text-classification").path, backend=backend)
    ids = torch.full((2, 5), 7)
    ids[1, 3] = -1 if bad == "negative" else model.config.vocab_size
    with pytest.raises(InputError, match=r"outside the vocabulary \[0, \d+\)"):
        model(input_ids=ids)


@pytest.mark.parametrize("name", ["inputs_embeds", "position_ids"])
def test_tensors_that_change_the_computation_get_the_intended_message(classifier, name):
    # (training targets such as labels change no output: ignored with a warning, tests/test_modeling.py)
    with pytest.raises(InputError, match=f"{name} is not supported by exported models"):
        classifier(input_ids=torch.full((1, 4), 7), **{name: torch.zeros(1, 4, dtype=torch.long)})


def test_sequence_longer_than_the_position_table(classifier):
    limit = classifier.config.max_position_embeddings
    with pytest.raises(InputError, match=f"{limit + 1} tokens, longer than the {limit} positions"):
        classifier(input_ids=torch.full((1, limit + 1), 7))
    assert classifier(input_ids=torch.full((1, limit), 7)).logits.shape == (1, classifier.config.num_labels)


def test_empty_batch_and_empty_sequence(classifier):
    with pytest.raises(InputError, match="empty batch"):
        classifier(input_ids=torch.zeros((0, 4), dtype=torch.long))
    with pytest.raises(InputError, match="no tokens"):
        classifier(input_ids=torch.zeros((2, 0), dtype=torch.long))


def test_generate_past_the_last_position_is_a_clear_error(exported_generative):
    model = OBModelForCausalLM.from_pretrained(exported_generative("gpt2").path)
    limit = model.config.n_positions
    prompt = torch.full((1, limit - 2), 7)
    assert model.generate(prompt, max_new_tokens=2, do_sample=False).shape[1] == limit
    with pytest.raises(InputError, match=f"past the last of the {limit} positions"):
        model.generate(prompt, max_new_tokens=4, min_new_tokens=4, do_sample=False)
