/*
 * test_store_gc.c - the gc plan and its application on real stores: which
 * code versions survive, what the budget evicts (least recently used first,
 * shared results kept while a key refers to them), keys of nodes without a
 * record, dangling keys, forget, blob files unlinked (and a mapping of one
 * still readable), the dry run agreeing with the real run, automatic gc
 * after a commit over the budget, compaction (and its refusal while another
 * process holds the store), and size parsing.
 */
#include "store_testlib.h"

#include "cellar/gc.h"
#include "cellar/units.h"

#include <dirent.h>
#include <signal.h>

#define BLOB_MIN 4096

/* Stores a value of `len` bytes (seeded) under node/version, used at `t`;
 * with `record`, also a node record.  Returns the value's data version. */
static cellar_hash put(cellar_store *s, const char *node, const char *version,
                       uint32_t seed, size_t len, uint64_t t, bool node_record)
{
    uint8_t *buf = malloc(len);
    fill_pattern(buf, len, seed);
    cellar_segment seg = {buf, len};
    cellar_hash dv = dv_of(&seg, 1);
    char keytext[256];
    snprintf(keytext, sizeof keytext, "%s/%s/%u", node, version, seed);
    cellar_hash key = hash_of(keytext);
    cellar_key_record rec = record(node, &dv, t);
    rec.code_version = hash_of(version);
    rec.size = len;
    cellar_batch *b = cellar_batch_new();
    assert_int_equal(cellar_batch_put_result(b, &dv, &seg, 1, &dv, NULL), CELLAR_OK);
    assert_int_equal(cellar_batch_put_key(b, &key, &rec, NULL), CELLAR_OK);
    if (node_record)
        assert_int_equal(cellar_batch_put_node(b, node, "{}", NULL), CELLAR_OK);
    commit_ok(s, b);
    cellar_batch_free(b);
    free(buf);
    return dv;
}

static cellar_hash key_of(const char *node, const char *version, uint32_t seed)
{
    char keytext[256];
    snprintf(keytext, sizeof keytext, "%s/%s/%u", node, version, seed);
    return hash_of(keytext);
}

static bool has_key(cellar_store *s, const char *node, const char *version, uint32_t seed)
{
    cellar_reader *r;
    cellar_key_record rec;
    cellar_hash key = key_of(node, version, seed);
    assert_int_equal(cellar_reader_begin(s, &r, NULL), CELLAR_OK);
    bool found = cellar_reader_get_key(r, &key, &rec, NULL) == CELLAR_OK &&
                 cellar_reader_has_result(r, &rec.data_version);
    cellar_reader_end(r);
    return found;
}

static bool has_result(cellar_store *s, const cellar_hash *dv)
{
    cellar_reader *r;
    assert_int_equal(cellar_reader_begin(s, &r, NULL), CELLAR_OK);
    bool found = cellar_reader_has_result(r, dv);
    cellar_reader_end(r);
    return found;
}

static uint64_t result_bytes(cellar_store *s)
{
    cellar_reader *r;
    cellar_store_stats st;
    assert_int_equal(cellar_reader_begin(s, &r, NULL), CELLAR_OK);
    assert_int_equal(cellar_reader_stats(r, &st, NULL), CELLAR_OK);
    cellar_reader_end(r);
    return st.result_bytes;
}

static void gc_ok(cellar_store *s, const cellar_gc_options *o, cellar_gc_report *r)
{
    cellar_error err;
    if (cellar_store_gc(s, o, r, &err))
        fail_msg("gc: %s", err.message);
}

