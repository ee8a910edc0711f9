// Fuzz target: encode / decode of arbitrary bytes with the fixture tokenizers (GPT-2,
// Llama-3 style, o200k (GPT-4o) style and a SmolLM2-style spec: every pre-tokenizer kind; then the SentencePiece
// ones: Llama and Gemma from GGUF, Llama legacy, Llama Metaspace and Gemma tokenizer.json).
//   input[0]: which tokenizer (bits 0-1, then bits 4-6 above them), parse_special (bit 2),
//             skip_special (bit 3)
//   the rest: the text to encode, and read again as little-endian int32 ids to decode
// Checks decode(encode(s)) == s (after the BOS a tokenizer adds): every byte survives, for
// the byte-level tokenizers, which hold all 256 byte tokens and add no prefix space, and
// for the Gemma ones (byte fallback, no "▁" prefix) when special tokens are not parsed and
// the text holds no "▁" of its own.
#include <array>
#include <cstring>
#include <span>
#include <vector>

#include "fuzz_support.h"
#include "kestrel/tokenizer.h"

namespace {

struct Tokenizers {
  std::vector<kestrel::Tokenizer> all;
  Tokenizers() {
    const std::filesystem::path fixtures = KESTREL_FIXTURE_DIR;
    all.push_back(kestrel::Tokenizer::from_directory(fixtures / "tiny-gpt2"));
    all.push_back(kestrel::Tokenizer::from_directory(fixtures / "tiny-llama3-tokenizer"));
    all.push_back(kestrel::Tokenizer::from_directory(fixtures / "tiny-gpt4o-tokenizer"));
    // The GPT-2 vocab with SmolLM2's pre-tokenizer (single digits).
    kestrel::TokenizerSpec spec;
    const kestrel::Tokenizer& gpt2 = all.front();
    for (int32_t id = 0; id < gpt2.vocab_size(); ++id) spec.vocab.push_back(gpt2.token_text(id));
    spec.pre_tokenizer = kestrel::PreTokenizer::smollm;
    all.push_back(kestrel::Tokenizer::from_spec(std::move(spec), "smollm-style spec"));
    byte_level = all.size();
    all.push_back(kestrel::Tokenizer::from_gguf_file(fixtures / "spm-llama.gguf"));
    all.push_back(kestrel::Tokenizer::from_gguf_file(fixtures / "spm-gemma.gguf"));
    all.push_back(kestrel::Tokenizer::from_directory(fixtures / "spm-llama"));
    all.push_back(kestrel::Tokenizer::from_json_file(fixtures / "spm-llama" / "tokenizer-metaspace.json"));
    all.push_back(kestrel::Tokenizer::from_directory(fixtures / "spm-gemma"));
    gemma = {byte_level + 1, byte_level + 4};
  }
  size_t byte_level = 0;  // the first `byte_level` are byte-level BPE
  std::array<size_t, 2> gemma{};
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Tokenizers tokenizers;
  if (size == 0) return 0;
  const uint8_t flags = data[0];
  const size_t which = ((flags & 3) | ((flags >> 4) & 7) << 2) % tokenizers.all.size();
  const kestrel::Tokenizer& tok = tokenizers.all[which];
  const bool parse_special = (flags & 4) != 0;
  const bool skip_special = (flags & 8) != 0;
  const std::string_view text = kestrel::fuzz::as_text(data + 1, size - 1);

  std::vector<int32_t> ids = tok.encode(text, parse_special);
  std::span<const int32_t> body(ids);
  if (tok.add_bos() && !body.empty() && body.front() == tok.bos_id()) body = body.subspan(1);
  // SentencePiece decodes a "▁" in the text as the space it stands for.
  const bool lossless = which < tokenizers.byte_level ||
                        (!parse_special && (which == tokenizers.gemma[0] || which == tokenizers.gemma[1]) &&
                         text.find("\xe2\x96\x81") == std::string_view::npos);
  if (lossless && tok.decode(body) != text) std::abort();  // a byte was lost or changed

  // The same bytes as ids: out-of-range ids must be refused with an Error.
  std::vector<int32_t> raw((size - 1) / 4);
  if (!raw.empty()) std::memcpy(raw.data(), data + 1, raw.size() * 4);
  kestrel::fuzz::expect_only_kestrel_errors([&] { (void)tok.decode(raw, skip_special); });
  return 0;
}
