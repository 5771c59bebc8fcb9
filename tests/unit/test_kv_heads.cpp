// Per-head mixed caches (RLKV / DuoAttention): head-pattern files, the
// sparsity -> streaming heads rule, the --kv spellings and their layouts.
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "kv/head_pattern.h"
#include "kv/kv_layout.h"
#include "kv/kv_policy.h"
#include "util/error.h"

namespace kvforge {
namespace {

const KvShape kSmolLM2{30, 3, 64, 64};

struct TempFile {
  std::string path;
  explicit TempFile(const std::string& text, const std::string& tag = "") {
    path = "/tmp/kvforge_heads_" + std::to_string(getpid()) + tag + ".tsv";
    std::ofstream(path, std::ios::binary) << text;
  }
  ~TempFile() { unlink(path.c_str()); }
};

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(HeadPattern, ReadsTsvLikeLoadtxtAndClips) {
  // Comments and blank lines skipped, values outside [0, 1] clipped, CRLF and
  // spaces around fields accepted (float() accepts them).
  TempFile f("# layer x head\n0.5\t1.25\t-0.1\r\n\n 1e-3\t0.75 \t1\n");
  const HeadGates g = read_head_gates(f.path);
  ASSERT_EQ(g.n_layer, 2);
  ASSERT_EQ(g.n_kv_head, 3);
  EXPECT_EQ(g.alpha, (std::vector<double>{0.5, 1.0, 0.0, 0.001, 0.75, 1.0}));
}

TEST(HeadPattern, WritesWhatSavetxtWritesAndRoundTrips) {
  HeadGates g{2, 2, {0.1, 1.0, 0.0, 0.333333333333333314829616256247}};
  TempFile f("", "_w");
  write_head_gates(f.path, g);
  std::ifstream in(f.path);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(text,
            "1.000000000000000056e-01\t1.000000000000000000e+00\n"
            "0.000000000000000000e+00\t3.333333333333333148e-01\n");
  EXPECT_EQ(read_head_gates(f.path).alpha, g.alpha);  // %.18e is exact for doubles
}

TEST(HeadPattern, BadFilesGiveOneClearError) {
  TempFile ragged("0.1\t0.2\n0.3\n", "_r"), word("0.1\tabc\n", "_a"), empty("# nothing\n\n", "_e"),
      trailing("0.1\t0.2\t\n", "_t"), inf("0.1\tinf\n", "_i");
  EXPECT_NE(error_of([&] { read_head_gates(ragged.path); }).find("line 2: 1 values, but line 1 has 2"),
            std::string::npos);
  EXPECT_NE(error_of([&] { read_head_gates(word.path); }).find("'abc' is not a number"), std::string::npos);
  EXPECT_NE(error_of([&] { read_head_gates(empty.path); }).find("no gate values"), std::string::npos);
  EXPECT_NE(error_of([&] { read_head_gates(trailing.path); }).find("line 1"), std::string::npos);
  EXPECT_NE(error_of([&] { read_head_gates(inf.path); }).find("not finite"), std::string::npos);
  EXPECT_NE(error_of([&] { read_head_gates("/nonexistent/x.tsv"); }).find("cannot open"), std::string::npos);
  EXPECT_NE(error_of([&] { read_head_gates("/tmp"); }).find("not a regular file"), std::string::npos);
}

TEST(HeadPattern, QuantileIsNumpysLinearMethod) {
  // np.quantile([1, 2, 3, 4], q): virtual index 3q, linear between neighbours.
  const std::vector<double> v{4, 1, 3, 2};
  EXPECT_EQ(quantile_linear(v, 0.0), 1.0);
  EXPECT_EQ(quantile_linear(v, 0.5), 2.5);
  EXPECT_EQ(quantile_linear(v, 0.25), 1.75);
  EXPECT_EQ(quantile_linear(v, 1.0), 4.0);
  EXPECT_EQ(quantile_linear({7}, 0.3), 7.0);
  // t >= 0.5 interpolates from above (numpy's _lerp): b - (b - a)(1 - t).
  EXPECT_EQ(quantile_linear({0.1, 0.7}, 0.9), 0.7 - (0.7 - 0.1) * (1 - 0.9));
}

TEST(HeadPattern, SparsityPicksTheLowestGatesAsStreaming) {
  // 2 layers x 3 heads; sorted gates 0.1 0.2 0.3 0.6 0.8 0.9.
  const HeadGates g{2, 3, {0.9, 0.1, 0.6, 0.3, 0.8, 0.2}};
  using M = std::vector<uint8_t>;
  EXPECT_EQ(select_full_heads(g, 0.0), (M{1, 1, 1, 1, 1, 1}));  // s = 0: none streaming
  EXPECT_EQ(select_full_heads(g, 1.0), (M{0, 0, 0, 0, 0, 0}));  // s = 1: all streaming
  // s = 0.5: index 2.5, threshold between 0.3 and 0.6: 0.1, 0.2, 0.3 stream.
  EXPECT_EQ(select_full_heads(g, 0.5), (M{1, 0, 1, 0, 1, 0}));
  // s = 0.2: index 1.0, threshold = the 2nd smallest (0.2 + noise) itself,
  // which is >= the threshold and stays full: only 0.1 streams (as numpy's rule).
  EXPECT_EQ(select_full_heads(g, 0.2), (M{1, 0, 1, 1, 1, 1}));
  // s = 0.21: just above: 0.1 and 0.2 stream.
  EXPECT_EQ(select_full_heads(g, 0.21), (M{1, 0, 1, 1, 1, 0}));
  EXPECT_THROW(select_full_heads(g, 1.5), Error);
  EXPECT_THROW(select_full_heads(g, -0.1), Error);
}

TEST(HeadPattern, TiesBreakTowardsEarlierHeadsStreaming) {
  // All gates equal (a fresh gate file is all ones): the noise 1e-6 * i / N
  // orders them by (layer, head), so s = 0.5 streams exactly the first half.
  const HeadGates ones{2, 2, {1, 1, 1, 1}};
  EXPECT_EQ(select_full_heads(ones, 0.5), (std::vector<uint8_t>{0, 0, 1, 1}));
  // Gates clipped to 1 from above tie with 1 too: 1.3 in the file counts as 1.
  TempFile f("1.3\t1\n0.2\t1\n");
  EXPECT_EQ(select_full_heads(read_head_gates(f.path), 0.25), (std::vector<uint8_t>{1, 1, 0, 1}));
  EXPECT_EQ(select_full_heads(read_head_gates(f.path), 0.6), (std::vector<uint8_t>{0, 1, 0, 1}));
}

TEST(HeadPattern, RandomGatesArePureFunctionsOfTheSeed) {
  const HeadGates a = random_head_gates(30, 3, 7), b = random_head_gates(30, 3, 7), c = random_head_gates(30, 3, 8);
  EXPECT_EQ(a.alpha, b.alpha);
  EXPECT_NE(a.alpha, c.alpha);
  for (double x : a.alpha) EXPECT_TRUE(x >= 0 && x < 1);
  int streaming = 0;
  for (uint8_t f : select_full_heads(a, 0.5)) streaming += !f;
  EXPECT_EQ(streaming, 45);  // distinct values: exactly half of 90 below the median
}

TEST(KvHeadsPolicy, ParsesDescribesAndRoundTrips) {
  const KvPolicy p = parse_kv_policy("heads:/x/adapter_weights.tsv,sparsity:0.5+q8");
  EXPECT_EQ(p.heads.kind, KvHeadChoice::Kind::File);
  EXPECT_EQ(p.heads.file, "/x/adapter_weights.tsv");
  EXPECT_EQ(p.heads.sparsity, 0.5);
  EXPECT_EQ(p.heads.sinks, 16);
  EXPECT_EQ(p.heads.recent, 64);
  EXPECT_EQ(p.storage, KvStorage::Q8_0);
  EXPECT_EQ(p.describe(), "heads:/x/adapter_weights.tsv,sparsity:0.5,sinks:16,recent:64+q8");
  EXPECT_EQ(parse_kv_policy("heads:random:3,sparsity:0.25,recent:32,sinks:4").describe(),
            "heads:random:3,sparsity:0.25,sinks:4,recent:32+f16");
  EXPECT_EQ(parse_kv_policy("heads:full:3-1/0-2+q4,hadamard").describe(),
            "heads:full:0-2/3-1,sinks:16,recent:64+q4,hadamard");
  EXPECT_EQ(parse_kv_policy("gates:g.tsv,sinks:8").describe(), "gates:g.tsv,sinks:8,recent:64+f16");
  for (const char* s : {"heads:a.tsv,sparsity:1e-3", "heads:random:18446744073709551615,sparsity:1",
                        "heads:full:0-0,recent:1,sinks:0", "gates:random+f32"}) {
    const KvPolicy q = parse_kv_policy(s);
    EXPECT_EQ(parse_kv_policy(q.describe()), q) << s;
  }
}

TEST(KvHeadsPolicy, RejectsNonsenseNamingThePart) {
  struct Case {
    const char* spec;
    const char* must_mention;
  };
  const Case cases[] = {
      {"heads:a.tsv", "needs sparsity"},
      {"heads:a.tsv,sparsity:1.5", "sparsity must be in [0, 1]"},
      {"heads:a.tsv,sparsity:-0.1", "sparsity must be in [0, 1]"},
      {"heads:a.tsv,sparsity:half", "'sparsity:half'"},
      {"heads:a.tsv,sparsity:nan", "sparsity must be in [0, 1]"},
      {"heads:,sparsity:0.5", "missing file name"},
      {"heads:random:x,sparsity:0.5", "bad seed"},
      {"heads:full:0-1/0-1", "twice"},
      {"heads:full:01", "'01'"},
      {"heads:full:0-1,sparsity:0.5", "'sparsity:0.5'"},
      {"gates:g.tsv,sparsity:0.5", "'sparsity:0.5'"},
      {"heads:a.tsv,sparsity:0.5,recent:0", "'recent:0'"},
      {"heads:a.tsv,sparsity:0.5,sinks:2,sinks:3", "'sinks:3'"},
      {"heads:a.tsv,sparsity:0.5+window:64", "already given"},
      {"full+gates:g.tsv", "already given"},
  };
  for (const Case& c : cases) {
    const std::string e = error_of([&] { parse_kv_policy(c.spec); });
    EXPECT_NE(e, "") << "accepted: " << c.spec;
    EXPECT_NE(e.find(c.must_mention), std::string::npos) << c.spec << " -> " << e;
  }
}

TEST(KvHeadsPolicy, FileResolvesToStreamingAndFullHeads) {
  // 30 x 3 gates 0, 1/89, ..., 1 in (layer, head) order: the first 45 stream at s = 0.5.
  std::string text;
  for (int l = 0; l < 30; ++l)
    for (int h = 0; h < 3; ++h) text += fmt::format("{}{}", (l * 3 + h) / 89.0, h == 2 ? "\n" : "\t");
  TempFile f(text);
  const KvLayout L = resolve_kv_layout(parse_kv_policy("heads:" + f.path + ",sparsity:0.5+q8"), kSmolLM2, 8192);
  for (int i = 0; i < 90; ++i) {
    const KvHeadSpec& h = L.heads[i];
    EXPECT_EQ(h.storage, KvStorage::Q8_0);
    if (i < 45) EXPECT_EQ(h, (KvHeadSpec{64, 16, KvStorage::Q8_0, false, 80})) << i;
    else EXPECT_EQ(h, (KvHeadSpec{0, 0, KvStorage::Q8_0, false, 8192})) << i;
  }
  // Bytes: 45 heads x 8192 cells + 45 x 80, each 2 rows of 2 q8 blocks of 34 bytes.
  auto c = make_kv_cache(L);
  EXPECT_EQ(c->bytes(), (45u * 8192 + 45u * 80) * 136);
  EXPECT_EQ(c->room(), 8192);
  // The file must fit the model.
  EXPECT_NE(error_of([&] { resolve_kv_layout(parse_kv_policy("heads:" + f.path + ",sparsity:0.5"), KvShape{24, 3, 64, 64}, 64); })
                .find("30 rows x 3 columns, but this model has 24 layers x 3 KV heads"),
            std::string::npos);
  EXPECT_NE(error_of([&] { resolve_kv_layout(parse_kv_policy("heads:/nope.tsv,sparsity:0.5"), kSmolLM2, 64); })
                .find("cannot open head-pattern file /nope.tsv"),
            std::string::npos);
}

TEST(KvHeadsPolicy, ListRandomAndGatesResolve) {
  const KvLayout L = resolve_kv_layout(parse_kv_policy("heads:full:0-2/29-0,sinks:4,recent:8"), kSmolLM2, 512);
  for (int l = 0; l < 30; ++l)
    for (int h = 0; h < 3; ++h) {
      const bool full = (l == 0 && h == 2) || (l == 29 && h == 0);
      EXPECT_EQ(L.head(l, h).window, full ? 0 : 8);
      EXPECT_EQ(L.head(l, h).n_cells, full ? 512 : 12);
    }
  EXPECT_NE(error_of([&] { resolve_kv_layout(parse_kv_policy("heads:full:30-0"), kSmolLM2, 512); })
                .find("head 30-0 does not exist"),
            std::string::npos);
  const KvLayout R = resolve_kv_layout(parse_kv_policy("heads:random:5,sparsity:0.25"), kSmolLM2, 512);
  int streaming = 0;
  for (const KvHeadSpec& h : R.heads) streaming += h.window > 0;
  EXPECT_EQ(streaming, 23);  // index 22.25: the 23 lowest of 90 distinct gates
  TempFile f("1\t0.25\t0\n", "_g");
  const KvLayout G = resolve_kv_layout(parse_kv_policy("gates:" + f.path + ",sinks:2,recent:5"), KvShape{1, 3, 32, 32}, 64);
  EXPECT_EQ(G.head(0, 1).gate, 0.25f);
  EXPECT_EQ(G.head(0, 1).window, 0);
  EXPECT_EQ(G.head(0, 1).n_cells, 64);
  EXPECT_EQ(G.head(0, 2).stream_sinks, 2);
  EXPECT_EQ(G.head(0, 2).stream_recent, 5);
}

}  // namespace
}  // namespace kvforge
