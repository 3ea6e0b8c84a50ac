/*
 * error.c - the cellar_error helpers: status names, and formatting a message
 * into a caller-owned error without allocating.
 */
#include "cellar/error.h"

#include <stdarg.h>
#include <stdio.h>

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
    case CELLAR_ESYNTAX: return "syntax error";
    case CELLAR_EFULL: return "store full";
    case CELLAR_EREADONLY: return "read-only";
    case CELLAR_ELMDB: return "lmdb error";
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

cellar_status cellar_error_set(cellar_error *err, cellar_status code, const char *fmt,
                               ...)
{
    if (err) {
        va_list ap;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}
