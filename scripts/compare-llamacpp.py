#!/usr/bin/env python3
"""Compare Kestrel with llama.cpp on a GGUF model (default SmolLM2-135M-Instruct Q4_1).

    scripts/compare-llamacpp.py [MODEL.gguf] [--kestrel-arg=--device --kestrel-arg=cpu ...]

(Any python3 with numpy; without numpy it re-runs itself with .cache/llamacpp-venv's.)

Steps:
 1. scripts/build-llamacpp.sh (idempotent: builds llama-cpp-python once into .cache/).
 2. scripts/llamacpp_reference.py with .cache/llamacpp-venv/bin/python: llama.cpp's
    tokenization, 32-token free-running greedy and 64 teacher-forced logits rows per
    prompt of tests/fixtures/smollm2/prompts.json, cached in .cache/llamacpp-ref/
    (rerun when the model, the prompts or llama-cpp-python change, or with --force-ref).
 3. The Kestrel side through build/examples/kestrel-score (contract below).
 4. A markdown table on stdout and in docs/LLAMACPP.md (--doc to change, --no-doc to skip).

Contract assumed for build/examples/kestrel-score (all files are UTF-8 JSON unless said):

  kestrel-score --model MODEL --tokenize-json PROMPTS.json --out TOKENS.json
      PROMPTS.json: a JSON list of strings. TOKENS.json: a JSON list of lists of token
      ids, one per string, tokenized as Kestrel does by default for this model: BOS
      added when the GGUF's tokenizer.ggml.add_bos_token says so (false for SmolLM2),
      special tokens such as <|im_start|> written in the text become their ids.

  kestrel-score --model MODEL --tokens-json IDS.json --out LOGITS.bin
      IDS.json: a JSON list of lists of token ids. LOGITS.bin: raw little-endian
      float32, for each list in order the logits at every position, [len(list), n_vocab]
      row-major, the lists concatenated, nothing else (no header). Row j is the
      next-token logits after ids[0..j]: one causal forward pass over the list
      (context phase), each list independent of the others.

  kestrel-score --model MODEL --tokens-json IDS.json --greedy N --out GREEDY.json
      GREEDY.json: a JSON list of lists, for each list of IDS.json the N token ids
      generated free-running from it by greedy decoding (argmax, temperature 0, no
      penalties), ignoring EOS (always exactly N ids).

  Exit status 0 on success. Extra options (for example --device cpu, --threads 2) are
  passed with --kestrel-arg=--device --kestrel-arg=cpu.

What the table reports, per prompt:
  tokens      Kestrel's ids == llama.cpp's ids
  top-1       argmax agreement over the 64 teacher-forced positions: both score
              llama.cpp's prompt ids + llama.cpp's 64 greedy tokens; the rows compared
              are those predicting each of the 64 tokens
  KL          mean over those positions of KL(p_llama.cpp || p_kestrel), in nats
  greedy      how many of the 32 free-running greedy tokens are identical before the
              first difference (both start from llama.cpp's prompt ids)
Totals: overall top-1 agreement (target >= 99%), mean KL, mean and max |logit diff|.
The llama.cpp self-agreement row (its own incremental greedy vs its batch argmax) shows
how much of a disagreement is expected from near ties alone.

Exit status: 0 when the comparison ran (and top-1 >= --target), 1 when it is below the
target, 2 when the Kestrel side is missing or failed (the llama.cpp side is still made).
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import llamacpp_venv  # noqa: E402  (the scripts directory is on sys.path)

llamacpp_venv.require(__file__, "numpy")  # the llama.cpp venv has numpy (system site packages)
import numpy as np  # noqa: E402

DEFAULT_MODEL = os.path.join("models", "SmolLM2-135M-Instruct.Q4_1.gguf")
PROMPTS = os.path.join(ROOT, "tests", "fixtures", "smollm2", "prompts.json")
VENV_PY = os.path.join(ROOT, ".cache", "llamacpp-venv", "bin", "python")
REF_DIR = os.path.join(ROOT, ".cache", "llamacpp-ref")
KESTREL_SCORE = os.path.join(ROOT, "build", "examples", "kestrel-score")


def log(msg: str) -> None:
    print(f"[compare-llamacpp] {msg}", file=sys.stderr, flush=True)


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def git_describe() -> str:
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except Exception:
        return "unknown"


def build_info(version: str) -> str:
    """llama.cpp commit and build time recorded by scripts/build-llamacpp.sh, if any."""
    path = os.path.join(ROOT, ".cache", "wheels", f"BUILD-INFO-{version}.txt")
    try:
        with open(path, encoding="utf-8") as f:
            fields = dict(kv.split("=", 1) for kv in f.read().split(" -D")[0].split() if "=" in kv)
    except OSError:
        return ""
    return (f" (llama.cpp commit {fields.get('llama.cpp_commit', 'unknown')}, wheel built in "
            f"{fields.get('build_seconds', '?')} s)")


def build_llamacpp() -> str:
    script = os.path.join(ROOT, "scripts", "build-llamacpp.sh")
    proc = subprocess.run(["bash", script], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit("error: scripts/build-llamacpp.sh failed")
    lines = [l for l in proc.stdout.splitlines() if l.startswith("llama-cpp-python ")]
    return lines[-1].split()[1] if lines else "unknown"


def reference(model: str, prompts_file: str, version: str, force: bool) -> dict:
    """Run (or reuse) the llama.cpp reference for this model, prompt set and version."""
    out = os.path.join(REF_DIR, "reference.json")
    model_sha = sha256_file(model)
    with open(prompts_file, encoding="utf-8") as f:
        prompts = json.load(f)
    if not force and os.path.isfile(out):
        with open(out, encoding="utf-8") as f:
            ref = json.load(f)
        if (ref.get("model_sha256") == model_sha and ref.get("llama_cpp_python") == version
                and [p["text"] for p in ref["prompts"]] == prompts
                and all(os.path.isfile(os.path.join(ref["logits_dir"], p["logits_file"])) for p in ref["prompts"])):
            log(f"reusing the llama.cpp reference in {out} (--force-ref to redo it)")
            return ref
    cmd = [VENV_PY, os.path.join(ROOT, "scripts", "llamacpp_reference.py"), model, out, "--prompts", prompts_file]
    log("running " + " ".join(shlex.quote(c) for c in cmd))
    t0 = time.time()
    subprocess.run(cmd, check=True)
    log(f"llama.cpp reference took {time.time() - t0:.1f} s")
    with open(out, encoding="utf-8") as f:
        return json.load(f)


class KestrelMissing(Exception):
    pass


def kestrel(binary: str, model: str, extra: list[str], args: list[str]) -> None:
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        raise KestrelMissing(f"{os.path.relpath(binary, ROOT)} does not exist yet (build it: "
                             f"cmake --build build --target kestrel-score)")
    cmd = [binary, "--model", model, *extra, *args]
    log("running " + " ".join(shlex.quote(c) for c in cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise KestrelMissing(f"kestrel-score failed (exit {proc.returncode}): {' '.join(map(shlex.quote, cmd))}\n"
                             f"{proc.stderr.strip()[-2000:]}")


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def prefix_len(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def preview(text: str, width: int = 34) -> str:
    t = text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("|", "\\|")
    return t if len(t) <= width else t[:width - 1] + "…"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", default=DEFAULT_MODEL)
    ap.add_argument("--prompts", default=PROMPTS)
    ap.add_argument("--kestrel-score", default=KESTREL_SCORE, help="path of the kestrel-score binary")
    ap.add_argument("--kestrel-arg", action="append", default=[], help="extra kestrel-score argument (repeatable)")
    ap.add_argument("--force-ref", action="store_true", help="recompute the llama.cpp reference")
    ap.add_argument("--doc", default=os.path.join(ROOT, "docs", "LLAMACPP.md"))
    ap.add_argument("--no-doc", action="store_true", help="do not write docs/LLAMACPP.md")
    ap.add_argument("--keep-tmp", action="store_true", help="keep Kestrel's outputs (logits.bin is ~440 MB)")
    ap.add_argument("--target", type=float, default=99.0, help="top-1 agreement target in percent")
    ap.add_argument("--tie-margin", type=float, default=0.1,
                    help="llama.cpp top-1 minus top-2 logit below which a position counts as a near tie")
    args = ap.parse_args()
    command = "scripts/compare-llamacpp.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])

    model = os.path.abspath(args.model)
    if not os.path.isfile(model):
        log(f"error: no model file {args.model}")
        return 2

    t_start = time.time()
    version = build_llamacpp()
    ref = reference(model, args.prompts, version, args.force_ref)

    kbin = os.path.abspath(args.kestrel_score)
    tmp = tempfile.mkdtemp(prefix="kestrel-compare-")
    try:
        return compare(args, command, model, ref, kbin, tmp, t_start)
    finally:
        if args.keep_tmp:
            log(f"kept the Kestrel outputs in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def compare(args, command: str, model: str, ref: dict, kbin: str, tmp: str, t_start: float) -> int:
    prompts = [p["text"] for p in ref["prompts"]]
    n_vocab = ref["n_vocab"]
    n_forced = ref["n_forced"]
    n_greedy = ref["n_greedy"]

    # ---- Kestrel side ----------------------------------------------------------------
    k_tokens = k_greedy = None
    logits_bin = None
    t_k0 = time.time()
    try:
        prompts_json = os.path.join(tmp, "prompts.json")
        with open(prompts_json, "w", encoding="utf-8") as f:
            json.dump(prompts, f, ensure_ascii=False)
        tokens_out = os.path.join(tmp, "tokens.json")
        kestrel(kbin, model, args.kestrel_arg, ["--tokenize-json", prompts_json, "--out", tokens_out])
        with open(tokens_out, encoding="utf-8") as f:
            k_tokens = json.load(f)

        seqs = [p["ids"] + p["forced_tokens"] for p in ref["prompts"]]
        seqs_json = os.path.join(tmp, "forced.json")
        with open(seqs_json, "w") as f:
            json.dump(seqs, f)
        logits_bin = os.path.join(tmp, "logits.bin")
        kestrel(kbin, model, args.kestrel_arg, ["--tokens-json", seqs_json, "--out", logits_bin])

        ids_json = os.path.join(tmp, "prompt_ids.json")
        with open(ids_json, "w") as f:
            json.dump([p["ids"] for p in ref["prompts"]], f)
        greedy_out = os.path.join(tmp, "greedy.json")
        kestrel(kbin, model, args.kestrel_arg, ["--tokens-json", ids_json, "--greedy", str(n_greedy),
                                                "--out", greedy_out])
        with open(greedy_out, encoding="utf-8") as f:
            k_greedy = json.load(f)
    except KestrelMissing as e:
        log(f"KESTREL SIDE NOT AVAILABLE: {e}")
        log(f"the llama.cpp reference is ready in {REF_DIR}; nothing compared, {args.doc} not written")
        return 2
    t_kestrel = time.time() - t_k0

    total_rows = sum(len(p["ids"]) + n_forced for p in ref["prompts"])
    size = os.path.getsize(logits_bin)
    if size != total_rows * n_vocab * 4:
        log(f"error: {logits_bin} has {size} bytes, expected {total_rows} rows x {n_vocab} x 4 = "
            f"{total_rows * n_vocab * 4}")
        return 2
    if len(k_tokens) != len(prompts) or len(k_greedy) != len(prompts):
        log("error: kestrel-score returned a different number of lists than it was given")
        return 2
    all_logits = np.memmap(logits_bin, dtype="<f4", mode="r", shape=(total_rows, n_vocab))

    # ---- compare ---------------------------------------------------------------------
    rows = []
    agree_all = 0
    count_all = 0
    kl_all = []
    maxdiff_all = 0.0
    absdiff_sum = 0.0
    self_agree = 0
    clear_agree = 0
    clear_count = 0
    offset = 0
    for i, p in enumerate(ref["prompts"]):
        n = len(p["ids"])
        k_rows = np.asarray(all_logits[offset + n - 1: offset + n - 1 + n_forced], dtype=np.float32)
        offset += n + n_forced
        l_rows = np.load(os.path.join(ref["logits_dir"], p["logits_file"]))
        if l_rows.shape != k_rows.shape:
            log(f"error: prompt {i}: llama.cpp rows {l_rows.shape} vs Kestrel rows {k_rows.shape}")
            return 2
        if not np.isfinite(k_rows).all():
            log(f"warning: prompt {i}: Kestrel logits contain NaN or Inf")
        lp = log_softmax(l_rows)
        kp = log_softmax(k_rows)
        kl = (np.exp(lp) * (lp - kp)).sum(axis=-1)
        l_top = l_rows.argmax(axis=1)
        k_top = k_rows.argmax(axis=1)
        agree = int((l_top == k_top).sum())
        # Logits are only defined up to a constant per row: compare after centring.
        diff = np.abs((l_rows - l_rows.mean(axis=1, keepdims=True)) - (k_rows - k_rows.mean(axis=1, keepdims=True)))
        maxdiff = float(diff.max())
        maxdiff_all = max(maxdiff_all, maxdiff)
        absdiff_sum += float(diff.mean())
        agree_all += agree
        count_all += n_forced
        kl_all.append(kl)
        self_agree += sum(int(a == b) for a, b in zip(p["forced_argmax"], p["forced_tokens"]))
        # The llama.cpp top-1 margin at each disagreement, to tell near ties from real errors.
        top2 = np.sort(l_rows, axis=1)[:, -2:]
        margin = top2[:, 1] - top2[:, 0]
        margins = [float(margin[j]) for j in np.nonzero(l_top != k_top)[0]]
        clear = margin >= args.tie_margin
        clear_agree += int((l_top == k_top)[clear].sum())
        clear_count += int(clear.sum())
        rows.append({
            "i": i, "text": p["text"], "n": n,
            "tok_same": k_tokens[i] == p["ids"],
            "agree": agree, "kl": float(kl.mean()), "kl_max": float(kl.max()), "maxdiff": maxdiff,
            "greedy_prefix": prefix_len(k_greedy[i], p["greedy"]),
            "margins": margins,
        })
    kl_cat = np.concatenate(kl_all)
    top1 = 100.0 * agree_all / count_all
    tok_same = sum(r["tok_same"] for r in rows)
    greedy_full = sum(r["greedy_prefix"] == n_greedy for r in rows)

    lines = []
    lines.append(f"| # | prompt | prompt tokens | tokens identical | top-1 agree ({n_forced}) | mean KL | max KL | "
                 f"max \\|Δlogit\\| | greedy identical prefix (of {n_greedy}) | llama.cpp margin at disagreements |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        lines.append(f"| {r['i']} | `{preview(r['text'])}` | {r['n']} | {'yes' if r['tok_same'] else '**no**'} | "
                     f"{r['agree']}/{n_forced} | {r['kl']:.2e} | {r['kl_max']:.2e} | {r['maxdiff']:.3f} | "
                     f"{r['greedy_prefix']} | {', '.join(f'{m:.3f}' for m in r['margins']) or '-'} |")
    lines.append(f"| **all** | {len(rows)} prompts | {sum(r['n'] for r in rows)} | {tok_same}/{len(rows)} | "
                 f"**{top1:.2f}%** ({agree_all}/{count_all}) | **{float(kl_cat.mean()):.2e}** | "
                 f"{float(kl_cat.max()):.2e} | {maxdiff_all:.3f} | {greedy_full}/{len(rows)} full | |")
    table = "\n".join(lines)
    self_pct = 100.0 * self_agree / count_all
    verdict = "PASS" if top1 >= args.target else "FAIL"
    summary = (f"Overall top-1 agreement {top1:.2f}% (target >= {args.target:.0f}%: {verdict}); mean KL "
               f"{float(kl_cat.mean()):.3e} nats; mean |Δlogit| (row-centred) {absdiff_sum / len(rows):.4f}, "
               f"max {maxdiff_all:.3f}; tokenization identical for {tok_same}/{len(rows)} prompts; greedy "
               f"identical for all {n_greedy} tokens on {greedy_full}/{len(rows)} prompts. llama.cpp's own "
               f"incremental-vs-batch top-1 agreement: {self_pct:.2f}%. Top-1 agreement where llama.cpp's "
               f"top-1 leads by >= {args.tie_margin} logit: {100.0 * clear_agree / max(1, clear_count):.2f}% "
               f"({clear_agree}/{clear_count}).")
    print(table)
    print()
    print(summary)

    if not args.no_doc:
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        doc = f"""# Kestrel vs llama.cpp

