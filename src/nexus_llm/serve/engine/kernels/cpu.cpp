// CPU kernels for decode steps (AVX2 + FMA), built on first use by nexus_llm/serve/engine/native.py:
// block-quantized matrix products, RMSNorm in one pass, and attention for one query token per sequence.
//
// Weights are stored the way llama.cpp stores Q4_1 and Q8_0 tensors: blocks of 32 input columns, each
// with its own float scale (and, for 4-bit, its own minimum), so an imported GGUF's weights are
// served as they are. Activations are quantized to int8 per block of 32 on the fly (llama.cpp's Q8_1),
// and a block's dot product is computed on 8-bit integers (vpmaddubsw + vpmaddwd), 32 multiply-adds in
// two instructions. torch's own int4 kernel dequantizes every weight to floating point first, and its
// int8 weight-only kernel has no vectorised AVX2 path: docs/serve.md has the timings.
//
//   q4_mm(x [M, K] f32, w [N, K/2] u8, d [N, K/32] f32, m [N, K/32] f32) -> [M, N] f32
//       weight = code * d + m, codes 0..15: byte j of a block holds code j (low nibble) and code j + 16
//   q8_mm(x [M, K] f32, w [N, K] i8, d [N, K/32] f32) -> [M, N] f32
//       weight = code * d, codes -127..127
//   rms_norm(x [M, H] f32, w [H] f32, eps) -> [M, H];  add_rms_norm_(x, residual, w, eps): x += residual, then
//       rms_norm(x)
//   decode_attention(q [rows, kv_heads, groups, hd], keys, values [slots, kv_heads, capacity, hd],
//       slots [rows] i64, lengths [rows] i64, scale) -> [rows, kv_heads * groups * hd]
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace {

constexpr int64_t QK = 32;  // columns per block

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline int32_t hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

// sum a[i] * b[i], 8 lanes at a time (a scalar loop's chain of dependent adds cost more than the blocks)
inline float dot(const float* a, const float* b, int64_t n) {
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
  float s = hsum(acc);
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// One block of 32 floats -> 32 int8 codes (round to nearest) with scale amax / 127; returns the codes' sum.
inline int32_t quantize_block(const float* v, int8_t* q, float* scale) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 a0 = _mm256_loadu_ps(v), a1 = _mm256_loadu_ps(v + 8);
  __m256 a2 = _mm256_loadu_ps(v + 16), a3 = _mm256_loadu_ps(v + 24);
  __m256 mx = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, a0), _mm256_andnot_ps(sign, a1)),
                            _mm256_max_ps(_mm256_andnot_ps(sign, a2), _mm256_andnot_ps(sign, a3)));
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
  const float amax = _mm_cvtss_f32(m4);
  const float d = amax / 127.0f;
  *scale = d;
  const __m256 id = _mm256_set1_ps(d > 0.0f ? 1.0f / d : 0.0f);
  const int rnd = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  __m256i i0 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(a0, id), rnd));
  __m256i i1 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(a1, id), rnd));
  __m256i i2 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(a2, id), rnd));
  __m256i i3 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(a3, id), rnd));
  const int32_t sum = hsum_i32(_mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3)));
  // pack 4 x 8 int32 -> 32 int8; the packs work per 128-bit lane, the permute restores the order
  i0 = _mm256_packs_epi32(i0, i1);
  i2 = _mm256_packs_epi32(i2, i3);
  i0 = _mm256_packs_epi16(i0, i2);
  i0 = _mm256_permutevar8x32_epi32(i0, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), i0);
  return sum;
}

struct Activations {
  torch::Tensor codes, scales, sums;  // [M, K] i8, [M, B] f32 (scale), [M, B] f32 (scale * sum of codes)
};

