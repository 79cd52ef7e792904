// Wall-clock intervals for timings (steps, collectives, benchmarks): a monotonic clock and the
// seconds between two of its points.
//
// Example:
//   const Clock::time_point t0 = Clock::now();
//   Work();
//   std::printf("%.3f s\n", Seconds(t0, Clock::now()));
#ifndef HEADROOM_BASE_CLOCK_H_
#define HEADROOM_BASE_CLOCK_H_

#include <chrono>

namespace headroom {

using Clock = std::chrono::steady_clock;

// Seconds from `a` to `b` (negative when b is earlier).
inline double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace headroom

#endif  // HEADROOM_BASE_CLOCK_H_
