"""Typed configuration schemas, registered with Hydra's ConfigStore.

Every YAML file under ``configs/`` is validated against one of these dataclasses, so a
mistyped key or a wrongly typed value fails when the config is composed, before any work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class TokenizerConfig:
    """SentencePiece settings; the model is trained on the train split only and cached."""

    joint: bool = True  # one model for both languages (enables tied embeddings)
    model_type: str = "unigram"  # unigram | bpe
    vocab_size: int = 8000
    character_coverage: float = 1.0
    # SentencePiece trains on a seeded uniform sample of this many training pairs (0: all)
    input_sentence_size: int = 1_000_000
    # every source ends in EOS: the NULL position attention may pick for a target word
    # with no source counterpart; alignments read attention to it as "unaligned"
    null_position: bool = True


@dataclass
class DataConfig:
    """Where parallel text comes from, how it is filtered and batched."""

    name: str = "multi30k"  # multi30k | tatoeba | files
    root: str = "data/multi30k"  # downloads land here; point at a local copy to stay offline
    src: str = "en"
    tgt: str = "fr"
    train_split: str = "train"
    valid_split: str = "val"
    test_splits: list[str] = field(default_factory=lambda: ["test_2016_flickr"])
    # data=files: the user's own parallel files (plain or .gz), or one TSV per split;
    # the training split may be a list of files, read one after the other
    train_src: Any = None  # a path or a list of paths
    train_tgt: Any = None
    valid_src: str | None = None
    valid_tgt: str | None = None
    test_src: str | None = None
    test_tgt: str | None = None
    train_tsv: Any = None
    valid_tsv: str | None = None
    test_tsv: str | None = None
    # any dataset: more line-aligned parallel files appended to the training split (a
    # path or a list; list a file twice to count it twice), e.g. in-domain text or the
    # parallel text of a gold alignment set, whose links training never sees
    extra_train_src: Any = None
    extra_train_tgt: Any = None
    # data=tatoeba: deterministic split by a seeded hash of the English side
    valid_fraction: float = 0.02
    test_fraction: float = 0.02
    split_seed: int = 1234
    # filtering of training pairs (counted and reported in the log)
    max_chars: int = 1000  # per side, before tokenisation
    max_tokens: int = 128  # per side, in subwords
    max_length_ratio: float = 3.0  # longer side / shorter side, in subwords
    max_train_examples: int | None = None  # keep only the first N pairs (quick experiments)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    cache_dir: str = "data/cache"  # tokenizers and prepared (sharded, memory-mapped) data
    shard_size: int = 1_000_000  # training pairs per prepared shard
    # batching
    batch_tokens: int = 4096  # padded (src + tgt) tokens per batch, an upper bound
    num_workers: int = 0


@dataclass
class RNNConfig:
    """Bidirectional recurrent encoder, recurrent decoder with attention (Bahdanau by default)."""

    family: str = "rnn"
    cell: str = "gru"  # gru | lstm
    emb_dim: int = 256
    hidden_size: int = 512  # encoder: per direction; decoder: full
    enc_layers: int = 1
    dec_layers: int = 1
    attention: str = "bahdanau"  # bahdanau | luong_dot | luong_general
    attn_dim: int = 512  # size of the additive-attention hidden layer
    input_feeding: bool = True
    dropout: float = 0.3
    tie_embeddings: bool = True  # tie target embedding and output projection


@dataclass
class TransformerConfig:
    """Encoder–decoder Transformer with multi-head attention."""

    family: str = "transformer"
    d_model: int = 256
    heads: int = 4
    enc_layers: int = 3
    dec_layers: int = 3
    ff_dim: int = 1024
    dropout: float = 0.1
    attn_dropout: float = 0.1
    norm_first: bool = True  # pre-norm; false gives the original post-norm
    positional: str = "sinusoidal"  # sinusoidal | learned
    max_positions: int = 1024
    tie_embeddings: bool = True  # source/target/output embeddings, when the vocabulary is joint
    encoder_self_attention: str = "softmax"  # softmax | efficient
    decoder_self_attention: str = "softmax"  # softmax | efficient


@dataclass
class OptimConfig:
    """Optimizer and learning-rate schedule."""

    name: str = "adam"  # adam | adamw
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-9
    weight_decay: float = 0.0
    clip_norm: float = 1.0  # 0 disables clipping
    schedule: str = "plateau"  # plateau | inverse_sqrt | constant
    warmup_steps: int = 4000  # inverse_sqrt
    plateau_factor: float = 0.5
    plateau_patience: int = 2  # validations without BLEU improvement before the LR drops
    min_lr: float = 1e-6


@dataclass
class TrainConfig:
    """The training loop."""

    seed: int = 1234
    device: str = "auto"  # auto | cpu | cuda
    max_steps: int = 20000
    max_epochs: int = 100
    max_minutes: float | None = None  # wall-clock budget; stops cleanly with a checkpoint
    label_smoothing: float = 0.1  # ε, spread over the V - 2 classes other than PAD and BOS
    accum_steps: int = 1
    precision: str = "fp32"  # fp32 | bf16 | fp16
    compile: bool = False
    log_every: int = 100
    valid_every: int = 1000
    patience: int = 10  # validations without BLEU improvement before early stopping
    keep_last: int = 3
    resume: str | None = None  # a checkpoint path, or "auto" for this run dir's last.pt
    overwrite: bool = False  # replace the checkpoints of an earlier run in this run dir
    max_nonfinite: int = 5  # consecutive skipped non-finite steps before giving up
    threads: int | None = None  # torch intra-op threads on CPU (default: torch's choice)
    progress: bool = True
    test_at_end: bool = True  # decode data.test_splits with best.pt (search from `decode`)


@dataclass
class DecodeConfig:
    """How to search: validation (``valid.decode``), the final test, evaluate, translate, serve."""

    beam_size: int = 5  # 1 = greedy
    length_penalty: float = 1.0  # GNMT alpha; 0 disables
    max_len_a: float = 1.5  # hypotheses stop at a * source length + b tokens
    max_len_b: int = 10
    batch_size: int = 64  # sentences per batch
    nbest: int = 1


@dataclass
class ValidConfig:
    """Validation: metrics, decoding and the alignment probes."""

    # greedy by default: validation runs often, and BLEU only has to rank checkpoints
    decode: DecodeConfig = field(default_factory=lambda: DecodeConfig(beam_size=1))
    max_sentences: int | None = None  # decode only the first N validation sentences
    num_probes: int = 3  # the first K validation sentences are drawn as heatmaps
    probe_sentences: list[str] = field(default_factory=list)  # extra source sentences
    # the heatmaps' reading and layer; None: the last dev AER's choice (valid.align_gold)
    alignment_layer: int | None = None  # Transformer: decoder layer (-1: the last)
    alignment_reading: str | None = None  # predict | shift (seq2seq/readout.py)
    align_gold: str | None = None  # gold word alignments for valid/aer
    align_src: str | None = None
    align_tgt: str | None = None


@dataclass
class TrainAppConfig:
    """seq2seq-train."""

    data: DataConfig = field(default_factory=DataConfig)
    model: Any = MISSING  # RNNConfig | TransformerConfig, chosen with model=rnn|transformer
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    valid: ValidConfig = field(default_factory=ValidConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)  # the search of the final test


@dataclass
class PrepareAppConfig:
    """seq2seq-prepare: the same data section as seq2seq-train."""

    data: DataConfig = field(default_factory=DataConfig)


@dataclass
class EvalDataConfig:
    """What to score: named splits of the checkpoint's dataset, or the user's own files."""

    root: str | None = None  # default: the root the checkpoint was trained with
    split: str | None = None  # one split, e.g. test_2016_flickr
    splits: list[str] = field(default_factory=list)  # several; default: the test splits
    src_file: str | None = None  # or score your own source file ...
    ref_file: str | None = None  # ... against this reference file


@dataclass
class EvaluateAppConfig:
    """seq2seq-evaluate."""

    checkpoint: str = MISSING  # a checkpoint file, or a run directory (its best.pt)
    data: EvalDataConfig = field(default_factory=EvalDataConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    average_last: int = 1  # average the weights of the last N step checkpoints first
    device: str = "auto"
    alignment_format: str | None = None  # pharaoh: also write <split>.align word alignments
    alignment_layer: int | None = None  # Transformer: decoder layer (-1: the last)
    # predict | shift: the step whose attention aligns a target token (seq2seq/readout.py);
    # None, as alignment_layer None: the checkpoint's choice by dev AER, else predict, last
    alignment_reading: str | None = None
    align_gold: str | None = None  # gold word alignments (Pharaoh or NAACL): report AER ...
    align_src: str | None = None  # ... of the attention on this space-tokenised source
    align_tgt: str | None = None  # ... force-decoding this target
    reverse_checkpoint: str | None = None  # a target->source model: also score merged links
    threads: int | None = None  # CPU threads of the decoder (torch's or CTranslate2's)


@dataclass
class TranslateAppConfig:
    """seq2seq-translate."""

    checkpoint: str = MISSING
    input: str = "-"  # a file, or - for standard input
    output: str = "-"  # a file, or - for standard output
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    show_alignment: bool = False  # print each target token beside its most-attended source token
    alignment_dir: str | None = None  # save one heatmap PNG per sentence here
    alignment_format: str | None = None  # pharaoh: print word alignments (i-j) after a tab
    alignment_layer: int | None = None  # Transformer: decoder layer (-1: the last)
    # predict | shift: the step whose attention aligns a target token (seq2seq/readout.py);
    # None, as alignment_layer None: the checkpoint's choice by dev AER, else predict, last
    alignment_reading: str | None = None
    device: str = "auto"
    threads: int | None = None  # CPU threads of the decoder (torch's or CTranslate2's)


# Weight types of an exported CTranslate2 model; none keeps float32, the native precision.
QUANTIZATIONS = ("none", "int8", "int8_float32", "float16")


@dataclass
class ExportAppConfig:
    """seq2seq-export."""

    checkpoint: str = MISSING  # a Transformer checkpoint file, or a run directory (its best.pt)
    format: str = "ctranslate2"
    output: str = MISSING  # a new directory: the exported model, vocabularies, SentencePiece
    quantization: str = "none"  # none | int8 | int8_float32 | float16 (weights on disk)


@dataclass
class ServeLimitsConfig:
    """What one request may ask of seq2seq-serve; larger requests get HTTP 413 or 422."""

    max_sentences: int = 32  # sentences per /translate request
    max_chars: int = 4000  # characters per request, all sentences (or source + target) together
    max_beam: int = 16  # beam_size above this is refused (422)


@dataclass
class ServeAppConfig:
    """seq2seq-serve."""

    checkpoint: str = MISSING  # a checkpoint file, or a run directory (its best.pt)
    host: str = "127.0.0.1"  # loopback: set 0.0.0.0 on purpose to serve other machines
    port: int = 8000
    device: str = "auto"
    decode: DecodeConfig = field(default_factory=DecodeConfig)  # beam_size: the default
    limits: ServeLimitsConfig = field(default_factory=ServeLimitsConfig)
    alignment_layer: int | None = None  # Transformer: decoder layer (-1: the last)
    # predict | shift: the step whose attention aligns a target token (seq2seq/readout.py);
    # None, as alignment_layer None: the checkpoint's choice by dev AER, else predict, last
    alignment_reading: str | None = None
    max_batch_sentences: int = 64  # sentences the worker gathers from queued requests per batch
    log_level: str = "info"  # uvicorn's: critical | error | warning | info | debug


def register_configs() -> None:
    """Register the schemas so YAML files can name them in their defaults lists."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainAppConfig)
    cs.store(group="data", name="data_schema", node=DataConfig)
    cs.store(group="model", name="rnn_schema", node=RNNConfig)
    cs.store(group="model", name="transformer_schema", node=TransformerConfig)
    cs.store(group="optim", name="optim_schema", node=OptimConfig)
    cs.store(name="prepare_schema", node=PrepareAppConfig)
    cs.store(name="evaluate_schema", node=EvaluateAppConfig)
    cs.store(name="translate_schema", node=TranslateAppConfig)
    cs.store(name="serve_schema", node=ServeAppConfig)
    cs.store(name="export_schema", node=ExportAppConfig)
