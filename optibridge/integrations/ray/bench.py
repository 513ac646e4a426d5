"""``optibridge bench --ray``: every backend × config runs as a Ray task on a node that has what it needs.

The Ray task does exactly what the local runner does (:func:`optibridge.bench.runner.run_process`):
it starts the measuring process on its node, with its timeout, and reports each shape's result.
So each cell keeps its isolation, and its PyTorch baseline is measured interleaved on the same
node. Ray only places the work:

* a cell whose device is ``cuda``/``gpu`` asks for Ray's ``GPU`` resource, ``hpu`` for ``HPU``,
  anything else for CPUs: as many as ``--threads`` (at most a node's CPU count), so cells on a
  node with that many CPUs run one at a time, never side by side;
* ``all_nodes=True`` repeats the CPU cells once per distinct machine fingerprint, pinned to one
  node of each (``NodeAffinitySchedulingStrategy``): a fleet of mixed CPUs gives a row per CPU;
* a task is never retried (``max_retries=0``): a node or worker that dies fails its cells, with
  the reason, and the other cells still report.

Which backends exist is asked of the nodes, not of this machine: a GPU backend that is usable on
one node is benchmarked there even when the machine running ``optibridge bench`` has no GPU.
Artifacts are built on this machine (``optimize``/``quantize``) and read by the cells from the
same path; a node that does not have the path gets the folders shipped through Ray's object store.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Callable

from .cluster import connect, worker_error

GPU_PREFIXES = ("cuda", "gpu")
HPU_PREFIXES = ("hpu",)
PATH_KEYS = ("artifact", "inputs_artifact", "reference")
"""The spec entries that name folders a cell process reads."""


def describe_node(threads: int) -> dict[str, Any]:
    """Runs on a node: its machine record (with its backends' statuses) and its Ray node id."""
    import ray

    from ...backends import get_registry
    from ...bench.machine import describe_machine

    statuses = {s.name: s for s in get_registry().statuses()}
    return {"machine": describe_machine(threads, statuses), "statuses": statuses,
            "node_id": ray.get_runtime_context().get_node_id()}


def run_cell(spec: dict[str, Any], timeout_s: float, shipped: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None, dict[str, Any]]:
    """Runs on a node: one measuring process, as the local runner runs it; the events, why it
    stopped early (None: it did not), and where it ran."""
    from ...bench.runner import run_process

    events: list[dict[str, Any]] = []
    stopped = run_process(local_spec(spec, shipped), timeout_s, events.append)
    node = describe_node(int(spec["threads"]))
    return events, stopped, {"machine": node["machine"], "node_id": node["node_id"]}


def local_spec(spec: dict[str, Any], shipped: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with each folder this node lacks replaced by its copy unpacked from ``shipped``
    (``{path: tar bytes or an ObjectRef of them}``); folders the node has are used where they are."""
    result = dict(spec)
    for key in PATH_KEYS:
        path = spec.get(key)
        if not path or Path(path).exists() or path not in shipped:
            continue
        packed = shipped[path]
        if not isinstance(packed, (bytes, bytearray)):
            import ray

            packed = ray.get(packed)
        target = Path(tempfile.gettempdir()) / "optibridge-ray-shipped" / hashlib.sha256(bytes(packed)).hexdigest()[:16]
        if not target.exists():
            staging = target.with_name(target.name + ".tmp")
            with tarfile.open(fileobj=io.BytesIO(packed)) as archive:
                archive.extractall(staging, filter="data")  # "data": no links or paths outside the folder
            staging.rename(target)
        result[key] = str(target)
    return result


def pack_folder(path: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for item in sorted(Path(path).iterdir()):
            archive.add(item, arcname=item.name)
    return buffer.getvalue()


def needs(device: str) -> str:
    """"gpu", "hpu" or "cpu": the kind of Ray resource a cell on ``device`` needs."""
    name = device.lower()
    if name.startswith(GPU_PREFIXES):
        return "gpu"
    if name.startswith(HPU_PREFIXES):
        return "hpu"
    return "cpu"


RESOURCE_OF = {"gpu": "GPU", "hpu": "HPU", "cpu": "CPU"}


class RayExecutor:
    """The executor of :func:`optibridge.bench.runner.measure_all` that runs each job as a Ray task."""

    def __init__(self, address: str | None = None, *, threads: int = 1, all_nodes: bool = False) -> None:
        self.ray = connect(address)
        self.threads = threads
        self.all_nodes = all_nodes
        self.machines: dict[str, dict[str, Any]] = {}
        self.alive = [n for n in self.ray.nodes() if n.get("Alive")]
        self.probes = self._probe()

    def _probe(self) -> dict[str, dict[str, Any]]:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        probe = self.ray.remote(num_cpus=0, max_retries=0)(describe_node)
        refs = {n["NodeID"]: probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(self.threads)
                for n in self.alive}
        found = {}
        for node_id, ref in refs.items():
            try:
                found[node_id] = self.ray.get(ref, timeout=300)
            except Exception:  # a node that cannot even describe itself takes no cells
                continue
        return found

    # -- the executor interface --------------------------------------------------------------------
    def statuses(self) -> dict[str, Any]:
        """Every backend any node has; available (with the union of devices) where any node can run it."""
        import dataclasses

        merged: dict[str, Any] = {}
        for probe in self.probes.values():
            for name, status in probe["statuses"].items():
                known = merged.get(name)
                if known is None or (status.available and not known.available):
                    merged[name] = status
                elif status.available and known.available:
                    devices = tuple(dict.fromkeys(known.devices + status.devices))
                    merged[name] = dataclasses.replace(known, devices=devices)
        return merged

    def expand(self, jobs: list[Any]) -> list[Any]:
        """With ``all_nodes``: each CPU job once per distinct machine fingerprint, pinned to one node of it."""
        import dataclasses

        if not self.all_nodes:
            return jobs
        per_fingerprint: dict[str, str] = {}
        for node_id, probe in self.probes.items():
            if self._resources(node_id).get("CPU", 0) >= 1:
                per_fingerprint.setdefault(probe["machine"]["fingerprint"], node_id)
        expanded = []
        for job in jobs:
            if needs(job.planned.device) != "cpu":
                expanded.append(job)
                continue
            expanded.extend(dataclasses.replace(job, placement={"node_id": node}) for node in per_fingerprint.values())
        return expanded

    def run(self, jobs: list[Any], timeout_s: float, on_event: Callable[[Any, dict[str, Any]], None],
            on_done: Callable[[Any, str | None, dict[str, Any]], None]) -> None:
        shipped = self._ship(jobs)
        remote = self.ray.remote(run_cell)
        waiting: dict[Any, Any] = {}
        for job in jobs:
            reason = self._infeasible(job)
            if reason:
                on_done(job, reason, {})
                continue
            waiting[remote.options(**self._options(job)).remote(job.spec, timeout_s, shipped)] = job
        while waiting:
            done, _ = self.ray.wait(list(waiting), num_returns=1)
            job = waiting.pop(done[0])
            try:
                events, stopped, node = self.ray.get(done[0])
            except Exception as exc:  # the worker or its node died under the cell (or Ray could not run it)
                on_done(job, f"the Ray worker or node running the cell failed: {worker_error(exc)}", {})
                continue
            fingerprint = node["machine"]["fingerprint"]
            self.machines.setdefault(fingerprint, node["machine"])
            for event in events:
                on_event(job, event)
            on_done(job, stopped, {"machine": fingerprint, "ray_node": node["node_id"]})

    def nodes(self) -> dict[str, dict[str, Any]]:
        return dict(self.machines)

    # -- placement -----------------------------------------------------------------------------------
    def _resources(self, node_id: str) -> dict[str, float]:
        return next((n.get("Resources", {}) for n in self.alive if n["NodeID"] == node_id), {})

    def _infeasible(self, job: Any) -> str | None:
        kind = needs(job.planned.device)
        resource = RESOURCE_OF[kind]
        if any(n.get("Resources", {}).get(resource, 0) >= 1 for n in self.alive):
            return None
        return (f"no node of the Ray cluster has the {resource!r} resource a {job.planned.device} cell needs "
                f"(start the node with `ray start --resources '{{\"{resource}\": 1}}'` or on a machine that has one)")

    def _options(self, job: Any) -> dict[str, Any]:
        kind = needs(job.planned.device)
        options: dict[str, Any] = {"max_retries": 0}
        node = job.placement.get("node_id")
        if kind == "gpu":
            options.update(num_gpus=1, num_cpus=1)
        elif kind == "hpu":
            options.update(resources={"HPU": 1}, num_cpus=1)
        else:
            # As many CPUs as the cell's threads (a pinned cell: its node's all), so that two cells
            # never share a node's cores unless the threads leave room.
            largest = max((n.get("Resources", {}).get("CPU", 1) for n in self.alive), default=1)
            options["num_cpus"] = self._resources(node).get("CPU", 1) if node else min(float(self.threads), largest)
        if node:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=False)
        return options

    def _ship(self, jobs: list[Any]) -> dict[str, Any]:
        """Folders the cells read, in the object store, when some node runs on another machine."""
        here = self.ray.util.get_node_ip_address()
        if all(n.get("NodeManagerAddress") == here for n in self.alive):
            return {}
        folders = {job.spec[key] for job in jobs for key in PATH_KEYS if job.spec.get(key)}
        return {folder: self.ray.put(pack_folder(folder)) for folder in sorted(folders) if Path(folder).is_dir()}
