/*
 * cellar_verify.c - `cellar verify [--repair]`: the whole store checked by
 * cellar_store_verify, which walks every database, every record, every
 * result's checksum and every blob in a forked child, so that LMDB crashing
 * on a damaged page is a finding, not the end of this process.
 *
 * Without --repair the store is opened read-only, and a store that the open
 * itself finds damaged (meta pages, a file shorter than its last page, an
 * empty data.mdb, a data.mdb whose meta pages lead to a tree without
 * cellar's databases) is reported as a structure problem, not as a failure
 * to run.  With --repair the store is opened for writing, after a read-only
 * open has shown that it exists (a repair never creates a store); a store
 * damaged at that level is then set aside by the open, and the fresh store
 * is swept of the old one's blobs.  After a repair the store is checked
 * again, and the exit status says whether it is clean now.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cellar/store.h"
#include "commands.h"
#include "store_cli.h"

static const char verify_usage[] =
    "usage: cellar verify [--dir PATH] [--json] [--repair]\n"
    "\n"
    "Check the whole store: LMDB's own structure (meta pages, file size, every\n"
    "B-tree page, walked in a separate process so that damage cannot crash this\n"
    "one), every key, node and run record, every result's checksum, every blob\n"
    "file, and files no result refers to.  Prints each problem: its category\n"
    "(structure, record, result, blob, orphan), where it is (database/key in hex,\n"
    "or the file) and what is wrong.\n"
    "\n"
    "  --dir PATH   the store (default: $CELLAR_DIR, else ./.cellar)\n"
    "  --json       print {\"store\", \"clean\", \"counts\", \"problems\": "
    "[{\"category\",\n"
    "               \"where\", \"message\"}]}, with \"repair\" after --repair\n"
    "  --repair     delete the damaged records and results (their nodes are\n"
    "               recomputed on the next run), remove orphan files, and set a\n"
    "               store whose structure is damaged aside (data.mdb is renamed\n"
    "               data.mdb.damaged-TIME) for a fresh one; then check again\n"
    "\n"
    "exit status: 0 the store is clean (after --repair: clean now, with what was\n"
    "repaired said), 1 problems found (after --repair: problems remain), 2 the\n"
    "check could not run (usage, no store, a read-only store to repair, an I/O\n"
    "error, output that cannot be written).\n";

typedef struct findings {
    const cli *c;
    json_t *list; /* with --json */
} findings;

static void found(void *ctx, cellar_problem kind, const char *where, const char *message)
{
    findings *f = ctx;
    if (f->list)
        json_array_append_new(f->list, json_pack("{s:s, s:s, s:s}", "category",
                                                 cellar_problem_name(kind), "where",
                                                 where, "message", message));
    else
        printf("%-9s  %s: %s\n", cellar_problem_name(kind), where, message);
}

static json_t *counts_json(const cellar_verify_counts *n)
{
    return json_pack("{s:I, s:I, s:I, s:I}", "records", (json_int_t)n->records, "results",
                     (json_int_t)n->results, "blobs", (json_int_t)n->blobs, "problems",
                     (json_int_t)n->problems);
}

static void print_summary(const char *label, const cellar_verify_counts *n)
{
    printf("%s%" PRIu64 " records, %" PRIu64 " results, %" PRIu64 " blobs: %" PRIu64
           " problem%s\n",
           label, n->records, n->results, n->blobs, n->problems,
           n->problems == 1 ? "" : "s");
}

/* Says that the check could not run; exit status 2. */
static int cannot(const cli *c, const char *message)
{
    cli_fail(c, message);
    return 2;
}

/* Whether dir/data.mdb exists and holds more than its two meta pages. */
static bool has_data(const char *dir)
{
    char path[4096];
    struct stat st;
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 2 * 4096;
}

/*
 * Opens the store read-only to look at it.  Returns CLI_GO_ON with `*s` set;
 * CLI_GO_ON with `*s` NULL when the open found the store damaged (reported
 * through `f` as a structure problem, counted in `*n`); or 2.
 */
static int open_to_check(const cli *c, findings *f, cellar_verify_counts *n,
                         cellar_store **s)
{
    cellar_store_options o = {.read_only = true};
    cellar_error err;
    cellar_status st = cellar_store_open(c->dir, &o, s, &err);
    /* A data.mdb with pages but without cellar's databases: damaged meta
     * pages can point LMDB at a tree that lacks them. */
    if (st == CELLAR_ENOTFOUND && has_data(c->dir))
        st = CELLAR_ECORRUPT;
    if (st == CELLAR_ECORRUPT) {
        found(f, CELLAR_PROBLEM_STRUCTURE, "data.mdb", err.message);
        n->problems++;
        *s = NULL;
        return CLI_GO_ON;
    }
    return st ? cannot(c, err.message) : CLI_GO_ON;
}

