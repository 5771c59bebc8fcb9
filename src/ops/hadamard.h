#pragma once
// Normalized Walsh-Hadamard rotation of K/V rows before quantizing them.
//
// H (Sylvester order b, scaled by 1/sqrt(b)) is symmetric and orthogonal, so
// q.k = (Hq).(Hk) and sum_j p_j v_j = H (sum_j p_j Hv_j): attention can run
// entirely in the rotated basis, rotating q once and the output back once per
// query. The point: H spreads an outlier channel over the whole block, so the
// per-block absmax scale no longer wastes the quantization grid on it.
//
// Rows whose length is not a power of two use a block-diagonal H with blocks
// of hadamard_block(n) (the largest power of two dividing n), still orthogonal.
namespace kvforge {

// Largest power of two dividing n (n > 0).
int hadamard_block(int n);

// x <- H x in place, x: [n] f32, with blocks of `block` (a power of two
// dividing n). H is its own inverse.
void hadamard_rotate(float* x, int n, int block);
// The same with block = hadamard_block(n).
inline void hadamard_rotate(float* x, int n) { hadamard_rotate(x, n, hadamard_block(n)); }

}  // namespace kvforge
