#include "edit/solve.h"

#include <sstream>

#include "common/error.h"

namespace comeba {
namespace {

constexpr double kFirstJitter = 1e-10;  // relative to the mean diagonal
constexpr int kJitterTries = 8;         // up to 1e-3 of the mean diagonal

}  // namespace

CholeskySolve solve_spd(const torch::Tensor& a, const torch::Tensor& b) {
  if (!torch::isfinite(a).all().item<bool>() || !torch::isfinite(b).all().item<bool>())
    fail(ErrorCode::NumericalFailure, "the covariance or the keys contain NaN or Inf");
  auto [l, info] = torch::linalg_cholesky_ex(a);
  if (info.item<int64_t>() == 0) return {torch::cholesky_solve(b, l), 0};

  const double scale = a.diagonal().mean().item<double>();
  if (!(scale > 0)) fail(ErrorCode::NumericalFailure, "C_accu + KKᵀ has a non-positive mean diagonal; it cannot be factorised");
  const auto eye = torch::eye(a.size(0), a.options());
  double beta = kFirstJitter * scale;
  for (int i = 0; i < kJitterTries; ++i, beta *= 10) {
    std::tie(l, info) = torch::linalg_cholesky_ex(a + beta * eye);
    if (info.item<int64_t>() == 0) return {torch::cholesky_solve(b, l), beta};
  }
  std::ostringstream msg;
  msg << "Cholesky factorisation of C_accu + KKᵀ failed even with β = " << beta / 10
      << " added to the diagonal; the statistics may be degenerate (too few tokens?) or λ too small";
  fail(ErrorCode::NumericalFailure, msg.str());
}

}  // namespace comeba
