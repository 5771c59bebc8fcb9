// GGUF v3 writer: metadata in insertion order, tensor infos, then the data
// section with every tensor padded to general.alignment.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>

#include "gguf/gguf.h"
#include "gguf/gguf_detail.h"
#include "util/error.h"

namespace kvforge::gguf {

namespace {

class Out {
 public:
  explicit Out(std::vector<uint8_t>& b) : b_(b) {}
  template <typename T>
  void put(T v) {
    const size_t n = b_.size();
    b_.resize(n + sizeof(T));
    std::memcpy(b_.data() + n, &v, sizeof(T));
  }
  void str(const std::string& s) {
    put<uint64_t>(s.size());
    b_.insert(b_.end(), s.begin(), s.end());
  }
  void pad_to(uint64_t a) { b_.resize(b_.size() + (a - b_.size() % a) % a, 0); }

 private:
  std::vector<uint8_t>& b_;
};

// An integer from either widened representation, checked against [lo, hi].
template <typename T>
T narrow(const std::string& key, std::variant<uint64_t, int64_t> x) {
  bool ok;
  T out;
  if (auto* u = std::get_if<uint64_t>(&x)) {
    ok = *u <= (uint64_t)std::numeric_limits<T>::max();
    out = (T)*u;
  } else {
    const int64_t s = std::get<int64_t>(x);
    ok = std::numeric_limits<T>::is_signed ? (s >= (int64_t)std::numeric_limits<T>::min() &&
                                              (s < 0 || (uint64_t)s <= (uint64_t)std::numeric_limits<T>::max()))
                                           : s >= 0 && (uint64_t)s <= (uint64_t)std::numeric_limits<T>::max();
    out = (T)s;
  }
  if (!ok) fail("gguf writer: value of key {} is out of range for its type", detail::quote(key));
  return out;
}

[[noreturn]] void mismatch(const std::string& key) {
  fail("gguf writer: value of key {} does not hold data of its declared type", detail::quote(key));
}

void put_int(Out& o, ValueType t, const std::string& key, std::variant<uint64_t, int64_t> x) {
  switch (t) {
    case ValueType::UINT8: o.put(narrow<uint8_t>(key, x)); return;
    case ValueType::INT8: o.put(narrow<int8_t>(key, x)); return;
    case ValueType::UINT16: o.put(narrow<uint16_t>(key, x)); return;
    case ValueType::INT16: o.put(narrow<int16_t>(key, x)); return;
    case ValueType::UINT32: o.put(narrow<uint32_t>(key, x)); return;
    case ValueType::INT32: o.put(narrow<int32_t>(key, x)); return;
    case ValueType::UINT64: o.put(narrow<uint64_t>(key, x)); return;
    case ValueType::INT64: o.put(narrow<int64_t>(key, x)); return;
    default: mismatch(key);
  }
}

bool is_int_type(ValueType t) {
  return t != ValueType::FLOAT32 && t != ValueType::FLOAT64 && t != ValueType::BOOL &&
         t != ValueType::STRING && t != ValueType::ARRAY && (uint32_t)t <= (uint32_t)ValueType::FLOAT64;
}

void put_scalar(Out& o, ValueType t, const std::string& key, const Value& v) {
  if (is_int_type(t)) {
    if (auto* u = std::get_if<uint64_t>(&v.data)) return put_int(o, t, key, *u);
    if (auto* s = std::get_if<int64_t>(&v.data)) return put_int(o, t, key, *s);
    mismatch(key);
  }
  switch (t) {
    case ValueType::FLOAT32:
      if (auto* d = std::get_if<double>(&v.data)) return o.put((float)*d);
      break;
    case ValueType::FLOAT64:
      if (auto* d = std::get_if<double>(&v.data)) return o.put(*d);
      break;
    case ValueType::BOOL:
      if (auto* b = std::get_if<bool>(&v.data)) return o.put((uint8_t)(*b ? 1 : 0));
      break;
    case ValueType::STRING:
      if (auto* s = std::get_if<std::string>(&v.data)) return o.str(*s);
      break;
    default: break;
  }
  mismatch(key);
}

template <typename Vec, typename Fn>
bool put_each(Out& o, const Value& v, Fn fn) {
  auto* xs = std::get_if<Vec>(&v.data);
  if (!xs) return false;
  o.put<uint64_t>(xs->size());
  for (const auto& x : *xs) fn(x);
  return true;
}

void put_value(Out& o, const std::string& key, const Value& v) {
  if ((uint32_t)v.type > (uint32_t)ValueType::FLOAT64) mismatch(key);
  o.put<uint32_t>((uint32_t)v.type);
  if (v.type != ValueType::ARRAY) return put_scalar(o, v.type, key, v);
  const ValueType et = v.array_type;
  if (et == ValueType::ARRAY || (uint32_t)et > (uint32_t)ValueType::FLOAT64)
    fail("gguf writer: key {} has an unsupported array element type", detail::quote(key));
  o.put<uint32_t>((uint32_t)et);
  bool ok = false;
  if (is_int_type(et)) {
    ok = put_each<std::vector<uint64_t>>(o, v, [&](uint64_t x) { put_int(o, et, key, x); }) ||
         put_each<std::vector<int64_t>>(o, v, [&](int64_t x) { put_int(o, et, key, x); });
  } else if (et == ValueType::FLOAT32) {
    ok = put_each<std::vector<double>>(o, v, [&](double x) { o.put((float)x); });
  } else if (et == ValueType::FLOAT64) {
    ok = put_each<std::vector<double>>(o, v, [&](double x) { o.put(x); });
  } else if (et == ValueType::BOOL) {
    ok = put_each<std::vector<bool>>(o, v, [&](bool x) { o.put((uint8_t)(x ? 1 : 0)); });
  } else if (et == ValueType::STRING) {
    ok = put_each<std::vector<std::string>>(o, v, [&](const std::string& x) { o.str(x); });
  }
  if (!ok) mismatch(key);
}

}  // namespace

void Writer::set(const std::string& key, Value v) {
  for (auto& [k, old] : kv_)
    if (k == key) {
      old = std::move(v);
      return;
    }
  kv_.emplace_back(key, std::move(v));
}

void Writer::set_u32(const std::string& key, uint32_t v) { set(key, Value{ValueType::UINT32, {}, (uint64_t)v}); }
void Writer::set_i32(const std::string& key, int32_t v) { set(key, Value{ValueType::INT32, {}, (int64_t)v}); }
void Writer::set_u64(const std::string& key, uint64_t v) { set(key, Value{ValueType::UINT64, {}, v}); }
void Writer::set_f32(const std::string& key, float v) { set(key, Value{ValueType::FLOAT32, {}, (double)v}); }
void Writer::set_bool(const std::string& key, bool v) { set(key, Value{ValueType::BOOL, {}, v}); }
void Writer::set_string(const std::string& key, const std::string& v) {
  set(key, Value{ValueType::STRING, {}, v});
}
void Writer::set_string_array(const std::string& key, const std::vector<std::string>& v) {
  set(key, Value{ValueType::ARRAY, ValueType::STRING, v});
}
void Writer::set_f32_array(const std::string& key, const std::vector<float>& v) {
  set(key, Value{ValueType::ARRAY, ValueType::FLOAT32, std::vector<double>(v.begin(), v.end())});
}
void Writer::set_i32_array(const std::string& key, const std::vector<int32_t>& v) {
  set(key, Value{ValueType::ARRAY, ValueType::INT32, std::vector<int64_t>(v.begin(), v.end())});
}

void Writer::set_alignment(uint32_t a) {
  if (a == 0 || (a & (a - 1)) != 0) fail("gguf writer: alignment {} is not a power of two", a);
  set_u32("general.alignment", a);
}

void Writer::add_tensor(const std::string& name, GgmlType type, std::vector<int64_t> ne, const void* data) {
  if (ne.empty() || ne.size() > 4)
    fail("gguf writer: tensor {} has {} dimensions (supported: 1 to 4)", detail::quote(name), ne.size());
  if (!type_traits((uint32_t)type)) fail("gguf writer: tensor {} has unknown type id {}", detail::quote(name), (uint32_t)type);
  for (const auto& t : tensors_)
    if (t.name == name) fail("gguf writer: duplicate tensor name {}", detail::quote(name));
  int64_t rows = 1;
  for (size_t d = 0; d < ne.size(); ++d) {
    if (ne[d] < 1) fail("gguf writer: tensor {} has an empty or negative dimension", detail::quote(name));
    if (d > 0 && __builtin_mul_overflow(rows, ne[d], &rows))
      fail("gguf writer: tensor {} is too large", detail::quote(name));
  }
  const size_t nbytes = row_bytes(type, ne[0]) * (size_t)rows;
  const auto* p = static_cast<const uint8_t*>(data);
  tensors_.push_back({name, type, std::move(ne), std::vector<uint8_t>(p, p + nbytes)});
}

std::vector<uint8_t> Writer::to_bytes() const {
  uint64_t alignment = 32;
  for (const auto& [k, v] : kv_)
    if (k == "general.alignment") {
      const auto* u = std::get_if<uint64_t>(&v.data);
      if (v.type != ValueType::UINT32 || !u || *u == 0 || (*u & (*u - 1)) != 0)
        fail("gguf writer: general.alignment must be a u32 power of two");
      alignment = *u;
    }
  std::vector<uint8_t> buf;
  Out o(buf);
  o.put<uint32_t>(0x46554747u);  // "GGUF" read as little-endian u32
  o.put<uint32_t>(3);
  o.put<uint64_t>(tensors_.size());
  o.put<uint64_t>(kv_.size());
  for (const auto& [k, v] : kv_) {
    o.str(k);
    put_value(o, k, v);
  }
  uint64_t offset = 0;
  for (const auto& t : tensors_) {
    o.str(t.name);
    o.put<uint32_t>((uint32_t)t.ne.size());
    for (int64_t n : t.ne) o.put<uint64_t>((uint64_t)n);
    o.put<uint32_t>((uint32_t)t.type);
    o.put<uint64_t>(offset);
    offset += t.bytes.size();
    offset += (alignment - offset % alignment) % alignment;
  }
  o.pad_to(alignment);
  for (const auto& t : tensors_) {
    buf.insert(buf.end(), t.bytes.begin(), t.bytes.end());
    o.pad_to(alignment);
  }
  return buf;
}

void Writer::write(const std::string& path) const {
  const std::vector<uint8_t> bytes = to_bytes();
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "wb"), &std::fclose);
  if (!f) fail("cannot open '{}' for writing: {}", path, std::strerror(errno));
  if (std::fwrite(bytes.data(), 1, bytes.size(), f.get()) != bytes.size())
    fail("write to '{}' failed: {}", path, std::strerror(errno));
  if (std::fclose(f.release()) != 0) fail("write to '{}' failed: {}", path, std::strerror(errno));
}

}  // namespace kvforge::gguf
