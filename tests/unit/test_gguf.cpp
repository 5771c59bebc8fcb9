// GGUF reader/writer and tensor type tests: round-trips, hand-computed
// dequantization of single blocks, and hostile input (truncation at every
// byte, random corruption, crafted bad headers) that must raise kvforge::Error.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "ops/ggml_types.h"
#include "util/error.h"
#include "test_matrix.h"

namespace kvforge::gguf {
namespace {

const GgmlType kSupported[] = {GgmlType::F32,  GgmlType::F16,  GgmlType::BF16,   GgmlType::Q8_0,
                               GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0,   GgmlType::Q5_1,
                               GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K,   GgmlType::Q5_K,
                               GgmlType::Q6_K, GgmlType::IQ4_NL, GgmlType::IQ4_XS};

std::unique_ptr<File> parse(const std::vector<uint8_t>& b) { return File::from_memory(b.data(), b.size(), "t.gguf"); }

// Expects parsing to throw kvforge::Error whose message contains every needle.
void expect_error(const std::vector<uint8_t>& b, std::vector<std::string> needles) {
  try {
    parse(b);
    ADD_FAILURE() << "no error; wanted: " << needles[0];
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind("t.gguf: ", 0), 0u) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    for (const auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
  }
}

// Raw little-endian byte builder for files the Writer refuses to produce.
struct Raw {
  std::vector<uint8_t> b;
  template <typename T>
  Raw& put(T v) {
    const size_t n = b.size();
    b.resize(n + sizeof v);
    std::memcpy(b.data() + n, &v, sizeof v);
    return *this;
  }
  Raw& str(const std::string& s) {
    put<uint64_t>(s.size());
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  Raw& header(uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    b.insert(b.end(), {'G', 'G', 'U', 'F'});
    return put(version).put(n_tensors).put(n_kv);
  }
  Raw& tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type, uint64_t offset) {
    str(name).put<uint32_t>((uint32_t)ne.size());
    for (uint64_t n : ne) put(n);
    return put(type).put(offset);
  }
  Raw& pad(size_t a = 32) {
    b.resize((b.size() + a - 1) / a * a, 0);
    return *this;
  }
  Raw& zeros(size_t n) {
    b.resize(b.size() + n, 0);
    return *this;
  }
};

// Valid encoded bytes for n elements of t: random, with finite fp16 scales.
std::vector<uint8_t> random_tensor_bytes(GgmlType t, int64_t n, std::mt19937& rng) {
  std::vector<uint8_t> b(row_bytes(t, n));
  for (auto& x : b) x = (uint8_t)rng();
  auto put_half = [&](size_t off) {
    const fp16_t h = fp32_to_fp16(std::uniform_real_distribution<float>(-2.f, 2.f)(rng));
    std::memcpy(&b[off], &h, 2);
  };
  const TypeTraits& tr = type_traits(t);
  for (size_t blk = 0; blk < b.size() / tr.block_bytes; ++blk) {
    const size_t o = blk * tr.block_bytes;
    switch (t) {
      case GgmlType::F32: {
        const float f = std::uniform_real_distribution<float>(-2.f, 2.f)(rng);
        std::memcpy(&b[o], &f, 4);
        break;
      }
      case GgmlType::BF16: {
        const bf16_t h = fp32_to_bf16(std::uniform_real_distribution<float>(-2.f, 2.f)(rng));
        std::memcpy(&b[o], &h, 2);
        break;
      }
      default:
        for (size_t off : test::fp16_fields(t)) put_half(o + off);
        break;
    }
  }
  return b;
}

// A small valid file: metadata of several types and one tensor per supported type.
std::vector<uint8_t> small_file() {
  std::mt19937 rng(7);
  Writer w;
  w.set_string("general.architecture", "llama");
  w.set_u32("llama.block_count", 2);
  w.set_f32("eps", 1e-5f);
  w.set_bool("flag", true);
  w.set_string_array("tokens", {"a", "bc", ""});
  w.set_i32_array("ids", {1, -2, 3});
  for (GgmlType t : kSupported) {
    const int64_t ne0 = type_traits(t).block_size * 2;
    auto bytes = random_tensor_bytes(t, ne0 * 2, rng);
    w.add_tensor(std::string("w.") + type_traits(t).name, t, {ne0, 2}, bytes.data());
  }
  return w.to_bytes();
}

// Touches everything a parsed file hands out, so sanitizers see any bad pointer.
void consume(const File& f) {
  double sink = 0;
  for (const auto& [k, v] : f.metadata()) sink += (double)k.size() + (double)v.data.index();
  for (const auto& t : f.tensors()) {
    std::vector<float> row((size_t)t.ne[0]);
    const size_t rb = row_bytes(t.type, t.ne[0]);
    const int64_t rows = t.ne[0] ? t.n_elements() / t.ne[0] : 0;
    for (int64_t r = 0; r < rows; ++r) {
      dequantize_row(t.type, t.data + r * rb, row.data(), t.ne[0]);
      sink += row.empty() ? 0 : row[0];
    }
  }
  (void)sink;
}

// ---------------------------------------------------------------- round trips

TEST(Gguf, EveryValueTypeRoundTrips) {
  Writer w;
  using VT = ValueType;
  w.set("u8", {VT::UINT8, {}, (uint64_t)200});
  w.set("i8", {VT::INT8, {}, (int64_t)-100});
  w.set("u16", {VT::UINT16, {}, (uint64_t)60000});
  w.set("i16", {VT::INT16, {}, (int64_t)-30000});
  w.set("u32", {VT::UINT32, {}, (uint64_t)4000000000u});
  w.set("i32", {VT::INT32, {}, (int64_t)-2000000000});
  w.set("u64", {VT::UINT64, {}, (uint64_t)18000000000000000000ull});
  w.set("i64", {VT::INT64, {}, (int64_t)-9000000000000000000ll});
  w.set("f32", {VT::FLOAT32, {}, (double)0.1f});
  w.set("f64", {VT::FLOAT64, {}, 0.1});
  w.set("bool", {VT::BOOL, {}, false});
  w.set("str", {VT::STRING, {}, std::string("h\0llo", 5)});
  w.set("a.u8", {VT::ARRAY, VT::UINT8, std::vector<uint64_t>{0, 255}});
  w.set("a.i8", {VT::ARRAY, VT::INT8, std::vector<int64_t>{-128, 127}});
  w.set("a.u16", {VT::ARRAY, VT::UINT16, std::vector<uint64_t>{1, 65535}});
  w.set("a.i16", {VT::ARRAY, VT::INT16, std::vector<int64_t>{-32768, 5}});
  w.set("a.u32", {VT::ARRAY, VT::UINT32, std::vector<uint64_t>{7}});
  w.set("a.i32", {VT::ARRAY, VT::INT32, std::vector<int64_t>{-7, 8}});
  w.set("a.u64", {VT::ARRAY, VT::UINT64, std::vector<uint64_t>{~0ull}});
  w.set("a.i64", {VT::ARRAY, VT::INT64, std::vector<int64_t>{std::numeric_limits<int64_t>::min()}});
  w.set("a.f32", {VT::ARRAY, VT::FLOAT32, std::vector<double>{1.5, -0.25}});
  w.set("a.f64", {VT::ARRAY, VT::FLOAT64, std::vector<double>{1e300}});
  w.set("a.bool", {VT::ARRAY, VT::BOOL, std::vector<bool>{true, false, true}});
  w.set("a.str", {VT::ARRAY, VT::STRING, std::vector<std::string>{"x", "", "yz"}});
  w.set("a.empty", {VT::ARRAY, VT::INT32, std::vector<int64_t>{}});
  const auto bytes = w.to_bytes();
  auto f = parse(bytes);
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->metadata().size(), 25u);
  auto same = [&](const char* key, const Value& want) {
    const Value* v = f->find(key);
    ASSERT_NE(v, nullptr) << key;
    EXPECT_EQ(v->type, want.type) << key;
    if (want.type == VT::ARRAY) {
      EXPECT_EQ(v->array_type, want.array_type) << key;
    }
    EXPECT_TRUE(v->data == want.data) << key;
  };
  same("u8", {VT::UINT8, {}, (uint64_t)200});
  same("i8", {VT::INT8, {}, (int64_t)-100});
  same("u64", {VT::UINT64, {}, (uint64_t)18000000000000000000ull});
  same("i64", {VT::INT64, {}, (int64_t)-9000000000000000000ll});
  same("f32", {VT::FLOAT32, {}, (double)0.1f});
  same("f64", {VT::FLOAT64, {}, 0.1});
  same("bool", {VT::BOOL, {}, false});
  same("str", {VT::STRING, {}, std::string("h\0llo", 5)});
  same("a.i8", {VT::ARRAY, VT::INT8, std::vector<int64_t>{-128, 127}});
  same("a.i64", {VT::ARRAY, VT::INT64, std::vector<int64_t>{std::numeric_limits<int64_t>::min()}});
  same("a.bool", {VT::ARRAY, VT::BOOL, std::vector<bool>{true, false, true}});
  same("a.str", {VT::ARRAY, VT::STRING, std::vector<std::string>{"x", "", "yz"}});
  // Writing what we read gives the same bytes: every value keeps its type.
  Writer w2;
  std::vector<std::string> order = {"u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64", "f32", "f64", "bool",
                                    "str", "a.u8", "a.i8", "a.u16", "a.i16", "a.u32", "a.i32", "a.u64", "a.i64",
                                    "a.f32", "a.f64", "a.bool", "a.str", "a.empty"};
  for (const auto& k : order) w2.set(k, *f->find(k));
  EXPECT_EQ(w2.to_bytes(), bytes);
}

TEST(Gguf, TypedGetters) {
  Writer w;
  w.set("u8", {ValueType::UINT8, {}, (uint64_t)9});
  w.set("i16", {ValueType::INT16, {}, (int64_t)-9});
  w.set("u64big", {ValueType::UINT64, {}, ~0ull});
  w.set_f32("f32", 2.5f);
  w.set("f64", {ValueType::FLOAT64, {}, 3.25});
  w.set_bool("b", true);
  w.set_string("s", "hi");
  w.set_string_array("sa", {"p", "q"});
  w.set_f32_array("fa", {1.f, 2.f});
  w.set_i32_array("ia", {-1, 4});
  w.set("ua", {ValueType::ARRAY, ValueType::UINT16, std::vector<uint64_t>{3, 4}});
  auto bytes = w.to_bytes();
  auto f = parse(bytes);
  EXPECT_EQ(f->get_int("u8"), 9);
  EXPECT_EQ(f->get_int("i16"), -9);
  EXPECT_THROW(f->get_int("u64big"), Error);
  EXPECT_THROW(f->get_int("f32"), Error);
  EXPECT_THROW(f->get_int("s"), Error);
  EXPECT_EQ(f->get_int("absent"), std::nullopt);
  EXPECT_EQ(f->get_float("f32"), 2.5);
  EXPECT_EQ(f->get_float("f64"), 3.25);
  EXPECT_EQ(f->get_float("u8"), 9.0);
  EXPECT_THROW(f->get_float("s"), Error);
  EXPECT_EQ(f->get_bool("b"), true);
  EXPECT_THROW(f->get_bool("u8"), Error);
  EXPECT_EQ(f->get_string("s"), "hi");
  EXPECT_THROW(f->get_string("sa"), Error);
  EXPECT_EQ(f->get_string_array("sa"), (std::vector<std::string>{"p", "q"}));
  EXPECT_TRUE(f->get_string_array("absent").empty());
  EXPECT_THROW(f->get_string_array("ia"), Error);
  EXPECT_EQ(f->get_float_array("fa"), (std::vector<double>{1.0, 2.0}));
  EXPECT_EQ(f->get_int_array("ia"), (std::vector<int64_t>{-1, 4}));
  EXPECT_EQ(f->get_int_array("ua"), (std::vector<int64_t>{3, 4}));
  EXPECT_THROW(f->get_int_array("fa"), Error);
  try {
    f->get_int("s");
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("t.gguf: metadata key 's' has type string"), std::string::npos) << e.what();
  }
}

