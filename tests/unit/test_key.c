/*
 * Unit tests for key.c: the byte format of each field, the pairs of field
 * lists that a careless encoding would confuse, cellar_key_for_node's
 * sensitivity to each of its inputs, reuse after reset, and a property test
 * that 100,000 random field lists map to byte strings one to one.
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

/* Asserts that two keys differ both in their bytes and in their digests. */
static void assert_keys_differ(const cellar_key *a, const cellar_key *b)
{
    size_t la, lb;
    const uint8_t *ba = cellar_key_bytes(a, &la);
    const uint8_t *bb = cellar_key_bytes(b, &lb);
    assert_false(la == lb && (la == 0 || memcmp(ba, bb, la) == 0));
    cellar_hash da = cellar_key_digest(a), db = cellar_key_digest(b);
    assert_false(cellar_hash_equal(&da, &db));
}

static void assert_keys_equal(const cellar_key *a, const cellar_key *b)
{
    size_t la, lb;
    const uint8_t *ba = cellar_key_bytes(a, &la);
    const uint8_t *bb = cellar_key_bytes(b, &lb);
    assert_int_equal(la, lb);
    if (la)
        assert_memory_equal(ba, bb, la);
    cellar_hash da = cellar_key_digest(a), db = cellar_key_digest(b);
    assert_true(cellar_hash_equal(&da, &db));
}

/* ---- the byte format ----------------------------------------------------- */

