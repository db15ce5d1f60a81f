// Fused neighbourhood attention on the CPU, forward and backward.
//
// Rank-agnostic: the window is given as flat index tables built in Python
// (convattn_mm/ops/windows.py), so one kernel serves 1-D, 2-D and 3-D maps,
// every border rule, dilation and query stride.
//
// Logical layout [B, H, N, D] with arbitrary batch / head / token strides (in
// elements) and a contiguous last dim, so q, k, v can be views of a fused
// qkv projection and the output can be written token-major. For output query
// i, head h, window slot j:
//   n = nbr[i, j]  (key index; -1: masked, -2: zero key and zero value)
//   t = tbl[i, j]  (index into the relative-offset table)
//   s_j = scale * q_i . (k_n + r_{h,t}) + b_{h,t}    (k_n = 0 when n == -2)
//   P_ij = softmax(s)_j,   out_i = sum_j P_ij v_n
// r (rel_keys, [H, T, D]) and b (bias, [H, T]) are optional (null).
// The forward stores P ([B, H, Nq, Kw], contiguous; linear in tokens) and the
// backward reads it instead of recomputing the scores.
//
// Common head dims (16, 32, 64) are compile-time specialised in float32 so
// that the per-row loops unroll into a few vector instructions; any other
// dim, and float64, use the generic instantiation.
//
// Plain C ABI (loaded with ctypes), no torch headers: builds in seconds.
// Threads: std::thread over independent work items.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <thread>
#include <vector>

#if defined(__AVX512F__) && !defined(CAM_NO_AVX512)
#define CAM_AVX512 1
#include <immintrin.h>
#endif

namespace {

template <typename F>
void parallel_for(int64_t n, int nthreads, F fn) {
  nthreads = (int)std::max<int64_t>(1, std::min<int64_t>(nthreads, n));
  if (nthreads == 1) {
    fn(0, n);
    return;
  }
  std::vector<std::thread> pool;
  pool.reserve(nthreads - 1);
  for (int t = 1; t < nthreads; ++t) {
    pool.emplace_back([=, &fn] {
      fn(n * t / nthreads, n * (t + 1) / nthreads);
    });
  }
  fn(0, n / nthreads);
  for (auto& th : pool) th.join();
}

// Strides (elements) of a logical [B, H, N, D] tensor; last dim contiguous.
struct Str {
  int64_t b, h, n;
};

struct Dims {
  int64_t B, H, Nq, Nk, Kw, D, Dv, T;
};

// exp(x) for x <= 0 (x = s - max), exact 0 below the float range (and for
// -inf); vectorisable (no libm call). Cephes-style, ~1 ulp.
inline float exp_neg(float x) {
  const bool under = x < -87.0f;
  x = under ? -87.0f : x;
  x = x > 0.0f ? 0.0f : x;  // NaN-free; s - max is never > 0
  // Round to nearest with the 1.5 * 2^23 trick (no libm call; exact for
  // |x * log2 e| < 2^22, and x is in [-87, 0] here).
  const float fn =
      (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = x - fn * 0.693359375f;
  r = r - fn * -2.12194440e-4f;
  float p = 1.9875691500E-4f;
  p = p * r + 1.3981999507E-3f;
  p = p * r + 8.3334519073E-3f;
  p = p * r + 4.1665795894E-2f;
  p = p * r + 1.6666665459E-1f;
  p = p * r + 5.0000001201E-1f;
  const float y = p * r * r + r + 1.0f;
  const int32_t e = ((int32_t)fn + 127) << 23;
  const float scale = __builtin_bit_cast(float, e);
  return under ? 0.0f : y * scale;
}

inline void exp_shift(const float* s, float m, float* p, int n) {
#pragma omp simd
  for (int j = 0; j < n; ++j) p[j] = exp_neg(s[j] - m);
}

inline void exp_shift(const double* s, double m, double* p, int n) {
  for (int j = 0; j < n; ++j) p[j] = std::exp(s[j] - m);
}

template <typename T, int N>
inline T dotn(const T* __restrict a, const T* __restrict b, int n) {
  const int len = N ? N : n;
  T acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int d = 0; d < len; ++d) acc += a[d] * b[d];
  return acc;
}

template <typename T, int N>
inline T dot2n(const T* __restrict a, const T* __restrict b,
               const T* __restrict c, int n) {
  const int len = N ? N : n;
  T acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int d = 0; d < len; ++d) acc += a[d] * (b[d] + c[d]);
  return acc;
}

