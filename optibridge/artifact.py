"""The artifact folder: ``model.onnx`` + ``optibridge.json`` + config and preprocessor files.

An artifact is self-describing: loading never guesses. It is written through
:func:`staged_directory`, so a failed or interrupted write leaves no half folder behind and an
existing good artifact untouched.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Collection, Iterator

from .errors import ArtifactError
from .integrity import sha256_of
from .manifest_paths import inside
from .staging import clean_stale, exchange, fsync_dir, fsync_tree, pid_prefix

FORMAT_VERSION = 1
METADATA_FILE = "optibridge.json"
MODEL_FILE = "model.onnx"
MAIN_GRAPH = "model"
"""Name of the graph of a single-graph artifact (encoders, decoders); seq2seq artifacts name theirs
"encoder", "decoder", ..."""
STATE_KEPT_IN = "cache_in_state"
"""``metadata.extra`` key: graphs whose file keeps the KV cache in state variables (a stateful IR imported from
optimum-intel); the backend that runs the format reads it. optibridge's own IRs record it in their backend's section."""


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: its dtype (numpy name) and shape (an int is fixed, a str is a dynamic axis)."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]

    def describe(self) -> str:
        return f"{self.name}: {self.dtype}[{', '.join(str(d) for d in self.shape)}]"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TensorSpec":
        name, dtype, shape = data["name"], data["dtype"], data["shape"]
        if not isinstance(name, str) or dtype not in TENSOR_DTYPES or not isinstance(shape, list) or not all(
            isinstance(d, str) or (isinstance(d, int) and not isinstance(d, bool)) for d in shape
        ):
            raise TypeError(f"tensor {name!r}: needs a name, a dtype among {', '.join(sorted(TENSOR_DTYPES))} and a list of int/str dims")
        return cls(name=name, dtype=dtype, shape=tuple(shape))


TENSOR_DTYPES = frozenset({
    "float16", "float32", "float64", "bfloat16", "int8", "int16", "int32", "int64",
    "uint8", "uint16", "uint32", "uint64", "bool",
})
"""The numpy dtype names a graph input/output may record (anything else in a manifest is an error)."""


FORMAT_NAME = re.compile(r"^[a-z0-9][a-z0-9.+_-]{0,63}$")
GRAPH_FORMATS = {
    "onnx": "an ONNX model (.onnx, weights inline or in <file>.data)",
}
"""The format every artifact starts in, with the words error messages use for it. Backends declare the
formats they introduce (``Backend.format_descriptions``); the registry describes those."""


@dataclass(frozen=True)
class GraphSpec:
    """One graph of an artifact: its file, its inputs/outputs, and its file format (see :data:`GRAPH_FORMATS`).

    The inputs/outputs are the graph's interface as exported, whatever the format (a stateful
    OpenVINO IR keeps its KV cache inside but is still described with its ``past``/``present`` names).
    """

    file: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    format: str = "onnx"
    optional_inputs: tuple[TensorSpec, ...] = ()
    """Inputs the graph has a default for (``logits_to_keep``): a caller may feed them, need not."""

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GraphSpec":
        spec = cls(
            file=data["file"],
            inputs=tuple(TensorSpec.from_dict(t) for t in data["inputs"]),
            outputs=tuple(TensorSpec.from_dict(t) for t in data["outputs"]),
            format=data.get("format", "onnx"),  # artifacts written before IR support have no field
            optional_inputs=tuple(TensorSpec.from_dict(t) for t in data.get("optional_inputs", [])),
        )
        # Any format name a plugin may declare is accepted here; whether a backend reads it is checked on load.
        if not isinstance(spec.file, str) or not isinstance(spec.format, str) or not FORMAT_NAME.match(spec.format):
            raise TypeError(f"graph file {spec.file!r} of format {spec.format!r}: a format is a name like 'onnx'")
        return spec

    @property
    def side_file(self) -> str:
        """The weights file beside the graph: ``<file>.data`` (ONNX, when external) or ``<stem>.bin`` (IR)."""
        return str(Path(self.file).with_suffix(".bin")) if self.format == "openvino-ir" else self.file + ".data"


@dataclass
class ArtifactMetadata:
    """Everything ``optibridge.json`` records. ``steps`` grows with each optimize/quantize step."""

    task: str
    model_type: str
    source: dict[str, Any]
    graphs: dict[str, GraphSpec]
    """Named graphs: ``{"model": ...}`` for single-graph artifacts; seq2seq has several."""
    output_class: str
    opset: int
    exporter: str
    versions: dict[str, str]
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    validation: dict[str, Any] | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    """Task-specific facts a loader needs (e.g. KV-cache layout of a decoder)."""
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "ArtifactMetadata":
        data = json.loads(text)
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ArtifactError(
                f"{METADATA_FILE} has format_version {version!r}, this optibridge reads {FORMAT_VERSION}; "
                "re-export the model with this version (optibridge export)"
            )
        _check_field_types(data)
        data["graphs"] = {name: GraphSpec.from_dict(g) for name, g in data["graphs"].items()}
        return cls(**data)

    @property
    def main_graph_name(self) -> str:
        """``model``, or the first graph of a multi-graph artifact (``encoder`` for seq2seq)."""
        return MAIN_GRAPH if MAIN_GRAPH in self.graphs else next(iter(self.graphs))

    @property
    def main_graph(self) -> GraphSpec:
        return self.graphs[self.main_graph_name]

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self.main_graph.inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self.main_graph.outputs

    @property
    def input_names(self) -> list[str]:
        return self.main_graph.input_names

    @property
    def output_names(self) -> list[str]:
        return self.main_graph.output_names


_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "task": str, "model_type": str, "source": dict, "graphs": dict, "output_class": str, "opset": int,
    "exporter": str, "versions": dict, "files": dict, "validation": (dict, type(None)), "steps": list, "extra": dict,
}


def _check_field_types(data: Any) -> None:
    """A manifest is untrusted input: wrong types are a clear error here, not a crash later."""
    if not isinstance(data, dict):
        raise TypeError("the top level is not a JSON object")
    unknown = sorted(set(data) - set(_FIELD_TYPES) - {"format_version"})
    if unknown:
        raise TypeError(f"unknown field(s) {', '.join(unknown)}")
    for name, kind in _FIELD_TYPES.items():
        if name in data and not isinstance(data[name], kind):
            raise TypeError(f"field {name} has the wrong type ({type(data[name]).__name__})")
    if not data.get("graphs"):
        raise TypeError("no graphs")
    for name, graph in data["graphs"].items():
        if not isinstance(graph, dict):
            raise TypeError(f"graph {name!r} is not an object")
    for name, record in data.get("files", {}).items():
        if not (isinstance(record, dict) and isinstance(record.get("sha256"), str)
                and isinstance(record.get("bytes"), int) and not isinstance(record.get("bytes"), bool)):
            raise TypeError(f"files entry {name!r} needs sha256 (text) and bytes (an integer)")
    if not all(isinstance(step, dict) for step in data.get("steps", [])):
        raise TypeError("steps must be objects")


def file_digest(path: Path) -> dict[str, Any]:
    """SHA-256 and size of a file, streamed so multi-GB weights do not load into memory."""
    return {"sha256": sha256_of(path), "bytes": path.stat().st_size}


def digest_files(folder: Path) -> dict[str, dict[str, Any]]:
    """Digests of every file in ``folder`` except the metadata file itself."""
    return {
        str(p.relative_to(folder)): file_digest(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != METADATA_FILE and SCRATCH not in p.relative_to(folder).parts
    }


@dataclass
class Artifact:
    """An artifact folder on disk, with its parsed metadata."""

    path: Path
    metadata: ArtifactMetadata
    # How load() checked the graph files (verify_hashes, require_hashes); graph_to_read repeats it.
    # None for an artifact built in process (a staging folder), whose files this process just wrote.
    file_checks: dict[str, bool] | None = field(default=None, compare=False, repr=False)

    def file(self, relative: str, field: str = "files") -> Path:
        """A file the manifest names, checked to lie inside the folder (see :mod:`optibridge.manifest_paths`)."""
        return inside(self.path, relative, field)

    @property
    def model_path(self) -> Path:
        """Path of the main graph (``model.onnx`` for single-graph artifacts)."""
        return self.file(self.metadata.main_graph.file, f"graphs.{self.metadata.main_graph_name}.file")

    def graph_path(self, graph: str = MAIN_GRAPH, formats: tuple[str, ...] = ("onnx",)) -> Path:
        """Path of one graph's file; an error when its format is not one the caller reads."""
        if graph not in self.metadata.graphs:
            raise ArtifactError(
                f"{self.path} has no graph {graph!r}; it has: {', '.join(self.metadata.graphs)}"
            )
        spec = self.metadata.graphs[graph]
        if spec.format not in formats:
            raise ArtifactError(
                f"graph {graph!r} of {self.path} is {GRAPH_FORMATS.get(spec.format, repr(spec.format))} ({spec.file}), and this "
                f"backend reads {' or '.join(formats)} graphs: load it with a backend that reads {spec.format} "
                "(`optibridge backends`), or use the ONNX artifact it was made from"
            )
        return self.file(spec.file, f"graphs.{graph}.file")

    def graph_to_read(self, graph: str = MAIN_GRAPH, formats: tuple[str, ...] = ("onnx",)) -> Path:
        """:meth:`graph_path` for a reader about to open the file now.

        A graph is often read well after :meth:`load` checked it: a lazy compile, a session created
        again, a native decode loop loading its own copy. The graph files are checked again as load
        checked them, so a file replaced since then is refused instead of run. This costs a ``stat``
        per file while they are unchanged (the hash cache is keyed by size, inode and times).
        """
        path = self.graph_path(graph, formats)
        if self.file_checks is not None:
            self.check_files(**self.file_checks)
        return path

    @property
    def graph_formats(self) -> set[str]:
        return {spec.format for spec in self.metadata.graphs.values()}

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, verify_hashes: bool = True, require_hashes: bool = False) -> "Artifact":
        """Open an artifact folder, checking that every file the manifest names lies inside it, and
        that the graph files are there with their recorded sizes and SHA-256.

        Hashes are cached per process by path, size, inode and times, so loading the same files
        again costs nothing; ``verify_hashes=False`` checks sizes only. ``require_hashes`` also
        refuses a graph file whose hash is not recorded (``info --verify``, optimize, quantize).
        """
        folder = Path(path)
        if not folder.is_dir():
            raise ArtifactError(f"no artifact folder at {folder}: export one with `optibridge export --model MODEL {folder}`")
        meta_path = folder / METADATA_FILE
        if not meta_path.is_file():
            raise ArtifactError(
                f"{folder} has no {METADATA_FILE}, so it is not an optibridge artifact; "
                f"export it first (`optibridge export --model {folder} OUT`) or pass export=True"
            )
        try:
            metadata = ArtifactMetadata.from_json(meta_path.read_text())
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise ArtifactError(f"{meta_path} is corrupt ({exc}); re-export the model") from exc
        artifact = cls(folder, metadata)
        artifact.check_paths()
        artifact.file_checks = {"verify_hashes": verify_hashes, "require_hashes": require_hashes}
        artifact.check_files(**artifact.file_checks)
        return artifact

    def check_paths(self) -> None:
        """Every file the manifest names (graphs, their side files, hashed files) lies inside the folder."""
        for name, graph in self.metadata.graphs.items():
            self.file(graph.file, f"graphs.{name}.file")
            self.file(graph.side_file, f"graphs.{name}.file (its weights file {graph.side_file!r})")
        for name in self.metadata.files:
            self.file(name, f"files[{name!r}]")

    def graph_files(self) -> list[str]:
        """The files that make up the graphs: each ``.onnx`` file and its external weights, if any."""
        names = []
        for graph in self.metadata.graphs.values():
            names.append(graph.file)
            if graph.side_file in self.metadata.files:
                names.append(graph.side_file)
        return names

    def check_files(self, *, verify_hashes: bool = True, require_hashes: bool = False) -> None:
        """Graph files must be present with their recorded size (and hash when ``verify_hashes``).

        Config and preprocessor files are not held to their recorded digests: re-saving a
        tokenizer into the folder (as Optimum users do after ``save_pretrained``) is legitimate;
        :meth:`modified_files` lists them.
        """
        for graph in self.metadata.graphs.values():
            if not self.file(graph.file, "graphs").is_file():
                raise ArtifactError(f"{self.path / graph.file} is missing; re-export the model into {self.path}")
        for name in self.graph_files():
            recorded = self.metadata.files.get(name)
            file = self.file(name)
            if not file.is_file():
                raise ArtifactError(f"{file} is missing from the artifact; re-export the model")
            if recorded is None:
                if require_hashes:
                    raise ArtifactError(
                        f"{METADATA_FILE} records no SHA-256 for the graph file {name}, so it cannot be verified; "
                        "re-export the model (or re-run the step that wrote it) to record one"
                    )
                continue
            size = file.stat().st_size
            if size != recorded["bytes"]:
                raise ArtifactError(
                    f"{file} is {size} bytes but {METADATA_FILE} recorded {recorded['bytes']}: "
                    "the file is truncated or was modified; re-export the model"
                )
            if verify_hashes and file_digest(file)["sha256"] != recorded["sha256"]:
                raise ArtifactError(f"{file} does not match its recorded SHA-256: it is corrupt; re-export the model")

    def modified_files(self) -> list[str]:
        """Non-graph files whose content differs from what was recorded (or that are gone)."""
        graph = set(self.graph_files())
        changed = []
        for name, recorded in self.metadata.files.items():
            file = self.file(name)
            if name in graph:
                continue
            if not file.is_file() or file_digest(file)["sha256"] != recorded["sha256"]:
                changed.append(name)
        return changed

    def size_bytes(self) -> int:
        return sum(f["bytes"] for f in self.metadata.files.values())


