/*
 * fuzz_definitions.c - libFuzzer target for the rule that decides which cells
 * crash recovery and %cellar restore run again (definitions.h), and for the
 * journal's record decoder.  Each input is checked as a cell (the reason must
 * be a NUL-terminated sentence whenever the answer is no) and decoded as a
 * journal record (a decoded entry's strings are read back so ASan sees a
 * short one).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cellar/definitions.h"
#include "cellar/journal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char why[CELLAR_DEFINITIONS_WHY_MAX];
    memset(why, 'x', sizeof why);
    bool only = cellar_definitions_only((const char *)data, size, why);
    size_t n = strnlen(why, sizeof why);
    if (n == sizeof why || (!only && n == 0))
        abort();
    cellar_journal_entry *e = NULL;
    if (cellar_journal_decode((const char *)data, size, &e, NULL) == CELLAR_OK) {
        size_t total = strlen(e->session) + strlen(e->cell_id) + strlen(e->ename);
        if (strlen(e->code) > e->code_len || total > size)
            abort();
        free(e);
    } else if (e) {
        abort();
    }
    return 0;
}
