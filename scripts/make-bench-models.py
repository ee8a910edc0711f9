#!/usr/bin/env python3
"""Make random-weight Hugging Face checkpoints to benchmark with (speed does not need
trained weights): GPT-2-XL shape (1.5 B) and a Llama shape of 1.1 B (TinyLlama-1.1B's
dimensions), fp16 safetensors + config.json + a tokenizer.

    scripts/make-bench-models.py [--out models/bench] [--models gpt2-xl,llama-1.1b]
                                 [--tiny] [--layers N] [--dtype f16|bf16|f32] [--seed 0]

Writes OUT/gpt2-xl-random/ and OUT/llama-1.1b-random/ (OUT/*-tiny-random/ with --tiny).
Never commit them (models/ is git-ignored).

  --tiny      the same families at toy width (hidden 128, 2 layers, full vocabulary), a
              few MB: loads anywhere, to test this script and kestrel-bench.
  --layers N  keep the width, cut the depth to N layers (per-layer timings stay real).

With torch + transformers (the GPU machine's Python has both) the model is built by
transformers from its config (GPT2LMHeadModel / LlamaForCausalLM, random init, on the GPU
when there is one) and saved with save_pretrained: the file layout is the one transformers
writes. Without torch (or with --writer plain) the script writes the same tensor names
itself with uniform random values (numpy when present, else Python's random, which is
only allowed for --tiny sizes).

The tokenizer is a synthetic byte-level BPE (vocab.json + merges.txt) with exactly the
model's vocabulary size: the 256 byte tokens, then merges that append one lowercase letter
to an earlier token. Benchmarks feed random token ids and random weights emit any id, so
every id must decode; the real vocabulary size keeps the embedding and LM head at their
real cost.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Full shapes. gpt2-xl: Radford et al. 2019 / HF gpt2-xl. llama-1.1b: TinyLlama-1.1B.
SHAPES = {
    "gpt2-xl": dict(family="gpt2", layers=48, hidden=1600, heads=25, kv_heads=25, ffn=6400, vocab=50257,
                    positions=1024),
    "llama-1.1b": dict(family="llama", layers=22, hidden=2048, heads=32, kv_heads=4, ffn=5632, vocab=32000,
                       positions=2048),
}
TINY = {
    "gpt2-xl": dict(layers=2, hidden=128, heads=4, kv_heads=4, ffn=512),
    "llama-1.1b": dict(layers=2, hidden=128, heads=4, kv_heads=2, ffn=352),
}


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-level alphabet: printable bytes map to themselves, the rest to 256+."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + \
        list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def write_tokenizer(vocab_size: int, out: Path) -> None:
    """Synthetic byte-level BPE with vocab_size tokens (see the module doc)."""
    alphabet = bytes_to_unicode()
    tokens = [alphabet[b] for b in range(256)]
    vocab = {t: i for i, t in enumerate(tokens)}
    letters = [alphabet[b] for b in range(ord("a"), ord("z") + 1)]
    merges = []
    left = 0
    while len(tokens) < vocab_size:
        for letter in letters:
            new = tokens[left] + letter
            if len(tokens) < vocab_size and new not in vocab:
                vocab[new] = len(tokens)
                tokens.append(new)
                merges.append(f"{tokens[left]} {letter}")
        left += 1
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")


def hf_config(shape: dict, dtype: str) -> dict:
    torch_dtype = {"f16": "float16", "bf16": "bfloat16", "f32": "float32"}[dtype]
    if shape["family"] == "gpt2":
        return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "activation_function": "gelu_new",
                "n_layer": shape["layers"], "n_embd": shape["hidden"], "n_head": shape["heads"],
                "n_inner": shape["ffn"], "n_positions": shape["positions"], "n_ctx": shape["positions"],
                "vocab_size": shape["vocab"], "layer_norm_epsilon": 1e-5, "bos_token_id": 0,
                "eos_token_id": shape["vocab"] - 1,
                "tie_word_embeddings": True, "torch_dtype": torch_dtype}
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
            "num_hidden_layers": shape["layers"], "hidden_size": shape["hidden"],
            "num_attention_heads": shape["heads"], "num_key_value_heads": shape["kv_heads"],
            "intermediate_size": shape["ffn"], "max_position_embeddings": shape["positions"],
            "vocab_size": shape["vocab"], "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "bos_token_id": 0,
            "eos_token_id": shape["vocab"] - 1, "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False,
            "torch_dtype": torch_dtype}


def tensor_shapes(shape: dict) -> list[tuple[str, list[int], str]]:
    """(name, shape, init) of every tensor, with the names transformers uses. init is
    'random', 'ones' or 'zeros'. GPT-2 stores Conv1D weights [in, out]."""
    L, H, F, V, P = shape["layers"], shape["hidden"], shape["ffn"], shape["vocab"], shape["positions"]
    t = []
    if shape["family"] == "gpt2":
        t += [("transformer.wte.weight", [V, H], "random"), ("transformer.wpe.weight", [P, H], "random")]
        for i in range(L):
            p = f"transformer.h.{i}."
            t += [(p + "ln_1.weight", [H], "ones"), (p + "ln_1.bias", [H], "zeros"),
                  (p + "attn.c_attn.weight", [H, 3 * H], "random"), (p + "attn.c_attn.bias", [3 * H], "zeros"),
                  (p + "attn.c_proj.weight", [H, H], "random"), (p + "attn.c_proj.bias", [H], "zeros"),
                  (p + "ln_2.weight", [H], "ones"), (p + "ln_2.bias", [H], "zeros"),
                  (p + "mlp.c_fc.weight", [H, F], "random"), (p + "mlp.c_fc.bias", [F], "zeros"),
                  (p + "mlp.c_proj.weight", [F, H], "random"), (p + "mlp.c_proj.bias", [H], "zeros")]
        t += [("transformer.ln_f.weight", [H], "ones"), ("transformer.ln_f.bias", [H], "zeros")]
        return t
    hd = H // shape["heads"]
    kv = shape["kv_heads"] * hd
    t += [("model.embed_tokens.weight", [V, H], "random")]
    for i in range(L):
        p = f"model.layers.{i}."
        t += [(p + "input_layernorm.weight", [H], "ones"),
              (p + "self_attn.q_proj.weight", [H, H], "random"), (p + "self_attn.k_proj.weight", [kv, H], "random"),
              (p + "self_attn.v_proj.weight", [kv, H], "random"), (p + "self_attn.o_proj.weight", [H, H], "random"),
              (p + "post_attention_layernorm.weight", [H], "ones"),
              (p + "mlp.gate_proj.weight", [F, H], "random"), (p + "mlp.up_proj.weight", [F, H], "random"),
              (p + "mlp.down_proj.weight", [H, F], "random")]
    t += [("model.norm.weight", [H], "ones"), ("lm_head.weight", [V, H], "random")]
    return t


def write_with_transformers(shape: dict, config: dict, dtype: str, seed: int, out: Path) -> None:
    import torch
    import transformers

    torch.manual_seed(seed)
    cfg = transformers.AutoConfig.for_model(**{k: v for k, v in config.items() if k != "architectures"})
    torch_dtype = {"f16": torch.float16, "bf16": torch.bfloat16, "f32": torch.float32}[dtype]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = transformers.AutoModelForCausalLM.from_config(cfg, torch_dtype=torch_dtype)
    model.save_pretrained(out, safe_serialization=True, max_shard_size="20GB")
    print(f"[make-bench-models] transformers {transformers.__version__}, torch {torch.__version__} on {device}")


def write_plain(shape: dict, config: dict, dtype: str, seed: int, out: Path) -> None:
    """safetensors by hand: 8-byte little-endian header length, JSON header, raw data."""
    tensors = tensor_shapes(shape)
    elem = {"f16": 2, "bf16": 2, "f32": 4}[dtype]
    st_dtype = {"f16": "F16", "bf16": "BF16", "f32": "F32"}[dtype]
    total = sum(prod(s) for _, s, _ in tensors)
    try:
        import numpy as np
    except ImportError:
        np = None
        if total > 50_000_000:
            sys.exit(f"make-bench-models: {total / 1e6:.0f} M parameters need numpy or torch "
                     "(pure Python is only for --tiny)")
    header, offset = {}, 0
    for name, s, _ in tensors:
        n = prod(s) * elem
        header[name] = {"dtype": st_dtype, "shape": s, "data_offsets": [offset, offset + n]}
        offset += n
    header["__metadata__"] = {"format": "pt"}
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * ((8 - len(head) % 8) % 8)
    rng = np.random.default_rng(seed) if np is not None else random.Random(seed)
    with open(out / "model.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for _, s, init in tensors:
            f.write(tensor_bytes(np, rng, prod(s), init, dtype))


def prod(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def tensor_bytes(np, rng, n: int, init: str, dtype: str) -> bytes:
    value = {"ones": 1.0, "zeros": 0.0}.get(init)
    if np is not None:
        x = np.full(n, value, np.float32) if value is not None else rng.uniform(-0.04, 0.04, n).astype(np.float32)
        if dtype == "f16":
            return x.astype("<f2").tobytes()
        if dtype == "bf16":
            return (x.view("<u4") >> 16).astype("<u2").tobytes()  # truncation: fine for random weights
        return x.astype("<f4").tobytes()
    xs = [value] * n if value is not None else [rng.uniform(-0.04, 0.04) for _ in range(n)]
    if dtype == "f16":
        return struct.pack(f"<{n}e", *xs)
    if dtype == "bf16":
        return b"".join(struct.pack("<I", struct.unpack("<I", struct.pack("<f", x))[0] >> 16)[:2] for x in xs)
    return struct.pack(f"<{n}f", *xs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "models" / "bench")
    ap.add_argument("--models", default="gpt2-xl,llama-1.1b", help="comma-separated: " + ", ".join(SHAPES))
    ap.add_argument("--tiny", action="store_true", help="toy width and depth, full vocabulary (a few MB)")
    ap.add_argument("--layers", type=int, help="cut the depth to N layers, keeping the width")
    ap.add_argument("--dtype", default="f16", choices=["f16", "bf16", "f32"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--writer", choices=["auto", "transformers", "plain"], default="auto",
                    help="auto: transformers when torch and transformers import, else plain")
    ap.add_argument("--force", action="store_true", help="overwrite an existing output directory")
    args = ap.parse_args()

    writer = args.writer
    if writer == "auto":
        try:
            import torch  # noqa: F401
            import transformers  # noqa: F401
            writer = "transformers"
        except ImportError:
            writer = "plain"
    for name in args.models.split(","):
        if name not in SHAPES:
            ap.error(f"unknown model '{name}' (known: {', '.join(SHAPES)})")
        shape = dict(SHAPES[name])
        if args.tiny:
            shape.update(TINY[name])
        if args.layers is not None:
            if args.layers < 1:
                ap.error("--layers must be >= 1")
            shape["layers"] = args.layers
        suffix = "-tiny" if args.tiny else ""
        suffix += f"-{shape['layers']}l" if args.layers is not None else ""
        out = args.out / f"{name}{suffix}-random"
        if out.exists():
            if not args.force:
                print(f"[make-bench-models] {out} exists (--force to overwrite)")
                continue
            shutil.rmtree(out)
        out.mkdir(parents=True)
        config = hf_config(shape, args.dtype)
        params = sum(prod(s) for _, s, _ in tensor_shapes(shape))
        print(f"[make-bench-models] {out}: {params / 1e9:.3f} B parameters, {args.dtype}, writer {writer}")
        if writer == "transformers":
            write_with_transformers(shape, config, args.dtype, args.seed, out)
        else:
            write_plain(shape, config, args.dtype, args.seed, out)
            (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        write_tokenizer(shape["vocab"], out)
        size = sum(p.stat().st_size for p in out.iterdir())
        print(f"[make-bench-models] wrote {out} ({size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
