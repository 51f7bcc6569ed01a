/* Byte loops for the frame codec: XOR masking and incremental UTF-8 checking.
 *
 * Kept in C (not Cython) so the loops compile to exactly what we mean: 64-bit
 * words, no bounds checks, and one AVX2 clone picked at load time by the
 * dynamic linker (target_clones) where the CPU has it, SSE2 otherwise.
 * Nothing here touches Python objects, so callers may release the GIL.
 */
#ifndef FASTWS_BYTES_H
#define FASTWS_BYTES_H

#include <stdint.h>
#include <stddef.h>
#include <string.h>

/* Every module that cimports the codec includes this header; not all of them
 * call both functions. */
#if defined(__GNUC__)
#define FASTWS_UNUSED __attribute__((unused))
#else
#define FASTWS_UNUSED
#endif

/* ifunc-based clones need glibc: musl (Alpine, musllinux wheels) has no ifunc. */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__) && defined(__linux__) && defined(__GLIBC__)
#define FASTWS_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define FASTWS_CLONES
#endif

/* XOR `n` bytes of `src` with the 4-byte `key`, rotated by `phase` (the
 * position of src[0] inside the frame payload modulo 4), into `dst`.
 * dst may equal src (in place). Returns the phase after the last byte. */
FASTWS_CLONES FASTWS_UNUSED
static size_t fastws_mask(unsigned char *dst, const unsigned char *src, size_t n,
                          const unsigned char key[4], size_t phase)
{
    unsigned char k[8];
    uint64_t k64;
    size_t i = 0, j;

    /* Python buffers are only 16-byte aligned, so half of the 32-byte vector
     * stores would straddle cache lines: on long runs align dst first
     * (under 4 KiB the byte-wise prologue costs more than it saves). */
    if (n >= 4096) {
        size_t head = (size_t)(-(uintptr_t)dst) & 31;
        for (; i < head; i++)
            dst[i] = src[i] ^ key[(phase + i) & 3];
        src += head; dst += head; n -= head; phase = (phase + head) & 3; i = 0;
    }
    for (j = 0; j < 8; j++)
        k[j] = key[(phase + j) & 3];
    memcpy(&k64, k, 8);

    /* Word loop: memcpy keeps it legal for any alignment and compiles to
     * plain (vectorisable) loads and stores. */
    for (; i + 32 <= n; i += 32) {
        uint64_t a, b, c, d;
        memcpy(&a, src + i, 8);
        memcpy(&b, src + i + 8, 8);
        memcpy(&c, src + i + 16, 8);
        memcpy(&d, src + i + 24, 8);
        a ^= k64; b ^= k64; c ^= k64; d ^= k64;
        memcpy(dst + i, &a, 8);
        memcpy(dst + i + 8, &b, 8);
        memcpy(dst + i + 16, &c, 8);
        memcpy(dst + i + 24, &d, 8);
    }
    for (; i + 8 <= n; i += 8) {
        uint64_t a;
        memcpy(&a, src + i, 8);
        a ^= k64;
        memcpy(dst + i, &a, 8);
    }
    for (; i < n; i++)
        dst[i] = src[i] ^ k[i & 7];
    return (phase + n) & 3;
}

/* Incremental UTF-8 validation (RFC 3629). The state carried between calls
 * packs what the next continuation bytes must be:
 *   bits 0-1: continuation bytes still needed (0..3)
 *   bits 8-15 / 16-23: inclusive range allowed for the *next* byte
 * so a sequence split across frames or reads resumes exactly where it
 * stopped. Returns 0 while the bytes seen so far can still start or be a valid
 * string, -1 at the first byte that cannot (reported as soon as it is seen,
 * which is what lets the parser fail fast mid-message). */
#define FASTWS_UTF8_ACCEPT 0u

static inline uint32_t fastws_utf8_pack(uint32_t need, uint32_t lo, uint32_t hi)
{
    return need | (lo << 8) | (hi << 16);
}

FASTWS_CLONES FASTWS_UNUSED
static int fastws_utf8_check(const unsigned char *s, size_t n, uint32_t *state)
{
    uint32_t st = *state;
    size_t i = 0;

    while (i < n) {
        if (st == FASTWS_UTF8_ACCEPT) {
            /* ASCII fast path, 16 then 8 bytes at a time. */
            while (i + 16 <= n) {
                uint64_t a, b;
                memcpy(&a, s + i, 8);
                memcpy(&b, s + i + 8, 8);
                if ((a | b) & 0x8080808080808080ULL)
                    break;
                i += 16;
            }
            while (i + 8 <= n) {
                uint64_t a;
                memcpy(&a, s + i, 8);
                if (a & 0x8080808080808080ULL)
                    break;
                i += 8;
            }
            if (i >= n)
                break;
            unsigned char c = s[i++];
            if (c < 0x80)
                continue;
            if (c < 0xC2)             /* stray continuation or overlong 2-byte lead */
                goto bad;
            if (c < 0xE0)
                st = fastws_utf8_pack(1, 0x80, 0xBF);
            else if (c == 0xE0)       /* no overlong 3-byte forms */
                st = fastws_utf8_pack(2, 0xA0, 0xBF);
            else if (c == 0xED)       /* no UTF-16 surrogates */
                st = fastws_utf8_pack(2, 0x80, 0x9F);
            else if (c < 0xF0)
                st = fastws_utf8_pack(2, 0x80, 0xBF);
            else if (c == 0xF0)       /* no overlong 4-byte forms */
                st = fastws_utf8_pack(3, 0x90, 0xBF);
            else if (c < 0xF4)
                st = fastws_utf8_pack(3, 0x80, 0xBF);
            else if (c == 0xF4)       /* nothing above U+10FFFF */
                st = fastws_utf8_pack(3, 0x80, 0x8F);
            else
                goto bad;
        } else {
            unsigned char c = s[i++];
            uint32_t lo = (st >> 8) & 0xFF, hi = (st >> 16) & 0xFF;
            uint32_t need = st & 3;
            if (c < lo || c > hi)
                goto bad;
            need--;
            st = need ? fastws_utf8_pack(need, 0x80, 0xBF) : FASTWS_UTF8_ACCEPT;
        }
    }
    *state = st;
    return 0;
bad:
    *state = st;
    return -1;
}

#endif
