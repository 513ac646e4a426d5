"""CTC speech recognition (wav2vec2, hubert, wavlm) and audio classification: waveform graphs with a
dynamic number of samples, parity with PyTorch at other lengths, and transformers' pipelines."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

sys.path.insert(0, str(Path(__file__).parent / "coverage"))
from tiny_configs import build_tiny  # noqa: E402

from optibridge import export  # noqa: E402

CTC_VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", *"abcdefghijklmnopqrstuvwxyz'"]
CTC_TYPES = ("wav2vec2", "hubert", "wavlm")


def _audio_model(model_type: str, task: str, dest: Path) -> Path:
    labels = {} if task == "ctc" else {"num_labels": 3}  # the label names below are written for three
    if (model_type, task) == ("wavlm", "audio-xvector"):
        labels["use_weighted_layer_sum"] = True  # as microsoft/wavlm-base-plus-sv: every layer's hidden states, weighted
    build_tiny(model_type, task, dest, vocab_size=len(CTC_VOCAB), pad_token_id=0, **labels)
    transformers.Wav2Vec2FeatureExtractor(return_attention_mask=False).save_pretrained(dest)
    if task == "ctc":
        vocab = dest / "vocab.json"
        vocab.write_text(__import__("json").dumps({t: i for i, t in enumerate(CTC_VOCAB)}))
        transformers.Wav2Vec2CTCTokenizer(str(vocab)).save_pretrained(dest)
    else:
        config = transformers.AutoConfig.from_pretrained(dest)
        config.id2label, config.label2id = {0: "speech", 1: "music", 2: "noise"}, {"speech": 0, "music": 1, "noise": 2}
        config.save_pretrained(dest)
    return dest


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    """``audio(model_type, task)`` → (source folder, artifact), built and exported once."""
    root = tmp_path_factory.mktemp("audio")
    done: dict = {}

    def get(model_type: str, task: str):
        if (model_type, task) not in done:
            source = _audio_model(model_type, task, root / f"{model_type}-{task}")
            done[model_type, task] = source, export(source, root / f"{model_type}-{task}-onnx").artifact
        return done[model_type, task]

    return get


def _waveforms(batch: int, samples: int, seed: int) -> torch.Tensor:
    return torch.randn(batch, samples, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("model_type", CTC_TYPES)
def test_ctc_exports_with_a_dynamic_length_and_matches_pytorch(model_type, audio):
    from optibridge import OBModelForCTC

    source, artifact = audio(model_type, "ctc")
    meta = artifact.metadata
    assert meta.task == "ctc" and meta.validation["passed"]  # task inferred from ...ForCTC
    assert meta.inputs[0].name == "input_values" and meta.inputs[0].shape == ("batch_size", "sequence_length")
    model = OBModelForCTC.from_pretrained(artifact.path)
    reference = transformers.AutoModelForCTC.from_pretrained(source).eval()
    inputs = _waveforms(3, 5123, seed=5)  # neither traced (6800) nor validated (3600) length
    mask = torch.ones(3, 5123, dtype=torch.long)
    mask[2, 3000:], inputs[2, 3000:] = 0, 0.0  # a shorter, padded last row
    with torch.no_grad():
        want = reference(input_values=inputs, attention_mask=mask)
    got = model(input_values=inputs, attention_mask=mask)
    assert type(got) is type(want)
    np.testing.assert_allclose(got.logits.numpy(), want.logits.numpy(), atol=1e-4, rtol=0)


def test_ctc_works_in_the_speech_recognition_pipeline(audio):
    from optibridge import OBModelForCTC

    source, artifact = audio("wav2vec2", "ctc")
    speech = _waveforms(1, 16000, seed=3)[0].numpy()
    want = transformers.pipeline("automatic-speech-recognition", model=str(source))(speech)
    ours = OBModelForCTC.from_pretrained(artifact.path)
    processor = transformers.AutoProcessor.from_pretrained(artifact.path)
    got = transformers.pipeline("automatic-speech-recognition", model=ours, tokenizer=processor.tokenizer,
                                feature_extractor=processor.feature_extractor)(speech)
    assert got["text"] == want["text"] and len(want["text"]) > 0


def test_audio_classification_matches_pytorch_and_its_pipeline(audio):
    from optibridge import OBModelForAudioClassification

    source, artifact = audio("wav2vec2", "audio-classification")
    assert artifact.metadata.task == "audio-classification" and artifact.metadata.validation["passed"]
    model = OBModelForAudioClassification.from_pretrained(artifact.path)
    reference = transformers.AutoModelForAudioClassification.from_pretrained(source).eval()
    inputs = _waveforms(2, 4321, seed=9)
    with torch.no_grad():
        want = reference(input_values=inputs).logits
    np.testing.assert_allclose(model(input_values=inputs).logits.numpy(), want.numpy(), atol=1e-4, rtol=0)
    speech = inputs[0].numpy()
    extractor = transformers.AutoFeatureExtractor.from_pretrained(artifact.path)
    got = transformers.pipeline("audio-classification", model=model, feature_extractor=extractor)(speech)
    expected = transformers.pipeline("audio-classification", model=str(source))(speech)
    assert [g["label"] for g in got] == [e["label"] for e in expected]
    np.testing.assert_allclose([g["score"] for g in got], [e["score"] for e in expected], atol=1e-4)


@pytest.mark.parametrize("model_type,task,auto_class,outputs", [
    ("wav2vec2", "audio-frame-classification", "AutoModelForAudioFrameClassification", ("logits",)),
    ("wav2vec2", "audio-xvector", "AutoModelForAudioXVector", ("logits", "embeddings")),
    ("wavlm", "audio-xvector", "AutoModelForAudioXVector", ("logits", "embeddings")),  # wavlm-base-plus-sv's family
])
def test_frame_classification_and_xvectors_match_pytorch_at_another_length(model_type, task, auto_class, outputs, audio):
    from optibridge.modeling.tasks import task_class

    source, artifact = audio(model_type, task)
    meta = artifact.metadata
    assert meta.task == task and meta.validation["passed"]  # task inferred from ...ForAudioFrameClassification / ...ForXVector
    assert tuple(o.name for o in meta.outputs) == outputs
    reference = getattr(transformers, auto_class).from_pretrained(source).eval()
    assert "attention_mask" in meta.input_names
    # 3 rows (traced with 2), 9123 samples (neither traced nor validated), the last row padded: an x-vector
    # pools each row over its own frames (transformers loops over the rows; the graph masks instead)
    inputs, mask = _waveforms(3, 9123, seed=11), torch.ones(3, 9123, dtype=torch.long)
    inputs[2, 6000:], mask[2, 6000:] = 0.0, 0
    for backend, given in itertools.product(("ort", "openvino"), ({"input_values": inputs}, {"input_values": inputs, "attention_mask": mask})):
        with torch.no_grad():
            want = reference(**given)
        got = task_class(task).from_pretrained(artifact.path, backend=backend)(**given)
        assert type(got) is type(want)
        for name in outputs:
            assert getattr(want, name).std() > 1e-3  # not a constant output
            np.testing.assert_allclose(getattr(got, name).numpy(), getattr(want, name).numpy(), atol=1e-4, rtol=0)


def test_the_xvector_pooling_is_checked_against_the_models_own(audio, monkeypatch):
    from optibridge.errors import UnsupportedModelError
    from optibridge.exporter import xvector

    source, _ = audio("wav2vec2", "audio-xvector")
    model = transformers.AutoModelForAudioXVector.from_pretrained(source).eval()
    pooled = xvector.XVectorExport(model)
    pooled.check_against_the_model(8000)  # agrees
    original = model.forward

    def a_changed_head(*args, **kwargs):  # as if a transformers release pooled differently
        out = original(*args, **kwargs)
        out.embeddings = out.embeddings * 1.01
        return out

    monkeypatch.setattr(model, "forward", a_changed_head)
    with pytest.raises(UnsupportedModelError, match="batched x-vector pooling differs from the model's own"):
        xvector.XVectorExport(model).check_against_the_model(8000)


def test_optimize_quantize_and_bench_feed_waveform_graphs_whole_frames(audio, tmp_path):
    # They once fed a waveform graph 24 (validation) or 128 (bench) samples: shorter than the 400 a
    # wav2vec2 feature encoder needs for one frame, so every one of them failed in a Conv.
    from optibridge import OptimizationConfig, QuantizationConfig, optimize, quantize
    from optibridge.bench.measure import encoder_inputs

    _, ctc = audio("wav2vec2", "ctc")
    for step in (quantize(ctc.path, QuantizationConfig(mode="dynamic"), tmp_path / "int8").step,
                 optimize(ctc.path, OptimizationConfig(level=2), tmp_path / "o2").step):
        checked = step["accuracy"]["model"]
        assert checked["input_shapes"]["input_values"] == [3, 24 * 400]
        assert checked["outputs"][0]["cosine_mean"] >= 0.99
    feed, _ = encoder_inputs(ctc, 2, 32)
    assert feed["input_values"].shape == (2, 32 * 400)  # 32 steps of 25 ms at 16 kHz
    _, xvector = audio("wav2vec2", "audio-xvector")
    samples = encoder_inputs(xvector, 1, 9)[0]["input_values"].shape[1]
    assert samples > 9 * 400  # an x-vector's TDNN needs more frames: its steps are longer


def test_the_waveform_step_read_from_an_artifact_config_is_bounded(audio, tmp_path):
    import json
    import shutil

    from optibridge.artifact import Artifact
    from optibridge.steps.samples import MAX_SAMPLES_PER_STEP, waveform_samples_per_step

    _, xvector = audio("wav2vec2", "audio-xvector")
    assert 400 < waveform_samples_per_step(xvector) < MAX_SAMPLES_PER_STEP
    folder = tmp_path / "copy"
    shutil.copytree(xvector.path, folder)
    config = json.loads((folder / "config.json").read_text())
    for hostile, expected in (({"tdnn_kernel": [10**9] * 5}, MAX_SAMPLES_PER_STEP), ({"conv_kernel": ["x"]}, 400)):
        (folder / "config.json").write_text(json.dumps({**config, **hostile}))
        assert waveform_samples_per_step(Artifact.load(folder, verify_hashes=False)) == expected


def _write_wavs(folder: Path, lengths: list[int], rate: int = 16000) -> None:
    import wave

    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for i, length in enumerate(lengths):
        with wave.open(str(folder / f"{i:02d}.wav"), "wb") as handle:
            handle.setnchannels(1 if i % 2 == 0 else 2)  # stereo is averaged to mono
            handle.setsampwidth(2)
            handle.setframerate(rate)
            frames = rng.integers(-8000, 8000, (length, 1 if i % 2 == 0 else 2), dtype=np.int16)
            handle.writeframes(frames.tobytes())


@pytest.mark.parametrize("backend", ["ort", "openvino"])
def test_a_folder_of_wav_recordings_calibrates_static_int8(backend, audio, tmp_path):
    from optibridge import CalibrationConfig, QuantizationConfig, quantize

    _, artifact = audio("wav2vec2", "ctc")
    recordings = tmp_path / "wavs"
    _write_wavs(recordings, [4000, 6400, 5200, 8000])  # different lengths: padded to the longest, with a mask
    target = {"min_cosine": 0.9} if backend == "openvino" else {}  # a tiny random model, not the real target
    config = QuantizationConfig(mode="static", calibration=CalibrationConfig(source=str(recordings)), **target)
    result = quantize(artifact.path, config, tmp_path / "int8", backend=backend)
    assert result.step["calibration"]["description"] == f"4 recording(s) from {recordings}"
    assert min(o.cosine_mean for o in result.accuracy["model"].outputs) >= 0.95


def test_wav_calibration_errors_name_the_file_or_the_fix(audio, exported, tmp_path):
    from optibridge import CalibrationConfig, QuantizationConfig, quantize
    from optibridge.errors import CalibrationError

    _, artifact = audio("wav2vec2", "ctc")

    def static(folder: Path, path=artifact.path):
        return quantize(path, QuantizationConfig(mode="static", calibration=CalibrationConfig(source=str(folder))), tmp_path / "out")

    odd = tmp_path / "odd"
    _write_wavs(odd, [4000], rate=10)
    with pytest.raises(CalibrationError, match="00.wav claims 10 Hz, outside 1000-384000 Hz"):
        static(odd)
    broken = tmp_path / "broken"
    _write_wavs(broken, [4000])
    (broken / "01.wav").write_bytes(b"RIFF not really")
    with pytest.raises(CalibrationError, match="01.wav cannot be read as PCM WAV"):
        static(broken)
    (broken / "01.wav").unlink()
    with pytest.raises(CalibrationError, match="is audio, but graph takes input_ids"):
        static(broken, exported("bert", "text-classification").path)
    with pytest.raises(CalibrationError, match=r"or a folder of recordings \(.wav, .flac, ...: --calibration DIR\)"):  # the built-in sentences
        quantize(artifact.path, QuantizationConfig(mode="static"), tmp_path / "out")
    (broken / "cat.png").write_bytes(b"")
    with pytest.raises(CalibrationError, match="holds both images and recordings"):
        static(broken)
    assert not (tmp_path / "out").exists()


def test_an_audio_column_of_a_saved_dataset_calibrates_as_the_same_wav_files(audio, tmp_path):
    """WAV bytes in an Audio column, recordings stored as numbers, and the feature extractor's own
    output columns all give the feeds a folder of the same WAV files gives (no audio decoder package)."""
    import json

    import datasets

    from optibridge import CalibrationConfig, QuantizationConfig, quantize
    from optibridge.steps.calibration import load_calibration
    from optibridge.steps.media import read_wav

    _, artifact = audio("wav2vec2", "ctc")

    def feeds(source, **options):
        return load_calibration(artifact, CalibrationConfig(source=str(source), **options)).batches["model"]

    def assert_same(got, want, exact=True):
        assert len(got) == len(want) > 0
        for ours, theirs in zip(got, want):
            assert ours.keys() == theirs.keys() == {"input_values", "attention_mask"} & set(artifact.metadata.input_names) | {"input_values"}
            for name in ours:
                (np.testing.assert_array_equal if exact else np.testing.assert_allclose)(ours[name], theirs[name])

    recordings = tmp_path / "wavs"
    _write_wavs(recordings, [4000, 6400, 5200])
    files = sorted(recordings.iterdir())
    want = feeds(recordings)

    # datasets needs torchcodec to write an Audio column (not installed here); the folder it would write is
    # the same struct of bytes and path, declared Audio in its info file
    cell = {"bytes": datasets.Value("binary"), "path": datasets.Value("string")}
    encoded = datasets.Dataset.from_dict({"speech": [{"bytes": f.read_bytes(), "path": f.name} for f in files], "text": ["a", "b", "c"]},
                                         features=datasets.Features({"speech": cell, "text": datasets.Value("string")}))
    encoded.save_to_disk(str(tmp_path / "encoded"))
    info = json.loads((tmp_path / "encoded" / "dataset_info.json").read_text())
    info["features"]["speech"] = {"_type": "Audio", "sampling_rate": 16000}
    (tmp_path / "encoded" / "dataset_info.json").write_text(json.dumps(info))
    assert isinstance(datasets.load_from_disk(str(tmp_path / "encoded")).features["speech"], datasets.Audio)
    assert_same(feeds(tmp_path / "encoded", column="speech"), want)
    with pytest.raises(Exception, match="is text, but graph 'model' takes input_values"):  # the default column is text
        feeds(tmp_path / "encoded")

    arrays = [read_wav(f.name, f) for f in files]
    numbers = datasets.Dataset.from_dict({"audio": [{"array": samples.tolist(), "sampling_rate": rate} for samples, rate in arrays]})
    numbers.save_to_disk(str(tmp_path / "numbers"))
    assert_same(feeds(tmp_path / "numbers"), want)  # the one recording column, found without naming it

    extractor = transformers.AutoFeatureExtractor.from_pretrained(artifact.path)
    processed = numbers.map(lambda row: extractor(row["audio"]["array"], sampling_rate=16000), remove_columns=["audio"])
    processed.save_to_disk(str(tmp_path / "processed"))
    # the extractor normalises each recording alone; the folder path pads first, so only the unpadded samples agree
    for ours, theirs, (samples, _) in zip(feeds(tmp_path / "processed"), want, arrays):
        length = len(samples)
        assert ours["input_values"].shape == theirs["input_values"].shape
        np.testing.assert_allclose(ours["input_values"][0, :length], theirs["input_values"][0, :length], atol=1e-5)
        assert not ours["input_values"][0, length:].any()
        if "attention_mask" in ours:
            np.testing.assert_array_equal(ours["attention_mask"], theirs["attention_mask"])

    hostile = datasets.Dataset.from_dict({"audio": [{"array": [0.0] * 800, "sampling_rate": 10**9}]})
    hostile.save_to_disk(str(tmp_path / "hostile"))
    with pytest.raises(Exception, match=r"\(column 'audio'\) row 0 claims 1000000000 Hz, outside 1000-384000 Hz"):
        feeds(tmp_path / "hostile")

    result = quantize(artifact.path, QuantizationConfig(mode="static", calibration=CalibrationConfig(source=str(tmp_path / "numbers"))),
                      tmp_path / "int8")
    assert result.step["calibration"]["description"] == f"3 recording(s) from {tmp_path / 'numbers'} (column 'audio')"


def _sine(rate: int, seconds: float = 0.5, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * hz * t) + 0.2 * np.sin(2 * np.pi * 1234.0 * t)).astype(np.float32)


def test_flac_and_mp3_recordings_are_read_and_other_rates_resampled(audio, tmp_path, monkeypatch):
    """FLAC gives exactly what the same samples as WAV give; a recording at 8 kHz is resampled to the
    model's 16 kHz (the same tones recorded at 16 kHz, up to the filter's edges); MP3 is read and calibrates."""
    import sys
    import wave

    import soundfile

    from optibridge import CalibrationConfig
    from optibridge.errors import CalibrationError
    from optibridge.steps.calibration import load_calibration

    _, artifact = audio("wav2vec2", "ctc")

    def feeds(folder):
        return load_calibration(artifact, CalibrationConfig(source=str(folder))).batches["model"]

    def write(folder, name, samples, rate, **options):
        folder.mkdir(exist_ok=True)
        pcm = np.round(samples * 32767).astype(np.int16)  # the same 16-bit samples in every lossless file
        if name.endswith(".wav"):
            with wave.open(str(folder / name), "wb") as handle:
                handle.setnchannels(1)
                handle.setsampwidth(2)
                handle.setframerate(rate)
                handle.writeframes(pcm.tobytes())
        else:
            soundfile.write(str(folder / name), pcm if "subtype" in options else samples, rate, **options)

    tones = _sine(16000)
    write(tmp_path / "wav", "a.wav", tones, 16000)
    write(tmp_path / "flac", "a.flac", tones, 16000, subtype="PCM_16")
    want = feeds(tmp_path / "wav")
    got = feeds(tmp_path / "flac")
    assert len(got) == len(want) == 1
    np.testing.assert_array_equal(got[0]["input_values"], want[0]["input_values"])  # lossless: the same 16-bit samples

    write(tmp_path / "8k", "a.wav", _sine(8000), 8000)
    resampled = feeds(tmp_path / "8k")[0]["input_values"][0]
    assert resampled.shape == want[0]["input_values"][0].shape
    middle = slice(400, -400)  # away from the filter's start-up at both ends
    np.testing.assert_allclose(resampled[middle], want[0]["input_values"][0][middle], atol=0.03)

    write(tmp_path / "mp3", "a.mp3", tones, 16000, format="MP3")
    decoded = feeds(tmp_path / "mp3")[0]["input_values"][0]
    assert abs(len(decoded) - len(tones)) < 2400  # the encoder's padding, a frame or two

    monkeypatch.setitem(sys.modules, "scipy.signal", None)  # as if scipy were not installed
    with pytest.raises(CalibrationError, match="sampled at 8000 Hz and the model takes 16000 Hz; resampling needs scipy"):
        feeds(tmp_path / "8k")


def test_optibridge_run_transcribes_and_classifies_recordings_as_pytorch(audio, tmp_path):
    """`optibridge run` on ctc and audio-classification artifacts: each row a recording (FLAC, or WAV at
    another rate: resampled); transcriptions and labels equal to PyTorch on the same samples."""
    import soundfile

    from optibridge.batch import run_file
    from optibridge.steps.media import read_recording, resample

    rng = np.random.default_rng(3)
    (tmp_path / "clips").mkdir()
    soundfile.write(str(tmp_path / "clips" / "a.flac"), rng.uniform(-0.5, 0.5, 6400).astype(np.float32), 16000, subtype="PCM_16")
    soundfile.write(str(tmp_path / "clips" / "b.wav"), rng.uniform(-0.5, 0.5, 3000).astype(np.float32), 8000, subtype="PCM_16")
    rows = tmp_path / "rows.txt"
    rows.write_text("clips/a.flac\nclips/b.wav\n")
    waves = []
    for name in ("a.flac", "b.wav"):
        samples, rate = read_recording(name, tmp_path / "clips" / name)
        waves.append(torch.from_numpy(resample(samples, rate, 16000, name)))
    for task, field in (("ctc", "transcription"), ("audio-classification", "label")):
        source, artifact = audio("wav2vec2", task)
        run_file(artifact.path, rows, tmp_path / f"{task}.parquet", batch_size=1)
        import pyarrow.parquet as pq

        out = pq.read_table(tmp_path / f"{task}.parquet").to_pydict()
        assert out["error"] == [None, None]
        auto = transformers.AutoModelForCTC if task == "ctc" else transformers.AutoModelForAudioClassification
        reference = auto.from_pretrained(source).eval()
        extractor = transformers.AutoFeatureExtractor.from_pretrained(source)
        want = []
        for wave_ in waves:
            features = extractor(wave_.numpy(), sampling_rate=16000, return_tensors="pt")
            with torch.no_grad():
                logits = reference(input_values=features["input_values"]).logits
            if task == "ctc":
                want.append(transformers.AutoTokenizer.from_pretrained(source).batch_decode(logits.argmax(-1))[0])
            else:
                want.append(reference.config.id2label[int(logits.argmax(-1))])
        assert out[field] == want
        if task == "ctc":
            assert any(text for text in want)  # the random head does emit characters


def test_ctc_on_log_mel_features_parakeet_matches_pytorch_and_its_pipeline(tmp_path):
    # Parakeet's CTC head reads log-mel features (batch, frames, bins) with a frame mask, not a waveform.
    # Before, the exporter had no such inputs for encoder tasks (KeyError: 'input_features').
    from optibridge import OBModelForCTC

    source = tmp_path / "parakeet"
    build_tiny("parakeet_ctc", "ctc", source, vocab_size=len(CTC_VOCAB), pad_token_id=0)
    bins = transformers.AutoConfig.from_pretrained(source).encoder_config.num_mel_bins
    extractor = transformers.ParakeetFeatureExtractor(feature_size=bins)
    vocab = tmp_path / "vocab.json"
    vocab.write_text(__import__("json").dumps({t: i for i, t in enumerate(CTC_VOCAB)}))
    tokenizer = transformers.Wav2Vec2CTCTokenizer(str(vocab))
    artifact = export(source, tmp_path / "onnx").artifact
    assert artifact.metadata.task == "ctc" and artifact.metadata.validation["passed"]
    assert [(s.name, s.shape) for s in artifact.metadata.inputs] == [
        ("input_features", ("batch_size", "sequence_length", bins)), ("attention_mask", ("batch_size", "sequence_length"))]
    reference = transformers.AutoModelForCTC.from_pretrained(source).eval()
    waves = [_waveforms(1, n, seed=n)[0].numpy() * 0.1 for n in (16000, 9000)]  # the extractor pads the shorter one
    inputs = extractor(waves, sampling_rate=16000, return_tensors="pt", padding=True)
    assert inputs["attention_mask"][1].sum() < inputs["attention_mask"][0].sum()
    with torch.no_grad():
        want = reference(**inputs).logits
    for backend in ("ort", "openvino"):
        model = OBModelForCTC.from_pretrained(artifact.path, backend=backend)
        np.testing.assert_allclose(model(**inputs).logits.numpy(), want.numpy(), atol=1e-4, rtol=0)
    assert model.main_input_name == "input_features"  # what the pipeline feeds a CTC model by
    pipe = lambda m: transformers.pipeline("automatic-speech-recognition", model=m, tokenizer=tokenizer, feature_extractor=extractor)  # noqa: E731
    expected = pipe(reference)(waves[0])
    assert pipe(OBModelForCTC.from_pretrained(artifact.path))(waves[0])["text"] == expected["text"] and expected["text"]
