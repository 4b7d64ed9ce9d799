// Deterministic math for table building.
//
// Encoder and decoder must build identical tables, possibly on different
// machines (glibc, musl, a GPU).  libm's exp/erfc are not correctly rounded
// and differ between implementations, so the functions here use only IEEE-754
// basic operations (+ - * /, floor, ldexp), which are exactly specified, in a
// fixed order with a fixed number of steps.  Compile with -ffp-contract=off
// (no fused multiply-add) so that the compiler cannot change the rounding.
//
// FC_HD marks functions usable from CUDA device code (issue: CUDA tables).
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define FC_HD __host__ __device__
#else
#define FC_HD
#endif

namespace featcodec {

// exp(x) from basic operations: x = n ln2 + r with |r| <= ln2 / 2 (Cody-Waite
// split of ln2 so that n * LN2_HI is exact), then a degree-13 Taylor
// polynomial of exp(r) (truncation error < 1e-17 relative) and a scale by 2^n.
FC_HD inline double det_exp(double x) {
  if (!(x > -745.0)) return 0.0;  // underflow (and NaN, which callers exclude)
  if (x > 709.0) return HUGE_VAL;
  const double kLn2Hi = 6.93147180369123816490e-01;  // low 32 bits are zero
  const double kLn2Lo = 1.90821492927058770002e-10;
  const double kInvLn2 = 1.44269504088896338700e+00;
  const double n = floor(x * kInvLn2 + 0.5);
  const double r = (x - n * kLn2Hi) - n * kLn2Lo;
  double p = 1.0;
  for (int k = 13; k >= 1; --k) p = 1.0 + p * r / k;
  return ldexp(p, static_cast<int>(n));
}

// Upper tail P(X > t) of the standard normal, t >= 0.
// t < 2: Phi(t) - 1/2 = phi(t) * sum_k t^(2k+1) / (1*3*...*(2k+1)), a series of
// positive terms (60 terms converge to machine precision below t = 2).
// t >= 2: the continued fraction phi(t) / (t + 1/(t + 2/(t + 3/(t + ...)))),
// evaluated backwards from depth 80.  Relative error < 3e-13 for all t.
FC_HD inline double det_normal_sf(double t) {
  const double kInvSqrt2Pi = 0.39894228040143267794;
  const double phi = det_exp(-0.5 * t * t) * kInvSqrt2Pi;
  if (t < 2.0) {
    const double t2 = t * t;
    double term = t, sum = t;
    for (int k = 1; k < 60; ++k) {
      term = term * t2 / (2 * k + 1);
      sum += term;
    }
    return 0.5 - phi * sum;
  }
  double f = t;
  for (int k = 80; k >= 1; --k) f = t + k / f;
  return phi / f;
}

// Upper tail of the standard Laplace distribution (density exp(-|x|) / 2).
FC_HD inline double det_laplace_sf(double t) { return 0.5 * det_exp(-t); }

// Upper tail of the standard logistic distribution: 1 / (1 + e^t).
FC_HD inline double det_logistic_sf(double t) {
  const double e = det_exp(-t);
  return e / (1.0 + e);
}

enum class Family : int { kGaussian = 0, kLaplace = 1, kLogistic = 2 };

// Upper tail of a standardized family member, t >= 0.
FC_HD inline double det_family_sf(Family family, double t) {
  switch (family) {
    case Family::kLaplace: return det_laplace_sf(t);
    case Family::kLogistic: return det_logistic_sf(t);
    default: return det_normal_sf(t);
  }
}

// Mass of the interval [a, b] (a <= b) under a symmetric standardized family,
// computed from upper tails on the side away from the centre so that small
// masses keep their relative precision.
FC_HD inline double det_interval_mass(Family family, double a, double b) {
  if (a >= 0.0) return det_family_sf(family, a) - det_family_sf(family, b);
  if (b <= 0.0) return det_family_sf(family, -b) - det_family_sf(family, -a);
  return 1.0 - det_family_sf(family, -a) - det_family_sf(family, b);
}

}  // namespace featcodec
