/*
 * bench_store_lookup.c - how fast the store answers "is this key cached?",
 * and what a commit costs.
 *
 * It fills a fresh store with N cache keys (default 1,000,000), then, inside
 * one reader, looks all of them up in a shuffled order with
 * cellar_reader_get_key.  The reference, measured in the same run on the same
 * keys and order, is an in-memory open-addressing hash table of the same 16
 * byte keys pointing at decoded records: that is what a purely in-process
 * cache (a dict held by the kernel) would cost, the floor for any lookup that
 * has to find one of a million random keys, so the ratio is the price of
 * persistence, sharing and surviving restarts.  Both sides pay the same cache
 * misses for random keys; LMDB adds a B-tree descent.
 *
 * It also measures reader begin/end, a simulated fully cached 1,000-node run
 * (1,000 lookups, then one commit of 1,000 touches plus a run record), and a
 * small commit in raw LMDB with each sync policy (full fsync, MDB_NOMETASYNC,
 * MDB_NOSYNC) on the disk holding the store directory.
 *
 * usage: bench_store_lookup [--keys N] [--dir PARENT]
 */
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cellar/store.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what, const cellar_error *err)
{
    fprintf(stderr, "bench_store_lookup: %s: %s\n", what, err ? err->message : "");
    exit(1);
}

static cellar_hash key_of(uint64_t i)
{
    return cellar_hash_bytes(&i, sizeof i);
}

/* A splitmix64 shuffle, so every run uses the same order. */
static uint64_t next_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static void shuffle(uint32_t *a, size_t n)
{
    uint64_t s = 42;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)(next_rand(&s) % (i + 1));
        uint32_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

/* ---- the reference: an in-memory open-addressing table ---- */

typedef struct ref_entry {
    cellar_hash key;
    cellar_key_record rec;
    bool used;
} ref_entry;

typedef struct ref_table {
    ref_entry *slots;
    size_t mask;
} ref_table;

static uint64_t slot_of(const cellar_hash *k)
{
    uint64_t h;
    memcpy(&h, k->bytes, sizeof h); /* the key is already a hash */
    return h;
}

static void ref_put(ref_table *t, const cellar_hash *k, const cellar_key_record *rec)
{
    size_t i = slot_of(k) & t->mask;
    while (t->slots[i].used)
        i = (i + 1) & t->mask;
    t->slots[i] = (ref_entry){*k, *rec, true};
}

static const cellar_key_record *ref_get(const ref_table *t, const cellar_hash *k)
{
    for (size_t i = slot_of(k) & t->mask; t->slots[i].used; i = (i + 1) & t->mask)
        if (cellar_hash_equal(&t->slots[i].key, k))
            return &t->slots[i].rec;
    return NULL;
}

/* ---- filling the store ---- */

static void fill(cellar_store *s, size_t n, ref_table *ref, char (*names)[24])
{
    cellar_batch *b = cellar_batch_new();
    cellar_error err;
    cellar_hash dv = cellar_hash_bytes("value", 5);
    for (size_t i = 0; i < n; i++) {
        cellar_hash k = key_of(i);
        snprintf(names[i], 24, "node_%zu", i % 1000);
        cellar_key_record rec = {dv, dv, 1, 2, 100, 1000, names[i], strlen(names[i])};
        if (cellar_batch_put_key(b, &k, &rec, &err))
            die("put_key", &err);
        ref_put(ref, &k, &rec);
        if ((i + 1) % 100000 == 0 || i + 1 == n)
            if (cellar_store_commit(s, b, &err))
                die("commit", &err);
    }
    cellar_batch_free(b);
}

static double bench_store(cellar_store *s, const uint32_t *order, size_t n, size_t rounds)
{
    cellar_reader *r;
    cellar_error err;
    uint64_t found = 0;
    if (cellar_reader_begin(s, &r, &err))
        die("reader", &err);
    double t0 = now_s();
    for (size_t round = 0; round < rounds; round++)
        for (size_t i = 0; i < n; i++) {
            cellar_hash k = key_of(order[i]);
            cellar_key_record rec;
            if (cellar_reader_get_key(r, &k, &rec, &err) == CELLAR_OK)
                found += rec.size;
        }
    double dt = now_s() - t0;
    cellar_reader_end(r);
    if (found != (uint64_t)n * rounds * 100)
        die("not every key was found", NULL);
    return (double)(n * rounds) / dt;
}

static double bench_ref(const ref_table *t, const uint32_t *order, size_t n,
                        size_t rounds)
{
    uint64_t found = 0;
    double t0 = now_s();
    for (size_t round = 0; round < rounds; round++)
        for (size_t i = 0; i < n; i++) {
            cellar_hash k = key_of(order[i]);
            const cellar_key_record *rec = ref_get(t, &k);
            if (rec)
                found += rec->size;
        }
    double dt = now_s() - t0;
    if (found != (uint64_t)n * rounds * 100)
        die("reference lost keys", NULL);
    return (double)(n * rounds) / dt;
}

static double bench_reader_cycle(cellar_store *s, size_t iters)
{
    cellar_reader *r;
    cellar_error err;
    double t0 = now_s();
    for (size_t i = 0; i < iters; i++) {
        if (cellar_reader_begin(s, &r, &err))
            die("reader", &err);
        cellar_reader_end(r);
    }
    return (now_s() - t0) / (double)iters * 1e9;
}

/* A fully cached run of 1,000 nodes: look up each key, then record the run
 * (1,000 touches and one run record) in one commit.  Returns us per node. */
