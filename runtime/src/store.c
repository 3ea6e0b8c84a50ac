/*
 * store.c - the persistent cache: one LMDB environment with the named
 * databases results, keys, nodes and runs (see store.h for what each holds).
 *
 * How it works.  Opening checks that the directory and its files belong to
 * the caller and that nobody else can write them (a stored pickle is code),
 * then opens the environment with MDB_NOTLS so that the one read transaction
 * a store keeps can be reset and renewed from whichever thread holds the GIL.
 * A result is stored as a small header (magic, version, segment count,
 * checksum, segment lengths) followed by the segments, copied straight into
 * space reserved with MDB_RESERVE; loading copies each segment out in 1 MiB
 * chunks, hashing each chunk just before copying it (while it is in cache),
 * and drops the consumed part of the map from our address space every 64 MiB
 * so that loading a 1 GiB value costs about one copy of memory, not two.
 * Writes are gathered in a cellar_batch and applied in one write transaction;
 * when the map is full the transaction is aborted, the map grown and the
 * whole batch retried, so a failed commit leaves nothing behind.
 */
#include "cellar/store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_MAP_SIZE ((size_t)1 << 30)
#define COPY_CHUNK ((size_t)1 << 20)     /* hash then copy this much at a time */
#define RELEASE_EVERY ((size_t)64 << 20) /* drop consumed map pages this often */
#define DIRECT_MIN ((size_t)4 << 20)     /* segments this large move by pread/pwrite */
#define MAX_SEGMENTS 65536u
#define MAX_COMMIT_ATTEMPTS 16

/* Result value header: magic, version, 3 zero bytes, u32 segment count,
 * u32 zero, 16-byte checksum, then one u64 length per segment (all LE). */
static const uint8_t RESULT_MAGIC[4] = {'C', 'L', 'R', 'S'};
#define RESULT_VERSION 1
#define RESULT_FIXED_HEADER 32

/* Key record: version byte, data version, code version, then created,
 * last used, size and compute time as u64 LE, then the node name. */
#define KEY_RECORD_VERSION 1
#define KEY_RECORD_FIXED 65

struct cellar_reader {
    cellar_store *store;
    MDB_txn *txn; /* kept between uses, reset while the reader is closed */
    bool active;
};

struct cellar_store {
    MDB_env *env;
    MDB_dbi results, keys, nodes, runs;
    bool read_only;
    int size_lock;           /* fd of size.lock, or -1 (read-only) */
    const uint8_t *map_base; /* where data.mdb is mapped, or NULL if unknown */
    size_t map_len;
    size_t page_size;
    char *path;
    cellar_fingerprint *fp; /* scratch hasher for loads, verifies and commits */
    cellar_reader reader;
};

/* ---- little helpers ---- */

