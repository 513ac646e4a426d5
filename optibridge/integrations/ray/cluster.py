"""Joining or starting a Ray cluster, with errors that fit on one line."""

from __future__ import annotations

import os
from typing import Any

from ...errors import OptibridgeError, first_line

INSTALL = "pip install 'optibridge[ray]'"
FORWARDED_ENV = ("OPTIBRIDGE_PLUGINS", "HF_HUB_OFFLINE", "TRANSFORMERS_VERBOSITY", "TOKENIZERS_PARALLELISM")
"""Settings of this process that the workers need too (which plugins to load, offline hub)."""


class RayError(OptibridgeError):
    """Ray is missing, the cluster cannot be reached, or a cluster job failed."""


def require_ray() -> Any:
    """The ``ray`` module, or an error naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise RayError(f"--ray needs Ray, which is not installed here: {INSTALL}") from None
    return ray


def connect(address: str | None = None, **init_args: Any) -> Any:
    """``ray.init(address)`` once per process (a session already connected is reused).

    ``address`` None starts a local cluster on this machine; otherwise it is what ``ray.init``
    takes ("auto", "HOST:6379", "ray://HOST:10001"). The workers get this process's
    :data:`FORWARDED_ENV` variables.
    """
    ray = require_ray()
    if ray.is_initialized():
        return ray
    if address:
        check_reachable(address)
    env = {name: os.environ[name] for name in FORWARDED_ENV if name in os.environ}
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env} if env else None,
                 **init_args)
    except Exception as exc:  # ConnectionError, RuntimeError, ValueError: whatever ray.init says, one line of it
        where = f"the Ray cluster at {address!r}" if address else "a local Ray cluster"
        hint = "; check the address, or start one with `ray start --head`" if address else ""
        raise RayError(f"cannot connect to {where}: {first_line(exc)}{hint}") from None
    return ray


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """A TCP connection to ``HOST:PORT`` (``ray://`` or not), so that a wrong address fails in
    seconds: ``ray.init`` itself retries an unreachable one for minutes. "auto" is left to Ray."""
    import socket

    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        return  # "auto", or a form Ray understands and we do not parse
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise RayError(f"cannot reach the Ray cluster at {address!r}: {exc.strerror or exc}; check the address, "
                       "or start a cluster with `ray start --head`") from None


def worker_error(exc: BaseException) -> str:
    """The error a worker raised, as one line, dug out of Ray's wrapping (whose own first line
    only names the actor): the first ``Name: message`` line of the remote traceback that is not Ray's."""
    import re

    for line in str(exc).splitlines():
        found = re.match(r"^([\w.]+(?:Error|Exception|Interrupt)): (.+)$", line.strip())
        if found and not found.group(1).startswith("ray."):
            return f"{found.group(1).rsplit('.', 1)[-1]}: {found.group(2)}"
    return f"{type(exc).__name__}: {first_line(exc)}"


def unwrap(exc: BaseException) -> BaseException:
    """The optibridge error inside a Ray task error (Ray wraps what a worker raised), else ``exc``."""
    seen = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, OptibridgeError):
            return current
        seen.add(id(current))
        current = getattr(current, "cause", None) or current.__cause__
    return exc
