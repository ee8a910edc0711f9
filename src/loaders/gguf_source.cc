#include "loaders/gguf_source.h"

#include <fstream>

namespace kestrel {

GgufSource::GgufSource(const GgufFile& file) : describe_(file.path().string()) {
  for (const GgufTensor& g : file.tensors()) {
    SourceTensor t;
    t.name = g.name;
    t.shape = g.shape;
    t.data = g.data;
    t.bytes = static_cast<size_t>(g.byte_size);
    t.file = describe_;
    if (std::optional<DType> dtype = ggml_type_to_dtype(g.type)) {
      t.dtype = *dtype;
    } else {
      t.block_type = g.type;
    }
    tensors_.emplace(g.name, std::move(t));
  }
}

const SourceTensor* GgufSource::find(std::string_view name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

bool is_gguf_file(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return false;
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && magic[0] == 'G' && magic[1] == 'G' && magic[2] == 'U' && magic[3] == 'F';
}

}  // namespace kestrel
