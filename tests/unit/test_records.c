/*
 * Unit tests for records.c: a run record and a node record survive a round
 * trip field by field (awkward strings, empty lists, every outcome and input
 * source, absent values); a record of another format is refused with EVERSION and says
 * which; one without a format (written before the field existed) reads as
 * format 1; every prefix of a valid record, and assorted garbage, is refused
 * with ECORRUPT and never crashes; invalid UTF-8 is refused in names and
 * replaced in error texts; and the units of sizes and durations.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cellar/records.h"
#include "cellar/units.h"

static cellar_hash h(const char *s)
{
    return cellar_hash_bytes(s, strlen(s));
}

static void assert_hash_equal(const cellar_hash *a, const cellar_hash *b)
{
    assert_memory_equal(a->bytes, b->bytes, sizeof a->bytes);
}

static const char *const targets[] = {"total", "caf\xc3\xa9 \"quoted\"\\"};

/* Inputs from each source, one with no text and one whose text is not UTF-8. */
static cellar_run_input sample_inputs[3];

/* A run with every outcome, an error with every character JSON escapes, and
 * one node with no size and no versions. */
static cellar_run_record sample_run(cellar_lineage_row rows[5])
{
    rows[0] = (cellar_lineage_row){.node = "raw",
                                   .outcome = CELLAR_OUTCOME_COMPUTED,
                                   .has_versions = true,
                                   .key = h("k0"),
                                   .data_version = h("d0"),
                                   .time_ns = 1234567,
                                   .has_size = true,
                                   .size = (uint64_t)5 << 32};
    rows[1] = (cellar_lineage_row){.node = "doubled",
                                   .outcome = CELLAR_OUTCOME_LOADED,
                                   .has_versions = true,
                                   .key = h("k1"),
                                   .data_version = h("d1"),
                                   .has_size = true,
                                   .size = 0};
    rows[2] = (cellar_lineage_row){.node = "\xc2\xb5_hat",
                                   .outcome = CELLAR_OUTCOME_IN_MEMORY,
                                   .has_versions = true,
                                   .key = h("k2"),
                                   .data_version = h("d2"),
                                   .time_ns = INT64_MAX,
                                   .has_size = false};
    rows[3] = (cellar_lineage_row){
        .node = "broken",
        .outcome = CELLAR_OUTCOME_FAILED,
        .error = "ValueError: \"bad\"\n\ttab \\ back\x01\x1f end \xe2\x82\xac"};
    rows[4] = (cellar_lineage_row){.node = "total",
                                   .outcome = CELLAR_OUTCOME_SKIPPED,
                                   .error = "skipped because 'broken' failed"};
    sample_inputs[0] = (cellar_run_input){.name = "file_path",
                                          .source = CELLAR_INPUT_GIVEN,
                                          .data_version = h("i0"),
                                          .shown = "'data \"x\".parquet'"};
    sample_inputs[1] = (cellar_run_input){
        .name = "frame", .source = CELLAR_INPUT_GLOBAL, .data_version = h("i1")};
    sample_inputs[2] = (cellar_run_input){.name = "n",
                                          .source = CELLAR_INPUT_DEFAULT,
                                          .data_version = h("i2"),
                                          .shown = "3"};
    return (cellar_run_record){.started_ns = 1764000000123456789u,
                               .pid = -42,
                               .ntargets = 2,
                               .targets = targets,
                               .ninputs = 3,
                               .inputs = sample_inputs,
                               .nrows = 5,
                               .rows = rows};
}

static char *encode_run(const cellar_run_record *rec, size_t *len)
{
    char *text = NULL;
    cellar_error err;
    assert_int_equal(cellar_run_record_encode(rec, &text, len, &err), CELLAR_OK);
    assert_non_null(text);
    assert_int_equal(strlen(text), *len);
    return text;
}

static void assert_rows_equal(const cellar_lineage_row *a, const cellar_lineage_row *b)
{
    assert_string_equal(a->node, b->node);
    assert_int_equal(a->outcome, b->outcome);
    assert_int_equal(a->has_versions, b->has_versions);
    if (a->has_versions) {
        assert_hash_equal(&a->key, &b->key);
        assert_hash_equal(&a->data_version, &b->data_version);
    }
    assert_int_equal(a->time_ns, b->time_ns);
    assert_int_equal(a->has_size, b->has_size);
    if (a->has_size)
        assert_int_equal(a->size, b->size);
    if (a->error)
        assert_string_equal(a->error, b->error);
    else
        assert_null(b->error);
}

