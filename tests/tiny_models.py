"""A zoo of tiny, randomly initialised Hugging Face models built fully offline.

Nothing here touches the network / model hub: every model is created from a
small hand-written config, every text model shares one small WordPiece
tokenizer built from the vocabulary below, and every vision model gets a PIL
image processor that resizes to the model's 32x32 input.

Usage::

    from tiny_models import ARCHITECTURES, build_tiny_model

    path = build_tiny_model("bert", "text-classification", tmp_path / "bert")
    model = AutoModelForSequenceClassification.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)

The ``tasks`` tuples in ``ARCHITECTURES`` are hard-coded from the transformers
5.23 Auto mappings (``transformers.models.auto.modeling_auto.*_MAPPING_NAMES``);
``tests/test_tiny_models.py`` re-checks them against the installed version.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from transformers import (
    AlbertConfig,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForMaskedLM,
    AutoModelForMultipleChoice,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    BertConfig,
    BertTokenizer,
    CamembertConfig,
    ConvNextConfig,
    DebertaV2Config,
    DeiTConfig,
    DistilBertConfig,
    ElectraConfig,
    MobileBertConfig,
    MPNetConfig,
    PretrainedConfig,
    RobertaConfig,
    RoFormerConfig,
    ViTConfig,
    XLMRobertaConfig,
)

# ---------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------

TASK_TO_AUTO_CLASS = {
    "feature-extraction": AutoModel,
    "text-classification": AutoModelForSequenceClassification,
    "token-classification": AutoModelForTokenClassification,
    "question-answering": AutoModelForQuestionAnswering,
    "fill-mask": AutoModelForMaskedLM,
    "multiple-choice": AutoModelForMultipleChoice,
    "image-classification": AutoModelForImageClassification,
}

TEXT_TASKS = (
    "feature-extraction",
    "text-classification",
    "token-classification",
    "question-answering",
    "fill-mask",
    "multiple-choice",
)
VISION_TASKS = ("feature-extraction", "image-classification")

# Labels per task. Only these tasks get custom labels: question-answering heads
# split ``num_labels`` logits into start/end and need the default num_labels=2.
TASK_LABELS = {
    "text-classification": ("NEG", "NEU", "POS"),
    "token-classification": ("O", "B-X", "I-X"),
    "image-classification": ("cat", "dog", "bird"),
}

# ---------------------------------------------------------------------------
# Tokenizer (one WordPiece vocabulary shared by every text model)
# ---------------------------------------------------------------------------

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # ids 0..4
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = range(5)

_PUNCTUATION = list(".,!?;:'\"-()/&%$#@*+=<>[]_")
_DIGITS = list("0123456789")
_LETTERS = list("abcdefghijklmnopqrstuvwxyz")
_WORDS = """
the a an and or but not no yes of to in on at by for with from about into over under
after before between through during without again up down out off than then so as if
is are was were be been being am do does did done have has had having will would can
could should may might must shall
i you he she it we they me him her us them my your his its our their this that these
those who whom whose what which where when why how there here all any some each every
both few more most other such only own same very just also too now still even ever never
one two three four five six seven eight nine ten first second last next new old good bad
great small big large little long short high low young right left best better many much
cat cats dog dogs bird birds fish horse cow mouse animal animals mat hat bed table chair
house home room door window car bus train road city town country world state capital
paris france london england berlin germany rome italy madrid spain europe america china
japan india river sea water fire air earth sun moon star sky day night time year week
month today tomorrow morning evening man woman men women child children boy girl people
person friend family mother father king queen name word words book books story school
student teacher language english french music art film movie game team player ball
food bread milk coffee tea apple tree trees flower garden park street hand head eye eyes
face heart life love war peace money work job company market price question answer
problem way part place thing things number group case point fact end side
sat sit sits sitting say said says go goes went gone going come came comes get got make
made take took see saw seen know knew known think thought look looked want give gave use
used find found tell told ask asked feel felt try tried leave left call called run ran
play played read write wrote live lived eat ate like liked walk walked open close closed
happy sad nice beautiful red blue green black white quick brown lazy jumps jumped fox
well really always often sometimes usually quite
hello hi thanks please sorry model models data text image images computer phone
machine learning network export input output test
""".split()
_SUFFIXES = """
##s ##es ##ed ##ing ##er ##ers ##est ##ly ##ion ##ions ##tion ##ation ##ment ##ness
##ful ##less ##able ##al ##ic ##ity ##ous ##ive ##ize ##ise ##y ##en ##ish ##ist
##ism ##ies ##'s ##n't
""".split()

TINY_VOCAB: tuple[str, ...] = tuple(
    dict.fromkeys(
        [
            *SPECIAL_TOKENS,
            *_PUNCTUATION,
            *_DIGITS,
            *_LETTERS,
            *_WORDS,
            *_SUFFIXES,
            # continuation pieces so that any lowercase word / number still
            # tokenizes into real (non-[UNK]) pieces
            *(f"##{c}" for c in _LETTERS),
            *(f"##{c}" for c in _DIGITS),
        ]
    )
)
VOCAB_SIZE = len(TINY_VOCAB)


def make_tokenizer(
    model_input_names: tuple[str, ...] = ("input_ids", "token_type_ids", "attention_mask"),
    model_max_length: int = 128,
) -> BertTokenizer:
    """A fresh lowercase WordPiece tokenizer over ``TINY_VOCAB``.

    ``BertTokenizer`` is the tokenizers-backed ("fast") class in transformers 5.
    """
    tokenizer = BertTokenizer(
        vocab={tok: i for i, tok in enumerate(TINY_VOCAB)},
        do_lower_case=True,
        model_max_length=model_max_length,
        model_input_names=list(model_input_names),
    )
    assert tokenizer.pad_token_id == PAD_ID and tokenizer.mask_token_id == MASK_ID
    return tokenizer


# ---------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------

HIDDEN = 32
LAYERS = 2
HEADS = 4
INTERMEDIATE = 37
MAX_POSITIONS = 128
IMAGE_SIZE = 32
PATCH_SIZE = 8

# Shared BERT-style kwargs. pad_token_id always equals the tokenizer's [PAD] id.
_TEXT = dict(
    vocab_size=VOCAB_SIZE,
    hidden_size=HIDDEN,
    num_hidden_layers=LAYERS,
    num_attention_heads=HEADS,
    intermediate_size=INTERMEDIATE,
    max_position_embeddings=MAX_POSITIONS,
    pad_token_id=PAD_ID,
)
# RoBERTa-style models (roberta, xlm-roberta, camembert, mpnet) derive position
# ids from input_ids: real tokens get positions padding_idx+1 .., so they need
# max_position_embeddings = max_length + pad_token_id + 1 (the real ones use
# 514 = 512 + 2). Their tokenizers do not return token_type_ids.
_ROBERTA_POSITIONS = MAX_POSITIONS + 2
_ROBERTA_STYLE = dict(
    _TEXT,
    max_position_embeddings=_ROBERTA_POSITIONS,
    type_vocab_size=1,
    bos_token_id=CLS_ID,
    eos_token_id=SEP_ID,
)
_VIT = dict(
    image_size=IMAGE_SIZE,
    patch_size=PATCH_SIZE,
    num_channels=3,
    hidden_size=HIDDEN,
    num_hidden_layers=LAYERS,
    num_attention_heads=HEADS,
    intermediate_size=INTERMEDIATE,
)


def _bert() -> PretrainedConfig:
    return BertConfig(**_TEXT)


def _distilbert() -> PretrainedConfig:
    return DistilBertConfig(
        vocab_size=VOCAB_SIZE,
        dim=HIDDEN,
        n_layers=LAYERS,
        n_heads=HEADS,
        hidden_dim=INTERMEDIATE,
        max_position_embeddings=MAX_POSITIONS,
        pad_token_id=PAD_ID,
    )


def _roberta() -> PretrainedConfig:
    return RobertaConfig(**_ROBERTA_STYLE)


def _xlm_roberta() -> PretrainedConfig:
    return XLMRobertaConfig(**_ROBERTA_STYLE)


def _camembert() -> PretrainedConfig:
    return CamembertConfig(**_ROBERTA_STYLE)


def _albert() -> PretrainedConfig:
    # ALBERT factorises the embeddings (embedding_size != hidden_size) and
    # shares one layer group across all layers.
    return AlbertConfig(
        **_TEXT, embedding_size=16, num_hidden_groups=1, bos_token_id=CLS_ID, eos_token_id=SEP_ID
    )


def _electra() -> PretrainedConfig:
    # ELECTRA has its own embedding size projected up to hidden_size.
    return ElectraConfig(**_TEXT, embedding_size=16)


def _deberta_v2() -> PretrainedConfig:
    # Mirrors deberta-v3-*: disentangled relative attention with log buckets,
    # no absolute position embeddings and no token-type embeddings
    # (type_vocab_size=0: token_type_ids are accepted but ignored).
    return DebertaV2Config(
        **_TEXT,
        type_vocab_size=0,
        relative_attention=True,
        position_buckets=32,
        max_relative_positions=-1,
        pos_att_type=["p2c", "c2p"],
        position_biased_input=False,
        share_att_key=True,
        norm_rel_ebd="layer_norm",
    )


def _mpnet() -> PretrainedConfig:
    cfg = dict(_ROBERTA_STYLE)
    cfg.pop("type_vocab_size")
    return MPNetConfig(**cfg, relative_attention_num_buckets=32)


def _roformer() -> PretrainedConfig:
    # RoFormerForMultipleChoice pools with a SequenceSummary whose summary_type
    # defaults to "last" (RoFormerConfig has no such field), i.e. it reads the
    # last position, which is [PAD] for the shorter rows of a padded batch.
    # "first" pools [CLS] so padded batches give the same answer as unpadded.
    return RoFormerConfig(**_TEXT, embedding_size=HIDDEN, rotary_value=False, summary_type="first")


def _mobilebert() -> PretrainedConfig:
    # MobileBERT: trigram embeddings (embedding_size*3 -> hidden_size),
    # bottlenecked transformer blocks (true_hidden_size) and stacked FFNs.
    return MobileBertConfig(
        **_TEXT,
        embedding_size=16,
        trigram_input=True,
        use_bottleneck=True,
        intra_bottleneck_size=16,
        use_bottleneck_attention=False,
        key_query_shared_bottleneck=True,
        num_feedforward_networks=2,
        normalization_type="no_norm",
        classifier_activation=True,
        true_hidden_size=16,
    )


def _vit() -> PretrainedConfig:
    return ViTConfig(**_VIT)


def _deit() -> PretrainedConfig:
    return DeiTConfig(**_VIT)


def _convnext() -> PretrainedConfig:
    # 32x32 input, 4x4 patchify stem, three 2x downsamples -> 1x1 last stage.
    return ConvNextConfig(
        num_channels=3,
        patch_size=4,
        num_stages=4,
        hidden_sizes=[8, 16, 24, 32],
        depths=[1, 1, 1, 1],
        image_size=IMAGE_SIZE,
    )


# ---------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TinyArch:
    model_type: str  # e.g. "bert"
    modality: str  # "text" or "vision"
    config: Callable[[], PretrainedConfig]  # builds a SMALL config
    tasks: tuple[str, ...]  # task names with a transformers 5.23 Auto mapping
    # Input names the architecture's tokenizer returns (text only); mirrors the
    # real tokenizer of that family.
    tokenizer_inputs: tuple[str, ...] = ("input_ids", "token_type_ids", "attention_mask")
    # Largest sequence length (incl. special tokens) the model accepts.
    model_max_length: int = MAX_POSITIONS


_NO_TYPE_IDS = ("input_ids", "attention_mask")

ARCHITECTURES: dict[str, TinyArch] = {
    a.model_type: a
    for a in [
        # -- required ------------------------------------------------------
        TinyArch("bert", "text", _bert, TEXT_TASKS),
        TinyArch("distilbert", "text", _distilbert, TEXT_TASKS, _NO_TYPE_IDS),
        TinyArch("roberta", "text", _roberta, TEXT_TASKS, _NO_TYPE_IDS),
        TinyArch("xlm-roberta", "text", _xlm_roberta, TEXT_TASKS, _NO_TYPE_IDS),
        TinyArch("albert", "text", _albert, TEXT_TASKS),
        TinyArch("electra", "text", _electra, TEXT_TASKS),
        TinyArch("deberta-v2", "text", _deberta_v2, TEXT_TASKS),
        TinyArch("mpnet", "text", _mpnet, TEXT_TASKS, _NO_TYPE_IDS),
        TinyArch("vit", "vision", _vit, VISION_TASKS),
        # -- extras --------------------------------------------------------
        TinyArch("camembert", "text", _camembert, TEXT_TASKS, _NO_TYPE_IDS),
        TinyArch("roformer", "text", _roformer, TEXT_TASKS),
        TinyArch("mobilebert", "text", _mobilebert, TEXT_TASKS),
        # deit's image-classification mapping is a tuple
        # (DeiTForImageClassification, DeiTForImageClassificationWithTeacher);
        # the Auto class builds the first one.
        TinyArch("deit", "vision", _deit, VISION_TASKS),
        TinyArch("convnext", "vision", _convnext, VISION_TASKS),
    ]
}

REQUIRED_ARCHITECTURES = (
    "bert",
    "distilbert",
    "roberta",
    "xlm-roberta",
    "albert",
    "electra",
    "deberta-v2",
    "mpnet",
    "vit",
)


def all_model_tasks() -> list[tuple[str, str]]:
    """Every (model_type, task) pair in the table."""
    return [(a.model_type, t) for a in ARCHITECTURES.values() for t in a.tasks]


# ---------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------


def _image_processor(model_type: str):
    # transformers 5 names the torchvision-backed processors ``XImageProcessor``
    # and the PIL ones ``XImageProcessorPil``; torchvision is not installed, so
    # use the PIL classes directly.
    if model_type == "convnext":
        from transformers import ConvNextImageProcessorPil

        # shortest_edge < 384: resize to 32 / crop_pct then center-crop to 32.
        return ConvNextImageProcessorPil(size={"shortest_edge": IMAGE_SIZE})
    if model_type == "deit":
        from transformers import DeiTImageProcessorPil

        return DeiTImageProcessorPil(
            size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
            crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        )
    from transformers import ViTImageProcessorPil

    return ViTImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})


def build_config(model_type: str, task: str) -> PretrainedConfig:
    """The tiny config for ``model_type`` with task-specific labels applied."""
    arch = ARCHITECTURES[model_type]
    if task not in arch.tasks:
        raise ValueError(f"{model_type!r} does not support task {task!r} (supports {arch.tasks})")
    config = arch.config()
    labels = TASK_LABELS.get(task)
    if labels is not None:
        config.id2label = dict(enumerate(labels))
        config.label2id = {label: i for i, label in enumerate(labels)}
        config.num_labels = len(labels)
    return config


def build_tiny_model(model_type: str, task: str, dest: Path, seed: int = 0) -> Path:
    """Build a random tiny model for (model_type, task) with torch.manual_seed(seed),
    save_pretrained it to dest, and save a matching preprocessor into dest too
    (tokenizer for text, image processor for vision). Return dest."""
    arch = ARCHITECTURES[model_type]
    dest = Path(dest)
    config = build_config(model_type, task)
    auto_cls = TASK_TO_AUTO_CLASS[task]
    # Name the architecture explicitly: transformers 5.23's Auto.from_config
    # crashes on mappings with several classes (deit image-classification:
    # DeiTForImageClassification / ...WithTeacher) when config.architectures
    # is None ("'NoneType' object is not iterable").
    model_cls = auto_cls._model_mapping[type(config)]
    if isinstance(model_cls, (list, tuple)):
        model_cls = model_cls[0]
    config.architectures = [model_cls.__name__]

    torch.manual_seed(seed)
    try:
        model = auto_cls.from_config(config, attn_implementation="eager")
    except (ValueError, TypeError):  # a class without eager support
        torch.manual_seed(seed)
        model = auto_cls.from_config(config)
    model.eval()
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest)

    if arch.modality == "text":
        make_tokenizer(arch.tokenizer_inputs, arch.model_max_length).save_pretrained(dest)
    else:
        _image_processor(model_type).save_pretrained(dest)
    return dest


def plant_ffn_outliers(folder: Path, channels: slice, scale: float, seed: int, bias_std: float = 0.0) -> None:
    """Redraw a saved tiny BERT's linears as N(0, 1/fan_in) (biases N(0, bias_std)) and give each FFN
    up-projection's ``channels`` a ``scale``-times weight and bias ``scale``: the GELU outlier channels
    real BERTs feed their down-projections. Saved back into ``folder``."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(folder)
    torch.manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.normal_(0.0, module.in_features ** -0.5)
                if bias_std:
                    module.bias.normal_(0.0, bias_std)
        for layer in model.encoder.layer:
            layer.intermediate.dense.weight[channels] *= scale
            layer.intermediate.dense.bias[channels] = scale
    model.save_pretrained(folder)