static double bench_cached_run(cellar_store *s, const uint32_t *order, size_t runs,
                               double *commit_us)
{
    cellar_batch *b = cellar_batch_new();
    cellar_error err;
    double commit_total = 0, t0 = now_s();
    for (size_t run = 0; run < runs; run++) {
        cellar_reader *r;
        if (cellar_reader_begin(s, &r, &err))
            die("reader", &err);
        for (size_t i = 0; i < 1000; i++) {
            cellar_hash k = key_of(order[run * 1000 + i]);
            cellar_key_record rec;
            if (cellar_reader_get_key(r, &k, &rec, &err) != CELLAR_OK)
                die("cached run lookup", &err);
            cellar_batch_touch_key(b, &k, (uint64_t)run, &err);
        }
        cellar_reader_end(r);
        cellar_batch_add_run(b, "{\"nodes\":[]}", NULL, &err);
        double c0 = now_s();
        if (cellar_store_commit(s, b, &err))
            die("commit", &err);
        commit_total += now_s() - c0;
    }
    double dt = now_s() - t0;
    cellar_batch_free(b);
    *commit_us = commit_total / (double)runs * 1e6;
    return dt / (double)runs / 1000.0 * 1e6;
}

/* ---- raw LMDB commit cost under each sync policy ---- */

static double commit_cost_us(const char *parent, unsigned flags, int commits)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/lmdb-sync-XXXXXX", parent);
    if (!mkdtemp(dir))
        die("mkdtemp", NULL);
    MDB_env *env;
    MDB_dbi dbi;
    MDB_txn *txn;
    if (mdb_env_create(&env) || mdb_env_set_mapsize(env, 64 << 20) ||
        mdb_env_open(env, dir, flags | MDB_NOTLS, 0600))
        die("raw lmdb open", NULL);
    mdb_txn_begin(env, NULL, 0, &txn);
    mdb_dbi_open(txn, NULL, 0, &dbi);
    mdb_txn_commit(txn);
    double t0 = now_s();
    for (int i = 0; i < commits; i++) {
        uint64_t k = (uint64_t)i;
        char v[200] = {0};
        MDB_val key = {sizeof k, &k}, val = {sizeof v, v};
        if (mdb_txn_begin(env, NULL, 0, &txn) || mdb_put(txn, dbi, &key, &val, 0) ||
            mdb_txn_commit(txn))
            die("raw lmdb commit", NULL);
    }
    double us = (now_s() - t0) / commits * 1e6;
    mdb_env_close(env);
    char path[600];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/lock.mdb", dir);
    unlink(path);
    rmdir(dir);
    return us;
}

static void remove_store(const char *dir)
{
    char path[600];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/lock.mdb", dir);
    unlink(path);
    rmdir(dir);
}

int main(int argc, char **argv)
{
    size_t n = 1000000;
    const char *parent = "/tmp";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--keys") && i + 1 < argc)
            n = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            parent = argv[++i];
        else {
            fprintf(stderr, "usage: bench_store_lookup [--keys N] [--dir PARENT]\n");
            return 2;
        }
    }
    if (n < 1000)
        n = 1000;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/cellar-bench-XXXXXX", parent);
    if (!mkdtemp(dir))
        die("mkdtemp", NULL);

    cellar_store *s;
    cellar_error err;
    if (cellar_store_open(dir, NULL, &s, &err))
        die("open", &err);
    ref_table ref = {calloc(1, sizeof(ref_entry) << 21), ((size_t)1 << 21) - 1};
    while (ref.mask + 1 < 2 * n) {
        free(ref.slots);
        ref.mask = 2 * ref.mask + 1;
        ref.slots = calloc(ref.mask + 1, sizeof(ref_entry));
    }
    char(*names)[24] = malloc(n * sizeof *names);
    uint32_t *order = malloc(n * sizeof *order);
    if (!ref.slots || !names || !order)
        die("out of memory", NULL);
    for (size_t i = 0; i < n; i++)
        order[i] = (uint32_t)i;
    shuffle(order, n);

    double t0 = now_s();
    fill(s, n, &ref, names);
    printf("filled %zu keys in %.2f s\n", n, now_s() - t0);

    bench_store(s, order, n, 1); /* warm the page cache and the map */
    bench_ref(&ref, order, n, 1);
    double store_rate = bench_store(s, order, n, 2);
    double ref_rate = bench_ref(&ref, order, n, 2);
    printf("get_key, %zu keys, shuffled, one reader: %.2f M lookups/s\n", n,
           store_rate / 1e6);
    printf("reference, in-memory open-addressing table: %.2f M lookups/s\n",
           ref_rate / 1e6);
    printf("ratio store/reference: %.2f (store takes %.1fx the time)\n",
           store_rate / ref_rate, ref_rate / store_rate);
    printf("reader begin+end: %.0f ns\n", bench_reader_cycle(s, 200000));

    double commit_us;
    size_t runs = n / 1000 < 50 ? n / 1000 : 50;
    double per_node = bench_cached_run(s, order, runs, &commit_us);
    printf(
        "fully cached 1,000-node run: %.2f us per node (commit of 1,000 touches + run: "
        "%.0f us)\n",
        per_node, commit_us);

    printf("small LMDB commit on %s: full sync %.0f us, MDB_NOMETASYNC %.0f us, "
           "MDB_NOSYNC (cellar) %.1f us\n",
           parent, commit_cost_us(parent, 0, 100),
           commit_cost_us(parent, MDB_NOMETASYNC, 100),
           commit_cost_us(parent, MDB_NOSYNC, 2000));

    cellar_store_close(s);
    remove_store(dir);
    free(ref.slots);
    free(names);
    free(order);
    return 0;
}