TEST(Gguf, EveryTensorTypeRoundTrips) {
  std::mt19937 rng(1);
  for (uint32_t align : {32u, 64u, 1u}) {
    Writer w;
    if (align != 32) w.set_alignment(align);
    std::vector<std::vector<uint8_t>> payloads;
    for (GgmlType t : kSupported) {
      const int64_t ne0 = type_traits(t).block_size * 3;
      payloads.push_back(random_tensor_bytes(t, ne0 * 2 * 2, rng));
      w.add_tensor(type_traits(t).name, t, {ne0, 2, 2}, payloads.back().data());
    }
    const auto bytes = w.to_bytes();
    auto f = parse(bytes);
    EXPECT_EQ(f->alignment(), align);
    ASSERT_EQ(f->tensors().size(), std::size(kSupported));
    for (size_t i = 0; i < std::size(kSupported); ++i) {
      const TensorInfo& ti = f->tensors()[i];
      EXPECT_EQ(ti.name, type_traits(kSupported[i]).name);
      EXPECT_EQ(f->find_tensor(ti.name), &ti);
      EXPECT_EQ(ti.type, kSupported[i]);
      EXPECT_EQ(ti.n_dims, 3);
      EXPECT_EQ(ti.ne[3], 1);
      EXPECT_EQ(ti.nbytes, payloads[i].size());
      EXPECT_EQ(ti.offset % align, 0u);
      EXPECT_EQ((size_t)(ti.data - bytes.data()) % align, 0u);
      EXPECT_EQ(std::memcmp(ti.data, payloads[i].data(), ti.nbytes), 0);
    }
    EXPECT_EQ(f->find_tensor("nope"), nullptr);
    consume(*f);
  }
}

