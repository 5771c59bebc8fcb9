#include "model/block_seam.h"

#include "ops/activation.h"
#include "ops/norm.h"

namespace kvforge {

void norm_rows(const ModelConfig& c, const Vec& w, const Vec& b, const float* x, float* out, int32_t n) {
  if (c.norm == NormKind::RMSNorm) rms_norm(x, w.data(), out, n, c.d_model, c.norm_eps);
  else layer_norm(x, w.data(), b.empty() ? nullptr : b.data(), out, n, c.d_model, c.norm_eps);
}

void residual_norm_rows(const ModelConfig& c, const Vec& post, float* y, float* x, const Vec* w, const Vec* b,
                        float* xn, int32_t n) {
  if (!post.empty()) norm_rows(c, post, {}, y, y, n);
  add_inplace(x, y, (int64_t)n * c.d_model);
  if (w) norm_rows(c, *w, *b, x, xn, n);
}

}  // namespace kvforge
