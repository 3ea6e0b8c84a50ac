/*
 * store_env.c - the LMDB environment under a store: opening it, the table of
 * named databases, the map size, transactions, and setting a damaged store
 * aside.
 *
 * How it works.  Before LMDB sees data.mdb, env_check_file reads its two meta
 * pages and the main database's root page with pread(2) and checks them
 * against the file's size: a truncated or scribbled file is found here, where
 * it costs a few reads, instead of as SIGBUS or an LMDB assertion later.  A
 * store that fails (or that LMDB itself calls corrupt while opening) is
 * renamed aside and a fresh one created in its place, with a notice for the
 * user.  The environment is opened MDB_NOTLS | MDB_NOSYNC, without
 * MDB_WRITEMAP: large results live in blob files, so LMDB only holds small
 * records and the map can be written through LMDB's ordinary write(2) path,
 * where a full disk is an error code, never a SIGBUS on a sparse map.
 *
 * Sync policy: MDB_NOSYNC.  Every commit still writes its pages and then its
 * meta page with write(2), and LMDB switches to the new meta only once the
 * pages are written, so a process killed at any instant leaves the previous
 * or the new snapshot, never a mix.  What is given up is durability across an
 * OS crash, where the last commits may be lost (results are checksummed, and
 * a cache can be rebuilt).  A synced commit costs 100-300 us here, which a
 * cached 1,000-node run cannot afford; cellar_store_close syncs.  Blob files
 * follow the same policy: written, renamed, not fsynced.
 *
 * The map only changes size with no transaction of this process in flight
 * (LMDB's rule), so transactions are counted under `mu`.  Growing goes
 * through mdb_env_set_mapsize; when that fails (an address-space limit), LMDB
 * has already unmapped the old map, so the environment is closed and
 * reopened at the old size: the store stays usable and the commit reports
 * EFULL.
 */
#include "store_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_MAP_SIZE ((size_t)1 << 30)
#define MIN_MAP_SIZE ((size_t)16 << 20)
#define ENV_FLAGS (MDB_NOTLS | MDB_NOSYNC)

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

const store_db_spec store_dbs[DB_COUNT] = {
    [DB_RESULTS] = {"results", 0, compare_hash_keys, false},
    [DB_KEYS] = {"keys", 0, compare_hash_keys, false},
    [DB_NODES] = {"nodes", 0, NULL, false},
    [DB_RUNS] = {"runs", 0, NULL, false},
    [DB_FILES] = {"files", 0, compare_hash_keys, true},
    [DB_JOURNAL] = {"journal", 0, NULL, true},
};

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

bool env_is_corruption(int rc)
{
    return rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND || rc == MDB_INVALID ||
           rc == MDB_VERSION_MISMATCH || rc == MDB_INCOMPATIBLE || rc == MDB_PANIC;
}

cellar_status env_error(cellar_store *s, cellar_error *err, int rc, const char *what)
{
    if (env_is_corruption(rc)) {
        s->damaged = true;
        return cellar_error_set(err, CELLAR_ECORRUPT,
                                "%s: %s (the store %s is damaged; it will be set aside)",
                                what, mdb_strerror(rc), s->path);
    }
    if (rc == MDB_MAP_FULL || rc == ENOSPC || rc == EDQUOT || rc == EFBIG)
        return cellar_error_set(err, CELLAR_EFULL,
                                "%s: %s (the disk, a quota or a file size limit is full)",
                                what, mdb_strerror(rc));
    if (rc == EACCES && s->lock_lost)
        return cellar_error_set(
            err, CELLAR_EREADONLY,
            "%s: lock.mdb of the store %s was deleted or replaced while this process "
            "held the store, so another process may be writing it unlocked; this "
            "process stops using the store (restart it to use the store again)",
            what, s->path);
    if (rc == EACCES || rc == EROFS || rc == EPERM)
        return cellar_error_set(err, CELLAR_EREADONLY, "%s: %s", what, mdb_strerror(rc));
    return cellar_error_set(err, CELLAR_ELMDB, "%s: %s", what, mdb_strerror(rc));
}

