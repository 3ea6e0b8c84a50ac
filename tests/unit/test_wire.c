/*
 * Unit tests for wire.c: frame lists split at the delimiter (identities of
 * any bytes, buffers, too few frames, no delimiter); signatures equal to
 * OpenSSL's one-shot HMAC of the concatenated JSON frames; verification
 * rejects unsigned, wrongly signed (a changed byte, wrong length, uppercase
 * hex) and replayed messages, and an unsigned session accepts all; the
 * digest history forgets the oldest signatures first and stays exact through
 * many evictions; unreadable JSON (bad syntax, invalid UTF-8, an escaped NUL)
 * is reported apart from the signature; composed messages verify.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "cellar/wire.h"

static const char KEY[] = "a0436f6c-1916-498b-8eb9-e81ab9368e84";

/* A message under construction: frames pointing into owned strings. */
typedef struct msg {
    char *text[16];
    size_t len[16];
    cellar_wire_frame f[16];
    size_t n;
} msg;

static void add(msg *m, const void *data, size_t len)
{
    m->text[m->n] = malloc(len + 1);
    memcpy(m->text[m->n], data, len);
    m->text[m->n][len] = '\0';
    m->len[m->n] = len;
    m->f[m->n] = (cellar_wire_frame){m->text[m->n], len};
    m->n++;
}

static void adds(msg *m, const char *s)
{
    add(m, s, strlen(s));
}

static void msg_free(msg *m)
{
    for (size_t i = 0; i < m->n; i++)
        free(m->text[i]);
    m->n = 0;
}

/* OpenSSL's HMAC of the concatenation, as hex: the reference signature. */
static void reference_sign(const cellar_wire_frame *json4, char hex[65])
{
    size_t total = 0;
    for (int i = 0; i < 4; i++)
        total += json4[i].size;
    unsigned char *buf = malloc(total + 1), raw[32];
    size_t off = 0;
    for (int i = 0; i < 4; i++) {
        memcpy(buf + off, json4[i].data, json4[i].size);
        off += json4[i].size;
    }
    unsigned int len = 0;
    HMAC(EVP_sha256(), KEY, (int)strlen(KEY), buf, total, raw, &len);
    assert_int_equal(len, 32);
    for (int i = 0; i < 32; i++)
        snprintf(hex + (size_t)i * 2, 3, "%02x", raw[i]);
    free(buf);
}

/* ids..., delimiter, signature (the correct one, or `sig` when given), the
 * four JSON frames, buffers. */
static void make(msg *m, int n_ids, const char *header, const char *content,
                 const char *sig, int n_buffers)
{
    for (int i = 0; i < n_ids; i++) {
        unsigned char id[5] = {0, (unsigned char)i, 0xff, '<', 0};
        add(m, id, sizeof id);
    }
    const char *json[4] = {header, "{}", "{}", content};
    cellar_wire_frame json4[4];
    for (int i = 0; i < 4; i++)
        json4[i] = (cellar_wire_frame){json[i], strlen(json[i])};
    char hex[65];
    reference_sign(json4, hex);
    adds(m, CELLAR_WIRE_DELIMITER);
    adds(m, sig ? sig : hex);
    for (int i = 0; i < 4; i++)
        adds(m, json[i]);
    for (int i = 0; i < n_buffers; i++)
        add(m, "\0\1\2buffer", 9);
}

static const char HEADER[] =
    "{\"msg_id\":\"m1\",\"msg_type\":\"execute_request\",\"session\":\"s1\","
    "\"subshell_id\":\"sub\"}";

static cellar_wire_auth *signer(size_t history)
{
    cellar_error err;
    cellar_wire_auth *a =
        cellar_wire_auth_new("hmac-sha256", KEY, strlen(KEY), history, &err);
    assert_non_null(a);
    assert_true(cellar_wire_auth_signed(a));
    return a;
}

