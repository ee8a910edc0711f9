// The GGUF reader: a fixture written by llama.cpp's gguf-py (metadata of every type,
// tensors of every supported type, values dequantized by gguf-py), and hostile files
// built byte by byte here.
#include "loaders/gguf.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <random>
#include <nlohmann/json.hpp>

#include "kestrel/error.h"
#include "loaders/gguf_quant.h"
#include "test_support.h"

namespace kestrel {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// --- the gguf-py fixture ------------------------------------------------------------------

fs::path fixture_path() { return testing::fixture_dir() / "gguf" / "tiny.gguf"; }

json expected_json() {
  return json::parse(testing::read_file(testing::fixture_dir() / "gguf" / "tiny_expected.json"));
}

// Compares one parsed value with its JSON description {"type", "value"[, "element_type"]}.
void expect_value(const GgufValue& value, const json& want, const std::string& where);

template <class T>
void expect_items(const std::vector<T>& items, const json& want, const std::string& where) {
  ASSERT_EQ(items.size(), want.size()) << where;
  for (size_t i = 0; i < items.size(); ++i) {
    const std::string at = where + "[" + std::to_string(i) + "]";
    if constexpr (std::is_same_v<T, GgufArray>) {
      EXPECT_EQ(to_string(items[i].element_type()), want[i]["element_type"].get<std::string>()) << at;
      expect_value(GgufValue(items[i]), want[i], at);
    } else if constexpr (std::is_same_v<T, float>) {
      EXPECT_EQ(items[i], want[i].get<float>()) << at;
    } else {
      EXPECT_EQ(static_cast<T>(items[i]), want[i].get<T>()) << at;
    }
  }
}

void expect_value(const GgufValue& value, const json& want, const std::string& where) {
  ASSERT_EQ(to_string(value_type(value)), want["type"].get<std::string>()) << where;
  const json& v = want["value"];
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, GgufArray>) {
          ASSERT_EQ(to_string(x.element_type()), want["element_type"].get<std::string>()) << where;
          std::visit([&](const auto& items) { expect_items(items, v, where); }, x.items);
        } else {
          EXPECT_EQ(x, v.get<T>()) << where;
        }
      },
      value);
}

TEST(GgufFixture, HeaderAndLayout) {
  GgufFile file(fixture_path());
  const json want = expected_json();
  EXPECT_EQ(file.version(), want["version"].get<uint32_t>());
  EXPECT_EQ(file.alignment(), want["alignment"].get<uint64_t>());
  EXPECT_EQ(file.data_offset() % file.alignment(), 0u);
  EXPECT_LE(file.data_offset(), file.file_size());
  EXPECT_EQ(file.metadata().size(), want["metadata"].size());
  EXPECT_EQ(file.tensors().size(), want["tensors"].size());
}

TEST(GgufFixture, EveryMetadataValueMatchesGgufPy) {
  GgufFile file(fixture_path());
  const json want = expected_json();
  ASSERT_EQ(file.metadata().size(), want["metadata"].size());
  for (size_t i = 0; i < want["metadata"].size(); ++i) {
    const json& entry = want["metadata"][i];
    const std::string key = entry["key"];
    EXPECT_EQ(file.metadata()[i].key, key) << "file order";
    const GgufValue* value = file.find(key);
    ASSERT_NE(value, nullptr) << key;
    expect_value(*value, entry, key);
  }
}

