"""The CUDA backend: option mapping, device ids, install and fallback detection, error texts, and
the IO-binding path (exercised here on ONNX Runtime's CPU provider with CPU tensors)."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from optibridge import probing
from optibridge.backend import Backend, BackendStatus
from optibridge.backends import get_registry, reset_registry
from optibridge.errors import BackendError
from optibridge.hookspecs import hookimpl
from optibridge.modeling import OBModelForCausalLM, OBModelForSeq2SeqLM, OBModelForSequenceClassification
from optibridge_cuda.backend import CudaBackend, check_providers, make_session
from optibridge_cuda.devices import parse_device
from optibridge_cuda.install import install_problems
from optibridge_cuda.providers import provider_list, split_options
from optibridge_ort.backend import OrtSession, create_session
from optibridge_ort.binding import IOBindingSession
from optibridge_ort.options import build_session_options


def cuda_here() -> bool:
    return torch.cuda.is_available() and CudaBackend().status().available


@pytest.fixture
def registry():
    reset_registry()
    yield get_registry()
    reset_registry()


def dists(monkeypatch, **versions):
    """Pretend these distributions are installed (name with '_' for '-'); everything else is not."""
    table = {k.replace("_", "-"): v for k, v in versions.items()}
    monkeypatch.setattr(probing, "distribution_version", lambda name: table.get(name))


@pytest.fixture
def gpu_stack_claimed(monkeypatch):
    """The probes say onnxruntime-gpu and a driver are here, but the onnxruntime is the CPU build:
    exactly onnxruntime-gpu on a machine without a usable GPU, which runs sessions on the CPU."""
    dists(monkeypatch, onnxruntime_gpu="1.22.0")
    monkeypatch.setattr(probing, "nvidia_driver_present", lambda: True)


@pytest.mark.parametrize("device, device_id, expected", [
    ("cuda", None, 0), ("cuda:1", None, 1), ("CUDA:3", None, 3), (2, None, 2), ("cuda", 1, 1), ("cuda:1", "1", 1),
], ids=["plain", "index", "upper", "int", "device_id", "both-agree"])
def test_device_ids(device, device_id, expected):
    assert parse_device(device, device_id) == expected


@pytest.mark.parametrize("device, device_id, message", [
    ("cpu", None, "backend 'cuda' runs on NVIDIA GPUs: device must be 'cuda', 'cuda:N'"),
    ("cuda:x", None, "device must be 'cuda', 'cuda:N'"),
    ("cuda:1", 0, "disagree"),
    ("cuda", "first", "device_id must be a GPU index"),
], ids=["cpu", "bad-index", "disagree", "bad-device-id"])
def test_bad_devices_are_errors(device, device_id, message):
    with pytest.raises(BackendError, match=message):
        parse_device(device, device_id)


def test_cuda_provider_options_are_mapped_to_the_strings_ort_parses():
    backend, provider, session = split_options({
        "cudnn_conv_algo_search": "HEURISTIC", "arena_extend_strategy": "kSameAsRequested", "gpu_mem_limit": 2 * 1024**3,
        "do_copy_in_default_stream": False, "intra_op_num_threads": 2, "io_binding": True,
    })
    assert backend == {"io_binding": True} and session == {"intra_op_num_threads": 2}
    assert provider_list("cuda", 1, provider) == [("CUDAExecutionProvider", {
        "device_id": "1", "cudnn_conv_algo_search": "HEURISTIC", "arena_extend_strategy": "kSameAsRequested",
        "gpu_mem_limit": "2147483648", "do_copy_in_default_stream": "0",
    })]


def test_tensorrt_comes_first_with_cuda_behind_it_and_a_cache_path_turns_the_cache_on():
    providers = provider_list("tensorrt", 0, {"trt_fp16_enable": True, "trt_engine_cache_path": "/tmp/trt", "gpu_mem_limit": 10})
    assert providers == [
        ("TensorrtExecutionProvider", {"device_id": "0", "trt_fp16_enable": "1", "trt_engine_cache_path": "/tmp/trt",
                                       "trt_engine_cache_enable": "1"}),
        ("CUDAExecutionProvider", {"device_id": "0", "gpu_mem_limit": "10"}),
    ]


@pytest.mark.parametrize("options, message", [
    ({"cudnn_conv_algo_search": "FAST"}, "cudnn_conv_algo_search must be one of EXHAUSTIVE, HEURISTIC, DEFAULT"),
    ({"gpu_mem_limit": -1}, "gpu_mem_limit must be a positive integer"),
    ({"do_copy_in_default_stream": "yes"}, "do_copy_in_default_stream must be True or False"),
    ({"trt_fp16_enable": True}, "are TensorRT options; pass provider='tensorrt'"),
], ids=["choice", "size", "bool", "trt-without-tensorrt"])
def test_bad_provider_options_say_what_is_valid(options, message):
    with pytest.raises(BackendError, match=message):
        provider_list("cuda", 0, split_options(options)[1])


def test_unknown_options_are_listed_with_every_valid_one(exported):
    with pytest.raises(BackendError, match=r"unknown option\(s\) cudnn_algo, gpu_memory for backend 'cuda'; valid: provider, device_id, io_binding, cudnn_conv_algo_search.*intra_op_num_threads"):
        CudaBackend().load(exported("bert", "text-classification"), gpu_memory=1, cudnn_algo="x")
    with pytest.raises(BackendError, match="provider must be one of cuda, tensorrt"):
        provider_list("rocm", 0, {})


@pytest.mark.parametrize("installed, module, expected", [
    ({"onnxruntime": "1.31.1", "onnxruntime_gpu": "1.22.0"}, True, "both onnxruntime 1.31.1 and onnxruntime-gpu 1.22.0 are installed"),
    ({"onnxruntime_gpu": "1.22.0"}, False, "onnxruntime-gpu 1.22.0 is installed but the onnxruntime module is gone"),
    ({"onnxruntime_gpu": "1.22.0"}, True, None),
    ({"onnxruntime": "1.31.1"}, True, None),
], ids=["both", "gpu-without-module", "gpu-only", "cpu-only"])
def test_mixed_installs_are_detected_with_the_fix(monkeypatch, installed, module, expected):
    dists(monkeypatch, **installed)
    monkeypatch.setattr(probing, "module_present", lambda name: module)
    problems = install_problems()
    if expected is None:
        assert problems == []
    else:
        assert len(problems) == 1 and expected in problems[0]
        assert "fix: pip uninstall -y onnxruntime onnxruntime-gpu && pip install 'optibridge[cuda]'" in problems[0]


def test_optibridge_backends_reports_a_mixed_install(monkeypatch, registry, capsys):
    from optibridge.cli import main

    dists(monkeypatch, onnxruntime="1.31.1", onnxruntime_gpu="1.22.0")
    assert main(["backends", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["cuda"]["available"] is False
    assert rows["cuda"]["reason"].startswith("broken install: both onnxruntime 1.31.1 and onnxruntime-gpu 1.22.0")
    assert main(["backends"]) == 0
    assert "optibridge[cuda]" in capsys.readouterr().out  # rich must not eat "[cuda]" as markup


def test_here_from_pretrained_names_the_missing_pieces(exported):
    with pytest.raises(BackendError, match=r"backend 'cuda' is not usable here: onnxruntime-gpu not installed .*; no NVIDIA driver"):
        OBModelForSequenceClassification.from_pretrained(exported("bert", "text-classification").path, backend="cuda", device="cuda")


def test_here_the_cli_exits_non_zero_with_the_reason(exported, tmp_path, capsys):
    from optibridge.cli import main

    code = main(["optimize", str(exported("bert", "text-classification").path), str(tmp_path / "o"), "--backend", "cuda"])
    err = capsys.readouterr().err
    assert code == 1 and "onnxruntime-gpu not installed" in err and "no NVIDIA driver" in err
    assert "pip install 'optibridge[cuda]'" in err  # the fix, printed verbatim (not eaten as rich markup)


@pytest.mark.filterwarnings("ignore:Specified provider .CUDAExecutionProvider. is not in available provider names")
def test_a_session_that_onnx_runtime_quietly_put_on_the_cpu_is_refused(gpu_stack_claimed, exported):
    # The real CPU onnxruntime, asked for CUDA, warns and creates a CPU-only session: the silent
    # fallback the issue measured with onnxruntime-gpu on a machine without a GPU.
    with pytest.raises(BackendError, match=r"created the session without CUDAExecutionProvider \(it has CPUExecutionProvider\), so it would silently run on the CPU"):
        CudaBackend().load(exported("bert", "text-classification"), device="cuda:0")


def test_tensorrt_fallback_to_cuda_only_is_refused_too(gpu_stack_claimed, monkeypatch, exported):
    class CudaOnlySession:
        def __init__(self, path, options, providers):
            self.requested = providers

        def get_providers(self):
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]

    monkeypatch.setattr(probing, "module_present", lambda name: True)
    monkeypatch.setattr(ort, "InferenceSession", CudaOnlySession)
    with pytest.raises(BackendError, match="without TensorrtExecutionProvider.*TensorRT libraries"):
        CudaBackend().load(exported("bert", "text-classification"), provider="tensorrt", trt_fp16_enable=True)


def test_tensorrt_without_the_tensorrt_package_says_so(gpu_stack_claimed, monkeypatch, exported):
    monkeypatch.setattr(probing, "module_present", lambda name: name != "tensorrt")
    with pytest.raises(BackendError, match="provider='tensorrt' needs the TensorRT Python package"):
        CudaBackend().load(exported("bert", "text-classification"), provider="tensorrt")


def test_the_created_session_gets_the_provider_options(gpu_stack_claimed, monkeypatch, exported):
    created = {}

    class GpuSession:
        def __init__(self, path, options, providers):
            created.update(providers=providers, threads=options.intra_op_num_threads)

        def get_providers(self):
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]

        def get_inputs(self):
            return []

        get_outputs = get_overridable_initializers = get_inputs

    monkeypatch.setattr(ort, "InferenceSession", GpuSession)
    session = CudaBackend().load(exported("bert", "text-classification"), device="cuda:1", gpu_mem_limit=1024, intra_op_num_threads=1)
    assert created == {"providers": [("CUDAExecutionProvider", {"device_id": "1", "gpu_mem_limit": "1024"})], "threads": 1}
    # CPU-only torch: no IO binding, and the tensors a pipeline passes stay on the host
    assert session.backend == "cuda" and not getattr(session, "accepts_torch", False) and session.device == "cpu"


def test_check_providers_accepts_a_real_gpu_session():
    class Session:
        def get_providers(self):
            return ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]

    check_providers(Session(), [("TensorrtExecutionProvider", {}), ("CUDAExecutionProvider", {})])


# -- IO binding, on the CPU provider ------------------------------------------------------------------
class BoundSessions(Backend):
    """ONNX Runtime's CPU provider through the IO-binding session the CUDA backend uses."""

    name = "ort-iobinding"

    def status(self):
        return BackendStatus(self.name, True, devices=("cpu",), features=("run",))

    def load(self, artifact, *, graph="model", device="cpu", **options):
        session = create_session(ort, artifact.graph_path(graph), build_session_options(ort, {}), ["CPUExecutionProvider"])
        return IOBindingSession(session, device="cpu")