TEST(Gguf, OpenFromDiskAndMissingFile) {
  const std::string path = ::testing::TempDir() + "kvforge_test_gguf.gguf";
  Writer w;
  w.set_string("general.architecture", "llama");
  const float x[32] = {1.f};
  w.add_tensor("x", GgmlType::F32, {32}, x);
  w.write(path);
  auto f = File::open(path);
  EXPECT_EQ(f->path(), path);
  EXPECT_EQ(f->get_string("general.architecture"), "llama");
  EXPECT_EQ(f->find_tensor("x")->data[2], 0x80);  // 1.0f = 0x3f800000 little-endian
  try {
    File::open(path + ".missing");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path + ".missing"), std::string::npos);
  }
  EXPECT_THROW(File::open(::testing::TempDir()), Error);  // a directory
}

// ------------------------------------------------------------ dequantization

TEST(Dequant, PlainFloats) {
  const float f32[2] = {1.5f, -2.f};
  const fp16_t f16[2] = {0x3c00, 0xc000};  // 1, -2
  const bf16_t bf[2] = {0x3fc0, 0xc000};   // 1.5, -2
  float y[2];
  dequantize_row(GgmlType::F32, f32, y, 2);
  EXPECT_EQ(y[0], 1.5f);
  dequantize_row(GgmlType::F16, f16, y, 2);
  EXPECT_EQ(y[0], 1.f);
  EXPECT_EQ(y[1], -2.f);
  dequantize_row(GgmlType::BF16, bf, y, 2);
  EXPECT_EQ(y[0], 1.5f);
  EXPECT_EQ(y[1], -2.f);
}

