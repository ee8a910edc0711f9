#!/usr/bin/env python3
"""Where SmolLM2's W8A8 perplexity loss comes from: a torch re-implementation of the GGUF
Llama forward (llama.cpp's adjacent-pair rotary layout, GQA) with W8A8 simulated on chosen
products only (per-token int8 activations, per-channel int8 weights, round to nearest even,
as kernels/cpu/w8a8_cpu.cc rounds) after SmoothQuant at alpha 0.5 (factors from max |x_j|
over calibration text; the attention output's factors shared by the query heads of a KV
group, as src/tools/smoothquant.cc folds them into the V rows). The LM head is int8 per row
in every W8A8 row here, where Kestrel keeps the file's Q8_0 blocks: the absolute values are a
little worse than Kestrel's (all products: 10.2905 here, 10.2352 in Kestrel), the
comparisons between rows are what it is for. Protocol as kestrel-perplexity: chunks of 512
tokens, the second half of each scored. Its f32 perplexity matches Kestrel's (10.0895).

    .cache/llamacpp-venv/bin/python scripts/w8a8-loss-breakdown.py --tokenize OUT_DIR
    .venv/bin/python scripts/w8a8-loss-breakdown.py OUT_DIR [CONFIG ...]

CONFIG: all, weights, acts, qkv, o, gu, down (W8A8 on those products only), or
no-down / no-o-down (all but those). Slow on 2 shared cores (minutes per row).
"""
import math
import os
import sys

import numpy as np

MODEL = 'models/SmolLM2-135M-Instruct.Q4_1.gguf'
EVAL = 'tests/fixtures/perplexity/sqlite3-api-comments.txt'
CALIB = '/usr/share/common-licenses/GPL-3'

if len(sys.argv) == 3 and sys.argv[1] == '--tokenize':  # in the llama-cpp-python venv
    import llama_cpp
    m = llama_cpp.Llama(MODEL, vocab_only=True, verbose=False)
    os.makedirs(sys.argv[2], exist_ok=True)
    for name, path in [('eval', EVAL), ('calib', CALIB)]:
        ids = m.tokenize(open(path, 'rb').read(), add_bos=False, special=False)
        np.save(os.path.join(sys.argv[2], name + '.npy'), np.array(ids, dtype=np.int64))
    sys.exit(0)

import gguf  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)
R = gguf.GGUFReader(MODEL)
T = {t.name: torch.from_numpy(np.ascontiguousarray(gguf.quants.dequantize(t.data, t.tensor_type)).astype(np.float32))
     for t in R.tensors}
L, H, NH, NKV, HD, F = 30, 576, 9, 3, 64, 1536
EMB = T['token_embd.weight']


def W(l, n):
    return T[f'blk.{l}.{n}.weight']


QKV = [torch.cat([W(l, 'attn_q'), W(l, 'attn_k'), W(l, 'attn_v')]) for l in range(L)]
GU = [torch.cat([W(l, 'ffn_gate'), W(l, 'ffn_up')]) for l in range(L)]
WEIGHT = {'qkv': lambda l: QKV[l], 'gu': lambda l: GU[l], 'o': lambda l: W(l, 'attn_output'),
          'down': lambda l: W(l, 'ffn_down')}


def rope(x, pos):  # x [T, heads, HD]; pairs (2i, 2i + 1), llama.cpp's normal rotary mode
    inv = 100000.0 ** (-torch.arange(0, HD, 2, dtype=torch.float64) / HD)
    ang = pos[:, None].double() * inv[None, :]
    c, s = torch.cos(ang).float()[:, None, :], torch.sin(ang).float()[:, None, :]
    out = torch.empty_like(x)
    out[..., 0::2] = x[..., 0::2] * c - x[..., 1::2] * s
    out[..., 1::2] = x[..., 0::2] * s + x[..., 1::2] * c
    return out


def rms(x, w):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-5) * w


def q8_rows(m):
    s = (m.abs().amax(-1, keepdim=True) / 127).clamp_min(1e-30)
    return torch.clamp(torch.round(m / s), -127, 127) * s


HEAD_Q8 = []