def write_metadata(folder: Path, metadata: ArtifactMetadata) -> None:
    """Hash the folder's files into ``metadata.files`` and write ``optibridge.json``."""
    metadata.files = digest_files(folder)
    (folder / METADATA_FILE).write_text(metadata.to_json())


def is_artifact(path: str | os.PathLike[str]) -> bool:
    return (Path(path) / METADATA_FILE).is_file()


def check_output_dir(
    dest: str | os.PathLike[str], *, overwrite: bool = False, inputs: tuple[str | os.PathLike[str], ...] = (),
    carry: Collection[str] = (),
) -> Path:
    """Fail early (before minutes of work) on an output path that cannot become an artifact: under a
    file, not writable, inside one of its own ``inputs``, a folder that is not an artifact, or an
    artifact holding files it does not own (user files; ``overwrite=True`` deletes them)."""
    dest = Path(dest).resolve()
    for source in inputs:
        source = Path(source).resolve()
        if dest != source and source in dest.parents:
            raise ArtifactError(
                f"output {dest} is inside its own input {source}; the input would be copied into itself. "
                "Choose an output folder outside the input"
            )
    check_writable(dest)
    if dest.exists():
        if not dest.is_dir():
            raise ArtifactError(f"output {dest} exists and is a file; choose a folder path")
        if any(dest.iterdir()) and not is_artifact(dest) and not (carry and set(_all_files(dest)) <= set(carry)):
            raise ArtifactError(
                f"output folder {dest} is not empty and is not an optibridge artifact; "
                "choose a new folder (it will be created) or empty this one"
            )
        extra = [] if overwrite or not dest.exists() else [name for name in files_not_owned(dest) if name not in carry]
        if extra:
            shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
            raise ArtifactError(
                f"output artifact {dest} holds {len(extra)} file(s) it does not own ({shown}), which replacing it "
                "would delete; move them out, choose another output folder, or pass --overwrite (overwrite=True) to delete them"
            )
    return dest


