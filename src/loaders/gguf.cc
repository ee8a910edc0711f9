#include "loaders/gguf.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <type_traits>

#include "kestrel/error.h"

namespace kestrel {

static_assert(std::endian::native == std::endian::little,
              "the GGUF reader maps little-endian files directly");

namespace {

constexpr uint64_t kDefaultAlignment = 32;
constexpr uint32_t kMaxDims = 4;
constexpr int kMaxArrayDepth = 8;
constexpr uint32_t kValueTypeCount = 13;
// The fewest bytes one metadata entry (key length, value type, a 1-byte value) and one
// tensor info (name length, n_dims, type, offset) can take; counts that could not fit in
// the bytes left are rejected before anything is allocated.
constexpr uint64_t kMinEntryBytes = 8 + 4 + 1;
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 4 + 8;
// Vectors for strings and nested arrays grow as elements parse instead of trusting a
// count up front (each element takes several times its smallest encoding in memory).
constexpr uint64_t kMaxReserve = 1 << 16;

// Bytes of the smallest encoding of one array element of `type`.
uint64_t min_element_bytes(GgufValueType type) {
  switch (type) {
    case GgufValueType::u8:
    case GgufValueType::i8:
    case GgufValueType::boolean: return 1;
    case GgufValueType::u16:
    case GgufValueType::i16: return 2;
    case GgufValueType::u32:
    case GgufValueType::i32:
    case GgufValueType::f32: return 4;
    case GgufValueType::u64:
    case GgufValueType::i64:
    case GgufValueType::f64:
    case GgufValueType::string: return 8;  // the length
    case GgufValueType::array: return 12;  // element type + count
  }
  return 1;
}

std::string quote_name(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[u >> 4];
      out += hex[u & 15];
    } else {
      out += c;
    }
  }
  return out + "'";
}

std::string dims_string(const std::vector<uint64_t>& ne) {
  std::string s = "[";
  for (size_t i = 0; i < ne.size(); ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
  return s + "]";
}

template <class T>
constexpr bool is_integer_v = std::is_integral_v<T> && !std::is_same_v<T, bool>;

}  // namespace

const char* to_string(GgufValueType type) noexcept {
  static constexpr const char* names[] = {"u8",  "i8",     "u16",    "i16",   "u32",
                                          "i32", "f32",    "bool",   "string", "array",
                                          "u64", "i64",    "f64"};
  auto i = static_cast<uint32_t>(type);
  return i < kValueTypeCount ? names[i] : "?";
}

size_t GgufArray::size() const {
  return std::visit([](const auto& v) { return v.size(); }, items);
}

// --- parsing ------------------------------------------------------------------------------

// Reads the file front to back. `context_` names what is being read ("metadata key
// 'general.name'", "tensor 'output.weight'") for the messages.
class GgufParser {
 public:
  explicit GgufParser(GgufFile& file)
      : file_(file), data_(file.map_.data()), size_(file.map_.size()) {}

  void parse() {
    read_header();
    for (uint64_t i = 0; i < kv_count_; ++i) read_metadata_entry(i);
    index_metadata();
    reading_ = true;
    context_ = "tensor infos";
    check_count(tensor_count_, kMinTensorInfoBytes, "tensor count");
    for (uint64_t i = 0; i < tensor_count_; ++i) read_tensor_info(i);
    index_tensors();
    place_data_section();
    place_tensors();
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    std::string where = reading_ ? " (at byte " + std::to_string(pos_) + ")" : "";
    throw Error(ErrorCategory::format, file_.path().string() + ": " + context_ + ": " + what + where);
  }

  uint64_t remaining() const { return size_ - pos_; }

  void need(uint64_t bytes, const char* what) const {
    if (bytes > remaining()) {
      fail("truncated: " + std::string(what) + " needs " + std::to_string(bytes) +
           " bytes but only " + std::to_string(remaining()) + " are left in the file");
    }
  }

  // Rejects a count of items that could not fit in the bytes left.
  void check_count(uint64_t count, uint64_t min_bytes, const std::string& what) const {
    if (count > remaining() / min_bytes) {
      fail(what + " " + std::to_string(count) + " cannot fit in the " +
           std::to_string(remaining()) + " bytes left (each takes at least " +
           std::to_string(min_bytes) + " bytes); the file is truncated or corrupt");
    }
  }

