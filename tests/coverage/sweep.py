"""The coverage sweep: every model type transformers' Auto mappings list for optibridge's tasks,
built tiny (tiny_configs.py), exported, validated against PyTorch, and — for generative models —
generated step by step next to PyTorch, comparing the scores of every step.

    python tests/coverage/sweep.py                      # all (resumes from coverage-results.jsonl)
    python tests/coverage/sweep.py --only opt,bloom     # some model types
    python tests/coverage/sweep.py --render             # rewrite COVERAGE.md from the results
    python tests/coverage/sweep.py --render --carry-over   # ... keeping earlier rows this sweep has not reached

Each model type is checked for one task (the first of ``TASK_PRIORITY`` transformers maps it to:
a head rather than the bare model). Workers run in subprocesses, a batch at a time, so a crash
or hang in one model costs that model only; results are appended to a JSONL file as they come.
``make coverage`` runs it all and writes COVERAGE.md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

TASK_PRIORITY = (
    "text2text-generation", "automatic-speech-recognition", "text-generation", "text-classification",
    "image-classification", "ctc", "audio-classification", "zero-shot-image-classification", "semantic-segmentation",
    "object-detection", "fill-mask", "token-classification", "question-answering", "feature-extraction",
)
# Issue #18's sweep of 40 of the Hub's most used architectures, with the task each was checked for:
# the model types of the exporter's original table (26 rows; the issue counts 25 of them) ...
TABLE_ARCHITECTURES: dict[str, str] = {
    **dict.fromkeys(("bert", "distilbert", "roberta", "xlm-roberta", "camembert", "albert", "electra", "deberta-v2",
                     "mpnet", "roformer", "mobilebert"), "text-classification"),
    **dict.fromkeys(("vit", "deit", "convnext"), "image-classification"),
    **dict.fromkeys(("gpt2", "llama", "mistral", "qwen2", "qwen3", "phi3", "gemma", "gpt_neox"), "text-generation"),
    **dict.fromkeys(("t5", "bart", "marian"), "text2text-generation"),
    "whisper": "automatic-speech-recognition",
}
# ... and the 15 it refused: 13 lacked only a table row, wav2vec2 and clip lacked their tasks.
ADDED_ARCHITECTURES: dict[str, str] = {
    "modernbert": "text-classification",
    **dict.fromkeys(("gemma2", "gemma3_text", "phi", "falcon", "opt", "bloom", "gptj"), "text-generation"),
    **dict.fromkeys(("mt5", "mbart", "pegasus"), "text2text-generation"),
    **dict.fromkeys(("resnet", "swin"), "image-classification"),
    "wav2vec2": "ctc",
    "clip": "zero-shot-image-classification",
}
SWEEP_ARCHITECTURES = {**TABLE_ARCHITECTURES, **ADDED_ARCHITECTURES}
ISSUE_ARCHITECTURES = tuple(ADDED_ARCHITECTURES)
GENERATION_STEPS = 6
TIMEOUT_S = 300
GENERATIVE_TIMEOUT_S = 900  # three dynamo exports for seq2seq: minutes each on a loaded 2-core machine
ATOL = 1e-4


@dataclass
class Result:
    model_type: str
    task: str
    status: str
    """"pass", "fail" (export or validation), "not built" (no tiny config), "timeout", "no result" (worker died)."""
    max_diff: float | None = None
    cause: str = ""
    seconds: float = 0.0
    generation: str = ""
    """For generative models: "tokens identical, scores ≤ d" or what differed."""
    checked: str = ""
    """Empty for a result of this sweep; "earlier run" for a row carried over from a previous COVERAGE.md."""


def primary_task(model_type: str) -> str | None:
    from optibridge.exporter.architectures import tasks_for

    if model_type in SWEEP_ARCHITECTURES:
        return SWEEP_ARCHITECTURES[model_type]
    tasks = tasks_for(model_type)
    if "fill-mask" in tasks:  # an encoder (bert has a causal-LM head too): check it as one
        tasks = tuple(t for t in tasks if t != "text-generation")
    return next((t for t in TASK_PRIORITY if t in tasks), None)


def plan(only: list[str] | None = None) -> list[tuple[str, str]]:
    """(model_type, task) pairs: the issue's 40 architectures first, then heads, then bare models."""
    from optibridge.exporter.architectures import auto_mapping
    from optibridge.tasks import TASKS

    types: list[str] = list(only) if only else []
    if not only:
        types = list(SWEEP_ARCHITECTURES)
        for task in TASK_PRIORITY:
            types += [t for t in auto_mapping(TASKS[task].auto_class) if t not in types]
    pairs = [(t, task) for t in types if (task := primary_task(t)) is not None]
    if only:
        return pairs
    # cheapest first (encoders export in seconds, generative models in tens), bare models last;
    # within each, the issue's 40 architectures first
    cost = {"feature-extraction": 3, "automatic-speech-recognition": 2, "text2text-generation": 2, "text-generation": 1}
    return sorted(pairs, key=lambda p: (cost.get(p[1], 0), p[0] not in SWEEP_ARCHITECTURES))


