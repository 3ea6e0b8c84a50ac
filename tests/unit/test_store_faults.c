/*
 * Unit tests for the store under faults, against real files and processes:
 * a flipped meta page and a truncated data.mdb are set aside at open with a
 * notice naming the new path, and a fresh store works; pages overwritten
 * with random bytes (many seeds) never crash a process that opens the store
 * and reads everything, and never give a wrong value; verify reports them
 * from its child process and repair leaves a clean store; an address-space
 * limit makes the map unable to grow (EFULL, the store stays usable); a file
 * size limit is a full disk (EFULL, never a signal); lock.mdb deleted under
 * an open store stops that process from using it.
 *
 * Knobs for chasing a failure: STORE_FAULT_SEEDS=N tries N seeds (60 by
 * default), STORE_FAULT_SEED=S only seed S (with STORE_FAULT_NOFORK=1 in this
 * process, for a debugger), STORE_FAULT_PRINT=S prints what verify finds.
 */
#include "store_testlib.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <sys/resource.h>

#include "store_internal.h"

#define SMALL_BLOB 4096
#define NVALUES 60

/* A store with NVALUES results of assorted sizes (inline, overflow pages,
 * blobs), keys, nodes and runs: enough for branch pages in each database. */
static void build_store(const char *dir, cellar_hash *dvs)
{
    cellar_store *s = open_with(dir, SMALL_BLOB, false);
    cellar_batch *b = cellar_batch_new();
    static uint8_t buf[NVALUES][9000];
    for (int i = 0; i < NVALUES; i++) {
        size_t n = (size_t)(i % 6) * 1500 + 10;
        fill_pattern(buf[i], n, (uint32_t)i);
        cellar_segment segs[2] = {{"stream", 6}, {buf[i], n}};
        char node[32];
        snprintf(node, sizeof node, "node_with_a_longish_name_%d", i);
        cellar_hash dv = put_value(b, node, segs, 2);
        if (dvs)
            dvs[i] = dv;
        cellar_batch_put_node(b, node, "{\"some\":\"json describing the node\"}", NULL);
        cellar_batch_add_run(b, "{\"nodes\":[\"a run record\"]}", NULL, NULL);
        if (i % 10 == 9)
            commit_ok(s, b);
    }
    cellar_batch_free(b);
    cellar_store_close(s);
}

static void data_path(const fixture *f, char *out, size_t len)
{
    snprintf(out, len, "%s/data.mdb", f->dir);
}

static bool has_damaged_copy(const fixture *f)
{
    DIR *d = opendir(f->dir);
    struct dirent *de;
    bool found = false;
    while (d && (de = readdir(d)))
        found |= strncmp(de->d_name, "data.mdb.damaged-", 17) == 0;
    if (d)
        closedir(d);
    return found;
}

/* Opens, expects the store set aside with `why` in the notice, and checks
 * that the fresh store works. */
static void expect_set_aside(const fixture *f, const char *why)
{
    cellar_store *s = open_with(f->dir, SMALL_BLOB, false);
    const char *notice = cellar_store_notice(s);
    if (!notice || !strstr(notice, "moved to") || !strstr(notice, why))
        fail_msg("notice: %s", notice ? notice : "(none)");
    assert_true(has_damaged_copy(f));
    cellar_batch *b = cellar_batch_new();
    cellar_segment seg = {"fresh", 5};
    cellar_hash dv = put_value(b, "fresh", &seg, 1);
    commit_ok(s, b);
    cellar_reader *r;
    assert_int_equal(cellar_reader_begin(s, &r, NULL), CELLAR_OK);
    assert_true(cellar_reader_has_result(r, &dv));
    cellar_reader_end(r);
    cellar_batch_free(b);
    cellar_store_close(s);
}

