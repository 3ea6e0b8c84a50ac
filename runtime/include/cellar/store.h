/*
 * store.h - the persistent cache: an LMDB index plus blob files, in one
 * directory.
 *
 * Layout of a store directory:
 *   data.mdb, lock.mdb   the LMDB environment (the index), with the named
 *                        databases
 *     results  data version (16 bytes) -> result header: segment count, each
 *              segment's length and where it lives, the checksum, then the
 *              bytes of the segments kept inline;
 *     keys     cache key (16 bytes) -> key record (cellar_key_record);
 *     nodes    node name -> JSON describing the node as last run;
 *     runs     run id (8 bytes, big-endian) -> JSON lineage of one run;
 *     files    fingerprint of an absolute path (16 bytes) -> a file's kept
 *              content fingerprint and identity (cellar_file_record, and
 *              the path itself), for file_version.h.
 *   blobs/xx/<dv>-<i>    segment i of the result whose data version is <dv>,
 *                        when it is at least `blob_min` bytes: an immutable
 *                        file, written under blobs/tmp/ (or staged there as an
 *                        unnamed file, cellar_store_stage) and renamed into
 *                        place inside the write transaction that refers to it.
 *
 * The checksum of a result is the fingerprint of its segments
 * (fingerprint.h), i.e. its data version, so content addressing and
 * verification are the same hash.
 *
 * Safety: the directory is created 0700; a store that belongs to another user
 * or that group or others can write is refused (CELLAR_EUNSAFE), because
 * loading a pickle runs code.  A store that cannot be written opens read-only
 * (loads work, commits return CELLAR_EREADONLY), and a damaged one is renamed
 * aside and replaced by a fresh store; either way cellar_store_notice says so.
 *
 * Threads: a cellar_store may be shared by threads.  cellar_reader_begin,
 * cellar_store_commit, cellar_store_stage, cellar_stage_free and the
 * cellar_batch functions (on distinct batches) may be called from any thread
 * at the same time (stages take the store's writer thread one at a time).  A
 * cellar_reader belongs to the thread that uses it: one thread at a time,
 * though it may be handed from one thread to another between calls
 * (MDB_NOTLS).  cellar_store_open, cellar_store_close and cellar_store_verify
 * must not run while another thread uses the same store.
 *
 * Error contract: every function returning cellar_status returns CELLAR_OK or
 * an error code, and for every error code it also writes that code and a
 * message into `err` when `err` is not NULL.  The status never depends on
 * whether `err` is NULL.
 */
#ifndef CELLAR_STORE_H
#define CELLAR_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cellar/error.h"
#include "cellar/fingerprint.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cellar_store cellar_store;

typedef struct cellar_store_options {
    /* Segments of at least this many bytes are stored as blob files; 0 means
     * the default, CELLAR_BLOB_MIN_DEFAULT (see runtime/README.md for the
     * measurement behind it). */
    size_t blob_min;
    bool read_only; /* open without creating or writing anything */
    /* Bytes of LMDB map to start with; 0 means the default (1 GiB).  The map
     * grows at commit as needed; a small one is for tests of that growth. */
    size_t initial_map_size;
} cellar_store_options;

#define CELLAR_BLOB_MIN_DEFAULT ((size_t)1 << 20)

/*
 * Opens (creating it 0700 when missing, unless read-only) the store in `dir`.
 * `options` may be NULL for the defaults.  On success `*out` is owned by the
 * caller (cellar_store_close); on failure `*out` is NULL.
 *
 * Opening checks, cheaply, that data.mdb is a sound LMDB file (meta pages,
 * file size against the last page, the main database's root); it never walks
 * a database.  A store found damaged is renamed aside (data.mdb becomes
 * data.mdb.damaged-<time>) and a fresh one created; a store that cannot be
 * written is opened read-only.  Both still return CELLAR_OK, with
 * cellar_store_notice saying what happened.
 *
 * Returns CELLAR_OK; EUNSAFE (wrong owner or writable by group/others; the
 * message says which and how to fix it); ENOTFOUND (opening read-only where
 * no store exists); ECORRUPT (opening read-only a store that is damaged:
 * nothing is moved then); EIO (a system call failed); ENOMEM; ELMDB.
 */
cellar_status cellar_store_open(const char *dir, const cellar_store_options *options,
                                cellar_store **out, cellar_error *err);

/* Closes the store (syncing it when writable).  `store` may be NULL.  Every
 * reader must have ended before. */
void cellar_store_close(cellar_store *store);

/* The store's directory as an absolute path, owned by the store, valid until
 * cellar_store_close. */