template <typename T, int N>
inline void axpyn(T alpha, const T* __restrict x, T* __restrict y, int n) {
  const int len = N ? N : n;
#pragma omp simd
  for (int d = 0; d < len; ++d) y[d] += alpha * x[d];
}

// A row buffer of N (compile time) or n (run time) elements.
template <typename T, int N>
struct Row {
  alignas(64) T a[N];
  explicit Row(int) {}
  T* data() { return a; }
};
template <typename T>
struct Row<T, 0> {
  std::vector<T> a;
  explicit Row(int n) : a(n) {}
  T* data() { return a.data(); }
};

template <typename T, int DT, int DVT>
void forward(const T* q, const T* k, const T* v, const T* bias, const T* rk,
             const int32_t* nbr, const int32_t* tbl, Dims g, Str sq, Str sk,
             Str sv, Str so, T scale, T* out, T* P, int nthreads) {
  const int D = DT ? DT : (int)g.D;
  const int Dv = DVT ? DVT : (int)g.Dv;
  const int Kw = (int)g.Kw;
  const int64_t chunk = 64;
  const int64_t nchunks = (g.Nq + chunk - 1) / chunk;
  // Items ordered (b, chunk, h): consecutive items of one thread touch the
  // same tokens, which share cache lines in token-major layouts.
  parallel_for(g.B * nchunks * g.H, nthreads, [&](int64_t lo, int64_t hi) {
    const T ninf = -std::numeric_limits<T>::infinity();
    std::vector<T> sbuf(Kw + 16), pbuf(Kw + 16);
    T* s = sbuf.data();
    T* p = pbuf.data();
    Row<T, DT> qrow(D);
    Row<T, DVT> accrow(Dv);
    T* __restrict qv = qrow.data();
    T* __restrict acc = accrow.data();
    for (int64_t item = lo; item < hi; ++item) {
      const int64_t h = item % g.H, rest = item / g.H;
      const int64_t c = rest % nchunks, b = rest / nchunks;
      const T* qbh = q + b * sq.b + h * sq.h;
      const T* kbh = k + b * sk.b + h * sk.h;
      const T* vbh = v + b * sv.b + h * sv.h;
      T* obh = out + b * so.b + h * so.h;
      T* Pbh = P + (b * g.H + h) * g.Nq * g.Kw;
      const T* bias_h = bias ? bias + h * g.T : nullptr;
      const T* rk_h = rk ? rk + h * g.T * D : nullptr;
      const int64_t i_end = std::min(g.Nq, (c + 1) * chunk);
      for (int64_t i = c * chunk; i < i_end; ++i) {
        std::memcpy(qv, qbh + i * sq.n, sizeof(T) * D);
        const int32_t* nbr_i = nbr + i * Kw;
        const int32_t* tbl_i = tbl + i * Kw;
        T m = ninf;
        for (int j = 0; j < Kw; ++j) {
          const int32_t n = nbr_i[j];
          if (n == -1) {
            s[j] = ninf;
            continue;
          }
          const int32_t t = tbl_i[j];
          T cc;
          if (rk_h) {
            cc = n >= 0 ? dot2n<T, DT>(qv, kbh + n * sk.n, rk_h + t * D, D)
                        : dotn<T, DT>(qv, rk_h + t * D, D);
          } else {
            cc = n >= 0 ? dotn<T, DT>(qv, kbh + n * sk.n, D) : T(0);
          }
          const T val = scale * cc + (bias_h ? bias_h[t] : T(0));
          s[j] = val;
          m = std::max(m, val);
        }
        exp_shift(s, m, p, Kw);
        T l = 0;
        for (int j = 0; j < Kw; ++j) l += p[j];
        const T inv = T(1) / l;
        T* Pi = Pbh + i * Kw;
        for (int d = 0; d < Dv; ++d) acc[d] = 0;
        for (int j = 0; j < Kw; ++j) {
          const T pj = p[j] * inv;
          Pi[j] = pj;
          const int32_t n = nbr_i[j];
          if (n >= 0 && pj != T(0)) axpyn<T, DVT>(pj, vbh + n * sv.n, acc, Dv);
        }
        std::memcpy(obh + i * so.n, acc, sizeof(T) * Dv);
      }
    }
  });
}

// The accumulated gradients of one (b, h) work item start at zero: its dk
// and dv rows (any strides, e.g. views of one fused dqkv buffer) and its
// dbias / drk slices. Zeroed here, by the thread that accumulates them.
template <typename T>
void zero_grads(T* dk, T* dv, T* dbias, T* drk, const Dims& g, Str sdk,
                Str sdv, int D, int Dv) {
  for (int64_t n = 0; n < g.Nk; ++n) {
    std::memset(dk + n * sdk.n, 0, sizeof(T) * D);
    std::memset(dv + n * sdv.n, 0, sizeof(T) * Dv);
  }
  if (dbias) std::memset(dbias, 0, sizeof(T) * g.T);
  if (drk) std::memset(drk, 0, sizeof(T) * g.T * D);
}

