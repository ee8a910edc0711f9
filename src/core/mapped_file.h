// core/mapped_file.h: a read-only memory map of a whole file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>

namespace kestrel {

class MappedFile {
 public:
  // Throws Error(io) naming the path when it is missing, unreadable or not a regular file.
  explicit MappedFile(const std::filesystem::path& path);
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Lets the kernel drop the pages of a mapped file that lie wholly inside [data, data +
// bytes): they leave the resident set and are read from the file again if touched.
// Loading calls it once a tensor is converted, so a model's resident memory is its
// converted weights, not those plus the file.
void release_mapped_pages(const void* data, size_t bytes) noexcept;

}  // namespace kestrel