Activations quantize_rows(const torch::Tensor& x) {
  const int64_t M = x.size(0), K = x.size(1), B = K / QK;
  Activations a{torch::empty({M, K}, torch::kInt8), torch::empty({M, B}, torch::kFloat32),
                torch::empty({M, B}, torch::kFloat32)};
  const float* xp = x.data_ptr<float>();
  int8_t* q = a.codes.data_ptr<int8_t>();
  float* d = a.scales.data_ptr<float>();
  float* s = a.sums.data_ptr<float>();
  for (int64_t i = 0; i < M * B; ++i) {
    const int32_t sum = quantize_block(xp + i * QK, q + i * QK, d + i);
    s[i] = d[i] * static_cast<float>(sum);
  }
  return a;
}

void check(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& d, int64_t packed_k) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == torch::kFloat32 && x.is_contiguous(),
              "x must be a contiguous float32 [M, K] tensor");
  TORCH_CHECK(x.size(1) % QK == 0, "K must be a multiple of 32");
  TORCH_CHECK(w.dim() == 2 && w.is_contiguous() && w.size(1) == packed_k, "weight codes have the wrong shape");
  TORCH_CHECK(d.scalar_type() == torch::kFloat32 && d.is_contiguous() && d.size(0) == w.size(0) &&
                  d.size(1) == x.size(1) / QK,
              "block scales must be float32 [N, K/32]");
}

// 4-bit weights x int8 activations, MT activation rows at a time (two accumulators each: an FMA's
// latency would otherwise bound a one-row step)
template <int MT>
inline void q4_tile(const uint8_t* w, const float* d, const float* mn, const int8_t* xq, const float* xd,
                    const float* xs, int64_t K, int64_t B, float* y, int64_t N) {
  const __m256i low = _mm256_set1_epi8(0x0F);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc0[MT], acc1[MT];
  for (int t = 0; t < MT; ++t) acc0[t] = acc1[t] = _mm256_setzero_ps();
  auto block = [&](int64_t b, __m256* acc) {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + b * 16));
    const __m256i wq = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), low);
    for (int t = 0; t < MT; ++t) {
      const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + t * K + b * QK));
      const __m256i dot = _mm256_madd_epi16(_mm256_maddubs_epi16(wq, xv), ones);
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(d[b] * xd[t * B + b]), acc[t]);
    }
  };
  int64_t b = 0;
  for (; b + 1 < B; b += 2) {
    block(b, acc0);
    block(b + 1, acc1);
  }
  if (b < B) block(b, acc0);
  for (int t = 0; t < MT; ++t) {
    // plus the sum over blocks of the weights' minimum times the activations' sum
    y[t * N] = hsum(_mm256_add_ps(acc0[t], acc1[t])) + dot(mn, xs + t * B, B);
  }
}

// 8-bit weights x int8 activations; vpmaddubsw wants one unsigned operand, so the weights' signs move
// onto the activations (llama.cpp's trick)
template <int MT>
inline void q8_tile(const int8_t* w, const float* d, const int8_t* xq, const float* xd, int64_t K, int64_t B,
                    float* y, int64_t N) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc0[MT], acc1[MT];
  for (int t = 0; t < MT; ++t) acc0[t] = acc1[t] = _mm256_setzero_ps();
  auto block = [&](int64_t b, __m256* acc) {
    const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + b * QK));
    const __m256i wabs = _mm256_sign_epi8(wv, wv);
    for (int t = 0; t < MT; ++t) {
      const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + t * K + b * QK));
      const __m256i dot = _mm256_madd_epi16(_mm256_maddubs_epi16(wabs, _mm256_sign_epi8(xv, wv)), ones);
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(d[b] * xd[t * B + b]), acc[t]);
    }
  };
  int64_t b = 0;
  for (; b + 1 < B; b += 2) {
    block(b, acc0);
    block(b + 1, acc1);
  }
  if (b < B) block(b, acc0);
  for (int t = 0; t < MT; ++t) y[t * N] = hsum(_mm256_add_ps(acc0[t], acc1[t]));
}

constexpr int64_t ROWS = 4;  // activation rows per tile: 8 accumulators + operands fit the 16 registers

struct ActView {
  const int8_t* codes;
  const float* scales;
  const float* sums;
};