/* Five code versions of one node, the newest used last: keep 3. */
static void test_keeps_recent_versions(void **state)
{
    fixture *f = *state;
    cellar_store *s = open_with(f->dir, BLOB_MIN, false);
    const char *versions[] = {"v1", "v2", "v3", "v4", "v5"};
    for (int i = 0; i < 5; i++)
        put(s, "node", versions[i], (uint32_t)i, 100, 1000 + (uint64_t)i * 10, true);
    /* v1 used again most recently (a reverted edit): it counts as recent. */
    cellar_batch *b = cellar_batch_new();
    cellar_hash k1 = key_of("node", "v1", 0);
    assert_int_equal(cellar_batch_touch_key(b, &k1, 5000, NULL), CELLAR_OK);
    commit_ok(s, b);
    cellar_batch_free(b);

    cellar_gc_options dry = {.dry_run = true};
    cellar_gc_report planned, done;
    gc_ok(s, &dry, &planned);
    assert_true(has_key(s, "node", "v2", 1)); /* a dry run drops nothing */
    gc_ok(s, NULL, &done);
    assert_int_equal(done.keys, 2);
    assert_int_equal(done.keys_old, 2);
    assert_int_equal(done.results, 2);
    assert_int_equal(planned.keys, done.keys);
    assert_int_equal(planned.freed_bytes, done.freed_bytes);
    assert_true(has_key(s, "node", "v1", 0));
    assert_false(has_key(s, "node", "v2", 1));
    assert_false(has_key(s, "node", "v3", 2));
    assert_true(has_key(s, "node", "v4", 3));
    assert_true(has_key(s, "node", "v5", 4));
    /* Nothing left to do: a second gc drops nothing. */
    gc_ok(s, NULL, &done);
    assert_int_equal(done.keys + done.results, 0);
    cellar_gc_options one = {.keep = 1};
    gc_ok(s, &one, &done);
    assert_int_equal(done.keys, 2);
    assert_true(has_key(s, "node", "v1", 0));
    cellar_store_close(s);
}

/* Several keys of one code version (different inputs) count as one version. */
static void test_versions_not_keys(void **state)
{
    fixture *f = *state;
    cellar_store *s = open_with(f->dir, BLOB_MIN, false);
    for (uint32_t i = 0; i < 6; i++)
        put(s, "n", "only", i, 64, 100 + i, true);
    put(s, "n", "old", 99, 64, 1, true);
    cellar_gc_options one = {.keep = 1};
    cellar_gc_report r;
    gc_ok(s, &one, &r);
    assert_int_equal(r.keys, 1);
    for (uint32_t i = 0; i < 6; i++)
        assert_true(has_key(s, "n", "only", i));
    cellar_store_close(s);
}

/* Over the budget: least recently used first, down to the budget; a result
 * shared by two keys goes only with its last key. */
static void test_budget_evicts_lru(void **state)
{
    fixture *f = *state;
    cellar_store *s = open_with(f->dir, BLOB_MIN, false);
    for (uint32_t i = 0; i < 10; i++) {
        char node[16];
        snprintf(node, sizeof node, "n%u", i);
        put(s, node, "v", i, 10000, 1000 + i, true); /* blobs: 10000 >= BLOB_MIN */
    }
    uint64_t before = result_bytes(s);
    uint64_t each = before / 10;
    cellar_gc_options o = {.max_size = before - 3 * each};
    cellar_gc_report r;
    gc_ok(s, &o, &r);
    assert_true(result_bytes(s) <= o.max_size);
    assert_int_equal(r.keys_evicted, 3);
    assert_int_equal(r.results, 3);
    assert_int_equal(r.blobs_removed, 3);
    assert_int_equal(r.size_after, result_bytes(s));
    for (uint32_t i = 0; i < 10; i++) {
        char node[16];
        snprintf(node, sizeof node, "n%u", i);
        assert_int_equal(has_key(s, node, "v", i), i >= 3);
    }
    /* No orphan, no sweep marker left behind: the store verifies clean. */
    char dirty[256];
    snprintf(dirty, sizeof dirty, "%s/blobs/dirty", f->dir);
    DIR *d = opendir(dirty);
    struct dirent *de;
    while (d && (de = readdir(d)))
        assert_true(de->d_name[0] == '.');
    if (d)
        closedir(d);
    cellar_verify_counts n;
    assert_int_equal(cellar_store_verify(s, false, NULL, NULL, &n, NULL), CELLAR_OK);
    assert_int_equal(n.problems, 0);
    cellar_store_close(s);
}

