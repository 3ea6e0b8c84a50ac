/*
 * Unit tests for the store's blob files, readers on threads, record codecs
 * and error contract, against real files: a large segment becomes a private
 * file named by its data version and maps copy-on-write; a deleted, damaged
 * or truncated blob is a miss; replace heals it; a writer killed mid-commit
 * leaves orphans that the next commit sweeps; several reader threads read
 * while another thread commits; records round-trip and refuse unknown
 * versions and truncation; staging writes a blob in the pass that hashes
 * it, and exactly the bytes hashed; every status-returning call gives the same
 * status with err = NULL as with an error, and fills the error.
 */
#include "store_testlib.h"

#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <time.h>

#include "store_internal.h"

#define SMALL_BLOB 4096

static void blob_file(const fixture *f, const cellar_hash *dv, size_t i, char *out,
                      size_t len)
{
    char hex[33];
    cellar_hash_to_hex(dv, hex);
    snprintf(out, len, "%s/blobs/%.2s/%s-%zu", f->dir, hex, hex, i);
}

static size_t count_files(const char *dir)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)))
        n += de->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

typedef struct problems {
    size_t n, by_kind[5];
    char last[512];
} problems;

static void on_problem(void *ctx, cellar_problem kind, const char *where,
                       const char *message)
{
    problems *p = ctx;
    p->n++;
    p->by_kind[kind]++;
    if (getenv("STORE_TEST_DEBUG"))
        fprintf(stderr, "problem: %s %s: %s\n", cellar_problem_name(kind), where,
                message);
    snprintf(p->last, sizeof p->last, "%s %s: %s", cellar_problem_name(kind), where,
             message);
}

static problems verify(cellar_store *s, bool repair)
{
    problems p = {0};
    cellar_error err;
    cellar_verify_counts counts;
    if (cellar_store_verify(s, repair, on_problem, &p, &counts, &err))
        fail_msg("verify: %s", err.message);
    assert_int_equal(counts.problems, p.n);
    return p;
}

static void test_large_segment_is_a_blob_file(void **state)
{
    fixture *f = *state;
    cellar_store *s = open_with(f->dir, SMALL_BLOB, false);
    cellar_batch *b = cellar_batch_new();
    uint8_t *big = malloc(100000);
    assert_non_null(big);
    fill_pattern(big, 100000, 1);
    cellar_segment segs[3] = {{"stream", 6}, {big, 100000}, {"tail", 4}};
    cellar_hash dv = put_value(b, "big", segs, 3);
    commit_ok(s, b);

    char path[512], dir[256];
    struct stat st;
    blob_file(f, &dv, 1, path, sizeof path);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 100000);
    assert_int_equal(st.st_mode & 0777, 0600);
    blob_file(f, &dv, 0, path, sizeof path);
    assert_int_not_equal(stat(path, &st), 0); /* small segments stay inline */
    snprintf(dir, sizeof dir, "%s/blobs/tmp", f->dir);
    assert_int_equal(count_files(dir), 0);
    snprintf(dir, sizeof dir, "%s/blobs/dirty", f->dir);
    assert_int_equal(count_files(dir), 0);

    cellar_reader *r;
    cellar_error err;
    loaded l = {0};
    assert_int_equal(cellar_reader_begin(s, &r, &err), CELLAR_OK);
    assert_int_equal(cellar_reader_load_result(r, &dv, alloc_seg, &l, &err), CELLAR_OK);
    assert_int_equal(l.n, 3);
    assert_null(l.maps[1]);
    assert_memory_equal(l.bufs[1], big, 100000);
    assert_memory_equal(l.bufs[2], "tail", 4);
    loaded_free(&l);

    /* Mapped: the blob is handed over, writable, and writes stay private. */
    assert_int_equal(
        cellar_reader_map_result(r, &dv, true, alloc_seg, adopt_seg, &l, &err),
        CELLAR_OK);
    assert_non_null(l.maps[1]);
    assert_null(l.maps[0]);
    assert_memory_equal(l.bufs[1], big, 100000);
    l.bufs[1][7] ^= 0xff;
    loaded_free(&l);
    assert_int_equal(cellar_reader_load_result(r, &dv, alloc_seg, &l, &err), CELLAR_OK);
    assert_memory_equal(l.bufs[1], big, 100000);
    loaded_free(&l);

    cellar_store_stats stats;
    assert_int_equal(cellar_reader_stats(r, &stats, &err), CELLAR_OK);
    assert_int_equal(stats.blobs, 1);
    assert_true(stats.result_bytes >= 100000);
    cellar_reader_end(r);

    problems p = verify(s, false);
    assert_int_equal(p.n, 0);
    cellar_batch_free(b);
    cellar_store_close(s);
    free(big);
}

