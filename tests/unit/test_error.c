/*
 * Unit tests for error.c (messages are formatted, cleared, and a long one
 * keeps its reason), and for the contract error.h states for every module
 * with a `cellar_error *`: each call, on inputs that succeed and on inputs
 * that fail, returns the same status with an error and with NULL; a failure
 * fills the error with that code and a message; a success leaves it as it
 * was or cleared.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cellar/error.h"
#include "cellar/graph.h"
#include "cellar/records.h"
#include "cellar/scanner.h"

static void test_set_returns_code_and_formats(void **state)
{
    (void)state;
    cellar_error err;
    assert_int_equal(cellar_error_set(&err, CELLAR_ENOTFOUND, "no node %s", "f"),
                     CELLAR_ENOTFOUND);
    assert_int_equal(err.code, CELLAR_ENOTFOUND);
    assert_string_equal(err.message, "no node f");
    cellar_error_clear(&err);
    assert_int_equal(err.code, CELLAR_OK);
    assert_string_equal(err.message, "");
}

/* A path far longer than the old 512-byte buffer, then the reason: the
 * message keeps both ends, so the reason is still there. */
static void test_long_message_keeps_the_reason(void **state)
{
    (void)state;
    enum { PATH = 3 * CELLAR_ERROR_MESSAGE_MAX };
    char *path = malloc(PATH + 1);
    assert_non_null(path);
    for (size_t i = 0; i < PATH; i++)
        path[i] = i % 16 ? 'd' : '/';
    path[PATH] = '\0';
    cellar_error err;
    cellar_error_set(&err, CELLAR_EIO, "cannot open %s: %s", path,
                     "Permission denied (the reason)");
    size_t len = strlen(err.message);
    assert_int_equal(len, CELLAR_ERROR_MESSAGE_MAX - 1);
    assert_memory_equal(err.message, "cannot open /ddd", 16);
    const char *tail = "Permission denied (the reason)";
    assert_string_equal(err.message + len - strlen(tail), tail);
    assert_non_null(strstr(err.message, " [...] "));
    free(path);
}

/* Up to the buffer's size nothing is elided; 600 bytes (more than the old
 * limit) come back whole. */
