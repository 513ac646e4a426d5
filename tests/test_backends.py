"""Plugin discovery through pluggy and entry points, and backend errors."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from optibridge import backends as backends_module
from optibridge.artifact import Artifact
from optibridge.backend import Backend, BackendStatus
from optibridge.backends import BackendRegistry, get_registry, reset_registry
from optibridge.errors import BackendError
from optibridge.hookspecs import hookimpl
from optibridge.modeling import OBModelForSequenceClassification


class ReferenceSession:
    """Runs a graph with onnx's pure-Python reference evaluator: slow, but a genuinely separate runtime."""

    backend = "onnx-reference"
    device = "cpu"

    def __init__(self, artifact: Artifact, graph: str) -> None:
        from onnx.reference import ReferenceEvaluator

        self.evaluator = ReferenceEvaluator(str(artifact.graph_path(graph)))
        self._inputs = list(self.evaluator.input_names)
        self._outputs = list(self.evaluator.output_names)

    @property
    def input_names(self):
        return self._inputs

    @property
    def output_names(self):
        return self._outputs

    def run(self, inputs):
        return dict(zip(self._outputs, self.evaluator.run(None, dict(inputs))))


class ReferenceBackend(Backend):
    name = "onnx-reference"
    description = "onnx.reference (test plugin)"

    def status(self) -> BackendStatus:
        return BackendStatus(self.name, True, devices=("cpu",), version="test", features=("run",))

    def load(self, artifact, *, graph="model", device="cpu", **options):
        return ReferenceSession(artifact, graph)


class ReferencePlugin:
    @hookimpl
    def optibridge_backends(self):
        return [ReferenceBackend()]


@pytest.fixture
def registry():
    """A fresh process-wide registry, restored afterwards."""
    reset_registry()
    yield get_registry()
    reset_registry()


def test_first_party_plugins_are_found_through_the_entry_point_group(registry):
    names = {s.name for s in registry.statuses()}
    assert {"ort", "openvino", "cuda", "hpu"} <= names
    assert {"ort", "openvino", "cuda", "hpu"} <= set(dict(registry.plugin_manager.list_name_plugin()))
    registry.plugin_manager.check_pending()  # a misspelled hook implementation would fail here


def test_ort_is_usable_here_and_the_stubs_say_why_not(registry):
    status = {s.name: s for s in registry.statuses()}
    assert status["ort"].available and status["ort"].devices == ("cpu",) and "run" in status["ort"].features
    assert not status["cuda"].available and "onnxruntime-gpu not installed" in status["cuda"].reason
    assert "no NVIDIA driver" in status["cuda"].reason
    assert not status["hpu"].available and "habana_frameworks" in status["hpu"].reason
    assert status["openvino"].available and "cpu" in status["openvino"].devices  # installed by `make test`


def test_a_plugin_registered_at_run_time_is_listed_and_usable(registry, exported):
    registry.register(ReferencePlugin(), name="reference")
    registry.plugin_manager.check_pending()
    status = {s.name: s for s in registry.statuses()}
    assert status["onnx-reference"].available

    artifact = exported("bert", "text-classification")
    ref_model = OBModelForSequenceClassification.from_pretrained(artifact.path, backend="onnx-reference")
    ort_model = OBModelForSequenceClassification.from_pretrained(artifact.path, backend="ort")
    ids = torch.randint(5, 100, (2, 7))
    assert ref_model.backend == "onnx-reference"
    np.testing.assert_allclose(ref_model(input_ids=ids).logits.numpy(), ort_model(input_ids=ids).logits.numpy(), atol=1e-5)


def test_the_cli_lists_a_run_time_plugin(registry, capsys):
    from optibridge.cli import main

    registry.register(ReferencePlugin(), name="reference")
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    assert "onnx-reference" in out and "ort" in out


def test_two_plugins_with_the_same_backend_name_are_an_error_naming_both(registry):
    registry.register(ReferencePlugin(), name="first")
    registry.register(ReferencePlugin(), name="second")
    with pytest.raises(BackendError, match="two plugins provide a backend named 'onnx-reference'"):
        registry.backends()


def test_a_plugin_that_fails_to_import_is_reported_not_fatal(monkeypatch):
    broken = types.SimpleNamespace(name="broken", value="nowhere.plugin", load=lambda: __import__("nowhere_at_all"))
    real = backends_module.importlib.metadata.entry_points

    def entry_points(group):
        return list(real(group=group)) + [broken]

    monkeypatch.setattr(backends_module.importlib.metadata, "entry_points", entry_points)
    registry = BackendRegistry()
    status = {s.name: s for s in registry.statuses()}
    assert "ort" in status and status["ort"].available
    assert not status["broken"].available and "failed to import" in status["broken"].reason
    with pytest.raises(BackendError, match="installed but its plugin failed to import"):
        registry.get("broken")


def test_unknown_backend_lists_the_installed_ones(exported):
    with pytest.raises(BackendError, match=r"unknown backend 'tpu'; installed backends: cuda, hpu, openvino, ort"):
        OBModelForSequenceClassification.from_pretrained(exported("bert", "text-classification").path, backend="tpu")


def test_backend_that_is_not_usable_here_says_what_is_missing(exported):
    with pytest.raises(BackendError, match="backend 'cuda' is not usable here: onnxruntime-gpu not installed"):
        OBModelForSequenceClassification.from_pretrained(exported("bert", "text-classification").path, backend="cuda")


def test_device_the_backend_does_not_have_is_an_error_not_a_cpu_run(exported):
    path = exported("bert", "text-classification").path
    with pytest.raises(BackendError, match="backend 'ort' has no device 'cuda'.*its devices: cpu"):
        OBModelForSequenceClassification.from_pretrained(path, backend="ort", device="cuda")
    # backend="auto" (the default) says why each installed backend is out
    with pytest.raises(BackendError, match=r"no usable backend that can run on 'cuda' found \(cuda: onnxruntime-gpu not installed.*; ort: devices cpu"):
        OBModelForSequenceClassification.from_pretrained(path, device="cuda")


def test_auto_picks_an_available_backend(registry):
    assert registry.get("auto").name == "ort"


def test_unknown_session_option_lists_the_valid_ones(exported):
    with pytest.raises(BackendError, match="unknown ONNX Runtime session option.*intra_op_threads.*valid options: intra_op_num_threads"):
        OBModelForSequenceClassification.from_pretrained(exported("bert", "text-classification").path, intra_op_threads=2)


def test_session_options_reach_onnx_runtime(exported):
    model = OBModelForSequenceClassification.from_pretrained(
        exported("bert", "text-classification").path, intra_op_num_threads=1, graph_optimization_level="basic",
    )
    options = model.session.session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert str(options.graph_optimization_level).endswith("ORT_ENABLE_BASIC")
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_importing_the_core_imports_no_runtime():
    import subprocess

    code = (
        "import sys, optibridge, optibridge.exporter, optibridge.modeling, optibridge.cli, optibridge.backends;"
        "import optibridge.batch, optibridge.integrations.ray, optibridge.bench.runner;"
        "bad = [m for m in ('onnxruntime', 'openvino', 'habana_frameworks', 'tensorrt', 'ray') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_import_optibridge_is_cheap():
    import subprocess

    code = "import sys, optibridge; sys.exit(1 if 'torch' in sys.modules or 'transformers' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
