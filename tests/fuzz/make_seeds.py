#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target from the fixtures in tests/fixtures.

    tests/fuzz/make_seeds.py OUT_DIR      -> OUT_DIR/<target>/<seed files>

Standard library only. Model files are cut down to a few small tensors (or to their
metadata alone) so that mutations stay fast; the input formats of the targets that read
several fields are described at the top of each target's .cc file.
"""

import json
import struct
import sys
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

# --- GGUF ------------------------------------------------------------------------------
SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
# ggml type -> (block elements, block bytes) for the types the fixtures hold.
GGML = {0: (1, 4), 1: (1, 2), 30: (1, 2), 8: (32, 34), 2: (32, 18), 3: (32, 20)}


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, fmt):
        value = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return value[0]

    def string(self):
        n = self.take("Q")
        self.pos += n
        return self.data[self.pos - n:self.pos]

    def skip_value(self, vtype):
        if vtype == 8:
            self.string()
        elif vtype == 9:
            etype, count = self.take("I"), self.take("Q")
            for _ in range(count):
                self.skip_value(etype)
        else:
            self.take(SCALAR[vtype])


def parse_gguf(data):
    r = Reader(data)
    assert r.take("4s") == b"GGUF"
    version, n_tensors, n_kv = r.take("I"), r.take("Q"), r.take("Q")
    kv_start = r.pos
    alignment = 32
    for _ in range(n_kv):
        key = r.string()
        vtype = r.take("I")
        value_pos = r.pos
        r.skip_value(vtype)
        if key == b"general.alignment":
            alignment = struct.unpack_from("<I", data, value_pos)[0]
    kv = data[kv_start:r.pos]
    tensors = []
    for _ in range(n_tensors):
        name = r.string()
        n_dims = r.take("I")
        ne = [r.take("Q") for _ in range(n_dims)]
        ttype, offset = r.take("I"), r.take("Q")
        tensors.append((name, ne, ttype, offset))
    data_start = (r.pos + alignment - 1) // alignment * alignment
    return version, n_kv, kv, tensors, alignment, data_start


def gguf_bytes(version, n_kv, kv, tensors, alignment):
    """tensors: (name, ne, type, raw bytes)."""
    head = struct.pack("<4sIQQ", b"GGUF", version, len(tensors), n_kv) + kv
    infos, blobs, offset = b"", b"", 0
    for name, ne, ttype, raw in tensors:
        infos += struct.pack("<Q", len(name)) + name + struct.pack("<I", len(ne))
        infos += b"".join(struct.pack("<Q", n) for n in ne) + struct.pack("<IQ", ttype, offset)
        pad = (-len(raw)) % alignment
        blobs += raw + b"\0" * pad
        offset += len(raw) + pad
    out = head + infos
    out += b"\0" * ((-len(out)) % alignment)
    return out + blobs


def gguf_seeds(path, keep_tensors):
    data = path.read_bytes()
    version, n_kv, kv, tensors, alignment, data_start = parse_gguf(data)
    kept = []
    for name, ne, ttype, offset in tensors:
        if ttype not in GGML:
            continue
        count = 1
        for n in ne:
            count *= n
        block, block_bytes = GGML[ttype]
        size = count // block * block_bytes
        if size <= 512:
            kept.append((name, ne, ttype, data[data_start + offset:data_start + offset + size]))
    yield gguf_bytes(version, n_kv, kv, [], alignment)
    if keep_tensors:
        yield gguf_bytes(version, n_kv, kv, kept[:4], alignment)


# --- safetensors -----------------------------------------------------------------------
def safetensors_seed(path, limit=4, misalign=False):
    data = path.read_bytes()
    n = struct.unpack_from("<Q", data)[0]
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    entries = sorted(((k, v) for k, v in header.items() if k != "__metadata__"),
                     key=lambda kv: kv[1]["data_offsets"][1] - kv[1]["data_offsets"][0])
    out_header, blob = {}, b"\0" if misalign else b""
    if "__metadata__" in header:
        out_header["__metadata__"] = header["__metadata__"]
    for name, info in entries[:limit]:
        begin, end = info["data_offsets"]
        out_header[name] = dict(info, data_offsets=[len(blob), len(blob) + end - begin])
        blob += body[begin:end]
    text = json.dumps(out_header).encode()
    return struct.pack("<Q", len(text)) + text + blob


# --- the targets -----------------------------------------------------------------------
def request_seed(temperature, top_k, top_p, min_p, rep, presence, freq, seed, flags,
                 max_new, extra=b"", prompt=b"The quick brown fox"):
    """The layout request_options.cc reads: raw little-endian fields, then the prompt."""
    return struct.pack("<fifffffQBi", temperature, top_k, top_p, min_p, rep, presence, freq,
                       seed, flags, max_new) + extra + prompt


def seeds():
    gguf_models = [FIXTURES / "tiny-gpt2.gguf", FIXTURES / "tiny-llama.gguf"]
    yield "gguf_reader", "tiny.gguf", (FIXTURES / "gguf" / "tiny.gguf").read_bytes()
    for path in gguf_models:
        for i, seed in enumerate(gguf_seeds(path, keep_tensors=True)):
            yield "gguf_reader", f"{path.stem}-{i}.gguf", seed
        yield "tokenizer_gguf", f"{path.stem}.gguf", next(gguf_seeds(path, keep_tensors=False))
    for path in [FIXTURES / "spm-llama.gguf", FIXTURES / "spm-gemma.gguf"]:  # SentencePiece
        yield "tokenizer_gguf", f"{path.stem}.gguf", next(gguf_seeds(path, keep_tensors=False))

    for rel in ["tiny-gpt2/model.safetensors", "tiny-llama/model.safetensors",
                "tiny-gpt2-f16/model.safetensors"]:
        yield "safetensors", rel.replace("/", "-"), safetensors_seed(FIXTURES / rel)
    for shard in sorted((FIXTURES / "tiny-gpt2-bf16-sharded").glob("*.safetensors"))[:1]:
        yield "safetensors", "bf16-" + shard.name, safetensors_seed(shard)

    for model in ["tiny-gpt2", "tiny-llama"]:
        yield "config_json", f"{model}.json", b"\xff" + (FIXTURES / model / "config.json").read_bytes()
    for rel in ["tiny-gpt2/tokenizer.json", "tiny-llama3-tokenizer/tokenizer.json",
                "tiny-gpt4o-tokenizer/tokenizer.json", "spm-llama/tokenizer.json",
                "spm-llama/tokenizer-metaspace.json", "spm-gemma/tokenizer.json"]:
        yield "tokenizer_json", rel.replace("/", "-"), (FIXTURES / rel).read_bytes()

    for which, rel in enumerate(["tiny-gpt2/tokenizer_cases.json", "tiny-llama3-tokenizer/tokenizer_cases.json",
                                 "tiny-gpt4o-tokenizer/tokenizer_cases.json"]):
        for i, case in enumerate(json.loads((FIXTURES / rel).read_text())):
            text = case["text"].encode("utf-8", "surrogatepass")
            yield "tokenizer_encode", f"{which}-{i}", bytes([which | 4]) + text
    yield "tokenizer_encode", "smollm-digits", bytes([3]) + b"12345 abc 3.14"
    yield "tokenizer_encode", "invalid-utf8", bytes([0]) + b"\xff\xfe ok \xc0\xaf\xed\xa0\x80"
    # The SentencePiece tokenizers (index 4 + k: bits 0-1 and 4-6 of the flag byte), on the
    # first strings of their conformance cases, special tokens parsed and not.
    strings = json.loads((FIXTURES / "spm-cases" / "strings.json").read_text())
    for k in range(5):
        index = 4 + k
        for i, text in enumerate(strings[:40]):
            flag = (index & 3) | ((index >> 2) << 4) | (4 if i % 2 else 0)
            yield "tokenizer_encode", f"spm{k}-{i}", bytes([flag]) + text.encode("utf-8")

    chat = json.loads((FIXTURES / "chat_templates.json").read_text())
    for i, case in enumerate(chat["cases"]):
        fields = [chat["templates"][case["template"]], case["bos_token"]]
        for m in case["messages"]:
            fields += [m["role"], m["content"]]
        yield "chat_template", f"case-{i}", bytes([int(case["add_generation_prompt"])]) + \
            b"\0".join(f.encode() for f in fields)

    # jinja: flag, template, NUL, messages JSON, NUL, extra context JSON; the real templates
    # with a few conversations and options each, and the engine's hand-written cases.
    cases = json.loads((FIXTURES / "jinja_cases.json").read_text())
    seen = set()
    for i, case in enumerate(cases["cases"]):
        key = (case["template"], case["conversation"] % 4, len(case["extra"]) > 0)
        if key in seen:
            continue
        seen.add(key)
        messages = cases["conversations"][case["conversation"]]
        yield "jinja", f"case-{i}", bytes([int(case["add_generation_prompt"])]) + b"\0".join(
            [cases["templates"][case["template"]].encode(), json.dumps(messages).encode(),
             json.dumps(case["extra"]).encode()])
    for case in cases["engine_cases"]:
        yield "jinja", "engine-" + case["name"], b"\1" + b"\0".join(
            [case["template_text"].encode(), json.dumps(case["messages"]).encode(), json.dumps(case["extra"]).encode()])

    yield "request_options", "greedy", request_seed(0.0, 0, 1.0, 0.0, 1.0, 0.0, 0.0, 0, 1, 4)
    yield "request_options", "sampled", request_seed(0.8, 40, 0.95, 0.05, 1.1, 0.2, 0.3, 42, 1, 4)
    yield "request_options", "stops", request_seed(
        1.0, 5, 0.5, 0.0, 1.3, 0.0, 0.0, 7, 1 | (1 << 1) | (1 << 3), 4,
        extra=struct.pack("<i", 10) + b"\x02 t")
    yield "request_options", "ids", request_seed(
        0.5, 0, 1.0, 0.1, 1.0, 1.0, 1.0, 3, 0x21, 3, extra=b"\x03" + struct.pack("<iii", 1, 2, 3), prompt=b"")
    yield "request_options", "bad-top-p", request_seed(0.5, 0, 0.0, 0.0, 1.0, 0.0, 0.0, 0, 1, 4)

    # grammar: mode byte (bit 0: JSON Schema), the source, NUL, a text to match.
    yield "grammar", "gbnf", b"\0" + rb"""root ::= greeting " " ( "world" | [a-z]{2,4} )* "\u00e9"?
