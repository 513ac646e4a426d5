"""Export time of tiny models: ``optibridge export`` beside ``optimum-cli export onnx``, and where it goes.

Default (``--compare``): for each tiny random model (bert, llama with KV cache, t5 with KV cache, built
from configs by tests/coverage/tiny_configs.py), run both command lines ``--repeats`` times each,
interleaved (optibridge, optimum, optibridge, ...) so that load on a shared machine hits both alike,
and print the median wall time of each and their ratio. Both validate their graphs against PyTorch.
Optimum needs its own venv (transformers < 4.58): pass its ``optimum-cli`` with ``--optimum-cli``.

``--phases``: one untimed export (caches), then one export under cProfile, split by phase:

* ``capture``    -- torch.export tracing the model (dynamo) / the TorchScript trace;
* ``decompose``  -- torch.export's decompositions to the ONNX op set (dynamo only);
* ``to_onnx``    -- the rest of ``torch.onnx.export``: translation and graph optimisation;
* ``validate``   -- running the graphs on ONNX Runtime and PyTorch at new shapes;
* ``other``      -- loading the model, metadata, writing files.

    HF_HUB_OFFLINE=1 python benchmarks/export_time.py --optimum-cli /path/to/optimum-venv/bin/optimum-cli
    HF_HUB_OFFLINE=1 python benchmarks/export_time.py --phases --models llama

Numbers are from this machine and its load at the time; compare within one run.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "coverage"))

TASKS = {"bert": "text-classification", "llama": "text-generation", "t5": "text2text-generation"}
# Optimum's names for the same exports (with the KV cache, as optibridge exports them by default).
OPTIMUM_TASKS = {"bert": "text-classification", "llama": "text-generation-with-past", "t5": "text2text-generation-with-past"}
PHASES: dict[str, tuple[str | tuple[str, ...], str]] = {
    "capture": ("_capture_strategies.py", "__call__"),
    "decompose": ("exported_program.py", "run_decompositions"),
    "torchscript": ("utils.py", "_model_to_graph"),
    "torch.onnx": ("onnx/__init__.py", "export"),
    "validate": (("exporter/encoder.py", "exporter/decoder.py", "exporter/seq2seq.py"), "validate"),
}


def build_models(models: list[str], root: Path) -> dict[str, Path]:
    from tiny_configs import build_tiny

    return {m: build_tiny(m, TASKS[m], root / m) for m in models}


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds


def compare(models: dict[str, Path], optimum_cli: str, repeats: int, root: Path) -> None:
    optibridge_cli = str(Path(sys.executable).with_name("optibridge"))
    print(f"{'model':6} {'optibridge s':>13} {'optimum-cli s':>14} {'ratio':>6}  (medians of {repeats}, interleaved; ratio < 1: optibridge faster)")
    for name, source in models.items():
        ours: list[float] = []
        theirs: list[float] = []
        for i in range(repeats):
            runs = [("ob", [optibridge_cli, "export", "--model", str(source), "--task", TASKS[name]]),
                    ("opt", [optimum_cli, "export", "onnx", "--model", str(source), "--task", OPTIMUM_TASKS[name]])]
            if i % 2:
                runs.reverse()  # alternate who goes first
            for who, command in runs:
                out = root / f"{name}-{who}"
                shutil.rmtree(out, ignore_errors=True)
                seconds = timed([*command, str(out)])
                (ours if who == "ob" else theirs).append(seconds)
        a, b = statistics.median(ours), statistics.median(theirs)
        print(f"{name:6} {a:13.1f} {b:14.1f} {a / b:6.2f}   optibridge {sorted(round(x, 1) for x in ours)}, optimum {sorted(round(x, 1) for x in theirs)}", flush=True)


def profile_export(model_type: str, source: Path, root: Path) -> dict[str, float]:
    from optibridge import export

    export(source, root / f"{model_type}-warm")
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.runcall(export, source, root / f"{model_type}-out")
    wall = time.perf_counter() - start
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    cumulative: dict[str, float] = {}
    for (filename, _, function), (_, _, _, cum, _) in stats.items():
        for phase, (file_end, name) in PHASES.items():
            if filename.endswith(file_end) and function == name:
                cumulative[phase] = cumulative.get(phase, 0.0) + cum
    onnx_total = cumulative.pop("torch.onnx", 0.0)
    row = {"wall": wall, "capture": cumulative.get("capture", 0.0) + cumulative.get("torchscript", 0.0),
           "decompose": cumulative.get("decompose", 0.0), "validate": cumulative.get("validate", 0.0)}
    row["to_onnx"] = max(onnx_total - row["capture"] - row["decompose"], 0.0)
    profiled = max(entry[3] for entry in stats.values())  # the export() call itself
    row["other"] = max(profiled - row["capture"] - row["decompose"] - row["to_onnx"] - row["validate"], 0.0)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="bert,llama,t5")
    parser.add_argument("--phases", action="store_true", help="profile optibridge's phases instead of comparing with optimum-cli")
    parser.add_argument("--optimum-cli", default=shutil.which("optimum-cli") or "optimum-cli")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        models = build_models(args.models.split(","), root / "models")
        if not args.phases:
            compare(models, args.optimum_cli, args.repeats, root)
            return
        print(f"{'model':8} {'wall s':>8} {'capture':>8} {'decompose':>10} {'to_onnx':>8} {'validate':>9} {'other':>7}  (profiled seconds)")
        for model_type, source in models.items():
            r = profile_export(model_type, source, root)
            print(f"{model_type:8} {r['wall']:8.1f} {r['capture']:8.1f} {r['decompose']:10.1f} {r['to_onnx']:8.1f} {r['validate']:9.1f} {r['other']:7.1f}")


if __name__ == "__main__":
    main()
