/*
 * Unit tests for fingerprint.c: hex printing and parsing, known answers
 * computed independently with xxHash's own API, the segment framing (tags,
 * lengths, boundaries), piecewise segments equal to whole ones, and reuse
 * after reset.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cellar/fingerprint.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

/* ---- helpers ------------------------------------------------------------- */

/* XXH3-128 in canonical (big-endian) byte order, straight from xxHash. */
static cellar_hash reference(const void *data, size_t len)
{
    XXH128_canonical_t c;
    cellar_hash h;
    XXH128_canonicalFromHash(&c, XXH3_128bits(data, len));
    memcpy(h.bytes, c.digest, sizeof h.bytes);
    return h;
}

/* The documented framing of one segment: tag, u64 LE length, bytes. */
static size_t frame(uint8_t *out, char tag, const void *data, size_t len)
{
    out[0] = (uint8_t)tag;
    for (int i = 0; i < 8; i++)
        out[1 + i] = (uint8_t)((uint64_t)len >> (8 * i));
    memcpy(out + 9, data, len);
    return 9 + len;
}

static cellar_fingerprint *new_fp(void)
{
    cellar_fingerprint *fp = cellar_fingerprint_new();
    assert_non_null(fp);
    /* XXH3's state wants 64-byte alignment. */
    assert_int_equal((uintptr_t)fp % 64, 0);
    return fp;
}

static void assert_hash_eq(cellar_hash a, cellar_hash b)
{
    assert_memory_equal(a.bytes, b.bytes, sizeof a.bytes);
    assert_true(cellar_hash_equal(&a, &b));
}

static void assert_hash_ne(cellar_hash a, cellar_hash b)
{
    assert_false(cellar_hash_equal(&a, &b));
}

/* ---- one-shot hashes and hex --------------------------------------------- */

static void test_known_answers(void **state)
{
    (void)state;
    assert_hash_eq(cellar_hash_bytes("", 0), reference("", 0));
    assert_hash_eq(cellar_hash_bytes(NULL, 0), reference("", 0));
    assert_hash_eq(cellar_hash_bytes("abc", 3), reference("abc", 3));
    /* Canonical order: the first byte is the high byte of the high half. */
    XXH128_hash_t raw = XXH3_128bits("", 0);
    cellar_hash h = cellar_hash_bytes("", 0);
    assert_int_equal(h.bytes[0], (uint8_t)(raw.high64 >> 56));
    assert_int_equal(h.bytes[15], (uint8_t)raw.low64);
    /* Lengths around XXH3's internal size classes. */
    uint8_t buf[2048];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(i * 31 + 7);
    static const size_t lens[] = {1, 3, 4, 8, 9, 16, 17, 128, 129, 240, 241, 1024, 2048};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++)
        assert_hash_eq(cellar_hash_bytes(buf, lens[i]), reference(buf, lens[i]));
}

static void test_hex_round_trip(void **state)
{
    (void)state;
    char hex[CELLAR_HASH_HEX_LEN + 1];
    cellar_hash h, back;
    for (int i = 0; i < 16; i++)
        h.bytes[i] = (uint8_t)(i * 17); /* 00 11 22 ... ff */
    cellar_hash_to_hex(&h, hex);
    assert_string_equal(hex, "00112233445566778899aabbccddeeff");
    assert_true(cellar_hash_from_hex(hex, &back));
    assert_hash_eq(h, back);
    assert_true(cellar_hash_from_hex("00112233445566778899AABBCCDDEEFF", &back));
    assert_hash_eq(h, back);
    for (int n = 0; n < 200; n++) {
        h = cellar_hash_bytes(&n, sizeof n);
        cellar_hash_to_hex(&h, hex);
        assert_int_equal(strlen(hex), CELLAR_HASH_HEX_LEN);
        assert_true(cellar_hash_from_hex(hex, &back));
        assert_hash_eq(h, back);
    }
}

