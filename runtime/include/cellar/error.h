/*
 * error.h - the one error type every libcellar call reports through.
 *
 * The contract, for every function of libcellar that returns a cellar_status
 * and takes a `cellar_error *err`:
 *   - `err` is caller-owned and may be NULL when the caller does not want the
 *     details; the returned status is the same either way (no status is ever
 *     read back from `err`);
 *   - after CELLAR_OK, `err` is either as it was or cleared: read it only
 *     after a failure;
 *   - any other status is also written into `err->code`, with a sentence in
 *     `err->message` that says what failed and why (and, for a path, which);
 *   - a header that departs from this says so at the function.
 * Functions that take no `cellar_error` (key.h's encoder, for instance) say in
 * their header which statuses they return.
 *
 * The struct is plain data: nothing to allocate and nothing to free, so it
 * lives on the stack.  Its message holds CELLAR_ERROR_MESSAGE_MAX - 1 bytes;
 * a longer one keeps its beginning and its end, joined by " [...] ", so that
 * a long path in the middle never hides the reason that follows it.
 */
#ifndef CELLAR_ERROR_H
#define CELLAR_ERROR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cellar_status {
    CELLAR_OK = 0,
    CELLAR_ENOMEM,    /* an allocation failed */
    CELLAR_EINVAL,    /* bad argument or usage */
    CELLAR_ENOTFOUND, /* the key, node or result does not exist */
    CELLAR_ECORRUPT,  /* stored bytes fail their checksum or do not parse */
    CELLAR_EIO,       /* a system call failed; the message carries errno's text */
    CELLAR_EUNSAFE,   /* the store is owned by someone else or writable by others */
    CELLAR_ECYCLE,    /* the graph has a cycle; the message names its nodes */
    CELLAR_EFULL,     /* the store cannot grow any further */
    CELLAR_EREADONLY, /* the store was opened, or only can be opened, read-only */
    CELLAR_ELMDB,     /* any other LMDB failure; the message carries mdb_strerror */
    CELLAR_EVERSION,  /* a record in a format this build does not know (records.h) */
    CELLAR_EBUSY,     /* another process holds what this needs alone (gc.h: compact) */
} cellar_status;

/* Room for two paths of PATH_MAX and a reason would be 8 KiB; messages that
 * long are elided in the middle instead (see above). */
#define CELLAR_ERROR_MESSAGE_MAX 4096

typedef struct cellar_error {
    cellar_status code;
    char message[CELLAR_ERROR_MESSAGE_MAX];
} cellar_error;

/* A short stable name for a status ("ok", "out of memory", "corrupt", ...):
 * a static string, "unknown" for a value outside the enum. */
const char *cellar_status_name(cellar_status code);

/* Resets `err` to CELLAR_OK with an empty message.  `err` may be NULL. */
void cellar_error_clear(cellar_error *err);

/*
 * Records `code` and a printf-style message into `err` (which may be NULL)
 * and returns `code`, so that callers can write `return cellar_error_set(...)`.
 * A message of CELLAR_ERROR_MESSAGE_MAX bytes or more keeps its first and last
 * parts around " [...] " (if even the scratch copy that needs cannot be
 * allocated, it is cut at the end instead).  Arguments may point into
 * `err->message` itself (to prefix a lower layer's message).
 */
cellar_status cellar_error_set(cellar_error *err, cellar_status code, const char *fmt,
                               ...) __attribute__((format(printf, 3, 4)));

#ifdef __cplusplus
}
#endif

#endif
