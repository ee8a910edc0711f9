#!/usr/bin/env python3
"""Kestrel against llama.cpp on GGUF files of several quantization types, side by side in one
run: one markdown table per file with its bits per weight, the perplexity of both on a text,
and decode tokens/s of both at each thread count, with the Kestrel / llama.cpp ratio.

    scripts/compare-quant-types.py FILE.gguf [FILE.gguf ...] [--threads 1,2] [--repeats 3]
        [--generate 64] [--prompt 16] [--text tests/fixtures/perplexity/sqlite3-api-comments.txt]
        [--context 512] [--build build-cpu] [--json OUT.json]
    scripts/compare-quant-types.py --make-requantized DIR [--source models/SmolLM2-135M-Instruct.Q4_1.gguf]
        [--types Q4_0,Q4_1,...]

(Any python3; it re-runs itself with .cache/llamacpp-venv's Python, which
scripts/build-llamacpp.sh makes.)

Per file:
  bits per weight  the file's tensor bytes x 8 / its parameters, as llama.cpp reports them
                   (llama_model_size / llama_model_n_params)
  perplexity       kestrel-perplexity and scripts/llamacpp-perplexity.py on --text, chunks of
                   --context tokens, the second half of each scored (llama.cpp's protocol), at
                   the largest --threads count; once per side (both are deterministic)
  decode tokens/s  greedy generation after a --prompt-token prompt, at each --threads count:
                   scripts/compare-speed-llamacpp.py's runs (kestrel-bench --batch 1 and a
                   llama-cpp-python child, one process per run after a warm-up), --repeats runs
                   per side alternating run by run; medians
The header gives the date, the machine, the load average before and after, and the commit.
Both sides run the file's blocks as stored (Kestrel's default, --quant auto).

--make-requantized writes DIR/<source stem>.<TYPE>.gguf for each type with llama.cpp's own
quantizer (llama_model_quantize; allow_requantize, since the default model's only file is
Q4_1: the values were 4-bit already, so those files compare the runtimes on one file, not
the formats' quality). SmolLM2's 576-column matrices are not multiples of 256: in the K-quant
and IQ4_XS types llama.cpp stores those in a 32-column fallback type, as it does for any
model of that shape.
"""
from __future__ import annotations

import argparse
import ctypes
import datetime
import importlib.util
import json
import os
import platform
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import llamacpp_venv  # noqa: E402  (the scripts directory is on sys.path)

llamacpp_venv.require(__file__, "llama_cpp")
import llama_cpp  # noqa: E402

DEFAULT_SOURCE = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
DEFAULT_TEXT = os.path.join(ROOT, "tests", "fixtures", "perplexity", "sqlite3-api-comments.txt")
# The types of issue 15, as llama.cpp's file types (LLAMA_FTYPE_MOSTLY_*): the K-quants by
# their _M mixes, what people download.
TYPES = ["F16", "BF16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_0", "Q5_1", "Q4_K_M", "Q4_0", "Q4_1", "IQ4_NL", "IQ4_XS",
         "Q3_K_M", "Q2_K"]


def log(msg: str) -> None:
    print(f"[compare-quant-types] {msg}", file=sys.stderr, flush=True)


def speed_module():
    """scripts/compare-speed-llamacpp.py, whose runs (Kestrel's and llama.cpp's) this reuses."""
    spec = importlib.util.spec_from_file_location("compare_speed", os.path.join(ROOT, "scripts",
                                                                                "compare-speed-llamacpp.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_requantized(source: str, out_dir: str, types: list[str]) -> None:
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.basename(source).split(".")[0]
    for t in types:
        path = os.path.join(out_dir, f"{stem}.{t}.gguf")
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = getattr(llama_cpp, "LLAMA_FTYPE_MOSTLY_" + t)
        params.allow_requantize = True
        params.nthread = os.cpu_count() or 1
        log(f"llama_model_quantize {source} -> {path} ({t})")
        if llama_cpp.llama_model_quantize(source.encode(), path.encode(), ctypes.byref(params)) != 0:
            raise SystemExit(f"llama_model_quantize failed for {t}")
        print(path)


def bits_per_weight(path: str) -> float:
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = False
    params.use_mmap = True
    model = llama_cpp.llama_model_load_from_file(path.encode(), params)
    if not model:
        raise SystemExit(f"{path}: llama.cpp cannot load it")
    try:
        return llama_cpp.llama_model_size(model) * 8 / llama_cpp.llama_model_n_params(model)
    finally:
        llama_cpp.llama_model_free(model)


def perplexity_of(output: str, who: str) -> float:
    m = re.search(r"^perplexity ([0-9.]+)", output, re.MULTILINE)
    if not m:
        raise SystemExit(f"{who}: no perplexity in its output:\n{output}")
    return float(m.group(1))


def kestrel_perplexity(build: str, model: str, text: str, context: int, threads: int) -> float:
    cmd = [os.path.join(build, "examples", "kestrel-perplexity"), "--model", model, "--text", text, "--context",
           str(context), "--threads", str(threads)]
    log(" ".join(cmd))
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"kestrel-perplexity failed:\n{out.stderr}")
    return perplexity_of(out.stdout, "kestrel-perplexity")


def llamacpp_perplexity(model: str, text: str, context: int, threads: int) -> float:
    cmd = [sys.executable, os.path.join(ROOT, "scripts", "llamacpp-perplexity.py"), model, text, "--context",
           str(context), "--threads", str(threads)]
    log(" ".join(cmd[1:]))
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"llamacpp-perplexity.py failed:\n{out.stderr}")
    return perplexity_of(out.stdout, "llamacpp-perplexity.py")