static void test_parse(void **state)
{
    (void)state;
    msg m = {0};
    make(&m, 3, HEADER, "{}", NULL, 2);
    cellar_wire_msg w;
    assert_int_equal(cellar_wire_parse(m.f, m.n, &w), CELLAR_WIRE_OK);
    assert_int_equal(w.delim, 3);
    assert_int_equal(w.n_buffers, 2);
    assert_int_equal(cellar_wire_part(&w, CELLAR_WIRE_CONTENT)->size, 2);
    /* Every frame list that loses a JSON frame is malformed. */
    for (size_t n = 0; n < 3 + 6; n++)
        assert_int_equal(cellar_wire_parse(m.f, n, &w), CELLAR_WIRE_MALFORMED);
    assert_int_equal(cellar_wire_parse(NULL, 0, &w), CELLAR_WIRE_MALFORMED);
    /* Without a delimiter, whatever the frames. */
    assert_int_equal(cellar_wire_parse(m.f + 4, m.n - 4, &w), CELLAR_WIRE_MALFORMED);
    msg_free(&m);
    /* No identities at all (iopub), a delimiter look-alike identity. */
    make(&m, 0, HEADER, "{}", NULL, 0);
    assert_int_equal(cellar_wire_parse(m.f, m.n, &w), CELLAR_WIRE_OK);
    assert_int_equal(w.delim, 0);
    msg_free(&m);
    adds(&m, "<IDS|MSG");
    adds(&m, "<IDS|MSG>x");
    make(&m, 0, HEADER, "{}", NULL, 0);
    assert_int_equal(cellar_wire_parse(m.f, m.n, &w), CELLAR_WIRE_OK);
    assert_int_equal(w.delim, 2);
    msg_free(&m);
}

static void test_sign_matches_openssl(void **state)
{
    (void)state;
    cellar_wire_auth *a = signer(16);
    msg m = {0};
    make(&m, 1, HEADER, "{\"code\":\"print(1)\"}", NULL, 0);
    char hex[CELLAR_WIRE_SIGNATURE_HEX + 1], ref[65];
    assert_true(cellar_wire_sign(a, &m.f[3], hex));
    reference_sign(&m.f[3], ref);
    assert_string_equal(hex, ref);
    assert_int_equal(strlen(hex), CELLAR_WIRE_SIGNATURE_HEX);
    msg_free(&m);
    cellar_wire_auth_free(a);
}

static void test_verify(void **state)
{
    (void)state;
    cellar_wire_auth *a = signer(16);
    msg m = {0};
    cellar_wire_msg w;
    make(&m, 2, HEADER, "{\"code\":\"1\"}", NULL, 1);
    assert_int_equal(cellar_wire_parse(m.f, m.n, &w), CELLAR_WIRE_OK);
    assert_int_equal(cellar_wire_verify(a, &w), CELLAR_WIRE_OK);
    assert_int_equal(cellar_wire_verify(a, &w), CELLAR_WIRE_REPLAYED);
    /* A changed content byte; the buffers are not signed, as in Jupyter. */
    m.text[m.n - 2][2] = 'x';
    assert_int_equal(cellar_wire_verify(a, &w), CELLAR_WIRE_BADSIG);
    msg_free(&m);

    make(&m, 1, HEADER, "{}", "", 0);
    assert_int_equal(cellar_wire_parse(m.f, m.n, &w), CELLAR_WIRE_OK);
    assert_int_equal(cellar_wire_verify(a, &w), CELLAR_WIRE_UNSIGNED);
    msg_free(&m);
    make(&m, 1, HEADER, "{}", "abcd", 0);
    cellar_wire_parse(m.f, m.n, &w);
    assert_int_equal(cellar_wire_verify(a, &w), CELLAR_WIRE_BADSIG);
    msg_free(&m);
    /* The right digest in uppercase hex is not the signature jupyter makes. */
    make(&m, 1, HEADER, "{\"x\":2}", NULL, 0);
    for (char *c = m.text[2]; *c; c++)
        if (*c >= 'a' && *c <= 'f')
            *c = (char)(*c - 'a' + 'A');
    cellar_wire_parse(m.f, m.n, &w);
    assert_int_equal(cellar_wire_verify(a, &w), CELLAR_WIRE_BADSIG);
    msg_free(&m);
    /* Another key's signature. */
    cellar_wire_auth *other = cellar_wire_auth_new(NULL, "k", 1, 0, NULL);
    make(&m, 1, HEADER, "{\"x\":3}", NULL, 0);
    cellar_wire_parse(m.f, m.n, &w);
    assert_int_equal(cellar_wire_verify(other, &w), CELLAR_WIRE_BADSIG);
    assert_int_equal(cellar_wire_verify(a, &w), CELLAR_WIRE_OK);
    msg_free(&m);
    cellar_wire_auth_free(other);
    cellar_wire_auth_free(a);
}