TEST(Dequant, Q4_0) {
  BlockQ4_0 b{};
  b.d = 0x3800;  // 0.5
  for (int l = 0; l < 16; ++l) b.qs[l] = (uint8_t)(l | ((15 - l) << 4));
  float y[32];
  dequantize_row(GgmlType::Q4_0, &b, y, 32);
  EXPECT_EQ(y[0], -4.f);    // (0 - 8) * 0.5
  EXPECT_EQ(y[15], 3.5f);   // (15 - 8) * 0.5
  EXPECT_EQ(y[16], 3.5f);   // high nibble of qs[0] = 15
  EXPECT_EQ(y[31], -4.f);
  EXPECT_EQ(y[9], 0.5f);
}

TEST(Dequant, Q4_1) {
  BlockQ4_1 b{};
  b.d = 0x3400;  // 0.25
  b.m = 0xbc00;  // -1
  for (int l = 0; l < 16; ++l) b.qs[l] = (uint8_t)(l | (3 << 4));
  float y[32];
  dequantize_row(GgmlType::Q4_1, &b, y, 32);
  EXPECT_EQ(y[0], -1.f);
  EXPECT_EQ(y[4], 0.f);
  EXPECT_EQ(y[15], 2.75f);
  EXPECT_EQ(y[20], -0.25f);
}

