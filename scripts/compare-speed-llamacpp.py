#!/usr/bin/env python3
"""CPU speed of Kestrel and llama.cpp on the same GGUF file, in one run: prompt tokens/s
and generation tokens/s at batch 1, and the Kestrel / llama.cpp ratio.

    scripts/compare-speed-llamacpp.py [MODEL.gguf] [--threads 2] [--prompt 128,512]
                                      [--generate 128] [--repeats 3] [--json OUT.json]

(Any python3; it re-runs itself with .cache/llamacpp-venv's Python, which
scripts/build-llamacpp.sh makes, as scripts/compare-llamacpp.py does.)

Both sides, per prompt length P (llama-bench's pp P / tg N, with sampling included):
  prompt      P random token ids (fixed seed) in one batch, then the greedy first token:
              P / time
  generation  N - 1 more greedy tokens, one per step: (N - 1) / time
  --repeats runs per side, the two sides alternating run by run (each after a warm-up),
  same thread count on both; the table gives the median and the best run of each.
Kestrel: build*/examples/kestrel-bench --batch 1 --input P --output N --repeats 1 --json
(context_ms and per_token_ms), one process per run. llama.cpp: llama-cpp-python's Llama.eval on the prompt, then one eval per
token with numpy argmax on the last logits row (llama_get_logits_ith; wall clock around
those calls).

Kestrel's CPU backend computes in f32 (the Q4_1 weights are dequantized at load);
llama.cpp computes on the Q4_1 blocks directly. The markdown table goes to stdout.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_PY = os.path.join(ROOT, ".cache", "llamacpp-venv", "bin", "python")

try:
    import numpy as np
    import llama_cpp
except ImportError:
    if os.path.abspath(sys.executable) == os.path.abspath(VENV_PY):
        raise
    subprocess.run(["bash", os.path.join(ROOT, "scripts", "build-llamacpp.sh")], check=True, stdout=sys.stderr)
    os.execv(VENV_PY, [VENV_PY, os.path.abspath(__file__), *sys.argv[1:]])

DEFAULT_MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")


def log(msg: str) -> None:
    print(f"[compare-speed] {msg}", file=sys.stderr, flush=True)


def find_bench(explicit: str | None) -> str:
    candidates = [explicit] if explicit else [os.path.join(ROOT, d, "examples", "kestrel-bench")
                                               for d in ("build", "build-cpu")]
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return c
    raise SystemExit(f"kestrel-bench not found ({', '.join(c for c in candidates if c)}); build it first: "
                     "cmake --build build --target kestrel-bench")


def kestrel_run(bench: str, model: str, threads: int, prompt: int, generate: int) -> tuple[float, float]:
    """One measured kestrel-bench run (after its own warm-up): prompt and per-token seconds."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    cmd = [bench, "--model", model, "--threads", str(threads), "--batch", "1", "--input", str(prompt),
           "--output", str(generate), "--warmup", "1", "--repeats", "1", "--json"]
    log(" ".join(cmd))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"kestrel-bench failed:\n{out.stderr}")
    case = json.loads(out.stdout)["cases"][0]
    return case["context_ms"] / 1e3, case["per_token_ms"] / 1e3


def llamacpp_runner(llm, n_vocab: int, prompt: int, generate: int, seed: int):
    rng = np.random.default_rng(seed + prompt)
    ids = [int(t) for t in rng.integers(100, n_vocab, prompt)]  # clear of the special tokens

    def last_logits_argmax() -> int:
        # With logits_all=False llama.cpp keeps only the last token's row (Llama.scores is
        # not filled then): read it from the context.
        row = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))
        return int(np.argmax(row))

    def run() -> tuple[float, float]:
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(ids)
        tok = last_logits_argmax()
        t1 = time.perf_counter()
        for _ in range(generate - 1):
            llm.eval([tok])
            tok = last_logits_argmax()
        t2 = time.perf_counter()
        return t1 - t0, (t2 - t1) / (generate - 1)

    run()  # warm-up
    return run


