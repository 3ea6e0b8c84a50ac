/*
 * file_version.c - the version of what a path names: a regular file by its
 * bytes, a directory by its sorted entries and theirs, a missing path as
 * "nothing there".  A file's bytes are read once: its fingerprint is kept in
 * the store with the file's identity (store_files.c) and reused while the
 * identity holds and the file had settled before it was read (see
 * file_version.h for why).  Directories are walked with openat/fstatat from
 * the directory's own descriptor, so the walk neither depends on PATH_MAX
 * nor follows a renamed path half-way; a FIFO or a device is never opened.
 */
#include "cellar/file_version.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define READ_CHUNK ((size_t)1 << 20)
#define MAX_ENTRIES 1000000u
#define MAX_DEPTH 256
#define READ_ATTEMPTS 3

/* Segment tags of a path's version. */
#define TAG_FILE 'F'    /* a regular file's bytes */
#define TAG_DIR 'D'     /* a directory: then its entries */
#define TAG_NAME 'N'    /* an entry's name */
#define TAG_ENTRY 'E'   /* an entry's kind (1 byte) and version (16) */
#define TAG_MISSING 'M' /* nothing there */

typedef struct walk {
    cellar_store *store;
    cellar_reader *reader; /* begun at the first lookup */
    bool no_reader;        /* the store could not be read: keep nothing */
    cellar_batch *batch;   /* fingerprints to keep */
    unsigned char *buf;
    cellar_path_info info;
    uint64_t entries;
    struct {
        dev_t dev;
        ino_t ino;
    } stack[MAX_DEPTH]; /* the directories being walked, outermost first */
    int depth;
    cellar_error *err;
} walk;

static int64_t ts_ns(struct timespec t)
{
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static int64_t wall_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return ts_ns(t);
}

static cellar_status oom(cellar_error *err)
{
    return cellar_error_set(err, CELLAR_ENOMEM, "out of memory");
}

static cellar_status io_error(walk *w, const char *path, const char *what, int e)
{
    return cellar_error_set(w->err, CELLAR_EIO, "cannot %s %s: %s", what, path, strerror(e));
}

static bool same_identity(const cellar_file_record *r, const struct stat *st)
{
    return r->dev == (uint64_t)st->st_dev && r->ino == (uint64_t)st->st_ino &&
           r->size == (uint64_t)st->st_size && r->mtime_ns == ts_ns(st->st_mtim) &&
           r->ctime_ns == ts_ns(st->st_ctim);
}

/* True when the kept record can stand for the file: same identity, and the
 * file had not changed for CELLAR_FILE_SETTLE_NS when it was read. */
static bool kept(walk *w, const char *path, const struct stat *st, cellar_hash *out)
{
    if (!w->store || w->no_reader)
        return false;
    if (!w->reader && cellar_reader_begin(w->store, &w->reader, NULL) != CELLAR_OK) {
        w->no_reader = true;
        return false;
    }
    cellar_file_record rec;
    if (cellar_reader_get_file(w->reader, path, &rec, NULL) != CELLAR_OK ||
        !same_identity(&rec, st) || rec.mtime_ns > rec.read_at_ns - CELLAR_FILE_SETTLE_NS ||
        rec.ctime_ns > rec.read_at_ns - CELLAR_FILE_SETTLE_NS)
        return false;
    *out = rec.content;
    return true;
}

static void keep(walk *w, const char *path, const struct stat *st, int64_t read_at,
                 const cellar_hash *content)
{
    if (!w->store || w->no_reader || cellar_store_read_only(w->store))
        return;
    if (!w->batch && !(w->batch = cellar_batch_new()))
        return;
    cellar_file_record rec = {(uint64_t)st->st_dev,   (uint64_t)st->st_ino,
                              (uint64_t)st->st_size,  ts_ns(st->st_mtim),
                              ts_ns(st->st_ctim),     read_at,
                              *content};
    (void)cellar_batch_put_file(w->batch, path, &rec, NULL);
}

/* Reads exactly st->st_size bytes of the open `fd` into `fp` as one segment.
 * 1 when the file changed under the read (shorter, longer or restamped). */
