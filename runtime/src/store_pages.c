/*
 * store_pages.c - what the store checks about LMDB's own pages, so that a
 * damaged data.mdb is found instead of crashing the process.
 *
 * LMDB 0.9 trusts its pages: it follows page numbers without comparing them
 * with the file's end (outside the map is SIGSEGV, past the file's end
 * SIGBUS) and asserts, aborting, when it adds to a damaged page.  The checks
 * here are cheap enough for the kernel's path:
 *   - env_check_file, before LMDB maps the file: both meta pages, the file
 *     size against the last page, the table of named databases, and every
 *     branch page of every tree, read with pread(2) (branch pages are about
 *     1% of a tree; leaves are only named, never read);
 *   - env_pad_file: data.mdb stays 256 KiB longer than its last page
 *     (sparse), so a garbage 16-bit node offset or key size reads zeros;
 *   - env_value_ok: a value LMDB hands out must lie in the file's pages, and a
 *     large one's overflow header must match it, before anything reads it;
 *   - env_leaf_ok: before a commit adds to a leaf page, its header and node
 *     pointers are checked, in a read snapshot (whose pages are the map's).
 * The layout constants are LMDB 0.9's (mdb.c), which the file format has
 * kept since 0.9.0.
 */
#define _GNU_SOURCE /* fallocate */
#include "store_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
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

/* One look at the file; `*txnid` gets the newest meta's transaction id (0
 * when no meta is valid). */
static bool check_once(const char *path, char *why, size_t wl, uint64_t *txnid)
{
    *txnid = 0;
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
    *txnid = mm->txnid;
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

/*
 * The check reads pages without being one of LMDB's readers, so a writer in
 * another process may reuse the pages of the snapshot it is reading (two
 * commits later) and make a sound store look damaged.  So a failure counts
 * only when it repeats on the same snapshot (the same newest txn id): a
 * store that is being written changes txn id between looks.
 */
bool env_check_file(const char *path, char *why, size_t wl)
{
    uint64_t prev = UINT64_MAX, txnid;
    for (int attempt = 0; attempt < 20; attempt++) {
        if (check_once(path, why, wl, &txnid))
            return true;
        if (txnid == prev)
            return false;
        prev = txnid;
        usleep(2000);
    }
    return false;
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
    /* Never ftruncate: another process may have written pages past what
     * this one saw, and a truncate would cut them off.  fallocate only adds
     * blocks where there are none and never shrinks the file. */
    if (st.st_size < want && (uint64_t)want <= s->map_size)
        (void)!fallocate(fd, 0, st.st_size, want - st.st_size);
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
        s->damaged = s->damaged || env_is_corruption(rc);
        return !env_is_corruption(rc);
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
