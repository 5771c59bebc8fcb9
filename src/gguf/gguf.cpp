// GGUF reader: maps the file and validates every byte it will ever hand out,
// so that later layers can trust TensorInfo::data/nbytes without re-checking.
// Any problem becomes one kvforge::Error line that starts with the path.
#include "gguf/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "gguf/gguf_detail.h"
#include "util/error.h"

namespace kvforge::gguf {

const char* value_type_name(ValueType t) {
  switch (t) {
    case ValueType::UINT8: return "u8";
    case ValueType::INT8: return "i8";
    case ValueType::UINT16: return "u16";
    case ValueType::INT16: return "i16";
    case ValueType::UINT32: return "u32";
    case ValueType::INT32: return "i32";
    case ValueType::FLOAT32: return "f32";
    case ValueType::BOOL: return "bool";
    case ValueType::STRING: return "string";
    case ValueType::ARRAY: return "array";
    case ValueType::UINT64: return "u64";
    case ValueType::INT64: return "i64";
    case ValueType::FLOAT64: return "f64";
  }
  return "unknown";
}

namespace {

// Smallest encoded size of a scalar value of type t; used to reject counts
// that could not possibly fit in the rest of the file before allocating.
size_t min_encoded_size(ValueType t) {
  switch (t) {
    case ValueType::UINT8: case ValueType::INT8: case ValueType::BOOL: return 1;
    case ValueType::UINT16: case ValueType::INT16: return 2;
    case ValueType::UINT32: case ValueType::INT32: case ValueType::FLOAT32: return 4;
    case ValueType::STRING: return 8;  // the length prefix
    case ValueType::ARRAY: return 12;  // element type + count
    default: return 8;
  }
}

// Bounds-checked little-endian reader over the mapped bytes.
class Cursor {
 public:
  Cursor(const uint8_t* p, size_t size, const std::string& path) : p_(p), size_(size), path_(path) {}

  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }

  template <typename T>
  T read(const char* what) {
    if (remaining() < sizeof(T))
      fail("{}: truncated file: {} at offset {} runs past the end ({} bytes)", path_, what, pos_, size_);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof v);
    pos_ += sizeof v;
    return v;
  }

  std::string read_string(const char* what) {
    const uint64_t n = read<uint64_t>(what);
    if (n > remaining())
      fail("{}: truncated file: {} of length {} at offset {} runs past the end ({} bytes)", path_, what,
           n, pos_, size_);
    std::string s(reinterpret_cast<const char*>(p_ + pos_), (size_t)n);
    pos_ += (size_t)n;
    return s;
  }

 private:
  const uint8_t* p_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& path_;
};

bool is_valid_value_type(uint32_t t) { return t <= (uint32_t)ValueType::FLOAT64; }

// Reads one scalar of type t into the widened representation.
void read_scalar(Cursor& c, ValueType t, Value& v, const std::string& path, const std::string& key) {
  switch (t) {
    case ValueType::UINT8: v.data = (uint64_t)c.read<uint8_t>("metadata value"); return;
    case ValueType::UINT16: v.data = (uint64_t)c.read<uint16_t>("metadata value"); return;
    case ValueType::UINT32: v.data = (uint64_t)c.read<uint32_t>("metadata value"); return;
    case ValueType::UINT64: v.data = c.read<uint64_t>("metadata value"); return;
    case ValueType::INT8: v.data = (int64_t)c.read<int8_t>("metadata value"); return;
    case ValueType::INT16: v.data = (int64_t)c.read<int16_t>("metadata value"); return;
    case ValueType::INT32: v.data = (int64_t)c.read<int32_t>("metadata value"); return;
    case ValueType::INT64: v.data = c.read<int64_t>("metadata value"); return;
    case ValueType::FLOAT32: v.data = (double)c.read<float>("metadata value"); return;
    case ValueType::FLOAT64: v.data = c.read<double>("metadata value"); return;
    case ValueType::BOOL: {
      const uint8_t b = c.read<uint8_t>("metadata value");
      if (b > 1) fail("{}: metadata key {} has bool value {} (must be 0 or 1)", path, detail::quote(key), b);
      v.data = b != 0;
      return;
    }
    case ValueType::STRING: v.data = c.read_string("metadata string"); return;
    case ValueType::ARRAY: break;
  }
  fail("{}: internal: bad scalar type for key {}", path, detail::quote(key));
}

template <typename Elem, typename Raw>
std::vector<Elem> read_vec(Cursor& c, uint64_t n) {
  std::vector<Elem> out;
  out.reserve((size_t)n);
  for (uint64_t i = 0; i < n; ++i) out.push_back((Elem)c.read<Raw>("metadata array element"));
  return out;
}

