"""ONNX graph file helpers shared by the ORT optimizer and quantizers."""

from __future__ import annotations

import collections
import contextlib
import contextvars
import fnmatch
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import onnx

from optibridge.artifact import Artifact, write_graph
from optibridge.errors import ArtifactError, first_line
from optibridge.graph_readers import reader_counts  # noqa: F401  (this plugin's callers read it as graphs.reader_counts)
from optibridge.staging import pid_prefix

# A protobuf cannot exceed 2 GiB; above this much weight data the graph is saved with a side file.
EXTERNAL_DATA_THRESHOLD = 1_800_000_000


def load(path: Path) -> onnx.ModelProto:
    """The graph with its external weights. onnx refuses external data outside the graph's folder
    (an absolute path, ``..``, a symlink): that is an untrusted artifact's error, said in one line."""
    try:
        return onnx.load(str(path), load_external_data=True)
    except onnx.checker.ValidationError as exc:
        raise ArtifactError(f"{path} cannot be read: {first_line(exc)}; re-export the model") from exc


def weight_bytes(model: onnx.ModelProto) -> int:
    return sum(len(t.raw_data) for t in model.graph.initializer)


def has_external_data(artifact: Artifact, graph: str) -> bool:
    return (artifact.path / (artifact.metadata.graphs[graph].file + ".data")).is_file()


def save(model: onnx.ModelProto, path: Path, *, external: bool = False) -> None:
    """Save under ``path``; weights go to ``<file>.data`` when asked or when they would not fit a protobuf."""
    write_graph(model, path, external=external or weight_bytes(model) > EXTERNAL_DATA_THRESHOLD)


def op_counts(model: onnx.ModelProto) -> collections.Counter[str]:
    return collections.Counter(node.op_type for node in model.graph.node)


def count_delta(before: onnx.ModelProto, after: onnx.ModelProto, op_types: Iterable[str]) -> dict[str, int]:
    """How many more nodes of each of ``op_types`` the new graph has (only the ones that grew)."""
    old, new = op_counts(before), op_counts(after)
    return {op: new[op] - old[op] for op in op_types if new[op] > old[op]}


def matching_nodes(model: onnx.ModelProto, patterns: Iterable[str]) -> list[str]:
    """Names of nodes matching any of ``patterns`` (exact names or glob patterns like ``*/output/dense/*``)."""
    patterns = list(patterns)
    if not patterns:
        return []
    return [n.name for n in model.graph.node if any(n.name == p or fnmatch.fnmatchcase(n.name, p) for p in patterns)]


def initializer_names(model: onnx.ModelProto) -> set[str]:
    return {t.name for t in model.graph.initializer}


def restore_optional_inputs(before: onnx.ModelProto, after: onnx.ModelProto) -> list[str]:
    """Give back the inputs with an initializer default (``logits_to_keep``) that a rewrite dropped from
    the graph's inputs while keeping the initializer (onnxscript's fusions do: it then reads as a
    constant and callers could no longer feed it). Returns the names restored."""
    defaults = initializer_names(before)
    present = {value.name for value in after.graph.input}
    still_used = {name for node in after.graph.node for name in node.input} & initializer_names(after)
    restored = [value for value in before.graph.input if value.name in defaults and value.name in still_used and value.name not in present]
    after.graph.input.extend(restored)
    return [value.name for value in restored]


def constant_operand(node: onnx.NodeProto | None, is_constant: Callable[[str], bool],
                     op_types: tuple[str, ...] = ("Add",)) -> tuple[str, str] | None:
    """(constant input, computed input) of a two-input node of ``op_types`` with exactly one constant
    input (a bias add, or a norm's scale, when the constant is 1-D: the caller checks its shape);
    None for any other node."""
    if node is None or node.op_type not in op_types or len(node.input) != 2:
        return None
    constants = [name for name in node.input if is_constant(name)]
    if len(constants) != 1:
        return None
    return constants[0], next(name for name in node.input if name != constants[0])


def producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in model.graph.node for out in node.output}


class _NoPreprocessAdvice(logging.Filter):
    """ORT's quantizers log "Please consider to run pre-processing" on the root logger at every
    call; optibridge deliberately skips ``quant_pre_process`` (its symbolic shape inference fails
    on these graphs and is not needed), so the advice is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing" not in record.getMessage()


SCRATCH_ROOT: contextvars.ContextVar[Path | None] = contextvars.ContextVar("optibridge_ort_scratch_root", default=None)
"""Where :func:`scratch_cwd` makes its folders: the step's staging folder while a step runs (see
:func:`scratch_inside`), so temporary work is removed with it; else the system temp folder."""


@contextlib.contextmanager
def scratch_inside(output_dir: Path) -> Iterator[None]:
    """Keep every scratch folder of the calls inside ``output_dir/.optibridge-scratch`` (the staging
    folder's scratch, which the artifact writer removes before the folder is moved into place)."""
    from optibridge.artifact import SCRATCH

    root = Path(output_dir) / SCRATCH
    root.mkdir(exist_ok=True)
    token = SCRATCH_ROOT.set(root)
    try:
        yield
    finally:
        SCRATCH_ROOT.reset(token)


@contextlib.contextmanager
def scratch_cwd() -> Iterator[Path]:
    """Run inside a fresh temporary directory: ORT's quantization helpers drop temp files
    (``<uuid>.data``, ``sym_shape_infer_temp.onnx``) into the current directory."""
    before = os.getcwd()
    advice = _NoPreprocessAdvice()
    logging.getLogger().addFilter(advice)
    root = SCRATCH_ROOT.get()
    with tempfile.TemporaryDirectory(prefix=pid_prefix("optibridge-ort-"), dir=root) as scratch:
        os.chdir(scratch)
        try:
            yield Path(scratch)
        finally:
            os.chdir(before)
            logging.getLogger().removeFilter(advice)


QUIET = 3
"""ONNX Runtime's ERROR level, for the sessions a step makes for itself: at WARNING it tells on every
load that ``logits_to_keep`` (an input with a default) is not constant-folded, which is by design."""


def session_for(model: onnx.ModelProto, scratch: Path, threads: int | None = None) -> Any:
    """An ORT CPU session on an in-memory graph (written to ``scratch`` when too large for bytes)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = QUIET
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
    if weight_bytes(model) > EXTERNAL_DATA_THRESHOLD:
        path = scratch / "probe.onnx"
        save(model, path, external=True)
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
