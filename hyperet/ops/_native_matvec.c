/* Train-policy structured Möbius matvec and plain structured products, one pass per direction
 * (hyperet/ops/_native.py).
 *
 * The same formulas as hyperet/ops/_fused.py (read its docstring for the math), fused per row:
 * a row (4 KB at d = 1024) stays in L1 while its two norms, its product and its scaling are
 * formed, so the forward reads x once and writes y once, and the backward reads g and x once (it
 * recomputes Mx per row instead of reading y back), writes grad_x once and accumulates the
 * parameter gradient in a per-thread buffer (reduced in a fixed order).
 * Per-row scalars are float64 (as in the eager path); products are float32.
 *
 * Kinds: 1 diagonal  p (d)          (Mx)_i = p_i x_i
 *        2 block     p (d/b, b, b)  (Mx)_{ib+r} = sum_s p[i, r, s] x_{ib+s}
 *        3 banded    p (2k+1, d)    (Mx)_i = sum_j p[j, i] x_{i+j-k}  (columns in [0, d))
 * `width` is b for block and 2k + 1 for banded.
 *
 * How (each call): the parameters are laid out once per call (a few KB) so that every product
 * is a short sum of 16-float vector multiply-adds with no edge cases:
 *  - bands (diagonal = one band): fw[j][i] = p[j, i], zero where column i + j - k falls
 *    outside [0, d); the row is read zero-padded by k on both sides, so
 *    (Mx)[i..i+16) = sum_j fw[j][i..i+16) * xpad[i+j..i+j+16). M^T is banded too:
 *    tr[j][l] = p[2k - j, l + j - k].
 *  - blocks with b dividing 16 (b = 2, 4, 8, 16): a 16-float chunk holds whole blocks, so
 *    (Mx)[chunk] = sum_s fw[s][chunk] * spread_s(x[chunk]) with fw[s][ib + r] = p[i, r, s] and
 *    spread_s(v)[ib + r] = v[ib + s] (a register permute); M^T likewise with tr[r][ib + s].
 *    Other b run as bands of half-width b - 1.
 *  The widths that occur in practice (bands 1, 3, 5, 7, 9; blocks 2, 4, 8, 16) are compiled as
 *  separate copies with the width a constant (unrolled, in registers).
 *
 * Plain products (HRA's weight and token sides) when d is a multiple of 16: bands with k <= 16
 * carry each row's chunks in registers (chunk i needs the chunks before and after it: one load
 * per chunk, register shifts for the bands off the centre, no windows or edge copies), for 4
 * rows at a time so that each parameter vector is loaded once per chunk for all 4; the
 * parameter gradient of a frozen input keeps its 2k + 1 accumulators in registers over the 4
 * rows. Outputs over STREAM_BYTES are written with non-temporal stores.
 *
 * Built with -O3 -march=native -std=gnu99 (vector extensions) and without -ffast-math: the row
 * sums are float64 partial sums in a fixed order (vectorised, deterministic, independent of the
 * thread count).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

#define SERIES_BELOW (1.0 / 512.0) /* 2**-9, as in hyperet.ops._numerics */
#define CHUNK 16
#define GROUP 4 /* rows whose parameter gradient is accumulated together */

/* ------------------------------------------------------------------ per-row scalars (float64) */

/* artanh(z)/z given w = 1 - z^2 (series, atanh, or log1p(z) - log(w)/2) */
static double artanh_ratio(double z, double w) {
    if (z < SERIES_BELOW) {
        double z2 = z * z;
        return 1.0 + z2 / 3.0 + z2 * z2 / 5.0;
    }
    if (z < 0.5) return atanh(z) / z;
    return (log1p(z) - 0.5 * log(w)) / z;
}

/* tanh(t)/t for t >= 0 */
static double tanh_ratio(double t) {
    if (t < SERIES_BELOW) {
        double t2 = t * t;
        return 1.0 - t2 / 3.0 + t2 * t2 * (2.0 / 15.0);
    }
    return tanh(t) / t;
}

/* (2t/sinh 2t - 1)/t^2 */
static double chi(double t) {
    if (t < SERIES_BELOW) return -2.0 / 3.0 + 14.0 / 45.0 * t * t;
    return (2.0 * t / sinh(2.0 * t) - 1.0) / (t * t);
}

/* (1/(w R) - 1)/z^2 */
static double psi(double z, double w, double r) {
    if (z < SERIES_BELOW) return 2.0 / 3.0 + 26.0 / 45.0 * z * z;
    return (1.0 / (w * r) - 1.0) / (z * z);
}

/* The per-row scalars of the forward, from n = |x| and m = |Mx|. */
typedef struct {
    double k, t, z, w, r;
    int below, sat;
} Scalars;

static Scalars scalars(double n, double m, double c, double w_min, double t_max) {
    Scalars s;
    double sqrt_c = sqrt(c);
    double w = 1.0 - c * n * n;
    s.below = w < w_min; /* on or beyond the boundary: projected radially onto w = w_min */
    double scale = s.below ? sqrt(1.0 - w_min) / (sqrt_c * n) : 1.0;
    s.w = w < w_min ? w_min : w;
    s.z = sqrt_c * n * scale;
    s.r = artanh_ratio(s.z, s.w) * scale;
    s.t = sqrt_c * m * s.r;
    s.sat = s.t >= t_max;
    s.k = s.sat ? tanh(t_max) / (sqrt_c * m) : tanh_ratio(s.t) * s.r;
    return s;
}

/* ------------------------------------------------------------------ 16-float vectors */

/* GCC/Clang vector extensions: one AVX-512 register, or emulated on narrower machines */
typedef float v16 __attribute__((vector_size(64)));
typedef float v8f __attribute__((vector_size(32)));
typedef double v8d __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));

