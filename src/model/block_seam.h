#pragma once
// The seam between two blocks of the forward pass: a block's output y is
// added to the residual stream x, and the next block's norm of x is taken,
// in one pass over a range of rows (one pool hand-off for all three steps in
// a batched decode step, where they used to be three serial ops). Row-wise,
// so any split of the rows gives the same bits.
#include <cstdint>

#include "model/config.h"
#include "model/weights.h"

namespace kvforge {

// out = norm(x) for n rows of d_model (RMSNorm, or LayerNorm with b; b may
// be empty). out may be x.
void norm_rows(const ModelConfig& c, const Vec& w, const Vec& b, const float* x, float* out, int32_t n);

// For n rows of d_model: y = norm(y) with post (the model's post-norm of the
// block, Gemma; empty: none), x += y, then xn = norm(x) with w, b (w null:
// no norm, the last layer). Bit-identical to the three steps apart.
void residual_norm_rows(const ModelConfig& c, const Vec& post, float* y, float* x, const Vec* w, const Vec* b,
                        float* xn, int32_t n);

}  // namespace kvforge
