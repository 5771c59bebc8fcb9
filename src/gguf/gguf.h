#pragma once
// GGUF v2/v3 model files: a memory-mapped reader and a writer.
// Format: header (magic "GGUF", version, n_tensors, n_kv), n_kv metadata
// key/values, n_tensors tensor infos (name, n_dims, ne[], type, offset), then
// the tensor data section aligned to general.alignment (default 32).
// ne[0] is the contiguous dimension: a [n_out][n_in] weight has ne = {n_in, n_out}.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "ops/ggml_types.h"

namespace kvforge::gguf {

enum class ValueType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6,
  BOOL = 7, STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};
const char* value_type_name(ValueType t);

// A metadata value. Scalars are widened (any integer -> int64/uint64, floats ->
// double) but the original type is kept in `type` for round-trips.
struct Value {
  ValueType type = ValueType::UINT32;
  ValueType array_type = ValueType::UINT32;  // element type when type == ARRAY
  std::variant<uint64_t, int64_t, double, bool, std::string,
               std::vector<uint64_t>, std::vector<int64_t>, std::vector<double>,
               std::vector<bool>, std::vector<std::string>>
      data;
};

struct TensorInfo {
  std::string name;
  GgmlType type = GgmlType::F32;
  int n_dims = 0;
  int64_t ne[4] = {1, 1, 1, 1};
  uint64_t offset = 0;          // relative to the data section
  const uint8_t* data = nullptr;  // into the mapping
  size_t nbytes = 0;

  int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
};

class File {
 public:
  // Opens and validates the whole file (header, every key/value, every tensor
  // extent). Throws kvforge::Error with a one-line reason that starts with the
  // path on any problem: missing file, bad magic, unsupported version (v1,
  // big-endian), truncation, absurd counts, unknown value types, arrays of
  // arrays, duplicate keys/tensor names, unknown or unsupported tensor types,
  // n_dims outside 1..4, element-count overflow, rows that are not whole
  // blocks, misaligned, out-of-range or overlapping tensor data.
  static std::unique_ptr<File> open(const std::string& path);
  // Parses an in-memory image (the bytes are borrowed, must outlive the File).
  // Used by the fuzzer and tests; `name` stands in for the path in messages.
  static std::unique_ptr<File> from_memory(const uint8_t* data, size_t size,
                                           const std::string& name = "<memory>");
  ~File();

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }  // general.alignment, default 32
  const std::string& path() const { return path_; }

  const std::map<std::string, Value>& metadata() const { return kv_; }
  bool has(const std::string& key) const { return kv_.count(key) != 0; }
  const Value* find(const std::string& key) const;

  // Typed getters: nullopt when the key is absent; throw kvforge::Error when
  // it exists with an incompatible type. get_int accepts every integer width
  // (u64 above INT64_MAX throws); get_float accepts f32, f64 and integers;
  // get_float_array accepts float or integer arrays.
  std::optional<int64_t> get_int(const std::string& key) const;
  std::optional<double> get_float(const std::string& key) const;
  std::optional<bool> get_bool(const std::string& key) const;
  std::optional<std::string> get_string(const std::string& key) const;
  std::vector<std::string> get_string_array(const std::string& key) const;  // empty if absent
  std::vector<double> get_float_array(const std::string& key) const;
  std::vector<int64_t> get_int_array(const std::string& key) const;

  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find_tensor(const std::string& name) const;

 private:
  File() = default;
  void parse(const uint8_t* data, size_t size);

  std::string path_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::map<std::string, Value> kv_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
};

// Builds a GGUF v3 file in memory and writes it out.
class Writer {
 public:
  void set(const std::string& key, Value v);
  void set_u32(const std::string& key, uint32_t v);
  void set_i32(const std::string& key, int32_t v);
  void set_u64(const std::string& key, uint64_t v);
  void set_f32(const std::string& key, float v);
  void set_bool(const std::string& key, bool v);
  void set_string(const std::string& key, const std::string& v);
  void set_string_array(const std::string& key, const std::vector<std::string>& v);
  void set_f32_array(const std::string& key, const std::vector<float>& v);
  void set_i32_array(const std::string& key, const std::vector<int32_t>& v);
  // Sets general.alignment (a power of two); the data section and every
  // tensor are padded to it. A general.alignment set via set() works the same.
  void set_alignment(uint32_t a);

  // ne[0] is the contiguous dimension; data must hold row_bytes(type, ne0)*rows bytes.
  void add_tensor(const std::string& name, GgmlType type, std::vector<int64_t> ne, const void* data);

  std::vector<uint8_t> to_bytes() const;
  void write(const std::string& path) const;  // throws kvforge::Error on I/O failure

 private:
  struct PendingTensor {
    std::string name;
    GgmlType type;
    std::vector<int64_t> ne;
    std::vector<uint8_t> bytes;
  };
  std::vector<std::pair<std::string, Value>> kv_;  // insertion order kept
  std::vector<PendingTensor> tensors_;
};

}  // namespace kvforge::gguf
