/*
 * Unit tests for several processes on one store: writers committing batches
 * of inline and blob results while readers load every key they see, each in
 * its own process, and a check of the whole store afterwards.
 */
#include "store_testlib.h"

#include <time.h>

/* ---- several processes on one store ---- */

#define WRITERS 3
#define READERS 3
#define BATCHES 25

/* The value with (writer, batch, item) is reproducible from its node name. */
static size_t value_size(int w, int batch, int item)
{
    static const size_t sizes[] = {0, 17, 4000, 70000, 300000, 1100000};
    return sizes[(w * 7 + batch * 3 + item) % 6];
}

static int writer_main(const char *dir, int w)
{
    cellar_store *s = NULL;
    cellar_store_options o = {1 << 20, false, 1 << 20};
    cellar_error err;
    if (cellar_store_open(dir, &o, &s, &err)) {
        fprintf(stderr, "writer %d: %s\n", w, err.message);
        return 10;
    }
    cellar_batch *b = cellar_batch_new();
    uint8_t *buf = malloc((size_t)1100000 * 3);
    if (!b || !buf)
        return 11;
    for (int batch = 0; batch < BATCHES; batch++) {
        for (int item = 0; item < 3; item++) {
            size_t n = value_size(w, batch, item);
            uint8_t *p = buf + (size_t)item * 1100000;
            fill_pattern(p, n, (uint32_t)(w * 10000 + batch * 10 + item));
            cellar_segment segs[2] = {{"x", 1}, {p, n}};
            char node[32];
            snprintf(node, sizeof node, "w%d_b%d_i%d", w, batch, item);
            cellar_hash dv = dv_of(segs, 2), key = hash_of(node);
            cellar_key_record rec = record(node, &dv, (uint64_t)batch);
            rec.size = n;
            if (cellar_batch_put_result(b, &dv, segs, 2, item ? NULL : &dv, NULL) ||
                cellar_batch_put_key(b, &key, &rec, NULL))
                return 12;
        }
        cellar_batch_add_run(b, "{\"nodes\":[]}", NULL, NULL);
        if (cellar_store_commit(s, b, &err)) {
            fprintf(stderr, "writer %d: %s\n", w, err.message);
            return 13;
        }
    }
    cellar_batch_free(b);
    free(buf);
    cellar_store_close(s);
    return 0;
}

typedef struct reader_ctx {
    cellar_reader *r;
    int bad;
    uint64_t loads;
} reader_ctx;

/* Every key was committed with its result, so its result must load. */
static int check_key(void *ctx, const cellar_hash *key, const cellar_key_record *rec)
{
    reader_ctx *c = ctx;
    loaded l = {0};
    cellar_error err;
    (void)key;
    cellar_status st =
        cellar_reader_load_result(c->r, &rec->data_version, alloc_seg, &l, &err);
    if (st != CELLAR_OK || l.n != 2 || l.lens[1] != rec->size) {
        fprintf(stderr, "reader: %s: %s\n", cellar_status_name(st), err.message);
        c->bad++;
    }
    c->loads++;
    loaded_free(&l);
    return 0;
}

static int reader_main(const char *dir)
{
    cellar_store *s = NULL;
    cellar_error err;
    /* The first writer may not have created it yet. */
    for (int i = 0; i < 200 && cellar_store_open(dir, NULL, &s, &err); i++)
        usleep(10000);
    if (!s)
        return 20;
    reader_ctx c = {0};
    uint64_t seen_keys = 0;
    time_t give_up = time(NULL) + 60; /* writers that failed never finish */
    while (seen_keys < (uint64_t)WRITERS * BATCHES * 3) {
        if (time(NULL) > give_up)
            return 24;
        if (cellar_reader_begin(s, &c.r, &err)) {
            fprintf(stderr, "reader begin: %s\n", err.message);
            return 21;
        }
        cellar_store_stats st;
        if (cellar_reader_each_key(c.r, check_key, &c, &err) ||
            cellar_reader_stats(c.r, &st, &err))
            return 22;
        seen_keys = st.keys;
        cellar_reader_end(c.r);
        if (c.bad)
            return 23;
    }
    cellar_store_close(s);
    return 0;
}

static void test_concurrent_processes(void **state)
{
    fixture *f = *state;
    pid_t pids[WRITERS + READERS];
    for (int i = 0; i < WRITERS + READERS; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            alarm(120); /* a deadlock kills the child, and the test fails */
            _exit(i < WRITERS ? writer_main(f->dir, i) : reader_main(f->dir));
        }
    }
    int failures = 0;
    for (int i = 0; i < WRITERS + READERS; i++) {
        int status;
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            print_error("child %d (%s) ended with status 0x%x\n", i,
                        i < WRITERS ? "writer" : "reader", status);
            failures++;
        }
    }
    assert_int_equal(failures, 0);

    cellar_store *s = open_with(f->dir, 0, true);
    cellar_reader *r;
    cellar_store_stats st;
    uint64_t checked, corrupt;
    assert_int_equal(cellar_reader_begin(s, &r, NULL), CELLAR_OK);
    assert_int_equal(cellar_reader_stats(r, &st, NULL), CELLAR_OK);
    assert_int_equal(st.keys, WRITERS * BATCHES * 3);
    assert_int_equal(st.runs, WRITERS * BATCHES);
    assert_int_equal(cellar_reader_verify(r, NULL, NULL, &checked, &corrupt, NULL),
                     CELLAR_OK);
    assert_int_equal(corrupt, 0);
    assert_int_equal(checked, st.results);
    cellar_reader_end(r);
    cellar_store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_concurrent_processes, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