static void test_messages_that_fit_are_whole(void **state)
{
    (void)state;
    static char text[CELLAR_ERROR_MESSAGE_MAX];
    memset(text, 'x', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    cellar_error err;
    cellar_error_set(&err, CELLAR_EIO, "%s", text);
    assert_string_equal(err.message, text);
    text[600] = '\0';
    cellar_error_set(&err, CELLAR_EIO, "%s", text);
    assert_int_equal(strlen(err.message), 600);
}

/* A caller may add context to the message a lower layer left. */
static void test_message_can_quote_itself(void **state)
{
    (void)state;
    cellar_error err;
    cellar_error_set(&err, CELLAR_ECORRUPT, "bad byte at %d", 7);
    cellar_error_set(&err, err.code, "run 12: %s", err.message);
    assert_string_equal(err.message, "run 12: bad byte at 7");
    assert_int_equal(err.code, CELLAR_ECORRUPT);
}

static void test_null_error_and_names(void **state)
{
    (void)state;
    assert_int_equal(cellar_error_set(NULL, CELLAR_EINVAL, "ignored"), CELLAR_EINVAL);
    cellar_error_clear(NULL);
    assert_string_equal(cellar_status_name(CELLAR_ECORRUPT), "corrupt");
    assert_string_equal(cellar_status_name((cellar_status)999), "unknown");
    /* Every status has its own name. */
    for (int a = CELLAR_OK; a <= CELLAR_EBUSY; a++) {
        assert_string_not_equal(cellar_status_name((cellar_status)a), "unknown");
        for (int b = a + 1; b <= CELLAR_EBUSY; b++)
            assert_string_not_equal(cellar_status_name((cellar_status)a),
                                    cellar_status_name((cellar_status)b));
    }
}

/* ---- the contract, module by module ------------------------------------- */

typedef cellar_status (*call_fn)(cellar_error *err);

/* Runs `call` with NULL and with a primed error, and checks the contract.
 * Returns the status so the case can also say which one it expects. */
static cellar_status contract(call_fn call)
{
    cellar_status with_null = call(NULL);
    cellar_error err;
    err.code = (cellar_status)-1;
    strcpy(err.message, "untouched");
    cellar_status with_err = call(&err);
    assert_int_equal(with_null, with_err);
    if (with_err == CELLAR_OK) {
        if (err.code == CELLAR_OK)
            assert_string_equal(err.message, "");
        else {
            assert_int_equal(err.code, (cellar_status)-1);
            assert_string_equal(err.message, "untouched");
        }
    } else {
        assert_int_equal(err.code, with_err);
        assert_true(err.message[0] != '\0');
        assert_string_not_equal(err.message, "untouched");
    }
    return with_err;
}

static cellar_graph *chain(void)
{
    cellar_graph *g = cellar_graph_new();
    assert_non_null(g);
    int a = cellar_graph_add_node(g, "a", NULL), b = cellar_graph_add_node(g, "b", NULL);
    assert_int_equal(cellar_graph_add_edge(g, a, b, NULL), CELLAR_OK);
    return g;
}

static cellar_status add_node_ok(cellar_error *err)
{
    cellar_graph *g = cellar_graph_new();
    int id = cellar_graph_add_node(g, "n", err);
    cellar_graph_free(g);
    return id == 0 ? CELLAR_OK : CELLAR_EINVAL;
}

/* add_node reports through -1; the contract is then that `err` says EINVAL. */
static cellar_status add_node_null_name(cellar_error *err)
{
    cellar_graph *g = cellar_graph_new();
    int id = cellar_graph_add_node(g, NULL, err);
    cellar_graph_free(g);
    return id < 0 ? (err ? err->code : CELLAR_EINVAL) : CELLAR_OK;
}

static cellar_status add_edge_ok(cellar_error *err)
{
    cellar_graph *g = chain();
    cellar_status st = cellar_graph_add_edge(g, 0, 1, err); /* a duplicate */
    cellar_graph_free(g);
    return st;
}

static cellar_status add_edge_bad_id(cellar_error *err)
{
    cellar_graph *g = chain();
    cellar_status st = cellar_graph_add_edge(g, 0, 7, err);
    cellar_graph_free(g);
    return st;
}

static cellar_status toposort_ok(cellar_error *err)
{
    cellar_graph *g = chain();
    int order[2];
    size_t n;
    cellar_status st = cellar_graph_toposort(g, NULL, 0, order, &n, err);
    cellar_graph_free(g);
    return st;
}

static cellar_status toposort_cycle(cellar_error *err)
{
    cellar_graph *g = chain();
    cellar_graph_add_edge(g, 1, 0, NULL);
    int order[2];
    size_t n;
    cellar_status st = cellar_graph_toposort(g, NULL, 0, order, &n, err);
    cellar_graph_free(g);
    return st;
}

static cellar_status toposort_no_output(cellar_error *err)
{
    cellar_graph *g = chain();
    size_t n;
    cellar_status st = cellar_graph_toposort(g, NULL, 0, NULL, &n, err);
    cellar_graph_free(g);
    return st;
}

static cellar_status ancestors_ok(cellar_error *err)
{
    cellar_graph *g = chain();
    int id = 1, out[2];
    size_t n;
    cellar_status st = cellar_graph_ancestors(g, &id, 1, true, out, &n, err);
    cellar_graph_free(g);
    return st;
}

static cellar_status ancestors_bad_id(cellar_error *err)
{
    cellar_graph *g = chain();
    int id = 5, out[2];
    size_t n;
    cellar_status st = cellar_graph_ancestors(g, &id, 1, true, out, &n, err);
    cellar_graph_free(g);
    return st;
}

static cellar_status scan_ok(cellar_error *err)
{
    cellar_scan *scan = NULL;
    const char *src = "def f(x):\n    return (\n"; /* unclosed: data, not an error */
    cellar_status st = cellar_scan_source(src, strlen(src), &scan, err);
    cellar_scan_free(scan);
    return st;
}

static cellar_status scan_null(cellar_error *err)
{
    cellar_scan *scan = NULL;
    return cellar_scan_source(NULL, 3, &scan, err);
}

static const char *const targets[] = {"b"};
static const cellar_lineage_row rows[] = {
    {.node = "a",
     .outcome = CELLAR_OUTCOME_COMPUTED,
     .has_versions = true,
     .has_size = true},
    {.node = "b", .outcome = CELLAR_OUTCOME_FAILED, .error = "ValueError: no"},
};

static cellar_status run_encode_ok(cellar_error *err)
{
    cellar_run_record rec = {1, 2, 1, targets, 2, rows, 0, NULL};
    char *text;
    cellar_status st = cellar_run_record_encode(&rec, &text, NULL, err);
    free(text);
    return st;
}

static cellar_status run_encode_null_node(cellar_error *err)
{
    cellar_lineage_row bad[] = {{.node = NULL}};
    cellar_run_record rec = {1, 2, 0, NULL, 1, bad, 0, NULL};
    char *text;
    return cellar_run_record_encode(&rec, &text, NULL, err);
}

static cellar_status run_decode_ok(cellar_error *err)
{
    cellar_run_record rec = {1, 2, 1, targets, 2, rows, 0, NULL}, *back = NULL;
    char *text;
    size_t len;
    assert_int_equal(cellar_run_record_encode(&rec, &text, &len, NULL), CELLAR_OK);
    cellar_status st = cellar_run_record_decode(text, len, &back, err);
    cellar_run_record_free(back);
    free(text);
    return st;
}

static cellar_status run_decode_garbage(cellar_error *err)
{
    cellar_run_record *back;
    return cellar_run_record_decode("{\"format\":1,", 12, &back, err);
}

static cellar_status run_decode_future(cellar_error *err)
{
    cellar_run_record *back;
    const char *text = "{\"format\":2}";
    return cellar_run_record_decode(text, strlen(text), &back, err);
}

static cellar_node_record node_rec(void)
{
    static const char *const params[] = {"x"};
    return (cellar_node_record){.name = "f", .nparams = 1, .params = params};
}

static cellar_status node_encode_ok(cellar_error *err)
{
    cellar_node_record rec = node_rec();
    char *text;
    cellar_status st = cellar_node_record_encode(&rec, &text, NULL, err);
    free(text);
    return st;
}

static cellar_status node_encode_null(cellar_error *err)
{
    char *text;
    return cellar_node_record_encode(NULL, &text, NULL, err);
}

static cellar_status node_decode_ok(cellar_error *err)
{
    cellar_node_record rec = node_rec(), *back = NULL;
    char *text;
    size_t len;
    assert_int_equal(cellar_node_record_encode(&rec, &text, &len, NULL), CELLAR_OK);
    cellar_status st = cellar_node_record_decode(text, len, &back, err);
    cellar_node_record_free(back);
    free(text);
    return st;
}

static cellar_status node_decode_wrong_type(cellar_error *err)
{
    cellar_node_record *back;
    const char *text = "{\"name\":7}";
    return cellar_node_record_decode(text, strlen(text), &back, err);
}

static void test_contract(void **state)
{
    (void)state;
    static const struct {
        call_fn call;
        cellar_status expect;
    } cases[] = {
        {add_node_ok, CELLAR_OK},
        {add_node_null_name, CELLAR_EINVAL},
        {add_edge_ok, CELLAR_OK},
        {add_edge_bad_id, CELLAR_EINVAL},
        {toposort_ok, CELLAR_OK},
        {toposort_cycle, CELLAR_ECYCLE},
        {toposort_no_output, CELLAR_EINVAL},
        {ancestors_ok, CELLAR_OK},
        {ancestors_bad_id, CELLAR_EINVAL},
        {scan_ok, CELLAR_OK},
        {scan_null, CELLAR_EINVAL},
        {run_encode_ok, CELLAR_OK},
        {run_encode_null_node, CELLAR_EINVAL},
        {run_decode_ok, CELLAR_OK},
        {run_decode_garbage, CELLAR_ECORRUPT},
        {run_decode_future, CELLAR_EVERSION},
        {node_encode_ok, CELLAR_OK},
        {node_encode_null, CELLAR_EINVAL},
        {node_decode_ok, CELLAR_OK},
        {node_decode_wrong_type, CELLAR_ECORRUPT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        print_message("case %zu\n", i);
        assert_int_equal(contract(cases[i].call), cases[i].expect);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_returns_code_and_formats),
        cmocka_unit_test(test_long_message_keeps_the_reason),
        cmocka_unit_test(test_messages_that_fit_are_whole),
        cmocka_unit_test(test_message_can_quote_itself),
        cmocka_unit_test(test_null_error_and_names),
        cmocka_unit_test(test_contract),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
