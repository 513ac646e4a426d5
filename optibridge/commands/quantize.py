"""`optibridge quantize`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from ..console import console
from ._steps import print_accuracy, print_operator_counts, print_written


def _names(values: Optional[list[str]]) -> Optional[tuple[str, ...]]:
    """Repeatable options that also take comma-separated lists: --exclude-ops Gather,Attention."""
    if not values:
        return None
    return tuple(part.strip() for value in values for part in value.split(",") if part.strip())


def quantize(
    artifact_dir: Path = typer.Argument(..., help="Artifact folder to quantize (float32; optimize it first if you want fusions)."),
    output_dir: Path = typer.Argument(..., help="Artifact folder to write (created; replaced only if it is an artifact)."),
    mode: Optional[str] = typer.Option(None, "--mode", "-m", help="Quantization mode (default: dynamic); installed: {modes}."),
    preset: Optional[str] = typer.Option(None, "--preset", help="auto (detect this CPU, default) | avx2 | avx512 | avx512-vnni | arm64."),
    per_channel: Optional[bool] = typer.Option(None, "--per-channel/--per-tensor", help="Weight scales per output channel (default: the preset's)."),
    reduce_range: Optional[bool] = typer.Option(None, "--reduce-range/--full-range", help="7-bit weights, against int8 saturation on CPUs without VNNI (default: the preset's)."),
    ops: Optional[list[str]] = typer.Option(None, "--ops", help="Operator types to quantize (default: MatMul, Attention)."),
    exclude_ops: Optional[list[str]] = typer.Option(None, "--exclude-ops", help="Operator types to keep in float, e.g. Attention."),
    exclude_nodes: Optional[list[str]] = typer.Option(None, "--exclude-nodes", help="Node names or glob patterns to keep in float."),
    exclude_ffn_down: Optional[bool] = typer.Option(
        None, "--keep-ffn-down/--quantize-ffn-down", help="Keep the FFN down-projections in float (default: dynamic no; static yes on ORT, on OpenVINO only those --min-cosine needs).",
    ),
    smooth: Optional[bool] = typer.Option(None, "--smooth/--no-smooth", help="SmoothQuant before int8 (default: on when samples are available)."),
    split_outliers: Optional[bool] = typer.Option(
        None, "--split-outliers/--no-split-outliers",
        help="Compute the few outlier channels of the FFN down-projections' inputs in float beside the int8 product, exact in float "
             "(default: on in OpenVINO's static plan; on ONNX Runtime dynamic int8 it follows --smooth, so --no-smooth alone "
             "is the fast choice: on all-MiniLM-L6-v2 ~2 % faster than Optimum's graph at a worst sentence of 0.96, its 0.80).",
    ),
    smooth_alpha: Optional[float] = typer.Option(None, "--smooth-alpha", help="SmoothQuant strength in (0, 1) (default: dynamic 0.7, static 0.5)."),
    min_cosine: Optional[float] = typer.Option(
        None, "--min-cosine", help="OpenVINO static: FFN down-projections go back to float until every calibration sample's cosine to float reaches this; a value set here is a requirement (unreachable: an error), the default 0.99 a goal (unreachable: every one in float, with a warning).",
    ),
    calibration: Optional[str] = typer.Option(
        None, "--calibration", "-c", help="Calibration samples: .txt, .jsonl, .npz, a folder of images (vision models) or recordings (.wav, .flac, .mp3, .ogg; audio models, resampled to the model's rate), or a datasets folder with a text, image or audio column or the model's input columns (default: built-in sentences).",
    ),
    calibration_method: Optional[str] = typer.Option(None, "--calibration-method", help="minmax (default) | entropy | percentile."),
    samples: Optional[int] = typer.Option(None, "--samples", help="Use at most this many calibration samples (default 100)."),
    calibration_column: Optional[str] = typer.Option(None, "--calibration-column", help="Text field of a JSONL file, or the text / image / audio column of a datasets folder (default: text; a dataset's only image or audio column is found without it)."),
    block_size: Optional[int] = typer.Option(None, "--block-size", help="int4 / int4-weights / inc-*: weights per quantization group (default 32)."),
    int4_algorithm: Optional[str] = typer.Option(None, "--int4-algorithm", help="int4: rtn (default) | hqq."),
    symmetric: Optional[bool] = typer.Option(
        None, "--symmetric/--asymmetric",
        help="Weight-only modes: weights without / with a zero point (default: int4 symmetric; int8-weights asymmetric, "
             "--symmetric decodes faster and is a little less accurate).",
    ),
    int4_compute: Optional[str] = typer.Option(
        None, "--int4-compute",
        help="int4 on ONNX Runtime: int8 (default: activations quantized per block at run time, integer products; fastest on CPUs) | f32 (float products).",
    ),
    source: Optional[str] = typer.Option(None, "--source", help="inc-*: the PyTorch model folder (default: the one recorded at export)."),
    config_file: Optional[Path] = typer.Option(
        None, "--config", help="A JSON QuantizationConfig (as recorded in optibridge.json); options given here override it.",
    ),
    accuracy_budget: Optional[str] = typer.Option(
        None, "--accuracy-budget", help="Fail (writing nothing) when worse, e.g. 'cosine>=0.99' or 'cosine>=0.99,top1>=0.98'.",
    ),
    backend: str = typer.Option(
        "auto", "--backend", help="Backend that quantizes (default auto: the first usable one, by priority, that has the mode); installed: {backends}.",
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an existing output artifact even when it holds files it does not own (they are deleted).",
    ),
    inference_precision: Optional[str] = typer.Option(
        None, "--inference-precision", help="Precision of what stays in float, f32 | bf16 | f16, on a backend that declares it (recorded in the artifact)."),
) -> None:
    """Quantize an artifact (int8 dynamic/static, int4 weight-only), checked against the float32 graphs.

    Examples:

        optibridge quantize ./minilm-onnx --mode dynamic ./minilm-int8

        optibridge quantize ./minilm-onnx --mode dynamic --no-smooth ./minilm-int8-fast   # faster, a lower worst case

        optibridge quantize ./minilm-onnx --mode static --calibration sentences.txt --samples 200 ./minilm-int8s

        optibridge quantize ./bert-onnx --mode dynamic --preset avx2 --exclude-ops Attention --accuracy-budget 0.99 ./bert-int8

        optibridge quantize ./gpt2-onnx --mode int4 --block-size 32 ./gpt2-int4

        optibridge quantize ./gpt2-onnx --mode inc-awq --calibration prompts.jsonl ./gpt2-awq

        optibridge quantize ./minilm-onnx --backend openvino --mode static --calibration sentences.txt ./minilm-ov-int8

        optibridge quantize ./gpt2-onnx --backend openvino --mode int4-weights --block-size 64 ./gpt2-ov-int4

        optibridge quantize ./gpt2-onnx --mode f16-weights ./gpt2-ov-f16w

        optibridge quantize ./gpt2-onnx --mode int8-weights --symmetric ./gpt2-ov-int8w

    dynamic: int8 weights, activations quantized per call; needs no data (a few built-in
    sentences find the outlier channels: those of FFN down-projection inputs go to a float side
    path, SmoothQuant moves the others into the weights; --no-smooth skips both: on all-MiniLM-L6-v2
    ~2 % faster, worst sentence 0.96 instead of 0.99). static: int8 QDQ with activation ranges from --calibration
    (.txt one sample per line, .jsonl with a text field or token ids, .npz arrays named after
    the inputs, or a datasets folder). int4: MatMulNBits weight-only for decoder LMs.
    inc-rtn/awq/gptq: Intel Neural Compressor picks int4 weights on the PyTorch model
    (`pip install 'optibridge[inc]'`), then they are exported and packed like int4.

    --backend openvino (`pip install 'optibridge[openvino-quant]'`) quantizes with NNCF and writes
    OpenVINO IR: static (int8, NNCF's transformer rules; every MatMul quantized, the few outlier
    channels of the FFN down-projections' inputs computed by a float side path, SmoothQuant alpha
    0.5 on the rest; with --inference-precision bf16 the attention stays int8 only if the calibration
    samples reach --min-cosine, else it is kept float; then the FFN
    down-projections that the calibration samples show to be harmful put back in float until
    --min-cosine is met; --keep-ffn-down keeps them all in float), int8-weights and int4-weights
    (weight-only, for decoder LMs; int4 in groups of --block-size), and f16-weights (weights stored
    as float16, arithmetic still float32: a decoder reads half the bytes per token; no NNCF needed).
    Decoder LMs come out stateful (KV cache inside the compiled model). `optibridge info` shows what
    was chosen.

    The preset (int8 settings for this CPU's integer instructions) is detected and printed;
    --preset overrides it. Quantize for the CPU the model will run on: without VNNI (avx2, avx512)
    int8 products are summed in 16 bits, so weights are 7-bit there; 8-bit weights made on a VNNI
    machine would saturate on such a CPU (loading them there warns). Every run compares the result with the float32 graphs on fresh inputs
    (max abs diff, cosine, top-1 agreement) and records it in optibridge.json.
    """
    from ..accuracy import AccuracyBudget
    from ..artifact import Artifact
    from ..steps import CalibrationConfig, QuantizationConfig
    from ..steps import quantize as run_quantize
    from ..errors import ConfigError

    base: dict[str, Any] = {}
    if config_file is not None:
        try:
            base = json.loads(config_file.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read --config {config_file}: {exc}") from None
    overrides = {
        "mode": mode, "preset": preset, "per_channel": per_channel, "reduce_range": reduce_range, "op_types": _names(ops),
        "exclude_ops": _names(exclude_ops), "exclude_nodes": _names(exclude_nodes), "exclude_ffn_down": exclude_ffn_down,
        "smooth": smooth, "split_outliers": split_outliers, "smooth_alpha": smooth_alpha, "min_cosine": min_cosine, "block_size": block_size, "int4_algorithm": int4_algorithm,
        "int4_compute": int4_compute, "symmetric": symmetric,
        "source_model": source, "inference_precision": inference_precision,
    }
    data = {**base, **{k: v for k, v in overrides.items() if v is not None}}
    calibration_options = {"source": calibration, "method": calibration_method, "num_samples": samples, "column": calibration_column}
    if any(v is not None for v in calibration_options.values()):
        data["calibration"] = {**(data.get("calibration") or {}), **{k: v for k, v in calibration_options.items() if v is not None}}
    config = QuantizationConfig.from_dict(data)
    budget = AccuracyBudget.parse(accuracy_budget) if accuracy_budget else None
    if config.calibration is not None and not isinstance(config.calibration, CalibrationConfig):
        raise ConfigError("calibration must be an object of CalibrationConfig fields")
    with console.status("starting") as status:
        result = run_quantize(artifact_dir, config, output_dir, backend=backend, accuracy_budget=budget,
                              on_step=lambda message: status.update(message), overwrite=overwrite)
    console.print(f"mode {config.mode} with backend {result.step['backend']}")
    for note in result.notes:
        console.print(f"  {note}", highlight=False, markup=False)
    settings = result.step.get("settings", {})
    console.print("settings: " + ", ".join(f"{k}={v}" for k, v in settings.items() if k != "preset_reason"), highlight=False)
    if result.step.get("calibration"):
        console.print(f"calibration: {result.step['calibration']['description']} ({result.step['calibration']['method']})")
    print_operator_counts(result, "quantized", "quantized operators (new nodes per type)")
    print_accuracy(result)
    print_written(result.artifact, Artifact.load(artifact_dir))
