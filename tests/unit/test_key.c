/*
 * Unit tests for key.c: the byte format of each field (str, bytes, int,
 * hash, list), the pairs of field lists that a careless encoding would
 * confuse (a str, the same bytes as bytes, an int), the ENOMEM-only
 * contract of the appends, cellar_key_for_node's
 * sensitivity to each of its inputs, the code-version layout and the misuse
 * it refuses, reuse after reset, and a property test that 100,000 random
 * field lists map to keys one to one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cellar/key.h"

/* ---- helpers ------------------------------------------------------------- */

static cellar_key *new_key(void)
{
    cellar_key *k = cellar_key_new();
    assert_non_null(k);
    return k;
}

static void add_str(cellar_key *k, const char *s)
{
    assert_int_equal(cellar_key_add_str(k, s, strlen(s)), CELLAR_OK);
}

/* The encoded bytes are not exposed: a key is compared by its digest, and
 * its bytes by the digest of the bytes the format says it must have (a
 * 128-bit hash that collides by chance in a test would be news). */
static void assert_keys_differ(const cellar_key *a, const cellar_key *b)
{
    cellar_hash da = cellar_key_digest(a), db = cellar_key_digest(b);
    assert_false(cellar_hash_equal(&da, &db));
}

static void assert_keys_equal(const cellar_key *a, const cellar_key *b)
{
    cellar_hash da = cellar_key_digest(a), db = cellar_key_digest(b);
    assert_true(cellar_hash_equal(&da, &db));
}

static void assert_encodes_as(const cellar_key *k, const void *bytes, size_t len)
{
    cellar_hash d = cellar_key_digest(k), e = cellar_hash_bytes(bytes, len);
    assert_true(cellar_hash_equal(&d, &e));
}

/* ---- the byte format ----------------------------------------------------- */

static void test_field_bytes(void **state)
{
    (void)state;
    cellar_key *k = new_key();
    add_str(k, "ab");
    assert_int_equal(cellar_key_add_list(k, 3), CELLAR_OK);
    assert_int_equal(cellar_key_add_str(k, "\0", 1), CELLAR_OK);
    static const uint8_t expected[] = {
        's', 2, 0, 0, 0, 0, 0, 0, 0, 'a', 'b', /**/
        'l', 3, 0, 0, 0, 0, 0, 0, 0,           /**/
        's', 1, 0, 0, 0, 0, 0, 0, 0, 0,
    };
    assert_encodes_as(k, expected, sizeof expected);

    cellar_hash h;
    uint8_t hashed[25] = {'h', 16};
    for (int i = 0; i < 16; i++)
        hashed[9 + i] = h.bytes[i] = (uint8_t)(0xa0 + i);
    cellar_key_reset(k);
    assert_int_equal(cellar_key_add_hash(k, &h), CELLAR_OK);
    assert_encodes_as(k, hashed, sizeof hashed);

    cellar_key_reset(k);
    assert_encodes_as(k, "", 0);
    cellar_key_free(k);
    cellar_key_free(NULL);
}

/* ---- pairs a weaker encoding would confuse ------------------------------- */

static void test_boundaries_matter(void **state)
{
    (void)state;
    cellar_key *a = new_key(), *b = new_key();
    add_str(a, "ab");
    add_str(a, "c");
    add_str(b, "a");
    add_str(b, "bc");
    assert_keys_differ(a, b);
    cellar_key_reset(b);
    add_str(b, "abc");
    assert_keys_differ(a, b);
    cellar_key_free(a);
    cellar_key_free(b);
}

static void test_types_matter(void **state)
{
    (void)state;
    cellar_key *a = new_key(), *b = new_key();
    /* The same 16 bytes as a hash and as a string. */
    cellar_hash h = cellar_hash_bytes("x", 1);
    assert_int_equal(cellar_key_add_hash(a, &h), CELLAR_OK);
    assert_int_equal(cellar_key_add_str(b, (const char *)h.bytes, sizeof h.bytes),
                     CELLAR_OK);
    assert_keys_differ(a, b);
    /* A list of one string and the string alone. */
    cellar_key_reset(a);
    cellar_key_reset(b);
    assert_int_equal(cellar_key_add_list(a, 1), CELLAR_OK);
    add_str(a, "x");
    add_str(b, "x");
    assert_keys_differ(a, b);
    cellar_key_free(a);
    cellar_key_free(b);
}

