/*
 * store_compact.c - cellar_store_compact (gc.h): the index rewritten
 * without its free pages, swapped in atomically, and the blob files nothing
 * refers to removed.
 *
 * How it works.  LMDB reuses the pages that gc frees but never gives them
 * back to the disk, so the environment is copied with MDB_CP_COMPACT into a
 * temporary file (fsynced: a crash must not cost the store), which is renamed
 * over data.mdb; lock.mdb is then removed, so the next opener builds a fresh
 * lock table for the new file.  This is only safe with nobody else in the
 * store.  Whether another process has it open is asked of the fcntl lock
 * LMDB holds on byte 0 of lock.mdb for an environment's lifetime (F_GETLK
 * names the holder); the reader table would not do, since with MDB_NOTLS a
 * process holds a slot only while a transaction is open.  The descriptor used
 * for asking stays open until this process's environment is closed, because
 * closing any descriptor of a file drops every POSIX lock the process holds
 * on it, LMDB's included.  The copy is refused if the last transaction id
 * moved while it ran; a process that opens the store in the instant between
 * the last check and the rename sees lock.mdb replaced and stops writing.
 */
#include "store_internal.h"

#include "cellar/gc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <unistd.h>

/* The pid of another process holding lock.mdb open through LMDB (-1 when
 * unknown), or 0 when there is none.  `fd` is a descriptor of lock.mdb. */
static pid_t other_holder(int fd)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
    if (fd < 0 || fcntl(fd, F_GETLK, &fl) != 0)
        return 0;
    return fl.l_type == F_UNLCK ? 0 : fl.l_pid ? fl.l_pid : -1;
}

static cellar_status busy(const char *dir, pid_t pid, cellar_error *err)
{
    char who[64] = "another process";
    if (pid > 0)
        snprintf(who, sizeof who, "process %ld", (long)pid);
    return cellar_error_set(err, CELLAR_EBUSY,
                            "the store %s is open in %s (a kernel or a cellar command): "
                            "shut it down (or '%%cellar dir' elsewhere), then compact",
                            dir, who);
}

static uint64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* Copies the open store compacted into `tmp`. */
static cellar_status copy_compacted(cellar_store *s, const char *tmp, cellar_error *err)
{
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return cellar_error_set(err, CELLAR_EIO, "cannot create %s: %s", tmp,
                                strerror(errno));
    MDB_envinfo before, after;
    mdb_env_info(s->env, &before);
    int rc = mdb_env_copyfd2(s->env, fd, MDB_CP_COMPACT);
    if (!rc && fsync(fd) != 0)
        rc = errno;
    if (close(fd) != 0 && !rc)
        rc = errno;
    mdb_env_info(s->env, &after);
    cellar_status st = CELLAR_OK;
    if (rc)
        st = env_error(s, err, rc, "cannot write the compacted copy");
    else if (after.me_last_txnid != before.me_last_txnid)
        st = cellar_error_set(err, CELLAR_EBUSY,
                              "another process wrote to the store %s during the copy: "
                              "shut it down, then compact",
                              s->path);
    if (st)
        unlink(tmp);
    return st;
}

/* Removes blob files no result refers to, in the compacted store. */
static cellar_status sweep_orphans(const char *dir, uint64_t *removed, cellar_error *err)
{
    cellar_store *s;
    cellar_status st = cellar_store_open(dir, NULL, &s, err);
    if (st)
        return st;
    MDB_txn *txn;
    int rc = env_txn_begin(s, 0, &txn);
    if (!rc) {
        *removed = blob_sweep(s, txn, true, NULL, NULL);
        blob_clear_markers(s);
        mdb_txn_abort(txn);
        env_txn_done(s);
    } else {
        st = env_error(s, err, rc, "cannot sweep orphan blobs");
    }
    cellar_store_close(s);
    return st;
}

cellar_status cellar_store_compact(const char *dir, cellar_compact_report *report,
                                   cellar_error *err)
{
    cellar_compact_report local;
    report = report ? report : &local;
    memset(report, 0, sizeof *report);
    if (!dir || !*dir)
        return cellar_error_set(err, CELLAR_EINVAL, "compact: no directory");
    char data[PATH_MAX], lock[PATH_MAX], tmp[PATH_MAX + 64];
    snprintf(data, sizeof data, "%s/data.mdb", dir);
    snprintf(lock, sizeof lock, "%s/lock.mdb", dir);
    if (access(data, F_OK) != 0)
        return cellar_error_set(err, CELLAR_ENOTFOUND, "no cellar store at %s", dir);
    /* Kept open until the environment is closed: see the top of the file. */
    int lfd = open(lock, O_RDONLY | O_CLOEXEC);
    pid_t holder = other_holder(lfd);
    if (holder) {
        close(lfd);
        return busy(dir, holder, err);
    }
    cellar_store *s;
    cellar_status st = cellar_store_open(dir, NULL, &s, err);
    if (st) {
        if (lfd >= 0)
            close(lfd);
        return st;
    }
    if (lfd < 0)
        lfd = open(lock, O_RDONLY | O_CLOEXEC);
    if (cellar_store_read_only(s))
        st = cellar_error_set(err, CELLAR_EREADONLY,
                              "the store %s is read-only: it cannot be compacted",
                              s->path);
    else if ((holder = other_holder(lfd)) != 0)
        st = busy(s->path, holder, err);
    snprintf(data, sizeof data, "%s/data.mdb", s->path);
    snprintf(lock, sizeof lock, "%s/lock.mdb", s->path);
    snprintf(tmp, sizeof tmp, "%s/data.mdb.compact-%ld", s->path, (long)getpid());
    report->file_before = file_size(data);
    if (!st)
        st = copy_compacted(s, tmp, err);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s", s->path);
    cellar_store_close(s);
    if (!st && (holder = other_holder(lfd)) != 0) {
        unlink(tmp);
        st = busy(path, holder, err);
    }
    if (!st && rename(tmp, data) != 0) {
        st = cellar_error_set(err, CELLAR_EIO, "cannot rename %s to %s: %s", tmp, data,
                              strerror(errno));
        unlink(tmp);
    }
    if (!st)
        unlink(lock); /* a fresh lock table for the new file */
    if (lfd >= 0)
        close(lfd);
    if (st)
        return st;
    st = sweep_orphans(path, &report->orphans_removed, err);
    report->file_after = file_size(data);
    return st;
}