TEST(GgufFixture, TypedGetters) {
  GgufFile file(fixture_path());
  EXPECT_EQ(file.get_string("general.architecture"), "tiny");
  EXPECT_EQ(file.get_string("test.string"), "h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93");
  EXPECT_EQ(file.get_string("test.string_empty"), "");
  EXPECT_EQ(file.get_int("test.u8"), 200);
  EXPECT_EQ(file.get_int("test.i8"), -100);
  EXPECT_EQ(file.get_int("test.u32"), 4000000000);
  EXPECT_EQ(file.get_int("test.i64"), -(int64_t{1} << 62) - 7);
  EXPECT_EQ(file.get_int("test.u64_small"), 123456789012);
  EXPECT_EQ(file.get_int("general.alignment"), 64);
  EXPECT_EQ(file.get_float("test.f32"), static_cast<double>(3.14159f));
  EXPECT_EQ(file.get_float("test.f64"), 2.718281828459045);
  EXPECT_EQ(file.get_float("test.i16"), -30000.0);
  EXPECT_EQ(file.get_bool("test.bool_true"), true);
  EXPECT_EQ(file.get_bool("test.bool_false"), false);
  EXPECT_EQ(file.get_string_array("test.array.string"),
            (std::vector<std::string>{"<s>", "</s>", "\xc4\xa0hello", "", "tab\there"}));
  EXPECT_EQ(file.get_float_array("test.array.f32"), (std::vector<float>{0.1f, -2.5f, 1e-30f}));
  EXPECT_EQ(file.get_float_array("test.array.f64"), (std::vector<float>{0.5f, -INFINITY}));
  EXPECT_EQ(file.get_int_array("test.array.i32"), (std::vector<int64_t>{-5, 0, 5, 2147483647}));
  EXPECT_EQ(file.get_int_array("test.array.u8"), (std::vector<int64_t>{0, 1, 255}));
  EXPECT_EQ(file.get_int_array("test.array.i64"),
            (std::vector<int64_t>{INT64_MIN, INT64_MAX}));

  const GgufArray* nested = file.find_array("test.array.nested");
  ASSERT_NE(nested, nullptr);
  ASSERT_EQ(nested->element_type(), GgufValueType::array);
  const auto& inner = std::get<std::vector<GgufArray>>(nested->items);
  ASSERT_EQ(inner.size(), 3u);
  EXPECT_EQ(std::get<std::vector<int32_t>>(inner[2].items), (std::vector<int32_t>{-5, 6}));

  // Absent keys are nullopt; present keys of another type or out of range are errors.
  EXPECT_FALSE(file.get_int("no.such.key").has_value());
  EXPECT_FALSE(file.get_string_array("no.such.key").has_value());
  EXPECT_FALSE(file.contains("no.such.key"));
  auto expect_key_error = [&](auto call, const std::string& needle) {
    try {
      call();
      ADD_FAILURE() << "no error for " << needle;
    } catch (const Error& e) {
      EXPECT_EQ(e.category(), ErrorCategory::format);
      EXPECT_NE(e.message().find(needle), std::string::npos) << e.message();
      EXPECT_NE(e.message().find("tiny.gguf"), std::string::npos) << e.message();
    }
  };
  expect_key_error([&] { (void)file.get_string("test.u8"); }, "'test.u8' is a u8, expected a string");
  expect_key_error([&] { (void)file.get_int("test.string"); }, "'test.string' is a string");
  expect_key_error([&] { (void)file.get_int("test.u64"); }, "does not fit in int64");
  expect_key_error([&] { (void)file.get_bool("test.i8"); }, "expected a bool");
  expect_key_error([&] { (void)file.get_int_array("test.array.u64"); }, "does not fit in int64");
  expect_key_error([&] { (void)file.get_string_array("test.array.i32"); },
                   "is an array of i32, expected an array of strings");
  expect_key_error([&] { (void)file.get_float_array("test.string"); }, "expected an array of f32");
}

TEST(GgufFixture, EveryTensorMatchesGgufPyDequantization) {
  GgufFile file(fixture_path());
  const json want = expected_json();
  ASSERT_EQ(file.tensors().size(), want["tensors"].size());
  for (size_t i = 0; i < want["tensors"].size(); ++i) {
    const json& w = want["tensors"][i];
    const std::string name = w["name"];
    SCOPED_TRACE(name);
    EXPECT_EQ(file.tensors()[i].name, name) << "file order";
    const GgufTensor* t = file.find_tensor(name);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(to_string(t->type), w["type"].get<std::string>());
    EXPECT_EQ(static_cast<uint32_t>(t->type), w["type_id"].get<uint32_t>());
    EXPECT_EQ(t->shape, w["shape"].get<std::vector<int64_t>>());
    EXPECT_EQ(t->ne, w["ne"].get<std::vector<int64_t>>());
    EXPECT_EQ(t->byte_size, w["n_bytes"].get<uint64_t>());
    EXPECT_EQ(file.data_offset() + t->offset, w["data_offset"].get<uint64_t>());
    EXPECT_EQ(t->data - file.tensors()[0].data,
              static_cast<ptrdiff_t>(t->offset - file.tensors()[0].offset));

    const auto ref = w["values"].get<std::vector<float>>();
    ASSERT_EQ(static_cast<int64_t>(ref.size()), t->element_count);
    const std::vector<float> got = file.dequantize(*t);
    ASSERT_EQ(got.size(), ref.size());
    for (size_t j = 0; j < ref.size(); ++j) {
      if (t->type == GgmlType::f32) {
        ASSERT_EQ(std::memcmp(&got[j], &ref[j], 4), 0) << "element " << j;
      } else {
        ASSERT_LE(std::fabs(got[j] - ref[j]), 1e-6f * std::fabs(ref[j])) << "element " << j;
      }
    }
  }
}