static void test_meta_pages_damaged(void **state)
{
    fixture *f = *state;
    build_store(f->dir, NULL);
    char path[256];
    data_path(f, path, sizeof path);
    /* The read-only open refuses instead of moving anything. */
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t junk[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    assert_int_equal(pwrite(fd, junk, 8, 16), 8);
    assert_int_equal(pwrite(fd, junk, 8, 4096 + 16), 8);
    close(fd);
    cellar_store *s = NULL;
    cellar_store_options ro = {.read_only = true};
    cellar_error err;
    assert_int_equal(cellar_store_open(f->dir, &ro, &s, &err), CELLAR_ECORRUPT);
    assert_false(has_damaged_copy(f));
    expect_set_aside(f, "meta page");
}

static void test_newest_meta_points_past_the_end(void **state)
{
    fixture *f = *state;
    build_store(f->dir, NULL);
    char path[256];
    data_path(f, path, sizeof path);
    int fd = open(path, O_RDWR);
    uint8_t m0[4096], m1[4096];
    assert_int_equal(pread(fd, m0, 4096, 0), 4096);
    assert_int_equal(pread(fd, m1, 4096, 4096), 4096);
    /* The meta with the larger txn id: its main root goes out of the file. */
    int cur = get_u64le(m1 + 144) > get_u64le(m0 + 144);
    off_t at = (off_t)cur * 4096 + 128 + 3;
    uint8_t x = 0x40;
    assert_int_equal(pwrite(fd, &x, 1, at), 1);
    close(fd);
    expect_set_aside(f, "past the last page");
}

static void test_truncated_data_file(void **state)
{
    fixture *f = *state;
    char path[256];
    data_path(f, path, sizeof path);
    build_store(f->dir, NULL);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(truncate(path, 3 * 4096), 0); /* the meta pages, and one */
    expect_set_aside(f, "truncated");
    build_store(f->dir, NULL);
    assert_int_equal(truncate(path, 0), 0);
    expect_set_aside(f, "truncated");
}

/* In a child: open the store and read everything as the kernel would.
 * Exit 0 when every value that loads is the value stored. */
static int read_everything(const char *dir, const cellar_hash *dvs)
{
    cellar_store *s = NULL;
    cellar_error err;
    cellar_store_options o = {SMALL_BLOB, false, 0};
    if (cellar_store_open(dir, &o, &s, &err))
        return 0; /* refused is fine: the caller computes without a store */
    cellar_reader *r;
    if (cellar_reader_begin(s, &r, &err) == CELLAR_OK) {
        cellar_store_stats st;
        cellar_reader_counts(r, &st, &err); /* what %load_ext asks */
        for (int i = 0; i < NVALUES; i++) {
            char node[32];
            snprintf(node, sizeof node, "node_with_a_longish_name_%d", i);
            cellar_hash key = hash_of(node);
            cellar_key_record rec;
            const char *json;
            size_t len;
            cellar_reader_get_node(r, node, &json, &len, &err);
            if (cellar_reader_get_key(r, &key, &rec, &err) != CELLAR_OK)
                continue;
            loaded l = {0};
            if (cellar_reader_map_result(r, &rec.data_version, true, alloc_seg, adopt_seg,
                                         &l, &err) == CELLAR_OK) {
                /* A value that loads must be the one stored under that key. */
                if (memcmp(rec.data_version.bytes, dvs[i].bytes, 16) != 0) {
                    loaded_free(&l);
                    return 7;
                }
            }
            loaded_free(&l);
        }
        cellar_reader_end(r);
    }
    cellar_batch *b = cellar_batch_new();
    cellar_segment seg = {"after", 5};
    put_value(b, "after", &seg, 1);
    cellar_store_commit(s, b, &err); /* may fail: it must not crash */
    cellar_batch_free(b);
    cellar_store_close(s);
    return 0;
}

static void print_problem(void *ctx, cellar_problem kind, const char *where,
                          const char *message)
{
    (void)ctx;
    fprintf(stderr, "  %s %s: %s\n", cellar_problem_name(kind), where, message);
}

static void keep_last(void *ctx, cellar_problem kind, const char *where,
                      const char *message)
{
    snprintf(ctx, 600, "%s %s: %s", cellar_problem_name(kind), where, message);
}

static void copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(in >= 0 && out >= 0);
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0)
        assert_int_equal(write(out, buf, (size_t)n), n);
    close(in);
    close(out);
}