class BoundPlugin:
    @hookimpl
    def optibridge_backends(self):
        return [BoundSessions()]


@pytest.fixture
def bound(registry):
    registry.register(BoundPlugin(), name="iobinding")
    return "ort-iobinding"


def test_io_binding_encoder_matches_the_plain_path_and_returns_torch(bound, exported, monkeypatch):
    path = exported("bert", "text-classification").path
    model = OBModelForSequenceClassification.from_pretrained(path, backend=bound)
    plain = OBModelForSequenceClassification.from_pretrained(path, backend="ort")
    ids = torch.randint(5, 100, (2, 7), dtype=torch.int32)  # cast to the graph's int64 by torch
    monkeypatch.setattr(IOBindingSession, "run", lambda *a: pytest.fail("numpy path used for torch inputs"))
    out = model(input_ids=ids)
    assert isinstance(out.logits, torch.Tensor)
    np.testing.assert_allclose(out.logits.numpy(), plain(input_ids=ids).logits.numpy(), atol=1e-6)


def _record_bound_calls(monkeypatch) -> list:
    """(inputs, outputs) of every IOBindingSession.run_torch call from now on; the numpy path fails the test."""
    calls = []
    run_torch = IOBindingSession.run_torch

    def spy(self, inputs):
        outputs = run_torch(self, inputs)
        calls.append((dict(inputs), outputs))
        return outputs

    monkeypatch.setattr(IOBindingSession, "run_torch", spy)
    monkeypatch.setattr(IOBindingSession, "run", lambda *a: pytest.fail("numpy path used inside generate()"))
    return calls


