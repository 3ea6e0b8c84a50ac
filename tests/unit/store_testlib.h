/*
 * store_testlib.h - fixtures shared by the store's cmocka test programs: a
 * fresh temporary directory per test, removed afterwards, and helpers to
 * make values, records and their data versions.  Header-only, so each test
 * program stays one file plus this.
 */
#ifndef STORE_TESTLIB_H
#define STORE_TESTLIB_H

#define _GNU_SOURCE /* nftw */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cellar/store.h"

typedef struct fixture {
    char root[64]; /* mkdtemp directory */
    char dir[128]; /* root/store: created by cellar_store_open */
} fixture;

static inline int setup(void **state)
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

static inline int remove_entry(const char *path, const struct stat *st, int flag,
                               struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static inline int teardown(void **state)
{
    fixture *f = *state;
    nftw(f->root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static inline cellar_store *open_with(const char *dir, size_t blob_min, bool read_only)
{
    cellar_store_options o = {blob_min, read_only, 0};
    cellar_store *s = NULL;
    cellar_error err;
    if (cellar_store_open(dir, &o, &s, &err))
        fail_msg("open %s: %s", dir, err.message);
    return s;
}

static inline cellar_hash dv_of(const cellar_segment *segs, size_t n)
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

static inline cellar_hash hash_of(const char *s)
{
    return cellar_hash_bytes(s, strlen(s));
}

static inline void fill_pattern(uint8_t *p, size_t n, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (uint8_t)x;
    }
}

static inline cellar_key_record record(const char *node, const cellar_hash *dv,
                                       uint64_t t)
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

static inline void commit_ok(cellar_store *s, cellar_batch *b)
{
    cellar_error err;
    if (cellar_store_commit(s, b, &err))
        fail_msg("commit: %s", err.message);
}

/* Puts one result of `n` segments and a key hash_of(node) pointing to it. */
static inline cellar_hash put_value(cellar_batch *b, const char *node,
                                    const cellar_segment *segs, size_t n)
{
    cellar_hash dv = dv_of(segs, n), key = hash_of(node);
    cellar_key_record rec = record(node, &dv, 100);
    assert_int_equal(cellar_batch_put_result(b, &dv, segs, n, &dv, NULL), CELLAR_OK);
    assert_int_equal(cellar_batch_put_key(b, &key, &rec, NULL), CELLAR_OK);
    return dv;
}

/* Copies handed out by a load, kept for checking. */
typedef struct loaded {
    uint8_t *bufs[8];
    size_t lens[8];
    cellar_map *maps[8];
    size_t n;
} loaded;

static inline void *alloc_seg(void *ctx, size_t index, size_t nsegs, size_t len)
{
    loaded *l = ctx;
    if (index >= 8 || nsegs > 8)
        return NULL;
    l->bufs[index] = malloc(len ? len : 1);
    l->lens[index] = len;
    l->n = index + 1;
    return l->bufs[index];
}

static inline int adopt_seg(void *ctx, size_t index, size_t nsegs, cellar_map *m)
{
    loaded *l = ctx;
    if (index >= 8 || nsegs > 8) {
        cellar_map_free(m);
        return -1;
    }
    l->maps[index] = m;
    l->bufs[index] = cellar_map_data(m);
    l->lens[index] = cellar_map_len(m);
    l->n = index + 1;
    return 0;
}

static inline void loaded_free(loaded *l)
{
    for (size_t i = 0; i < 8; i++) {
        if (l->maps[i])
            cellar_map_free(l->maps[i]);
        else
            free(l->bufs[i]);
    }
    memset(l, 0, sizeof *l);
}

#endif