bool env_out_of_space(const cellar_store *s, uint64_t bytes)
{
    char path[PATH_MAX];
    struct stat st;
    struct statvfs vfs;
    struct rlimit rl;
    uint64_t need = bytes + ((uint64_t)1 << 20);
    snprintf(path, sizeof path, "%s/data.mdb", s->path);
    if (stat(path, &st) != 0)
        return false;
    if (getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (uint64_t)st.st_size + need > (uint64_t)rl.rlim_cur)
        return true;
    return statvfs(path, &vfs) == 0 && (uint64_t)vfs.f_bavail * vfs.f_frsize < need;
}

/* ---- opening ---- */

static int open_dbis(cellar_store *s)
{
    MDB_txn *txn;
    int rc = MDB_MAP_RESIZED;
    /* Another process may grow the map between our sizing and this begin. */
    for (int i = 0; i < 8 && rc == MDB_MAP_RESIZED; i++) {
        rc = mdb_txn_begin(s->env, NULL, s->read_only ? MDB_RDONLY : 0, &txn);
        if (rc == MDB_MAP_RESIZED && (rc = mdb_env_set_mapsize(s->env, 0)) == 0)
            rc = MDB_MAP_RESIZED;
    }
    if (rc)
        return rc;
    if ((rc = env_open_dbis(s, txn, !s->read_only))) {
        mdb_txn_abort(txn);
        return rc;
    }
    return mdb_txn_commit(txn);
}

int env_open_dbis(cellar_store *s, MDB_txn *txn, bool create)
{
    s->missing_dbs = 0;
    for (size_t i = 0; i < DB_COUNT; i++) {
        int rc = mdb_dbi_open(txn, store_dbs[i].name,
                              store_dbs[i].flags | (create ? MDB_CREATE : 0), &s->dbi[i]);
        if (rc == MDB_NOTFOUND && !create && store_dbs[i].optional) {
            /* Opened read-only, written before this database existed. */
            s->dbi[i] = 0;
            s->missing_dbs |= 1u << i;
            continue;
        }
        if (rc)
            return rc;
        if (store_dbs[i].cmp)
            mdb_set_compare(txn, s->dbi[i], store_dbs[i].cmp);
    }
    return 0;
}

/*
 * LMDB does not say where it mapped data.mdb, but a named database's record
 * is stored inline in the main database's leaf page, whose header holds its
 * page number: the map starts that many pages before the page.  Bounds on
 * values need it (env_value_ok).
 */
void env_find_map_base(cellar_store *s, MDB_txn *in)
{
    MDB_txn *txn = in;
    MDB_stat ms;
    s->map_base = NULL;
    if (mdb_env_stat(s->env, &ms) != 0 || ms.ms_psize != s->page_size ||
        (!in && mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) != 0))
        return;
    MDB_val k = {strlen(store_dbs[0].name), (void *)store_dbs[0].name}, v;
    if (mdb_get(txn, 1, &k, &v) == 0) {
        uintptr_t page = (uintptr_t)v.mv_data & ~(uintptr_t)(ms.ms_psize - 1);
        uint64_t pgno = get_u64le((const uint8_t *)page);
        if (pgno < ((uint64_t)1 << 40) && pgno * ms.ms_psize <= page)
            s->map_base = (const uint8_t *)(page - (uintptr_t)(pgno * ms.ms_psize));
    }
    if (!in)
        mdb_txn_abort(txn);
}