static void test_random_pages(void **state)
{
    fixture *f = *state;
    cellar_hash dvs[NVALUES];
    build_store(f->dir, dvs);
    char path[256], good[300];
    data_path(f, path, sizeof path);
    snprintf(good, sizeof good, "%s/good.mdb", f->root);
    copy_file(path, good);
    struct stat st;
    assert_int_equal(stat(good, &st), 0);
    long pages = st.st_size / 4096;
    int crashes = 0, set_aside = 0, problems_seen = 0;
    const char *only = getenv("STORE_FAULT_SEED"); /* to debug one seed */
    /* 60 in the suite; STORE_FAULT_SEEDS=N tries more. */
    uint32_t seeds =
        getenv("STORE_FAULT_SEEDS") ? (uint32_t)atoi(getenv("STORE_FAULT_SEEDS")) : 60;
    for (uint32_t seed = 1; seed <= seeds; seed++) {
        if (only && (uint32_t)atoi(only) != seed)
            continue;
        /* A fresh copy of the store, blobs included (a set-aside store's
         * blobs are swept, so copies would share less and less). */
        nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        build_store(f->dir, dvs);
        srandom(seed);
        /* One page of random bytes, or a few hundred random bytes here and
         * there, anywhere past the meta pages. */
        int fd = open(path, O_RDWR);
        uint8_t junk[4096];
        for (size_t i = 0; i < sizeof junk; i++)
            junk[i] = (uint8_t)random();
        off_t page = 2 + random() % (pages - 2);
        if (seed % 2)
            assert_int_equal(pwrite(fd, junk, 4096, page * 4096), 4096);
        else
            for (int k = 0; k < 16; k++)
                assert_int_equal(
                    pwrite(fd, junk + 16 * k, 16,
                           (off_t)(2 * 4096 + random() % (st.st_size - 8192 - 16))),
                    16);
        close(fd);

        /* What a kernel does, in a child so that a crash is seen, not fatal
         * to the test. */
        pid_t pid = only && getenv("STORE_FAULT_NOFORK") ? 0 : fork();
        assert_true(pid >= 0);
        if (only && getenv("STORE_FAULT_NOFORK"))
            exit(read_everything(f->dir, dvs));
        if (pid == 0) {
            /* cmocka's handlers would carry on with the test run in here. */
            signal(SIGSEGV, SIG_DFL);
            signal(SIGBUS, SIG_DFL);
            signal(SIGABRT, SIG_DFL);
            alarm(30);
            _exit(read_everything(f->dir, dvs));
        }
        int status;
        waitpid(pid, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            print_error("seed %u (page %ld): the reading process ended with 0x%x\n", seed,
                        (long)page, status);
            crashes++;
        }
        set_aside += has_damaged_copy(f);
        /* Verify never crashes the caller, and repair leaves a clean store. */
        cellar_store *s = NULL;
        cellar_error err;
        cellar_store_options o = {SMALL_BLOB, false, 0};
        if (cellar_store_open(f->dir, &o, &s, &err) == CELLAR_OK) {
            cellar_verify_counts c;
            assert_int_equal(cellar_store_verify(s, true,
                                                 getenv("STORE_FAULT_PRINT") &&
                                                         (uint32_t)atoi(getenv(
                                                             "STORE_FAULT_PRINT")) == seed
                                                     ? print_problem
                                                     : NULL,
                                                 NULL, &c, &err),
                             CELLAR_OK);
            problems_seen += c.problems > 0;
            char last[600] = "";
            assert_int_equal(cellar_store_verify(s, false, keep_last, last, &c, &err),
                             CELLAR_OK);
            if (c.problems)
                fail_msg("seed %u: %llu problems left after repair: %s", seed,
                         (unsigned long long)c.problems, last);
            cellar_store_close(s);
        }
        /* Start the next seed without the previous one's leftovers. */
        DIR *d = opendir(f->dir);
        struct dirent *de;
        char p[600];
        while (d && (de = readdir(d)))
            if (!strncmp(de->d_name, "data.mdb.damaged-", 17)) {
                snprintf(p, sizeof p, "%s/%s", f->dir, de->d_name);
                unlink(p);
            }
        if (d)
            closedir(d);
    }
    print_message("%u damaged copies: %d set aside at open, %d with problems found by "
                  "verify, %d crashes\n",
                  seeds, set_aside, problems_seen, crashes);
    assert_int_equal(crashes, 0);
}

