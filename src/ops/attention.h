#pragma once
// Decode-style attention over cached rows, one query token and one KV-head
// group at a time: scores, online softmax and the weighted sum of V in a
// single pass that reads each cached row once for all query heads of the
// group (GQA).
//
// Batch invariance: the rows of the view are cut into chunks of kAttnChunk
// rows (aligned to the start of each segment) and each chunk into tiles of
// kAttnTile; every chunk gives a partial result (running max, denominator,
// unnormalised sum of V) and the partials are merged in chunk order. All of
// that depends only on the view, so the arithmetic for a query at position
// p is the same whether it runs in a 512-token prefill, alone in decode
// (where chunks may run on different threads), or in a cache-off
// recomputation.
#include <cstddef>
#include <vector>

#include "ops/kv_view.h"

namespace kvforge {

constexpr int kAttnTile = 32;
constexpr int kAttnChunk = 256;  // a multiple of kAttnTile

// A run of rows [r0, r1) of one segment of a view.
struct AttnChunk {
  int seg = 0;
  int32_t r0 = 0, r1 = 0;
};

// The chunks of the view, in order (out is resized to their number).
void attn_chunks(const KvView& view, std::vector<AttnChunk>& out);

// Floats of one chunk's partial result: [n_group][2 + head_dim_v] =
// (running max m, denominator l, acc[head_dim_v]) per query head.
inline size_t attn_partial_floats(int n_group, int head_dim_v) { return (size_t)n_group * (2 + head_dim_v); }

// q: [n_group][view.head_dim_k] f32; part: attn_partial_floats() floats.
// Scores are scale * q.k.
void attend_chunk(const float* q, int n_group, const KvView& view, const AttnChunk& c, float scale, float* part);

// out: [n_group][view.head_dim_v] = merge of parts[0..n_chunks) in order
// (rotated back to the model's basis when the view's rows are Hadamard-rotated).
void attend_merge(const float* parts, int n_chunks, int n_group, const KvView& view, float* out);

// Sets a chunk's partial result to the empty state (m = -inf, l = 0, acc = 0).
void attn_partial_init(float* part, int n_group, int head_dim_v);
// Online-softmax update of one query head's partial pg = [m, l, acc[dv]] with
// a tile of n scaled scores and their V rows vt: [n][dv]. Every scalar chunk
// kernel (f16/f32 and quantized rows) shares it, so they round alike.
void attn_tile_update(float* pg, const float* scores, int n, const float* vt, int dv);

// softmax(scale * q.k) V over all rows of the view: every chunk, then the
// merge. q: [n_group][view.head_dim_k], out: [n_group][view.head_dim_v].
void attend(const float* q, int n_group, const KvView& view, float scale, float* out);

// Several query tokens of one KV head at once (prefill): token i has the
// query heads qs[i] ([n_group][head_dim_k]) and the view views[i]; outs[i]
// ([n_group][head_dim_v]) gets exactly what attend(qs[i], n_group, views[i],
// scale, outs[i]) gives. When the views differ only in the last few rows
// (consecutive positions of one sequence) each K/V row is loaded once for all
// of them (at most kAttnMaxHeads query heads in all); otherwise the tokens
// run one by one.
constexpr int kAttnMaxTokens = 16;  // divides kAttnTile
void attend_tokens(const float* const* qs, const KvView* views, int n_tok, int n_group, float scale,
                   float* const* outs);

// The same with the scalar chunk kernel (the reference the SIMD one is
// tested against; it is also what attend() runs without AVX2).
void attend_ref(const float* q, int n_group, const KvView& view, float scale, float* out);

// attend_chunk with Gemma 2's attention-logit soft-capping: the scaled
// scores s become cap * tanh(s / cap) before the softmax. One scalar kernel
// for every path (f16/f32 rows only; throws kvforge::Error for quantized
// ones), so capped attention keeps the batch-invariance contract.
void attend_chunk_softcap(const float* q, int n_group, const KvView& view, const AttnChunk& c, float scale,
                          float cap, float* part);

// Chunk kernels. attend_chunk_avx2 returns false (doing nothing) for shapes
// it does not handle (head dims not multiples of 8).
void attend_chunk_ref(const float* q, int n_group, const KvView& view, const AttnChunk& c, float scale,
                      float* part);
bool attend_chunk_avx2(const float* q, int n_group, const KvView& view, const AttnChunk& c, float scale,
                       float* part);
// Most query heads one call of the per-head AVX2 kernel takes (its callers
// keep per-head pointers on the stack); larger groups use the scalar path.
constexpr int kAttnMaxHeads = 64;
// The AVX2 chunk kernel for n_heads independent query heads q[h]
// ([head_dim_k] each), head h seeing rows [c.r0, r1[h]) of the chunk; every
// r1[h] <= c.r1 lies in the chunk's last tile. part: [n_heads][2 + dv].
// Head h's partial is bit-identical to that of a single-head call.
bool attend_chunk_heads_avx2(const float* const* q, const int32_t* r1, int n_heads, const KvView& view,
                             const AttnChunk& c, float scale, float* part);
// Its AVX-512 twin (attention_avx512.cpp), bit-identical to it; f16/f32
// rows of the usual (not latent) views, head dims up to 256 (false, doing
// nothing, for the rest). Call only at SimdLevel::AVX512. The avx512_emu
// copy (SIMDe, tests/avx512_emu/) is linked into the unit tests only.
namespace avx512 {
bool attend_chunk_heads_avx512(const float* const* q, const int32_t* r1, int n_heads, const KvView& view,
                               const AttnChunk& c, float scale, float* part);
}  // namespace avx512
namespace avx512_emu {
bool attend_chunk_heads_avx512(const float* const* q, const int32_t* r1, int n_heads, const KvView& view,
                               const AttnChunk& c, float scale, float* part);
}  // namespace avx512_emu
// Quantized rows (q8/q4, optionally Hadamard-rotated): see ops/attention_quant.h.
// attend_chunk_quant is the scalar reference (attend_chunk_ref runs it for
// quantized views); attend_chunk_quant_avx2 returns false (doing nothing) for
// what it does not handle.
void attend_chunk_quant(const float* q, int n_group, const KvView& view, const AttnChunk& c, float scale,
                        float* part);
bool attend_chunk_quant_avx2(const float* q, int n_group, const KvView& view, const AttnChunk& c, float scale,
                             float* part);

}  // namespace kvforge