static int read_content(walk *w, int fd, const struct stat *st, cellar_fingerprint *fp,
                        const char *path)
{
    uint64_t left = (uint64_t)st->st_size;
    cellar_fingerprint_reset(fp);
    cellar_fingerprint_begin(fp, TAG_FILE, (size_t)left);
    off_t at = 0;
    while (left) {
        size_t want = left < READ_CHUNK ? (size_t)left : READ_CHUNK;
        ssize_t n = pread(fd, w->buf, want, at);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -(int)io_error(w, path, "read", errno);
        if (n == 0)
            return 1; /* it shrank */
        cellar_fingerprint_update(fp, w->buf, (size_t)n);
        w->info.bytes_read += (uint64_t)n;
        left -= (uint64_t)n;
        at += n;
    }
    struct stat after;
    if (fstat(fd, &after) != 0)
        return -(int)io_error(w, path, "stat", errno);
    return after.st_size != st->st_size || ts_ns(after.st_mtim) != ts_ns(st->st_mtim) ||
                   ts_ns(after.st_ctim) != ts_ns(st->st_ctim)
               ? 1
               : 0;
}

/* A regular file's version: kept, or read.  `dirfd`/`name` open it (dirfd
 * AT_FDCWD and name the whole path for the root). */
static cellar_status file_version(walk *w, int dirfd, const char *name, const char *path,
                                  const struct stat *seen, cellar_hash *out)
{
    w->info.files++;
    if (kept(w, path, seen, out))
        return CELLAR_OK;
    cellar_fingerprint *fp = cellar_fingerprint_new();
    if (!fp)
        return oom(w->err);
    cellar_status status = CELLAR_OK;
    for (int attempt = 0;; attempt++) {
        int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
        if (fd < 0) {
            status = io_error(w, path, "open", errno);
            break;
        }
        struct stat st;
        int64_t read_at = wall_ns();
        if (fstat(fd, &st) != 0) {
            status = io_error(w, path, "stat", errno);
            close(fd);
            break;
        }
        if (!S_ISREG(st.st_mode)) { /* replaced between the stat and the open */
            close(fd);
            status = cellar_error_set(w->err, CELLAR_EINVAL,
                                      "%s is no longer a regular file", path);
            break;
        }
        (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        w->info.read++;
        int rc = read_content(w, fd, &st, fp, path);
        close(fd);
        if (rc < 0) {
            status = (cellar_status)-rc;
            break;
        }
        if (rc == 0) {
            *out = cellar_fingerprint_digest(fp);
            keep(w, path, &st, read_at, out);
            break;
        }
        if (attempt + 1 == READ_ATTEMPTS) {
            status = cellar_error_set(w->err, CELLAR_EIO,
                                      "%s kept changing while it was read", path);
            break;
        }
    }
    cellar_fingerprint_free(fp);
    return status;
}

static cellar_status path_version(walk *w, int dirfd, const char *name, const char *path,
                                  const struct stat *st, cellar_hash *out);

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* The sorted entry names of the directory open as `fd` (which it takes). */
static cellar_status list_dir(walk *w, int fd, const char *path, char ***out, size_t *count)
{
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = errno;
        close(fd);
        return io_error(w, path, "list", e);
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    cellar_status status = CELLAR_OK;
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (!e) {
            if (errno)
                status = io_error(w, path, "list", errno);
            break;
        }
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (++w->entries > MAX_ENTRIES) {
            status = cellar_error_set(w->err, CELLAR_EINVAL,
                                      "%s holds more than %u entries", path, MAX_ENTRIES);
            break;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **grown = realloc(names, cap * sizeof *names);
            if (!grown) {
                status = oom(w->err);
                break;
            }
            names = grown;
        }
        if (!(names[n] = strdup(e->d_name))) {
            status = oom(w->err);
            break;
        }
        n++;
    }
    closedir(d);
    if (status) {
        free_names(names, n);
        return status;
    }
    if (n)
        qsort(names, n, sizeof *names, compare_names);
    *out = names;
    *count = n;
    return CELLAR_OK;
}

