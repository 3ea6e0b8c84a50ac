/*
 * store_blob.c - large result segments as immutable files beside LMDB.
 *
 * A segment of at least `blob_min` bytes is the file blobs/xx/<dv>-<i>: the
 * raw bytes of segment i of the result whose data version (hence checksum)
 * is <dv>, xx being dv's first two hex digits so no directory grows huge.
 * Content addressing by the result's data version costs no extra hash.
 *
 * Writing happens inside the commit's write transaction, so LMDB's writer
 * lock also orders blob writers: the bytes go to blobs/tmp/ with plain
 * write(2) (short writes and EINTR handled; ENOSPC, EDQUOT and EFBIG are
 * EFULL), the file is renamed into place, and only then is the header that
 * names it committed.  A reader therefore never sees a half-written blob.  A
 * process killed between rename and commit leaves an orphan: before writing
 * any blob a writer creates a marker in blobs/dirty/ and removes it after its
 * commit, so the next writer (holding the writer lock, hence sure nobody else
 * is mid-commit) finds the marker and sweeps every file no result refers to.
 * A sweep under the writer lock is always safe, so a marker whose owner has
 * committed but not yet removed it only costs a needless sweep.  Checking
 * costs one read of a small directory per commit; the sweep, a walk of
 * blobs/, is paid only after a crash.
 *
 * A segment staged while its data version was computed (store_stage.c) is
 * already in an unnamed file: blob_write links that file under the temporary
 * name instead of writing, and renames it the same way.
 *
 * Loading maps a blob MAP_PRIVATE: pages come straight from the page cache,
 * a writer to the mapping gets its own copy, and the file never changes.  A
 * blob is replaced only by renaming a new file over it, so an existing
 * mapping keeps the old inode.  Durability follows MDB_NOSYNC: no fsync.
 */
#include "store_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define WRITE_MAX ((size_t)1 << 30) /* Linux writes at most ~2 GiB per call */

struct cellar_map {
    void *data;
    size_t len;
};

void *cellar_map_data(const cellar_map *m)
{
    return m->data;
}

size_t cellar_map_len(const cellar_map *m)
{
    return m->len;
}

void cellar_map_free(cellar_map *m)
{
    if (!m)
        return;
    if (m->data)
        munmap(m->data, m->len);
    free(m);
}

void blob_path(const cellar_store *s, const cellar_hash *dv, size_t index, char *out)
{
    char hex[CELLAR_HASH_HEX_LEN + 1];
    cellar_hash_to_hex(dv, hex);
    snprintf(out, PATH_MAX, "%s/blobs/%.2s/%s-%zu", s->path, hex, hex, index);
}

bool blob_parse_name(const char *name, cellar_hash *dv, size_t *index)
{
    char hex[CELLAR_HASH_HEX_LEN + 1];
    if (strlen(name) < CELLAR_HASH_HEX_LEN + 2 || name[CELLAR_HASH_HEX_LEN] != '-')
        return false;
    memcpy(hex, name, CELLAR_HASH_HEX_LEN);
    hex[CELLAR_HASH_HEX_LEN] = '\0';
    char *end;
    const char *digits = name + CELLAR_HASH_HEX_LEN + 1;
    if (*digits < '0' || *digits > '9')
        return false;
    unsigned long long i = strtoull(digits, &end, 10);
    if (*end || i >= MAX_SEGMENTS)
        return false;
    *index = (size_t)i;
    return cellar_hash_from_hex(hex, dv);
}

static cellar_status errno_status(int e)
{
    return e == ENOSPC || e == EDQUOT || e == EFBIG  ? CELLAR_EFULL
           : e == EACCES || e == EROFS || e == EPERM ? CELLAR_EREADONLY
                                                     : CELLAR_EIO;
}

static cellar_status make_dir(const char *path, cellar_error *err)
{
    if (mkdir(path, 0700) == 0 || errno == EEXIST)
        return CELLAR_OK;
    int e = errno;
    return cellar_error_set(err, errno_status(e), "cannot create %s: %s", path,
                            strerror(e));
}

bool blob_write_all(int fd, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len) {
        ssize_t n = write(fd, p, len < WRITE_MAX ? len : WRITE_MAX);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return false;
        if (n == 0) {
            errno = ENOSPC;
            return false;
        }
        p += n;
        len -= (size_t)n;
    }
    return true;
}

void blob_choose(const cellar_store *s, const cellar_segment *segs, size_t nsegs,
                 bool *blob)
{
    size_t inline_total = 0;
    for (size_t i = 0; i < nsegs; i++) {
        size_t len = segs[i].len;
        blob[i] = len >= s->blob_min || len > INLINE_MAX - inline_total;
        if (!blob[i])
            inline_total += len;
    }
}

