#!/usr/bin/env bash
# CPU decode speed of SmolLM2 (or any GGUF) with f32, int8 and int4 weights, beside
# llama.cpp on the same file, in one run: each engine generates 64 tokens greedily (EOS
# ignored) after the same raw prompt, --rounds times, interleaved; the table gives each
# round's tokens/s and the best.
#
#   scripts/bench-quant-cpu.sh [--model M.gguf] [--threads 2] [--rounds 3] [--build build-cpu]
#
# llama.cpp comes from the venv of scripts/build-llamacpp.sh (LLAMACPP_PYTHON overrides
# its python); without it that row is left out.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODEL="$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf"
THREADS=2
ROUNDS=3
BUILD="$ROOT/build"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --model) MODEL="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --build) BUILD="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
PROMPT="The capital of France is"
GEN="$BUILD/examples/kestrel-generate"
PY="${LLAMACPP_PYTHON:-$ROOT/.cache/llamacpp-venv/bin/python}"

kestrel_speed() {  # $1: quant mode -> tokens/s of the decode phase
  "$GEN" --model "$MODEL" --prompt "$PROMPT" --chat off -n 64 --ignore-eos --threads "$THREADS" \
    --quant "$1" 2>&1 >/dev/null | sed -n 's/.*| 64 tokens, \([0-9.]*\) tokens\/s.*/\1/p'
}

llamacpp_speed() {
  PYTHONDONTWRITEBYTECODE=1 "$PY" - "$MODEL" "$PROMPT" "$THREADS" 2>/dev/null <<'PYEOF'
import sys, time
import llama_cpp
model, prompt, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
llm = llama_cpp.Llama(model_path=model, n_ctx=512, n_threads=threads, n_threads_batch=threads, verbose=False)
ids = llm.tokenize(prompt.encode(), add_bos=False, special=True)
llm.eval(ids)
tok = int(llm.scores[llm.n_tokens - 1].argmax())
start = time.time()
for _ in range(64):  # as kestrel-generate: 64 tokens, the first from the prompt's logits
    llm.eval([tok])
    tok = int(llm.scores[llm.n_tokens - 1].argmax())
print(f"{64 / (time.time() - start):.1f}")
PYEOF
}

declare -A results
engines=(none int8 int4)
have_llamacpp=0
if [[ -x "$PY" ]] && "$PY" -c 'import llama_cpp' 2>/dev/null; then have_llamacpp=1; engines+=(llama.cpp); fi
for ((r = 1; r <= ROUNDS; r++)); do
  for e in "${engines[@]}"; do
    if [[ "$e" == llama.cpp ]]; then s="$(llamacpp_speed)"; else s="$(kestrel_speed "$e")"; fi
    results[$e]+="$s "
  done
done

echo "Model: $(basename "$MODEL"), $THREADS threads, 64 greedy tokens after \"$PROMPT\", $ROUNDS rounds, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo
echo "| engine | weights | tokens/s per round | best |"
echo "|---|---|---|---|"
for e in "${engines[@]}"; do
  case "$e" in
    none) label="Kestrel"; weights="f32 (GGUF blocks dequantized at load)" ;;
    int8) label="Kestrel --quant int8"; weights="int8 per channel (Q8_0 as stored)" ;;
    int4) label="Kestrel --quant int4"; weights="Q4_1 / Q8_0 blocks as stored" ;;
    llama.cpp) label="llama.cpp"; weights="Q4_1 / Q8_0 as stored (Q8 activations)" ;;
  esac
  best="$(tr ' ' '\n' <<<"${results[$e]}" | sort -g | tail -n1)"
  echo "| $label | $weights | ${results[$e]}| $best |"
done
