/*
 * store_internal.h - what the store's files share, behind store.h.
 *
 * The store is split by concept, and calls go one way, top to bottom:
 *   store_batch.c    batches and commit (the write path)
 *   store_reader.c   readers: lookups, loads, iteration, stats
 *   store_verify.c   the whole-store check (in a child process) and repair
 *   store_gc.c       forget, code-aware garbage collection, automatic gc (gc.h)
 *   store_compact.c  the index rewritten without free pages (gc.h)
 *   store_blob.c     blob files: writing, mapping, sweeping orphans
 *   store_records.c  the store's own record formats: result headers, key records
 *   store_files.c    kept file fingerprints: their record format and lookup
 *   store_env.c      the LMDB environment: opening, the database table, map
 *                    size, transactions, setting a damaged store aside
 *   store_pages.c    checks of LMDB's own pages, so damage is found, not
 *                    crashed on
 *   store_safety.c   ownership and modes of the directory and its files, and
 *                    the lock file's identity
 * Everything here is private to those files.
 */
#ifndef CELLAR_STORE_INTERNAL_H
#define CELLAR_STORE_INTERNAL_H

#include "cellar/store.h"

#include <lmdb.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

/* ---- the database table ---- */

/* One entry per named database, in this order; adding a database (the
 * session journal, journal.c) is one entry here and one in store_dbs[]. */
enum { DB_RESULTS, DB_KEYS, DB_NODES, DB_RUNS, DB_FILES, DB_JOURNAL, DB_COUNT };

typedef struct store_db_spec {
    const char *name;
    unsigned flags;    /* mdb_dbi_open flags besides MDB_CREATE */
    MDB_cmp_func *cmp; /* key order, or NULL for LMDB's memcmp order */
    /* Added after stores existed: a store written before it and opened
     * read-only lacks it, and its dbi is then 0 (LMDB's free-page database,
     * never a named one), which its users read as empty. */
    bool optional;
} store_db_spec;

extern const store_db_spec store_dbs[DB_COUNT];

/* ---- the store handle ---- */

typedef struct stage_writer stage_writer;

struct cellar_store {
    MDB_env *env;
    MDB_dbi dbi[DB_COUNT];
    unsigned missing_dbs; /* bit i: store_dbs[i] is absent (read-only, older store) */
    char *path;   /* absolute */
    char *notice; /* what to warn about after open, or NULL */
    size_t blob_min;
    size_t page_size;
    size_t initial_map_size;
    bool read_only; /* by request or because it cannot be written */
    bool asked_read_only;
    bool no_lock; /* opened with MDB_NOLOCK (read-only users) */

    /* lock.mdb as found at open; checked before each transaction */
    dev_t lock_dev;
    ino_t lock_ino;
    bool lock_known;
    bool lock_lost; /* it changed: this process stops using the store */

    /* Transactions of this process in flight, and the map size; the map can
     * only be resized (the env reopened) when none is. */
    pthread_mutex_t mu;
    pthread_cond_t idle;
    unsigned active;
    bool resizing;
    size_t map_size;
    const uint8_t *map_base; /* where LMDB mapped data.mdb, or NULL if unknown */
    bool damaged;            /* LMDB reported corruption: set aside at the next chance */

    /* store_gc.c: the budget for automatic collection (0: none) and the
     * tally of result bytes it is checked against, under `mu`. */
    uint64_t max_size;
    uint64_t gc_tally, gc_tally_ns; /* bytes, and when last measured exactly */
    bool gc_tally_known, gc_running;
    cellar_stage *stages;    /* staged blobs not yet freed (store_stage.c), under mu */
    stage_writer *writer;    /* store_stage.c's writer thread, made on first use */
};

struct cellar_reader {
    cellar_store *store;
    MDB_txn *txn;
    cellar_fingerprint *fp;
};

/* ---- little-endian / big-endian codecs ---- */