cellar_status blob_write(cellar_store *s, const cellar_hash *dv, size_t index,
                         const void *data, size_t len, bool replace, cellar_error *err)
{
    char final[PATH_MAX], tmp[PATH_MAX + 64], dir[PATH_MAX];
    struct stat st;
    blob_path(s, dv, index, final);
    if (!replace && lstat(final, &st) == 0 && S_ISREG(st.st_mode) &&
        (uint64_t)st.st_size == len)
        return CELLAR_OK; /* content-addressed: already there */
    snprintf(dir, sizeof dir, "%s/blobs", s->path);
    cellar_status rc = make_dir(dir, err);
    size_t cut = strlen(final) - strlen(strrchr(final, '/'));
    snprintf(dir, sizeof dir, "%.*s", (int)cut, final);
    if (!rc)
        rc = make_dir(dir, err);
    snprintf(dir, sizeof dir, "%s/blobs/tmp", s->path);
    if (!rc)
        rc = make_dir(dir, err);
    if (rc)
        return rc;
    snprintf(tmp, sizeof tmp, "%s/%s.%ld.%llu", dir, strrchr(final, '/') + 1,
             (long)getpid(), (unsigned long long)now_ns());
    int staged = stage_find(s, dv, index, len);
    if (staged >= 0) {
        /* Written while its data version was computed (store_stage.c): name
         * it, instead of writing the same bytes again. */
        bool linked = stage_link(staged, tmp);
        close(staged);
        if (linked && rename(tmp, final) == 0)
            return CELLAR_OK;
        if (linked)
            unlink(tmp);
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        int e = errno;
        return cellar_error_set(err, errno_status(e), "cannot create %s: %s", tmp,
                                strerror(e));
    }
    bool ok = blob_write_all(fd, data, len);
    int e = errno;
    if (close(fd) != 0 && ok) {
        ok = false;
        e = errno;
    }
    if (ok && rename(tmp, final) != 0) {
        ok = false;
        e = errno;
    }
    if (ok)
        return CELLAR_OK;
    unlink(tmp);
    return cellar_error_set(err, errno_status(e),
                            "cannot write the blob %s (%zu bytes): %s", final, len,
                            strerror(e));
}

/* Opens a blob for reading and checks that it is ours, private, of `len`. */
static cellar_status open_blob(const cellar_store *s, const cellar_hash *dv, size_t index,
                               uint64_t len, int *fd_out, cellar_error *err)
{
    char path[PATH_MAX];
    struct stat st;
    blob_path(s, dv, index, path);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        int e = errno;
        return cellar_error_set(err, e == ENOENT ? CELLAR_ENOTFOUND : CELLAR_EIO,
                                "cannot open the blob %s: %s", path, strerror(e));
    }
    cellar_status rc = CELLAR_OK;
    if (fstat(fd, &st) != 0)
        rc = cellar_error_set(err, CELLAR_EIO, "cannot stat %s: %s", path,
                              strerror(errno));
    else if (!S_ISREG(st.st_mode))
        rc = cellar_error_set(err, CELLAR_ECORRUPT, "the blob %s is not a file", path);
    else if ((rc = safety_check_private(&st, path, false, err)) != CELLAR_OK)
        ;
    else if ((uint64_t)st.st_size != len)
        rc = cellar_error_set(err, CELLAR_ECORRUPT,
                              "the blob %s is %lld bytes, its result says %llu", path,
                              (long long)st.st_size, (unsigned long long)len);
    if (rc) {
        close(fd);
        return rc;
    }
    *fd_out = fd;
    return CELLAR_OK;
}

cellar_status blob_map(const cellar_store *s, const cellar_hash *dv, size_t index,
                       uint64_t len, cellar_map **out, cellar_error *err)
{
    int fd;
    if (len > SIZE_MAX)
        return cellar_error_set(err, CELLAR_ENOMEM,
                                "a blob of %llu bytes cannot be mapped",
                                (unsigned long long)len);
    cellar_status rc = open_blob(s, dv, index, len, &fd, err);
    if (rc)
        return rc;
    cellar_map *m = calloc(1, sizeof *m);
    void *p = m ? mmap(NULL, (size_t)len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0)
                : MAP_FAILED;
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) {
        free(m);
        return cellar_error_set(err, CELLAR_ENOMEM, "cannot map a blob of %llu bytes: %s",
                                (unsigned long long)len, strerror(m ? e : ENOMEM));
    }
    m->data = p;
    m->len = (size_t)len;
    *out = m;
    return CELLAR_OK;
}

cellar_status blob_read(const cellar_store *s, const cellar_hash *dv, size_t index,
                        uint64_t len, void *dst, cellar_error *err)
{
    int fd;
    cellar_status rc = open_blob(s, dv, index, len, &fd, err);
    if (rc)
        return rc;
    uint8_t *p = dst;
    off_t at = 0;
    while ((uint64_t)at < len) {
        size_t want =
            len - (uint64_t)at < WRITE_MAX ? (size_t)(len - (uint64_t)at) : WRITE_MAX;
        ssize_t n = pread(fd, p + at, want, at);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : EIO;
            close(fd);
            return cellar_error_set(err, CELLAR_EIO, "cannot read a blob: %s",
                                    strerror(e));
        }
        at += n;
    }
    close(fd);
    return CELLAR_OK;
}

