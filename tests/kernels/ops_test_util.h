// Test helpers for the op-set suites: device buffers, host data in double, tolerance checks.
//
// Every op test keeps its host data as std::vector<double>; Upload rounds it to the backend's
// element type T (float or double) and Download widens the result back, so one test body,
// written as a generic lambda over `Ops<T>&`, runs on every backend. References are computed in
// double from the SAME rounded inputs (Quantize<T>), so the only differences left are the
// backend's own rounding, judged per element by |got - want| <= atol + rtol * |want|.
#ifndef HEADROOM_TESTS_KERNELS_OPS_TEST_UTIL_H_
#define HEADROOM_TESTS_KERNELS_OPS_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "kernels/ops.h"

namespace headroom::testing_util {

using Vec = std::vector<double>;
using IVec = std::vector<int32_t>;

struct Tol {
  double atol = 0;
  double rtol = 0;
  Tol Times(double f) const { return {atol * f, rtol * f}; }
};

// The element type of an Ops<T>: `using T = Elem<decltype(ops)>;` inside a generic lambda.
template <typename T>
T ElemOf(const Ops<T>&);  // declared only, for decltype
template <typename O>
using Elem = decltype(ElemOf(std::declval<O&>()));

// A device buffer of n elements of E, freed with the Ops that allocated it.
template <typename T, typename E>
class DevBuf {
 public:
  DevBuf(Ops<T>& ops, int64_t n) : ops_(&ops), n_(n) {
    p_ = static_cast<E*>(ops.AllocBytes(sizeof(E) * static_cast<size_t>(n > 0 ? n : 1)));
  }
  ~DevBuf() {
    if (ops_) ops_->Free(p_);
  }
  DevBuf(DevBuf&& o) noexcept : ops_(std::exchange(o.ops_, nullptr)), p_(o.p_), n_(o.n_) {}
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  E* get() const { return p_; }
  int64_t size() const { return n_; }

 private:
  Ops<T>* ops_;
  E* p_ = nullptr;
  int64_t n_;
};

// Rounds every value to T (so the double reference sees exactly what the backend sees).
template <typename T>
Vec Quantize(Vec v) {
  for (double& x : v) x = static_cast<double>(static_cast<T>(x));
  return v;
}

template <typename T>
DevBuf<T, T> Upload(Ops<T>& ops, const Vec& host) {
  DevBuf<T, T> b(ops, static_cast<int64_t>(host.size()));
  std::vector<T> t(host.begin(), host.end());
  if (!t.empty()) ops.CopyToDevice(b.get(), t.data(), sizeof(T) * t.size());
  return b;
}

template <typename T>
DevBuf<T, int32_t> UploadInt(Ops<T>& ops, const IVec& host) {
  DevBuf<T, int32_t> b(ops, static_cast<int64_t>(host.size()));
  if (!host.empty()) ops.CopyToDevice(b.get(), host.data(), sizeof(int32_t) * host.size());
  return b;
}

template <typename T>
Vec Download(Ops<T>& ops, const T* p, int64_t n) {
  std::vector<T> t(static_cast<size_t>(n));
  if (n > 0) ops.CopyToHost(t.data(), p, sizeof(T) * t.size());
  return Vec(t.begin(), t.end());
}

template <typename T>
Vec Download(Ops<T>& ops, const DevBuf<T, T>& b) {
  return Download(ops, b.get(), b.size());
}

inline Vec Random(std::mt19937_64& rng, int64_t n, double lo = -1, double hi = 1) {
  std::uniform_real_distribution<double> u(lo, hi);
  Vec v(static_cast<size_t>(n));
  for (double& x : v) x = u(rng);
  return v;
}

inline IVec RandomInts(std::mt19937_64& rng, int64_t n, int lo, int hi) {  // [lo, hi]
  std::uniform_int_distribution<int> u(lo, hi);
  IVec v(static_cast<size_t>(n));
  for (int32_t& x : v) x = u(rng);
  return v;
}

// Adds one failure naming the first few elements outside atol + rtol * |want|.
inline void ExpectClose(const Vec& got, const Vec& want, Tol tol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  int bad = 0;
  std::string detail;
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(got[i] - want[i]);
    const double allowed = tol.atol + tol.rtol * std::fabs(want[i]);
    if (!(err <= allowed)) {  // also catches NaN
      if (bad < 5) {
        detail += "\n  [" + std::to_string(i) + "] got " + std::to_string(got[i]) + " want " +
                  std::to_string(want[i]);
      }
      ++bad;
    }
    if (allowed > 0) worst = std::max(worst, err / allowed);
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << got.size()
                    << " elements outside tolerance (atol " << tol.atol << ", rtol " << tol.rtol
                    << "; worst err/allowed " << worst << ")" << detail;
}

}  // namespace headroom::testing_util

#endif  // HEADROOM_TESTS_KERNELS_OPS_TEST_UTIL_H_