// Parallel over (b, h): every write of one work item (dq, dk, dv rows of its
// (b, h); its own dbias/drk slice) is private to it.
template <typename T, int DT, int DVT>
void backward(const T* q, const T* k, const T* v, const T* rk,
              const int32_t* nbr, const int32_t* tbl, Dims g, Str sq, Str sk,
              Str sv, Str sdo, Str sdq, Str sdk, Str sdv, T scale, const T* P,
              const T* dout, T* dq, T* dk, T* dv, T* dbias, T* drk,
              int nthreads) {
  const int D = DT ? DT : (int)g.D;
  const int Dv = DVT ? DVT : (int)g.Dv;
  const int Kw = (int)g.Kw;
  parallel_for(g.B * g.H, nthreads, [&](int64_t lo, int64_t hi) {
    std::vector<T> dpbuf(Kw + 16);
    T* dp = dpbuf.data();
    Row<T, DT> qrow(D), dqrow(D);
    Row<T, DVT> dorow(Dv);
    T* __restrict qv = qrow.data();
    T* __restrict dqv = dqrow.data();
    T* __restrict dov = dorow.data();
    for (int64_t bh = lo; bh < hi; ++bh) {
      const int64_t b = bh / g.H, h = bh % g.H;
      const T* qbh = q + b * sq.b + h * sq.h;
      const T* kbh = k + b * sk.b + h * sk.h;
      const T* vbh = v + b * sv.b + h * sv.h;
      const T* dobh = dout + b * sdo.b + h * sdo.h;
      T* dqbh = dq + b * sdq.b + h * sdq.h;
      T* dkbh = dk + b * sdk.b + h * sdk.h;
      T* dvbh = dv + b * sdv.b + h * sdv.h;
      const T* Pbh = P + bh * g.Nq * g.Kw;
      const T* rk_h = rk ? rk + h * g.T * D : nullptr;
      T* dbias_bh = dbias ? dbias + bh * g.T : nullptr;
      T* drk_bh = drk ? drk + bh * g.T * D : nullptr;
      zero_grads(dkbh, dvbh, dbias_bh, drk_bh, g, sdk, sdv, D, Dv);
      for (int64_t i = 0; i < g.Nq; ++i) {
        std::memcpy(qv, qbh + i * sq.n, sizeof(T) * D);
        std::memcpy(dov, dobh + i * sdo.n, sizeof(T) * Dv);
        const T* Pi = Pbh + i * Kw;
        const int32_t* nbr_i = nbr + i * Kw;
        const int32_t* tbl_i = tbl + i * Kw;
        T delta = 0;
        for (int j = 0; j < Kw; ++j) {
          const int32_t n = nbr_i[j];
          const T pj = Pi[j];
          T d = 0;
          if (n >= 0 && pj != T(0)) d = dotn<T, DVT>(dov, vbh + n * sv.n, Dv);
          dp[j] = d;
          delta += pj * d;
        }
        for (int d = 0; d < D; ++d) dqv[d] = 0;
        for (int j = 0; j < Kw; ++j) {
          const T pj = Pi[j];
          if (pj == T(0)) continue;
          const int32_t n = nbr_i[j];
          const int32_t t = tbl_i[j];
          const T ds = pj * (dp[j] - delta);
          const T cs = scale * ds;
          if (n >= 0) {
            axpyn<T, DVT>(pj, dov, dvbh + n * sdv.n, Dv);
            axpyn<T, DT>(cs, kbh + n * sk.n, dqv, D);
            axpyn<T, DT>(cs, qv, dkbh + n * sdk.n, D);
          }
          if (rk_h) {
            axpyn<T, DT>(cs, rk_h + t * D, dqv, D);
            axpyn<T, DT>(cs, qv, drk_bh + t * D, D);
          }
          if (dbias_bh) dbias_bh[t] += ds;
        }
        std::memcpy(dqbh + i * sdq.n, dqv, sizeof(T) * D);
      }
    }
  });
}

#if defined(CAM_AVX512)
// ---------------------------------------------------------------------------
// AVX-512 float32 kernels for head dims that are multiples of 16 (16, 32, 64):
// a row is ND (NV) zmm registers. Scores of 16 window slots are reduced
// together (transposed reduction), so no per-slot horizontal sums.