static void test_hex_rejects_bad_input(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "0",
        "00112233445566778899aabbccddeef",   /* 31 digits */
        "00112233445566778899aabbccddeeff0", /* 33 digits */
        "00112233445566778899aabbccddeefg",  /* non-hex at the end */
        "g0112233445566778899aabbccddeeff",  /* non-hex at the start */
        "0011223344556677 8899aabbccddeeff",
        "0x112233445566778899aabbccddeeff",
        "00112233445566778899aabbccddee-f",
        "00112233445566778899aabbccddeeff\n",
    };
    cellar_hash out;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(cellar_hash_from_hex(bad[i], &out));
    assert_false(cellar_hash_from_hex(NULL, &out));
    /* A NUL in the middle ends the string: 16 digits are too few. */
    char mid[CELLAR_HASH_HEX_LEN + 1];
    memcpy(mid, "00112233445566778899aabbccddeeff", sizeof mid);
    mid[16] = '\0';
    assert_false(cellar_hash_from_hex(mid, &out));
}

/* ---- the streaming fingerprint ------------------------------------------- */

static void test_segments_follow_documented_framing(void **state)
{
    (void)state;
    cellar_fingerprint *fp = new_fp();
    assert_hash_eq(cellar_fingerprint_digest(fp), reference("", 0));

    uint8_t framed[64];
    size_t n = frame(framed, CELLAR_SEG_STREAM, "abc", 3);
    cellar_fingerprint_add(fp, CELLAR_SEG_STREAM, "abc", 3);
    assert_hash_eq(cellar_fingerprint_digest(fp), reference(framed, n));

    n += frame(framed + n, CELLAR_SEG_BUFFER, "", 0);
    cellar_fingerprint_add(fp, CELLAR_SEG_BUFFER, "", 0);
    assert_hash_eq(cellar_fingerprint_digest(fp), reference(framed, n));
    cellar_fingerprint_free(fp);
    cellar_fingerprint_free(NULL);
}

static cellar_hash digest_of_segments(cellar_fingerprint *fp, const char *const *segs,
                                      size_t nsegs, char tag)
{
    cellar_fingerprint_reset(fp);
    for (size_t i = 0; i < nsegs; i++)
        cellar_fingerprint_add(fp, tag, segs[i], strlen(segs[i]));
    return cellar_fingerprint_digest(fp);
}

static void test_boundaries_and_tags_matter(void **state)
{
    (void)state;
    cellar_fingerprint *fp = new_fp();
    const char *ab_c[] = {"ab", "c"}, *a_bc[] = {"a", "bc"}, *abc[] = {"abc"};
    const char *abc_empty[] = {"abc", ""};
    cellar_hash h1 = digest_of_segments(fp, ab_c, 2, CELLAR_SEG_STREAM);
    cellar_hash h2 = digest_of_segments(fp, a_bc, 2, CELLAR_SEG_STREAM);
    cellar_hash h3 = digest_of_segments(fp, abc, 1, CELLAR_SEG_STREAM);
    cellar_hash h4 = digest_of_segments(fp, abc_empty, 2, CELLAR_SEG_STREAM);
    cellar_hash h5 = digest_of_segments(fp, abc, 1, CELLAR_SEG_BUFFER);
    assert_hash_ne(h1, h2);
    assert_hash_ne(h1, h3);
    assert_hash_ne(h2, h3);
    assert_hash_ne(h3, h4); /* an empty segment still counts */
    assert_hash_ne(h3, h5); /* same bytes, other tag */
    /* A framed segment is not the raw bytes either. */
    assert_hash_ne(h3, cellar_hash_bytes("abc", 3));
    /* Same input again gives the same digest. */
    assert_hash_eq(h1, digest_of_segments(fp, ab_c, 2, CELLAR_SEG_STREAM));
    cellar_fingerprint_free(fp);
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* begin + many updates at random cut points equals one add, for sizes that
 * cross XXH3's internal 256-byte buffer and its block boundaries. */
static void test_piecewise_equals_whole(void **state)
{
    (void)state;
    enum { SIZE = 100000 };
    uint8_t *data = malloc(SIZE);
    assert_non_null(data);
    uint64_t seed = 1;
    for (size_t i = 0; i < SIZE; i++)
        data[i] = (uint8_t)rng_next(&seed);
    cellar_fingerprint *whole = new_fp(), *pieces = new_fp();
    static const size_t sizes[] = {0, 1, 255, 256, 257, 1024, 4096, SIZE};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t len = sizes[s];
        cellar_fingerprint_reset(whole);
        cellar_fingerprint_add(whole, CELLAR_SEG_STREAM, "hdr", 3);
        cellar_fingerprint_add(whole, CELLAR_SEG_BUFFER, data, len);
        for (int trial = 0; trial < 5; trial++) {
            cellar_fingerprint_reset(pieces);
            cellar_fingerprint_add(pieces, CELLAR_SEG_STREAM, "hdr", 3);
            cellar_fingerprint_begin(pieces, CELLAR_SEG_BUFFER, len);
            for (size_t off = 0; off < len;) {
                size_t step = 1 + rng_next(&seed) % (trial < 2 ? 7 : 5000);
                if (step > len - off)
                    step = len - off;
                cellar_fingerprint_update(pieces, data + off, step);
                off += step;
            }
            cellar_fingerprint_update(pieces, data, 0); /* empty updates are no-ops */
            assert_hash_eq(cellar_fingerprint_digest(pieces),
                           cellar_fingerprint_digest(whole));
        }
    }
    /* And both equal the one-shot hash of the framed bytes. */
    uint8_t *framed = malloc(9 + 3 + 9 + SIZE + 9 + 1);
    assert_non_null(framed);
    size_t n = frame(framed, CELLAR_SEG_STREAM, "hdr", 3);
    n += frame(framed + n, CELLAR_SEG_BUFFER, data, SIZE);
    assert_hash_eq(cellar_fingerprint_digest(whole), reference(framed, n));
    /* The digest does not consume the state: more can be added after it. */
    cellar_fingerprint_add(whole, CELLAR_SEG_BUFFER, "x", 1);
    n += frame(framed + n, CELLAR_SEG_BUFFER, "x", 1);
    assert_hash_eq(cellar_fingerprint_digest(whole), reference(framed, n));
    free(framed);
    free(data);
    cellar_fingerprint_free(whole);
    cellar_fingerprint_free(pieces);
}

