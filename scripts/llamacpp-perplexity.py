#!/usr/bin/env python3
"""llama.cpp's perplexity of a GGUF model on a text file, by the protocol of
kestrel-perplexity (and of llama.cpp's own perplexity tool): the text tokenized whole
(no BOS, special tokens not parsed), cut into chunks of --context tokens, each chunk
evaluated from an empty context in one batch, the negative log-likelihood averaged over
the second half of every chunk.

    .cache/llamacpp-venv/bin/python scripts/llamacpp-perplexity.py MODEL.gguf TEXT \
        [--context 512] [--threads 2]

Run it with the venv that scripts/build-llamacpp.sh makes. Prints the perplexity, the
token count (compare with kestrel-perplexity's: the two tokenizers must agree) and the
time.
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("text")
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import llama_cpp

    llm = llama_cpp.Llama(model_path=args.model, n_ctx=args.context, n_batch=args.context, logits_all=True,
                          n_threads=args.threads, n_threads_batch=args.threads, verbose=False)
    with open(args.text, "rb") as f:
        tokens = llm.tokenize(f.read(), add_bos=False, special=False)
    chunks = len(tokens) // args.context
    if chunks == 0:
        raise SystemExit(f"{args.text}: {len(tokens)} tokens, fewer than --context {args.context}")
    first = args.context // 2
    total, count = 0.0, 0
    start = time.time()
    for c in range(chunks):
        ids = tokens[c * args.context:(c + 1) * args.context]
        llm.reset()
        llm.eval(ids)
        logits = np.asarray(llm.scores[:args.context, :], dtype=np.float64)
        for i in range(first - 1, args.context - 1):
            row = logits[i]
            m = row.max()
            total += math.log(np.exp(row - m).sum()) + m - row[ids[i + 1]]
            count += 1
        print(f"chunk {c + 1}/{chunks}: running perplexity {math.exp(total / count):.4f}", flush=True)
    print(f"perplexity {math.exp(total / count):.4f} over {count} scored tokens ({chunks} chunks of "
          f"{args.context}; {len(tokens)} tokens in the text; llama-cpp-python {llama_cpp.__version__}) "
          f"in {time.time() - start:.1f} s")


if __name__ == "__main__":
    main()
