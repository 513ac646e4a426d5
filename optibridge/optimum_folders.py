"""Folders written by Optimum (``optimum-cli export onnx``, ``ORTModel.save_pretrained``, its
quantizer/optimizer) and optimum-intel (``OVModel.save_pretrained``), read as optibridge artifacts.

Optimum's files and IO names are the ones optibridge's exporter writes too (``input_ids`` →
``logits``; ``past_key_values.{i}.key`` → ``present.{i}.key``; ``present.{i}.decoder.key`` /
``.encoder.key`` for encoder-decoders), so a folder maps onto artifact metadata without renaming:
the task comes from ``config.json``, the inputs/outputs from the graphs themselves.

=====================================  ============================================================
Optimum file(s)                        graphs of the artifact
=====================================  ============================================================
``model.onnx`` (or ``file_name=``)     ``model`` — encoders, and decoder LMs with their KV cache
``encoder_model.onnx`` +               ``encoder``, ``decoder``, ``decoder_with_past``
``decoder_model.onnx`` +
``decoder_with_past_model.onnx``
``decoder_model_merged.onnx``          serves as ``decoder`` and ``decoder_with_past`` (its
                                       ``use_cache_branch`` input picks the branch) when the two
                                       decoders are not there; ONNX Runtime only
``openvino_model.xml`` (+ ``.bin``)    ``model`` in OpenVINO IR: encoders, and optimum-intel's stateful
                                       decoders (KV cache in state variables, a ``beam_idx`` input),
                                       described by their stateless interface as optibridge's own
=====================================  ============================================================
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

from .artifact import MAIN_GRAPH, STATE_KEPT_IN, Artifact, ArtifactMetadata, GraphSpec, TensorSpec
from .errors import ArtifactError
from .tasks import TASKS, infer_task

SEQ2SEQ_FILES = {"encoder": "encoder_model", "decoder": "decoder_model", "decoder_with_past": "decoder_with_past_model"}
MERGED_DECODER = "decoder_model_merged.onnx"
OPENVINO_FILE = "openvino_model.xml"
USE_CACHE_BRANCH = "use_cache_branch"
BEAM_IDX = "beam_idx"  # optimum-intel's stateful decoders take it (the core names it; the OpenVINO plugin builds it)
CACHE_VARIABLE = re.compile(r"(past_key_values\.(\d+)\.(?:key|value))(present\.\2\.(?:key|value))")
"""A state variable MakeStateful named after its input/output pair: ``past_key_values.0.key`` + ``present.0.key``."""
IR_TYPES = {"f32": "float32", "f16": "float16", "i64": "int64", "i32": "int32", "boolean": "bool", "u8": "uint8", "i8": "int8"}


def is_optimum_folder(path: str | os.PathLike[str]) -> bool:
    folder = Path(path)
    return folder.is_dir() and (folder / "config.json").is_file() and bool(_graph_files(folder))


def _graph_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix == ".onnx" or p.name.startswith("openvino_") and p.suffix == ".xml")


VISUAL_LM_PREFIX = "openvino_language_model"
"""optimum-intel's OVModelForVisualCausalLM folders: openvino_language_model.xml beside text and vision embedding models."""