void read_array(Cursor& c, Value& v, const std::string& path, const std::string& key) {
  const uint32_t et = c.read<uint32_t>("array element type");
  if (!is_valid_value_type(et))
    fail("{}: metadata key {} is an array of unknown value type {}", path, detail::quote(key), et);
  const auto t = (ValueType)et;
  if (t == ValueType::ARRAY)
    fail("{}: metadata key {} is an array of arrays, which is not supported", path, detail::quote(key));
  const uint64_t n = c.read<uint64_t>("array length");
  // Every element needs at least min_encoded_size bytes; a larger count is a
  // corrupt file, and checking first keeps allocations bounded by file size.
  if (n > c.remaining() / min_encoded_size(t))
    fail("{}: metadata key {} claims {} array elements but only {} bytes remain", path, detail::quote(key),
         n, c.remaining());
  v.array_type = t;
  switch (t) {
    case ValueType::UINT8: v.data = read_vec<uint64_t, uint8_t>(c, n); return;
    case ValueType::UINT16: v.data = read_vec<uint64_t, uint16_t>(c, n); return;
    case ValueType::UINT32: v.data = read_vec<uint64_t, uint32_t>(c, n); return;
    case ValueType::UINT64: v.data = read_vec<uint64_t, uint64_t>(c, n); return;
    case ValueType::INT8: v.data = read_vec<int64_t, int8_t>(c, n); return;
    case ValueType::INT16: v.data = read_vec<int64_t, int16_t>(c, n); return;
    case ValueType::INT32: v.data = read_vec<int64_t, int32_t>(c, n); return;
    case ValueType::INT64: v.data = read_vec<int64_t, int64_t>(c, n); return;
    case ValueType::FLOAT32: v.data = read_vec<double, float>(c, n); return;
    case ValueType::FLOAT64: v.data = read_vec<double, double>(c, n); return;
    case ValueType::BOOL: {
      std::vector<bool> out;
      out.reserve((size_t)n);
      for (uint64_t i = 0; i < n; ++i) {
        const uint8_t b = c.read<uint8_t>("metadata array element");
        if (b > 1)
          fail("{}: metadata key {} has bool element {} = {} (must be 0 or 1)", path, detail::quote(key), i, b);
        out.push_back(b != 0);
      }
      v.data = std::move(out);
      return;
    }
    case ValueType::STRING: {
      std::vector<std::string> out;
      out.reserve((size_t)n);
      for (uint64_t i = 0; i < n; ++i) out.push_back(c.read_string("metadata array string"));
      v.data = std::move(out);
      return;
    }
    case ValueType::ARRAY: break;
  }
}

uint64_t align_up(uint64_t x, uint64_t a) { return x + (a - x % a) % a; }

}  // namespace

File::~File() {
  if (map_) munmap(map_, map_size_);
}

std::unique_ptr<File> File::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("cannot open '{}': {}", path, std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    fail("cannot stat '{}': {}", path, std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("{}: not a regular file", path);
  }
  std::unique_ptr<File> f(new File());
  f->path_ = path;
  const size_t size = (size_t)st.st_size;
  if (size == 0) {
    ::close(fd);
    fail("{}: file is empty, not a GGUF file", path);
  }
  void* m = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int e = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (m == MAP_FAILED) fail("{}: mmap failed: {}", path, std::strerror(e));
  f->map_ = m;
  f->map_size_ = size;
  f->parse(static_cast<const uint8_t*>(m), size);
  return f;
}

std::unique_ptr<File> File::from_memory(const uint8_t* data, size_t size, const std::string& name) {
  std::unique_ptr<File> f(new File());
  f->path_ = name;
  f->parse(data, size);
  return f;
}