TEST(Dequant, Q8_0) {
  BlockQ8_0 b{};
  b.d = 0x4000;  // 2
  for (int l = 0; l < 32; ++l) b.qs[l] = (int8_t)(l * 8 - 128);
  float y[32];
  dequantize_row(GgmlType::Q8_0, &b, y, 32);
  EXPECT_EQ(y[0], -256.f);
  EXPECT_EQ(y[31], 240.f);
  EXPECT_EQ(y[16], 0.f);
}

// Packs eight 6-bit scales and mins the way Q4_K/Q5_K store them.
void pack_k4(uint8_t out[12], const uint8_t sc[8], const uint8_t m[8]) {
  for (int j = 0; j < 4; ++j) {
    out[j] = (uint8_t)(sc[j] | ((sc[j + 4] >> 4) << 6));
    out[j + 4] = (uint8_t)(m[j] | ((m[j + 4] >> 4) << 6));
    out[j + 8] = (uint8_t)((sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4));
  }
}

const uint8_t kSc[8] = {1, 2, 3, 63, 17, 33, 48, 5};
const uint8_t kMin[8] = {0, 1, 2, 3, 40, 20, 63, 7};

TEST(Dequant, Q4_K) {
  BlockQ4_K b{};
  b.d = 0x3800;     // 0.5
  b.dmin = 0x3400;  // 0.25
  pack_k4(b.scales, kSc, kMin);
  auto q = [](int e) { return (e * 7 + 3) % 16; };
  // Each 64-element group: 32 bytes, elements 0-31 in low nibbles, 32-63 high.
  for (int g = 0; g < 4; ++g)
    for (int l = 0; l < 32; ++l) b.qs[32 * g + l] = (uint8_t)(q(64 * g + l) | (q(64 * g + 32 + l) << 4));
  float y[256];
  dequantize_row(GgmlType::Q4_K, &b, y, 256);
  for (int e = 0; e < 256; ++e) {
    const int j = e / 32;
    EXPECT_EQ(y[e], 0.5f * kSc[j] * q(e) - 0.25f * kMin[j]) << e;
  }
  EXPECT_EQ(y[0], 0.5f * 1 * 3 - 0);                // sub-block 0: sc 1, min 0, q 3
  EXPECT_EQ(y[6 * 32], 0.5f * 48 * q(192) - 15.75f);  // sub-block 6: sc 48, min 63
}