/* Bytes and integers, which code versions hash (constants, bytecode, argument
 * counts): each under its own tag, so a str, the same bytes as bytes and an
 * int whose encoding is those bytes are three different keys. */
static void test_bytes_and_int_fields(void **state)
{
    (void)state;
    cellar_key *k = new_key();
    assert_int_equal(cellar_key_add_bytes(k, "ab", 2), CELLAR_OK);
    assert_int_equal(cellar_key_add_int(k, -2), CELLAR_OK);
    assert_int_equal(cellar_key_add_int(k, INT64_MAX), CELLAR_OK);
    assert_int_equal(cellar_key_add_bytes(k, NULL, 0), CELLAR_OK);
    static const uint8_t expected[] = {
        'b',  2,    0, 0, 0, 0, 0, 0, 0, 'a',  'b',                          /**/
        'i',  8,    0, 0, 0, 0, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, /**/
        0xff, 0xff,                                                          /**/
        'i',  8,    0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /**/
        0xff, 0x7f,                                                          /**/
        'b',  0,    0, 0, 0, 0, 0, 0, 0,
    };
    assert_encodes_as(k, expected, sizeof expected);

    /* 1 as an int, and its 8 little-endian bytes as str and as bytes; and the
     * one-character str and bytes "1". */
    static const char one_le[8] = {1, 0, 0, 0, 0, 0, 0, 0};
    cellar_hash d[5];
    cellar_key_reset(k);
    assert_int_equal(cellar_key_add_int(k, 1), CELLAR_OK);
    d[0] = cellar_key_digest(k);
    cellar_key_reset(k);
    assert_int_equal(cellar_key_add_str(k, one_le, sizeof one_le), CELLAR_OK);
    d[1] = cellar_key_digest(k);
    cellar_key_reset(k);
    assert_int_equal(cellar_key_add_bytes(k, one_le, sizeof one_le), CELLAR_OK);
    d[2] = cellar_key_digest(k);
    cellar_key_reset(k);
    add_str(k, "1");
    d[3] = cellar_key_digest(k);
    cellar_key_reset(k);
    assert_int_equal(cellar_key_add_bytes(k, "1", 1), CELLAR_OK);
    d[4] = cellar_key_digest(k);
    for (int i = 0; i < 5; i++)
        for (int j = i + 1; j < 5; j++)
            assert_false(cellar_hash_equal(&d[i], &d[j]));

    /* Bytes are copied: changing the caller's buffer afterwards changes
     * nothing. */
    char buf[4] = "xyz";
    cellar_key *a = new_key(), *b = new_key();
    assert_int_equal(cellar_key_add_bytes(a, buf, 3), CELLAR_OK);
    buf[0] = 'Q';
    assert_int_equal(cellar_key_add_bytes(b, "xyz", 3), CELLAR_OK);
    assert_keys_equal(a, b);
    /* Every int is its own key; the sign matters. */
    cellar_key_reset(a);
    cellar_key_reset(b);
    assert_int_equal(cellar_key_add_int(a, -1), CELLAR_OK);
    assert_int_equal(cellar_key_add_int(b, 1), CELLAR_OK);
    assert_keys_differ(a, b);
    cellar_key_reset(b);
    assert_int_equal(cellar_key_add_int(b, INT64_MIN), CELLAR_OK);
    assert_keys_differ(a, b);
    cellar_key_free(a);
    cellar_key_free(b);
    cellar_key_free(k);
}

/* The contract of both: CELLAR_OK or CELLAR_ENOMEM and nothing else, and a
 * failure is sticky until reset, for every kind of append after it. */