greeting ::= "hello" | "hi" # comment
""" + b"\0hello world abc\xc3\xa9"
    yield "grammar", "gbnf-classes", b"\0" + rb'root ::= [^"\\x00-\x1F]+ [0-9]{1,3} .' + b"\0ab12\xe2\x82\xac"
    yield "grammar", "schema", b"\1" + json.dumps({
        "$defs": {"n": {"type": "object", "properties": {"v": {"type": "integer"},
                                                         "c": {"type": "array", "items": {"$ref": "#/$defs/n"}}}}},
        "type": "object", "properties": {"a": {"enum": ["x", 1, None]}, "t": {"$ref": "#/$defs/n"},
                                         "s": {"type": "string", "maxLength": 3}},
        "required": ["a"], "additionalProperties": {"type": "boolean"}}).encode() + b'\0{"a": 1, "t": {"v": 2}}'


def chat_output_seeds():
    # chat_output: format flags (tool-call syntax in bits 0-2, reasoning 3, thought opened 4,
    # [THINK] markers 5, max_tool_calls 6-7), a cut byte, the reply: every fixture case.
    formats = ["none", "hermes", "llama3", "mistral", "granite", "deepseek"]
    cases = json.loads((FIXTURES / "chat_output_cases.json").read_text())["cases"]
    for i, case in enumerate(cases):
        f = case["format"]
        flags = formats.index(f["tool_calls"]) | (8 if f["reasoning"] else 0) | \
            (16 if f["thinking_open"] else 0) | (32 if f.get("thought_markers") == "mistral" else 0) | \
            (min(f["max_tool_calls"], 3) << 6)
        yield "chat_output", f"case-{i}", bytes([flags, i % 16]) + case["text"].encode()


def main():
    out = Path(sys.argv[1])
    for target, name, data in list(seeds()) + list(chat_output_seeds()):
        (out / target).mkdir(parents=True, exist_ok=True)
        (out / target / name).write_bytes(data)


if __name__ == "__main__":
    main()