static void test_run_round_trip(void **state)
{
    (void)state;
    cellar_lineage_row rows[5];
    cellar_run_record rec = sample_run(rows);
    size_t len;
    char *text = encode_run(&rec, &len);
    assert_non_null(strstr(text, "\"format\":1"));
    cellar_run_record *back = NULL;
    cellar_error err;
    assert_int_equal(cellar_run_record_decode(text, len, &back, &err), CELLAR_OK);
    assert_int_equal(back->started_ns, rec.started_ns);
    assert_int_equal(back->pid, rec.pid);
    assert_int_equal(back->ntargets, 2);
    assert_string_equal(back->targets[0], targets[0]);
    assert_string_equal(back->targets[1], targets[1]);
    assert_int_equal(back->ninputs, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_string_equal(back->inputs[i].name, sample_inputs[i].name);
        assert_int_equal(back->inputs[i].source, sample_inputs[i].source);
        assert_hash_equal(&back->inputs[i].data_version, &sample_inputs[i].data_version);
        if (sample_inputs[i].shown)
            assert_string_equal(back->inputs[i].shown, sample_inputs[i].shown);
        else
            assert_null(back->inputs[i].shown);
    }
    assert_string_equal(cellar_input_source_name(CELLAR_INPUT_GLOBAL), "global");
    assert_string_equal(cellar_input_source_name((cellar_input_source)9), "unknown");
    assert_int_equal(back->nrows, 5);
    for (size_t i = 0; i < 5; i++)
        assert_rows_equal(&rows[i], &back->rows[i]);
    assert_ptr_equal(cellar_run_record_find(back, "broken"), &back->rows[3]);
    assert_null(cellar_run_record_find(back, "absent"));
    /* Encoding what was decoded gives the same bytes. */
    size_t len2;
    char *again = encode_run(back, &len2);
    assert_int_equal(len, len2);
    assert_memory_equal(text, again, len);
    free(again);
    cellar_run_record_free(back);
    free(text);

    /* An empty run. */
    cellar_run_record empty = {0};
    text = encode_run(&empty, &len);
    assert_int_equal(cellar_run_record_decode(text, len, &back, &err), CELLAR_OK);
    assert_int_equal(back->nrows, 0);
    assert_int_equal(back->ntargets, 0);
    cellar_run_record_free(back);
    free(text);
    cellar_run_record_free(NULL);
}

static cellar_node_record sample_node(void)
{
    static const char *const params[] = {"raw", "alpha", "\xe2\x82\xac"};
    return (cellar_node_record){.name = "model",
                                .nparams = 3,
                                .params = params,
                                .cell_id = "cell-\"7\"",
                                .code_version = h("cv"),
                                .key = h("key"),
                                .data_version = h("dv"),
                                .updated_ns = 17};
}

static void test_node_round_trip(void **state)
{
    (void)state;
    cellar_node_record rec = sample_node();
    for (int with_cell = 1; with_cell >= 0; with_cell--) {
        if (!with_cell) {
            rec.cell_id = NULL;
            rec.nparams = 0;
            rec.params = NULL;
        }
        char *text;
        size_t len;
        cellar_error err;
        assert_int_equal(cellar_node_record_encode(&rec, &text, &len, &err), CELLAR_OK);
        cellar_node_record *back = NULL;
        assert_int_equal(cellar_node_record_decode(text, len, &back, &err), CELLAR_OK);
        assert_string_equal(back->name, rec.name);
        assert_int_equal(back->nparams, rec.nparams);
        for (size_t i = 0; i < rec.nparams; i++)
            assert_string_equal(back->params[i], rec.params[i]);
        if (rec.cell_id)
            assert_string_equal(back->cell_id, rec.cell_id);
        else
            assert_null(back->cell_id);
        assert_hash_equal(&back->code_version, &rec.code_version);
        assert_hash_equal(&back->key, &rec.key);
        assert_hash_equal(&back->data_version, &rec.data_version);
        assert_int_equal(back->updated_ns, 17);
        cellar_node_record_free(back);
        free(text);
    }
    cellar_node_record_free(NULL);
}