static void test_shared_result_kept(void **state)
{
    fixture *f = *state;
    cellar_store *s = open_with(f->dir, BLOB_MIN, false);
    cellar_hash a = put(s, "a", "v", 7, 5000, 10, true);
    cellar_hash b = put(s, "b", "v", 7, 5000, 20, true); /* same content */
    assert_true(cellar_hash_equal(&a, &b));
    cellar_gc_report r;
    const char *forget[] = {"a"};
    assert_int_equal(cellar_store_forget(s, forget, 1, &r, NULL), CELLAR_OK);
    assert_int_equal(r.keys, 1);
    assert_int_equal(r.results, 0); /* b still refers to it */
    assert_true(has_key(s, "b", "v", 7));
    assert_false(has_key(s, "a", "v", 7));
    cellar_reader *rd;
    const char *json;
    size_t len;
    assert_int_equal(cellar_reader_begin(s, &rd, NULL), CELLAR_OK);
    assert_int_equal(cellar_reader_get_node(rd, "a", &json, &len, NULL),
                     CELLAR_ENOTFOUND);
    assert_int_equal(cellar_reader_get_node(rd, "b", &json, &len, NULL), CELLAR_OK);
    cellar_reader_end(rd);
    const char *forget_b[] = {"b", "never-seen"};
    assert_int_equal(cellar_store_forget(s, forget_b, 2, &r, NULL), CELLAR_OK);
    assert_int_equal(r.results, 1);
    assert_int_equal(r.blobs_removed, 1);
    assert_false(has_result(s, &a));
    cellar_store_close(s);
}

/* Keys of a node with no record go, unless the node is live; keys whose
 * result is missing go; results no key names go. */
static void test_gone_and_dangling(void **state)
{
    fixture *f = *state;
    cellar_store *s = open_with(f->dir, BLOB_MIN, false);
    put(s, "recorded", "v", 1, 64, 10, true);
    put(s, "unrecorded", "v", 2, 64, 10, false);
    put(s, "defined_here", "v", 3, 64, 10, false);
    /* A result with no key, and a key with no result. */
    uint8_t lone[32] = {1, 2, 3};
    cellar_segment seg = {lone, sizeof lone};
    cellar_hash dv = dv_of(&seg, 1), missing = hash_of("missing"),
                kd = hash_of("dangling");
    cellar_key_record rec = record("recorded", &missing, 10);
    rec.code_version = hash_of("v");
    cellar_batch *b = cellar_batch_new();
    assert_int_equal(cellar_batch_put_result(b, &dv, &seg, 1, &dv, NULL), CELLAR_OK);
    assert_int_equal(cellar_batch_put_key(b, &kd, &rec, NULL), CELLAR_OK);
    commit_ok(s, b);
    cellar_batch_free(b);

    const char *live[] = {"defined_here"};
    cellar_gc_options o = {.live = live, .nlive = 1};
    cellar_gc_report r;
    gc_ok(s, &o, &r);
    assert_int_equal(r.keys_gone, 1);
    assert_int_equal(r.keys_dangling, 1);
    assert_int_equal(r.results, 2); /* unrecorded's, and the lone one */
    assert_true(has_key(s, "recorded", "v", 1));
    assert_true(has_key(s, "defined_here", "v", 3));
    assert_false(has_key(s, "unrecorded", "v", 2));
    assert_false(has_result(s, &dv));
    cellar_store_close(s);
}