const char *cellar_store_path(const cellar_store *store);

/*
 * What the user should be warned about after opening: the store was set
 * aside as damaged (naming the new path and the reason), or it is read-only,
 * or NULL when there is nothing to say.  Owned by the store, valid until
 * cellar_store_close.
 */
const char *cellar_store_notice(const cellar_store *store);

/* True when commits are refused: opened read-only, found not writable, or
 * lock.mdb was replaced under this process (see cellar_store_commit). */
bool cellar_store_read_only(const cellar_store *store);

/* ---- key records ---- */

typedef struct cellar_key_record {
    cellar_hash data_version;
    cellar_hash code_version;
    uint64_t created_ns; /* wall clock, ns since the epoch */
    uint64_t last_used_ns;
    uint64_t size;       /* bytes of the stored value */
    uint64_t compute_ns; /* how long the node took to compute */
    const char *node;    /* node name, not NUL-terminated */
    size_t node_len;
} cellar_key_record;

/* ---- reading ---- */

/*
 * A read snapshot (an LMDB read transaction) owned by one thread at a time.
 * Any number of readers may be open on one store, in any threads, while
 * another thread commits; each sees the store as of its begin.  Everything a
 * reader hands out (record node names, JSON text) points into LMDB's map and
 * stays valid until cellar_reader_end.
 */
typedef struct cellar_reader cellar_reader;

/*
 * Begins a reader; `*out` is owned by the caller until cellar_reader_end.
 * Returns CELLAR_OK; ENOMEM; EREADONLY when lock.mdb was replaced under this
 * process (the store can no longer be trusted: nothing is read); ECORRUPT
 * when data.mdb was truncated under this process; ELMDB (another process grew
 * the map while a reader of this process was open, or LMDB failed).
 */
cellar_status cellar_reader_begin(cellar_store *store, cellar_reader **out,
                                  cellar_error *err);

/* Ends and frees a reader; `r` may be NULL.  Pointers it handed out become
 * invalid.  Values loaded with cellar_reader_map_result stay valid. */
void cellar_reader_end(cellar_reader *r);

/* Returns CELLAR_OK and fills `*out` (its node points into the map);
 * ENOTFOUND when the key is absent; ECORRUPT when the record does not parse
 * or has an unknown format version; EINVAL; ELMDB. */
cellar_status cellar_reader_get_key(cellar_reader *r, const cellar_hash *key,
                                    cellar_key_record *out, cellar_error *err);

/* True when a result header for `data_version` is stored (its blobs are not
 * checked: a load may still find one missing). */
bool cellar_reader_has_result(cellar_reader *r, const cellar_hash *data_version);

/*
 * A private, copy-on-write mapping of one blob file: writable by its owner,
 * and writes never reach the file.  Owned by whoever received it, until
 * cellar_map_free, independently of readers and of the store.  A blob is
 * immutable and replaced only by rename, so the mapping never changes under
 * its owner (unless someone truncates the file by hand, which the store
 * cannot prevent).
 */
typedef struct cellar_map cellar_map;
void *cellar_map_data(const cellar_map *m);
size_t cellar_map_len(const cellar_map *m);
void cellar_map_free(cellar_map *m); /* `m` may be NULL */

/* Returns a caller-owned destination of `len` bytes for segment `index` of
 * `nsegs` (0 is the pickle stream), or NULL to abort the load (ENOMEM). */
typedef void *(*cellar_alloc_fn)(void *ctx, size_t index, size_t nsegs, size_t len);
/* Takes ownership of `map`, segment `index` of `nsegs`, in every case; returns
 * 0, or -1 to abort the load (ENOMEM). */
typedef int (*cellar_adopt_fn)(void *ctx, size_t index, size_t nsegs, cellar_map *map);

/*
 * Loads a result, segment by segment in order.  A segment kept in LMDB is
 * copied into the destination `alloc` returns; a blob segment is handed to
 * `adopt` as a mapping, or, when `adopt` is NULL, read into an `alloc`
 * destination.  With `verify`, the fingerprint of all the segments is
 * recomputed and compared with the stored checksum and `data_version`
 * before the call returns (costing one pass over the data); without it only
 * the layout is checked.
 *
 * Returns CELLAR_OK; ENOTFOUND when no result is stored, or a blob file is
 * missing; ECORRUPT when the header does not parse, a blob has the wrong
 * size or owner, or (with `verify`) the checksum is wrong; ENOMEM when a
 * callback aborted; EIO; EINVAL; ELMDB.  On any error what the callbacks
 * received holds garbage and must be discarded (mappings adopted are still
 * the callee's to free).
 */