static void test_blob_deleted_damaged_truncated(void **state)
{
    fixture *f = *state;
    cellar_store *s = open_with(f->dir, SMALL_BLOB, false);
    cellar_batch *b = cellar_batch_new();
    uint8_t big[3][20000];
    cellar_hash dv[3];
    for (int i = 0; i < 3; i++) {
        fill_pattern(big[i], sizeof big[i], 10 + (uint32_t)i);
        cellar_segment segs[2] = {{"s", 1}, {big[i], sizeof big[i]}};
        char node[8];
        snprintf(node, sizeof node, "n%d", i);
        dv[i] = put_value(b, node, segs, 2);
    }
    commit_ok(s, b);
    char path[3][512];
    for (int i = 0; i < 3; i++)
        blob_file(f, &dv[i], 1, path[i], sizeof path[i]);
    assert_int_equal(unlink(path[0]), 0);
    int fd = open(path[1], O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "X", 1, 12345), 1);
    close(fd);
    assert_int_equal(truncate(path[2], 100), 0);

    cellar_reader *r;
    cellar_error err;
    loaded l = {0};
    char hex[33];
    assert_int_equal(cellar_reader_begin(s, &r, &err), CELLAR_OK);
    assert_int_equal(
        cellar_reader_map_result(r, &dv[0], true, alloc_seg, adopt_seg, &l, &err),
        CELLAR_ENOTFOUND);
    assert_int_equal(err.code, CELLAR_ENOTFOUND);
    assert_non_null(strstr(err.message, path[0]));
    loaded_free(&l);
    assert_int_equal(
        cellar_reader_map_result(r, &dv[1], true, alloc_seg, adopt_seg, &l, &err),
        CELLAR_ECORRUPT);
    cellar_hash_to_hex(&dv[1], hex);
    assert_non_null(strstr(err.message, hex));
    loaded_free(&l);
    /* Unverified, the damage goes unseen: that is what the opt-out costs. */
    assert_int_equal(
        cellar_reader_map_result(r, &dv[1], false, alloc_seg, adopt_seg, &l, &err),
        CELLAR_OK);
    loaded_free(&l);
    assert_int_equal(
        cellar_reader_map_result(r, &dv[2], false, alloc_seg, adopt_seg, &l, &err),
        CELLAR_ECORRUPT);
    assert_non_null(strstr(err.message, "100 bytes"));
    loaded_free(&l);
    cellar_reader_end(r);

    problems p = verify(s, false);
    assert_int_equal(p.by_kind[CELLAR_PROBLEM_BLOB], 2);
    assert_int_equal(p.by_kind[CELLAR_PROBLEM_RESULT], 1);

    /* A plain put keeps what is stored (content addressing); replace heals. */
    for (int i = 0; i < 3; i++) {
        cellar_segment segs[2] = {{"s", 1}, {big[i], sizeof big[i]}};
        assert_int_equal(cellar_batch_replace_result(b, &dv[i], segs, 2, &dv[i], &err),
                         CELLAR_OK);
    }
    commit_ok(s, b);
    assert_int_equal(cellar_reader_begin(s, &r, &err), CELLAR_OK);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(
            cellar_reader_map_result(r, &dv[i], true, alloc_seg, adopt_seg, &l, &err),
            CELLAR_OK);
        assert_memory_equal(l.bufs[1], big[i], sizeof big[i]);
        loaded_free(&l);
    }
    cellar_reader_end(r);
    assert_int_equal(verify(s, false).n, 0);
    cellar_batch_free(b);
    cellar_store_close(s);
}

