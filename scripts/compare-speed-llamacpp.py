#!/usr/bin/env python3
"""CPU speed of Kestrel and llama.cpp on the same GGUF file, in one run: prompt tokens/s
and generation tokens/s at batch 1, and the Kestrel / llama.cpp ratio.

    scripts/compare-speed-llamacpp.py [MODEL.gguf] [--threads 1,N] [--prompt 128,512]
                                      [--generate 64] [--repeats 3] [--json OUT.json]

(Any python3; it re-runs itself with .cache/llamacpp-venv's Python, which
scripts/build-llamacpp.sh makes, as scripts/compare-llamacpp.py does.)

Both sides, per prompt length P (llama-bench's pp P / tg N, with sampling included):
  prompt      P random token ids (fixed seed) in one batch, then the greedy first token:
              P / time
  generation  N - 1 more greedy tokens, one per step: (N - 1) / time
  --repeats runs per side, the two sides alternating run by run (each after a warm-up),
  same thread count on both, at each --threads count; the table gives medians, and each
  side's peak resident memory (one process per run: kestrel-bench's own VmHWM, and the
  llama.cpp child's ru_maxrss).
Kestrel: build*/examples/kestrel-bench --batch 1 --input P --output N --repeats 1 --json
(context_ms, per_token_ms, peak_rss_bytes), one process per run. llama.cpp: a child process
of this script running llama-cpp-python's Llama.eval on the prompt, then one eval per token
with numpy argmax on the last logits row (llama_get_logits_ith; wall clock around those
calls). Both run the file's blocks as stored (Kestrel's default, --quant auto). The
markdown table goes to stdout.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import llamacpp_venv  # noqa: E402  (the scripts directory is on sys.path)

llamacpp_venv.require(__file__, "numpy", "llama_cpp")
import numpy as np  # noqa: E402
import llama_cpp  # noqa: E402

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


def kestrel_run(bench: str, model: str, threads: int, prompt: int, generate: int) -> dict:
    """One measured kestrel-bench run (after its own warm-up): prompt and per-token seconds,
    and the process's peak RSS."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    cmd = [bench, "--model", model, "--threads", str(threads), "--batch", "1", "--input", str(prompt),
           "--output", str(generate), "--warmup", "1", "--repeats", "1", "--json"]
    log(" ".join(cmd))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"kestrel-bench failed:\n{out.stderr}")
    case = json.loads(out.stdout)["cases"][0]
    return {"prompt_s": case["context_ms"] / 1e3, "token_s": case["per_token_ms"] / 1e3,
            "rss_mib": case["peak_rss_bytes"] / 2**20}


def llamacpp_child(model: str, threads: int, prompt: int, generate: int, seed: int) -> None:
    """In a child process (so that its peak RSS is llama.cpp's own run): load, warm up,
    measure one run, print the times as JSON."""
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    llm = llama_cpp.Llama(model_path=model, n_ctx=prompt + generate + 8, n_batch=max(512, prompt),
                          n_ubatch=max(512, prompt), n_threads=threads, n_threads_batch=threads,
                          logits_all=False, verbose=False, seed=0)
    n_vocab = llm.n_vocab()
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
    prompt_s, token_s = run()
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # the process's VmHWM
    print(json.dumps({"prompt_s": prompt_s, "token_s": token_s, "rss_before_load_kib": rss_before,
                      "peak_kib": peak_kib}))


def llamacpp_run(model: str, threads: int, prompt: int, generate: int, seed: int) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), model, "--child", "--threads", str(threads),
           "--prompt", str(prompt), "--generate", str(generate), "--seed", str(seed)]
    log(f"llama.cpp: threads {threads}, prompt {prompt}, generate {generate}")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"llama.cpp child failed:\n{proc.stderr}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    r["rss_mib"] = r.pop("peak_kib") / 1024
    r["python_rss_mib"] = r.pop("rss_before_load_kib") / 1024
    return r


def median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


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
    ap.add_argument("--threads", default=f"1,{os.cpu_count()}", help="thread counts, comma-separated")
    ap.add_argument("--prompt", default="128,512", help="prompt lengths, comma-separated")
    ap.add_argument("--generate", type=int, default=64, help="tokens generated per run (>= 2)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--kestrel-bench", help="path of kestrel-bench (default: build*/examples/)")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    prompts = [int(p) for p in args.prompt.split(",")]
    threads = [int(t) for t in args.threads.split(",")]
    if args.child:
        llamacpp_child(args.model, threads[0], prompts[0], args.generate, args.seed)
        return 0
    if args.generate < 2 or args.repeats < 1 or min(threads) < 1 or min(prompts) < 1:
        ap.error("--generate >= 2, --repeats >= 1, --threads >= 1 and prompt lengths >= 1")
    if not os.path.isfile(args.model):
        raise SystemExit(f"{args.model}: missing (scripts/fetch-default-model.sh fetches the default model)")
    bench = find_bench(args.kestrel_bench)

    load_start = os.getloadavg()
    rows = []
    for t in threads:
        for p in prompts:
            # The two sides alternate run by run, so both see the same machine (load) over time.
            lc, ks = [], []
            for r in range(args.repeats):
                log(f"threads {t}, prompt {p}, generate {args.generate}, run {r + 1}/{args.repeats}")
                lc.append(llamacpp_run(args.model, t, p, args.generate, args.seed))
                ks.append(kestrel_run(bench, args.model, t, p, args.generate))
            rows.append({"threads": t, "prompt": p, "generate": args.generate, "kestrel": ks, "llamacpp": lc})
    load_end = os.getloadavg()

    info = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{cpu_name()}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}",
            "load_average_1min": [round(load_start[0], 2), round(load_end[0], 2)],
            "model": os.path.relpath(args.model, ROOT), "llama_cpp_python": llama_cpp.__version__,
            "kestrel_git": git_rev(), "repeats": args.repeats}
    print(f"Date {info['date']}; {info['machine']}; load average {info['load_average_1min'][0]} -> "
          f"{info['load_average_1min'][1]}; model {info['model']}; llama-cpp-python {info['llama_cpp_python']}; "
          f"Kestrel {info['kestrel_git']}; medians of {args.repeats} runs per side, alternating.\n")
    print("| threads | prompt | generated | Kestrel prompt tok/s | llama.cpp prompt tok/s | ratio | "
          "Kestrel gen tok/s | llama.cpp gen tok/s | ratio | Kestrel peak RSS MiB | llama.cpp peak RSS MiB | ratio |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        k, l = r["kestrel"], r["llamacpp"]
        kp, lp = r["prompt"] / median(k, "prompt_s"), r["prompt"] / median(l, "prompt_s")
        kg, lg = 1.0 / median(k, "token_s"), 1.0 / median(l, "token_s")
        kr, lr = median(k, "rss_mib"), median(l, "rss_mib")
        print(f"| {r['threads']} | {r['prompt']} | {r['generate']} | {kp:.1f} | {lp:.1f} | {kp / lp:.2f} | "
              f"{kg:.1f} | {lg:.1f} | {kg / lg:.2f} | {kr:.0f} | {lr:.0f} | {kr / lr:.2f} |")
    py = statistics.median(x["python_rss_mib"] for r in rows for x in r["llamacpp"])
    print(f"\nllama.cpp's peak RSS is its Python process's (llama-cpp-python), of which about {py:.0f} MiB "
          f"is the interpreter with numpy and llama_cpp imported, before the model is loaded.")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"info": info, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