/* Records as the extension wrote them before they carried a format. */
static void test_records_without_format_read_as_format_1(void **state)
{
    (void)state;
    const char *run =
        "{\"started_ns\":5,\"pid\":9,\"targets\":[\"b\"],\"columns\":[\"node\","
        "\"status\","
        "\"key\",\"data_version\",\"time_ns\",\"size\",\"error\"],\"nodes\":[[\"b\","
        "\"computed\",\"000102030405060708090a0b0c0d0e0f\","
        "\"00112233445566778899AABBCCDDEEFF\",12,34,null]]}";
    cellar_run_record *back = NULL;
    cellar_error err;
    assert_int_equal(cellar_run_record_decode(run, strlen(run), &back, &err), CELLAR_OK);
    assert_int_equal(back->nrows, 1);
    assert_int_equal(back->rows[0].key.bytes[15], 0x0f);
    assert_int_equal(back->rows[0].data_version.bytes[15], 0xff);
    assert_int_equal(back->rows[0].size, 34);
    assert_int_equal(back->ninputs, 0); /* written before "inputs" existed */
    cellar_run_record_free(back);
    const char *node = "{\"name\":\"b\",\"params\":[],\"cell_id\":null,\"code_version\":"
                       "\"000102030405060708090a0b0c0d0e0f\",\"key\":"
                       "\"000102030405060708090a0b0c0d0e0f\",\"data_version\":"
                       "\"000102030405060708090a0b0c0d0e0f\",\"updated_ns\":1}";
    cellar_node_record *nb = NULL;
    assert_int_equal(cellar_node_record_decode(node, strlen(node), &nb, &err), CELLAR_OK);
    assert_string_equal(nb->name, "b");
    cellar_node_record_free(nb);
}

static void test_unknown_format_is_refused(void **state)
{
    (void)state;
    static const char *const texts[] = {"{\"format\":2,\"name\":\"b\"}", "{\"format\":0}",
                                        "{\"format\":-3}", "{\"format\":99999999999}"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        cellar_error err;
        cellar_run_record *run = (cellar_run_record *)1;
        cellar_node_record *node = (cellar_node_record *)1;
        assert_int_equal(cellar_run_record_decode(texts[i], strlen(texts[i]), &run, &err),
                         CELLAR_EVERSION);
        assert_null(run);
        assert_int_equal(err.code, CELLAR_EVERSION);
        assert_non_null(strstr(err.message, "run record: format"));
        assert_non_null(strstr(err.message, "reads only format 1"));
        assert_int_equal(
            cellar_node_record_decode(texts[i], strlen(texts[i]), &node, &err),
            CELLAR_EVERSION);
        assert_null(node);
        assert_non_null(strstr(err.message, "node record: format"));
    }
    cellar_error err;
    cellar_run_record *run;
    const char *newer = "{\"format\":2}";
    cellar_run_record_decode(newer, strlen(newer), &run, &err);
    assert_non_null(strstr(err.message, "newer cellar"));
    /* A format that is not a number is damage, not a version. */
    const char *odd = "{\"format\":\"1\"}";
    assert_int_equal(cellar_run_record_decode(odd, strlen(odd), &run, &err),
                     CELLAR_ECORRUPT);
}

/* Every proper prefix of a valid record is refused, whole or cut anywhere. */
static void test_truncated_records_are_corrupt(void **state)
{
    (void)state;
    cellar_lineage_row rows[5];
    cellar_run_record rec = sample_run(rows);
    size_t len;
    char *text = encode_run(&rec, &len);
    for (size_t cut = 0; cut < len; cut++) {
        cellar_run_record *back = (cellar_run_record *)1;
        cellar_error err;
        char *copy = malloc(cut ? cut : 1); /* exactly `cut` bytes: ASan sees overreads */
        assert_non_null(copy);
        memcpy(copy, text, cut);
        assert_int_equal(cellar_run_record_decode(copy, cut, &back, &err),
                         CELLAR_ECORRUPT);
        assert_null(back);
        assert_non_null(strstr(err.message, "run record"));
        free(copy);
    }
    free(text);
    cellar_node_record node = sample_node();
    assert_int_equal(cellar_node_record_encode(&node, &text, &len, NULL), CELLAR_OK);
    for (size_t cut = 0; cut < len; cut++) {
        cellar_node_record *back = (cellar_node_record *)1;
        assert_int_equal(cellar_node_record_decode(text, cut, &back, NULL),
                         CELLAR_ECORRUPT);
        assert_null(back);
    }
    free(text);
}