// 16 vectors -> one vector of their 16 horizontal sums. Output lane L*4+m
// holds the sum of input 4m+L; callers place slot u at input slot_of(u) so
// the output is in slot order.
constexpr int slot_of(int u) { return (u & 3) * 4 + (u >> 2); }

inline __m512 hsum16(const __m512* a) {
  __m512 c[8], e[4];
  for (int i = 0; i < 8; ++i)
    c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0x44),
                         _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0xEE));
  for (int i = 0; i < 4; ++i)
    e[i] = _mm512_add_ps(_mm512_shuffle_f32x4(c[2 * i], c[2 * i + 1], 0x88),
                         _mm512_shuffle_f32x4(c[2 * i], c[2 * i + 1], 0xDD));
  const __m512 g0 = _mm512_add_ps(
      _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(e[0]),
                                          _mm512_castps_pd(e[1]))),
      _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(e[0]),
                                          _mm512_castps_pd(e[1]))));
  const __m512 g1 = _mm512_add_ps(
      _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(e[2]),
                                          _mm512_castps_pd(e[3]))),
      _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(e[2]),
                                          _mm512_castps_pd(e[3]))));
  return _mm512_add_ps(_mm512_shuffle_ps(g0, g1, 0x88),
                       _mm512_shuffle_ps(g0, g1, 0xDD));
}

// exp(x) for x <= 0; exactly 0 below -87 and for -inf; NaN stays NaN.
inline __m512 exp512_neg(__m512 x) {
  const __mmask16 keep =
      _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.0f), _CMP_NLT_UQ);
  x = _mm512_max_ps(_mm512_set1_ps(-87.0f), x);
  x = _mm512_min_ps(_mm512_setzero_ps(), x);
  const __m512 fn = _mm512_roundscale_ps(
      _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(fn, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(fn, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500E-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507E-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
  const __m512 y = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r,
                                   _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_maskz_mov_ps(keep, _mm512_scalef_ps(y, fn));
}

// Sum over c of a[c] * row[16c..], as one vector (not yet reduced).
template <int N>
inline __m512 vdot(const __m512* a, const float* row) {
  __m512 acc = _mm512_mul_ps(a[0], _mm512_loadu_ps(row));
  for (int c = 1; c < N; ++c)
    acc = _mm512_fmadd_ps(a[c], _mm512_loadu_ps(row + 16 * c), acc);
  return acc;
}
template <int N>
inline __m512 vdot2(const __m512* a, const float* row, const float* row2) {
  __m512 acc = _mm512_mul_ps(
      a[0], _mm512_add_ps(_mm512_loadu_ps(row), _mm512_loadu_ps(row2)));
  for (int c = 1; c < N; ++c)
    acc = _mm512_fmadd_ps(a[c],
                          _mm512_add_ps(_mm512_loadu_ps(row + 16 * c),
                                        _mm512_loadu_ps(row2 + 16 * c)),
                          acc);
  return acc;
}
template <int N>
inline void vaxpy(__m512 alpha, const __m512* x, float* y) {
  for (int c = 0; c < N; ++c)
    _mm512_storeu_ps(y + 16 * c,
                     _mm512_fmadd_ps(alpha, x[c], _mm512_loadu_ps(y + 16 * c)));
}

alignas(64) const float kZeros[64] = {0};

inline float* align64(float* p) {
  return (float*)(((uintptr_t)p + 63) & ~(uintptr_t)63);
}

// Window slots [j0, j0 + 16) of one query; slots >= Kw read as masked.
struct Block {
  __mmask16 live;     // slot < Kw
  __mmask16 masked;   // nbr == -1 (or slot >= Kw)
  __mmask16 haskey;   // nbr >= 0
  __m512i n, t;
};
inline Block load_block(const int32_t* nbr_i, const int32_t* tbl_i, int j0,
                        int Kw) {
  Block bl;
  const int rem = Kw - j0;
  bl.live = rem >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << rem) - 1);
  bl.n = _mm512_mask_loadu_epi32(_mm512_set1_epi32(-1), bl.live, nbr_i + j0);
  bl.t = _mm512_maskz_loadu_epi32(bl.live, tbl_i + j0);
  bl.masked = _mm512_cmpeq_epi32_mask(bl.n, _mm512_set1_epi32(-1));
  bl.haskey = _mm512_cmpge_epi32_mask(bl.n, _mm512_setzero_si512());
  return bl;
}

