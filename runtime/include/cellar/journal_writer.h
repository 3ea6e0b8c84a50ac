/*
 * journal_writer.h - what turns the relay's events into journal entries and
 * writes them without ever holding up the relay.
 *
 * On the relay's thread (its proxy hooks), it follows each execute_request
 * through its execute_input (the execution count), its execute_reply (the
 * outcome) and its status idle; a cell is finished when both the reply and
 * the idle status have arrived, or when the child died under it (an error,
 * ename "KernelDied").  A finished cell goes into a bounded queue; a writer
 * thread takes the queue in batches and appends them to the journal in one
 * transaction each.  A full queue drops the entry (counted, with a warning on
 * stderr for the first and every 1000th); a store that cannot be opened,
 * is read-only or fails a write stops the journal with one warning, and
 * relaying goes on.  It also keeps, in memory, the session's cells that ended
 * ok, so that crash recovery can replay the ones that only define
 * (definitions.h) even when the journal could not be written.
 */
#ifndef CELLAR_JOURNAL_WRITER_H
#define CELLAR_JOURNAL_WRITER_H

#include <stddef.h>

#include "cellar/error.h"
#include "cellar/proxy.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cellar_journal_writer cellar_journal_writer;

/* Queue length when the caller gives 0. */
#define CELLAR_JOURNAL_QUEUE_DEFAULT 1024

/*
 * Starts a writer for `session` into the store in `store_dir` (opened, or
 * created, by the writer thread, so a slow disk never delays the caller).
 * The thread blocks every signal.  Returns NULL with CELLAR_ENOMEM or
 * CELLAR_EIO (the thread could not start) in `err`.
 */
cellar_journal_writer *cellar_journal_writer_new(const char *store_dir,
                                                 const char *session, size_t queue_cap,
                                                 cellar_error *err);

/* Writes what is queued, stops the thread and frees everything; NULL is
 * ignored. */
void cellar_journal_writer_free(cellar_journal_writer *w);

/* The hooks for cellar_proxy_config: `w` is their ctx. */
cellar_proxy_hooks cellar_journal_writer_hooks(cellar_journal_writer *w);

#ifdef __cplusplus
}
#endif

#endif
