"""Decoding steps on a session that keeps the KV cache itself (an OpenVINO stateful model).

transformers' ``generate`` carries a cache object from step to step; for a stateful session that
object is a :class:`StatefulCache`: it knows how many tokens the session holds and records the
row order beam search asks for, which the next step hands to the session (``beam_idx``).
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from ..errors import InputError


class StatefulCache:
    """Stands in for a ``DynamicCache`` when the cache lives inside the session."""

    is_compileable = False

    def __init__(self, length: int) -> None:
        self.length = length
        self.beam_idx: np.ndarray | None = None

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.length

    def reorder_cache(self, beam_idx: Any) -> None:
        """Beam search: row ``i`` continues from row ``beam_idx[i]`` (applied inside the next step)."""
        order = beam_idx.detach().cpu().numpy() if hasattr(beam_idx, "detach") else np.asarray(beam_idx)
        self.beam_idx = order.astype(np.int32)


def stateful_step(session: Any, feed: dict[str, np.ndarray], past: int, cache: Any,
                  logits_to_keep: int = 0) -> tuple[np.ndarray, StatefulCache]:
    """One step: a new sequence (``past == 0``) resets the session; otherwise ``cache`` must be the
    one the session's previous step returned. Returns the logits (of the last ``logits_to_keep``
    positions; 0: all) and the cache object for the next step.

    The check and the step hold the session's lock, so another thread cannot slip a step of its own
    sequence in between: it gets the error below instead of the other sequence's state."""
    with getattr(session, "lock", None) or contextlib.nullcontext():
        latest = getattr(session, "latest_cache", None)
        if past == 0:
            session.reset()
            order = None
        elif cache is latest and latest is not None:
            order = latest.beam_idx
        else:
            raise InputError(
                "this model keeps its KV cache inside the OpenVINO session (a stateful IR), so it continues only the sequence "
                "of its latest call: pass the cache that call returned (output.cache, or output.past_key_values before transformers 5.24), "
                "or start again without a cache. Generating from several threads at once needs one model per thread"
            )
        logits = session.run_step(feed, beam_idx=order, logits_to_keep=logits_to_keep)["logits"]
        session.latest_cache = StatefulCache(past + feed["input_ids"].shape[1])
        return logits, session.latest_cache
