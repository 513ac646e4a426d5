"""The command line: exports, inferred tasks, validation failures and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from optibridge.artifact import Artifact
from optibridge.cli import main


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_export_infers_the_task_and_says_so(tmp_path, tiny_model, capsys):
    code, out, err = run_cli(capsys, "export", "--model", tiny_model("albert", "token-classification"), tmp_path / "out")
    assert code == 0, err
    assert "task: token-classification (inferred from config.architectures=" in out
    assert "logits" in out and "ok" in out
    meta = Artifact.load(tmp_path / "out").metadata
    assert meta.task == "token-classification" and meta.validation["passed"]


def test_export_with_explicit_task_opset_and_atol(tmp_path, tiny_model, capsys):
    code, out, err = run_cli(
        capsys, "export", "--model", tiny_model("bert", "fill-mask"), "--task", "feature-extraction",
        "--opset", "17", "--atol", "1e-3", tmp_path / "out",
    )
    assert code == 0, err
    meta = Artifact.load(tmp_path / "out").metadata
    assert meta.task == "feature-extraction" and meta.opset == 17 and meta.validation["atol"] == 1e-3
    assert "inferred" not in out


def test_validation_above_atol_exits_non_zero_and_writes_nothing(tmp_path, minilm_path, capsys):
    # The real MiniLM differs from PyTorch by ~1e-6 on ORT: an atol of 1e-9 must fail.
    code, out, err = run_cli(capsys, "export", "--model", minilm_path, "--atol", "1e-9", tmp_path / "out")
    assert code == 1
    assert "error: exported graph differs from PyTorch by more than atol=1e-09" in err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args,message",
    [
        (["export", "--model", "{tmp}/missing", "{tmp}/out"], "does not exist"),
        (["export", "--model", "{tmp}", "{tmp}/out"], "has no config.json"),
        (["export", "--model", "{tmp}", "--task", "video-generation", "{tmp}/out"], "unknown task 'video-generation'; supported tasks:"),
        (["export", "--model", "{tmp}", "--task", "feature-extraction-with-past", "{tmp}/out"],
         "'-with-past' applies to generative tasks (a KV cache); 'feature-extraction' has none, use --task feature-extraction"),
        (["export", "--model", "{tmp}", "--task", "text-generation-with-past", "--no-cache", "{tmp}/out"],
         "--task text-generation-with-past asks for the KV cache and --no-cache for none: drop one of them"),
        (["info", "{tmp}"], "has no optibridge.json"),
    ],
    ids=["missing-path", "no-config", "unknown-task", "with-past-encoder", "with-past-no-cache", "not-an-artifact"],
)
def test_errors_are_one_readable_line_without_traceback(tmp_path, capsys, args, message):
    code, out, err = run_cli(capsys, *[a.format(tmp=tmp_path) for a in args])
    assert code == 1
    assert message in err
    assert "Traceback" not in err
    assert err.strip().startswith("error:")


def test_debug_shows_the_traceback(tmp_path, capsys):
    code, _, err = run_cli(capsys, "--debug", "export", "--model", tmp_path / "missing", tmp_path / "out")
    assert code == 1 and "Traceback" in err and "ModelNotFoundError" in err


def test_usage_errors_exit_2(capsys):
    code, _, err = run_cli(capsys, "export")
    assert code == 2 and "Missing" in err


def test_backends_json(capsys):
    code, out, _ = run_cli(capsys, "backends", "--json")
    assert code == 0
    rows = {row["name"]: row for row in json.loads(out)}
    assert rows["ort"]["available"] is True and rows["ort"]["devices"] == ["cpu"]
    assert rows["cuda"]["available"] is False and "no NVIDIA driver" in rows["cuda"]["reason"]


def test_info_shows_inputs_with_their_axes(exported, capsys):
    code, out, _ = run_cli(capsys, "info", "--verify", exported("bert", "text-classification").path)
    assert code == 0
    assert "input_ids: int64[batch_size, sequence_length]" in out and "graph files match their recorded SHA-256" in out
    assert "graph model: model.onnx (onnx)" in out


def test_the_installed_console_script_runs(tmp_path):
    script = os.path.join(os.path.dirname(sys.executable), "optibridge")
    done = subprocess.run([script, "export", "--model", str(tmp_path / "nope"), str(tmp_path / "o")], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "does not exist" in done.stderr
