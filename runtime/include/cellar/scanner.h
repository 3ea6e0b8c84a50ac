/*
 * scanner.h - finds the top-level functions in a Python cell's source.
 *
 * The scanner tokenizes Python (every string form, f-strings with nested
 * quotes and braces, continuations, brackets across lines, tabs, CRLF,
 * non-ASCII identifiers) plus IPython's line syntax (`%magic`, `!shell`,
 * `x = %magic`, a leading `%%cell` magic), and reports each `def` / `async
 * def` at indentation zero: its name, decorators, parameters and span, and its
 * code version.  It never fails on bad source: unterminated strings or
 * brackets and stray indentation become entries in the error list.  It runs on
 * every cell in the user's kernel, so it is linear in the input, bounded in
 * memory and never crashes.
 *
 * Names are reported exactly as the source spells them (UTF-8).  Python
 * binds the NFKC normalization of a non-ASCII identifier (PEP 3131: `µ`,
 * U+00B5, is bound as `μ`, U+03BC); the extension applies it with the running
 * interpreter's unicodedata, whose tables are the parser's own, rather than
 * this library carrying a copy of the Unicode tables that could disagree.
 *
 * Code version: XXH3-128 over the function's normalized tokens (decorators
 * through the end of the body).  Comments, the docstring, blank lines, line
 * continuations and the width of indentation are not tokens, so they do not
 * change it; indentation structure (INDENT/DEDENT) and every other token do.
 *
 * Errors follow error.h: cellar_scan_source sets `err` (which may be NULL)
 * whenever it returns a status other than CELLAR_OK.  Problems in the source
 * itself are not errors of the call; they are data, listed in the result.
 * Threads: no global state; a result may be read from several threads.
 */
#ifndef CELLAR_SCANNER_H
#define CELLAR_SCANNER_H

#include <stdbool.h>
#include <stddef.h>

#include "cellar/error.h"
#include "cellar/fingerprint.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cellar_param_kind {
    CELLAR_PARAM_POSITIONAL_ONLY,
    CELLAR_PARAM_POSITIONAL_OR_KEYWORD,
    CELLAR_PARAM_VAR_POSITIONAL,
    CELLAR_PARAM_KEYWORD_ONLY,
    CELLAR_PARAM_VAR_KEYWORD,
} cellar_param_kind;

/* "positional_only", "positional_or_keyword", "var_positional", ...: a
 * static string ("unknown" for a value outside the enum). */
const char *cellar_param_kind_name(cellar_param_kind kind);

typedef struct cellar_param {
    const char *name; /* NUL-terminated UTF-8 */
    cellar_param_kind kind;
    bool has_default;
} cellar_param;

typedef struct cellar_function {
    const char *name; /* NUL-terminated UTF-8 */
    bool is_async;
    int line;       /* 1-based line of `def` (as ast's lineno) */
    int end_line;   /* last line of the body (as ast's end_lineno) */
    int first_line; /* line of the first decorator, or `line` */
    int decorators; /* number of decorators */
    cellar_hash code_version;
    size_t nparams;
    const cellar_param *params;
} cellar_function;

typedef struct cellar_scan_error {
    int line; /* 1-based */
    int col;  /* 0-based byte column */
    const char *message;
} cellar_scan_error;

/* A scan result.  Owns every string and array it hands out (names, params,
 * messages), which stay valid until cellar_scan_free. */
typedef struct cellar_scan cellar_scan;

/*
 * Scans `len` bytes of `source` (need not be NUL-terminated).  On success
 * `*out` is a new result owned by the caller (cellar_scan_free).  Problems in
 * the source are not failures: they are listed by cellar_scan_error_at.  Only
 * CELLAR_ENOMEM (or CELLAR_EINVAL for NULL arguments) is returned as an
 * error, and then `*out` is NULL.  `source` is not kept after the call.
 */
cellar_status cellar_scan_source(const char *source, size_t len, cellar_scan **out,
                                 cellar_error *err);
/* Frees a result and everything it handed out; NULL is ignored. */
void cellar_scan_free(cellar_scan *scan);

size_t cellar_scan_function_count(const cellar_scan *scan);
/* Functions in source order, owned by `scan`; NULL when i is out of range. */
const cellar_function *cellar_scan_function_at(const cellar_scan *scan, size_t i);

/* Problems found in the source, in source order, owned by `scan`; NULL when
 * i is out of range. */
size_t cellar_scan_error_count(const cellar_scan *scan);
const cellar_scan_error *cellar_scan_error_at(const cellar_scan *scan, size_t i);

#ifdef __cplusplus
}
#endif

#endif