template <int ND, int NV>
void forward_avx512(const float* q, const float* k, const float* v,
                    const float* bias, const float* rk, const int32_t* nbr,
                    const int32_t* tbl, Dims g, Str sq, Str sk, Str sv, Str so,
                    float scale, float* out, float* P, int nthreads) {
  constexpr int D = 16 * ND;
  const int Kw = (int)g.Kw;
  const int nb = (Kw + 15) / 16;
  const int64_t chunk = 64;
  const int64_t nchunks = (g.Nq + chunk - 1) / chunk;
  parallel_for(g.B * nchunks * g.H, nthreads, [&](int64_t lo, int64_t hi) {
    std::vector<float> sbuf(nb * 16 + 16);
    float* s = align64(sbuf.data());
    const Str lsk = sk, lsv = sv, lso = so, lsq = sq;
    for (int64_t item = lo; item < hi; ++item) {
      const int64_t h = item % g.H, rest = item / g.H;
      const int64_t c = rest % nchunks, b = rest / nchunks;
      const float* qbh = q + b * lsq.b + h * lsq.h;
      const float* kbh = k + b * lsk.b + h * lsk.h;
      const float* vbh = v + b * lsv.b + h * lsv.h;
      float* obh = out + b * lso.b + h * lso.h;
      float* Pbh = P + (b * g.H + h) * g.Nq * g.Kw;
      const float* bias_h = bias ? bias + h * g.T : nullptr;
      const float* rk_h = rk ? rk + h * g.T * D : nullptr;
      const int64_t i_end = std::min(g.Nq, (c + 1) * chunk);
      for (int64_t i = c * chunk; i < i_end; ++i) {
        __m512 qz[ND];
        const float* qi = qbh + i * lsq.n;
        for (int cc = 0; cc < ND; ++cc) qz[cc] = _mm512_loadu_ps(qi + 16 * cc);
        const int32_t* nbr_i = nbr + i * Kw;
        const int32_t* tbl_i = tbl + i * Kw;
        __m512 vmax = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
        for (int blk = 0; blk < nb; ++blk) {
          const int j0 = blk * 16;
          const Block bl = load_block(nbr_i, tbl_i, j0, Kw);
          alignas(64) int32_t nn[16], tt[16];
          _mm512_store_si512(nn, bl.n);
          _mm512_store_si512(tt, bl.t);
          __m512 acc[16];
#pragma GCC unroll 16
          for (int u = 0; u < 16; ++u) {
            if (j0 + u >= Kw) {
              acc[slot_of(u)] = _mm512_setzero_ps();
              continue;
            }
            const int32_t n = nn[u];
            const float* krow = n >= 0 ? kbh + n * lsk.n : kZeros;
            if (rk_h) {
              const float* rrow = n != -1 ? rk_h + tt[u] * D : kZeros;
              acc[slot_of(u)] = vdot2<ND>(qz, krow, rrow);
            } else {
              acc[slot_of(u)] = vdot<ND>(qz, krow);
            }
          }
          __m512 sv16 = _mm512_mul_ps(hsum16(acc), _mm512_set1_ps(scale));
          if (bias_h)
            sv16 = _mm512_add_ps(
                sv16, _mm512_mask_i32gather_ps(_mm512_setzero_ps(),
                                               (__mmask16)~bl.masked, bl.t,
                                               bias_h, 4));
          sv16 = _mm512_mask_mov_ps(
              sv16, bl.masked,
              _mm512_set1_ps(-std::numeric_limits<float>::infinity()));
          _mm512_store_ps(s + j0, sv16);
          vmax = _mm512_max_ps(vmax, sv16);
        }
        const __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
        __m512 vl = _mm512_setzero_ps();
        for (int blk = 0; blk < nb; ++blk) {
          const __m512 p = exp512_neg(_mm512_sub_ps(_mm512_load_ps(s + 16 * blk), m));
          _mm512_store_ps(s + 16 * blk, p);
          vl = _mm512_add_ps(vl, p);
        }
        const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(vl));
        float* Pi = Pbh + i * Kw;
        // Four independent accumulator sets break the FMA latency chain.
        __m512 o[4][NV];
        for (int a = 0; a < 4; ++a)
          for (int cc = 0; cc < NV; ++cc) o[a][cc] = _mm512_setzero_ps();
        for (int blk = 0; blk < nb; ++blk) {
          const int j0 = blk * 16;
          const int rem = Kw - j0;
          const __mmask16 live =
              rem >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << rem) - 1);
          const __m512 p = _mm512_mul_ps(_mm512_load_ps(s + j0), inv);
          _mm512_mask_storeu_ps(Pi + j0, live, p);
          _mm512_store_ps(s + j0, p);
        }
        // p == 0 (masked, -inf bias) adds exactly 0 for finite v; slots
        // past Kw are padded with p = 0 and the zero row.
        for (int j = 0; j < Kw; j += 4) {
#pragma GCC unroll 4
          for (int a = 0; a < 4; ++a) {
            const int jj = j + a;
            const bool in = jj < Kw;
            const int32_t n = in ? nbr_i[jj] : -1;
            const __m512 pz = _mm512_set1_ps(in ? s[jj] : 0.0f);
            const float* vrow = n >= 0 ? vbh + n * lsv.n : kZeros;
            for (int cc = 0; cc < NV; ++cc)
              o[a][cc] = _mm512_fmadd_ps(pz, _mm512_loadu_ps(vrow + 16 * cc),
                                         o[a][cc]);
          }
        }
        for (int cc = 0; cc < NV; ++cc)
          o[0][cc] = _mm512_add_ps(_mm512_add_ps(o[0][cc], o[1][cc]),
                                   _mm512_add_ps(o[2][cc], o[3][cc]));
        float* oi = obh + i * lso.n;
        for (int cc = 0; cc < NV; ++cc)
          _mm512_storeu_ps(oi + 16 * cc, o[0][cc]);
      }
    }
  });
}

