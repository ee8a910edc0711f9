#!/usr/bin/env python3
"""llama.cpp's logits on a fixture GGUF against the fixture's transformers reference, which
Kestrel matches within 1e-4 (tests/models): for models whose context is too short for
scripts/compare-llamacpp.py's 64 teacher-forced tokens (tiny-phi3: 64 positions).

    .cache/llamacpp-venv/bin/python scripts/llamacpp-vs-fixture.py MODEL.gguf FIXTURE_DIR \\
        --n-ctx N [--min-tokens A] [--max-tokens B]

Scores each reference prompt of A..B tokens (its ids + its 20 greedy tokens, within n_ctx)
with llama-cpp-python (one batch, logits_all) and prints, over every position of those
sequences, llama.cpp's top-1 agreement with transformers, the mean KL(p_hf || p_llama.cpp)
and the max |logit difference|. n_ctx picks llama.cpp's LongRoPE factors (long when it
exceeds the original context), as a Kestrel session's max_sequence_tokens does.
"""
import argparse
import json
import os

import struct

import llama_cpp
import numpy as np


def load_f32_tensors(path):
    """The float32 tensors of a safetensors file (the reference venv has no safetensors)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F32", (name, t["dtype"])
        begin, end = t["data_offsets"]
        out[name] = np.frombuffer(data[begin:end], dtype=np.float32).reshape(t["shape"])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("fixture")
    ap.add_argument("--n-ctx", type=int, required=True)
    ap.add_argument("--min-tokens", type=int, default=1)
    ap.add_argument("--max-tokens", type=int, default=1 << 30)
    args = ap.parse_args()
    ref = json.load(open(os.path.join(args.fixture, "reference.json"), encoding="utf-8"))
    llm = llama_cpp.Llama(model_path=args.model, n_ctx=args.n_ctx, n_batch=args.n_ctx, logits_all=True,
                          n_threads=1, verbose=False, seed=0)
    reference = load_f32_tensors(os.path.join(args.fixture, "reference.safetensors"))
    agree = total = 0
    kls, max_diff = [], 0.0
    for i, p in enumerate(ref["prompts"]):
        if not args.min_tokens <= len(p["ids"]) <= args.max_tokens:
            continue
        seq = (p["ids"] + p["greedy"])[: args.n_ctx]
        llm.reset()
        llm.eval(seq)
        ours = np.array(llm.scores[: len(p["ids"])], dtype=np.float64)
        hf = reference[f"logits.{i}"].astype(np.float64)
        max_diff = max(max_diff, float(np.abs(ours - hf).max()))
        agree += int((ours.argmax(-1) == hf.argmax(-1)).sum())
        total += len(p["ids"])
        lp = hf - np.logaddexp.reduce(hf, axis=-1, keepdims=True)
        lq = ours - np.logaddexp.reduce(ours, axis=-1, keepdims=True)
        kls += list((np.exp(lp) * (lp - lq)).sum(-1))
    print(f"{args.model} n_ctx {args.n_ctx}: top-1 {agree}/{total} = {100.0 * agree / max(total, 1):.2f}%, "
          f"mean KL {np.mean(kls):.2g} nats, max |dlogit| {max_diff:.3g}")


if __name__ == "__main__":
    main()
