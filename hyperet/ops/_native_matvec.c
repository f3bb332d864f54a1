/* Train-policy structured Möbius matvec, one pass per direction (hyperet/ops/_native.py).
 *
 * The same formulas as hyperet/ops/_fused.py (read its docstring for the math), fused per row:
 * a row of x (4 KB at d = 1024) stays in L1 while its two norms, its product and its scaling
 * are formed, so the forward reads x once and writes y once, and the backward reads g and x
 * once (it recomputes Mx per row), writes grad_x once and accumulates the parameter gradient in a per-thread buffer.
 * Per-row scalars are float64 (as in the eager path); products are float32.
 *
 * Kinds: 1 diagonal  p (d)          (Mx)_i = p_i x_i
 *        2 block     p (d/b, b, b)  (Mx)_{ib+r} = sum_s p[i, r, s] x_{ib+s}
 *        3 banded    p (2k+1, d)    (Mx)_i = sum_j p[j, i] x_{i+j-k}  (columns in [0, d))
 * `width` is b for block and 2k + 1 for banded. Blocks run as bands (blocks_to_bands).
 *
 * Built with -O3 -march=native -std=gnu99 (vector extensions) and without -ffast-math: the row
 * sums use eight partial sums in a fixed order (vectorisable, deterministic).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define SERIES_BELOW (1.0 / 512.0) /* 2**-9, as in hyperet.ops._numerics */

/* sum_i a_i b_i in float64, eight partial sums in a fixed order (vectorised, deterministic) */
static double dot(const float *a, const float *b, int64_t d) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= d; i += 8)
        for (int l = 0; l < 8; ++l) acc[l] += (double)a[i + l] * (double)b[i + l];
    double s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < d; ++i) s += (double)a[i] * (double)b[i];
    return s;
}

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