cellar_status blob_mark_dirty(cellar_store *s, char *marker, cellar_error *err)
{
    char path[PATH_MAX - 64];
    snprintf(path, sizeof path, "%s/blobs", s->path);
    cellar_status rc = make_dir(path, err);
    snprintf(path, sizeof path, "%s/blobs/dirty", s->path);
    if (!rc)
        rc = make_dir(path, err);
    if (rc)
        return rc;
    snprintf(marker, PATH_MAX, "%s/%ld.%llu", path, (long)getpid(),
             (unsigned long long)now_ns());
    int fd = open(marker, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        int e = errno;
        return cellar_error_set(err, errno_status(e), "cannot create %s: %s", marker,
                                strerror(e));
    }
    close(fd);
    return CELLAR_OK;
}

void blob_unmark(const char *marker)
{
    unlink(marker);
}

/* Calls `fn` on each marker; returns how many there are. */
static size_t each_marker(const cellar_store *s, bool remove)
{
    char dir[PATH_MAX], path[PATH_MAX + 300];
    snprintf(dir, sizeof dir, "%s/blobs/dirty", s->path);
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        n++;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (remove)
            unlink(path);
    }
    closedir(d);
    return n;
}

bool blob_is_dirty(const cellar_store *s)
{
    return each_marker(s, false) > 0;
}

void blob_clear_markers(const cellar_store *s)
{
    each_marker(s, true);
}

/* Whether the results in `txn` name this blob. */
static bool referenced(cellar_store *s, MDB_txn *txn, const char *name)
{
    cellar_hash dv;
    size_t index;
    if (!blob_parse_name(name, &dv, &index))
        return false;
    MDB_val k = {16, dv.bytes}, v;
    result_layout L;
    if (mdb_get(txn, s->dbi[DB_RESULTS], &k, &v) != 0 ||
        !record_result_parse(v.mv_data, v.mv_size, &L) || index >= L.nsegs)
        return false;
    seg_info *segs = malloc(L.nsegs * sizeof *segs);
    if (!segs)
        return true; /* when unsure, keep it */
    record_result_segs(&L, segs);
    bool blob = segs[index].blob;
    free(segs);
    return blob;
}

typedef void (*visit_file)(void *ctx, const char *dir, const char *name,
                           const struct stat *st);

/* Calls `fn` for each regular file of blobs/xx/ (tmp included, tmp = true). */
static void each_blob_file(const cellar_store *s, visit_file fn, void *ctx)
{
    char root[PATH_MAX], sub[PATH_MAX + 256], file[PATH_MAX * 2 + 512];
    snprintf(root, sizeof root, "%s/blobs", s->path);
    DIR *d = opendir(root);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.' || strcmp(de->d_name, "dirty") == 0 ||
            (strlen(de->d_name) != 2 && strcmp(de->d_name, "tmp") != 0))
            continue;
        snprintf(sub, sizeof sub, "%s/%s", root, de->d_name);
        DIR *sd = opendir(sub);
        if (!sd)
            continue;
        struct dirent *fe;
        while ((fe = readdir(sd))) {
            struct stat st;
            snprintf(file, sizeof file, "%s/%s", sub, fe->d_name);
            if (fe->d_name[0] != '.' && lstat(file, &st) == 0 && S_ISREG(st.st_mode))
                fn(ctx, sub, fe->d_name, &st);
        }
        closedir(sd);
    }
    closedir(d);
}

typedef struct sweep_ctx {
    cellar_store *s;
    MDB_txn *txn;
    bool remove;
    cellar_problem_fn fn;
    void *ctx;
    uint64_t found;
} sweep_ctx;

static void sweep_one(void *opaque, const char *dir, const char *name,
                      const struct stat *st)
{
    (void)st;
    sweep_ctx *c = opaque;
    bool tmp = strcmp(strrchr(dir, '/') + 1, "tmp") == 0;
    if (!tmp && referenced(c->s, c->txn, name))
        return;
    char path[PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    c->found++;
    if (c->fn)
        c->fn(c->ctx, CELLAR_PROBLEM_ORPHAN, path,
              tmp ? "a temporary file left by a writer that was killed"
                  : "a blob file that no stored result refers to");
    if (c->remove)
        unlink(path);
}

uint64_t blob_sweep(cellar_store *s, MDB_txn *txn, bool remove, cellar_problem_fn fn,
                    void *ctx)
{
    sweep_ctx c = {s, txn, remove, fn, ctx, 0};
    each_blob_file(s, sweep_one, &c);
    return c.found;
}

typedef struct totals {
    uint64_t count, bytes;
} totals;

static void add_total(void *opaque, const char *dir, const char *name,
                      const struct stat *st)
{
    (void)dir;
    (void)name;
    totals *t = opaque;
    t->count++;
    t->bytes += (uint64_t)st->st_size;
}

void blob_totals(const cellar_store *s, uint64_t *count, uint64_t *bytes)
{
    totals t = {0, 0};
    each_blob_file(s, add_total, &t);
    *count = t.count;
    *bytes = t.bytes;
}