def test_io_binding_generate_feeds_the_presents_back_without_copies(bound, exported_generative, monkeypatch):
    path = exported_generative("gpt2").path
    model = OBModelForCausalLM.from_pretrained(path, backend=bound)
    plain = OBModelForCausalLM.from_pretrained(path, backend="ort")
    steps = _record_bound_calls(monkeypatch)
    ids = torch.tensor([[0, 9, 14, 3], [7, 7, 21, 30]])
    mask = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
    tokens = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=4, do_sample=False)
    assert torch.equal(tokens, plain.generate(input_ids=ids, attention_mask=mask, max_new_tokens=4, do_sample=False))
    assert len(steps) == 4
    for (_, outputs), (inputs, _) in zip(steps, steps[1:]):
        presents = {k: v for k, v in outputs.items() if k.startswith("present")}
        assert all(type(v) is torch.Tensor and v.device == torch.device("cpu") for v in presents.values())
        # the next step binds the very buffers ORT returned: no copy of the cache in between
        assert [inputs[f"past_key_values.{k.split('.', 1)[1]}"].data_ptr() for k in presents] == [v.data_ptr() for v in presents.values()]


def test_io_binding_seq2seq_generate_keeps_encoder_states_and_both_caches_off_the_host(bound, exported_generative, monkeypatch):
    path = exported_generative("t5").path
    model = OBModelForSeq2SeqLM.from_pretrained(path, backend=bound)
    plain = OBModelForSeq2SeqLM.from_pretrained(path, backend="ort")
    recorded = _record_bound_calls(monkeypatch)
    ids = torch.tensor([[5, 9, 14, 3, 1], [7, 7, 21, 1, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])
    greedy = dict(max_new_tokens=4, min_new_tokens=4, do_sample=False)
    tokens = model.generate(input_ids=ids, attention_mask=mask, **greedy)
    assert torch.equal(tokens, plain.generate(input_ids=ids, attention_mask=mask, **greedy))
    calls = [({k: v.data_ptr() for k, v in inputs.items()}, {k: v.data_ptr() for k, v in outputs.items()}) for inputs, outputs in recorded]
    (_, encoder_out), (first_in, first_out), *later = calls  # encoder, decoder, decoder_with_past × 3
    assert len(later) == 3
    assert first_in["encoder_hidden_states"] == encoder_out["last_hidden_state"]  # bound as the encoder left it
    previous = first_out
    for step_in, step_out in later:
        for name, ptr in step_in.items():
            if name.startswith("past_key_values."):
                _, layer, kind, part = name.split(".")
                # cross-attention: the first step's buffers at every step; self-attention: the previous step's
                source = first_out if kind == "encoder" else previous
                assert ptr == source[f"present.{layer}.{kind}.{part}"], name
        previous = step_out


def test_io_binding_whisper_generate_matches_the_plain_path(bound, exported_generative, monkeypatch):
    from optibridge.modeling import OBModelForSpeechSeq2Seq

    path = exported_generative("whisper").path
    model = OBModelForSpeechSeq2Seq.from_pretrained(path, backend=bound)
    plain = OBModelForSpeechSeq2Seq.from_pretrained(path, backend="ort")
    recorded = _record_bound_calls(monkeypatch)
    features = torch.randn(2, *model.artifact.metadata.graphs["encoder"].inputs[0].shape[1:])
    greedy = dict(max_new_tokens=6, do_sample=False)
    assert torch.equal(model.generate(input_features=features, **greedy), plain.generate(input_features=features, **greedy))
    assert "input_features" in recorded[0][0]  # the encoder ran through the binding too


def test_io_binding_needs_dlpack(monkeypatch, exported):
    import optibridge_ort.binding as binding

    monkeypatch.setattr(binding, "dlpack_supported", lambda _: False)
    session = create_session(ort, exported("bert", "text-classification").graph_path(), ort.SessionOptions(), ["CPUExecutionProvider"])
    with pytest.raises(BackendError, match="IO binding needs onnxruntime >= 1.21"):
        IOBindingSession(session)


def test_without_cuda_torch_the_session_is_plain(exported):
    session = create_session(ort, exported("bert", "text-classification").graph_path(), ort.SessionOptions(), ["CPUExecutionProvider"])
    wrapped = make_session(session, 0, None)
    assert type(wrapped) is OrtSession and wrapped.backend == "cuda"


# -- on a GPU ---------------------------------------------------------------------------------------------
gpu = pytest.mark.skipif(not cuda_here(), reason="needs an NVIDIA GPU, onnxruntime-gpu and a CUDA build of torch")


@pytest.mark.gpu
@gpu
def test_gpu_encoder_matches_pytorch_and_stays_on_the_device(exported, tiny_model):
    from transformers import AutoModelForSequenceClassification

    model = OBModelForSequenceClassification.from_pretrained(exported("bert", "text-classification").path, backend="cuda", device="cuda")
    assert model.device.type == "cuda" and "CUDAExecutionProvider" in model.session.providers
    reference = AutoModelForSequenceClassification.from_pretrained(tiny_model("bert", "text-classification")).eval()
    ids = torch.randint(5, 100, (2, 7))
    out = model(input_ids=ids.to("cuda"))
    assert out.logits.device.type == "cuda"
    with torch.no_grad():
        np.testing.assert_allclose(out.logits.cpu().numpy(), reference(input_ids=ids).logits.numpy(), atol=1e-4)


@pytest.mark.gpu
@gpu
def test_gpu_generate_keeps_the_cache_on_the_device(exported_generative, tiny_generative, monkeypatch):
    from transformers import AutoModelForCausalLM

    model = OBModelForCausalLM.from_pretrained(exported_generative("gpt2").path, backend="cuda", device="cuda")
    devices = []
    run_torch = IOBindingSession.run_torch

    def spy(self, inputs):
        outputs = run_torch(self, inputs)
        devices.extend(v.device.type for k, v in {**inputs, **outputs}.items() if k.startswith(("past", "present")))
        return outputs

    monkeypatch.setattr(IOBindingSession, "run_torch", spy)
    ids = torch.tensor([[5, 9, 14, 3]])
    tokens = model.generate(input_ids=ids.to("cuda"), max_new_tokens=5, do_sample=False)
    reference = AutoModelForCausalLM.from_pretrained(tiny_generative("gpt2")).eval()
    assert torch.equal(tokens.cpu(), reference.generate(input_ids=ids, max_new_tokens=5, do_sample=False))
    assert devices and set(devices) == {"cuda"}