static void put_u64le(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64le(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void put_u32le(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static void put_u64be(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint64_t get_u64be(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static cellar_status lmdb_error(cellar_error *err, int rc, const char *what)
{
    return cellar_error_set(err, CELLAR_ELMDB, "%s: %s", what, mdb_strerror(rc));
}

static char seg_tag(size_t i)
{
    return i == 0 ? CELLAR_SEG_STREAM : CELLAR_SEG_BUFFER;
}

/* ---- safety checks on the directory and its files ---- */

static cellar_status check_private(const struct stat *st, const char *path, bool is_dir,
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
    return check_private(&st, path, false, err);
}

/* mkdir -p: parents with the usual mode, the store itself 0700. */
static cellar_status make_dirs(const char *dir, cellar_error *err)
{
    char *p = strdup(dir);
    if (!p)
        return cellar_error_set(err, CELLAR_ENOMEM, "out of memory");
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            cellar_status st = cellar_error_set(err, CELLAR_EIO, "cannot create %s: %s",
                                                p, strerror(errno));
            free(p);
            return st;
        }
        *s = '/';
    }
    free(p);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return cellar_error_set(err, CELLAR_EIO,
                                "cannot create the store directory %s: %s", dir,
                                strerror(errno));
    return CELLAR_OK;
}

static cellar_status check_dir(const char *dir, bool read_only, cellar_error *err)
{
    struct stat st;
    if (!read_only) {
        cellar_status s = make_dirs(dir, err);
        if (s)
            return s;
    }
    if (stat(dir, &st) != 0) {
        if (errno == ENOENT)
            return cellar_error_set(err, CELLAR_ENOTFOUND, "no cellar store at %s", dir);
        return cellar_error_set(err, CELLAR_EIO, "cannot stat %s: %s", dir,
                                strerror(errno));
    }
    if (!S_ISDIR(st.st_mode))
        return cellar_error_set(err, CELLAR_EIO, "%s is not a directory", dir);
    return check_private(&st, dir, true, err);
}

static cellar_status check_files(const char *dir, bool read_only, cellar_error *err)
{
    bool data = false, lock = false;
    cellar_status s = check_file(dir, "data.mdb", &data, err);
    if (!s)
        s = check_file(dir, "lock.mdb", &lock, err);
    if (!s && read_only && !data)
        s = cellar_error_set(err, CELLAR_ENOTFOUND, "no cellar store at %s (no data.mdb)",
                             dir);
    return s;
}

/* ---- opening and closing ---- */

/*
 * Sync policy: MDB_NOSYNC.  Every commit still writes its pages and then its
 * meta page with write(2), and LMDB switches to the new meta only once the
 * pages are written, so a process killed at any instant (the "kernel killed
 * mid-write" case) leaves the previous or the new snapshot, never a mix: the
 * written data sits in the OS page cache either way.  What we give up is
 * durability across an OS crash or power cut, where the last commits may be
 * lost (and LMDB warns the file may be damaged; results are checksummed, and
 * a cache can be rebuilt).  Why: measured with tests/bench/bench_store_lookup
 * on this machine, a small commit costs ~2 us without fsync and ~250-350 us
 * with it (MDB_NOMETASYNC is no cheaper here: one fsync dominates), on a
 * laptop SSD typically 1-5 ms; and a commit holding a 1 GiB result would wait
 * for the whole GiB to reach the disk, where np.save (our reference) does not
 * wait at all.  That would eat the "few microseconds per node" of a cached
 * 1,000-node run on slower disks and halve large-result store speed.  The
 * kernel flushes the page cache within seconds anyway, and cellar_store_close
 * syncs explicitly.  MDB_NOTLS: the reader's transaction is reset and renewed
 * from whichever thread holds the GIL.
 *
 * MDB_WRITEMAP: a write transaction's pages are the file's own pages, not
 * malloc'd copies written out at commit.  A large value is then moved with one
 * pwrite(2) straight from the caller's buffers into the reserved space (see
 * put_segment), so storing 1 GiB costs one copy into the page cache, like
 * np.save, instead of a fault-in, a copy and a write.  data.mdb is sparse: its
 * apparent size is the map size, its disk usage what is stored.
 */
#define STORE_ENV_FLAGS (MDB_NOTLS | MDB_NOSYNC | MDB_WRITEMAP)

/*
 * With MDB_WRITEMAP, LMDB ftruncates data.mdb to the map size whenever it maps
 * it (at open and at every mdb_env_set_mapsize), even to a smaller size.  A
 * process with a stale, smaller map would then cut the file under another
 * process's map, which dies of SIGBUS on its next touch.  So every sizing
 * happens under an exclusive flock on size.lock, and never below the file's
 * current size: the file only ever grows.
 */
static uint64_t data_file_size(const char *dir)
{
    char path[PATH_MAX];
    struct stat st;
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static void find_map(cellar_store *s);

static void size_lock(cellar_store *s, int op)
{
    while (s->size_lock >= 0 && flock(s->size_lock, op) < 0 && errno == EINTR)
        ;
}

/* mdb_env_set_mapsize to at least `want` and at least the file's size. */
static int set_map_size(cellar_store *s, uint64_t want)
{
    size_lock(s, LOCK_EX);
    uint64_t size = data_file_size(s->path);
    if (size < want)
        size = want;
    int rc = size > SIZE_MAX / 2 ? ENOMEM : mdb_env_set_mapsize(s->env, (size_t)size);
    size_lock(s, LOCK_UN);
    find_map(s);
    return rc;
}

static cellar_status open_size_lock(cellar_store *s, cellar_error *err)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/size.lock", s->path);
    s->size_lock = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (s->size_lock < 0)
        return cellar_error_set(err, errno == EACCES ? CELLAR_EREADONLY : CELLAR_EIO,
                                "cannot open %s: %s", path, strerror(errno));
    return CELLAR_OK;
}

static cellar_status open_env(cellar_store *s, size_t map_size, cellar_error *err)
{
    unsigned flags = STORE_ENV_FLAGS | (s->read_only ? MDB_RDONLY : 0);
    for (int attempt = 0; attempt < 2; attempt++) {
        int rc = mdb_env_create(&s->env);
        if (!rc)
            rc = mdb_env_set_maxdbs(s->env, 8);
        size_lock(s, LOCK_EX);
        uint64_t file_size = data_file_size(s->path);
        if (!rc)
            rc = mdb_env_set_mapsize(s->env,
                                     file_size > map_size ? (size_t)file_size : map_size);
        if (!rc)
            rc = mdb_env_open(s->env, s->path, flags, 0600);
        size_lock(s, LOCK_UN);
        if (!rc)
            return CELLAR_OK;
        mdb_env_close(s->env);
        s->env = NULL;
        /* A read-only user cannot open lock.mdb for writing.  Read without the
         * lock table then: only a concurrent writer (who would need write
         * access we do not have) could disturb us, and results are checksummed. */
        if (s->read_only && (rc == EACCES || rc == EROFS) && !(flags & MDB_NOLOCK)) {
            flags |= MDB_NOLOCK;
            continue;
        }
        if (rc == EACCES)
            return cellar_error_set(err, CELLAR_EREADONLY,
                                    "cannot open the store %s for writing: %s", s->path,
                                    mdb_strerror(rc));
        return lmdb_error(err, rc, "cannot open the LMDB environment");
    }
    return cellar_error_set(err, CELLAR_ELMDB, "cannot open the LMDB environment");
}

/* The open file must be ours too: checked on the descriptor, not the name. */
static cellar_status check_open_data_file(cellar_store *s, cellar_error *err)
{
    int fd;
    struct stat st;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/data.mdb", s->path);
    if (mdb_env_get_fd(s->env, &fd) != 0 || fstat(fd, &st) != 0)
        return cellar_error_set(err, CELLAR_EIO, "cannot stat %s", path);
    return check_private(&st, path, false, err);
}

/* Begins a transaction; when another process has grown the map past ours
 * (MDB_MAP_RESIZED), adopts its size and tries again. */
/* ---- direct file I/O for large segments ---- */

/* Where `p` (a pointer into the map) lives in data.mdb, or -1 when it is not
 * inside the map. */
static off_t map_offset(cellar_store *s, const void *p, size_t len)
{
    const uint8_t *base = s->map_base, *q = p;
    if (!base || q < base || len > s->map_len || (size_t)(q - base) > s->map_len - len)
        return -1;
    return (off_t)(q - base);
}

/*
 * LMDB does not say where it mapped data.mdb (mdb_env_info's me_mapaddr is
 * only the MDB_FIXEDMAP hint), so find the mapping of that file in
 * /proc/self/maps.  Called after every (re)mapping; when the mapping cannot
 * be found, large segments are simply copied through the map.
 */
static void find_map(cellar_store *s)
{
    s->map_base = NULL;
    s->map_len = 0;
    int fd = -1;
    struct stat st;
    MDB_envinfo info;
    if (mdb_env_get_fd(s->env, &fd) != 0 || fstat(fd, &st) != 0 ||
        mdb_env_info(s->env, &info) != 0)
        return;
    FILE *maps = fopen("/proc/self/maps", "r");
    if (!maps)
        return;
    char line[PATH_MAX + 128];
    while (fgets(line, sizeof line, maps)) {
        unsigned long long start, end, offset, inode;
        unsigned major, minor;
        char perms[8];
        if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu", &start, &end, perms, &offset,
                   &major, &minor, &inode) != 7)
            continue;
        if (inode == (unsigned long long)st.st_ino && offset == 0 &&
            makedev(major, minor) == st.st_dev && end - start == info.me_mapsize) {
            s->map_base =
                (const uint8_t *)(uintptr_t)start; /* NOLINT(performance-no-int-to-ptr) */
            s->map_len = (size_t)(end - start);
            break;
        }
    }
    fclose(maps);
}

static int data_fd(cellar_store *s)
{
    int fd = -1;
    return mdb_env_get_fd(s->env, &fd) == 0 ? fd : -1;
}

static bool pread_all(int fd, uint8_t *dst, size_t len, off_t off)
{
    while (len) {
        ssize_t n = pread(fd, dst, len, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        dst += n;
        len -= (size_t)n;
        off += n;
    }
    return true;
}

static bool pwrite_all(int fd, const uint8_t *src, size_t len, off_t off)
{
    while (len) {
        ssize_t n = pwrite(fd, src, len, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        src += n;
        len -= (size_t)n;
        off += n;
    }
    return true;
}

/* Asks for transparent huge pages on a large destination: a 1 GiB load then
 * takes 512 page faults instead of 262,144. */
static void advise_huge(void *dst, size_t len)
{
#ifdef MADV_HUGEPAGE
    const size_t huge = (size_t)2 << 20;
    uintptr_t start = ((uintptr_t)dst + huge - 1) & ~(uintptr_t)(huge - 1);
    uintptr_t end = ((uintptr_t)dst + len) & ~(uintptr_t)(huge - 1);
    if (end > start) {
        void *at = (void *)start; /* NOLINT(performance-no-int-to-ptr) */
        madvise(at, end - start, MADV_HUGEPAGE);
    }
#else
    (void)dst;
    (void)len;
#endif
}

static int begin_txn(cellar_store *s, unsigned flags, MDB_txn **txn)
{
    int rc = MDB_MAP_RESIZED;
    for (int attempt = 0; attempt < 4 && rc == MDB_MAP_RESIZED; attempt++) {
        rc = mdb_txn_begin(s->env, NULL, flags, txn);
        if (rc == MDB_MAP_RESIZED) {
            int rc2 = set_map_size(s, 0);
            if (rc2)
                return rc2;
        }
    }
    return rc;
}

/*
 * Orders 16-byte hashes exactly as LMDB's default memcmp order does (as two
 * big-endian words), so other LMDB tools still read the file correctly, but
 * inline and branch-light: get_key is dominated by the ~20 comparisons of a
 * B-tree descent, and this makes lookups ~10% faster than a memcmp call.
 */
static int compare_hash_keys(const MDB_val *a, const MDB_val *b)
{
    if (a->mv_size == 16 && b->mv_size == 16) {
        uint64_t x = get_u64be(a->mv_data), y = get_u64be(b->mv_data);
        if (x == y) {
            x = get_u64be((const uint8_t *)a->mv_data + 8);
            y = get_u64be((const uint8_t *)b->mv_data + 8);
        }
        return (x > y) - (x < y);
    }
    size_t n = a->mv_size < b->mv_size ? a->mv_size : b->mv_size;
    int c = n ? memcmp(a->mv_data, b->mv_data, n) : 0;
    return c ? c : (a->mv_size > b->mv_size) - (a->mv_size < b->mv_size);
}

static cellar_status open_dbis(cellar_store *s, cellar_error *err)
{
    static const char *const names[] = {"results", "keys", "nodes", "runs"};
    MDB_dbi *dbis[] = {&s->results, &s->keys, &s->nodes, &s->runs};
    MDB_txn *txn;
    int rc = begin_txn(s, s->read_only ? MDB_RDONLY : 0, &txn);
    if (rc)
        return lmdb_error(err, rc, "cannot begin a transaction");
    for (size_t i = 0; i < 4; i++) {
        rc = mdb_dbi_open(txn, names[i], s->read_only ? 0 : MDB_CREATE, dbis[i]);
        if (rc) {
            mdb_txn_abort(txn);
            if (rc == MDB_NOTFOUND)
                return cellar_error_set(err, CELLAR_ENOTFOUND,
                                        "%s is not a cellar store (no '%s' database)",
                                        s->path, names[i]);
            return lmdb_error(err, rc, "cannot open a named database");
        }
        if (i < 2)
            mdb_set_compare(txn, *dbis[i], compare_hash_keys);
    }
    rc = mdb_txn_commit(txn);
    return rc ? lmdb_error(err, rc, "cannot commit the database handles") : CELLAR_OK;
}

cellar_status cellar_store_open(const char *dir, const cellar_store_options *options,
                                cellar_store **out, cellar_error *err)
{
    if (!dir || !*dir || !out)
        return cellar_error_set(err, CELLAR_EINVAL, "cellar_store_open: no directory");
    *out = NULL;
    bool read_only = options && options->read_only;
    size_t map_size = options && options->initial_map_size ? options->initial_map_size
                                                           : DEFAULT_MAP_SIZE;
    cellar_status st = check_dir(dir, read_only, err);
    if (!st)
        st = check_files(dir, read_only, err);
    if (st)
        return st;

    cellar_store *s = calloc(1, sizeof *s);
    if (!s)
        return cellar_error_set(err, CELLAR_ENOMEM, "out of memory");
    s->read_only = read_only;
    s->size_lock = -1;
    s->page_size = (size_t)sysconf(_SC_PAGESIZE);
    s->reader.store = s;
    s->path = realpath(dir, NULL);
    s->fp = cellar_fingerprint_new();
    if (!s->path || !s->fp) {
        st = s->path ? cellar_error_set(err, CELLAR_ENOMEM, "out of memory")
                     : cellar_error_set(err, CELLAR_EIO, "cannot resolve %s: %s", dir,
                                        strerror(errno));
        cellar_store_close(s);
        return st;
    }
    st = read_only ? CELLAR_OK : open_size_lock(s, err);
    if (!st)
        st = open_env(s, map_size, err);
    if (!st)
        st = check_open_data_file(s, err);
    if (!st)
        find_map(s);
    if (!st) {
        int dead;
        mdb_reader_check(s->env, &dead); /* free slots of killed processes */
        st = open_dbis(s, err);
    }
    if (st) {
        cellar_store_close(s);
        return st;
    }
    *out = s;
    return CELLAR_OK;
}

void cellar_store_close(cellar_store *store)
{
    if (!store)
        return;
    if (store->env) {
        if (store->reader.txn)
            mdb_txn_abort(store->reader.txn);
        if (!store->read_only)
            mdb_env_sync(store->env, 1); /* durability at a calm moment */
        mdb_env_close(store->env);
    }
    if (store->size_lock >= 0)
        close(store->size_lock);
    cellar_fingerprint_free(store->fp);
    free(store->path);
    free(store);
}

const char *cellar_store_path(const cellar_store *store)
{
    return store->path;
}

/* ---- key records ---- */

static size_t key_record_size(const cellar_key_record *rec)
{
    return KEY_RECORD_FIXED + rec->node_len;
}

static void encode_key_record(const cellar_key_record *rec, uint8_t *p)
{
    p[0] = KEY_RECORD_VERSION;
    memcpy(p + 1, rec->data_version.bytes, 16);
    memcpy(p + 17, rec->code_version.bytes, 16);
    put_u64le(p + 33, rec->created_ns);
    put_u64le(p + 41, rec->last_used_ns);
    put_u64le(p + 49, rec->size);
    put_u64le(p + 57, rec->compute_ns);
    if (rec->node_len)
        memcpy(p + KEY_RECORD_FIXED, rec->node, rec->node_len);
}

static bool decode_key_record(const MDB_val *v, cellar_key_record *out)
{
    const uint8_t *p = v->mv_data;
    if (v->mv_size < KEY_RECORD_FIXED || p[0] != KEY_RECORD_VERSION)
        return false;
    memcpy(out->data_version.bytes, p + 1, 16);
    memcpy(out->code_version.bytes, p + 17, 16);
    out->created_ns = get_u64le(p + 33);
    out->last_used_ns = get_u64le(p + 41);
    out->size = get_u64le(p + 49);
    out->compute_ns = get_u64le(p + 57);
    out->node = (const char *)p + KEY_RECORD_FIXED;
    out->node_len = v->mv_size - KEY_RECORD_FIXED;
    return true;
}

static cellar_status corrupt_key(cellar_error *err, const cellar_hash *key)
{
    char hex[CELLAR_HASH_HEX_LEN + 1];
    cellar_hash_to_hex(key, hex);
    return cellar_error_set(err, CELLAR_ECORRUPT,
                            "the record of cache key %s does not parse", hex);
}

/* ---- result values ---- */

typedef struct result_layout {
    const uint8_t *base;
    size_t size;
    size_t nsegs;
    const uint8_t *lengths; /* nsegs u64 LE */
    const uint8_t *checksum;
    size_t data_offset;
} result_layout;

static size_t result_header_size(size_t nsegs)
{
    return RESULT_FIXED_HEADER + 8 * nsegs;
}

/* Every field is checked before it is trusted: a damaged file must give
 * ECORRUPT, never an out-of-bounds read. */
static bool parse_result(const MDB_val *v, result_layout *L)
{
    const uint8_t *p = v->mv_data;
    if (v->mv_size < RESULT_FIXED_HEADER || memcmp(p, RESULT_MAGIC, 4) != 0 ||
        p[4] != RESULT_VERSION)
        return false;
    uint32_t nsegs = get_u32le(p + 8);
    if (nsegs == 0 || nsegs > MAX_SEGMENTS || result_header_size(nsegs) > v->mv_size)
        return false;
    size_t total = result_header_size(nsegs);
    for (uint32_t i = 0; i < nsegs; i++) {
        uint64_t len = get_u64le(p + RESULT_FIXED_HEADER + 8 * (size_t)i);
        if (len > v->mv_size - total)
            return false;
        total += (size_t)len;
    }
    if (total != v->mv_size)
        return false;
    *L = (result_layout){.base = p,
                         .size = v->mv_size,
                         .nsegs = nsegs,
                         .lengths = p + RESULT_FIXED_HEADER,
                         .checksum = p + 16,
                         .data_offset = result_header_size(nsegs)};
    return true;
}

static size_t seg_len(const result_layout *L, size_t i)
{
    return (size_t)get_u64le(L->lengths + 8 * i);
}

/* Drops fully consumed pages of a map region from our page tables.  The map
 * is a shared read-only file mapping, so the pages stay in the page cache and
 * fault back in unchanged if anyone touches them again. */
typedef struct releaser {
    const uint8_t *next; /* page-aligned start of what is still mapped in */
    size_t page;
} releaser;

static const uint8_t *page_floor(const uint8_t *p, size_t page)
{
    return p - ((uintptr_t)p & (page - 1));
}

static void release_upto(releaser *r, const uint8_t *consumed_end, size_t min_bytes)
{
    const uint8_t *end = page_floor(consumed_end, r->page);
    if (end > r->next && (size_t)(end - r->next) >= min_bytes) {
        madvise((void *)r->next, (size_t)(end - r->next), MADV_DONTNEED);
        r->next = end;
    }
}

/*
 * Reading a large segment.  Copying out of the page cache is what a load
 * costs (the kernel zeroes and fills fresh pages), and one thread copies at
 * about a third of memory bandwidth, so the segment is read as two halves
 * by two threads at once while a third hashes what has been read, in order,
 * a chunk behind.  The checksum is the same as a sequential pass.
 */
typedef struct parallel_read {
    cellar_fingerprint *fp;
    int fd;
    uint8_t *dst;
    off_t at;
    size_t len, half;
    size_t ready[2]; /* bytes read of part 0, [0, half), and part 1, [half, len) */
    bool failed;     /* a read failed: everyone stops */
    int error;       /* its errno */
    pthread_mutex_t mu;
    pthread_cond_t cv;
} parallel_read;

#define READ_CHUNK ((size_t)4 << 20)

static size_t part_start(const parallel_read *p, int part)
{
    return part ? p->half : 0;
}

static size_t part_end(const parallel_read *p, int part)
{
    return part ? p->len : p->half;
}

static void read_part(parallel_read *p, int part)
{
    size_t base = part_start(p, part), size = part_end(p, part) - base, off = 0;
    while (off < size) {
        size_t n = size - off < READ_CHUNK ? size - off : READ_CHUNK;
        bool ok = pread_all(p->fd, p->dst + base + off, n, p->at + (off_t)(base + off));
        pthread_mutex_lock(&p->mu);
        if (ok)
            p->ready[part] = off += n;
        else if (!p->failed) {
            p->failed = true;
            p->error = errno ? errno : EIO;
        }
        bool stop = p->failed;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        if (stop)
            return;
    }
}

static void *read_part_one(void *arg)
{
    read_part(arg, 1);
    return NULL;
}

static void *hash_parts(void *arg)
{
    parallel_read *p = arg;
    for (int part = 0; part < 2; part++) {
        size_t start = part_start(p, part), done = start, end = part_end(p, part);
        while (done < end) {
            pthread_mutex_lock(&p->mu);
            while (start + p->ready[part] == done && !p->failed)
                pthread_cond_wait(&p->cv, &p->mu);
            size_t upto = start + p->ready[part];
            bool failed = p->failed;
            pthread_mutex_unlock(&p->mu);
            if (failed)
                return NULL;
            cellar_fingerprint_update(p->fp, p->dst + done, upto - done);
            done = upto;
        }
    }
    return NULL;
}

/* Reads `len` bytes at `at` of `fd` into `dst` and feeds them to `fp`.
 * False on a read error, with errno set. */
static bool read_and_hash(cellar_fingerprint *fp, int fd, uint8_t *dst, size_t len,
                          off_t at)
{
    parallel_read p = {.fp = fp,
                       .fd = fd,
                       .dst = dst,
                       .at = at,
                       .len = len,
                       .half = (len / 2) & ~(READ_CHUNK - 1)};
    if (pthread_mutex_init(&p.mu, NULL) != 0)
        return (errno = ENOMEM), false;
    if (pthread_cond_init(&p.cv, NULL) != 0) {
        pthread_mutex_destroy(&p.mu);
        return (errno = ENOMEM), false;
    }
    pthread_t hasher, reader;
    bool hashing = pthread_create(&hasher, NULL, hash_parts, &p) == 0;
    bool reading = pthread_create(&reader, NULL, read_part_one, &p) == 0;
    read_part(&p, 0);
    if (!reading)
        read_part(&p, 1);
    else
        pthread_join(reader, NULL);
    if (hashing)
        pthread_join(hasher, NULL);
    else if (!p.failed)
        cellar_fingerprint_update(fp, dst, len);
    pthread_cond_destroy(&p.cv);
    pthread_mutex_destroy(&p.mu);
    errno = p.error;
    return !p.failed;
}

/*
 * Hashes every segment of a stored value and, when `alloc` is given, copies
 * each into the destination it returns.  Fills `*digest`.
 */
static cellar_status digest_result(cellar_store *s, const result_layout *L,
                                   cellar_alloc_fn alloc, void *ctx, cellar_hash *digest,
                                   cellar_error *err)
{
    const uint8_t *src = L->base + L->data_offset;
    releaser rel = {page_floor(L->base, s->page_size), s->page_size};
    cellar_fingerprint_reset(s->fp);
    for (size_t i = 0; i < L->nsegs; i++) {
        size_t len = seg_len(L, i);
        uint8_t *dst = NULL;
        if (alloc && !(dst = alloc(ctx, i, L->nsegs, len)))
            return cellar_error_set(err, CELLAR_ENOMEM,
                                    "no memory for segment %zu (%zu bytes) of a result",
                                    i, len);
        cellar_fingerprint_begin(s->fp, seg_tag(i), len);
        off_t at = dst && len >= DIRECT_MIN ? map_offset(s, src, len) : -1;
        int fd = at >= 0 ? data_fd(s) : -1;
        if (fd >= 0) {
            /* Read the file, not the map: no page faults on the source. */
            advise_huge(dst, len);
            if (!read_and_hash(s->fp, fd, dst, len, at))
                return cellar_error_set(err, CELLAR_EIO, "cannot read a result: %s",
                                        strerror(errno ? errno : EIO));
            src += len;
            rel.next = page_floor(src, s->page_size);
            continue;
        }
        for (size_t off = 0; off < len; off += COPY_CHUNK) {
            size_t n = len - off < COPY_CHUNK ? len - off : COPY_CHUNK;
            cellar_fingerprint_update(s->fp, src + off, n);
            if (dst)
                memcpy(dst + off, src + off, n);
            release_upto(&rel, src + off + n, RELEASE_EVERY);
        }
        src += len;
    }
    if (L->size >= 4 * COPY_CHUNK)
        release_upto(&rel, src, 0);
    *digest = cellar_fingerprint_digest(s->fp);
    return CELLAR_OK;
}

/* Checks the digest against both the stored checksum and the data version. */
static cellar_status check_digest(const result_layout *L, const cellar_hash *digest,
                                  const cellar_hash *dv, cellar_error *err)
{
    char hex[CELLAR_HASH_HEX_LEN + 1];
    const char *why = NULL;
    if (memcmp(digest->bytes, L->checksum, 16) != 0)
        why = "its bytes do not match the stored checksum";
    else if (!cellar_hash_equal(digest, dv))
        why = "its checksum is not its data version";
    if (!why)
        return CELLAR_OK;
    cellar_hash_to_hex(dv, hex);
    return cellar_error_set(err, CELLAR_ECORRUPT, "the stored result %s is corrupt: %s",
                            hex, why);
}

static cellar_status corrupt_layout(const cellar_hash *dv, cellar_error *err)
{
    char hex[CELLAR_HASH_HEX_LEN + 1];
    cellar_hash_to_hex(dv, hex);
    return cellar_error_set(err, CELLAR_ECORRUPT,
                            "the stored result %s is corrupt: its header does not parse",
                            hex);
}

/* ---- reading ---- */

static bool reader_ok(const cellar_reader *r)
{
    return r && r->active;
}

cellar_status cellar_reader_begin(cellar_store *store, cellar_reader **out,
                                  cellar_error *err)
{
    cellar_reader *r = &store->reader;
    if (r->active)
        return cellar_error_set(err, CELLAR_EINVAL,
                                "a reader is already open on this store");
    for (int attempt = 0; attempt < 4; attempt++) {
        int rc;
        if (r->txn) {
            rc = mdb_txn_renew(r->txn);
            if (rc) {
                mdb_txn_abort(r->txn);
                r->txn = NULL;
            }
        } else {
            rc = mdb_txn_begin(store->env, NULL, MDB_RDONLY, &r->txn);
            if (rc)
                r->txn = NULL;
        }
        if (!rc) {
            r->active = true;
            *out = r;
            return CELLAR_OK;
        }
        if (rc != MDB_MAP_RESIZED)
            return lmdb_error(err, rc, "cannot begin a read transaction");
        /* Another process grew the map: adopt its size and try again. */
        rc = set_map_size(store, 0);
        if (rc)
            return lmdb_error(err, rc, "cannot adopt the grown map size");
    }
    return cellar_error_set(err, CELLAR_ELMDB, "the map kept being resized; giving up");
}

void cellar_reader_end(cellar_reader *r)
{
    if (r && r->active) {
        mdb_txn_reset(r->txn);
        r->active = false;
    }
}

cellar_status cellar_reader_get_key(cellar_reader *r, const cellar_hash *key,
                                    cellar_key_record *out, cellar_error *err)
{
    if (!reader_ok(r))
        return cellar_error_set(err, CELLAR_EINVAL, "the reader is not open");
    MDB_val k = {sizeof key->bytes, (void *)key->bytes}, v;
    int rc = mdb_get(r->txn, r->store->keys, &k, &v);
    if (rc == MDB_NOTFOUND)
        return CELLAR_ENOTFOUND;
    if (rc)
        return lmdb_error(err, rc, "cannot read a cache key");
    return decode_key_record(&v, out) ? CELLAR_OK : corrupt_key(err, key);
}

bool cellar_reader_has_result(cellar_reader *r, const cellar_hash *data_version)
{
    if (!reader_ok(r))
        return false;
    MDB_val k = {sizeof data_version->bytes, (void *)data_version->bytes}, v;
    return mdb_get(r->txn, r->store->results, &k, &v) == 0;
}

cellar_status cellar_reader_load_result(cellar_reader *r, const cellar_hash *data_version,
                                        cellar_alloc_fn alloc, void *ctx,
                                        cellar_error *err)
{
    if (!reader_ok(r) || !alloc)
        return cellar_error_set(err, CELLAR_EINVAL,
                                "load_result: no open reader or no alloc");
    MDB_val k = {sizeof data_version->bytes, (void *)data_version->bytes}, v;
    int rc = mdb_get(r->txn, r->store->results, &k, &v);
    if (rc == MDB_NOTFOUND)
        return CELLAR_ENOTFOUND;
    if (rc)
        return lmdb_error(err, rc, "cannot read a result");
    result_layout L;
    if (!parse_result(&v, &L))
        return corrupt_layout(data_version, err);
    cellar_hash digest;
    cellar_status st = digest_result(r->store, &L, alloc, ctx, &digest, err);
    return st ? st : check_digest(&L, &digest, data_version, err);
}

cellar_status cellar_reader_get_node(cellar_reader *r, const char *node,
                                     const char **json, size_t *len, cellar_error *err)
{
    if (!reader_ok(r) || !node)
        return cellar_error_set(err, CELLAR_EINVAL,
                                "get_node: no open reader or no node");
    size_t n = strlen(node);
    if (n == 0 || n > (size_t)mdb_env_get_maxkeysize(r->store->env))
        return CELLAR_ENOTFOUND;
    MDB_val k = {n, (void *)node}, v;
    int rc = mdb_get(r->txn, r->store->nodes, &k, &v);
    if (rc == MDB_NOTFOUND)
        return CELLAR_ENOTFOUND;
    if (rc)
        return lmdb_error(err, rc, "cannot read a node");
    *json = v.mv_data;
    *len = v.mv_size;
    return CELLAR_OK;
}

/*
 * Walks one database with a cursor, first to last (or last to first), and
 * hands each pair to `visit`, which returns <0 on a parse error (already
 * recorded in err), 0 to go on, >0 to stop.
 */
typedef int (*visit_fn)(void *ctx, const MDB_val *k, const MDB_val *v, cellar_error *err);

static cellar_status walk(cellar_reader *r, MDB_dbi dbi, bool backwards, visit_fn visit,
                          void *ctx, cellar_error *err)
{
    if (!reader_ok(r))
        return cellar_error_set(err, CELLAR_EINVAL, "the reader is not open");
    MDB_cursor *c;
    MDB_val k, v;
    int rc = mdb_cursor_open(r->txn, dbi, &c);
    if (rc)
        return lmdb_error(err, rc, "cannot open a cursor");
    MDB_cursor_op first = backwards ? MDB_LAST : MDB_FIRST;
    MDB_cursor_op next = backwards ? MDB_PREV : MDB_NEXT;
    cellar_status st = CELLAR_OK;
    for (rc = mdb_cursor_get(c, &k, &v, first); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, next)) {
        int how = visit(ctx, &k, &v, err);
        if (how < 0)
            st = err ? err->code : CELLAR_ECORRUPT;
        if (how != 0)
            break;
    }
    if (!st && rc != 0 && rc != MDB_NOTFOUND)
        st = lmdb_error(err, rc, "cannot iterate");
    mdb_cursor_close(c);
    return st;
}

typedef struct key_walk {
    cellar_key_fn fn;
    void *ctx;
} key_walk;

static int visit_key(void *ctx, const MDB_val *k, const MDB_val *v, cellar_error *err)
{
    key_walk *w = ctx;
    cellar_hash key;
    cellar_key_record rec;
    if (k->mv_size != sizeof key.bytes) {
        cellar_error_set(err, CELLAR_ECORRUPT, "a cache key is %zu bytes, not 16",
                         k->mv_size);
        return -1;
    }
    memcpy(key.bytes, k->mv_data, sizeof key.bytes);
    if (!decode_key_record(v, &rec)) {
        corrupt_key(err, &key);
        return -1;
    }
    return w->fn(w->ctx, &key, &rec) ? 1 : 0;
}

cellar_status cellar_reader_each_key(cellar_reader *r, cellar_key_fn fn, void *ctx,
                                     cellar_error *err)
{
    key_walk w = {fn, ctx};
    return walk(r, r ? r->store->keys : 0, false, visit_key, &w, err);
}

typedef struct text_walk {
    cellar_text_fn fn;
    void *ctx;
} text_walk;

static int visit_node(void *ctx, const MDB_val *k, const MDB_val *v, cellar_error *err)
{
    (void)err;
    text_walk *w = ctx;
    return w->fn(w->ctx, k->mv_data, k->mv_size, v->mv_data, v->mv_size) ? 1 : 0;
}

cellar_status cellar_reader_each_node(cellar_reader *r, cellar_text_fn fn, void *ctx,
                                      cellar_error *err)
{
    text_walk w = {fn, ctx};
    return walk(r, r ? r->store->nodes : 0, false, visit_node, &w, err);
}

typedef struct run_walk {
    cellar_run_fn fn;
    void *ctx;
} run_walk;

static int visit_run(void *ctx, const MDB_val *k, const MDB_val *v, cellar_error *err)
{
    run_walk *w = ctx;
    if (k->mv_size != 8) {
        cellar_error_set(err, CELLAR_ECORRUPT, "a run id is %zu bytes, not 8",
                         k->mv_size);
        return -1;
    }
    return w->fn(w->ctx, get_u64be(k->mv_data), v->mv_data, v->mv_size) ? 1 : 0;
}

cellar_status cellar_reader_each_run(cellar_reader *r, cellar_run_fn fn, void *ctx,
                                     cellar_error *err)
{
    run_walk w = {fn, ctx};
    return walk(r, r ? r->store->runs : 0, true, visit_run, &w, err);
}

static int visit_sum_size(void *ctx, const MDB_val *k, const MDB_val *v,
                          cellar_error *err)
{
    (void)k;
    (void)err;
    *(uint64_t *)ctx += v->mv_size; /* big values: only the size is read */
    return 0;
}

cellar_status cellar_reader_stats(cellar_reader *r, cellar_store_stats *out,
                                  cellar_error *err)
{
    if (!reader_ok(r))
        return cellar_error_set(err, CELLAR_EINVAL, "the reader is not open");
    cellar_store *s = r->store;
    MDB_dbi dbis[4] = {s->keys, s->results, s->nodes, s->runs};
    uint64_t *counts[4] = {&out->keys, &out->results, &out->nodes, &out->runs};
    memset(out, 0, sizeof *out);
    for (int i = 0; i < 4; i++) {
        MDB_stat ms;
        int rc = mdb_stat(r->txn, dbis[i], &ms);
        if (rc)
            return lmdb_error(err, rc, "cannot read database statistics");
        *counts[i] = ms.ms_entries;
    }
    MDB_envinfo info;
    mdb_env_info(s->env, &info);
    out->map_size = info.me_mapsize;
    out->last_txn = (uint64_t)mdb_txn_id(r->txn);
    int fd;
    struct stat st;
    if (mdb_env_get_fd(s->env, &fd) == 0 && fstat(fd, &st) == 0)
        out->file_bytes = (uint64_t)st.st_blocks * 512; /* the file is sparse */
    return walk(r, s->results, false, visit_sum_size, &out->result_bytes, err);
}

typedef struct verify_walk {
    cellar_store *store;
    cellar_bad_fn bad;
    void *ctx;
    uint64_t checked, corrupt;
} verify_walk;

static int visit_verify(void *ctx, const MDB_val *k, const MDB_val *v, cellar_error *err)
{
    verify_walk *w = ctx;
    cellar_hash dv = {{0}};
    cellar_error why;
    result_layout L;
    cellar_hash digest;
    cellar_status st;
    memcpy(dv.bytes, k->mv_data, k->mv_size < 16 ? k->mv_size : 16);
    w->checked++;
    if (k->mv_size != 16)
        st = cellar_error_set(&why, CELLAR_ECORRUPT, "a result key is %zu bytes, not 16",
                              k->mv_size);
    else if (!parse_result(v, &L))
        st = corrupt_layout(&dv, &why);
    else if (digest_result(w->store, &L, NULL, NULL, &digest, err) != CELLAR_OK)
        return -1;
    else
        st = check_digest(&L, &digest, &dv, &why);
    if (st) {
        w->corrupt++;
        if (w->bad)
            w->bad(w->ctx, &dv, why.message);
    }
    return 0;
}

cellar_status cellar_reader_verify(cellar_reader *r, cellar_bad_fn bad, void *ctx,
                                   uint64_t *checked, uint64_t *corrupt,
                                   cellar_error *err)
{
    verify_walk w = {r ? r->store : NULL, bad, ctx, 0, 0};
    cellar_status st = walk(r, r ? r->store->results : 0, false, visit_verify, &w, err);
    if (checked)
        *checked = w.checked;
    if (corrupt)
        *corrupt = w.corrupt;
    return st;
}

/* ---- batches ---- */

typedef struct result_op {
    cellar_hash dv;
    cellar_hash checksum;
    bool has_checksum;
    bool replace;         /* overwrite a stored value that failed to load */
    cellar_segment *segs; /* copied array; the bytes are the caller's */
    size_t nsegs;
    size_t value_size;
} result_op;

typedef struct key_op {
    cellar_hash key;
    uint8_t *rec;
    size_t len;
} key_op;

typedef struct touch_op {
    cellar_hash key;
    uint64_t last_used_ns;
} touch_op;

typedef struct node_op {
    char *name;
    size_t name_len;
    char *json;
    size_t json_len;
} node_op;

typedef struct run_op {
    char *json;
    size_t len;
    uint64_t *run_id;
    uint64_t assigned;
} run_op;

/* A growable array of one kind of operation. */
typedef struct op_list {
    void *items;
    size_t n, cap;
} op_list;

struct cellar_batch {
    op_list results, keys, touches, nodes, runs;
    uint64_t bytes; /* what the batch adds, to size a map growth */
};

static void *op_push(op_list *l, size_t elem)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 8;
        void *items = realloc(l->items, cap * elem);
        if (!items)
            return NULL;
        l->items = items;
        l->cap = cap;
    }
    return (char *)l->items + elem * l->n++;
}

