#!/usr/bin/env python3
"""Load benchmark of kestrel-server (a script, not a test): N concurrent streaming clients.

Starts kestrel-server on a free loopback port (the default model unless --model), then:
  1. for each concurrency level (default 1, 4, 16, 64), N clients each send streaming
     /v1/completions requests back to back for --seconds: requests/s, generated tokens/s,
     time to first token and inter-token latency percentiles, failed requests;
  2. the time to first token of a chat's second turn on a ~1,000-token history, with the
     prefix cache and without (a second server started with --no-prefix-caching);
  3. with --soak SECONDS, concurrency 64 for that long: every request must end properly
     (each choice's finish_reason, the usage chunk with max_tokens tokens, [DONE] last);
     failed and lost (sent, never answered) requests are counted, and the exit status is 1
     if there are any.
Prints a Markdown table (docs/SERVING.md holds the committed one). Only the standard
library: the clients speak HTTP and server-sent events themselves.

usage: scripts/bench-server.py [--server build-cpu/examples/kestrel-server] [--model PATH]
                               [--levels 1,4,16,64] [--seconds 30] [--max-tokens 64] [--soak 300]
"""
import argparse
import http.client
import json
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = ["Once upon a time", "The history of the city of Paris", "Write a short poem about the sea.",
           "Explain how a bicycle works.", "My favourite recipe is", "In the year 2050, cities will"]