static inline v16 load16(const float *p) {
    v16 v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void store16(float *p, v16 v) { memcpy(p, &v, sizeof v); }

/* acc += a * b in float64, the 16 products in two vectors of 8 partial sums (exact products:
 * a float32 times a float32 fits a float64) */
#ifdef __AVX512F__
static inline v8d widen(__m256 half) { return (v8d)_mm512_cvtps_pd(half); } /* one vcvtps2pd */
static inline void dot_acc(v8d acc[2], v16 a, v16 b) {
    __m512 va = (__m512)a, vb = (__m512)b;
    __m256 a1 = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(va), 1));
    __m256 b1 = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(vb), 1));
    acc[0] += widen(_mm512_castps512_ps256(va)) * widen(_mm512_castps512_ps256(vb));
    acc[1] += widen(a1) * widen(b1);
}
#else
static inline void dot_acc(v8d acc[2], v16 a, v16 b) {
    v8f a0, a1, b0, b1;
    memcpy(&a0, &a, 32);
    memcpy(&a1, (const char *)&a + 32, 32);
    memcpy(&b0, &b, 32);
    memcpy(&b1, (const char *)&b + 32, 32);
    acc[0] += __builtin_convertvector(a0, v8d) * __builtin_convertvector(b0, v8d);
    acc[1] += __builtin_convertvector(a1, v8d) * __builtin_convertvector(b1, v8d);
}
#endif

