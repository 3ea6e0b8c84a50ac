/*
 * cellar_journal.c - `cellar journal [--session S] [--limit N] [--json]`: the
 * cells the cellar kernel ran, oldest first, from the journal database
 * (journal.h), or only the newest N; and `cellar journal --prune`, which
 * brings the journal under its cap now (the cellar kernel does so as it
 * writes).  Like the other store commands the listing reads in a child
 * process (store_cli.h), so a damaged store is a message, not a signal; the
 * prune opens the store for writing in this process, as gc does.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cellar/journal.h"
#include "cellar/units.h"
#include "commands.h"
#include "store_cli.h"

static const char journal_usage[] =
    "usage: cellar journal [--session S] [--limit N] [--dir PATH] [--json]\n"
    "       cellar journal --prune [--dir PATH] [--json]\n"
    "\n"
    "The cells run under the cellar kernel (cellar-kernel), oldest first: the\n"
    "session, when each started, its execution count, how it ended (ok, error,\n"
    "aborted), how long it took, its cellId and its first line.\n"
    "\n"
    "  --session S  only the cells of session S\n"
    "  --limit N    only the newest N of those cells (still oldest first)\n"
    "  --prune      delete the oldest cells until the journal is within\n"
    "               CELLAR_JOURNAL_MAX_CELLS (default 10000) and\n"
    "               CELLAR_JOURNAL_MAX_BYTES (default 64MiB), keeping the\n"
    "               definition cells of the two newest sessions; the cellar\n"
    "               kernel prunes so as it writes\n"
    "  --dir PATH   the store (default: $CELLAR_DIR, else ./.cellar)\n"
    "  --json       print one JSON object: {\"store\", \"cells\": [...]}, each cell\n"
    "               with session, cell_id, code, code_hash, execution_count,\n"
    "               start_ns, duration_ns, outcome, ename, silent, and definition:\n"
    "               whether crash recovery and %cellar restore run it again\n"
    "               (it ended ok and only defines), with why_not when not\n";

typedef struct listing {
    bool json;
    json_t *cells;
    const char *last_session;
    char session[160];
    bool failed;
    uint64_t seen, skip; /* --limit: the first `skip` cells are not shown */
} listing;

static int count_entry(void *ctx, const cellar_journal_entry *e)
{
    (void)e;
    ((listing *)ctx)->seen++;
    return 0;
}

static int print_entry(void *ctx, const cellar_journal_entry *e)
{
    listing *l = ctx;
    if (l->seen++ < l->skip)
        return 0;
    char hex[CELLAR_HASH_HEX_LEN + 1];
    cellar_hash_to_hex(&e->code_hash, hex);
    if (l->json) {
        json_t *code = json_stringn(e->code, e->code_len);
        char why[CELLAR_JOURNAL_WHY_MAX];
        bool replayable = cellar_journal_replayable(e, why);
        json_t *o = json_pack(
            "{s:s, s:s, s:o?, s:s, s:I, s:I, s:I, s:s, s:s, s:b, s:b, s:s?}", "session",
            e->session, "cell_id", e->cell_id, "code", code, "code_hash", hex,
            "execution_count", (json_int_t)e->execution_count, "start_ns",
            (json_int_t)e->start_ns, "duration_ns", (json_int_t)e->duration_ns, "outcome",
            cellar_cell_outcome_name(e->outcome), "ename", e->ename, "silent", e->silent,
            "definition", replayable, "why_not", replayable ? NULL : why);
        if (!o || json_array_append_new(l->cells, o)) {
            l->failed = true;
            return 1;
        }
        return 0;
    }
    if (strcmp(l->session, e->session)) {
        printf("%ssession %s\n", l->session[0] ? "\n" : "", e->session);
        snprintf(l->session, sizeof l->session, "%s", e->session);
    }
    time_t t = (time_t)(e->start_ns / 1000000000u);
    struct tm tm;
    char when[32], took[CELLAR_UNITS_BUFSIZE], count[24];
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%SZ", &tm);
    cellar_units_duration(e->duration_ns, took);
    if (e->execution_count >= 0)
        snprintf(count, sizeof count, "[%" PRId64 "]", e->execution_count);
    else
        snprintf(count, sizeof count, "[-]");
    size_t first = 0;
    while (first < e->code_len && e->code[first] != '\n')
        first++;
    char outcome[160];
    snprintf(outcome, sizeof outcome, "%s%s%s%s", cellar_cell_outcome_name(e->outcome),
             e->ename[0] ? " (" : "", e->ename, e->ename[0] ? ")" : "");
    printf("  %s  %-6s %-24s %9s  %s%s%.*s%s\n", when, count, outcome, took,
           e->cell_id[0] ? e->cell_id : "", e->cell_id[0] ? "  " : "",
           (int)(first > 60 ? 60 : first), e->code,
           first > 60 || first < e->code_len ? " ..." : "");
    return 0;
}