static void test_bytes_and_int_fail_only_with_enomem(void **state)
{
    (void)state;
    cellar_key *k = new_key();
    char tiny[1] = {'z'};
    assert_int_equal(cellar_key_add_bytes(k, tiny, SIZE_MAX), CELLAR_ENOMEM);
    assert_int_equal(cellar_key_add_int(k, 5), CELLAR_ENOMEM);
    assert_int_equal(cellar_key_add_bytes(k, "a", 1), CELLAR_ENOMEM);
    assert_int_equal(cellar_key_add_str(k, "a", 1), CELLAR_ENOMEM);
    cellar_key_reset(k);
    add_str(k, "ok");
    assert_int_equal(cellar_key_add_bytes(k, tiny, SIZE_MAX - 9), CELLAR_ENOMEM);
    assert_int_equal(cellar_key_add_bytes(k, tiny, SIZE_MAX - 20), CELLAR_ENOMEM);
    assert_int_equal(cellar_key_add_int(k, 0), CELLAR_ENOMEM);
    /* After reset the same appends succeed and give the fresh key. */
    cellar_key_reset(k);
    assert_int_equal(cellar_key_add_int(k, 5), CELLAR_OK);
    assert_int_equal(cellar_key_add_bytes(k, "a", 1), CELLAR_OK);
    cellar_key *fresh = new_key();
    assert_int_equal(cellar_key_add_int(fresh, 5), CELLAR_OK);
    assert_int_equal(cellar_key_add_bytes(fresh, "a", 1), CELLAR_OK);
    assert_keys_equal(k, fresh);
    cellar_key_free(fresh);
    cellar_key_free(k);
}

static void test_lists_and_empties_matter(void **state)
{
    (void)state;
    cellar_key *a = new_key(), *b = new_key();
    assert_int_equal(cellar_key_add_list(a, 2), CELLAR_OK);
    add_str(a, "x");
    add_str(a, "y");
    add_str(b, "x");
    add_str(b, "y");
    assert_keys_differ(a, b);

    /* An empty string is a field; leaving it out is not the same key. */
    cellar_key_reset(a);
    cellar_key_reset(b);
    add_str(a, "n");
    add_str(a, "");
    add_str(b, "n");
    assert_keys_differ(a, b);
    cellar_key_reset(a);
    add_str(a, "");
    cellar_key_reset(b);
    assert_keys_differ(a, b);

    /* An empty list is a field too, and its count is part of it. */
    cellar_key_reset(a);
    cellar_key_reset(b);
    assert_int_equal(cellar_key_add_list(a, 0), CELLAR_OK);
    assert_keys_differ(a, b);
    assert_int_equal(cellar_key_add_list(b, 1), CELLAR_OK);
    assert_keys_differ(a, b);

    cellar_key_free(a);
    cellar_key_free(b);
}

static void test_large_fields_grow_the_buffer(void **state)
{
    (void)state;
    cellar_key *k = new_key();
    enum { BIG = 100000 };
    uint8_t *expected = calloc(13 + 9 + BIG, 1);
    assert_non_null(expected);
    static const uint8_t head[13] = {'s', 4, 0, 0, 0, 0, 0, 0, 0, 'h', 'e', 'a', 'd'};
    memcpy(expected, head, sizeof head);
    expected[13] = 's';
    expected[14] = BIG & 0xff;
    expected[15] = (BIG >> 8) & 0xff;
    expected[16] = (BIG >> 16) & 0xff;
    for (size_t i = 0; i < BIG; i++)
        expected[22 + i] = (uint8_t)(i * 7);
    add_str(k, "head");
    assert_int_equal(cellar_key_add_str(k, (const char *)expected + 22, BIG), CELLAR_OK);
    assert_encodes_as(k, expected, 13 + 9 + BIG);
    free(expected);
    cellar_key_free(k);
}

/* A length that would wrap the buffer size must fail cleanly, before any
 * byte is read, and leave the key unusable until reset. */
static void test_huge_length_is_refused(void **state)
{
    (void)state;
    cellar_key *k = new_key();
    char tiny[1] = {'z'};
    add_str(k, "a");
    assert_int_equal(cellar_key_add_str(k, tiny, SIZE_MAX - 4), CELLAR_ENOMEM);
    assert_int_equal(cellar_key_add_str(k, tiny, SIZE_MAX), CELLAR_ENOMEM);
    assert_int_equal(cellar_key_add_list(k, 1), CELLAR_ENOMEM);
    cellar_key_reset(k);
    add_str(k, "a");
    cellar_key *fresh = new_key();
    add_str(fresh, "a");
    assert_keys_equal(k, fresh);
    cellar_key_free(k);
    cellar_key_free(fresh);
}

