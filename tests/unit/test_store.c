/*
 * Unit tests for store.c, against real LMDB files in temporary directories:
 * round trips, persistence, read-only opening, iteration order, stats, map
 * growth from a tiny map, permission refusals, detection of flipped bytes in
 * data.mdb and peak memory while loading (several processes on one store:
 * test_store_processes.c).
 */
#define _GNU_SOURCE /* nftw */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cellar/store.h"

/* ---- fixtures and helpers ---- */

typedef struct fixture {
    char root[64]; /* mkdtemp directory */
    char dir[128]; /* root/store: created by cellar_store_open */
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    strcpy(f->root, "/tmp/cellar-test-store-XXXXXX");
    if (!mkdtemp(f->root))
        return -1;
    snprintf(f->dir, sizeof f->dir, "%s/store", f->root);
    *state = f;
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag,
                        struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    fixture *f = *state;
    nftw(f->root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static cellar_store *open_store(const char *dir, size_t map_size, bool read_only)
{
    /* A small map is for growth tests: keep their values inside LMDB. */
    cellar_store_options o = {map_size ? (size_t)64 << 20 : 0, read_only, map_size};
    cellar_store *s = NULL;
    cellar_error err;
    cellar_status st = cellar_store_open(dir, &o, &s, &err);
    if (st)
        fail_msg("open %s: %s", dir, err.message);
    return s;
}

static cellar_hash dv_of(const cellar_segment *segs, size_t n)
{
    cellar_fingerprint *fp = cellar_fingerprint_new();
    assert_non_null(fp);
    for (size_t i = 0; i < n; i++)
        cellar_fingerprint_add(fp, i == 0 ? CELLAR_SEG_STREAM : CELLAR_SEG_BUFFER,
                               segs[i].data, segs[i].len);
    cellar_hash h = cellar_fingerprint_digest(fp);
    cellar_fingerprint_free(fp);
    return h;
}

static cellar_hash hash_of(const char *s)
{
    return cellar_hash_bytes(s, strlen(s));
}

static void fill_pattern(uint8_t *p, size_t n, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (uint8_t)x;
    }
}

/* Destinations handed to load_result, kept for checking. */
typedef struct loaded {
    uint8_t *bufs[8];
    size_t lens[8];
    size_t n;
} loaded;

static void *alloc_seg(void *ctx, size_t index, size_t nsegs, size_t len)
{
    loaded *l = ctx;
    if (index >= 8 || nsegs > 8)
        return NULL;
    l->bufs[index] = malloc(len ? len : 1);
    l->lens[index] = len;
    l->n = index + 1;
    return l->bufs[index];
}

static void loaded_free(loaded *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->bufs[i]);
    memset(l, 0, sizeof *l);
}

static cellar_key_record record(const char *node, const cellar_hash *dv, uint64_t t)
{
    cellar_key_record r = {0};
    r.data_version = *dv;
    r.code_version = hash_of(node);
    r.created_ns = t;
    r.last_used_ns = t + 1;
    r.size = 1234;
    r.compute_ns = 5678;
    r.node = node;
    r.node_len = strlen(node);
    return r;
}

static void commit_ok(cellar_store *s, cellar_batch *b)
{
    cellar_error err;
    if (cellar_store_commit(s, b, &err))
        fail_msg("commit: %s", err.message);
}

/* Puts one result of `n` segments and a key "key:<node>" pointing to it. */
static cellar_hash put_value(cellar_batch *b, const char *node,
                             const cellar_segment *segs, size_t n)
{
    cellar_hash dv = dv_of(segs, n), key = hash_of(node);
    cellar_key_record rec = record(node, &dv, 100);
    assert_int_equal(cellar_batch_put_result(b, &dv, segs, n, NULL, NULL), CELLAR_OK);
    assert_int_equal(cellar_batch_put_key(b, &key, &rec, NULL), CELLAR_OK);
    return dv;
}

/* ---- tests ---- */

