#!/usr/bin/env python3
"""GPU speed of Kestrel and PyTorch Hugging Face transformers on the same checkpoint and
shapes, in one run: generated tokens/s at batch 1, 8, 32 with greedy decoding, and the
Kestrel / HF ratio, for HF eager and (when it works there) torch.compile.

    scripts/compare-speed-hf.py MODEL_DIR [--batch 1,8,32] [--input 128] [--output 128]
                                [--repeats 3] [--no-compile] [--json OUT.json]
    scripts/compare-speed-hf.py --synthetic gpt2-xl [...]

Run it with the GPU machine's Python (torch with CUDA + transformers), after building
Kestrel with CUDA (build/examples/kestrel-bench) and making the checkpoints with
scripts/make-bench-models.py. MODEL_DIR is a Hugging Face directory (fp16 safetensors).
--synthetic PRESET needs no files (the GPU bundle's run.sh uses it): both sides get random
weights of the shape `kestrel-size --preset PRESET --json` describes (HF: from_config,
made on the GPU; Kestrel: kestrel-bench --synthetic); the weights differ, the work does not.

Both sides, per batch size B: B prompts of --input random token ids (fixed seed), exactly
--output new tokens each (greedy, EOS ignored), timed end to end with the device
synchronized; tokens/s = B x output / total seconds; medians of --repeats after a warm-up.
  Kestrel: kestrel-bench --device cuda --batch B --input P --output N --json (tokens_per_second)
  HF:      model.generate(input_ids, attention_mask, do_sample=False, min_new_tokens=N,
           max_new_tokens=N) in fp16; "compile" = forward wrapped by torch.compile
           (mode reduce-overhead) with the static KV cache, when this transformers supports it.
The markdown table goes to stdout; a row whose side failed says why instead of a number.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log(msg: str) -> None:
    print(f"[compare-speed-hf] {msg}", file=sys.stderr, flush=True)


def kestrel_tps(bench: str, model: str, synthetic: bool, batch: int, inp: int, out: int, repeats: int) -> float:
    cmd = [bench, "--synthetic" if synthetic else "--model", model, "--device", "cuda", "--dtype", "f16",
           "--batch", str(batch), "--input", str(inp), "--output", str(out), "--warmup", "1",
           "--repeats", str(repeats), "--json"]
    log(" ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "kestrel-bench failed")
    return json.loads(proc.stdout)["cases"][0]["tokens_per_second"]


def hf_tps(torch, model, batch: int, inp: int, out: int, repeats: int, vocab: int, seed: int,
           static_cache: bool) -> float:
    g = torch.Generator().manual_seed(seed + batch)
    ids = torch.randint(100, vocab, (batch, inp), generator=g).cuda()
    mask = torch.ones_like(ids)
    kwargs = dict(attention_mask=mask, do_sample=False, min_new_tokens=out, max_new_tokens=out,
                  pad_token_id=0, eos_token_id=None)
    if static_cache:
        kwargs["cache_implementation"] = "static"

    def run() -> float:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.inference_mode():
            result = model.generate(ids, **kwargs)
        torch.cuda.synchronize()
        if result.shape[1] != inp + out:
            raise RuntimeError(f"generated {result.shape[1] - inp} tokens instead of {out}")
        return time.perf_counter() - t0

    run()  # warm-up (and compilation)
    return batch * out / statistics.median(run() for _ in range(repeats))


def hf_config(transformers, size: str, preset: str):
    """The Hugging Face config of a kestrel-size preset's shape."""
    proc = subprocess.run([size, "--preset", preset, "--json"], capture_output=True, text=True, check=True)
    m = json.loads(proc.stdout)["model"]
    if m["architecture"] == "gpt2":
        return transformers.GPT2Config(vocab_size=m["vocab"], n_embd=m["hidden"], n_layer=m["layers"],
                                       n_head=m["heads"], n_inner=m["ffn"], n_positions=m["max_positions"])
    return transformers.LlamaConfig(vocab_size=m["vocab"], hidden_size=m["hidden"], num_hidden_layers=m["layers"],
                                    num_attention_heads=m["heads"], num_key_value_heads=m["kv_heads"],
                                    head_dim=m["head_dim"], intermediate_size=m["ffn"],
                                    max_position_embeddings=m["max_positions"],
                                    tie_word_embeddings=m["tied_embeddings"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?")
    ap.add_argument("--synthetic", metavar="PRESET", help="random weights of a kestrel-size preset's shape")
    ap.add_argument("--batch", default="1,8,32")
    ap.add_argument("--input", type=int, default=128)
    ap.add_argument("--output", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    ap.add_argument("--kestrel-bench", default=os.path.join(ROOT, "build", "examples", "kestrel-bench"))
    ap.add_argument("--kestrel-size", default=None, help="default: beside --kestrel-bench")
    ap.add_argument("--json")
    args = ap.parse_args()
    batches = [int(b) for b in args.batch.split(",")]
    if bool(args.model) == bool(args.synthetic):
        ap.error("give MODEL_DIR or --synthetic PRESET")
    size = args.kestrel_size or os.path.join(os.path.dirname(args.kestrel_bench), "kestrel-size")

    import torch
    import transformers

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device visible to torch")
    if args.synthetic:
        with torch.device("cuda"):
            model = transformers.AutoModelForCausalLM.from_config(hf_config(transformers, size, args.synthetic),
                                                                  torch_dtype=torch.float16).eval()
    else:
        model = transformers.AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=torch.float16).cuda().eval()
    vocab = model.config.vocab_size
    variants = ["eager"] + ([] if args.no_compile else ["compile"])
    rows = []
    for b in batches:
        row = {"batch": b}
        try:
            row["kestrel"] = kestrel_tps(args.kestrel_bench, args.synthetic or args.model, bool(args.synthetic), b,
                                         args.input, args.output, args.repeats)
        except Exception as e:  # noqa: BLE001 - reported in the table
            row["kestrel"] = f"failed: {e}"
        for v in variants:
            log(f"HF {v}, batch {b}")
            try:
                if v == "compile":
                    model.forward = torch.compile(model.forward, mode="reduce-overhead", fullgraph=False)
                row["hf_" + v] = hf_tps(torch, model, b, args.input, args.output, args.repeats, vocab, args.seed,
                                        static_cache=(v == "compile"))
            except Exception as e:  # noqa: BLE001
                row["hf_" + v] = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}"
            finally:
                if v == "compile":
                    model.forward = type(model).forward.__get__(model)
        rows.append(row)

    def cell(x):
        return f"{x:.1f}" if isinstance(x, float) else str(x)

    def ratio(a, b):
        return f"{a / b:.2f}" if isinstance(a, float) and isinstance(b, float) else "-"

    print(f"Date {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}; {torch.cuda.get_device_name()}; "
          f"torch {torch.__version__}, transformers {transformers.__version__}; "
          f"model {('random ' + args.synthetic) if args.synthetic else args.model}; "
          f"input {args.input}, output {args.output}; generated tokens/s, medians of {args.repeats}.\n")
    head = "| batch | Kestrel | HF eager | Kestrel/HF eager |" + (" HF compile | Kestrel/HF compile |" if "compile" in variants else "")
    print(head)
    print("|" + "---:|" * (head.count("|") - 1))
    for r in rows:
        line = f"| {r['batch']} | {cell(r['kestrel'])} | {cell(r['hf_eager'])} | {ratio(r['kestrel'], r['hf_eager'])} |"
        if "compile" in variants:
            line += f" {cell(r['hf_compile'])} | {ratio(r['kestrel'], r['hf_compile'])} |"
        print(line)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"model": args.synthetic or args.model, "input": args.input, "output": args.output, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
