#include "edit/solve.h"

#include <cmath>
#include <sstream>
#include <vector>

#include <ATen/Parallel.h>

#include "common/error.h"

namespace comeba {
namespace {

constexpr double kFirstJitter = 1e-10;  // relative to the mean diagonal
constexpr int kJitterTries = 8;         // up to 1e-3 of the mean diagonal

void check_finite(const torch::Tensor& t, const char* what) {
  if (!torch::isfinite(t).all().item<bool>()) fail(ErrorCode::NumericalFailure, std::string(what) + " contain NaN or Inf");
}

}  // namespace

torch::Tensor cholesky_factor(const torch::Tensor& a, double* jitter, const std::string& what, bool upper) {
  *jitter = 0;
  auto [l, info] = torch::linalg_cholesky_ex(a, upper);
  if (info.item<int64_t>() == 0) return l;
  const double scale = a.diagonal().mean().item<double>();
  if (!(scale > 0)) fail(ErrorCode::NumericalFailure, what + " has a non-positive mean diagonal; it cannot be factorised");
  const auto eye = torch::eye(a.size(0), a.options());
  double beta = kFirstJitter * scale;
  for (int i = 0; i < kJitterTries; ++i, beta *= 10) {
    std::tie(l, info) = torch::linalg_cholesky_ex(a + beta * eye, upper);
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
  check_finite(a, "the covariance");
  check_finite(b, "the keys");
  CholeskySolve solved;
  const auto l = cholesky_factor(a, &solved.jitter, "C_accu + KKᵀ");
  solved.x = torch::cholesky_solve(b, l);
  return solved;
}

SpdFactor factor_spd(const torch::Tensor& a, const std::string& what) {
  check_finite(a, "the covariance");
  SpdFactor f;
  f.upper = cholesky_factor(a.to(torch::kCPU, torch::kFloat64), &f.jitter, what, /*upper=*/true).contiguous();
  return f;
}

torch::Tensor solve_with_factor(const SpdFactor& factor, const torch::Tensor& k, const torch::Tensor& b) {
  check_finite(k, "the keys");
  const bool same = b.is_same(k);
  if (!same) check_finite(b, "the keys");
  const int64_t n = k.size(1);
  auto y = torch::cholesky_solve(same ? k : torch::cat({k, b}, 1), factor.upper, /*upper=*/true);  // (F, n [+ m])
  auto yk = y.narrow(1, 0, n), yb = same ? yk : y.narrow(1, n, b.size(1));
  auto s = torch::eye(n, k.options()) + k.t().mm(yk);                                                 // (n, n) SPD
  return yb - yk.mm(torch::linalg_solve(s, k.t().mm(yb)));
}

void update_factor(SpdFactor& factor, const torch::Tensor& k) {
  auto& u = factor.upper;
  const int64_t F = u.size(0), n = k.size(1);
  auto x = torch::empty({n, F}, torch::kFloat64).copy_(k.t());         // (n, F): a row per column of K, ours to change
  double* U = u.data_ptr<double>();
  double* X = x.data_ptr<double>();
  std::vector<double> c(n), s(n);
  // Row i of U (column i of L = Uᵀ) meets each vector in turn: the rotation that zeroes x_v[i] against U[i][i],
  // then the same rotation on the rest of the row and of x_v (the rank-one update, n times, interleaved by row:
  // row i is final for vector v once v passed it, so the order matches n sequential updates).
  for (int64_t i = 0; i < F; ++i) {
    double* row = U + i * F;
    for (int64_t v = 0; v < n; ++v) {
      const double d = row[i], xv = X[v * F + i];
      const double r = std::hypot(d, xv);
      c[v] = r / d;
      s[v] = xv / d;
      row[i] = r;
    }
    at::parallel_for(i + 1, F, 2048, [&](int64_t begin, int64_t end) {
      for (int64_t v = 0; v < n; ++v) {
        const double cv = c[v], sv = s[v], inv = 1 / cv;
        double* xr = X + v * F;
        for (int64_t j = begin; j < end; ++j) {
          const double w = (row[j] + sv * xr[j]) * inv;
          row[j] = w;
          xr[j] = cv * xr[j] - sv * w;
        }
      }
    });
  }
}

}  // namespace comeba