static void test_round_trip(void **state)
{
    fixture *f = *state;
    cellar_store *s = open_store(f->dir, 0, false);
    struct stat st;
    assert_int_equal(stat(f->dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);

    const char *stream = "pickle-stream-bytes";
    uint8_t buf[3000];
    fill_pattern(buf, sizeof buf, 7);
    cellar_segment segs[3] = {{stream, strlen(stream)}, {buf, sizeof buf}, {"", 0}};
    cellar_hash dv = dv_of(segs, 3), key = hash_of("k1");
    cellar_key_record rec = record("cleaned_data", &dv, 42);

    cellar_batch *b = cellar_batch_new();
    assert_true(cellar_batch_empty(b));
    assert_int_equal(cellar_batch_put_result(b, &dv, segs, 3, &dv, NULL), CELLAR_OK);
    assert_int_equal(cellar_batch_put_key(b, &key, &rec, NULL), CELLAR_OK);
    assert_int_equal(cellar_batch_put_node(b, "cleaned_data", "{\"code\":1}", NULL),
                     CELLAR_OK);
    uint64_t run_id = 0;
    assert_int_equal(cellar_batch_add_run(b, "{\"nodes\":[]}", &run_id, NULL), CELLAR_OK);
    assert_false(cellar_batch_empty(b));
    commit_ok(s, b);
    assert_true(cellar_batch_empty(b));
    assert_true(run_id > 0);

    cellar_reader *r;
    cellar_error err;
    assert_int_equal(cellar_reader_begin(s, &r, &err), CELLAR_OK);
    cellar_key_record got;
    assert_int_equal(cellar_reader_get_key(r, &key, &got, &err), CELLAR_OK);
    assert_memory_equal(got.data_version.bytes, dv.bytes, 16);
    assert_memory_equal(got.code_version.bytes, rec.code_version.bytes, 16);
    assert_int_equal(got.created_ns, 42);
    assert_int_equal(got.last_used_ns, 43);
    assert_int_equal(got.size, 1234);
    assert_int_equal(got.compute_ns, 5678);
    assert_int_equal(got.node_len, strlen("cleaned_data"));
    assert_memory_equal(got.node, "cleaned_data", got.node_len);

    cellar_hash missing = hash_of("missing");
    assert_int_equal(cellar_reader_get_key(r, &missing, &got, &err), CELLAR_ENOTFOUND);
    assert_true(cellar_reader_has_result(r, &dv));
    assert_false(cellar_reader_has_result(r, &missing));

    loaded l = {0};
    assert_int_equal(cellar_reader_load_result(r, &dv, alloc_seg, &l, &err), CELLAR_OK);
    assert_int_equal(l.n, 3);
    assert_int_equal(l.lens[0], strlen(stream));
    assert_memory_equal(l.bufs[0], stream, strlen(stream));
    assert_int_equal(l.lens[1], sizeof buf);
    assert_memory_equal(l.bufs[1], buf, sizeof buf);
    assert_int_equal(l.lens[2], 0);
    loaded_free(&l);
    assert_int_equal(cellar_reader_load_result(r, &missing, alloc_seg, &l, &err),
                     CELLAR_ENOTFOUND);

    const char *json;
    size_t len;
    assert_int_equal(cellar_reader_get_node(r, "cleaned_data", &json, &len, &err),
                     CELLAR_OK);
    assert_int_equal(len, strlen("{\"code\":1}"));
    assert_memory_equal(json, "{\"code\":1}", len);
    assert_int_equal(cellar_reader_get_node(r, "nope", &json, &len, &err),
                     CELLAR_ENOTFOUND);

    /* Several readers at once, and a commit while they are open: each keeps
     * its snapshot. */
    cellar_reader *r2;
    assert_int_equal(cellar_reader_begin(s, &r2, &err), CELLAR_OK);
    cellar_batch_touch_key(b, &key, 99, NULL);
    commit_ok(s, b);
    assert_int_equal(cellar_reader_get_key(r2, &key, &got, &err), CELLAR_OK);
    assert_int_equal(got.last_used_ns, 43);
    cellar_reader_end(r2);
    cellar_reader_end(r);
    assert_int_equal(cellar_reader_begin(s, &r, &err), CELLAR_OK);
    assert_int_equal(cellar_reader_get_key(r, &key, &got, &err), CELLAR_OK);
    assert_int_equal(got.last_used_ns, 99);
    assert_int_equal(got.created_ns, 42);
    cellar_reader_end(r);

    cellar_batch_free(b);
    cellar_store_close(s);
}

static void test_put_validation_and_skip(void **state)
{
    fixture *f = *state;
    cellar_store *s = open_store(f->dir, 0, false);
    cellar_batch *b = cellar_batch_new();
    cellar_error err;
    cellar_segment one = {"abc", 3}, other = {"abd", 3};
    cellar_hash dv = dv_of(&one, 1), wrong = dv_of(&other, 1);

    assert_int_equal(cellar_batch_put_result(b, &dv, &one, 0, NULL, &err), CELLAR_EINVAL);
    assert_int_equal(cellar_batch_put_result(b, &dv, &one, 1, &wrong, &err),
                     CELLAR_EINVAL);
    assert_true(cellar_batch_empty(b));

    /* Segments that do not hash to the data version: the whole batch fails. */
    cellar_hash key = hash_of("k");
    cellar_key_record rec = record("n", &wrong, 1);
    assert_int_equal(cellar_batch_put_key(b, &key, &rec, NULL), CELLAR_OK);
    assert_int_equal(cellar_batch_put_result(b, &wrong, &one, 1, NULL, NULL), CELLAR_OK);
    assert_int_equal(cellar_store_commit(s, b, &err), CELLAR_EINVAL);
    assert_non_null(strstr(err.message, "not its data version"));
    cellar_batch_free(b);
    b = cellar_batch_new();

    cellar_reader *r;
    cellar_key_record got;
    assert_int_equal(cellar_reader_begin(s, &r, NULL), CELLAR_OK);
    assert_int_equal(cellar_reader_get_key(r, &key, &got, NULL), CELLAR_ENOTFOUND);
    assert_false(cellar_reader_has_result(r, &wrong));
    cellar_reader_end(r);

    /* A second put of a stored data version is skipped. */
    assert_int_equal(cellar_batch_put_result(b, &dv, &one, 1, NULL, NULL), CELLAR_OK);
    commit_ok(s, b);
    cellar_store_stats before, after;
    assert_int_equal(cellar_reader_begin(s, &r, NULL), CELLAR_OK);
    assert_int_equal(cellar_reader_stats(r, &before, NULL), CELLAR_OK);
    cellar_reader_end(r);
    assert_int_equal(cellar_batch_put_result(b, &dv, &one, 1, &dv, NULL), CELLAR_OK);
    commit_ok(s, b);
    assert_int_equal(cellar_reader_begin(s, &r, NULL), CELLAR_OK);
    assert_int_equal(cellar_reader_stats(r, &after, NULL), CELLAR_OK);
    cellar_reader_end(r);
    assert_int_equal(before.results, 1);
    assert_int_equal(after.results, 1);
    assert_int_equal(after.result_bytes, before.result_bytes);

    /* Touching a missing key is ignored. */
    assert_int_equal(cellar_batch_touch_key(b, &key, 5, NULL), CELLAR_OK);
    commit_ok(s, b);
    cellar_batch_free(b);
    cellar_store_close(s);
}

static void test_reopen_and_read_only(void **state)
{
    fixture *f = *state;
    cellar_error err;
    cellar_store *s = NULL;
    cellar_store_options ro = {.read_only = true};

    /* Read-only never creates a store. */
    assert_int_equal(cellar_store_open(f->dir, &ro, &s, &err), CELLAR_ENOTFOUND);
    assert_null(s);
    struct stat st;
    assert_int_not_equal(stat(f->dir, &st), 0);

    s = open_store(f->dir, 0, false);
    cellar_batch *b = cellar_batch_new();
    cellar_segment seg = {"persisted value", 15};
    cellar_hash dv = put_value(b, "node_a", &seg, 1);
    commit_ok(s, b);
    cellar_store_close(s);

    s = open_store(f->dir, 0, true);
    assert_string_equal(cellar_store_path(s), f->dir);
    cellar_reader *r;
    loaded l = {0};
    assert_int_equal(cellar_reader_begin(s, &r, &err), CELLAR_OK);
    assert_int_equal(cellar_reader_load_result(r, &dv, alloc_seg, &l, &err), CELLAR_OK);
    assert_memory_equal(l.bufs[0], "persisted value", 15);
    loaded_free(&l);
    cellar_reader_end(r);
    put_value(b, "node_b", &seg, 1);
    assert_int_equal(cellar_store_commit(s, b, &err), CELLAR_EREADONLY);
    cellar_store_close(s);

    /* A read-write reopen sees the old data and can add to it. */
    s = open_store(f->dir, 0, false);
    commit_ok(s, b);
    cellar_key_record got;
    cellar_hash kb = hash_of("node_b"), ka = hash_of("node_a");
    assert_int_equal(cellar_reader_begin(s, &r, &err), CELLAR_OK);
    assert_int_equal(cellar_reader_get_key(r, &ka, &got, &err), CELLAR_OK);
    assert_int_equal(cellar_reader_get_key(r, &kb, &got, &err), CELLAR_OK);
    cellar_reader_end(r);
    cellar_batch_free(b);
    cellar_store_close(s);

    /* A directory that is not a store. */
    char empty[200];
    snprintf(empty, sizeof empty, "%s/empty", f->root);
    assert_int_equal(mkdir(empty, 0700), 0);
    assert_int_equal(cellar_store_open(empty, &ro, &s, &err), CELLAR_ENOTFOUND);
}

typedef struct collected {
    char names[16][32];
    uint64_t ids[16];
    size_t n;
    size_t stop_after;
} collected;

static int collect_key(void *ctx, const cellar_hash *key, const cellar_key_record *rec)
{
    collected *c = ctx;
    (void)rec;
    memcpy(c->names[c->n], key->bytes, 16);
    return ++c->n == c->stop_after;
}

static int collect_run(void *ctx, uint64_t id, const char *json, size_t len)
{
    collected *c = ctx;
    memcpy(c->names[c->n], json, len < 31 ? len : 31);
    c->names[c->n][len < 31 ? len : 31] = '\0';
    c->ids[c->n] = id;
    return ++c->n == c->stop_after;
}

static void test_iteration_order(void **state)
{
    fixture *f = *state;
    cellar_store *s = open_store(f->dir, 0, false);
    cellar_batch *b = cellar_batch_new();
    const char *nodes[] = {"zeta", "alpha", "mid", "beta2", "beta"};
    for (size_t i = 0; i < 5; i++) {
        cellar_segment seg = {nodes[i], strlen(nodes[i])};
        put_value(b, nodes[i], &seg, 1);
        assert_int_equal(cellar_batch_put_node(b, nodes[i], "{}", NULL), CELLAR_OK);
    }
    uint64_t ids[3];
    /* Two runs in one batch and one in the next: ids still strictly grow. */
    cellar_batch_add_run(b, "run0", &ids[0], NULL);
    cellar_batch_add_run(b, "run1", &ids[1], NULL);
    commit_ok(s, b);
    cellar_batch_add_run(b, "run2", &ids[2], NULL);
    commit_ok(s, b);
    assert_true(ids[0] < ids[1] && ids[1] < ids[2]);

    cellar_reader *r;
    cellar_error err;
    assert_int_equal(cellar_reader_begin(s, &r, &err), CELLAR_OK);
    collected c = {0};
    assert_int_equal(cellar_reader_each_key(r, collect_key, &c, &err), CELLAR_OK);
    assert_int_equal(c.n, 5);
    for (size_t i = 1; i < c.n; i++)
        assert_true(memcmp(c.names[i - 1], c.names[i], 16) < 0);

    memset(&c, 0, sizeof c);
    assert_int_equal(cellar_reader_each_run(r, collect_run, &c, &err), CELLAR_OK);
    assert_int_equal(c.n, 3);
    assert_string_equal(c.names[0], "run2");
    assert_string_equal(c.names[2], "run0");
    assert_int_equal(c.ids[0], ids[2]);
    assert_int_equal(c.ids[2], ids[0]);

    /* A callback that returns non-zero stops the walk. */
    memset(&c, 0, sizeof c);
    c.stop_after = 2;
    assert_int_equal(cellar_reader_each_key(r, collect_key, &c, &err), CELLAR_OK);
    assert_int_equal(c.n, 2);
    cellar_reader_end(r);
    cellar_batch_free(b);
    cellar_store_close(s);
}

static void test_stats(void **state)
{
    fixture *f = *state;
    cellar_store *s = open_store(f->dir, 0, false);
    cellar_batch *b = cellar_batch_new();
    uint8_t big[10000];
    fill_pattern(big, sizeof big, 3);
    cellar_segment a[2] = {{"s", 1}, {big, sizeof big}}, c = {"tiny", 4};
    put_value(b, "a", a, 2);
    put_value(b, "c", &c, 1);
    cellar_hash k2 = hash_of("second key for c");
    cellar_hash dvc = dv_of(&c, 1);
    cellar_key_record rec = record("c", &dvc, 7);
    cellar_batch_put_key(b, &k2, &rec, NULL);
    cellar_batch_put_node(b, "a", "{}", NULL);
    cellar_batch_add_run(b, "{}", NULL, NULL);
    commit_ok(s, b);

    cellar_reader *r;
    cellar_store_stats st;
    assert_int_equal(cellar_reader_begin(s, &r, NULL), CELLAR_OK);
    assert_int_equal(cellar_reader_stats(r, &st, NULL), CELLAR_OK);
    cellar_reader_end(r);
    assert_int_equal(st.keys, 3);
    assert_int_equal(st.results, 2);
    assert_int_equal(st.nodes, 1);
    assert_int_equal(st.runs, 1);
    /* The pages holding two headers (32 bytes + 16 per segment) and the
     * segment bytes. */
    assert_true(st.result_bytes >= (32 + 32 + 1 + sizeof big) + (32 + 16 + 4));
    assert_true(st.result_bytes < 8 * 4096);
    assert_int_equal(st.map_size, (uint64_t)1 << 30);
    assert_true(st.file_bytes > 0);
    cellar_batch_free(b);
    cellar_store_close(s);
}

static void test_map_grows(void **state)
{
    fixture *f = *state;
    cellar_store *s = open_store(f->dir, 1 << 20, false);
    cellar_batch *b = cellar_batch_new();
    size_t sizes[3] = {3 << 20, 5 << 20, 9 << 20};
    uint8_t *bufs[3];
    cellar_hash dvs[3];
    for (int i = 0; i < 3; i++) {
        bufs[i] = malloc(sizes[i]);
        assert_non_null(bufs[i]);
        fill_pattern(bufs[i], sizes[i], (uint32_t)i + 10);
        cellar_segment seg[2] = {{"hdr", 3}, {bufs[i], sizes[i]}};
        char node[16];
        snprintf(node, sizeof node, "big%d", i);
        dvs[i] = put_value(b, node, seg, 2);
        if (i == 0)
            commit_ok(s, b); /* one alone, then two in one batch */
    }
    commit_ok(s, b);

    cellar_reader *r;
    cellar_store_stats st;
    cellar_error err;
    assert_int_equal(cellar_reader_begin(s, &r, &err), CELLAR_OK);
    assert_int_equal(cellar_reader_stats(r, &st, NULL), CELLAR_OK);
    assert_true(st.map_size >= (uint64_t)(3 + 5 + 9) << 20);
    for (int i = 0; i < 3; i++) {
        loaded l = {0};
        assert_int_equal(cellar_reader_load_result(r, &dvs[i], alloc_seg, &l, &err),
                         CELLAR_OK);
        assert_int_equal(l.lens[1], sizes[i]);
        assert_memory_equal(l.bufs[1], bufs[i], sizes[i]);
        loaded_free(&l);
        free(bufs[i]);
    }
    cellar_reader_end(r);
    cellar_batch_free(b);
    cellar_store_close(s);

    /* Reopened with the tiny size again: the store keeps its data. */
    s = open_store(f->dir, 1 << 20, false);
    assert_int_equal(cellar_reader_begin(s, &r, &err), CELLAR_OK);
    assert_true(cellar_reader_has_result(r, &dvs[2]));
    cellar_reader_end(r);
    cellar_store_close(s);
}

static void expect_unsafe(const char *dir, const char *must_contain)
{
    cellar_store *s = NULL;
    cellar_error err;
    assert_int_equal(cellar_store_open(dir, NULL, &s, &err), CELLAR_EUNSAFE);
    assert_null(s);
    assert_non_null(strstr(err.message, "loading a pickle runs code"));
    if (!strstr(err.message, must_contain))
        fail_msg("message lacks '%s': %s", must_contain, err.message);
    cellar_store_options ro = {.read_only = true};
    assert_int_equal(cellar_store_open(dir, &ro, &s, &err), CELLAR_EUNSAFE);
}

static void test_permission_refusals(void **state)
{
    fixture *f = *state;
    cellar_store_close(open_store(f->dir, 0, false));
    char data[200], lock[200];
    snprintf(data, sizeof data, "%s/data.mdb", f->dir);
    snprintf(lock, sizeof lock, "%s/lock.mdb", f->dir);

    assert_int_equal(chmod(f->dir, 0770), 0);
    expect_unsafe(f->dir, "chmod 700");
    assert_int_equal(chmod(f->dir, 0702), 0);
    expect_unsafe(f->dir, "others");
    assert_int_equal(chmod(f->dir, 0755), 0); /* readable by others is fine */
    cellar_store_close(open_store(f->dir, 0, false));
    assert_int_equal(chmod(f->dir, 0700), 0);

    assert_int_equal(chown(f->dir, 65534, (gid_t)-1), 0);
    expect_unsafe(f->dir, "owned by uid 65534");
    assert_int_equal(chown(f->dir, geteuid(), (gid_t)-1), 0);

    assert_int_equal(chmod(data, 0660), 0);
    expect_unsafe(f->dir, "data.mdb");
    assert_int_equal(chmod(data, 0600), 0);
    assert_int_equal(chown(lock, 65534, (gid_t)-1), 0);
    expect_unsafe(f->dir, "lock.mdb");
    assert_int_equal(chown(lock, geteuid(), (gid_t)-1), 0);
    cellar_store_close(open_store(f->dir, 0, false));

    /* A new store inside a world-writable parent is still created 0700. */
    char nested[200];
    snprintf(nested, sizeof nested, "%s/a/b/c", f->root);
    cellar_store_close(open_store(nested, 0, false));
    struct stat st;
    assert_int_equal(stat(nested, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
}

/* Finds `needle` in a file; returns its offset or -1. */
static long find_in_file(const char *path, const uint8_t *needle, size_t n)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)size);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)size, fp), (size_t)size);
    fclose(fp);
    long at = -1;
    for (long i = 0; i + (long)n <= size && at < 0; i++)
        if (!memcmp(buf + i, needle, n))
            at = i;
    free(buf);
    return at;
}

