/*
 * store.h - the persistent cache: one LMDB environment in one directory.
 *
 * Named databases:
 *   results  data version (16 bytes) -> a stored value: a small header (segment
 *            count and lengths, checksum) followed by the segments (the pickle
 *            stream, then each out-of-band buffer).  The checksum is the
 *            fingerprint of the segments (fingerprint.h), i.e. the data
 *            version, and it is verified on every load.
 *   keys     cache key (16 bytes) -> key record (cellar_key_record).
 *   nodes    node name -> JSON describing the node as last run.
 *   runs     run id (8 bytes, big-endian) -> JSON lineage of one run.
 *
 * Safety: the directory is created 0700; a store that belongs to another user
 * or that group or others can write is refused (CELLAR_EUNSAFE), because
 * loading a pickle runs code.  Writes are batched: a run collects its writes in
 * a cellar_batch and commits them in one LMDB write transaction.  When the map
 * is full the commit grows it and retries.  Several processes may share a
 * store; LMDB's MVCC means readers never see a partial result.
 *
 * Threads: a cellar_store may be used from several threads only if the caller
 * serializes the calls (the extension holds the GIL).
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
    size_t initial_map_size; /* bytes; 0 means the default (1 GiB) */
    bool read_only;          /* open without creating or writing anything */
} cellar_store_options;

/*
 * Opens (creating it 0700 when missing, unless read-only) the store in `dir`.
 * `options` may be NULL for the defaults.  On success `*out` is owned by the
 * caller (cellar_store_close).  Errors: EUNSAFE (wrong owner or writable by
 * group/others; the message says which and how to fix it), ENOTFOUND (opening
 * read-only where no store exists), EREADONLY (the store cannot be opened for
 * writing), EIO, ELMDB.
 */
cellar_status cellar_store_open(const char *dir, const cellar_store_options *options,
                                cellar_store **out, cellar_error *err);
void cellar_store_close(cellar_store *store);

/* The store's directory as an absolute path, owned by the store. */
const char *cellar_store_path(const cellar_store *store);

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
 * A read snapshot (an LMDB read transaction).  Everything a reader hands out
 * (record node names, JSON text) points into the map and stays valid until
 * cellar_reader_end.  Open at most one reader per store at a time.
 */
typedef struct cellar_reader cellar_reader;

cellar_status cellar_reader_begin(cellar_store *store, cellar_reader **out,
                                  cellar_error *err);
void cellar_reader_end(cellar_reader *r);

/* CELLAR_OK and fills `*out`, or CELLAR_ENOTFOUND (err untouched) when the key
 * is absent, or ECORRUPT when the record does not parse. */
cellar_status cellar_reader_get_key(cellar_reader *r, const cellar_hash *key,
                                    cellar_key_record *out, cellar_error *err);

/* True when a result for `data_version` is stored (nothing is read). */
bool cellar_reader_has_result(cellar_reader *r, const cellar_hash *data_version);

/*
 * Loads a result.  For each segment i (0 is the pickle stream) the store calls
 * `alloc(ctx, i, nsegs, len)`, which returns a caller-owned destination of
 * `len` bytes (or NULL to abort with ENOMEM); the store copies the segment
 * there while verifying the checksum.  Returns ENOTFOUND when absent and
 * ECORRUPT when the checksum or layout is wrong: then the destinations hold
 * garbage and must be discarded.  Touched map pages are released as the copy
 * proceeds, so peak memory stays near one copy of the value.
 */
typedef void *(*cellar_alloc_fn)(void *ctx, size_t index, size_t nsegs, size_t len);
cellar_status cellar_reader_load_result(cellar_reader *r, const cellar_hash *data_version,
                                        cellar_alloc_fn alloc, void *ctx,
                                        cellar_error *err);

/* The JSON text stored for `node`; ENOTFOUND when absent. */
cellar_status cellar_reader_get_node(cellar_reader *r, const char *node,
                                     const char **json, size_t *len, cellar_error *err);

/* Iteration.  A callback returns 0 to go on, non-zero to stop early. */
typedef int (*cellar_key_fn)(void *ctx, const cellar_hash *key,
                             const cellar_key_record *rec);
typedef int (*cellar_text_fn)(void *ctx, const char *name, size_t name_len,
                              const char *json, size_t json_len);