template <int ND, int NV>
void backward_avx512(const float* q, const float* k, const float* v,
                     const float* rk, const int32_t* nbr, const int32_t* tbl,
                     Dims g, Str sq, Str sk, Str sv, Str sdo, Str sdq, Str sdk,
                     Str sdv, float scale, const float* P, const float* dout,
                     float* dq, float* dk, float* dv, float* dbias, float* drk,
                     int nthreads) {
  constexpr int D = 16 * ND;
  const int Kw = (int)g.Kw;
  const int nb = (Kw + 15) / 16;
  parallel_for(g.B * g.H, nthreads, [&](int64_t lo, int64_t hi) {
    std::vector<float> dsbuf(nb * 16 + 16);
    float* ds = align64(dsbuf.data());
    const Str lsq = sq, lsk = sk, lsv = sv, lsdo = sdo, lsdq = sdq,
              lsdk = sdk, lsdv = sdv;
    for (int64_t bh = lo; bh < hi; ++bh) {
      const int64_t b = bh / g.H, h = bh % g.H;
      const float* qbh = q + b * lsq.b + h * lsq.h;
      const float* kbh = k + b * lsk.b + h * lsk.h;
      const float* vbh = v + b * lsv.b + h * lsv.h;
      const float* dobh = dout + b * lsdo.b + h * lsdo.h;
      float* dqbh = dq + b * lsdq.b + h * lsdq.h;
      float* dkbh = dk + b * lsdk.b + h * lsdk.h;
      float* dvbh = dv + b * lsdv.b + h * lsdv.h;
      const float* Pbh = P + bh * g.Nq * g.Kw;
      const float* rk_h = rk ? rk + h * g.T * D : nullptr;
      float* dbias_bh = dbias ? dbias + bh * g.T : nullptr;
      float* drk_bh = drk ? drk + bh * g.T * D : nullptr;
      zero_grads(dkbh, dvbh, dbias_bh, drk_bh, g, lsdk, lsdv, D,
                 (int)g.Dv);
      for (int64_t i = 0; i < g.Nq; ++i) {
        __m512 qz[ND], doz[NV], dqz[ND];
        const float* qi = qbh + i * lsq.n;
        const float* doi = dobh + i * lsdo.n;
        for (int cc = 0; cc < ND; ++cc) {
          qz[cc] = _mm512_loadu_ps(qi + 16 * cc);
          dqz[cc] = _mm512_setzero_ps();
        }
        for (int cc = 0; cc < NV; ++cc) doz[cc] = _mm512_loadu_ps(doi + 16 * cc);
        const float* Pi = Pbh + i * Kw;
        const int32_t* nbr_i = nbr + i * Kw;
        const int32_t* tbl_i = tbl + i * Kw;
        // dp_j = dout_i . v_n ; delta = sum_j P_j dp_j
        __m512 vdelta = _mm512_setzero_ps();
        for (int blk = 0; blk < nb; ++blk) {
          const int j0 = blk * 16;
          const Block bl = load_block(nbr_i, tbl_i, j0, Kw);
          alignas(64) int32_t nn[16];
          _mm512_store_si512(nn, bl.n);
          __m512 acc[16];
#pragma GCC unroll 16
          for (int u = 0; u < 16; ++u) {
            if (j0 + u >= Kw) {
              acc[slot_of(u)] = _mm512_setzero_ps();
              continue;
            }
            const int32_t n = nn[u];
            acc[slot_of(u)] =
                vdot<NV>(doz, n >= 0 ? vbh + n * lsv.n : kZeros);
          }
          const __m512 dp = hsum16(acc);
          const __m512 p = _mm512_maskz_loadu_ps(bl.live, Pi + j0);
          vdelta = _mm512_fmadd_ps(p, dp, vdelta);
          _mm512_store_ps(ds + j0, dp);
        }
        const __m512 delta = _mm512_set1_ps(_mm512_reduce_add_ps(vdelta));
        for (int blk = 0; blk < nb; ++blk) {
          const int j0 = blk * 16;
          const int rem = Kw - j0;
          const __mmask16 live =
              rem >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << rem) - 1);
          const __m512 p = _mm512_maskz_loadu_ps(live, Pi + j0);
          _mm512_store_ps(ds + j0, _mm512_mul_ps(
                                       p, _mm512_sub_ps(_mm512_load_ps(ds + j0),
                                                        delta)));
        }
        __m512 dq2[2][ND];
        for (int a = 0; a < 2; ++a)
          for (int cc = 0; cc < ND; ++cc) dq2[a][cc] = _mm512_setzero_ps();
        for (int j = 0; j < Kw; ++j) {
          const float pj = Pi[j];
          if (pj == 0.0f) continue;
          const int32_t n = nbr_i[j];
          const int32_t t = tbl_i[j];
          const float dsj = ds[j];
          const __m512 cs = _mm512_set1_ps(scale * dsj);
          if (n >= 0) {
            vaxpy<NV>(_mm512_set1_ps(pj), doz, dvbh + n * lsdv.n);
            const float* krow = kbh + n * lsk.n;
            for (int cc = 0; cc < ND; ++cc)
              dqz[cc] = _mm512_fmadd_ps(cs, _mm512_loadu_ps(krow + 16 * cc),
                                        dqz[cc]);
            vaxpy<ND>(cs, qz, dkbh + n * lsdk.n);
          }
          if (rk_h) {
            const float* rrow = rk_h + t * D;
            for (int cc = 0; cc < ND; ++cc)
              dq2[0][cc] = _mm512_fmadd_ps(
                  cs, _mm512_loadu_ps(rrow + 16 * cc), dq2[0][cc]);
            vaxpy<ND>(cs, qz, drk_bh + t * D);
          }
          if (dbias_bh) dbias_bh[t] += dsj;
          // swap accumulators so consecutive slots use different chains
          for (int cc = 0; cc < ND; ++cc) std::swap(dqz[cc], dq2[1][cc]);
        }
        for (int cc = 0; cc < ND; ++cc)
          dqz[cc] = _mm512_add_ps(_mm512_add_ps(dqz[cc], dq2[1][cc]),
                                  dq2[0][cc]);
        float* dqi = dqbh + i * lsdq.n;
        for (int cc = 0; cc < ND; ++cc) _mm512_storeu_ps(dqi + 16 * cc, dqz[cc]);
      }
    }
  });
}
#endif  // CAM_AVX512

