// tests/fuzz/fuzz_support.h: what the libFuzzer targets share.
//
// Every loader reads files (memory-mapped), so a target writes its input to a file in a
// scratch directory of its own process (/dev/shm when there is one: no disk I/O) and
// opens that. A kestrel::Error is the expected answer to bad input and is swallowed; any
// other exception escapes and libFuzzer reports it as a crash, as it does for every
// sanitizer finding, timeout and leak.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "kestrel/error.h"

namespace kestrel::fuzz {

// This process's scratch directory, created on first use and removed at exit.
inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    std::error_code ec;
    std::filesystem::path base = std::filesystem::is_directory("/dev/shm", ec)
                                     ? std::filesystem::path("/dev/shm")
                                     : std::filesystem::temp_directory_path();
    std::filesystem::path d = base / ("kestrel-fuzz-" + std::to_string(getpid()));
    std::filesystem::create_directories(d);
    std::atexit([] {
      std::error_code ignored;
      std::filesystem::remove_all(scratch_dir(), ignored);
    });
    return d;
  }();
  return dir;
}

// Writes `bytes` to `name` in the scratch directory and returns its path.
inline std::filesystem::path write_file(std::string_view name, std::string_view bytes) {
  std::filesystem::path path = scratch_dir() / name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) std::abort();  // the harness itself failed: stop rather than fuzz nothing
  return path;
}

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Runs `body`, swallowing kestrel::Error (bad input, reported the way it should be).
template <typename Body>
void expect_only_kestrel_errors(Body&& body) {
  try {
    body();
  } catch (const kestrel::Error&) {
  }
}

// Reads typed values off the front of the input, then hands out the rest; past the end
// every read yields zero, so any input is a valid stream.
class ByteReader {
 public:
  ByteReader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  template <typename T>
  T take() {
    T value{};
    size_t n = sizeof(T) < size_ ? sizeof(T) : size_;
    std::memcpy(&value, data_, n);
    data_ += n;
    size_ -= n;
    return value;
  }
  // Up to `max` bytes as a string.
  std::string take_string(size_t max) {
    size_t n = max < size_ ? max : size_;
    std::string s(reinterpret_cast<const char*>(data_), n);
    data_ += n;
    size_ -= n;
    return s;
  }
  std::string rest() { return take_string(size_); }
  size_t left() const { return size_; }

 private:
  const uint8_t* data_;
  size_t size_;
};

}  // namespace kestrel::fuzz
