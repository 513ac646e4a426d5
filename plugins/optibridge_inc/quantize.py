"""Intel Neural Compressor as a weight-only int4 quantizer of the PyTorch model, before export.

neural-compressor 3.x no longer quantizes ONNX graphs; what it still does is choose int4 weights
on the PyTorch model (``neural_compressor.torch.quantization``): round-to-nearest (RTN), AWQ
(scales weights by activation statistics first) or GPTQ (corrects each rounding with second-order
information). Here the chosen int4 values are written back as float weights, the model is
exported with the artifact's own exporter settings, and the backend then packs those weights
into its int4 format (MatMulNBits for ``ort``) with the same group size: the packed graph is as
small as the backend's own int4, with the weights AWQ/GPTQ picked.

Needs the ``inc`` extra (``pip install 'optibridge[inc]'``) and the PyTorch model folder the
artifact was exported from (recorded in ``optibridge.json``, or ``source_model``).
"""

from __future__ import annotations

import logging
import os
import shutil
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from optibridge.artifact import MAIN_GRAPH, METADATA_FILE, Artifact
from optibridge.configs import QuantizationConfig
from optibridge.errors import CalibrationError, ConfigError
from optibridge.steps.calibration import CalibrationData

# Files of a model folder that the export rewrites; everything else (tokenizer, processor) is copied.
_MODEL_FILES = ("config.json", METADATA_FILE, "generation_config.json")


def _inc() -> Any:
    # INC logs every layer at INFO and WARNING (its logger reads the level from $LOGLEVEL once,
    # at import); the step's own report says what happened.
    level = os.environ.get("LOGLEVEL")
    os.environ["LOGLEVEL"] = "ERROR"
    logging.getLogger("torchao").setLevel(logging.ERROR)
    try:
        import neural_compressor.torch.quantization as inc_quantization
    except ImportError:
        raise ConfigError(
            "the inc-* modes need Intel Neural Compressor's PyTorch API: pip install 'optibridge[inc]' "
            "(neural-compressor[pt] and accelerate)"
        ) from None
    finally:
        if level is None:
            os.environ.pop("LOGLEVEL", None)
        else:
            os.environ["LOGLEVEL"] = level
    logging.getLogger("neural_compressor").setLevel(logging.ERROR)
    return inc_quantization


def source_model_dir(artifact: Artifact, config: QuantizationConfig) -> Path:
    """The PyTorch model folder to quantize: ``config.source_model`` or the one recorded at export."""
    recorded = artifact.metadata.source.get("local_path")
    given = config.source_model or recorded
    if not given:
        raise ConfigError(
            f"{config.mode} quantizes the PyTorch model, and {artifact.path} records no local model folder "
            f"(it was exported from {artifact.metadata.source.get('model')!r}); pass source_model=... / --source MODEL_DIR"
        )
    path = Path(given).expanduser()
    if not (path / "config.json").is_file():
        raise ConfigError(f"{config.mode} needs the PyTorch model folder, but {path} has no config.json; pass --source MODEL_DIR")
    return path


def _plain_linears(model: Any) -> int:
    """Replace INC's packed modules by ``nn.Linear`` holding the dequantized (int4-valued) weights."""
    import torch
    from neural_compressor.torch.algorithms.weight_only.modules import INCWeightOnlyLinear, MulLinear

    replaced = 0
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, INCWeightOnlyLinear):
                linear = torch.nn.Linear(child.in_features, child.out_features, bias=child.bias is not None)
                with torch.no_grad():
                    linear.weight.copy_(child.recover().float())
                    if child.bias is not None:
                        linear.bias.copy_(child.bias.float())
                setattr(parent, child_name, linear)
                replaced += 1
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, MulLinear):  # AWQ's input scale that could not be folded into a previous layer
                linear = child.linear
                with torch.no_grad():
                    linear.weight.mul_(child.input_scale.view(1, -1).float())
                setattr(parent, child_name, linear)
    return replaced