template <typename Tile>
torch::Tensor run(const torch::Tensor& x, int64_t N, Tile tile) {
  const int64_t M = x.size(0);
  Activations act = quantize_rows(x);
  const ActView a{act.codes.data_ptr<int8_t>(), act.scales.data_ptr<float>(), act.sums.data_ptr<float>()};
  torch::Tensor y = torch::empty({M, N}, torch::kFloat32);
  float* yp = y.data_ptr<float>();
  // each thread takes a range of output features and streams those weights once for all M rows
  at::parallel_for(0, N, 64, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      for (int64_t m = 0; m < M; m += ROWS) {
        tile(n, m, std::min<int64_t>(ROWS, M - m), a, yp + m * N + n);
      }
    }
  });
  return y;
}

torch::Tensor q4_mm(torch::Tensor x, torch::Tensor w, torch::Tensor d, torch::Tensor mn) {
  const int64_t K = x.size(1), B = K / QK, N = w.size(0);
  check(x, w, d, K / 2);
  TORCH_CHECK(w.scalar_type() == torch::kUInt8, "4-bit codes must be uint8 [N, K/2]");
  TORCH_CHECK(mn.sizes() == d.sizes() && mn.scalar_type() == torch::kFloat32 && mn.is_contiguous(),
              "block minimums must be float32 [N, K/32]");
  const uint8_t* wp = w.data_ptr<uint8_t>();
  const float *dp = d.data_ptr<float>(), *mp = mn.data_ptr<float>();
  return run(x, N, [&](int64_t n, int64_t m, int64_t mt, const ActView& a, float* y) {
    const uint8_t* wn = wp + n * (K / 2);
    const float *dn = dp + n * B, *mnn = mp + n * B;
    const int8_t* xq = a.codes + m * K;
    const float *xd = a.scales + m * B, *xs = a.sums + m * B;
    switch (mt) {
      case 4: q4_tile<4>(wn, dn, mnn, xq, xd, xs, K, B, y, N); break;
      case 3: q4_tile<3>(wn, dn, mnn, xq, xd, xs, K, B, y, N); break;
      case 2: q4_tile<2>(wn, dn, mnn, xq, xd, xs, K, B, y, N); break;
      default: q4_tile<1>(wn, dn, mnn, xq, xd, xs, K, B, y, N);
    }
  });
}

torch::Tensor q8_mm(torch::Tensor x, torch::Tensor w, torch::Tensor d) {
  const int64_t K = x.size(1), B = K / QK, N = w.size(0);
  check(x, w, d, K);
  TORCH_CHECK(w.scalar_type() == torch::kInt8, "8-bit codes must be int8 [N, K]");
  const int8_t* wp = w.data_ptr<int8_t>();
  const float* dp = d.data_ptr<float>();
  return run(x, N, [&](int64_t n, int64_t m, int64_t mt, const ActView& a, float* y) {
    const int8_t* wn = wp + n * K;
    const float* dn = dp + n * B;
    const int8_t* xq = a.codes + m * K;
    const float* xd = a.scales + m * B;
    switch (mt) {
      case 4: q8_tile<4>(wn, dn, xq, xd, K, B, y, N); break;
      case 3: q8_tile<3>(wn, dn, xq, xd, K, B, y, N); break;
      case 2: q8_tile<2>(wn, dn, xq, xd, K, B, y, N); break;
      default: q8_tile<1>(wn, dn, xq, xd, K, B, y, N);
    }
  });
}

// ---------------------------------------------------------------- the small operators of a decode step
// torch runs RMSNorm on a CPU as five operators (pow, mean, add, rsqrt, mul) plus the weight; for one
// token each costs a dispatch and an allocation, about 40 us per norm. Here it is one pass over the row.

inline float sum_squares(const float* x, int64_t n) {
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    acc = _mm256_fmadd_ps(v, v, acc);
  }
  float s = hsum(acc);
  for (; i < n; ++i) s += x[i] * x[i];
  return s;
}