cellar_batch *cellar_batch_new(void)
{
    return calloc(1, sizeof(cellar_batch));
}

static void batch_clear(cellar_batch *b)
{
    result_op *res = b->results.items;
    key_op *keys = b->keys.items;
    node_op *nodes = b->nodes.items;
    run_op *runs = b->runs.items;
    for (size_t i = 0; i < b->results.n; i++)
        free(res[i].segs);
    for (size_t i = 0; i < b->keys.n; i++)
        free(keys[i].rec);
    for (size_t i = 0; i < b->nodes.n; i++) {
        free(nodes[i].name);
        free(nodes[i].json);
    }
    for (size_t i = 0; i < b->runs.n; i++)
        free(runs[i].json);
    b->results.n = b->keys.n = b->touches.n = b->nodes.n = b->runs.n = 0;
    b->bytes = 0;
}

void cellar_batch_free(cellar_batch *b)
{
    if (!b)
        return;
    batch_clear(b);
    free(b->results.items);
    free(b->keys.items);
    free(b->touches.items);
    free(b->nodes.items);
    free(b->runs.items);
    free(b);
}

bool cellar_batch_empty(const cellar_batch *b)
{
    return !b->results.n && !b->keys.n && !b->touches.n && !b->nodes.n && !b->runs.n;
}