TEST(Dequant, Q5_K) {
  BlockQ5_K b{};
  b.d = 0x3c00;     // 1
  b.dmin = 0x3800;  // 0.5
  pack_k4(b.scales, kSc, kMin);
  auto q = [](int e) { return (e * 13 + 5) % 32; };
  for (int g = 0; g < 4; ++g)
    for (int l = 0; l < 32; ++l) b.qs[32 * g + l] = (uint8_t)((q(64 * g + l) & 15) | ((q(64 * g + 32 + l) & 15) << 4));
  // Bit j of qh[l] is the fifth bit of element 32*j + l.
  for (int e = 0; e < 256; ++e)
    if (q(e) & 16) b.qh[e % 32] |= (uint8_t)(1u << (e / 32));
  float y[256];
  dequantize_row(GgmlType::Q5_K, &b, y, 256);
  for (int e = 0; e < 256; ++e) {
    const int j = e / 32;
    EXPECT_EQ(y[e], 1.f * kSc[j] * q(e) - 0.5f * kMin[j]) << e;
  }
  EXPECT_EQ(y[1], 1.f * 1 * 18 - 0);  // q(1) = 18 needs the fifth bit
}

TEST(Dequant, Q6_K) {
  BlockQ6_K b{};
  b.d = 0x3800;  // 0.5
  for (int s = 0; s < 16; ++s) b.scales[s] = (int8_t)(s * 9 - 70);
  auto q = [](int e) { return (e * 29 + 11) % 64; };
  // Per 128-element half h and l < 32: elements l, l+32, l+64, l+96 take their
  // low 4 bits from ql[l] lo, ql[l+32] lo, ql[l] hi, ql[l+32] hi and their top
  // 2 bits from qh[l] bits 0-1, 2-3, 4-5, 6-7.
  for (int h = 0; h < 2; ++h)
    for (int l = 0; l < 32; ++l) {
      const int e = 128 * h + l;
      b.ql[64 * h + l] = (uint8_t)((q(e) & 15) | ((q(e + 64) & 15) << 4));
      b.ql[64 * h + 32 + l] = (uint8_t)((q(e + 32) & 15) | ((q(e + 96) & 15) << 4));
      b.qh[32 * h + l] = (uint8_t)((q(e) >> 4) | ((q(e + 32) >> 4) << 2) | ((q(e + 64) >> 4) << 4) | ((q(e + 96) >> 4) << 6));
    }
  float y[256];
  dequantize_row(GgmlType::Q6_K, &b, y, 256);
  for (int e = 0; e < 256; ++e) EXPECT_EQ(y[e], (0.5f * b.scales[e / 16]) * (float)(q(e) - 32)) << e;
  EXPECT_EQ(y[0], 0.5f * -70 * (11 - 32));
}

TEST(Dequant, TypeTable) {
  EXPECT_EQ(type_name(12), "Q4_K");
  EXPECT_EQ(type_name(4), "type#4");
  EXPECT_EQ(type_traits(4u), nullptr);
  EXPECT_EQ(type_traits(1000u), nullptr);
  EXPECT_FALSE(type_supported(9));  // Q8_1
  EXPECT_TRUE(type_supported(30));  // BF16
  EXPECT_EQ(row_bytes(GgmlType::Q6_K, 512), 420u);
  EXPECT_THROW(row_bytes(GgmlType::Q4_0, 33), Error);
  float y[32];
  const uint8_t zeros[64] = {};
  EXPECT_THROW(dequantize_row(GgmlType::Q8_1, zeros, y, 32), Error);
  for (GgmlType t : kSupported) EXPECT_TRUE(type_traits(t).supported);
}

// ------------------------------------------------------------- hostile input

TEST(GgufBad, TruncatedAtEveryByte) {
  const auto full = small_file();
  auto f = parse(full);
  size_t data_end = 0;
  for (const auto& t : f->tensors()) data_end = std::max(data_end, (size_t)(t.data - full.data()) + t.nbytes);
  for (size_t n = 0; n < full.size(); ++n) {
    // An exact-size heap copy so that sanitizers catch any read past the end.
    std::vector<uint8_t> cut(full.begin(), full.begin() + (long)n);
    if (n < data_end) {
      EXPECT_THROW(parse(cut), Error) << "cut at " << n;
    } else {
      try {  // only the final padding is gone: still a complete file
        consume(*parse(cut));
      } catch (const Error&) {
      }
    }
  }
}