OUTLIER_CHANNEL = 7
"""The FFN channel :func:`build_outlier_bert` raises."""


def build_outlier_bert(folder: Path) -> Path:
    """A tiny BERT feature extractor with one planted outlier channel per FFN (:data:`OUTLIER_CHANNEL`)."""
    build_tiny_model("bert", "feature-extraction", folder)
    plant_ffn_outliers(folder, slice(OUTLIER_CHANNEL, OUTLIER_CHANNEL + 1), 30.0, seed=2, bias_std=0.1)
    return folder


def bert_feeds(count: int, seed: int, length: int = 12) -> list[dict[str, np.ndarray]]:
    """``count`` random single-sequence BERT feeds of ``length`` tokens."""
    rng = np.random.default_rng(seed)
    return [{"input_ids": rng.integers(5, 90, (1, length)).astype(np.int64),
             "attention_mask": np.ones((1, length), dtype=np.int64),
             "token_type_ids": np.zeros((1, length), dtype=np.int64)} for _ in range(count)]

# ---------------------------------------------------------------------------
# Generative models: decoder-only LMs, seq2seq LMs, speech seq2seq
# ---------------------------------------------------------------------------

def _widen_weights(model: torch.nn.Module) -> None:
    """Random weights give flat logits; a wider init gives decisive greedy choices, so token-for-token
    comparisons with PyTorch are not decided by float noise between near-equal logits."""
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.normal_(0.0, 0.5)