  template <class T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  std::string read_string(const char* what) {
    auto length = read<uint64_t>(what);
    if (length > remaining()) {
      fail(std::string(what) + " length " + std::to_string(length) + " exceeds the " +
           std::to_string(remaining()) + " bytes left in the file");
    }
    std::string s(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(length));
    pos_ += length;
    return s;
  }

  GgufValueType read_value_type(const char* what) {
    auto raw = read<uint32_t>(what);
    if (raw >= kValueTypeCount) fail("unknown " + std::string(what) + " " + std::to_string(raw));
    return static_cast<GgufValueType>(raw);
  }

  void read_header() {
    context_ = "header";
    if (size_ < 4 || std::memcmp(data_, "GGUF", 4) != 0) {
      std::string got;
      for (size_t i = 0; i < std::min<size_t>(size_, 4); ++i)
        got += std::string(i ? " " : "") + std::to_string(data_[i]);
      fail("not a GGUF file: expected magic 'GGUF', found " +
           (size_ < 4 ? "only " + std::to_string(size_) + " bytes" : "bytes [" + got + "]"));
    }
    pos_ = 4;
    const auto version = read<uint32_t>("version");
    if (version != 0 && (version & 0xffffu) == 0) {
      throw Error(ErrorCategory::unsupported,
                  file_.path().string() + ": big-endian GGUF files are not supported (version " +
                      std::to_string(__builtin_bswap32(version)) + " stored big-endian)");
    }
    if (version == 0) fail("invalid GGUF version 0");
    if (version == 1 || version > 3) {
      throw Error(ErrorCategory::unsupported,
                  file_.path().string() + ": GGUF version " + std::to_string(version) +
                      " is not supported (Kestrel reads versions 2 and 3)");
    }
    file_.version_ = version;
    tensor_count_ = read<uint64_t>("tensor count");
    kv_count_ = read<uint64_t>("metadata count");
    check_count(tensor_count_, kMinTensorInfoBytes, "tensor count");
    check_count(kv_count_, kMinEntryBytes, "metadata count");
  }

  void read_metadata_entry(uint64_t index) {
    context_ = "metadata entry #" + std::to_string(index);
    std::string key = read_string("key");
    context_ = "metadata key " + quote_name(key);
    const GgufValueType type = read_value_type("value type");
    file_.metadata_.push_back({std::move(key), read_value(type, 0)});
  }

  GgufValue read_value(GgufValueType type, int depth) {
    switch (type) {
      case GgufValueType::u8: return read<uint8_t>("u8 value");
      case GgufValueType::i8: return read<int8_t>("i8 value");
      case GgufValueType::u16: return read<uint16_t>("u16 value");
      case GgufValueType::i16: return read<int16_t>("i16 value");
      case GgufValueType::u32: return read<uint32_t>("u32 value");
      case GgufValueType::i32: return read<int32_t>("i32 value");
      case GgufValueType::f32: return read<float>("f32 value");
      case GgufValueType::boolean: return read<uint8_t>("bool value") != 0;
      case GgufValueType::string: return read_string("string value");
      case GgufValueType::array: return read_array(depth + 1);
      case GgufValueType::u64: return read<uint64_t>("u64 value");
      case GgufValueType::i64: return read<int64_t>("i64 value");
      case GgufValueType::f64: return read<double>("f64 value");
    }
    fail("unknown value type");
  }

  // Numbers are copied in bulk: the count was checked against the bytes left.
  template <class T>
  GgufArray read_numbers(uint64_t count) {
    std::vector<T> v(static_cast<size_t>(count));
    if (count) std::memcpy(v.data(), data_ + pos_, count * sizeof(T));
    pos_ += count * sizeof(T);
    return {std::move(v)};
  }