TEST(GgufBad, RandomCorruptionNeverCrashes) {
  const auto full = small_file();
  std::mt19937 rng(42);
  int parsed = 0;
  for (int it = 0; it < 3000; ++it) {
    auto b = full;
    const int flips = 1 + (int)(rng() % 4);
    for (int k = 0; k < flips; ++k) {
      // Corrupt the header/metadata/infos region more often: that is where parsing happens.
      const size_t pos = rng() % 2 ? rng() % std::min<size_t>(b.size(), 600) : rng() % b.size();
      b[pos] = (uint8_t)rng();
    }
    try {
      consume(*parse(b));
      ++parsed;
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
    }
  }
  EXPECT_GT(parsed, 0);
}

TEST(GgufBad, HeaderProblems) {
  expect_error({}, {"0 bytes"});
  expect_error({'G', 'G', 'U'}, {"not a GGUF file"});
  expect_error(Raw().put<uint32_t>(0x12345678).b, {"bad magic"});
  expect_error(Raw().header(1, 0, 0).b, {"version 1"});
  expect_error(Raw().header(4, 0, 0).b, {"unsupported GGUF version 4"});
  expect_error(Raw().header(0x03000000u, 0, 0).b, {"big-endian"});
  expect_error(Raw().header(3, 0, 1ull << 60).b, {"metadata entries"});
  expect_error(Raw().header(3, 1ull << 40, 0).b, {"tensors"});
  auto h = Raw().header(3, 0, 0).b;
  h.pop_back();
  expect_error(h, {"truncated"});
}

TEST(GgufBad, V2HeaderAccepted) {
  auto b = small_file();
  b[4] = 2;  // version field
  auto f = parse(b);
  EXPECT_EQ(f->version(), 2u);
  EXPECT_EQ(f->get_string("general.architecture"), "llama");
  EXPECT_EQ(f->tensors().size(), std::size(kSupported));
}

TEST(GgufBad, MetadataProblems) {
  expect_error(Raw().header(3, 0, 1).str("k").put<uint32_t>(13).put<uint32_t>(0).b, {"'k'", "unknown value type 13"});
  expect_error(Raw().header(3, 0, 1).str("k").put<uint32_t>(9).put<uint32_t>(9).put<uint64_t>(1).b,
               {"array of arrays"});
  expect_error(Raw().header(3, 0, 1).str("k").put<uint32_t>(9).put<uint32_t>(77).put<uint64_t>(0).b,
               {"unknown value type 77"});
  expect_error(Raw().header(3, 0, 1).str("k").put<uint32_t>(9).put<uint32_t>(0).put<uint64_t>(1ull << 62).b,
               {"'k'", "array elements"});
  expect_error(Raw().header(3, 0, 1).str("k").put<uint32_t>(8).put<uint64_t>(1ull << 62).b, {"truncated"});
  expect_error(Raw().header(3, 0, 1).put<uint64_t>(~0ull).zeros(16).b, {"truncated", "metadata key"});
  expect_error(Raw().header(3, 0, 1).str("k").put<uint32_t>(7).put<uint8_t>(2).b, {"bool"});
  expect_error(Raw().header(3, 0, 2).str("k").put<uint32_t>(0).put<uint8_t>(1).str("k").put<uint32_t>(0).put<uint8_t>(1).b,
               {"duplicate metadata key 'k'"});
  expect_error(Raw().header(3, 0, 1).str("a\nb").put<uint32_t>(13).b, {"'a\\x0ab'"});
  expect_error(Raw().header(3, 0, 1).str("general.alignment").put<uint32_t>(4).put<uint32_t>(24).b,
               {"general.alignment"});
  expect_error(Raw().header(3, 0, 1).str("general.alignment").put<uint32_t>(8).str("x").b, {"general.alignment"});
}