/* ---- cellar_key_for_node ------------------------------------------------- */

typedef struct node_inputs {
    const char *node;
    cellar_hash code;
    size_t nparams;
    const char *names[3];
    cellar_hash versions[3];
} node_inputs;

static cellar_hash key_of(cellar_key *k, const node_inputs *in)
{
    cellar_hash out;
    memset(&out, 0x5a, sizeof out);
    assert_int_equal(cellar_key_for_node(k, in->node, strlen(in->node), &in->code,
                                         in->nparams, in->names, in->versions, &out),
                     CELLAR_OK);
    return out;
}

static node_inputs base_inputs(void)
{
    node_inputs in = {.node = "model", .nparams = 2, .names = {"data", "alpha"}};
    in.code = cellar_hash_bytes("def model(data, alpha): ...", 27);
    in.versions[0] = cellar_hash_bytes("data-v1", 7);
    in.versions[1] = cellar_hash_bytes("alpha-v1", 8);
    return in;
}

static void assert_key_changes(cellar_key *k, const node_inputs *changed)
{
    node_inputs base = base_inputs();
    cellar_hash a = key_of(k, &base), b = key_of(k, changed);
    assert_false(cellar_hash_equal(&a, &b));
}

static void test_key_for_node_inputs(void **state)
{
    (void)state;
    cellar_key *k = new_key();
    node_inputs base = base_inputs();
    cellar_hash first = key_of(k, &base), again = key_of(k, &base);
    assert_true(cellar_hash_equal(&first, &again));

    node_inputs in = base_inputs(); /* same pairs, other parameter order */
    in.names[0] = "alpha";
    in.names[1] = "data";
    in.versions[0] = base.versions[1];
    in.versions[1] = base.versions[0];
    assert_key_changes(k, &in);

    in = base_inputs(); /* same versions under other names */
    in.names[1] = "beta";
    assert_key_changes(k, &in);

    in = base_inputs(); /* the versions trade places */
    in.versions[0] = base.versions[1];
    in.versions[1] = base.versions[0];
    assert_key_changes(k, &in);

    in = base_inputs();
    in.code = cellar_hash_bytes("def model(data, alpha): pass", 28);
    assert_key_changes(k, &in);

    in = base_inputs();
    in.node = "model2";
    assert_key_changes(k, &in);

    in = base_inputs();
    in.versions[1] = cellar_hash_bytes("alpha-v2", 8);
    assert_key_changes(k, &in);

    in = base_inputs(); /* one parameter fewer */
    in.nparams = 1;
    assert_key_changes(k, &in);

    /* The node name's boundary against the first parameter name. */
    in = base_inputs();
    in.nparams = 1;
    in.node = "modeld";
    in.names[0] = "ata";
    node_inputs other = base_inputs();
    other.nparams = 1;
    cellar_hash x = key_of(k, &in), y = key_of(k, &other);
    assert_false(cellar_hash_equal(&x, &y));
    cellar_key_free(k);
}

/* The key is exactly the documented fields, so other code (or a future
 * version) can rebuild it by hand. */
static void test_key_for_node_matches_documented_fields(void **state)
{
    (void)state;
    cellar_key *k = new_key(), *manual = new_key();
    node_inputs in = base_inputs();
    cellar_hash got = key_of(k, &in);
    add_str(manual, in.node);
    assert_int_equal(cellar_key_add_hash(manual, &in.code), CELLAR_OK);
    assert_int_equal(cellar_key_add_list(manual, in.nparams), CELLAR_OK);
    for (size_t i = 0; i < in.nparams; i++) {
        assert_int_equal(cellar_key_add_list(manual, 2), CELLAR_OK);
        add_str(manual, in.names[i]);
        assert_int_equal(cellar_key_add_hash(manual, &in.versions[i]), CELLAR_OK);
    }
    assert_keys_equal(k, manual);
    cellar_hash want = cellar_key_digest(manual);
    assert_true(cellar_hash_equal(&got, &want));

    /* No parameters: NULL arrays are fine. */
    cellar_hash none;
    assert_int_equal(cellar_key_for_node(k, "n", 1, &in.code, 0, NULL, NULL, &none),
                     CELLAR_OK);
    cellar_key_reset(manual);
    add_str(manual, "n");
    assert_int_equal(cellar_key_add_hash(manual, &in.code), CELLAR_OK);
    assert_int_equal(cellar_key_add_list(manual, 0), CELLAR_OK);
    want = cellar_key_digest(manual);
    assert_true(cellar_hash_equal(&none, &want));
    cellar_key_free(k);
    cellar_key_free(manual);
}