template <typename T>
using FwdFn = void (*)(const T*, const T*, const T*, const T*, const T*,
                       const int32_t*, const int32_t*, Dims, Str, Str, Str,
                       Str, T, T*, T*, int);
template <typename T>
using BwdFn = void (*)(const T*, const T*, const T*, const T*,
                       const int32_t*, const int32_t*, Dims, Str, Str, Str,
                       Str, Str, Str, Str, T, const T*, const T*, T*, T*, T*,
                       T*, T*, int);

#if defined(CAM_AVX512)
template <int ND>
FwdFn<float> pick_fwd_avx_v(int64_t Dv) {
  switch (Dv) {
    case 16: return forward_avx512<ND, 1>;
    case 32: return forward_avx512<ND, 2>;
    case 64: return forward_avx512<ND, 4>;
    default: return nullptr;
  }
}
template <int ND>
BwdFn<float> pick_bwd_avx_v(int64_t Dv) {
  switch (Dv) {
    case 16: return backward_avx512<ND, 1>;
    case 32: return backward_avx512<ND, 2>;
    case 64: return backward_avx512<ND, 4>;
    default: return nullptr;
  }
}
#endif

template <typename T>
FwdFn<T> pick_fwd_fast(int64_t, int64_t) { return nullptr; }
template <typename T>
BwdFn<T> pick_bwd_fast(int64_t, int64_t) { return nullptr; }
#if defined(CAM_AVX512)
template <>
FwdFn<float> pick_fwd_fast<float>(int64_t D, int64_t Dv) {
  switch (D) {
    case 16: return pick_fwd_avx_v<1>(Dv);
    case 32: return pick_fwd_avx_v<2>(Dv);
    case 64: return pick_fwd_avx_v<4>(Dv);
    default: return nullptr;
  }
}
template <>
BwdFn<float> pick_bwd_fast<float>(int64_t D, int64_t Dv) {
  switch (D) {
    case 16: return pick_bwd_avx_v<1>(Dv);
    case 32: return pick_bwd_avx_v<2>(Dv);
    case 64: return pick_bwd_avx_v<4>(Dv);
    default: return nullptr;
  }
}
#endif

