"""Seeded fuzzing of a valid artifact (issue #14, proof): hundreds of mutations of optibridge.json and
of the graph's bytes. Each load either works and gives the original outputs, or raises an
optibridge error; never another exception type, and no file outside the folder is touched."""

from __future__ import annotations

import copy
import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from optibridge.artifact import METADATA_FILE
from optibridge.errors import OptibridgeError
from optibridge.modeling import OBModelForSequenceClassification

JSON_CASES, GRAPH_CASES, SEED = 250, 60, 20261130
INPUTS = {"input_ids": np.array([[2, 17, 33, 41, 3], [2, 9, 3, 0, 0]]), "attention_mask": np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])}


def _weird_values(outside: Path) -> list[Any]:
    return [
        None, True, 0, -1, 2**63, 1.5, "", "x" * 300, [], {}, [[]], {"a": None},
        "../outside/model.onnx", str(outside / "model.onnx"), "/etc/passwd", "model.onnx", "config.json",
        "..", ".", "model.onnx/../../outside/model.onnx", "os.system", "evil_module.Thing",
        "transformers.models.bert.modeling_bert.BertModel", "transformers.modeling_outputs.BaseModelOutput",
        "float64", "object", "int8", ["batch", -3], ["batch_size", "sequence_length", 7], "openvino-ir",
    ]


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, prefix + (index,))
    return found


def _mutate(data: dict, rng: random.Random, weird: list[Any]) -> str:
    """One random edit of the manifest, returned as the text to write."""
    kind = rng.choice(["replace", "replace", "replace", "delete", "add", "text"])
    if kind == "text":
        text = json.dumps(data)
        cut = rng.randrange(len(text))
        return rng.choice([text[:cut], text[:cut] + rng.choice("{}[]\",:0x\x00\\") + text[cut + 1:], text.replace('"', "'", 1)])
    mutated = copy.deepcopy(data)
    path = rng.choice(_paths(mutated)[1:])
    parent = mutated
    for key in path[:-1]:
        parent = parent[key]
    if kind == "replace":
        parent[path[-1]] = rng.choice(weird)
    elif kind == "delete":
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[rng.choice(["extra", "__class__", "files", "../x"])] = rng.choice(weird)
    else:
        parent.append(rng.choice(weird))
    return json.dumps(mutated)


def _snapshot(root: Path, skip: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file() and skip not in p.parents}


def _try_load(folder: Path, expected: np.ndarray) -> str:
    """'ok' (identical outputs) or the optibridge error's class name; anything else fails the test."""
    try:
        model = OBModelForSequenceClassification.from_pretrained(folder)
        logits = model(**INPUTS).logits
    except OptibridgeError as exc:
        assert str(exc).strip(), "an error without a message"
        return type(exc).__name__
    np.testing.assert_array_equal(logits, expected)
    return "ok"


@pytest.fixture(scope="module")
def sandbox(exported, tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    original = exported("bert", "text-classification").path
    (root / "outside").mkdir()
    shutil.copy2(original / "model.onnx", root / "outside" / "model.onnx")
    (root / "outside" / "secret.txt").write_text("do not touch")
    return root, original


def test_mutated_manifests_load_identically_or_fail_with_an_optibridge_error(sandbox):
    root, original = sandbox
    art = root / "art"
    shutil.copytree(original, art)
    expected = OBModelForSequenceClassification.from_pretrained(art)(**INPUTS).logits
    data = json.loads((art / METADATA_FILE).read_text())
    weird = _weird_values(root / "outside")
    before = _snapshot(root, art)
    rng = random.Random(SEED)
    outcomes: dict[str, int] = {}
    for case in range(JSON_CASES):
        text = _mutate(data, rng, weird)
        (art / METADATA_FILE).write_text(text)
        try:
            outcome = _try_load(art, expected)
        except Exception as exc:  # pragma: no cover - reported with the case that broke it
            raise AssertionError(f"case {case}: {type(exc).__name__}: {exc}\nmanifest: {text[:2000]}") from exc
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert _snapshot(root, art) == before
    assert outcomes.get("ok", 0) > 10 and outcomes.get("ArtifactError", 0) > 100, outcomes  # both sides were exercised


def test_mutated_graph_bytes_are_always_refused(sandbox):
    root, original = sandbox
    art = root / "art-graph"
    shutil.copytree(original, art)
    pristine = (art / "model.onnx").read_bytes()
    rng = random.Random(SEED + 1)
    before = _snapshot(root, art)
    for case in range(GRAPH_CASES):
        data = bytearray(pristine)
        edit = rng.choice(["flip", "flip", "truncate", "append", "zero-block"])
        where = rng.randrange(len(data))
        if edit == "flip":
            data[where] ^= 1 << rng.randrange(8)
        elif edit == "truncate":
            data = data[:where]
        elif edit == "append":
            data += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
        else:
            data[where:where + 64] = bytes(len(data[where:where + 64]))
        if bytes(data) == pristine:
            continue
        (art / "model.onnx").write_bytes(bytes(data))
        try:
            outcome = _try_load(art, np.zeros(0))
        except Exception as exc:  # pragma: no cover
            raise AssertionError(f"graph case {case} ({edit} at {where}): {type(exc).__name__}: {exc}") from exc
        assert outcome == "ArtifactError", (case, edit, outcome)
    assert _snapshot(root, art) == before