def read_optimum_folder(path: str | os.PathLike[str], *, task: str | None = None, file_name: str | None = None) -> Artifact:
    """The folder as an :class:`Artifact` (metadata built in memory; nothing written). ``task`` is the
    loading class's task; ``file_name`` picks the graph of a folder holding several (model_quantized.onnx)."""
    folder = Path(path)
    config = _config(folder)
    files = _graph_files(folder)
    root = None  # an OpenVINO IR's XML, parsed once
    if (folder / f"{SEQ2SEQ_FILES['encoder']}.onnx").is_file():
        graphs = _seq2seq_graphs(folder)
    elif file_name is None and any(name.startswith(VISUAL_LM_PREFIX) for name in files):
        raise ArtifactError(
            f"{folder} is optimum-intel's layout for a decoder LM that takes images ({', '.join(files)}: the language model "
            "takes embeddings made outside it), which optibridge does not read; optibridge's own artifact puts the image rows in "
            "its decoder graph: export the PyTorch model (`optibridge export --model SOURCE OUT`, or from_pretrained(SOURCE, export=True))"
        )
    else:
        chosen = _choose_file(folder, files, file_name)
        root = _ir_root(folder / chosen) if chosen.endswith(".xml") else None
        graphs = {MAIN_GRAPH: _ir_spec(folder / chosen, root) if root is not None else _onnx_spec(folder / chosen)}
    main = graphs.get(MAIN_GRAPH) or graphs["encoder"]
    kind = "seq2seq" if "encoder" in graphs else "decoder" if any(n.startswith("past_key_values.") for n in main.input_names) else None
    stateful = root if root is not None and BEAM_IDX in main.input_names else None  # optimum-intel's stateful decoder
    if stateful is not None:
        kind = "decoder"  # its cache is inside: no past inputs to tell it by
    found = _task(config, task, kind, main)
    if found.kind == "decoder" and USE_CACHE_BRANCH in main.input_names:
        raise ArtifactError(f"{folder / main.file} is a merged decoder LM (use_cache_branch); load the folder's model.onnx "
                            "(what current Optimum writes), or re-export with `optibridge export`")
    if stateful is not None:
        if found.kind != "decoder":
            raise ArtifactError(f"{folder / main.file} is a stateful IR (beam_idx input) but config.json describes a "
                                f"{found.name!r} model; only decoder LMs are read stateful")
        graphs[MAIN_GRAPH] = main = _stateless_interface(folder / main.file, stateful, main)
    extra = {**_extra(found.kind, graphs, config), **({STATE_KEPT_IN: [MAIN_GRAPH]} if stateful is not None else {})}
    metadata = ArtifactMetadata(
        task=found.name, model_type=str(config.get("model_type", "")),
        source={"model": str(folder), "imported_from": "optimum"}, graphs=graphs, output_class=_output_class(found.output_class, main),
        opset=0, exporter="optimum (imported)", versions={}, extra=extra,
    )
    return Artifact(folder, metadata)


def _output_class(default: str, main: GraphSpec) -> str:
    """The task's ModelOutput type; one that also holds ``pooler_output`` when the graph returns it."""
    name = "BaseModelOutputWithPooling" if default == "BaseModelOutput" and "pooler_output" in main.output_names else default
    return f"transformers.modeling_outputs.{name}"