TEST(GgufFixture, LookupErrorsAndMoves) {
  GgufFile file(fixture_path());
  EXPECT_EQ(file.find_tensor("nope"), nullptr);
  try {
    (void)file.tensor("nope");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.category(), ErrorCategory::format);
    EXPECT_NE(e.message().find("no tensor 'nope'"), std::string::npos);
  }
  const GgufTensor& t = file.tensor("q8_0.matrix");
  std::vector<float> small(3);
  EXPECT_THROW(file.dequantize(t, small), Error);

  const std::vector<float> before = file.dequantize(t);
  GgufFile moved = std::move(file);
  EXPECT_EQ(moved.dequantize(moved.tensor("q8_0.matrix")), before);
  EXPECT_EQ(moved.get_string("general.architecture"), "tiny");
}

TEST(GgufFixture, MissingFileIsIoError) {
  try {
    GgufFile file(testing::fixture_dir() / "gguf" / "does_not_exist.gguf");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.category(), ErrorCategory::io);
    EXPECT_NE(e.message().find("does_not_exist.gguf"), std::string::npos);
  }
}

// --- block formats, by hand --------------------------------------------------------------

TEST(GgufQuant, BlockFormulas) {
  // d = 0.5 (f16 0x3800), m = -1 (f16 0xbc00).
  uint8_t q8[34] = {0x00, 0x38};
  for (int j = 0; j < 32; ++j) q8[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(j - 16));
  uint8_t q4_0[18] = {0x00, 0x38};
  uint8_t q4_1[20] = {0x00, 0x38, 0x00, 0xbc};
  for (int j = 0; j < 16; ++j) {
    q4_0[2 + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
    q4_1[4 + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  }
  float out[32];
  dequantize_row(GgmlType::q8_0, q8, out, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(out[j], 0.5f * (j - 16)) << j;
  dequantize_row(GgmlType::q4_0, q4_0, out, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(out[j], 0.5f * (j - 8)) << j;
    EXPECT_EQ(out[j + 16], 0.5f * ((15 - j) - 8)) << j;
  }
  dequantize_row(GgmlType::q4_1, q4_1, out, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(out[j], 0.5f * j - 1.0f) << j;
    EXPECT_EQ(out[j + 16], 0.5f * (15 - j) - 1.0f) << j;
  }
  const uint8_t bf16[4] = {0x80, 0x3f, 0x00, 0xc0};  // 1.0, -2.0
  dequantize_row(GgmlType::bf16, bf16 , out, 2);
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], -2.0f);
}

TEST(GgufQuant, SizesNamesAndBadCounts) {
  EXPECT_EQ(ggml_row_bytes(GgmlType::q4_0, 64), 36u);
  EXPECT_EQ(ggml_row_bytes(GgmlType::q4_1, 32), 20u);
  EXPECT_EQ(ggml_row_bytes(GgmlType::q8_0, 96), 102u);
  EXPECT_EQ(ggml_row_bytes(GgmlType::bf16, 3), 6u);
  EXPECT_FALSE(ggml_row_bytes(GgmlType::q8_0, 33).has_value());
  EXPECT_FALSE(ggml_row_bytes(GgmlType::f32, int64_t{1} << 62).has_value());
  EXPECT_EQ(ggml_type_name(12), "Q4_K (12)");
  EXPECT_EQ(ggml_type_name(4), "unknown (4)");
  EXPECT_EQ(ggml_type_name(1000), "unknown (1000)");
  EXPECT_EQ(ggml_type_to_dtype(GgmlType::bf16), DType::bf16);
  EXPECT_FALSE(ggml_type_to_dtype(GgmlType::q4_1).has_value());
  float out[32];
  uint8_t block[34] = {};
  try {
    dequantize_row(GgmlType::q8_0, block, out, 31);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.category(), ErrorCategory::invalid_argument);
    EXPECT_NE(e.message().find("block size 32"), std::string::npos);
  }
}