static void test_verify_repairs(void **state)
{
    fixture *f = *state;
    cellar_store *s = open_with(f->dir, SMALL_BLOB, false);
    cellar_batch *b = cellar_batch_new();
    uint8_t big[2][30000];
    cellar_hash dv[2];
    for (int i = 0; i < 2; i++) {
        fill_pattern(big[i], sizeof big[i], 40 + (uint32_t)i);
        cellar_segment segs[2] = {{"s", 1}, {big[i], sizeof big[i]}};
        char node[8];
        snprintf(node, sizeof node, "v%d", i);
        dv[i] = put_value(b, node, segs, 2);
    }
    commit_ok(s, b);
    char path[512], orphan[600];
    blob_file(f, &dv[0], 1, path, sizeof path);
    unlink(path);
    snprintf(orphan, sizeof orphan, "%s/blobs/tmp/leftover.123.456", f->dir);
    int fd = open(orphan, O_WRONLY | O_CREAT, 0600);
    assert_true(fd >= 0);
    close(fd);

    problems p = verify(s, false);
    assert_int_equal(p.by_kind[CELLAR_PROBLEM_BLOB], 1);
    assert_int_equal(p.by_kind[CELLAR_PROBLEM_ORPHAN], 1);
    p = verify(s, true);
    assert_int_equal(p.n, 2);
    assert_int_not_equal(access(orphan, F_OK), 0);
    p = verify(s, false);
    assert_int_equal(p.n, 0);

    cellar_reader *r;
    assert_int_equal(cellar_reader_begin(s, &r, NULL), CELLAR_OK);
    assert_false(cellar_reader_has_result(r, &dv[0]));
    assert_true(cellar_reader_has_result(r, &dv[1]));
    cellar_reader_end(r);
    cellar_batch_free(b);
    cellar_store_close(s);
}

/* A writer killed at a random point of its commit: no partial commit is
 * visible, and the next commit leaves no orphan. */
static void test_killed_writer_orphans_are_swept(void **state)
{
    fixture *f = *state;
    const size_t size = (size_t)16 << 20;
    uint8_t *buf = malloc(4 * size); /* a batch's segments must not change */
    assert_non_null(buf);
    cellar_store_close(open_with(f->dir, SMALL_BLOB, false));
    size_t orphans = 0;
    for (int round = 0; round < 6; round++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            cellar_store *s = open_with(f->dir, SMALL_BLOB, false);
            cellar_batch *b = cellar_batch_new();
            for (uint32_t n = 0;; n++) {
                for (int i = 0; i < 4; i++) {
                    uint8_t *p = buf + (size_t)i * size;
                    fill_pattern(p, 64, n * 4 + (uint32_t)i + 1000u * (uint32_t)round);
                    cellar_segment segs[2] = {{"s", 1}, {p, size}};
                    char node[32];
                    snprintf(node, sizeof node, "r%d_%u_%d", round, n, i);
                    put_value(b, node, segs, 2);
                }
                if (cellar_store_commit(s, b, NULL))
                    _exit(3);
            }
        }
        /* Wait for the writer to be mid-commit (its sweep marker exists),
         * then let it go on for a few more milliseconds, different each
         * round: between writes, between rename and commit, or after. */
        char dirty[256];
        snprintf(dirty, sizeof dirty, "%s/blobs/dirty", f->dir);
        struct timespec tick = {0, 200000L};
        for (int t = 0; t < 25000 && count_files(dirty) == 0; t++)
            nanosleep(&tick, NULL);
        struct timespec ts = {0, (long)(3 * round) * 1000000L};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        assert_true(WIFSIGNALED(status));

        cellar_store *s = open_with(f->dir, SMALL_BLOB, false);
        problems p = verify(s, false);
        if (p.n > p.by_kind[CELLAR_PROBLEM_ORPHAN])
            fail_msg("round %d: after a kill: %zu problems (%zu %zu %zu %zu %zu): %s",
                     round, p.n, p.by_kind[0], p.by_kind[1], p.by_kind[2], p.by_kind[3],
                     p.by_kind[4], p.last);
        orphans += p.by_kind[CELLAR_PROBLEM_ORPHAN];
        /* Every key's result loads: commits are all or nothing. */
        cellar_batch *b = cellar_batch_new();
        cellar_batch_add_run(b, "{}", NULL, NULL);
        commit_ok(s, b);
        p = verify(s, false);
        if (p.n)
            fail_msg("round %d: after the next commit: %s", round, p.last);
        cellar_batch_free(b);
        cellar_store_close(s);
    }
    print_message("6 writers killed mid-run left %zu orphan files, all swept\n", orphans);
    assert_true(orphans > 0); /* or the kills never hit a commit */
    free(buf);
}