typedef int (*cellar_run_fn)(void *ctx, uint64_t run_id, const char *json,
                             size_t json_len);
cellar_status cellar_reader_each_key(cellar_reader *r, cellar_key_fn fn, void *ctx,
                                     cellar_error *err);
cellar_status cellar_reader_each_node(cellar_reader *r, cellar_text_fn fn, void *ctx,
                                      cellar_error *err);
/* Runs newest first. */
cellar_status cellar_reader_each_run(cellar_reader *r, cellar_run_fn fn, void *ctx,
                                     cellar_error *err);

typedef struct cellar_store_stats {
    uint64_t keys, results, nodes, runs;
    uint64_t result_bytes; /* sum of stored value sizes */
    uint64_t map_size;     /* current LMDB map size */
    uint64_t file_bytes;   /* disk space data.mdb takes (the file is sparse) */
    uint64_t last_txn;     /* id of the last committed write transaction; each
                              cellar_store_commit adds exactly one */
} cellar_store_stats;

cellar_status cellar_reader_stats(cellar_reader *r, cellar_store_stats *out,
                                  cellar_error *err);

/*
 * Verifies every stored result's checksum.  For each bad one `bad(ctx, dv,
 * message)` is called (it may be NULL); `*checked` and `*corrupt` get counts.
 */
typedef void (*cellar_bad_fn)(void *ctx, const cellar_hash *data_version,
                              const char *message);
cellar_status cellar_reader_verify(cellar_reader *r, cellar_bad_fn bad, void *ctx,
                                   uint64_t *checked, uint64_t *corrupt,
                                   cellar_error *err);

/* ---- writing ---- */

/*
 * A batch of writes applied by cellar_store_commit in one write transaction.
 * Result segments are referenced, not copied: they must stay valid and
 * unchanged until the commit returns.  Everything else is copied.
 */
typedef struct cellar_batch cellar_batch;

typedef struct cellar_segment {
    const void *data;
    size_t len;
} cellar_segment;

cellar_batch *cellar_batch_new(void); /* NULL when out of memory */
void cellar_batch_free(cellar_batch *b);
bool cellar_batch_empty(const cellar_batch *b);

/*
 * Stores a value under its data version.  `checksum`, when not NULL, must be
 * the fingerprint of exactly these segments (the caller usually has it: it
 * is the data version); when NULL the store computes it.  A result already
 * stored under `data_version` is left as it is.
 */
cellar_status cellar_batch_put_result(cellar_batch *b, const cellar_hash *data_version,
                                      const cellar_segment *segs, size_t nsegs,
                                      const cellar_hash *checksum, cellar_error *err);
/*
 * Like cellar_batch_put_result, but overwrites whatever is stored under
 * `data_version`: for a result that failed its checksum on load and has just
 * been recomputed (content addressing alone would keep the damaged bytes).
 */
cellar_status cellar_batch_replace_result(cellar_batch *b,
                                          const cellar_hash *data_version,
                                          const cellar_segment *segs, size_t nsegs,
                                          const cellar_hash *checksum, cellar_error *err);
cellar_status cellar_batch_put_key(cellar_batch *b, const cellar_hash *key,
                                   const cellar_key_record *rec, cellar_error *err);
/* Updates last_used_ns of an existing key; a missing key is ignored. */
cellar_status cellar_batch_touch_key(cellar_batch *b, const cellar_hash *key,
                                     uint64_t last_used_ns, cellar_error *err);
cellar_status cellar_batch_put_node(cellar_batch *b, const char *node, const char *json,
                                    cellar_error *err);
/* Appends a run record; its id (time-ordered, unique in the store) is assigned
 * at commit and written to `*run_id` if not NULL (which must stay valid). */
cellar_status cellar_batch_add_run(cellar_batch *b, const char *json, uint64_t *run_id,
                                   cellar_error *err);

/*
 * Applies the batch in one write transaction.  On MDB_MAP_FULL the map is
 * grown and the transaction retried.  No reader of this store may be open.
 * On failure nothing from the batch is stored.  The batch can be freed or
 * reused (it is emptied) afterwards.
 */
cellar_status cellar_store_commit(cellar_store *store, cellar_batch *b,
                                  cellar_error *err);

#ifdef __cplusplus
}
#endif

#endif
