"""The transformers-version seams of ``optibridge.kv_cache``, exercised on the installed release."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from optibridge.errors import InputError
from optibridge.kv_cache import cache_from_pairs, cache_name, cache_pairs, output_cache, take_cache


def _pairs(layers=2, length=3):
    return [(torch.randn(1, 2, length, 4), torch.randn(1, 2, length, 4)) for _ in range(layers)]


@pytest.mark.parametrize("zero_copy", [True, False])
def test_a_cache_from_pairs_hands_back_the_same_tensors_and_length(zero_copy):
    pairs = _pairs()
    cache = cache_from_pairs(pairs, zero_copy=zero_copy)
    assert isinstance(cache, DynamicCache) and cache.get_seq_length() == 3
    for (k, v), (k2, v2) in zip(pairs, cache_pairs(cache)):
        assert torch.equal(k, k2) and torch.equal(v, v2)
        assert (k2.data_ptr() == k.data_ptr()) is zero_copy  # zero_copy means no copy


def test_zero_copy_works_with_the_one_argument_lazy_initialization_of_transformers_4_57(monkeypatch):
    def lazy_initialization(self, key_states):  # the 4.56-4.57 signature
        self.dtype, self.device = key_states.dtype, key_states.device
        self.keys = self.values = torch.tensor([])
        self.is_initialized = True

    monkeypatch.setattr(DynamicLayer, "lazy_initialization", lazy_initialization)
    pairs = _pairs()
    cache = cache_from_pairs(pairs, zero_copy=True)
    assert cache.get_seq_length() == 3 and cache_pairs(cache)[1][1] is pairs[1][1]


def test_the_cache_is_taken_under_either_name_but_not_both():
    cache = cache_from_pairs(_pairs())
    assert take_cache(cache, {}) is cache  # past_key_values= (transformers < 5.24, user code)
    assert take_cache(None, {"cache": cache}) is cache  # cache= (generate() of transformers >= 5.24)
    assert take_cache(None, {}) is None
    with pytest.raises(InputError, match="both cache and past_key_values"):
        take_cache(cache, {"cache": cache})


def test_outputs_carry_the_cache_under_the_installed_releases_name():
    from transformers.modeling_outputs import CausalLMOutputWithPast

    cache = cache_from_pairs(_pairs())
    out = CausalLMOutputWithPast(logits=torch.zeros(1), **{cache_name(): cache})
    assert output_cache(out) is cache and cache_name() in out.keys()