def _torch_feeds(calibration: CalibrationData | None, graph: str) -> list[dict[str, Any]]:
    import torch

    feeds = calibration.feeds(graph) if calibration is not None else []
    if not feeds:
        raise CalibrationError("AWQ and GPTQ need calibration samples for the model's main graph")
    return [{k: torch.from_numpy(v) for k, v in feed.items()} for feed in feeds]


def quantize_with_inc(
    artifact: Artifact, config: QuantizationConfig, calibration: CalibrationData | None, workdir: Path
) -> tuple[Artifact, list[str]]:
    """Quantize the artifact's PyTorch model with INC and export it; returns the exported (float) artifact."""
    source = source_model_dir(artifact, config)
    inc = _inc()
    import transformers

    from optibridge.exporter import export
    from optibridge.tasks import get_task

    task = get_task(artifact.metadata.task)
    model = getattr(transformers, task.auto_class).from_pretrained(str(source), attn_implementation="eager", trust_remote_code=False).eval()
    with _workspace_in(workdir / "nc_workspace"):
        quantized = _quantize_torch_model(inc, model, config, artifact, calibration)
    replaced = _plain_linears(quantized)
    if replaced == 0:
        raise ConfigError(f"Neural Compressor found no Linear layer to quantize in {source}; use --mode int4 on the graph instead")
    model_dir = workdir / "inc-model"
    quantized.save_pretrained(model_dir)
    for item in artifact.path.iterdir():
        if item.is_file() and item.name not in _MODEL_FILES and item.name not in artifact.graph_files():
            shutil.copy2(item, model_dir / item.name)
    exporter = artifact.metadata.exporter if artifact.metadata.exporter in ("torchscript", "dynamo") else "auto"
    exported = export(model_dir, workdir / "inc-artifact", task=artifact.metadata.task, exporter=exporter,
                      opset=artifact.metadata.opset or None)
    notes = [f"Neural Compressor {config.mode[4:].upper()} chose int4 weights for {replaced} Linear layer(s) "
             f"(group size {config.block_size}) on the PyTorch model from {source}; exported with {exported.artifact.metadata.exporter}"]
    return exported.artifact, notes


@contextmanager
def _workspace_in(folder: Path) -> Iterator[None]:
    """INC keeps its files in a process-wide workspace that defaults to ./nc_workspace/<time>/ in
    the caller's working directory; point it into the step's scratch folder for the call."""
    from neural_compressor.common import options

    previous = vars(options).get("_workspace")  # the public getter would create the folder
    options.workspace = str(folder)
    try:
        yield
    finally:
        if previous is not None:
            options.workspace = previous


def _quantize_torch_model(inc: Any, model: Any, config: QuantizationConfig, artifact: Artifact, calibration: CalibrationData | None) -> Any:
    import torch

    common = {"bits": 4, "group_size": config.block_size, "use_sym": config.weights_symmetric(True)}
    if config.mode == "inc-rtn":
        # use_layer_wise would re-read each weight from the checkpoint by name, which breaks on
        # heads that are not in it; the model is already in memory.
        quantized = inc.convert(inc.prepare(model, inc.RTNConfig(**common, use_layer_wise=False)))
    else:
        graphs = artifact.metadata.graphs
        feeds = _torch_feeds(calibration, MAIN_GRAPH if MAIN_GRAPH in graphs else next(iter(graphs)))
        algorithm = inc.AWQConfig(**common) if config.mode == "inc-awq" else inc.GPTQConfig(**common)
        with warnings.catch_warnings():  # INC's AWQ traces with torch.jit, which warns that it is deprecated
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            prepared = inc.prepare(model, algorithm, example_inputs=feeds[0]["input_ids"] if "input_ids" in feeds[0] else None)
            with torch.no_grad():
                for feed in feeds:
                    prepared(**feed)
            quantized = inc.convert(prepared)
    return quantized
