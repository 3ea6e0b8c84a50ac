/*
 * store_safety.c - who may use a store: ownership and modes of the store's
 * directory and files, and the identity of its lock file.
 *
 * Loading a pickle runs code, so a store is only used when it belongs to the
 * user and nobody else can write it; the directory is created 0700.  These
 * checks run on names before LMDB opens anything, and again on LMDB's own
 * descriptor afterwards (store_env.c).  LMDB's lock file carries the reader
 * table and the writer mutex: if it is deleted or replaced while a process
 * holds the store, a second process would create a new one and both would
 * write unlocked.  So its device and inode are recorded at open and compared
 * before each transaction; a mismatch makes this process stop using the
 * store (lock_lost), which costs one stat(2) per transaction.
 */
#include "store_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

cellar_status safety_check_private(const struct stat *st, const char *path, bool is_dir,
                                   cellar_error *err)
{
    const char *fix = is_dir ? "chmod 700" : "chmod 600";
    if (st->st_uid != geteuid())
        return cellar_error_set(
            err, CELLAR_EUNSAFE,
            "refusing the cellar store: %s is owned by uid %u, not by you (uid %u); "
            "loading a pickle runs code, so a store must belong to the user who "
            "loads it: use a store of your own (another --dir), or chown it to you",
            path, (unsigned)st->st_uid, (unsigned)geteuid());
    if (st->st_mode & 022)
        return cellar_error_set(
            err, CELLAR_EUNSAFE,
            "refusing the cellar store: %s is writable by %s (mode %03o); loading a "
            "pickle runs code, so nobody else may write the store: run '%s %s'",
            path, (st->st_mode & 020) ? "its group" : "others",
            (unsigned)(st->st_mode & 0777), fix, path);
    return CELLAR_OK;
}

/* Checks dir/name when it exists; `*exists` says whether it did. */
static cellar_status check_file(const char *dir, const char *name, bool *exists,
                                cellar_error *err)
{
    char path[PATH_MAX];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (lstat(path, &st) != 0) {
        *exists = false;
        if (errno == ENOENT)
            return CELLAR_OK;
        return cellar_error_set(err, CELLAR_EIO, "cannot stat %s: %s", path,
                                strerror(errno));
    }
    *exists = true;
    if (!S_ISREG(st.st_mode))
        return cellar_error_set(err, CELLAR_EUNSAFE,
                                "refusing the cellar store: %s is not a regular file",
                                path);
    return safety_check_private(&st, path, false, err);
}

/* mkdir -p: parents with the usual mode, the store itself 0700.  A parent
 * that cannot be created is left for the stat below to report. */
static cellar_status make_dirs(const char *dir, cellar_error *err)
{
    char *p = strdup(dir);
    if (!p)
        return cellar_error_set(err, CELLAR_ENOMEM, "out of memory");
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST && errno != EACCES && errno != EROFS) {
            cellar_status st = cellar_error_set(err, CELLAR_EIO, "cannot create %s: %s",
                                                p, strerror(errno));
            free(p);
            return st;
        }
        *s = '/';
    }
    free(p);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST && errno != EACCES && errno != EROFS)
        return cellar_error_set(err, CELLAR_EIO,
                                "cannot create the store directory %s: %s", dir,
                                strerror(errno));
    return CELLAR_OK;
}

cellar_status safety_check_dir(const char *dir, bool read_only, cellar_error *err)
{
    struct stat st;
    if (!read_only) {
        cellar_status s = make_dirs(dir, err);
        if (s)
            return s;
    }
    if (stat(dir, &st) != 0) {
        if (errno == ENOENT)
            return cellar_error_set(err, read_only ? CELLAR_ENOTFOUND : CELLAR_EIO,
                                    "no cellar store at %s%s", dir,
                                    read_only ? "" : " (and it cannot be created)");
        return cellar_error_set(err, CELLAR_EIO, "cannot stat %s: %s", dir,
                                strerror(errno));
    }
    if (!S_ISDIR(st.st_mode))
        return cellar_error_set(err, CELLAR_EIO, "%s is not a directory", dir);
    return safety_check_private(&st, dir, true, err);
}

cellar_status safety_check_files(const char *dir, bool *have_data, cellar_error *err)
{
    bool lock = false;
    cellar_status s = check_file(dir, "data.mdb", have_data, err);
    return s ? s : check_file(dir, "lock.mdb", &lock, err);
}

bool safety_dir_writable(const char *dir)
{
    return access(dir, W_OK | X_OK) == 0;
}

static bool lock_identity(const cellar_store *s, dev_t *dev, ino_t *ino)
{
    char path[PATH_MAX];
    struct stat st;
    snprintf(path, sizeof path, "%s/lock.mdb", s->path);
    if (stat(path, &st) != 0)
        return false;
    *dev = st.st_dev;
    *ino = st.st_ino;
    return true;
}

void safety_record_lock(cellar_store *s)
{
    s->lock_known = !s->no_lock && lock_identity(s, &s->lock_dev, &s->lock_ino);
}

bool safety_lock_unchanged(cellar_store *s)
{
    if (s->lock_lost)
        return false;
    if (!s->lock_known)
        return true;
    dev_t dev;
    ino_t ino;
    if (lock_identity(s, &dev, &ino) && dev == s->lock_dev && ino == s->lock_ino)
        return true;
    s->lock_lost = true;
    return false;
}
