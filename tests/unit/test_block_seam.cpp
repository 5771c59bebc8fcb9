// The seam pass between blocks (model/block_seam.h): the post-norm, the
// residual add and the next norm in one pass give the bits of the three ops
// apart, for any split of the rows (the forward pass splits them over threads).
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "model/block_seam.h"
#include "ops/activation.h"

namespace kvforge {
namespace {

Vec randn(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.5f);
  Vec x(n);
  for (float& v : x) v = nd(rng);
  return x;
}

TEST(BlockSeam, ResidualNormRowsMatchesTheOpsApart) {
  const int32_t n = 7;
  for (NormKind kind : {NormKind::RMSNorm, NormKind::LayerNorm})
    for (bool post : {false, true})
      for (bool last : {false, true}) {
        ModelConfig c;
        c.d_model = 72;
        c.norm = kind;
        c.norm_eps = 1e-5f;
        const size_t d = c.d_model;
        const Vec y0 = randn(n * d, 1), x0 = randn(n * d, 2), w = randn(d, 3), b = randn(d, 4);
        const Vec post_w = post ? randn(d, 5) : Vec{};
        // Apart: post-norm of y, x += y, xn = norm(x).
        Vec y = y0, x = x0, xn(n * d, -1.0f);
        if (post) norm_rows(c, post_w, {}, y.data(), y.data(), n);
        add_inplace(x.data(), y.data(), (int64_t)n * d);
        if (!last) norm_rows(c, w, b, x.data(), xn.data(), n);
        // Fused, in row ranges of 3, 1 and 3.
        Vec fy = y0, fx = x0, fxn(n * d, -1.0f);
        for (int32_t t0 : {0, 3, 4}) {
          const int32_t t1 = t0 == 3 ? 4 : t0 + 3;
          residual_norm_rows(c, post_w, &fy[t0 * d], &fx[t0 * d], last ? nullptr : &w, last ? nullptr : &b,
                             &fxn[t0 * d], t1 - t0);
        }
        EXPECT_EQ(0, std::memcmp(x.data(), fx.data(), x.size() * 4)) << (int)kind << post << last;
        EXPECT_EQ(0, std::memcmp(xn.data(), fxn.data(), xn.size() * 4)) << (int)kind << post << last;
        EXPECT_NE(x, x0);  // something happened
      }
}

}  // namespace
}  // namespace kvforge
