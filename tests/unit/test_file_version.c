/*
 * test_file_version.c - versions of files and directories by content, and
 * the fingerprints kept in the store: equal content gives an equal version
 * whatever the inode or the times, any change of bytes or entries gives a
 * new one, a settled file is read once across store reopenings, a file
 * changed too recently is read again, and a FIFO or a directory inside
 * itself is refused without blocking.
 */
#include "store_testlib.h"

#include <time.h>

#include "cellar/file_version.h"

static void write_file(const char *path, const char *text)
{
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(rename(tmp, path), 0); /* a new inode, as editors do */
}

static void overwrite_in_place(const char *path, const char *text)
{
    FILE *f = fopen(path, "r+");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static cellar_hash version(cellar_store *s, const char *path, cellar_path_info *info)
{
    cellar_hash h;
    cellar_error err;
    cellar_status st = cellar_path_version(s, path, &h, info, &err);
    if (st)
        fail_msg("%s", err.message);
    return h;
}

static void settle(void)
{
    struct timespec t = {2, 200000000};
    nanosleep(&t, NULL);
}

static void test_content_not_identity(void **state)
{
    fixture *f = *state;
    char a[256], b[256];
    snprintf(a, sizeof a, "%s/a.csv", f->root);
    snprintf(b, sizeof b, "%s/b.csv", f->root);
    cellar_hash missing = version(NULL, a, NULL);
    write_file(a, "x,y\n1,2\n");
    cellar_hash v1 = version(NULL, a, NULL);
    assert_false(cellar_hash_equal(&missing, &v1));
    write_file(a, "x,y\n1,2\n"); /* same bytes, new inode and times */
    cellar_hash v2 = version(NULL, a, NULL);
    assert_true(cellar_hash_equal(&v1, &v2));
    write_file(b, "x,y\n1,2\n"); /* another path, same bytes */
    cellar_hash vb = version(NULL, b, NULL);
    assert_true(cellar_hash_equal(&v1, &vb));
    overwrite_in_place(a, "x,y\n1,3\n"); /* same size, one byte */
    cellar_hash v3 = version(NULL, a, NULL);
    assert_false(cellar_hash_equal(&v1, &v3));
    write_file(a, "x,y\n1,3\n3,4\n");
    cellar_hash v4 = version(NULL, a, NULL);
    assert_false(cellar_hash_equal(&v3, &v4));
}

static void test_directories(void **state)
{
    fixture *f = *state;
    char d1[256], d2[256], p[320];
    snprintf(d1, sizeof d1, "%s/one", f->root);
    snprintf(d2, sizeof d2, "%s/two", f->root);
    assert_int_equal(mkdir(d1, 0700), 0);
    assert_int_equal(mkdir(d2, 0700), 0);
    /* The same tree made in another order. */
    snprintf(p, sizeof p, "%s/b", d1);
    write_file(p, "bee");
    snprintf(p, sizeof p, "%s/a", d1);
    write_file(p, "ay");
    snprintf(p, sizeof p, "%s/a", d2);
    write_file(p, "ay");
    snprintf(p, sizeof p, "%s/b", d2);
    write_file(p, "bee");
    cellar_hash h1 = version(NULL, d1, NULL), h2 = version(NULL, d2, NULL);
    assert_true(cellar_hash_equal(&h1, &h2));
    /* A file added, in a subdirectory. */
    snprintf(p, sizeof p, "%s/sub", d2);
    assert_int_equal(mkdir(p, 0700), 0);
    cellar_hash h3 = version(NULL, d2, NULL);
    assert_false(cellar_hash_equal(&h2, &h3)); /* an empty directory is an entry */
    snprintf(p, sizeof p, "%s/sub/c", d2);
    write_file(p, "");
    cellar_hash h4 = version(NULL, d2, NULL);
    assert_false(cellar_hash_equal(&h3, &h4));
    /* A rename of an entry: same bytes, another name. */
    char q[320];
    snprintf(p, sizeof p, "%s/a", d1);
    snprintf(q, sizeof q, "%s/a2", d1);
    assert_int_equal(rename(p, q), 0);
    cellar_hash h5 = version(NULL, d1, NULL);
    assert_false(cellar_hash_equal(&h1, &h5));
    /* A trailing slash names the same directory. */
    snprintf(p, sizeof p, "%s/", d1);
    cellar_hash h6 = version(NULL, p, NULL);
    assert_true(cellar_hash_equal(&h5, &h6));
}

static void test_read_once_when_settled(void **state)
{
    fixture *f = *state;
    char a[256];
    snprintf(a, sizeof a, "%s/big.bin", f->root);
    char text[4096];
    memset(text, 'q', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    write_file(a, text);
    cellar_store *s;
    assert_int_equal(cellar_store_open(f->dir, NULL, &s, NULL), CELLAR_OK);

    /* Just written: read, and read again (not settled when it was read). */
    cellar_path_info info;
    cellar_hash v1 = version(s, a, &info);
    assert_int_equal(info.files, 1);
    assert_int_equal(info.read, 1);
    assert_int_equal(info.bytes_read, sizeof text - 1);
    cellar_hash v2 = version(s, a, &info);
    assert_int_equal(info.read, 1);
    assert_true(cellar_hash_equal(&v1, &v2));

    /* Settled: read once more, then never again, across reopenings. */
    settle();
    version(s, a, &info);
    assert_int_equal(info.read, 1);
    cellar_hash v3 = version(s, a, &info);
    assert_int_equal(info.read, 0);
    assert_int_equal(info.bytes_read, 0);
    assert_true(cellar_hash_equal(&v1, &v3));
    cellar_store_close(s);
    assert_int_equal(cellar_store_open(f->dir, NULL, &s, NULL), CELLAR_OK);
    cellar_hash v4 = version(s, a, &info);
    assert_int_equal(info.read, 0);
    assert_true(cellar_hash_equal(&v1, &v4));

    /* Same size, times put back: the change time still tells. */
    struct stat before;
    assert_int_equal(stat(a, &before), 0);
    overwrite_in_place(a, "Q");
    struct timespec times[2] = {before.st_atim, before.st_mtim};
    assert_int_equal(utimensat(AT_FDCWD, a, times, 0), 0);
    cellar_hash v5 = version(s, a, &info);
    assert_int_equal(info.read, 1);
    assert_false(cellar_hash_equal(&v1, &v5));
    cellar_store_close(s);

    /* A read-only store reuses what was kept and keeps nothing new. */
    cellar_store_options ro = {.read_only = true};
    assert_int_equal(cellar_store_open(f->dir, &ro, &s, NULL), CELLAR_OK);
    cellar_hash v6 = version(s, a, &info);
    assert_true(cellar_hash_equal(&v5, &v6));
    cellar_store_close(s);
}

static void test_refused_without_blocking(void **state)
{
    fixture *f = *state;
    char p[256], q[320];
    cellar_hash h;
    cellar_error err;
    snprintf(p, sizeof p, "%s/fifo", f->root);
    assert_int_equal(mkfifo(p, 0600), 0);
    assert_int_equal(cellar_path_version(NULL, p, &h, NULL, &err), CELLAR_EINVAL);
    assert_non_null(strstr(err.message, "neither a regular file nor a directory"));

    /* A directory holding a FIFO is refused too, never read. */
    assert_int_equal(cellar_path_version(NULL, f->root, &h, NULL, &err), CELLAR_EINVAL);
    assert_int_equal(unlink(p), 0);

    snprintf(p, sizeof p, "%s/loop", f->root);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(q, sizeof q, "%s/loop/self", f->root);
    assert_int_equal(symlink(p, q), 0);
    assert_int_equal(cellar_path_version(NULL, p, &h, NULL, &err), CELLAR_EINVAL);
    assert_non_null(strstr(err.message, "contains itself"));

    /* Unreadable (as root, modes do not stop reads, so only when not root). */
    if (geteuid() != 0) {
        snprintf(p, sizeof p, "%s/secret", f->root);
        write_file(p, "s");
        assert_int_equal(chmod(p, 0), 0);
        assert_int_equal(cellar_path_version(NULL, p, &h, NULL, &err), CELLAR_EIO);
    }
    assert_int_equal(cellar_path_version(NULL, NULL, &h, NULL, &err), CELLAR_EINVAL);
    assert_int_equal(cellar_path_version(NULL, "", &h, NULL, NULL), CELLAR_EINVAL);
}

static void test_dangling_link_is_an_entry(void **state)
{
    fixture *f = *state;
    char d[256], p[320];
    snprintf(d, sizeof d, "%s/links", f->root);
    assert_int_equal(mkdir(d, 0700), 0);
    cellar_hash empty = version(NULL, d, NULL);
    snprintf(p, sizeof p, "%s/gone", d);
    assert_int_equal(symlink("/nonexistent/cellar-target", p), 0);
    cellar_hash dangling = version(NULL, d, NULL);
    assert_false(cellar_hash_equal(&empty, &dangling));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_content_not_identity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_directories, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_once_when_settled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_without_blocking, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dangling_link_is_an_entry, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