/* ---- readers on threads ---- */

#define THREADS 4
#define WRITES 40

typedef struct shared {
    cellar_store *s;
    volatile int done;
    int bad[THREADS];
    uint64_t loads[THREADS];
} shared;

typedef struct reader_arg {
    shared *sh;
    int id;
    cellar_reader *r;
} reader_arg;

static int check_key(void *ctx, const cellar_hash *key, const cellar_key_record *rec)
{
    reader_arg *a = ctx;
    loaded l = {0};
    cellar_error err;
    (void)key;
    cellar_status st = cellar_reader_map_result(a->r, &rec->data_version, true, alloc_seg,
                                                adopt_seg, &l, &err);
    if (st != CELLAR_OK || l.n != 2 || l.lens[1] != rec->size) {
        fprintf(stderr, "reader %d: %s: %s\n", a->id, cellar_status_name(st),
                err.message);
        a->sh->bad[a->id]++;
    }
    a->sh->loads[a->id]++;
    loaded_free(&l);
    return 0;
}

static void *reader_thread(void *arg)
{
    reader_arg *a = arg;
    while (!a->sh->done) {
        cellar_error err;
        if (cellar_reader_begin(a->sh->s, &a->r, &err)) {
            fprintf(stderr, "reader %d: %s\n", a->id, err.message);
            a->sh->bad[a->id]++;
            return NULL;
        }
        if (cellar_reader_each_key(a->r, check_key, a, &err))
            a->sh->bad[a->id]++;
        cellar_reader_end(a->r);
    }
    return NULL;
}

static void test_readers_on_threads(void **state)
{
    fixture *f = *state;
    shared sh = {.s = open_with(f->dir, SMALL_BLOB, false)};
    pthread_t t[THREADS];
    reader_arg args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (reader_arg){&sh, i, NULL};
        assert_int_equal(pthread_create(&t[i], NULL, reader_thread, &args[i]), 0);
    }
    cellar_batch *b = cellar_batch_new();
    uint8_t *buf = malloc(50000);
    assert_non_null(buf);
    for (int w = 0; w < WRITES; w++) {
        size_t n = (size_t)(w % 5) * 12000 + 1; /* inline and blob segments */
        fill_pattern(buf, n, (uint32_t)w);
        cellar_segment segs[2] = {{"x", 1}, {buf, n}};
        char node[16];
        snprintf(node, sizeof node, "t%d", w);
        cellar_hash dv = dv_of(segs, 2), key = hash_of(node);
        cellar_key_record rec = record(node, &dv, 1);
        rec.size = n;
        assert_int_equal(cellar_batch_put_result(b, &dv, segs, 2, &dv, NULL), CELLAR_OK);
        assert_int_equal(cellar_batch_put_key(b, &key, &rec, NULL), CELLAR_OK);
        commit_ok(sh.s, b);
    }
    sh.done = 1;
    uint64_t loads = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(sh.bad[i], 0);
        loads += sh.loads[i];
    }
    print_message("%d reader threads made %llu verified loads during %d commits\n",
                  THREADS, (unsigned long long)loads, WRITES);
    assert_true(loads > 0);
    free(buf);
    cellar_batch_free(b);
    cellar_store_close(sh.s);
}

