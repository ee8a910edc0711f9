// The SentencePiece parts of a Hugging Face tokenizer.json (BPE with byte_fallback), in the
// forms transformers' converters write them:
//   Llama-2 (legacy):  normalizer Sequence[Prepend("▁"), Replace(" ", "▁")], no pre-tokenizer
//   Llama / Mistral (legacy false): Metaspace("▁", prepend_scheme, split false) pre-tokenizer
//   Gemma:             normalizer Replace(" ", "▁"), pre-tokenizer Split(" ") (a no-op: no
//                      space is left after the Replace)
//   decoder:           Sequence[Replace("▁", " "), ByteFallback, Fuse, Strip(" ", 1, 0)?]
#include <nlohmann/json.hpp>

#include "tokenizer/file_fields.h"
#include "tokenizer/sentencepiece.h"
#include "tokenizer/tokenizer_files.h"

namespace kestrel::tokenizer {
namespace {

using nlohmann::json;
using Prefix = SentencePieceOptions::Prefix;

// What the normalizer does to each segment of text.
struct Normalizer {
  bool escapes = false;  // Replace(" ", "▁")
  bool prepends = false; // Prepend("▁")
};

// A Replace whose pattern is the plain string `from` and whose content is `to`.
bool is_replace(const json& node, std::string_view from, std::string_view to) {
  if (type_of(node) != "Replace") return false;
  auto pattern = node.find("pattern");
  auto content = node.find("content");
  if (pattern == node.end() || !pattern->is_object() || content == node.end()) return false;
  auto string = pattern->find("String");
  return string != pattern->end() && *string == from && *content == to;
}

Normalizer read_normalizer(const FileContext& file, const json& root) {
  Normalizer n;
  auto it = root.find("normalizer");
  if (it == root.end() || it->is_null()) return n;
  std::vector<const json*> steps;
  if (type_of(*it) == "Sequence") {
    const json& list = member(file, *it, "normalizers", "normalizer.normalizers");
    if (!list.is_array()) file.format("normalizer.normalizers: expected an array");
    for (const json& step : list) steps.push_back(&step);
  } else {
    steps.push_back(&*it);
  }
  for (const json* step : steps) {
    if (is_replace(*step, " ", kMetaspace)) {
      n.escapes = true;
    } else if (type_of(*step) == "Prepend" && step->value("prepend", json()) == kMetaspace) {
      n.prepends = true;
    } else {
      file.fail(ErrorCategory::unsupported,
                "normalizer step " + excerpt(*step) +
                    " is not supported with byte_fallback (expected Prepend(\"▁\") and "
                    "Replace(\" \", \"▁\"))");
    }
  }
  return n;
}

// Metaspace's prefix rule: prepend_scheme, or the older add_prefix_space flag.
Prefix metaspace_prefix(const FileContext& file, const json& node) {
  auto scheme = node.find("prepend_scheme");
  if (scheme == node.end() || scheme->is_null()) {
    return flag(file, node, "add_prefix_space", true, "pre_tokenizer.add_prefix_space")
               ? Prefix::every_unless_space
               : Prefix::none;
  }
  if (*scheme == "first") return Prefix::first_unless_space;
  if (*scheme == "always") return Prefix::every_unless_space;
  if (*scheme == "never") return Prefix::none;
  file.format("pre_tokenizer.prepend_scheme: expected first, always or never, got " + excerpt(*scheme));
}

void read_decoder(const FileContext& file, const json& root, TokenizerSpec& spec) {
  auto unsupported = [&](const json& node) {
    file.fail(ErrorCategory::unsupported,
              "decoder " + excerpt(node) +
                  " is not supported with byte_fallback (expected Sequence[Replace(\"▁\", \" \"), "
                  "ByteFallback, Fuse] and optionally Strip(\" \", 1, 0))");
  };
  const json none;
  auto it = root.find("decoder");
  const json& node = it == root.end() ? none : *it;
  if (type_of(node) != "Sequence") unsupported(node);
  const json& steps = member(file, node, "decoders", "decoder.decoders");
  if (!steps.is_array() || steps.size() < 3 || steps.size() > 4 ||
      !is_replace(steps[0], kMetaspace, " ") || type_of(steps[1]) != "ByteFallback" ||
      type_of(steps[2]) != "Fuse") {
    unsupported(node);
  }
  spec.sentencepiece.strip = SentencePieceOptions::Strip::none;
  if (steps.size() == 4) {
    const json& strip = steps[3];
    if (type_of(strip) != "Strip" || strip.value("content", json()) != " " ||
        strip.value("start", json()) != 1 || strip.value("stop", json()) != 0) {
      unsupported(node);
    }
    spec.sentencepiece.strip = SentencePieceOptions::Strip::text;
  }
}

}  // namespace

void read_sentencepiece_json(const FileContext& file, const json& root, TokenizerSpec& spec) {
  const Normalizer normalizer = read_normalizer(file, root);
  bool escapes = normalizer.escapes;
  Prefix prefix = normalizer.prepends ? Prefix::every_segment : Prefix::none;

  auto it = root.find("pre_tokenizer");
  if (it != root.end() && !it->is_null()) {
    const json& node = *it;
    const std::string type = type_of(node);
    if (type == "Metaspace" && node.value("replacement", json()) == kMetaspace &&
        !flag(file, node, "split", true, "pre_tokenizer.split") && !normalizer.prepends) {
      escapes = true;
      prefix = metaspace_prefix(file, node);
    } else if (type == "Split" && normalizer.escapes && node.contains("pattern") &&
               node["pattern"].value("String", json()) == " ") {
      // Splits on spaces, of which the normalizer has left none.
    } else {
      file.fail(ErrorCategory::unsupported,
                "pre_tokenizer " + excerpt(node) +
                    " is not supported with byte_fallback (expected none, Metaspace with split "
                    "false, or a Split on \" \" after the normalizer replaced every space)");
    }
  }
  if (!escapes) {
    file.fail(ErrorCategory::unsupported,
              "model.byte_fallback: neither the normalizer nor the pre-tokenizer writes spaces as "
              "\"▁\" (not a SentencePiece tokenizer Kestrel knows)");
  }
  spec.sentencepiece.prefix = prefix;
  read_decoder(file, root, spec);
}

}  // namespace kestrel::tokenizer