Measured {now} by `scripts/compare-llamacpp.py`.

- Model: `{os.path.basename(model)}` (sha256 `{ref['model_sha256'][:16]}…`), {n_vocab} tokens vocabulary,
  add_bos = {str(ref['add_bos']).lower()}.
- llama.cpp: llama-cpp-python {ref['llama_cpp_python']}{build_info(ref['llama_cpp_python'])} built from source on the CPU by
  `scripts/build-llamacpp.sh`; {ref['n_threads']} threads, n_ctx {ref['n_ctx']}, one batch per eval.
  System info: `{ref['system_info']}`
- Kestrel: git `{git_describe()}`, `{os.path.relpath(kbin, ROOT)}` {' '.join(args.kestrel_arg)}
- Prompts: `tests/fixtures/smollm2/prompts.json` ({len(rows)} prompts).
- Command: `{command}`
- Time: llama.cpp reference {ref['seconds']['load'] + ref['seconds']['run']:.0f} s (when not cached),
  Kestrel side {t_kestrel:.0f} s, total {time.time() - t_start:.0f} s.

Method: both engines score the same sequences, llama.cpp's prompt ids followed by the
{n_forced} tokens of llama.cpp's own free-running greedy continuation (EOS ignored); the
{n_forced} rows that predict those tokens are compared (top-1, KL(llama.cpp || Kestrel)
in nats, row-centred |Δlogit|). "greedy identical prefix" compares free-running greedy
({n_greedy} tokens, argmax, no penalties, EOS ignored) of both engines from llama.cpp's
prompt ids. The last column gives llama.cpp's top-1 minus top-2 logit at each position
where the two engines disagree: small margins are near ties.

{table}

{summary}
"""
        os.makedirs(os.path.dirname(os.path.abspath(args.doc)), exist_ok=True)
        with open(args.doc, "w", encoding="utf-8") as f:
            f.write(doc)
        log(f"wrote {args.doc}")
    return 0 if top1 >= args.target else 1


if __name__ == "__main__":
    sys.exit(main())
