/*
 * error.c - the cellar_error helpers: status names, and formatting a message
 * into a caller-owned error.  A message is formatted into a scratch buffer
 * first, which both lets an argument point into the error's own message (a
 * caller adding context to a lower layer's reason) and lets a message that
 * does not fit be elided in the middle, keeping the reason at its end.
 */
#include "cellar/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *cellar_status_name(cellar_status code)
{
    switch (code) {
    case CELLAR_OK: return "ok";
    case CELLAR_ENOMEM: return "out of memory";
    case CELLAR_EINVAL: return "invalid argument";
    case CELLAR_ENOTFOUND: return "not found";
    case CELLAR_ECORRUPT: return "corrupt";
    case CELLAR_EIO: return "i/o error";
    case CELLAR_EUNSAFE: return "unsafe store";
    case CELLAR_ECYCLE: return "cycle";
    case CELLAR_EFULL: return "store full";
    case CELLAR_EREADONLY: return "read-only";
    case CELLAR_ELMDB: return "lmdb error";
    case CELLAR_EVERSION: return "unknown format";
    case CELLAR_EBUSY: return "busy";
    }
    return "unknown";
}

void cellar_error_clear(cellar_error *err)
{
    if (err) {
        err->code = CELLAR_OK;
        err->message[0] = '\0';
    }
}

#define ELISION " [...] "

/* Copies `text` (`len` bytes) into `msg`, keeping its head and tail. */
static void keep_ends(char msg[CELLAR_ERROR_MESSAGE_MAX], const char *text, size_t len)
{
    size_t room = CELLAR_ERROR_MESSAGE_MAX - 1 - (sizeof ELISION - 1);
    size_t head = room / 2, tail = room - head;
    memcpy(msg, text, head);
    memcpy(msg + head, ELISION, sizeof ELISION - 1);
    memcpy(msg + head + sizeof ELISION - 1, text + len - tail, tail);
    msg[CELLAR_ERROR_MESSAGE_MAX - 1] = '\0';
}

cellar_status cellar_error_set(cellar_error *err, cellar_status code, const char *fmt,
                               ...)
{
    if (!err)
        return code;
    char scratch[CELLAR_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(scratch, sizeof scratch, fmt, ap);
    va_end(ap);
    err->code = code;
    if (n < 0) {
        snprintf(err->message, sizeof err->message,
                 "%s (the message could not be "
                 "formatted)",
                 cellar_status_name(code));
    } else if ((size_t)n < sizeof scratch) {
        memcpy(err->message, scratch, (size_t)n + 1);
    } else {
        char *whole = malloc((size_t)n + 1);
        if (whole) {
            va_start(ap, fmt);
            vsnprintf(whole, (size_t)n + 1, fmt, ap);
            va_end(ap);
            keep_ends(err->message, whole, (size_t)n);
            free(whole);
        } else {
            memcpy(err->message, scratch, sizeof scratch);
        }
    }
    return code;
}
