#pragma once
// The naive path of latent (MLA) attention (--mla-attn naive|auto; the
// absorbed path is model/attention_mla.cpp). The cache keeps its latent rows
// [c_KV | k_pe]; for the rows one wave of queries reads, every "unit" (a
// head of DeepSeek, a KV head of a conversion: one W_UK/W_UV pair) gets f32
// rows K = [W_UK c | its k_pe] and V = W_UV c, and the heads attend to them
// with the ordinary attention kernels through views that mirror the cache's
// latent views row for row (same runs, same row counts): a query's result
// depends only on its latent view, so the naive path keeps the exactness
// contract (cache on/off, any batch split) on its own.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "ops/kv_view.h"
#include "ops/matmul.h"

namespace kvforge {

class Model;

// The distinct cached latent rows of a set of views (collected per wave),
// numbered 0 .. n_rows()-1, and the views of decompressed rows that mirror
// them. Runs of rows that overlap (consecutive queries' views share all but
// their last rows) are decompressed once.
class LatentRows {
 public:
  void clear();
  void add(const KvView& latent);  // the rows of one query's view
  void finish();                   // numbers the distinct rows; then:
  int64_t n_rows() const { return n_rows_; }
  KvStorage storage() const { return storage_; }
  int hadamard_block() const { return hadamard_block_; }
  int row_dim() const { return row_dim_; }               // values of a stored latent row (head_dim_k)
  const uint8_t* source(int64_t i) const;                // stored latent row i

  // Decompressed rows of n_units units: unit u's K rows at k + u * n_rows * dk
  // ([n_rows][dk] f32), its V rows likewise at v ([n_rows][dv]).
  void set_units(int n_units, const float* k, int dk, const float* v, int dv);
  // The view of unit u's decompressed rows mirroring a view given to add().
  KvView map(const KvView& latent, int unit) const;

 private:
  struct Run {
    uintptr_t begin = 0, end = 0;  // bytes of stored rows [begin, end)
    int64_t first = 0;             // number of its first row
  };
  struct Blocks {  // a cache-owned block table, and its mirror per unit
    const KvSegment* table = nullptr;
    int n = 0;                      // the most blocks a view used
    std::vector<KvSegment> mirror;  // [n_units][n]
  };
  KvSegment map_segment(const KvSegment& s, int unit) const;

  std::vector<Run> runs_;
  std::vector<Blocks> blocks_;
  size_t stride_ = 0;  // bytes from one stored row to the next
  int row_dim_ = 0, hadamard_block_ = 0;
  KvStorage storage_ = KvStorage::F16;
  int64_t n_rows_ = 0;
  int n_units_ = 0, dk_ = 0, dv_ = 0;
  const float* k_ = nullptr;
  const float* v_ = nullptr;
};

// What a context running the naive path keeps besides the model.
struct MlaNaive {
  // [n_layer][U] W_UK (P x d_c, f32): the model's W_UK^T (MlaWeights::k_b)
  // transposed, so that k_nope = W_UK c is a plain matmul over the rows.
  std::vector<std::vector<std::vector<float>>> uk_data;
  std::vector<std::vector<WeightMatrix>> uk;
  std::vector<uint8_t> row_naive;  // [n_batch] batch rows whose queries take the naive path
  LatentRows rows;
  std::vector<float> c, pe;         // [rows][d_c], [rows][RW]  stored latent rows, as f32
  std::vector<float> knope, k, v;   // [units][rows][P], [units][rows][P + R], [units][rows][V]

  // Builds uk for the model's MLA layers; throws kvforge::Error when a
  // unit's heads do not share one rope key.
  void prepare(const Model& model, int32_t n_batch);
};

}  // namespace kvforge