def _config(folder: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((folder / "config.json").read_text())
        return data
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{folder} has no readable config.json ({exc}); Optimum writes one beside the graphs") from exc


def _choose_file(folder: Path, files: list[str], file_name: str | None) -> str:
    if file_name is not None:
        if file_name not in files:
            raise ArtifactError(f"{folder} has no graph file {file_name!r}; it has: {', '.join(files) or 'none'}")
        return file_name
    for default in ("model.onnx", OPENVINO_FILE):
        if default in files:
            return default
    if len(files) == 1:
        return files[0]
    raise ArtifactError(f"{folder} holds several graph files ({', '.join(files)}): pick one with file_name=")


def _onnx_spec(path: Path) -> GraphSpec:
    import onnx

    from .exporter.torch_to_onnx import graph_spec

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends on a damaged file
        raise ArtifactError(f"{path} is not a readable ONNX model: {exc}") from exc
    spec = graph_spec(path.name, model)
    return dataclasses.replace(spec, inputs=_named_axes(spec.inputs), outputs=_named_axes(spec.outputs))


def _named_axes(specs: tuple[TensorSpec, ...]) -> tuple[TensorSpec, ...]:
    """An axis with neither a size nor a name is dynamic: give it a name (0 would read as a fixed size)."""
    return tuple(dataclasses.replace(t, shape=tuple(d if d != 0 else f"{t.name}_dim_{i}" for i, d in enumerate(t.shape))) for t in specs)


def _ir_root(path: Path) -> ET.Element:
    """An OpenVINO IR's XML, parsed (its weights file must be beside it)."""
    if not path.with_suffix(".bin").is_file():
        raise ArtifactError(f"{path} has no weights file {path.with_suffix('.bin').name} beside it")
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise ArtifactError(f"{path} is not a readable OpenVINO IR: {exc}") from exc


def _ir_spec(path: Path, root: ET.Element) -> GraphSpec:
    """Inputs/outputs of the OpenVINO IR ``path`` from its parsed XML (Parameter and Result layers), without OpenVINO."""
    layers = {layer.get("id"): layer for layer in root.iter("layer")}

    def port_name(layer: ET.Element, port_id: str | None) -> str:
        for port in layer.iter("port"):
            if port.get("id") == port_id and port.get("names"):
                return port.get("names", "").split(",")[0].strip()
        return layer.get("name", "")

    inputs, outputs = [], []
    for layer in layers.values():
        if layer.get("type") == "Parameter":
            data = layer.find("data")
            shape = (data.get("shape", "") if data is not None else "").split(",")
            dims = tuple(int(d) if d.strip().isdigit() else f"dim_{i}" for i, d in enumerate(shape) if d.strip())
            dtype = IR_TYPES.get(data.get("element_type", "f32") if data is not None else "f32", "float32")
            out = layer.find("output/port")
            inputs.append(TensorSpec(port_name(layer, out.get("id") if out is not None else None), dtype, dims))
    for edge in root.iter("edge"):
        target = layers.get(edge.get("to-layer"))
        if target is not None and target.get("type") == "Result":
            source = layers[edge.get("from-layer")]
            outputs.append(TensorSpec(port_name(source, edge.get("from-port")), "float32", ()))
    return GraphSpec(path.name, tuple(inputs), tuple(outputs), format="openvino-ir")


def _stateless_interface(path: Path, root: ET.Element, spec: GraphSpec) -> GraphSpec:
    """A stateful decoder IR described as the stateless graph it was made from (how optibridge records its own):
    each state variable, named by MakeStateful as ``past_key_values.{i}.key`` + ``present.{i}.key``, becomes that
    input/output pair; ``beam_idx`` is the stateful session's own input, left out."""
    past, present, layers = [], [], []
    for layer in root.iter("layer"):
        data = layer.find("data")
        if layer.get("type") != "ReadValue" or data is None:
            continue
        variable = data.get("variable_id", "")
        pair = CACHE_VARIABLE.fullmatch(variable)
        if pair is None:
            raise ArtifactError(f"{path} keeps a state variable {variable!r} that is not a KV-cache pair (past_key_values.N.key + "
                                "present.N.key, as optimum-intel names them); export the model with `optibridge export` instead")
        layers.append(int(pair.group(2)))
        dims = [d.strip() for d in data.get("variable_shape", "").split(",") if d.strip()]
        names = ("batch_size", "num_heads", "past_sequence_length", "head_dim")
        shape = tuple(int(d) if d.isdigit() else names[i] if i < len(names) else f"dim_{i}" for i, d in enumerate(dims))
        dtype = IR_TYPES.get(data.get("variable_type", "f32"), "float32")  # the cache's own type (f16 on some GPU exports)
        past.append(TensorSpec(pair.group(1), dtype, shape))
        present.append(TensorSpec(pair.group(3), dtype, shape))
    if not past:
        raise ArtifactError(f"{path} has a beam_idx input but no state variables: not a stateful decoder optibridge can read")
    order = sorted(range(len(past)), key=lambda i: (layers[i], past[i].name))
    inputs = tuple(t for t in spec.inputs if t.name != BEAM_IDX) + tuple(past[i] for i in order)
    return dataclasses.replace(spec, inputs=inputs, outputs=spec.outputs + tuple(present[i] for i in order))


def _seq2seq_graphs(folder: Path) -> dict[str, GraphSpec]:
    """The two decoders when the folder has them (Optimum writes them beside the merged one): OpenVINO's CPU
    plugin cannot compile the merged graph's If, and one file per role avoids loading the merged one twice."""
    graphs = {"encoder": _onnx_spec(folder / f"{SEQ2SEQ_FILES['encoder']}.onnx")}
    split = [folder / f"{SEQ2SEQ_FILES[name]}.onnx" for name in ("decoder", "decoder_with_past")]
    if all(file.is_file() for file in split):
        graphs["decoder"], graphs["decoder_with_past"] = (_onnx_spec(file) for file in split)
    elif (folder / MERGED_DECODER).is_file():
        graphs["decoder"] = graphs["decoder_with_past"] = _onnx_spec(folder / MERGED_DECODER)
    else:
        raise ArtifactError(f"{folder} has {SEQ2SEQ_FILES['encoder']}.onnx but neither {split[0].name} + {split[1].name} nor "
                            f"{MERGED_DECODER}; export it with its cache (optimum-cli's --task ...-with-past, or `optibridge export`)")
    return graphs


def _task(config: dict[str, Any], wanted: str | None, kind: str | None, main: GraphSpec) -> Any:
    if wanted:
        return TASKS[wanted]
    candidates = tuple(name for name, t in TASKS.items() if kind is None and t.kind == "encoder" or t.kind == kind)
    if kind == "seq2seq":
        speech = "input_features" in main.input_names
        return TASKS["automatic-speech-recognition" if speech else "text2text-generation"]
    return infer_task(config.get("architectures"), str(config.get("model_type", "")), candidates)


def _extra(kind: str, graphs: dict[str, GraphSpec], config: dict[str, Any]) -> dict[str, Any]:
    """The KV-cache layout the generative classes read, taken from the graph's past inputs."""
    if kind == "encoder":
        return {}
    spec = graphs.get("decoder_with_past") or graphs[MAIN_GRAPH]
    past = [t for t in spec.inputs if t.name.startswith("past_key_values.") and t.name.endswith(".key")]
    if not past:
        return {"use_cache": False, "kv_cache": None}
    layers = len({t.name.split(".")[1] for t in past})
    heads: Any = past[0].shape[1]
    head_dim: Any = past[0].shape[3]
    if not isinstance(heads, int) or not isinstance(head_dim, int):
        heads = config.get("num_key_value_heads") or config.get("num_attention_heads") or config.get("n_head")
        head_dim = config.get("head_dim") or config.get("hidden_size", config.get("n_embd", 0)) // (config.get("num_attention_heads") or config.get("n_head") or 1)
    return {"use_cache": True, "kv_cache": {"num_layers": layers, "num_heads": int(heads), "head_dim": int(head_dim)},
            "decoder_start_token_id": config.get("decoder_start_token_id")}


def merged_decoder_feed(spec: GraphSpec, with_past: bool, feed: dict[str, Any]) -> dict[str, Any]:
    """Inputs for Optimum's merged decoder: the branch flag, and on the first step (no cache yet)
    placeholder past tensors of length 1, which that branch does not read but the graph declares."""
    ids = feed["input_ids"]
    on_torch = not isinstance(ids, np.ndarray)
    feed = dict(feed)
    feed[USE_CACHE_BRANCH] = torch_or_numpy(np.array([with_past]), on_torch, ids)
    batch = ids.shape[0]
    for tensor in spec.inputs:
        if tensor.name.startswith("past_key_values.") and tensor.name not in feed:
            shape = [batch if i == 0 else d if isinstance(d, int) else 1 for i, d in enumerate(tensor.shape)]
            feed[tensor.name] = torch_or_numpy(np.zeros(shape, np.float32), on_torch, ids)
    return feed


def torch_or_numpy(value: np.ndarray, on_torch: bool, like: Any) -> Any:
    if not on_torch:
        return value
    import torch

    return torch.from_numpy(value).to(like.device)


def import_optimum_folder(source: str | os.PathLike[str], dest: str | os.PathLike[str], *, task: str | None = None,
                          file_name: str | None = None) -> Artifact:
    """Write the Optimum folder ``source`` as an optibridge artifact at ``dest`` (staged: all or nothing).

    Checked on the way: every ONNX graph passes ``onnx.checker``, and the task and KV-cache layout
    are read from config.json and the graphs' IO names (as a direct load does). Nothing is compared
    with PyTorch: the folder holds no PyTorch weights. Other graph files of the folder (a model.onnx
    beside the chosen model_quantized.onnx) are left out."""
    from .artifact import staged_directory, write_metadata

    found = read_optimum_folder(source, task=task, file_name=file_name)
    graph_files = {spec.file for spec in found.metadata.graphs.values()}
    for name in sorted(graph_files):
        if name.endswith(".onnx"):
            _check_onnx(found.path / name)
    left_out = [Path(name) for name in _graph_files(found.path) if name not in graph_files]
    with staged_directory(dest) as staging:
        for item in found.path.iterdir():
            # another graph, or its weights (model.onnx_data, openvino_model.bin)
            if item.is_file() and not any(item.name.startswith((other.name, other.stem + ".bin")) for other in left_out):
                shutil.copy2(item, staging / item.name)
        metadata = dataclasses.replace(found.metadata, source={**found.metadata.source, "model": str(Path(source).resolve())})
        write_metadata(staging, metadata)
    return Artifact.load(dest)


def _check_onnx(path: Path) -> None:
    import onnx

    try:
        onnx.checker.check_model(str(path))
    except Exception as exc:  # onnx.checker.ValidationError and protobuf decode errors
        raise ArtifactError(f"{path} fails onnx.checker: {str(exc).splitlines()[0]}") from exc