cellar_status cellar_reader_map_result(cellar_reader *r, const cellar_hash *data_version,
                                       bool verify, cellar_alloc_fn alloc,
                                       cellar_adopt_fn adopt, void *ctx,
                                       cellar_error *err);

/* cellar_reader_map_result with verification and every segment copied. */
cellar_status cellar_reader_load_result(cellar_reader *r, const cellar_hash *data_version,
                                        cellar_alloc_fn alloc, void *ctx,
                                        cellar_error *err);

/* The JSON text stored for `node` in `*json` / `*len` (pointing into the
 * map).  Returns CELLAR_OK; ENOTFOUND when absent (or the name cannot be a
 * key); EINVAL; ELMDB. */
cellar_status cellar_reader_get_node(cellar_reader *r, const char *node,
                                     const char **json, size_t *len, cellar_error *err);

/* Iteration.  A callback returns 0 to go on, non-zero to stop early (the
 * iteration then returns CELLAR_OK).  Walks trust LMDB's leaf pages (lookups
 * are guarded, walks are not): on a store that may be damaged, run
 * cellar_store_verify first, which walks in a child process.  Each returns
 * CELLAR_OK; ECORRUPT when a record does not parse, or the walk meets more
 * entries than the store's pages can hold (a damaged B-tree leading in
 * circles; the store is then marked damaged), and iteration stops there;
 * EINVAL; ELMDB. */
typedef int (*cellar_key_fn)(void *ctx, const cellar_hash *key,
                             const cellar_key_record *rec);
typedef int (*cellar_run_fn)(void *ctx, uint64_t run_id, const char *json,
                             size_t json_len);
cellar_status cellar_reader_each_key(cellar_reader *r, cellar_key_fn fn, void *ctx,
                                     cellar_error *err);
/* Runs newest first. */
cellar_status cellar_reader_each_run(cellar_reader *r, cellar_run_fn fn, void *ctx,
                                     cellar_error *err);

typedef struct cellar_store_stats {
    uint64_t keys, results, nodes, runs; /* entries, from LMDB's counters */
    uint64_t result_bytes; /* stored bytes of the results: headers and segments */
    uint64_t blobs;        /* blob files (temporary ones and orphans included) */
    uint64_t blob_bytes;   /* their sizes, summed */
    uint64_t map_size;     /* current LMDB map size */
    uint64_t file_bytes;   /* disk space data.mdb takes */
    uint64_t last_txn;     /* id of the last committed write transaction; each
                              cellar_store_commit adds exactly one */
} cellar_store_stats;

/* Every figure, result_bytes exact: walks the results database (headers
 * only; blobs are not read).  Returns CELLAR_OK; ECORRUPT; EINVAL; ELMDB. */
cellar_status cellar_reader_stats(cellar_reader *r, cellar_store_stats *out,
                                  cellar_error *err);
/* The same without walking any database, for the kernel's path: counts from
 * LMDB's own counters, and result_bytes estimated as the results database's
 * pages plus the blob files' sizes (one stat per blob).  Returns CELLAR_OK;
 * EINVAL; ELMDB. */
cellar_status cellar_reader_counts(cellar_reader *r, cellar_store_stats *out,
                                   cellar_error *err);

/*
 * Verifies every stored result's checksum in this process (including blobs).
 * For each bad one `bad(ctx, dv, message)` is called (it may be NULL);
 * `*checked` and `*corrupt` get counts (either may be NULL).  It trusts
 * LMDB's structure: on a damaged store use cellar_store_verify, which walks
 * in a child process.  Returns CELLAR_OK (also when results are bad);
 * EINVAL; EIO; ELMDB.
 */
typedef void (*cellar_bad_fn)(void *ctx, const cellar_hash *data_version,
                              const char *message);
cellar_status cellar_reader_verify(cellar_reader *r, cellar_bad_fn bad, void *ctx,
                                   uint64_t *checked, uint64_t *corrupt,
                                   cellar_error *err);

/* ---- verifying and repairing a whole store ---- */

typedef enum cellar_problem {
    CELLAR_PROBLEM_STRUCTURE, /* LMDB's own structure: meta pages, file size,
                                 B-tree pages (the walk crashed or failed) */
    CELLAR_PROBLEM_RECORD,    /* a key, node or run record that does not parse */
    CELLAR_PROBLEM_RESULT,    /* a result whose header or checksum is wrong */
    CELLAR_PROBLEM_BLOB,      /* a blob file missing, of the wrong size or owner */
    CELLAR_PROBLEM_ORPHAN,    /* a blob or temporary file no result refers to */
} cellar_problem;