TEST(GgufBad, TensorProblems) {
  auto one = [](std::vector<uint64_t> ne, uint32_t type, uint64_t offset, size_t data_bytes) {
    return Raw().header(3, 1, 0).tensor("w", std::move(ne), type, offset).pad().zeros(data_bytes).b;
  };
  EXPECT_NO_THROW(parse(one({32, 2}, 0, 0, 256)));
  expect_error(one({32, 1, 1, 1, 1}, 0, 0, 128), {"'w'", "5 dimensions"});
  expect_error(one({}, 0, 0, 128), {"'w'", "0 dimensions"});
  expect_error(one({32}, 9, 0, 128), {"'w'", "unsupported type Q8_1 (id 9)"});
  expect_error(one({256}, 16, 0, 128), {"'w'", "unsupported type IQ2_XXS (id 16)"});
  expect_error(one({32}, 4, 0, 128), {"'w'", "unknown type id 4"});
  expect_error(one({32}, 99, 0, 128), {"'w'", "unknown type id 99"});
  expect_error(one({32, 2}, 0, 0, 255), {"'w'", "outside"});
  expect_error(one({32}, 0, 16, 256), {"'w'", "not aligned"});
  expect_error(one({32}, 0, ~0ull - 31, 256), {"'w'", "outside"});
  expect_error(one({33}, 2, 0, 256), {"'w'", "multiple of the Q4_0 block size"});
  expect_error(one({1ull << 62, 1ull << 62}, 0, 0, 0), {"'w'", "overflow"});
  expect_error(one({1ull << 63}, 0, 0, 0), {"'w'", "absurd"});
  expect_error(one({1ull << 61}, 0, 0, 0), {"'w'", "outside"});  // 2^63 bytes: fits in 64 bits
  expect_error(one({1ull << 62}, 0, 0, 0), {"'w'", "overflow"});  // 2^64 bytes
  expect_error(one({32, 0}, 0, 0, 0), {"'w'", "empty dimension"});
  expect_error(Raw().header(3, 1, 0).tensor("w", {32}, 0, 0).b, {"truncated"});
  auto two = [](uint64_t off2) {
    return Raw().header(3, 2, 0).tensor("a", {32}, 0, 0).tensor("b", {32}, 0, off2).pad().zeros(512).b;
  };
  EXPECT_NO_THROW(parse(two(128)));
  expect_error(two(96), {"overlap"});
  expect_error(Raw().header(3, 2, 0).tensor("a", {32}, 0, 0).tensor("a", {32}, 0, 128).pad().zeros(512).b,
               {"duplicate tensor name 'a'"});
}

TEST(GgufWriter, RejectsBadInput) {
  Writer w;
  const float x[64] = {};
  EXPECT_THROW(w.add_tensor("x", GgmlType::Q4_0, {33}, x), Error);
  EXPECT_THROW(w.add_tensor("x", GgmlType::F32, {1, 1, 1, 1, 1}, x), Error);
  EXPECT_THROW(w.add_tensor("x", GgmlType::F32, {4, 0}, x), Error);
  EXPECT_THROW(w.set_alignment(24), Error);
  w.add_tensor("x", GgmlType::F32, {4}, x);
  EXPECT_THROW(w.add_tensor("x", GgmlType::F32, {4}, x), Error);
  w.set("bad", {ValueType::UINT8, {}, (uint64_t)300});
  EXPECT_THROW(w.to_bytes(), Error);
  w.set("bad", {ValueType::STRING, {}, (uint64_t)3});
  EXPECT_THROW(w.to_bytes(), Error);
  w.set("bad", {ValueType::INT8, {}, (int64_t)-3});
  EXPECT_NO_THROW(w.to_bytes());
}

}  // namespace
}  // namespace kvforge::gguf