def rate(seconds_per_token: float) -> float:
    """Tokens/s; NaN where a run reported no per-token time (too few tokens generated)."""
    return 1.0 / seconds_per_token if seconds_per_token > 0 else float("nan")


def measure(path: str, args, speed, bench: str) -> dict:
    threads = [int(t) for t in args.threads.split(",")]
    result = {"file": path, "bits_per_weight": bits_per_weight(path), "decode": []}
    if args.text:
        result["perplexity"] = {
            "kestrel": kestrel_perplexity(args.build, path, args.text, args.context, max(threads)),
            "llamacpp": llamacpp_perplexity(path, args.text, args.context, max(threads))}
    for t in threads:
        ks, lc = [], []
        for r in range(args.repeats):  # alternating, so both sides see the same machine
            log(f"{os.path.basename(path)}: threads {t}, run {r + 1}/{args.repeats}")
            lc.append(speed.llamacpp_run(path, t, args.prompt, args.generate, args.seed))
            ks.append(speed.kestrel_run(bench, path, t, args.prompt, args.generate))
        result["decode"].append({"threads": t, "kestrel": [rate(x["token_s"]) for x in ks],
                                 "llamacpp": [rate(x["token_s"]) for x in lc]})
    return result


def print_table(r: dict, args) -> None:
    name = os.path.basename(r["file"])
    print(f"\n#### {name}\n")
    print("| | Kestrel | llama.cpp | Kestrel / llama.cpp |")
    print("|---|---:|---:|---:|")
    print(f"| bits per weight (file) | {r['bits_per_weight']:.3f} | {r['bits_per_weight']:.3f} | 1.00 |")
    if "perplexity" in r:
        k, l = r["perplexity"]["kestrel"], r["perplexity"]["llamacpp"]
        print(f"| perplexity ({os.path.basename(args.text)}, context {args.context}) | {k:.4f} | {l:.4f} | "
              f"{k / l:.4f} |")
    for d in r["decode"]:
        k, l = statistics.median(d["kestrel"]), statistics.median(d["llamacpp"])
        print(f"| decode tokens/s, {d['threads']} thread{'s' if d['threads'] > 1 else ''} "
              f"(median of {len(d['kestrel'])}) | {k:.1f} | {l:.1f} | {k / l:.2f} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*", help="GGUF files to compare")
    ap.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    ap.add_argument("--repeats", type=int, default=3, help="decode runs per side and thread count")
    ap.add_argument("--generate", type=int, default=64, help="tokens generated per decode run (>= 2)")
    ap.add_argument("--prompt", type=int, default=16, help="prompt tokens before the decode runs")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--text", default=DEFAULT_TEXT, help="perplexity text ('' to skip perplexity)")
    ap.add_argument("--context", type=int, default=512, help="perplexity chunk length")
    ap.add_argument("--build", default=os.path.join(ROOT, "build-cpu"), help="Kestrel build folder")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--make-requantized", metavar="DIR", help="write llama.cpp requantizations of --source here")
    ap.add_argument("--source", default=DEFAULT_SOURCE, help="the GGUF file --make-requantized starts from")
    ap.add_argument("--types", default=",".join(TYPES), help="llama.cpp file types for --make-requantized")
    args = ap.parse_args()
    if args.make_requantized:
        make_requantized(args.source, args.make_requantized, [t for t in args.types.split(",") if t])
        return 0
    if not args.files:
        ap.error("no GGUF files given (or --make-requantized DIR)")
    if args.generate < 2 or args.repeats < 1:
        ap.error("--generate >= 2 and --repeats >= 1")
    for f in args.files:
        if not os.path.isfile(f):
            raise SystemExit(f"{f}: missing")
    speed = speed_module()
    bench = speed.find_bench(os.path.join(args.build, "examples", "kestrel-bench"))

    load_start = os.getloadavg()
    results = [measure(os.path.abspath(f), args, speed, bench) for f in args.files]
    load_end = os.getloadavg()
    info = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{speed.cpu_name()}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}",
            "load_average_1min": [round(load_start[0], 2), round(load_end[0], 2)],
            "kestrel_git": speed.git_rev(), "llama_cpp_python": llama_cpp.__version__,
            "repeats": args.repeats, "prompt": args.prompt, "generate": args.generate}
    print(f"Date {info['date']}; {info['machine']}; load average {info['load_average_1min'][0]} -> "
          f"{info['load_average_1min'][1]}; Kestrel {info['kestrel_git']}; llama-cpp-python "
          f"{info['llama_cpp_python']}; decode: {args.generate} greedy tokens after {args.prompt} prompt tokens, "
          f"medians of {args.repeats} runs per side, alternating run by run.")
    for r in results:
        print_table(r, args)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"info": info, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
