#include "reference_fixture.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "loaders/safetensors.h"

namespace kestrel::testing {

std::vector<ReferencePrompt> load_reference(const std::filesystem::path& dir, int vocab) {
  std::ifstream in(dir / "reference.json");
  if (!in) throw std::runtime_error("missing " + (dir / "reference.json").string());
  nlohmann::json doc = nlohmann::json::parse(in);
  SafetensorsFile logits(dir / "reference.safetensors");
  std::vector<ReferencePrompt> out;
  int i = 0;
  for (const auto& p : doc.at("prompts")) {
    ReferencePrompt r;
    r.text = p.at("text").get<std::string>();
    r.ids = p.at("ids").get<std::vector<int32_t>>();
    r.greedy = p.at("greedy").get<std::vector<int32_t>>();
    const auto& t = logits.tensors().at("logits." + std::to_string(i++));
    if (t.dtype != DType::f32 || t.shape.size() != 2 || t.shape[0] != static_cast<int64_t>(r.ids.size()) ||
        t.shape[1] != vocab)
      throw std::runtime_error("reference logits of prompt " + std::to_string(i - 1) + " have shape " +
                               t.shape_string());
    const float* f = static_cast<const float*>(t.data);
    r.logits.assign(f, f + t.numel());
    out.push_back(std::move(r));
  }
  return out;
}

GenerationRequest greedy_request(const ReferencePrompt& p) {
  GenerationRequest r;
  r.prompt_ids = p.ids;
  r.stop.max_new_tokens = static_cast<int>(p.greedy.size());
  r.stop.stop_at_eos = false;
  return r;
}

}  // namespace kestrel::testing