def forward(ids, lin, head_from=0, head_q8=False):
    n = ids.shape[0]
    pos = torch.arange(n)
    x = EMB[ids]
    mask = torch.full((n, n), float('-inf')).triu(1)
    for l in range(L):
        qkv = lin('qkv', l, rms(x, W(l, 'attn_norm')))
        q = rope(qkv[:, :NH * HD].view(n, NH, HD), pos)
        k = rope(qkv[:, NH * HD:(NH + NKV) * HD].view(n, NKV, HD), pos).repeat_interleave(NH // NKV, 1)
        v = qkv[:, (NH + NKV) * HD:].view(n, NKV, HD).repeat_interleave(NH // NKV, 1)
        a = torch.softmax(torch.einsum('thd,shd->hts', q, k) / math.sqrt(HD) + mask, -1)
        x = x + lin('o', l, torch.einsum('hts,shd->thd', a, v).reshape(n, NH * HD))
        gu = lin('gu', l, rms(x, W(l, 'ffn_norm')))
        x = x + lin('down', l, torch.nn.functional.silu(gu[:, :F]) * gu[:, F:])
    if head_q8 and not HEAD_Q8:
        HEAD_Q8.append(q8_rows(EMB))
    return rms(x[head_from:], T['output_norm.weight']) @ (HEAD_Q8[0] if head_q8 else EMB).t()


def perplexity(ids, lin, ctx=512, head_q8=True):
    total, count = 0.0, 0
    with torch.no_grad():
        for c in range(ids.shape[0] // ctx):
            chunk = ids[c * ctx:(c + 1) * ctx]
            lp = torch.log_softmax(forward(chunk, lin, ctx // 2 - 1, head_q8).double(), -1)
            target = chunk[ctx // 2:]
            total -= lp[:ctx // 2].gather(1, target[:, None]).sum().item()
            count += target.shape[0]
    return math.exp(total / count)


def factors(calib, alpha=0.5, tokens=2048, ctx=512):
    amax = {}

    def observe(kind, l, x):
        m = x.abs().amax(0)
        amax[(kind, l)] = torch.maximum(amax[(kind, l)], m) if (kind, l) in amax else m
        return x @ WEIGHT[kind](l).t()

    with torch.no_grad():
        for b in range(0, tokens, ctx):
            forward(calib[b:b + ctx], observe)
    out = {}
    for (kind, l), a in amax.items():
        w = WEIGHT[kind](l).abs().amax(0)
        if kind == 'o':  # one factor per KV-head channel: maxima over the query heads of a group
            a, w = (v.view(NKV, NH // NKV, HD).amax(1).reshape(-1) for v in (a, w))
        s = (a.double() ** alpha / w.double() ** (1 - alpha)).clamp(1e-5, 1e5).float()
        s[(a <= 0) | (w <= 0)] = 1
        out[(kind, l)] = s.view(NKV, 1, HD).expand(NKV, NH // NKV, HD).reshape(-1) if kind == 'o' else s
    return out


def w8a8(S, kinds, act=True, wt=True):
    cache = {}

    def lin(kind, l, x):
        s = S[(kind, l)]
        on = kind in kinds
        if (kind, l) not in cache:
            ws = WEIGHT[kind](l) * s
            cache[(kind, l)] = q8_rows(ws) if on and wt else ws
        x = x / s
        return (q8_rows(x) if on and act else x) @ cache[(kind, l)].t()
    return lin


CONFIGS = {'all': ({'qkv', 'o', 'gu', 'down'}, True, True), 'weights': ({'qkv', 'o', 'gu', 'down'}, False, True),
           'acts': ({'qkv', 'o', 'gu', 'down'}, True, False), 'qkv': ({'qkv'}, True, True), 'o': ({'o'}, True, True),
           'gu': ({'gu'}, True, True), 'down': ({'down'}, True, True), 'no-down': ({'qkv', 'o', 'gu'}, True, True),
           'no-o-down': ({'qkv', 'gu'}, True, True)}

if __name__ == '__main__':
    d = sys.argv[1]
    ev, cal = (torch.from_numpy(np.load(os.path.join(d, n + '.npy'))) for n in ('eval', 'calib'))
    print('f32', round(perplexity(ev, lambda kind, l, x: x @ WEIGHT[kind](l).t(), head_q8=False), 4), flush=True)
    S = factors(cal)
    for name in sys.argv[2:] or list(CONFIGS):
        kinds, act, wt = CONFIGS[name]
        print(f'SmoothQuant 0.5, W8A8 on {name}', round(perplexity(ev, w8a8(S, kinds, act, wt)), 4), flush=True)