  GgufArray read_array(int depth) {
    if (depth > kMaxArrayDepth) {
      fail("arrays nested more than " + std::to_string(kMaxArrayDepth) + " levels deep");
    }
    const GgufValueType type = read_value_type("array element type");
    const auto count = read<uint64_t>("array length");
    check_count(count, min_element_bytes(type), std::string("array of ") + to_string(type) +
                                                    " with length");
    switch (type) {
      case GgufValueType::u8: return read_numbers<uint8_t>(count);
      case GgufValueType::i8: return read_numbers<int8_t>(count);
      case GgufValueType::u16: return read_numbers<uint16_t>(count);
      case GgufValueType::i16: return read_numbers<int16_t>(count);
      case GgufValueType::u32: return read_numbers<uint32_t>(count);
      case GgufValueType::i32: return read_numbers<int32_t>(count);
      case GgufValueType::f32: return read_numbers<float>(count);
      case GgufValueType::u64: return read_numbers<uint64_t>(count);
      case GgufValueType::i64: return read_numbers<int64_t>(count);
      case GgufValueType::f64: return read_numbers<double>(count);
      case GgufValueType::boolean: {
        std::vector<bool> v(static_cast<size_t>(count));
        for (uint64_t i = 0; i < count; ++i) v[i] = data_[pos_ + i] != 0;
        pos_ += count;
        return {std::move(v)};
      }
      case GgufValueType::string: {
        std::vector<std::string> v;
        v.reserve(std::min(count, kMaxReserve));
        for (uint64_t i = 0; i < count; ++i) v.push_back(read_string("string element"));
        return {std::move(v)};
      }
      case GgufValueType::array: {
        std::vector<GgufArray> v;
        v.reserve(std::min(count, kMaxReserve));
        for (uint64_t i = 0; i < count; ++i) v.push_back(read_array(depth + 1));
        return {std::move(v)};
      }
    }
    fail("unknown array element type");
  }

  void index_metadata() {
    reading_ = false;
    auto& index = file_.metadata_index_;
    for (size_t i = 0; i < file_.metadata_.size(); ++i) {
      if (!index.emplace(file_.metadata_[i].key, i).second) {
        context_ = "metadata key " + quote_name(file_.metadata_[i].key);
        fail("duplicate metadata key");
      }
    }
  }

  void read_tensor_info(uint64_t index) {
    context_ = "tensor info #" + std::to_string(index);
    GgufTensor t;
    t.name = read_string("tensor name");
    context_ = "tensor " + quote_name(t.name);
    const auto n_dims = read<uint32_t>("n_dims");
    if (n_dims > kMaxDims) {
      fail("n_dims " + std::to_string(n_dims) + " exceeds the maximum of " +
           std::to_string(kMaxDims));
    }
    std::vector<uint64_t> raw_ne(n_dims);
    for (auto& d : raw_ne) d = read<uint64_t>("dimension");
    int64_t count = 1;
    for (uint64_t d : raw_ne) {
      if (d > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
          __builtin_mul_overflow(count, static_cast<int64_t>(d), &count)) {
        fail("dimensions " + dims_string(raw_ne) + " overflow a 64-bit element count");
      }
    }
    t.ne.assign(raw_ne.begin(), raw_ne.end());
    t.shape.assign(t.ne.rbegin(), t.ne.rend());
    t.element_count = count;

    const auto raw_type = read<uint32_t>("ggml type");
    const std::optional<GgmlType> type = ggml_type_from_raw(raw_type);
    if (!type) {
      fail("ggml type " + ggml_type_name(raw_type) +
           " is not supported (Kestrel reads F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, "
           "Q2_K ... Q6_K, IQ4_NL, IQ4_XS and MXFP4)");
    }
    t.type = *type;
    if (t.row_length() % ggml_block_size(t.type) != 0) {
      fail("row length ne[0] = " + std::to_string(t.row_length()) + " is not a multiple of the " +
           to_string(t.type) + " block size " + std::to_string(ggml_block_size(t.type)));
    }
    const std::optional<uint64_t> bytes = ggml_row_bytes(t.type, count);
    if (!bytes) fail("byte size of " + dims_string(raw_ne) + " overflows 64 bits");
    t.byte_size = *bytes;
    t.offset = read<uint64_t>("tensor data offset");
    file_.tensors_.push_back(std::move(t));
  }

  void index_tensors() {
    reading_ = false;
    auto& index = file_.tensor_index_;
    for (size_t i = 0; i < file_.tensors_.size(); ++i) {
      if (!index.emplace(file_.tensors_[i].name, i).second) {
        context_ = "tensor " + quote_name(file_.tensors_[i].name);
        fail("duplicate tensor name");
      }
    }
  }