def check_writable(dest: Path) -> None:
    """The nearest existing folder on the way to ``dest`` must be a folder we may write into."""
    existing = dest.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ArtifactError(f"output {dest} is under {existing}, which is a file, not a folder; choose another output path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ArtifactError(f"cannot write the output {dest}: {existing} is not writable; choose a writable output folder")


def _all_files(folder: Path) -> list[str]:
    return [str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() or p.is_symlink()]


# Files that mean a model (weights, graphs): a folder holding them that is not an artifact is never written over.
MODEL_FILE_SUFFIXES = (".onnx", ".xml", ".bin", ".data", ".onnx_data", ".safetensors", ".pt", ".pth", ".ckpt", ".h5", ".msgpack")


CARRY_MAX_BYTES = 64 * 2**20


def files_to_carry(dest: str | os.PathLike[str]) -> list[str]:
    """Files a user saved in ``dest`` beside a model (a tokenizer, a processor, a README) that
    ``save_pretrained`` keeps, as transformers' leaves files it does not write: those an artifact there
    does not own, or all of a folder that is not an artifact. Nothing when any of them is in a
    subfolder, a link, model weights, or over 64 MiB together: such a folder is refused as before (it
    may be another model, or data). A file of a name the artifact writes (config.json, the tokenizer's)
    is replaced, as transformers' save_pretrained replaces its own files."""
    folder = Path(dest)
    if not folder.is_dir():
        return []
    names = files_not_owned(folder) if is_artifact(folder) else _all_files(folder)
    if any("/" in name or (folder / name).is_symlink() or Path(name).suffix in MODEL_FILE_SUFFIXES for name in names):
        return []
    if sum((folder / name).stat().st_size for name in names) > CARRY_MAX_BYTES:  # copied at each save: not a data folder
        return []
    return names


def files_not_owned(folder: Path) -> list[str]:
    """Files in an existing artifact folder that its manifest does not list (added by a user)."""
    owned = {METADATA_FILE}
    try:
        data = json.loads((folder / METADATA_FILE).read_text())
        owned |= {str(name) for name in data.get("files", {})}
        for graph in data.get("graphs", {}).values():
            spec = GraphSpec.from_dict(graph)
            owned |= {spec.file, spec.side_file}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # an unreadable manifest owns nothing else: every other file counts as the user's
    return sorted(
        str(p.relative_to(folder)) for p in folder.rglob("*")
        if (p.is_file() or p.is_symlink()) and str(p.relative_to(folder)) not in owned
    )


@contextlib.contextmanager
def staged_directory(dest: str | os.PathLike[str], *, overwrite: bool = False, carry: Collection[str] = ()) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``dest``; on success move it into place as ``dest``.

    On any exception (KeyboardInterrupt included) the temporary folder is removed and ``dest`` is
    untouched. An existing ``dest`` is only replaced when it is empty or an optibridge artifact
    holding nothing but its own files (``overwrite`` deletes others), so a mistyped output path can
    never wipe an unrelated folder. The staging folder's name carries this process's pid: a run
    killed with SIGKILL leaves it behind, and the next write beside it removes it. ``carry`` names
    files of ``dest`` (:func:`files_to_carry`) copied into the new folder where it writes no file of
    that name, before the swap: kept, never deleted.
    """
    dest = check_output_dir(dest, overwrite=overwrite, carry=carry)
    dest.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(dest.parent, dest.name)
    staging = Path(tempfile.mkdtemp(prefix=pid_prefix(f".{dest.name}.partial-"), dir=dest.parent))
    os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp makes 0700; an artifact folder follows the umask like mkdir
    try:
        yield staging
        for name in carry:
            if not (staging / name).exists():
                shutil.copy2(dest / name, staging / name)
        shutil.rmtree(staging / SCRATCH, ignore_errors=True)
        fsync_tree(staging)
        _swap_into_place(staging, dest)
        fsync_dir(dest.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


SCRATCH = ".optibridge-scratch"
"""A folder inside the staging folder for a step's temporary work; removed before the swap."""

_umask_lock = threading.Lock()


def current_umask() -> int:
    """The process umask (reading it means setting it: done under a lock, restored at once)."""
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def write_graph(model: Any, path: Path, *, external: bool) -> None:
    """Write an ONNX graph as an artifact holds it: weights inside the file, or with ``external`` in
    one ``<file>.data`` beside it (tensors under 1 KiB stay inline), readable as the umask allows."""
    import onnx

    if external:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + ".data", size_threshold=1024)
        side_file_follows_umask(path)
    else:
        onnx.save_model(model, str(path))