static cellar_status dir_version(walk *w, int dirfd, const char *name, const char *path,
                                 const struct stat *st, cellar_hash *out)
{
    for (int i = 0; i < w->depth; i++)
        if (w->stack[i].dev == st->st_dev && w->stack[i].ino == st->st_ino)
            return cellar_error_set(w->err, CELLAR_EINVAL,
                                    "%s contains itself (through a symbolic link)", path);
    if (w->depth == MAX_DEPTH)
        return cellar_error_set(w->err, CELLAR_EINVAL, "%s is nested over %d levels deep",
                                path, MAX_DEPTH);
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return io_error(w, path, "open", errno);
    char **names = NULL;
    size_t n = 0;
    cellar_status status = list_dir(w, dup(fd), path, &names, &n);
    if (status) {
        close(fd);
        return status;
    }
    cellar_fingerprint *fp = cellar_fingerprint_new();
    size_t plen = strlen(path);
    char *child = NULL;
    if (!fp)
        status = oom(w->err);
    else
        cellar_fingerprint_add(fp, TAG_DIR, NULL, 0);
    w->stack[w->depth].dev = st->st_dev;
    w->stack[w->depth].ino = st->st_ino;
    w->depth++;
    for (size_t i = 0; !status && i < n; i++) {
        size_t len = strlen(names[i]);
        free(child);
        if (!(child = malloc(plen + len + 2))) {
            status = oom(w->err);
            break;
        }
        memcpy(child, path, plen);
        child[plen] = '/';
        memcpy(child + plen + 1, names[i], len + 1);
        struct stat cst;
        uint8_t entry[17];
        cellar_hash v;
        if (fstatat(fd, names[i], &cst, 0) != 0) {
            if (errno != ENOENT && errno != ELOOP) {
                status = io_error(w, child, "stat", errno);
                break;
            }
            entry[0] = TAG_MISSING; /* removed meanwhile, or a dangling link */
            memset(entry + 1, 0, 16);
        } else {
            if ((status = path_version(w, fd, names[i], child, &cst, &v)))
                break;
            entry[0] = S_ISDIR(cst.st_mode) ? TAG_DIR : TAG_FILE;
            memcpy(entry + 1, v.bytes, 16);
        }
        cellar_fingerprint_add(fp, TAG_NAME, names[i], len);
        cellar_fingerprint_add(fp, TAG_ENTRY, entry, sizeof entry);
    }
    w->depth--;
    if (!status)
        *out = cellar_fingerprint_digest(fp);
    free(child);
    cellar_fingerprint_free(fp);
    free_names(names, n);
    close(fd);
    return status;
}

static cellar_status path_version(walk *w, int dirfd, const char *name, const char *path,
                                  const struct stat *st, cellar_hash *out)
{
    if (S_ISREG(st->st_mode))
        return file_version(w, dirfd, name, path, st, out);
    if (S_ISDIR(st->st_mode))
        return dir_version(w, dirfd, name, path, st, out);
    return cellar_error_set(w->err, CELLAR_EINVAL,
                            "%s is neither a regular file nor a directory, so it is not "
                            "read",
                            path);
}

/* `path` made absolute (lexically: symbolic links stay, as the user named
 * them), without a trailing slash; malloc'd. */
static char *absolute(const char *path)
{
    char *abs;
    if (path[0] == '/') {
        abs = strdup(path);
    } else {
        char *cwd = getcwd(NULL, 0);
        if (!cwd)
            return NULL;
        size_t a = strlen(cwd), b = strlen(path);
        abs = malloc(a + b + 2);
        if (abs) {
            memcpy(abs, cwd, a);
            abs[a] = '/';
            memcpy(abs + a + 1, path, b + 1);
        }
        free(cwd);
    }
    size_t n = abs ? strlen(abs) : 0;
    while (n > 1 && abs[n - 1] == '/')
        abs[--n] = '\0';
    return abs;
}

cellar_status cellar_path_version(cellar_store *store, const char *path, cellar_hash *out,
                                  cellar_path_info *info, cellar_error *err)
{
    if (!path || !out || !*path)
        return cellar_error_set(err, CELLAR_EINVAL, "path_version: missing argument");
    walk w = {.store = store, .err = err};
    char *abs = absolute(path);
    if (!abs || !(w.buf = malloc(READ_CHUNK))) {
        free(abs);
        return oom(err);
    }
    cellar_status status = CELLAR_OK;
    struct stat st;
    if (stat(abs, &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR) {
            uint8_t tag = TAG_MISSING;
            *out = cellar_hash_bytes(&tag, 1);
        } else {
            status = io_error(&w, abs, "stat", errno);
        }
    } else {
        status = path_version(&w, AT_FDCWD, abs, abs, &st, out);
    }
    if (w.reader)
        cellar_reader_end(w.reader);
    if (w.batch && status == CELLAR_OK)
        (void)cellar_store_commit(store, w.batch, NULL); /* keeping is best effort */
    cellar_batch_free(w.batch);
    free(w.buf);
    free(abs);
    if (info)
        *info = w.info;
    return status;
}
