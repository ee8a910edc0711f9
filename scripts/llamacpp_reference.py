#!/usr/bin/env python3
"""llama.cpp reference data for a GGUF model (default: SmolLM2-135M-Instruct Q4_1).

    .cache/llamacpp-venv/bin/python scripts/llamacpp_reference.py MODEL.gguf OUT.json \
        [--prompts tests/fixtures/smollm2/prompts.json] [--write-fixtures]

Run it with the venv that scripts/build-llamacpp.sh makes (llama-cpp-python built from
source on the CPU). For each prompt of the prompts file (a JSON list of strings):

  ids       llama.cpp's tokenization: llm.tokenize(text.encode(), add_bos=<the GGUF's
            tokenizer.ggml.add_bos_token>, special=True)
  greedy    the free-running greedy continuation of --n-forced (64) tokens: the prompt in
            one llm.eval() call, then one llm.eval([token]) per new token, each token the
            argmax of the last logits row (no sampler, no penalties, EOS ignored);
            greedy[:--n-greedy] (32) is the "greedy" reference
  forced    teacher forcing: llm.reset(); llm.eval(ids + greedy) in one pass (one batch,
            n_batch=512), the logits rows at the positions that predict greedy[0..63],
            that is rows len(ids)-1 .. len(ids)+62 (64 rows), saved as float32
            [64, n_vocab] in LOGITS_DIR/NNN.npy (LOGITS_DIR: OUT.json's name with
            .logits/ instead of .json, outside git)

OUT.json: {"model", "model_sha256", "llama_cpp_python", "system_info", "add_bos",
"n_vocab", "n_ctx", "n_threads", "n_greedy", "n_forced", "logits_dir", "seconds",
"prompts": [{"index", "text", "ids", "greedy", "forced_argmax", "logits_file"}]}.
"forced_argmax" is the argmax of each forced row: its agreement with "greedy" is
llama.cpp's own batch-vs-incremental noise floor.

--write-fixtures also writes the small committed fixtures of tests/fixtures/smollm2/:
  llamacpp_tokens.json  [{"text", "ids", "add_bos"}] for every prompt
  llamacpp_logits.json  for 3 prompts: the ids and, at the last 4 prompt positions
                        (a prompt-only eval), the top-20 (id, logit) pairs and the
                        logsumexp of the full row
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MODEL = os.path.join("models", "SmolLM2-135M-Instruct.Q4_1.gguf")
DEFAULT_PROMPTS = os.path.join(ROOT, "tests", "fixtures", "smollm2", "prompts.json")
FIXTURE_DIR = os.path.join(ROOT, "tests", "fixtures", "smollm2")
# Prompts (by index into prompts.json) of llamacpp_logits.json: plain English, a ChatML
# chat turn and a non-Latin script.
LOGITS_FIXTURE_PROMPTS = (0, 17, 5)
TOPK = 20
LAST_POSITIONS = 4


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def metadata_bool(meta: dict, key: str, default: bool) -> bool:
    v = meta.get(key)
    if v is None:
        return default
    return str(v).strip().lower() in ("true", "1")


def logits_rows(llm, first: int, count: int) -> np.ndarray:
    """Rows first..first+count-1 of the logits of the current llm state, float32."""
    if first < 0 or first + count > llm.n_tokens:
        raise ValueError(f"rows {first}..{first + count} outside the {llm.n_tokens} evaluated tokens")
    return np.array(llm.scores[first:first + count, :], dtype=np.float32, copy=True)


def last_logits(llm) -> np.ndarray:
    return np.asarray(llm.scores[llm.n_tokens - 1, :], dtype=np.float32)


def logsumexp(row: np.ndarray) -> float:
    row = row.astype(np.float64)
    m = float(row.max())
    return m + math.log(float(np.exp(row - m).sum()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", default=DEFAULT_MODEL, help=f"GGUF file (default {DEFAULT_MODEL})")
    ap.add_argument("out", nargs="?", default=os.path.join(".cache", "llamacpp-ref", "reference.json"),
                    help="output JSON (default .cache/llamacpp-ref/reference.json)")
    ap.add_argument("--prompts", default=DEFAULT_PROMPTS, help="JSON list of prompt strings")
    ap.add_argument("--n-greedy", type=int, default=32)
    ap.add_argument("--n-forced", type=int, default=64)
    ap.add_argument("--n-ctx", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--logits-dir", default=None, help="where the float32 .npy rows go")
    ap.add_argument("--write-fixtures", action="store_true",
                    help="also write tests/fixtures/smollm2/llamacpp_{tokens,logits}.json")
    ap.add_argument("--fixture-dir", default=FIXTURE_DIR)
    args = ap.parse_args()

    import llama_cpp  # from .cache/llamacpp-venv (scripts/build-llamacpp.sh)

    if not os.path.isfile(args.model):
        print(f"error: no model file {args.model}", file=sys.stderr)
        return 1
    with open(args.prompts, encoding="utf-8") as f:
        prompts = json.load(f)
    if not isinstance(prompts, list) or not all(isinstance(p, str) and p for p in prompts):
        print(f"error: {args.prompts} must be a JSON list of non-empty strings", file=sys.stderr)
        return 1
    if args.n_greedy > args.n_forced:
        print("error: --n-greedy must be <= --n-forced", file=sys.stderr)
        return 1

    out_path = os.path.abspath(args.out)
    logits_dir = os.path.abspath(args.logits_dir or (os.path.splitext(out_path)[0] + ".logits"))
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    os.makedirs(logits_dir, exist_ok=True)

    t0 = time.time()
    llm = llama_cpp.Llama(model_path=args.model, n_ctx=args.n_ctx, logits_all=True,
                          n_threads=args.threads, n_threads_batch=args.threads,
                          verbose=False, seed=0, n_batch=args.n_ctx)
    t_load = time.time() - t0
    n_vocab = llm.n_vocab()
    meta = dict(llm.metadata)
    add_bos = metadata_bool(meta, "tokenizer.ggml.add_bos_token", True)
    # The library's own view, for the record; the metadata decides (as the brief says).
    try:
        lib_add_bos = bool(llama_cpp.llama_vocab_get_add_bos(llama_cpp.llama_model_get_vocab(llm.model)))
    except Exception:  # older bindings
        lib_add_bos = None
    if lib_add_bos is not None and lib_add_bos != add_bos:
        print(f"warning: metadata add_bos={add_bos} but llama.cpp says {lib_add_bos}", file=sys.stderr)
    eos = llm.token_eos()

    records = []
    fixture_logits = []
    self_agree = 0
    self_total = 0
    t_run0 = time.time()
    for i, text in enumerate(prompts):
        ids = llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)
        ids = [int(t) for t in ids]
        n = len(ids)
        if n == 0:
            raise SystemExit(f"prompt {i} tokenizes to nothing")
        if n + args.n_forced > args.n_ctx:
            raise SystemExit(f"prompt {i}: {n} + {args.n_forced} tokens exceed n_ctx {args.n_ctx}")

        # Prompt-only eval: the context-phase logits (fixture rows) and the first greedy token.
        llm.reset()
        llm.eval(ids)
        if i in LOGITS_FIXTURE_PROMPTS:
            k = min(LAST_POSITIONS, n)
            rows = logits_rows(llm, n - k, k)
            positions = []
            for j in range(k):
                row = rows[j]
                top = np.argsort(-row, kind="stable")[:TOPK]
                positions.append({
                    "position": n - k + j,
                    "top": [[int(t), round(float(row[t]), 4)] for t in top],
                    "logsumexp": round(logsumexp(row), 4),
                })
            fixture_logits.append({"index": i, "text": text, "ids": ids, "positions": positions})

        # Free-running greedy, one token per eval (the generation phase).
        greedy = []
        for _ in range(args.n_forced):
            tok = int(np.argmax(last_logits(llm)))
            greedy.append(tok)
            if len(greedy) == args.n_forced:
                break
            llm.eval([tok])

        # Teacher forcing: the whole sequence in one pass.
        llm.reset()
        llm.eval(ids + greedy)
        forced = logits_rows(llm, n - 1, args.n_forced)
        forced_argmax = [int(t) for t in forced.argmax(axis=1)]
        self_agree += sum(int(a == b) for a, b in zip(forced_argmax, greedy))
        self_total += len(greedy)
        logits_file = f"{i:03d}.npy"
        np.save(os.path.join(logits_dir, logits_file), forced)
        records.append({"index": i, "text": text, "ids": ids, "greedy": greedy[:args.n_greedy],
                        "forced_tokens": greedy, "forced_argmax": forced_argmax,
                        "eos_in_greedy": eos in greedy, "logits_file": logits_file})
        print(f"[{i + 1}/{len(prompts)}] {n} prompt tokens, greedy {greedy[:8]}...", file=sys.stderr)
    t_run = time.time() - t_run0

    result = {
        "model": os.path.abspath(args.model),
        "model_sha256": sha256_file(args.model),
        "llama_cpp_python": llama_cpp.__version__,
        "system_info": llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip(),
        "add_bos": add_bos,
        "llama_cpp_add_bos": lib_add_bos,
        "eos": eos,
        "n_vocab": n_vocab,
        "n_ctx": args.n_ctx,
        "n_threads": args.threads,
        "n_greedy": args.n_greedy,
        "n_forced": args.n_forced,
        "prompts_file": os.path.abspath(args.prompts),
        "logits_dir": logits_dir,
        "logits_layout": "float32 [n_forced, n_vocab] per prompt: rows len(ids)-1 .. len(ids)+n_forced-2 "
                         "of eval(ids + forced_tokens)",
        "self_top1_agreement": self_agree / max(1, self_total),
        "seconds": {"load": round(t_load, 2), "run": round(t_run, 2)},
        "prompts": records,
    }
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=False, indent=1)
    print(f"wrote {out_path} and {len(records)} logits files in {logits_dir} "
          f"(load {t_load:.1f} s, run {t_run:.1f} s; llama.cpp incremental-vs-batch top-1 "
          f"agreement {100.0 * result['self_top1_agreement']:.2f}%)", file=sys.stderr)

    if args.write_fixtures:
        os.makedirs(args.fixture_dir, exist_ok=True)
        tokens_path = os.path.join(args.fixture_dir, "llamacpp_tokens.json")
        with open(tokens_path, "w", encoding="utf-8") as f:
            json.dump([{"text": r["text"], "ids": r["ids"], "add_bos": add_bos} for r in records],
                      f, ensure_ascii=False, indent=1)
            f.write("\n")
        logits_path = os.path.join(args.fixture_dir, "llamacpp_logits.json")
        with open(logits_path, "w", encoding="utf-8") as f:
            json.dump({
                "source": f"llama-cpp-python {llama_cpp.__version__}, CPU, n_threads={args.threads}, "
                          f"prompt-only eval (one batch), logits_all=True",
                "model": os.path.basename(args.model),
                "model_sha256": result["model_sha256"],
                "n_vocab": n_vocab,
                "add_bos": add_bos,
                "top_k": TOPK,
                "cases": fixture_logits,
            }, f, ensure_ascii=False, indent=1)
            f.write("\n")
        for p in (tokens_path, logits_path):
            print(f"wrote {p} ({os.path.getsize(p)} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