// --- hostile files, byte by byte ----------------------------------------------------------

// Appends little-endian GGUF fields.
struct Bytes {
  std::string s;
  template <class T>
  Bytes& put(T v) {
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    s.append(b, sizeof(T));
    return *this;
  }
  Bytes& u8(uint8_t v) { return put(v); }
  Bytes& u32(uint32_t v) { return put(v); }
  Bytes& u64(uint64_t v) { return put(v); }
  Bytes& f32(float v) { return put(v); }
  Bytes& str(std::string_view v) {
    u64(v.size());
    s.append(v);
    return *this;
  }
  Bytes& raw(std::string_view v) {
    s.append(v);
    return *this;
  }
  Bytes& pad_to(size_t alignment) {
    while (s.size() % alignment) s.push_back('\0');
    return *this;
  }
  // Value-type ids.
  static constexpr uint32_t kU8 = 0, kU32 = 4, kI32 = 5, kString = 8, kArray = 9;
  Bytes& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    return raw("GGUF").u32(version).u64(n_tensors).u64(n_kv);
  }
  Bytes& kv_string(std::string_view key, std::string_view value) {
    return str(key).u32(kString).str(value);
  }
  Bytes& kv_u32(std::string_view key, uint32_t value) { return str(key).u32(kU32).u32(value); }
  Bytes& tensor_info(std::string_view name, std::vector<uint64_t> ne, uint32_t type,
                     uint64_t offset) {
    str(name).u32(static_cast<uint32_t>(ne.size()));
    for (uint64_t d : ne) u64(d);
    return u32(type).u64(offset);
  }
};

// A valid file whose last byte is tensor data, so that every proper prefix is invalid:
// 3 metadata entries (a string, a string array, a nested i32 array) and two tensors,
// "a" F32 [8] = 0..7 and "b" Q8_0 [32] with d = 0.25 and q[j] = j - 16.
std::string small_file(uint32_t version = 3) {
  Bytes b;
  b.header(2, 3, version);
  b.kv_string("general.architecture", "test");
  b.str("test.list").u32(Bytes::kArray).u32(Bytes::kString).u64(2).str("x").str("yz");
  b.str("test.nested").u32(Bytes::kArray).u32(Bytes::kArray).u64(2);
  b.u32(Bytes::kI32).u64(1).put<int32_t>(-7);
  b.u32(Bytes::kI32).u64(0);
  b.tensor_info("a", {8}, 0, 0);
  b.tensor_info("b", {32}, 8, 32);
  b.pad_to(32);
  for (int i = 0; i < 8; ++i) b.f32(static_cast<float>(i));
  b.u8(0x00).u8(0x34);  // f16 0.25
  for (int j = 0; j < 32; ++j) b.put<int8_t>(static_cast<int8_t>(j - 16));
  return b.s;
}

fs::path write_temp(const std::string& bytes, const std::string& name = "hostile.gguf") {
  static const fs::path dir = testing::temp_dir("gguf");
  fs::path path = dir / name;
  testing::write_file(path, bytes);
  return path;
}

// Opens `bytes` as a file and expects Error(category) whose message names the file and
// contains every needle.
void expect_error(const std::string& bytes, ErrorCategory category,
                  std::initializer_list<std::string_view> needles) {
  const fs::path path = write_temp(bytes);
  try {
    GgufFile file(path);
    ADD_FAILURE() << "opened without error; expected " << to_string(category);
  } catch (const Error& e) {
    EXPECT_EQ(e.category(), category) << e.what();
    EXPECT_NE(e.message().find(path.string()), std::string::npos) << e.what();
    for (std::string_view n : needles)
      EXPECT_NE(e.message().find(n), std::string::npos) << "missing '" << n << "' in " << e.what();
  }
}