static void poke(const char *path, long offset, uint8_t xor_with)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t byte;
    assert_int_equal(pread(fd, &byte, 1, offset), 1);
    byte ^= xor_with;
    assert_int_equal(pwrite(fd, &byte, 1, offset), 1);
    close(fd);
}

typedef struct bad_list {
    cellar_hash dvs[4];
    char message[256];
    size_t n;
} bad_list;

static void on_bad(void *ctx, const cellar_hash *dv, const char *message)
{
    bad_list *l = ctx;
    if (l->n < 4)
        l->dvs[l->n] = *dv;
    snprintf(l->message, sizeof l->message, "%s", message);
    l->n++;
}

static void test_flipped_bytes_are_detected(void **state)
{
    fixture *f = *state;
    cellar_store *s = open_store(f->dir, 0, false);
    cellar_batch *b = cellar_batch_new();
    static const char marker[] = "CELLAR-TEST-MARKER-0123456789";
    uint8_t payload[6000];
    fill_pattern(payload, sizeof payload, 99);
    memcpy(payload + 2500, marker, sizeof marker - 1);
    cellar_segment segs[2] = {{"stream", 6}, {payload, sizeof payload}};
    cellar_hash dv = put_value(b, "victim", segs, 2);
    cellar_segment ok_seg = {"healthy", 7};
    cellar_hash dv_ok = put_value(b, "healthy", &ok_seg, 1);
    commit_ok(s, b);
    cellar_store_close(s);

    char data[200];
    snprintf(data, sizeof data, "%s/data.mdb", f->dir);
    long at = find_in_file(data, (const uint8_t *)marker, sizeof marker - 1);
    assert_true(at > 0);
    poke(data, at + 3, 0x5a);

    s = open_store(f->dir, 0, true);
    cellar_reader *r;
    cellar_error err;
    loaded l = {0};
    assert_int_equal(cellar_reader_begin(s, &r, &err), CELLAR_OK);
    assert_int_equal(cellar_reader_load_result(r, &dv, alloc_seg, &l, &err),
                     CELLAR_ECORRUPT);
    loaded_free(&l);
    char hex[33];
    cellar_hash_to_hex(&dv, hex);
    assert_non_null(strstr(err.message, hex));
    assert_int_equal(cellar_reader_load_result(r, &dv_ok, alloc_seg, &l, &err),
                     CELLAR_OK);
    loaded_free(&l);

    bad_list bad = {0};
    uint64_t checked = 0, corrupt = 0;
    assert_int_equal(cellar_reader_verify(r, on_bad, &bad, &checked, &corrupt, &err),
                     CELLAR_OK);
    assert_int_equal(checked, 2);
    assert_int_equal(corrupt, 1);
    assert_int_equal(bad.n, 1);
    assert_memory_equal(bad.dvs[0].bytes, dv.bytes, 16);
    cellar_reader_end(r);
    cellar_store_close(s);

    /* Now damage the header: a segment length that no longer adds up.  The
     * lengths follow the 32-byte header start; the stream segment (6 bytes)
     * sits right before the payload, so the header ends at payload - 6. */
    long payload_at = at - 2500;
    long len1_at = payload_at - 6 - 8; /* the u64 length of segment 1 */
    poke(data, len1_at + 1, 0x01);
    s = open_store(f->dir, 0, true);
    assert_int_equal(cellar_reader_begin(s, &r, &err), CELLAR_OK);
    assert_int_equal(cellar_reader_load_result(r, &dv, alloc_seg, &l, &err),
                     CELLAR_ECORRUPT);
    assert_non_null(strstr(err.message, "header"));
    loaded_free(&l);
    memset(&bad, 0, sizeof bad);
    assert_int_equal(cellar_reader_verify(r, on_bad, &bad, &checked, &corrupt, &err),
                     CELLAR_OK);
    assert_int_equal(corrupt, 1);
    cellar_reader_end(r);
    cellar_batch_free(b);
    cellar_store_close(s);
}