def check(model_type: str, task: str, workdir: Path) -> Result:
    """Build, export (with validation), and for generative tasks compare generation with PyTorch."""
    from tiny_configs import TinyConfigError, build_tiny

    from optibridge import export
    from optibridge.errors import OptibridgeError

    start = time.perf_counter()
    source = workdir / f"{model_type}-model"
    try:
        build_tiny(model_type, task, source)
    except TinyConfigError as exc:
        return Result(model_type, task, "not built", cause=str(exc), seconds=time.perf_counter() - start)
    try:
        result = export(source, workdir / f"{model_type}-onnx", task=task, atol=ATOL)
    except OptibridgeError as exc:
        cause = str(exc).split("; export failed: ")[-1].split(" for " + task + "; ")[-1]
        return Result(model_type, task, "fail", cause=cause[:300], seconds=time.perf_counter() - start)
    except Exception as exc:  # an untested exporter path: record, never stop the sweep
        return Result(model_type, task, "fail", cause=f"{type(exc).__name__}: {str(exc)[:300]}", seconds=time.perf_counter() - start)
    diff = result.validation.max_abs_diff if result.validation else None
    outcome = Result(model_type, task, "pass", max_diff=diff)
    if task in ("text-generation", "text2text-generation"):
        outcome.generation, ok = compare_generation(source, result.artifact.path, task)
        if not ok:
            outcome.status, outcome.cause = "fail", "generation: " + outcome.generation
    outcome.seconds = time.perf_counter() - start
    return outcome


def compare_generation(source: Path, artifact: Path, task: str) -> tuple[str, bool]:
    """Greedy generation on a left-padded batch of 2, step by step: tokens equal, scores within 1e-4."""
    import torch
    import transformers

    from optibridge.modeling import OBModelForCausalLM, OBModelForSeq2SeqLM

    decoder = task == "text-generation"
    auto = transformers.AutoModelForCausalLM if decoder else transformers.AutoModelForSeq2SeqLM
    reference = auto.from_pretrained(source, attn_implementation="eager").eval()
    ours = (OBModelForCausalLM if decoder else OBModelForSeq2SeqLM).from_pretrained(artifact)
    vocab = reference.config.get_text_config().vocab_size
    generator = torch.Generator().manual_seed(7)
    ids = torch.randint(3, vocab, (2, 6), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, :2] = 0  # left padding on the second row
    if not decoder:
        mask = mask.flip(1)  # encoders take right padding
    kwargs: dict[str, Any] = dict(max_new_tokens=GENERATION_STEPS, min_new_tokens=GENERATION_STEPS, do_sample=False,
                                  num_beams=1, output_scores=True, return_dict_in_generate=True)
    pad = reference.generation_config.pad_token_id
    if pad is None:
        kwargs["pad_token_id"] = reference.generation_config.eos_token_id or 0
    with torch.no_grad():
        want = reference.generate(input_ids=ids, attention_mask=mask, **kwargs)
    got = ours.generate(input_ids=ids, attention_mask=mask, **kwargs)
    worst = max(_score_diff(a, b) for a, b in zip(want.scores, got.scores))
    same = torch.equal(want.sequences, got.sequences) and len(want.scores) == len(got.scores)
    text = f"{len(got.scores)} steps, tokens {'identical' if same else 'DIFFER'}, scores max diff {worst:.1e}"
    return text, same and worst <= ATOL