TEST(GgufHostile, SmallValidFileParses) {
  for (uint32_t version : {2u, 3u}) {
    GgufFile file(write_temp(small_file(version)));
    EXPECT_EQ(file.version(), version);
    EXPECT_EQ(file.alignment(), 32u);
    EXPECT_EQ(file.data_offset() % 32, 0u);
    EXPECT_EQ(file.get_string_array("test.list"), (std::vector<std::string>{"x", "yz"}));
    const auto& nested = std::get<std::vector<GgufArray>>(file.find_array("test.nested")->items);
    ASSERT_EQ(nested.size(), 2u);
    EXPECT_EQ(std::get<std::vector<int32_t>>(nested[0].items), std::vector<int32_t>{-7});
    EXPECT_EQ(nested[1].size(), 0u);
    EXPECT_EQ(file.dequantize(file.tensor("a")), (std::vector<float>{0, 1, 2, 3, 4, 5, 6, 7}));
    const std::vector<float> b = file.dequantize(file.tensor("b"));
    for (int j = 0; j < 32; ++j) EXPECT_EQ(b[j], 0.25f * (j - 16));
    EXPECT_EQ(file.tensor("b").byte_size, 34u);
    EXPECT_EQ(file.data_offset() + 32 + 34, file.file_size());
  }
}

TEST(GgufHostile, EveryTruncationIsAnError) {
  const std::string whole = small_file();
  for (size_t n = 0; n < whole.size(); ++n) {
    const fs::path path = write_temp(whole.substr(0, n), "truncated.gguf");
    try {
      GgufFile file(path);
      ADD_FAILURE() << "prefix of " << n << " bytes opened without error";
    } catch (const Error& e) {
      EXPECT_EQ(e.category(), ErrorCategory::format) << n << ": " << e.what();
      EXPECT_NE(e.message().find("truncated.gguf"), std::string::npos) << e.what();
    }
  }
}

TEST(GgufHostile, RandomCorruptionNeverCrashes) {
  // Flipped bytes must either parse or throw kestrel::Error; any other outcome (a crash,
  // an out-of-bounds read under a sanitizer, std::bad_alloc) fails the test.
  const std::string whole = small_file();
  std::mt19937 rng(12345);
  int parsed = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::string bytes = whole;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) {
      // Most flips land in the header and infos, where the structure is.
      const size_t at = rng() % (iter % 2 ? bytes.size() : 140);
      bytes[at] = static_cast<char>(rng() & 0xff);
    }
    try {
      GgufFile file(write_temp(bytes, "corrupt.gguf"));
      for (const GgufTensor& t : file.tensors()) (void)file.dequantize(t);
      ++parsed;
    } catch (const Error&) {
    }
  }
  EXPECT_GT(parsed, 0);
}

TEST(GgufHostile, BadMagicAndEmptyFile) {
  std::string bytes = small_file();
  bytes[3] = 'L';
  expect_error(bytes, ErrorCategory::format, {"not a GGUF file", "71 71 85 76"});
  expect_error("", ErrorCategory::format, {"not a GGUF file", "only 0 bytes"});
  expect_error("GG", ErrorCategory::format, {"not a GGUF file"});
}

TEST(GgufHostile, UnsupportedVersionsAndBigEndian) {
  expect_error(small_file(1), ErrorCategory::unsupported, {"version 1", "versions 2 and 3"});
  expect_error(small_file(4), ErrorCategory::unsupported, {"version 4"});
  expect_error(small_file(0), ErrorCategory::format, {"version 0"});
  Bytes big;
  big.raw("GGUF").raw(std::string("\0\0\0\3", 4)).u64(0).u64(0);
  expect_error(big.s, ErrorCategory::unsupported, {"big-endian"});
}

TEST(GgufHostile, HugeCountsAndLengthsAreRejectedBeforeAllocating) {
  const std::string filler(64, '\0');  // so the counts themselves fit
  expect_error(Bytes().header(0, 1).u64(uint64_t{1} << 62).raw(filler).s, ErrorCategory::format,
               {"key length 4611686018427387904", "metadata entry #0"});
  expect_error(Bytes().header(0, 1).str("general.name").u32(Bytes::kString).u64(uint64_t{1} << 62).s,
               ErrorCategory::format, {"'general.name'", "length 4611686018427387904", "exceeds"});
  expect_error(Bytes().header(0, uint64_t{1} << 40).s, ErrorCategory::format,
               {"metadata count 1099511627776", "cannot fit"});
  expect_error(Bytes().header(uint64_t{1} << 40, 0).s, ErrorCategory::format,
               {"tensor count 1099511627776", "cannot fit"});
  for (uint32_t element : {Bytes::kU8, Bytes::kU32, Bytes::kString, Bytes::kArray}) {
    expect_error(Bytes().header(0, 1).str("big").u32(Bytes::kArray).u32(element).u64(uint64_t{1} << 50).s,
                 ErrorCategory::format, {"'big'", "length 1125899906842624", "cannot fit"});
  }
  // A tensor name of 2^62 bytes.
  expect_error(Bytes().header(1, 0).u64(uint64_t{1} << 62).raw(filler).s, ErrorCategory::format,
               {"tensor info #0", "tensor name length 4611686018427387904"});
}

