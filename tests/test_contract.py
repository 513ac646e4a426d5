"""The core/plugin contract: no import circle in optibridge/, no plugin named by the core, and a plugin
registered at run time reaching --help, bench planning and quantize() through its declarations alone."""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from optibridge import backends as backends_module
from optibridge.artifact import Artifact, GraphSpec
from optibridge.backend import Backend, BackendStatus
from optibridge.capabilities import ModeSpec
from optibridge.hookspecs import hookimpl

CORE = Path(__file__).resolve().parent.parent / "optibridge"
PLUGINS = Path(__file__).resolve().parent.parent / "plugins"


# -- the import graph ------------------------------------------------------------------------------
def _module_name(path: Path) -> str:
    parts = list(path.relative_to(CORE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module → the optibridge modules it imports. Every import statement counts: module level,
    inside functions (lazy imports still make the importer depend on the imported) and under
    ``if TYPE_CHECKING`` (a type the contract names is a dependency of the contract).
    ``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``."""
    modules = {_module_name(p): p for p in CORE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else [])) if node.level else node.module or ""
                for alias in node.names:
                    targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_graph()["optibridge.steps.run"] >= {"optibridge.backend", "optibridge.artifact"}


def test_optibridge_has_no_import_cycle():
    assert cycles(import_graph()) == []


def test_the_contract_sits_below_the_verbs():
    graph = import_graph()
    verbs = {"optibridge.steps", "optibridge.exporter", "optibridge.backends", "optibridge.modeling"}
    for contract in ("optibridge.backend", "optibridge.configs", "optibridge.capabilities", "optibridge.hookspecs"):
        assert not {t for t in graph[contract] if t.rsplit(".", 1)[0] in verbs or t in verbs}, contract
    assert "optibridge.backends" not in graph["optibridge.exporter.core"]  # export receives its validator


# -- the core names no plugin ----------------------------------------------------------------------
PLUGIN_PACKAGES = sorted(p.name for p in PLUGINS.iterdir() if (p / "plugin.py").is_file())
PLUGIN_NAMES = sorted({p.removeprefix("optibridge_") for p in PLUGIN_PACKAGES})
# Files and strings where a plugin's name is the point, each with its reason.
ALLOWED_FILES = {
    "onnxruntime.py": "Optimum's ORTModel* names: the module is ONNX Runtime's compatibility surface by definition",
    "openvino.py": "optimum-intel's OVModel* names: the module is OpenVINO's compatibility surface by definition",
    "ov_tools.py": "optimum-intel's OVQuantizer: it quantizes with the openvino backend by definition",
}
ALLOWED_STRINGS = {  # (file, the whole string)
    ("bench/machine.py", "openvino"): "a PyPI distribution whose version a bench run records, not a backend name",
    ("modeling/base.py", "cuda"): "torch's device type for an integer device index (model.to(0)), not a backend name",
    ("integrations/ray/bench.py", "cuda"): "a device kind mapped to Ray's GPU resource, not a backend name",
    ("integrations/ray/bench.py", "hpu"): "a device kind mapped to Ray's HPU resource, not a backend name",
}
ALLOWED_EXAMPLES = {  # (file, a part of the string)
    ("commands/bench.py", "(e.g. ort:int8-dynamic,openvino:fp32)"): "an example in --help text",
    ("optimum_folders.py", "`optibridge optimize --backend openvino`"): "the command that makes a stateful IR, in an error's fix",
}


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
        if isinstance(node, (ast.Module, ast.ClassDef)):  # attribute docstrings: a string right after an assignment
            for before, after in zip(node.body, node.body[1:]):
                if isinstance(before, (ast.Assign, ast.AnnAssign)) and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant):
                    ids.add(id(after.value))
    return ids


def plugin_mentions() -> list[str]:
    """Every place in optibridge/ that imports a first-party plugin package, or whose code (not a
    docstring or comment) holds a string in which a first-party plugin's name is a word."""
    word = re.compile(r"(?<![\w-])(" + "|".join(PLUGIN_NAMES + PLUGIN_PACKAGES) + r")(?![\w-])")
    found = []
    for path in sorted(CORE.rglob("*.py")):
        rel = path.relative_to(CORE).as_posix()
        if rel in ALLOWED_FILES:
            continue
        tree = ast.parse(path.read_text())
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
                found += [f"{rel}:{node.lineno}: imports {n}" for n in names if n.split(".")[0] in PLUGIN_PACKAGES]
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
                hit = word.search(node.value)
                example = any(f == rel and part in node.value for f, part in ALLOWED_EXAMPLES)
                if hit and (rel, node.value) not in ALLOWED_STRINGS and not example:
                    found.append(f"{rel}:{node.lineno}: {node.value!r}")
    return found


def test_the_plugin_name_check_sees_a_plugin_name(tmp_path, monkeypatch):
    assert {"ort", "openvino", "cuda", "hpu", "inc"} <= set(PLUGIN_NAMES)
    (tmp_path / "optibridge").mkdir()
    (tmp_path / "optibridge" / "bad.py").write_text(
        '"""docstrings may say ort."""\nimport optibridge_ort\nDEFAULT = "ort"\nMSG = f"use backend=\'openvino\' {1}"\nOK = "sort, port"\n'
    )
    monkeypatch.setitem(globals(), "CORE", tmp_path / "optibridge")
    assert [m.split(": ", 1)[1] for m in plugin_mentions()] == ["imports optibridge_ort", "'ort'", '"use backend=\'openvino\' "']


def test_the_core_names_no_plugin():
    assert plugin_mentions() == []


# -- a plugin registered at run time ---------------------------------------------------------------
TOY_FORMAT = "toy-graph"


class ToyBackend(Backend):
    """Runs ONNX with ONNX Runtime, and 'quantizes' (mode int2-toy) by renaming each graph into its own format."""

    name = "toy"
    description = "a test backend declared at run time"
    priority = 999  # never chosen by "auto" unless it is the only one that can
    graph_formats = ("onnx", TOY_FORMAT)
    format_descriptions = {TOY_FORMAT: "a toy graph (an ONNX file under another name)"}
    modes = (ModeSpec("int2-toy", "pretend 2-bit weights (test plugin)", "int2", needs_calibration=True),)
    threads_option = "toy_threads"
    device_syntax = "toycpu"

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def status(self) -> BackendStatus:
        return BackendStatus(self.name, True, devices=("cpu",), version="0.0", features=("run", "quantize"))

    def load(self, artifact: Artifact, *, graph: str = "model", device: str = "cpu", **options: Any) -> Any:
        import onnxruntime as ort

        from optibridge_ort import OrtSession

        return OrtSession(ort.InferenceSession(str(artifact.graph_path(graph, formats=self.graph_formats))))

    def quantize(self, artifact, config, output_dir, calibration=None):
        self.calls.append({"mode": config.mode, "samples": len(calibration.feeds("model")) if calibration else 0})
        specs = {}
        for name, spec in artifact.metadata.graphs.items():
            shutil.copy2(artifact.path / spec.file, output_dir / f"{name}.toy")
            specs[name] = GraphSpec(f"{name}.toy", spec.inputs, spec.outputs, format=TOY_FORMAT)
        return {"graphs": {n: {"quantized": {"Toy": 1}} for n in specs}, "specs": specs, "settings": {"bits": 2}}


@pytest.fixture
def toy_registry(monkeypatch):
    registry = backends_module.BackendRegistry()
    toy = ToyBackend()

    class ToyPlugin:
        @hookimpl
        def optibridge_backends(self):
            return [toy]

    registry.register(ToyPlugin(), name="toy-plugin")
    monkeypatch.setattr(backends_module, "_registry", registry)
    return registry, toy


def test_a_plugin_mode_shows_in_quantize_help(toy_registry, capsys, monkeypatch):
    from optibridge.cli import main

    monkeypatch.setenv("COLUMNS", "1000")  # one line per option: the check reads the words, not the wrapping
    assert main(["quantize", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "int2-toy (toy)" in out and "toy (device toycpu)" in out
    assert "int4 (ort)" in out  # the first-party declarations are read the same way


def test_a_plugin_mode_is_a_bench_candidate(toy_registry):
    from optibridge.bench.configs import all_configs, backend_options, plan

    _, toy = toy_registry
    statuses = {"toy": toy.status(), "ort": BackendStatus("ort", True, ("cpu",), features=("run", "optimize", "quantize"))}
    assert all_configs()["int2-toy"].options == {"mode": "int2-toy"}
    cells = {(c.backend, c.config): c for c in plan(["toy", "ort"], ["int2-toy", "int8-dynamic"], statuses)}
    assert cells["toy", "int2-toy"].skip is None
    assert cells["ort", "int2-toy"].skip == "backend 'ort' has no int2-toy quantization (done by: toy)"
    assert "done by: ort" in cells["toy", "int8-dynamic"].skip
    assert backend_options("toy", 3) == {"toy_threads": 3}


def test_quantize_dispatches_to_a_plugin_mode_and_its_format_loads(toy_registry, exported, tmp_path):
    from optibridge import quantize
    from optibridge.configs import QuantizationConfig
    from optibridge.errors import ArtifactError, BackendError
    from optibridge.modeling import OBModelForSequenceClassification

    _, toy = toy_registry
    source = exported("bert", "text-classification")
    result = quantize(source.path, QuantizationConfig(mode="int2-toy"), tmp_path / "toy")  # backend auto: the one with the mode
    assert result.step["backend"] == "toy" and toy.calls[0]["samples"] > 0  # needs_calibration: the verb loaded samples
    assert result.artifact.graph_formats == {TOY_FORMAT}
    assert all(o["max_abs_diff"] == 0 for o in result.step["accuracy"]["model"]["outputs"])
    model = OBModelForSequenceClassification.from_pretrained(result.artifact.path)  # auto: the backend that reads it
    assert model.backend == "ort"  # OrtSession's name: the toy backend loaded it through ONNX Runtime
    with pytest.raises(ArtifactError, match=r"is a toy graph \(an ONNX file under another name\) \(model.toy\).*backend='toy'"):
        OBModelForSequenceClassification.from_pretrained(result.artifact.path, backend="ort")
    with pytest.raises(BackendError, match="backend 'ort' has no quantization mode 'int2-toy'; it is done by --backend toy"):
        quantize(source.path, QuantizationConfig(mode="int2-toy"), tmp_path / "no", backend="ort")
    assert not (tmp_path / "no").exists()


# -- one vocabulary ---------------------------------------------------------------------------------
def test_one_device_parser_for_every_spelling():
    import torch

    from optibridge.device import Device
    from optibridge.errors import BackendError

    assert Device.parse("CUDA:1") == Device("cuda", 1) and str(Device.parse(" hpu ")) == "hpu"
    assert Device.parse("GPU.1") == Device("gpu", 1)  # OpenVINO's spelling
    assert Device.parse(torch.device("cuda", 2)) == Device("cuda", 2) and Device.parse(torch.device("cpu")) == Device("cpu")
    assert Device.parse(0, int_kind="cuda") == Device("cuda", 0)
    assert Device.kind_of("HETERO:GPU,CPU") == "hetero"
    for bad in ("cuda:x", "", "cuda:-1", True, 0, 1.5):
        with pytest.raises(BackendError, match=r"device must be 'kind' or 'kind:N'"):
            Device.parse(bad)


def test_optional_session_capabilities_are_protocols():
    from optibridge.backend import StatefulSession, TorchSession, is_stateful, torch_runner

    class Plain:
        def run(self, inputs):
            return {}

    class Stateful(Plain):
        stateful = True

        def reset(self):
            pass

        def run_step(self, inputs, beam_idx=None, logits_to_keep=0):
            return {}

    class OnDevice(Plain):
        accepts_torch = False

        def run_torch(self, inputs):
            return {}

    assert is_stateful(Stateful()) and isinstance(Stateful(), StatefulSession) and not is_stateful(Plain())
    on_device = OnDevice()
    assert isinstance(on_device, TorchSession) and torch_runner(on_device) is None  # has the method, not the means
    on_device.accepts_torch = True
    assert torch_runner(on_device) == on_device.run_torch and torch_runner(Plain()) is None


def test_one_task_table_every_task_has_a_class():
    from optibridge.errors import UnsupportedModelError
    from optibridge.modeling import OBModel
    from optibridge.modeling.base import register_task_class
    from optibridge.modeling.tasks import TASK_CLASSES, task_class
    from optibridge.tasks import TASKS

    classes = {task: task_class(task) for task in TASKS}
    assert all(cls.task_name == task for task, cls in classes.items())
    assert TASK_CLASSES == {t: c for t, c in classes.items() if TASKS[t].kind == "encoder"} and TASK_CLASSES

    class OBModelForNothing(OBModel):
        task_name = "no-such-task"

    with pytest.raises(UnsupportedModelError, match="task_name 'no-such-task' is not a task; known: feature-extraction"):
        register_task_class(OBModelForNothing)