/* A damaged payload survives a plain put (content addressing: same data
 * version, assumed same bytes) and is healed by replace_result. */
static void test_replace_heals_damaged_payload(void **state)
{
    fixture *f = *state;
    cellar_store *s = open_store(f->dir, 0, false);
    cellar_batch *b = cellar_batch_new();
    static const char marker[] = "CELLAR-REPLACE-MARKER-987654";
    uint8_t payload[5000];
    fill_pattern(payload, sizeof payload, 7);
    memcpy(payload + 1000, marker, sizeof marker - 1);
    cellar_segment segs[2] = {{"stream", 6}, {payload, sizeof payload}};
    cellar_hash dv = put_value(b, "victim", segs, 2);
    commit_ok(s, b);
    cellar_store_close(s);

    char data[200];
    snprintf(data, sizeof data, "%s/data.mdb", f->dir);
    long at = find_in_file(data, (const uint8_t *)marker, sizeof marker - 1);
    assert_true(at > 0);
    poke(data, at + 5, 0x5a);

    cellar_error err;
    cellar_reader *r;
    loaded l = {0};
    s = open_store(f->dir, 0, false);
    assert_int_equal(cellar_reader_begin(s, &r, &err), CELLAR_OK);
    assert_int_equal(cellar_reader_load_result(r, &dv, alloc_seg, &l, &err),
                     CELLAR_ECORRUPT);
    loaded_free(&l);
    cellar_reader_end(r);
    assert_int_equal(cellar_batch_put_result(b, &dv, segs, 2, &dv, &err), CELLAR_OK);
    commit_ok(s, b);
    assert_int_equal(cellar_reader_begin(s, &r, &err), CELLAR_OK);
    assert_int_equal(cellar_reader_load_result(r, &dv, alloc_seg, &l, &err),
                     CELLAR_ECORRUPT);
    loaded_free(&l);
    cellar_reader_end(r);

    assert_int_equal(cellar_batch_replace_result(b, &dv, segs, 2, &dv, &err), CELLAR_OK);
    commit_ok(s, b);
    assert_int_equal(cellar_reader_begin(s, &r, &err), CELLAR_OK);
    assert_int_equal(cellar_reader_load_result(r, &dv, alloc_seg, &l, &err), CELLAR_OK);
    loaded_free(&l);
    cellar_reader_end(r);
    cellar_batch_free(b);
    cellar_store_close(s);
}