/* The repair, on a store already checked once; fills `*after` with a
 * second check.  Returns CLI_GO_ON, or 2. */
static int repair(const cli *c, json_t *doc, cellar_verify_counts *after)
{
    cellar_store *s;
    cellar_error err;
    if (cellar_store_open(c->dir, NULL, &s, &err))
        return cannot(c, err.message);
    /* Opening for writing sets a store aside when its meta pages or size
     * are damaged; the notice says so. */
    const char *opened = cellar_store_notice(s);
    char *set_aside = opened && !cellar_store_read_only(s) ? strdup(opened) : NULL;
    if (cellar_store_read_only(s)) {
        char why[CELLAR_ERROR_MESSAGE_MAX + 64];
        snprintf(why, sizeof why, "cannot repair the store %s: %s", cellar_store_path(s),
                 opened ? opened : "it is read-only");
        cellar_store_close(s);
        return cannot(c, why);
    }
    cellar_verify_counts done;
    if (cellar_store_verify(s, true, NULL, NULL, &done, &err)) {
        cellar_store_close(s);
        free(set_aside);
        return cannot(c, err.message);
    }
    const char *later = cellar_store_notice(s);
    if (!set_aside && later)
        set_aside = strdup(later);
    uint64_t removed = done.repaired + (set_aside && opened ? 1 : 0);
    int rc = CLI_GO_ON;
    if (cellar_store_verify(s, false, NULL, NULL, after, &err))
        rc = cannot(c, err.message);
    cellar_store_close(s);
    if (rc == CLI_GO_ON && doc)
        json_object_set_new(doc, "repair",
                            json_pack("{s:I, s:s?, s:o}", "removed", (json_int_t)removed,
                                      "set_aside", set_aside, "after",
                                      counts_json(after)));
    else if (rc == CLI_GO_ON) {
        printf("repaired: %" PRIu64 " damaged entr%s or stray file%s removed\n", removed,
               removed == 1 ? "y" : "ies", removed == 1 ? "" : "s");
        if (set_aside)
            printf("repaired: %s\n", set_aside);
        print_summary("after the repair: ", after);
    }
    free(set_aside);
    return rc;
}

int cellar_cmd_verify(int argc, char **argv)
{
    cli c;
    int rc = cli_parse(argc, argv, verify_usage, 0, CLI_REPAIR, 2, &c);
    if (rc != CLI_GO_ON)
        return rc;
    json_t *doc = c.json ? json_object() : NULL;
    findings f = {&c, c.json ? json_array() : NULL};
    if (c.json && (!doc || !f.list)) {
        json_decref(doc);
        json_decref(f.list);
        return cannot(&c, "out of memory");
    }
    cellar_verify_counts n = {0};
    cellar_store *s = NULL;
    rc = open_to_check(&c, &f, &n, &s);
    if (rc == CLI_GO_ON && s) {
        cellar_error err;
        cellar_verify_counts walked;
        if (cellar_store_verify(s, false, found, &f, &walked, &err))
            rc = cannot(&c, err.message);
        walked.problems += n.problems;
        n = walked;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s", s ? cellar_store_path(s) : c.dir);
    cellar_store_close(s);
    if (rc != CLI_GO_ON) {
        json_decref(doc);
        json_decref(f.list);
        return rc;
    }
    uint64_t remaining = n.problems;
    if (!c.json)
        print_summary("checked ", &n);
    if (c.repair && n.problems) {
        cellar_verify_counts after = {0};
        rc = repair(&c, doc, &after);
        remaining = after.problems;
    }
    if (rc == CLI_GO_ON && doc) {
        json_object_set_new(doc, "store", json_string(path));
        json_object_set_new(doc, "clean", json_boolean(n.problems == 0));
        json_object_set_new(doc, "counts", counts_json(&n));
        json_object_set_new(doc, "problems", f.list);
        f.list = NULL;
        if (cli_print_json(&c, doc))
            rc = 2;
        doc = NULL;
    }
    json_decref(doc);
    json_decref(f.list);
    if (rc != CLI_GO_ON)
        return rc;
    return remaining ? 1 : 0;
}
