#include "edit/solve.h"

#include <sstream>

#include "common/error.h"

namespace comeba {
namespace {

constexpr double kFirstJitter = 1e-10;  // relative to the mean diagonal
constexpr int kJitterTries = 8;         // up to 1e-3 of the mean diagonal

}  // namespace

torch::Tensor cholesky_factor(const torch::Tensor& a, double* jitter, const std::string& what) {
  *jitter = 0;
  auto [l, info] = torch::linalg_cholesky_ex(a);
  if (info.item<int64_t>() == 0) return l;
  const double scale = a.diagonal().mean().item<double>();
  if (!(scale > 0)) fail(ErrorCode::NumericalFailure, what + " has a non-positive mean diagonal; it cannot be factorised");
  const auto eye = torch::eye(a.size(0), a.options());
  double beta = kFirstJitter * scale;
  for (int i = 0; i < kJitterTries; ++i, beta *= 10) {
    std::tie(l, info) = torch::linalg_cholesky_ex(a + beta * eye);
    if (info.item<int64_t>() == 0) {
      *jitter = beta;
      return l;
    }
  }
  std::ostringstream msg;
  msg << "Cholesky factorisation of " << what << " failed even with β = " << beta / 10
      << " added to the diagonal; the statistics may be degenerate (too few tokens?) or λ too small";
  fail(ErrorCode::NumericalFailure, msg.str());
}

CholeskySolve solve_spd(const torch::Tensor& a, const torch::Tensor& b) {
  if (!torch::isfinite(a).all().item<bool>() || !torch::isfinite(b).all().item<bool>())
    fail(ErrorCode::NumericalFailure, "the covariance or the keys contain NaN or Inf");
  CholeskySolve solved;
  const auto l = cholesky_factor(a, &solved.jitter, "C_accu + KKᵀ");
  solved.x = torch::cholesky_solve(b, l);
  return solved;
}

}  // namespace comeba