/* 16 floats as one vector (GCC/Clang vector extension: one AVX-512 register, or emulated) */
typedef float v16 __attribute__((vector_size(64)));
static inline v16 load16(const float *p) {
    v16 v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void store16(float *p, v16 v) { memcpy(p, &v, sizeof v); }

/* out_i = beta init_i + sum_j A[j d + a_j(i)] B[q_j(i)] over the terms with 0 <= q_j(i) < d, in
 * the order j = 0, 1, ...; q_j(i) = i + s j + cst, a_j(i) = q_j(i) (transposed) or i (product).
 * Interior elements (every term in range) run in blocks of 16 with the sums in registers. */
static void band_sum(const float *restrict A, const float *restrict B, int64_t width, int64_t d,
                     int64_t s, int64_t cst, int transposed, float beta,
                     const float *restrict init, float *restrict out) {
    int64_t half = (width - 1) / 2; /* interior: half <= i < d - half for both uses */
    int64_t lo = half < d ? half : d, hi = d - half > lo ? d - half : lo;
    for (int64_t i = 0; i < d; ++i) {
        if (i == lo) { /* the interior, blocked */
            for (; i + 16 <= hi; i += 16) {
                v16 acc = init ? beta * load16(init + i) : (v16){0};
                for (int64_t j = 0; j < width; ++j) {
                    int64_t q = i + s * j + cst;
                    acc += load16(A + j * d + (transposed ? q : i)) * load16(B + q);
                }
                store16(out + i, acc);
            }
            if (i >= d) break;
        }
        float acc = init ? beta * init[i] : 0.0f;
        for (int64_t j = 0; j < width; ++j) {
            int64_t q = i + s * j + cst;
            if (q >= 0 && q < d) acc += A[j * d + (transposed ? q : i)] * B[q];
        }
        out[i] = acc;
    }
}

static void product(int kind, const float *restrict p, int64_t width, int64_t d,
                    const float *restrict x, float *restrict out) {
    if (kind == 1) {
        for (int64_t i = 0; i < d; ++i) out[i] = p[i] * x[i];
    } else { /* (Mx)_i = sum_j p[j, i] x[i + j - k] */
        band_sum(p, x, width, d, 1, -(width - 1) / 2, 0, 0.0f, NULL, out);
    }
}

/* grad_p += (g x^T restricted to the structure) */
static void grad_only(int kind, int64_t width, int64_t d, const float *restrict g,
                      const float *restrict x, float *restrict grad_p) {
    if (kind == 1) {
        for (int64_t i = 0; i < d; ++i) grad_p[i] += g[i] * x[i];
        return;
    }
    int64_t k = (width - 1) / 2;
    for (int64_t j = 0; j < width; ++j) {
        int64_t off = j - k;
        int64_t lo = off < 0 ? -off : 0, hi = off > 0 ? d - off : d;
        float *gj = grad_p + j * d;
        for (int64_t i = lo; i < hi; ++i) gj[i] += g[i] * x[i + off];
    }
}

/* out = M^T g + beta x ; grad_p += (g x^T restricted to the structure); out may be NULL */
static void transposed_and_grad(int kind, const float *restrict p, int64_t width, int64_t d,
                                const float *restrict g, const float *restrict x, float beta,
                                float *restrict out, float *restrict grad_p) {
    if (out == NULL) {
        grad_only(kind, width, d, g, x, grad_p);
        return;
    }
    if (kind == 1) {
        for (int64_t i = 0; i < d; ++i) {
            out[i] = beta * x[i] + p[i] * g[i];
            grad_p[i] += g[i] * x[i];
        }
        return;
    }
    /* (M^T g)_l = sum_j p[j, l - j + k] g[l - j + k] */
    band_sum(p, g, width, d, -1, (width - 1) / 2, 1, beta, x, out);
    grad_only(kind, width, d, g, x, grad_p);
}

/* A block-diagonal matrix is banded with half-bandwidth b - 1 and zeros between the blocks:
 * bands[j, ib + r] = blocks[i, r, r + j - (b - 1)] when 0 <= r + j - (b - 1) < b. Its products
 * then run as 2b - 1 contiguous shifted multiply-adds (vectorised), not as b x b gathers. */
static float *blocks_to_bands(const float *blocks, int64_t b, int64_t d) {
    int64_t width = 2 * b - 1;
    float *bands = (float *)calloc(width * d, sizeof(float));
    for (int64_t i0 = 0; i0 < d; i0 += b)
        for (int64_t r = 0; r < b; ++r)
            for (int64_t s = 0; s < b; ++s)
                bands[(s - r + b - 1) * d + i0 + r] = blocks[i0 * b + r * b + s];
    return bands;
}

/* grad_blocks[i, r, s] += grad_bands[s - r + b - 1, ib + r] */
static void bands_grad_to_blocks(const float *gbands, int64_t b, int64_t d, float *gblocks) {
    for (int64_t i0 = 0; i0 < d; i0 += b)
        for (int64_t r = 0; r < b; ++r)
            for (int64_t s = 0; s < b; ++s)
                gblocks[i0 * b + r * b + s] += gbands[(s - r + b - 1) * d + i0 + r];
}

/* Forward: y = k Mx for every row; n_out = |x|, m_out = |Mx| (float64, for the backward). */
void hyperet_matvec_forward(int kind, int64_t rows, int64_t d, const float *p, int64_t width,
                            const float *x, float *y, double *n_out, double *m_out, double c,
                            double w_min, double t_max, int threads) {
    float *bands = kind == 2 ? blocks_to_bands(p, width, d) : NULL;
    if (bands) {
        p = bands;
        width = 2 * width - 1;
        kind = 3;
    }
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t row = 0; row < rows; ++row) {
        const float *xr = x + row * d;
        float *yr = y + row * d;
        double n = sqrt(dot(xr, xr, d));
        product(kind, p, width, d, xr, yr);
        double m = sqrt(dot(yr, yr, d));
        Scalars s = scalars(n, m, c, w_min, t_max);
        float k = (float)s.k;
        for (int64_t i = 0; i < d; ++i) yr[i] *= k;
        n_out[row] = n;
        m_out[row] = m;
    }
    free(bands);
}

/* Backward: grad_x (rows, d) and grad_p (zeroed by the caller) from g and x; Mx is recomputed
 * per row (cheaper than reading the saved y back from memory). */