static void test_garbage_is_corrupt(void **state)
{
    (void)state;
    static const char *const runs[] = {
        "",
        "null",
        "[]",
        "7",
        "{}",
        "{\"format\":1}",
        "\xff\xfe",
        "{\"format\":1,,}",
        /* wrong types and shapes, field by field */
        "{\"started_ns\":-1,\"pid\":1,\"targets\":[],\"columns\":[\"node\",\"status\","
        "\"key\",\"data_version\",\"time_ns\",\"size\",\"error\"],\"nodes\":[]}",
        "{\"started_ns\":1,\"pid\":\"1\",\"targets\":[],\"columns\":[\"node\",\"status\","
        "\"key\",\"data_version\",\"time_ns\",\"size\",\"error\"],\"nodes\":[]}",
        "{\"started_ns\":1,\"pid\":1,\"targets\":[3],\"columns\":[\"node\",\"status\","
        "\"key\",\"data_version\",\"time_ns\",\"size\",\"error\"],\"nodes\":[]}",
        "{\"started_ns\":1,\"pid\":1,\"targets\":[],\"columns\":[\"status\",\"node\","
        "\"key\",\"data_version\",\"time_ns\",\"size\",\"error\"],\"nodes\":[]}",
        "{\"started_ns\":1,\"pid\":1,\"targets\":[],\"columns\":[\"node\",\"status\","
        "\"key\",\"data_version\",\"time_ns\",\"size\",\"error\"],\"nodes\":{}}",
        "{\"started_ns\":1,\"pid\":1,\"targets\":[],\"columns\":[\"node\",\"status\","
        "\"key\",\"data_version\",\"time_ns\",\"size\",\"error\"],\"nodes\":[[\"a\","
        "\"exploded\",null,null,0,null,null]]}",
        "{\"started_ns\":1,\"pid\":1,\"targets\":[],\"columns\":[\"node\",\"status\","
        "\"key\",\"data_version\",\"time_ns\",\"size\",\"error\"],\"nodes\":[[\"a\","
        "\"loaded\",\"00\",null,0,null,null]]}",
        "{\"started_ns\":1,\"pid\":1,\"targets\":[],\"columns\":[\"node\",\"status\","
        "\"key\",\"data_version\",\"time_ns\",\"size\",\"error\"],\"nodes\":[[\"a\","
        "\"loaded\",null,null,0,null]]}",
        "{\"started_ns\":1,\"pid\":1,\"targets\":[],\"columns\":[\"node\",\"status\","
        "\"key\",\"data_version\",\"time_ns\",\"size\",\"error\"],\"nodes\":[[\"a\","
        "\"failed\",null,null,0,null,7]]}",
        "{\"format\":1,\"format\":1}",
        /* inputs of the wrong shape: not an array, not an object, an unknown source,
         * a bad data version, a value that is not a string */
        "{\"started_ns\":1,\"pid\":1,\"targets\":[],\"inputs\":{},\"columns\":[\"node\","
        "\"status\",\"key\",\"data_version\",\"time_ns\",\"size\",\"error\"],\"nodes\":[]"
        "}",
        "{\"started_ns\":1,\"pid\":1,\"targets\":[],\"inputs\":[\"n\"],\"columns\":["
        "\"node\","
        "\"status\",\"key\",\"data_version\",\"time_ns\",\"size\",\"error\"],\"nodes\":[]"
        "}",
        "{\"started_ns\":1,\"pid\":1,\"targets\":[],\"inputs\":[{\"name\":\"n\","
        "\"source\":"
        "\"moon\",\"data_version\":\"000102030405060708090a0b0c0d0e0f\",\"value\":null}],"
        "\"columns\":[\"node\",\"status\",\"key\",\"data_version\",\"time_ns\",\"size\","
        "\"error\"],\"nodes\":[]}",
        "{\"started_ns\":1,\"pid\":1,\"targets\":[],\"inputs\":[{\"name\":\"n\","
        "\"source\":"
        "\"given\",\"data_version\":\"00\",\"value\":null}],\"columns\":[\"node\","
        "\"status\","
        "\"key\",\"data_version\",\"time_ns\",\"size\",\"error\"],\"nodes\":[]}",
        "{\"started_ns\":1,\"pid\":1,\"targets\":[],\"inputs\":[{\"name\":\"n\","
        "\"source\":"
        "\"given\",\"data_version\":\"000102030405060708090a0b0c0d0e0f\",\"value\":3}],"
        "\"columns\":[\"node\",\"status\",\"key\",\"data_version\",\"time_ns\",\"size\","
        "\"error\"],\"nodes\":[]}",
    };
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        cellar_run_record *back = (cellar_run_record *)1;
        cellar_error err;
        print_message("garbage %zu\n", i);
        assert_int_equal(cellar_run_record_decode(runs[i], strlen(runs[i]), &back, &err),
                         CELLAR_ECORRUPT);
        assert_null(back);
        assert_true(strlen(err.message) > strlen("run record: "));
    }
    /* The message names the field. */
    cellar_error err;
    cellar_node_record *node;
    const char *no_key = "{\"name\":\"b\",\"params\":[],\"code_version\":"
                         "\"000102030405060708090a0b0c0d0e0f\",\"updated_ns\":1}";
    assert_int_equal(cellar_node_record_decode(no_key, strlen(no_key), &node, &err),
                     CELLAR_ECORRUPT);
    assert_non_null(strstr(err.message, "\"key\""));
    assert_int_equal(cellar_node_record_decode(NULL, 0, &node, &err), CELLAR_EINVAL);
    assert_int_equal(cellar_run_record_decode("{}", 2, NULL, &err), CELLAR_EINVAL);
}

