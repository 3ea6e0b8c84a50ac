/*
 * error.h - the one error type every libcellar call reports through.
 *
 * Every fallible function takes a caller-owned `cellar_error *` (which may be
 * NULL when the caller does not want the details) and returns a
 * `cellar_status`: CELLAR_OK on success, otherwise the same code that was
 * written into the error along with a human sentence saying what failed and
 * why.  The struct is plain data: no allocation, nothing to free.
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
    CELLAR_ESYNTAX,   /* source could not be tokenized */
    CELLAR_EFULL,     /* the store cannot grow any further */
    CELLAR_EREADONLY, /* the store was opened, or only can be opened, read-only */
    CELLAR_ELMDB,     /* any other LMDB failure; the message carries mdb_strerror */
} cellar_status;

#define CELLAR_ERROR_MESSAGE_MAX 512

typedef struct cellar_error {
    cellar_status code;
    char message[CELLAR_ERROR_MESSAGE_MAX];
} cellar_error;

/* A short stable name for a status ("ok", "enomem", "corrupt", ...). */
const char *cellar_status_name(cellar_status code);

/* Resets `err` to CELLAR_OK with an empty message.  `err` may be NULL. */
void cellar_error_clear(cellar_error *err);

/*
 * Records `code` and a printf-style message into `err` (which may be NULL)
 * and returns `code`, so that callers can write `return cellar_error_set(...)`.
 * Messages longer than CELLAR_ERROR_MESSAGE_MAX - 1 bytes are truncated.
 */
cellar_status cellar_error_set(cellar_error *err, cellar_status code, const char *fmt,
                               ...) __attribute__((format(printf, 3, 4)));

#ifdef __cplusplus
}
#endif

#endif