static void backward(int linear, int kind, int64_t rows, int64_t d, const float *p,
                     int64_t width, const float *g, const float *x, const double *n_in,
                     const double *m_in, float *grad_x, float *grad_p, double c, double w_min,
                     double t_max, int threads) {
    int64_t block = kind == 2 ? width : 0;
    float *bands = kind == 2 ? blocks_to_bands(p, width, d) : NULL;
    if (bands) {
        p = bands;
        width = 2 * width - 1;
        kind = 3;
    }
    int64_t psize = kind == 1 ? d : width * d;
    float *gbands = bands ? (float *)calloc(psize, sizeof(float)) : NULL;
    float *gp = bands ? gbands : grad_p;
#pragma omp parallel num_threads(threads)
    {
        int tid = 0, nt = 1;
#ifdef _OPENMP
        tid = omp_get_thread_num();
        nt = omp_get_num_threads();
#endif
        float *gm = (float *)malloc(sizeof(float) * d);
        float *mx = (float *)malloc(sizeof(float) * d);
        float *acc = (float *)calloc(psize, sizeof(float));
        int64_t lo = rows * tid / nt, hi = rows * (tid + 1) / nt;
        for (int64_t row = lo; row < hi; ++row) {
            const float *gr = g + row * d, *xr = x + row * d;
            float *gxr = grad_x ? grad_x + row * d : NULL;
            if (linear == 1) { /* plain product y = M x: grad_x = M^T g */
                transposed_and_grad(kind, p, width, d, gr, xr, 0.0f, gxr, acc);
                continue;
            }
            if (linear == 2) { /* transposed product y = M^T x: grad_x = M g */
                if (gxr) product(kind, p, width, d, gr, gxr);
                grad_only(kind, width, d, xr, gr, acc); /* d y_l / d p[j, i] = x_i, l = i+j-k */
                continue;
            }
            double n = n_in[row], m = m_in[row];
            Scalars s = scalars(n, m, c, w_min, t_max);
            product(kind, p, width, d, xr, mx); /* recomputed from the row in L1: y is not read */
            double a = dot(gr, mx, d); /* <g, Mx> */
            double ch = chi(s.t);
            double rho = s.sat ? 0.0 : 1.0 + ch * s.t * s.t;
            double alpha = a * (s.sat ? -1.0 / (m * m) : ch * c * s.r * s.r);
            double beta = s.k * a * (s.below ? -rho / (n * n) : rho * c * psi(s.z, s.w, s.r));
            float k32 = (float)s.k, alpha_k32 = (float)(alpha * s.k); /* alpha acts on y = k Mx */
            for (int64_t i = 0; i < d; ++i) gm[i] = gr[i] * k32 + mx[i] * alpha_k32;
            transposed_and_grad(kind, p, width, d, gm, xr, (float)beta, gxr, acc);
        }
        /* fixed-order reduction of the per-thread parameter gradients */
        for (int t = 0; t < nt; ++t) {
#pragma omp barrier
            if (t == tid)
                for (int64_t i = 0; i < psize; ++i) gp[i] += acc[i];
        }
        free(acc);
        free(mx);
        free(gm);
    }
    if (bands) bands_grad_to_blocks(gbands, block, d, grad_p);
    free(gbands);
    free(bands);
}

void hyperet_matvec_backward(int kind, int64_t rows, int64_t d, const float *p, int64_t width,
                             const float *g, const float *x, const double *n_in,
                             const double *m_in, float *grad_x, float *grad_p, double c,
                             double w_min, double t_max, int threads) {
    backward(0, kind, rows, d, p, width, g, x, n_in, m_in, grad_x, grad_p, c, w_min, t_max,
             threads);
}

/* The plain structured product y = M x per row (HRA's fast mode). */
void hyperet_linear_forward(int kind, int64_t rows, int64_t d, const float *p, int64_t width,
                            const float *x, float *y, int threads) {
    float *bands = kind == 2 ? blocks_to_bands(p, width, d) : NULL;
    if (bands) {
        p = bands;
        width = 2 * width - 1;
        kind = 3;
    }
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t row = 0; row < rows; ++row) product(kind, p, width, d, x + row * d, y + row * d);
    free(bands);
}

/* y = M^T x per row (banded or diagonal: HRA's weight-row map applied to tokens). */
void hyperet_linear_transposed_forward(int kind, int64_t rows, int64_t d, const float *p,
                                       int64_t width, const float *x, float *y, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t row = 0; row < rows; ++row) {
        if (kind == 1)
            product(kind, p, width, d, x + row * d, y + row * d);
        else
            band_sum(p, x + row * d, width, d, -1, (width - 1) / 2, 1, 0.0f, NULL, y + row * d);
    }
}

/* Backward of either: grad_x = M^T g (M g when transposed; skipped when grad_x is NULL) and
 * grad_p (zeroed by the caller). */
void hyperet_linear_backward(int kind, int64_t rows, int64_t d, const float *p, int64_t width,
                             const float *g, const float *x, float *grad_x, float *grad_p,
                             int transposed, int threads) {
    backward(transposed ? 2 : 1, kind, rows, d, p, width, g, x, NULL, NULL, grad_x, grad_p,
             1.0, 0.0, 0.0, threads);
}
