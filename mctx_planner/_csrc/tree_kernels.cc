// Native XLA:CPU kernels of the fast search backend (built and loaded by
// mctx_planner/_native.py).
//
// XLA FFI handlers that run the tree descents of MuZero and Gumbel MuZero and
// the backup of every policy on the packed tree store of `_fast_search.py`,
// each example's path from the root to its leaf (or back) in one call,
// instead of as ~20 XLA kernels per tree level.  They round every float
// operation as XLA:CPU rounds mctx's (muzero_action_selection with
// qtransform_by_parent_and_siblings; gumbel_muzero_interior_action_selection
// with qtransform_completed_by_mix_value; either optionally masked as the
// planner's `_legal_qtransform`; the backward pass), so that the search stays
// bit-identical to mctx:
//   * no reassociation, and fused multiply-adds exactly where XLA:CPU fuses
//     them (`MulAdd`; built with -ffp-contract=off, no fast-math);
//   * XLA's reciprocal where it rewrites a division by a broadcast value;
//   * PUCT's one transcendental term, pb_c * sqrt(n), comes from a table
//     computed by XLA (`scale`, indexed by the visit count); Gumbel's softmaxes
//     use XLA's own `exp` polynomial (`XlaExp`) and its row-sum order
//     (`XlaRowSum`), which `_native.gumbel_exact` checks against XLA before
//     use (`mctx_planner_gumbel_scores` is that probe); their element-wise
//     loops are written for the compiler to vectorize (same roundings);
//   * the tie-breaking noise is drawn with JAX's threefry-2x32 (partitionable
//     layout) from the same keys, only when it can change the argmax.
// One more kernel, `mctx_planner_top_k`, is `jax.lax.top_k` over rows (the
// candidate retrieval of domains such as `recommendation`), with XLA's
// outputs and a cheaper selection (see `TopKImpl`).
//
// Layouts (int32; floats are stored by their bit pattern; node indices and
// actions are stored plus one, 0 meaning none):
//   edges[B, N, A, 6]: logit-or-prob, value, visits, reward, discount, child
//   stats[B, N, 3]:    visits, value, raw value
//   links[B, N, 4]:    parent, action, reward, discount

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "xla/ffi/api/ffi.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

namespace ffi = xla::ffi;

namespace {

enum { kLogit = 0, kValue = 1, kVisits = 2, kReward = 3, kDiscount = 4,
       kChild = 5, kEdgeFields = 6 };
enum { kSVisits = 0, kSValue = 1, kSRaw = 2, kStatFields = 3 };
enum { kLParent = 0, kLAction = 1, kLReward = 2, kLDiscount = 3,
       kLinkFields = 4 };

// Bit casts (through `__builtin_bit_cast` where the compiler has it, so
// that loops using them still vectorize).
template <typename To, typename From>
inline To BitCast(From from) {
  static_assert(sizeof(To) == sizeof(From), "sizes differ");
#if defined(__GNUC__) || defined(__clang__)
  return __builtin_bit_cast(To, from);
#else
  To to;
  std::memcpy(&to, &from, sizeof to);
  return to;
#endif
}

inline float AsFloat(int32_t bits) { return BitCast<float>(bits); }
inline int32_t AsBits(float f) { return BitCast<int32_t>(f); }

// `a * b + c` rounded as XLA:CPU rounds it: XLA lets LLVM contract a
// multiply that feeds one add into a fused multiply-add where the CPU has
// one (x86 with FMA, built with -march=native; aarch64), so the kernels
// round exactly those expressions once as well.
inline float MulAdd(float a, float b, float c) {
#if defined(__FMA__) || defined(__aarch64__)
  return std::fma(a, b, c);
#else
  return a * b + c;
#endif
}

// jnp.maximum and jnp.max propagate NaN.  Written as selects, without
// branches, so that loops using it vectorize.
inline float NanMax(float a, float b) {
  return (a != a || b != b) ? std::numeric_limits<float>::quiet_NaN()
                            : (a > b ? a : b);
}

// jnp.argmax: the first maximum; a NaN wins (the first NaN).
inline int32_t Argmax(const float* x, int32_t n) {
  int32_t best = 0;
  for (int32_t i = 0; i < n; ++i) {
    if (std::isnan(x[i])) return i;
    if (x[i] > x[best]) best = i;
  }
  return best;
}

// A switch for A/B runs and the tests: `$name` = 0 or 1 turns it off or
// on, anything else leaves `otherwise`.
inline bool ForcedOr(const char* name, bool otherwise) {
  const char* env = std::getenv(name);
  if (env != nullptr && (env[0] == '0' || env[0] == '1') && env[1] == 0) {
    return env[0] == '1';
  }
  return otherwise;
}

inline uint32_t Rotl(uint32_t x, int r) { return (x << r) | (x >> (32 - r)); }

// Threefry-2x32, 20 rounds (as jax.random and `_fast_search._threefry2x32`).
inline void Threefry(uint32_t k1, uint32_t k2, uint32_t x1, uint32_t x2,
                     uint32_t* o1, uint32_t* o2) {
  static const int kRot[2][4] = {{13, 15, 26, 6}, {17, 29, 16, 24}};
  const uint32_t ks[3] = {k1, k2, k1 ^ k2 ^ 0x1BD11BDAu};
  x1 += ks[0];
  x2 += ks[1];
  for (int block = 0; block < 5; ++block) {
    for (int r : kRot[block % 2]) {
      x1 += x2;
      x2 = Rotl(x2, r);
      x2 ^= x1;
    }
    x1 += ks[(block + 1) % 3];
    x2 += ks[(block + 2) % 3] + static_cast<uint32_t>(block + 1);
  }
  *o1 = x1;
  *o2 = x2;
}

// `jax.random.split(key)[part]` for a raw threefry key.
inline void SplitPart(const uint32_t key[2], uint32_t part, uint32_t out[2]) {
  Threefry(key[0], key[1], 0u, part, &out[0], &out[1]);
}

// `jax.random.uniform(key, ())` for element `i` of a shape of `[A]`.
inline float Uniform01(const uint32_t key[2], uint32_t i) {
  uint32_t b1, b2;
  Threefry(key[0], key[1], 0u, i, &b1, &b2);
  const uint32_t mantissa = ((b1 ^ b2) >> 9) | 0x3F800000u;
  float f;
  std::memcpy(&f, &mantissa, sizeof f);
  return f - 1.0f;
}

inline float FromBits(uint32_t bits) { return BitCast<float>(bits); }

// `jnp.exp` as XLA:CPU computes it: XLA expands `exp` into this Cephes-style
// polynomial (clamp, n = floor(x log2(e) + 1/2), Cody-Waite reduction, degree
// 7, times 2^n), and LLVM fuses each product into the add that consumes it.
// `_native.gumbel_exact` checks the bits against XLA's (through the
// `mctx_planner_gumbel_scores` probe).  `XlaExpTail` is the part after the
// clamps and the floor: `x` clamped, `fx` = n as a float.
inline float XlaExpTail(float x, float fx, int32_t n) {
  x = MulAdd(-fx, FromBits(0x3F318000u), x);
  x = MulAdd(-fx, FromBits(0xB95E8083u), x);
  float y = MulAdd(FromBits(0x39506967u), x, FromBits(0x3AB743CEu));
  y = MulAdd(y, x, FromBits(0x3C088908u));
  y = MulAdd(y, x, FromBits(0x3D2AA9C1u));
  y = MulAdd(y, x, FromBits(0x3E2AAAAAu));
  y = MulAdd(y, x, 0.5f);
  y = MulAdd(y, x * x, x) + 1.0f;
  return y * FromBits(static_cast<uint32_t>(n + 127) << 23);
}

// For vectorized loops (x not NaN): n = floor(v), clamped to [-127, 127], in
// integers, exact here (|v| < 2^23): std::floor and float clamps keep GCC
// from vectorizing the row loops.
inline float XlaExpNotNan(float x) {
  float r = x < -87.8f ? -87.8f : x;
  r = r > 88.8f ? 88.8f : r;
  const float v = MulAdd(r, FromBits(0x3FB8AA3Bu), 0.5f);
  int32_t n = static_cast<int32_t>(v);
  n -= static_cast<float>(n) > v ? 1 : 0;
  n = n < -127 ? -127 : n;
  n = n > 127 ? 127 : n;
  return XlaExpTail(r, static_cast<float>(n), n);
}

// For scalar code: `std::floor` and float clamps are cheaper there than the
// integer floor, with the same result.
inline float XlaExp(float x) {
  if (std::isnan(x)) return x;
  x = x < -87.8f ? -87.8f : x;
  x = x > 88.8f ? 88.8f : x;
  float fx = std::floor(MulAdd(x, FromBits(0x3FB8AA3Bu), 0.5f));
  fx = fx < -127.0f ? -127.0f : fx;
  fx = fx > 127.0f ? 127.0f : fx;
  return XlaExpTail(x, fx, static_cast<int32_t>(fx));
}

// `out[a] = XlaExp(in[a] - shift)` over a row of `n`: vectorized where no
// difference is NaN (the usual case), else element by element.
inline void XlaExpRow(const float* in, float shift, float* out, int32_t n) {
  int32_t nan = 0;
  for (int32_t a = 0; a < n; ++a) {
    out[a] = in[a] - shift;
    nan |= out[a] != out[a];
  }
  if (nan) {
    for (int32_t a = 0; a < n; ++a) out[a] = XlaExp(out[a]);
    return;
  }
  for (int32_t a = 0; a < n; ++a) out[a] = XlaExpNotNan(out[a]);
}

constexpr float kTieBreak = 1e-7f;
constexpr float kQEpsilon = 1e-8f;

// The PUCT scores of one node (mctx.muzero_action_selection with
// mctx.qtransform_by_parent_and_siblings, before the tie-breaking noise) go
// to `scores` (a row of `A`).  Returns the action if the noise `1e-7 * u`,
// u in [0, 1), cannot change the argmax: the best score beats every other
// one by more than 1e-7 (see `_fast_search._batched_puct`).  Else returns -1,
// and the caller adds the noise (`NoisyArgmax`).
inline int32_t PuctSelectScalar(const int32_t* rec, int32_t num_actions,
                                float node_value, float scale,
                                const bool* invalid, const bool* legal,
                                float masked_score, float* scores) {
  // qtransform_by_parent_and_siblings.
  float lo = node_value, hi = node_value;
  bool nan = std::isnan(node_value);
  for (int32_t a = 0; a < num_actions; ++a) {
    const int32_t* e = rec + a * kEdgeFields;
    const float q =
        MulAdd(AsFloat(e[kDiscount]), AsFloat(e[kValue]), AsFloat(e[kReward]));
    scores[a] = q;
    const float safe = e[kVisits] > 0 ? q : node_value;
    nan |= safe != safe;
    lo = safe < lo ? safe : lo;
    hi = safe > hi ? safe : hi;
  }
  if (nan) lo = hi = std::numeric_limits<float>::quiet_NaN();
  // XLA rewrites the division by the per-node denominator as a product with
  // its reciprocal (`x / broadcast(d)` -> `x * broadcast(1 / d)`), and LLVM
  // then fuses that product with the add of the policy score.
  const float inverse = 1.0f / NanMax(hi - lo, kQEpsilon);
  float best = -std::numeric_limits<float>::infinity();
  float runner_up = best;
  int32_t greedy = 0;
  nan = false;
  for (int32_t a = 0; a < num_actions; ++a) {
    const int32_t* e = rec + a * kEdgeFields;
    const float completed = e[kVisits] > 0 ? scores[a] : lo;
    // jnp.sqrt(n) * pb_c * prior_probs / (visit_counts + 1), the first
    // product (per node) from `scale`.
    const float policy_score =
        scale * AsFloat(e[kLogit]) / static_cast<float>(e[kVisits] + 1);
    // With a legal-move mask (the planner's `_legal_qtransform`), XLA selects
    // between the product and `masked_score` before the add: no FMA there.
    float s = legal == nullptr
                  ? MulAdd(completed - lo, inverse, policy_score)
                  : (legal[a] ? (completed - lo) * inverse : masked_score) +
                        policy_score;
    if (invalid != nullptr && invalid[a]) {
      s = -std::numeric_limits<float>::infinity();
    }
    scores[a] = s;
    nan |= s != s;
    if (a == 0 || s > best) {
      runner_up = a == 0 ? runner_up : best;
      best = s;
      greedy = a;
    } else if (s > runner_up) {
      runner_up = s;
    }
  }
  if (!nan && best > runner_up + kTieBreak) return greedy;
  return -1;
}

#if defined(__AVX2__) && defined(__FMA__)
// `PuctSelectScalar` on 8 actions at a time (AVX2).  The same operations per
// action, so the same bits: IEEE products, quotients and fused multiply-adds
// round the same in every lane, and NaNs are tracked apart (vminps/vmaxps do
// not propagate them as jnp.min/jnp.max do).  `scores` must hold
// `num_actions` rounded up to a multiple of 8; so must `visits`.
inline float HorizontalMin(__m256 v) {
  __m128 x = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  x = _mm_min_ps(x, _mm_movehl_ps(x, x));
  x = _mm_min_ss(x, _mm_shuffle_ps(x, x, 1));
  return _mm_cvtss_f32(x);
}
inline float HorizontalMax(__m256 v) {
  __m128 x = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  x = _mm_max_ps(x, _mm_movehl_ps(x, x));
  x = _mm_max_ss(x, _mm_shuffle_ps(x, x, 1));
  return _mm_cvtss_f32(x);
}

inline int32_t PuctSelect(const int32_t* rec, int32_t num_actions,
                          float node_value, float scale, const bool* invalid,
                          const bool* legal, float masked_score, float* scores,
                          int32_t* visits) {
  const __m256i stride = _mm256_setr_epi32(0, 6, 12, 18, 24, 30, 36, 42);
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i zero = _mm256_setzero_si256();
  const __m256 minus_inf =
      _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  const __m256 nv = _mm256_set1_ps(node_value);
  __m256 lo = nv, hi = nv;
  __m256 nan = _mm256_cmp_ps(nv, nv, _CMP_UNORD_Q);
  for (int32_t a0 = 0; a0 < num_actions; a0 += 8) {
    const __m256i valid =
        _mm256_cmpgt_epi32(_mm256_set1_epi32(num_actions - a0), lane);
    const int32_t* base = rec + a0 * kEdgeFields;
    const __m256 value = _mm256_castsi256_ps(
        _mm256_mask_i32gather_epi32(zero, base + kValue, stride, valid, 4));
    const __m256 reward = _mm256_castsi256_ps(
        _mm256_mask_i32gather_epi32(zero, base + kReward, stride, valid, 4));
    const __m256 discount = _mm256_castsi256_ps(
        _mm256_mask_i32gather_epi32(zero, base + kDiscount, stride, valid, 4));
    const __m256i visit =
        _mm256_mask_i32gather_epi32(zero, base + kVisits, stride, valid, 4);
    const __m256 q = _mm256_fmadd_ps(discount, value, reward);
    _mm256_storeu_ps(scores + a0, q);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(visits + a0), visit);
    // Padding lanes have no visits: `safe` is the node value there.
    const __m256 safe = _mm256_blendv_ps(
        nv, q, _mm256_castsi256_ps(_mm256_cmpgt_epi32(visit, zero)));
    nan = _mm256_or_ps(nan, _mm256_cmp_ps(safe, safe, _CMP_UNORD_Q));
    lo = _mm256_min_ps(lo, safe);
    hi = _mm256_max_ps(hi, safe);
  }
  float lo_s = HorizontalMin(lo), hi_s = HorizontalMax(hi);
  if (_mm256_movemask_ps(nan)) {
    lo_s = hi_s = std::numeric_limits<float>::quiet_NaN();
  }
  // As in `PuctSelectScalar`: XLA's reciprocal, then a fused multiply-add.
  const __m256 inverse = _mm256_set1_ps(1.0f / NanMax(hi_s - lo_s, kQEpsilon));
  const __m256 low = _mm256_set1_ps(lo_s);
  const __m256 scale_v = _mm256_set1_ps(scale);
  const __m256i one = _mm256_set1_epi32(1);
  __m256 best_v = minus_inf;
  nan = _mm256_setzero_ps();
  for (int32_t a0 = 0; a0 < num_actions; a0 += 8) {
    const __m256i valid =
        _mm256_cmpgt_epi32(_mm256_set1_epi32(num_actions - a0), lane);
    const __m256 prob = _mm256_castsi256_ps(_mm256_mask_i32gather_epi32(
        zero, rec + a0 * kEdgeFields + kLogit, stride, valid, 4));
    const __m256i visit =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(visits + a0));
    const __m256 completed = _mm256_blendv_ps(
        low, _mm256_loadu_ps(scores + a0),
        _mm256_castsi256_ps(_mm256_cmpgt_epi32(visit, zero)));
    const __m256 policy =
        _mm256_div_ps(_mm256_mul_ps(scale_v, prob),
                      _mm256_cvtepi32_ps(_mm256_add_epi32(visit, one)));
    __m256 s;
    if (legal == nullptr) {
      s = _mm256_fmadd_ps(_mm256_sub_ps(completed, low), inverse, policy);
    } else {
      alignas(32) int32_t flags[8];
      for (int i = 0; i < 8; ++i) {
        flags[i] = (a0 + i < num_actions && legal[a0 + i]) ? -1 : 0;
      }
      const __m256 value = _mm256_blendv_ps(
          _mm256_set1_ps(masked_score),
          _mm256_mul_ps(_mm256_sub_ps(completed, low), inverse),
          _mm256_castsi256_ps(_mm256_load_si256(
              reinterpret_cast<const __m256i*>(flags))));
      s = _mm256_add_ps(value, policy);
    }
    __m256i masked = _mm256_xor_si256(valid, _mm256_set1_epi32(-1));
    if (invalid != nullptr) {
      alignas(32) int32_t flags[8];
      for (int i = 0; i < 8; ++i) {
        flags[i] = (a0 + i < num_actions && invalid[a0 + i]) ? -1 : 0;
      }
      masked = _mm256_or_si256(
          masked, _mm256_load_si256(reinterpret_cast<const __m256i*>(flags)));
    }
    s = _mm256_blendv_ps(s, minus_inf, _mm256_castsi256_ps(masked));
    nan = _mm256_or_ps(nan, _mm256_cmp_ps(s, s, _CMP_UNORD_Q));
    _mm256_storeu_ps(scores + a0, s);
    best_v = _mm256_max_ps(best_v, s);
  }
  if (_mm256_movemask_ps(nan)) return -1;
  const float best = HorizontalMax(best_v);
  const __m256 best_b = _mm256_set1_ps(best);
  __m256 runner_up_v = minus_inf;
  int32_t greedy = -1, ties = 0;
  for (int32_t a0 = 0; a0 < num_actions; a0 += 8) {
    const __m256 s = _mm256_loadu_ps(scores + a0);
    const __m256 eq = _mm256_cmp_ps(s, best_b, _CMP_EQ_OQ);
    const int tail = num_actions - a0 < 8 ? num_actions - a0 : 8;
    const int bits = _mm256_movemask_ps(eq) & ((1 << tail) - 1);
    if (bits) {
      if (greedy < 0) greedy = a0 + __builtin_ctz(bits);
      ties += __builtin_popcount(bits);
    }
    runner_up_v = _mm256_max_ps(runner_up_v,
                                _mm256_blendv_ps(s, minus_inf, eq));
  }
  // Another action at the best score is a tie: the noise decides.
  if (ties == 1 && best > HorizontalMax(runner_up_v) + kTieBreak) {
    return greedy;
  }
  return -1;
}
#else
inline int32_t PuctSelect(const int32_t* rec, int32_t num_actions,
                          float node_value, float scale, const bool* invalid,
                          const bool* legal, float masked_score, float* scores,
                          int32_t* /*visits*/) {
  return PuctSelectScalar(rec, num_actions, node_value, scale, invalid, legal,
                          masked_score, scores);
}
#endif

// argmax(scores + 1e-7 * uniform(selection_key)), as mctx breaks ties.
inline int32_t NoisyArgmax(float* scores, int32_t num_actions,
                           const uint32_t level_key[2]) {
  uint32_t selection_key[2];
  SplitPart(level_key, 1u, selection_key);
  for (int32_t a = 0; a < num_actions; ++a) {
    scores[a] = MulAdd(kTieBreak,
                       Uniform01(selection_key, static_cast<uint32_t>(a)),
                       scores[a]);
  }
  return Argmax(scores, num_actions);
}

// MuZero's selection cache: one row of `SelectCacheWords(A, masked)` uint32
// per node (`cache[B, N, W]`), so that a node visited again is scored from
// its visited children and a few unvisited ones instead of all `A`.  Why a
// few suffice: below the root, an unvisited child's PUCT score is
// `MulAdd(lo - lo, inverse, scale * prior / 1)` without legal-move masks and
// `(lo - lo) * inverse + scale * prior / 1` for a legal child with them,
// i.e. exactly `scale * prior` when `lo` and `inverse` are finite, and
// `masked_score + scale * prior` for an illegal child; rounding is monotone,
// so with `scale >= 0` the unvisited children of each kind rank by prior.
// The best of them, the runner-up for mctx's tie margin, and every tie at
// the top are therefore among the visited children and the two unvisited
// children of highest prior of each kind (legal, illegal).  Layout of a row:
//   [0] kCacheEmpty (not built yet), kCacheReady, or kCacheUnusable (an
//       unvisited child's prior is not finite: the full row is scored);
//   [1], [2] the (legal) unvisited children of highest and second-highest
//       prior, plus one (0: none), and [3], [4] their priors' bits (so that
//       a node's selection reads no edge but those of its visited children);
//   with masks, [5] to [8] the same for the illegal unvisited children;
//   then a bit per action, set once the child is visited; with masks, then
//   a bit per action set where the child is legal (the node's mask, copied
//   when the row is built); the row is padded to a multiple of 4 words (16
//   bytes; with masks and up to 64 actions, 16 words: one cache line);
//   without masks and up to 64 actions, 16 words, word 7 holding the third
//   and fourth unvisited children too (`SpareTags`) beside the lanes' slots.
// A node's children are visited only on a descent through it (the backup
// follows the path), so the descent keeps the bits itself, and a node's
// priors and mask never change once it is interior (see `GumbelSelector`).
enum { kCacheEmpty = 0, kCacheReady = 1, kCacheUnusable = 2 };

template <bool kMasked>
struct CacheLayout {
  // Where the visited bits begin.
  static constexpr int32_t kVisited = kMasked ? 9 : 5;
  static int32_t BitWords(int32_t num_actions) { return (num_actions + 31) / 32; }
  // Unmasked rows of up to 64 actions: 16 words (one cache line), words 7
  // to 15 being `DescendLanes`' slots (`LaneSlots`; the scalar code ignores
  // them).
  static int32_t Words(int32_t num_actions) {
    if (!kMasked && num_actions <= 64) return 16;
    return (kVisited + (kMasked ? 2 : 1) * BitWords(num_actions) + 3) / 4 * 4;
  }
  static bool Visited(const uint32_t* c, int32_t a) {
    return (c[kVisited + (a >> 5)] >> (a & 31)) & 1u;
  }
  static void SetVisited(uint32_t* c, int32_t a) {
    c[kVisited + (a >> 5)] |= 1u << (a & 31);
  }
  static bool Legal(const uint32_t* c, int32_t num_actions, int32_t a) {
    if constexpr (!kMasked) return true;
    return (c[kVisited + BitWords(num_actions) + (a >> 5)] >> (a & 31)) & 1u;
  }
  static void SetLegal(uint32_t* c, int32_t num_actions, int32_t a) {
    c[kVisited + BitWords(num_actions) + (a >> 5)] |= 1u << (a & 31);
  }
};

inline int32_t SelectCacheWords(int32_t num_actions, bool masked) {
  return masked ? CacheLayout<true>::Words(num_actions)
                : CacheLayout<false>::Words(num_actions);
}

// Unmasked rows of up to 64 actions (16 words) also keep the third and
// fourth unvisited children by prior, as tags (action plus one, 0: none) in
// the spare bits of word 7, whose other bits hold the lanes' slot actions
// (`LaneSlots`: bits 0 to 7 and 16 to 23).  When the descent visits one of
// the two cached children, the third moves up and only its prior is read
// (one edge) instead of rescanning all `A` priors (`CacheTopTwo`; 24 cache
// lines of the record at 64 actions); the rescan comes once both spares are
// used up.  Every child visited only grows the visited set, so the four
// remain the best unvisited ones, in order, as children leave the list.
struct SpareTags {
  static constexpr int32_t kWord = 7;
  static constexpr uint32_t kSlotBits = 0x00FF00FFu;
  static bool Kept(bool masked, int32_t num_actions) {
    return !masked && num_actions <= 64;
  }
  static uint32_t Third(const uint32_t* c) { return (c[kWord] >> 8) & 0xFFu; }
  static uint32_t Fourth(const uint32_t* c) { return c[kWord] >> 24; }
  static void Set(uint32_t* c, uint32_t third, uint32_t fourth) {
    c[kWord] = (c[kWord] & kSlotBits) | (third << 8) | (fourth << 24);
  }
};

// Calls `fn(a)` for each child `a` marked visited in row `c`, in order.
template <bool kMasked, typename Fn>
inline void ForEachVisited(const uint32_t* c, int32_t num_actions, Fn fn) {
  using L = CacheLayout<kMasked>;
  const int32_t words = L::BitWords(num_actions);
  for (int32_t w = 0; w < words; ++w) {
    for (uint32_t bits = c[L::kVisited + w]; bits; bits &= bits - 1) {
      fn(w * 32 + __builtin_ctz(bits));
    }
  }
}

// Edge statistics kept lazily (MuZero's unmasked rows of up to 64
// actions, those with `LaneSlots`).  An edge's visit count and value are
// those of its child's statistics, bit for bit, at every step (the backup
// writes both with the same bits, `BackupRange`), and the vector lanes read
// the child's statistics, not the edge.  So the backup leaves the edges of
// narrow nodes alone: nodes whose row is ready and names at most two
// visited children (the rows the lanes decide from).  Writing them cost a
// cache line per level of every path: MuZero's paths are ~90 levels deep
// with 64 actions at S = 256, and at B = 1024 each such line came from
// memory.  The edges of a narrow node's visited children may thus be stale;
// the scalar code reads those from the children's statistics instead
// (`ChildStatsRecord`), and the unpack takes every expanded edge's from its
// child (`UnpackEdgesImpl`).  A node whose row is not ready, or that has
// three visited children or more, is wide: the backup writes its edge, and
// when it passes a node with exactly three, all three (so that a node that
// just turned wide has every edge fresh before anything reads it whole).
struct LazyEdges {
  // Visited children named by an unmasked row.
  static int32_t VisitedCount(const uint32_t* c, int32_t num_actions) {
    using L = CacheLayout<false>;
    int32_t n = 0;
    for (int32_t w = 0; w < L::BitWords(num_actions); ++w) {
      n += __builtin_popcount(c[L::kVisited + w]);
    }
    return n;
  }
  static bool Narrow(const uint32_t* c, int32_t num_actions) {
    return c[0] == kCacheReady && VisitedCount(c, num_actions) <= 2;
  }
  // Copies the statistics of the visited children named by row `c` into
  // their edges of record `rec` (`st`: the example's statistics).
  static void Sync(int32_t* rec, const uint32_t* c, const int32_t* st,
                   int32_t num_actions) {
    ForEachVisited<false>(c, num_actions, [&](int32_t a) {
      int32_t* edge = rec + a * kEdgeFields;
      if (edge[kChild] <= 0) return;
      const int32_t* child = st + (edge[kChild] - 1) * kStatFields;
      edge[kVisits] = child[kSVisits];
      edge[kValue] = child[kSValue];
    });
  }
};

// `rec` with the visit counts and values of the visited children that row
// `c` names taken from their statistics (`st`: the example's), in `out`
// (`A * kEdgeFields` words): a narrow node's record as the scalar code
// reads it (`LazyEdges`).
inline const int32_t* ChildStatsRecord(const int32_t* rec, const uint32_t* c,
                                       const int32_t* st, int32_t num_actions,
                                       int32_t* out) {
  std::memcpy(out, rec, sizeof(int32_t) * num_actions * kEdgeFields);
  LazyEdges::Sync(out, c, st, num_actions);
  return out;
}

#if defined(__AVX512F__)
// Lanes holding a finite value.
inline __mmask16 FiniteMask(__m512 x) {
  // x - x is 0 for finite x, NaN for infinities and NaN.
  return _mm512_cmp_ps_mask(_mm512_sub_ps(x, x), _mm512_setzero_ps(),
                            _CMP_EQ_OQ);
}

// `XlaExpNotNan` in every lane (`GumbelLanes`, `NarrowChildren`).
inline __m512 XlaExpLanes(__m512 x) {
  auto bits = [](uint32_t b) { return _mm512_set1_ps(FromBits(b)); };
  __m512 r = _mm512_mask_mov_ps(
      x, _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.8f), _CMP_LT_OQ),
      _mm512_set1_ps(-87.8f));
  r = _mm512_mask_mov_ps(
      r, _mm512_cmp_ps_mask(r, _mm512_set1_ps(88.8f), _CMP_GT_OQ),
      _mm512_set1_ps(88.8f));
  const __m512 v = _mm512_fmadd_ps(r, bits(0x3FB8AA3Bu), _mm512_set1_ps(0.5f));
  __m512i n = _mm512_cvttps_epi32(v);
  n = _mm512_mask_sub_epi32(
      n, _mm512_cmp_ps_mask(_mm512_cvtepi32_ps(n), v, _CMP_GT_OQ), n,
      _mm512_set1_epi32(1));
  n = _mm512_max_epi32(n, _mm512_set1_epi32(-127));
  n = _mm512_min_epi32(n, _mm512_set1_epi32(127));
  const __m512 fx = _mm512_cvtepi32_ps(n);
  const __m512 minus_fx = _mm512_castsi512_ps(_mm512_xor_si512(
      _mm512_castps_si512(fx),
      _mm512_set1_epi32(static_cast<int32_t>(0x80000000u))));
  __m512 t = _mm512_fmadd_ps(minus_fx, bits(0x3F318000u), r);
  t = _mm512_fmadd_ps(minus_fx, bits(0xB95E8083u), t);
  __m512 y = _mm512_fmadd_ps(bits(0x39506967u), t, bits(0x3AB743CEu));
  y = _mm512_fmadd_ps(y, t, bits(0x3C088908u));
  y = _mm512_fmadd_ps(y, t, bits(0x3D2AA9C1u));
  y = _mm512_fmadd_ps(y, t, bits(0x3E2AAAAAu));
  y = _mm512_fmadd_ps(y, t, _mm512_set1_ps(0.5f));
  y = _mm512_add_ps(_mm512_fmadd_ps(y, _mm512_mul_ps(t, t), t),
                    _mm512_set1_ps(1.0f));
  return _mm512_mul_ps(
      y, _mm512_castsi512_ps(_mm512_slli_epi32(
             _mm512_add_epi32(n, _mm512_set1_epi32(127)), 23)));
}

