#!/usr/bin/env python3
"""Copy a GGUF file with metadata keys set, through gguf-py's own copier (gguf_new_metadata):

    .venv/bin/python scripts/gguf-with-keys.py IN.gguf OUT.gguf KEY=TYPE:VALUE ...

TYPE is str, f32 or u32. Used to give llama.cpp the keys its converter leaves out, e.g.
Llama's YaRN (docs/MODELS.md, "Agreement with llama.cpp"):

    .venv/bin/python scripts/gguf-with-keys.py tests/fixtures/tiny-llama-yarn.gguf /tmp/yarn.gguf \\
        llama.rope.scaling.type=str:yarn llama.rope.scaling.factor=f32:4 \\
        llama.rope.scaling.original_context_length=u32:16
"""
import os
import sys

import gguf

sys.path.insert(0, os.path.join(os.path.dirname(gguf.__file__), "scripts"))
from gguf_new_metadata import MetadataDetails, copy_with_new_metadata  # noqa: E402

TYPES = {"str": (gguf.GGUFValueType.STRING, str), "f32": (gguf.GGUFValueType.FLOAT32, float),
         "u32": (gguf.GGUFValueType.UINT32, int)}


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    source, out, pairs = sys.argv[1], sys.argv[2], sys.argv[3:]
    reader = gguf.GGUFReader(source)
    arch = reader.fields["general.architecture"].contents()
    keys = {}
    for pair in pairs:
        key, typed = pair.split("=", 1)
        kind, value = typed.split(":", 1)
        value_type, parse = TYPES[kind]
        keys[key] = MetadataDetails(value_type, parse(value))
    copy_with_new_metadata(reader, gguf.GGUFWriter(out, arch=arch), keys, [])


if __name__ == "__main__":
    main()