  void place_data_section() {
    context_ = "metadata key 'general.alignment'";
    uint64_t alignment = kDefaultAlignment;
    if (const GgufValue* v = file_.find("general.alignment")) {
      bool ok = std::visit(
          [&](const auto& x) {
            using T = std::decay_t<decltype(x)>;
            if constexpr (is_integer_v<T>) {
              if (x <= 0) return false;
              alignment = static_cast<uint64_t>(x);
              return true;
            } else {
              return false;
            }
          },
          *v);
      if (!ok || !std::has_single_bit(alignment)) {
        fail("alignment must be a nonzero power of two integer, found " + describe(*v));
      }
    }
    file_.alignment_ = alignment;
    context_ = "data section";
    uint64_t start = pos_;
    if (uint64_t rem = pos_ % alignment; rem != 0 && __builtin_add_overflow(pos_, alignment - rem, &start)) {
      fail("data section offset overflows");
    }
    if (start > size_ && !file_.tensors_.empty()) {
      fail("data section would start at byte " + std::to_string(start) + ", past the end of the " +
           std::to_string(size_) + "-byte file");
    }
    file_.data_offset_ = start;
  }

  std::string describe(const GgufValue& v) const {
    return std::visit(
        [](const auto& x) -> std::string {
          using T = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<T, bool>) return x ? "true" : "false";
          else if constexpr (std::is_arithmetic_v<T>) return std::to_string(x);
          else if constexpr (std::is_same_v<T, std::string>) return "string " + quote_name(x);
          else return "an array";
        },
        v);
  }

  void place_tensors() {
    const uint64_t start = file_.data_offset_;
    const uint64_t section = start <= size_ ? size_ - start : 0;
    for (GgufTensor& t : file_.tensors_) {
      context_ = "tensor " + quote_name(t.name);
      if (t.offset % file_.alignment_ != 0) {
        fail("data offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
             std::to_string(file_.alignment_));
      }
      if (t.offset > section || t.byte_size > section - t.offset) {
        fail("data at offset " + std::to_string(t.offset) + " (" + std::to_string(t.byte_size) +
             " bytes) runs past the end of the " + std::to_string(section) +
             "-byte data section; the file may be truncated");
      }
      t.data = data_ + start + t.offset;
    }
    // Tensors may come in any order, but their bytes must not overlap.
    std::vector<const GgufTensor*> by_offset;
    for (const GgufTensor& t : file_.tensors_)
      if (t.byte_size > 0) by_offset.push_back(&t);
    std::sort(by_offset.begin(), by_offset.end(),
              [](const GgufTensor* a, const GgufTensor* b) { return a->offset < b->offset; });
    for (size_t i = 1; i < by_offset.size(); ++i) {
      const GgufTensor& prev = *by_offset[i - 1];
      const GgufTensor& cur = *by_offset[i];
      if (prev.offset + prev.byte_size > cur.offset) {
        context_ = "tensor " + quote_name(cur.name);
        fail("data at offset " + std::to_string(cur.offset) + " overlaps tensor " +
             quote_name(prev.name) + " at offset " + std::to_string(prev.offset));
      }
    }
  }

  GgufFile& file_;
  const uint8_t* data_;
  uint64_t size_;
  uint64_t pos_ = 0;
  uint64_t tensor_count_ = 0;
  uint64_t kv_count_ = 0;
  std::string context_;
  bool reading_ = true;  // messages give the byte offset while the header is being read
};

GgufFile::GgufFile(const std::filesystem::path& path) : map_(path) {
  GgufParser(*this).parse();
}

// --- metadata -----------------------------------------------------------------------------

const GgufValue* GgufFile::find(std::string_view key) const {
  auto it = metadata_index_.find(key);
  return it == metadata_index_.end() ? nullptr : &metadata_[it->second].value;
}

const GgufArray* GgufFile::find_array(std::string_view key) const {
  const GgufValue* v = find(key);
  return v ? std::get_if<GgufArray>(v) : nullptr;
}

void GgufFile::fail_key(std::string_view key, const std::string& what) const {
  throw Error(ErrorCategory::format,
              path().string() + ": metadata key " + quote_name(key) + " " + what);
}

namespace {

std::string type_phrase(const GgufValue& v) {
  if (const auto* a = std::get_if<GgufArray>(&v))
    return std::string("is an array of ") + to_string(a->element_type());
  return std::string("is a ") + to_string(value_type(v));
}

// Converts one integer to int64, or nullopt when it does not fit.
template <class T>
std::optional<int64_t> to_int64(T x) {
  if constexpr (std::is_same_v<T, uint64_t>) {
    if (x > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
  }
  return static_cast<int64_t>(x);
}

}  // namespace

std::optional<int64_t> GgufFile::get_int(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  return std::visit(
      [&](const auto& x) -> int64_t {
        using T = std::decay_t<decltype(x)>;
        if constexpr (is_integer_v<T>) {
          if (auto r = to_int64(x)) return *r;
          fail_key(key, "value " + std::to_string(x) + " does not fit in int64");
        } else {
          fail_key(key, type_phrase(*v) + ", expected an integer");
        }
      },
      *v);
}

std::optional<double> GgufFile::get_float(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  return std::visit(
      [&](const auto& x) -> double {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_floating_point_v<T> || is_integer_v<T>) {
          return static_cast<double>(x);
        } else {
          fail_key(key, type_phrase(*v) + ", expected a number");
        }
      },
      *v);
}