// Up to 64 values of `x` (a row of `n`) in four vectors, `v[j]` holding
// values 16 j to 16 j + 15; those past `n` or marked in `gone` are -inf.
// Returns the mask of the values loaded.
inline uint64_t LoadRow64(const float* x, int32_t n, uint64_t gone,
                          __m512 v[4]) {
  const __m512 minus_inf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  uint64_t loaded = 0;
  for (int j = 0; j < 4; ++j) {
    const int32_t left = n - 16 * j;
    const __mmask16 in = static_cast<__mmask16>(
        left >= 16 ? 0xFFFFu : left <= 0 ? 0u : (1u << left) - 1u);
    const __mmask16 open =
        in & static_cast<__mmask16>(~static_cast<uint32_t>(gone >> (16 * j)));
    v[j] = _mm512_mask_loadu_ps(minus_inf, open, x + 16 * j);
    loaded |= static_cast<uint64_t>(open) << (16 * j);
  }
  return loaded;
}

// The indices of the `count` largest of the values `v` (`LoadRow64`; -inf
// never counts) into `best`, best first, the first index on ties (four
// passes of a maximum and the first index at it: a sorted insertion's
// order); returns how many there were.  `v` is consumed.
inline int32_t LargestOf64(__m512 v[4], int32_t count, int32_t* best) {
  const float minus_inf = -std::numeric_limits<float>::infinity();
  int32_t found = 0;
  for (; found < count; ++found) {
    const float top = _mm512_reduce_max_ps(
        _mm512_max_ps(_mm512_max_ps(v[0], v[1]), _mm512_max_ps(v[2], v[3])));
    if (!(top > minus_inf)) break;
    const __m512 t = _mm512_set1_ps(top);
    uint64_t at = 0;
    for (int j = 0; j < 4; ++j) {
      at |= static_cast<uint64_t>(_mm512_cmp_ps_mask(v[j], t, _CMP_EQ_OQ))
            << (16 * j);
    }
    best[found] = __builtin_ctzll(at);
    const uint64_t one = uint64_t{1} << best[found];
    for (int j = 0; j < 4; ++j) {
      v[j] = _mm512_mask_mov_ps(v[j], static_cast<__mmask16>(one >> (16 * j)),
                                _mm512_set1_ps(minus_inf));
    }
  }
  return found;
}
#endif

// `CacheTopTwo` for an unmasked row of up to 64 actions (the lanes' rows,
// with `SpareTags`), in registers: the four unvisited children of highest
// prior (`priors`: the node's, a contiguous row) by four passes of a
// maximum and the first index at it, which lists them in the order of the
// sorted insertion below (value, then first index; +0 and -0 tie there as
// here, and each keeps its own bits).  Returns false, writing nothing,
// where an unvisited prior is not finite: the insertion then settles the
// order (and marks the row unusable).  The insertion, branched on every
// action, took about 1000 TSC cycles per new node at 64 actions (MuZero,
// B = 256, S = 256 on an AMD EPYC: 0.4 of the expansion's 0.46 G cycles);
// this takes about 100.
inline bool RankCacheRow(const float* priors, int32_t num_actions,
                         uint32_t* c) {
#if defined(__AVX512F__)
  using L = CacheLayout<false>;
  if (num_actions > 64) return false;
  const uint64_t gone =
      c[L::kVisited] |
      (num_actions > 32 ? uint64_t{c[L::kVisited + 1]} << 32 : uint64_t{0});
  __m512 v[4];
  const uint64_t open = LoadRow64(priors, num_actions, gone, v);
  for (int j = 0; j < 4; ++j) {
    if (static_cast<__mmask16>(open >> (16 * j)) & ~FiniteMask(v[j])) {
      return false;
    }
  }
  int32_t a[4] = {-1, -1, -1, -1};
  LargestOf64(v, 4, a);
  c[0] = kCacheReady;
  c[1] = static_cast<uint32_t>(a[0] + 1);
  c[2] = static_cast<uint32_t>(a[1] + 1);
  c[3] = a[0] < 0 ? 0u : BitCast<uint32_t>(priors[a[0]]);
  c[4] = a[1] < 0 ? 0u : BitCast<uint32_t>(priors[a[1]]);
  SpareTags::Set(c, static_cast<uint32_t>(a[2] + 1),
                 static_cast<uint32_t>(a[3] + 1));
  return true;
#else
  (void)priors;
  (void)num_actions;
  (void)c;
  return false;
#endif
}