/* A stable name for a problem category ("structure", "record", ...). */
const char *cellar_problem_name(cellar_problem p);

/* Called once per problem: `where` names the database and key (as hex) or
 * the blob's path; both strings are valid during the call only. */
typedef void (*cellar_problem_fn)(void *ctx, cellar_problem kind, const char *where,
                                  const char *message);

typedef struct cellar_verify_counts {
    uint64_t records;  /* entries walked, over every database */
    uint64_t results;  /* results whose checksums were recomputed */
    uint64_t blobs;    /* blob files checked */
    uint64_t problems; /* calls made to the problem callback */
    uint64_t repaired; /* entries or files removed by a repair */
} cellar_verify_counts;

/*
 * Checks the whole store: LMDB's meta pages and file size, every database
 * walked with cursors, every record decoded, every result's checksum
 * recomputed, every blob file, and orphans.  The walk runs in a forked child
 * process, so a crash of LMDB on a damaged page (SIGSEGV, SIGBUS, an
 * assertion) is reported as a structure problem instead of killing the
 * caller.  Fork: call it from a process without other threads busy in
 * malloc (the `cellar` command is single-threaded); never from the kernel's
 * path.
 *
 * With `repair`: results and records that are damaged are deleted, orphan
 * files removed; when the structure itself is damaged the store is renamed
 * aside and replaced by a fresh one (cellar_store_notice names it).  Counts
 * go to `*counts` (may be NULL).
 *
 * Returns CELLAR_OK when the check ran (problems, if any, went to `fn`);
 * EREADONLY for a repair of a read-only store; EIO when the child could not
 * be started; ENOMEM; ELMDB when a repair failed.
 */
cellar_status cellar_store_verify(cellar_store *store, bool repair, cellar_problem_fn fn,
                                  void *ctx, cellar_verify_counts *counts,
                                  cellar_error *err);

/* ---- kept file fingerprints (file_version.h) ---- */

/* A regular file's content fingerprint with the identity it had when read. */
typedef struct cellar_file_record {
    uint64_t dev, ino, size;
    int64_t mtime_ns, ctime_ns;
    int64_t read_at_ns; /* wall clock when the read began */
    cellar_hash content;
} cellar_file_record;

/* The record kept for the absolute `path`.  Returns CELLAR_OK; ENOTFOUND;
 * ECORRUPT (a record that does not parse, or belongs to another path);
 * EINVAL; ELMDB. */
cellar_status cellar_reader_get_file(cellar_reader *r, const char *path,
                                     cellar_file_record *out, cellar_error *err);

/* ---- writing ---- */

/*
 * A batch of writes applied by cellar_store_commit in one write transaction.
 * Result segments are referenced, not copied: they must stay valid and
 * unchanged until the commit returns.  Everything else is copied.  A batch
 * belongs to one thread at a time.
 */
typedef struct cellar_batch cellar_batch;

typedef struct cellar_segment {
    const void *data;
    size_t len;
} cellar_segment;

cellar_batch *cellar_batch_new(void);    /* NULL when out of memory */
void cellar_batch_free(cellar_batch *b); /* `b` may be NULL */
bool cellar_batch_empty(const cellar_batch *b);

/*
 * Stores a value under its data version.  `checksum`, when not NULL, must be
 * the fingerprint of exactly these segments (the caller usually has it: it
 * is the data version) and is trusted; when NULL the store computes it and
 * the commit fails with EINVAL if it is not `data_version`.  A result already
 * stored under `data_version` is left as it is.  No size limit but the disk.
 * Returns CELLAR_OK; EINVAL (no segments, more than 65,536, a NULL segment, a
 * checksum that is not the data version); ENOMEM.
 */
cellar_status cellar_batch_put_result(cellar_batch *b, const cellar_hash *data_version,
                                      const cellar_segment *segs, size_t nsegs,
                                      const cellar_hash *checksum, cellar_error *err);
/*
 * Like cellar_batch_put_result, but overwrites whatever is stored under
 * `data_version`, blobs included: for a result that failed to load and has
 * just been recomputed (content addressing alone would keep the damaged
 * bytes).  Same returns.
 */
cellar_status cellar_batch_replace_result(cellar_batch *b,
                                          const cellar_hash *data_version,
                                          const cellar_segment *segs, size_t nsegs,
                                          const cellar_hash *checksum, cellar_error *err);
