#include "model/weights.h"

namespace kvforge {

std::vector<WeightMatrix*> LayerWeights::matrices() {
  std::vector<WeightMatrix*> all = {&wq, &wk, &wv, &wo, &w_gate, &w_up, &w_down, &mla.wq, &mla.wq_a, &mla.wq_b,
                                    &mla.wkv_a, &moe.gate_inp, &moe.gate_shexp, &moe.up_shexp, &moe.down_shexp};
  for (auto* v : {&mla.k_b, &mla.v_b, &moe.gate, &moe.up, &moe.down})
    for (WeightMatrix& m : *v) all.push_back(&m);
  std::vector<WeightMatrix*> present;
  for (WeightMatrix* m : all)
    if (m->rows > 0) present.push_back(m);
  return present;
}

std::vector<const WeightMatrix*> LayerWeights::matrices() const {
  std::vector<const WeightMatrix*> out;
  for (WeightMatrix* m : const_cast<LayerWeights*>(this)->matrices()) out.push_back(m);
  return out;
}

}  // namespace kvforge