_DECODER = dict(
    vocab_size=VOCAB_SIZE,
    hidden_size=HIDDEN,
    intermediate_size=64,
    num_hidden_layers=LAYERS,
    num_attention_heads=HEADS,
    num_key_value_heads=2,  # grouped-query attention, as the real models use
    max_position_embeddings=MAX_POSITIONS,
    pad_token_id=PAD_ID,
    bos_token_id=CLS_ID,
    eos_token_id=SEP_ID,
    tie_word_embeddings=False,
)


def _decoder_config(model_type: str) -> PretrainedConfig:
    from transformers import (
        GemmaConfig, GPT2Config, GPTNeoXConfig, LlamaConfig, MistralConfig, Phi3Config, Qwen2Config, Qwen3Config,
    )

    if model_type == "gpt2":
        return GPT2Config(vocab_size=VOCAB_SIZE, n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_positions=MAX_POSITIONS,
                          bos_token_id=CLS_ID, eos_token_id=SEP_ID, pad_token_id=PAD_ID)
    if model_type == "gpt_neox":
        return GPTNeoXConfig(**{k: v for k, v in _DECODER.items() if k != "num_key_value_heads"})
    classes = {"llama": LlamaConfig, "mistral": MistralConfig, "qwen2": Qwen2Config, "qwen3": Qwen3Config,
               "phi3": Phi3Config, "gemma": GemmaConfig}
    extra: dict = {}
    if model_type in ("qwen3", "gemma"):
        extra["head_dim"] = HIDDEN // HEADS
    if model_type == "phi3":
        extra["original_max_position_embeddings"] = MAX_POSITIONS
    return classes[model_type](**_DECODER, **extra)