static void test_reset_reuse(void **state)
{
    (void)state;
    cellar_key *k = new_key(), *fresh = new_key();
    /* Dirty k with a long key first, so reuse starts from a grown buffer. */
    for (int i = 0; i < 100; i++)
        add_str(k, "some earlier key material");
    cellar_key_reset(k);
    add_str(k, "ab");
    assert_int_equal(cellar_key_add_list(k, 7), CELLAR_OK);
    add_str(fresh, "ab");
    assert_int_equal(cellar_key_add_list(fresh, 7), CELLAR_OK);
    assert_keys_equal(k, fresh);

    /* cellar_key_for_node resets its scratch key itself. */
    node_inputs in = base_inputs();
    cellar_hash dirty = key_of(k, &in);
    cellar_key *clean = new_key();
    cellar_hash want = key_of(clean, &in);
    assert_true(cellar_hash_equal(&dirty, &want));
    cellar_key_free(k);
    cellar_key_free(fresh);
    cellar_key_free(clean);
}

/* ---- code versions ------------------------------------------------------- */

static void test_code_version_matches_documented_fields(void **state)
{
    (void)state;
    cellar_key *k = new_key(), *manual = new_key();
    cellar_hash src = cellar_hash_bytes("def f(): return g(X)", 20);
    cellar_hash g = cellar_hash_bytes("g", 1), x = cellar_hash_bytes("X", 1);
    add_str(k, "left over from another use");
    cellar_hash got;
    assert_int_equal(cellar_key_code_version_begin(k, &src, 2), CELLAR_OK);
    assert_int_equal(cellar_key_code_version_add(k, "g", 1, &g), CELLAR_OK);
    assert_int_equal(cellar_key_code_version_add(k, "X", 1, &x), CELLAR_OK);
    assert_int_equal(cellar_key_code_version_finish(k, &got), CELLAR_OK);

    add_str(manual, "code");
    assert_int_equal(cellar_key_add_hash(manual, &src), CELLAR_OK);
    assert_int_equal(cellar_key_add_list(manual, 2), CELLAR_OK);
    assert_int_equal(cellar_key_add_list(manual, 2), CELLAR_OK);
    add_str(manual, "g");
    assert_int_equal(cellar_key_add_hash(manual, &g), CELLAR_OK);
    assert_int_equal(cellar_key_add_list(manual, 2), CELLAR_OK);
    add_str(manual, "X");
    assert_int_equal(cellar_key_add_hash(manual, &x), CELLAR_OK);
    cellar_hash want = cellar_key_digest(manual);
    assert_true(cellar_hash_equal(&got, &want));

    /* Each part counts: the order of reads, a name, a version, the source. */
    cellar_hash other;
    assert_int_equal(cellar_key_code_version_begin(k, &src, 2), CELLAR_OK);
    cellar_key_code_version_add(k, "X", 1, &x);
    cellar_key_code_version_add(k, "g", 1, &g);
    assert_int_equal(cellar_key_code_version_finish(k, &other), CELLAR_OK);
    assert_false(cellar_hash_equal(&got, &other));
    assert_int_equal(cellar_key_code_version_begin(k, &src, 2), CELLAR_OK);
    cellar_key_code_version_add(k, "g", 1, &x);
    cellar_key_code_version_add(k, "X", 1, &x);
    assert_int_equal(cellar_key_code_version_finish(k, &other), CELLAR_OK);
    assert_false(cellar_hash_equal(&got, &other));
    assert_int_equal(cellar_key_code_version_begin(k, &g, 2), CELLAR_OK);
    cellar_key_code_version_add(k, "g", 1, &g);
    cellar_key_code_version_add(k, "X", 1, &x);
    assert_int_equal(cellar_key_code_version_finish(k, &other), CELLAR_OK);
    assert_false(cellar_hash_equal(&got, &other));

    /* Nothing read: still not the source version itself. */
    assert_int_equal(cellar_key_code_version_begin(k, &src, 0), CELLAR_OK);
    assert_int_equal(cellar_key_code_version_finish(k, &other), CELLAR_OK);
    assert_false(cellar_hash_equal(&src, &other));
    cellar_key_free(k);
    cellar_key_free(manual);
}