static uint64_t data_file_size(const cellar_store *s)
{
    char path[PATH_MAX];
    struct stat st;
    snprintf(path, sizeof path, "%s/data.mdb", s->path);
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/*
 * Opens the environment at `map_size` (at least the file's size).  When the
 * address space cannot hold that map, smaller ones are tried down to what
 * the file needs.  Returns an LMDB code or errno.
 */
static int open_env_at(cellar_store *s, size_t map_size)
{
    size_t need = (size_t)data_file_size(s);
    if (map_size < need)
        map_size = need;
    unsigned flags =
        ENV_FLAGS | (s->read_only ? MDB_RDONLY : 0) | (s->no_lock ? MDB_NOLOCK : 0);
    for (;;) {
        int rc = mdb_env_create(&s->env);
        if (!rc)
            rc = mdb_env_set_maxdbs(s->env, DB_COUNT + 4);
        if (!rc)
            rc = mdb_env_set_mapsize(s->env, map_size);
        if (!rc)
            rc = mdb_env_open(s->env, s->path, flags, 0600);
        if (!rc)
            rc = open_dbis(s);
        if (!rc) {
            s->map_size = map_size;
            env_find_map_base(s, NULL);
            return 0;
        }
        mdb_env_close(s->env);
        s->env = NULL;
        /* A read-only user cannot open lock.mdb for writing.  Read without the
         * lock table then: only a writer (who would need the write access we
         * lack) could disturb us, and results are checksummed. */
        if (s->read_only && (rc == EACCES || rc == EROFS) && !(flags & MDB_NOLOCK)) {
            flags |= MDB_NOLOCK;
            s->no_lock = true;
            continue;
        }
        if (rc == ENOMEM && map_size / 2 >= need && map_size / 2 >= MIN_MAP_SIZE) {
            map_size /= 2;
            continue;
        }
        return rc;
    }
}

static cellar_status check_open_data_file(cellar_store *s, cellar_error *err)
{
    int fd;
    struct stat st;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/data.mdb", s->path);
    if (mdb_env_get_fd(s->env, &fd) != 0 || fstat(fd, &st) != 0)
        return cellar_error_set(err, CELLAR_EIO, "cannot stat %s", path);
    return safety_check_private(&st, path, false, err);
}

static void set_notice(cellar_store *s, const char *text)
{
    free(s->notice);
    s->notice = strdup(text);
}

/* Renames data.mdb aside and removes lock.mdb (a process still holding the
 * old store sees its lock file gone and stops writing).  `*moved` gets the
 * new name. */
static cellar_status move_aside(cellar_store *s, char *moved, size_t len,
                                cellar_error *err)
{
    char from[PATH_MAX], lock[PATH_MAX], stamp[32];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    snprintf(from, sizeof from, "%s/data.mdb", s->path);
    snprintf(lock, sizeof lock, "%s/lock.mdb", s->path);
    for (int n = 0; n < 100; n++) {
        if (n)
            snprintf(moved, len, "%s/data.mdb.damaged-%s.%d", s->path, stamp, n);
        else
            snprintf(moved, len, "%s/data.mdb.damaged-%s", s->path, stamp);
        if (access(moved, F_OK) == 0)
            continue;
        if (rename(from, moved) != 0)
            return cellar_error_set(err, CELLAR_EIO, "cannot move %s aside: %s", from,
                                    strerror(errno));
        unlink(lock);
        char marker[PATH_MAX];
        blob_mark_dirty(s, marker, NULL); /* the fresh store's first commit sweeps */
        return CELLAR_OK;
    }
    return cellar_error_set(err, CELLAR_EIO, "cannot find a name to move %s to", from);
}

cellar_status env_set_aside(cellar_store *s, const char *reason, cellar_error *err)
{
    char moved[PATH_MAX + 64], text[PATH_MAX * 2 + 600];
    if (s->read_only)
        return cellar_error_set(err, CELLAR_ECORRUPT, "the store %s is damaged (%s)",
                                s->path, reason);
    if (s->env) {
        mdb_env_close(s->env);
        s->env = NULL;
    }
    cellar_status st = move_aside(s, moved, sizeof moved, err);
    if (st)
        return st;
    snprintf(text, sizeof text,
             "the store %s was damaged (%s); it was moved to %s and a fresh store "
             "started in its place",
             s->path, reason, moved);
    set_notice(s, text);
    s->damaged = false;
    s->lock_lost = false;
    int rc = open_env_at(s, DEFAULT_MAP_SIZE);
    if (rc)
        return env_error(s, err, rc, "cannot open a fresh LMDB environment");
    safety_record_lock(s);
    return CELLAR_OK;
}

static cellar_status open_or_set_aside(cellar_store *s, bool have_data, cellar_error *err)
{
    char why[512] = "", path[PATH_MAX];
    snprintf(path, sizeof path, "%s/data.mdb", s->path);
    if (have_data && !env_check_file(path, why, sizeof why)) {
        if (s->read_only)
            return cellar_error_set(err, CELLAR_ECORRUPT, "the store %s is damaged: %s",
                                    s->path, why);
        return env_set_aside(s, why, err);
    }
    int rc = open_env_at(s, s->initial_map_size);
    if (rc == 0) {
        env_pad_file(s);
        return check_open_data_file(s, err);
    }
    if (env_is_corruption(rc) && !s->read_only) {
        snprintf(why, sizeof why, "LMDB: %s", mdb_strerror(rc));
        return env_set_aside(s, why, err);
    }
    if (rc == MDB_NOTFOUND)
        return cellar_error_set(err, CELLAR_ENOTFOUND,
                                "%s is not a cellar store (a database is missing)",
                                s->path);
    if (rc == ENOENT && s->read_only)
        return cellar_error_set(err, CELLAR_ENOTFOUND, "no cellar store at %s", s->path);
    return env_error(s, err, rc, "cannot open the LMDB environment");
}

cellar_status cellar_store_open(const char *dir, const cellar_store_options *options,
                                cellar_store **out, cellar_error *err)
{
    if (!dir || !*dir || !out)
        return cellar_error_set(err, CELLAR_EINVAL, "cellar_store_open: no directory");
    *out = NULL;
    bool asked_ro = options && options->read_only, have_data = false;
    cellar_status st = safety_check_dir(dir, asked_ro, err);
    if (!st)
        st = safety_check_files(dir, &have_data, err);
    if (st)
        return st;
    if (asked_ro && !have_data)
        return cellar_error_set(err, CELLAR_ENOTFOUND,
                                "no cellar store at %s (no data.mdb)", dir);
    bool read_only = asked_ro || !safety_dir_writable(dir);
    if (read_only && !asked_ro && !have_data)
        return cellar_error_set(err, CELLAR_EREADONLY,
                                "cannot create a cellar store in %s: it is not writable",
                                dir);

    cellar_store *s = calloc(1, sizeof *s);
    if (!s)
        return cellar_error_set(err, CELLAR_ENOMEM, "out of memory");
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->idle, NULL);
    s->read_only = read_only;
    s->asked_read_only = asked_ro;
    s->page_size = (size_t)sysconf(_SC_PAGESIZE);
    s->blob_min =
        options && options->blob_min ? options->blob_min : CELLAR_BLOB_MIN_DEFAULT;
    s->initial_map_size = options && options->initial_map_size ? options->initial_map_size
                                                               : DEFAULT_MAP_SIZE;
    if (s->blob_min > INLINE_MAX)
        s->blob_min = INLINE_MAX;
    s->path = realpath(dir, NULL);
    if (!s->path) {
        st = cellar_error_set(err, CELLAR_EIO, "cannot resolve %s: %s", dir,
                              strerror(errno));
        cellar_store_close(s);
        return st;
    }
    st = open_or_set_aside(s, have_data, err);
    if (st == CELLAR_EREADONLY && !read_only && have_data) {
        /* The directory is writable but LMDB's files are not: read-only. */
        s->read_only = read_only = true;
        st = open_or_set_aside(s, have_data, err);
    }
    if (st) {
        cellar_store_close(s);
        return st;
    }
    if (read_only && !asked_ro) {
        char text[PATH_MAX + 200];
        snprintf(text, sizeof text,
                 "the store %s is not writable by you: results are loaded from it, "
                 "nothing new is stored",
                 s->path);
        set_notice(s, text);
    }
    safety_record_lock(s);
    if (!s->no_lock) {
        int dead;
        mdb_reader_check(s->env, &dead); /* free slots of killed processes */
    }
    *out = s;
    return CELLAR_OK;
}