/* ---- record codecs ---- */

static void test_key_record_codec(void **state)
{
    (void)state;
    cellar_hash dv = hash_of("dv");
    cellar_key_record rec = record("node_name", &dv, 77), out;
    uint8_t buf[256];
    size_t n = record_key_size(&rec);
    record_key_encode(&rec, buf);
    assert_true(record_key_decode(buf, n, &out));
    assert_memory_equal(out.data_version.bytes, dv.bytes, 16);
    assert_int_equal(out.created_ns, 77);
    assert_int_equal(out.last_used_ns, 78);
    assert_int_equal(out.node_len, 9);
    assert_memory_equal(out.node, "node_name", 9);
    for (size_t cut = 0; cut < 65; cut++)
        assert_false(record_key_decode(buf, cut, &out));
    buf[0] = 2; /* a version this code does not know */
    assert_false(record_key_decode(buf, n, &out));
}

static void test_result_header_codec(void **state)
{
    (void)state;
    cellar_segment segs[3] = {{"abc", 3}, {NULL, 1u << 30}, {"de", 2}};
    bool blob[3] = {false, true, false};
    cellar_hash sum = hash_of("sum");
    size_t head = record_result_header_size(3);
    uint8_t buf[128];
    record_result_encode(buf, 3, segs, blob, &sum);
    memcpy(buf + head, "abcde", 5);
    result_layout L;
    seg_info info[3];
    assert_true(record_result_parse(buf, head + 5, &L));
    assert_int_equal(L.nsegs, 3);
    assert_memory_equal(L.checksum, sum.bytes, 16);
    record_result_segs(&L, info);
    assert_false(info[0].blob);
    assert_memory_equal(info[0].data, "abc", 3);
    assert_true(info[1].blob);
    assert_int_equal(info[1].len, 1u << 30);
    assert_memory_equal(info[2].data, "de", 2);
    for (size_t cut = 0; cut < head + 5; cut++)
        assert_false(record_result_parse(buf, cut, &L));
    assert_false(record_result_parse(buf, head + 6, &L));
    buf[4] = 3;
    assert_false(record_result_parse(buf, head + 5, &L));
    buf[4] = 2;
    buf[32 + 8] = 4; /* an unknown segment flag */
    assert_false(record_result_parse(buf, head + 5, &L));

    /* Version 1 (before blobs): u64 lengths only, every segment inline. */
    uint8_t v1[64] = {'C', 'L', 'R', 'S', 1};
    put_u32le(v1 + 8, 2);
    memcpy(v1 + 16, sum.bytes, 16);
    put_u64le(v1 + 32, 2);
    put_u64le(v1 + 40, 3);
    memcpy(v1 + 48, "xyzzy", 5);
    assert_true(record_result_parse(v1, 53, &L));
    record_result_segs(&L, info);
    assert_false(info[1].blob);
    assert_memory_equal(info[1].data, "zzy", 3);
}

/* ---- the error contract ---- */

/* Calls `call` with err = NULL and with an error; same status, and the error
 * holds it with a message whenever it is not OK. */
#define SAME_STATUS(expected, call_with)                                                 \
    do {                                                                                 \
        cellar_error e_;                                                                 \
        memset(&e_, 0x55, sizeof e_);                                                    \
        cellar_error *err_ = NULL;                                                       \
        cellar_status a_ = (call_with);                                                  \
        err_ = &e_;                                                                      \
        cellar_status b_ = (call_with);                                                  \
        assert_int_equal(a_, expected);                                                  \
        assert_int_equal(b_, expected);                                                  \
        if (b_ != CELLAR_OK) {                                                           \
            assert_int_equal(e_.code, b_);                                               \
            assert_true(e_.message[0] != '\0' &&                                         \
                        strlen(e_.message) < sizeof e_.message);                         \
        }                                                                                \
    } while (0)

