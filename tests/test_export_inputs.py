"""The traced image size read from a model config, in each spelling a config may use."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from optibridge.errors import UnsupportedModelError
from optibridge.exporter.inputs import image_size


@pytest.mark.parametrize(
    ("size", "expected"),
    [(32, (32, 32)), ([24, 40], (24, 40)), ({"height": 24, "width": 40}, (24, 40)), ({"shortest_edge": 48}, (48, 48))],
    ids=["int", "list", "height-width", "shortest-edge"],
)
def test_image_size_reads_each_spelling(size, expected):
    assert image_size(SimpleNamespace(image_size=size)) == expected


def test_image_size_defaults_to_224_without_one():
    assert image_size(SimpleNamespace()) == (224, 224)


def test_an_image_size_dict_without_height_and_width_names_the_fix():
    # Before: int(None) raised a bare TypeError from deep inside the export.
    with pytest.raises(UnsupportedModelError, match=re.escape("config.image_size {'longest_edge': 1333} gives no height and width")
                       + ".*set image_size in config.json"):
        image_size(SimpleNamespace(image_size={"longest_edge": 1333}))
