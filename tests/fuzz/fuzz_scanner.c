/*
 * fuzz_scanner.c - libFuzzer target for the cell scanner.  Each input is
 * scanned as a cell; every function, parameter and error the result holds is
 * read back (so ASan sees any dangling or short string), checked for the
 * invariants callers rely on, and the result is freed (so leaks show).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cellar/scanner.h"

static void check(int ok)
{
    if (!ok)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cellar_scan *scan = NULL;
    cellar_error err;
    if (cellar_scan_source((const char *)data, size, &scan, &err) != CELLAR_OK)
        return 0; /* only out of memory can get here */
    size_t total = 0;
    int prev_end = 0;
    for (size_t i = 0; i < cellar_scan_function_count(scan); i++) {
        const cellar_function *f = cellar_scan_function_at(scan, i);
        total += strlen(f->name);
        check(f->name[0] != '\0');
        check(f->first_line <= f->line && f->line <= f->end_line);
        check(f->first_line > prev_end);
        check(f->decorators >= 0);
        prev_end = f->end_line;
        for (size_t k = 0; k < f->nparams; k++) {
            total += strlen(f->params[k].name);
            check(strcmp(cellar_param_kind_name(f->params[k].kind), "unknown") != 0);
        }
    }
    for (size_t i = 0; i < cellar_scan_error_count(scan); i++) {
        const cellar_scan_error *e = cellar_scan_error_at(scan, i);
        check(e->line >= 1 && e->col >= 0 && e->message[0] != '\0');
        total += strlen(e->message);
    }
    check(cellar_scan_function_at(scan, cellar_scan_function_count(scan)) == NULL);
    check(cellar_scan_error_at(scan, cellar_scan_error_count(scan)) == NULL);
    cellar_scan_free(scan);
    return total == SIZE_MAX; /* keeps the reads from being optimized away */
}