inline void scale_row(const float* x, const float* w, float r, float* out, int64_t n) {
  const __m256 rv = _mm256_set1_ps(r);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), rv), _mm256_loadu_ps(w + i)));
  }
  for (; i < n; ++i) out[i] = x[i] * r * w[i];
}

void check_rows(const torch::Tensor& x, const torch::Tensor& w) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == torch::kFloat32 && x.is_contiguous(),
              "x must be a contiguous float32 [M, H] tensor");
  TORCH_CHECK(w.dim() == 1 && w.scalar_type() == torch::kFloat32 && w.is_contiguous() && w.size(0) == x.size(1),
              "the norm weight must be float32 [H]");
}

// x * rsqrt(mean(x^2) + eps) * w, row by row
torch::Tensor rms_norm(torch::Tensor x, torch::Tensor w, double eps) {
  check_rows(x, w);
  const int64_t M = x.size(0), H = x.size(1);
  torch::Tensor out = torch::empty_like(x);
  const float *xp = x.data_ptr<float>(), *wp = w.data_ptr<float>();
  float* op = out.data_ptr<float>();
  at::parallel_for(0, M, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float inv = 1.0f / std::sqrt(sum_squares(xp + r * H, H) / H + static_cast<float>(eps));
      scale_row(xp + r * H, wp, inv, op + r * H, H);
    }
  });
  return out;
}

// x += residual (in place), then returns rms_norm(x): a layer's two residual adds and the norms after them
torch::Tensor add_rms_norm_(torch::Tensor x, torch::Tensor residual, torch::Tensor w, double eps) {
  check_rows(x, w);
  TORCH_CHECK(residual.sizes() == x.sizes() && residual.scalar_type() == torch::kFloat32 && residual.is_contiguous(),
              "the residual must be a contiguous float32 tensor shaped like x");
  const int64_t M = x.size(0), H = x.size(1);
  torch::Tensor out = torch::empty_like(x);
  float* xp = x.data_ptr<float>();
  const float *rp = residual.data_ptr<float>(), *wp = w.data_ptr<float>();
  float* op = out.data_ptr<float>();
  at::parallel_for(0, M, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* row = xp + r * H;
      const float* res = rp + r * H;
      int64_t i = 0;
      for (; i + 8 <= H; i += 8) _mm256_storeu_ps(row + i, _mm256_add_ps(_mm256_loadu_ps(row + i), _mm256_loadu_ps(res + i)));
      for (; i < H; ++i) row[i] += res[i];
      const float inv = 1.0f / std::sqrt(sum_squares(row, H) / H + static_cast<float>(eps));
      scale_row(row, wp, inv, op + r * H, H);
    }
  });
  return out;
}

