#pragma once
// `kvforge convert-mla`: an ordinary (MHA/GQA) llama-family model turned into
// one whose cache holds one latent row per token and layer (MHA2MLA /
// TransMLA ideas, SPEC.md §3; the output's layout: model/mla_converted.h).
// Per layer:
//  1. partial RoPE: each KV head keeps R of its rotary dims (R/2 frequency
//     pairs: the highest frequencies, or MHA2MLA's score mean|q_pair| *
//     mean|k_pair| on calibration text, query norms summed over the heads of
//     the group); its other dims become position-free (nope);
//  2. the nope keys and the values of all KV heads, M = [W_k_nope; W_v]
//     (biases as one more input column), are factorised jointly through
//     their top-D left singular vectors U: the latent is c = U^T M [x; 1], and
//     each head's nope key / value is rebuilt as U_g c (absorbed at run time).
//     --method svd takes U from the weights (eigenvectors of M M^T);
//     --method activation from the weights times the calibration inputs'
//     second moment C = E[x x^T] (eigenvectors of M C M^T), which minimises
//     the rebuilt keys' and values' squared error on those inputs (whitening,
//     as TransMLA and SVD-LLM do).
// With every rope dim kept and D = the rows of M, the output computes the
// same logits as the input (up to rounding).
#include <cstdint>
#include <functional>
#include <string>

#include "model/context.h"

namespace kvforge {

enum class MlaMethod { Svd, Activation };
enum class MlaRopeChoice { HighFreq, Norm };

struct ConvertMlaParams {
  std::string input, output;
  int kv_dim = 0;     // D, the latent
  int rope_dims = 0;  // R, rotary dims kept per KV head
  MlaMethod method = MlaMethod::Activation;
  MlaRopeChoice rope_choice = MlaRopeChoice::HighFreq;
  // Storage of the latent projections (kv_a, k_b, v_b): f16 halves the bytes
  // every decoded token reads from them; f32 keeps the factorisation's
  // rounding only (the full-rank test).
  GgmlType proj_type = GgmlType::F16;
  std::string calib_text;     // calibration text (activation, norm)
  std::string calib_name;     // what it is, for messages and the metadata
  int32_t calib_tokens = 2048;  // at most this many of the text's first tokens
  int n_threads = 0;
  ProgressFn calib_progress;                     // (tokens done, total) of the calibration pass
  std::function<void(int, int)> layer_progress;  // (layers done, total) of the factorisation
};

// Cached values per token and layer of the input and the output.
struct ConvertMlaResult {
  int64_t values_before = 0, values_after = 0;
  int64_t calib_tokens = 0;  // 0: no calibration needed (svd, high)
};

// Writes params.output. Throws kvforge::Error (unsupported architecture,
// impossible ranks, too little calibration text, I/O); nothing is written
// unless the conversion succeeds.
ConvertMlaResult convert_mla(const ConvertMlaParams& params);

}  // namespace kvforge
