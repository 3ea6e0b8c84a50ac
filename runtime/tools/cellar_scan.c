/*
 * cellar_scan.c - `cellar scan FILE|-`: runs the cell scanner over one file
 * (or stdin) and prints what it found as JSON, for debugging cells from the
 * shell and for the differential test against Python's ast module.
 *
 * The whole input is read into memory (cells are small; the scanner wants one
 * buffer), up to SCAN_LIMIT bytes: a larger input is refused before it is
 * scanned, because the scanner's token arrays and the JSON document are many
 * times the source's size (50 MB took 15 s and 2.1 GB before the limit).  It
 * is scanned and turned into a jansson document:
 *   {"functions": [{"name", "async", "line", "end_line", "decorators",
 *                   "code_version", "params": [{"name", "kind", "default"}]}],
 *    "errors": [{"line", "col", "message"}]}
 * Exit status: 0 clean, 1 the source has errors (JSON still printed), 2 usage.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cellar/scanner.h"
#include "cellar/units.h"
#include "commands.h"

/* Far beyond any cell or module a person writes (the standard library's
 * largest file is under 1 MiB); what the usage text promises. */
#define SCAN_LIMIT ((size_t)16 << 20)

static const char usage[] =
    "usage: cellar scan FILE|-\n"
    "\n"
    "Print the top-level functions of Python/IPython cell source as JSON:\n"
    "name, async, line, end_line, decorators, code_version and params (name,\n"
    "kind, default), plus the errors found in the source. '-' reads stdin.\n"
    "Reads at most 16 MiB; a larger input is refused.\n"
    "Exit status: 0 clean, 1 the source has errors, 2 usage or input error.\n";

/* Reads all of `f` into a malloc'd buffer; NULL (errno set) on failure,
 * EFBIG when it holds more than `limit` bytes (it is read no further). */
static char *read_all(FILE *f, size_t limit, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf)
        return NULL;
    for (;;) {
        if (n > limit) {
            free(buf);
            errno = EFBIG;
            return NULL;
        }
        if (n == cap) {
            char *nb = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                errno = ENOMEM;
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) {
                int e = errno ? errno : EIO;
                free(buf);
                errno = e;
                return NULL;
            }
            break;
        }
    }
    *len = n;
    return buf;
}

static json_t *params_json(const cellar_function *f)
{
    json_t *arr = json_array();
    for (size_t k = 0; arr && k < f->nparams; k++) {
        const cellar_param *p = &f->params[k];
        json_array_append_new(arr, json_pack("{s:s, s:s, s:b}", "name", p->name, "kind",
                                             cellar_param_kind_name(p->kind), "default",
                                             p->has_default));
    }
    return arr;
}

static json_t *scan_json(const cellar_scan *scan)
{
    json_t *fns = json_array(), *errs = json_array();
    for (size_t i = 0; fns && i < cellar_scan_function_count(scan); i++) {
        const cellar_function *f = cellar_scan_function_at(scan, i);
        char hex[CELLAR_HASH_HEX_LEN + 1];
        cellar_hash_to_hex(&f->code_version, hex);
        json_array_append_new(fns, json_pack("{s:s, s:b, s:i, s:i, s:i, s:s, s:o}",
                                             "name", f->name, "async", f->is_async,
                                             "line", f->line, "end_line", f->end_line,
                                             "decorators", f->decorators, "code_version",
                                             hex, "params", params_json(f)));
    }
    for (size_t i = 0; errs && i < cellar_scan_error_count(scan); i++) {
        const cellar_scan_error *e = cellar_scan_error_at(scan, i);
        json_array_append_new(errs, json_pack("{s:i, s:i, s:s}", "line", e->line, "col",
                                              e->col, "message", e->message));
    }
    return json_pack("{s:o, s:o}", "functions", fns, "errors", errs);
}

int cellar_cmd_scan(int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage, stdout);
            return 0;
        }
        if (argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(stderr, "cellar scan: unknown option '%s'\n\n%s", argv[i], usage);
            return 2;
        }
        if (path) {
            fprintf(stderr, "cellar scan: one file at a time ('%s' and '%s')\n", path,
                    argv[i]);
            return 2;
        }
        path = argv[i];
    }
    if (!path) {
        fprintf(stderr, "cellar scan: missing FILE argument\n\n%s", usage);
        return 2;
    }
    bool from_stdin = !strcmp(path, "-");
    FILE *f = from_stdin ? stdin : fopen(path, "rb");
    size_t len = 0;
    char *src = f ? read_all(f, SCAN_LIMIT, &len) : NULL;
    int saved = errno;
    if (f && !from_stdin)
        fclose(f);
    if (!src && saved == EFBIG) {
        char limit[CELLAR_UNITS_BUFSIZE];
        fprintf(stderr,
                "cellar scan: '%s' is larger than %s, the most cellar scan reads (cells "
                "and modules are far smaller; split the file to scan it)\n",
                path, cellar_units_size(SCAN_LIMIT, limit));
        return 2;
    }
    if (!src) {
        fprintf(stderr, "cellar scan: cannot read '%s': %s\n", path, strerror(saved));
        return 2;
    }
    cellar_scan *scan = NULL;
    cellar_error err;
    if (cellar_scan_source(src, len, &scan, &err) != CELLAR_OK) {
        free(src);
        fprintf(stderr, "cellar scan: %s\n", err.message);
        return 2;
    }
    json_t *doc = scan_json(scan);
    int status = cellar_scan_error_count(scan) ? 1 : 0;
    cellar_scan_free(scan);
    free(src);
    if (!doc || json_dumpf(doc, stdout, JSON_INDENT(2)) != 0) {
        json_decref(doc);
        fprintf(stderr, "cellar scan: cannot write the JSON output\n");
        return 2;
    }
    json_decref(doc);
    putchar('\n');
    return status;
}