static cellar_status oom(cellar_error *err)
{
    return cellar_error_set(err, CELLAR_ENOMEM, "out of memory");
}

static cellar_status push_result(cellar_batch *b, const cellar_hash *data_version,
                                 const cellar_segment *segs, size_t nsegs,
                                 const cellar_hash *checksum, bool replace,
                                 cellar_error *err)
{
    if (!b || !data_version || !segs || nsegs == 0 || nsegs > MAX_SEGMENTS)
        return cellar_error_set(err, CELLAR_EINVAL, "put_result: needs 1 to %u segments",
                                MAX_SEGMENTS);
    if (checksum && !cellar_hash_equal(checksum, data_version))
        return cellar_error_set(err, CELLAR_EINVAL,
                                "put_result: the checksum must equal the data version");
    size_t total = result_header_size(nsegs);
    for (size_t i = 0; i < nsegs; i++) {
        if (!segs[i].data && segs[i].len)
            return cellar_error_set(err, CELLAR_EINVAL, "put_result: segment %zu is NULL",
                                    i);
        total += segs[i].len;
        if (total < segs[i].len || total > UINT32_MAX)
            return cellar_error_set(
                err, CELLAR_EINVAL,
                "put_result: the value exceeds LMDB's 4 GiB value limit");
    }
    result_op *op = op_push(&b->results, sizeof *op);
    if (!op)
        return oom(err);
    *op = (result_op){.dv = *data_version,
                      .nsegs = nsegs,
                      .value_size = total,
                      .has_checksum = checksum != NULL,
                      .replace = replace};
    if (checksum)
        op->checksum = *checksum;
    op->segs = malloc(nsegs * sizeof *segs);
    if (!op->segs) {
        b->results.n--;
        return oom(err);
    }
    memcpy(op->segs, segs, nsegs * sizeof *segs);
    b->bytes += total;
    return CELLAR_OK;
}