std::string nested_arrays(int levels) {
  Bytes b;
  b.header(0, 1).str("deep").u32(Bytes::kArray);
  for (int i = 1; i < levels; ++i) b.u32(Bytes::kArray).u64(1);
  b.u32(Bytes::kU8).u64(1).u8(42);
  return b.s;
}

TEST(GgufHostile, NestedArraysTooDeep) {
  GgufFile ok(write_temp(nested_arrays(8)));
  const GgufArray* a = ok.find_array("deep");
  for (int i = 1; i < 8; ++i) a = &std::get<std::vector<GgufArray>>(a->items).at(0);
  EXPECT_EQ(std::get<std::vector<uint8_t>>(a->items), std::vector<uint8_t>{42});
  expect_error(nested_arrays(9), ErrorCategory::format, {"'deep'", "nested more than 8"});
  expect_error(nested_arrays(100000), ErrorCategory::format, {"'deep'", "nested more than 8"});
}

TEST(GgufHostile, UnknownValueTypes) {
  expect_error(Bytes().header(0, 1).str("odd").u32(13).u32(0).s, ErrorCategory::format,
               {"'odd'", "unknown value type 13"});
  expect_error(Bytes().header(0, 1).str("odd").u32(Bytes::kArray).u32(0xdeadbeef).u64(1).s,
               ErrorCategory::format, {"'odd'", "unknown array element type 3735928559"});
}

// A file with one tensor `info` (already encoded) and `data_bytes` of data.
std::string one_tensor(const Bytes& kvs, uint64_t n_kv, const std::string& info,
                       size_t data_bytes, size_t alignment = 32) {
  Bytes b;
  b.header(1, n_kv).raw(kvs.s).raw(info).pad_to(alignment);
  b.s.append(data_bytes, '\x01');
  return b.s;
}

std::string info(std::string_view name, std::vector<uint64_t> ne, uint32_t type, uint64_t offset) {
  return Bytes().tensor_info(name, std::move(ne), type, offset).s;
}

TEST(GgufHostile, BadTensorInfos) {
  const Bytes none;
  expect_error(one_tensor(none, 0, info("w", {4}, 99, 0), 64), ErrorCategory::format,
               {"tensor 'w'", "ggml type unknown (99)"});
  expect_error(one_tensor(none, 0, info("w", {256}, 16, 0), 256), ErrorCategory::format,
               {"tensor 'w'", "IQ2_XXS (16)", "not supported"});
  expect_error(one_tensor(none, 0, info("w", {1, 1, 1, 1, 1, 1, 1, 1, 1}, 0, 0), 64),
               ErrorCategory::format, {"tensor 'w'", "n_dims 9"});
  expect_error(one_tensor(none, 0, info("w", {uint64_t{1} << 32, uint64_t{1} << 32}, 0, 0), 64),
               ErrorCategory::format, {"tensor 'w'", "[4294967296, 4294967296] overflow"});
  expect_error(one_tensor(none, 0, info("w", {uint64_t{1} << 63}, 0, 0), 64),
               ErrorCategory::format, {"tensor 'w'", "overflow"});
  expect_error(one_tensor(none, 0, info("w", {uint64_t{1} << 62}, 0, 0), 64),
               ErrorCategory::format, {"tensor 'w'", "byte size", "overflows"});
  expect_error(one_tensor(none, 0, info("w", {16}, 2, 0), 64), ErrorCategory::format,
               {"tensor 'w'", "row length ne[0] = 16", "Q4_0 block size 32"});
}