/* ---- limits ---- */

static long vm_size_kib(void)
{
    FILE *fp = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (fp && fgets(line, sizeof line, fp))
        if (!strncmp(line, "VmSize:", 7))
            v = atol(line + 7);
    if (fp)
        fclose(fp);
    return v;
}

static int map_cannot_grow_child(const char *dir)
{
    /* Room for a map of ~64 MiB and the values, not for 1 GiB. */
    struct rlimit rl;
    rl.rlim_cur = rl.rlim_max = (rlim_t)(vm_size_kib() + (200L << 10)) << 10;
    if (setrlimit(RLIMIT_AS, &rl) != 0)
        return 2;
    cellar_store *s = NULL;
    cellar_error err;
    cellar_store_options o = {(size_t)64 << 20, false, 0}; /* values stay in LMDB */
    if (cellar_store_open(dir, &o, &s, &err)) {
        fprintf(stderr, "open: %s\n", err.message);
        return 3;
    }
    size_t n = (size_t)8 << 20;
    uint8_t *buf = malloc(n);
    if (!buf)
        return 4;
    cellar_batch *b = cellar_batch_new();
    cellar_hash first = {{0}};
    cellar_status st = CELLAR_OK;
    int commits = 0;
    for (int i = 0; i < 100 && st == CELLAR_OK; i++) {
        fill_pattern(buf, n, (uint32_t)i);
        cellar_segment segs[2] = {{"s", 1}, {buf, n}};
        char node[16];
        snprintf(node, sizeof node, "v%d", i);
        cellar_hash dv = put_value(b, node, segs, 2);
        if (i == 0)
            first = dv;
        st = cellar_store_commit(s, b, &err);
        commits += st == CELLAR_OK;
    }
    if (st != CELLAR_EFULL) {
        fprintf(stderr, "expected EFULL, got %s: %s\n", cellar_status_name(st),
                err.message);
        return 5;
    }
    /* Still usable: what was committed loads, and a small commit works. */
    cellar_reader *r;
    loaded l = {0};
    if (cellar_reader_begin(s, &r, &err) ||
        cellar_reader_load_result(r, &first, alloc_seg, &l, &err)) {
        fprintf(stderr, "after EFULL: %s\n", err.message);
        return 6;
    }
    loaded_free(&l);
    cellar_reader_end(r);
    cellar_batch_free(b);
    b = cellar_batch_new();
    cellar_segment small = {"small", 5};
    put_value(b, "small", &small, 1);
    if (cellar_store_commit(s, b, &err)) {
        fprintf(stderr, "small commit after EFULL: %s\n", err.message);
        return 7;
    }
    fprintf(stderr, "map stopped growing after %d commits of 8 MiB\n", commits);
    cellar_batch_free(b);
    cellar_store_close(s);
    free(buf);
    return commits > 0 ? 0 : 8;
}

static void run_child(int (*fn)(const char *), const char *dir)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGSEGV, SIG_DFL);
        signal(SIGBUS, SIG_DFL);
        signal(SIGABRT, SIG_DFL);
        alarm(60);
        _exit(fn(dir));
    }
    int status;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status))
        fail_msg("the child ended with status 0x%x", status);
}

static void test_map_cannot_grow(void **state)
{
    fixture *f = *state;
    run_child(map_cannot_grow_child, f->dir);
}

