#!/usr/bin/env python3
"""Prompt-lookup speculative decoding against plain decoding, on a task that copies from its
prompt (issue 18, item 5): kestrel-generate on the default model at batch 1, greedy, the
two modes alternating so that a change in the machine's load hits both alike.

    scripts/bench-speculative.py [--bin build-cpu/examples/kestrel-generate] [--model PATH]
                                 [--runs 3] [--tokens 96] [--draft-tokens 4] [--threads 2]

Prints each run's generation tokens/s (the status line's: tokens after the first over the
generation time) and acceptance, then the medians and the speedup, and checks that both
modes printed the same text (they must: greedy speculative output is plain output). Run it
on an idle machine and say what `uptime` showed.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A summarize-and-quote task: the answer quotes the passage (about 110 tokens), so most drafted
# tokens hold, then summarizes it. (SmolLM2-135M paraphrases when asked to "quote" inside a
# longer instruction; asked to copy, it copies.)
PASSAGE = (
    "The lighthouse keeper climbed the spiral stairs every evening at dusk. He trimmed the wick, "
    "polished the great lens and wrote the weather in a leather logbook. Ships passing the rocky "
    "point at night relied on the beam to find the safe channel into the harbour. In the winter of "
    "the great storm the keeper stayed awake for three nights, keeping the light burning while the "
    "waves broke over the lower gallery. When the storm ended, the harbour master thanked him for "
    "saving the fishing fleet."
)
PROMPT = "Copy the passage below exactly as written, then add a one-sentence summary.\n\n" + PASSAGE
STATUS = re.compile(r"(?P<tokens>\d+) tokens, (?P<rate>[0-9.]+) tokens/s \|(?: prompt-lookup accepted "
                    r"(?P<accepted>\d+) of (?P<drafted>\d+) drafted)?")


def run(args, speculative):
    command = [args.bin, "--model", args.model, "--prompt", PROMPT, "--max-new-tokens", str(args.tokens),
               "--threads", str(args.threads)]
    if speculative:
        command += ["--speculative", "prompt-lookup", "--draft-tokens", str(args.draft_tokens)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    match = STATUS.search(done.stderr)
    if not match:
        sys.exit(f"no status line in:\n{done.stderr}")
    return done.stdout, match


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", default=os.path.join(ROOT, "build-cpu", "examples", "kestrel-generate"))
    parser.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--draft-tokens", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    print(f"load before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    rates = {False: [], True: []}
    texts = {}
    accepted = drafted = 0
    for i in range(args.runs):
        for speculative in (False, True):
            text, m = run(args, speculative)
            texts.setdefault(speculative, text)
            rates[speculative].append(float(m["rate"]))
            note = ""
            if speculative:
                accepted += int(m["accepted"])
                drafted += int(m["drafted"])
                note = f", accepted {m['accepted']} of {m['drafted']} drafted"
            print(f"run {i + 1} {'prompt-lookup' if speculative else 'plain':>13}: {m['tokens']} tokens, "
                  f"{m['rate']} tokens/s{note}", flush=True)
    print(f"load after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    plain, spec = statistics.median(rates[False]), statistics.median(rates[True])
    print(f"median tokens/s: plain {plain:.2f}, prompt-lookup {spec:.2f}, speedup {spec / plain:.2f}x; "
          f"acceptance {accepted}/{drafted} = {accepted / max(drafted, 1):.1%}")
    if texts[False] != texts[True]:
        sys.exit("the two modes printed different text: greedy speculative output must equal plain output")
    print("same text in both modes")


if __name__ == "__main__":
    main()