static void test_unsigned_session(void **state)
{
    (void)state;
    cellar_wire_auth *a = cellar_wire_auth_new("hmac-sha256", "", 0, 16, NULL);
    assert_non_null(a);
    assert_false(cellar_wire_auth_signed(a));
    msg m = {0};
    cellar_wire_msg w;
    make(&m, 1, HEADER, "{}", "", 0);
    cellar_wire_parse(m.f, m.n, &w);
    assert_int_equal(cellar_wire_verify(a, &w), CELLAR_WIRE_OK);
    assert_int_equal(cellar_wire_verify(a, &w), CELLAR_WIRE_OK);
    char hex[CELLAR_WIRE_SIGNATURE_HEX + 1] = "junk";
    assert_true(cellar_wire_sign(a, &m.f[3], hex));
    assert_string_equal(hex, "");
    msg_free(&m);
    cellar_wire_auth_free(a);
}

static void test_scheme(void **state)
{
    (void)state;
    cellar_error err;
    assert_null(cellar_wire_auth_new("hmac-md5", KEY, strlen(KEY), 16, &err));
    assert_int_equal(err.code, CELLAR_EINVAL);
    assert_non_null(strstr(err.message, "hmac-md5"));
    cellar_wire_auth *a = cellar_wire_auth_new("", KEY, strlen(KEY), 0, &err);
    assert_non_null(a);
    cellar_wire_auth_free(a);
}

/* Message number i, signed. */
static void numbered(msg *m, int i)
{
    char content[64];
    snprintf(content, sizeof content, "{\"n\":%d}", i);
    make(m, 1, HEADER, content, NULL, 0);
}

static cellar_wire_verdict verify_numbered(cellar_wire_auth *a, int i)
{
    msg m = {0};
    cellar_wire_msg w;
    numbered(&m, i);
    cellar_wire_parse(m.f, m.n, &w);
    cellar_wire_verdict v = cellar_wire_verify(a, &w);
    msg_free(&m);
    return v;
}

static void test_history_forgets_oldest(void **state)
{
    (void)state;
    cellar_wire_auth *a = signer(4);
    for (int i = 0; i < 5; i++)
        assert_int_equal(verify_numbered(a, i), CELLAR_WIRE_OK);
    /* 0 was forgotten when 4 came; 1..4 are remembered. */
    assert_int_equal(verify_numbered(a, 4), CELLAR_WIRE_REPLAYED);
    assert_int_equal(verify_numbered(a, 1), CELLAR_WIRE_REPLAYED);
    assert_int_equal(verify_numbered(a, 0), CELLAR_WIRE_OK);
    cellar_wire_auth_free(a);

    a = cellar_wire_auth_new(NULL, KEY, strlen(KEY), 0, NULL);
    assert_int_equal(verify_numbered(a, 7), CELLAR_WIRE_OK);
    assert_int_equal(verify_numbered(a, 7), CELLAR_WIRE_OK); /* history off */
    cellar_wire_auth_free(a);
}

/* Many evictions through the hash table: exactly the last N are remembered. */
static void test_history_exact(void **state)
{
    (void)state;
    enum { N = 100, TOTAL = 3000 };
    cellar_wire_auth *a = signer(N);
    for (int i = 0; i < TOTAL; i++)
        assert_int_equal(verify_numbered(a, i), CELLAR_WIRE_OK);
    for (int i = TOTAL - N; i < TOTAL; i++)
        assert_int_equal(verify_numbered(a, i), CELLAR_WIRE_REPLAYED);
    /* Replays are not added again: the history still holds TOTAL-N..TOTAL-1. */
    for (int i = TOTAL - 2 * N; i < TOTAL - N; i++)
        assert_int_equal(verify_numbered(a, i), CELLAR_WIRE_OK);
    for (int i = TOTAL - N; i < TOTAL; i++)
        assert_int_equal(verify_numbered(a, i), CELLAR_WIRE_OK);
    cellar_wire_auth_free(a);
}