/* the 16 partial sums in a fixed order */
static inline double dot_total(const v8d acc[2]) {
    v8d s = acc[0] + acc[1];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

/* spread_s(v)[l] = v[(l / b) * b + s]: element s of each block, over the block */
static inline v16 spread(v16 v, v16i index) {
#if defined(__clang__)
    v16 out;
    for (int l = 0; l < CHUNK; ++l) out[l] = v[index[l]];
    return out;
#else
    return __builtin_shuffle(v, index);
#endif
}

/* ------------------------------------------------------------------ layouts */

typedef struct {
    int blocks;   /* 1: blocks inside a chunk (b | 16); 0: bands */
    int64_t w;    /* number of parameter rows: 2k + 1 (bands) or b (blocks) */
    int64_t half; /* k (bands), 0 (blocks) */
    int64_t rows;   /* the call's rows (all threads) */
    int64_t d, dp;  /* dp: d rounded up to a multiple of CHUNK */
    int64_t ds;     /* the row stride of fw, tr and the gradients: dp + CHUNK, so that rows
                       do not sit 4 KB apart (loads would wait on stores to another row) */
    int64_t bb;   /* the block size when the blocks run as bands (else 0) */
    float *fw, *tr; /* w rows of ds floats each: M and M^T (module comment) */
} Layout;

/* zeroed, 64-byte aligned memory (NULL when out of memory) */
static float *aligned_zeros(int64_t count) {
    void *ptr = NULL;
    size_t bytes = (size_t)(count > 0 ? count : 1) * sizeof(float);
    if (posix_memalign(&ptr, 64, bytes)) return NULL;
    memset(ptr, 0, bytes);
    return (float *)ptr;
}

static int64_t round_up(int64_t d) { return (d + CHUNK - 1) / CHUNK * CHUNK; }

/* Lay out p (kind, width) for this call; returns 0 when out of memory. */
static int layout_make(Layout *L, int kind, const float *p, int64_t width, int64_t d) {
    L->d = d;
    L->dp = round_up(d);
    L->ds = L->dp + CHUNK;
    L->bb = 0;
    L->blocks = kind == 2 && width <= CHUNK && CHUNK % width == 0;
    if (kind == 1) {
        L->w = 1;
    } else if (kind == 3 || L->blocks) {
        L->w = width;
    } else { /* other blocks: bands of half-width b - 1, zeros between the blocks */
        L->w = 2 * width - 1;
        L->bb = width;
    }
    L->half = L->blocks ? 0 : (L->w - 1) / 2;
    int64_t ds = L->ds, k = L->half, w = L->w;
    L->fw = aligned_zeros(2 * w * ds);
    if (!L->fw) return 0;
    L->tr = L->fw + w * ds;
    float *fw = L->fw, *tr = L->tr;
    if (kind == 1) {
        memcpy(fw, p, d * sizeof(float));
        memcpy(tr, p, d * sizeof(float));
    } else if (L->blocks) {
        int64_t b = width;
        for (int64_t i0 = 0; i0 < d; i0 += b)
            for (int64_t r = 0; r < b; ++r)
                for (int64_t s = 0; s < b; ++s) {
                    float v = p[i0 * b + r * b + s];
                    fw[s * ds + i0 + r] = v;
                    tr[r * ds + i0 + s] = v;
                }
    } else {
        if (kind == 3) { /* fw[j][i] = p[j, i] where the column i + j - k is inside */
            for (int64_t j = 0; j < w; ++j)
                for (int64_t i = 0; i < d; ++i)
                    if (i + j - k >= 0 && i + j - k < d) fw[j * ds + i] = p[j * d + i];
        } else { /* bands[j, ib + r] = blocks[i, r, r + j - (b - 1)] inside the block */
            int64_t b = width;
            for (int64_t i0 = 0; i0 < d; i0 += b)
                for (int64_t r = 0; r < b; ++r)
                    for (int64_t s = 0; s < b; ++s)
                        fw[(s - r + b - 1) * ds + i0 + r] = p[i0 * b + r * b + s];
        }
        /* M^T: tr[j][l] = fw[2k - j][l + j - k] */
        for (int64_t j = 0; j < w; ++j)
            for (int64_t l = 0; l < d; ++l) {
                int64_t i = l + j - k;
                if (i >= 0 && i < d) tr[j * ds + l] = fw[(2 * k - j) * ds + i];
            }
    }
    return 1;
}

/* grad_p (the caller's layout, overwritten) from the gradient in the fw layout */
static void layout_grad(const Layout *L, int kind, const float *g, float *grad_p) {
    int64_t d = L->d, ds = L->ds, w = L->w;
    if (kind == 1 || kind == 3) {
        for (int64_t j = 0; j < w; ++j) memcpy(grad_p + j * d, g + j * ds, d * sizeof(float));
    } else if (L->blocks) {
        int64_t b = w;
        for (int64_t i0 = 0; i0 < d; i0 += b)
            for (int64_t r = 0; r < b; ++r)
                for (int64_t s = 0; s < b; ++s) grad_p[i0 * b + r * b + s] = g[s * ds + i0 + r];
    } else {
        int64_t b = L->bb;
        for (int64_t i0 = 0; i0 < d; i0 += b)
            for (int64_t r = 0; r < b; ++r)
                for (int64_t s = 0; s < b; ++s)
                    grad_p[i0 * b + r * b + s] = g[(s - r + b - 1) * ds + i0 + r];
    }
}

/* ------------------------------------------------------------------ chunk primitives
 * `w` and `blk` are compile-time constants in the specialised copies (see DISPATCH).
 * Padded rows: pad[q + half] = row[q] for 0 <= q < d, zero elsewhere (length dp + 2 half + 16). */

/* floats j .. j + 16 of lo ++ hi (0 <= j <= 16): one register shift (valignd), where the
 * compiler has __builtin_shufflevector (j is a constant in the unrolled loops) */
#if defined(__has_builtin) && __has_builtin(__builtin_shufflevector)
#define REGISTER_SHIFTS 1
static inline __attribute__((always_inline)) v16 shifted(v16 lo, v16 hi, int64_t j) {
    switch (j) {
    case 1: return __builtin_shufflevector(lo, hi, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16);
    case 2: return __builtin_shufflevector(lo, hi, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17);
    case 3: return __builtin_shufflevector(lo, hi, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18);
    case 4: return __builtin_shufflevector(lo, hi, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19);
    case 5: return __builtin_shufflevector(lo, hi, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20);
    case 6: return __builtin_shufflevector(lo, hi, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21);
    case 7: return __builtin_shufflevector(lo, hi, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22);
    case 8: return __builtin_shufflevector(lo, hi, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23);
    case 9: return __builtin_shufflevector(lo, hi, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24);
    case 10: return __builtin_shufflevector(lo, hi, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25);
    case 11: return __builtin_shufflevector(lo, hi, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26);
    case 12: return __builtin_shufflevector(lo, hi, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27);
    case 13: return __builtin_shufflevector(lo, hi, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28);
    case 14: return __builtin_shufflevector(lo, hi, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29);
    case 15: return __builtin_shufflevector(lo, hi, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30);
    case 16: return __builtin_shufflevector(lo, hi, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31);
    default: return lo;
    }
}
#else
#define REGISTER_SHIFTS 0
static inline v16 shifted(v16 lo, v16 hi, int64_t j) {
    float both[2 * CHUNK];
    memcpy(both, &lo, sizeof lo);
    memcpy(both + CHUNK, &hi, sizeof hi);
    return load16(both + j);
}
#endif

/* win[j .. j + 16) for j = 0 .. 2 half, win the window of a chunk (win[t] = row[i - half + t]):
 * from two loads and register shifts when 2 half <= 16 */
#define BAND_TERMS(w, win, TERM)                                                               \
    do {                                                                                      \
        if ((w) <= CHUNK + 1 && REGISTER_SHIFTS) {                                            \
            v16 lo_ = load16(win), hi_ = load16((win) + CHUNK);                                \
            for (int64_t j = 0; j < (w); ++j) TERM(j, shifted(lo_, hi_, j));                   \
        } else {                                                                             \
            for (int64_t j = 0; j < (w); ++j) TERM(j, load16((win) + j));                      \
        }                                                                                     \
    } while (0)

/* (A v)[i..i+16) for A = fw (M) or tr (M^T); win the chunk's window of v (see BAND_TERMS),
 * vi = v[i..i+16) loaded (win is not read for blocks, nor for one band) */
static inline __attribute__((always_inline)) v16
chunk_product(int blk, int64_t w, int64_t stride, const float *A, const float *win, int64_t i,
              v16 vi, const v16i *index) {
    v16 acc = {0};
    if (blk) {
        for (int64_t s = 0; s < w; ++s) acc += load16(A + s * stride + i) * spread(vi, index[s]);
    } else if (w == 1) {
        acc = load16(A + i) * vi;
    } else {
#define TERM(j, v) (acc += load16(A + (j) * stride + i) * (v))
        BAND_TERMS(w, win, TERM);
#undef TERM
    }
    return acc;
}

/* G[.][i..i+16) += sum over R rows of a_r * (the entries of row b_r that fw[.][i..i+16)
 * multiplies; bw_r its window for this chunk, bi_r = b_r[i..i+16) loaded): the gradient of R
 * rows with one load and one store of G (a store per 16 floats is what limits this loop) */
static inline __attribute__((always_inline)) void
chunk_grad(int blk, int64_t w, int R, int64_t stride, float *G, const v16 *a,
           const float *const *bw, int64_t i, const v16 *bi, const v16i *index) {
    if (blk || w == 1) {
        for (int64_t s = 0; s < w; ++s) {
            v16 t = a[0] * (blk ? spread(bi[0], index[s]) : bi[0]);
            for (int r = 1; r < R; ++r) t += a[r] * (blk ? spread(bi[r], index[s]) : bi[r]);
            store16(G + s * stride + i, load16(G + s * stride + i) + t);
        }
    } else if (w <= CHUNK + 1 && REGISTER_SHIFTS) {
        v16 lo[GROUP], hi[GROUP];
        for (int r = 0; r < R; ++r) {
            lo[r] = load16(bw[r]);
            hi[r] = load16(bw[r] + CHUNK);
        }
        for (int64_t j = 0; j < w; ++j) {
            v16 t = a[0] * shifted(lo[0], hi[0], j);
            for (int r = 1; r < R; ++r) t += a[r] * shifted(lo[r], hi[r], j);
            store16(G + j * stride + i, load16(G + j * stride + i) + t);
        }
    } else {
        for (int64_t j = 0; j < w; ++j) {
            v16 t = a[0] * load16(bw[0] + j);
            for (int r = 1; r < R; ++r) t += a[r] * load16(bw[r] + j);
            store16(G + j * stride + i, load16(G + j * stride + i) + t);
        }
    }
}

/* The window of chunk i of a row: win[t] = row[i - h + t] for t < max(32, 16 + 2 h), zero
 * outside [0, d); the row itself inside, a copy in `edge` (that many floats) at the edges. */
static inline __attribute__((always_inline)) const float *
window(const float *row, int64_t d, int64_t h, int64_t i, float *edge) {
    int64_t len = 2 * h > CHUNK ? CHUNK + 2 * h : 2 * CHUNK;
    if (i >= h && i - h + len <= d) return row + (i - h);
    for (int64_t t = 0; t < len; ++t) {
        int64_t q = i - h + t;
        edge[t] = q >= 0 && q < d ? row[q] : 0.0f;
    }
    return edge;
}

/* row[i..i+16), zero beyond d */
static inline v16 chunk_of(const float *row, int64_t d, int64_t i) {
    if (i + CHUNK <= d) return load16(row + i);
    v16 v = {0};
    memcpy(&v, row + i, (d - i) * sizeof(float));
    return v;
}

/* a zero-padded copy of a row (or the row itself when no padding is needed) */
static inline const float *padded(const Layout *L, const float *row, float *buf) {
    if (L->half == 0 && L->dp == L->d) return row;
    int64_t h = L->half;
    memset(buf, 0, h * sizeof(float));
    memcpy(buf + h, row, L->d * sizeof(float));
    memset(buf + h + L->d, 0, (L->dp - L->d + h + CHUNK) * sizeof(float));
    return buf;
}

/* Per-thread row buffers for GROUP rows at a time, and the thread's parameter gradient */
typedef struct {
    float *xbuf[GROUP], *gbuf[GROUP], *out[GROUP], *mx[GROUP], *gm[GROUP];
    float *base, *grad;
} Scratch;

static int scratch_make(Scratch *S, const Layout *L, int grad) {
    /* rows of a multiple of 16 floats plus 16 (aligned, not 4 KB apart) */
    int64_t row = round_up(L->dp + 2 * L->half + CHUNK) + CHUNK;
    S->base = aligned_zeros(5 * GROUP * row);
    S->grad = grad ? aligned_zeros(L->w * L->ds) : NULL;
    if (!S->base || (grad && !S->grad)) {
        free(S->base);
        free(S->grad);
        return 0;
    }
    for (int r = 0; r < GROUP; ++r) {
        float *set = S->base + 5 * r * row;
        S->xbuf[r] = set;
        S->gbuf[r] = set + row;
        S->out[r] = set + 2 * row;
        S->mx[r] = set + 3 * row;
        S->gm[r] = set + 4 * row; /* its padding stays zero */
    }
    return 1;
}

static void scratch_free(Scratch *S) {
    free(S->base);
    free(S->grad);
}

static void spread_indices(int64_t b, v16i *index) {
    for (int64_t s = 0; s < b && s < CHUNK; ++s)
        for (int l = 0; l < CHUNK; ++l) index[s][l] = (int32_t)((l / b) * b + s);
}

/* ------------------------------------------------------------------ rows, specialised */

/* Möbius forward of rows [lo, hi): y = k Mx, n = |x|, m = |Mx| */
static inline __attribute__((always_inline)) void
mobius_forward_rows(int blk, int64_t w, const Layout *L, Scratch *S, int64_t lo, int64_t hi,
                    const float *x, float *y, double *n_out, double *m_out, double c,
                    double w_min, double t_max) {
    int64_t d = L->d, dp = L->dp, h = L->half;
    v16i index[CHUNK];
    if (blk) spread_indices(w, index);
    int shifts = !blk && w > 1;
    for (int64_t row = lo; row < hi; ++row) {
        const float *xr = x + row * d; /* read in place (windows, no padded copy) */
        float *out = dp == d ? y + row * d : S->out[0];
        v8d nn[2] = {{0}}, mm[2] = {{0}};
        for (int64_t i = 0; i < dp; i += CHUNK) {
            v16 xi = chunk_of(xr, d, i);
            const float *win = shifts ? window(xr, d, h, i, S->xbuf[0]) : NULL;
            v16 mi = chunk_product(blk, w, L->ds, L->fw, win, i, xi, index);
            dot_acc(nn, xi, xi);
            dot_acc(mm, mi, mi);
            store16(out + i, mi);
        }
        double n = sqrt(dot_total(nn)), m = sqrt(dot_total(mm));
        Scalars s = scalars(n, m, c, w_min, t_max);
        float k = (float)s.k;
        for (int64_t i = 0; i < dp; i += CHUNK) store16(out + i, load16(out + i) * k);
        if (out != y + row * d) memcpy(y + row * d, out, d * sizeof(float));
        n_out[row] = n;
        m_out[row] = m;
    }
}

/* Möbius backward of R rows from row0: grad_x (may be NULL) and G (fw layout) += ...
 * With y (the forward's output k Mx; NULL: recompute Mx), pass 1 reads y instead of forming
 * Mx again: one more row read, but no product (what a band or block costs). */
static inline __attribute__((always_inline)) void
mobius_backward_group(int blk, int64_t w, int R, const Layout *L, Scratch *S, int64_t row0,
                      const v16i *index, const float *g, const float *x, const float *y,
                      const double *n_in, const double *m_in, float *grad_x, double c,
                      double w_min, double t_max) {
    int64_t d = L->d, dp = L->dp, h = L->half;
    const float *xp[GROUP], *gp[GROUP], *mp[GROUP];
    float k32[GROUP], alpha_k32[GROUP], beta32[GROUP], *out[GROUP];
    for (int r = 0; r < R; ++r) {
        int64_t row = row0 + r;
        xp[r] = padded(L, x + row * d, S->xbuf[r]);
        /* g is read chunk by chunk (no neighbours): in place unless d is not a multiple of 16;
         * gp[r][i] = g[row][i] */
        gp[r] = dp == d ? g + row * d : padded(L, g + row * d, S->gbuf[r]) + h;
        /* pass 1: a = <g, Mx>, Mx recomputed from the row in L1, or y = k Mx read (mp[r] then
         * holds y, and the scalars below are divided by k) */
        v8d aa[2] = {{0}};
        if (y) {
            mp[r] = y + row * d;
            if (dp != d) { /* a copy with zeros up to dp */
                memcpy(S->mx[r], mp[r], d * sizeof(float));
                memset(S->mx[r] + d, 0, (dp - d) * sizeof(float));
                mp[r] = S->mx[r];
            }
            for (int64_t i = 0; i < dp; i += CHUNK)
                dot_acc(aa, load16(gp[r] + i), load16(mp[r] + i));
        } else {
            for (int64_t i = 0; i < dp; i += CHUNK) {
                v16 mi = chunk_product(blk, w, L->ds, L->fw, xp[r] + i, i, load16(xp[r] + h + i),
                                       index);
                dot_acc(aa, load16(gp[r] + i), mi);
                store16(S->mx[r] + i, mi);
            }
            mp[r] = S->mx[r];
        }
        double n = n_in[row], m = m_in[row];
        Scalars s = scalars(n, m, c, w_min, t_max);
        double a = y ? dot_total(aa) / s.k : dot_total(aa);
        double ch = chi(s.t);
        double rho = s.sat ? 0.0 : 1.0 + ch * s.t * s.t;
        double alpha = a * (s.sat ? -1.0 / (m * m) : ch * c * s.r * s.r);
        double beta = s.k * a * (s.below ? -rho / (n * n) : rho * c * psi(s.z, s.w, s.r));
        k32[r] = (float)s.k;
        alpha_k32[r] = (float)(y ? alpha : alpha * s.k); /* on Mx: alpha k; on y = k Mx: alpha */
        beta32[r] = (float)beta;
        out[r] = grad_x ? (dp == d ? grad_x + row * d : S->out[r]) : NULL;
    }
    /* pass 2: the gradient of Mx, gm = k g + alpha k Mx; G += gm x^T (structure) for the R
     * rows at once; grad_x = M^T gm + beta x (here when M^T needs no neighbours) */
    for (int64_t i = 0; i < dp; i += CHUNK) {
        v16 xi[GROUP], gm[GROUP];
        for (int r = 0; r < R; ++r) {
            xi[r] = load16(xp[r] + h + i);
            gm[r] = load16(gp[r] + i) * k32[r] + load16(mp[r] + i) * alpha_k32[r];
        }
        const float *xw[GROUP];
        for (int r = 0; r < R; ++r) xw[r] = xp[r] + i;
        if (S->grad) chunk_grad(blk, w, R, L->ds, S->grad, gm, xw, i, xi, index);
        for (int r = 0; r < R; ++r) {
            if (h != 0)
                store16(S->gm[r] + h + i, gm[r]);
            else if (out[r])
                store16(out[r] + i, chunk_product(blk, w, L->ds, L->tr, S->gm[r] + i, i, gm[r], index) +
                                        beta32[r] * xi[r]);
        }
    }
    for (int r = 0; r < R; ++r) {
        if (!out[r]) continue;
        if (h != 0) /* pass 3: M^T gm reads the neighbours of each chunk */
            for (int64_t i = 0; i < dp; i += CHUNK)
                store16(out[r] + i,
                        chunk_product(blk, w, L->ds, L->tr, S->gm[r] + i, i,
                                      load16(S->gm[r] + h + i), index) +
                            beta32[r] * load16(xp[r] + h + i));
        if (out[r] != grad_x + (row0 + r) * d)
            memcpy(grad_x + (row0 + r) * d, out[r], d * sizeof(float));
    }
}

static inline __attribute__((always_inline)) void
mobius_backward_rows(int blk, int64_t w, const Layout *L, Scratch *S, int64_t lo, int64_t hi,
                     const float *g, const float *x, const float *y, const double *n_in,
                     const double *m_in, float *grad_x, double c, double w_min, double t_max) {
    v16i index[CHUNK];
    if (blk) spread_indices(w, index);
    int64_t row = lo;
    for (; w > 1 && row + GROUP <= hi; row += GROUP) /* one band: G costs little, keep L1 */
        mobius_backward_group(blk, w, GROUP, L, S, row, index, g, x, y, n_in, m_in, grad_x, c,
                              w_min, t_max);
    for (; row < hi; ++row)
        mobius_backward_group(blk, w, 1, L, S, row, index, g, x, y, n_in, m_in, grad_x, c, w_min,
                              t_max);
}

/* store a chunk, only its first d - i floats at the end of a row */
static inline void store_chunk(float *row, int64_t d, int64_t i, v16 v) {
    if (i + CHUNK <= d)
        store16(row + i, v);
    else
        memcpy(row + i, &v, (d - i) * sizeof(float));
}

/* Outputs larger than this go to memory with non-temporal stores (when 64-byte aligned): they
 * do not fit the caches anyway, and a plain store first reads the line it writes (a third pass
 * over memory). Smaller outputs stay in the caches for the product that usually reads them next
 * (the token side's M^T x, read by the frozen projection). */
#define STREAM_BYTES (2 << 20)

static inline void stream_or_store(float *p, v16 v, int stream) {
#ifdef __AVX512F__
    if (stream) {
        _mm512_stream_ps(p, (__m512)v);
        return;
    }
#endif
    (void)stream;
    store16(p, v);
}

/* Whether y (rows x d floats) is written with non-temporal stores */
static int streams(const float *y, int64_t rows, int64_t d) {
#ifdef __AVX512F__
    return (uintptr_t)y % 64 == 0 && d % CHUNK == 0 && rows * d * (int64_t)sizeof(float) > STREAM_BYTES;
#else
    (void)y, (void)rows, (void)d;
    return 0;
#endif
}

/* The band terms of one aligned chunk i of a row, from the row's chunks before (prev), at (a)
 * and after (next) i, each zero beyond the row: TERM(j, v) with v[t] = row[i + t + j - h]
 * for j = 0 .. 2h (h <= 16). One register shift per band off the centre and no load beyond
 * the one of `next`, which is the following chunk's `a`. */
#define CARRY_TERMS(w, h, prev, a, next, TERM)                                                 \
    do {                                                                                      \
        for (int64_t j = 0; j < (w); ++j)                                                     \
            TERM(j, j < (h) ? shifted(prev, a, CHUNK - (h) + j)                               \
                            : j == (h) ? (a) : shifted(a, next, j - (h)));                     \
    } while (0)

/* The carried chunks of R rows of d floats from `rows` before the first chunk: prev = 0 (the
 * columns before the row), a = the first chunk */
static inline __attribute__((always_inline)) void
carry_begin(int R, const float *rows, int64_t d, v16 *prev, v16 *a) {
    for (int r = 0; r < R; ++r) {
        prev[r] = (v16){0};
        a[r] = load16(rows + r * d);
    }
}

/* The chunk after chunk i of a row, zero past its end */
static inline v16 chunk_after(const float *row, int64_t d, int64_t i) {
    return i + CHUNK < d ? load16(row + i + CHUNK) : (v16){0};
}

/* Bands (h <= 16) when d is a multiple of 16: y = A v for rows [lo, hi), R rows at a time so
 * that each parameter vector is loaded once per chunk for R rows, each row read once in place
 * with its chunks carried in registers (no windows, no edge copies: the zero chunks before and
 * after the row stand for the columns outside it, where A is zero anyway) */
static inline __attribute__((always_inline)) void
band_rows_carried(int64_t w, int R, const Layout *L, int64_t row, const float *A, const float *v,
                  float *y, int stream) {
    int64_t d = L->d, h = (w - 1) / 2; /* = L->half, a constant where w is */
    v16 a[GROUP], prev[GROUP];
    carry_begin(R, v + row * d, d, prev, a);
    for (int64_t i = 0; i < d; i += CHUNK) {
        v16 f[2 * CHUNK + 1];
        for (int64_t j = 0; j < w; ++j) f[j] = load16(A + j * L->ds + i);
        for (int r = 0; r < R; ++r) {
            v16 next = chunk_after(v + (row + r) * d, d, i);
            v16 acc = {0};
#define TERM(j, s) (acc += f[j] * (s))
            CARRY_TERMS(w, h, prev[r], a[r], next, TERM);
#undef TERM
            stream_or_store(y + (row + r) * d + i, acc, stream);
            prev[r] = a[r];
            a[r] = next;
        }
    }
}

/* Blocks inside a chunk (b | 16) when d is a multiple of 16: y = A v for rows [row, row + R),
 * each parameter vector loaded once per chunk for the R rows */
static inline __attribute__((always_inline)) void
block_rows_grouped(int64_t w, int R, const Layout *L, int64_t row, const float *A, const float *v,
                   float *y, const v16i *index, int stream) {
    int64_t d = L->d;
    for (int64_t i = 0; i < d; i += CHUNK) {
        v16 f[CHUNK];
        for (int64_t s = 0; s < w; ++s) f[s] = load16(A + s * L->ds + i);
        for (int r = 0; r < R; ++r) {
            v16 vi = load16(v + (row + r) * d + i), acc = {0};
            for (int64_t s = 0; s < w; ++s) acc += f[s] * spread(vi, index[s]);
            stream_or_store(y + (row + r) * d + i, acc, stream);
        }
    }
}

/* Bands (h <= 16), d a multiple of 16, y = M v without grad_v (the HRA weight side): the
 * parameter gradient G[j][i] += sum_r g[r][i] v[r][i + j - h] of R rows, g read in place, v
 * carried as in band_rows_carried, the w gradient vectors of a chunk held in registers over the
 * R rows (one load and one store of each per R rows) */
static inline __attribute__((always_inline)) void
band_grad_carried(int64_t w, int R, const Layout *L, float *G, int64_t row, const float *g,
                  const float *v) {
    int64_t d = L->d, h = (w - 1) / 2; /* = L->half, a constant where w is */
    v16 a[GROUP], prev[GROUP];
    carry_begin(R, v + row * d, d, prev, a);
    for (int64_t i = 0; i < d; i += CHUNK) {
        v16 acc[2 * CHUNK + 1];
        for (int64_t j = 0; j < w; ++j) acc[j] = load16(G + j * L->ds + i);
        for (int r = 0; r < R; ++r) {
            v16 next = chunk_after(v + (row + r) * d, d, i);
            v16 gi = load16(g + (row + r) * d + i);
#define TERM(j, s) (acc[j] += gi * (s))
            CARRY_TERMS(w, h, prev[r], a[r], next, TERM);
#undef TERM
            prev[r] = a[r];
            a[r] = next;
        }
        for (int64_t j = 0; j < w; ++j) store16(G + j * L->ds + i, acc[j]);
    }
}

/* Plain product rows [lo, hi): y = A v with A = M (fw) or M^T (tr); the rows are read in
 * place (windows: no padded copies; faster here than aligned copies) */
static inline __attribute__((always_inline)) void
linear_rows(int blk, int64_t w, const Layout *L, Scratch *S, int64_t lo, int64_t hi,
            const float *A, const float *v, float *y) {
    int64_t d = L->d, dp = L->dp, h = L->half;
    int shifts = !blk && w > 1;
    v16i index[CHUNK];
    if (blk) spread_indices(w, index);
    int64_t row = lo;
    if (blk && dp == d) {
        int stream = streams(y, L->rows, d);
        for (; row + GROUP <= hi; row += GROUP)
            block_rows_grouped(w, GROUP, L, row, A, v, y, index, stream);
        for (; row < hi; ++row) block_rows_grouped(w, 1, L, row, A, v, y, index, stream);
#ifdef __AVX512F__
        if (stream) _mm_sfence();
#endif
        return;
    }
    if (!blk && h <= CHUNK && dp == d && REGISTER_SHIFTS) {
        int stream = streams(y, L->rows, d);
        for (; row + GROUP <= hi; row += GROUP) band_rows_carried(w, GROUP, L, row, A, v, y, stream);
        for (; row < hi; ++row) band_rows_carried(w, 1, L, row, A, v, y, stream);
#ifdef __AVX512F__
        if (stream) _mm_sfence(); /* the streamed stores are visible before the call returns */
#endif
        return;
    }
    if (shifts && w <= CHUNK + 1 && REGISTER_SHIFTS) {
        /* bands: GROUP rows per chunk, each parameter vector loaded once for all of them */
        int64_t len = 2 * h > CHUNK ? CHUNK + 2 * h : 2 * CHUNK;
        for (; row + GROUP <= hi; row += GROUP) {
            for (int64_t i = 0; i < dp; i += CHUNK) {
                if (i >= h && i - h + len <= d) {
                    v16 f[CHUNK + 1];
                    for (int64_t j = 0; j < w; ++j) f[j] = load16(A + j * L->ds + i);
                    for (int r = 0; r < GROUP; ++r) {
                        const float *win = v + (row + r) * d + i - h;
                        v16 lo_ = load16(win), hi_ = load16(win + CHUNK), acc = {0};
                        for (int64_t j = 0; j < w; ++j) acc += f[j] * shifted(lo_, hi_, j);
                        store16(y + (row + r) * d + i, acc);
                    }
                } else {
                    for (int r = 0; r < GROUP; ++r) {
                        const float *vr = v + (row + r) * d;
                        store_chunk(y + (row + r) * d, d, i,
                                    chunk_product(blk, w, L->ds, A, window(vr, d, h, i, S->xbuf[0]),
                                                  i, chunk_of(vr, d, i), index));
                    }
                }
            }
        }
    }
    for (; row < hi; ++row) {
        const float *vr = v + row * d;
        for (int64_t i = 0; i < dp; i += CHUNK) {
            const float *win = shifts ? window(vr, d, h, i, S->xbuf[0]) : NULL;
            store_chunk(y + row * d, d, i,
                        chunk_product(blk, w, L->ds, A, win, i, chunk_of(vr, d, i), index));
        }
    }
}

/* Plain product backward of R rows from row0: grad_v = A g (may be NULL); G += a b^T
 * (structure) where (a, b) = (g, v) for y = M v and (v, g) for y = M^T v; padded copies of the
 * rows (aligned windows: faster here than reading the rows in place) */
static inline __attribute__((always_inline)) void
linear_backward_group(int blk, int64_t w, int R, const Layout *L, Scratch *S, int64_t row0,
                      const v16i *index, const float *A, const float *g, const float *v,
                      int transposed, float *grad_v) {
    int64_t d = L->d, dp = L->dp, h = L->half;
    /* g is only read chunk by chunk (no neighbours) for y = M v without grad_v (the HRA weight
     * side): then in place, without the padded copy */
    int g_in_place = !transposed && !grad_v && dp == d;
    const float *gp[GROUP], *vp[GROUP], *ac[GROUP];
    float *out[GROUP];
    for (int r = 0; r < R; ++r) {
        gp[r] = g_in_place ? NULL : padded(L, g + (row0 + r) * d, S->gbuf[r]);
        vp[r] = padded(L, v + (row0 + r) * d, S->xbuf[r]);
        out[r] = grad_v ? (dp == d ? grad_v + (row0 + r) * d : S->out[r]) : NULL;
        ac[r] = g_in_place ? g + (row0 + r) * d : (transposed ? vp[r] : gp[r]) + h;
    }
    const float *const *bp = transposed ? gp : vp;
    for (int64_t i = 0; i < dp; i += CHUNK) {
        v16 ai[GROUP], bi[GROUP];
        for (int r = 0; r < R; ++r) {
            ai[r] = load16(ac[r] + i);
            bi[r] = load16(bp[r] + h + i);
        }
        const float *bw[GROUP];
        for (int r = 0; r < R; ++r) bw[r] = bp[r] + i;
        if (S->grad) chunk_grad(blk, w, R, L->ds, S->grad, ai, bw, i, bi, index);
        for (int r = 0; r < R; ++r)
            if (out[r])
                store16(out[r] + i, chunk_product(blk, w, L->ds, A, gp[r] + i, i,
                                                  transposed ? bi[r] : ai[r], index));
    }
    for (int r = 0; r < R; ++r)
        if (out[r] && out[r] != grad_v + (row0 + r) * d)
            memcpy(grad_v + (row0 + r) * d, out[r], d * sizeof(float));
}

static inline __attribute__((always_inline)) void
linear_backward_rows(int blk, int64_t w, const Layout *L, Scratch *S, int64_t lo, int64_t hi,
                     const float *A, const float *g, const float *v, int transposed,
                     float *grad_v) {
    v16i index[CHUNK];
    if (blk) spread_indices(w, index);
    int64_t row = lo;
    if (!blk && w > 1 && L->half <= CHUNK && L->dp == L->d && !transposed && !grad_v &&
        S->grad && REGISTER_SHIFTS) {
        for (; row + GROUP <= hi; row += GROUP) band_grad_carried(w, GROUP, L, S->grad, row, g, v);
        for (; row < hi; ++row) band_grad_carried(w, 1, L, S->grad, row, g, v);
        return;
    }
    for (; w > 1 && row + GROUP <= hi; row += GROUP)
        linear_backward_group(blk, w, GROUP, L, S, row, index, A, g, v, transposed, grad_v);
    for (; row < hi; ++row)
        linear_backward_group(blk, w, 1, L, S, row, index, A, g, v, transposed, grad_v);
}

/* One specialised copy per common width (the width a constant), a generic one otherwise. */
#define DISPATCH(L, CALL)                                                                      \
    switch ((L)->blocks ? 100 + (L)->w : (L)->w) {                                             \
    case 1: CALL(0, 1); break;                                                                 \
    case 3: CALL(0, 3); break;                                                                 \
    case 5: CALL(0, 5); break;                                                                 \
    case 7: CALL(0, 7); break;                                                                 \
    case 9: CALL(0, 9); break;                                                                 \
    case 101: CALL(0, 1); break; /* 1 x 1 blocks are one band */                               \
    case 102: CALL(1, 2); break;                                                               \
    case 104: CALL(1, 4); break;                                                               \
    case 108: CALL(1, 8); break;                                                               \
    case 116: CALL(1, 16); break;                                                              \
    default: CALL(0, (L)->w); break;                                                           \
    }

/* The arguments of one call (the fields a direction does not use stay unset). */
typedef struct {
    const Layout *L;
    const float *x, *g, *A;
    float *y, *grad_x;
    double *n_out, *m_out;
    const double *n_in, *m_in;
    double c, w_min, t_max;
    int transposed; /* plain products: y = M^T v */
    int use_tr;     /* plain products: A is M^T (tr), else M (fw) */
} Call;

typedef void (*Work)(const Call *, Scratch *, int64_t lo, int64_t hi);

/* Run `work` on `threads` threads, each over its rows [lo, hi) with its own scratch; with
 * `G`, reduce the per-thread gradients (fw layout) into G in thread order (deterministic).
 * Returns 0, or 1 when a thread ran out of memory. */
static int over_rows(const Call *call, int64_t rows, int threads, float *G, Work work) {
    int failed = 0;
#pragma omp parallel num_threads(threads)
    {
        int tid = 0, nt = 1;
#ifdef _OPENMP
        tid = omp_get_thread_num();
        nt = omp_get_num_threads();
#endif
        Scratch S;
        int ok = scratch_make(&S, call->L, G != NULL);
        if (ok)
            work(call, &S, rows * tid / nt, rows * (tid + 1) / nt);
        else
            failed = 1;
        if (G)
            for (int t = 0; t < nt; ++t) {
#pragma omp barrier
                if (t == tid && ok)
                    for (int64_t e = 0; e < call->L->w * call->L->ds; ++e) G[e] += S.grad[e];
            }
        if (ok) scratch_free(&S);
    }
    return failed;
}

static void forward_work(const Call *a, Scratch *S, int64_t lo, int64_t hi) {
#define RUN(B, W)                                                                              \
    mobius_forward_rows(B, W, a->L, S, lo, hi, a->x, a->y, a->n_out, a->m_out, a->c, a->w_min, \
                        a->t_max)
    DISPATCH(a->L, RUN);
#undef RUN
}

static void backward_work(const Call *a, Scratch *S, int64_t lo, int64_t hi) {
#define RUN(B, W)                                                                              \
    mobius_backward_rows(B, W, a->L, S, lo, hi, a->g, a->x, a->y, a->n_in, a->m_in, a->grad_x, a->c, \
                         a->w_min, a->t_max)
    DISPATCH(a->L, RUN);
#undef RUN
}

static void linear_work(const Call *a, Scratch *S, int64_t lo, int64_t hi) {
#define RUN(B, W) linear_rows(B, W, a->L, S, lo, hi, a->A, a->x, a->y)
    DISPATCH(a->L, RUN);
#undef RUN
}

static void linear_backward_work(const Call *a, Scratch *S, int64_t lo, int64_t hi) {
#define RUN(B, W)                                                                              \
    linear_backward_rows(B, W, a->L, S, lo, hi, a->A, a->g, a->x, a->transposed, a->grad_x)
    DISPATCH(a->L, RUN);
#undef RUN
}

/* The layout, a zeroed gradient buffer when `grad`, the rows run, grad_p written. */
static int launch(Call *call, int kind, const float *p, int64_t width, int64_t rows, int64_t d,
                  int threads, float *grad_p, Work work) {
    Layout L;
    if (!layout_make(&L, kind, p, width, d)) return 1;
    L.rows = rows;
    call->L = &L;
    float *G = NULL;
    if (grad_p) {
        G = aligned_zeros(L.w * L.ds);
        if (!G) {
            free(L.fw);
            return 1;
        }
    }
    call->A = call->use_tr ? L.tr : L.fw;
    int failed = over_rows(call, rows, threads, G, work);
    if (G && !failed) layout_grad(&L, kind, G, grad_p);
    free(G);
    free(L.fw);
    return failed;
}

/* ------------------------------------------------------------------ entry points
 * Each returns 0 on success, 1 when out of memory. */

/* Möbius forward: y = k Mx for every row; n_out = |x|, m_out = |Mx| (float64, for the backward) */
int hyperet_matvec_forward(int kind, int64_t rows, int64_t d, const float *p, int64_t width,
                           const float *x, float *y, double *n_out, double *m_out, double c,
                           double w_min, double t_max, int threads) {
    Call a = {.x = x, .y = y, .n_out = n_out, .m_out = m_out, .c = c, .w_min = w_min,
              .t_max = t_max};
    return launch(&a, kind, p, width, rows, d, threads, NULL, forward_work);
}

/* Möbius backward: grad_x (rows, d) and grad_p (overwritten) from g and x (either NULL: not
 * needed); y, the forward's output, is read instead of recomputing Mx where that is faster
 * (bands of width > 1: 10 % of the backward at k = 2; blocks and one band recompute) */
int hyperet_matvec_backward(int kind, int64_t rows, int64_t d, const float *p, int64_t width,
                            const float *g, const float *x, const float *y, const double *n_in,
                            const double *m_in, float *grad_x, float *grad_p, double c,
                            double w_min, double t_max, int threads) {
    int recompute = !(kind == 3 && width > 1); /* measured: blocks recompute faster */
    Call a = {.g = g, .x = x, .y = recompute ? NULL : (float *)y, .n_in = n_in, .m_in = m_in,
              .grad_x = grad_x, .c = c, .w_min = w_min, .t_max = t_max};
    return launch(&a, kind, p, width, rows, d, threads, grad_p, backward_work);
}

/* The plain product y = M v (or M^T v with `transposed`) per row. */
int hyperet_linear_forward(int kind, int64_t rows, int64_t d, const float *p, int64_t width,
                           const float *v, float *y, int transposed, int threads) {
    Call a = {.x = v, .y = y, .use_tr = transposed != 0};
    return launch(&a, kind, p, width, rows, d, threads, NULL, linear_work);
}

/* Backward of either: grad_v = M^T g (M g when transposed) and grad_p (overwritten); either
 * NULL: not needed. */
int hyperet_linear_backward(int kind, int64_t rows, int64_t d, const float *p, int64_t width,
                            const float *g, const float *v, float *grad_v, float *grad_p,
                            int transposed, int threads) {
    Call a = {.g = g, .x = v, .grad_x = grad_v, .transposed = transposed != 0,
              .use_tr = transposed == 0};
    return launch(&a, kind, p, width, rows, d, threads, grad_p, linear_backward_work);
}