/* Returns CELLAR_OK; EINVAL (a NULL argument, a node name over 511 bytes);
 * ENOMEM. */
cellar_status cellar_batch_put_key(cellar_batch *b, const cellar_hash *key,
                                   const cellar_key_record *rec, cellar_error *err);
/* Updates last_used_ns of an existing key; a missing key is ignored.
 * Returns CELLAR_OK; EINVAL; ENOMEM. */
cellar_status cellar_batch_touch_key(cellar_batch *b, const cellar_hash *key,
                                     uint64_t last_used_ns, cellar_error *err);
/* Returns CELLAR_OK; EINVAL (a name of 0 or over 511 bytes); ENOMEM. */
cellar_status cellar_batch_put_node(cellar_batch *b, const char *node, const char *json,
                                    cellar_error *err);
/* Appends a run record; its id (time-ordered, unique in the store) is assigned
 * at commit and written to `*run_id` if not NULL (which must stay valid).
 * Returns CELLAR_OK; EINVAL; ENOMEM. */
cellar_status cellar_batch_add_run(cellar_batch *b, const char *json, uint64_t *run_id,
                                   cellar_error *err);

/* Keeps `rec` for the absolute `path` (replacing what was kept).  Returns
 * CELLAR_OK; EINVAL (a NULL argument, a path that is empty or over 64 KiB);
 * ENOMEM. */
cellar_status cellar_batch_put_file(cellar_batch *b, const char *path,
                                    const cellar_file_record *rec, cellar_error *err);

/*
 * Staging: computing a result's data version and writing its large segments
 * in one pass over the bytes.
 *
 * cellar_store_stage computes the data version of `segs` (the fingerprint
 * cellar_batch_put_result expects as checksum: segment 0 tagged as the
 * pickle stream, the rest as buffers) into `*data_version`.  Each segment
 * that a commit would store as a blob file is meanwhile written to an
 * unnamed file in the store: the caller's bytes are copied 1 MiB at a time
 * into private buffers, hashed there and written from there by a thread of
 * the store's, so the hash overlaps the write and the file holds exactly the
 * bytes hashed.  A later commit of a result under that data version links the
 * staged files into place instead of writing them; a stage never committed
 * leaves nothing on disk.
 *
 * Staging is best effort and never changes the data version: when `store`
 * is NULL or read-only, a segment is too small to be a blob, the filesystem
 * has no O_TMPFILE, a write fails (a full disk) or resources run short,
 * `*out` is NULL or stages fewer files (cellar_stage_files) and the commit
 * writes those blobs from the segments as usual.  `*out` (possibly NULL) is
 * owned by the caller until cellar_stage_free, which must come before
 * cellar_store_close (close releases the files; free still frees the
 * handle).  Call from any thread; `segs` are read during the call only.
 * Returns CELLAR_OK (then `*data_version` is set); EINVAL (no segments, more
 * than 65,536, a NULL segment or output); ENOMEM (`*data_version` not set).
 */
typedef struct cellar_stage cellar_stage;
cellar_status cellar_store_stage(cellar_store *store, const cellar_segment *segs,
                                 size_t nsegs, cellar_hash *data_version,
                                 cellar_stage **out, cellar_error *err);
/* Files the stage holds (0 for NULL). */
size_t cellar_stage_files(const cellar_stage *stage);
/* Drops the staged files that no commit named; `stage` may be NULL. */
void cellar_stage_free(cellar_stage *stage);

/*
 * Applies the batch in one write transaction: blob files are written (or,
 * when staged, linked) and renamed into place, then the records put, then
 * the transaction committed.
 * On MDB_MAP_FULL the map is grown and the transaction retried (growing
 * waits up to 5 s for this process's readers to end, then fails with EFULL:
 * commit with none open on this thread).  Orphans a killed writer left are swept by the next commit.
 * On failure nothing from the batch is visible (blob files it renamed into
 * place are orphans until then), the store stays usable, and the batch keeps
 * its contents; on success the batch is emptied.  Either way it can be freed.
 *
 * Returns CELLAR_OK; EREADONLY (opened read-only, not writable, or lock.mdb
 * was deleted or replaced since open: then this process stops writing);
 * EFULL (the disk, a quota or a file size limit is full, or the map cannot
 * grow); EINVAL (a checksum the store computed is not the data version);
 * EIO; ENOMEM; ECORRUPT (LMDB found the store damaged: the next open sets it
 * aside); ELMDB.
 */
cellar_status cellar_store_commit(cellar_store *store, cellar_batch *b,
                                  cellar_error *err);

#ifdef __cplusplus
}
#endif

#endif