// The two unvisited children of highest prior (first index on ties) of
// each kind, or kCacheUnusable.
template <bool kMasked>
inline void CacheTopTwo(const int32_t* rec, int32_t num_actions, uint32_t* c) {
  using L = CacheLayout<kMasked>;
#if defined(__AVX512F__)
  if constexpr (!kMasked) {
    if (num_actions <= 64) {
      alignas(64) float priors[64];
      for (int32_t a = 0; a < num_actions; ++a) {
        priors[a] = AsFloat(rec[a * kEdgeFields + kLogit]);
      }
      if (RankCacheRow(priors, num_actions, c)) return;
    }
  }
#endif
  // The `keep` best (first index on ties): an insertion into a sorted list,
  // the same order as keeping the best two alone.
  struct Top {
    int32_t keep;
    int32_t a[4] = {-1, -1, -1, -1};
    float p[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    void Add(int32_t action, float prior) {
      for (int32_t i = 0; i < keep; ++i) {
        if (a[i] < 0 || prior > p[i]) {
          for (int32_t j = keep - 1; j > i; --j) {
            a[j] = a[j - 1];
            p[j] = p[j - 1];
          }
          a[i] = action;
          p[i] = prior;
          return;
        }
      }
    }
    void Write(uint32_t* slots) const {
      slots[0] = static_cast<uint32_t>(a[0] + 1);
      slots[1] = static_cast<uint32_t>(a[1] + 1);
      slots[2] = BitCast<uint32_t>(p[0]);
      slots[3] = BitCast<uint32_t>(p[1]);
    }
  };
  const bool spare = SpareTags::Kept(kMasked, num_actions);
  Top legal{spare ? 4 : 2}, illegal{2};
  bool finite = true;
  for (int32_t a = 0; a < num_actions; ++a) {
    if (L::Visited(c, a)) continue;
    const float p = AsFloat(rec[a * kEdgeFields + kLogit]);
    finite &= std::isfinite(p);
    if (L::Legal(c, num_actions, a)) {
      legal.Add(a, p);
    } else {
      illegal.Add(a, p);
    }
  }
  c[0] = finite ? kCacheReady : kCacheUnusable;
  legal.Write(c + 1);
  if constexpr (kMasked) illegal.Write(c + 5);
  if (spare) {
    SpareTags::Set(c, static_cast<uint32_t>(legal.a[2] + 1),
                   static_cast<uint32_t>(legal.a[3] + 1));
  }
}

// A node's cache row from its record (and legal-move mask `legal`, with
// `kMasked`), `selected` counted as visited (the descent is about to go
// through it).
template <bool kMasked>
inline void CacheBuild(const int32_t* rec, int32_t num_actions,
                       const bool* legal, int32_t selected, uint32_t* c) {
  using L = CacheLayout<kMasked>;
  const int32_t words = L::BitWords(num_actions);
  for (int32_t w = 0; w < (kMasked ? 2 : 1) * words; ++w) c[L::kVisited + w] = 0;
  for (int32_t a = 0; a < num_actions; ++a) {
    if (rec[a * kEdgeFields + kVisits] > 0 || a == selected) {
      L::SetVisited(c, a);
    }
    if constexpr (kMasked) {
      if (legal[a]) L::SetLegal(c, num_actions, a);
    }
  }
  CacheTopTwo<kMasked>(rec, num_actions, c);
}

// Counts `selected` as visited in a ready row (after the descent picked it).
template <bool kMasked>
inline void CacheVisit(const int32_t* rec, int32_t num_actions,
                       int32_t selected, uint32_t* c) {
  using L = CacheLayout<kMasked>;
  if (L::Visited(c, selected)) return;
  L::SetVisited(c, selected);
  const uint32_t tag = static_cast<uint32_t>(selected + 1);
  // Spares (0: none; never a tag) where the row keeps them.
  const bool spare = SpareTags::Kept(kMasked, num_actions);
  const uint32_t third = spare ? SpareTags::Third(c) : 0u;
  const uint32_t fourth = spare ? SpareTags::Fourth(c) : 0u;
  if (tag == c[1] || tag == c[2] ||
      (kMasked && (tag == c[5] || tag == c[6]))) {
    if (third == 0) {
      CacheTopTwo<kMasked>(rec, num_actions, c);
      return;
    }
    // The next spare takes the place of the visited child.
    if (tag == c[1]) {
      c[1] = c[2];
      c[3] = c[4];
    }
    c[2] = third;
    c[4] = static_cast<uint32_t>(
        rec[static_cast<int32_t>(third - 1) * kEdgeFields + kLogit]);
    SpareTags::Set(c, fourth, 0u);
  } else if (tag == third) {
    SpareTags::Set(c, fourth, 0u);
  } else if (tag == fourth) {
    SpareTags::Set(c, third, 0u);
  }
}

// `PuctSelect`'s decision from a ready cache row (no invalid actions: below
// the root): the action, or -1 where it cannot tell (a tie at the top, the
// margin under mctx's 1e-7, or a value that is not finite; the caller then
// scores the whole row).  Same operations per child as `PuctSelectScalar`,
// so the same roundings.
//
// `child_st` (the example's statistics, or null): the visited children's
// visit counts and values come from their statistics, not their edges (a
// narrow node's, `LazyEdges`).
template <bool kMasked>
inline int32_t CachedPuctSelect(const int32_t* rec, const uint32_t* c,
                                int32_t num_actions, float node_value,
                                float scale, float masked_score,
                                const int32_t* child_st = nullptr) {
  using L = CacheLayout<kMasked>;
  if (c[0] != kCacheReady || !std::isfinite(node_value) ||
      !(scale >= 0.0f) || !std::isfinite(scale)) {
    return -1;
  }
  // A visited child's edge statistic `field` (kVisits or kValue).
  auto stat = [rec, child_st](int32_t a, int32_t field) {
    const int32_t* e = rec + a * kEdgeFields;
    if (child_st == nullptr) return e[field];
    if (e[kChild] <= 0) return 0;
    return child_st[(e[kChild] - 1) * kStatFields +
                    (field == kVisits ? kSVisits : kSValue)];
  };
  auto q_value = [rec, &stat](int32_t a) {
    const int32_t* e = rec + a * kEdgeFields;
    return MulAdd(AsFloat(e[kDiscount]), AsFloat(stat(a, kValue)),
                  AsFloat(e[kReward]));
  };
  float lo = node_value, hi = node_value;
  bool usable = true;
  ForEachVisited<kMasked>(c, num_actions, [&](int32_t a) {
    const float q = q_value(a);
    usable &= stat(a, kVisits) > 0 && std::isfinite(q);
    lo = q < lo ? q : lo;
    hi = q > hi ? q : hi;
  });
  if (!usable) return -1;
  const float inverse = 1.0f / NanMax(hi - lo, kQEpsilon);
  // The best score (first action among equals), how many reach it, and the
  // best of the others.
  float best = -std::numeric_limits<float>::infinity(), runner_up = best;
  int32_t greedy = -1, ties = 0;
  bool finite = true;
  auto consider = [&](int32_t a, float prior, float completed,
                      int32_t visits, bool legal) {
    const float policy = scale * prior / static_cast<float>(visits + 1);
    // As `PuctSelectScalar`: with masks, no FMA.
    const float s =
        kMasked ? (legal ? (completed - lo) * inverse : masked_score) + policy
                : MulAdd(completed - lo, inverse, policy);
    finite &= std::isfinite(s);
    if (s > best) {
      runner_up = best;
      best = s;
      greedy = a;
      ties = 1;
    } else if (s == best) {
      ++ties;
      greedy = a < greedy ? a : greedy;
    } else if (s > runner_up) {
      runner_up = s;
    }
  };
  ForEachVisited<kMasked>(c, num_actions, [&](int32_t a) {
    consider(a, AsFloat(rec[a * kEdgeFields + kLogit]), q_value(a),
             stat(a, kVisits), L::Legal(c, num_actions, a));
  });
  for (int32_t slot = 1; slot <= (kMasked ? 5 : 1); slot += 4) {
    for (int32_t i = 0; i < 2; ++i) {
      if (c[slot + i] != 0) {
        consider(static_cast<int32_t>(c[slot + i]) - 1,
                 BitCast<float>(c[slot + 2 + i]), lo, 0, slot == 1);
      }
    }
  }
  if (!finite || greedy < 0) return -1;
  if (ties == 1 && best > runner_up + kTieBreak) return greedy;
  return -1;
}

// jnp.minimum and jnp.min propagate NaN.
inline float NanMin(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return std::numeric_limits<float>::quiet_NaN();
  return a < b ? a : b;
}

// A float row sum in XLA:CPU's order.  Up to 32 elements: from 0 in order.
// A wider row is split by XLA's tree-reduction pass into windows of 32 (a
// `reduce-window` whose padding to a multiple of 32 is split evenly, the
// extra zero at the end), each summed from 0 in order, and the window sums
// are then added from 0 in order.  (Its zeros of padding change no sum.)
// Full windows are summed two side by side: independent chains, the same
// roundings.  Rows of 23 to 32 elements that XLA fuses with their producer
// may be vectorized by LLVM instead, and more than 32 windows would be split
// again; `gumbel_exact` catches both.
inline float XlaRowSum(const float* v, int32_t n) {
  constexpr int32_t kWindow = 32;
  if (n <= kWindow) {
    float sum = 0.0f;
    for (int32_t a = 0; a < n; ++a) sum = sum + v[a];
    return sum;
  }
  const int32_t padding = (kWindow - n % kWindow) % kWindow;
  float total = 0.0f;
  // The first window holds `padding / 2` zeros, then elements.
  int32_t begin = 0, end = kWindow - padding / 2;
  while (begin < n) {
    if (end - begin == kWindow && end + kWindow <= n) {
      float first = 0.0f, second = 0.0f;
      for (int32_t j = 0; j < kWindow; ++j) {
        first = first + v[begin + j];
        second = second + v[end + j];
      }
      total = total + first;
      total = total + second;
      begin = end + kWindow;
    } else {
      float sum = 0.0f;
      for (int32_t a = begin; a < std::min(n, end); ++a) sum = sum + v[a];
      total = total + sum;
      begin = end;
    }
    end = begin + kWindow;
  }
  return total;
}

// A row's maximum (`kMax`) or minimum found by comparisons alone (`NanMax`
// / `NanMin` folded in order, or lanes) is XLA's but for the sign of a zero
// extreme, which XLA settles as +0 above -0 whichever comes first; this
// settles it (`get(a)`: the row's values).
template <bool kMax, typename Get>
inline float SettleZero(float extreme, int32_t n, Get get) {
  if (extreme != 0.0f) return extreme;
  const float preferred = kMax ? 0.0f : -0.0f;
  for (int32_t a = 0; a < n; ++a) {
    if (AsBits(get(a)) == AsBits(preferred)) return preferred;
  }
  return -preferred;
}

// A row's maximum / minimum as XLA:CPU reduces it (jnp.max / jnp.min): a
// NaN anywhere gives NaN, and +0 counts as greater than -0 (as XLA's
// `maximum` and `minimum` order them, whichever comes first).  Computed in
// lanes, then the sign of a zero extreme is settled.
#if defined(__GNUC__) || defined(__clang__)
typedef float Float8 __attribute__((vector_size(32)));
#endif

template <bool kMax>
inline float FoldExtreme(const float* v, int32_t n) {
  int32_t nan = 0;
  for (int32_t a = 0; a < n; ++a) nan |= v[a] != v[a];
  if (nan) return std::numeric_limits<float>::quiet_NaN();
  float result = kMax ? -std::numeric_limits<float>::infinity()
                      : std::numeric_limits<float>::infinity();
  int32_t a = 0;
#if defined(__GNUC__) || defined(__clang__)
  if (n >= 8) {
    Float8 lanes;
    std::memcpy(&lanes, v, sizeof lanes);
    for (a = 8; a + 8 <= n; a += 8) {
      Float8 x;
      std::memcpy(&x, v + a, sizeof x);
      if constexpr (kMax) {
        lanes = x > lanes ? x : lanes;
      } else {
        lanes = x < lanes ? x : lanes;
      }
    }
    for (int j = 0; j < 8; ++j) {
      result = (kMax ? lanes[j] > result : lanes[j] < result) ? lanes[j]
                                                             : result;
    }
  }
#endif
  for (; a < n; ++a) {
    result = (kMax ? v[a] > result : v[a] < result) ? v[a] : result;
  }
  return SettleZero<kMax>(result, n, [v](int32_t i) { return v[i]; });
}

inline float FoldMax(const float* v, int32_t n) { return FoldExtreme<true>(v, n); }
inline float FoldMin(const float* v, int32_t n) { return FoldExtreme<false>(v, n); }

// `Argmax` computed in lanes: the first NaN, else the first element equal to
// the row's maximum.
inline int32_t ArgmaxRow(const float* x, int32_t n) {
  const float top = FoldMax(x, n);
  if (top != top) {
    for (int32_t a = 0; a < n; ++a) {
      if (x[a] != x[a]) return a;
    }
  }
  for (int32_t a = 0; a < n; ++a) {
    if (x[a] == top) return a;
  }
  return 0;
}

// One node's edges in the packed store, as `GumbelScores` reads them.
struct EdgeRow {
  const int32_t* rec;
  float logit(int32_t a) const { return AsFloat(rec[a * kEdgeFields + kLogit]); }
  // mctx's `Tree.qvalues`: reward + discount * value (fused, as XLA does).
  float q(int32_t a) const {
    const int32_t* e = rec + a * kEdgeFields;
    return MulAdd(AsFloat(e[kDiscount]), AsFloat(e[kValue]),
                  AsFloat(e[kReward]));
  }
  int32_t visits(int32_t a) const { return rec[a * kEdgeFields + kVisits]; }
};

// The constants of mctx.qtransform_completed_by_mix_value (its other
// arguments at their defaults: rescale_values, use_mixed_value, epsilon
// 1e-8), and the planner's legal-move masking of it (`search._qtransform`:
// illegal children's completed values become `masked_score`).
struct MixValue {
  float value_scale, maxvisit_init, masked_score;
};

// Gumbel's scores for rows of fewer than `kShortRow` actions: the formula
// below (see `GumbelScores`) in fused scalar loops that read the node
// straight from its packed record (`row` gives `logit(a)`, `q(a)` and
// `visits(a)`).  The vectorizable passes of the wide rows cost more than
// they save on short ones: Gumbel AlphaZero on tic-tac-toe (9 actions, B =
// 64, S = 64) took 5.7 ms per search with them against 4.4 ms this way.
// Both give the same bits (`gumbel_exact` checks the one a width uses).
constexpr int32_t kShortRow = 16;

// `base + q'` for action `a`, q' = `visit_scale * scaled` its completed
// q-value, as XLA computes it: without a mask LLVM fuses the product into
// the add; the mask's select between them (illegal: `masked_score`) leaves
// a plain product and add (the product is computed either way, so that
// loops of it need no branch).
inline float PlusCompletedQ(float base, float visit_scale, float scaled,
                            const bool* legal, int32_t a, float masked_score) {
  if (legal == nullptr) return MulAdd(visit_scale, scaled, base);
  const float completed = visit_scale * scaled;
  return base + (legal[a] ? completed : masked_score);
}

// Sequential Halving's score of a root action from `with_q` (its Gumbel
// noise + logit - max logit + q'): `max(-1e9, with_q)`, -inf unless its
// visit count is the considered one, -inf if the action is invalid.
inline float GumbelRootScore(float with_q, int32_t visits,
                             int32_t considered_visit, bool invalid) {
  const float minus_inf = -std::numeric_limits<float>::infinity();
  const float score =
      NanMax(-1e9f, with_q) + (visits == considered_visit ? 0.0f : minus_inf);
  return invalid ? minus_inf : score;
}

namespace short_rows {

template <typename Row>
inline void GumbelPriorProbs(const Row& row, int32_t num_actions,
                             float* probs) {
  float top = -std::numeric_limits<float>::infinity();
  for (int32_t a = 0; a < num_actions; ++a) top = NanMax(top, row.logit(a));
  top = SettleZero<true>(top, num_actions,
                         [&](int32_t a) { return row.logit(a); });
  float total = 0.0f;
  for (int32_t a = 0; a < num_actions; ++a) {
    probs[a] = XlaExp(row.logit(a) - top);
    total = total + probs[a];
  }
  const float inverse = 1.0f / total;
  for (int32_t a = 0; a < num_actions; ++a) {
    probs[a] = NanMax(probs[a] * inverse, std::numeric_limits<float>::min());
  }
}

template <typename Row>
inline float GumbelScaledQ(const Row& row, int32_t num_actions, float raw,
                           const MixValue& mix, const float* probs,
                           float* scaled, int32_t* sum_visits) {
  int32_t total_visits = 0, max_visits = std::numeric_limits<int32_t>::min();
  float visited_probs = 0.0f;
  for (int32_t a = 0; a < num_actions; ++a) {
    total_visits += row.visits(a);
    max_visits = std::max(max_visits, row.visits(a));
    visited_probs = visited_probs + (row.visits(a) > 0 ? probs[a] : 0.0f);
  }
  float weighted_q = 0.0f;
  for (int32_t a = 0; a < num_actions; ++a) {
    scaled[a] = row.q(a);
    weighted_q = weighted_q + (row.visits(a) > 0
                                   ? probs[a] * scaled[a] / visited_probs
                                   : 0.0f);
  }
  const float value =
      MulAdd(static_cast<float>(total_visits), weighted_q, raw) /
      static_cast<float>(total_visits + 1);
  float lo = std::numeric_limits<float>::infinity();
  float hi = -lo;
  for (int32_t a = 0; a < num_actions; ++a) {
    if (row.visits(a) <= 0) scaled[a] = value;
    lo = NanMin(lo, scaled[a]);
    hi = NanMax(hi, scaled[a]);
  }
  auto get = [&](int32_t a) { return scaled[a]; };
  lo = SettleZero<false>(lo, num_actions, get);
  hi = SettleZero<true>(hi, num_actions, get);
  const float rescale = 1.0f / NanMax(hi - lo, kQEpsilon);
  for (int32_t a = 0; a < num_actions; ++a) {
    scaled[a] = (scaled[a] - lo) * rescale;
  }
  *sum_visits = total_visits;
  return (static_cast<float>(max_visits) + mix.maxvisit_init) *
         mix.value_scale;
}

template <typename Row>
inline void GumbelScores(const Row& row, int32_t num_actions, float raw,
                         const MixValue& mix, const bool* legal,
                         const float* probs, float* completed, float* scores) {
  int32_t sum_visits;
  const float visit_scale = GumbelScaledQ(row, num_actions, raw, mix, probs,
                                          completed, &sum_visits);
  float top = -std::numeric_limits<float>::infinity();
  for (int32_t a = 0; a < num_actions; ++a) {
    scores[a] = PlusCompletedQ(row.logit(a), visit_scale, completed[a], legal,
                               a, mix.masked_score);
    top = NanMax(top, scores[a]);
  }
  top = SettleZero<true>(top, num_actions,
                         [&](int32_t a) { return scores[a]; });
  float total = 0.0f;
  for (int32_t a = 0; a < num_actions; ++a) {
    scores[a] = XlaExp(scores[a] - top);
    total = total + scores[a];
  }
  const float improved = 1.0f / total;
  const float visit_share = 1.0f / static_cast<float>(sum_visits + 1);
  for (int32_t a = 0; a < num_actions; ++a) {
    scores[a] = MulAdd(scores[a], improved,
                       -(static_cast<float>(row.visits(a)) * visit_share));
  }
}

template <typename Row>
inline void GumbelRootScores(const Row& row, int32_t num_actions, float raw,
                             const MixValue& mix, const bool* legal,
                             const float* probs, const float* gumbel,
                             const bool* invalid, int32_t considered_visit,
                             float* completed, float* scores) {
  int32_t sum_visits;
  const float visit_scale = GumbelScaledQ(row, num_actions, raw, mix, probs,
                                          completed, &sum_visits);
  float top = -std::numeric_limits<float>::infinity();
  for (int32_t a = 0; a < num_actions; ++a) top = NanMax(top, row.logit(a));
  top = SettleZero<true>(top, num_actions,
                         [&](int32_t a) { return row.logit(a); });
  for (int32_t a = 0; a < num_actions; ++a) {
    scores[a] = GumbelRootScore(
        PlusCompletedQ(gumbel[a] + (row.logit(a) - top), visit_scale,
                       completed[a], legal, a, mix.masked_score),
        row.visits(a), considered_visit, invalid[a]);
  }
}

}  // namespace short_rows

// Gumbel MuZero's selection scores, computed as XLA:CPU computes them
// (`GumbelPriorProbs`, `GumbelScaledQ`, then `GumbelScores` for
// mctx.gumbel_muzero_interior_action_selection, `GumbelRootScores` for the
// root):
//   probs     = softmax(logits)            (exp * (1 / sum): XLA's reciprocal)
//   p         = max(probs, tiny)
//   value     = (raw + N * sum_{n > 0}(p * q / sum_{n > 0} p)) / (N + 1)
//   completed = n > 0 ? q : value, rescaled by its min and max
//   q'        = (maxvisit_init + max n) * value_scale * completed
//               (masked: legal ? q' : masked_score)
//   scores    = softmax(logits + q') - n / (1 + N)
// with N = sum n.  Every sum is an `XlaRowSum`; `_native.gumbel_exact`
// checks the bits against XLA's for the search's number of actions before
// the kernel is used.  The node's edges come as contiguous rows
// (`GumbelNode`, filled by `LoadGumbelNode`), so that the element-wise loops
// vectorize; the sums stay in XLA's order.  `legal` is the node's legal-move
// mask or null (no masking); `probs`, `completed`, `scores` and `work` are
// rows of `num_actions`.
struct GumbelNode {
  const float* logit;
  const float* q;
  const int32_t* visits;
};

// Copies a node's logits, q-values and visit counts out of `row` (which
// gives `logit(a)`, `q(a)` and `visits(a)`) into rows of `num_actions`.
template <typename Row>
inline void LoadGumbelNode(const Row& row, int32_t num_actions, float* logit,
                           float* q, int32_t* visits) {
  for (int32_t a = 0; a < num_actions; ++a) {
    logit[a] = row.logit(a);
    q[a] = row.q(a);
    visits[a] = row.visits(a);
  }
}

// The prior probabilities `max(softmax(logits), tiny)`.
inline void GumbelPriorProbs(const float* logits, int32_t num_actions,
                             float* probs) {
  const float top = FoldMax(logits, num_actions);
  XlaExpRow(logits, top, probs, num_actions);
  const float inverse = 1.0f / XlaRowSum(probs, num_actions);
  for (int32_t a = 0; a < num_actions; ++a) {
    probs[a] = NanMax(probs[a] * inverse,
                            std::numeric_limits<float>::min());
  }
}

// The rest of mctx.qtransform_completed_by_mix_value, before its last
// product: the completed q-values rescaled to [0, 1] go to `scaled`, and the
// factor `(maxvisit_init + max n) * value_scale` is returned (the callers
// multiply, fusing as XLA does).  `probs`: the node's `GumbelPriorProbs`
// (the logits are fixed, so the descent keeps them per node).  `*sum_visits`
// gets N.
inline float GumbelScaledQ(const GumbelNode& node, int32_t num_actions,
                           float raw, const MixValue& mix,
                           const float* __restrict probs,
                           float* __restrict scaled, float* __restrict work,
                           int32_t* sum_visits) {
  // Local, non-aliased views, so that the loops vectorize; each loop
  // computes every element and selects (no conditional arithmetic).
  const float* __restrict q = node.q;
  const int32_t* __restrict visits = node.visits;
  int32_t total_visits = 0, max_visits = std::numeric_limits<int32_t>::min();
  for (int32_t a = 0; a < num_actions; ++a) {
    total_visits += visits[a];
    max_visits = std::max(max_visits, visits[a]);
  }
  for (int32_t a = 0; a < num_actions; ++a) {
    work[a] = visits[a] > 0 ? probs[a] : 0.0f;
  }
  const float visited_probs = XlaRowSum(work, num_actions);
  for (int32_t a = 0; a < num_actions; ++a) {
    const float weighted = probs[a] * q[a] / visited_probs;
    work[a] = visits[a] > 0 ? weighted : 0.0f;
  }
  const float value = MulAdd(static_cast<float>(total_visits),
                             XlaRowSum(work, num_actions), raw) /
                      static_cast<float>(total_visits + 1);
  for (int32_t a = 0; a < num_actions; ++a) {
    scaled[a] = visits[a] > 0 ? q[a] : value;
  }
  const float lo = FoldMin(scaled, num_actions);
  const float hi = FoldMax(scaled, num_actions);
  const float rescale = 1.0f / NanMax(hi - lo, kQEpsilon);
  for (int32_t a = 0; a < num_actions; ++a) {
    scaled[a] = (scaled[a] - lo) * rescale;
  }
  *sum_visits = total_visits;
  return (static_cast<float>(max_visits) + mix.maxvisit_init) *
         mix.value_scale;
}

// `PlusCompletedQ` over a row (`legal` is tested once, so that the
// unmasked loop vectorizes).
inline void PlusCompletedQRow(const float* base, float visit_scale,
                              const float* scaled, const bool* legal,
                              float masked_score, int32_t num_actions,
                              float* out) {
  if (legal == nullptr) {
    for (int32_t a = 0; a < num_actions; ++a) {
      out[a] = PlusCompletedQ(base[a], visit_scale, scaled[a], nullptr, a,
                              masked_score);
    }
  } else {
    for (int32_t a = 0; a < num_actions; ++a) {
      out[a] = PlusCompletedQ(base[a], visit_scale, scaled[a], legal, a,
                              masked_score);
    }
  }
}

inline void GumbelScores(const GumbelNode& node, int32_t num_actions,
                         float raw, const MixValue& mix, const bool* legal,
                         const float* probs, float* completed, float* work,
                         float* scores) {
  int32_t sum_visits;
  const float visit_scale = GumbelScaledQ(node, num_actions, raw, mix, probs,
                                          completed, work, &sum_visits);
  PlusCompletedQRow(node.logit, visit_scale, completed, legal,
                    mix.masked_score, num_actions, scores);
  const float top = FoldMax(scores, num_actions);
  XlaExpRow(scores, top, scores, num_actions);
  const float improved = 1.0f / XlaRowSum(scores, num_actions);
  const float visit_share = 1.0f / static_cast<float>(sum_visits + 1);
  for (int32_t a = 0; a < num_actions; ++a) {
    // probs - n / (1 + N): the first product fused into the difference.
    scores[a] = MulAdd(scores[a], improved,
                       -(static_cast<float>(node.visits[a]) * visit_share));
  }
}

// Gumbel MuZero's root scores (mctx.gumbel_muzero_root_action_selection:
// Sequential Halving's `score_considered`, then the invalid actions masked):
//   max(-1e9, gumbel + (logits - max logits) + q') + (n == considered ? 0 : -inf)
// with q' as in `GumbelScores`; `invalid`: the root's invalid actions.
inline void GumbelRootScores(const GumbelNode& node, int32_t num_actions,
                             float raw, const MixValue& mix, const bool* legal,
                             const float* probs, const float* gumbel,
                             const bool* invalid, int32_t considered_visit,
                             float* completed, float* work, float* scores) {
  int32_t sum_visits;
  const float visit_scale = GumbelScaledQ(node, num_actions, raw, mix, probs,
                                          completed, work, &sum_visits);
  const float top = FoldMax(node.logit, num_actions);
  for (int32_t a = 0; a < num_actions; ++a) {
    work[a] = gumbel[a] + (node.logit[a] - top);
  }
  PlusCompletedQRow(work, visit_scale, completed, legal, mix.masked_score,
                    num_actions, scores);
  for (int32_t a = 0; a < num_actions; ++a) {
    scores[a] = GumbelRootScore(scores[a], node.visits[a], considered_visit,
                                invalid[a]);
  }
}

// A root row's Sequential Halving inputs: its Gumbel noise and invalid
// actions (rows of `num_actions`) and the considered visit count.
struct GumbelRootInputs {
  const float* gumbel;
  const bool* invalid;
  int32_t considered_visit;
};

// One node's prior probabilities (`GumbelPriorProbs`) and scores
// (`GumbelScores`, or with `root` `GumbelRootScores`), by the short-row code
// from `row` (an accessor of the node) where `node` is null, else by the
// wide-row code from `node` (the same node's contiguous rows).
template <typename Row>
inline void GumbelNodePriorProbs(const Row& row, const GumbelNode* node,
                                 int32_t num_actions, float* probs) {
  if (node == nullptr) {
    short_rows::GumbelPriorProbs(row, num_actions, probs);
  } else {
    GumbelPriorProbs(node->logit, num_actions, probs);
  }
}

template <typename Row>
inline void GumbelNodeScores(const Row& row, const GumbelNode* node,
                             int32_t num_actions, float raw,
                             const MixValue& mix, const bool* legal,
                             const float* probs, const GumbelRootInputs* root,
                             float* completed, float* work, float* scores) {
  if (node == nullptr && root != nullptr) {
    short_rows::GumbelRootScores(row, num_actions, raw, mix, legal, probs,
                                 root->gumbel, root->invalid,
                                 root->considered_visit, completed, scores);
  } else if (node == nullptr) {
    short_rows::GumbelScores(row, num_actions, raw, mix, legal, probs,
                             completed, scores);
  } else if (root != nullptr) {
    GumbelRootScores(*node, num_actions, raw, mix, legal, probs, root->gumbel,
                     root->invalid, root->considered_visit, completed, work,
                     scores);
  } else {
    GumbelScores(*node, num_actions, raw, mix, legal, probs, completed, work,
                 scores);
  }
}

// Gumbel MuZero's selection at narrow nodes.  Most interior selections of a
// Gumbel search happen at nodes with few visited children (benchmark MLP,
// 64 actions, B = 256, S = 256: at least 70% at nodes with one, 92% with up
// to eight, 98% with up to sixteen; Gumbel's paths go down the same child
// again and again).  There an
// unvisited child's completed q-value is the node's mixed value, the same
// for all of them, so they rank by prior logit, and the argmax of
// `softmax(logits + q') - n / (1 + N)` is among the visited children and
// the unvisited one of highest logit.  Those candidates' terms are computed
// with the full code's operations (the same bits): the sums over visited
// children (XLA's window order, their zeros left out: adding +0 changes no
// sum here), the min and max of the completed q-values, the logits plus q',
// their maximum and `exp`.  One term is not: the softmax's denominator sums
// `exp` over every action in XLA's order.  It is bounded instead, from the
// node's sum of `exp(logit - max logit)` kept in its row, and the decision
// stands only where the best candidate's lowest possible score beats every
// other's highest (the bounds cover the float rounding of every step, and
// a margin of 8 ulps for XLA's `exp`, measured at 1.41 ulps); else, and
// wherever a value is not finite, the full row is scored
// (`NarrowGumbelSelect` returns -1).  A node's row (`GumbelRow`, 16 words,
// one cache line) names its visited children (up to `kSlots`; a node with
// more is wide and always scored in full) and its four unvisited ones of
// highest logit.  The expansion builds a new node's row from its logits
// (`BuildNew`), and the descent keeps it, as MuZero's keeps its selection
// cache: a node's children are visited only on a descent through it.  A
// root's row (Sequential Halving's roots) is built at its first selection,
// and decides the root's selections too (`NarrowRootSelect`).
struct GumbelRow {
  static constexpr int32_t kWords = 16;
  static constexpr int32_t kSlots = 16;  // visited children a row names
  static constexpr int32_t kListed = 4;  // unvisited children it ranks
  // Actions are stored plus one in a byte.
  static constexpr int32_t kMaxActions = 254;
  // kEmpty: not built; kReady; kWide: scored in full from now on (more than
  // `kSlots` visited children, or a logit that is not finite); kRescan: as
  // kReady, but fewer unvisited children are listed than a decision needs:
  // the next selection scores the row in full and lists them again.
  enum : uint32_t { kEmpty = 0, kReady = 1, kWide = 2, kRescan = 3 };
  // Layout: [0] state | visited count << 8 | listed count << 16;
  // [1], [2], [14], [15] the visited children (increasing, a byte each, plus
  // one); [3] the listed unvisited ones (best first: highest logit; a byte
  // each, plus one); [4] to [7] their logits; [8] the maximum logit as
  // `GumbelPriorProbs` takes it; [9] its `1 / sum(exp(logit - maximum))`;
  // [10] the largest |logit|; [11] a root's noise and valid actions
  // (`GumbelSelector::NarrowRoot`); [12], [13] the sum of those exps (as
  // XLA computes them) in double precision.
  enum { kHeader = 0, kVisitedAt = 1, kListedAt = 3, kListedLogits = 4,
         kTop = 8, kInverse = 9, kLargest = 10, kRootInputs = 11, kSum = 12,
         kMoreVisitedAt = 14 };
  // The word of visited child `i`'s byte: words 1, 2, then 14, 15.
  static constexpr int32_t VisitedWord(int32_t i) {
    return i < 8 ? kVisitedAt + i / 4 : kMoreVisitedAt + (i - 8) / 4;
  }

  static uint32_t State(const uint32_t* c) { return c[kHeader] & 0xFFu; }
  static int32_t Visited(const uint32_t* c) {
    return static_cast<int32_t>((c[kHeader] >> 8) & 0xFFu);
  }
  static int32_t Listed(const uint32_t* c) {
    return static_cast<int32_t>((c[kHeader] >> 16) & 0xFFu);
  }
  static void SetHeader(uint32_t* c, uint32_t state, int32_t visited,
                        int32_t listed) {
    c[kHeader] = state | static_cast<uint32_t>(visited) << 8 |
                 static_cast<uint32_t>(listed) << 16;
  }
  static int32_t Byte(const uint32_t* c, int32_t word, int32_t i) {
    return static_cast<int32_t>((c[word + i / 4] >> (8 * (i % 4))) & 0xFFu) -
           1;
  }
  static void SetByte(uint32_t* c, int32_t word, int32_t i, int32_t action) {
    uint32_t& w = c[word + i / 4];
    const int shift = 8 * (i % 4);
    w = (w & ~(0xFFu << shift)) | static_cast<uint32_t>(action + 1) << shift;
  }
  static int32_t VisitedAction(const uint32_t* c, int32_t i) {
    return Byte(c, VisitedWord(i), i % 4);
  }
  static void SetVisitedAction(uint32_t* c, int32_t i, int32_t action) {
    SetByte(c, VisitedWord(i), i % 4, action);
  }
  static int32_t ListedAction(const uint32_t* c, int32_t i) {
    return Byte(c, kListedAt, i);
  }
  static double Sum(const uint32_t* c) {
    double s;
    std::memcpy(&s, c + kSum, sizeof s);
    return s;
  }
  // Whether a decision can be tried: ready, with the best unvisited child
  // listed, and the second where there is one.
  static bool Usable(const uint32_t* c, int32_t num_actions) {
    return State(c) == kReady &&
           Listed(c) >= std::min(num_actions - Visited(c), 2) &&
           Listed(c) >= 1;
  }

  // Lists the unvisited children of highest logit (`logits`: the node's,
  // a row of `num_actions`, finite; `work`: a scratch row as long), and
  // marks the row ready.  Four passes of a maximum and the first index at
  // it, the visited children and those listed already at -inf (one pass
  // keeping a sorted list, branched on every action, took 870 cycles per
  // row at 64 actions; with AVX-512 and up to 64 actions, in registers,
  // this takes about 100).
  static void RankLogits(const float* logits, int32_t num_actions,
                         float* work, uint32_t* c) {
    const float minus_inf = -std::numeric_limits<float>::infinity();
    const int32_t visited = Visited(c);
    c[kListedAt] = 0;
    int32_t listed = 0;
#if defined(__AVX512F__)
    if (num_actions <= 64) {
      // The row in four registers.
      uint64_t gone = 0;
      for (int32_t i = 0; i < visited; ++i) {
        gone |= uint64_t{1} << VisitedAction(c, i);
      }
      __m512 v[4];
      LoadRow64(logits, num_actions, gone, v);
      int32_t best[kListed];
      listed = LargestOf64(v, kListed, best);
      for (int32_t i = 0; i < listed; ++i) {
        SetByte(c, kListedAt, i, best[i]);
        c[kListedLogits + i] = BitCast<uint32_t>(logits[best[i]]);
      }
      SetHeader(c, kReady, visited, listed);
      return;
    }
#endif
    std::memcpy(work, logits, sizeof(float) * num_actions);
    for (int32_t i = 0; i < visited; ++i) work[VisitedAction(c, i)] = minus_inf;
#if defined(__AVX512F__)
    // The same passes, a maximum over 16 lanes at a time.
    const int32_t vectors = (num_actions + 15) / 16;
    for (; listed < kListed; ++listed) {
      __m512 top_v = _mm512_set1_ps(minus_inf);
      for (int32_t v = 0; v < vectors; ++v) {
        const __mmask16 in = static_cast<__mmask16>(
            num_actions - 16 * v >= 16 ? 0xFFFFu
                                       : (1u << (num_actions - 16 * v)) - 1u);
        top_v = _mm512_max_ps(
            top_v, _mm512_mask_loadu_ps(_mm512_set1_ps(minus_inf), in,
                                        work + 16 * v));
      }
      const float top = _mm512_reduce_max_ps(top_v);
      if (!(top > minus_inf)) break;
      int32_t best = 0;
      for (int32_t v = 0; v < vectors; ++v) {
        const __mmask16 in = static_cast<__mmask16>(
            num_actions - 16 * v >= 16 ? 0xFFFFu
                                       : (1u << (num_actions - 16 * v)) - 1u);
        const __mmask16 at = _mm512_mask_cmp_ps_mask(
            in, _mm512_loadu_ps(work + 16 * v), _mm512_set1_ps(top),
            _CMP_EQ_OQ);
        if (at != 0) {
          best = 16 * v + __builtin_ctz(at);
          break;
        }
      }
      SetByte(c, kListedAt, listed, best);
      c[kListedLogits + listed] = BitCast<uint32_t>(logits[best]);
      work[best] = minus_inf;
    }
#else
    for (; listed < kListed; ++listed) {
      const float top = FoldMax(work, num_actions);
      if (!(top > minus_inf)) break;  // every child listed or visited
      int32_t best = 0;
      while (!(work[best] == top)) ++best;
      SetByte(c, kListedAt, listed, best);
      c[kListedLogits + listed] = BitCast<uint32_t>(logits[best]);
      work[best] = minus_inf;
    }
#endif
    SetHeader(c, kReady, visited, listed);
  }

  // `RankLogits` from the node's record `rec` (`scratch`: two rows).
  static void Rank(const int32_t* rec, int32_t num_actions, float* scratch,
                   uint32_t* c) {
    for (int32_t a = 0; a < num_actions; ++a) {
      scratch[a] = AsFloat(rec[a * kEdgeFields + kLogit]);
    }
    RankLogits(scratch, num_actions, scratch + num_actions, c);
  }

  // Builds the row of a node scored in full for the first time, `chosen`
  // counted visited (`scratch`: two rows of `num_actions`).
  static void Build(const int32_t* rec, int32_t num_actions, int32_t chosen,
                    float* scratch, uint32_t* c) {
    std::fill(c, c + kWords, 0u);
    float* logits = scratch;
    int32_t visited = 0;
    for (int32_t a = 0; a < num_actions; ++a) {
      logits[a] = AsFloat(rec[a * kEdgeFields + kLogit]);
      if (rec[a * kEdgeFields + kVisits] > 0 || a == chosen) {
        if (visited < kSlots) SetVisitedAction(c, visited, a);
        ++visited;
      }
    }
    if (visited > kSlots) {
      SetHeader(c, kWide, 0, 0);
      return;
    }
    SetHeader(c, kEmpty, visited, 0);
    Finish(logits, num_actions, scratch + num_actions, c);
  }

  // `Build` for a node without visited children, from its logits (a row of
  // `num_actions`; `scratch`: one row).
  static void BuildNew(const float* logits, int32_t num_actions,
                       float* scratch, uint32_t* c) {
    std::fill(c, c + kWords, 0u);
    Finish(logits, num_actions, scratch, c);
  }

  // The rest of a row whose visited children are set, from the node's
  // logits (`exps`: a scratch row).
  static void Finish(const float* logits, int32_t num_actions, float* exps,
                     uint32_t* c) {
    bool finite = num_actions <= kMaxActions;
    float largest = 0.0f;
    for (int32_t a = 0; a < num_actions; ++a) {
      finite &= std::isfinite(logits[a]);
      const float size = std::fabs(logits[a]);
      largest = size > largest ? size : largest;
    }
    if (!finite) {
      SetHeader(c, kWide, 0, 0);
      return;
    }
    // As `GumbelPriorProbs`.
    const float top = FoldMax(logits, num_actions);
    XlaExpRow(logits, top, exps, num_actions);
    const float inverse = 1.0f / XlaRowSum(exps, num_actions);
    // Their sum in doubles (in any order: within 4 n 2^-53 of it), in four
    // chains.
    double sums[4] = {0.0, 0.0, 0.0, 0.0};
    int32_t a = 0;
    for (; a + 4 <= num_actions; a += 4) {
      for (int j = 0; j < 4; ++j) sums[j] += exps[a + j];
    }
    for (; a < num_actions; ++a) sums[0] += exps[a];
    const double sum = (sums[0] + sums[1]) + (sums[2] + sums[3]);
    c[kTop] = BitCast<uint32_t>(top);
    c[kInverse] = BitCast<uint32_t>(inverse);
    c[kLargest] = BitCast<uint32_t>(largest);
    std::memcpy(c + kSum, &sum, sizeof sum);
    RankLogits(logits, num_actions, exps, c);
  }

  // After a selection that scored the whole row at node record `rec`
  // chose `action`: builds the row if it was not, else counts the action
  // (`Visit`) and, where the row asked for it, lists the unvisited
  // children again (the record was just read; `scratch`: two rows).
  static void Scored(const int32_t* rec, int32_t num_actions, int32_t action,
                     float* scratch, uint32_t* c) {
    const uint32_t state = State(c);
    if (state == kEmpty) {
      Build(rec, num_actions, action, scratch, c);
      return;
    }
    Visit(num_actions, action, c);
    if (state == kRescan && State(c) != kWide) {
      Rank(rec, num_actions, scratch, c);
    }
  }

  // Counts `action` visited (the descent chose it).
  static void Visit(int32_t num_actions, int32_t action, uint32_t* c) {
    const uint32_t state = State(c);
    if (state != kReady && state != kRescan) return;
    int32_t visited = Visited(c), listed = Listed(c);
    int32_t at = 0;
    for (; at < visited; ++at) {
      const int32_t a = VisitedAction(c, at);
      if (a == action) return;
      if (a > action) break;
    }
    if (visited == kSlots) {
      SetHeader(c, kWide, 0, 0);
      return;
    }
    for (int32_t i = visited; i > at; --i) {
      SetVisitedAction(c, i, VisitedAction(c, i - 1));
    }
    SetVisitedAction(c, at, action);
    ++visited;
    for (int32_t i = 0; i < listed; ++i) {
      if (ListedAction(c, i) != action) continue;
      for (int32_t j = i; j + 1 < listed; ++j) {
        SetByte(c, kListedAt, j, ListedAction(c, j + 1));
        c[kListedLogits + j] = c[kListedLogits + j + 1];
      }
      --listed;
      SetByte(c, kListedAt, listed, -1);
      break;
    }
    const bool enough = listed >= std::min(num_actions - visited, 2);
    SetHeader(c, enough ? state : kRescan, visited, listed);
  }
};

// The group of action `a` in `XlaRowSum`'s order over a row of `n`: its
// window (windows are summed from 0 in order, then added in order).
inline int32_t XlaSumWindow(int32_t a, int32_t n) {
  constexpr int32_t kWindow = 32;
  if (n <= kWindow) return 0;
  const int32_t first = kWindow - (kWindow - n % kWindow) % kWindow / 2;
  return a < first ? 0 : 1 + (a - first) / kWindow;
}

// `XlaRowSum` of a row that is zero (+0) but at actions `actions[0, k)`
// (increasing), where it is `v[i]`: the same bits, since adding +0 to a sum
// that is never -0 (it starts at +0) changes nothing.
inline float SparseXlaRowSum(const int32_t* actions, const float* v, int32_t k,
                             int32_t n) {
  float total = 0.0f, sum = 0.0f;
  int32_t window = -1;
  for (int32_t i = 0; i < k; ++i) {
    const int32_t w = XlaSumWindow(actions[i], n);
    if (w != window) {
      if (window >= 0) total = total + sum;
      sum = 0.0f;
      window = w;
    }
    sum = sum + v[i];
  }
  return window >= 0 ? total + sum : total;
}

// What a narrow node's row gives of `GumbelScaledQ` (its visited
// children, at most `GumbelRow::kSlots`, in increasing order; at least one
// unvisited child), with the full code's operations: `Load` reads the
// visited children's edges from the record `rec`, then computes the mixed
// value (sparse sums in XLA's window order), the completed q-values' min
// and max (a zero extreme settled as `FoldMin` / `FoldMax` settle it),
// the rescaling and the visit scale; false where a value is not finite or
// a visited child has no visits.
struct NarrowChildren {
  int32_t k = 0, total = 0, most = 0;
  int32_t actions[GumbelRow::kSlots], visits[GumbelRow::kSlots];
  float logit[GumbelRow::kSlots], q[GumbelRow::kSlots];
  float prior_exp[GumbelRow::kSlots];  // exp(logit - top0), as XLA's
  float top0 = 0.0f, value = 0.0f, lo = 0.0f, rescale = 0.0f;
  float visit_scale = 0.0f;

  bool Load(const int32_t* rec, const uint32_t* c, int32_t num_actions,
            float raw, const MixValue& mix) {
    using R = GumbelRow;
    k = R::Visited(c);
    top0 = AsFloat(static_cast<int32_t>(c[R::kTop]));
    const float inverse0 = AsFloat(static_cast<int32_t>(c[R::kInverse]));
    float probs[R::kSlots], terms[R::kSlots];
#if defined(__AVX512F__) && defined(__FMA__)
    if (k >= kLanesFrom) {
      return LoadLanes(rec, c, num_actions, raw, mix, inverse0, probs, terms);
    }
#endif
    for (int32_t i = 0; i < k; ++i) {
      const int32_t a = R::VisitedAction(c, i);
      const int32_t* e = rec + a * kEdgeFields;
      actions[i] = a;
      visits[i] = e[kVisits];
      if (visits[i] <= 0) return false;
      logit[i] = AsFloat(e[kLogit]);
      q[i] = MulAdd(AsFloat(e[kDiscount]), AsFloat(e[kValue]),
                    AsFloat(e[kReward]));
      // `GumbelPriorProbs`' value for this child.
      prior_exp[i] = XlaExp(logit[i] - top0);
      probs[i] = NanMax(prior_exp[i] * inverse0,
                        std::numeric_limits<float>::min());
      total += visits[i];
      most = std::max(most, visits[i]);
    }
    const float visited_probs =
        SparseXlaRowSum(actions, probs, k, num_actions);
    for (int32_t i = 0; i < k; ++i) {
      terms[i] = probs[i] * q[i] / visited_probs;
    }
    value = MulAdd(static_cast<float>(total),
                   SparseXlaRowSum(actions, terms, k, num_actions), raw) /
            static_cast<float>(total + 1);
    // The completed q-values: the visited children's q and the unvisited
    // ones' `value`.
    lo = value;
    float hi = value;
    bool nan = value != value, minus_zero = AsBits(value) == AsBits(-0.0f),
         plus_zero = AsBits(value) == 0;
    for (int32_t i = 0; i < k; ++i) {
      nan |= q[i] != q[i];
      minus_zero |= AsBits(q[i]) == AsBits(-0.0f);
      plus_zero |= AsBits(q[i]) == 0;
      lo = q[i] < lo ? q[i] : lo;
      hi = q[i] > hi ? q[i] : hi;
    }
    if (nan) return false;
    return Finish(lo, hi, minus_zero, plus_zero, mix);
  }

 private:
  // The scaling, from the completed q-values' min and max (`low`, `high`)
  // and whether any of them is -0 or +0 (a zero extreme's sign).
  bool Finish(float low, float high, bool minus_zero, bool plus_zero,
              const MixValue& mix) {
    lo = low == 0.0f ? (minus_zero ? -0.0f : 0.0f) : low;
    const float hi = high == 0.0f ? (plus_zero ? 0.0f : -0.0f) : high;
    rescale = 1.0f / NanMax(hi - lo, kQEpsilon);
    visit_scale =
        (static_cast<float>(most) + mix.maxvisit_init) * mix.value_scale;
    return true;
  }

#if defined(__AVX512F__) && defined(__FMA__)
  // From this many visited children, `Load` runs them in the lanes of one
  // AVX-512 vector (`LoadLanes`).  Sequential Halving's roots have up to
  // 16 (its considered actions), and every simulation selects at every
  // root: the scalar loop took 750 TSC cycles per narrow root (Gumbel, 64
  // actions, B = 256, S = 256 on an AMD EPYC; 475 with its lines already in
  // cache), the lanes 515 (315).  Below it, as at most interior nodes (one
  // or two visited children), the gathers cost more than the loop.
  static constexpr int32_t kLanesFrom = 4;

  // `Load`'s loop with the children in lanes: the same operations per
  // child (fused multiply-adds, XLA's `exp`, the products and quotients)
  // and the same sparse sums (scalar, in XLA's window order), so the same
  // values.  A NaN anywhere makes the scalar code's mixed value NaN: false.
  bool LoadLanes(const int32_t* rec, const uint32_t* c, int32_t num_actions,
                 float raw, const MixValue& mix, float inverse0, float* probs,
                 float* terms) {
    using R = GumbelRow;
    static_assert(R::kSlots == 16, "the visited children in one vector");
    const __mmask16 m =
        static_cast<__mmask16>(k >= 16 ? 0xFFFFu : (1u << k) - 1u);
    const __m512i zero = _mm512_setzero_si512();
    // The visited children's actions: the bytes of words 1, 2, 14 and 15.
    const __m512i action = _mm512_sub_epi32(
        _mm512_cvtepu8_epi32(_mm_setr_epi32(
            static_cast<int32_t>(c[R::VisitedWord(0)]),
            static_cast<int32_t>(c[R::VisitedWord(4)]),
            static_cast<int32_t>(c[R::VisitedWord(8)]),
            static_cast<int32_t>(c[R::VisitedWord(12)]))),
        _mm512_set1_epi32(1));
    const __m512i edge =
        _mm512_mullo_epi32(action, _mm512_set1_epi32(kEdgeFields));
    auto field = [&](int f) {
      return _mm512_mask_i32gather_epi32(
          zero, m, _mm512_add_epi32(edge, _mm512_set1_epi32(f)), rec, 4);
    };
    const __m512i n = field(kVisits);
    if ((m & _mm512_cmple_epi32_mask(n, zero)) != 0) return false;
    const __m512 x = _mm512_castsi512_ps(field(kLogit));
    const __m512 qs = _mm512_fmadd_ps(_mm512_castsi512_ps(field(kDiscount)),
                                      _mm512_castsi512_ps(field(kValue)),
                                      _mm512_castsi512_ps(field(kReward)));
    const __m512 centred = _mm512_sub_ps(x, _mm512_set1_ps(top0));
    if ((m & (_mm512_cmp_ps_mask(centred, centred, _CMP_UNORD_Q) |
              _mm512_cmp_ps_mask(qs, qs, _CMP_UNORD_Q))) != 0) {
      return false;
    }
    const __m512 e = XlaExpLanes(centred);
    const __m512 p = _mm512_max_ps(
        _mm512_mul_ps(e, _mm512_set1_ps(inverse0)),
        _mm512_set1_ps(std::numeric_limits<float>::min()));
    _mm512_storeu_si512(actions, action);
    _mm512_storeu_si512(visits, n);
    _mm512_storeu_ps(logit, x);
    _mm512_storeu_ps(q, qs);
    _mm512_storeu_ps(prior_exp, e);
    _mm512_storeu_ps(probs, p);
    total = _mm512_mask_reduce_add_epi32(m, n);
    most = _mm512_mask_reduce_max_epi32(m, n);
    const float visited_probs = SparseXlaRowSum(actions, probs, k, num_actions);
    _mm512_storeu_ps(terms, _mm512_div_ps(_mm512_mul_ps(p, qs),
                                          _mm512_set1_ps(visited_probs)));
    value = MulAdd(static_cast<float>(total),
                   SparseXlaRowSum(actions, terms, k, num_actions), raw) /
            static_cast<float>(total + 1);
    if (value != value) return false;
    auto any = [&](uint32_t bits) {
      return AsBits(value) == static_cast<int32_t>(bits) ||
             (m & _mm512_cmpeq_epi32_mask(
                      _mm512_castps_si512(qs),
                      _mm512_set1_epi32(static_cast<int32_t>(bits)))) != 0;
    };
    // The min and max as the loop's (which differ at most in a zero's
    // sign, settled by `Finish`).
    return Finish(std::min(value, _mm512_mask_reduce_min_ps(m, qs)),
                  std::max(value, _mm512_mask_reduce_max_ps(m, qs)),
                  any(0x80000000u), any(0u), mix);
  }
#endif
};

// `GumbelScores` then `ArgmaxRow` at a narrow node (no legal-move mask, at
// least one unvisited child), from its record `rec`, its row `c` and its
// raw value: the action, or -1 where the row cannot tell (see `GumbelRow`).
inline int32_t NarrowGumbelSelect(const int32_t* rec, const uint32_t* c,
                                  int32_t num_actions, float raw,
                                  const MixValue& mix) {
  using R = GumbelRow;
  if (!R::Usable(c, num_actions)) return -1;
  NarrowChildren node;
  if (!node.Load(rec, c, num_actions, raw, mix)) return -1;
  const int32_t k = node.k, total = node.total;
  const int32_t unvisited = num_actions - k;
  const int32_t* actions = node.actions;
  const int32_t* visits = node.visits;
  const float* logit = node.logit;
  const float* q = node.q;
  const float* prior_exp = node.prior_exp;
  const float top0 = node.top0, value = node.value, lo = node.lo;
  const float rescale = node.rescale, visit_scale = node.visit_scale;
  bool nan = false;
  // logits + q' (`GumbelScores`): the visited children's, the two best
  // unvisited ones'.
  float work[R::kSlots];
  for (int32_t i = 0; i < k; ++i) {
    work[i] = MulAdd(visit_scale, (q[i] - lo) * rescale, logit[i]);
  }
  const float unvisited_q = (value - lo) * rescale;
  const float best_logit = AsFloat(static_cast<int32_t>(c[R::kListedLogits]));
  const float best = MulAdd(visit_scale, unvisited_q, best_logit);
  const bool others = unvisited >= 2;
  const float second =
      others ? MulAdd(visit_scale, unvisited_q,
                      AsFloat(static_cast<int32_t>(c[R::kListedLogits + 1])))
             : 0.0f;
  // Every other unvisited child's term is at most `second`'s: a tie with
  // the best one is left to the full row.
  if (others && !(second < best)) return -1;
  float top = best;
  for (int32_t i = 0; i < k; ++i) {
    nan |= work[i] != work[i];
    top = work[i] > top ? work[i] : top;
  }
  if (nan || best != best || !std::isfinite(top) || top == 0.0f) return -1;
  float exps[R::kSlots];
  double known = 0.0, taken = XlaExp(best_logit - top0);
  for (int32_t i = 0; i < k; ++i) {
    exps[i] = XlaExp(work[i] - top);
    known += exps[i];
    taken += prior_exp[i];
  }
  const float best_exp = XlaExp(best - top);
  known += best_exp;
  // Bounds on the softmax's denominator Z, the float sum of every action's
  // exp: `known` (the candidates') plus the rest of the unvisited children,
  // Z_rest = sum XlaExp(fl(fl(visit_scale * unvisited_q + logit) - top)).
  // With g = visit_scale * unvisited_q - top + top0, each of those is
  // exp(logit - top0 + g) within the rounding of the two operations and
  // XLA's exp; and the row's sum less the candidates' prior exps is
  // sum exp(logit - top0) over the rest within those of the prior exps.
  constexpr double kUlp = 0x1p-24;
  constexpr double kExp = 8 * kUlp;   // XLA's exp (measured: 1.41 ulps)
  constexpr double kTiny = 2e-38;     // its absolute error near underflow
  const double largest = AsFloat(static_cast<int32_t>(c[R::kLargest]));
  const double shift = static_cast<double>(visit_scale) * unvisited_q;
  const int32_t rest = unvisited - 1;
  double rest_lo = 0.0, rest_hi = 0.0;
  if (rest > 0) {
    const double sum = R::Sum(c);
    // The row's sum and `taken` are sums of floats in double precision.
    const double slack = 4.0 * num_actions * 0x1p-53 * sum;
    const double prior_lo = std::max(0.0, sum - taken - slack);
    const double prior_hi = sum - taken + slack;
    // Relative error of a prior exp (argument |logit - top0| <= 2 largest).
    const double prior_err = 2.0 * largest * kUlp + kExp;
    // Relative error of a rest term (arguments below |shift| + largest and
    // |shift| + largest + |top|).
    const double rest_err =
        (2.0 * (std::fabs(shift) + largest) + std::fabs(top)) * kUlp * 1.01 +
        kExp;
    if (prior_err > 1e-3 || rest_err > 1e-3) return -1;
    const double g = shift - top + top0;
    const double scale = std::exp(g);
    if (!std::isfinite(scale)) return -1;
    rest_lo = std::max(0.0, scale * prior_lo / (1.0 + prior_err) *
                                (1.0 - rest_err) * (1.0 - 1e-12) -
                            rest * kTiny);
    rest_hi = (scale * (prior_hi / (1.0 - prior_err) + rest * kTiny) *
                   (1.0 + rest_err) + rest * kTiny) *
              (1.0 + 1e-12);
  }
  // XLA's float sum of `num_actions` positive terms.
  const double gamma = num_actions * kUlp * 1.01 + 1e-12;
  const double z_lo = (known + rest_lo) * (1.0 - gamma);
  const double z_hi = (known + rest_hi) * (1.0 + gamma);
  const float zf_lo = std::nextafter(static_cast<float>(z_lo), 0.0f);
  const float zf_hi = std::nextafter(static_cast<float>(z_hi),
                                     std::numeric_limits<float>::infinity());
  if (!(zf_lo > 0.0f) || !std::isfinite(zf_hi)) return -1;
  // `improved` = 1 / Z lies in [1 / zf_hi, 1 / zf_lo] (division rounds
  // monotonically), and each score MulAdd(exp, improved, -share) is
  // monotone in it.
  const float improved_lo = 1.0f / zf_hi, improved_hi = 1.0f / zf_lo;
  const float visit_share = 1.0f / static_cast<float>(total + 1);
  // The candidates' score bounds: the visited children, then the best
  // unvisited child (no visits: its share is -(0 * visit_share) = -0).
  float lo_score[R::kSlots + 1], hi_score[R::kSlots + 1];
  int32_t candidate[R::kSlots + 1];
  for (int32_t i = 0; i <= k; ++i) {
    const float x = i < k ? exps[i] : best_exp;
    const float share =
        i < k ? static_cast<float>(visits[i]) * visit_share : 0.0f;
    lo_score[i] = MulAdd(x, improved_lo, -share);
    hi_score[i] = MulAdd(x, improved_hi, -share);
    candidate[i] = i < k ? actions[i] : R::ListedAction(c, 0);
    nan |= lo_score[i] != lo_score[i] || hi_score[i] != hi_score[i];
  }
  if (nan) return -1;
  int32_t w = 0;
  for (int32_t i = 1; i <= k; ++i) w = lo_score[i] > lo_score[w] ? i : w;
  for (int32_t i = 0; i <= k; ++i) {
    if (i != w && !(lo_score[w] > hi_score[i])) return -1;
  }
  if (others) {
    // The other unvisited children: exps at most `second`'s, within XLA's
    // exp error (the true exp is monotone).
    const float rest_exp = std::nextafter(
        static_cast<float>(XlaExp(second - top) * (1.0 + 2.0 * kExp) + kTiny),
        std::numeric_limits<float>::infinity());
    if (!(lo_score[w] > MulAdd(rest_exp, improved_hi, -0.0f))) return -1;
  }
  return candidate[w];
}

// Sequential Halving's root selection (`GumbelRootScores`, then
// `ArgmaxRow`; no legal-move mask) from the root's row, where it names every
// visited child and the considered visit count is positive: every action
// but the valid visited children with that count then scores -inf, and
// those children's scores need only the completed q-values' min and max,
// which the row's children give (`NarrowChildren`).  `gumbel`, `invalid`:
// the root's noise and invalid actions (rows of `num_actions`, the noise
// finite); `considered`: the considered visit count by the root's visit
// total, `table_width` long.  The action, or -1 where the row cannot tell.
inline int32_t NarrowRootSelect(const int32_t* rec, const uint32_t* c,
                                int32_t num_actions, float raw,
                                const MixValue& mix, const float* gumbel,
                                const bool* invalid,
                                const int32_t* considered,
                                int32_t table_width) {
  using R = GumbelRow;
  const uint32_t state = R::State(c);
  if ((state != R::kReady && state != R::kRescan) ||
      R::Visited(c) >= num_actions) {
    return -1;
  }
  NarrowChildren node;
  if (!node.Load(rec, c, num_actions, raw, mix)) return -1;
  if (node.total >= table_width) return -1;
  const int32_t visit = considered[node.total];
  if (visit <= 0) return -1;
  int32_t best = -1;
  float best_score = 0.0f;
  for (int32_t i = 0; i < node.k; ++i) {
    const int32_t a = node.actions[i];
    if (node.visits[i] != visit || invalid[a]) continue;
    // `PlusCompletedQ` then `GumbelRootScore` of a candidate.
    const float with_q =
        MulAdd(node.visit_scale, (node.q[i] - node.lo) * node.rescale,
               gumbel[a] + (node.logit[i] - node.top0));
    const float score = NanMax(-1e9f, with_q) + 0.0f;
    if (score != score) return -1;
    if (best < 0 || score > best_score) {
      best = a;
      best_score = score;
    }
  }
  return best;
}

// Runs `body(begin, end)` (true: success) over `[0, n)` in chunks of
// `chunk`, on the calling thread and on up to `num_threads - 1` tasks of
// XLA's intra-op thread pool.  The caller takes chunks too and waits only
// for chunks that a running worker took, so a busy pool costs time, never a
// deadlock.  A task that starts after the last chunk was taken returns at
// once (the shared state outlives the call).
template <typename Body>
bool ParallelFor(ffi::ThreadPool& pool, int64_t n, int64_t chunk, Body body) {
  const int64_t chunks = (n + chunk - 1) / chunk;
  struct Shared {
    std::atomic<int64_t> next{0}, done{0};
    std::atomic<bool> failed{false};
  };
  auto shared = std::make_shared<Shared>();
  auto work = [shared, chunks, chunk, n, body]() {
    for (;;) {
      const int64_t c = shared->next.fetch_add(1);
      if (c >= chunks) return;
      if (!body(c * chunk, std::min(n, (c + 1) * chunk))) {
        shared->failed.store(true);
      }
      shared->done.fetch_add(1, std::memory_order_release);
    }
  };
  const int64_t helpers = std::min<int64_t>(pool.num_threads(), chunks) - 1;
  for (int64_t i = 0; i < helpers; ++i) pool.Schedule(decltype(work)(work));
  work();
  while (shared->done.load(std::memory_order_acquire) < chunks) {
    std::this_thread::yield();
  }
  return !shared->failed.load();
}

// Examples per chunk of a parallel descent, and the least batch that is
// split over threads: handing chunks to XLA's thread pool costs about 20 us,
// which made B = 64 slower (38 against 19 us per simulation, hidden-256
// benchmark MLP, 9 actions, S = 128) and B = 256 / 1024 faster (47 against
// 73 us, 170 against 345 us).
constexpr int64_t kChunk = 32;
constexpr int64_t kParallelMin = 128;

// Below those batches, `AdaptiveFor`: the first `kProbe` examples on the
// calling thread, then the rest split over the pool in chunks of
// `kSmallChunk` if they are estimated to take longer than `kSplitWorthNs`
// (paths grow with the tree: a MuZero search with 64 actions descends ~90
// levels per simulation at S = 256), else on the calling thread too.
constexpr int64_t kProbe = 8;
constexpr int64_t kSmallChunk = 16;

// `kSplitWorthNs`: 60 us, or `$MCTX_PLANNER_NATIVE_SPLIT_NS` (read once;
// the tests set 0 to run the split code on small batches).
inline int64_t SplitWorthNs() {
  static const int64_t ns = [] {
    const char* v = std::getenv("MCTX_PLANNER_NATIVE_SPLIT_NS");
    return v != nullptr && *v != 0 ? std::atoll(v) : int64_t{60000};
  }();
  return ns;
}

template <typename Body>
bool AdaptiveFor(ffi::ThreadPool& pool, int64_t n, Body body) {
  const auto start = std::chrono::steady_clock::now();
  const int64_t probe = std::min(n, kProbe);
  if (!body(0, probe)) return false;
  if (probe == n) return true;
  const int64_t spent = std::chrono::duration_cast<std::chrono::nanoseconds>(
                            std::chrono::steady_clock::now() - start)
                            .count();
  if (pool.num_threads() < 2 || spent / probe * (n - probe) < SplitWorthNs()) {
    return body(probe, n);
  }
  return ParallelFor(pool, n - probe, kSmallChunk,
                     [&body, probe](int64_t b, int64_t e) {
                       return body(probe + b, probe + e);
                     });
}

// Prefetches node record `at` (all `A` edges) and its statistics.
inline void PrefetchRecord(const int32_t* e, const int32_t* st,
                           int32_t num_actions, int64_t at) {
  const int64_t bytes = static_cast<int64_t>(num_actions) * kEdgeFields * 4;
  const char* p = reinterpret_cast<const char*>(e) + at * bytes;
  for (int64_t off = 0; off < bytes; off += 64) __builtin_prefetch(p + off);
  __builtin_prefetch(st + at * kStatFields);
}

// One example's way down the tree in `DescendRange`.  `key` is the descent's
// key at depth `key_depth`; the key of a deeper level is derived only when
// that level needs its noise (rarely, MuZero only).
struct Path {
  uint32_t key[2];
  int32_t key_depth, node, action, child, depth;
  bool active;
  bool staged;  // `select.Stage` has run at this node (`DescendRange` only)
};

// The descent of examples `[begin, end)`: from the root, `select(path, b,
// at)` picks the action at node record `at` (example `b`, node `path.node`,
// depth `path.depth`; negative: error) until the child is unexpanded or
// `max_depth` is reached, as `_fast_search._descend`.  Writes `(node,
// action, child)` of each example.
//
// `ready(b)`, called before the paths of examples below `b` start, makes
// their trees ready to descend (`NoReady`: they are; the fused expansion
// and descent of `MuzeroExpandDescend` backs them up there).
struct NoReady {
  void operator()(int64_t) const {}
};

// The examples `[next, end)` in order, for `DescendLanes`, each made ready
// by `ready` (as `DescendRange`'s) before it is handed out.
template <typename Ready = NoReady>
struct RangeRows {
  int64_t next, end;
  Ready ready = Ready();

  bool More() const { return next < end; }
  // The next example, or false when none is left.
  bool Next(int64_t* b) {
    if (next >= end) return false;
    ready(next + 1);
    *b = next++;
    return true;
  }
  // The example `i` places after the next one, or -1 (to prefetch).
  int64_t Ahead(int64_t i) const { return next + i < end ? next + i : -1; }
};

template <typename Select, typename Ready = NoReady>
bool DescendRange(int64_t begin, int64_t end, int64_t num_nodes,
                  int32_t num_actions, const int32_t* e, const int32_t* st,
                  const uint32_t* k, int32_t max_depth, Select& select,
                  int32_t* node_o, int32_t* action_o, int32_t* child_o,
                  Ready ready = Ready()) {
  // The examples' paths are independent chains of dependent reads (a node's
  // record gives its child).  `kGroup` of them advance in turns, each one
  // prefetching what its next selection reads (`select.Prefetch`), so that
  // their cache misses overlap.
  constexpr int kGroup = 16;
  auto prefetch = [&](int64_t at, bool root) { select.Prefetch(at, root); };
  for (int64_t b0 = begin; b0 < end; b0 += kGroup) {
    const int group = static_cast<int>(std::min<int64_t>(end - b0, kGroup));
    ready(b0 + group);
    Path path[kGroup];
    for (int i = 0; i < group; ++i) {
      const int64_t b = b0 + i;
      path[i] = k == nullptr ? Path{{0, 0}, 0, 0, 0, -1, 0, true, true}
                             : Path{{k[2 * b], k[2 * b + 1]}, 0, 0, 0, -1, 0,
                                    true, true};
      prefetch(b * num_nodes, true);
    }
    for (int remaining = group; remaining > 0;) {
      for (int i = 0; i < group; ++i) {
        Path& q = path[i];
        if (!q.active) continue;
        const int64_t b = b0 + i;
        const int64_t at = b * num_nodes + q.node;
        if constexpr (Select::kStaged) {
          if (!q.staged) {
            q.staged = true;
            // A second prefetch, of lines known only from the first: the
            // selection waits for the next turn.
            if (select.Stage(q, at)) continue;
          }
        }
        q.action = select(q, b, at);
        if (q.action < 0) return false;
        q.child = e[(at * num_actions + q.action) * kEdgeFields + kChild] - 1;
        if (q.child < 0 || q.depth + 1 >= max_depth) {
          q.active = false;
          --remaining;
          node_o[b] = q.node;
          action_o[b] = q.action;
          child_o[b] = q.child;
          continue;
        }
        q.node = q.child;
        ++q.depth;
        q.staged = false;
        prefetch(b * num_nodes + q.node, false);
      }
    }
  }
  return true;
}

// MuZero's PUCT selection for `DescendRange` (mctx.muzero_action_selection
// with qtransform_by_parent_and_siblings, or the planner's masked version).
// `kCached`: with the selection cache (a separate instantiation, so that
// the code without it stays as lean as before the cache: with 9 actions a
// shared one made searches up to 10% slower); `kMasked`: its rows for
// legal-move masks (`legal` not null).
template <bool kCached, bool kMasked = false>
class PuctSelector {
 public:
  // `cache`: `[B, N, SelectCacheWords(A, kMasked)]`, zeros at the search's
  // start (updated in place), with `kCached`.
  PuctSelector(int32_t num_actions, const int32_t* e, const int32_t* st,
               const bool* inv, const bool* legal, float masked_score,
               const float* sc, int64_t table, uint32_t* cache)
      : num_actions_(num_actions), e_(e), st_(st), inv_(inv), legal_(legal),
        masked_score_(masked_score), sc_(sc), table_(table),
        cache_(cache),
        cache_words_(SelectCacheWords(num_actions, kMasked)),
        lazy_(kCached && !kMasked && cache != nullptr &&
              SpareTags::Kept(kMasked, num_actions)),
        // Scratch rows, rounded up to whole 8-lane vectors.
        scores_((num_actions + 7) / 8 * 8),
        visits_((num_actions + 7) / 8 * 8),
        record_(lazy_ ? num_actions * kEdgeFields : 0) {}

  // Whether `Stage` may ask to wait a turn (see `DescendRange`).
  static constexpr bool kStaged = kCached;

  // With the cache, below the root: the node's statistics and cache row.
  void Prefetch(int64_t at, bool root) {
    if (!kCached || root) {
      PrefetchRecord(e_, st_, num_actions_, at);
      if (kCached) __builtin_prefetch(cache_ + at * cache_words_);
      return;
    }
    __builtin_prefetch(st_ + at * kStatFields);
    __builtin_prefetch(cache_ + at * cache_words_);
  }

  // With the cache, below the root: once the node's cache row is in, the
  // edges of its visited children, or the whole record if the row is not
  // built.  True: wait a turn.
  bool Stage(const Path& q, int64_t at) {
    if (!kCached || q.depth == 0) return false;
    const uint32_t* c = cache_ + at * cache_words_;
    if (c[0] != kCacheReady) {
      PrefetchRecord(e_, st_, num_actions_, at);
      return true;
    }
    const char* rec = reinterpret_cast<const char*>(
        e_ + at * num_actions_ * kEdgeFields);
    constexpr int kEdgeBytes = kEdgeFields * 4;
    auto edge = [&](int32_t a) {
      __builtin_prefetch(rec + a * kEdgeBytes);
      __builtin_prefetch(rec + a * kEdgeBytes + kEdgeBytes - 4);
    };
    ForEachVisited<kMasked>(c, num_actions_, edge);
    return true;
  }

  int32_t operator()(Path& q, int64_t b, int64_t at) {
    const int32_t visits = st_[at * kStatFields + kSVisits];
    if (visits < 0 || visits >= table_) return -1;
    const int32_t* rec = e_ + at * num_actions_ * kEdgeFields;
    const float node_value = AsFloat(st_[at * kStatFields + kSValue]);
    if (!kCached) return FullSelect(q, b, at, rec, node_value, sc_[visits]);
    // A narrow node's visited children's statistics, not its edges (the
    // backup leaves those: `LazyEdges`).
    uint32_t* row = cache_ + at * cache_words_;
    const int32_t* child_st =
        lazy_ && LazyEdges::Narrow(row, num_actions_)
            ? st_ + (at - q.node) * kStatFields
            : nullptr;
    // Below the root, and at a root without invalid actions (the cache
    // does not know them).
    uint32_t* c = q.depth > 0 || RootCached(b) ? row : nullptr;
    if (c != nullptr) {
      const int32_t action = CachedPuctSelect<kMasked>(
          rec, c, num_actions_, node_value, sc_[visits], masked_score_,
          child_st);
      if (action >= 0) {
        CacheVisit<kMasked>(rec, num_actions_, action, c);
        return action;
      }
    }
    int32_t action = FullSelect(
        q, b, at,
        child_st == nullptr
            ? rec
            : ChildStatsRecord(rec, row, child_st, num_actions_,
                               record_.data()),
        node_value, sc_[visits]);
    if (c != nullptr && action >= 0) {
      if (c[0] == kCacheEmpty) {
        CacheBuild<kMasked>(rec, num_actions_,
                            kMasked ? legal_ + at * num_actions_ : nullptr,
                            action, c);
      } else if (c[0] == kCacheReady) {
        CacheVisit<kMasked>(rec, num_actions_, action, c);
      }
    }
    return action;
  }

  // Whether example `b`'s root is scored from its cache row too: without
  // masks, where none of its actions is invalid (mctx masks them at the
  // root only; with none, the root's scores are those of any other node).
  bool RootCached(int64_t b) const {
    if (!kCached || kMasked) return false;
    return inv_ == nullptr ||
           std::memchr(inv_ + b * num_actions_, 1, num_actions_) == nullptr;
  }

  // For `DescendLanes`.
  uint32_t* cache() const { return cache_; }
  const float* scale_table() const { return sc_; }
  int64_t table() const { return table_; }

 private:
  // `PuctSelect` over the whole row, then the noise if it cannot tell.
  int32_t FullSelect(Path& q, int64_t b, int64_t at, const int32_t* rec,
                     float node_value, float scale) {
    int32_t action = PuctSelect(
        rec, num_actions_, node_value, scale,
        q.depth == 0 ? inv_ + b * num_actions_ : nullptr,
        legal_ == nullptr ? nullptr : legal_ + at * num_actions_,
        masked_score_, scores_.data(), visits_.data());
    if (action < 0) {
      for (; q.key_depth < q.depth; ++q.key_depth) {
        uint32_t next[2];
        SplitPart(q.key, 0u, next);
        q.key[0] = next[0];
        q.key[1] = next[1];
      }
      action = NoisyArgmax(scores_.data(), num_actions_, q.key);
    }
    return action;
  }

  const int32_t num_actions_;
  const int32_t* e_;
  const int32_t* st_;
  const bool* inv_;
  const bool* legal_;
  const float masked_score_;
  const float* sc_;
  const int64_t table_;
  uint32_t* cache_;
  const int32_t cache_words_;
  // Whether the backup leaves narrow nodes' edges (`LazyEdges`): MuZero's
  // unmasked rows of up to 64 actions, which the expansion keeps
  // (`ExpandRows` with rows).
  const bool lazy_;
  std::vector<float> scores_;
  std::vector<int32_t> visits_;
  std::vector<int32_t> record_;  // `ChildStatsRecord`'s
};

// `DescendLanes`' part of an unmasked cache row (words 7 to 15): the node's
// first two visited children (in increasing order of action) as they were
// when the slots were written, each with the fields its score needs that
// never change once the child is expanded (below the depth limit's last
// level): its node, prior, reward and discount.  The child's visit count
// and value come from the child's statistics, which the backup writes with
// the same bits as the edge (`BackupRange`).
struct LaneSlots {
  // Word 7: the slots' actions plus one, the first in bits 0 to 7, the
  // second in bits 16 to 23 (0: an empty slot; the other bits are
  // `SpareTags`); then per slot: node, prior, reward, discount.
  static constexpr int32_t kActions = 7, kFirst = 8, kWords = 4;
  // Words in the whole row (`CacheLayout<false>::Words` up to 64 actions):
  // one cache line.
  static constexpr int32_t kRowWords = 16;
  static_assert(kFirst + 2 * kWords == kRowWords, "two slots end the row");
  enum { kSlotNode = 0, kSlotPrior = 1, kSlotReward = 2, kSlotDiscount = 3 };

  // Writes the slots of a ready row `c` from the node's record `rec`: a
  // visited child that is not expanded yet (the descent just picked it)
  // leaves its slot and those after it empty.
  static void Fill(const int32_t* rec, int32_t num_actions, uint32_t* c) {
    using L = CacheLayout<false>;
    uint32_t actions = 0;
    if (c[0] == kCacheReady) {
      int32_t j = 0;
      bool open = true;
      ForEachVisited<false>(c, num_actions, [&](int32_t a) {
        if (j >= 2 || !open) return;
        const int32_t* edge = rec + a * kEdgeFields;
        if (edge[kChild] <= 0) {
          open = false;
          return;
        }
        uint32_t* slot = c + kFirst + j * kWords;
        slot[kSlotNode] = static_cast<uint32_t>(edge[kChild] - 1);
        slot[kSlotPrior] = static_cast<uint32_t>(edge[kLogit]);
        slot[kSlotReward] = static_cast<uint32_t>(edge[kReward]);
        slot[kSlotDiscount] = static_cast<uint32_t>(edge[kDiscount]);
        actions |= static_cast<uint32_t>(a + 1) << (16 * j);
        ++j;
      });
    }
    static_assert(L::kVisited + 2 <= kActions, "slots overlap the bits");
    static_assert(kActions == SpareTags::kWord, "slots share the spare word");
    c[kActions] = (c[kActions] & ~SpareTags::kSlotBits) | actions;
  }
};

// Gumbel MuZero's selection for `DescendRange`: the root's action is given
// (`root_action`, chosen by XLA: Sequential Halving needs the root's Gumbel
// noise and table), below it mctx.gumbel_muzero_interior_action_selection
// (`GumbelScores`).
class GumbelSelector {
 public:
  // `cache`: `[B, N, A]`, the nodes' `GumbelPriorProbs`, computed at a
  // node's first visit (a row starting with +0.0 is not computed yet: a
  // probability is at least `tiny`, or NaN), or null.  A node's logits never
  // change once it is read here: an expansion evaluates an existing node
  // again only at the depth limit, and nodes there are never interior.
  // The root's action: `root.action[b]` if given, else `GumbelRootScores`
  // with `root.gumbel` / `root.invalid` (`[B, A]`) and the considered visit
  // count from `root.table` (`[max_considered + 1, table_width]`).
  struct Root {
    const int32_t* action;
    const float* gumbel;
    const bool* invalid;
    const int32_t* table;
    int32_t max_considered, table_width;
  };

  // `rows`: `[B, N, GumbelRow::kWords]`, zeros at the search's start
  // (updated in place), or null: the narrow nodes' rows (no legal-move
  // masks, from `kShortRow` to `GumbelRow::kMaxActions` actions).
  GumbelSelector(int32_t num_actions, const int32_t* e, const int32_t* st,
                 const Root& root, const MixValue& mix, const bool* legal,
                 float* cache, uint32_t* rows = nullptr)
      : num_actions_(num_actions), e_(e), st_(st), root_(root), mix_(mix),
        legal_(legal), cache_(cache), rows_(rows),
        scratch_(6 * static_cast<size_t>(num_actions)),
        visits_(static_cast<size_t>(num_actions)) {}

  // With rows, below the root: a node's row and statistics first, then
  // (`Stage`) the edges of its visited children, or its whole record
  // (`DescendRange`'s turns; `DescendLanes` stages only roots, see
  // `GumbelLanes::kStagedRoots`).
  static constexpr bool kStaged = true;
  void Prefetch(int64_t at, bool root) {
    if (rows_ == nullptr || root) {
      PrefetchRecord(e_, st_, num_actions_, at);
      if (rows_ != nullptr) __builtin_prefetch(rows_ + at * GumbelRow::kWords);
      return;
    }
    __builtin_prefetch(rows_ + at * GumbelRow::kWords);
    __builtin_prefetch(st_ + at * kStatFields);
  }
  bool Stage(const Path& q, int64_t at) {
    if (rows_ == nullptr || q.depth == 0) return false;
    StageNode(at);
    return true;
  }
  // A node's row and statistics alone (with rows).
  void PrefetchRow(int64_t at) const {
    // Without rows, `StageNode` prefetches the whole record, as before the
    // rows: nothing to fetch first.
    if (rows_ == nullptr) return;
    __builtin_prefetch(rows_ + at * GumbelRow::kWords);
    __builtin_prefetch(st_ + at * kStatFields);
  }
  // Prefetches what the selection at `at` reads once its row is in.
  void StageNode(int64_t at) const {
    if (rows_ == nullptr) {
      PrefetchRecord(e_, st_, num_actions_, at);
      return;
    }
    const uint32_t* c = rows_ + at * GumbelRow::kWords;
    if (!GumbelRow::Usable(c, num_actions_)) {
      PrefetchRecord(e_, st_, num_actions_, at);
      if (cache_ != nullptr) {
        const char* p = reinterpret_cast<const char*>(cache_ + at * num_actions_);
        for (int32_t off = 0; off < num_actions_ * 4; off += 64) {
          __builtin_prefetch(p + off);
        }
      }
      return;
    }
    const char* rec =
        reinterpret_cast<const char*>(e_ + at * num_actions_ * kEdgeFields);
    constexpr int kEdgeBytes = kEdgeFields * 4;
    // And the best unvisited child's edge, which the descent reads if it
    // goes there (its child: none).
    const int32_t best = GumbelRow::ListedAction(c, 0);
    __builtin_prefetch(rec + best * kEdgeBytes + kChild * 4);
    for (int32_t i = 0; i < GumbelRow::Visited(c); ++i) {
      const int32_t a = GumbelRow::VisitedAction(c, i);
      __builtin_prefetch(rec + a * kEdgeBytes);
      __builtin_prefetch(rec + a * kEdgeBytes + kEdgeBytes - 4);
    }
  }

  int32_t operator()(Path& q, int64_t b, int64_t at) {
    if (q.depth == 0 && root_.action != nullptr) {
      const int32_t action = root_.action[b];
      return action >= 0 && action < num_actions_ ? action : -1;
    }
    // Sequential Halving's roots keep rows too (`NarrowRoot`).
    uint32_t* c = rows_ != nullptr && (q.depth > 0 || root_.gumbel != nullptr)
                      ? rows_ + at * GumbelRow::kWords
                      : nullptr;
    if (c != nullptr) {
      const int32_t action = q.depth == 0 ? NarrowRoot(b, at) : Narrow(at);
      if (action >= 0) {
        GumbelRow::Visit(num_actions_, action, c);
        return action;
      }
    }
    const int32_t action = Full(q, b, at);
    if (c != nullptr && action >= 0) Update(at, action);
    return action;
  }

  // The narrow selection at `at` (below the root), or -1.
  int32_t Narrow(int64_t at) const {
    const uint32_t* c = rows_ + at * GumbelRow::kWords;
    const int32_t action = NarrowGumbelSelect(
        e_ + at * num_actions_ * kEdgeFields, c, num_actions_,
        AsFloat(st_[at * kStatFields + kSRaw]), mix_);
    if (action >= 0 && NarrowChecked()) CheckNarrow(at, action);
    return action;
  }

  // The root's selection from its row (`NarrowRootSelect`), or -1.
  int32_t NarrowRoot(int64_t b, int64_t at) const {
    uint32_t* c = rows_ + at * GumbelRow::kWords;
    const float* gumbel = root_.gumbel + b * num_actions_;
    const bool* invalid = root_.invalid + b * num_actions_;
    // The root's noise and valid actions, counted once per search in the
    // row's spare word: 0 not yet, else 1 + the valid count if every noise
    // is finite, 2^31 if not.
    uint32_t& known = c[GumbelRow::kRootInputs];
    if (known == 0) {
      bool finite = true;
      int32_t valid = 0;
      for (int32_t a = 0; a < num_actions_; ++a) {
        finite &= std::isfinite(gumbel[a]);
        valid += invalid[a] ? 0 : 1;
      }
      known = finite ? 1u + static_cast<uint32_t>(valid) : 1u << 31;
    }
    if (known >> 31) return -1;
    const int32_t considered =
        std::min(root_.max_considered, static_cast<int32_t>(known) - 1);
    const int32_t action = NarrowRootSelect(
        e_ + at * num_actions_ * kEdgeFields, c, num_actions_,
        AsFloat(st_[at * kStatFields + kSRaw]), mix_, gumbel, invalid,
        root_.table + considered * root_.table_width, root_.table_width);
    if (action >= 0 && NarrowChecked()) CheckNarrow(at, action, b);
    return action;
  }

  // After a selection at `at` with a row (below the root, or at a
  // Sequential Halving root) scored in full chose `action`.
  void Update(int64_t at, int32_t action) {
    GumbelRow::Scored(e_ + at * num_actions_ * kEdgeFields, num_actions_,
                      action, scratch_.data(), rows_ + at * GumbelRow::kWords);
  }

  // mctx's selection at `at` from the whole row (the root's given action
  // aside).
  int32_t Full(Path& q, int64_t b, int64_t at) {
    const EdgeRow record{e_ + at * num_actions_ * kEdgeFields};
    float* rows = scratch_.data();
    // Wide rows are copied into contiguous rows first (see `GumbelNode`).
    const GumbelNode wide{rows, rows + num_actions_, visits_.data()};
    const GumbelNode* node = nullptr;
    if (num_actions_ >= kShortRow) {
      LoadGumbelNode(record, num_actions_, rows, rows + num_actions_,
                     visits_.data());
      node = &wide;
    }
    float* probs = rows + 2 * num_actions_;
    float* completed = rows + 3 * num_actions_;
    float* work = rows + 4 * num_actions_;
    float* scores = rows + 5 * num_actions_;
    if (cache_ != nullptr) {
      const bool first_visit = AsBits(cache_[at * num_actions_]) == 0;
      probs = cache_ + at * num_actions_;
      if (first_visit) GumbelNodePriorProbs(record, node, num_actions_, probs);
    } else {
      GumbelNodePriorProbs(record, node, num_actions_, probs);
    }
    const float raw = AsFloat(st_[at * kStatFields + kSRaw]);
    const bool* legal = legal_ == nullptr ? nullptr : legal_ + at * num_actions_;
    GumbelRootInputs root_inputs{nullptr, nullptr, 0};
    if (q.depth == 0) {
      const bool* invalid = root_.invalid + b * num_actions_;
      int32_t num_valid = 0, sum_visits = 0;
      for (int32_t a = 0; a < num_actions_; ++a) {
        num_valid += invalid[a] ? 0 : 1;
        sum_visits += record.visits(a);
      }
      const int32_t considered = std::min(root_.max_considered, num_valid);
      if (sum_visits < 0 || sum_visits >= root_.table_width) return -1;
      root_inputs = GumbelRootInputs{
          root_.gumbel + b * num_actions_, invalid,
          root_.table[considered * root_.table_width + sum_visits]};
    }
    GumbelNodeScores(record, node, num_actions_, raw, mix_, legal, probs,
                     q.depth == 0 ? &root_inputs : nullptr, completed, work,
                     scores);
    return node == nullptr ? Argmax(scores, num_actions_)
                           : ArgmaxRow(scores, num_actions_);
  }

  // For `GumbelLanes`.
  uint32_t* rows() const { return rows_; }
  // `$MCTX_PLANNER_CHECK_GUMBEL_ROWS` "1": every narrow decision is checked
  // against the full row's (a test's switch; aborts on a difference).
  static bool NarrowChecked() {
    static const bool on = [] {
      const char* v = std::getenv("MCTX_PLANNER_CHECK_GUMBEL_ROWS");
      return v != nullptr && std::strcmp(v, "1") == 0;
    }();
    return on;
  }
  void CheckNarrow(int64_t at, int32_t action, int64_t root_of = -1) const {
    // Counted, and the count printed when the process exits (so that a
    // test sees that the rows decided at all).
    static struct Count {
      std::atomic<int64_t> n{0};
      ~Count() {
        std::fprintf(stderr, "mctx_planner: %lld narrow Gumbel selections "
                     "checked\n", static_cast<long long>(n.load()));
      }
    } checked;
    checked.n.fetch_add(1, std::memory_order_relaxed);
    GumbelSelector full(num_actions_, e_, st_, root_, mix_, legal_, cache_);
    // Below the root, or root `root_of`'s (depth 0).
    Path q{{0, 0}, 0, 0, 0, -1, root_of < 0 ? 1 : 0, true, true};
    const int32_t expected = full.Full(q, root_of < 0 ? 0 : root_of, at);
    if (expected != action) {
      std::fprintf(stderr,
                   "mctx_planner: narrow Gumbel selection %d, full row %d "
                   "(node record %lld)\n",
                   action, expected, static_cast<long long>(at));
      std::abort();
    }
  }

 private:
  const int32_t num_actions_;
  const int32_t* e_;
  const int32_t* st_;
  const Root root_;
  const MixValue mix_;
  const bool* legal_;
  float* cache_;
  uint32_t* rows_;
  mutable std::vector<float> scratch_;
  std::vector<int32_t> visits_;
};

#if defined(__AVX512F__) && defined(__AVX512CD__)
#define MCTX_PLANNER_LANES 1

// Whether `DescendLanes` may run: yes unless `$MCTX_PLANNER_NATIVE_LANES` is
// "0" (read once; for A/B benchmarks and tests).
inline bool LanesEnabled() {
  static const bool on = [] {
    const char* v = std::getenv("MCTX_PLANNER_NATIVE_LANES");
    return v == nullptr || std::strcmp(v, "0") != 0;
  }();
  return on;
}

// The least batch that `DescendLanes` runs on (below it the scalar
// `DescendRange`: too few examples to fill the lanes).  With 64 actions and
// S = 256 the lanes made B = 16 1.04x to 1.11x faster and B = 32 1.34x.
constexpr int64_t kLanesMin = 16;

// Whether `DescendLanes` can run on this store: at most 64 actions (two
// words of visited bits; MuZero's unmasked rows are then 16 words, with the
// slots), and every edge field addressable by a 32-bit gather index.
inline bool LanesFit(int64_t batch, int64_t num_nodes, int32_t num_actions) {
  return num_actions <= 64 && batch * num_nodes * num_actions * kEdgeFields <
                                  std::numeric_limits<int32_t>::max();
}

// Transposes 16 rows of 16 int32 words in place: afterwards `r[i]` holds
// word `i` of every row, row `l` in lane `l` (four rounds of 16 shuffles:
// 32-bit and 64-bit interleaves within 128-bit blocks, then a 4 x 4
// transpose of the blocks).
inline void Transpose16(__m512i r[16]) {
  __m512i t[16], u[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  // u[i + c], block j: word 4 j + c of rows i to i + 3.
  for (int i = 0; i < 16; i += 4) {
    u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  for (int c = 0; c < 4; ++c) {
    const __m512i v0 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0x44);
    const __m512i v1 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0xEE);
    const __m512i v2 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0x44);
    const __m512i v3 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0xEE);
    r[c] = _mm512_shuffle_i32x4(v0, v2, 0x88);
    r[4 + c] = _mm512_shuffle_i32x4(v0, v2, 0xDD);
    r[8 + c] = _mm512_shuffle_i32x4(v1, v3, 0x88);
    r[12 + c] = _mm512_shuffle_i32x4(v1, v3, 0xDD);
  }
}