cellar_status cellar_batch_put_result(cellar_batch *b, const cellar_hash *data_version,
                                      const cellar_segment *segs, size_t nsegs,
                                      const cellar_hash *checksum, cellar_error *err)
{
    return push_result(b, data_version, segs, nsegs, checksum, false, err);
}

cellar_status cellar_batch_replace_result(cellar_batch *b,
                                          const cellar_hash *data_version,
                                          const cellar_segment *segs, size_t nsegs,
                                          const cellar_hash *checksum, cellar_error *err)
{
    return push_result(b, data_version, segs, nsegs, checksum, true, err);
}

cellar_status cellar_batch_put_key(cellar_batch *b, const cellar_hash *key,
                                   const cellar_key_record *rec, cellar_error *err)
{
    if (!b || !key || !rec || (!rec->node && rec->node_len))
        return cellar_error_set(err, CELLAR_EINVAL, "put_key: missing argument");
    key_op *op = op_push(&b->keys, sizeof *op);
    if (!op)
        return oom(err);
    op->key = *key;
    op->len = key_record_size(rec);
    op->rec = malloc(op->len);
    if (!op->rec) {
        b->keys.n--;
        return oom(err);
    }
    encode_key_record(rec, op->rec);
    b->bytes += op->len + 64;
    return CELLAR_OK;
}