static void test_error_contract(void **state)
{
    fixture *f = *state;
    cellar_store *s = NULL;
    cellar_store_options ro = {.read_only = true};
    SAME_STATUS(CELLAR_ENOTFOUND, cellar_store_open(f->dir, &ro, &s, err_));
    SAME_STATUS(CELLAR_EINVAL, cellar_store_open(NULL, NULL, &s, err_));
    s = open_with(f->dir, SMALL_BLOB, false);
    cellar_batch *b = cellar_batch_new();
    cellar_segment seg = {"v", 1};
    cellar_hash dv = dv_of(&seg, 1), other = hash_of("other");
    cellar_key_record rec = record("n", &dv, 1);
    SAME_STATUS(CELLAR_EINVAL, cellar_batch_put_result(b, &dv, &seg, 0, NULL, err_));
    SAME_STATUS(CELLAR_EINVAL, cellar_batch_put_result(b, &dv, &seg, 1, &other, err_));
    SAME_STATUS(CELLAR_EINVAL, cellar_batch_put_key(b, NULL, &rec, err_));
    SAME_STATUS(CELLAR_EINVAL, cellar_batch_put_node(b, "", "{}", err_));
    SAME_STATUS(CELLAR_EINVAL, cellar_batch_add_run(b, NULL, NULL, err_));
    SAME_STATUS(CELLAR_EINVAL, cellar_batch_touch_key(b, NULL, 1, err_));
    SAME_STATUS(CELLAR_EINVAL, cellar_store_commit(s, NULL, err_));
    /* A checksum the store computes must be the data version. */
    assert_int_equal(cellar_batch_put_result(b, &other, &seg, 1, NULL, NULL), CELLAR_OK);
    assert_int_equal(cellar_store_commit(s, b, NULL), CELLAR_EINVAL);
    cellar_batch_free(b);
    b = cellar_batch_new();
    SAME_STATUS(CELLAR_OK, cellar_batch_put_result(b, &dv, &seg, 1, NULL, err_));
    commit_ok(s, b);
    cellar_batch_free(b);

    cellar_reader *r;
    SAME_STATUS(CELLAR_EINVAL, cellar_reader_begin(NULL, &r, err_));
    assert_int_equal(cellar_reader_begin(s, &r, NULL), CELLAR_OK);
    cellar_key_record got;
    const char *json;
    size_t len;
    loaded l = {0};
    cellar_store_stats st;
    SAME_STATUS(CELLAR_ENOTFOUND, cellar_reader_get_key(r, &other, &got, err_));
    SAME_STATUS(CELLAR_ENOTFOUND, cellar_reader_get_node(r, "absent", &json, &len, err_));
    SAME_STATUS(CELLAR_ENOTFOUND,
                cellar_reader_load_result(r, &other, alloc_seg, &l, err_));
    SAME_STATUS(CELLAR_ENOTFOUND, cellar_reader_map_result(r, &other, false, alloc_seg,
                                                           adopt_seg, &l, err_));
    SAME_STATUS(CELLAR_EINVAL, cellar_reader_load_result(r, &dv, NULL, NULL, err_));
    SAME_STATUS(CELLAR_EINVAL, cellar_reader_each_key(r, NULL, NULL, err_));
    SAME_STATUS(CELLAR_EINVAL, cellar_reader_each_run(r, NULL, NULL, err_));
    SAME_STATUS(CELLAR_EINVAL, cellar_reader_stats(r, NULL, err_));
    SAME_STATUS(CELLAR_OK, cellar_reader_stats(r, &st, err_));
    assert_int_equal(cellar_reader_load_result(r, &dv, alloc_seg, &l, NULL), CELLAR_OK);
    loaded_free(&l);
    cellar_reader_end(r);
    cellar_store_close(s);

    s = open_with(f->dir, SMALL_BLOB, true);
    b = cellar_batch_new();
    cellar_batch_add_run(b, "{}", NULL, NULL);
    SAME_STATUS(CELLAR_EREADONLY, cellar_store_commit(s, b, err_));
    SAME_STATUS(CELLAR_EREADONLY, cellar_store_verify(s, true, NULL, NULL, NULL, err_));
    cellar_batch_free(b);
    cellar_store_close(s);
}