// Attention of one new token per sequence over its cached keys and values (a decode step), for grouped
// queries: q [rows, kv_heads, groups, hd]; keys/values [slots, kv_heads, capacity, hd] (a layer's cache);
// row r reads slot slots[r] and its first lengths[r] positions. torch's flash-attention kernel tiles for
// long queries and pays that set-up per (row, head) for these 1-token ones, and a batch of rows of
// different lengths needs a mask tensor; here each (row, kv head) is one pass over its keys and values.
torch::Tensor decode_attention(torch::Tensor q, torch::Tensor keys, torch::Tensor values, torch::Tensor slots,
                               torch::Tensor lengths, double scale) {
  TORCH_CHECK(q.dim() == 4 && q.scalar_type() == torch::kFloat32 && q.is_contiguous(),
              "q must be a contiguous float32 [rows, kv_heads, groups, head_dim] tensor");
  TORCH_CHECK(keys.dim() == 4 && keys.scalar_type() == torch::kFloat32 && keys.is_contiguous() &&
                  values.sizes() == keys.sizes() && values.scalar_type() == torch::kFloat32 && values.is_contiguous(),
              "keys and values must be contiguous float32 [slots, kv_heads, capacity, head_dim] tensors");
  const int64_t rows = q.size(0), kvh = q.size(1), groups = q.size(2), hd = q.size(3);
  const int64_t nslots = keys.size(0), cap = keys.size(2);
  TORCH_CHECK(keys.size(1) == kvh && keys.size(3) == hd, "q and the cache disagree on heads or head_dim");
  TORCH_CHECK(hd % 8 == 0, "head_dim must be a multiple of 8");
  TORCH_CHECK(slots.scalar_type() == torch::kLong && lengths.scalar_type() == torch::kLong && slots.numel() == rows &&
                  lengths.numel() == rows && slots.is_contiguous() && lengths.is_contiguous(),
              "slots and lengths must be int64 [rows]");
  const int64_t *sp = slots.data_ptr<int64_t>(), *lp = lengths.data_ptr<int64_t>();
  for (int64_t r = 0; r < rows; ++r) {
    TORCH_CHECK(sp[r] >= 0 && sp[r] < nslots && lp[r] >= 1 && lp[r] <= cap, "a slot or length is out of range");
  }
  torch::Tensor out = torch::empty({rows, kvh * groups * hd}, torch::kFloat32);
  const float *qp = q.data_ptr<float>(), *kp = keys.data_ptr<float>(), *vp = values.data_ptr<float>();
  float* op = out.data_ptr<float>();
  at::parallel_for(0, rows * kvh, 1, [&](int64_t t0, int64_t t1) {
    std::vector<float> scores;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t r = t / kvh, h = t % kvh, len = lp[r];
      const float* K = kp + ((sp[r] * kvh + h) * cap) * hd;
      const float* V = vp + ((sp[r] * kvh + h) * cap) * hd;
      scores.resize(groups * len);
      for (int64_t g = 0; g < groups; ++g) {
        const float* qg = qp + ((r * kvh + h) * groups + g) * hd;
        float* s = scores.data() + g * len;
        float top = -INFINITY;
        for (int64_t p = 0; p < len; ++p) {
          __m256 acc = _mm256_setzero_ps();
          for (int64_t i = 0; i < hd; i += 8) {
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(qg + i), _mm256_loadu_ps(K + p * hd + i), acc);
          }
          s[p] = hsum(acc) * static_cast<float>(scale);
          top = std::max(top, s[p]);
        }
        float total = 0.0f;
        for (int64_t p = 0; p < len; ++p) {
          s[p] = std::exp(s[p] - top);
          total += s[p];
        }
        const float inv = 1.0f / total;
        for (int64_t p = 0; p < len; ++p) s[p] *= inv;
      }
      // out_g = sum_p s_g[p] * V[p], every group in one pass over V
      for (int64_t i = 0; i < hd; i += 8) {
        __m256 acc[16];
        const int64_t ng = std::min<int64_t>(groups, 16);
        for (int64_t g0 = 0; g0 < groups; g0 += ng) {
          const int64_t gn = std::min<int64_t>(ng, groups - g0);
          for (int64_t g = 0; g < gn; ++g) acc[g] = _mm256_setzero_ps();
          for (int64_t p = 0; p < len; ++p) {
            const __m256 v = _mm256_loadu_ps(V + p * hd + i);
            for (int64_t g = 0; g < gn; ++g) acc[g] = _mm256_fmadd_ps(_mm256_set1_ps(scores[(g0 + g) * len + p]), v, acc[g]);
          }
          for (int64_t g = 0; g < gn; ++g) _mm256_storeu_ps(op + ((r * kvh + h) * groups + g0 + g) * hd + i, acc[g]);
        }
      }
    }
  });
  return out;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("q4_mm", &q4_mm, "x @ W.T with 4-bit block weights (code * d + m) and int8 block activations");
  m.def("q8_mm", &q8_mm, "x @ W.T with 8-bit block weights (code * d) and int8 block activations");
  m.def("rms_norm", &rms_norm, "x * rsqrt(mean(x^2) + eps) * w, row by row (float32)");
  m.def("add_rms_norm_", &add_rms_norm_, "x += residual in place, then rms_norm(x)");
  m.def("decode_attention", &decode_attention, "one query token per row over its slot's cached keys/values");
}
