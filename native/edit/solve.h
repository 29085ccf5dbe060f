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

// The lower Cholesky factor of `a` (F, F) float64, with β·I added as solve_spd does when needed (`jitter` gets β);
// `what` names the matrix in the error.
torch::Tensor cholesky_factor(const torch::Tensor& a, double* jitter, const std::string& what);

}  // namespace comeba