def start_server(binary, model, *extra):
    cmd = [binary, "--port", "0", *extra] + (["--model", model] if model else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline()
    match = re.search(r"listening on http://([\d.]+):(\d+)", line)
    if not match:
        proc.kill()
        sys.exit(f"kestrel-server did not start: {line}{proc.stdout.read()}")
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # drain
    return proc, match.group(1), int(match.group(2))


def stream(host, port, path, body):
    """One streamed request: (ok, error, ttft, inter-token gaps, completion tokens).

    A stream ends properly when every choice got its finish_reason, the usage chunk came
    (completion_tokens equal to max_tokens when the request ignores EOS), and [DONE] is last;
    anything else is a failure with the reason."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection(host, port, timeout=600)
    try:
        conn.request("POST", path, json.dumps({**body, "stream": True, "stream_options": {"include_usage": True}}),
                     {"Content-Type": "application/json"})
        response = conn.getresponse()
        if response.status != 200:
            return False, f"HTTP {response.status}: {response.read()[:200]!r}", None, [], 0
        ttft, last, gaps, tokens, done, finished, usage = None, None, [], 0, False, set(), False
        for raw in response:
            line = raw.decode().strip()
            if not line.startswith("data: "):
                continue
            if done:
                return False, "data after [DONE]", None, [], 0
            data = line[6:]
            if data == "[DONE]":
                done = True
                continue
            chunk = json.loads(data)
            if "error" in chunk:
                return False, chunk["error"]["message"], None, [], 0
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
                usage = True
            for choice in chunk.get("choices", []):
                if choice.get("finish_reason"):
                    finished.add(choice["index"])
                text = choice.get("text") or (choice.get("delta") or {}).get("content")
                if text:
                    now = time.perf_counter()
                    if ttft is None:
                        ttft = now - start
                    else:
                        gaps.append(now - last)
                    last = now
        if not done:
            return False, "stream ended without [DONE]", None, [], 0
        if finished != set(range(body.get("n", 1))):
            return False, f"finish_reason for choices {sorted(finished)} only", None, [], 0
        if not usage:
            return False, "no usage chunk", None, [], 0
        if body.get("ignore_eos") and tokens != body["max_tokens"] * body.get("n", 1):
            return False, f"{tokens} tokens instead of {body['max_tokens']}", None, [], 0
        return True, None, ttft, gaps, tokens
    except (OSError, http.client.HTTPException, json.JSONDecodeError, UnicodeDecodeError) as e:
        return False, repr(e), None, [], 0
    finally:
        conn.close()


def percentile(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q / 100 * len(values)))]


def load(host, port, clients, seconds, max_tokens):
    """N clients sending requests back to back for `seconds`. A request is lost when it was
    sent but neither finished nor failed within 300 s after the others (a client thread
    still waiting)."""
    results, lock = [], threading.Lock()
    sent = [0] * clients
    deadline = time.perf_counter() + seconds

    def client(i):
        n = 0
        while time.perf_counter() < deadline:
            body = {"prompt": PROMPTS[(i + n) % len(PROMPTS)], "max_tokens": max_tokens, "temperature": 0.8,
                    "seed": i * 1000 + n, "ignore_eos": True}
            with lock:
                sent[i] += 1
            outcome = stream(host, port, "/v1/completions", body)
            with lock:
                results.append(outcome)
            n += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(0.0, deadline + 300 - time.perf_counter()))
    wall = time.perf_counter() - start
    with lock:
        results = list(results)
        lost = sum(sent) - len(results)
    ok = [r for r in results if r[0]]
    failed = [r for r in results if not r[0]]
    ttft = [r[2] for r in ok if r[2] is not None]
    gaps = [g for r in ok for g in r[3]]
    return {"clients": clients, "requests": len(ok), "failed": len(failed), "lost": lost,
            "errors": [r[1] for r in failed][:3], "wall": wall, "rps": len(ok) / wall,
            "tps": sum(r[4] for r in ok) / wall,
            "ttft": [percentile(ttft, q) for q in (50, 90, 99)], "itl": [percentile(gaps, q) for q in (50, 90, 99)]}


def chat_second_turn_ttft(host, port, repeats=3):
    """TTFT of the second turn of a chat whose first turn left a ~1,000-token history."""
    filler = " ".join(f"Fact {i}: the number {i} is followed by {i + 1}." for i in range(80))
    history = [{"role": "system", "content": "You are a patient assistant. " + filler},
               {"role": "user", "content": "Summarize the facts above in one sentence."}]
    times = []
    for r in range(repeats):
        turn = [dict(m) for m in history]
        turn[0]["content"] += f" (conversation {r})"  # a fresh history each time
        conn = http.client.HTTPConnection(host, port, timeout=600)
        conn.request("POST", "/v1/chat/completions", json.dumps({"messages": turn, "max_tokens": 16, "temperature": 0}),
                     {"Content-Type": "application/json"})
        reply = json.loads(conn.getresponse().read())
        conn.close()
        prompt_tokens = reply["usage"]["prompt_tokens"]
        turn += [{"role": "assistant", "content": reply["choices"][0]["message"]["content"]},
                 {"role": "user", "content": "Thanks. And the last fact?"}]
        second = stream(host, port, "/v1/chat/completions", {"messages": turn, "max_tokens": 16, "temperature": 0})
        if not second[0]:
            sys.exit(f"second turn failed: {second[1]}")
        times.append(second[2])
    return statistics.median(times), prompt_tokens


def ms(x):
    return f"{1e3 * x:.0f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default=str(ROOT / "build-cpu/examples/kestrel-server"))
    parser.add_argument("--model", default=None, help="default: the server's default model")
    parser.add_argument("--levels", default="1,4,16,64")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--max-sequences", type=int, default=16)
    parser.add_argument("--soak", type=float, default=0, help="seconds at concurrency 64 (0: skip)")
    parser.add_argument("--skip-chat", action="store_true")
    parser.add_argument("--server-args", default="", help="more kestrel-server flags, e.g. --no-batch-invariant")
    args = parser.parse_args()
    extra = ["--max-sequences", str(args.max_sequences), *args.server_args.split()]
    status = 0  # 1 when the soak had failed or lost requests

    proc, host, port = start_server(args.server, args.model, *extra)
    try:
        print(f"kestrel-server {' '.join(extra)}; streaming /v1/completions, {args.max_tokens} tokens per request "
              f"(temperature 0.8, ignore_eos), {args.seconds:.0f} s per level\n")
        print("| concurrency | requests | failed | requests/s | generated tokens/s | TTFT p50 / p90 / p99 (ms) "
              "| inter-token p50 / p90 / p99 (ms) |")
        print("|---:|---:|---:|---:|---:|---|---|")
        rows = []
        for level in [int(x) for x in args.levels.split(",")]:
            r = load(host, port, level, args.seconds, args.max_tokens)
            rows.append(r)
            print(f"| {level} | {r['requests']} | {r['failed']} | {r['rps']:.2f} | {r['tps']:.1f} | "
                  f"{' / '.join(ms(x) for x in r['ttft'])} | {' / '.join(ms(x) for x in r['itl'])} |", flush=True)
            if r["failed"]:
                print(f"  errors: {r['errors']}")
        by_level = {r["clients"]: r for r in rows}
        if 1 in by_level and 16 in by_level:
            print(f"\ngenerated tokens/s at concurrency 16 / concurrency 1: "
                  f"{by_level[16]['tps'] / by_level[1]['tps']:.2f}x")
        if args.soak:
            r = load(host, port, 64, args.soak, args.max_tokens)
            print(f"\nsoak: concurrency 64 for {r['wall']:.0f} s: {r['requests']} requests ended properly "
                  f"(finish_reason, usage with {args.max_tokens} tokens, [DONE]), {r['failed']} failed, "
                  f"{r['lost']} lost; {r['tps']:.1f} generated tokens/s")
            if r["errors"]:
                print(f"  errors: {r['errors']}")
            if r["failed"] or r["lost"]:
                status = 1
    finally:
        proc.kill()
        proc.wait()

    if not args.skip_chat:
        results = {}
        for name, flag in (("with", "--prefix-caching"), ("without", "--no-prefix-caching")):
            proc, host, port = start_server(args.server, args.model, *extra, flag)
            try:
                results[name] = chat_second_turn_ttft(host, port)
            finally:
                proc.kill()
                proc.wait()
        (with_cache, history), (without_cache, _) = results["with"], results["without"]
        print(f"\nsecond chat turn on a {history}-token history, time to first token (median of 3): "
              f"{ms(with_cache)} ms with the prefix cache, {ms(without_cache)} ms without "
              f"({without_cache / with_cache:.1f}x)")
    return status


if __name__ == "__main__":
    sys.exit(main())
