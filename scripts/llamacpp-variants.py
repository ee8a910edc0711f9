#!/usr/bin/env python3
"""How far llama.cpp is from itself: teacher-forced top-1 agreement between llama.cpp's own
configurations and Kestrel's, all scoring the same sequences.

    scripts/llamacpp-variants.py [MODEL.gguf ...] [--kestrel-score build-cpu/examples/kestrel-score]

scripts/compare-llamacpp.py measures Kestrel against one llama.cpp configuration
(llama-cpp-python's defaults: f16 KV cache, no flash attention). This script puts that
figure beside the agreement between llama.cpp's configurations: the same file, the same
sequences (each prompt's ids and llama.cpp's 64 greedy tokens, from the cached
.cache/llamacpp-ref reference), scored in one batch by

  llama.cpp  default       f16 K and V cache, no flash attention (the reference)
  llama.cpp  f32 cache     type_k = type_v = f32
  llama.cpp  flash attn    flash_attn = True (f16 cache)
  Kestrel    default       kestrel-score as shipped (f16 cache on the CPU)
  Kestrel    f32 cache     kestrel-score --kv-dtype f32

and prints, for one model, the matrix of top-1 agreement (percent of the rows that predict
the 64 forced tokens whose argmax is the same), the top-1 agreement of each with llama.cpp's
own incremental greedy tokens, and each one's mean KL from the reference. A cell below 99%
between two llama.cpp rows is a distance a 99% target against one of them cannot see past.
With several models it prints one row per model: each configuration's agreement with
llama.cpp's default.

Runs under .cache/llamacpp-venv (made by scripts/build-llamacpp.sh). The default model
reuses scripts/compare-llamacpp.py's cached reference (.cache/llamacpp-ref, made first when
missing); another model gets its own in .cache/llamacpp-ref-<file name>.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_PY = os.path.join(ROOT, ".cache", "llamacpp-venv", "bin", "python")
REF_JSON = os.path.join(ROOT, ".cache", "llamacpp-ref", "reference.json")
DEFAULT_MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
PROMPTS = os.path.join(ROOT, "tests", "fixtures", "smollm2", "prompts.json")

import llamacpp_venv  # noqa: E402  (the scripts directory is on sys.path)

llamacpp_venv.require(__file__, "numpy", "llama_cpp")
import llama_cpp  # noqa: E402
import numpy as np  # noqa: E402

# (name, Llama() keyword arguments on top of the reference's)
LLAMA_VARIANTS = [
    ("llama.cpp default", {}),
    ("llama.cpp f32 cache", {"type_k": 0, "type_v": 0}),  # GGML_TYPE_F32
    ("llama.cpp flash attn", {"flash_attn": True}),
]
KESTREL_VARIANTS = [
    ("Kestrel default", []),
    ("Kestrel f32 cache", ["--kv-dtype", "f32"]),
]


def log(msg: str) -> None:
    print(f"[llamacpp-variants] {msg}", file=sys.stderr, flush=True)


def load_reference(model: str) -> dict:
    """llama.cpp's prompt ids and greedy tokens for the model, cached; made when missing or stale."""
    path = REF_JSON
    if os.path.realpath(model) != os.path.realpath(DEFAULT_MODEL):
        path = os.path.join(ROOT, ".cache", "llamacpp-ref-" + os.path.basename(model), "reference.json")
    ref = None
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            ref = json.load(f)
        with open(PROMPTS, encoding="utf-8") as f:
            prompts = json.load(f)
        if (os.path.realpath(ref["model"]) != os.path.realpath(model) or [p["text"] for p in ref["prompts"]] != prompts
                or ref["llama_cpp_python"] != llama_cpp.__version__):
            ref = None
    if ref is None:
        log(f"making the reference for {os.path.basename(model)} with scripts/llamacpp_reference.py")
        subprocess.run([VENV_PY, os.path.join(ROOT, "scripts", "llamacpp_reference.py"), model, path,
                        "--prompts", PROMPTS], check=True)
        with open(path, encoding="utf-8") as f:
            ref = json.load(f)
    return ref


def llama_rows(model: str, ref: dict, extra: dict) -> np.ndarray:
    kw = dict(model_path=model, n_ctx=ref["n_ctx"], logits_all=True, n_threads=ref["n_threads"],
              n_threads_batch=ref["n_threads"], verbose=False, seed=0, n_batch=ref["n_ctx"])
    kw.update(extra)
    llm = llama_cpp.Llama(**kw)
    rows = []
    for p in ref["prompts"]:
        n = len(p["ids"])
        llm.reset()
        llm.eval(p["ids"] + p["forced_tokens"])
        rows.append(np.array(llm.scores[n - 1:n - 1 + len(p["forced_tokens"])], dtype=np.float32))
    return np.concatenate(rows)