cellar_status cellar_batch_touch_key(cellar_batch *b, const cellar_hash *key,
                                     uint64_t last_used_ns, cellar_error *err)
{
    if (!b || !key)
        return cellar_error_set(err, CELLAR_EINVAL, "touch_key: missing argument");
    touch_op *op = op_push(&b->touches, sizeof *op);
    if (!op)
        return oom(err);
    *op = (touch_op){*key, last_used_ns};
    b->bytes += 128;
    return CELLAR_OK;
}

cellar_status cellar_batch_put_node(cellar_batch *b, const char *node, const char *json,
                                    cellar_error *err)
{
    if (!b || !node || !json)
        return cellar_error_set(err, CELLAR_EINVAL, "put_node: missing argument");
    size_t n = strlen(node);
    /* 511 bytes is LMDB's default key size limit. */
    if (n == 0 || n > 511)
        return cellar_error_set(err, CELLAR_EINVAL,
                                "put_node: a node name must be 1 to 511 bytes");
    node_op *op = op_push(&b->nodes, sizeof *op);
    if (!op)
        return oom(err);
    *op = (node_op){strdup(node), n, strdup(json), strlen(json)};
    if (!op->name || !op->json) {
        free(op->name);
        free(op->json);
        b->nodes.n--;
        return oom(err);
    }
    b->bytes += n + op->json_len + 64;
    return CELLAR_OK;
}