std::optional<bool> GgufFile::get_bool(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (const bool* b = std::get_if<bool>(v)) return *b;
  fail_key(key, type_phrase(*v) + ", expected a bool");
}

std::optional<std::string> GgufFile::get_string(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (const auto* s = std::get_if<std::string>(v)) return *s;
  fail_key(key, type_phrase(*v) + ", expected a string");
}

std::optional<std::vector<std::string>> GgufFile::get_string_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (const auto* a = std::get_if<GgufArray>(v)) {
    if (const auto* s = std::get_if<std::vector<std::string>>(&a->items)) return *s;
  }
  fail_key(key, type_phrase(*v) + ", expected an array of strings");
}

std::optional<std::vector<float>> GgufFile::get_float_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (const auto* a = std::get_if<GgufArray>(v)) {
    if (const auto* f = std::get_if<std::vector<float>>(&a->items)) return *f;
    if (const auto* d = std::get_if<std::vector<double>>(&a->items))
      return std::vector<float>(d->begin(), d->end());
  }
  fail_key(key, type_phrase(*v) + ", expected an array of f32 or f64");
}

std::optional<std::vector<int64_t>> GgufFile::get_int_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  const auto* a = std::get_if<GgufArray>(v);
  if (!a) fail_key(key, type_phrase(*v) + ", expected an array of integers");
  return std::visit(
      [&](const auto& items) -> std::vector<int64_t> {
        using T = typename std::decay_t<decltype(items)>::value_type;
        if constexpr (is_integer_v<T>) {
          std::vector<int64_t> out;
          out.reserve(items.size());
          for (T x : items) {
            auto r = to_int64(x);
            if (!r) fail_key(key, "element " + std::to_string(x) + " does not fit in int64");
            out.push_back(*r);
          }
          return out;
        } else {
          fail_key(key, type_phrase(*v) + ", expected an array of integers");
        }
      },
      a->items);
}

// --- tensors ------------------------------------------------------------------------------

const GgufTensor* GgufFile::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const GgufTensor& GgufFile::tensor(std::string_view name) const {
  if (const GgufTensor* t = find_tensor(name)) return *t;
  throw Error(ErrorCategory::format, path().string() + ": no tensor " + quote_name(name));
}

std::vector<float> GgufFile::dequantize(const GgufTensor& tensor) const {
  std::vector<float> out(static_cast<size_t>(tensor.element_count));
  dequantize(tensor, out);
  return out;
}

void GgufFile::dequantize(const GgufTensor& tensor, std::span<float> out) const {
  if (out.size() != static_cast<uint64_t>(tensor.element_count)) {
    throw Error(ErrorCategory::invalid_argument,
                path().string() + ": tensor " + quote_name(tensor.name) + " has " +
                    std::to_string(tensor.element_count) + " elements, output holds " +
                    std::to_string(out.size()));
  }
  const int64_t row = tensor.row_length();
  const int64_t block = ggml_block_size(tensor.type);
  if (row % block != 0) {
    throw Error(ErrorCategory::format,
                path().string() + ": tensor " + quote_name(tensor.name) + ": row length " +
                    std::to_string(row) + " is not a multiple of the " + to_string(tensor.type) +
                    " block size " + std::to_string(block));
  }
  if (tensor.element_count == 0) return;
  // Rows are independent runs of whole blocks; large tensors split over threads.
  const int64_t rows = tensor.element_count / row;
  const uint64_t row_bytes = *ggml_row_bytes(tensor.type, row);
#pragma omp parallel for schedule(static) if (tensor.element_count > (1 << 20))
  for (int64_t r = 0; r < rows; ++r) {
    dequantize_row(tensor.type, tensor.data + r * row_bytes, out.data() + r * row, row);
  }
}

}  // namespace kestrel
