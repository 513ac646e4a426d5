"""Where export time goes: wall time of ``optibridge.export`` for tiny models, split by phase.

For each model (tiny random bert, llama, t5 built from configs in tests/coverage/tiny_configs.py) this
runs one untimed export (imports, first-call caches), then one export under cProfile, and reports
the wall time and the cumulative time in each phase:

* ``capture``    -- torch.export tracing the model (dynamo) / the TorchScript trace;
* ``decompose``  -- torch.export's decompositions to the ONNX op set (dynamo only);
* ``to_onnx``    -- the rest of ``torch.onnx.export``: translation and graph optimisation;
* ``validate``   -- running the graphs on ONNX Runtime and PyTorch at new shapes;
* ``other``      -- loading the model, metadata, writing files.

    HF_HUB_OFFLINE=1 python benchmarks/export_time.py --models bert,llama,t5

Numbers are from this machine and its load at the time; compare phases within one run.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "coverage"))

TASKS = {"bert": "text-classification", "llama": "text-generation", "t5": "text2text-generation"}
PHASES = {
    "capture": ("_capture_strategies.py", "__call__"),
    "decompose": ("exported_program.py", "run_decompositions"),
    "torchscript": ("utils.py", "_model_to_graph"),
    "torch.onnx": ("onnx/__init__.py", "export"),
    "validate": ("exporter/core.py", "_validate"),
}


def profile_export(model_type: str, root: Path) -> dict[str, float]:
    from tiny_configs import build_tiny

    from optibridge import export

    source = build_tiny(model_type, TASKS[model_type], root / model_type)
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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'model':8} {'wall s':>8} {'capture':>8} {'decompose':>10} {'to_onnx':>8} {'validate':>9} {'other':>7}  (profiled seconds)")
        for model_type in args.models.split(","):
            r = profile_export(model_type, Path(tmp))
            print(f"{model_type:8} {r['wall']:8.1f} {r['capture']:8.1f} {r['decompose']:10.1f} {r['to_onnx']:8.1f} {r['validate']:9.1f} {r['other']:7.1f}")


if __name__ == "__main__":
    main()