/* Staging hashes and writes in one pass: the data version is the same as
 * hashing alone, the commit names the staged file instead of writing, and
 * the blob holds the bytes that were hashed even when the caller's memory
 * changed after staging.  A stage never committed leaves no file. */
static void test_staged_blob(void **state)
{
    fixture *f = *state;
    cellar_store *s = open_with(f->dir, SMALL_BLOB, false);
    size_t n = (3 << 20) + 123; /* several 1 MiB chunks and a short one */
    uint8_t *big = malloc(n), *orig = malloc(n);
    assert_non_null(big);
    assert_non_null(orig);
    fill_pattern(big, n, 7);
    memcpy(orig, big, n);
    cellar_segment segs[3] = {{"stream", 6}, {big, n}, {"tail", 4}};
    cellar_hash want = dv_of(segs, 3), dv;
    cellar_stage *stage;
    cellar_error err;
    assert_int_equal(cellar_store_stage(s, segs, 3, &dv, &stage, &err), CELLAR_OK);
    assert_true(cellar_hash_equal(&dv, &want));
    assert_int_equal(cellar_stage_files(stage), 1);
    char dir[256], path[512];
    snprintf(dir, sizeof dir, "%s/blobs/tmp", f->dir);
    assert_int_equal(count_files(dir), 0); /* unnamed until a commit */

    big[5] ^= 0xff; /* changed after hashing: the staged bytes are stored */
    cellar_batch *b = cellar_batch_new();
    assert_int_equal(cellar_batch_put_result(b, &dv, segs, 3, &dv, NULL), CELLAR_OK);
    commit_ok(s, b);
    blob_file(f, &dv, 1, path, sizeof path);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, (off_t)n);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(count_files(dir), 0);
    cellar_stage_free(stage);

    cellar_reader *r;
    loaded l = {0};
    assert_int_equal(cellar_reader_begin(s, &r, &err), CELLAR_OK);
    assert_int_equal(cellar_reader_load_result(r, &dv, alloc_seg, &l, &err), CELLAR_OK);
    assert_memory_equal(l.bufs[1], orig, n);
    loaded_free(&l);
    cellar_reader_end(r);
    assert_int_equal(verify(s, false).n, 0);

    /* Staged, never committed: nothing stays on disk. */
    fill_pattern(big, n, 8);
    cellar_hash dv2;
    assert_int_equal(cellar_store_stage(s, segs, 3, &dv2, &stage, NULL), CELLAR_OK);
    assert_int_equal(cellar_stage_files(stage), 1);
    cellar_stage_free(stage);
    uint64_t files, bytes;
    blob_totals(s, &files, &bytes);
    assert_int_equal(files, 1);
    assert_int_equal(verify(s, false).n, 0);

    /* Small segments only, or no store: hashed, nothing staged. */
    cellar_segment small = {"v", 1};
    cellar_hash want_small = dv_of(&small, 1);
    assert_int_equal(cellar_store_stage(s, &small, 1, &dv2, &stage, NULL), CELLAR_OK);
    assert_null(stage);
    assert_true(cellar_hash_equal(&dv2, &want_small));
    assert_int_equal(cellar_store_stage(NULL, segs, 3, &dv2, &stage, NULL), CELLAR_OK);
    assert_null(stage);
    cellar_hash want2 = dv_of(segs, 3);
    assert_true(cellar_hash_equal(&dv2, &want2));
    SAME_STATUS(CELLAR_EINVAL, cellar_store_stage(s, segs, 0, &dv2, &stage, err_));

    /* A stage still held when its store closes: close releases its files,
     * free only the handle. */
    assert_int_equal(cellar_store_stage(s, segs, 3, &dv2, &stage, NULL), CELLAR_OK);
    assert_int_equal(cellar_stage_files(stage), 1);
    cellar_batch_free(b);
    cellar_store_close(s);
    cellar_stage_free(stage);

    /* Read-only: nothing is staged. */
    s = open_with(f->dir, SMALL_BLOB, true);
    assert_int_equal(cellar_store_stage(s, segs, 3, &dv2, &stage, NULL), CELLAR_OK);
    assert_null(stage);
    cellar_store_close(s);
    free(big);
    free(orig);
}