/* A blob mapped before gc removes it stays readable through the mapping. */
static void test_mapped_blob_survives(void **state)
{
    fixture *f = *state;
    cellar_store *s = open_with(f->dir, BLOB_MIN, false);
    cellar_hash dv = put(s, "big", "v", 5, 1 << 16, 10, true);
    loaded l = {0};
    cellar_reader *r;
    assert_int_equal(cellar_reader_begin(s, &r, NULL), CELLAR_OK);
    assert_int_equal(
        cellar_reader_map_result(r, &dv, true, alloc_seg, adopt_seg, &l, NULL),
        CELLAR_OK);
    cellar_reader_end(r);
    const char *forget[] = {"big"};
    cellar_gc_report rep;
    assert_int_equal(cellar_store_forget(s, forget, 1, &rep, NULL), CELLAR_OK);
    assert_int_equal(rep.blobs_removed, 1);
    uint8_t *want = malloc(1 << 16);
    fill_pattern(want, 1 << 16, 5);
    assert_memory_equal(l.bufs[0], want, 1 << 16);
    free(want);
    loaded_free(&l);
    /* Now it is missing: a load says so, and a new put stores it again. */
    assert_int_equal(cellar_reader_begin(s, &r, NULL), CELLAR_OK);
    assert_int_equal(
        cellar_reader_map_result(r, &dv, true, alloc_seg, adopt_seg, &l, NULL),
        CELLAR_ENOTFOUND);
    cellar_reader_end(r);
    loaded_free(&l);
    put(s, "big", "v", 5, 1 << 16, 20, true);
    assert_true(has_key(s, "big", "v", 5));
    cellar_store_close(s);
}

/* A commit that takes the store over its budget collects by itself. */
static void test_automatic_gc(void **state)
{
    fixture *f = *state;
    cellar_store *s = open_with(f->dir, BLOB_MIN, false);
    cellar_store_set_max_size(s, 100000);
    assert_int_equal(cellar_store_max_size(s), 100000);
    for (uint32_t i = 0; i < 40; i++) {
        char node[16];
        snprintf(node, sizeof node, "n%u", i);
        put(s, node, "v", i, 10000, 1000 + i, true);
        assert_true(result_bytes(s) <= 100000);
    }
    assert_true(has_key(s, "n39", "v", 39)); /* the newest stays */
    assert_false(has_key(s, "n0", "v", 0));
    cellar_store_set_max_size(s, 0);
    for (uint32_t i = 40; i < 50; i++) {
        char node[16];
        snprintf(node, sizeof node, "n%u", i);
        put(s, node, "v", i, 10000, 1000 + i, true);
    }
    assert_true(result_bytes(s) > 100000);
    cellar_store_close(s);
}

static size_t count_blob_files(const char *dir)
{
    char path[256];
    size_t n = 0;
    snprintf(path, sizeof path, "%s/blobs", dir);
    DIR *d = opendir(path);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (strlen(de->d_name) != 2 || de->d_name[0] == '.')
            continue;
        char sub[512];
        snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
        DIR *sd = opendir(sub);
        struct dirent *fe;
        while (sd && (fe = readdir(sd)))
            n += fe->d_name[0] != '.';
        if (sd)
            closedir(sd);
    }
    if (d)
        closedir(d);
    return n;
}

