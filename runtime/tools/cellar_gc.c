/*
 * cellar_gc.c - the subcommands of `cellar` that shrink a store: forget
 * (drop named nodes' results), gc (code-aware collection under a byte
 * budget) and compact (rewrite the index without its free pages).  The rules
 * are libcellar's (gc.h); this file parses options, opens the store for
 * writing (never creating one), and prints what was dropped as text or, with
 * --json, one JSON object.  gc's own options (--max-size, --keep, --dry-run)
 * are taken out of argv before store_cli.c parses the common ones; --live
 * (the nodes a kernel defines), --if-over (collect only above a size) and
 * --timeout (stop after S seconds) are what a kernel's `%cellar gc` and its
 * automatic gc pass when they run this command in a child.  Sizes
 * parse and print as units.h says.  Like the other store commands, these
 * trust LMDB's pages: on a store that may be damaged run `cellar verify
 * --repair` first.
 */
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <unistd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cellar/gc.h"
#include "cellar/store.h"
#include "cellar/units.h"
#include "commands.h"
#include "store_cli.h"

#define MAX_FORGET 256

/* Opens an existing store for writing; 0 with `*s` set, else 1 (said). */
static int open_writable(const cli *c, cellar_store **s)
{
    cellar_store_options ro = {.read_only = true};
    cellar_error err;
    /* A read-only open first: a command that drops things never creates a
     * store where there was none. */
    if (cellar_store_open(c->dir, &ro, s, &err))
        return cli_fail(c, err.message);
    cellar_store_close(*s);
    if (cellar_store_open(c->dir, NULL, s, &err))
        return cli_fail(c, err.message);
    if (cellar_store_read_only(*s)) {
        const char *why = cellar_store_notice(*s);
        fprintf(stderr, "cellar %s: %s\n", c->name, why ? why : "the store is read-only");
        cellar_store_close(*s);
        return 1;
    }
    return 0;
}

static json_t *report_json(const cellar_gc_report *r)
{
    return json_pack(
        "{s:I, s:{s:I, s:I, s:I, s:I}, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "keys",
        (json_int_t)r->keys, "keys_by_reason", "old_versions", (json_int_t)r->keys_old,
        "gone", (json_int_t)r->keys_gone, "dangling", (json_int_t)r->keys_dangling,
        "evicted", (json_int_t)r->keys_evicted, "results", (json_int_t)r->results,
        "freed_bytes", (json_int_t)r->freed_bytes, "blobs_removed",
        (json_int_t)r->blobs_removed, "size_before", (json_int_t)r->size_before,
        "size_after", (json_int_t)r->size_after, "keys_kept", (json_int_t)r->keys_kept,
        "results_kept", (json_int_t)r->results_kept);
}

/* ---- forget ---- */

static const char forget_usage[] =
    "usage: cellar forget NODE [NODE ...] [--dir PATH] [--json]\n"
    "\n"
    "Drop every cached result of the named nodes: their keys, their node records,\n"
    "and the results (blob files included) that no other node's key refers to.\n"
    "The next run computes them again.  A running kernel keeps what it holds in\n"
    "memory.  A name the store does not know is not an error.\n"
    "\n"
    "  --dir PATH   the store (default: $CELLAR_DIR, else ./.cellar)\n"
    "  --json       print {\"store\", \"nodes\", \"dropped\": {...}}\n";

int cellar_cmd_forget(int argc, char **argv)
{
    cli c;
    /* cli keeps two positionals; forget takes many, gathered here first. */
    const char *names[MAX_FORGET];
    char *rest[MAX_FORGET + 8];
    size_t n = 0;
    int m = 0;
    for (int i = 0; i < argc; i++) {
        bool takes_value = !strcmp(argv[i], "--dir") && i + 1 < argc;
        if (i > 0 && argv[i][0] != '-') {
            if (n == MAX_FORGET) {
                fprintf(stderr, "cellar forget: at most %d nodes at once\n", MAX_FORGET);
                return 2;
            }
            names[n++] = argv[i];
            continue;
        }
        if (m < MAX_FORGET + 6)
            rest[m++] = argv[i];
        if (takes_value && m < MAX_FORGET + 6)
            rest[m++] = argv[++i];
    }
    int rc = cli_parse(m, rest, forget_usage, 0, 0, 2, &c);
    if (rc != CLI_GO_ON)
        return rc;
    if (!n) {
        fprintf(stderr, "cellar forget: name at least one node\n\n%s", forget_usage);
        return 2;
    }
    cellar_store *s;
    if (open_writable(&c, &s))
        return 1;
    cellar_gc_report r;
    cellar_error err;
    rc = 0;
    if (cellar_store_forget(s, names, n, &r, &err)) {
        rc = cli_fail(&c, err.message);
    } else if (c.json) {
        json_t *list = json_array();
        for (size_t i = 0; list && i < n; i++)
            json_array_append_new(list, json_string(names[i]));
        rc = cli_print_json(&c,
                            json_pack("{s:s, s:o*, s:o*}", "store", cellar_store_path(s),
                                      "nodes", list, "dropped", report_json(&r)));
    } else {
        char a[CELLAR_UNITS_BUFSIZE];
        printf("forgot %zu node%s: %" PRIu64 " key%s, %" PRIu64 " result%s (%s)\n", n,
               n == 1 ? "" : "s", r.keys, r.keys == 1 ? "" : "s", r.results,
               r.results == 1 ? "" : "s", cellar_units_size(r.freed_bytes, a));
    }
    cellar_store_close(s);
    return rc;
}