// Words `[w, w + 16)` of 16 rows, row `l` at `p + at[l] * stride`,
// transposed into `out` (`out[i]`: word `w + i` of every row); words from
// `limit` on are not read (zeros).
inline void LoadTransposed(const int32_t* p, const int32_t* at, int64_t stride,
                           int32_t w, int32_t limit, __m512i out[16]) {
  const int32_t count = std::min(16, limit - w);
  const __mmask16 mask =
      count >= 16 ? static_cast<__mmask16>(0xFFFF)
                  : static_cast<__mmask16>((1u << count) - 1u);
  for (int l = 0; l < 16; ++l) {
    out[l] = _mm512_maskz_loadu_epi32(mask, p + at[l] * stride + w);
  }
  Transpose16(out);
}

// The state of 16 lanes of `DescendLanes`: each lane's path, example and
// node.
struct LaneState {
  static constexpr int kLanes = 16;
  Path path[kLanes];
  int64_t b[kLanes];
  alignas(64) int32_t at[kLanes];    // b * num_nodes + node
  alignas(64) int32_t base[kLanes];  // b * num_nodes
  uint32_t active;
};

// MuZero's cached selection (`PuctSelector<true>`, no masks) for
// `DescendLanes`: 16 examples at a time in the lanes of AVX-512 vectors.
// Each lane runs `CachedPuctSelect`'s operations on its own example (the
// same operations in the same order: fused `MulAdd`, the division, the
// comparisons, so the same roundings and the same decisions), reading a
// visited child from its slot in the row (`LaneSlots`) and the child's
// statistics instead of its edge: a level of a path reads one row and the
// statistics it goes on to, not a row, statistics and edges.  The 16 rows
// are loaded whole and transposed (`Transpose16`): a gather per word, each
// masked by what the words before it decided, made a chain of dependent
// gathers (A = 64, B = 256, S = 256 on an AMD EPYC: descent 72.5 ms with
// gathers, 53.7 transposed).  The scalar
// code's branches (how many visited children, which candidate wins) become
// masks.  A lane that cannot decide there is scored by `select` itself, the
// scalar code, which then rewrites the row's slots: a row not built, slots
// that do not match the visited children (more than two, or one not
// expanded when they were written), a node on the depth limit's last level
// (its children's rewards can be rewritten there), a tie or the 1e-7
// margin, a value that is not finite, a visit count outside the table.
// Roots go through the lanes too where none of their actions is invalid
// (`PuctSelector::RootCached`: the rows do not know mctx's root mask);
// the others are scalar.  (Scalar roots, each reading its 24-line record
// every simulation, had taken 40% of the descent at B = 256, S = 64.)
class PuctLanes {
 public:
  PuctLanes(const PuctSelector<true>& select, int32_t num_actions,
            const int32_t* e, const int32_t* st, int32_t max_depth)
      : select_(&select), num_actions_(num_actions), e_(e), st_(st),
        max_depth_(max_depth),
        cache_(select.cache()),
        sc_(select.scale_table()),
        table_(static_cast<int32_t>(std::min<int64_t>(
            select.table(), std::numeric_limits<int32_t>::max()))) {}