static void test_code_version_refuses_misuse(void **state)
{
    (void)state;
    cellar_key *k = new_key();
    cellar_hash src = cellar_hash_bytes("src", 3), out, untouched;
    memset(&out, 0x5a, sizeof out);
    untouched = out;
    /* An add with no begin. */
    assert_int_equal(cellar_key_code_version_add(k, "a", 1, &src), CELLAR_EINVAL);
    assert_int_equal(cellar_key_code_version_finish(k, &out), CELLAR_EINVAL);
    /* One pair short. */
    assert_int_equal(cellar_key_code_version_begin(k, &src, 2), CELLAR_OK);
    assert_int_equal(cellar_key_code_version_add(k, "a", 1, &src), CELLAR_OK);
    assert_int_equal(cellar_key_code_version_finish(k, &out), CELLAR_EINVAL);
    /* One pair too many. */
    assert_int_equal(cellar_key_code_version_begin(k, &src, 1), CELLAR_OK);
    assert_int_equal(cellar_key_code_version_add(k, "a", 1, &src), CELLAR_OK);
    assert_int_equal(cellar_key_code_version_add(k, "b", 1, &src), CELLAR_EINVAL);
    assert_int_equal(cellar_key_code_version_finish(k, &out), CELLAR_EINVAL);
    /* A finish twice. */
    assert_int_equal(cellar_key_code_version_begin(k, &src, 0), CELLAR_OK);
    assert_int_equal(cellar_key_code_version_finish(k, &out), CELLAR_OK);
    untouched = out;
    assert_int_equal(cellar_key_code_version_finish(k, &out), CELLAR_EINVAL);
    /* A name too long to encode: ENOMEM, sticky through finish. */
    char tiny[1] = {'z'};
    assert_int_equal(cellar_key_code_version_begin(k, &src, 1), CELLAR_OK);
    assert_int_equal(cellar_key_code_version_add(k, tiny, SIZE_MAX, &src), CELLAR_ENOMEM);
    assert_int_equal(cellar_key_code_version_finish(k, &out), CELLAR_ENOMEM);
    assert_memory_equal(&out, &untouched, sizeof out);
    /* begin starts afresh after all of that. */
    cellar_hash again, fresh;
    assert_int_equal(cellar_key_code_version_begin(k, &src, 0), CELLAR_OK);
    assert_int_equal(cellar_key_code_version_finish(k, &again), CELLAR_OK);
    cellar_key *clean = new_key();
    assert_int_equal(cellar_key_code_version_begin(clean, &src, 0), CELLAR_OK);
    assert_int_equal(cellar_key_code_version_finish(clean, &fresh), CELLAR_OK);
    assert_true(cellar_hash_equal(&again, &fresh));
    cellar_key_free(clean);
    cellar_key_free(k);
}

/* ---- property: distinct field lists never share a key -------------------- */

/* Fields drawn from tiny alphabets so that random lists collide often in
 * content and only the encoding keeps them apart. */
typedef struct field {
    char type; /* 's', 'b', 'i', 'h', 'l' */
    uint8_t len;
    int64_t num; /* list count, or the int */
    uint8_t data[16];
} field;

enum { MAX_FIELDS = 5, SAMPLES = 100000, TABLE = 1 << 18 };

typedef struct sample {
    field fields[MAX_FIELDS];
    uint8_t nfields;
    cellar_hash digest;
} sample;

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static void random_field(field *f, uint64_t *seed)
{
    static const char types[] = "sbihl";
    memset(f, 0, sizeof *f);
    f->type = types[rng_next(seed) % 5];
    switch (f->type) {
    case 'l': f->num = (int64_t)(rng_next(seed) % 3); break;
    /* Small ints, some of them equal to a list count or to the bytes of a
     * str or bytes field. */
    case 'i': f->num = (int64_t)(rng_next(seed) % 4) - 1; return;
    case 'h': f->len = 16; break;
    default: f->len = (uint8_t)(rng_next(seed) % 3 ? rng_next(seed) % 3 : 16); break;
    }
    for (int i = 0; i < f->len; i++)
        f->data[i] = (uint8_t)("ab\0\x01"[rng_next(seed) % 4]);
}