static void test_reset_reuse(void **state)
{
    (void)state;
    cellar_fingerprint *used = new_fp(), *fresh = new_fp();
    uint8_t junk[1000];
    memset(junk, 0xab, sizeof junk);
    cellar_fingerprint_add(used, CELLAR_SEG_STREAM, junk, sizeof junk);
    cellar_fingerprint_begin(used, CELLAR_SEG_BUFFER, 50); /* abandoned midway */
    cellar_fingerprint_update(used, junk, 20);
    cellar_fingerprint_reset(used);
    assert_hash_eq(cellar_fingerprint_digest(used), cellar_fingerprint_digest(fresh));
    cellar_fingerprint_add(used, CELLAR_SEG_STREAM, "v", 1);
    cellar_fingerprint_add(fresh, CELLAR_SEG_STREAM, "v", 1);
    assert_hash_eq(cellar_fingerprint_digest(used), cellar_fingerprint_digest(fresh));
    cellar_fingerprint_free(used);
    cellar_fingerprint_free(fresh);
}

/* Unique versions differ call to call (the counter moves, even within one
 * clock tick), and none is the fingerprint of the same bytes as a segment of
 * a data version. */
static void test_unique_versions_differ(void **state)
{
    (void)state;
    enum { N = 1000 };
    static cellar_hash seen[N];
    uint64_t counter = 0;
    for (size_t i = 0; i < N; i++) {
        seen[i] = cellar_hash_unique(&counter);
        for (size_t j = 0; j < i; j++)
            assert_false(cellar_hash_equal(&seen[i], &seen[j]));
    }
    assert_int_equal(counter, N);
    /* Another counter at the same value in the same process still differs:
     * the clock moved on. */
    uint64_t other = 0;
    cellar_hash again = cellar_hash_unique(&other);
    assert_false(cellar_hash_equal(&again, &seen[0]));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answers),
        cmocka_unit_test(test_hex_round_trip),
        cmocka_unit_test(test_hex_rejects_bad_input),
        cmocka_unit_test(test_segments_follow_documented_framing),
        cmocka_unit_test(test_boundaries_and_tags_matter),
        cmocka_unit_test(test_piecewise_equals_whole),
        cmocka_unit_test(test_reset_reuse),
        cmocka_unit_test(test_unique_versions_differ),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