  // Words per row (up to 64 actions, as `LanesFit` requires).
  static constexpr int kRowWords = LaneSlots::kRowWords;
  // Roots go through `Decide` too (those with invalid actions are left to
  // the scalar code).
  static constexpr bool kRoots = true;
  // Roots are prefetched whole, a few examples ahead (no `StageNode`).
  static constexpr bool kStagedRoots = false;

  // The lanes of `active` that the vectors decide; their actions go to
  // `chosen`, and the chosen child to `chosen_child` where a slot names it
  // (-1: read the edge).
  uint32_t Decide(const LaneState& g, uint32_t active, int32_t* chosen,
                  int32_t* chosen_child) const {
    using L = CacheLayout<false>;
    using S = LaneSlots;
    const int32_t num_actions = num_actions_, max_depth = max_depth_;
    const int32_t* st = st_;
    const uint32_t* cache = cache_;
    const float* sc = sc_;
    const int32_t table = table_;
    const __m512i zero = _mm512_setzero_si512();
    const __m512i one = _mm512_set1_epi32(1);
    const __m512 minus_inf =
        _mm512_set1_ps(-std::numeric_limits<float>::infinity());
    // Lanes below the depth limit's last level, roots only where the cache
    // scores them (`PuctSelector::RootCached`).
    uint32_t open = 0;
    for (uint32_t m = active; m; m &= m - 1) {
      const int l = __builtin_ctz(m);
      const int32_t depth = g.path[l].depth;
      open |= depth + 1 < max_depth &&
                      (depth > 0 || select_->RootCached(g.b[l]))
                  ? 1u << l
                  : 0u;
    }
    const __mmask16 m = static_cast<__mmask16>(open);
    const __m512i at = _mm512_load_si512(g.at);
    const __m512i base = _mm512_load_si512(g.base);
    const __m512i at_stat =
        _mm512_mullo_epi32(at, _mm512_set1_epi32(kStatFields));
    const __m512i visits = _mm512_mask_i32gather_epi32(
        zero, m, _mm512_add_epi32(at_stat, _mm512_set1_epi32(kSVisits)),
        st, 4);
    const __m512 node_value =
        _mm512_castsi512_ps(_mm512_mask_i32gather_epi32(
            zero, m, _mm512_add_epi32(at_stat, _mm512_set1_epi32(kSValue)),
            st, 4));
    const __mmask16 in_table =
        m & _mm512_cmpge_epi32_mask(visits, zero) &
        _mm512_cmplt_epi32_mask(visits, _mm512_set1_epi32(table));
    const __m512 scale = _mm512_mask_i32gather_ps(_mm512_setzero_ps(),
                                                  in_table, visits, sc, 4);
    // Every lane's row (one cache line, `at` always names a node of the
    // store), loaded whole and transposed: `word[i]` holds word `i` of the
    // 16 rows.  Lanes outside a mask read real words that the masks below
    // then ignore; 16 independent loads instead of a gather per word, each
    // waiting on the masks of the one before.
    __m512i word[kRowWords];
    for (int l = 0; l < LaneState::kLanes; ++l) {
      word[l] = _mm512_loadu_si512(
          cache + static_cast<int64_t>(g.at[l]) * kRowWords);
    }
    Transpose16(word);
    auto row_word = [&](int32_t i) { return word[i]; };
    const __m512i state = row_word(0);
    __mmask16 usable =
        in_table &
        _mm512_cmpeq_epi32_mask(state, _mm512_set1_epi32(kCacheReady)) &
        FiniteMask(node_value) & FiniteMask(scale) &
        _mm512_cmp_ps_mask(scale, _mm512_setzero_ps(), _CMP_GE_OQ);
    __m512i rest0 = row_word(L::kVisited);
    __m512i rest1 = num_actions > 32 ? row_word(L::kVisited + 1) : zero;
    const __m512i slot_actions = row_word(S::kActions);
    // The visited children in increasing order (`ForEachVisited`), at
    // most two, each matched against its slot.
    __m512 lo = node_value, hi = node_value;
    __m512i child_action[2], child_visits[2], child_node[2];
    __m512 child_q[2], child_prior[2];
    __mmask16 child_mask[2];
    int count = 0;
    for (; count < 2; ++count) {
      const __mmask16 first = _mm512_test_epi32_mask(rest0, rest0);
      const __mmask16 mm =
          usable & (first | _mm512_test_epi32_mask(rest1, rest1));
      if (mm == 0) break;
      const __m512i word = _mm512_mask_blend_epi32(first, rest1, rest0);
      const __m512i lowest =
          _mm512_and_si512(word, _mm512_sub_epi32(zero, word));
      __m512i a = _mm512_sub_epi32(_mm512_set1_epi32(31),
                                   _mm512_lzcnt_epi32(lowest));
      a = _mm512_mask_add_epi32(a, static_cast<__mmask16>(~first), a,
                                _mm512_set1_epi32(32));
      const __m512i cleared =
          _mm512_and_si512(word, _mm512_sub_epi32(word, one));
      rest0 = _mm512_mask_mov_epi32(rest0, first, cleared);
      rest1 = _mm512_mask_mov_epi32(rest1, static_cast<__mmask16>(~first),
                                    cleared);
      const __m512i slot_action = _mm512_and_si512(
          count == 0 ? slot_actions : _mm512_srli_epi32(slot_actions, 16),
          _mm512_set1_epi32(0xFF));
      usable &= ~mm | _mm512_cmpeq_epi32_mask(
                          slot_action, _mm512_add_epi32(a, one));
      const __mmask16 mv = mm & usable;
      const int32_t first_word = S::kFirst + count * S::kWords;
      const __m512i node = row_word(first_word + S::kSlotNode);
      const __m512i child_stat = _mm512_mullo_epi32(
          _mm512_add_epi32(base, node), _mm512_set1_epi32(kStatFields));
      const __m512i n = _mm512_mask_i32gather_epi32(
          zero, mv, _mm512_add_epi32(child_stat, _mm512_set1_epi32(kSVisits)),
          st, 4);
      const __m512 value = _mm512_castsi512_ps(_mm512_mask_i32gather_epi32(
          zero, mv, _mm512_add_epi32(child_stat, _mm512_set1_epi32(kSValue)),
          st, 4));
      const __m512 q = _mm512_fmadd_ps(
          _mm512_castsi512_ps(row_word(first_word + S::kSlotDiscount)), value,
          _mm512_castsi512_ps(row_word(first_word + S::kSlotReward)));
      usable &= ~mv | (_mm512_cmpgt_epi32_mask(n, zero) & FiniteMask(q));
      lo = _mm512_mask_mov_ps(lo, mv & _mm512_cmp_ps_mask(q, lo, _CMP_LT_OQ),
                              q);
      hi = _mm512_mask_mov_ps(hi, mv & _mm512_cmp_ps_mask(q, hi, _CMP_GT_OQ),
                              q);
      child_action[count] = a;
      child_visits[count] = n;
      child_node[count] = node;
      child_q[count] = q;
      child_prior[count] = _mm512_castsi512_ps(
          row_word(first_word + S::kSlotPrior));
      child_mask[count] = mv;
    }
    // More than two visited children: the scalar code.
    usable &= ~(_mm512_test_epi32_mask(rest0, rest0) |
                _mm512_test_epi32_mask(rest1, rest1));
    // 1 / NanMax(hi - lo, kQEpsilon).
    const __m512 spread = _mm512_sub_ps(hi, lo);
    __m512 floor = _mm512_mask_mov_ps(
        _mm512_set1_ps(kQEpsilon),
        _mm512_cmp_ps_mask(spread, _mm512_set1_ps(kQEpsilon), _CMP_GT_OQ),
        spread);
    floor = _mm512_mask_mov_ps(
        floor, _mm512_cmp_ps_mask(spread, spread, _CMP_UNORD_Q),
        _mm512_set1_ps(std::numeric_limits<float>::quiet_NaN()));
    const __m512 inverse = _mm512_div_ps(_mm512_set1_ps(1.0f), floor);
    __m512 best = minus_inf, runner_up = minus_inf;
    __m512i greedy = _mm512_set1_epi32(-1), ties = zero;
    __m512i greedy_node = _mm512_set1_epi32(-1);
    __mmask16 finite = usable;
    // `CachedPuctSelect`'s `consider`; `node`: the candidate's child
    // (-1: unvisited, read from its edge after the choice).
    auto consider = [&](__mmask16 mm, __m512i a, __m512 prior,
                        __m512 completed, __m512i n, __m512i node) {
      const __m512 policy = _mm512_div_ps(
          _mm512_mul_ps(scale, prior),
          _mm512_cvtepi32_ps(_mm512_add_epi32(n, one)));
      const __m512 s =
          _mm512_fmadd_ps(_mm512_sub_ps(completed, lo), inverse, policy);
      finite &= ~mm | FiniteMask(s);
      const __mmask16 above = mm & _mm512_cmp_ps_mask(s, best, _CMP_GT_OQ);
      const __mmask16 equal =
          mm & ~above & _mm512_cmp_ps_mask(s, best, _CMP_EQ_OQ);
      const __mmask16 second = mm & ~above & ~equal &
                               _mm512_cmp_ps_mask(s, runner_up, _CMP_GT_OQ);
      runner_up = _mm512_mask_mov_ps(runner_up, above, best);
      runner_up = _mm512_mask_mov_ps(runner_up, second, s);
      best = _mm512_mask_mov_ps(best, above, s);
      ties = _mm512_mask_mov_epi32(ties, above, one);
      ties = _mm512_mask_add_epi32(ties, equal, ties, one);
      greedy = _mm512_mask_mov_epi32(greedy, above, a);
      greedy_node = _mm512_mask_mov_epi32(greedy_node, above, node);
      // Equal scores leave the lane undecided (ties > 1): its greedy
      // action is not used.
      greedy = _mm512_mask_min_epi32(greedy, equal, greedy, a);
    };
    for (int j = 0; j < count; ++j) {
      consider(child_mask[j] & usable, child_action[j], child_prior[j],
               child_q[j], child_visits[j], child_node[j]);
    }
    // The two unvisited children of highest prior (`c[1]`, `c[2]`,
    // priors `c[3]`, `c[4]`; 0: none), valued at `lo`.
    for (int32_t i = 0; i < 2; ++i) {
      const __m512i tag = row_word(1 + i);
      const __mmask16 mm = usable & _mm512_test_epi32_mask(tag, tag);
      consider(mm, _mm512_sub_epi32(tag, one),
               _mm512_castsi512_ps(row_word(3 + i)), lo, zero,
               _mm512_set1_epi32(-1));
    }
    const uint32_t decided = usable & finite & _mm512_cmpge_epi32_mask(greedy, zero) &
              _mm512_cmpeq_epi32_mask(ties, one) &
              _mm512_cmp_ps_mask(
                  best, _mm512_add_ps(runner_up, _mm512_set1_ps(kTieBreak)),
                  _CMP_GT_OQ);
    _mm512_store_si512(chosen, greedy);
    _mm512_store_si512(chosen_child, greedy_node);
    return decided;
  }

  // A decided lane whose child no slot named (an unvisited one): counted
  // visited, as the scalar code does.
  void Chosen(int64_t at, int32_t action) const {
    CacheVisit<false>(e_ + at * num_actions_ * kEdgeFields, num_actions_,
                      action, cache_ + at * kRowWords);
  }

  // After the scalar code scored a lane: its row's slots.
  void Scalar(const Path& q, int64_t at) const {
    if (q.depth + 1 < max_depth_) {
      LaneSlots::Fill(e_ + at * num_actions_ * kEdgeFields, num_actions_,
                      cache_ + at * kRowWords);
    }
  }

 private:
  const PuctSelector<true>* select_;
  const int32_t num_actions_;
  const int32_t* e_;
  const int32_t* st_;
  const int32_t max_depth_;
  uint32_t* cache_;
  const float* sc_;
  const int32_t table_;
};

// Gumbel MuZero's interior selection for `DescendLanes` (`GumbelScores`
// and `ArgmaxRow` on wide rows, without masks, with the prior cache): 16
// nodes at a time, one per lane, each lane running the scalar code's
// operations on its own node in the same order (XLA's window order for the
// sums, its `exp`, the same fused multiply-adds), so the same roundings.
// The scalar code does the rows in vector lanes already, but its sums are
// chains of dependent adds (32 long with 64 actions); across 16 nodes the
// chains run side by side.  The 16 nodes' records and prior rows are loaded
// whole, 16 words at a time, and transposed (`LoadTransposed`) rather than
// gathered a word at a time (64 actions, B = 256, S = 128 on an AMD EPYC:
// descent 22 to 23 ms against 27 to 31).  A lane whose node has no prior
// probabilities yet (its first visit), or where a NaN shows up, is scored
// by the scalar code.  With Gumbel's rows (`GumbelRow`), the lanes decide
// narrow nodes first (`DecideNarrow`), and the whole rows are scored only
// for the nodes left (in lanes where at least `kVectorMin` are, else by the
// scalar code).
class GumbelLanes {
 public:
  // Roots are the scalar code's (Sequential Halving's action is given).
  static constexpr bool kRoots = false;
  // Roots in two stages, examples ahead: their rows and statistics, then
  // what their selection reads (`GumbelSelector::StageNode`).  Below the
  // root, a lane decides on the turn after it moved, as PUCT's lanes do:
  // its row and statistics were prefetched as it moved, its visited
  // children's edges are read as they come.  (Until the twenty-second
  // session a lane that moved waited a turn or two while `Stage`
  // prefetched those edges, even and odd lanes deciding on alternate
  // turns.  Deciding at once was 0.89x to 0.99x the time of whole
  // searches with 64 actions, B = 16 to 1024, S = 64 to 256, 2 cores,
  // identical outputs: the waits halved the lanes of each `DecideNarrow`,
  // whose cost is mostly per call, and added turns; docs/benchmarks.md,
  // "Gumbel's lanes decide at once".)
  static constexpr bool kStagedRoots = true;

  // `select`: the range's selector; with its rows (`GumbelRow`), narrow
  // nodes are decided first, one lane at a time (`NarrowGumbelSelect`),
  // and the vector code runs only where at least `kVectorMin` lanes are
  // left (the others go to the scalar code).
  // `prefetch_edges`: `DecideNarrow` first prefetches the edges of every
  // lane's visited children (`PrefetchEdges` says when).
  GumbelLanes(int32_t num_actions, const int32_t* e, const int32_t* st,
              const float* cache, const MixValue& mix,
              const GumbelSelector* select = nullptr,
              bool prefetch_edges = false)
      : num_actions_(num_actions), e_(e), st_(st), cache_(cache), mix_(mix),
        select_(select),
        gumbel_rows_(select == nullptr ? nullptr : select->rows()),
        prefetch_edges_(prefetch_edges),
        rows_(5 * static_cast<size_t>(num_actions)) {}

  uint32_t Decide(const LaneState& g, uint32_t active, int32_t* chosen,
                  int32_t* chosen_child) const {
    _mm512_store_si512(chosen_child, _mm512_set1_epi32(-1));
    if (gumbel_rows_ == nullptr) return DecideFull(g, active, chosen);
    // The narrow decisions (their rows and statistics were prefetched as
    // the lanes moved), then the vector code for enough others.
    const uint32_t decided = DecideNarrow(g, active, chosen);
    if (GumbelSelector::NarrowChecked()) {
      for (uint32_t m = decided; m; m &= m - 1) {
        const int l = __builtin_ctz(m);
        select_->CheckNarrow(g.at[l], chosen[l]);
      }
    }
    const uint32_t left = active & ~decided;
    if (cache_ == nullptr || __builtin_popcount(left) < kVectorMin) {
      return decided;
    }
    return decided | DecideFull(g, left, chosen);
  }

  // After a decided lane's selection: its row counts the action
  // (`GumbelRow::Scored`: a narrow decision's row is ready, so only counts).
  void Chosen(int64_t at, int32_t action) const {
    if (gumbel_rows_ == nullptr) return;
    float scratch[2 * GumbelRow::kMaxActions];
    GumbelRow::Scored(e_ + at * num_actions_ * kEdgeFields, num_actions_,
                      action, scratch, gumbel_rows_ + at * GumbelRow::kWords);
  }
  void Scalar(const Path&, int64_t) const {}

 private:
  static constexpr int kVectorMin = 4;

  // Prefetches the edge records of the visited children of the lanes
  // `lanes` (their nodes `at`, rows ready), all of them before
  // `DecideNarrow` gathers the first.  Its gathers go slot by slot, and each
  // waited on its misses before the next was issued: with a store larger
  // than the caches, 43% of its samples fell just after the first gather
  // (docs/benchmarks.md, "Gumbel's visited edges prefetched").  A record is
  // 24 bytes and may span two lines.
  void PrefetchVisitedEdges(uint32_t lanes, const int32_t* at) const {
    using R = GumbelRow;
    for (uint32_t m = lanes; m; m &= m - 1) {
      const int l = __builtin_ctz(m);
      const uint32_t* row = gumbel_rows_ + static_cast<int64_t>(at[l]) * R::kWords;
      const int32_t* record =
          e_ + static_cast<int64_t>(at[l]) * num_actions_ * kEdgeFields;
      const int32_t slots = std::min(R::Visited(row), R::kSlots);
      for (int32_t i = 0; i < slots; ++i) {
        const int32_t* edge = record + R::VisitedAction(row, i) * kEdgeFields;
        _mm_prefetch(reinterpret_cast<const char*>(edge), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(edge + kEdgeFields - 1),
                     _MM_HINT_T0);
      }
    }
  }