/* --prune: the store opened for writing here, the limits from the environment. */
static int prune_journal(const cli *c)
{
    cellar_store *s;
    cellar_error err;
    if (cellar_store_open(c->dir, NULL, &s, &err) != CELLAR_OK)
        return cli_fail(c, err.message);
    cellar_journal_limits limits = cellar_journal_limits_from_env();
    uint64_t removed = 0, cells = 0, bytes = 0;
    cellar_reader *r = NULL;
    cellar_status st = cellar_journal_prune(s, &limits, &removed, &err);
    if (!st)
        st = cellar_reader_begin(s, &r, &err);
    if (!st)
        st = cellar_journal_size(r, &cells, &bytes, &err);
    cellar_reader_end(r);
    int rc = 0;
    if (st) {
        rc = cli_fail(c, err.message);
    } else if (c->json) {
        rc = cli_print_json(c, json_pack("{s:s, s:I, s:I, s:I}", "store",
                                         cellar_store_path(s), "pruned",
                                         (json_int_t)removed, "cells", (json_int_t)cells,
                                         "bytes", (json_int_t)bytes));
    } else {
        char size[CELLAR_UNITS_BUFSIZE];
        printf("pruned %" PRIu64 " cell%s; the journal holds %" PRIu64 " (%s)\n", removed,
               removed == 1 ? "" : "s", cells, cellar_units_size(bytes, size));
    }
    cellar_store_close(s);
    return rc;
}

int cellar_cmd_journal(int argc, char **argv)
{
    /* --session is this command's own; the rest is the store commands'. */
    const char *session = NULL;
    bool prune = false;
    char *rest[64];
    int n = 0;
    for (int i = 0; i < argc && n < 63; i++) {
        if (!strcmp(argv[i], "--prune"))
            prune = true;
        else if (!strcmp(argv[i], "--session") && i + 1 < argc)
            session = argv[++i];
        else if (!strncmp(argv[i], "--session=", 10))
            session = argv[i] + 10;
        else
            rest[n++] = argv[i];
    }
    rest[n] = NULL;
    cli c;
    int rc = cli_parse(n, rest, journal_usage, 0, CLI_LIMIT, 2, &c);
    if (rc != CLI_GO_ON)
        return rc;
    if (prune && (session || c.limit)) {
        fprintf(stderr, "cellar journal: --prune takes no --session or --limit\n\n%s",
                journal_usage);
        return 2;
    }
    if (prune)
        return prune_journal(&c);
    cellar_store *s;
    cellar_reader *r;
    if ((rc = cli_open_reader(&c, &s, &r)) != CLI_GO_ON)
        return rc;
    listing l = {.json = c.json, .cells = json_array()};
    cellar_error err;
    rc = 0;
    if (c.limit && l.cells) {
        if (cellar_journal_each(r, session, count_entry, &l, &err)) {
            json_decref(l.cells);
            cli_close_reader(s, r);
            return cli_fail(&c, err.message);
        }
        l.skip = l.seen > c.limit ? l.seen - c.limit : 0;
        l.seen = 0;
    }
    if (!l.cells)
        rc = cli_fail(&c, "out of memory");
    else if (cellar_journal_each(r, session, print_entry, &l, &err))
        rc = cli_fail(&c, err.message);
    else if (l.failed)
        rc = cli_fail(&c, "out of memory");
    else if (c.json)
        rc = cli_print_json(
            &c, json_pack("{s:s, s:O}", "store", cellar_store_path(s), "cells", l.cells));
    else if (json_array_size(l.cells) == 0 && !l.session[0])
        printf("no cells in the journal%s%s\n", session ? " for session " : "",
               session ? session : "");
    json_decref(l.cells);
    cli_close_reader(s, r);
    return rc;
}