DECODERS = ("gpt2", "llama", "mistral", "qwen2", "qwen3", "phi3", "gemma", "gpt_neox")


def build_tiny_generative(model_type: str, dest: Path, seed: int = 0) -> Path:
    """A random tiny generative model (decoder LM) saved with the tiny tokenizer."""
    from transformers import AutoModelForCausalLM, GenerationConfig

    if model_type not in DECODERS:
        raise ValueError(f"no tiny generative model for {model_type!r}")
    config = _decoder_config(model_type)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
    _widen_weights(model)
    model.generation_config = GenerationConfig(bos_token_id=CLS_ID, eos_token_id=SEP_ID, pad_token_id=PAD_ID)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest)
    tokenizer = make_tokenizer(("input_ids", "attention_mask"), MAX_POSITIONS)
    tokenizer.padding_side = "left"
    tokenizer.save_pretrained(dest)
    return dest


SEQ2SEQ = ("t5", "bart", "marian")


def _seq2seq_config(model_type: str) -> PretrainedConfig:
    from transformers import BartConfig, MarianConfig, T5Config

    tokens = dict(vocab_size=VOCAB_SIZE, pad_token_id=PAD_ID, eos_token_id=SEP_ID)
    if model_type == "t5":
        return T5Config(d_model=HIDDEN, d_ff=64, d_kv=HIDDEN // HEADS, num_layers=LAYERS, num_heads=HEADS,
                        decoder_start_token_id=PAD_ID, **tokens)
    sizes = dict(d_model=HIDDEN, encoder_layers=LAYERS, decoder_layers=LAYERS, encoder_attention_heads=HEADS,
                 decoder_attention_heads=HEADS, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=MAX_POSITIONS)
    if model_type == "bart":
        return BartConfig(**sizes, bos_token_id=CLS_ID, decoder_start_token_id=SEP_ID, forced_eos_token_id=None, **tokens)
    return MarianConfig(**sizes, decoder_start_token_id=PAD_ID, **tokens)