static void encode(cellar_key *k, const sample *s)
{
    cellar_key_reset(k);
    for (int i = 0; i < s->nfields; i++) {
        const field *f = &s->fields[i];
        cellar_hash h;
        cellar_status st = CELLAR_OK;
        switch (f->type) {
        case 's': st = cellar_key_add_str(k, (const char *)f->data, f->len); break;
        case 'b': st = cellar_key_add_bytes(k, f->data, f->len); break;
        case 'i': st = cellar_key_add_int(k, f->num); break;
        case 'l': st = cellar_key_add_list(k, (size_t)f->num); break;
        case 'h':
            memcpy(h.bytes, f->data, 16);
            st = cellar_key_add_hash(k, &h);
            break;
        }
        assert_int_equal(st, CELLAR_OK);
    }
}

/* Member by member: struct padding is not part of a field. */
static bool same_fields(const sample *a, const sample *b)
{
    if (a->nfields != b->nfields)
        return false;
    for (int i = 0; i < a->nfields; i++) {
        const field *x = &a->fields[i], *y = &b->fields[i];
        if (x->type != y->type || x->len != y->len || x->num != y->num ||
            memcmp(x->data, y->data, sizeof x->data) != 0)
            return false;
    }
    return true;
}

static void test_random_lists_encode_injectively(void **state)
{
    (void)state;
    cellar_key *k = new_key();
    sample *samples = calloc(SAMPLES, sizeof *samples);
    int32_t *table = malloc(TABLE * sizeof *table);
    assert_non_null(samples);
    assert_non_null(table);
    memset(table, -1, TABLE * sizeof *table);
    uint64_t seed = 7;
    size_t distinct = 0, repeats = 0;
    for (int32_t i = 0; i < SAMPLES; i++) {
        sample *s = &samples[i];
        s->nfields = (uint8_t)(rng_next(&seed) % (MAX_FIELDS + 1));
        for (int j = 0; j < s->nfields; j++)
            random_field(&s->fields[j], &seed);
        encode(k, s);
        s->digest = cellar_key_digest(k);
        /* Look the key up; equal keys must mean equal field lists. */
        size_t slot = ((size_t)s->digest.bytes[0] << 16 |
                       (size_t)s->digest.bytes[1] << 8 | s->digest.bytes[2]) &
                      (TABLE - 1);
        for (; table[slot] >= 0; slot = (slot + 1) & (TABLE - 1))
            if (cellar_hash_equal(&samples[table[slot]].digest, &s->digest))
                break;
        if (table[slot] < 0) {
            table[slot] = i;
            distinct++;
            continue;
        }
        assert_true(same_fields(&samples[table[slot]], s));
        repeats++;
    }
    print_message("%d random field lists: %zu distinct encodings, %zu exact repeats\n",
                  SAMPLES, distinct, repeats);
    /* The generator must actually produce both, or the test proves little. */
    assert_true(distinct > SAMPLES / 2);
    assert_true(repeats > 100);
    free(samples);
    free(table);
    cellar_key_free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_field_bytes),
        cmocka_unit_test(test_boundaries_matter),
        cmocka_unit_test(test_types_matter),
        cmocka_unit_test(test_bytes_and_int_fields),
        cmocka_unit_test(test_bytes_and_int_fail_only_with_enomem),
        cmocka_unit_test(test_lists_and_empties_matter),
        cmocka_unit_test(test_large_fields_grow_the_buffer),
        cmocka_unit_test(test_huge_length_is_refused),
        cmocka_unit_test(test_key_for_node_inputs),
        cmocka_unit_test(test_key_for_node_matches_documented_fields),
        cmocka_unit_test(test_code_version_matches_documented_fields),
        cmocka_unit_test(test_code_version_refuses_misuse),
        cmocka_unit_test(test_reset_reuse),
        cmocka_unit_test(test_random_lists_encode_injectively),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