void cellar_store_close(cellar_store *store)
{
    if (!store)
        return;
    stage_detach_all(store);
    stage_writer_free(store->writer);
    if (store->env) {
        if (!store->read_only && !store->lock_lost)
            mdb_env_sync(store->env, 1); /* durability at a calm moment */
        mdb_env_close(store->env);
    }
    pthread_cond_destroy(&store->idle);
    pthread_mutex_destroy(&store->mu);
    free(store->notice);
    free(store->path);
    free(store);
}

const char *cellar_store_path(const cellar_store *store)
{
    return store->path;
}

const char *cellar_store_notice(const cellar_store *store)
{
    return store->notice;
}

bool cellar_store_read_only(const cellar_store *store)
{
    return store->read_only || store->lock_lost;
}

/* ---- transactions and the map ---- */

/* data.mdb must still hold every page the current meta names: a file cut
 * under us would otherwise be SIGBUS on the next touch of its tail. */
static bool file_still_whole(cellar_store *s)
{
    int fd;
    struct stat st;
    MDB_envinfo info;
    MDB_stat ms;
    if (mdb_env_get_fd(s->env, &fd) != 0 || fstat(fd, &st) != 0)
        return true;
    if ((uint64_t)st.st_size < 2 * s->page_size)
        return false; /* reading the meta pages would fault */
    /* The meta first, the size second: a writer extends the file before it
     * writes the meta that names the new pages, so this order never sees a
     * committed meta beyond a file that is still being written. */
    if (mdb_env_info(s->env, &info) != 0 || mdb_env_stat(s->env, &ms) != 0 ||
        fstat(fd, &st) != 0)
        return true;
    return (uint64_t)st.st_size >= ((uint64_t)info.me_last_pgno + 1) * ms.ms_psize;
}

