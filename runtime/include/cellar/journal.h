/*
 * journal.h - the session journal: one entry per notebook cell that a
 * `cellar-kernel` relayed, kept in the `journal` database of the same store
 * the extension caches into.  An entry says which kernel session ran the
 * cell, its cellId (when the frontend sent one), its code and the hash of
 * that code, its execution count, when it started, how long it took and how
 * it ended (ok, error, aborted).  The proxy writes entries (through
 * journal_writer.h, off its relay thread); `cellar journal` lists them; crash
 * recovery and `%cellar restore` read back a session's definition cells
 * (definitions.h decides which those are).
 *
 * Record format: a JSON object carrying "format": CELLAR_JOURNAL_FORMAT, with
 * the fields of cellar_journal_entry; the hash as 32 hex digits, times in
 * nanoseconds.  A reader refuses another format with CELLAR_EVERSION and
 * anything else that does not parse or lacks a field with CELLAR_ECORRUPT.
 * Keys are 16 bytes: the start time (ns since the epoch, big-endian) and a
 * number unique in the writing process, so the journal's order is time order.
 *
 * Errors follow error.h.  The codec keeps no state and is safe from any
 * thread; the store functions follow store.h's thread rules (a reader belongs
 * to one thread at a time; appends may come from any thread).
 */
#ifndef CELLAR_JOURNAL_H
#define CELLAR_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cellar/definitions.h"
#include "cellar/error.h"
#include "cellar/fingerprint.h"
#include "cellar/store.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The format this build writes, and the only one it reads. */
#define CELLAR_JOURNAL_FORMAT 1

/* How a cell ended, as its execute_reply said. */
typedef enum cellar_cell_outcome {
    CELLAR_CELL_OK,
    CELLAR_CELL_ERROR,   /* it raised, or the kernel died under it */
    CELLAR_CELL_ABORTED, /* not run: an earlier cell failed (stop_on_error) */
} cellar_cell_outcome;

/* "ok", "error", "aborted" ("unknown" outside the enum): a static string. */
const char *cellar_cell_outcome_name(cellar_cell_outcome outcome);

/* One cell.  Strings are NUL-terminated UTF-8; the code is `code_len` bytes
 * (as stored: bytes that were not UTF-8, and NULs, became U+FFFD). */
typedef struct cellar_journal_entry {
    const char *session; /* the kernel session: one cellar-kernel's run */
    const char *cell_id; /* "" when the frontend sent no metadata.cellId */
    const char *code;    /* the cell's source, as sent */
    size_t code_len;
    cellar_hash code_hash;   /* cellar_hash_bytes(code, code_len) */
    int64_t execution_count; /* -1 when the kernel gave none (silent cells) */
    uint64_t start_ns;       /* wall clock when the request was relayed */
    uint64_t duration_ns;    /* until both its reply and its idle status came */
    cellar_cell_outcome outcome;
    const char *ename; /* the exception's name for an error, else "" */
    bool silent;       /* the request asked for silent execution */
} cellar_journal_entry;

/*
 * Encodes `e` as a journal record.  On CELLAR_OK `*out` is a new
 * NUL-terminated buffer of `*len` bytes (the NUL not counted; `len` may be
 * NULL), owned by the caller (free()).  Bytes that are not valid UTF-8 in the
 * code or ename are written as U+FFFD; in the session or cellId they are
 * CELLAR_EINVAL, as are NULL strings.  CELLAR_ENOMEM.  On failure `*out` is
 * NULL.
 */
cellar_status cellar_journal_encode(const cellar_journal_entry *e, char **out,
                                    size_t *len, cellar_error *err);

/*
 * Decodes the `len` bytes at `text`.  On CELLAR_OK `*out` is a new entry
 * owned by the caller (free() it: its strings live in the same block).
 * CELLAR_EVERSION for another format, CELLAR_ECORRUPT for anything that is not
 * a well-formed journal record, CELLAR_EINVAL, CELLAR_ENOMEM.  On failure
 * `*out` is NULL.
 */
cellar_status cellar_journal_decode(const char *text, size_t len,
                                    cellar_journal_entry **out, cellar_error *err);

/* Room for cellar_journal_replayable's reason, NUL included. */
#define CELLAR_JOURNAL_WHY_MAX (CELLAR_DEFINITIONS_WHY_MAX + 64)

/*
 * True when crash recovery and `%cellar restore` run `e` again: it ended ok
 * and only defines (definitions.h).  When false, `why` (may be NULL) says
 * why not, as restore prints it: "it ended with an error (ValueError)", "it
 * ended aborted", or the rule's reason ("line 1 calls a function (...)").
 */