static void test_field_bytes(void **state)
{
    (void)state;
    cellar_key *k = new_key();
    add_str(k, "ab");
    assert_int_equal(cellar_key_add_int(k, -2), CELLAR_OK);
    assert_int_equal(cellar_key_add_list(k, 3), CELLAR_OK);
    assert_int_equal(cellar_key_add_bytes(k, "\0", 1), CELLAR_OK);
    static const uint8_t expected[] = {
        's', 2, 0, 0, 0, 0, 0, 0, 0, 'a',  'b',                                      /**/
        'i', 8, 0, 0, 0, 0, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /**/
        'l', 3, 0, 0, 0, 0, 0, 0, 0,                                                 /**/
        'b', 1, 0, 0, 0, 0, 0, 0, 0, 0,
    };
    size_t len;
    const uint8_t *bytes = cellar_key_bytes(k, &len);
    assert_int_equal(len, sizeof expected);
    assert_memory_equal(bytes, expected, sizeof expected);
    cellar_hash d = cellar_key_digest(k),
                e = cellar_hash_bytes(expected, sizeof expected);
    assert_true(cellar_hash_equal(&d, &e));

    cellar_hash h;
    for (int i = 0; i < 16; i++)
        h.bytes[i] = (uint8_t)(0xa0 + i);
    cellar_key_reset(k);
    assert_int_equal(cellar_key_add_hash(k, &h), CELLAR_OK);
    bytes = cellar_key_bytes(k, &len);
    assert_int_equal(len, 25);
    assert_int_equal(bytes[0], 'h');
    assert_int_equal(bytes[1], 16);
    assert_memory_equal(bytes + 9, h.bytes, 16);

    cellar_key_reset(k);
    cellar_key_bytes(k, &len);
    assert_int_equal(len, 0);
    d = cellar_key_digest(k);
    e = cellar_hash_bytes("", 0);
    assert_true(cellar_hash_equal(&d, &e));
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

    assert_int_equal(cellar_key_add_int(a, 1), CELLAR_OK);
    add_str(b, "1");
    assert_keys_differ(a, b);

    /* Same 8 payload bytes as the int, typed as bytes. */
    cellar_key_reset(b);
    static const uint8_t one_le[8] = {1, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(cellar_key_add_bytes(b, one_le, 8), CELLAR_OK);
    assert_keys_differ(a, b);

    cellar_key_reset(a);
    cellar_key_reset(b);
    assert_int_equal(cellar_key_add_bytes(a, "abc", 3), CELLAR_OK);
    add_str(b, "abc");
    assert_keys_differ(a, b);

    cellar_hash h = cellar_hash_bytes("x", 1);
    cellar_key_reset(a);
    cellar_key_reset(b);
    assert_int_equal(cellar_key_add_hash(a, &h), CELLAR_OK);
    assert_int_equal(cellar_key_add_bytes(b, h.bytes, sizeof h.bytes), CELLAR_OK);
    assert_keys_differ(a, b);

    cellar_key_free(a);
    cellar_key_free(b);
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
    uint8_t *data = malloc(BIG);
    assert_non_null(data);
    for (size_t i = 0; i < BIG; i++)
        data[i] = (uint8_t)(i * 7);
    add_str(k, "head");
    assert_int_equal(cellar_key_add_bytes(k, data, BIG), CELLAR_OK);
    size_t len;
    const uint8_t *bytes = cellar_key_bytes(k, &len);
    assert_int_equal(len, 13 + 9 + BIG);
    assert_memory_equal(bytes + 22, data, BIG);
    assert_int_equal(bytes[13], 'b');
    assert_int_equal(bytes[13 + 1] | bytes[13 + 2] << 8 | bytes[13 + 3] << 16, BIG);
    free(data);
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
    assert_int_equal(cellar_key_add_bytes(k, tiny, SIZE_MAX - 4), CELLAR_ENOMEM);
    assert_int_equal(cellar_key_add_str(k, tiny, SIZE_MAX), CELLAR_ENOMEM);
    assert_int_equal(cellar_key_add_int(k, 1), CELLAR_ENOMEM);
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
    assert_int_equal(cellar_key_add_int(k, 7), CELLAR_OK);
    add_str(fresh, "ab");
    assert_int_equal(cellar_key_add_int(fresh, 7), CELLAR_OK);
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

/* ---- property: distinct field lists never share bytes -------------------- */

/* Fields drawn from tiny alphabets so that random lists collide often in
 * content and only the encoding keeps them apart. */
typedef struct field {
    char type; /* 's', 'b', 'i', 'h', 'l' */
    uint8_t len;
    int64_t num; /* int value or list count */
    uint8_t data[16];
} field;

enum { MAX_FIELDS = 5, SAMPLES = 100000, TABLE = 1 << 18 };

typedef struct sample {
    field fields[MAX_FIELDS];
    uint8_t nfields;
    uint8_t *bytes;
    size_t len;
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
    static const int64_t nums[] = {0, 1, 2, -1, 256, 0x6262};
    memset(f, 0, sizeof *f);
    f->type = types[rng_next(seed) % 5];
    switch (f->type) {
    case 'i':
    case 'l': f->num = nums[rng_next(seed) % (f->type == 'l' ? 3 : 6)]; break;
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

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3u;
    return h;
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
        const uint8_t *bytes = cellar_key_bytes(k, &s->len);
        s->bytes = malloc(s->len ? s->len : 1);
        assert_non_null(s->bytes);
        if (s->len)
            memcpy(s->bytes, bytes, s->len);
        /* Look the bytes up; equal bytes must mean equal field lists. */
        size_t slot = fnv1a(s->bytes, s->len) & (TABLE - 1);
        for (; table[slot] >= 0; slot = (slot + 1) & (TABLE - 1)) {
            const sample *o = &samples[table[slot]];
            if (o->len == s->len && memcmp(o->bytes, s->bytes, s->len) == 0)
                break;
        }
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
    for (int i = 0; i < SAMPLES; i++)
        free(samples[i].bytes);
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
        cmocka_unit_test(test_lists_and_empties_matter),
        cmocka_unit_test(test_large_fields_grow_the_buffer),
        cmocka_unit_test(test_huge_length_is_refused),
        cmocka_unit_test(test_key_for_node_inputs),
        cmocka_unit_test(test_key_for_node_matches_documented_fields),
        cmocka_unit_test(test_reset_reuse),
        cmocka_unit_test(test_random_lists_encode_injectively),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