def _score_diff(a: Any, b: Any) -> float:
    """Largest |a - b|, counting equal entries (both -inf where a token is forbidden) as 0."""
    diff = (a - b).abs()
    diff[a == b] = 0
    return float(diff.nan_to_num(nan=float("inf")).max())


# -- running it ---------------------------------------------------------------------------------

class SweepTimeout(BaseException):
    """Not an Exception: torch's exporter catches those and retries another capture strategy."""


def _alarm(signum: int, frame: Any) -> None:
    raise SweepTimeout("over the CPU-time limit")


def worker(pairs: list[tuple[str, str]], out: Path) -> None:
    """Check ``pairs`` in this process, appending one JSON line per result (and a 'started' line first,
    so the driver knows which model killed a worker that died).

    The limit counts this process's CPU time, not wall time: on a machine shared with other jobs a
    model must not time out because it waited for a core. After a timeout the worker stops (the
    interrupted import or trace can leave modules half-initialised); the driver requeues the rest."""
    import logging

    logging.disable(logging.WARNING)
    signal.signal(signal.SIGPROF, _alarm)
    for model_type, task in pairs:
        with out.open("a") as f:
            f.write(json.dumps({"started": model_type, "task": task}) + "\n")
        timed_out = False
        with tempfile.TemporaryDirectory(prefix=f"cov-{model_type}-") as tmp:
            limit = TIMEOUT_S if task not in ("text-generation", "text2text-generation") else GENERATIVE_TIMEOUT_S
            signal.setitimer(signal.ITIMER_PROF, limit)
            start = time.perf_counter()
            try:
                result = check(model_type, task, Path(tmp))
            except SweepTimeout as exc:
                timed_out = True
                result = Result(model_type, task, "timeout", cause=f"{exc} ({limit} s)", seconds=time.perf_counter() - start)
            except Exception as exc:
                result = Result(model_type, task, "fail", cause=f"{type(exc).__name__}: {str(exc)[:300]}", seconds=time.perf_counter() - start)
            finally:
                signal.setitimer(signal.ITIMER_PROF, 0)
        with out.open("a") as f:
            f.write(json.dumps(asdict(result)) + "\n")
        if timed_out:
            return


def load_results(path: Path) -> dict[str, Result]:
    """The latest result per model type; a 'started' line without its result is a crash."""
    results: dict[str, Result] = {}
    if not path.exists():
        return results
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if "started" in row:
            results[row["started"]] = Result(row["started"], row["task"], "no result",
                                             cause="the worker process died, or was still running when this was read")
        else:
            results[row["model_type"]] = Result(**row)
    return results