/* ---- gc ---- */

static const char gc_usage[] =
    "usage: cellar gc [--max-size SIZE] [--keep N] [--dry-run] [--dir PATH] [--json]\n"
    "\n"
    "Code-aware collection: keep the keys of each node's N most recent code\n"
    "versions (so that an edit reverted later still hits), drop older versions,\n"
    "keys of nodes the store has no node record of (see 'cellar forget'), keys\n"
    "whose result is missing, and results no key refers to; then, while the\n"
    "results take more than SIZE, evict least recently used first.  Sizes are the\n"
    "bytes of the stored results (what 'cellar stats' prints); data.mdb reuses\n"
    "freed pages, and 'cellar compact' gives them back to the disk.\n"
    "\n"
    "  --max-size SIZE  the budget, in IEC units: 512MiB, 10GiB, 1.5G\n"
    "                   (default: $CELLAR_MAX_SIZE, else no budget)\n"
    "  --keep N         code versions kept per node (default 3)\n"
    "  --dry-run        only say what would be dropped\n"
    "  --live NAME[,NAME...]  nodes that exist beside those with a node record\n"
    "                   (a kernel's registry; repeatable)\n"
    "  --if-over SIZE   collect only when the results take more than SIZE\n"
    "                   (measured first; \"collected\" says whether it did)\n"
    "  --timeout S      stop (SIGALRM) after S seconds: a damaged B-tree can make\n"
    "                   LMDB loop; the write transaction is then not committed\n"
    "  --dir PATH       the store (default: $CELLAR_DIR, else ./.cellar)\n"
    "  --json           print {\"store\", \"dry_run\", \"max_size\", \"keep\", "
    "\"collected\", \"dropped\": {...}}\n";

/* A size option's value; false (said) when it does not parse. */
static bool size_arg(const char *text, const char *what, uint64_t *out)
{
    if (cellar_units_parse_size(text, out))
        return true;
    fprintf(stderr, "cellar gc: %s '%s' is not a size (try 10GiB, 512MiB, 1.5G)\n", what,
            text);
    return false;
}

static bool count_arg(const char *text, unsigned *out)
{
    char *end;
    unsigned long n = text && *text >= '0' && *text <= '9' ? strtoul(text, &end, 10) : 0;
    if (n && !*end && n < 1000000) {
        *out = (unsigned)n;
        return true;
    }
    fprintf(stderr, "cellar gc: --keep needs a positive count, not '%s'\n",
            text ? text : "");
    return false;
}

/* What gc takes beyond libcellar's options. */
typedef struct gc_extra {
    const char **live; /* --live names, malloc'd (pointers into argv) */
    size_t nlive, cap;
    char **lists;      /* the --live arguments, copied to be cut at commas */
    size_t nlists;
    uint64_t if_over;  /* --if-over; 0: always collect */
    unsigned timeout;  /* --timeout seconds; 0: none */
} gc_extra;

static void gc_extra_free(gc_extra *x)
{
    free(x->live);
    for (size_t i = 0; i < x->nlists; i++)
        free(x->lists[i]);
    free(x->lists);
}

/* Adds the comma-separated names of `text` to x->live; false when out of
 * memory or a name is empty (said). */
static bool live_arg(const char *text, gc_extra *x)
{
    char **lists = realloc(x->lists, (x->nlists + 1) * sizeof *lists);
    char *copy = lists ? strdup(text) : NULL;
    if (lists)
        x->lists = lists;
    if (!copy) {
        fputs("cellar gc: out of memory\n", stderr);
        return false;
    }
    x->lists[x->nlists++] = copy;
    for (char *name = copy, *next; name; name = next) {
        next = strchr(name, ',');
        if (next)
            *next++ = '\0';
        if (!*name) {
            fprintf(stderr, "cellar gc: --live '%s' has an empty name\n", text);
            return false;
        }
        if (x->nlive == x->cap) {
            size_t cap = x->cap ? 2 * x->cap : 64;
            const char **grown = realloc(x->live, cap * sizeof *grown);
            if (!grown) {
                fputs("cellar gc: out of memory\n", stderr);
                return false;
            }
            x->live = grown;
            x->cap = cap;
        }
        x->live[x->nlive++] = name;
    }
    return true;
}