static void test_read_info(void **state)
{
    (void)state;
    cellar_wire_auth *a = signer(64);
    msg m = {0};
    cellar_wire_msg w;
    cellar_wire_info info;
    make(&m, 1, HEADER, "{}", NULL, 0);
    free(m.text[4]);
    m.text[4] = strdup("{\"msg_id\":\"parent-1\"}");
    m.f[4] = (cellar_wire_frame){m.text[4], strlen(m.text[4])};
    cellar_wire_parse(m.f, m.n, &w);
    assert_int_equal(cellar_wire_read_info(&w, &info), CELLAR_WIRE_OK);
    assert_string_equal(info.msg_type, "execute_request");
    assert_string_equal(info.msg_id, "m1");
    assert_string_equal(info.session, "s1");
    assert_string_equal(info.subshell_id, "sub");
    assert_string_equal(info.parent_msg_id, "parent-1");
    msg_free(&m);

    /* Correctly signed, JSON unreadable: the two verdicts are apart. */
    const char *bad[] = {
        "{\"msg_type\":\"x\"",                     /* cut short */
        "{\"msg_type\":\"\xff\xfe\"}",             /* invalid UTF-8 */
        "{\"msg_type\":\"a\\u0000b\"}",            /* an escaped NUL */
        "[\"msg_type\"]",                          /* not an object */
        "{\"msg_id\":\"m\"}",                      /* no msg_type */
        "{\"msg_type\":\"a\",\"msg_type\":\"b\"}", /* duplicate keys */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        make(&m, 1, bad[i], "{}", NULL, 0);
        assert_int_equal(cellar_wire_parse(m.f, m.n, &w), CELLAR_WIRE_OK);
        assert_int_equal(cellar_wire_verify(a, &w), CELLAR_WIRE_OK);
        assert_int_equal(cellar_wire_read_info(&w, &info), CELLAR_WIRE_UNREADABLE);
        assert_string_equal(info.msg_type, "");
        msg_free(&m);
    }
    /* An embedded raw NUL byte in the frame. */
    const char nul[] = "{\"msg_type\":\"a\0b\"}";
    make(&m, 1, "{}", "{}", NULL, 0);
    free(m.text[3]);
    m.text[3] = malloc(sizeof nul);
    memcpy(m.text[3], nul, sizeof nul);
    m.f[3] = (cellar_wire_frame){m.text[3], sizeof nul - 1};
    cellar_wire_parse(m.f, m.n, &w);
    assert_int_equal(cellar_wire_read_info(&w, &info), CELLAR_WIRE_UNREADABLE);
    assert_null(cellar_wire_read_json(&w, CELLAR_WIRE_HEADER));
    assert_null(cellar_wire_read_json(&w, CELLAR_WIRE_SIGNATURE));
    msg_free(&m);
    /* A field too long for its buffer reads as absent, never truncated. */
    char longh[512];
    snprintf(longh, sizeof longh, "{\"msg_type\":\"t\",\"msg_id\":\"%0300d\"}", 1);
    make(&m, 1, longh, "{}", NULL, 0);
    cellar_wire_parse(m.f, m.n, &w);
    assert_int_equal(cellar_wire_read_info(&w, &info), CELLAR_WIRE_OK);
    assert_string_equal(info.msg_id, "");
    msg_free(&m);
    cellar_wire_auth_free(a);
}

static void test_compose_verifies(void **state)
{
    (void)state;
    cellar_wire_auth *a = signer(16);
    json_t *h = cellar_wire_header_new("iopub_welcome", "sess");
    assert_non_null(h);
    assert_string_equal(json_string_value(json_object_get(h, "msg_type")),
                        "iopub_welcome");
    assert_int_equal(strlen(json_string_value(json_object_get(h, "msg_id"))), 36);
    json_t *h2 = cellar_wire_header_new("iopub_welcome", "sess");
    assert_string_not_equal(json_string_value(json_object_get(h, "msg_id")),
                            json_string_value(json_object_get(h2, "msg_id")));
    json_t *content = json_pack("{s:s}", "subscription", "");
    cellar_wire_composed c;
    assert_int_equal(cellar_wire_compose(a, h, NULL, NULL, content, &c), CELLAR_OK);
    msg m = {0};
    adds(&m, CELLAR_WIRE_DELIMITER);
    adds(&m, c.signature);
    for (int i = 0; i < 4; i++)
        add(&m, c.json[i], c.json_len[i]);
    cellar_wire_msg w;
    assert_int_equal(cellar_wire_parse(m.f, m.n, &w), CELLAR_WIRE_OK);
    assert_int_equal(cellar_wire_verify(a, &w), CELLAR_WIRE_OK);
    cellar_wire_info info;
    assert_int_equal(cellar_wire_read_info(&w, &info), CELLAR_WIRE_OK);
    assert_string_equal(info.msg_type, "iopub_welcome");
    assert_string_equal(m.text[4], "{}");
    json_t *back = cellar_wire_read_json(&w, CELLAR_WIRE_CONTENT);
    assert_true(json_equal(back, content));
    json_decref(back);
    msg_free(&m);
    cellar_wire_composed_free(&c);
    json_decref(content);
    json_decref(h);
    json_decref(h2);
    cellar_wire_auth_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_sign_matches_openssl),
        cmocka_unit_test(test_verify),
        cmocka_unit_test(test_unsigned_session),
        cmocka_unit_test(test_scheme),
        cmocka_unit_test(test_history_forgets_oldest),
        cmocka_unit_test(test_history_exact),
        cmocka_unit_test(test_read_info),
        cmocka_unit_test(test_compose_verifies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