TEST(GgufHostile, BadTensorOffsets) {
  const Bytes none;
  expect_error(one_tensor(none, 0, info("w", {8}, 0, 1024), 64), ErrorCategory::format,
               {"tensor 'w'", "offset 1024", "runs past the end"});
  expect_error(one_tensor(none, 0, info("w", {8}, 0, 0), 31), ErrorCategory::format,
               {"tensor 'w'", "runs past the end"});
  expect_error(one_tensor(none, 0, info("w", {8}, 0, uint64_t{0} - 32), 64),
               ErrorCategory::format, {"tensor 'w'", "runs past the end"});
  expect_error(one_tensor(none, 0, info("w", {4}, 0, 4), 64), ErrorCategory::format,
               {"tensor 'w'", "offset 4 is not a multiple of the alignment 32"});
  // Tensor infos that end exactly at EOF leave no room for the data section.
  expect_error(Bytes().header(1, 0).tensor_info("w", {0}, 0, 0).s, ErrorCategory::format,
               {"data section", "past the end"});
}

TEST(GgufHostile, Alignment) {
  for (uint32_t bad : {0u, 3u, 48u}) {
    Bytes kv;
    kv.kv_u32("general.alignment", bad);
    expect_error(one_tensor(kv, 1, info("w", {8}, 0, 0), 64), ErrorCategory::format,
                 {"'general.alignment'", "power of two", std::to_string(bad)});
  }
  Bytes text;
  text.kv_string("general.alignment", "64");
  expect_error(one_tensor(text, 1, info("w", {8}, 0, 0), 64), ErrorCategory::format,
               {"'general.alignment'", "string '64'"});

  Bytes kv;
  kv.kv_u32("general.alignment", 64);
  GgufFile file(write_temp(one_tensor(kv, 1, info("w", {16}, 0, 0), 64, 64)));
  EXPECT_EQ(file.alignment(), 64u);
  EXPECT_EQ(file.data_offset() % 64, 0u);
  EXPECT_EQ(file.tensor("w").byte_size, 64u);
  // With alignment 64, offset 32 is misaligned.
  expect_error(one_tensor(kv, 1, info("w", {8}, 0, 32), 64, 64), ErrorCategory::format,
               {"tensor 'w'", "not a multiple of the alignment 64"});
}

TEST(GgufHostile, DuplicatesAndOverlaps) {
  Bytes b;
  b.header(2, 0).tensor_info("w", {8}, 0, 0).tensor_info("w", {8}, 0, 32).pad_to(32);
  b.s.append(64, '\0');
  expect_error(b.s, ErrorCategory::format, {"tensor 'w'", "duplicate tensor name"});

  Bytes keys;
  keys.header(0, 2).kv_u32("k", 1).kv_u32("k", 2);
  expect_error(keys.s, ErrorCategory::format, {"'k'", "duplicate metadata key"});

  Bytes overlap;
  overlap.header(2, 0).tensor_info("a", {16}, 0, 0).tensor_info("b", {8}, 0, 32).pad_to(32);
  overlap.s.append(64, '\0');
  expect_error(overlap.s, ErrorCategory::format, {"tensor 'b'", "overlaps tensor 'a'"});
}

TEST(GgufHostile, EdgeCasesThatAreValid) {
  // No tensors and no padding; an empty array; a scalar and an empty tensor.
  GgufFile meta_only(write_temp(Bytes().header(0, 1).str("e").u32(Bytes::kArray).u32(Bytes::kU8).u64(0).s));
  EXPECT_EQ(meta_only.tensors().size(), 0u);
  EXPECT_EQ(meta_only.get_int_array("e"), std::vector<int64_t>{});

  Bytes b;
  b.header(2, 0).tensor_info("scalar", {}, 0, 0).tensor_info("empty", {0, 4}, 2, 0).pad_to(32);
  b.f32(2.5f);
  GgufFile file(write_temp(b.s));
  const GgufTensor& scalar = file.tensor("scalar");
  EXPECT_TRUE(scalar.shape.empty());
  EXPECT_EQ(scalar.element_count, 1);
  EXPECT_EQ(file.dequantize(scalar), std::vector<float>{2.5f});
  const GgufTensor& empty = file.tensor("empty");
  EXPECT_EQ(empty.element_count, 0);
  EXPECT_EQ(empty.shape, (std::vector<int64_t>{4, 0}));
  EXPECT_EQ(file.dequantize(empty).size(), 0u);
}

}  // namespace
}  // namespace kestrel
