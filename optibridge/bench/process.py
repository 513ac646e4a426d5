"""Helpers for the measuring child processes (used by the runner and the pipeline bench)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path


def _exit_reason(code: int | None, stderr: Path) -> str:
    if code is None:
        return "did not finish"
    if code < 0:
        try:
            what = signal.Signals(-code).name
        except ValueError:
            what = f"signal {-code}"
        text = f"crashed ({what})"
    else:
        text = f"exited with code {code}"
    try:
        tail = [line for line in stderr.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        tail = []
    return f"{text}: {tail[-1].strip()[:200]}" if tail else text


def _kill(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()
    process.wait()


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TRANSFORMERS_VERBOSITY", "error")
    env.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env