def run(pairs: list[tuple[str, str]], results_path: Path, batch: int = 12, retry: bool = False) -> None:
    done = load_results(results_path)
    # "no result" (the worker died or was stopped mid-model) is checked again when a sweep resumes
    todo = [p for p in pairs if p[0] not in done or done[p[0]].status == "no result" or (retry and done[p[0]].status != "pass")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", "TQDM_DISABLE": "1"}
    while todo:
        chunk, todo = todo[:batch], todo[batch:]
        args = [f"{m}:{t}" for m, t in chunk]
        subprocess.run([sys.executable, __file__, "--worker", "--results", str(results_path), *args], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        finished = load_results(results_path)
        # a worker that died leaves the rest of its chunk unchecked: queue those again
        todo = [p for p in chunk if p[0] not in finished] + todo
        for model_type, _ in chunk:
            if model_type in finished:
                r = finished[model_type]
                print(f"{model_type:28} {r.task:28} {r.status:9} {r.cause[:90]}", flush=True)


def earlier_results(markdown: Path) -> dict[str, Result]:
    """The checked rows of a COVERAGE.md written by an earlier sweep (``--carry-over``): what a sweep that
    has not reached a model type yet can show for it, marked as carried over."""
    rows: dict[str, Result] = {}
    if not markdown.exists():
        return rows
    for line in markdown.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) < 6 or cells[0] in ("model type", "---") or cells[2] in ("not run", "status"):
            continue
        model_type, task, status, diff, generation, cause = cells[:6]
        when = cells[6] if len(cells) > 6 else ""
        rows[model_type] = Result(model_type, task, status, float(diff) if diff else None, cause.replace("\\|", "|"),
                                  generation=generation, checked=when if when and when != "this run" else "earlier run")
    return rows


def render(results: dict[str, Result], planned: list[tuple[str, str]], earlier: dict[str, Result] | None = None) -> str:
    import torch
    import transformers

    earlier = earlier or {}
    rows = []
    for m, t in planned:
        if m in results:
            rows.append(results[m])
        elif m in earlier and earlier[m].task == t:  # carried over only for the task this sweep plans
            rows.append(earlier[m])
        else:
            rows.append(Result(m, t, "not run"))
    passed = [r for r in rows if r.status == "pass"]
    carried = [r for r in rows if r.checked]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.status] = counts.get(r.status, 0) + 1
    checked = len(rows) - counts.get("not run", 0)
    lines = [
        "# Coverage: which transformers model types export and validate",
        "",
        "Generated by `make coverage` (tests/coverage/sweep.py); do not edit by hand. Each model type that",
        "transformers' Auto mappings list for an optibridge task is built as a tiny random model from its config",
        "class defaults (sizes shrunk generically, weights redrawn N(0, 1/fan_in)), exported, and validated against",
        "PyTorch on ONNX Runtime at shapes other than the traced ones (atol 1e-4). Generative models also generate",
        f"{GENERATION_STEPS} greedy tokens on a padded batch next to PyTorch; every step's scores are compared.",
        "",
        f"transformers {transformers.__version__}, torch {torch.__version__}. **{len(passed)} model types pass** of the "
        f"{checked} checked; {len(rows)} are listed ("
        + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) + "). "
        f"{checked - len(carried)} were checked in this run ({sum(r.status == 'pass' for r in rows if not r.checked)} pass); "
        f"{len(carried)} rows ({sum(r.status == 'pass' for r in carried)} pass) are carried over from an earlier run that this "
        "one has not reached yet (column \"checked\").",
        "",
        "| model type | task | status | max diff | generation | cause | checked |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        diff = f"{r.max_diff:.1e}" if r.max_diff is not None else ""
        cause = r.cause.replace("|", "\\|").replace("\n", " ")[:160].rstrip()
        when = r.checked or ("" if r.status == "not run" else "this run")
        lines.append(f"| {r.model_type} | {r.task} | {r.status} | {diff} | {r.generation} | {cause} | {when} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pairs", nargs="*", help="model_type:task (worker mode)")
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--only", help="comma-separated model types")
    parser.add_argument("--results", default=str(ROOT / "coverage-results.jsonl"))
    parser.add_argument("--output", default=str(ROOT / "COVERAGE.md"))
    parser.add_argument("--render", action="store_true", help="only rewrite the markdown from the results")
    parser.add_argument("--retry", action="store_true", help="re-check model types that did not pass")
    parser.add_argument("--carry-over", action="store_true",
                        help="show the rows of the existing COVERAGE.md for model types this sweep has not reached, marked as such")
    args = parser.parse_args(argv)
    results_path = Path(args.results)
    if args.worker:
        worker([tuple(p.split(":", 1)) for p in args.pairs], results_path)  # type: ignore[misc]
        return
    pairs = plan(args.only.split(",") if args.only else None)
    if not args.render:
        run(pairs, results_path, retry=args.retry)
    if not args.only:
        earlier = earlier_results(Path(args.output)) if args.carry_over else {}
        Path(args.output).write_text(render(load_results(results_path), pairs, earlier))
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
