"""Write a run into ``hardware_matrix.md``: one section per machine fingerprint between markers.

Everything outside the markers is left byte for byte as it was (hand-written text, other
machines' sections). A run replaces its own machine's section; a new machine's section goes
before the ``<!-- optibridge-bench:insert -->`` line when the file has one, else at the end.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

from .report import markdown
from .schema import BenchError, BenchRun

BEGIN = "<!-- optibridge-bench:begin {fingerprint} -->"
END = "<!-- optibridge-bench:end {fingerprint} -->"
INSERT = "<!-- optibridge-bench:insert -->"


def section(run: BenchRun) -> str:
    fingerprint = run.machine.get("fingerprint", "unknown")
    body = markdown(run, heading=f"### {run.machine.get('title', 'unknown machine')} — `optibridge bench`, {run.created[:10]}")
    note = ("<!-- written by `optibridge bench --update-matrix`: edits between these markers are replaced on the next "
            "run on this machine -->")
    return f"{BEGIN.format(fingerprint=fingerprint)}\n{note}\n{body}{END.format(fingerprint=fingerprint)}\n"


def update_text(text: str, run: BenchRun) -> str:
    """``text`` with the run's machine section replaced or added."""
    fingerprint = run.machine.get("fingerprint")
    if not fingerprint:
        raise BenchError("the run has no machine fingerprint; re-run `optibridge bench` with this version")
    new = section(run)
    pattern = re.compile(re.escape(BEGIN.format(fingerprint=fingerprint)) + r".*?" + re.escape(END.format(fingerprint=fingerprint)) + r"\n?", re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: new, text, count=1)
    if INSERT in text:
        return text.replace(INSERT, new + "\n" + INSERT, 1)
    return text + ("" if text.endswith("\n") or not text else "\n") + "\n" + new


def per_machine(run: BenchRun) -> list[BenchRun]:
    """A cluster run (``bench --ray``) as one run per machine fingerprint; a local run as itself."""
    if not run.nodes:
        return [run]
    return [dataclasses.replace(run, machine=machine, nodes={},
                                cells=[dataclasses.replace(c, machine=None, ray_node=None) for c in run.cells if c.machine == fingerprint])
            for fingerprint, machine in run.nodes.items()]


def update_matrix(path: str | os.PathLike[str], run: BenchRun) -> Path:
    """Rewrite the file at ``path`` with the run's section(s) (atomically): one per machine fingerprint."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"{path} does not exist; pass --matrix PATH (the repository's hardware_matrix.md)")
    text = path.read_text()
    for machine_run in per_machine(run):
        text = update_text(text, machine_run)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path
