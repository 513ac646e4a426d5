"""Peer-compatible class names (Optimum's ``ORTModelFor*``, optimum-intel's ``OVModelFor*``), made
from the task classes rather than listed by hand.

The table is ``optibridge.modeling.__all__``: every ``OBModelFor<X>`` named there is a task class,
and ``<prefix>For<X>`` is that class with the peer's ``from_pretrained`` surface mixed in first.
A task class added there gets its peer names with it; a peer name whose task optibridge does not
implement is not importable (the error names the ones that are).
"""

from __future__ import annotations

import dis
import sys
from pathlib import Path
from typing import Any, Mapping, TypeVar

from .base import OBModel

SurfaceT = TypeVar("SurfaceT")
OUR_PREFIX = "OBModelFor"
IMPORT_FROM = dis.opmap.get("IMPORT_FROM")


PREPROCESSOR_CLASSES = ("AutoTokenizer", "AutoImageProcessor", "AutoFeatureExtractor", "AutoProcessor")


def load_preprocessors(folder: Path) -> list[Any]:
    """The tokenizer / image processor / feature extractor / processor saved in ``folder`` (each that loads).

    A tokenizer without a vocabulary is dropped: on a folder without tokenizer files
    ``AutoTokenizer`` can return one that turns every text into ``[]``."""
    import transformers

    found: list[Any] = []
    for name in PREPROCESSOR_CLASSES:
        try:
            loaded = getattr(transformers, name).from_pretrained(folder)
        except (OSError, ValueError, KeyError, TypeError, AttributeError, ImportError):
            continue
        if name == "AutoTokenizer" and len(loaded) == 0:
            continue
        if not any(type(loaded) is type(other) for other in found):
            found.append(loaded)
    return found


class PeerModel(OBModel):
    """What Optimum's and optimum-intel's model classes both expose beyond the transformers surface."""

    _preprocessors: list[Any] | None = None

    @property
    def model_save_dir(self) -> Path:
        """The folder the model was loaded from (a temporary one after ``export=True``, as with Optimum)."""
        return Path(self.artifact.path)

    @property
    def input_names(self) -> dict[str, int]:
        """The main graph's inputs, name → position, as Optimum's classes expose them."""
        return {name: index for index, name in enumerate(self.artifact.metadata.main_graph.input_names)}

    @property
    def output_names(self) -> dict[str, int]:
        """The main graph's outputs, name → position."""
        return {name: index for index, name in enumerate(self.artifact.metadata.main_graph.output_names)}

    @property
    def preprocessors(self) -> list[Any]:
        """Tokenizer / processors saved beside the graph, loaded on first access."""
        if self._preprocessors is None:
            self._preprocessors = load_preprocessors(self.model_save_dir)
        return self._preprocessors


def alias(name: str, surface: type[SurfaceT], base: type, module: str, peer: str) -> type[SurfaceT]:
    """``name``: the task class (or pipeline class) ``base`` with a peer's ``from_pretrained`` surface mixed in first."""
    doc = f"{peer}-compatible name for :class:`optibridge.{base.__name__}`."
    return type(name, (surface, base), {"__doc__": doc, "__module__": module})


def pipeline_alias(name: str, surface: type, base_name: str, module: str, peer: str) -> type:
    """``name``: the diffusion pipeline class ``base_name`` (e.g. ``OBStableDiffusionPipeline``) with a peer's
    ``from_pretrained`` surface mixed in first. Built on first use, because the pipelines import diffusers,
    and kept in ``module`` so that every access returns the same class."""
    from ..diffusion import pipelines

    made: type = alias(name, surface, getattr(pipelines, base_name), module, peer)
    setattr(sys.modules[module], name, made)
    return made


def task_class_names() -> list[str]:
    """``OBModelFor*`` names of every task class (read from ``optibridge.modeling.__all__``; imports nothing)."""
    from .. import modeling

    return [name for name in modeling.__all__ if name.startswith(OUR_PREFIX)]


class PeerNames:
    """The ``<prefix>For*`` names of one peer module, built on first access and cached in it."""

    def __init__(self, prefix: str, surface: type[OBModel], module: str, peer: str,
                 instead: Mapping[str, str] | None = None) -> None:
        self.prefix = prefix + "For"
        self.surface = surface
        self.module = module
        self.peer = peer
        self.instead = dict(instead or {})  # the peer's other names (quantizers, configs, trainers) → what optibridge offers

    def names(self) -> list[str]:
        return [self.prefix + name[len(OUR_PREFIX):] for name in task_class_names()]

    def get(self, name: str) -> type[OBModel]:
        """The class called ``name``; an unknown name raises AttributeError (ImportError in ``from … import``)."""
        ours = OUR_PREFIX + name[len(self.prefix):] if name.startswith(self.prefix) else None
        if ours is None or ours not in task_class_names():
            raise self._missing(name)
        from .. import modeling

        cls = alias(name, self.surface, getattr(modeling, ours), self.module, self.peer)
        setattr(sys.modules[self.module], name, cls)  # built once: the same class on every access
        return cls

    def _missing(self, name: str) -> Exception:
        if name in self.instead:
            message = f"{self.module} has no {self.peer}'s {name}; {self.instead[name]}"
        elif not name.startswith(self.prefix):
            return AttributeError(f"module {self.module!r} has no attribute {name!r}")
        else:
            message = (f"{self.module} has no {name}: optibridge does not implement the task behind this {self.peer} class yet. "
                       f"Its {self.peer} names: {', '.join(self.names())}")
        # `from m import X` turns an AttributeError into a bare "cannot import name"; keep the reason there.
        caller = sys._getframe(3)
        if IMPORT_FROM is not None and caller.f_code.co_code[caller.f_lasti] == IMPORT_FROM:
            return ImportError(message, name=self.module)
        return AttributeError(message)


def module_getattr(names: PeerNames) -> Any:
    """A module-level ``__getattr__`` for a peer module."""

    def __getattr__(name: str) -> type[OBModel]:
        return names.get(name)

    return __getattr__