cellar_status cellar_batch_add_run(cellar_batch *b, const char *json, uint64_t *run_id,
                                   cellar_error *err)
{
    if (!b || !json)
        return cellar_error_set(err, CELLAR_EINVAL, "add_run: missing argument");
    run_op *op = op_push(&b->runs, sizeof *op);
    if (!op)
        return oom(err);
    *op = (run_op){strdup(json), strlen(json), run_id, 0};
    if (!op->json) {
        b->runs.n--;
        return oom(err);
    }
    b->bytes += op->len + 64;
    return CELLAR_OK;
}

/* ---- committing ---- */

/* Returned by the apply steps for a failure that is not LMDB's; err is set.
 * LMDB's codes are large negatives and errno values positive, so -1 is free. */
#define APPLY_FAILED (-1)

/* Copies the segments into reserved space, hashing each chunk first when the
 * caller gave no checksum. */
static int fill_result(cellar_store *s, const result_op *op, uint8_t *dst,
                       cellar_error *err)
{
    memcpy(dst, RESULT_MAGIC, 4);
    dst[4] = RESULT_VERSION;
    memset(dst + 5, 0, 3);
    put_u32le(dst + 8, (uint32_t)op->nsegs);
    put_u32le(dst + 12, 0);
    uint8_t *out = dst + result_header_size(op->nsegs);
    if (!op->has_checksum)
        cellar_fingerprint_reset(s->fp);
    for (size_t i = 0; i < op->nsegs; i++) {
        const uint8_t *src = op->segs[i].data;
        size_t len = op->segs[i].len;
        put_u64le(dst + RESULT_FIXED_HEADER + 8 * i, len);
        if (op->has_checksum) {
            off_t at = len >= DIRECT_MIN ? map_offset(s, out, len) : -1;
            int fd = at >= 0 ? data_fd(s) : -1;
            if (fd < 0 || !pwrite_all(fd, src, len, at)) {
                if (len)
                    memcpy(out, src, len);
            }
        } else {
            cellar_fingerprint_begin(s->fp, seg_tag(i), len);
            for (size_t off = 0; off < len; off += COPY_CHUNK) {
                size_t n = len - off < COPY_CHUNK ? len - off : COPY_CHUNK;
                cellar_fingerprint_update(s->fp, src + off, n);
                memcpy(out + off, src + off, n);
            }
        }
        out += len;
    }
    cellar_hash sum = op->has_checksum ? op->checksum : cellar_fingerprint_digest(s->fp);
    if (!cellar_hash_equal(&sum, &op->dv)) {
        char hex[CELLAR_HASH_HEX_LEN + 1];
        cellar_hash_to_hex(&op->dv, hex);
        cellar_error_set(
            err, CELLAR_EINVAL,
            "put_result: the segments stored under %s are not its data version", hex);
        return APPLY_FAILED;
    }
    memcpy(dst + 16, sum.bytes, 16);
    return 0;
}

