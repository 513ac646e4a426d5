"""What a benchmark ran on: CPU, memory, GPU, OS, library versions; and a fingerprint of the hardware.

Nothing is imported to find versions (``importlib.metadata`` only), so describing the machine is cheap
and never initialises a runtime.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from ..hardware import detect_cpu

if TYPE_CHECKING:
    from ..backend import BackendStatus

LIBRARIES = ("optibridge", "torch", "transformers", "onnx", "onnxruntime", "onnxruntime-gpu", "openvino", "nncf", "numpy")


def memory_gib(meminfo: Path = Path("/proc/meminfo")) -> float | None:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def gpus() -> list[str]:
    """NVIDIA GPU names from nvidia-smi, if it is on PATH (other GPUs show up in the backends' devices)."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def library_versions() -> dict[str, str]:
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def describe_machine(threads: int, statuses: Mapping[str, "BackendStatus"] | None = None) -> dict[str, Any]:
    """The machine record of a run (JSON-ready), with its ``fingerprint`` and a short ``title``."""
    cpu = detect_cpu()
    # bf16/fp16 change which configs run (and how fast): two boxes that differ in them are different machines
    flags = {"avx2": cpu.avx2, "avx512": cpu.avx512, "vnni": cpu.vnni, "amx": cpu.amx, "bf16": cpu.bf16, "fp16": cpu.fp16}
    machine: dict[str, Any] = {
        "cpu": cpu.model or cpu.machine,
        "arch": cpu.machine,
        "cpu_flags": [name for name, present in flags.items() if present],
        "cores": os.cpu_count() or 1,
        "threads": threads,
        "memory_gib": memory_gib(),
        "gpus": gpus(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "libraries": library_versions(),
        "backends": {name: {"available": s.available, "version": s.version, "devices": list(s.devices)}
                     for name, s in (statuses or {}).items()},
    }
    machine["fingerprint"] = fingerprint(machine)
    machine["title"] = title(machine)
    return machine


def fingerprint(machine: Mapping[str, Any]) -> str:
    """12 hex digits naming the hardware (CPU, flags, cores, memory, GPUs, OS family): same box, same key.

    Library versions and threads are left out on purpose: a re-run after an upgrade replaces the
    machine's section of the hardware matrix instead of adding another one.
    """
    memory = machine.get("memory_gib")
    parts = [
        machine.get("cpu", ""), machine.get("arch", ""), ",".join(machine.get("cpu_flags", [])), str(machine.get("cores", "")),
        str(round(memory)) if memory else "", ",".join(machine.get("gpus", [])), str(machine.get("os", "")).split("-")[0],
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


def title(machine: Mapping[str, Any]) -> str:
    """One line a person recognises: "AMD EPYC, 2 cores, avx2/avx512/vnni/bf16, 24 GiB"."""
    parts = [str(machine.get("cpu", "unknown CPU")), f"{machine.get('cores', '?')} cores"]
    if machine.get("cpu_flags"):
        parts.append("/".join(machine["cpu_flags"]))
    if machine.get("memory_gib"):
        parts.append(f"{machine['memory_gib']:g} GiB")
    parts.extend(machine.get("gpus", []))
    return ", ".join(parts)
