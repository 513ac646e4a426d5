"""Files on disk (issue #14, items 12-16): user files are never deleted silently, an output inside
its input is refused, killed runs' leftovers are cleaned up, bad output paths and opsets fail first."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from optibridge import optimize
from optibridge.artifact import Artifact, copy_artifact
from optibridge.cli import main
from optibridge.errors import ArtifactError


@pytest.fixture
def source(exported):
    return exported("bert", "text-classification")


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# -- 12. user files in an existing artifact folder ----------------------------------------------------
def test_replacing_an_artifact_never_deletes_user_files_unless_asked(tmp_path, source):
    dest = copy_artifact(source, tmp_path / "out").path
    (dest / "my-notes.txt").write_text("keep me")
    (dest / "eval").mkdir()
    (dest / "eval" / "scores.csv").write_text("1,2")
    with pytest.raises(ArtifactError, match=r"2 file\(s\) it does not own \(eval/scores.csv, my-notes.txt\).*--overwrite"):
        copy_artifact(source, dest)
    with pytest.raises(ArtifactError, match="does not own"):
        optimize(source.path, output_dir=dest)
    assert (dest / "my-notes.txt").read_text() == "keep me" and (dest / "eval" / "scores.csv").exists()
    copy_artifact(source, dest, overwrite=True)
    assert not (dest / "my-notes.txt").exists()
    copy_artifact(source, dest)  # an artifact holding only its own files is replaced as before


def test_the_runtimes_temporary_files_stay_inside_the_staging_folder(tmp_path, source, monkeypatch):
    from optibridge import QuantizationConfig, quantize
    from optibridge_ort import graphs

    used: list[Path] = []
    original = graphs.scratch_cwd

    def spy():  # the folder ORT's quantization helpers run in (they drop temp files into the cwd)
        with original() as scratch:
            used.append(Path(scratch))
            yield scratch

    monkeypatch.setattr(graphs, "scratch_cwd", graphs.contextlib.contextmanager(spy))
    quantize(source.path, QuantizationConfig(mode="dynamic"), tmp_path / "int8")
    assert used, "the quantizer ran no scratch folder: nothing was checked"
    assert all(p.parent.parent.name.startswith(".int8.partial-") and p.parent.parent.parent == tmp_path for p in used), used
    assert sorted(p.name for p in tmp_path.iterdir()) == ["int8"]  # the staging folder, scratch included, is gone


# -- 13. output inside its own input ----------------------------------------------------------------------
def test_output_inside_its_own_input_is_refused(tmp_path, source):
    art = copy_artifact(source, tmp_path / "a").path
    before = sorted(p.name for p in art.iterdir())
    with pytest.raises(ArtifactError, match="inside its own input"):
        optimize(art, output_dir=art / "o1")
    with pytest.raises(ArtifactError, match="inside its own input"):
        copy_artifact(Artifact.load(art), art / "copy")
    assert sorted(p.name for p in art.iterdir()) == before


# -- 14. leftovers of killed runs; the swap ---------------------------------------------------------------
def test_a_killed_runs_staging_folder_is_removed_by_the_next_run(tmp_path, source):
    dest = tmp_path / "out"
    script = textwrap.dedent(f"""
        import os, signal
        from optibridge.artifact import staged_directory
        with staged_directory({str(dest)!r}) as staging:
            (staging / "model.onnx").write_bytes(b"half")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    killed = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert killed.returncode == -9
    leftovers = [p.name for p in tmp_path.iterdir() if ".partial-" in p.name]
    assert len(leftovers) == 1, leftovers
    live = tmp_path / f".out.partial-{os.getpid()}-live1234"  # a run still going: never touched
    live.mkdir()
    copy_artifact(source, dest)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out", live.name])


def test_stale_optibridge_temp_folders_of_dead_processes_are_removed(tmp_path, monkeypatch):
    from optibridge import staging

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(staging, "_swept_temp", staging.threading.Event())
    dead = tmp_path / f"optibridge-ort-{_dead_pid()}-abcd1234"
    alive = tmp_path / f"optibridge-ort-{os.getpid()}-abcd1234"
    other = tmp_path / "optibridge-untagged"
    for folder in (dead, alive, other):
        folder.mkdir()
        (folder / "big.data").write_bytes(b"x" * 1000)
    prefix = staging.pid_prefix("optibridge-quantize-")
    assert prefix == f"optibridge-quantize-{os.getpid()}-"
    assert not dead.exists() and alive.exists() and other.exists()


def test_replacing_swaps_both_names_in_one_step_where_linux_can(tmp_path, source, monkeypatch):
    from optibridge import artifact, staging

    dest = copy_artifact(source, tmp_path / "out").path
    calls = []
    real = staging.exchange
    monkeypatch.setattr(artifact, "exchange", lambda a, b: calls.append((a, b)) or real(a, b))
    renames = []
    real_rename = os.rename
    monkeypatch.setattr(os, "rename", lambda a, b: renames.append((a, b)) or real_rename(a, b))
    copy_artifact(source, dest)
    assert len(calls) == 1 and Artifact.load(dest).metadata.task == "text-classification"
    if staging._renameat2_fn is not None:
        assert renames == []  # one atomic exchange, no window without dest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# -- 15. output locations that cannot be written ------------------------------------------------------------
def test_an_output_under_a_file_or_not_writable_fails_before_any_work(tmp_path, source, monkeypatch):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ArtifactError, match=r"under .*file, which is a file"):
        optimize(source.path, output_dir=tmp_path / "file" / "sub" / "out")
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if Path(p) == locked else real_access(p, mode, **k))
    with pytest.raises(ArtifactError, match=r"locked is not writable"):
        optimize(source.path, output_dir=locked / "out")
    assert list(locked.iterdir()) == []


# -- 16. opset range -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("opset", ["5", "99"])
def test_an_opset_out_of_range_is_one_line_before_loading(tmp_path, tiny_model, capsys, opset):
    code = main(["export", "--model", str(tiny_model("bert", "text-classification")), "--opset", opset, str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 1
    assert f"--opset {opset} is outside the range this export supports: 14-" in err
    assert len(err.strip().splitlines()) == 1
