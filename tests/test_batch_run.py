"""`optibridge run` in-process: every task's results against PyTorch, row errors, resuming, atomic output."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from transformers import AutoTokenizer

from optibridge.batch import run as batch_run
from optibridge.batch import run_file
from optibridge.batch.predict import RowError
from optibridge.cli import main
from optibridge.errors import InputError

TEXTS = ["the cat sat on the mat", "paris is the capital of france", "hello", "a dog ran in the park today",
         "music and art", "the quick brown fox jumps over the lazy dog", "one two three"]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def read_parquet(path: Path) -> dict[str, list]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pydict()


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "docs.jsonl", [{"text": t, "source": f"s{i}"} for i, t in enumerate(TEXTS)])


def test_embeddings_are_pytorchs_hidden_states_mean_pooled_over_real_tokens(exported, tiny_model, docs, tmp_path):
    result = run_file(exported("bert", "feature-extraction").path, docs, tmp_path / "out.parquet", batch_size=3, shard_size=4)
    out = read_parquet(tmp_path / "out.parquet")
    assert out["id"] == list(range(len(TEXTS))) and out["text"] == TEXTS and out["source"] == [f"s{i}" for i in range(7)]
    assert out["error"] == [None] * len(TEXTS) and result.rows == result.rows_run == 7 and result.shards == 2
    path = tiny_model("bert", "feature-extraction")
    tok = AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModel.from_pretrained(path).eval()
    for text, got in zip(TEXTS, out["embedding"]):  # one text at a time: no padding in the reference
        with torch.no_grad():
            hidden = model(**tok([text], return_tensors="pt")).last_hidden_state[0]
        np.testing.assert_allclose(np.array(got), hidden.mean(0).numpy(), atol=1e-4)
    assert not (tmp_path / "out.parquet.parts").exists()  # the staging folder goes once the output is whole


def test_sentence_model_embeddings_are_what_sentence_transformers_encodes(minilm_path, tmp_path, docs):
    from sentence_transformers import SentenceTransformer

    from optibridge import export

    artifact = export(minilm_path, tmp_path / "st", task="sentence-similarity").artifact
    run_file(artifact.path, docs, tmp_path / "out.parquet", batch_size=3)
    got = np.array(read_parquet(tmp_path / "out.parquet")["embedding"])
    want = SentenceTransformer(str(minilm_path), device="cpu").encode(TEXTS)
    assert got.shape == want.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)  # normalised by the model's own module, unlike mean pooling
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("task,model_type", [("text-classification", "bert"), ("token-classification", "bert")])
def test_classification_results_match_the_transformers_pipeline_on_pytorch(task, model_type, exported, tiny_model, docs, tmp_path):
    run_file(exported(model_type, task).path, docs, tmp_path / "out.parquet", batch_size=4)
    out = read_parquet(tmp_path / "out.parquet")
    path = tiny_model(model_type, task)
    extra = {"aggregation_strategy": "simple"} if task == "token-classification" else {}
    reference = transformers.pipeline(task, model=getattr(transformers, "AutoModelFor" + (
        "SequenceClassification" if task == "text-classification" else "TokenClassification")).from_pretrained(path).eval(),
        tokenizer=AutoTokenizer.from_pretrained(path), **extra)
    want = reference(TEXTS)
    if task == "text-classification":
        assert out["label"] == [w["label"] for w in want]
        np.testing.assert_allclose(out["score"], [w["score"] for w in want], atol=1e-4)
        return
    assert sum(len(e) for e in out["entities"]) > 0  # the random head does tag some words
    for got, expected in zip(out["entities"], want):
        assert [(e["entity_group"], e["word"], e["start"], e["end"]) for e in got] == \
            [(e["entity_group"], e["word"], e["start"], e["end"]) for e in expected]


@pytest.mark.parametrize("model_type", ["gpt2", "t5"])
def test_generation_writes_pytorchs_greedy_continuation(model_type, exported_generative, tiny_generative, tmp_path):
    prompts = ["the cat sat on", "paris is the", "hello world and"]
    source = write_jsonl(tmp_path / "prompts.jsonl", [{"text": p} for p in prompts])
    run_file(exported_generative(model_type).path, source, tmp_path / "out.parquet", batch_size=1, max_new_tokens=5)
    out = read_parquet(tmp_path / "out.parquet")
    path = tiny_generative(model_type)
    tok = AutoTokenizer.from_pretrained(path)
    auto = transformers.AutoModelForSeq2SeqLM if model_type == "t5" else transformers.AutoModelForCausalLM
    model = auto.from_pretrained(path).eval()
    for prompt, got in zip(prompts, out["generated_text"]):
        inputs = tok([prompt], return_tensors="pt")
        ids = model.generate(**inputs, max_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id or tok.eos_token_id)
        new = ids[0] if model_type == "t5" else ids[0, inputs["input_ids"].shape[1]:]
        assert got == tok.decode(new, skip_special_tokens=True)
    assert all(isinstance(g, str) for g in out["generated_text"])


def test_a_rejected_row_is_named_and_fails_the_run_or_is_recorded(exported, tmp_path):
    rows = [{"text": "the cat"}, {"text": "a dog"}, {"text": None}, {"text": 42}, {"text": "hello"}]
    source = write_jsonl(tmp_path / "bad.jsonl", rows)
    artifact = exported("bert", "text-classification").path
    out = tmp_path / "out.parquet"
    with pytest.raises(RowError, match=r"row 2: column 'text' holds null.*--on-error skip") as info:
        run_file(artifact, source, out, batch_size=2)
    assert info.value.row == 2 and not out.exists()
    result = run_file(artifact, source, out, batch_size=2, on_error="skip")
    got = read_parquet(out)
    assert [row for row, _ in result.failed_rows] == [2, 3]
    assert got["error"][2] and got["error"][3] and got["label"][2] is None and got["label"][3] is None
    assert all(got["label"][i] in ("NEG", "NEU", "POS") and got["error"][i] is None for i in (0, 1, 4))


def test_a_row_the_model_rejects_is_found_inside_its_batch(exported, tmp_path, monkeypatch):
    source = write_jsonl(tmp_path / "docs.jsonl", [{"text": t} for t in ["the cat", "a dog", "bad row here", "hello"]])
    artifact = exported("bert", "feature-extraction").path
    from optibridge.batch.predict import Predictor

    real = Predictor._embed

    def picky(self, texts):
        if any("bad" in t for t in texts):
            raise ValueError("cannot take this one")
        return real(self, texts)

    monkeypatch.setattr(Predictor, "_embed", picky)
    result = run_file(artifact, source, tmp_path / "out.parquet", batch_size=4, on_error="skip")
    got = read_parquet(tmp_path / "out.parquet")
    assert result.failed_rows == [(2, "ValueError: cannot take this one")]
    assert [e is None for e in got["embedding"]] == [False, False, True, False]  # its batch-mates still ran


def test_an_interrupted_run_resumes_from_its_finished_shards(exported, docs, tmp_path, monkeypatch):
    artifact = exported("bert", "feature-extraction").path
    out = tmp_path / "out.parquet"
    whole = run_file(artifact, docs, tmp_path / "whole.parquet", batch_size=2, shard_size=2)
    out.write_bytes(b"an older output")
    real = batch_run._in_process
    seen: list[list[int]] = []

    def interrupted(predictor, pending, batch_size):
        for n, table in enumerate(real(predictor, pending, batch_size)):
            if n == 2:
                raise KeyboardInterrupt
            seen.append(table.column("id").to_pylist())
            yield table

    monkeypatch.setattr(batch_run, "_in_process", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_file(artifact, docs, out, batch_size=2, shard_size=2)
    assert out.read_bytes() == b"an older output"  # never a half-written output
    assert sorted(p.name for p in (tmp_path / "out.parquet.parts").glob("shard-*")) == ["shard-000000.parquet", "shard-000001.parquet"]
    seen.clear()

    def counting(predictor, pending, batch_size):
        for table in real(predictor, pending, batch_size):
            seen.append(table.column("id").to_pylist())
            yield table

    monkeypatch.setattr(batch_run, "_in_process", counting)
    resumed = run_file(artifact, docs, out, batch_size=2, shard_size=2)
    assert sorted(i for ids in seen for i in ids) == [4, 5, 6]  # only the unfinished shards ran again
    assert resumed.shards_resumed == 2 and resumed.rows_run == 3 and whole.rows_run == 7
    got, want = read_parquet(out), read_parquet(tmp_path / "whole.parquet")
    assert got["id"] == want["id"] == list(range(7))
    np.testing.assert_allclose(np.array(got["embedding"]), np.array(want["embedding"]), atol=1e-6)


def test_shards_of_another_run_are_not_reused(exported, docs, tmp_path):
    artifact = exported("bert", "feature-extraction").path
    parts = tmp_path / "out.parquet.parts"
    parts.mkdir()
    (parts / "manifest.json").write_text(json.dumps({"input": "something else"}))
    (parts / "shard-000000.parquet").write_bytes(b"stale")
    result = run_file(artifact, docs, tmp_path / "out.parquet", shard_size=4)
    assert result.rows_run == 7 and result.shards_resumed == 0 and "started over" in result.notes[0]


def test_txt_and_parquet_inputs(exported, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    artifact = exported("bert", "text-classification").path
    (tmp_path / "lines.txt").write_text("\n".join(TEXTS) + "\n")
    pq.write_table(pa.table({"body": TEXTS}), tmp_path / "rows.parquet")
    run_file(artifact, tmp_path / "lines.txt", tmp_path / "a.parquet")
    run_file(artifact, tmp_path / "rows.parquet", tmp_path / "b.parquet", column="body")
    a, b = read_parquet(tmp_path / "a.parquet"), read_parquet(tmp_path / "b.parquet")
    assert a["text"] == b["body"] == TEXTS and a["label"] == b["label"]


def test_bad_inputs_get_one_clear_error(exported, docs, tmp_path):
    artifact = exported("bert", "text-classification").path
    with pytest.raises(InputError, match="has no column 'body'.*it has: text, source.*--column"):
        run_file(artifact, docs, tmp_path / "o.parquet", column="body")
    (tmp_path / "broken.jsonl").write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(InputError, match="line 2 is not JSON"):
        run_file(artifact, tmp_path / "broken.jsonl", tmp_path / "o.parquet")
    with pytest.raises(InputError, match="must be a .parquet file"):
        run_file(artifact, docs, tmp_path / "o.csv")
    write_jsonl(tmp_path / "ids.jsonl", [{"id": 7, "text": "x"}])
    with pytest.raises(InputError, match="already has a column 'id'.*--id-column"):
        run_file(artifact, tmp_path / "ids.jsonl", tmp_path / "o.parquet")
    assert not (tmp_path / "o.parquet").exists()


def test_cli_prints_rows_per_second_and_one_line_errors(exported, docs, tmp_path, capsys):
    artifact = str(exported("bert", "feature-extraction").path)
    assert main(["run", artifact, "--input", str(docs), "--output", str(tmp_path / "o.parquet"), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "7 rows (feature-extraction)" in printed and "rows/s" in printed
    assert main(["run", artifact, "--input", str(tmp_path / "missing.jsonl"), "--output", str(tmp_path / "p.parquet")]) == 1
    assert "missing.jsonl does not exist" in capsys.readouterr().err


def test_ray_flag_without_ray_names_the_extra(exported, docs, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an install without the extra looks like
    code = main(["run", str(exported("bert", "feature-extraction").path), "--input", str(docs),
                 "--output", str(tmp_path / "o.parquet"), "--ray", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and "pip install 'optibridge[ray]'" in err and len(err.strip().splitlines()) == 1


def test_a_task_run_does_not_cover_is_refused_naming_the_ones_it_does(exported, docs, tmp_path):
    from optibridge.errors import ArtifactError

    with pytest.raises(ArtifactError, match="exported for 'fill-mask'; `optibridge run` runs feature-extraction, sentence-similarity, "):
        run_file(exported("bert", "fill-mask").path, docs, tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


def test_image_classification_rows_name_image_files_and_match_the_pytorch_pipeline(exported, tiny_model, tmp_path):
    """Each row is an image path (relative to the input file's folder); labels and scores are the
    transformers image-classification pipeline's on the PyTorch model; a missing file fails its row only."""
    from PIL import Image

    (tmp_path / "images").mkdir()
    rng = np.random.default_rng(0)
    names = []
    for i in range(4):
        name = f"images/{i}.png"
        Image.fromarray(rng.integers(0, 256, (30 + 6 * i, 40, 3), dtype=np.uint8)).save(tmp_path / name)
        names.append(name)
    rows = tmp_path / "rows.txt"
    rows.write_text("\n".join([*names, "images/missing.png"]) + "\n")
    run_file(exported("vit", "image-classification").path, rows, tmp_path / "out.parquet", batch_size=3, on_error="skip")
    out = read_parquet(tmp_path / "out.parquet")
    path = tiny_model("vit", "image-classification")
    reference = transformers.pipeline("image-classification", model=transformers.AutoModelForImageClassification.from_pretrained(path).eval(),
                                      image_processor=transformers.AutoImageProcessor.from_pretrained(path))
    want = [reference(Image.open(tmp_path / name).convert("RGB"), top_k=1)[0] for name in names]
    assert out["label"][:4] == [w["label"] for w in want] and out["error"][:4] == [None] * 4
    np.testing.assert_allclose(out["score"][:4], [w["score"] for w in want], atol=1e-4)
    assert out["label"][4] is None and "images/missing.png: no such file" in out["error"][4]
    with pytest.raises(RowError, match=r"row 4: .*images/missing.png: no such file"):
        run_file(exported("vit", "image-classification").path, rows, tmp_path / "fail.parquet")