void File::parse(const uint8_t* data, size_t size) {
  const std::string& path = path_;
  Cursor c(data, size, path);
  if (size < 4) fail("{}: file is only {} bytes, not a GGUF file", path, size);
  if (std::memcmp(data, "GGUF", 4) != 0)
    fail("{}: bad magic {} (expected \"GGUF\"), not a GGUF file",
         path, detail::quote(std::string(reinterpret_cast<const char*>(data), 4)));
  c.read<uint32_t>("magic");
  version_ = c.read<uint32_t>("version");
  if (version_ == 1) fail("{}: GGUF version 1 is not supported (only versions 2 and 3)", path);
  if (version_ != 2 && version_ != 3) {
    if (version_ == 0x02000000u || version_ == 0x03000000u)
      fail("{}: big-endian GGUF files are not supported", path);
    fail("{}: unsupported GGUF version {} (only versions 2 and 3)", path, version_);
  }
  const uint64_t n_tensors = c.read<uint64_t>("tensor count");
  const uint64_t n_kv = c.read<uint64_t>("metadata count");
  // A key/value takes at least 8 (key length) + 4 (type) + 1 bytes; a tensor
  // info at least 8 + 4 + 8 + 4 + 8. Bigger counts cannot be honest.
  if (n_kv > c.remaining() / 13)
    fail("{}: header claims {} metadata entries, impossible in a {}-byte file", path, n_kv, size);
  if (n_tensors > c.remaining() / 32)
    fail("{}: header claims {} tensors, impossible in a {}-byte file", path, n_tensors, size);

  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = c.read_string("metadata key");
    if (key.empty()) fail("{}: metadata entry {} has an empty key", path, i);
    const uint32_t t = c.read<uint32_t>("metadata value type");
    if (!is_valid_value_type(t))
      fail("{}: metadata key {} has unknown value type {}", path, detail::quote(key), t);
    Value v;
    v.type = (ValueType)t;
    if (v.type == ValueType::ARRAY)
      read_array(c, v, path, key);
    else
      read_scalar(c, v.type, v, path, key);
    if (kv_.count(key)) fail("{}: duplicate metadata key {}", path, detail::quote(key));
    kv_.emplace(std::move(key), std::move(v));
  }

  alignment_ = 32;
  if (const Value* a = find("general.alignment")) {
    const uint64_t* u = std::get_if<uint64_t>(&a->data);
    const int64_t* s = std::get_if<int64_t>(&a->data);
    const uint64_t al = u ? *u : (s && *s > 0 ? (uint64_t)*s : 0);
    if (a->type == ValueType::ARRAY || (!u && !s) || al == 0 || (al & (al - 1)) != 0 || al > (1u << 30))
      fail("{}: general.alignment must be a power of two integer up to 2^30", path);
    alignment_ = al;
  }

  tensors_.reserve((size_t)n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    TensorInfo ti;
    ti.name = c.read_string("tensor name");
    const std::string qn = detail::quote(ti.name);
    const uint32_t n_dims = c.read<uint32_t>("tensor dimension count");
    if (n_dims == 0 || n_dims > 4)
      fail("{}: tensor {} has {} dimensions (supported: 1 to 4)", path, qn, n_dims);
    ti.n_dims = (int)n_dims;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t ne = c.read<uint64_t>("tensor shape");
      if (ne > (uint64_t)std::numeric_limits<int64_t>::max())
        fail("{}: tensor {} has an absurd dimension {}", path, qn, ne);
      // Zero-sized tensors have no use in a model and would let a tiny file
      // claim a huge row length; reject them.
      if (ne == 0) fail("{}: tensor {} has an empty dimension", path, qn);
      ti.ne[d] = (int64_t)ne;
    }
    const uint32_t type = c.read<uint32_t>("tensor type");
    const TypeTraits* tr = type_traits(type);
    if (!tr) fail("{}: tensor {} has unknown type id {}", path, qn, type);
    if (!tr->supported) fail("{}: tensor {} has unsupported type {} (id {})", path, qn, tr->name, type);
    ti.type = (GgmlType)type;
    ti.offset = c.read<uint64_t>("tensor data offset");
    if (tensor_index_.count(ti.name)) fail("{}: duplicate tensor name {}", path, qn);
    tensor_index_.emplace(ti.name, tensors_.size());
    tensors_.push_back(std::move(ti));
  }

  // The data section starts at the next alignment boundary after the infos.
  const uint64_t data_start = align_up(c.pos(), alignment_);
  if (!tensors_.empty() && data_start > size)
    fail("{}: truncated file: tensor data section would start at offset {} past the end ({} bytes)", path,
         data_start, size);
  const uint64_t data_size = data_start <= size ? size - data_start : 0;

  for (TensorInfo& ti : tensors_) {
    const std::string qn = detail::quote(ti.name);
    const TypeTraits& tr = type_traits(ti.type);
    int64_t n = 1;
    for (int d = 0; d < 4; ++d)
      if (__builtin_mul_overflow(n, ti.ne[d], &n))
        fail("{}: tensor {} has an element count that overflows 64 bits", path, qn);
    if (ti.ne[0] % tr.block_size != 0)
      fail("{}: tensor {} row length {} is not a multiple of the {} block size {}", path, qn, ti.ne[0],
           tr.name, tr.block_size);
    uint64_t nbytes = (uint64_t)(ti.ne[0] / tr.block_size);
    bool ovf = __builtin_mul_overflow(nbytes, (uint64_t)tr.block_bytes, &nbytes);
    for (int d = 1; d < 4; ++d) ovf |= __builtin_mul_overflow(nbytes, (uint64_t)ti.ne[d], &nbytes);
    if (ovf) fail("{}: tensor {} byte size overflows 64 bits", path, qn);
    if (ti.offset % alignment_ != 0)
      fail("{}: tensor {} data offset {} is not aligned to {}", path, qn, ti.offset, alignment_);
    if (ti.offset > data_size || nbytes > data_size - ti.offset)
      fail("{}: tensor {} data [{}, +{}) lies outside the {}-byte data section (truncated file?)", path, qn,
           ti.offset, nbytes, data_size);
    ti.nbytes = (size_t)nbytes;
    ti.data = data + data_start + ti.offset;
  }

  // Overlapping tensors would mean two weights share bytes: a corrupt file.
  std::vector<const TensorInfo*> by_offset;
  for (const TensorInfo& ti : tensors_) by_offset.push_back(&ti);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const TensorInfo* a = by_offset[i - 1];
    const TensorInfo* b = by_offset[i];
    if (a->nbytes > 0 && b->nbytes > 0 && a->offset + a->nbytes > b->offset)
      fail("{}: tensors {} and {} overlap in the data section", path, detail::quote(a->name),
           detail::quote(b->name));
  }
}

