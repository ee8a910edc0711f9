// kestrel/types.h: element types and devices shared by the public API.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace kestrel {

enum class DType : uint8_t { f32, f16, bf16, i8, i32 };

size_t dtype_size(DType dtype) noexcept;
const char* to_string(DType dtype) noexcept;
// Parses "f32"/"float32"/"fp32", "f16"/"float16"/"fp16"/"half", "bf16"/"bfloat16";
// throws Error(invalid_argument) naming `what` otherwise.
DType parse_dtype(std::string_view text, std::string_view what = "dtype");

enum class DeviceKind : uint8_t { cpu, cuda };

struct Device {
  DeviceKind kind = DeviceKind::cpu;
  int index = 0;  // CUDA ordinal; 0 for the CPU

  static Device cpu() { return {DeviceKind::cpu, 0}; }
  static Device cuda(int index = 0) { return {DeviceKind::cuda, index}; }
  bool operator==(const Device&) const = default;
};

std::string to_string(Device device);
// Parses "cpu", "cuda", "cuda:N"; throws Error(invalid_argument) naming `what` otherwise.
Device parse_device(std::string_view text, std::string_view what = "device");

}  // namespace kestrel