static int file_size_limit_child(const char *dir)
{
    signal(SIGXFSZ, SIG_IGN); /* as in every Python process */
    cellar_store *s = open_with(dir, SMALL_BLOB, false);
    struct rlimit rl = {(rlim_t)4 << 20, (rlim_t)4 << 20};
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
        return 2;
    cellar_batch *b = cellar_batch_new();
    size_t n = (size_t)6 << 20;
    uint8_t *buf = malloc(n);
    fill_pattern(buf, n, 3);
    cellar_segment segs[2] = {{"s", 1}, {buf, n}};
    put_value(b, "too_big", segs, 2);
    cellar_error err;
    cellar_status st = cellar_store_commit(s, b, &err);
    if (st != CELLAR_EFULL) {
        fprintf(stderr, "blob: expected EFULL, got %s: %s\n", cellar_status_name(st),
                err.message);
        return 3;
    }
    cellar_batch_free(b);
    /* Inline values past the limit: LMDB's own write fails the same way. */
    b = cellar_batch_new();
    cellar_store_close(s);
    s = open_with(dir, (size_t)64 << 20, false);
    put_value(b, "too_big_inline", segs, 2);
    st = cellar_store_commit(s, b, &err);
    if (st != CELLAR_EFULL) {
        fprintf(stderr, "inline: expected EFULL, got %s: %s\n", cellar_status_name(st),
                err.message);
        return 4;
    }
    cellar_batch_free(b);
    b = cellar_batch_new();
    cellar_segment small = {"small", 5};
    cellar_hash dv = put_value(b, "small", &small, 1);
    if (cellar_store_commit(s, b, &err)) {
        fprintf(stderr, "small commit: %s\n", err.message);
        return 5;
    }
    cellar_reader *r;
    if (cellar_reader_begin(s, &r, &err) || !cellar_reader_has_result(r, &dv))
        return 6;
    cellar_reader_end(r);
    cellar_batch_free(b);
    cellar_store_close(s);
    free(buf);
    return 0;
}

static void test_file_size_limit_is_a_full_disk(void **state)
{
    fixture *f = *state;
    run_child(file_size_limit_child, f->dir);
    /* Nothing half-written is left behind for readers. */
    cellar_store *s = open_with(f->dir, SMALL_BLOB, false);
    cellar_verify_counts c;
    assert_int_equal(cellar_store_verify(s, true, NULL, NULL, &c, NULL), CELLAR_OK);
    assert_int_equal(cellar_store_verify(s, false, NULL, NULL, &c, NULL), CELLAR_OK);
    assert_int_equal(c.problems, 0);
    cellar_store_close(s);
}

static void test_lock_file_deleted(void **state)
{
    fixture *f = *state;
    cellar_store *s = open_with(f->dir, SMALL_BLOB, false);
    cellar_batch *b = cellar_batch_new();
    cellar_segment seg = {"v", 1};
    put_value(b, "v", &seg, 1);
    commit_ok(s, b);
    char lock[256];
    snprintf(lock, sizeof lock, "%s/lock.mdb", f->dir);
    assert_int_equal(unlink(lock), 0);
    /* Another process may now create a new lock file and write: this one
     * must stop, not write unlocked. */
    cellar_store *other = open_with(f->dir, SMALL_BLOB, false);
    put_value(b, "w", &seg, 1);
    cellar_error err;
    assert_int_equal(cellar_store_commit(s, b, &err), CELLAR_EREADONLY);
    assert_non_null(strstr(err.message, "lock.mdb"));
    cellar_reader *r;
    assert_int_equal(cellar_reader_begin(s, &r, &err), CELLAR_EREADONLY);
    assert_true(cellar_store_read_only(s));
    commit_ok(other, b);
    cellar_batch_free(b);
    cellar_store_close(other);
    cellar_store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_meta_pages_damaged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newest_meta_points_past_the_end, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_truncated_data_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_cannot_grow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_size_limit_is_a_full_disk, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_lock_file_deleted, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