def kestrel_rows(binary: str, model: str, ref: dict, extra: list[str], tmp: str) -> np.ndarray:
    seqs = [p["ids"] + p["forced_tokens"] for p in ref["prompts"]]
    seqs_json = os.path.join(tmp, "seqs.json")
    with open(seqs_json, "w") as f:
        json.dump(seqs, f)
    out = os.path.join(tmp, "logits.bin")
    cmd = [binary, "--model", model, "--tokens-json", seqs_json, *extra, "--out", out]
    log("running " + " ".join(cmd))
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    n_vocab = ref["n_vocab"]
    all_rows = np.fromfile(out, dtype="<f4").reshape(-1, n_vocab)
    os.remove(out)
    rows = []
    offset = 0
    for p in ref["prompts"]:
        n, m = len(p["ids"]), len(p["forced_tokens"])
        rows.append(all_rows[offset + n - 1:offset + n - 1 + m])
        offset += n + m
    if offset != all_rows.shape[0]:
        raise SystemExit(f"error: kestrel-score wrote {all_rows.shape[0]} rows, expected {offset}")
    return np.concatenate(rows)


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def score_all(model: str, ref: dict, kestrel_score: str) -> dict[str, np.ndarray]:
    scored = {}
    for name, extra in LLAMA_VARIANTS:
        log(f"{os.path.basename(model)}: scoring with {name}")
        scored[name] = llama_rows(model, ref, extra)
    with tempfile.TemporaryDirectory(prefix="kestrel-variants-") as tmp:
        for name, extra in KESTREL_VARIANTS:
            scored[name] = kestrel_rows(kestrel_score, model, ref, extra, tmp)
    cached = np.concatenate([np.load(os.path.join(ref["logits_dir"], p["logits_file"])) for p in ref["prompts"]])
    same = float((scored["llama.cpp default"].argmax(1) == cached.argmax(1)).mean())
    if same != 1.0:
        log(f"warning: llama.cpp's default reproduces the cached reference's argmax on {100 * same:.2f}% of rows only")
    return scored


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    return 100.0 * float((a.argmax(1) == b.argmax(1)).mean())


def mean_kl(ref: np.ndarray, other: np.ndarray) -> float:
    ref_lp = log_softmax(ref)
    return float((np.exp(ref_lp) * (ref_lp - log_softmax(other))).sum(-1).mean())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", default=[DEFAULT_MODEL])
    ap.add_argument("--kestrel-score", default=os.path.join(ROOT, "build-cpu", "examples", "kestrel-score"))
    args = ap.parse_args()
    kestrel_score = os.path.abspath(args.kestrel_score)
    models = [os.path.abspath(m) for m in args.models]
    for m in models:
        if not os.path.isfile(m):
            log(f"error: no model file {m}")
            return 2

    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    stamp = f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"
    refs = [load_reference(m) for m in models]
    r0 = refs[0]
    rows = sum(len(p["forced_tokens"]) for p in r0["prompts"])
    print(f"Teacher-forced top-1 agreement (%) over {rows} rows ({len(r0['prompts'])} prompts x "
          f"{r0['n_forced']} tokens) per model, llama-cpp-python {r0['llama_cpp_python']}, "
          f"{r0['n_threads']} threads, commit {rev}, {stamp}\n")

    if len(models) == 1:
        ref = refs[0]
        scored = score_all(models[0], ref, kestrel_score)
        greedy = np.array([t for p in ref["prompts"] for t in p["forced_tokens"]])
        names = list(scored)
        print("| | " + " | ".join(names) + " | llama.cpp incremental greedy | mean KL from llama.cpp default |")
        print("|---" * (len(names) + 3) + "|")
        for a in names:
            cells = [f"{agreement(scored[a], scored[b]):.2f}" for b in names]
            print(f"| {a} | " + " | ".join(cells) + f" | {100 * float((scored[a].argmax(1) == greedy).mean()):.2f} "
                  f"| {mean_kl(scored['llama.cpp default'], scored[a]):.2e} |")
        return 0

    others = [n for n, _ in LLAMA_VARIANTS[1:]] + [n for n, _ in KESTREL_VARIANTS]
    print("| model | " + " | ".join(f"{n} vs llama.cpp default" for n in others)
          + " | llama.cpp incremental vs batch |")
    print("|---" * (len(others) + 2) + "|")
    for model, ref in zip(models, refs):
        scored = score_all(model, ref, kestrel_score)
        base = scored["llama.cpp default"]
        cells = [f"{agreement(base, scored[n]):.2f}" for n in others]
        print(f"| {os.path.basename(model)} | " + " | ".join(cells)
              + f" | {100 * ref['self_top1_agreement']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
