"""A tiny, randomly initialised BGE-M3 look-alike, built offline.

Same layout as BAAI/bge-m3 (an XLM-RoBERTa encoder, its tokenizer, and the colbert/sparse heads),
so `FlagEmbedding.BGEM3FlagModel` loads it with the code path it uses for the real model.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast, XLMRobertaConfig, XLMRobertaModel

from viper.zoo.bytelevel import byte_unicode_chars

HIDDEN = 32
MAX_TOKENS = 512  # RoBERTa positions start after the padding index, hence 514 position embeddings


def _tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level BPE without merges (one token per UTF-8 byte), special tokens in XLM-R's
    order, and a RoBERTa post-processor that wraps every text as <s> ... </s>."""
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    vocab = {t: i for i, t in enumerate(specials + byte_unicode_chars() + ["<mask>"])}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.RobertaProcessing(("</s>", vocab["</s>"]), ("<s>", vocab["<s>"]))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        cls_token="<s>", sep_token="</s>", mask_token="<mask>", model_max_length=MAX_TOKENS)


# Weight scales per role (see _lexical_init), drawn after torch.manual_seed(seed).
INIT_STD = {"word": 1.0, "position": 0.05, "query_key": 0.02, "value_out": 0.5, "other": 0.02}


def _lexical_init(model: XLMRobertaModel) -> None:
    """Random weights at scales that give similarities shaped like a real sentence embedder's.

    With one scale for everything, a random encoder's CLS vector is either the same for every text (BERT's
    0.02: cosine ~1.0) or a chaotic function of the bytes (0.5: a one-word edit 0.82, an unrelated English
    sentence 0.72), and a reward built on it cannot be climbed. Large token embeddings, near-uniform
    attention (small query/key) and a strong value path make the CLS vector a mostly order-aware mix of the
    tokens, so similarity follows shared content. Measured on 6-word sentences (seed 0): one word changed
    0.97, half the words changed 0.90, an unrelated English sentence 0.78, random symbols 0.17."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() < 2:  # LayerNorm weights and biases keep their defaults
                continue
            if "word_embeddings" in name:
                role = "word"
            elif "position_embeddings" in name or "token_type_embeddings" in name:
                role = "position"
            elif ".query." in name or ".key." in name:
                role = "query_key"
            elif ".value." in name or "attention.output.dense" in name:
                role = "value_out"
            else:
                role = "other"
            param.normal_(0.0, INIT_STD[role])


def build_tiny_bge_m3(out_dir: str | Path, seed: int) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer()
    tokenizer.save_pretrained(out)

    torch.manual_seed(seed)
    cfg = XLMRobertaConfig(
        vocab_size=len(tokenizer), hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=MAX_TOKENS + 2, type_vocab_size=1,
        bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = XLMRobertaModel(cfg).eval()
    _lexical_init(model)
    model.save_pretrained(out, safe_serialization=True)

    # BGEM3FlagModel loads without these heads but then initialises them at random on every
    # load (and logs that it is meant for training). Saving them makes sparse/colbert outputs
    # reproducible too. FlagEmbedding reads exactly `colbert_linear.pt` / `sparse_linear.pt`
    # with torch.load(weights_only=True); it has no safetensors variant, hence torch.save.
    # torch.save bytes are stable for a fixed file name and tensor content.
    torch.manual_seed(seed + 1)
    torch.save(torch.nn.Linear(HIDDEN, HIDDEN).state_dict(), out / "colbert_linear.pt")
    torch.save(torch.nn.Linear(HIDDEN, 1).state_dict(), out / "sparse_linear.pt")