def rates(times: list[tuple[float, float]], prompt: int) -> dict:
    """tokens/s from the median and from the best of the runs' (prompt, per-token) seconds."""
    return {"prompt_tps": prompt / statistics.median(t[0] for t in times),
            "gen_tps": 1.0 / statistics.median(t[1] for t in times),
            "prompt_tps_best": prompt / min(t[0] for t in times),
            "gen_tps_best": 1.0 / min(t[1] for t in times),
            "runs": [[round(a, 5), round(b, 5)] for a, b in times]}


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_rev() -> str:
    try:
        return subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except Exception:
        return "unknown"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", default=DEFAULT_MODEL)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", default="128,512", help="prompt lengths, comma-separated")
    ap.add_argument("--generate", type=int, default=128, help="tokens generated per run (>= 2)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--kestrel-bench", help="path of kestrel-bench (default: build*/examples/)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    prompts = [int(p) for p in args.prompt.split(",")]
    if args.generate < 2 or args.repeats < 1 or args.threads < 1 or min(prompts) < 1:
        ap.error("--generate >= 2, --repeats >= 1, --threads >= 1 and prompt lengths >= 1")
    if not os.path.isfile(args.model):
        raise SystemExit(f"{args.model}: missing (scripts/fetch-default-model.sh fetches the default model)")
    bench = find_bench(args.kestrel_bench)

    load_start = os.getloadavg()
    n_ctx = max(prompts) + args.generate + 8
    llm = llama_cpp.Llama(model_path=args.model, n_ctx=n_ctx, n_batch=max(512, max(prompts)),
                          n_ubatch=max(512, max(prompts)), n_threads=args.threads,
                          n_threads_batch=args.threads, logits_all=False, verbose=False, seed=0)
    n_vocab = llm.n_vocab()
    rows = []
    for p in prompts:
        # The two sides alternate run by run, so both see the same machine (load) over time.
        llamacpp_run = llamacpp_runner(llm, n_vocab, p, args.generate, args.seed)
        lc_times, ks_times = [], []
        for r in range(args.repeats):
            log(f"prompt {p}, generate {args.generate}, run {r + 1}/{args.repeats}")
            lc_times.append(llamacpp_run())
            ks_times.append(kestrel_run(bench, args.model, args.threads, p, args.generate))
        rows.append({"prompt": p, "generate": args.generate, "kestrel": rates(ks_times, p),
                     "llamacpp": rates(lc_times, p)})
    load_end = os.getloadavg()

    info = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{cpu_name()}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}",
            "load_average_1min": [round(load_start[0], 2), round(load_end[0], 2)],
            "threads": args.threads, "model": os.path.relpath(args.model, ROOT),
            "llama_cpp_python": llama_cpp.__version__, "kestrel_git": git_rev(), "repeats": args.repeats}
    print(f"Date {info['date']}; {info['machine']}; {args.threads} threads each; load average "
          f"{info['load_average_1min'][0]} -> {info['load_average_1min'][1]}; model {info['model']}; "
          f"llama-cpp-python {info['llama_cpp_python']}; Kestrel {info['kestrel_git']}.\n")
    print("| prompt | generated | statistic | Kestrel prompt tok/s | llama.cpp prompt tok/s | ratio | "
          "Kestrel gen tok/s | llama.cpp gen tok/s | ratio |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        k, l = r["kestrel"], r["llamacpp"]
        for stat, suffix in (("median", ""), ("best", "_best")):
            kp, lp, kg, lg = k["prompt_tps" + suffix], l["prompt_tps" + suffix], k["gen_tps" + suffix], l["gen_tps" + suffix]
            print(f"| {r['prompt']} | {r['generate']} | {stat} of {args.repeats} | {kp:.1f} | {lp:.1f} | "
                  f"{kp / lp:.2f} | {kg:.1f} | {lg:.1f} | {kg / lg:.2f} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"info": info, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
