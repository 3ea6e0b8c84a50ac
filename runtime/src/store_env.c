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
    [DB_RESULTS] = {"results", 0, compare_hash_keys},
    [DB_KEYS] = {"keys", 0, compare_hash_keys},
    [DB_NODES] = {"nodes", 0, NULL},
    [DB_RUNS] = {"runs", 0, NULL},
};

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static bool is_corruption(int rc)
{
    return rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND || rc == MDB_INVALID ||
           rc == MDB_VERSION_MISMATCH || rc == MDB_INCOMPATIBLE || rc == MDB_PANIC;
}

cellar_status env_error(cellar_store *s, cellar_error *err, int rc, const char *what)
{
    if (is_corruption(rc)) {
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

/* ---- checking data.mdb before LMDB maps it ---- */

/* LMDB 0.9's on-disk layout (mdb.c): a 16-byte page header (pgno, pad,
 * flags, lower, upper), then on a meta page the MDB_meta: magic, version,
 * address, map size, two MDB_db (48 bytes each), last page, txn id. */
#define PAGEHDRSZ 16
#define P_BRANCH 0x01
#define P_LEAF 0x02
#define P_META 0x08
#define MDB_MAGIC 0xBEEFC0DEu
#define META_DB(i) (40 + 48 * (i))
#define DB_ROOT 40
#define META_LAST_PG 136
#define META_TXNID 144
#define F_SUBDATA 0x02
#define P_INVALID (~(uint64_t)0)

typedef struct meta_view {
    uint32_t psize;
    unsigned free_depth;
    uint64_t last_pg, txnid, free_root, main_root;
} meta_view;

static bool read_at(int fd, void *buf, size_t len, off_t at)
{
    uint8_t *p = buf;
    while (len) {
        ssize_t n = pread(fd, p, len, at);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
        at += n;
    }
    return true;
}

static bool parse_meta(const uint8_t *p, meta_view *m)
{
    if ((p[10] | p[11] << 8) != P_META || get_u32le(p + 16) != MDB_MAGIC ||
        get_u32le(p + 20) != 1)
        return false;
    m->psize = get_u32le(p + META_DB(0));
    m->last_pg = get_u64le(p + META_LAST_PG);
    m->txnid = get_u64le(p + META_TXNID);
    m->free_root = get_u64le(p + META_DB(0) + DB_ROOT);
    m->free_depth = p[META_DB(0) + 6] | p[META_DB(0) + 7] << 8;
    m->main_root = get_u64le(p + META_DB(1) + DB_ROOT);
    return m->psize >= 512 && m->psize <= 65536 && !(m->psize & (m->psize - 1));
}

/* A B-tree page header that says what a page at `pgno` must say. */
static bool page_header_ok(const uint8_t *p, uint64_t pgno, uint32_t psize)
{
    unsigned flags = p[10] | p[11] << 8, lower = p[12] | p[13] << 8,
             upper = p[14] | p[15] << 8;
    return get_u64le(p) == pgno && (flags & (P_BRANCH | P_LEAF)) &&
           !((flags & P_BRANCH) && (flags & P_LEAF)) && lower >= PAGEHDRSZ &&
           lower <= upper && upper <= psize;
}

/*
 * LMDB 0.9 follows a branch page's child page numbers without comparing them
 * with the file's end, so one garbage number sends it outside the map
 * (SIGSEGV).  Branch pages are about 1% of a tree, so opening walks them all
 * with pread and checks that every child is a page of the file, whose header
 * names it; leaves are only named, never read.  Beyond TREE_BUDGET pages the
 * rest is left unchecked (the cost must stay small on the kernel's path).
 */
#define TREE_BUDGET 4096

/* LMDB tells branch from leaf by the page's flags, not the tree's depth, so
 * every child's header is read (16 bytes) and branches are followed. */
static bool tree_ok(int fd, const meta_view *m, uint64_t pgno, unsigned depth,
                    uint8_t *page, size_t *budget)
{
    (void)depth;
    if (pgno == P_INVALID)
        return true;
    if (pgno > m->last_pg || pgno < 2)
        return false;
    if (*budget == 0)
        return true;
    (*budget)--;
    if (!read_at(fd, page, PAGEHDRSZ, (off_t)(pgno * m->psize)) ||
        !page_header_ok(page, pgno, m->psize))
        return false;
    unsigned flags = page[10] | page[11] << 8;
    if (!(flags & P_BRANCH))
        return true; /* a leaf: LMDB reads no page number from it */
    if (!read_at(fd, page, m->psize, (off_t)(pgno * m->psize)))
        return false;
    unsigned lower = page[12] | page[13] << 8;
    size_t n = (lower - PAGEHDRSZ) / 2;
    uint64_t *children = malloc(n * sizeof *children + 1);
    if (!children)
        return true;
    bool ok = true;
    for (size_t i = 0; ok && i < n; i++) {
        unsigned off = page[PAGEHDRSZ + 2 * i] | page[PAGEHDRSZ + 2 * i + 1] << 8;
        if (off + 8 > m->psize) {
            ok = false;
            break;
        }
        const uint8_t *node = page + off;
        children[i] = (uint64_t)(node[0] | node[1] << 8 | node[2] << 16) |
                      (uint64_t)node[3] << 24 | (uint64_t)(node[4] | node[5] << 8) << 32;
        ok = children[i] <= m->last_pg && children[i] >= 2;
    }
    uint8_t *child = ok ? malloc(m->psize) : NULL;
    for (size_t i = 0; ok && child && i < n; i++)
        ok = tree_ok(fd, m, children[i], depth - 1, child, budget);
    free(child);
    free(children);
    return ok;
}

/* The named databases' records in the main database's root (a leaf while
 * there are few databases): each tree must be in the file and sound. */
static bool main_root_ok(int fd, const meta_view *m, uint8_t *page, char *why, size_t wl)
{
    if (m->main_root == P_INVALID)
        return true;
    if (!read_at(fd, page, m->psize, (off_t)(m->main_root * m->psize)) ||
        !page_header_ok(page, m->main_root, m->psize)) {
        snprintf(why, wl, "the main database's root page %llu is damaged",
                 (unsigned long long)m->main_root);
        return false;
    }
    unsigned flags = page[10] | page[11] << 8, lower = page[12] | page[13] << 8;
    if (!(flags & P_LEAF))
        return true;
    size_t n = (lower - PAGEHDRSZ) / 2;
    uint8_t sub[PAGEHDRSZ];
    for (size_t i = 0; i < n; i++) {
        unsigned off = page[PAGEHDRSZ + 2 * i] | page[PAGEHDRSZ + 2 * i + 1] << 8;
        if (off + 8 > m->psize)
            goto bad;
        const uint8_t *node = page + off;
        unsigned dsize = node[0] | node[1] << 8 | node[2] << 16 | node[3] << 24;
        unsigned nflags = node[4] | node[5] << 8, ksize = node[6] | node[7] << 8;
        if (off + 8 + ksize + ((nflags & F_SUBDATA) ? 48u : 0u) > m->psize)
            goto bad;
        if (!(nflags & F_SUBDATA))
            continue;
        if (dsize != 48)
            goto bad;
        uint64_t root = get_u64le(node + 8 + ksize + DB_ROOT);
        unsigned depth = node[8 + ksize + 6] | node[8 + ksize + 7] << 8;
        if (root == P_INVALID)
            continue;
        if (root > m->last_pg ||
            !read_at(fd, sub, sizeof sub, (off_t)(root * m->psize)) ||
            get_u64le(sub) != root || !((sub[10] | sub[11] << 8) & (P_BRANCH | P_LEAF)))
            goto bad;
        size_t budget = TREE_BUDGET;
        uint8_t *scratch = malloc(m->psize);
        bool ok = !scratch || tree_ok(fd, m, root, depth, scratch, &budget);
        free(scratch);
        if (!ok) {
            snprintf(why, wl, "a branch page of the '%.*s' database is damaged",
                     (int)(ksize < 64 ? ksize : 64), (const char *)node + 8);
            return false;
        }
    }
    return true;
bad:
    snprintf(why, wl, "the table of named databases (page %llu) is damaged",
             (unsigned long long)m->main_root);
    return false;
}

bool env_check_file(const char *path, char *why, size_t wl)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(why, wl, "cannot read %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return errno == ENOENT;
    }
    uint8_t *page = malloc(65536 * 2);
    meta_view m[2];
    bool ok = false, valid[2] = {false, false};
    if (!page) {
        close(fd); /* no memory to check with: let LMDB decide */
        return true;
    }
    if (st.st_size < 2 * 512) {
        snprintf(why, wl, "data.mdb is truncated (%lld bytes)", (long long)st.st_size);
        goto done;
    }
    /* The first meta tells the page size; the second sits one page later. */
    if (!read_at(fd, page, 4096 < st.st_size ? 4096 : (size_t)st.st_size, 0))
        goto unreadable;
    valid[0] = parse_meta(page, &m[0]);
    uint32_t psize = valid[0] ? m[0].psize : 4096;
    if ((off_t)psize * 2 > st.st_size) {
        snprintf(why, wl, "data.mdb is truncated (%lld bytes)", (long long)st.st_size);
        goto done;
    }
    if (!read_at(fd, page, 4096, (off_t)psize))
        goto unreadable;
    valid[1] = parse_meta(page, &m[1]) && (!valid[0] || m[1].psize == psize);
    if (!valid[0] && !valid[1]) {
        snprintf(why, wl, "neither meta page of data.mdb is valid");
        goto done;
    }
    /* LMDB uses the meta with the larger txn id: check that one, and require
     * the other to be valid too unless it was never written. */
    int cur = !valid[0] ? 1 : !valid[1] ? 0 : m[1].txnid > m[0].txnid;
    const meta_view *mm = &m[cur];
    if (!valid[!cur] && mm->txnid > 1) {
        snprintf(why, wl, "meta page %d of data.mdb is damaged", !cur);
        goto done;
    }
    if ((uint64_t)st.st_size < (mm->last_pg + 1) * mm->psize) {
        snprintf(why, wl,
                 "data.mdb is truncated: %lld bytes, but its last page %llu ends at %llu",
                 (long long)st.st_size, (unsigned long long)mm->last_pg,
                 (unsigned long long)((mm->last_pg + 1) * mm->psize));
        goto done;
    }
    if ((mm->free_root != P_INVALID && mm->free_root > mm->last_pg) ||
        (mm->main_root != P_INVALID && mm->main_root > mm->last_pg)) {
        snprintf(why, wl, "a meta page of data.mdb points past the last page");
        goto done;
    }
    ok = main_root_ok(fd, mm, page, why, wl);
    size_t budget = TREE_BUDGET;
    if (ok && !tree_ok(fd, mm, mm->free_root, mm->free_depth, page, &budget)) {
        snprintf(why, wl, "a branch page of the free-page list is damaged");
        ok = false;
    }
    goto done;
unreadable:
    snprintf(why, wl, "cannot read data.mdb: %s", strerror(errno ? errno : EIO));
done:
    free(page);
    close(fd);
    return ok;
}

/* ---- opening ---- */

static int open_dbis(cellar_store *s)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, s->read_only ? MDB_RDONLY : 0, &txn);
    if (rc)
        return rc;
    for (size_t i = 0; i < DB_COUNT; i++) {
        rc = mdb_dbi_open(txn, store_dbs[i].name,
                          store_dbs[i].flags | (s->read_only ? 0 : MDB_CREATE),
                          &s->dbi[i]);
        if (rc) {
            mdb_txn_abort(txn);
            return rc;
        }
        if (store_dbs[i].cmp)
            mdb_set_compare(txn, s->dbi[i], store_dbs[i].cmp);
    }
    return mdb_txn_commit(txn);
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
    if (is_corruption(rc) && !s->read_only) {
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

/* ---- guarding reads of damaged pages ---- */

/*
 * A damaged page can make LMDB read up to ~128 KiB past the page it is on
 * (16-bit node offsets and key sizes), which past the end of data.mdb is
 * SIGBUS.  So a writable store keeps the file at least PAD_BYTES longer than
 * its last page: the sparse tail costs no disk, and a garbage offset then
 * reads zeros instead of faulting.  Checked after each commit (one fstat).
 */
#define PAD_BYTES ((off_t)256 << 10)

void env_pad_file(cellar_store *s)
{
    int fd;
    struct stat st;
    MDB_envinfo info;
    MDB_stat ms;
    if (s->read_only || !s->env || mdb_env_get_fd(s->env, &fd) != 0 ||
        mdb_env_info(s->env, &info) != 0 || mdb_env_stat(s->env, &ms) != 0 ||
        fstat(fd, &st) != 0)
        return;
    off_t want = (off_t)(info.me_last_pgno + 1) * ms.ms_psize + PAD_BYTES;
    if (st.st_size < want && (uint64_t)want <= s->map_size)
        (void)!ftruncate(fd, want);
}

bool env_value_ok(cellar_store *s, const MDB_val *v)
{
    MDB_stat ms;
    MDB_envinfo info;
    if (mdb_env_stat(s->env, &ms) != 0 || mdb_env_info(s->env, &info) != 0)
        return false;
    /* A garbage overflow page number gives a pointer anywhere: it must lie
     * in the pages of the file before anything is read through it. */
    if (s->map_base) {
        const uint8_t *p = v->mv_data, *lo = s->map_base + 2 * ms.ms_psize;
        const uint8_t *end = s->map_base + (info.me_last_pgno + 1) * ms.ms_psize;
        if (p < lo || p > end || v->mv_size > (size_t)(end - p)) {
            s->damaged = true;
            return false;
        }
    }
    if (v->mv_size < ms.ms_psize / 2)
        return true; /* inside its leaf page; the padding covers garbage */
    const uint8_t *hdr = (const uint8_t *)v->mv_data - 16;
    unsigned flags = hdr[10] | hdr[11] << 8;
    uint64_t pages = get_u32le(hdr + 12), pgno = get_u64le(hdr);
    uint64_t need = (v->mv_size + 16 + ms.ms_psize - 1) / ms.ms_psize;
    if (!(flags & 0x04) || pages != need || pgno + pages > info.me_last_pgno + 1) {
        s->damaged = true;
        return false;
    }
    return true;
}

/* A leaf page header (and its node pointers) that LMDB can add to without
 * tripping an assertion. */
static bool leaf_page_ok(const uint8_t *p, size_t psize)
{
    unsigned flags = p[10] | p[11] << 8, lower = p[12] | p[13] << 8,
             upper = p[14] | p[15] << 8;
    if (!(flags & P_LEAF) || (flags & P_BRANCH) || lower < PAGEHDRSZ || lower > upper ||
        upper > psize)
        return false;
    for (unsigned i = PAGEHDRSZ; i + 1 < lower; i += 2) {
        unsigned off = p[i] | p[i + 1] << 8;
        if (off < upper || off + 8 > psize)
            return false;
    }
    return true;
}

bool env_leaf_ok(cellar_store *s, MDB_txn *txn, MDB_dbi dbi, const MDB_val *key)
{
    MDB_cursor *c;
    MDB_val k = *key, v;
    MDB_stat ms;
    if (mdb_env_stat(s->env, &ms) != 0 || ms.ms_psize != s->page_size ||
        mdb_cursor_open(txn, dbi, &c) != 0)
        return true; /* pages not aligned to the OS page: cannot tell */
    /* The new key goes into the page of the next key or of the one before
     * it (at a page boundary LMDB picks the earlier page): check both. */
    const uint8_t *pages[2] = {NULL, NULL};
    int rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    if (rc == 0) {
        pages[0] = k.mv_data;
        rc = mdb_cursor_get(c, &k, &v, MDB_PREV);
    } else if (rc == MDB_NOTFOUND) {
        rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
    }
    if (rc == 0)
        pages[1] = k.mv_data;
    mdb_cursor_close(c);
    if (rc && rc != MDB_NOTFOUND) {
        s->damaged = s->damaged || is_corruption(rc);
        return !is_corruption(rc);
    }
    for (int i = 0; i < 2; i++) {
        /* A key lives in its leaf page, and the map is page-aligned. */
        uintptr_t at = (uintptr_t)pages[i] & ~(uintptr_t)(ms.ms_psize - 1);
        if (pages[i] && !leaf_page_ok((const uint8_t *)at, ms.ms_psize)) {
            s->damaged = true;
            return false;
        }
    }
    return true;
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
    while (s->active)
        pthread_cond_wait(&s->idle, &s->mu);
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
