/*
 * gc.h - a store that manages its size: forgetting nodes, code-aware garbage
 * collection under a byte budget, and compacting the index.
 *
 * What gc keeps.  For each node, the keys of its CELLAR_GC_KEEP_DEFAULT (3)
 * most recent code versions (a version's recency is the newest last-used or
 * created time of its keys), so that an edit reverted later still hits.  It
 * drops: keys of older code versions; keys of nodes that no longer exist
 * (nodes with no node record in the store and not named in `live`); keys
 * whose result is missing; results that no remaining key refers to.  Then,
 * while the results still take more than `max_size` bytes, it evicts keys
 * least recently used first, and with each the result when no other key
 * refers to it.  Sizes are the bytes of the stored results (headers, inline
 * segments and blob files: `result_bytes` of cellar_store_stats); data.mdb
 * keeps its size and reuses the freed pages until cellar_store_compact.
 *
 * Safety.  The plan and the deletes run in one LMDB write transaction, so no
 * other writer can slip a key in between.  Blob files of dropped results are
 * unlinked after that commit, under the writer lock again (a later writer
 * may have stored the same content), the way orphans are swept
 * (store_blob.c); a sweep marker set before the commit has the next writer
 * remove them if this process is killed in between.  Nothing a running kernel holds is
 * lost: a value it has in memory or mapped (MAP_PRIVATE keeps an unlinked file's pages)
 * stays valid; a result dropped between its plan and its load is missing when loaded, and
 * is recomputed.
 *
 * Threads and errors follow store.h: these may run while other threads use
 * the store, except cellar_store_compact, which opens the store itself and
 * refuses when any other process has it open.
 */
#ifndef CELLAR_GC_H
#define CELLAR_GC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cellar/error.h"
#include "cellar/store.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CELLAR_GC_KEEP_DEFAULT 3u

typedef struct cellar_gc_options {
    unsigned keep;     /* code versions kept per node; 0 means CELLAR_GC_KEEP_DEFAULT */
    uint64_t max_size; /* the byte budget of the results; 0 means none */
    /* Node names that exist beside those with a node record (the notebook's
     * live registry); borrowed for the call.  May be NULL when nlive is 0. */
    const char *const *live;
    size_t nlive;
    bool dry_run; /* plan and count only */
} cellar_gc_options;

/* What a collection dropped (or, in a dry run, would drop). */
typedef struct cellar_gc_report {
    uint64_t keys;          /* keys dropped, in all: */
    uint64_t keys_old;      /*   of code versions beyond `keep` */
    uint64_t keys_gone;     /*   of nodes that no longer exist (or forgotten) */
    uint64_t keys_dangling; /*   whose result was missing */
    uint64_t keys_evicted;  /*   evicted for the budget, least recently used first */
    uint64_t results;       /* results dropped */
    uint64_t freed_bytes;   /* their bytes */
    uint64_t blobs_removed; /* blob files unlinked (0 in a dry run) */
    uint64_t size_before;   /* bytes of results before */
    uint64_t size_after;    /* and after */
    uint64_t keys_kept, results_kept;
} cellar_gc_report;

/*
 * Collects garbage in `store` as the header says.  `options` may be NULL for
 * the defaults (keep 3, no budget); `report` may be NULL.  Returns CELLAR_OK
 * (also when nothing was dropped); EREADONLY (a read-only store, unless
 * dry_run); EFULL (the map could not grow for the deletes); ECORRUPT (a key
 * or result record does not parse: run cellar verify --repair); ENOMEM; ELMDB.
 */
cellar_status cellar_store_gc(cellar_store *store, const cellar_gc_options *options,
                              cellar_gc_report *report, cellar_error *err);

/* The same plan in a read snapshot, never writing (for `cellar stats`). */
cellar_status cellar_reader_gc_plan(cellar_reader *r, const cellar_gc_options *options,
                                    cellar_gc_report *report, cellar_error *err);

/*
 * Drops every key of the `n` nodes named (borrowed NUL-terminated names),
 * their node records, and the results no other key refers to; blob files go
 * as in cellar_store_gc.  A name the store does not know is no error (its
 * counts stay 0).  `report` may be NULL (keys_gone counts the keys).  Returns
 * as cellar_store_gc.
 */
cellar_status cellar_store_forget(cellar_store *store, const char *const *nodes, size_t n,
                                  cellar_gc_report *report, cellar_error *err);

/*
 * The budget for automatic collection: after a commit that takes the results
 * above `max_size` bytes, cellar_store_commit runs cellar_store_gc with the
 * default keep and brings the results down to 90% of the budget (so that the
 * next commits do not collect again at once).  0 turns it off (the default).
 * The size is tallied per process (the exact figure measured at most every
 * 60 s plus what this process added since), so commits of other processes
 * count from the next measure on.  An automatic collection that fails leaves
 * the commit's result as it was; the next commit tries again.
 */
void cellar_store_set_max_size(cellar_store *store, uint64_t max_size);
uint64_t cellar_store_max_size(const cellar_store *store);

typedef struct cellar_compact_report {
    uint64_t file_before, file_after; /* bytes of data.mdb */
    uint64_t orphans_removed;         /* blob files no result referred to */
} cellar_compact_report;

/*
 * Rewrites the store in `dir` with LMDB's compacting copy (mdb_env_copyfd2
 * with MDB_CP_COMPACT) into a temporary file, renames it over data.mdb and
 * removes lock.mdb (a process that opened the store in between sees its lock
 * file replaced and stops writing, as store.h says), then removes blob files
 * nothing refers to.  Refuses with EBUSY, naming a process id, while another
 * process has the store open: LMDB holds a shared fcntl lock on lock.mdb for
 * as long as an environment is open, which F_GETLK sees (the reader table
 * only lists transactions in flight, and an idle kernel holds none).
 * `report` may be NULL.  Returns CELLAR_OK; EBUSY; ENOTFOUND (no store);
 * EREADONLY; EUNSAFE; EFULL; EIO; ELMDB.
 */
cellar_status cellar_store_compact(const char *dir, cellar_compact_report *report,
                                   cellar_error *err);

#ifdef __cplusplus
}
#endif

#endif
