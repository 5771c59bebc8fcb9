#pragma once
// A NumPy array over a heap buffer that the array owns (a capsule deletes
// it): the engine writes into the vector, NumPy gets it without a copy.
#include <nanobind/ndarray.h>

#include <utility>
#include <vector>

namespace kvforge::python {

template <typename T, size_t N>
nanobind::ndarray<nanobind::numpy, T, nanobind::ndim<N>> numpy_owning(std::vector<T>&& data,
                                                                     const size_t (&shape)[N]) {
  auto* owned = new std::vector<T>(std::move(data));
  nanobind::capsule owner(owned, [](void* p) noexcept { delete static_cast<std::vector<T>*>(p); });
  return nanobind::ndarray<nanobind::numpy, T, nanobind::ndim<N>>(owned->data(), N, shape, owner);
}

}  // namespace kvforge::python