static bool seconds_arg(const char *text, unsigned *out)
{
    char *end;
    unsigned long n = text && *text >= '0' && *text <= '9' ? strtoul(text, &end, 10) : 0;
    if (n && !*end && n <= 86400) {
        *out = (unsigned)n;
        return true;
    }
    fprintf(stderr, "cellar gc: --timeout needs seconds (1 to 86400), not '%s'\n",
            text ? text : "");
    return false;
}

/* Takes gc's own options out of argv into `o` and `x`; the rest into
 * `rest`.  CLI_GO_ON, or 2 after a usage error. */
static int gc_options(int argc, char **argv, cellar_gc_options *o, gc_extra *x,
                      char **rest, int *m)
{
    const char *env = getenv("CELLAR_MAX_SIZE");
    if (env && *env && !size_arg(env, "CELLAR_MAX_SIZE", &o->max_size))
        return 2;
    *m = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        bool ok = true;
        if (!strcmp(a, "--max-size") && i + 1 < argc)
            ok = size_arg(argv[++i], "--max-size", &o->max_size);
        else if (!strncmp(a, "--max-size=", 11))
            ok = size_arg(a + 11, "--max-size", &o->max_size);
        else if (!strcmp(a, "--keep") && i + 1 < argc)
            ok = count_arg(argv[++i], &o->keep);
        else if (!strncmp(a, "--keep=", 7))
            ok = count_arg(a + 7, &o->keep);
        else if (!strcmp(a, "--dry-run"))
            o->dry_run = true;
        else if (!strcmp(a, "--live") && i + 1 < argc)
            ok = live_arg(argv[++i], x);
        else if (!strncmp(a, "--live=", 7))
            ok = live_arg(a + 7, x);
        else if (!strcmp(a, "--if-over") && i + 1 < argc)
            ok = size_arg(argv[++i], "--if-over", &x->if_over);
        else if (!strncmp(a, "--if-over=", 10))
            ok = size_arg(a + 10, "--if-over", &x->if_over);
        else if (!strcmp(a, "--timeout") && i + 1 < argc)
            ok = seconds_arg(argv[++i], &x->timeout);
        else if (!strncmp(a, "--timeout=", 10))
            ok = seconds_arg(a + 10, &x->timeout);
        else if (*m < 60)
            rest[(*m)++] = argv[i];
        else
            ok = false;
        if (!ok) {
            fputs(gc_usage, stderr);
            return 2;
        }
    }
    return CLI_GO_ON;
}

static void print_gc(const cellar_gc_report *r, const cellar_gc_options *o)
{
    char a[CELLAR_UNITS_BUFSIZE], b[CELLAR_UNITS_BUFSIZE], d[CELLAR_UNITS_BUFSIZE];
    printf("%s %" PRIu64 " key%s and %" PRIu64 " result%s (%s)\n",
           o->dry_run ? "gc would drop" : "gc dropped", r->keys, r->keys == 1 ? "" : "s",
           r->results, r->results == 1 ? "" : "s", cellar_units_size(r->freed_bytes, a));
    printf("  keys: %" PRIu64 " of older code versions (keeping %u per node), %" PRIu64
           " of nodes with no record, %" PRIu64 " without a result, %" PRIu64
           " evicted for the budget\n",
           r->keys_old, o->keep ? o->keep : CELLAR_GC_KEEP_DEFAULT, r->keys_gone,
           r->keys_dangling, r->keys_evicted);
    printf("  results: %s before, %s after", cellar_units_size(r->size_before, a),
           cellar_units_size(r->size_after, b));
    if (o->max_size)
        printf(" (budget %s)", cellar_units_size(o->max_size, d));
    printf("; %" PRIu64 " keys and %" PRIu64 " results kept", r->keys_kept,
           r->results_kept);
    if (!o->dry_run)
        printf("; %" PRIu64 " blob file%s removed", r->blobs_removed,
               r->blobs_removed == 1 ? "" : "s");
    putchar('\n');
}

/* The results' bytes, measured in a read snapshot; false (said) on failure. */
static bool measure(const cli *c, cellar_store *s, uint64_t *bytes)
{
    cellar_reader *r;
    cellar_store_stats st;
    cellar_error err;
    if (cellar_reader_begin(s, &r, &err)) {
        cli_fail(c, err.message);
        return false;
    }
    bool ok = !cellar_reader_stats(r, &st, &err);
    cellar_reader_end(r);
    if (!ok)
        cli_fail(c, err.message);
    *bytes = st.result_bytes;
    return ok;
}

