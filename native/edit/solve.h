// The float64 solve of eq. 13: X = (C_accu + K Kᵀ)⁻¹ K by Cholesky. When the factorisation fails, β·I
// is added with β growing tenfold, and the β that worked is reported: never a silent regularisation.
#pragma once

#include <string>

#include <torch/torch.h>

namespace comeba {

struct CholeskySolve {
  torch::Tensor x;     // (F, n) float64
  double jitter = 0;   // β added to the diagonal; 0 when none was needed
};

// `a` (F, F) symmetric and `b` (F, n), both float64. Throws NumericalFailure when even the largest β fails.
CholeskySolve solve_spd(const torch::Tensor& a, const torch::Tensor& b);

// The Cholesky factor of `a` (F, F) float64 (lower, or upper with `upper`), with β·I added as solve_spd does when
// needed (`jitter` gets β); `what` names the matrix in the error.
torch::Tensor cholesky_factor(const torch::Tensor& a, double* jitter, const std::string& what, bool upper = false);

// The factor of a matrix that only ever grows by K Kᵀ (C_accu): kept across batches, it follows each commit by a
// rank-n update, O(F²n), where a new factorisation costs O(F³) (and more when β has to be searched again).
struct SpdFactor {
  torch::Tensor upper;  // (F, F) float64 U on the CPU, UᵀU = A + βI
  double jitter = 0;    // β, found when A was first factorised
  bool defined() const { return upper.defined(); }
};

// A's factor, β searched as solve_spd does.
SpdFactor factor_spd(const torch::Tensor& a, const std::string& what);

// X = (A + βI + K Kᵀ)⁻¹ B from A's factor, by Woodbury: Y = (A + βI)⁻¹[K B], then
// X = Y_B − Y_K (I + Kᵀ Y_K)⁻¹ Kᵀ Y_B. `k` (F, n) and `b` (F, m) float64 on the CPU (`b` may be `k`).
torch::Tensor solve_with_factor(const SpdFactor& factor, const torch::Tensor& k, const torch::Tensor& b);

// In place: the factor of A + βI + K Kᵀ, one Givens sweep per row for the n columns of `k` (F, n) together.
void update_factor(SpdFactor& factor, const torch::Tensor& k);

}  // namespace comeba
