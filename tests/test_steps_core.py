"""The runtime-free core of optimize/quantize: configs, CPU presets, accuracy math, budgets, validation inputs."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from optibridge.accuracy import AccuracyBudget, AccuracyReport, compare
from optibridge.errors import OptibridgeError
from optibridge.hardware import CPU_PRESETS, detect_cpu, parse_cpuinfo
from optibridge.steps import CalibrationConfig, ConfigError, OptimizationConfig, QuantizationConfig
from optibridge.steps.samples import validation_batch


@pytest.mark.parametrize(
    "config",
    [
        OptimizationConfig(),
        OptimizationConfig(level=4, device="gpu"),
        QuantizationConfig(),
        QuantizationConfig(mode="static", preset="avx512_vnni", per_channel=False, exclude_nodes=("*/output/dense/*",),
                           calibration=CalibrationConfig(source="c.jsonl", method="entropy", num_samples=7)),
        QuantizationConfig(mode="int4", block_size=64, int4_algorithm="hqq", op_types=("MatMul",), exclude_ops=("Gather",)),
        QuantizationConfig(mode="inc-awq", source_model="/models/gpt2", smooth=False),
        CalibrationConfig(source="data", column="sentence", percentile=99.9),
    ],
    ids=lambda c: type(c).__name__,
)
def test_configs_round_trip_through_dicts_and_json(config):
    import json

    data = json.loads(json.dumps(config.to_dict()))
    assert type(config).from_dict(data) == config


@pytest.mark.parametrize(
    "build,message",
    [
        (lambda: OptimizationConfig(level=5), "unknown optimization level 5; valid: 1, 2, 3, 4"),
        (lambda: OptimizationConfig(device="tpu"), "unknown target device 'tpu'; valid: cpu, gpu"),
        (lambda: QuantizationConfig(mode="int 3"), "quantization mode must be a name like 'dynamic' or 'int4', not 'int 3'"),
        (lambda: QuantizationConfig(preset="sse4"), "unknown preset 'sse4'; valid: auto, avx2, avx512, avx512-vnni, arm64"),
        (lambda: CalibrationConfig(method="kl"), "unknown calibration method 'kl'; valid: minmax, entropy, percentile"),
        (lambda: CalibrationConfig(num_samples=0), "num_samples must be at least 1"),
        (lambda: QuantizationConfig(block_size=48), "block_size must be a power of two >= 16"),
        (lambda: QuantizationConfig(smooth_alpha=1.5), "smooth_alpha must be between 0 and 1"),
        (lambda: QuantizationConfig.from_dict({"mode": "dynamic", "bits": 3}), "unknown QuantizationConfig field(s) bits; valid:"),
    ],
)
def test_bad_config_values_list_the_valid_ones(build, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build()


def test_an_unknown_mode_lists_the_modes_the_plugins_declare(tmp_path):
    from optibridge import quantize

    # Modes are declared by the installed plugins, so the verb checks them, before reading anything.
    with pytest.raises(ConfigError, match="unknown quantization mode 'int3'; valid: dynamic, static, int4, .*inc-rtn"):
        quantize(tmp_path / "no-such-artifact", QuantizationConfig(mode="int3"), tmp_path / "out")


def test_static_mode_gets_a_calibration_config_and_presets_are_normalised():
    assert QuantizationConfig(mode="static").calibration == CalibrationConfig()
    assert QuantizationConfig(preset="AVX512_VNNI").preset == "avx512-vnni"


X86_FLAGS = "fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma"


@pytest.mark.parametrize(
    "flags,machine,preset",
    [
        (X86_FLAGS + " avx2", "x86_64", "avx2"),
        (X86_FLAGS + " avx2 avx512f avx512bw avx512vl", "x86_64", "avx512"),
        (X86_FLAGS + " avx2 avx512f avx512bw avx512_vnni", "x86_64", "avx512-vnni"),
        (X86_FLAGS + " avx2 avx_vnni", "x86_64", "avx512-vnni"),  # client CPUs: VNNI in 256-bit form
        (X86_FLAGS + " avx2 avx512f avx512bw avx512_vnni amx_tile amx_int8", "x86_64", "avx512-vnni"),
        ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics asimddp", "aarch64", "arm64"),
    ],
    ids=["avx2", "avx512", "avx512-vnni", "avx-vnni", "amx", "arm64"],
)
def test_presets_follow_the_cpu_flags(flags, machine, preset):
    key = "Features" if machine == "aarch64" else "flags"
    info = parse_cpuinfo(f"processor\t: 0\nmodel name\t: Test CPU\n{key}\t\t: {flags}\n", machine)
    assert info.preset() == preset


def test_a_cpu_without_int8_instructions_says_so():
    with pytest.raises(OptibridgeError, match="neither AVX2 nor ARM64 int8 instructions.*pass a preset explicitly"):
        parse_cpuinfo("flags : sse sse2\n", "x86_64").preset()


def test_this_machine_is_detected():
    assert detect_cpu().preset() in CPU_PRESETS


def test_accuracy_compares_vectors_ignores_padding_and_counts_top1():
    rng = np.random.default_rng(0)
    hidden = rng.standard_normal((2, 5, 8)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    noisy = hidden.copy()
    noisy[0, 3:] = 100.0  # garbage only at padding positions
    logits = rng.standard_normal((2, 3)).astype(np.float32)
    flipped = logits.copy()
    flipped[1] = -flipped[1]
    report = compare({"last_hidden_state": hidden, "logits": logits}, {"last_hidden_state": noisy, "logits": flipped}, mask=mask)
    hidden_check, logits_check = report.outputs
    assert hidden_check.max_abs_diff == 0 and hidden_check.cosine_mean == pytest.approx(1.0) and hidden_check.vectors == 8
    assert logits_check.top1_agreement == 0.5 and logits_check.cosine_min == pytest.approx(-1.0)
    assert report.cosine == pytest.approx(0.0, abs=1e-6)  # the worst output's mean
    assert AccuracyReport.from_dict(report.to_dict()) == report


def test_a_missing_or_reshaped_output_scores_worst():
    report = compare({"a": np.ones((2, 3)), "b": np.ones((2, 3))}, {"b": np.ones((3, 2))})
    assert [o.max_abs_diff for o in report.outputs] == [float("inf"), float("inf")]
    assert report.cosine == 0.0


@pytest.mark.parametrize(
    "text,budget",
    [
        ("0.99", AccuracyBudget(min_cosine=0.99)),
        ("cosine>=0.995", AccuracyBudget(min_cosine=0.995)),
        ("cosine>=0.99, top1>=0.98, max-abs-diff<=1e-3", AccuracyBudget(0.99, 0.98, 1e-3)),
    ],
)
def test_budgets_parse(text, budget):
    assert AccuracyBudget.parse(text) == budget
    assert AccuracyBudget.from_dict(budget.to_dict()) == budget


def test_a_budget_names_what_it_misses_and_bad_budgets_explain_the_syntax():
    report = compare({"logits": np.array([[1.0, 2.0], [3.0, 1.0]])}, {"logits": np.array([[2.0, 1.0], [3.0, 1.0]])})
    missed = AccuracyBudget.parse("cosine>=0.99,top1>=0.9").violations(report)
    assert missed == ["logits cosine 0.9000 < 0.99", "logits top-1 0.500 < 0.9"]
    with pytest.raises(OptibridgeError, match="cannot read accuracy budget term 'cos>0.9'; write cosine>=0.99"):
        AccuracyBudget.parse("cos>0.9")


def test_validation_inputs_use_the_tokenizer_and_avoid_calibration_lengths(exported):
    artifact = exported("bert", "text-classification")
    batch = validation_batch(artifact, "model")
    assert "through the artifact's tokenizer" in batch.description and batch.feed["input_ids"].shape[0] > 1
    length = batch.feed["input_ids"].shape[1]
    other = validation_batch(artifact, "model", avoid_lengths={length, length + 1})
    assert other.feed["input_ids"].shape[1] == length + 2
    # every longer length taken (or past the position table): a shorter one, never past the table
    shorter = validation_batch(artifact, "model", avoid_lengths=set(range(length, 10_000)))
    assert shorter.feed["input_ids"].shape[1] == length - 1


def test_a_decoder_tokenizer_without_a_pad_token_pads_with_end_of_sequence(tmp_path):
    # GPT-2's and Llama's tokenizers have no pad token; validation batches are padded.
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from optibridge.steps.samples import load_tokenizer

    core = Tokenizer(models.WordLevel({"<eos>": 0, "a": 1, "b": 2, "<unk>": 3}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<eos>", unk_token="<unk>").save_pretrained(tmp_path)
    tokenizer = load_tokenizer(tmp_path)
    assert tokenizer.pad_token == "<eos>"
    assert tokenizer(["a", "a b b"], padding=True, return_tensors="np")["input_ids"].tolist() == [[1, 0, 0], [1, 2, 2]]


def test_the_core_of_the_steps_imports_no_runtime():
    code = (
        "import sys, optibridge.steps, optibridge.hardware, optibridge.accuracy, optibridge.commands.optimize, "
        "optibridge.commands.quantize, optibridge.configs, optibridge.backends, optibridge_inc.quantize;"
        "bad = [m for m in ('onnxruntime', 'openvino', 'neural_compressor') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