static inline void put_u64le(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint64_t get_u64le(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static inline void put_u32le(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint32_t get_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static inline void put_u64be(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static inline uint64_t get_u64be(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* ---- store_safety.c ---- */

/* EUNSAFE unless `st` (of `path`) belongs to us and only we can write it. */
cellar_status safety_check_private(const struct stat *st, const char *path, bool is_dir,
                                   cellar_error *err);
/* Creates (unless read-only) and checks the directory.  ENOTFOUND when it is
 * missing and read-only, EIO, EUNSAFE. */
cellar_status safety_check_dir(const char *dir, bool read_only, cellar_error *err);
/* Checks data.mdb and lock.mdb when present; `*have_data` says whether
 * data.mdb exists. */
cellar_status safety_check_files(const char *dir, bool *have_data, cellar_error *err);
/* True when `dir` (and so the store) can be written by us. */
bool safety_dir_writable(const char *dir);
/* Records lock.mdb's identity now. */
void safety_record_lock(cellar_store *s);
/* False (and marks the store lock_lost) when lock.mdb is gone or another
 * file than at open. */
bool safety_lock_unchanged(cellar_store *s);

/* ---- store_env.c ---- */

/* True for the LMDB codes that mean the file is damaged. */
bool env_is_corruption(int rc);
/* A status for an LMDB return code: ECORRUPT for corruption (and marks the
 * store damaged), EFULL for a full map or disk, ELMDB otherwise. */
cellar_status env_error(cellar_store *s, cellar_error *err, int rc, const char *what);
/* Opens every named database of the table into s->dbi, creating the missing
 * ones when `create`; otherwise a missing one is marked in s->missing_dbs
 * (test with db_missing) and must not be used.  LMDB codes. */
int env_open_dbis(cellar_store *s, MDB_txn *txn, bool create);
static inline bool db_missing(const cellar_store *s, int db)
{
    return s->missing_dbs >> db & 1u;
}
/* Begins a transaction of this process (counted in s->active); on MDB_MAP_RESIZED
 * adopts the grown size when nothing else is active.  LMDB codes. */
int env_txn_begin(cellar_store *s, unsigned flags, MDB_txn **txn);
/* Ends the count that env_txn_begin took (after commit, abort or reset). */
void env_txn_done(cellar_store *s);
/* Grows the map to hold at least `extra` more bytes: waits until no
 * transaction of this process is active, reopens the environment with the
 * larger size, and on failure reopens it at the old size.  LMDB codes or
 * errno (ENOMEM when the address space is exhausted). */
int env_grow(cellar_store *s, uint64_t extra);
/* Moves data.mdb (and lock.mdb) aside and opens a fresh environment; the
 * notice names the new path and `reason`.  Needs no active transaction. */
cellar_status env_set_aside(cellar_store *s, const char *reason, cellar_error *err);
/* (store_pages.c) Reads the meta pages of `path` (data.mdb) and checks them against the
 * file size.  True and `*why` untouched when sound, else false with a reason. */
bool env_check_file(const char *path, char *why, size_t why_len);
uint64_t now_ns(void);
/* Finds where LMDB mapped data.mdb into s->map_base (after any (re)map). */
void env_find_map_base(cellar_store *s, MDB_txn *txn_or_null);
/* (store_pages.c) Keeps data.mdb a margin longer than its last page (see store_env.c). */
void env_pad_file(cellar_store *s);
/* (store_pages.c) False (and marks the store damaged) when a value LMDB returned cannot
 * be where it claims: it must lie in the file's pages, and a large value's overflow page
 * header must match it.  Call before touching the bytes of a value, in read transactions
 * only (a write transaction's dirty pages are outside the map). */
bool env_value_ok(cellar_store *s, const MDB_val *v);
/* (store_pages.c) False (and marks the store damaged) when the leaf page where `key`
 * would go is damaged: LMDB asserts, aborting the process, when it adds to one. Call
 * inside a write transaction before each put. */
bool env_leaf_ok(cellar_store *s, MDB_txn *txn, MDB_dbi dbi, const MDB_val *key);
/* True when `bytes` more would not fit data.mdb: the file size limit
 * (RLIMIT_FSIZE) or the free space of its filesystem. */
bool env_out_of_space(const cellar_store *s, uint64_t bytes);

/* ---- store_records.c ---- */

#define MAX_SEGMENTS 65536u
/* Inline segments of one result stay under this total (the rest become
 * blobs), so a result header that claims more is damaged: it is refused
 * before its bytes are touched, which could lie past the end of the file. */
#define INLINE_MAX ((size_t)64 << 20)
#define RESULT_VALUE_MAX (INLINE_MAX + 32 + 16 * (size_t)MAX_SEGMENTS)

/* Where a segment of a stored result lives. */
typedef struct result_layout {
    size_t nsegs;
    const uint8_t *entries;  /* nsegs entries of the segment table */
    const uint8_t *checksum; /* 16 bytes */
    const uint8_t *inline_data;
    size_t inline_len;
    int version;
} result_layout;

typedef struct seg_info {
    uint64_t len;
    bool blob;
    const uint8_t *data; /* inline segments: the bytes (in the map) */
} seg_info;

/* Bytes of a result header of `nsegs` segments (before inline data). */
size_t record_result_header_size(size_t nsegs);
/* Writes the header: the segment table of `nsegs` (lengths, and which are
 * blobs) and the checksum.  `out` has record_result_header_size bytes. */
void record_result_encode(uint8_t *out, size_t nsegs, const cellar_segment *segs,
                          const bool *blob, const cellar_hash *checksum);
/* Parses and bounds-checks a stored result; false when it does not parse. */
bool record_result_parse(const void *data, size_t len, result_layout *L);
/* Segment i of a parsed result (i < L->nsegs); inline data pointers are
 * computed in order, so call with i = 0, 1, ... or use record_result_segs. */
void record_result_segs(const result_layout *L, seg_info *out);
size_t record_key_size(const cellar_key_record *rec);
void record_key_encode(const cellar_key_record *rec, uint8_t *out);
/* False when the record does not parse or has an unknown version. */
bool record_key_decode(const void *data, size_t len, cellar_key_record *out);
/* Offset of last_used_ns inside an encoded key record. */
#define KEY_RECORD_LAST_USED 41

/* ---- store_files.c ---- */

/* The files database's key for an absolute path: its XXH3-128. */
cellar_hash record_file_key(const char *path, size_t len);
/* Bytes of the encoded record of a path of `path_len` bytes. */
size_t record_file_size(size_t path_len);
void record_file_encode(const cellar_file_record *rec, const char *path, size_t path_len,
                        uint8_t *out);
/* False when the record does not parse or has an unknown version; else
 * `*path` (into `data`, not NUL-terminated) and `*path_len` name the path the
 * record is of, which the caller compares with the one it looked up. */
bool record_file_decode(const void *data, size_t len, cellar_file_record *out,
                        const char **path, size_t *path_len);

/* ---- store_blob.c ---- */

/* Which of `nsegs` segments become blobs: those of at least blob_min bytes,
 * and any that would take the inline total past INLINE_MAX. */
void blob_choose(const cellar_store *s, const cellar_segment *segs, size_t nsegs,
                 bool *blob);
/* write(2) of all `len` bytes (EINTR and short writes handled); false with
 * errno set (ENOSPC for a write that wrote nothing). */
bool blob_write_all(int fd, const void *data, size_t len);
/* store/blobs/xx/<dv>-<i> into `out` (PATH_MAX bytes). */
void blob_path(const cellar_store *s, const cellar_hash *dv, size_t index, char *out);
/* Writes `len` bytes to a temporary file and renames it into the blob's
 * place (unless a blob of that size is there and !replace).  EFULL on
 * ENOSPC / EDQUOT / EFBIG, EIO otherwise. */
cellar_status blob_write(cellar_store *s, const cellar_hash *dv, size_t index,
                         const void *data, size_t len, bool replace, cellar_error *err);
/* Maps blob `index` of `dv`, checking its owner and size `len`.  ENOTFOUND
 * when missing, ECORRUPT when of the wrong size, EUNSAFE, EIO. */
cellar_status blob_map(const cellar_store *s, const cellar_hash *dv, size_t index,
                       uint64_t len, cellar_map **out, cellar_error *err);
/* Reads the blob into `dst`, `len` bytes; same errors as blob_map. */
cellar_status blob_read(const cellar_store *s, const cellar_hash *dv, size_t index,
                        uint64_t len, void *dst, cellar_error *err);
/* Sweep markers: a writer makes one (named into `marker`, PATH_MAX bytes)
 * before it creates blob files and removes it after its commit; one found by
 * the next writer means a writer may have died mid-commit. */
cellar_status blob_mark_dirty(cellar_store *s, char *marker, cellar_error *err);
void blob_unmark(const char *marker);
bool blob_is_dirty(const cellar_store *s);
void blob_clear_markers(const cellar_store *s);
/* Removes every blob and temporary file that no result in `txn` refers to.
 * Only safe inside a write transaction (no other writer is mid-commit).
 * Returns the number removed; `fn` (may be NULL) hears of each. */
uint64_t blob_sweep(cellar_store *s, MDB_txn *txn, bool remove, cellar_problem_fn fn,
                    void *ctx);
/* Blob files and their total size, by walking blobs/ (no LMDB). */
void blob_totals(const cellar_store *s, uint64_t *count, uint64_t *bytes);
/* Parses a blob file name "<32 hex>-<index>". */
bool blob_parse_name(const char *name, cellar_hash *dv, size_t *index);

/* ---- store_gc.c ---- */

/* After a successful commit that added `added` bytes of results: collects
 * when the store has a budget and the results are over it (gc.h). */
void gc_after_commit(cellar_store *s, uint64_t added);
/* ---- store_stage.c ---- */

/* A new descriptor (the caller closes it) of the staged file holding segment
 * `index` of `dv`, `len` bytes, or -1 when none is staged. */
int stage_find(cellar_store *s, const cellar_hash *dv, size_t index, uint64_t len);
/* Gives the unnamed file `fd` the name `path` (which must not exist). */
bool stage_link(int fd, const char *path);
/* At close: closes every stage's files and detaches it from the store, so
 * a later cellar_stage_free touches only the stage. */
void stage_detach_all(cellar_store *s);
/* At close: stops the writer thread and frees its buffers (NULL: nothing). */
void stage_writer_free(stage_writer *w);

/* ---- store_reader.c ---- */

/* Recomputes the fingerprint of a parsed result (blobs read from their
 * files) into `*digest`; ENOTFOUND / ECORRUPT / EIO for bad blobs. */
cellar_status reader_digest(cellar_reader *r, const cellar_hash *dv,
                            const result_layout *L, cellar_hash *digest,
                            cellar_error *err);

#endif