static void test_encoding_refuses_what_it_cannot_write(void **state)
{
    (void)state;
    cellar_error err;
    char *text = (char *)1;
    /* A name that is not UTF-8. */
    cellar_lineage_row row = {.node = "bad\xff", .outcome = CELLAR_OUTCOME_COMPUTED};
    cellar_run_record rec = {.nrows = 1, .rows = &row};
    assert_int_equal(cellar_run_record_encode(&rec, &text, NULL, &err), CELLAR_EINVAL);
    assert_null(text);
    assert_non_null(strstr(err.message, "node name"));
    /* A size JSON readers cannot hold. */
    row = (cellar_lineage_row){.node = "n", .has_size = true, .size = UINT64_MAX};
    assert_int_equal(cellar_run_record_encode(&rec, &text, NULL, &err), CELLAR_EINVAL);
    /* An outcome outside the enum. */
    row = (cellar_lineage_row){.node = "n", .outcome = (cellar_outcome)9};
    assert_int_equal(cellar_run_record_encode(&rec, &text, NULL, &err), CELLAR_EINVAL);
    /* Counts without arrays. */
    rec = (cellar_run_record){.ntargets = 1};
    assert_int_equal(cellar_run_record_encode(&rec, &text, NULL, &err), CELLAR_EINVAL);
    rec = (cellar_run_record){.ninputs = 1};
    assert_int_equal(cellar_run_record_encode(&rec, &text, NULL, &err), CELLAR_EINVAL);
    /* Inputs: a NULL or non-UTF-8 name, a source outside the enum; a text that
     * is not UTF-8 is kept with U+FFFD. */
    cellar_run_input in = {.name = NULL};
    rec = (cellar_run_record){.ninputs = 1, .inputs = &in};
    assert_int_equal(cellar_run_record_encode(&rec, &text, NULL, &err), CELLAR_EINVAL);
    in = (cellar_run_input){.name = "n\xff"};
    assert_int_equal(cellar_run_record_encode(&rec, &text, NULL, &err), CELLAR_EINVAL);
    in = (cellar_run_input){.name = "n", .source = (cellar_input_source)3};
    assert_int_equal(cellar_run_record_encode(&rec, &text, NULL, &err), CELLAR_EINVAL);
    assert_non_null(strstr(err.message, "input source"));
    in = (cellar_run_input){.name = "n", .shown = "b'\xff'"};
    size_t in_len;
    assert_int_equal(cellar_run_record_encode(&rec, &text, &in_len, &err), CELLAR_OK);
    cellar_run_record *in_back = NULL;
    assert_int_equal(cellar_run_record_decode(text, in_len, &in_back, &err), CELLAR_OK);
    assert_string_equal(in_back->inputs[0].shown, "b'\xef\xbf\xbd'");
    cellar_run_record_free(in_back);
    free(text);
    cellar_node_record node = {.name = "n", .nparams = 2};
    assert_int_equal(cellar_node_record_encode(&node, &text, NULL, &err), CELLAR_EINVAL);
    node = (cellar_node_record){.name = NULL};
    assert_int_equal(cellar_node_record_encode(&node, &text, NULL, &err), CELLAR_EINVAL);

    /* An error text with broken UTF-8 (an overlong form, a surrogate, a lone
     * continuation byte, a cut sequence) is kept, with U+FFFD in place. */
    row = (cellar_lineage_row){.node = "n",
                               .outcome = CELLAR_OUTCOME_FAILED,
                               .error = "a\xc0\xaf b\xed\xa0\x80 c\x80 d\xe2\x82"};
    rec = (cellar_run_record){.nrows = 1, .rows = &row};
    size_t len;
    assert_int_equal(cellar_run_record_encode(&rec, &text, &len, &err), CELLAR_OK);
    cellar_run_record *back;
    assert_int_equal(cellar_run_record_decode(text, len, &back, &err), CELLAR_OK);
    assert_string_equal(back->rows[0].error,
                        "a\xef\xbf\xbd\xef\xbf\xbd b\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
                        " c\xef\xbf\xbd d\xef\xbf\xbd\xef\xbf\xbd");
    cellar_run_record_free(back);
    free(text);
    assert_string_equal(cellar_outcome_name(CELLAR_OUTCOME_IN_MEMORY), "in memory");
    assert_string_equal(cellar_outcome_name((cellar_outcome)77), "unknown");
}