  // `NarrowGumbelSelect` in vector lanes, one node per lane, for lanes
  // `lanes`; writes `chosen` of the lanes it decides (returned).  The exact
  // part (the visited children's sums, the completed q-values, the logits
  // plus q', their maximum and exps) is the scalar code's operations per
  // lane; the bounds on the softmax's denominator are computed in floats
  // with margins for their own rounding (and the row's sum less the
  // candidates' prior exps in doubles), so they are wider than the scalar
  // code's but hold as well: a lane decides only where its best candidate
  // wins for every denominator within them.
  uint32_t DecideNarrow(const LaneState& g, uint32_t lanes,
                        int32_t* chosen) const {
    using R = GumbelRow;
    const int32_t n = num_actions_;
    const __m512i zero = _mm512_setzero_si512();
    const __m512i one = _mm512_set1_epi32(1);
    const __m512 fzero = _mm512_setzero_ps();
    const __m512i sign = _mm512_set1_epi32(static_cast<int32_t>(0x80000000u));
    auto negate = [&](__m512 x) {
      return _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(x), sign));
    };
    auto abs = [&](__m512 x) {
      return _mm512_castsi512_ps(
          _mm512_andnot_si512(sign, _mm512_castps_si512(x)));
    };
    const __m512i at = _mm512_load_si512(g.at);
    __m512i word[R::kWords];
    LoadTransposed(reinterpret_cast<const int32_t*>(gumbel_rows_), g.at,
                   R::kWords, 0, R::kWords, word);
    const __m512i header = word[R::kHeader];
    const __m512i byte = _mm512_set1_epi32(0xFF);
    const __m512i state = _mm512_and_si512(header, byte);
    const __m512i k = _mm512_and_si512(_mm512_srli_epi32(header, 8), byte);
    const __m512i listed = _mm512_and_si512(_mm512_srli_epi32(header, 16), byte);
    const __m512i unvisited = _mm512_sub_epi32(_mm512_set1_epi32(n), k);
    __mmask16 m = static_cast<__mmask16>(lanes) &
                  _mm512_cmpeq_epi32_mask(state, _mm512_set1_epi32(R::kReady)) &
                  _mm512_cmpge_epi32_mask(
                      listed, _mm512_min_epi32(unvisited, _mm512_set1_epi32(2))) &
                  _mm512_cmpge_epi32_mask(listed, one);
    if (m == 0) return 0;
    const __m512 top0 = _mm512_castsi512_ps(word[R::kTop]);
    const __m512 inverse0 = _mm512_castsi512_ps(word[R::kInverse]);
    const __m512 largest = _mm512_castsi512_ps(word[R::kLargest]);
    const __m512 raw = _mm512_castsi512_ps(_mm512_mask_i32gather_epi32(
        zero, m,
        _mm512_add_epi32(_mm512_mullo_epi32(at, _mm512_set1_epi32(kStatFields)),
                         _mm512_set1_epi32(kSRaw)),
        st_, 4));
    // The visited children, slot by slot (lanes with fewer are masked).
    __mmask16 slot[R::kSlots];
    __m512i act[R::kSlots], visits[R::kSlots], window[R::kSlots];
    __m512 logit[R::kSlots], q[R::kSlots], probs[R::kSlots],
        prior_exp[R::kSlots];
    __mmask16 fail = 0;
    __m512i total = zero, most = zero;
    // `XlaSumWindow`.
    const int32_t first_window =
        n <= 32 ? std::numeric_limits<int32_t>::max()
                : 32 - (32 - n % 32) % 32 / 2;
    const __m512i record_at = _mm512_mullo_epi32(at, _mm512_set1_epi32(n));
    if (prefetch_edges_) PrefetchVisitedEdges(m, g.at);
    int32_t slots = 0;
    for (; slots < R::kSlots; ++slots) {
      const int32_t i = slots;
      const __mmask16 mi = m & _mm512_cmpgt_epi32_mask(k, _mm512_set1_epi32(i));
      if (mi == 0) break;
      slot[i] = mi;
      act[i] = _mm512_sub_epi32(
          _mm512_and_si512(
              _mm512_srli_epi32(word[R::VisitedWord(i)], 8 * (i % 4)),
              byte),
          one);
      const __m512i edge = _mm512_mullo_epi32(
          _mm512_add_epi32(record_at, act[i]), _mm512_set1_epi32(kEdgeFields));
      auto field = [&](int f) {
        return _mm512_mask_i32gather_epi32(
            zero, mi, _mm512_add_epi32(edge, _mm512_set1_epi32(f)), e_, 4);
      };
      logit[i] = _mm512_castsi512_ps(field(kLogit));
      visits[i] = field(kVisits);
      q[i] = _mm512_fmadd_ps(_mm512_castsi512_ps(field(kDiscount)),
                             _mm512_castsi512_ps(field(kValue)),
                             _mm512_castsi512_ps(field(kReward)));
      fail |= mi & _mm512_cmple_epi32_mask(visits[i], zero);
      prior_exp[i] = XlaExpLanes(_mm512_sub_ps(logit[i], top0));
      probs[i] = _mm512_max_ps(_mm512_mul_ps(prior_exp[i], inverse0),
                               _mm512_set1_ps(std::numeric_limits<float>::min()));
      total = _mm512_mask_add_epi32(total, mi, total, visits[i]);
      most = _mm512_mask_max_epi32(most, mi, most, visits[i]);
      const __m512i past = _mm512_sub_epi32(act[i], _mm512_set1_epi32(first_window));
      window[i] = _mm512_mask_add_epi32(
          zero, _mm512_cmpge_epi32_mask(past, zero), _mm512_srli_epi32(past, 5),
          one);
    }
    // `SparseXlaRowSum` of `v[0, slots)` in every lane.
    auto sparse_sum = [&](const __m512* v) {
      __m512 sum_total = fzero, sum = fzero;
      __m512i current = _mm512_set1_epi32(-1);
      for (int32_t i = 0; i < slots; ++i) {
        const __mmask16 change =
            slot[i] & _mm512_cmpneq_epi32_mask(window[i], current);
        sum_total = _mm512_mask_add_ps(
            sum_total, change & _mm512_cmpge_epi32_mask(current, zero),
            sum_total, sum);
        sum = _mm512_mask_mov_ps(sum, change, fzero);
        current = _mm512_mask_mov_epi32(current, change, window[i]);
        sum = _mm512_mask_add_ps(sum, slot[i], sum, v[i]);
      }
      return _mm512_mask_add_ps(sum_total,
                                _mm512_cmpge_epi32_mask(current, zero),
                                sum_total, sum);
    };
    // `GumbelScaledQ`.
    const __m512 visited_probs = sparse_sum(probs);
    __m512 terms[R::kSlots];
    for (int32_t i = 0; i < slots; ++i) {
      terms[i] = _mm512_div_ps(_mm512_mul_ps(probs[i], q[i]), visited_probs);
    }
    const __m512 value = _mm512_div_ps(
        _mm512_fmadd_ps(_mm512_cvtepi32_ps(total), sparse_sum(terms), raw),
        _mm512_cvtepi32_ps(_mm512_add_epi32(total, one)));
    __m512 lo = value, hi = value;
    __mmask16 nan = _mm512_cmp_ps_mask(value, value, _CMP_UNORD_Q);
    auto bits_are = [&](__m512 x, uint32_t b) {
      return _mm512_cmpeq_epi32_mask(_mm512_castps_si512(x),
                                     _mm512_set1_epi32(static_cast<int32_t>(b)));
    };
    __mmask16 minus_zero = bits_are(value, 0x80000000u);
    __mmask16 plus_zero = bits_are(value, 0u);
    for (int32_t i = 0; i < slots; ++i) {
      nan |= slot[i] & _mm512_cmp_ps_mask(q[i], q[i], _CMP_UNORD_Q);
      minus_zero |= slot[i] & bits_are(q[i], 0x80000000u);
      plus_zero |= slot[i] & bits_are(q[i], 0u);
      lo = _mm512_mask_mov_ps(lo, slot[i] & _mm512_cmp_ps_mask(q[i], lo, _CMP_LT_OQ), q[i]);
      hi = _mm512_mask_mov_ps(hi, slot[i] & _mm512_cmp_ps_mask(q[i], hi, _CMP_GT_OQ), q[i]);
    }
    const __m512 minus = _mm512_set1_ps(-0.0f);
    lo = _mm512_mask_mov_ps(
        lo, _mm512_cmp_ps_mask(lo, fzero, _CMP_EQ_OQ),
        _mm512_mask_blend_ps(minus_zero, fzero, minus));
    hi = _mm512_mask_mov_ps(
        hi, _mm512_cmp_ps_mask(hi, fzero, _CMP_EQ_OQ),
        _mm512_mask_blend_ps(plus_zero, minus, fzero));
    const __m512 rescale = Rescale(lo, hi, &nan);
    const __m512 visit_scale = VisitScale(most);
    __m512 work[R::kSlots];
    for (int32_t i = 0; i < slots; ++i) {
      work[i] = _mm512_fmadd_ps(
          visit_scale, _mm512_mul_ps(_mm512_sub_ps(q[i], lo), rescale),
          logit[i]);
    }
    const __m512 unvisited_q = _mm512_mul_ps(_mm512_sub_ps(value, lo), rescale);
    const __m512 best_logit = _mm512_castsi512_ps(word[R::kListedLogits]);
    const __m512 best = _mm512_fmadd_ps(visit_scale, unvisited_q, best_logit);
    const __mmask16 others =
        _mm512_cmpge_epi32_mask(unvisited, _mm512_set1_epi32(2));
    const __m512 second = _mm512_fmadd_ps(
        visit_scale, unvisited_q,
        _mm512_castsi512_ps(word[R::kListedLogits + 1]));
    fail |= others & ~_mm512_cmp_ps_mask(second, best, _CMP_LT_OQ);
    __m512 top = best;
    for (int32_t i = 0; i < slots; ++i) {
      nan |= slot[i] & _mm512_cmp_ps_mask(work[i], work[i], _CMP_UNORD_Q);
      top = _mm512_mask_mov_ps(
          top, slot[i] & _mm512_cmp_ps_mask(work[i], top, _CMP_GT_OQ), work[i]);
    }
    const __m512 inf = _mm512_set1_ps(std::numeric_limits<float>::infinity());
    fail |= nan | _mm512_cmp_ps_mask(best, best, _CMP_UNORD_Q) |
            ~_mm512_cmp_ps_mask(abs(top), inf, _CMP_LT_OQ) |
            _mm512_cmp_ps_mask(top, fzero, _CMP_EQ_OQ);
    m &= ~fail;
    if (m == 0) return 0;
    __m512 exps[R::kSlots];
    __m512 known = XlaExpLanes(_mm512_sub_ps(best, top));
    const __m512 best_exp = known;
    __m512 taken = XlaExpLanes(_mm512_sub_ps(best_logit, top0));
    for (int32_t i = 0; i < slots; ++i) {
      exps[i] = XlaExpLanes(_mm512_sub_ps(work[i], top));
      known = _mm512_mask_add_ps(known, slot[i], known, exps[i]);
      taken = _mm512_mask_add_ps(taken, slot[i], taken, prior_exp[i]);
    }
    // Bounds on the denominator (see `NarrowGumbelSelect`), with every
    // float operation's rounding (at most 1 ulp, `u`) in the margins.
    const float u = 0x1p-24f;
    const float exp_err = 8 * u;  // XLA's exp (measured: 1.41 ulps)
    const float tiny = 2e-38f;
    auto set = [](float x) { return _mm512_set1_ps(x); };
    // The row's sum less the candidates' prior exps (`taken`, a float sum
    // of at most 9 terms: within 9 u of it), in doubles.
    __m512 rest_prior_lo, rest_prior_hi;
    {
      const __m512i sum_index = _mm512_mullo_epi32(at, _mm512_set1_epi32(R::kWords / 2));
      const double* sum_base =
          reinterpret_cast<const double*>(gumbel_rows_ + R::kSum);
      __m256 halves_lo[2], halves_hi[2];
      for (int h = 0; h < 2; ++h) {
        const __m256i index = h == 0 ? _mm512_castsi512_si256(sum_index)
                                     : _mm512_extracti64x4_epi64(sum_index, 1);
        const __mmask8 mh = static_cast<__mmask8>(m >> (8 * h));
        const __m512d sum = _mm512_mask_i32gather_pd(
            _mm512_setzero_pd(), mh, index, sum_base, 8);
        const __m512d taken_d = _mm512_cvtps_pd(
            h == 0 ? _mm512_castps512_ps256(taken)
                   : _mm256_castsi256_ps(_mm512_extracti64x4_epi64(
                         _mm512_castps_si512(taken), 1)));
        const __m512d slack = _mm512_add_pd(
            _mm512_mul_pd(sum, _mm512_set1_pd(4.0 * n * 0x1p-53)),
            _mm512_mul_pd(taken_d, _mm512_set1_pd(10.0 * 0x1p-24)));
        const __m512d rest = _mm512_sub_pd(sum, taken_d);
        halves_lo[h] = _mm512_cvtpd_ps(_mm512_max_pd(
            _mm512_setzero_pd(), _mm512_sub_pd(rest, slack)));
        halves_hi[h] = _mm512_cvtpd_ps(_mm512_add_pd(rest, slack));
      }
      // Converted to float (nearest: within u), moved outward.
      auto join = [](__m256 a, __m256 b) {
        return _mm512_castpd_ps(_mm512_insertf64x4(
            _mm512_castps_pd(_mm512_castps256_ps512(a)), _mm256_castps_pd(b),
            1));
      };
      rest_prior_lo = _mm512_mul_ps(join(halves_lo[0], halves_lo[1]),
                                    set(1.0f - 4 * u));
      rest_prior_hi = _mm512_mul_ps(join(halves_hi[0], halves_hi[1]),
                                    set(1.0f + 4 * u));
    }
    const __m512 shift = _mm512_mul_ps(visit_scale, unvisited_q);
    const __m512 prior_err =
        _mm512_fmadd_ps(set(2.02f * u), largest, set(exp_err));
    const __m512 rest_err = _mm512_fmadd_ps(
        _mm512_fmadd_ps(set(2.0f), _mm512_add_ps(abs(shift), largest), abs(top)),
        set(1.01f * u), set(exp_err));
    // exp(shift - top + top0), its argument within 3 u of its terms.
    const __m512 g_arg = _mm512_add_ps(_mm512_sub_ps(shift, top), top0);
    const __m512 g_err = _mm512_fmadd_ps(
        _mm512_add_ps(_mm512_add_ps(abs(shift), abs(top)), abs(top0)),
        set(3.03f * u), set(exp_err));
    const __m512 scale = XlaExpLanes(g_arg);
    fail = _mm512_cmp_ps_mask(g_arg, set(80.0f), _CMP_GE_OQ) |
           _mm512_cmp_ps_mask(g_err, set(1e-3f), _CMP_GT_OQ) |
           _mm512_cmp_ps_mask(prior_err, set(1e-3f), _CMP_GT_OQ) |
           _mm512_cmp_ps_mask(rest_err, set(1e-3f), _CMP_GT_OQ);
    const __m512 rest_count = _mm512_cvtepi32_ps(_mm512_sub_epi32(unvisited, one));
    const __m512 scale_lo = _mm512_mul_ps(scale, _mm512_sub_ps(set(1.0f), g_err));
    const __m512 scale_hi = _mm512_fmadd_ps(scale, _mm512_add_ps(set(1.0f), g_err),
                                            set(1e-37f));
    // The rest of the unvisited children (none where `others` is false).
    __m512 rest_lo = _mm512_mul_ps(
        _mm512_mul_ps(scale_lo,
                      _mm512_div_ps(rest_prior_lo, _mm512_add_ps(set(1.0f), prior_err))),
        _mm512_mul_ps(_mm512_sub_ps(set(1.0f), rest_err), set(1.0f - 16 * u)));
    rest_lo = _mm512_max_ps(fzero, _mm512_sub_ps(rest_lo, _mm512_mul_ps(rest_count, set(tiny))));
    __m512 rest_hi = _mm512_mul_ps(
        _mm512_fmadd_ps(
            _mm512_mul_ps(
                scale_hi,
                _mm512_fmadd_ps(rest_count, set(tiny),
                                _mm512_div_ps(rest_prior_hi,
                                              _mm512_sub_ps(set(1.0f), prior_err)))),
            _mm512_add_ps(set(1.0f), rest_err), _mm512_mul_ps(rest_count, set(tiny))),
        set(1.0f + 16 * u));
    rest_lo = _mm512_mask_mov_ps(fzero, others, rest_lo);
    rest_hi = _mm512_mask_mov_ps(fzero, others, rest_hi);
    // XLA's float sum of `n` positive terms, and `known`'s own rounding.
    const float gamma = (n + 12) * u * 1.01f;
    const __m512 z_lo = _mm512_mul_ps(_mm512_add_ps(known, rest_lo),
                                      set((1.0f - gamma) * (1.0f - 4 * u)));
    const __m512 z_hi = _mm512_mul_ps(_mm512_add_ps(known, rest_hi),
                                      set((1.0f + gamma) * (1.0f + 4 * u)));
    fail |= ~_mm512_cmp_ps_mask(z_lo, fzero, _CMP_GT_OQ) |
            ~_mm512_cmp_ps_mask(z_hi, inf, _CMP_LT_OQ);
    m &= ~fail;
    if (m == 0) return 0;
    const __m512 improved_lo = _mm512_div_ps(set(1.0f), z_hi);
    const __m512 improved_hi = _mm512_div_ps(set(1.0f), z_lo);
    const __m512 visit_share = _mm512_div_ps(
        set(1.0f), _mm512_cvtepi32_ps(_mm512_add_epi32(total, one)));
    // The candidates: the best unvisited child (code `R::kSlots`), then
    // the visited ones.
    const __m512 minus_zero_share = negate(fzero);
    __m512 win_lo = _mm512_fmadd_ps(best_exp, improved_lo, minus_zero_share);
    const __m512 best_hi = _mm512_fmadd_ps(best_exp, improved_hi, minus_zero_share);
    __m512i winner = _mm512_set1_epi32(R::kSlots);
    __m512 lo_score[R::kSlots], hi_score[R::kSlots];
    for (int32_t i = 0; i < slots; ++i) {
      const __m512 share = negate(
          _mm512_mul_ps(_mm512_cvtepi32_ps(visits[i]), visit_share));
      lo_score[i] = _mm512_fmadd_ps(exps[i], improved_lo, share);
      hi_score[i] = _mm512_fmadd_ps(exps[i], improved_hi, share);
      const __mmask16 better =
          slot[i] & _mm512_cmp_ps_mask(lo_score[i], win_lo, _CMP_GT_OQ);
      win_lo = _mm512_mask_mov_ps(win_lo, better, lo_score[i]);
      winner = _mm512_mask_mov_epi32(winner, better, _mm512_set1_epi32(i));
    }
    // The winner's lowest score beats every other candidate's highest.
    __mmask16 ok = _mm512_cmp_ps_mask(win_lo, win_lo, _CMP_ORD_Q);
    const __mmask16 best_wins =
        _mm512_cmpeq_epi32_mask(winner, _mm512_set1_epi32(R::kSlots));
    ok &= best_wins | _mm512_cmp_ps_mask(best_hi, win_lo, _CMP_LT_OQ);
    __m512i action = _mm512_sub_epi32(_mm512_and_si512(word[R::kListedAt], byte), one);
    for (int32_t i = 0; i < slots; ++i) {
      const __mmask16 is_winner =
          _mm512_cmpeq_epi32_mask(winner, _mm512_set1_epi32(i));
      ok &= ~slot[i] | is_winner |
            _mm512_cmp_ps_mask(hi_score[i], win_lo, _CMP_LT_OQ);
      action = _mm512_mask_mov_epi32(action, is_winner, act[i]);
    }
    // The other unvisited children: exps at most `second`'s, within XLA's
    // exp error.
    const __m512 rest_exp = _mm512_mul_ps(
        _mm512_fmadd_ps(XlaExpLanes(_mm512_sub_ps(second, top)),
                        set(1.0f + 2 * exp_err), set(tiny)),
        set(1.0f + 4 * u));
    ok &= ~others | _mm512_cmp_ps_mask(
                        _mm512_fmadd_ps(rest_exp, improved_hi, minus_zero_share),
                        win_lo, _CMP_LT_OQ);
    const __mmask16 decided = m & ok;
    _mm512_mask_store_epi32(chosen, decided, action);
    return decided;
  }

  // The full rows of lanes `active` in vector lanes; writes `chosen` of
  // the lanes it decides (returned).
  uint32_t DecideFull(const LaneState& g, uint32_t active,
                      int32_t* chosen) const {
    const int32_t n = num_actions_;
    const __m512i zero = _mm512_setzero_si512();
    const __m512 fzero = _mm512_setzero_ps();
    const __m512i at = _mm512_load_si512(g.at);
    const __m512i probs_at = _mm512_mullo_epi32(at, _mm512_set1_epi32(n));
    // A row of probabilities starting with +0.0 is not computed yet.
    const __m512i first = _mm512_mask_i32gather_epi32(
        zero, static_cast<__mmask16>(active), probs_at, cache_, 4);
    const __mmask16 m =
        static_cast<__mmask16>(active) & _mm512_test_epi32_mask(first, first);
    if (m == 0) return 0;
    __m512* logit = rows_.data();
    __m512* q = logit + n;
    __m512i* visits = reinterpret_cast<__m512i*>(q + n);
    __m512* probs = q + 2 * n;
    __m512* work = q + 3 * n;
    // The 16 nodes' records and prior rows, loaded whole and transposed 16
    // words at a time (`LoadTransposed`; every lane's `at` names a node of
    // the store, and lanes outside `m` are never decided), not gathered
    // word by word.  The edges' discount and value wait in `probs` and
    // `work` until the reward comes.
    __m512i block[16];
    __m512* discount = work;
    __m512* edge_value = probs;
    const int32_t words = n * kEdgeFields;
    for (int32_t w = 0; w < words; w += 16) {
      LoadTransposed(e_, g.at, words, w, words, block);
      for (int32_t i = 0; i < 16 && w + i < words; ++i) {
        const int32_t a = (w + i) / kEdgeFields;
        const __m512i x = block[i];
        switch ((w + i) % kEdgeFields) {
          case kLogit: logit[a] = _mm512_castsi512_ps(x); break;
          case kVisits: visits[a] = x; break;
          case kValue: edge_value[a] = _mm512_castsi512_ps(x); break;
          case kDiscount: discount[a] = _mm512_castsi512_ps(x); break;
          case kReward: q[a] = _mm512_castsi512_ps(x); break;
          default: break;
        }
      }
    }
    for (int32_t a = 0; a < n; ++a) {
      q[a] = _mm512_fmadd_ps(discount[a], edge_value[a], q[a]);
    }
    const int32_t* cache_words = reinterpret_cast<const int32_t*>(cache_);
    for (int32_t w = 0; w < n; w += 16) {
      LoadTransposed(cache_words, g.at, n, w, n, block);
      for (int32_t i = 0; i < 16 && w + i < n; ++i) {
        probs[w + i] = _mm512_castsi512_ps(block[i]);
      }
    }
    const __m512 raw = _mm512_castsi512_ps(_mm512_mask_i32gather_epi32(
        zero, m,
        _mm512_add_epi32(_mm512_mullo_epi32(at, _mm512_set1_epi32(kStatFields)),
                         _mm512_set1_epi32(kSRaw)),
        st_, 4));
    __mmask16 nan = 0;
    // `GumbelScaledQ`.
    __m512i total_visits = zero;
    __m512i max_visits = _mm512_set1_epi32(std::numeric_limits<int32_t>::min());
    for (int32_t a = 0; a < n; ++a) {
      total_visits = _mm512_add_epi32(total_visits, visits[a]);
      max_visits = _mm512_max_epi32(max_visits, visits[a]);
    }
    auto visited = [&](int32_t a) {
      return _mm512_cmpgt_epi32_mask(visits[a], zero);
    };
    const __m512 visited_probs = RowSum(n, [&](int32_t a) {
      return _mm512_mask_mov_ps(fzero, visited(a), probs[a]);
    });
    const __m512 weighted = RowSum(n, [&](int32_t a) {
      return _mm512_mask_mov_ps(
          fzero, visited(a),
          _mm512_div_ps(_mm512_mul_ps(probs[a], q[a]), visited_probs));
    });
    const __m512 value = _mm512_div_ps(
        _mm512_fmadd_ps(_mm512_cvtepi32_ps(total_visits), weighted, raw),
        _mm512_cvtepi32_ps(_mm512_add_epi32(total_visits, _mm512_set1_epi32(1))));
    for (int32_t a = 0; a < n; ++a) {
      work[a] = _mm512_mask_mov_ps(value, visited(a), q[a]);
    }
    const __m512 lo = Fold<false>(n, work, &nan);
    const __m512 hi = Fold<true>(n, work, &nan);
    const __m512 rescale = Rescale(lo, hi, &nan);
    const __m512 visit_scale = VisitScale(max_visits);
    // `GumbelScores`: softmax(logits + q') - n / (1 + N).
    for (int32_t a = 0; a < n; ++a) {
      work[a] = _mm512_fmadd_ps(
          visit_scale, _mm512_mul_ps(_mm512_sub_ps(work[a], lo), rescale),
          logit[a]);
    }
    const __m512 top = Fold<true>(n, work, &nan);
    for (int32_t a = 0; a < n; ++a) {
      const __m512 d = _mm512_sub_ps(work[a], top);
      nan |= _mm512_cmp_ps_mask(d, d, _CMP_UNORD_Q);
      work[a] = XlaExpLanes(d);
    }
    const __m512 improved = _mm512_div_ps(
        _mm512_set1_ps(1.0f), RowSum(n, [&](int32_t a) { return work[a]; }));
    const __m512 visit_share = _mm512_div_ps(
        _mm512_set1_ps(1.0f),
        _mm512_cvtepi32_ps(_mm512_add_epi32(total_visits, _mm512_set1_epi32(1))));
    const __m512i sign = _mm512_set1_epi32(static_cast<int32_t>(0x80000000u));
    for (int32_t a = 0; a < n; ++a) {
      const __m512 share =
          _mm512_mul_ps(_mm512_cvtepi32_ps(visits[a]), visit_share);
      work[a] = _mm512_fmadd_ps(
          work[a], improved,
          _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(share), sign)));
    }
    // `ArgmaxRow`: the first element equal to the maximum.
    const __m512 best = Fold<true>(n, work, &nan);
    __m512i action = _mm512_set1_epi32(-1);
    for (int32_t a = n - 1; a >= 0; --a) {
      action = _mm512_mask_mov_epi32(
          action, _mm512_cmp_ps_mask(work[a], best, _CMP_EQ_OQ),
          _mm512_set1_epi32(a));
    }
    const __mmask16 decided =
        m & ~nan & _mm512_cmpge_epi32_mask(action, zero);
    _mm512_mask_store_epi32(chosen, decided, action);
    return decided;
  }

  // `1 / NanMax(hi - lo, kQEpsilon)` in every lane (lanes whose spread is
  // NaN added to `*nan`), as `GumbelScaledQ` rescales.
  static __m512 Rescale(__m512 lo, __m512 hi, __mmask16* nan) {
    const __m512 spread = _mm512_sub_ps(hi, lo);
    *nan |= _mm512_cmp_ps_mask(spread, spread, _CMP_UNORD_Q);
    return _mm512_div_ps(
        _mm512_set1_ps(1.0f),
        _mm512_mask_mov_ps(
            _mm512_set1_ps(kQEpsilon),
            _mm512_cmp_ps_mask(spread, _mm512_set1_ps(kQEpsilon), _CMP_GT_OQ),
            spread));
  }

  // `(max visits + maxvisit_init) * value_scale` in every lane.
  __m512 VisitScale(__m512i most) const {
    return _mm512_mul_ps(_mm512_add_ps(_mm512_cvtepi32_ps(most),
                                       _mm512_set1_ps(mix_.maxvisit_init)),
                         _mm512_set1_ps(mix_.value_scale));
  }

  // `XlaRowSum` of `get(0) ... get(n - 1)` in every lane.
  template <typename Get>
  static __m512 RowSum(int32_t n, Get get) {
    constexpr int32_t kWindow = 32;
    const __m512 zero = _mm512_setzero_ps();
    if (n <= kWindow) {
      __m512 sum = zero;
      for (int32_t a = 0; a < n; ++a) sum = _mm512_add_ps(sum, get(a));
      return sum;
    }
    const int32_t padding = (kWindow - n % kWindow) % kWindow;
    __m512 total = zero;
    int32_t begin = 0, end = kWindow - padding / 2;
    while (begin < n) {
      if (end - begin == kWindow && end + kWindow <= n) {
        __m512 first = zero, second = zero;
        for (int32_t j = 0; j < kWindow; ++j) {
          first = _mm512_add_ps(first, get(begin + j));
          second = _mm512_add_ps(second, get(end + j));
        }
        total = _mm512_add_ps(total, first);
        total = _mm512_add_ps(total, second);
        begin = end + kWindow;
      } else {
        __m512 sum = zero;
        for (int32_t a = begin; a < std::min(n, end); ++a) {
          sum = _mm512_add_ps(sum, get(a));
        }
        total = _mm512_add_ps(total, sum);
        begin = end;
      }
      end = begin + kWindow;
    }
    return total;
  }

  // `FoldMax` (`kMax`) or `FoldMin` of `v[0, n)` in every lane; lanes with
  // a NaN are added to `*nan`.
  template <bool kMax>
  static __m512 Fold(int32_t n, const __m512* v, __mmask16* nan) {
    const float inf = std::numeric_limits<float>::infinity();
    __m512 result = _mm512_set1_ps(kMax ? -inf : inf);
    // Whether a +0 (`kMax`) or -0 was seen: the sign of a zero extreme.
    const __m512i preferred =
        _mm512_set1_epi32(kMax ? 0 : static_cast<int32_t>(0x80000000u));
    __mmask16 seen = 0;
    for (int32_t a = 0; a < n; ++a) {
      *nan |= _mm512_cmp_ps_mask(v[a], v[a], _CMP_UNORD_Q);
      result = _mm512_mask_mov_ps(
          result, _mm512_cmp_ps_mask(v[a], result, kMax ? _CMP_GT_OQ : _CMP_LT_OQ),
          v[a]);
      seen |= _mm512_cmpeq_epi32_mask(_mm512_castps_si512(v[a]), preferred);
    }
    const __mmask16 at_zero =
        _mm512_cmp_ps_mask(result, _mm512_setzero_ps(), _CMP_EQ_OQ);
    const __m512 plus = _mm512_setzero_ps();
    const __m512 minus = _mm512_set1_ps(-0.0f);
    const __m512 chosen = kMax ? _mm512_mask_blend_ps(seen, minus, plus)
                               : _mm512_mask_blend_ps(seen, plus, minus);
    return _mm512_mask_mov_ps(result, at_zero, chosen);
  }

  const int32_t num_actions_;
  const int32_t* e_;
  const int32_t* st_;
  const float* cache_;
  const MixValue mix_;
  const GumbelSelector* select_;
  uint32_t* gumbel_rows_;
  const bool prefetch_edges_;
  mutable std::vector<__m512> rows_;
};

// Whether Gumbel's lanes prefetch the visited children's edges
// (`GumbelLanes::PrefetchVisitedEdges`): where the edge store (`batch *
// num_nodes * num_actions` records of 24 bytes) is over 32 MB, this
// machine's L3.  With 64 actions on a 2-core AMD EPYC, in one process
// against the same search without it (outputs identical), `DecideNarrow`
// took 0.83x to 0.90x the cycles from 50 MB of store up, and 1.03x to 1.08x
// at 25 MB and less, where its edges are in the caches anyway.
// `$MCTX_PLANNER_PREFETCH_EDGES` = 0 or 1 turns it off or on whatever the
// size (for A/B runs and the tests).
constexpr int64_t kPrefetchEdgesFrom = int64_t{32} << 20;
inline bool PrefetchEdges(int64_t batch, int64_t num_nodes,
                          int32_t num_actions) {
  return ForcedOr("MCTX_PLANNER_PREFETCH_EDGES",
                  batch * num_nodes * num_actions * kEdgeFields * 4 >
                      kPrefetchEdgesFrom);
}