bool cellar_journal_replayable(const cellar_journal_entry *e,
                               char why[CELLAR_JOURNAL_WHY_MAX]);

/* ---- the journal database ---- */

/*
 * Appends `n` entries in one write transaction.  Returns CELLAR_OK;
 * EREADONLY (the store cannot be written); EFULL (the disk or the map is
 * full); EINVAL (an entry that cannot be encoded: nothing is written);
 * ENOMEM; EIO; ELMDB.  On failure nothing of the call is visible.
 */
cellar_status cellar_journal_append(cellar_store *store,
                                    const cellar_journal_entry *const *entries, size_t n,
                                    cellar_error *err);

/* Called per entry, oldest first; `e` is valid during the call only.  Return
 * 0 to go on, non-zero to stop (the walk then returns CELLAR_OK). */
typedef int (*cellar_journal_fn)(void *ctx, const cellar_journal_entry *e);

/*
 * Walks the journal oldest first, every session or only `session` (NULL:
 * all).  A store written before the journal existed has an empty one.
 * Returns CELLAR_OK; ECORRUPT or EVERSION for a record that cannot be read
 * (the walk stops there, the message says which); EINVAL; ENOMEM; ELMDB.
 */
cellar_status cellar_journal_each(cellar_reader *r, const char *session,
                                  cellar_journal_fn fn, void *ctx, cellar_error *err);

/*
 * Writes into `out` (`cap` bytes) the session of the newest entry that
 * started before `before_ns` (UINT64_MAX: any time) and whose session is not
 * `except` (NULL: any): the last session before this one.  Returns CELLAR_OK;
 * ENOTFOUND when there is none; EINVAL (also when the session does not fit);
 * ECORRUPT; ELMDB.
 */
cellar_status cellar_journal_last_session(cellar_reader *r, const char *except,
                                          uint64_t before_ns, char *out, size_t cap,
                                          cellar_error *err);

/* ---- the journal's size ---- */

/* The defaults of the cap the cellar kernel keeps the journal under
 * (CELLAR_JOURNAL_MAX_CELLS and CELLAR_JOURNAL_MAX_BYTES override them). */
#define CELLAR_JOURNAL_MAX_CELLS_DEFAULT 10000
#define CELLAR_JOURNAL_MAX_BYTES_DEFAULT ((uint64_t)64 << 20)
/* Besides `keep_session`, the definition cells of this many other sessions,
 * the newest, are never pruned: the one `%cellar restore` picks in a new
 * kernel, and another kernel's writing into the same store. */
#define CELLAR_JOURNAL_KEEP_SESSIONS 2

typedef struct cellar_journal_limits {
    uint64_t max_cells; /* 0: no cap on the number of cells */
    uint64_t max_bytes; /* 0: no cap on the journal's pages */
    /* The writer's own session (NULL: none): its definition cells are kept. */
    const char *keep_session;
} cellar_journal_limits;

/*
 * The limits the environment asks for: CELLAR_JOURNAL_MAX_CELLS (a count)
 * and CELLAR_JOURNAL_MAX_BYTES (a size, "64MiB" or bytes), each 0 for no
 * cap and its default when unset or not a number; `keep_session` NULL.
 */
cellar_journal_limits cellar_journal_limits_from_env(void);

/*
 * Keeps the journal under `limits` in one write transaction of its own.
 * When it holds more than max_cells entries or its pages take more than
 * max_bytes, the oldest entries are deleted until it is at 90% of both,
 * rounded up (cap - cap / 10), so that pruning is one batch per many
 * appends, not one per cell,
 * except the definition cells (ended ok and definitions.h says they only
 * define) of `keep_session` and of the CELLAR_JOURNAL_KEEP_SESSIONS newest
 * other sessions: those stay even when they alone pass a limit.  Within the
 * limits it only reads the database's counts (no record is decoded).
 * `*removed` (may be NULL) is how many entries went.  A record that does
 * not decode is never a definition cell: it is pruned like the others.
 * Returns CELLAR_OK; EREADONLY; EFULL; ENOMEM; EIO; ELMDB; EINVAL.  On
 * failure nothing is removed.
 */
cellar_status cellar_journal_prune(cellar_store *store, const cellar_journal_limits *limits,
                                   uint64_t *removed, cellar_error *err);

/*
 * Writes into `*cells` the number of entries in the journal and into
 * `*bytes` (may be NULL) the bytes its pages take, as the limits count them.
 * Returns CELLAR_OK, EINVAL or ELMDB.
 */
cellar_status cellar_journal_size(cellar_reader *r, uint64_t *cells, uint64_t *bytes,
                                  cellar_error *err);

#ifdef __cplusplus
}
#endif

#endif