def build_tiny_seq2seq(model_type: str, dest: Path, seed: int = 0) -> Path:
    """A random tiny encoder-decoder LM saved with the tiny tokenizer."""
    from transformers import AutoModelForSeq2SeqLM

    config = _seq2seq_config(model_type)
    torch.manual_seed(seed)
    model = AutoModelForSeq2SeqLM.from_config(config, attn_implementation="eager").eval()
    _widen_weights(model)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest)
    make_tokenizer(("input_ids", "attention_mask"), MAX_POSITIONS).save_pretrained(dest)
    return dest


# -- Whisper ------------------------------------------------------------------------------------
# A byte-level BPE vocabulary (every byte is a token, no merges) plus Whisper's special tokens, so
# the real WhisperTokenizer (and with it the ASR pipeline's decoding) works on a tiny model.
WHISPER_SPECIALS = (
    "<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|translate|>", "<|transcribe|>",
    "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>",
)
WHISPER_MEL_BINS = 16
WHISPER_SOURCE_POSITIONS = 50  # the encoder takes 2 × 50 = 100 feature frames: 1 s of 16 kHz audio


def _byte_vocab() -> dict[str, int]:
    # GPT-2's byte → printable-character table, as byte-level BPE vocabularies spell bytes.
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    vocab = {c: i for i, c in enumerate(chars)}
    for token in WHISPER_SPECIALS:
        vocab[token] = len(vocab)
    return vocab