// Generic kernels: float64 (tests, gradcheck) runs the run-time-dim
// instantiation; float32 is specialised for equal q/k and value dims of
// 16, 32, 64 (the AVX-512 kernels take those first where the CPU has them).
// Few instantiations keep the first-use build short.
template <typename T>
FwdFn<T> pick_fwd(int64_t D, int64_t Dv) {
  if (FwdFn<T> f = pick_fwd_fast<T>(D, Dv)) return f;
  if (sizeof(T) == 4 && D == Dv) {
    switch (D) {
      case 16: return forward<T, 16, 16>;
      case 32: return forward<T, 32, 32>;
      case 64: return forward<T, 64, 64>;
    }
  }
  return forward<T, 0, 0>;
}
template <typename T>
BwdFn<T> pick_bwd(int64_t D, int64_t Dv) {
  if (BwdFn<T> f = pick_bwd_fast<T>(D, Dv)) return f;
  if (sizeof(T) == 4 && D == Dv) {
    switch (D) {
      case 16: return backward<T, 16, 16>;
      case 32: return backward<T, 32, 32>;
      case 64: return backward<T, 64, 64>;
    }
  }
  return backward<T, 0, 0>;
}

inline Str str(const int64_t* s, int which) {
  return Str{s[3 * which], s[3 * which + 1], s[3 * which + 2]};
}

}  // namespace

extern "C" {

int cam_abi_version() { return 3; }

// strides: int64[12] = (b, h, n) element strides of q, k, v, out.
// P: [B, H, Nq, Kw] contiguous output (softmax probabilities).
#define CAM_DEFINE(SUFFIX, TYPE)                                              \
  void cam_forward_##SUFFIX(const TYPE* q, const TYPE* k, const TYPE* v,     \
                            const TYPE* bias, const TYPE* rk,                \
                            const int32_t* nbr, const int32_t* tbl,          \
                            int64_t B, int64_t H, int64_t Nq, int64_t Nk,    \
                            int64_t Kw, int64_t D, int64_t Dv, int64_t T,    \
                            double scale, const int64_t* strides, TYPE* out, \
                            TYPE* P, int nthreads) {                         \
    const Dims g{B, H, Nq, Nk, Kw, D, Dv, T};                                \
    pick_fwd<TYPE>(D, Dv)(q, k, v, bias, rk, nbr, tbl, g, str(strides, 0),   \
                          str(strides, 1), str(strides, 2), str(strides, 3), \
                          (TYPE)scale, out, P, nthreads);                    \
  }                                                                          \
  /* strides: int64[21] = (b, h, n) of q, k, v, dout, dq, dk, dv;      */ \
  /* dk, dv, dbias [B, H, T] and drk [B, H, T, D] are zeroed here.     */ \
  void cam_backward_##SUFFIX(                                                \
      const TYPE* q, const TYPE* k, const TYPE* v, const TYPE* rk,           \
      const int32_t* nbr, const int32_t* tbl, int64_t B, int64_t H,          \
      int64_t Nq, int64_t Nk, int64_t Kw, int64_t D, int64_t Dv, int64_t T,  \
      double scale, const int64_t* strides, const TYPE* P, const TYPE* dout, \
      TYPE* dq, TYPE* dk, TYPE* dv, TYPE* dbias, TYPE* drk, int nthreads) {  \
    const Dims g{B, H, Nq, Nk, Kw, D, Dv, T};                                \
    pick_bwd<TYPE>(D, Dv)(q, k, v, rk, nbr, tbl, g, str(strides, 0),         \
                          str(strides, 1), str(strides, 2), str(strides, 3), \
                          str(strides, 4), str(strides, 5), str(strides, 6), \
                          (TYPE)scale, P, dout, dq, dk, dv, dbias, drk,      \
                          nthreads);                                         \
  }

CAM_DEFINE(f32, float)
CAM_DEFINE(f64, double)

}  // extern "C"