static long status_kib(const char *field)
{
    FILE *fp = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    while (fp && fgets(line, sizeof line, fp))
        if (!strncmp(line, field, n))
            v = atol(line + n + 1);
    if (fp)
        fclose(fp);
    return v;
}

static void test_load_peak_memory(void **state)
{
    fixture *f = *state;
    const size_t size = (size_t)192 << 20;
    cellar_hash dv;
    {
        cellar_store *s = open_store(f->dir, 0, false);
        cellar_batch *b = cellar_batch_new();
        uint8_t *buf = malloc(size);
        assert_non_null(buf);
        fill_pattern(buf, size, 5);
        cellar_segment segs[2] = {{"p", 1}, {buf, size}};
        dv = put_value(b, "huge", segs, 2);
        commit_ok(s, b);
        cellar_batch_free(b);
        free(buf);
        cellar_store_close(s);
    }
    cellar_store *s = open_store(f->dir, 0, true);
    cellar_reader *r;
    cellar_error err;
    assert_int_equal(cellar_reader_begin(s, &r, &err), CELLAR_OK);
    /* Reset the high-water mark: only the load itself is measured. */
    FILE *cr = fopen("/proc/self/clear_refs", "w");
    if (!cr || fputs("5", cr) < 0) {
        if (cr)
            fclose(cr);
        cellar_reader_end(r);
        cellar_store_close(s);
        skip();
    }
    fclose(cr);
    long base = status_kib("VmRSS:");
    loaded l = {0};
    assert_int_equal(cellar_reader_load_result(r, &dv, alloc_seg, &l, &err), CELLAR_OK);
    long peak = status_kib("VmHWM:");
    long grown = peak - base;
    long size_kib = (long)(size >> 10);
    print_message("load of %zu MiB: peak RSS grew by %ld MiB (%.2fx)\n", size >> 20,
                  grown >> 10, (double)grown / (double)size_kib);
    /* Map pages are dropped every 64 MiB, so the peak is the destination plus
     * at most ~64 MiB of map; without releasing them it would be 2x. */
    assert_true(grown < size_kib + (80L << 10));
    loaded_free(&l);
    cellar_reader_end(r);
    cellar_store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_validation_and_skip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_and_read_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_iteration_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_grows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_permission_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flipped_bytes_are_detected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_heals_damaged_payload, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_load_peak_memory, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
