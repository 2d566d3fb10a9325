"""A tiny, offline CLIP tokenizer + text encoder written to a local folder (Stable-Diffusion layout), so the text
path loads through the real `from_pretrained` code without any download."""

from __future__ import annotations

import json
import os


def _byte_chars() -> list[str]:
    # GPT-2/CLIP byte-level alphabet: printable bytes map to themselves, the rest to 256+.
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    chars, extra = [], 0
    for b in range(256):
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def write_tiny_clip(root: str, hidden_size: int = 16, max_length: int = 16) -> str:
    """Write `root/tokenizer` and `root/text_encoder`; returns `root`."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    chars = _byte_chars()
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    raw = os.path.join(root, "raw_tokenizer")
    os.makedirs(raw, exist_ok=True)
    with open(os.path.join(raw, "vocab.json"), "w") as fh:
        json.dump(vocab, fh)
    with open(os.path.join(raw, "merges.txt"), "w") as fh:
        fh.write("#version: 0.2\n")
    tokenizer = CLIPTokenizer.from_pretrained(raw, model_max_length=max_length)
    tokenizer.save_pretrained(os.path.join(root, "tokenizer"))
    torch.manual_seed(0)
    config = CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=max_length,
        bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"],
    )
    CLIPTextModel(config).save_pretrained(os.path.join(root, "text_encoder"))
    return root