def build_tiny_whisper(dest: Path, seed: int = 0) -> Path:
    """A random tiny Whisper with a real WhisperTokenizer and a 16-bin feature extractor."""
    from transformers import GenerationConfig, WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperTokenizer

    vocab = _byte_vocab()
    ids = {t: vocab[t] for t in WHISPER_SPECIALS}
    eot, sot = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    config = WhisperConfig(
        vocab_size=len(vocab), num_mel_bins=WHISPER_MEL_BINS, d_model=HIDDEN, encoder_layers=LAYERS, decoder_layers=LAYERS,
        encoder_attention_heads=HEADS, decoder_attention_heads=HEADS, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_source_positions=WHISPER_SOURCE_POSITIONS, max_target_positions=64,
        pad_token_id=eot, bos_token_id=eot, eos_token_id=eot, decoder_start_token_id=sot,
        suppress_tokens=[], begin_suppress_tokens=[],
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration._from_config(config, attn_implementation="eager").eval()
    _widen_weights(model)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot, eos_token_id=eot, pad_token_id=eot, bos_token_id=eot,
        no_timestamps_token_id=ids["<|notimestamps|>"], max_length=64, suppress_tokens=[], begin_suppress_tokens=[],
        is_multilingual=False,
    )
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest)
    WhisperTokenizer(vocab=vocab, merges=[]).save_pretrained(dest)
    WhisperFeatureExtractor(feature_size=WHISPER_MEL_BINS, chunk_length=1).save_pretrained(dest)
    return dest