def side_file_follows_umask(graph: Path) -> None:
    """Give a graph's external-data file (``<graph>.data``, when written) the mode ``open()`` would
    have: 0o666 less the umask. onnx creates it owner-only (0o600), so a large graph's weights were
    unreadable to the users who may read the ``.onnx`` file beside them."""
    data = graph.with_name(graph.name + ".data")
    if data.is_file():  # onnx writes none when every tensor is under its size threshold
        os.chmod(data, 0o666 & ~current_umask())


def _swap_into_place(staging: Path, dest: Path) -> None:
    # Where the OS can exchange two names atomically (Linux renameat2), dest is never missing:
    # the new folder takes its name and the old one the staging name in one step. Elsewhere two
    # renames: the old artifact moves aside first, and is deleted only once the new one is in place.
    if dest.exists() and exchange(staging, dest):
        shutil.rmtree(staging, ignore_errors=True)  # now holds the old artifact
        return
    old: Path | None = None
    if dest.exists():
        old = Path(tempfile.mkdtemp(prefix=pid_prefix(f".{dest.name}.old-"), dir=dest.parent))
        os.rmdir(old)
        os.rename(dest, old)
    try:
        os.rename(staging, dest)
    except BaseException:
        if old is not None:
            os.rename(old, dest)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def copy_artifact(src: Artifact, dest: str | os.PathLike[str], *, overwrite: bool = False, carry: Collection[str] = ()) -> Artifact:
    """Copy an artifact folder to ``dest`` through a staged write (keeping the files ``carry`` names); returns the copy."""
    check_output_dir(dest, overwrite=overwrite, inputs=(src.path,), carry=carry)
    with staged_directory(dest, overwrite=overwrite, carry=carry) as staging:
        for item in src.path.iterdir():
            target = staging / item.name
            if item.is_dir():
                shutil.copytree(item, target)
            else:
                shutil.copy2(item, target)
    return Artifact.load(dest)
