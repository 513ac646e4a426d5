"""Ray, for real: one local cluster per module (a head with 2 CPUs and a second node that has a fake
GPU and a fake HPU resource), started once; the fake backends of tests/ray_fake_plugins.py run in
its workers. `optibridge run --ray` must give the in-process result even when an actor dies;
`optibridge bench --ray` must put cuda/hpu cells only on the node that has those resources."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

import ray  # the ray extra is installed by `make test`: a missing install must fail, not skip

from optibridge.batch import RayOptions, run_file
from optibridge.cli import main

TESTS = Path(__file__).parent
MB = 1024 * 1024


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    from ray.cluster_utils import Cluster

    kill_dir = tmp_path_factory.mktemp("ray-kill")
    # The raylets (and so every worker and bench cell process) inherit these; this process gets
    # its environment back at once, so other test modules never see the fake plugins.
    env = {"OPTIBRIDGE_PLUGINS": "ray_fake_plugins", "OPTIBRIDGE_TEST_KILL_DIR": str(kill_dir),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])),
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "RAY_DEDUP_LOGS": "0"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        made = Cluster(initialize_head=True, connect=False,
                       head_node_args={"num_cpus": 2, "object_store_memory": 200 * MB, "include_dashboard": False})
        accelerated = made.add_node(num_cpus=1, num_gpus=1, resources={"HPU": 1}, object_store_memory=100 * MB)
        made.wait_for_nodes()
        ray.init(address=made.address, include_dashboard=False, log_to_driver=False)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    yield {"accelerated": accelerated.node_id, "head": made.head_node.node_id, "kill_dir": kill_dir}
    ray.shutdown()
    made.shutdown()


def _docs(path: Path, n: int) -> Path:
    words = ["the cat", "sat on the mat", "paris is the capital of france", "hello", "a dog ran in the park"]
    path.write_text("".join(json.dumps({"text": f"{words[i % 5]} {i}"}) + "\n" for i in range(n)))
    return path


def _table(path: Path) -> dict:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pydict()


def test_a_killed_actor_loses_and_duplicates_no_row_and_matches_the_in_process_run(cluster, exported, tmp_path):
    artifact = exported("bert", "feature-extraction").path
    source = _docs(tmp_path / "docs.jsonl", 120)
    run_file(artifact, source, tmp_path / "local.parquet", batch_size=8)
    (cluster["kill_dir"] / "armed").write_text("")
    result = run_file(artifact, source, tmp_path / "ray.parquet", batch_size=8, backend="fake-dies", shard_size=50,
                      ray=RayOptions(replicas=2))
    assert (cluster["kill_dir"] / "fired").exists(), "no actor was killed: the test proved nothing"
    local, on_ray = _table(tmp_path / "local.parquet"), _table(tmp_path / "ray.parquet")
    assert on_ray["id"] == local["id"] == list(range(120)) and on_ray["text"] == local["text"]
    assert result.rows_run == 120 and result.failed_rows == [] and on_ray["error"] == [None] * 120
    np.testing.assert_allclose(np.array(on_ray["embedding"]), np.array(local["embedding"]), atol=1e-5)


def test_cli_on_ray_and_a_rejected_row_is_named_from_the_actor(cluster, exported, tmp_path, capsys):
    artifact = str(exported("bert", "text-classification").path)
    source = tmp_path / "docs.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["the cat", "a dog", None, "hello"]))
    out = tmp_path / "out.parquet"
    args = ["run", artifact, "--input", str(source), "--output", str(out), "--ray", "--replicas", "1", "--no-progress"]
    assert main(args) == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "row 2: column 'text' holds null" in errors[0] and not out.exists()
    assert main(args + ["--on-error", "skip"]) == 0
    assert "4 rows (text-classification)" in capsys.readouterr().out
    got = _table(out)
    assert got["id"] == [0, 1, 2, 3] and got["label"][2] is None and got["error"][2] and got["label"][0] in ("NEG", "NEU", "POS")


def test_map_artifact_adds_results_to_a_ray_data_pipeline(cluster, exported):
    from optibridge.integrations.ray import map_artifact

    texts = ["the cat sat", "hello", "paris is the capital of france"]
    rows = map_artifact(ray.data.from_items([{"text": t} for t in texts]), str(exported("bert", "text-classification").path),
                        batch_size=2).take_all()
    assert sorted(r["text"] for r in rows) == sorted(texts)
    assert all(r["label"] in ("NEG", "NEU", "POS") and 0 < r["score"] <= 1 and r["error"] is None for r in rows)


def test_an_unreachable_address_is_one_line(tmp_path, exported, capsys):
    from optibridge.integrations.ray.cluster import RayError, check_reachable

    with pytest.raises(RayError, match=r"cannot reach the Ray cluster at '127.0.0.1:1'.*ray start --head"):
        check_reachable("127.0.0.1:1")


def test_bench_puts_cuda_and_hpu_cells_only_on_the_node_with_those_resources(cluster, exported, tmp_path):
    from optibridge.bench import load_run

    out, matrix = tmp_path / "bench", tmp_path / "matrix.md"
    matrix.write_text("# matrix\n")
    code = main(["bench", "--model", str(exported("bert", "feature-extraction").path), "--backends",
                 "ort,fake-cuda,fake-hpu,fake-kills-worker", "--configs", "fp32", "--batch-sizes", "1", "--seq-lens", "8",
                 "--warmup", "1", "--runs", "3", "--threads", "1", "--timeout", "120", "--ray", "--no-progress",
                 "--out", str(out), "--update-matrix", "--matrix", str(matrix)])
    assert code == 0
    run = load_run(out / "results.json")
    cells = {c.name: c for c in run.cells}
    assert set(cells) == {"pytorch:eager", "ort:fp32", "fake-cuda:fp32", "fake-hpu:fp32", "fake-kills-worker:fp32"}
    for name in ("fake-cuda:fp32", "fake-hpu:fp32"):
        assert cells[name].ok, cells[name].reason
        assert cells[name].device in ("cuda", "hpu") and cells[name].ray_node == cluster["accelerated"]
    for name in ("pytorch:eager", "ort:fp32"):
        assert cells[name].ok and cells[name].ray_node in (cluster["head"], cluster["accelerated"])
    ort = cells["ort:fp32"]
    assert ort.baseline is not None and ort.speedup == pytest.approx(ort.baseline.p50_ms / ort.latency.p50_ms)
    died = cells["fake-kills-worker:fp32"]
    assert died.status == "failed" and "Ray worker or node running the cell failed" in died.reason
    fingerprints = {c.machine for c in run.cells if c.ok}
    assert len(fingerprints) == 1 and fingerprints <= set(run.nodes)  # one machine, two Ray nodes
    fingerprint = fingerprints.pop()
    assert f"@{fingerprint}" in (out / "report.md").read_text()
    assert f"optibridge-bench:begin {fingerprint}" in matrix.read_text()


def test_all_nodes_repeats_cpu_cells_once_per_machine_fingerprint():
    from optibridge.bench.configs import PlannedCell
    from optibridge.bench.runner import CellJob
    from optibridge.integrations.ray.bench import RayExecutor

    executor = object.__new__(RayExecutor)  # placement only: no cluster needed
    executor.all_nodes = True
    a1, a2, b1 = (name.ljust(56, "0") for name in ("a1", "a2", "b1"))  # Ray node ids are 56 hex digits
    executor.alive = [{"NodeID": n, "Resources": {"CPU": 2.0}} for n in (a1, a2, b1)]
    executor.probes = {n: {"machine": {"fingerprint": n[0]}} for n in (a1, a2, b1)}  # a1, a2: one machine model
    jobs = [CellJob(0, PlannedCell("ort", "fp32"), {}, {}), CellJob(1, PlannedCell("cuda", "fp16", device="cuda:0"), {}, {})]
    expanded = executor.expand(jobs)
    assert [(j.planned.backend, j.placement.get("node_id")) for j in expanded] == [("ort", a1), ("ort", b1), ("cuda", None)]
    assert executor._options(expanded[0])["num_cpus"] == 2.0 and executor._options(expanded[2])["num_gpus"] == 1


def test_folders_a_node_lacks_are_unpacked_from_the_shipped_copy(exported):
    from optibridge.integrations.ray.bench import local_spec, pack_folder

    artifact = str(exported("bert", "feature-extraction").path)
    missing = "/nonexistent/optibridge-artifact"
    spec = local_spec({"artifact": missing, "reference": artifact}, {missing: pack_folder(artifact)})
    assert spec["reference"] == artifact  # present here: used where it is
    assert Path(spec["artifact"]).is_dir() and (Path(spec["artifact"]) / "optibridge.json").read_bytes() == \
        (Path(artifact) / "optibridge.json").read_bytes()


def test_all_nodes_without_ray_is_an_error(capsys):
    assert main(["bench", "--model", "unused", "--all-nodes"]) == 1
    assert "--all-nodes needs --ray" in capsys.readouterr().err
