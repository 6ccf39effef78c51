"""Small random checkpoints of every architecture, each with a tokenizer of its own kind, offline.

transformers builds the model from a config with random weights (``AutoModel.from_config``); the
``tokenizers`` library trains the tokenizer on the committed corpus (English and Portuguese); a
sentence-transformers directory (Transformer + mean Pooling + Normalize) is written around both, so
the exporter, transformers and sentence-transformers all read the same files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

CORPUS = Path(__file__).resolve().parent.parent / "data" / "corpus"
VOCAB_SIZE = 800  # below 1000: a small vocabulary must warm up and serve too (it once warmed up on id 1000)
HIDDEN, LAYERS, HEADS, INTERMEDIATE = 32, 2, 4, 64
MAX_TOKENS = 64  # positions usable by a text; also the directory's max_seq_length
CORPUS_FILES = ("pride_and_prejudice.txt", "portugues.txt")


@dataclass(frozen=True)
class TokenizerKind:
    """A tokenizer family: its model, its special tokens (in id order) and how a text is framed."""

    name: str  # "wordpiece", "bpe" (byte-level), "unigram" (SentencePiece)
    specials: tuple[str, ...]  # ids 0, 1, ...
    bos: str  # the token before the text ([CLS] / <s>)
    eos: str  # the token after it ([SEP] / </s>)
    pad: str
    unk: str
    mask: str


WORDPIECE = TokenizerKind(
    "wordpiece", ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"), "[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]"
)
# MPNet's vocabulary is WordPiece with RoBERTa's framing tokens; <pad> is 1, as its positions need.
WORDPIECE_MPNET = TokenizerKind(
    "wordpiece", ("<s>", "<pad>", "</s>", "[UNK]", "<mask>"), "<s>", "</s>", "<pad>", "[UNK]", "<mask>"
)
BYTE_LEVEL_BPE = TokenizerKind(
    "bpe", ("<s>", "<pad>", "</s>", "<unk>", "<mask>"), "<s>", "</s>", "<pad>", "<unk>", "<mask>"
)
UNIGRAM = TokenizerKind(
    "unigram", ("<s>", "<pad>", "</s>", "<unk>", "<mask>"), "<s>", "</s>", "<pad>", "<unk>", "<mask>"
)


@dataclass(frozen=True)
class ArchitectureCase:
    """One model_type to build: its tokenizer kind and the config values that make it what it is."""

    model_type: str
    tokenizer: TokenizerKind
    config: dict[str, object]

    @property
    def pad_token_id(self) -> int:
        return self.tokenizer.specials.index(self.tokenizer.pad)


_SIZES = {
    "hidden_size": HIDDEN,
    "num_hidden_layers": LAYERS,
    "num_attention_heads": HEADS,
    "intermediate_size": INTERMEDIATE,
}
# RoBERTa-style positions start at padding_idx + 1 = 2, so the table has 2 more rows than usable.
CASES = {
    case.model_type: case
    for case in (
        ArchitectureCase("bert", WORDPIECE, {**_SIZES, "max_position_embeddings": MAX_TOKENS}),
        ArchitectureCase(
            "roberta",
            BYTE_LEVEL_BPE,
            {**_SIZES, "max_position_embeddings": MAX_TOKENS + 2, "type_vocab_size": 1, "layer_norm_eps": 1e-5},
        ),
        ArchitectureCase(
            "xlm-roberta",
            UNIGRAM,
            {**_SIZES, "max_position_embeddings": MAX_TOKENS + 2, "type_vocab_size": 1, "layer_norm_eps": 1e-5},
        ),
        ArchitectureCase(
            "camembert",
            UNIGRAM,
            {**_SIZES, "max_position_embeddings": MAX_TOKENS + 2, "type_vocab_size": 1, "layer_norm_eps": 1e-5},
        ),
        ArchitectureCase(
            "distilbert",
            WORDPIECE,
            {
                "dim": HIDDEN,
                "n_layers": LAYERS,
                "n_heads": HEADS,
                "hidden_dim": INTERMEDIATE,
                "max_position_embeddings": MAX_TOKENS,
            },
        ),
        ArchitectureCase("electra", WORDPIECE, {**_SIZES, "embedding_size": 16, "max_position_embeddings": MAX_TOKENS}),
        ArchitectureCase(
            "mpnet", WORDPIECE_MPNET, {**_SIZES, "max_position_embeddings": MAX_TOKENS + 2, "layer_norm_eps": 1e-5}
        ),
    )
}


def corpus_lines() -> list[str]:
    """Part of the English novel (enough for a 2000-piece vocabulary, and quick to train on), and
    the short Portuguese text weighted up so that its words get pieces too."""
    english, portuguese = ((CORPUS / name).read_text(encoding="utf-8").splitlines() for name in CORPUS_FILES)
    return [line for line in english[:2500] + portuguese * 20 if line.strip()]


def train_tokenizer(kind: TokenizerKind) -> Tokenizer:
    """A tokenizer of ``kind`` trained on the corpus, framing each text as transformers' own do."""
    specials = list(kind.specials)
    tokenizer: Tokenizer
    if kind.name == "wordpiece":  # BERT: cased here, so offsets slice the text exactly
        tokenizer = Tokenizer(models.WordPiece(unk_token=kind.unk))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece()
        trainer: trainers.Trainer = trainers.WordPieceTrainer(vocab_size=VOCAB_SIZE, special_tokens=specials)
    elif kind.name == "bpe":  # RoBERTa / GPT-2: byte-level BPE, "Ġ" marks a leading space
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=VOCAB_SIZE, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        )
    else:  # XLM-R / CamemBERT: SentencePiece Unigram, "▁" marks a leading space
        tokenizer = Tokenizer(models.Unigram())
        tokenizer.normalizer = normalizers.NFKC()
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
        tokenizer.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=VOCAB_SIZE, special_tokens=specials, unk_token=kind.unk)
    tokenizer.train_from_iterator(corpus_lines(), trainer)
    bos, eos = (kind.bos, tokenizer.token_to_id(kind.bos)), (kind.eos, tokenizer.token_to_id(kind.eos))
    if kind.name == "bpe":
        tokenizer.post_processor = processors.RobertaProcessing(eos, bos, trim_offsets=True, add_prefix_space=False)
    else:
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{kind.bos} $A {kind.eos}",
            pair=f"{kind.bos} $A {kind.eos} $B:1 {kind.eos}:1",
            special_tokens=[bos, eos],
        )
    assert [tokenizer.token_to_id(token) for token in specials] == list(range(len(specials)))
    return tokenizer