static int apply_result(cellar_store *s, MDB_txn *txn, const result_op *op,
                        cellar_error *err)
{
    MDB_val k = {16, (void *)op->dv.bytes}, v = {op->value_size, NULL};
    int rc = mdb_put(txn, s->results, &k, &v,
                     (op->replace ? 0 : MDB_NOOVERWRITE) | MDB_RESERVE);
    if (rc == MDB_KEYEXIST) {
        /* Content-addressed: same data version, same bytes.  Only a value
         * whose header is damaged is replaced. */
        result_layout L;
        if (parse_result(&v, &L) && L.size == op->value_size)
            return 0;
        v = (MDB_val){op->value_size, NULL};
        rc = mdb_put(txn, s->results, &k, &v, MDB_RESERVE);
    }
    return rc ? rc : fill_result(s, op, v.mv_data, err);
}

static int compare_touches(const void *a, const void *b)
{
    return memcmp(((const touch_op *)a)->key.bytes, ((const touch_op *)b)->key.bytes, 16);
}

/* Rewrites last_used_ns of each existing key.  Sorted, the touches walk the
 * B-tree in order, and the cursor's put overwrites the record where the
 * lookup found it instead of descending again. */
static int apply_touches(cellar_store *s, MDB_txn *txn, cellar_batch *b)
{
    touch_op *ops = b->touches.items;
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, s->keys, &c);
    if (rc)
        return rc;
    qsort(ops, b->touches.n, sizeof *ops, compare_touches);
    for (size_t i = 0; !rc && i < b->touches.n; i++) {
        MDB_val k = {16, ops[i].key.bytes}, v;
        cellar_key_record rec;
        rc = mdb_cursor_get(c, &k, &v, MDB_SET_KEY);
        if (rc == MDB_NOTFOUND) {
            rc = 0;
            continue;
        }
        if (rc || !decode_key_record(&v, &rec))
            continue; /* a damaged record is left for get/verify to report */
        /* Copy first: the record may sit in the map (read-only), or on a
         * dirty page that the put rewrites in place. */
        uint8_t local[1024];
        uint8_t *buf = v.mv_size <= sizeof local ? local : malloc(v.mv_size);
        if (!buf) {
            rc = ENOMEM;
            break;
        }
        memcpy(buf, v.mv_data, v.mv_size);
        put_u64le(buf + 41, ops[i].last_used_ns);
        MDB_val nv = {v.mv_size, buf};
        rc = mdb_cursor_put(c, &k, &nv, MDB_CURRENT);
        if (buf != local)
            free(buf);
    }
    mdb_cursor_close(c);
    return rc;
}

/* Time-ordered, unique ids: the wall clock, bumped past the newest id. */
static int apply_runs(cellar_store *s, MDB_txn *txn, cellar_batch *b)
{
    MDB_cursor *c;
    MDB_val k, v;
    uint64_t last = 0;
    int rc = mdb_cursor_open(txn, s->runs, &c);
    if (rc)
        return rc;
    rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
    if (rc == 0 && k.mv_size == 8)
        last = get_u64be(k.mv_data);
    mdb_cursor_close(c);
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    run_op *runs = b->runs.items;
    for (size_t i = 0; i < b->runs.n; i++) {
        uint64_t id = now_ns();
        if (id <= last)
            id = last + 1;
        last = id;
        uint8_t key[8];
        put_u64be(key, id);
        k = (MDB_val){8, key};
        v = (MDB_val){runs[i].len, runs[i].json};
        if ((rc = mdb_put(txn, s->runs, &k, &v, 0)))
            return rc;
        runs[i].assigned = id;
    }
    return 0;
}

static int apply_batch(cellar_store *s, MDB_txn *txn, cellar_batch *b, cellar_error *err)
{
    int rc = 0;
    result_op *res = b->results.items;
    key_op *keys = b->keys.items;
    node_op *nodes = b->nodes.items;
    for (size_t i = 0; !rc && i < b->results.n; i++)
        rc = apply_result(s, txn, &res[i], err);
    for (size_t i = 0; !rc && i < b->keys.n; i++) {
        MDB_val k = {16, keys[i].key.bytes}, v = {keys[i].len, keys[i].rec};
        rc = mdb_put(txn, s->keys, &k, &v, 0);
    }
    if (!rc && b->touches.n)
        rc = apply_touches(s, txn, b);
    for (size_t i = 0; !rc && i < b->nodes.n; i++) {
        MDB_val k = {nodes[i].name_len, nodes[i].name};
        MDB_val v = {nodes[i].json_len, nodes[i].json};
        rc = mdb_put(txn, s->nodes, &k, &v, 0);
    }
    if (!rc && b->runs.n)
        rc = apply_runs(s, txn, b);
    return rc;
}

/* At least double, and at least enough for the whole batch plus slack for
 * the B-tree pages it dirties. */
static int grow_map(cellar_store *s, uint64_t batch_bytes)
{
    MDB_envinfo info;
    mdb_env_info(s->env, &info);
    uint64_t cur = info.me_mapsize;
    uint64_t want = cur + batch_bytes + batch_bytes / 4 + ((uint64_t)4 << 20);
    if (want < 2 * cur)
        want = 2 * cur;
    want = (want + ((1u << 20) - 1)) & ~(uint64_t)((1u << 20) - 1);
    if (want > SIZE_MAX / 2)
        return ENOMEM;
    return set_map_size(s, want);
}

static void publish_run_ids(cellar_batch *b)
{
    run_op *runs = b->runs.items;
    for (size_t i = 0; i < b->runs.n; i++)
        if (runs[i].run_id)
            *runs[i].run_id = runs[i].assigned;
}

cellar_status cellar_store_commit(cellar_store *store, cellar_batch *b, cellar_error *err)
{
    if (store->read_only)
        return cellar_error_set(err, CELLAR_EREADONLY,
                                "the store %s was opened read-only", store->path);
    if (store->reader.active)
        return cellar_error_set(err, CELLAR_EINVAL,
                                "commit: close the store's reader first");
    if (cellar_batch_empty(b))
        return CELLAR_OK;
    for (int attempt = 0; attempt < MAX_COMMIT_ATTEMPTS; attempt++) {
        MDB_txn *txn;
        int rc = begin_txn(store, 0, &txn);
        if (rc)
            return lmdb_error(err, rc, "cannot begin a write transaction");
        rc = apply_batch(store, txn, b, err);
        if (rc)
            mdb_txn_abort(txn);
        else
            rc = mdb_txn_commit(txn);
        if (rc == 0) {
            publish_run_ids(b);
            batch_clear(b);
            return CELLAR_OK;
        }
        if (rc == APPLY_FAILED)
            return err ? err->code : CELLAR_EINVAL;
        if (rc != MDB_MAP_FULL)
            return lmdb_error(err, rc, "cannot commit");
        if ((rc = grow_map(store, b->bytes)))
            return cellar_error_set(err, CELLAR_EFULL, "the store %s cannot grow: %s",
                                    store->path, mdb_strerror(rc));
    }
    return cellar_error_set(err, CELLAR_EFULL, "the store %s is still full after growing",
                            store->path);
}