static void test_compact(void **state)
{
    fixture *f = *state;
    cellar_store *s = open_with(f->dir, 1 << 20, false);
    for (uint32_t i = 0; i < 300; i++) {
        char node[16];
        snprintf(node, sizeof node, "n%u", i);
        put(s, node, "v", i, 20000, 1000 + i, true); /* inline: pages of data.mdb */
    }
    cellar_gc_options o = {.max_size = 200000};
    gc_ok(s, &o, NULL);
    cellar_store_close(s);
    /* An orphan blob file, as a killed writer leaves. */
    char orphan[256];
    snprintf(orphan, sizeof orphan, "%s/blobs", f->dir);
    mkdir(orphan, 0700);
    snprintf(orphan, sizeof orphan, "%s/blobs/ab", f->dir);
    mkdir(orphan, 0700);
    snprintf(orphan, sizeof orphan, "%s/blobs/ab/%032d-0", f->dir, 0);
    FILE *fp = fopen(orphan, "w");
    assert_non_null(fp);
    fputs("x", fp);
    fclose(fp);

    /* Another process holding the store open: refused, nothing changed. */
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t child = fork();
    if (child == 0) {
        cellar_store *held = open_with(f->dir, 0, true);
        (void)held;
        char c = 'r';
        if (write(ready[1], &c, 1) != 1)
            _exit(1);
        pause();
        _exit(0);
    }
    char c;
    assert_int_equal(read(ready[0], &c, 1), 1);
    cellar_compact_report rep;
    cellar_error err;
    assert_int_equal(cellar_store_compact(f->dir, &rep, &err), CELLAR_EBUSY);
    assert_non_null(strstr(err.message, "is open in process"));
    kill(child, SIGTERM);
    waitpid(child, NULL, 0);
    close(ready[0]);
    close(ready[1]);
    assert_int_equal(count_blob_files(f->dir), 1);

    assert_int_equal(cellar_store_compact(f->dir, &rep, &err), CELLAR_OK);
    assert_true(rep.file_after < rep.file_before / 2);
    assert_int_equal(rep.orphans_removed, 1);
    assert_int_equal(count_blob_files(f->dir), 0);
    s = open_with(f->dir, 1 << 20, false);
    assert_null(cellar_store_notice(s));
    for (uint32_t i = 0; i < 300; i++) {
        char node[16];
        snprintf(node, sizeof node, "n%u", i);
        assert_int_equal(has_key(s, node, "v", i), i >= 300 - 9);
    }
    put(s, "after", "v", 1000, 20000, 5000, true); /* and it still takes writes */
    assert_true(has_key(s, "after", "v", 1000));
    cellar_verify_counts n;
    assert_int_equal(cellar_store_verify(s, false, NULL, NULL, &n, NULL), CELLAR_OK);
    assert_int_equal(n.problems, 0);
    cellar_store_close(s);
}

static void test_read_only_refused(void **state)
{
    fixture *f = *state;
    cellar_store *s = open_with(f->dir, 0, false);
    put(s, "a", "v", 1, 10, 1, true);
    cellar_store_close(s);
    s = open_with(f->dir, 0, true);
    cellar_gc_report r;
    assert_int_equal(cellar_store_gc(s, NULL, &r, NULL), CELLAR_EREADONLY);
    cellar_gc_options dry = {.dry_run = true};
    assert_int_equal(cellar_store_gc(s, &dry, &r, NULL), CELLAR_OK);
    assert_int_equal(r.keys_kept, 1);
    cellar_store_close(s);
}

static void test_parse_size(void **state)
{
    (void)state;
    uint64_t v;
    assert_true(cellar_units_parse_size("10GiB", &v));
    assert_int_equal(v, (uint64_t)10 << 30);
    assert_true(cellar_units_parse_size("1.5 g", &v));
    assert_int_equal(v, (uint64_t)3 << 29);
    assert_true(cellar_units_parse_size("512", &v));
    assert_int_equal(v, 512);
    assert_true(cellar_units_parse_size("512 B", &v));
    assert_int_equal(v, 512);
    assert_true(cellar_units_parse_size("4KB", &v));
    assert_int_equal(v, 4096);
    assert_true(cellar_units_parse_size("16.0 EiB", &v) == false);
    assert_false(cellar_units_parse_size("", &v));
    assert_false(cellar_units_parse_size("GiB", &v));
    assert_false(cellar_units_parse_size("10 GiBs", &v));
    assert_false(cellar_units_parse_size("-1", &v));
    assert_false(cellar_units_parse_size("10 X", &v));
    /* What cellar prints, it reads back. */
    char buf[CELLAR_UNITS_BUFSIZE];
    assert_true(cellar_units_parse_size(cellar_units_size(412u << 20, buf), &v));
    assert_int_equal(v, (uint64_t)412 << 20);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_keeps_recent_versions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_versions_not_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_budget_evicts_lru, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shared_result_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gone_and_dangling, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mapped_blob_survives, setup, teardown),
        cmocka_unit_test_setup_teardown(test_automatic_gc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_only_refused, setup, teardown),
        cmocka_unit_test(test_parse_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