// The descent of examples `[begin, end)` in 16 vector lanes: `vec.Decide`
// picks the actions of the lanes it can (`PuctLanes`, `GumbelLanes`), with
// their children where it knows them (else -1: the edge is read, after
// `vec.Chosen`), the scalar `select` those of the others and every root
// (then `vec.Scalar`).  The 16 lanes advance
// together, one level per turn, each prefetching the row and statistics of
// its next node.  A lane whose path ends takes the range's next example;
// once none is left, a turn with at most `kScalarBelow` lanes runs the
// scalar code alone.  (Two or four groups of lanes taking turns, so that
// each row was prefetched turns earlier, and a turn that first prefetched
// the slots' children were both slower for MuZero at 64 actions, B = 256,
// S = 256: the longer tail of the last paths cost more than the prefetches
// saved.  Two groups whose second joined the first once no example was
// left, so that the tail did not grow, were no faster for MuZero or Gumbel
// either: 0.98x to 1.03x paired, twenty-third session.)  Writes the same
// `(node, action, child)` as `DescendRange`.
//
// The examples come from `rows` (`RangeRows`: a range in order).
template <typename Select, typename Vector, typename Rows>
bool DescendLanes(Rows& rows, int64_t num_nodes,
                  int32_t num_actions, const int32_t* e, const uint32_t* k,
                  int32_t max_depth, Select& select, const Vector& vec,
                  int32_t* node_o, int32_t* action_o, int32_t* child_o) {
  constexpr int kLanes = LaneState::kLanes, kScalarBelow = 3, kRootAhead = 8;
  LaneState g;
  for (int64_t i = 0; i < kRootAhead; ++i) {
    const int64_t b = rows.Ahead(i);
    if (b < 0) break;
    select.Prefetch(b * num_nodes, true);
  }
  // Moves lane `l`'s path to `child` (-1: unexpanded), or ends it (true: it
  // goes on).
  auto advance = [&](int l, int32_t child) {
    Path& q = g.path[l];
    const int64_t b = g.b[l];
    q.child = child;
    if (q.child < 0 || q.depth + 1 >= max_depth) {
      node_o[b] = q.node;
      action_o[b] = q.action;
      child_o[b] = q.child;
      return false;
    }
    q.node = q.child;
    ++q.depth;
    g.at[l] = static_cast<int32_t>(b * num_nodes + q.node);
    select.Prefetch(g.at[l], false);
    return true;
  };
  auto edge_child = [&](int64_t at, int32_t action) {
    return e[(at * num_actions + action) * kEdgeFields + kChild] - 1;
  };
  // Gives lane `l` the next example that goes below its root (the root's
  // selection by `select`), or leaves it idle; false on an error.
  auto start = [&](int l) {
    int64_t b;
    while (rows.Next(&b)) {
      if constexpr (Vector::kStagedRoots) {
        // Roots in two stages: rows and statistics first, then, once a
        // row is in, what its selection reads (`StageNode`).
        const int64_t far = rows.Ahead(2 * kRootAhead - 1);
        if (far >= 0) select.PrefetchRow(far * num_nodes);
        const int64_t near = rows.Ahead(kRootAhead - 1);
        if (near >= 0) select.StageNode(near * num_nodes);
      } else {
        const int64_t ahead = rows.Ahead(kRootAhead - 1);
        if (ahead >= 0) select.Prefetch(ahead * num_nodes, true);
      }
      Path& q = g.path[l];
      q = k == nullptr ? Path{{0, 0}, 0, 0, 0, -1, 0, true, true}
                       : Path{{k[2 * b], k[2 * b + 1]}, 0, 0, 0, -1, 0, true,
                              true};
      g.b[l] = b;
      g.base[l] = static_cast<int32_t>(b * num_nodes);
      if constexpr (Vector::kRoots) {
        // The root is the lane's first node: `Decide`'s or the scalar
        // code's next turn.
        g.at[l] = g.base[l];
        g.active |= 1u << l;
        return true;
      }
      q.action = select(q, b, b * num_nodes);
      if (q.action < 0) return false;
      if (advance(l, edge_child(b * num_nodes, q.action))) {
        g.active |= 1u << l;
        return true;
      }
    }
    return true;
  };
  g.active = 0;
  for (int l = 0; l < kLanes; ++l) {
    g.at[l] = g.base[l] = 0;
    if (!start(l)) return false;
  }
  alignas(64) int32_t chosen[kLanes], chosen_child[kLanes];
  while (g.active != 0) {
    const uint32_t active = g.active;
    const uint32_t decided =
        rows.More() || __builtin_popcount(active) > kScalarBelow
            ? vec.Decide(g, active, chosen, chosen_child)
            : 0u;
    for (uint32_t m = active; m; m &= m - 1) {
      const int l = __builtin_ctz(m);
      Path& q = g.path[l];
      const int64_t at = g.at[l];
      int32_t child;
      if ((decided >> l) & 1u) {
        q.action = chosen[l];
        child = chosen_child[l];
        if (child < 0) {
          vec.Chosen(at, q.action);
          child = edge_child(at, q.action);
        }
      } else {
        q.action = select(q, g.b[l], at);
        if (q.action < 0) return false;
        vec.Scalar(q, at);
        child = edge_child(at, q.action);
      }
      if (!advance(l, child)) {
        g.active &= ~(1u << l);
        if (!start(l)) return false;
      }
    }
  }
  return true;
}
#endif  // AVX-512

// The data of `out`, the result XLA aliases to argument `in` (updated in
// place): the same memory when XLA aliases them, as it should; else `in` is
// copied there first.
template <ffi::DataType T>
ffi::NativeType<T>* InPlace(const ffi::Buffer<T>& in,
                            ffi::ResultBuffer<T>& out) {
  ffi::NativeType<T>* data = out->typed_data();
  if (data != in.typed_data()) {
    std::memcpy(data, in.typed_data(), in.size_bytes());
  }
  return data;
}

// The descent's checks and loop, shared by MuZero's and Gumbel MuZero's.
struct DescentArgs {
  int64_t batch, num_nodes;
  int32_t num_actions;
  const int32_t* e;
  const int32_t* st;
  const bool* legal;  // `[B, N, A]` legal-move masks, or null
};

// Reads the store's shape and the optional legal-move masks (empty: none).
ffi::Error ReadDescentArgs(const ffi::Buffer<ffi::S32>& edges,
                           const ffi::Buffer<ffi::S32>& stats,
                           const ffi::Buffer<ffi::PRED>& legal_mask,
                           DescentArgs* args) {
  const auto dims = edges.dimensions();
  if (dims.size() != 4 || dims[3] != kEdgeFields) {
    return ffi::Error::InvalidArgument("edges must be [B, N, A, 6]");
  }
  const bool masked = legal_mask.element_count() != 0;
  if (masked && legal_mask.element_count() != edges.element_count() / kEdgeFields) {
    return ffi::Error::InvalidArgument("legal must be [B, N, A] or empty");
  }
  *args = DescentArgs{dims[0], dims[1], static_cast<int32_t>(dims[2]),
                      edges.typed_data(), stats.typed_data(),
                      masked ? legal_mask.typed_data() : nullptr};
  return ffi::Error::Success();
}

// `DescendRange` over the whole batch, with a selector from `make_select()`
// per range, split over XLA's threads from `kParallelMin` examples.
template <typename MakeSelect>
bool DescendBatch(ffi::ThreadPool& pool, const DescentArgs& args,
                  const uint32_t* keys, int32_t max_depth,
                  MakeSelect make_select, int32_t* node_o, int32_t* action_o,
                  int32_t* child_o) {
  auto range = [=](int64_t begin, int64_t end) {
    auto select = make_select();
    return DescendRange(begin, end, args.num_nodes, args.num_actions, args.e,
                        args.st, keys, max_depth, select, node_o, action_o,
                        child_o);
  };
  return args.batch < kParallelMin
             ? AdaptiveFor(pool, args.batch, range)
             : ParallelFor(pool, args.batch, kChunk, range);
}

#ifdef MCTX_PLANNER_LANES
// `DescendLanes` over the whole batch, with a selector from `make_select()`
// and its vector step from `make_lanes(select)` per range: below
// `kParallelMin` examples split as `DescendBatch` splits them, else one
// range per thread (the lanes refill from their range).
template <typename MakeSelect, typename MakeLanes>
bool DescendBatchLanes(ffi::ThreadPool& pool, const DescentArgs& args,
                       const uint32_t* keys, int32_t max_depth,
                       MakeSelect make_select, MakeLanes make_lanes,
                       int32_t* node_o, int32_t* action_o, int32_t* child_o) {
  auto range = [=](int64_t begin, int64_t end) {
    auto select = make_select();
    const auto lanes = make_lanes(select);
    RangeRows<> rows{begin, end};
    return DescendLanes(rows, args.num_nodes, args.num_actions, args.e, keys,
                        max_depth, select, lanes, node_o, action_o, child_o);
  };
  const int64_t threads = std::max<int64_t>(1, pool.num_threads());
  return args.batch < kParallelMin
             ? AdaptiveFor(pool, args.batch, range)
             : ParallelFor(pool, args.batch,
                           (args.batch + threads - 1) / threads, range);
}
#endif

// `legal`: the nodes' legal-move masks `[B, N, A]` (the planner's
// `_legal_qtransform`: illegal children score `masked_score`), or empty.
ffi::Error MuzeroDescend(ffi::ThreadPool& pool,
                         const ffi::Buffer<ffi::S32>& edges,
                         const ffi::Buffer<ffi::S32>& stats,
                         const ffi::Buffer<ffi::PRED>& invalid,
                         const ffi::Buffer<ffi::PRED>& legal_mask,
                         const ffi::Buffer<ffi::U32>& keys,
                         const ffi::Buffer<ffi::F32>& scale,
                         const ffi::Buffer<ffi::U32>* cache_in,
                         ffi::ResultBuffer<ffi::U32>* cache_out,
                         int32_t* node_o, int32_t* action_o, int32_t* child_o,
                         int32_t max_depth, float masked_score) {
  DescentArgs args;
  if (auto error = ReadDescentArgs(edges, stats, legal_mask, &args);
      error.failure()) {
    return error;
  }
  // The selection cache `[B, N, SelectCacheWords(A, masked)]`, updated in
  // place.
  uint32_t* cache = nullptr;
  if (cache_in != nullptr) {
    if (cache_in->element_count() !=
        args.batch * args.num_nodes *
            SelectCacheWords(args.num_actions, args.legal != nullptr)) {
      return ffi::Error::InvalidArgument(
          "cache must be [B, N, SelectCacheWords(A, masked)]");
    }
    cache = InPlace(*cache_in, *cache_out);
  }
  const bool* inv = invalid.typed_data();
  const float* sc = scale.typed_data();
  const int64_t table = scale.element_count();
  const auto descend = [&](auto make_select) {
    return DescendBatch(pool, args, keys.typed_data(), max_depth, make_select,
                        node_o, action_o, child_o);
  };
  bool ok;
  if (cache == nullptr) {
    ok = descend([=] {
      return PuctSelector<false>(args.num_actions, args.e, args.st, inv,
                                 args.legal, masked_score, sc, table, nullptr);
    });
  } else if (args.legal == nullptr) {
    const auto make_select = [=] {
      return PuctSelector<true>(args.num_actions, args.e, args.st, inv,
                                args.legal, masked_score, sc, table, cache);
    };
#ifdef MCTX_PLANNER_LANES
    if (LanesEnabled() && args.batch >= kLanesMin &&
        LanesFit(args.batch, args.num_nodes, args.num_actions)) {
      ok = DescendBatchLanes(
          pool, args, keys.typed_data(), max_depth, make_select,
          [=](const PuctSelector<true>& select) {
            return PuctLanes(select, args.num_actions, args.e, args.st,
                             max_depth);
          },
          node_o, action_o, child_o);
    } else
#endif
    {
      ok = descend(make_select);
    }
  } else {
    ok = descend([=] {
      return PuctSelector<true, true>(args.num_actions, args.e, args.st, inv,
                                      args.legal, masked_score, sc, table,
                                      cache);
    });
  }
  if (!ok) return ffi::Error::Internal("node visit count outside the PUCT table");
  return ffi::Error::Success();
}

ffi::Error MuzeroDescendImpl(ffi::ThreadPool pool,
                             ffi::Buffer<ffi::S32> edges,
                             ffi::Buffer<ffi::S32> stats,
                             ffi::Buffer<ffi::PRED> invalid,
                             ffi::Buffer<ffi::PRED> legal_mask,
                             ffi::Buffer<ffi::U32> keys,
                             ffi::Buffer<ffi::F32> scale,
                             ffi::ResultBuffer<ffi::S32> node_out,
                             ffi::ResultBuffer<ffi::S32> action_out,
                             ffi::ResultBuffer<ffi::S32> child_out,
                             int32_t max_depth, float masked_score) {
  return MuzeroDescend(pool, edges, stats, invalid, legal_mask, keys, scale,
                       nullptr, nullptr, node_out->typed_data(),
                       action_out->typed_data(), child_out->typed_data(),
                       max_depth, masked_score);
}

// With the selection cache `[B, N, SelectCacheWords(A, masked)]`, updated in
// place (a separate target: an empty cache operand and result on the
// uncached call made tic-tac-toe's MuZero searches 15% slower).
ffi::Error MuzeroDescendCachedImpl(ffi::ThreadPool pool,
                                   ffi::Buffer<ffi::S32> edges,
                                   ffi::Buffer<ffi::S32> stats,
                                   ffi::Buffer<ffi::PRED> invalid,
                                   ffi::Buffer<ffi::PRED> legal_mask,
                                   ffi::Buffer<ffi::U32> keys,
                                   ffi::Buffer<ffi::F32> scale,
                                   ffi::Buffer<ffi::U32> cache_in,
                                   ffi::ResultBuffer<ffi::S32> node_out,
                                   ffi::ResultBuffer<ffi::S32> action_out,
                                   ffi::ResultBuffer<ffi::S32> child_out,
                                   ffi::ResultBuffer<ffi::U32> cache_out,
                                   int32_t max_depth, float masked_score) {
  return MuzeroDescend(pool, edges, stats, invalid, legal_mask, keys, scale,
                       &cache_in, &cache_out, node_out->typed_data(),
                       action_out->typed_data(), child_out->typed_data(),
                       max_depth, masked_score);
}

// Gumbel MuZero's descent (see GumbelSelector).  The root's action:
// `root_action[B]`, or if that is empty Sequential Halving's, from
// `gumbel[B, A]`, `invalid[B, A]` and `table[max_considered + 1, S]` (the
// considered visit counts).  `legal`: the nodes' legal-move masks
// `[B, N, A]`, or empty.
ffi::Error GumbelDescendImpl(ffi::ThreadPool pool,
                             ffi::Buffer<ffi::S32> edges,
                             ffi::Buffer<ffi::S32> stats,
                             ffi::Buffer<ffi::S32> root_action,
                             ffi::Buffer<ffi::F32> gumbel,
                             ffi::Buffer<ffi::PRED> invalid,
                             ffi::Buffer<ffi::S32> table,
                             ffi::Buffer<ffi::PRED> legal_mask,
                             ffi::Buffer<ffi::F32> cache_in,
                             ffi::Buffer<ffi::U32> rows_in,
                             ffi::ResultBuffer<ffi::S32> node_out,
                             ffi::ResultBuffer<ffi::S32> action_out,
                             ffi::ResultBuffer<ffi::S32> child_out,
                             ffi::ResultBuffer<ffi::F32> cache_out,
                             ffi::ResultBuffer<ffi::U32> rows_out,
                             int32_t max_depth, float value_scale,
                             float maxvisit_init, float masked_score) {
  DescentArgs args;
  if (auto error = ReadDescentArgs(edges, stats, legal_mask, &args);
      error.failure()) {
    return error;
  }
  const int64_t batch = args.batch;
  const int32_t num_actions = args.num_actions;
  GumbelSelector::Root root{nullptr, nullptr, nullptr, nullptr, 0, 0};
  if (root_action.element_count() == batch) {
    root.action = root_action.typed_data();
  } else {
    const auto table_dims = table.dimensions();
    if (gumbel.element_count() != batch * num_actions ||
        invalid.element_count() != batch * num_actions ||
        table_dims.size() != 2 || table_dims[0] < 1) {
      return ffi::Error::InvalidArgument(
          "without root actions: gumbel and invalid [B, A], table [M + 1, S]");
    }
    root = GumbelSelector::Root{
        nullptr, gumbel.typed_data(), invalid.typed_data(), table.typed_data(),
        static_cast<int32_t>(table_dims[0] - 1),
        static_cast<int32_t>(table_dims[1])};
  }
  const MixValue mix{value_scale, maxvisit_init, masked_score};
  // The prior-probability cache, updated in place (aliased), or empty.
  float* cache = nullptr;
  if (cache_in.element_count() != 0) {
    if (cache_in.element_count() != edges.element_count() / kEdgeFields) {
      return ffi::Error::InvalidArgument("cache must be [B, N, A] or empty");
    }
    cache = InPlace(cache_in, cache_out);
  }
  // The narrow nodes' rows (`GumbelRow`), updated in place, or empty.
  uint32_t* rows = nullptr;
  if (rows_in.element_count() != 0) {
    if (rows_in.element_count() !=
            batch * args.num_nodes * GumbelRow::kWords ||
        args.legal != nullptr || num_actions < kShortRow ||
        num_actions > GumbelRow::kMaxActions) {
      return ffi::Error::InvalidArgument(
          "rows must be [B, N, 16] (no legal-move masks, 16 to 254 actions) "
          "or empty");
    }
    rows = InPlace(rows_in, rows_out);
  }
  const auto make_select = [=] {
    return GumbelSelector(num_actions, args.e, args.st, root, mix, args.legal,
                          cache, rows);
  };
  bool ok;
#ifdef MCTX_PLANNER_LANES
  if (LanesEnabled() && (cache != nullptr || rows != nullptr) &&
      args.legal == nullptr &&
      num_actions >= kShortRow && batch >= kLanesMin &&
      LanesFit(batch, args.num_nodes, num_actions)) {
    ok = DescendBatchLanes(
        pool, args, nullptr, max_depth, make_select,
        [=, prefetch = PrefetchEdges(batch, args.num_nodes, num_actions)](
            const GumbelSelector& select) {
          return GumbelLanes(num_actions, args.e, args.st, cache, mix,
                             &select, prefetch);
        },
        node_out->typed_data(), action_out->typed_data(),
        child_out->typed_data());
  } else
#endif
  {
    ok = DescendBatch(pool, args, nullptr, max_depth, make_select,
                      node_out->typed_data(), action_out->typed_data(),
                      child_out->typed_data());
  }
  if (!ok) {
    return ffi::Error::Internal(
        "root action outside [0, A), or root visits outside the table");
  }
  return ffi::Error::Success();
}

// `GumbelScores` of independent rows (`logits`, `qvalues` `[R, A]`, `visits`
// `[R, A]`, `raw` `[R]`): the probe that `_native.gumbel_exact` compares with
// XLA's computation of mctx's formula (through the code the descent uses
// for that number of actions).
struct ArrayRow {
  const float* logits;
  const float* qvalues;
  const int32_t* counts;
  float logit(int32_t a) const { return logits[a]; }
  float q(int32_t a) const { return qvalues[a]; }
  int32_t visits(int32_t a) const { return counts[a]; }
};

ffi::Error GumbelScoresImpl(ffi::Buffer<ffi::F32> logits,
                            ffi::Buffer<ffi::F32> qvalues,
                            ffi::Buffer<ffi::S32> visits,
                            ffi::Buffer<ffi::F32> raw,
                            ffi::Buffer<ffi::PRED> legal_mask,
                            ffi::Buffer<ffi::F32> gumbel,
                            ffi::Buffer<ffi::PRED> invalid,
                            ffi::Buffer<ffi::S32> considered,
                            ffi::ResultBuffer<ffi::F32> scores,
                            float value_scale, float maxvisit_init,
                            float masked_score) {
  const auto dims = logits.dimensions();
  if (dims.size() != 2) return ffi::Error::InvalidArgument("rows must be [R, A]");
  const int64_t rows = dims[0];
  const int32_t num_actions = static_cast<int32_t>(dims[1]);
  const bool* legal =
      legal_mask.element_count() == 0 ? nullptr : legal_mask.typed_data();
  if (legal != nullptr && legal_mask.element_count() != logits.element_count()) {
    return ffi::Error::InvalidArgument("legal must be [R, A] or empty");
  }
  // Root scores where `gumbel` is given (`[R, A]`, with `invalid` `[R, A]`
  // and the considered visit counts `[R]`), else interior scores.
  const bool root = gumbel.element_count() != 0;
  if (root && (gumbel.element_count() != logits.element_count() ||
               invalid.element_count() != logits.element_count() ||
               considered.element_count() != rows)) {
    return ffi::Error::InvalidArgument("root rows must be [R, A], [R, A], [R]");
  }
  const MixValue mix{value_scale, maxvisit_init, masked_score};
  std::vector<float> scratch(3 * static_cast<size_t>(num_actions));
  float* probs = scratch.data();
  float* completed = probs + num_actions;
  float* work = completed + num_actions;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t at = r * num_actions;
    const GumbelNode wide{logits.typed_data() + at, qvalues.typed_data() + at,
                          visits.typed_data() + at};
    const GumbelNode* node = num_actions < kShortRow ? nullptr : &wide;
    const ArrayRow row{wide.logit, wide.q, wide.visits};
    GumbelNodePriorProbs(row, node, num_actions, probs);
    const GumbelRootInputs root_inputs =
        root ? GumbelRootInputs{gumbel.typed_data() + at,
                                invalid.typed_data() + at,
                                considered.typed_data()[r]}
             : GumbelRootInputs{nullptr, nullptr, 0};
    GumbelNodeScores(row, node, num_actions, raw.typed_data()[r], mix,
                     legal == nullptr ? nullptr : legal + at, probs,
                     root ? &root_inputs : nullptr, completed, work,
                     scores->typed_data() + at);
  }
  return ffi::Error::Success();
}

// mctx's backward pass from `leaf[b]` to the root, for examples
// `[begin, end)` (see ExpandBackupImpl).  As in the descent, `kGroup`
// paths go up in turns.  A path reads its node's link one turn before it
// updates the parent, so that everything a turn reads or writes (the
// parent's statistics, its edge to the node, the parent's own link) was
// prefetched a whole turn earlier; reading the link and updating the
// parent in the same turn waited on the parent's lines (MuZero, 64
// actions, B = 256, S = 256: 33 to 36 ms of expansion and backup against
// 39).  The leaf's link, just written by the expansion, is read when the
// group starts, so no path takes an extra turn.
//
// With `rows` (MuZero's unmasked selection-cache rows of up to 64 actions,
// `[B, N, 16]`): the edges of narrow nodes are left as they are
// (`LazyEdges`), and their rows are what a turn prefetches instead.
void BackupRange(int64_t begin, int64_t end, int64_t num_nodes,
                 int64_t num_actions, int32_t* st, int32_t* e,
                 const int32_t* ln, const int32_t* lf,
                 const uint32_t* rows = nullptr) {
  constexpr int64_t kRowWords = LaneSlots::kRowWords;
  constexpr int kGroup = 16;
  struct Path {
    int32_t node, node_visit, parent, action;
    float value, node_value, reward, discount;
  };
  // Reads node `q.node`'s link into `q` and prefetches what the next turn
  // reads and writes: the parent's statistics, its edge to the node and the
  // parent's own link.
  auto up = [&](int64_t b, Path& q) {
    const int32_t* link = ln + (b * num_nodes + q.node) * kLinkFields;
    q.parent = link[kLParent] - 1;
    q.action = link[kLAction] - 1;
    q.reward = AsFloat(link[kLReward]);
    q.discount = AsFloat(link[kLDiscount]);
    const int64_t at = b * num_nodes + q.parent;
    __builtin_prefetch(st + at * kStatFields, 1);
    if (rows == nullptr) {
      __builtin_prefetch(e + (at * num_actions + q.action) * kEdgeFields, 1);
    } else {
      __builtin_prefetch(rows + at * kRowWords);
    }
    __builtin_prefetch(ln + at * kLinkFields);
  };
  for (int64_t b0 = begin; b0 < end; b0 += kGroup) {
    const int group = static_cast<int>(std::min<int64_t>(end - b0, kGroup));
    Path path[kGroup];
    int remaining = 0;
    for (int i = 0; i < group; ++i) {
      const int64_t b = b0 + i;
      const int32_t node = lf[b];
      const int32_t* leaf_stat = st + (b * num_nodes + node) * kStatFields;
      const float value = AsFloat(leaf_stat[kSValue]);
      Path& q = path[i];
      q.node = node;
      q.node_visit = leaf_stat[kSVisits];
      q.value = q.node_value = value;
      if (node != 0) {
        ++remaining;
        up(b, q);
      }
    }
    while (remaining > 0) {
      for (int i = 0; i < group; ++i) {
        Path& q = path[i];
        if (q.node == 0) continue;
        const int64_t b = b0 + i;
        const int32_t parent = q.parent;
        int32_t* parent_stat = st + (b * num_nodes + parent) * kStatFields;
        const int32_t count = parent_stat[kSVisits];
        const float new_value = MulAdd(q.discount, q.value, q.reward);
        const float parent_value =
            MulAdd(AsFloat(parent_stat[kSValue]), static_cast<float>(count),
                   new_value) / (static_cast<float>(count) + 1.0f);
        parent_stat[kSVisits] = count + 1;
        parent_stat[kSValue] = AsBits(parent_value);
        const int64_t at = b * num_nodes + parent;
        int32_t* edge = e + (at * num_actions + q.action) * kEdgeFields;
        const uint32_t* c = rows == nullptr ? nullptr : rows + at * kRowWords;
        const int32_t visited =
            c == nullptr || c[0] != kCacheReady
                ? -1
                : LazyEdges::VisitedCount(c, static_cast<int32_t>(num_actions));
        if (visited < 0 || visited > 3) {
          edge[kValue] = AsBits(q.node_value);
          edge[kVisits] = q.node_visit;
        } else if (visited == 3) {
          // The node may have just turned wide: all its edges (the child's
          // statistics are this level's, written one turn before).
          LazyEdges::Sync(e + at * num_actions * kEdgeFields, c,
                          st + b * num_nodes * kStatFields,
                          static_cast<int32_t>(num_actions));
        }
        q.value = new_value;
        q.node_value = parent_value;
        q.node_visit = count + 1;
        q.node = parent;
        if (parent == 0) {
          --remaining;
        } else {
          up(b, q);
        }
      }
    }
  }
}

// The expansion's writes to the packed store, as `_fast_search._expand`
// makes them, then mctx's backward pass from the new node (`BackupRange`),
// in place: for each example, node `child[b]` gets its visit count plus one,
// `value[b]` (twice), its parent link (`parent[b]`, `action[b]`,
// `reward[b]`, `discount[b]`) and its children's priors `record[b]` (the
// logits, or their probabilities where the store keeps those); the edge
// `(parent[b], action[b])` gets the reward, the discount and the child.
//
// With `rows` (MuZero's unmasked selection cache `[B, N, 16]`, up to 64
// actions), also: node `child[b]`'s row is built (`CacheTopTwo` over its
// new priors, no child visited), so that its first descent reads the row
// instead of scoring all its children; and the parent's slots
// (`LaneSlots::Fill`) are written, now that the edge names its child.  A
// node evaluated again at the depth limit gets a new row too: it is never
// interior, so the row is never read.
//
// `operator()` does it for examples `[begin, end)`, over the store's
// pointers that `PrepareExpand` sets.
struct ExpandRows {
  int64_t num_nodes, num_actions;
  int32_t* st;
  int32_t* e;
  int32_t* ln;
  uint32_t* rows;  // or null
  const int32_t* pa;
  const int32_t* ac;
  const int32_t* ch;
  const float* value;
  const float* reward;
  const float* discount;
  const float* record;
  // With `rows`: the backup leaves narrow nodes' edges (`LazyEdges`).
  bool lazy_edges = false;
  // Or null: Gumbel's rows (`GumbelRow`), each new node's built from its
  // logits, so that its first selection is narrow too.
  uint32_t* gumbel_rows = nullptr;

  bool operator()(int64_t begin, int64_t end) const {
    // Gumbel's new rows are lines not yet in cache: fetched for writing a
    // few examples ahead.
    constexpr int64_t kRowsAhead = 4;
    if (gumbel_rows != nullptr) {
      for (int64_t b = begin; b < std::min(end, begin + kRowsAhead); ++b) {
        __builtin_prefetch(gumbel_rows + (b * num_nodes + ch[b]) * GumbelRow::kWords, 1);
      }
    }
    for (int64_t b = begin; b < end; ++b) {
      if (gumbel_rows != nullptr && b + kRowsAhead < end) {
        const int64_t ahead = b + kRowsAhead;
        __builtin_prefetch(
            gumbel_rows + (ahead * num_nodes + ch[ahead]) * GumbelRow::kWords, 1);
      }
      const int64_t at = b * num_nodes + ch[b];
      const int32_t reward_bits = AsBits(reward[b]);
      const int32_t discount_bits = AsBits(discount[b]);
      int32_t* s = st + at * kStatFields;
      s[kSVisits] = s[kSVisits] + 1;
      s[kSValue] = s[kSRaw] = AsBits(value[b]);
      int32_t* l = ln + at * kLinkFields;
      l[kLParent] = pa[b] + 1;
      l[kLAction] = ac[b] + 1;
      l[kLReward] = reward_bits;
      l[kLDiscount] = discount_bits;
      int32_t* rec = e + at * num_actions * kEdgeFields;
      const float* priors = record + b * num_actions;
      for (int64_t a = 0; a < num_actions; ++a) {
        rec[a * kEdgeFields + kLogit] = AsBits(priors[a]);
      }
      int32_t* edge =
          e + ((b * num_nodes + pa[b]) * num_actions + ac[b]) * kEdgeFields;
      edge[kReward] = reward_bits;
      edge[kDiscount] = discount_bits;
      edge[kChild] = ch[b] + 1;
      if (gumbel_rows != nullptr) {
        // A node evaluated for the first time has no visited children;
        // one evaluated again (at the depth limit) is built from its record.
        float scratch[2 * GumbelRow::kMaxActions];
        uint32_t* c = gumbel_rows + at * GumbelRow::kWords;
        const int32_t n = static_cast<int32_t>(num_actions);
        if (s[kSVisits] == 1) {
          GumbelRow::BuildNew(priors, n, scratch, c);
        } else {
          GumbelRow::Build(rec, n, -1, scratch, c);
        }
      }
      if (rows != nullptr) {
        constexpr int64_t kRowWords = LaneSlots::kRowWords;
        uint32_t* c = rows + at * kRowWords;
        std::fill(c, c + kRowWords, 0u);
        // Ranked from the priors just written (the same bits), where the
        // vector code can.
        if (!RankCacheRow(priors, static_cast<int32_t>(num_actions), c)) {
          CacheTopTwo<false>(rec, static_cast<int32_t>(num_actions), c);
        }
        const int64_t up = b * num_nodes + pa[b];
        LaneSlots::Fill(e + up * num_actions * kEdgeFields,
                        static_cast<int32_t>(num_actions),
                        rows + up * kRowWords);
      }
    }
    BackupRange(begin, end, num_nodes, num_actions, st, e, ln, ch,
                lazy_edges ? rows : nullptr);
    return true;
  }
};

