/* The grey-scale display of 16-bit frames in one pass (dicom_service.render.lut):
   the linear window (linear16), and a look-up in a 65536-entry table for every
   other window or LUT (lookup16).

   display = round_half_even(clip(a * stored + b, 0, 255)) for every pixel, where
   stored is the pixel's value in its Bits Stored (masked, or sign-extended when
   Pixel Representation is 1), and a, b fold the Rescale Slope/Intercept and the
   window (lut._linear_map). The arithmetic is float32 and in this order, exactly
   as the numpy path in lut.py does it (which stays the reference and the
   fallback): the integer widened to float32 (exact), one multiplication, one
   addition (never fused: built with -ffp-contract=off and no FMA target), the
   clip, then rounding to nearest with ties to even (the default rounding mode,
   which cvtps2dq and nearbyintf both use). So every level below gives the same
   bytes as numpy; tests/render/test_window_kernel.py checks it.

   Levels: 0 plain C (any CPU), 1 SSE2 (every x86-64), 2 AVX2 when the CPU has
   it; BEST_LEVEL is this CPU's highest. A NaN (only from a non-finite a or b, which lut.py never passes) maps to 0
   at every level.

   It only reads and writes the two buffers it is given, checks their sizes
   first, and releases the GIL while it runs. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>

#if defined(__x86_64__)
#define WINDOW_X86 1
#include <immintrin.h>
#endif

static int best_level;

/* values [start, n): the whole frame at level 0, the vector loops' tail above */
static void linear16_c(const uint16_t *restrict src, uint8_t *restrict dst,
                       Py_ssize_t start, Py_ssize_t n, int is_signed, int spare, float a,
                       float b) {
    const uint16_t mask = (uint16_t)(0xFFFFu >> spare);
    for (Py_ssize_t i = start; i < n; i++) {
        int32_t v = is_signed ? (int32_t)(int16_t)(uint16_t)(src[i] << spare) >> spare
                              : (int32_t)(src[i] & mask);
        float y = (float)v * a;
        y = y + b;
        if (!(y > 0.0f))
            y = 0.0f; /* and NaN, as maxps does */
        else if (y > 255.0f)
            y = 255.0f;
        dst[i] = (uint8_t)nearbyintf(y);
    }
}

#ifdef WINDOW_X86
static inline __m128i stored_values(__m128i x, int is_signed, __m128i spare, __m128i mask) {
    return is_signed ? _mm_sra_epi16(_mm_sll_epi16(x, spare), spare) : _mm_and_si128(x, mask);
}

/* max(y, 0) first: maxps returns its second operand (0) for a NaN */
static Py_ssize_t linear16_sse2(const uint16_t *restrict src, uint8_t *restrict dst,
                                Py_ssize_t n, int is_signed, int spare_bits, float a,
                                float b) {
    const __m128 va = _mm_set1_ps(a), vb = _mm_set1_ps(b);
    const __m128 lo = _mm_setzero_ps(), hi = _mm_set1_ps(255.0f);
    const __m128i mask = _mm_set1_epi16((short)(0xFFFFu >> spare_bits));
    const __m128i spare = _mm_cvtsi32_si128(spare_bits), zero = _mm_setzero_si128();
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i x = stored_values(_mm_loadu_si128((const __m128i *)(src + i)), is_signed,
                                  spare, mask);
        __m128i l = is_signed ? _mm_srai_epi32(_mm_unpacklo_epi16(x, x), 16)
                              : _mm_unpacklo_epi16(x, zero);
        __m128i h = is_signed ? _mm_srai_epi32(_mm_unpackhi_epi16(x, x), 16)
                              : _mm_unpackhi_epi16(x, zero);
        __m128 fl = _mm_add_ps(_mm_mul_ps(_mm_cvtepi32_ps(l), va), vb);
        __m128 fh = _mm_add_ps(_mm_mul_ps(_mm_cvtepi32_ps(h), va), vb);
        fl = _mm_min_ps(_mm_max_ps(fl, lo), hi);
        fh = _mm_min_ps(_mm_max_ps(fh, lo), hi);
        __m128i words = _mm_packs_epi32(_mm_cvtps_epi32(fl), _mm_cvtps_epi32(fh));
        _mm_storel_epi64((__m128i *)(dst + i), _mm_packus_epi16(words, words));
    }
    return i;
}