/* Several threads stage and commit at once: they share the store's writer
 * one stage at a time, and every blob holds its own value. */
typedef struct stager {
    cellar_store *s;
    uint32_t seed;
    cellar_hash dv;
    size_t staged;
} stager;

static void *stage_and_commit(void *arg)
{
    stager *t = arg;
    size_t n = (2 << 20) + 17;
    uint8_t *buf = malloc(n);
    fill_pattern(buf, n, t->seed);
    cellar_segment segs[2] = {{"s", 1}, {buf, n}};
    cellar_stage *stage = NULL;
    cellar_batch *b = cellar_batch_new();
    cellar_error err;
    if (cellar_store_stage(t->s, segs, 2, &t->dv, &stage, &err) ||
        cellar_batch_put_result(b, &t->dv, segs, 2, &t->dv, &err) ||
        cellar_store_commit(t->s, b, &err))
        t->staged = 99;
    else
        t->staged = cellar_stage_files(stage);
    cellar_stage_free(stage);
    cellar_batch_free(b);
    free(buf);
    return NULL;
}

static void test_staging_on_threads_and_past_a_size_limit(void **state)
{
    fixture *f = *state;
    cellar_store *s = open_with(f->dir, SMALL_BLOB, false);
    enum { N = 4 };
    pthread_t th[N];
    stager t[N];
    for (int i = 0; i < N; i++) {
        t[i] = (stager){.s = s, .seed = 100 + (uint32_t)i};
        assert_int_equal(pthread_create(&th[i], NULL, stage_and_commit, &t[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(t[i].staged, 1);
    }
    assert_int_equal(verify(s, false).n, 0);
    cellar_store_close(s);

    /* A file size limit under the blob's size: the staged write fails (its
     * SIGXFSZ, whose default kills, goes to the writer thread, which blocks
     * signals), the data
     * version is still right, nothing is staged, and the commit says EFULL. */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        cellar_store *c = open_with(f->dir, SMALL_BLOB, false);
        struct rlimit lim = {1 << 20, 1 << 20};
        size_t n = 3 << 20;
        uint8_t *buf = malloc(n);
        fill_pattern(buf, n, 5);
        cellar_segment segs[2] = {{"s", 1}, {buf, n}};
        cellar_hash dv, want = dv_of(segs, 2);
        cellar_stage *stage = NULL;
        setrlimit(RLIMIT_FSIZE, &lim);
        int bad = cellar_store_stage(c, segs, 2, &dv, &stage, NULL) != CELLAR_OK ||
                  !cellar_hash_equal(&dv, &want) || stage != NULL;
        signal(SIGXFSZ, SIG_IGN); /* as Python does, for the commit's own write */
        cellar_batch *b = cellar_batch_new();
        cellar_batch_put_result(b, &dv, segs, 2, &dv, NULL);
        bad |= (cellar_store_commit(c, b, NULL) != CELLAR_EFULL) << 1;
        _exit(bad);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    s = open_with(f->dir, SMALL_BLOB, false);
    problems p = verify(s, false);
    assert_int_equal(p.n, p.by_kind[CELLAR_PROBLEM_ORPHAN]); /* at most a stray file */
    cellar_store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_large_segment_is_a_blob_file, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_blob_deleted_damaged_truncated, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_verify_repairs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_killed_writer_orphans_are_swept, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_readers_on_threads, setup, teardown),
        cmocka_unit_test(test_key_record_codec),
        cmocka_unit_test(test_result_header_codec),
        cmocka_unit_test_setup_teardown(test_error_contract, setup, teardown),
        cmocka_unit_test_setup_teardown(test_staged_blob, setup, teardown),
        cmocka_unit_test_setup_teardown(test_staging_on_threads_and_past_a_size_limit,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