/* ---- units --------------------------------------------------------------- */

static void test_sizes(void **state)
{
    (void)state;
    static const struct {
        uint64_t n;
        const char *text;
    } cases[] = {
        {0, "0 B"},
        {1, "1 B"},
        {1023, "1023 B"},
        {1024, "1.0 KiB"},
        {1536, "1.5 KiB"},
        {10 * 1024 - 1, "10.0 KiB"},
        {99 * 1024 + 1000, "100 KiB"},
        {(uint64_t)412 << 20, "412 MiB"},
        {1024 * 1024 - 1, "1.0 MiB"}, /* never "1024 KiB" */
        {(uint64_t)1 << 30, "1.0 GiB"},
        {1181116006, "1.1 GiB"},
        {(uint64_t)5 << 40, "5.0 TiB"},
        {UINT64_MAX, "16.0 EiB"},
    };
    char buf[CELLAR_UNITS_BUFSIZE];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_string_equal(cellar_units_size(cases[i].n, buf), cases[i].text);
}

static void test_durations(void **state)
{
    (void)state;
    static const struct {
        uint64_t ns;
        const char *text;
    } cases[] = {
        {0, "0 ns"},
        {999, "999 ns"},
        {1000, "1.00 \xc2\xb5s"},
        {1250, "1.25 \xc2\xb5s"},
        {9996, "10.0 \xc2\xb5s"},
        {412000, "412 \xc2\xb5s"},
        {999600, "1.00 ms"}, /* never "1000 µs" */
        {41200000, "41.2 ms"},
        {9040000000u, "9.04 s"},
        {1234000000000u, "1234 s"},
        {UINT64_MAX, "18446744074 s"},
    };
    char buf[CELLAR_UNITS_BUFSIZE];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_string_equal(cellar_units_duration(cases[i].ns, buf), cases[i].text);
}

static void test_moments(void **state)
{
    (void)state;
    char buf[CELLAR_UNITS_BUFSIZE];
    assert_string_equal(cellar_units_moment(0, buf), "-");
    /* Local time to the second, whatever the zone: "YYYY-MM-DD HH:MM:SS". */
    cellar_units_moment(1764000000123456789u, buf);
    assert_int_equal(strlen(buf), 19);
    assert_int_equal(buf[4], '-');
    assert_int_equal(buf[10], ' ');
    assert_int_equal(buf[13], ':');
    assert_memory_equal(buf, "2025-11-", 8); /* 2025-11-24 16:00 UTC, any zone */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_round_trip),
        cmocka_unit_test(test_node_round_trip),
        cmocka_unit_test(test_records_without_format_read_as_format_1),
        cmocka_unit_test(test_unknown_format_is_refused),
        cmocka_unit_test(test_truncated_records_are_corrupt),
        cmocka_unit_test(test_garbage_is_corrupt),
        cmocka_unit_test(test_encoding_refuses_what_it_cannot_write),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_moments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