// Checks the expansion's operands and sets `*out` to write in place of
// them (the results alias the store).
ffi::Error PrepareExpand(const ffi::Buffer<ffi::S32>& stats_in,
                         const ffi::Buffer<ffi::S32>& edges_in,
                         const ffi::Buffer<ffi::S32>& links_in,
                         const ffi::Buffer<ffi::S32>& parent,
                         const ffi::Buffer<ffi::S32>& action,
                         const ffi::Buffer<ffi::S32>& child,
                         const ffi::Buffer<ffi::F32>& value,
                         const ffi::Buffer<ffi::F32>& reward,
                         const ffi::Buffer<ffi::F32>& discount,
                         const ffi::Buffer<ffi::F32>& record,
                         ffi::ResultBuffer<ffi::S32>& stats_out,
                         ffi::ResultBuffer<ffi::S32>& edges_out,
                         ffi::ResultBuffer<ffi::S32>& links_out,
                         const ffi::Buffer<ffi::U32>* rows_in,
                         ffi::ResultBuffer<ffi::U32>* rows_out,
                         ExpandRows* out) {
  const auto dims = edges_in.dimensions();
  if (dims.size() != 4 || dims[3] != kEdgeFields) {
    return ffi::Error::InvalidArgument("edges must be [B, N, A, 6]");
  }
  const int64_t batch = dims[0], num_nodes = dims[1], num_actions = dims[2];
  if (parent.element_count() != batch || action.element_count() != batch ||
      child.element_count() != batch || value.element_count() != batch ||
      reward.element_count() != batch || discount.element_count() != batch ||
      record.element_count() != batch * num_actions) {
    return ffi::Error::InvalidArgument(
        "parent, action, child, value, reward, discount must be [B] and "
        "record [B, A]");
  }
  if (rows_in != nullptr &&
      (num_actions > 64 ||
       CacheLayout<false>::Words(num_actions) != LaneSlots::kRowWords ||
       rows_in->element_count() != batch * num_nodes * LaneSlots::kRowWords)) {
    return ffi::Error::InvalidArgument(
        "rows must be [B, N, 16] (unmasked, up to 64 actions)");
  }
  const int32_t* pa = parent.typed_data();
  const int32_t* ac = action.typed_data();
  const int32_t* ch = child.typed_data();
  for (int64_t b = 0; b < batch; ++b) {
    if (pa[b] < 0 || pa[b] >= num_nodes || ch[b] < 0 || ch[b] >= num_nodes ||
        ac[b] < 0 || ac[b] >= num_actions) {
      return ffi::Error::InvalidArgument("expansion node or action out of range");
    }
  }
  *out = ExpandRows{num_nodes, num_actions,
                    InPlace(stats_in, stats_out), InPlace(edges_in, edges_out),
                    InPlace(links_in, links_out),
                    rows_in == nullptr ? nullptr : InPlace(*rows_in, *rows_out),
                    pa, ac, ch,
                    value.typed_data(), reward.typed_data(),
                    discount.typed_data(), record.typed_data()};
  return ffi::Error::Success();
}

// Runs the expansion and backup `range` (from `PrepareExpand`) over the
// batch.
ffi::Error RunExpand(ffi::ThreadPool& pool, const ExpandRows& range,
                     int64_t batch) {
  // Examples touch disjoint parts of the store, so ranges of them can run on
  // XLA's threads, from `kParallelExpandMin` examples: at B = 1024 this took
  // 104 us per simulation against 144 on one thread (9 actions; 64: 266
  // against 433), but at B = 256 it was no faster (45 against 39 us).
  // Below that, split only once the backups prove long (`AdaptiveFor`:
  // deep paths, e.g. MuZero's with 64 actions).
  constexpr int64_t kParallelExpandMin = 512;
  if (batch < kParallelExpandMin) {
    AdaptiveFor(pool, batch, range);
  } else if (!ParallelFor(pool, batch, kChunk, range)) {
    return ffi::Error::Internal("expansion failed");
  }
  return ffi::Error::Success();
}

// One simulation's expansion and backup (`RunExpand` with MuZero's
// unmasked selection-cache rows), then, if `descend`, the next simulation's
// cached MuZero descent (`MuzeroDescend`): example by example, each tree
// backed up just before its next descent starts (`kReadyAhead` examples
// ahead), so that the descent finds the path it walks down, the one the
// backup just walked up, in cache.  As the two calls one after the other,
// the outputs are the same; they differ in the order in which the examples'
// trees are touched only.
//
// Why: with 64 actions MuZero's paths are ~90 levels deep at S = 256, so
// at B = 1024 the rows and statistics the descent reads (~12 MB) no longer
// stay in cache between the backup and the next descent.
ffi::Error MuzeroExpandDescend(
    ffi::ThreadPool& pool, const ExpandRows& expand, int64_t batch,
    const ffi::Buffer<ffi::PRED>& invalid, const ffi::Buffer<ffi::U32>& keys,
    const ffi::Buffer<ffi::F32>& scale, bool descend, int32_t* node_o,
    int32_t* action_o, int32_t* child_o, int32_t max_depth) {
  const int64_t num_nodes = expand.num_nodes;
  const int32_t num_actions = static_cast<int32_t>(expand.num_actions);
  if (!descend) {
    std::fill(node_o, node_o + batch, 0);
    std::fill(action_o, action_o + batch, 0);
    std::fill(child_o, child_o + batch, 0);
    return RunExpand(pool, expand, batch);
  }
  if (invalid.element_count() != batch * num_actions ||
      keys.element_count() != 2 * batch) {
    return ffi::Error::InvalidArgument("invalid must be [B, A], keys [B, 2]");
  }
  const bool* inv = invalid.typed_data();
  const float* sc = scale.typed_data();
  const int64_t table = scale.element_count();
  const uint32_t* k = keys.typed_data();
  // The expansion of a range's examples up to a bound, `kReadyAhead` at a
  // time.
  constexpr int64_t kReadyAhead = 16;
  struct Ready {
    const ExpandRows* expand;
    int64_t* done;
    int64_t end;
    void operator()(int64_t upto) const {
      while (*done < upto) {
        const int64_t last = std::min(end, *done + kReadyAhead);
        (*expand)(*done, last);
        *done = last;
      }
    }
  };
  const auto make_select = [&] {
    return PuctSelector<true>(num_actions, expand.e, expand.st, inv, nullptr,
                              0.f, sc, table, expand.rows);
  };
#ifdef MCTX_PLANNER_LANES
  const bool lanes = LanesEnabled() && batch >= kLanesMin &&
                     LanesFit(batch, num_nodes, num_actions);
#endif
  // Examples `[begin, end)`, expanded `kReadyAhead` at a time just before
  // their descents.
  auto range = [&](int64_t begin, int64_t end) {
    int64_t done = begin;
    const Ready ready{&expand, &done, end};
    bool ok;
    auto select = make_select();
#ifdef MCTX_PLANNER_LANES
    if (lanes) {
      const PuctLanes vec(select, num_actions, expand.e, expand.st,
                          max_depth);
      RangeRows<Ready> rows{begin, end, ready};
      ok = DescendLanes(rows, num_nodes, num_actions, expand.e, k, max_depth,
                        select, vec, node_o, action_o, child_o);
    } else
#endif
    {
      ok = DescendRange(begin, end, num_nodes, num_actions, expand.e,
                        expand.st, k, max_depth, select, node_o, action_o,
                        child_o, ready);
    }
    ready(end);
    return ok;
  };
  bool ok;
  if (batch < kParallelMin) {
    ok = AdaptiveFor(pool, batch, range);
  }
#ifdef MCTX_PLANNER_LANES
  else if (lanes) {
    // One task per thread, each taking blocks of `kReadyAhead` examples
    // from a shared counter (so that a slow thread takes fewer) and
    // expanding each block as it takes it.
    std::atomic<int64_t> next_block{0};
    struct BlockRows {
      const ExpandRows* expand;
      std::atomic<int64_t>* next_block;
      int64_t batch, next = 0, end = 0;

      bool More() const {
        return next < end ||
               next_block->load(std::memory_order_relaxed) * kReadyAhead <
                   batch;
      }
      bool Next(int64_t* b) {
        if (next >= end) {
          const int64_t first = next_block->fetch_add(1) * kReadyAhead;
          if (first >= batch) return false;
          next = first;
          end = std::min(batch, first + kReadyAhead);
          (*expand)(next, end);
        }
        *b = next++;
        return true;
      }
      int64_t Ahead(int64_t i) const { return next + i < end ? next + i : -1; }
    };
    const int64_t threads = std::max<int64_t>(1, pool.num_threads());
    ok = ParallelFor(pool, threads, 1, [&](int64_t, int64_t) {
      auto select = make_select();
      const PuctLanes vec(select, num_actions, expand.e, expand.st, max_depth);
      BlockRows rows{&expand, &next_block, batch};
      return DescendLanes(rows, num_nodes, num_actions, expand.e, k,
                          max_depth, select, vec, node_o, action_o, child_o);
    });
  }
#endif
  else {
    ok = ParallelFor(pool, batch, kChunk, range);
  }
  if (!ok) return ffi::Error::Internal("node visit count outside the PUCT table");
  return ffi::Error::Success();
}

// Asks the kernel for transparent huge pages over the 2 MB pages inside
// `[data, data + bytes)` (Linux; elsewhere, and where THP is off, nothing):
// advice on memory not touched yet, so that its first writes fault in 2 MB
// pages instead of 4 KB ones.
inline void AdviseHugePages(void* data, int64_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t{1} << 21;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) & ~(kHuge - 1);
  if (end > begin) {
    madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
  }
#else
  (void)data;
  (void)bytes;
#endif
}

// Whether `UnpackEdgesImpl` writes its outputs (`fields` arrays of `count`
// int32) with non-temporal stores, around the caches: where the outputs are
// 64-byte aligned and together larger than `kStreamFrom`, half a typical
// last-level cache (the store they are read from is as large; `sysconf`'s
// L3 size is unreliable: 320 MB on the 2-core virtual machine of
// docs/benchmarks.md, whose cores share 32 MB).  Ordinary stores then read
// every line before writing it, and fill the caches with lines the search
// does not read again.  There, whole-tree searches with 64 actions and
// S = 256 took 0.977x to 0.988x the time (Gumbel MuZero) and 0.992x to
// 0.995x (MuZero) from 21 MB of outputs (B = 64) to 404 MB (B = 1024),
// and streaming was 0.8% to 1.5% slower at 1.6 and 6 MB, hence the
// threshold (docs/benchmarks.md, "Gumbel's lanes decide at once; the
// unpacked tree streamed").
// `$MCTX_PLANNER_STREAM_UNPACK` = 0 or 1 turns it off or on whatever the
// size (for A/B runs and the tests), alignment permitting.
constexpr int64_t kStreamFrom = int64_t{16} << 20;
inline bool StreamOutputs(int32_t* const* outputs, int fields, int64_t count) {
#if defined(__SSE2__)
  for (int f = 0; f < fields; ++f) {
    if (reinterpret_cast<uintptr_t>(outputs[f]) % 64 != 0) return false;
  }
  return ForcedOr("MCTX_PLANNER_STREAM_UNPACK",
                  count * fields * 4 > kStreamFrom);
#else
  (void)outputs;
  (void)fields;
  (void)count;
  return false;
#endif
}

// The packed edge store `[B, N, A, 6]` as mctx's tree arrays `[B, N, A]`,
// in one pass (XLA reads the whole store once per array): children's index
// (the stored child minus one), visit counts, rewards, discounts and
// values, and their prior logits if `logits` is not empty (else the store
// keeps probabilities and the logits elsewhere).  An expanded child's visit
// count and value are those of its statistics (`stats`, `[B, N, 3]`), which
// its edge holds too unless the backup left it (`LazyEdges`).
ffi::Error UnpackEdgesImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::S32> edges,
                           ffi::Buffer<ffi::S32> stats,
                           ffi::ResultBuffer<ffi::S32> index,
                           ffi::ResultBuffer<ffi::S32> visits,
                           ffi::ResultBuffer<ffi::F32> rewards,
                           ffi::ResultBuffer<ffi::F32> discounts,
                           ffi::ResultBuffer<ffi::F32> values,
                           ffi::ResultBuffer<ffi::F32> logits) {
  const int64_t count = edges.element_count() / kEdgeFields;
  if (edges.element_count() % kEdgeFields != 0 ||
      index->element_count() != count || visits->element_count() != count ||
      rewards->element_count() != count ||
      discounts->element_count() != count ||
      values->element_count() != count ||
      (logits->element_count() != count && logits->element_count() != 0)) {
    return ffi::Error::InvalidArgument(
        "unpack_edges: outputs must be edges.shape[:-1] (logits: or empty)");
  }
  const auto dims = edges.dimensions();
  if (dims.size() != 4 || stats.element_count() != dims[0] * dims[1] * kStatFields) {
    return ffi::Error::InvalidArgument(
        "unpack_edges: edges must be [B, N, A, 6] and stats [B, N, 3]");
  }
  // Edges per example.
  const int64_t per_example = dims[1] * dims[2];
  const int32_t* st = stats.typed_data();
  const int32_t* e = edges.typed_data();
  int32_t* io = index->typed_data();
  int32_t* vo = visits->typed_data();
  int32_t* ro = reinterpret_cast<int32_t*>(rewards->typed_data());
  int32_t* dso = reinterpret_cast<int32_t*>(discounts->typed_data());
  int32_t* qo = reinterpret_cast<int32_t*>(values->typed_data());
  int32_t* lo = logits->element_count() == 0
                    ? nullptr
                    : reinterpret_cast<int32_t*>(logits->typed_data());
  // Bits are copied as they are (floats stay bit for bit).
  constexpr int64_t kChunkEdges = 1 << 16;
  const int64_t num_nodes = dims[1];
  // Edge `i`'s five (with `lo`, six) outputs: `out[f]` of field `f`.
  const auto unpack = [=](int64_t i, int32_t* out) {
    const int32_t* r = e + i * kEdgeFields;
    const int32_t child = r[kChild];
    // The child must be a node of the example (as the kernels write it).
    const int32_t* cs =
        child > 0 && child <= num_nodes
            ? st + ((i / per_example) * num_nodes + child - 1) * kStatFields
            : nullptr;
    out[0] = child - 1;
    out[1] = cs == nullptr ? r[kVisits] : cs[kSVisits];
    out[2] = r[kReward];
    out[3] = r[kDiscount];
    out[4] = cs == nullptr ? r[kValue] : cs[kSValue];
    out[5] = r[kLogit];
  };
  int32_t* const outputs[6] = {io, vo, ro, dso, qo, lo};
  const int fields = lo == nullptr ? 5 : 6;
  const bool stream = StreamOutputs(outputs, fields, count);
  const auto range = [=](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const int64_t first = c * kChunkEdges;
      const int64_t last = std::min(count, first + kChunkEdges);
      int64_t i = first;
#if defined(__SSE2__)
      if (stream) {
        // Whole cache lines of every output (16 edges, from `first`, a
        // multiple of 16: aligned), written around the caches
        // (`StreamOutputs`); then the rest as below.
        alignas(64) int32_t line[6][16];
        for (; i + 16 <= last; i += 16) {
          for (int j = 0; j < 16; ++j) {
            int32_t out[6];
            unpack(i + j, out);
            for (int f = 0; f < 6; ++f) line[f][j] = out[f];
          }
          for (int f = 0; f < fields; ++f) {
            __m128i* to = reinterpret_cast<__m128i*>(outputs[f] + i);
            const __m128i* from = reinterpret_cast<const __m128i*>(line[f]);
            for (int q = 0; q < 4; ++q) {
              _mm_stream_si128(to + q, _mm_load_si128(from + q));
            }
          }
        }
      }
#endif
      for (; i < last; ++i) {
        int32_t out[6];
        unpack(i, out);
        io[i] = out[0];
        vo[i] = out[1];
        ro[i] = out[2];
        dso[i] = out[3];
        qo[i] = out[4];
        if (lo != nullptr) lo[i] = out[5];
      }
    }
#if defined(__SSE2__)
    // The streamed lines are visible to the threads that read the outputs
    // next once the fence has drained them.
    if (stream) _mm_sfence();
#endif
    return true;
  };
  const int64_t chunks = (count + kChunkEdges - 1) / kChunkEdges;
  if (!ParallelFor(pool, chunks, 1, range)) {
    return ffi::Error::Internal("unpack_edges failed");
  }
  return ffi::Error::Success();
}

// `jax.lax.top_k` of each row of `x` `[..., n]`: the `k` largest values and
// their indices, in XLA's order: descending by the total order of the
// float bits (+NaN above +inf, +0 above -0, -NaN below -inf), equal values
// by ascending index.  The bits' order-keeping integer `u` makes that order
// plain integer order.  A radix select finds the `k` largest: a histogram
// of the top byte of `u` tells which buckets are taken whole and which one
// holds the k-th largest, whose elements the next byte splits again (equal
// `u` are taken by lower index); then the `k` are sorted by `(u, -index)`.
// About O(n + k log k) per row, against the O(n log k) heap of XLA:CPU's
// TopK, whose comparisons call a compiled comparator (500 items, k = 64:
// 13.6 us per row there).
inline uint32_t OrderedBits(float f) {
  const int32_t bits = BitCast<int32_t>(f);
  // Negative floats order by reversed magnitude; the sign flip makes the
  // signed order unsigned.
  return static_cast<uint32_t>(bits ^ ((bits >> 31) & 0x7FFFFFFF)) ^
         0x80000000u;
}

// The indices of the `k` largest of `u[0, n)` (equal ones by lower index),
// in `chosen` (any order); `candidates` is scratch.
inline void RadixSelect(const uint32_t* u, int32_t n, int32_t k,
                        std::vector<int32_t>& candidates,
                        std::vector<int32_t>& chosen) {
  chosen.clear();
  candidates.resize(n);
  for (int32_t i = 0; i < n; ++i) candidates[i] = i;
  int32_t need = k;
  for (int shift = 24; shift >= 0 && need > 0; shift -= 8) {
    if (static_cast<int32_t>(candidates.size()) == need) break;
    int32_t count[256] = {0};
    for (int32_t i : candidates) ++count[(u[i] >> shift) & 255u];
    int32_t bucket = 255, above = 0;
    while (above + count[bucket] < need) above += count[bucket--];
    // Buckets above are taken whole; the bucket holding the k-th largest is
    // split by the next byte (in index order, kept).
    int32_t kept = 0;
    for (int32_t i : candidates) {
      const int32_t byte = static_cast<int32_t>((u[i] >> shift) & 255u);
      if (byte > bucket) {
        chosen.push_back(i);
      } else if (byte == bucket) {
        candidates[kept++] = i;
      }
    }
    candidates.resize(kept);
    need -= above;
  }
  // What is left is equal in `u` (or exactly what is needed): lower
  // indices first.
  chosen.insert(chosen.end(), candidates.begin(), candidates.begin() + need);
}

ffi::Error TopKImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x,
                    ffi::ResultBuffer<ffi::F32> values,
                    ffi::ResultBuffer<ffi::S32> indices) {
  // Any leading dimensions are rows (a vmapped call adds one).
  const auto dims = x.dimensions();
  const auto out = values->dimensions();
  const int64_t n = dims.size() == 0 ? 0 : dims.back();
  const int64_t k = out.size() == 0 ? -1 : out.back();
  if (n <= 0 || k < 0 || k > n ||
      values->element_count() != x.element_count() / n * k ||
      indices->element_count() != values->element_count()) {
    return ffi::Error::InvalidArgument(
        "top_k: x must be [..., n] and the outputs [..., k] with k <= n");
  }
  const int64_t rows = x.element_count() / n;
  const float* in = x.typed_data();
  float* value_out = values->typed_data();
  int32_t* index_out = indices->typed_data();
  const auto range = [=](int64_t begin, int64_t end) {
    std::vector<uint32_t> u(n);
    std::vector<int32_t> candidates, chosen;
    std::vector<uint64_t> keys(k);
    for (int64_t r = begin; r < end; ++r) {
      const float* row = in + r * n;
      for (int64_t i = 0; i < n; ++i) u[i] = OrderedBits(row[i]);
      RadixSelect(u.data(), static_cast<int32_t>(n), static_cast<int32_t>(k),
                  candidates, chosen);
      // Largest first, equal values by lower index: `u` above the index's
      // complement.
      for (int64_t j = 0; j < k; ++j) {
        const uint32_t i = static_cast<uint32_t>(chosen[j]);
        keys[j] = (static_cast<uint64_t>(u[i]) << 32) | ~i;
      }
      std::sort(keys.begin(), keys.end(), std::greater<uint64_t>());
      for (int64_t j = 0; j < k; ++j) {
        const int32_t i = static_cast<int32_t>(
            ~static_cast<uint32_t>(keys[j] & 0xFFFFFFFFu));
        value_out[r * k + j] = row[i];
        index_out[r * k + j] = i;
      }
    }
    return true;
  };
  AdaptiveFor(pool, rows, range);
  return ffi::Error::Success();
}

}  // namespace

// Actions per PUCT instruction (8 with AVX2, else 1: the portable code), so
// that the tests can tell which of the two they cover.
extern "C" int MctxPlannerPuctLanes() {
#if defined(__AVX2__) && defined(__FMA__)
  return 8;
#else
  return 1;
#endif
}

namespace {
// The operands both MuZero descents share.
auto MuzeroDescendBinding() {
  return ffi::Ffi::Bind()
      .Ctx<ffi::ThreadPool>()
      .Arg<ffi::Buffer<ffi::S32>>()
      .Arg<ffi::Buffer<ffi::S32>>()
      .Arg<ffi::Buffer<ffi::PRED>>()
      .Arg<ffi::Buffer<ffi::PRED>>()
      .Arg<ffi::Buffer<ffi::U32>>()
      .Arg<ffi::Buffer<ffi::F32>>();
}
}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(MctxPlannerMuzeroDescend, MuzeroDescendImpl,
                              MuzeroDescendBinding()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Attr<int32_t>("max_depth")
                                  .Attr<float>("masked_score"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(MctxPlannerMuzeroDescendCached,
                              MuzeroDescendCachedImpl,
                              MuzeroDescendBinding()
                                  .Arg<ffi::Buffer<ffi::U32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::U32>>()
                                  .Attr<int32_t>("max_depth")
                                  .Attr<float>("masked_score"));

namespace {
// `rows_in`: Gumbel's rows (`GumbelRow`, `[B, N, 16]`, updated in place: each
// new node's is built from its logits), or empty.
ffi::Error ExpandBackupImpl(
    ffi::ThreadPool pool, ffi::Buffer<ffi::S32> stats_in,
    ffi::Buffer<ffi::S32> edges_in, ffi::Buffer<ffi::S32> links_in,
    ffi::Buffer<ffi::S32> parent, ffi::Buffer<ffi::S32> action,
    ffi::Buffer<ffi::S32> child, ffi::Buffer<ffi::F32> value,
    ffi::Buffer<ffi::F32> reward, ffi::Buffer<ffi::F32> discount,
    ffi::Buffer<ffi::F32> record, ffi::Buffer<ffi::U32> rows_in,
    ffi::ResultBuffer<ffi::S32> stats_out,
    ffi::ResultBuffer<ffi::S32> edges_out,
    ffi::ResultBuffer<ffi::S32> links_out,
    ffi::ResultBuffer<ffi::U32> rows_out) {
  ExpandRows range;
  if (auto error = PrepareExpand(stats_in, edges_in, links_in, parent, action,
                                 child, value, reward, discount, record,
                                 stats_out, edges_out, links_out, nullptr,
                                 nullptr, &range);
      error.failure()) {
    return error;
  }
  if (rows_in.element_count() != 0) {
    const auto dims = edges_in.dimensions();
    if (dims[2] < kShortRow || dims[2] > GumbelRow::kMaxActions ||
        rows_in.element_count() !=
            static_cast<size_t>(dims[0] * dims[1] * GumbelRow::kWords)) {
      return ffi::Error::InvalidArgument(
          "rows must be [B, N, 16] (16 to 254 actions) or empty");
    }
    range.gumbel_rows = InPlace(rows_in, rows_out);
  }
  return RunExpand(pool, range, parent.element_count());
}

// The expansion and backup with MuZero's unmasked selection-cache rows,
// then the next simulation's cached MuZero descent, fused
// (`MuzeroExpandDescend`); `descend[]` false: the expansion alone (the last
// simulation, or `_native.expand_backup` with rows: `invalid`, `keys` and
// `scale` may then be empty), node, action and child zeros.  `lazy_edges`:
// the backup leaves narrow nodes' edges (`LazyEdges`).
ffi::Error ExpandDescendImpl(
    ffi::ThreadPool pool, ffi::Buffer<ffi::S32> stats_in,
    ffi::Buffer<ffi::S32> edges_in, ffi::Buffer<ffi::S32> links_in,
    ffi::Buffer<ffi::S32> parent, ffi::Buffer<ffi::S32> action,
    ffi::Buffer<ffi::S32> child, ffi::Buffer<ffi::F32> value,
    ffi::Buffer<ffi::F32> reward, ffi::Buffer<ffi::F32> discount,
    ffi::Buffer<ffi::F32> record, ffi::Buffer<ffi::U32> rows_in,
    ffi::Buffer<ffi::PRED> invalid, ffi::Buffer<ffi::U32> keys,
    ffi::Buffer<ffi::F32> scale, ffi::Buffer<ffi::PRED> descend,
    ffi::ResultBuffer<ffi::S32> stats_out,
    ffi::ResultBuffer<ffi::S32> edges_out,
    ffi::ResultBuffer<ffi::S32> links_out,
    ffi::ResultBuffer<ffi::U32> rows_out,
    ffi::ResultBuffer<ffi::S32> node_out,
    ffi::ResultBuffer<ffi::S32> action_out,
    ffi::ResultBuffer<ffi::S32> child_out, int32_t max_depth,
    bool lazy_edges) {
  ExpandRows expand;
  if (auto error = PrepareExpand(stats_in, edges_in, links_in, parent, action,
                                 child, value, reward, discount, record,
                                 stats_out, edges_out, links_out, &rows_in,
                                 &rows_out, &expand);
      error.failure()) {
    return error;
  }
  expand.lazy_edges = lazy_edges;
  if (descend.element_count() != 1) {
    return ffi::Error::InvalidArgument("descend must be a scalar");
  }
  return MuzeroExpandDescend(pool, expand, parent.element_count(), invalid,
                             keys, scale, descend.typed_data()[0],
                             node_out->typed_data(), action_out->typed_data(),
                             child_out->typed_data(), max_depth);
}
}  // namespace

namespace {
// The operands both expansions share.
auto ExpandBackupBinding() {
  return ffi::Ffi::Bind()
      .Ctx<ffi::ThreadPool>()
      .Arg<ffi::Buffer<ffi::S32>>()
      .Arg<ffi::Buffer<ffi::S32>>()
      .Arg<ffi::Buffer<ffi::S32>>()
      .Arg<ffi::Buffer<ffi::S32>>()
      .Arg<ffi::Buffer<ffi::S32>>()
      .Arg<ffi::Buffer<ffi::S32>>()
      .Arg<ffi::Buffer<ffi::F32>>()
      .Arg<ffi::Buffer<ffi::F32>>()
      .Arg<ffi::Buffer<ffi::F32>>()
      .Arg<ffi::Buffer<ffi::F32>>();
}
}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(MctxPlannerExpandBackup, ExpandBackupImpl,
                              ExpandBackupBinding()
                                  .Arg<ffi::Buffer<ffi::U32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::U32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(MctxPlannerExpandDescend, ExpandDescendImpl,
                              ExpandBackupBinding()
                                  .Arg<ffi::Buffer<ffi::U32>>()
                                  .Arg<ffi::Buffer<ffi::PRED>>()
                                  .Arg<ffi::Buffer<ffi::U32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::PRED>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::U32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Attr<int32_t>("max_depth")
                                  .Attr<bool>("lazy_edges"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(MctxPlannerGumbelDescend, GumbelDescendImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::PRED>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::PRED>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::U32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::U32>>()
                                  .Attr<int32_t>("max_depth")
                                  .Attr<float>("value_scale")
                                  .Attr<float>("maxvisit_init")
                                  .Attr<float>("masked_score"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(MctxPlannerGumbelScores, GumbelScoresImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::PRED>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::PRED>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("value_scale")
                                  .Attr<float>("maxvisit_init")
                                  .Attr<float>("masked_score"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(MctxPlannerTopK, TopKImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>());

// A store `[B, N, ...]` whose node 0 is `first[B, ...]` and every other node
// zeros (any element type), written once, by example (over XLA's threads
// from 4 MB), after `AdviseHugePages` on it if `advise`.
ffi::Error StoreInitImpl(ffi::ThreadPool pool, ffi::AnyBuffer first,
                         ffi::Result<ffi::AnyBuffer> out, bool advise) {
  const auto dims = out->dimensions();
  if (dims.size() < 2 || first.dimensions().size() + 1 != dims.size() ||
      first.dimensions()[0] != dims[0] ||
      first.element_type() != out->element_type()) {
    return ffi::Error::InvalidArgument("store must be [B, N, ...] of first's [B, ...]");
  }
  const int64_t batch = dims[0], num_nodes = dims[1];
  const int64_t row = batch == 0 ? 0 : static_cast<int64_t>(first.size_bytes()) / batch;
  if (row * num_nodes * batch != static_cast<int64_t>(out->size_bytes())) {
    return ffi::Error::InvalidArgument("store size does not match first");
  }
  char* o = static_cast<char*>(out->untyped_data());
  const char* f = static_cast<const char*>(first.untyped_data());
  if (advise) AdviseHugePages(o, out->size_bytes());
  auto range = [=](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      char* dst = o + b * num_nodes * row;
      std::memcpy(dst, f + b * row, row);
      std::memset(dst + row, 0, (num_nodes - 1) * row);
    }
    return true;
  };
  // Handing chunks to XLA's threads costs about 20 us: worth it from a few
  // MB (the page faults, then the writes).
  if (out->size_bytes() < (size_t{4} << 20)) {
    range(0, batch);
  } else {
    ParallelFor(pool, batch, 8, range);
  }
  return ffi::Error::Success();
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(MctxPlannerStoreInit, StoreInitImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<bool>("advise"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(MctxPlannerUnpackEdges, UnpackEdgesImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