const Value* File::find(const std::string& key) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? nullptr : &it->second;
}

const TensorInfo* File::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {

[[noreturn]] void wrong_type(const std::string& path, const std::string& key, const Value& v, const char* want) {
  if (v.type == ValueType::ARRAY)
    fail("{}: metadata key {} is an array of {}, expected {}", path, detail::quote(key),
         value_type_name(v.array_type), want);
  fail("{}: metadata key {} has type {}, expected {}", path, detail::quote(key), value_type_name(v.type), want);
}

int64_t to_i64(uint64_t u, const std::string& path, const std::string& key) {
  if (u > (uint64_t)std::numeric_limits<int64_t>::max())
    fail("{}: metadata key {} value {} does not fit in a signed 64-bit integer", path, detail::quote(key), u);
  return (int64_t)u;
}

}  // namespace

std::optional<int64_t> File::get_int(const std::string& key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  if (v->type != ValueType::ARRAY) {
    if (auto* u = std::get_if<uint64_t>(&v->data)) return to_i64(*u, path_, key);
    if (auto* s = std::get_if<int64_t>(&v->data)) return *s;
  }
  wrong_type(path_, key, *v, "an integer");
}

std::optional<double> File::get_float(const std::string& key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  if (v->type != ValueType::ARRAY) {
    if (auto* d = std::get_if<double>(&v->data)) return *d;
    // Integers are accepted too: some converters write e.g. a rope base as u32.
    if (auto* u = std::get_if<uint64_t>(&v->data)) return (double)*u;
    if (auto* s = std::get_if<int64_t>(&v->data)) return (double)*s;
  }
  wrong_type(path_, key, *v, "a number");
}

std::optional<bool> File::get_bool(const std::string& key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  if (v->type == ValueType::BOOL) return std::get<bool>(v->data);
  wrong_type(path_, key, *v, "a bool");
}

std::optional<std::string> File::get_string(const std::string& key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  if (v->type == ValueType::STRING) return std::get<std::string>(v->data);
  wrong_type(path_, key, *v, "a string");
}

std::vector<std::string> File::get_string_array(const std::string& key) const {
  const Value* v = find(key);
  if (!v) return {};
  if (v->type == ValueType::ARRAY && v->array_type == ValueType::STRING)
    return std::get<std::vector<std::string>>(v->data);
  wrong_type(path_, key, *v, "an array of strings");
}

std::vector<double> File::get_float_array(const std::string& key) const {
  const Value* v = find(key);
  if (!v) return {};
  if (v->type == ValueType::ARRAY) {
    if (auto* d = std::get_if<std::vector<double>>(&v->data)) return *d;
    if (auto* u = std::get_if<std::vector<uint64_t>>(&v->data)) return {u->begin(), u->end()};
    if (auto* s = std::get_if<std::vector<int64_t>>(&v->data)) return {s->begin(), s->end()};
  }
  wrong_type(path_, key, *v, "an array of numbers");
}

std::vector<int64_t> File::get_int_array(const std::string& key) const {
  const Value* v = find(key);
  if (!v) return {};
  if (v->type == ValueType::ARRAY) {
    if (auto* s = std::get_if<std::vector<int64_t>>(&v->data)) return *s;
    if (auto* u = std::get_if<std::vector<uint64_t>>(&v->data)) {
      std::vector<int64_t> out;
      out.reserve(u->size());
      for (uint64_t x : *u) out.push_back(to_i64(x, path_, key));
      return out;
    }
  }
  wrong_type(path_, key, *v, "an array of integers");
}

}  // namespace kvforge::gguf