/* Reopens the environment at `size` (its map gone after a failed resize). */
static int reopen_at(cellar_store *s, size_t size)
{
    if (s->env)
        mdb_env_close(s->env);
    s->env = NULL;
    return open_env_at(s, size);
}

/* With `mu` held and nothing active: resize, or reopen at the old size. */
static int resize_locked(cellar_store *s, size_t size)
{
    int rc = mdb_env_set_mapsize(s->env, size);
    if (rc == 0) {
        MDB_envinfo info;
        mdb_env_info(s->env, &info);
        s->map_size = info.me_mapsize;
        env_find_map_base(s, NULL); /* the map moved */
        return 0;
    }
    size_t old = s->map_size;
    int rc2 = reopen_at(s, old);
    return rc2 ? rc2 : rc;
}

int env_txn_begin(cellar_store *s, unsigned flags, MDB_txn **txn)
{
    for (int attempt = 0; attempt < 4; attempt++) {
        pthread_mutex_lock(&s->mu);
        while (s->resizing)
            pthread_cond_wait(&s->idle, &s->mu);
        int rc = !s->env                     ? MDB_PANIC
                 : !safety_lock_unchanged(s) ? EACCES
                 : !file_still_whole(s)      ? MDB_CORRUPTED
                                             : 0;
        if (rc) {
            pthread_mutex_unlock(&s->mu);
            return rc;
        }
        s->active++;
        pthread_mutex_unlock(&s->mu);
        rc = mdb_txn_begin(s->env, NULL, flags, txn);
        if (rc != MDB_MAP_RESIZED) {
            if (rc)
                env_txn_done(s);
            return rc;
        }
        /* Another process grew the map: adopt its size, which needs every
         * transaction of this process ended. */
        pthread_mutex_lock(&s->mu);
        s->active--;
        if (s->active) {
            pthread_mutex_unlock(&s->mu);
            return MDB_MAP_RESIZED;
        }
        s->resizing = true;
        rc = resize_locked(s, 0);
        s->resizing = false;
        pthread_cond_broadcast(&s->idle);
        pthread_mutex_unlock(&s->mu);
        if (rc)
            return rc;
    }
    return MDB_MAP_RESIZED;
}

void env_txn_done(cellar_store *s)
{
    pthread_mutex_lock(&s->mu);
    s->active--;
    if (!s->active)
        pthread_cond_broadcast(&s->idle);
    pthread_mutex_unlock(&s->mu);
}

int env_grow(cellar_store *s, uint64_t extra)
{
    pthread_mutex_lock(&s->mu);
    while (s->resizing)
        pthread_cond_wait(&s->idle, &s->mu);
    s->resizing = true;
    /* Readers of other threads end soon; one held by the committing thread
     * never would, so the wait is bounded and then the commit fails. */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    int waited = 0;
    while (s->active && waited != ETIMEDOUT)
        waited = pthread_cond_timedwait(&s->idle, &s->mu, &until);
    if (s->active) {
        s->resizing = false;
        pthread_cond_broadcast(&s->idle);
        pthread_mutex_unlock(&s->mu);
        return EBUSY;
    }
    uint64_t cur = s->map_size;
    uint64_t want = cur + extra + extra / 4 + ((uint64_t)4 << 20);
    if (want < 2 * cur)
        want = 2 * cur;
    want = (want + ((1u << 20) - 1)) & ~(uint64_t)((1u << 20) - 1);
    int rc = want > SIZE_MAX / 2 ? ENOMEM : resize_locked(s, (size_t)want);
    s->resizing = false;
    pthread_cond_broadcast(&s->idle);
    pthread_mutex_unlock(&s->mu);
    return rc;
}