def perturb(model: torch.nn.Module, seed: int) -> None:
    """transformers initialises biases to 0 and LayerNorm to 1: make every parameter distinct, so a
    wrong mapping shows in parity; MPNet's relative bias gets a scale that moves the attention maps."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            scale = 0.5 if "relative_attention_bias" in name else 0.02
            parameter.add_(torch.randn(parameter.shape, generator=generator) * scale)


def write_checkpoint(case: ArchitectureCase, directory: Path, seed: int = 0, max_tokens: int = MAX_TOKENS) -> Path:
    """config.json + model.safetensors + tokenizer.json (+ a sentence-transformers directory) in ``directory``;
    ``max_tokens``: the directory's max_seq_length (at most the model's usable positions)."""
    from transformers import AutoConfig, AutoModel, PreTrainedTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(case.tokenizer)
    config = AutoConfig.for_model(
        case.model_type, vocab_size=tokenizer.get_vocab_size(), pad_token_id=case.pad_token_id, **case.config
    )
    torch.manual_seed(seed)
    model = AutoModel.from_config(config)  # with its pooler, where it has one: the exporter ignores it
    perturb(model, seed)
    model.save_pretrained(str(directory), safe_serialization=True)
    kind = case.tokenizer
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=kind.bos,
        eos_token=kind.eos,
        cls_token=kind.bos,
        sep_token=kind.eos,
        pad_token=kind.pad,
        unk_token=kind.unk,
        mask_token=kind.mask,
        model_max_length=max_tokens,
    )
    fast.save_pretrained(str(directory))
    write_sentence_transformers_files(directory, int(config.hidden_size), max_tokens)
    return directory


def write_sentence_transformers_files(directory: Path, dimension: int, max_tokens: int = MAX_TOKENS) -> None:
    """Transformer -> mean Pooling -> Normalize, with max_seq_length the model's usable positions."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (directory / "modules.json").write_text(json.dumps(modules, indent=2))
    (directory / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_tokens, "do_lower_case": False})
    )
    (directory / "config_sentence_transformers.json").write_text(
        json.dumps({"prompts": {}, "default_prompt_name": None, "similarity_fn_name": "cosine"})
    )
    (directory / "1_Pooling").mkdir(exist_ok=True)
    (directory / "2_Normalize").mkdir(exist_ok=True)
    pooling = {
        "word_embedding_dimension": dimension,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False,
        "include_prompt": True,
    }
    (directory / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2))
