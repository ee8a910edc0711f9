#!/usr/bin/env python3
"""A GGUF with a real model's tensor table and zeros for data, for kestrel-size only:

    .venv/bin/python scripts/make-shape-gguf.py OUT.gguf [--layers N] [--ffn F] [--down-type Q4_K]
    build-cpu/examples/kestrel-size -m OUT.gguf --tp 2

Llama-7B's shape (hidden 4096, 32 heads, FFN 11008, vocabulary 32000): every matrix Q4_K
(down --down-type), the untied output Q6_K, norms F32, a placeholder SentencePiece
vocabulary. kestrel-size sizes a GGUF's weights from the tensor table alone (tools/
held_weights.h), so the file tells what each rank of a tensor-parallel split holds in the
file's blocks without a real 7B download; one layer (the default) is ~280 MiB. Not a model
to run: its blocks are zeros (scale 0) and its vocabulary has no text.
"""
import argparse

import gguf
import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--ffn", type=int, default=11008)
    parser.add_argument("--down-type", default="Q4_K", help="ggml type of ffn_down (e.g. Q4_K, Q6_K, Q8_0)")
    args = parser.parse_args()
    hidden, heads, vocab, ffn = 4096, 32, 32000, args.ffn
    w = gguf.GGUFWriter(args.out, arch="llama")
    w.add_context_length(4096)
    w.add_embedding_length(hidden)
    w.add_block_count(args.layers)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(heads)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(hidden // heads)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_K_M)
    w.add_tokenizer_model("llama")
    w.add_token_list([f"t{i}".encode() for i in range(vocab)])
    w.add_token_scores([0.0] * vocab)
    w.add_token_types([1] * vocab)

    def blocks(name, rows, cols, kind="Q4_K"):
        t = gguf.GGMLQuantizationType[kind]
        block, size = gguf.GGML_QUANT_SIZES[t]
        w.add_tensor(name, np.zeros((rows, cols // block * size), np.uint8), raw_dtype=t)

    def norm(name):
        w.add_tensor(name, np.ones(hidden, np.float32))

    blocks("token_embd.weight", vocab, hidden)
    norm("output_norm.weight")
    blocks("output.weight", vocab, hidden, "Q6_K")
    for layer in range(args.layers):
        p = f"blk.{layer}."
        norm(p + "attn_norm.weight")
        norm(p + "ffn_norm.weight")
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            blocks(p + name + ".weight", hidden, hidden)
        blocks(p + "ffn_gate.weight", ffn, hidden)
        blocks(p + "ffn_up.weight", ffn, hidden)
        blocks(p + "ffn_down.weight", hidden, ffn, args.down_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
