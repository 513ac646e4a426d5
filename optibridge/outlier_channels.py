"""Which channels of an activation are "a few outliers": the selection both int8 backends use before
moving those channels of an FFN down-projection's input to a float side path.

BERT-like encoders put the [CLS] token's "massive activation" into one or two of the 1536 GELU
outputs of the early FFNs (all-MiniLM-L6-v2: 24.8 where the 99th-percentile channel reaches 4.7).
int8 gives an activation one range per tensor, so those channels cost every other channel most of
its resolution. Numbers only (numpy): the backends measure the ranges and rewrite their own graphs.
"""

from __future__ import annotations

import numpy as np

MAX_CHANNELS = 8
"""At most this many channels per activation are outliers (a model with more is not "a few outliers")."""
SIDE_PATH_PREFIX = "optibridge_outlier_side/"
"""What the nodes of a side path are named after, on every backend."""


def rest_range(ranges: np.ndarray, limit: int = MAX_CHANNELS) -> float | None:
    """The 99th-percentile channel range among all but the ``limit`` largest (so that in a narrow
    layer the outliers themselves do not set it); None for a layer too narrow to tell."""
    if ranges.size <= 2 * limit:
        return None
    return float(np.percentile(np.sort(ranges)[:-limit], 99))


def outlier_channels(ranges: np.ndarray, ratio: float, limit: int = MAX_CHANNELS) -> np.ndarray:
    """The channels (sorted) whose range exceeds ``ratio`` x :func:`rest_range`; none if more than ``limit`` do."""
    reference = rest_range(ranges, limit)
    if reference is None:
        return np.zeros(0, dtype=np.int64)
    chosen = np.flatnonzero(ranges > ratio * max(reference, np.finfo(np.float32).tiny))
    return chosen if len(chosen) <= limit else np.zeros(0, dtype=np.int64)