__attribute__((target("avx2")))
static Py_ssize_t linear16_avx2(const uint16_t *restrict src, uint8_t *restrict dst,
                                Py_ssize_t n, int is_signed, int spare_bits, float a,
                                float b) {
    const __m256 va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b);
    const __m256 lo = _mm256_setzero_ps(), hi = _mm256_set1_ps(255.0f);
    const __m128i mask = _mm_set1_epi16((short)(0xFFFFu >> spare_bits));
    const __m128i spare = _mm_cvtsi32_si128(spare_bits);
    Py_ssize_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i x0 = stored_values(_mm_loadu_si128((const __m128i *)(src + i)), is_signed,
                                   spare, mask);
        __m128i x1 = stored_values(_mm_loadu_si128((const __m128i *)(src + i + 8)),
                                   is_signed, spare, mask);
        __m256i w0 = is_signed ? _mm256_cvtepi16_epi32(x0) : _mm256_cvtepu16_epi32(x0);
        __m256i w1 = is_signed ? _mm256_cvtepi16_epi32(x1) : _mm256_cvtepu16_epi32(x1);
        __m256 f0 = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(w0), va), vb);
        __m256 f1 = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(w1), va), vb);
        __m256i r0 = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(f0, lo), hi));
        __m256i r1 = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(f1, lo), hi));
        __m128i p0 = _mm_packs_epi32(_mm256_castsi256_si128(r0),
                                     _mm256_extracti128_si256(r0, 1));
        __m128i p1 = _mm_packs_epi32(_mm256_castsi256_si128(r1),
                                     _mm256_extracti128_si256(r1, 1));
        _mm_storeu_si128((__m128i *)(dst + i), _mm_packus_epi16(p0, p1));
    }
    return i;
}
#endif

static PyObject *linear16(PyObject *self, PyObject *args) {
    Py_buffer src, dst;
    int is_signed, bits_stored, level;
    float a, b;
    if (!PyArg_ParseTuple(args, "y*w*piffi", &src, &dst, &is_signed, &bits_stored, &a, &b,
                          &level))
        return NULL;
    const char *problem = NULL;
    if (src.len != 2 * dst.len)
        problem = "the output must have one byte per 16-bit input value";
    else if (bits_stored < 1 || bits_stored > 16)
        problem = "bits_stored must be 1 to 16";
    else if (level < 0 || level > best_level)
        problem = "this CPU has no such level";
    if (problem != NULL) {
        PyBuffer_Release(&src);
        PyBuffer_Release(&dst);
        PyErr_SetString(PyExc_ValueError, problem);
        return NULL;
    }
    const uint16_t *in = (const uint16_t *)src.buf;
    uint8_t *out = (uint8_t *)dst.buf;
    Py_ssize_t n = dst.len, done = 0;
    int spare = 16 - bits_stored;
    Py_BEGIN_ALLOW_THREADS
#ifdef WINDOW_X86
    if (level == 2)
        done = linear16_avx2(in, out, n, is_signed, spare, a, b);
    else if (level == 1)
        done = linear16_sse2(in, out, n, is_signed, spare, a, b);
#endif
    linear16_c(in, out, done, n, is_signed, spare, a, b);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    Py_RETURN_NONE;
}

/* dst[i] = table[src[i]] for 16-bit src and a 65536-entry table: the look-up
   numpy's take does after widening every index to 64 bits (an 8-byte
   temporary per pixel). Every uint16 is an index inside the table. */
static PyObject *lookup16(PyObject *self, PyObject *args) {
    Py_buffer src, dst, table;
    if (!PyArg_ParseTuple(args, "y*w*y*", &src, &dst, &table))
        return NULL;
    const char *problem = NULL;
    if (src.len != 2 * dst.len)
        problem = "the output must have one byte per 16-bit input value";
    else if (table.len != 65536)
        problem = "the table must have 65536 one-byte entries";
    if (problem != NULL) {
        PyBuffer_Release(&src);
        PyBuffer_Release(&dst);
        PyBuffer_Release(&table);
        PyErr_SetString(PyExc_ValueError, problem);
        return NULL;
    }
    const uint16_t *restrict in = (const uint16_t *)src.buf;
    const uint8_t *restrict lut = (const uint8_t *)table.buf;
    uint8_t *restrict out = (uint8_t *)dst.buf;
    Py_ssize_t n = dst.len;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++)
        out[i] = lut[in[i]];
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    PyBuffer_Release(&table);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"linear16", linear16, METH_VARARGS,
     "linear16(src, dst, signed, bits_stored, a, b, level): dst[i] = "
     "round_half_even(clip(a * stored(src[i]) + b, 0, 255)) in float32, for 16-bit src."},
    {"lookup16", lookup16, METH_VARARGS,
     "lookup16(src, dst, table): dst[i] = table[src[i]], 16-bit src, 65536-entry table."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_window",
                                    "The grey-scale display of 16-bit frames in C.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__window(void) {
    best_level = 0;
#ifdef WINDOW_X86
    __builtin_cpu_init();
    best_level = __builtin_cpu_supports("avx2") ? 2 : 1;
#endif
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "BEST_LEVEL", best_level) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