int cellar_cmd_gc(int argc, char **argv)
{
    cellar_gc_options o = {0};
    gc_extra x = {0};
    char *rest[64];
    int m;
    int rc = gc_options(argc, argv, &o, &x, rest, &m);
    cli c;
    if (rc == CLI_GO_ON)
        rc = cli_parse(m, rest, gc_usage, 0, 0, 2, &c);
    if (rc != CLI_GO_ON) {
        gc_extra_free(&x);
        return rc;
    }
    if (x.timeout)
        alarm(x.timeout); /* SIGALRM's default action ends the process */
    o.live = x.live;
    o.nlive = x.nlive;
    cellar_store *s;
    cellar_error err;
    if (o.dry_run) {
        cellar_store_options ro = {.read_only = true};
        if (cellar_store_open(c.dir, &ro, &s, &err)) {
            gc_extra_free(&x);
            return cli_fail(&c, err.message);
        }
    } else if (open_writable(&c, &s)) {
        gc_extra_free(&x);
        return 1;
    }
    /* CELLAR_GC_TEST_DELAY=S: a collection that takes S seconds, for the
     * tests of a kernel's gc in the background and of the time limit. */
    const char *delay = getenv("CELLAR_GC_TEST_DELAY");
    if (delay && *delay >= '1' && *delay <= '9')
        sleep((unsigned)atoi(delay));
    cellar_gc_report r = {0};
    bool collect = true;
    rc = 0;
    if (x.if_over && !measure(&c, s, &r.size_before))
        rc = 1;
    else if (x.if_over && r.size_before <= x.if_over) {
        collect = false;
        r.size_after = r.size_before;
    }
    if (!rc && collect && cellar_store_gc(s, &o, &r, &err))
        rc = cli_fail(&c, err.message);
    else if (!rc && c.json)
        rc = cli_print_json(
            &c, json_pack("{s:s, s:b, s:I, s:I, s:b, s:o*}", "store", cellar_store_path(s),
                          "dry_run", o.dry_run, "max_size", (json_int_t)o.max_size,
                          "keep", (json_int_t)(o.keep ? o.keep : CELLAR_GC_KEEP_DEFAULT),
                          "collected", collect, "dropped", report_json(&r)));
    else if (!rc && collect)
        print_gc(&r, &o);
    else if (!rc) {
        char a[CELLAR_UNITS_BUFSIZE], b[CELLAR_UNITS_BUFSIZE];
        printf("gc: the results take %s, not more than %s: nothing collected\n",
               cellar_units_size(r.size_before, a), cellar_units_size(x.if_over, b));
    }
    cellar_store_close(s);
    gc_extra_free(&x);
    return rc;
}

/* ---- compact ---- */

static const char compact_usage[] =
    "usage: cellar compact [--dir PATH] [--json]\n"
    "\n"
    "Rewrite the store's index (data.mdb) without its free pages, with LMDB's\n"
    "compacting copy, and swap it in atomically (rename); then remove blob files\n"
    "that no result refers to.  Refused while another process (a kernel, another\n"
    "cellar command) has the store open: LMDB's lock on lock.mdb says so.\n"
    "\n"
    "  --dir PATH   the store (default: $CELLAR_DIR, else ./.cellar)\n"
    "  --json       print {\"store\", \"file_before\", \"file_after\", "
    "\"orphans_removed\"}\n"
    "\n"
    "exit status: 0 compacted, 1 it failed or the store is in use, 2 usage.\n";

int cellar_cmd_compact(int argc, char **argv)
{
    cli c;
    int rc = cli_parse(argc, argv, compact_usage, 0, 0, 2, &c);
    if (rc != CLI_GO_ON)
        return rc;
    cellar_compact_report r;
    cellar_error err;
    if (cellar_store_compact(c.dir, &r, &err))
        return cli_fail(&c, err.message);
    if (c.json)
        return cli_print_json(&c, json_pack("{s:s, s:I, s:I, s:I}", "store", c.dir,
                                            "file_before", (json_int_t)r.file_before,
                                            "file_after", (json_int_t)r.file_after,
                                            "orphans_removed",
                                            (json_int_t)r.orphans_removed));
    char a[CELLAR_UNITS_BUFSIZE], b[CELLAR_UNITS_BUFSIZE];
    printf("compacted %s: data.mdb %s -> %s; %" PRIu64 " orphan blob file%s removed\n",
           c.dir, cellar_units_size(r.file_before, a), cellar_units_size(r.file_after, b),
           r.orphans_removed, r.orphans_removed == 1 ? "" : "s");
    return 0;
}
