/*
 * cellar_store_cmds.c - the subcommands of `cellar` that read a store: ls,
 * show and stats (log is cellar_log.c, verify cellar_verify.c).  Each opens the store
 * read-only (so they work on a store the user may read but not write, and
 * never create one) in a child process that store_cli.c watches, so that a
 * damaged page makes a clear failure instead of a crash, takes one read
 * snapshot, and prints either aligned text for people or, with --json, one
 * JSON document built with jansson for programs.  Run and node records are
 * read through records.h, the codec the extension writes them with, and sizes
 * and times print as units.h says.  Problems go to stderr with exit status 1;
 * bad usage exits 2.  Output errors are caught once, at exit, in cellar.c.
 */
#define _GNU_SOURCE /* memmem */
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cellar/gc.h"
#include "cellar/records.h"
#include "cellar/store.h"
#include "cellar/units.h"
#include "commands.h"
#include "store_cli.h"

#define KEY_PREFIX 12 /* hex digits of a key or data version shown by ls */
#define MIN_KEY_PREFIX 6

/* ---- formatting ---- */






/* ---- collecting key records (node names copied out of the map) ---- */

typedef struct entry {
    cellar_hash key;
    cellar_key_record rec;
    char *node;
} entry;

typedef struct entries {
    entry *items;
    size_t n, cap;
    const char *only_node; /* when set, keep only this node's keys */
    bool oom;
} entries;

static int collect_entry(void *ctx, const cellar_hash *key, const cellar_key_record *rec)
{
    entries *e = ctx;
    if (e->only_node && (strlen(e->only_node) != rec->node_len ||
                         memcmp(e->only_node, rec->node, rec->node_len) != 0))
        return 0;
    if (e->n == e->cap) {
        size_t cap = e->cap ? 2 * e->cap : 64;
        entry *items = realloc(e->items, cap * sizeof *items);
        if (!items) {
            e->oom = true;
            return 1;
        }
        e->items = items;
        e->cap = cap;
    }
    entry *it = &e->items[e->n];
    it->key = *key;
    it->rec = *rec;
    it->node = strndup(rec->node, rec->node_len);
    if (!it->node) {
        e->oom = true;
        return 1;
    }
    it->rec.node = it->node;
    e->n++;
    return 0;
}

static void entries_free(entries *e)
{
    for (size_t i = 0; i < e->n; i++)
        free(e->items[i].node);
    free(e->items);
}

static int by_node_then_created(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    int c = strcmp(x->node, y->node);
    if (c)
        return c;
    return (x->rec.created_ns > y->rec.created_ns) -
           (x->rec.created_ns < y->rec.created_ns);
}

static int collect_all(const cli *c, cellar_reader *r, entries *e)
{
    cellar_error err;
    if (cellar_reader_each_key(r, collect_entry, e, &err))
        return cli_fail(c, err.message);
    if (e->oom)
        return cli_fail(c, "out of memory");
    if (e->n > 1)
        qsort(e->items, e->n, sizeof *e->items, by_node_then_created);
    return 0;
}

static json_t *entry_json(const entry *it, cellar_reader *r)
{
    char key[33], dv[33], cv[33];
    cellar_hash_to_hex(&it->key, key);
    cellar_hash_to_hex(&it->rec.data_version, dv);
    cellar_hash_to_hex(&it->rec.code_version, cv);
    return json_pack(
        "{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:b}", "node", it->node, "key", key,
        "data_version", dv, "code_version", cv, "size", (json_int_t)it->rec.size,
        "compute_ns", (json_int_t)it->rec.compute_ns, "created_ns",
        (json_int_t)it->rec.created_ns, "last_used_ns", (json_int_t)it->rec.last_used_ns,
        "result_stored", cellar_reader_has_result(r, &it->rec.data_version));
}

static json_t *entries_json(const entries *e, cellar_reader *r)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < e->n; i++)
        if (json_array_append_new(arr, entry_json(&e->items[i], r))) {
            json_decref(arr);
            return NULL;
        }
    return arr;
}

/* node_width 0 leaves the node column out (show NODE already names it). */
static void print_entry_rows(const entries *e, int node_width, int hex_width)
{
    char a[32], b[32], cr[32], lu[32], key[33], dv[33];
    if (node_width)
        printf("%-*s  ", node_width, "NODE");
    printf("%-*s  %-*s  %10s  %10s  %-19s  %s\n", hex_width, "KEY", hex_width, "DATA",
           "SIZE", "COMPUTE", "CREATED", "LAST USED");
    for (size_t i = 0; i < e->n; i++) {
        const entry *it = &e->items[i];
        cellar_hash_to_hex(&it->key, key);
        cellar_hash_to_hex(&it->rec.data_version, dv);
        if (node_width)
            printf("%-*s  ", node_width, it->node);
        cellar_units_duration(it->rec.compute_ns, b);
        printf("%.*s  %.*s  %10s  %*s  %-19s  %s\n", hex_width, key, hex_width, dv,
               cellar_units_size(it->rec.size, a), cli_width_of(b, 10), b,
               cellar_units_moment(it->rec.created_ns, cr), cellar_units_moment(it->rec.last_used_ns, lu));
    }
}

/* ---- ls ---- */

static const char ls_usage[] =
    "usage: cellar ls [--dir PATH] [--json]\n"
    "\n"
    "List every cache key of a store, sorted by node: key and data version\n"
    "prefixes, size, compute time, when it was created and last used.\n"
    "\n"
    "  --dir PATH   the store (default: $CELLAR_DIR, else ./.cellar)\n"
    "  --json       print {\"store\", \"keys\": [...]} with full hashes and raw "
    "numbers\n";

int cellar_cmd_ls(int argc, char **argv)
{
    cli c;
    int rc = cli_parse(argc, argv, ls_usage, 0, 0, 2, &c);
    if (rc != CLI_GO_ON)
        return rc;
    cellar_store *s;
    cellar_reader *r;
    if ((rc = cli_open_reader(&c, &s, &r)) != CLI_GO_ON)
        return rc;
    rc = 0;
    entries e = {0};
    rc = collect_all(&c, r, &e);
    if (!rc && c.json) {
        rc = cli_print_json(&c, json_pack("{s:s, s:o*}", "store", cellar_store_path(s),
                                          "keys", entries_json(&e, r)));
    } else if (!rc) {
        int width = 4;
        for (size_t i = 0; i < e.n; i++)
            if ((int)strlen(e.items[i].node) > width)
                width = (int)strlen(e.items[i].node);
        print_entry_rows(&e, width, KEY_PREFIX);
    }
    entries_free(&e);
    cli_close_reader(s, r);
    return rc;
}

/* ---- show ---- */

static const char show_usage[] =
    "usage: cellar show NODE|KEY [--dir PATH] [--json]\n"
    "\n"
    "NODE: the node's recorded metadata, all its cache keys, and the runs that\n"
    "included it (newest first).  KEY: one cache key record, given as 32 hex\n"
    "digits or a unique prefix of at least 6.\n"
    "\n"
    "  --node       NODE is a node name, never a key prefix; a node the store\n"
    "               knows nothing of is shown without keys or runs (exit 0)\n"
    "  --dir PATH   the store (default: $CELLAR_DIR, else ./.cellar)\n"
    "  --json       print one JSON object; each run has \"run_id\", \"started_ns\",\n"
    "               \"targets\" and the node's \"entry\"; \"unreadable\"\n"
    "               ({count, first_run, first}) when run records cannot be read\n";

typedef struct run_hits {
    const char *node;
    char *needle; /* `["NODE",`: how a row of the node begins in a run record */
    json_t *runs;       /* [{"run_id", "entry"}] */
    size_t unreadable;  /* run records that could not be decoded */
    uint64_t first_bad; /* the id of the first of them */
    char why[CELLAR_ERROR_MESSAGE_MAX];
} run_hits;




static int collect_run(void *ctx, uint64_t run_id, const char *json, size_t len)
{
    run_hits *h = ctx;
    /* Most runs do not include the node: a row of it starts with its name as
     * a JSON string (node names are identifiers, written unescaped). */
    if (h->needle && !memmem(json, len, h->needle, strlen(h->needle)))
        return 0;
    cellar_run_record *run;
    cellar_error err;
    if (cellar_run_record_decode(json, len, &run, &err) != CELLAR_OK) {
        if (!h->unreadable++) {
            h->first_bad = run_id;
            snprintf(h->why, sizeof h->why, "%s", err.message);
        }
        return 0;
    }
    const cellar_lineage_row *row = cellar_run_record_find(run, h->node);
    if (row) {
        json_t *targets = json_array();
        for (size_t i = 0; targets && i < run->ntargets; i++)
            json_array_append_new(targets, json_string(run->targets[i]));
        json_array_append_new(h->runs,
                              json_pack("{s:I, s:I, s:o*, s:o}", "run_id",
                                        (json_int_t)run_id, "started_ns",
                                        (json_int_t)run->started_ns, "targets", targets,
                                        "entry", cli_lineage_row_json(row)));
    }
    cellar_run_record_free(run);
    return 0;
}

static void print_run_rows(json_t *runs)
{
    size_t i;
    json_t *run;
    char t[32], d[32], z[32];
    printf("runs (%zu, newest first):\n", json_array_size(runs));
    if (json_array_size(runs))
        printf("  %-19s  %-19s  %-10s  %10s  %10s  %s\n", "RUN", "STARTED", "STATUS",
               "TIME", "SIZE", "DATA");
    json_array_foreach(runs, i, run)
    {
        json_t *e = json_object_get(run, "entry");
        uint64_t id = (uint64_t)json_integer_value(json_object_get(run, "run_id"));
        const char *status = json_string_value(json_object_get(e, "status"));
        const char *dv = json_string_value(json_object_get(e, "data_version"));
        json_t *size = json_object_get(e, "size");
        cellar_units_duration((uint64_t)json_integer_value(json_object_get(e, "time_ns")), d);
        printf("  %-19" PRIu64 "  %-19s  %-10s  %*s  %10s  %.12s\n", id, cellar_units_moment(id, t),
               status ? status : "-", cli_width_of(d, 10), d,
               json_is_integer(size) ? cellar_units_size((uint64_t)json_integer_value(size), z)
                                     : "-",
               dv ? dv : "-");
    }
}

/* The node record as `show --json` prints it. */
static json_t *node_json(const cellar_node_record *n)
{
    json_t *params = json_array();
    for (size_t i = 0; params && i < n->nparams; i++)
        json_array_append_new(params, json_string(n->params[i]));
    return json_pack("{s:s, s:o*, s:s?, s:o, s:o, s:o, s:I}", "name", n->name, "params",
                     params, "cell_id", n->cell_id, "code_version",
                     cli_hex_json(true, &n->code_version), "key", cli_hex_json(true, &n->key),
                     "data_version", cli_hex_json(true, &n->data_version), "updated_ns",
                     (json_int_t)n->updated_ns);
}

static void print_node(const cellar_node_record *n)
{
    char cv[33], key[33], dv[33], t[32];
    cellar_hash_to_hex(&n->code_version, cv);
    cellar_hash_to_hex(&n->key, key);
    cellar_hash_to_hex(&n->data_version, dv);
    printf("params        ");
    for (size_t i = 0; i < n->nparams; i++)
        printf("%s%s", i ? ", " : "", n->params[i]);
    printf("%s\ncell id       %s\ncode version  %s\nlatest key    %s\n"
           "data version  %s\nupdated       %s\n",
           n->nparams ? "" : "(none)", n->cell_id ? n->cell_id : "(none)", cv, key, dv,
           cellar_units_moment(n->updated_ns, t));
}

/* `meta` is the node's record, NULL when the store has none.  Records that
 * cannot be read are named on stderr and make the exit status 1, but what
 * can be read is still shown. */
static int show_node(const cli *c, cellar_store *s, cellar_reader *r, const char *meta,
                     size_t meta_len, entries *e)
{
    cellar_error err;
    run_hits h = {.node = c->pos[0], .runs = json_array()};
    size_t nlen = strlen(c->pos[0]);
    bool plain = strspn(c->pos[0], "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                   "0123456789_") == nlen;
    if (plain && (h.needle = malloc(nlen + 4)))
        snprintf(h.needle, nlen + 4, "[\"%s\",", c->pos[0]);
    if (!h.runs || (plain && !h.needle)) {
        json_decref(h.runs);
        free(h.needle);
        return cli_fail(c, "out of memory");
    }
    cellar_status walked = cellar_reader_each_run(r, collect_run, &h, &err);
    free(h.needle);
    if (walked) {
        json_decref(h.runs);
        return cli_fail(c, err.message);
    }
    int rc = 0;
    cellar_node_record *node = NULL;
    if (meta && cellar_node_record_decode(meta, meta_len, &node, &err) != CELLAR_OK) {
        fprintf(stderr, "cellar show: the record of node '%s' cannot be read: %s\n",
                c->pos[0], err.message);
        rc = 1;
    }
    if (h.unreadable) {
        fprintf(stderr,
                "cellar show: %zu run record%s cannot be read (the first, run %" PRIu64
                ": %s)\n",
                h.unreadable, h.unreadable == 1 ? "" : "s", h.first_bad, h.why);
        rc = 1;
    }
    if (c->json) {
        int out =
            cli_print_json(c, json_pack("{s:s, s:s, s:o, s:o*, s:o, s:o*, s:s*}", "store",
                                        cellar_store_path(s), "node", c->pos[0],
                                        "metadata", node ? node_json(node) : json_null(),
                                        "keys", entries_json(e, r), "runs", h.runs,
                                        "unreadable",
                                        cli_unreadable_json(h.unreadable, h.first_bad, h.why),
                                        "metadata_unreadable",
                                        meta && !node ? err.message : NULL));
        cellar_node_record_free(node);
        return out ? out : rc;
    }
    printf("node %s\n", c->pos[0]);
    if (node)
        print_node(node);
    else
        printf("metadata: (%s)\n", meta ? "unreadable" : "none recorded");
    printf("keys (%zu):\n", e->n);
    if (e->n)
        print_entry_rows(e, 0, CELLAR_HASH_HEX_LEN);
    print_run_rows(h.runs);
    cellar_node_record_free(node);
    json_decref(h.runs);
    return rc;
}

static bool is_hex(const char *s)
{
    size_t n = strlen(s);
    if (n < MIN_KEY_PREFIX || n > CELLAR_HASH_HEX_LEN)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!strchr("0123456789abcdefABCDEF", s[i]))
            return false;
    return true;
}

typedef struct prefix_search {
    char prefix[CELLAR_HASH_HEX_LEN + 1];
    size_t len;
    entries found;
} prefix_search;

static int match_prefix(void *ctx, const cellar_hash *key, const cellar_key_record *rec)
{
    prefix_search *p = ctx;
    char hex[33];
    cellar_hash_to_hex(key, hex);
    if (strncmp(hex, p->prefix, p->len) != 0)
        return 0;
    collect_entry(&p->found, key, rec);
    return p->found.n > 10 || p->found.oom; /* enough to say it is ambiguous */
}

static int show_key(const cli *c, cellar_reader *r)
{
    prefix_search p = {.len = strlen(c->pos[0])};
    for (size_t i = 0; i < p.len; i++)
        p.prefix[i] = (char)(c->pos[0][i] | 0x20); /* lower-case hex */
    cellar_error err;
    int rc = 0;
    if (cellar_reader_each_key(r, match_prefix, &p, &err))
        rc = cli_fail(c, err.message);
    else if (p.found.oom)
        rc = cli_fail(c, "out of memory");
    else if (p.found.n == 0) {
        fprintf(stderr, "cellar show: no node or cache key '%s'\n", c->pos[0]);
        rc = 1;
    } else if (p.found.n > 1) {
        fprintf(stderr, "cellar show: '%s' is ambiguous: it begins %s%zu keys\n",
                c->pos[0], p.found.n > 10 ? "more than " : "",
                p.found.n > 10 ? (size_t)10 : p.found.n);
        rc = 1;
    } else if (c->json) {
        rc = cli_print_json(c, entry_json(&p.found.items[0], r));
    } else {
        const entry *it = &p.found.items[0];
        char key[33], dv[33], cv[33], a[32], b[32], t1[32], t2[32];
        cellar_hash_to_hex(&it->key, key);
        cellar_hash_to_hex(&it->rec.data_version, dv);
        cellar_hash_to_hex(&it->rec.code_version, cv);
        printf("key           %s\nnode          %s\ndata version  %s (%s)\n"
               "code version  %s\nsize          %s\ncompute time  %s\n"
               "created       %s\nlast used     %s\n",
               key, it->node, dv,
               cellar_reader_has_result(r, &it->rec.data_version) ? "stored"
                                                                  : "not stored",
               cv, cellar_units_size(it->rec.size, a), cellar_units_duration(it->rec.compute_ns, b),
               cellar_units_moment(it->rec.created_ns, t1), cellar_units_moment(it->rec.last_used_ns, t2));
    }
    entries_free(&p.found);
    return rc;
}

int cellar_cmd_show(int argc, char **argv)
{
    cli c;
    /* --node is show's own; the rest is store_cli.c's. */
    char *rest[16];
    int m = 0;
    bool node_only = false;
    for (int i = 0; i < argc; i++) {
        if (i > 0 && !strcmp(argv[i], "--node"))
            node_only = true;
        else if (m < 16)
            rest[m++] = argv[i];
        else {
            fprintf(stderr, "cellar show: too many arguments\n\n%s", show_usage);
            return 2;
        }
    }
    int rc = cli_parse(m, rest, show_usage, 1, 0, 2, &c);
    if (rc != CLI_GO_ON)
        return rc;
    if (c.npos != 1) {
        fprintf(stderr, "cellar show: which node or key?\n\n%s", show_usage);
        return 2;
    }
    cellar_store *s;
    cellar_reader *r;
    if ((rc = cli_open_reader(&c, &s, &r)) != CLI_GO_ON)
        return rc;
    rc = 0;
    /* A name is a node when the store knows it; otherwise hex is a key. */
    const char *meta = NULL;
    size_t meta_len = 0;
    cellar_error err;
    cellar_status st = cellar_reader_get_node(r, c.pos[0], &meta, &meta_len, &err);
    entries e = {.only_node = c.pos[0]};
    if (st && st != CELLAR_ENOTFOUND)
        rc = cli_fail(&c, err.message);
    else
        rc = collect_all(&c, r, &e);
    if (!rc) {
        if (!st || e.n || node_only)
            rc = show_node(&c, s, r, st ? NULL : meta, meta_len, &e);
        else if (is_hex(c.pos[0]))
            rc = show_key(&c, r);
        else {
            fprintf(stderr, "cellar show: no node '%s' in %s%s\n", c.pos[0],
                    cellar_store_path(s),
                    strspn(c.pos[0], "0123456789abcdefABCDEF") == strlen(c.pos[0])
                        ? " (a key prefix needs at least 6 hex digits)"
                        : "");
            rc = 1;
        }
    }
    entries_free(&e);
    cli_close_reader(s, r);
    return rc;
}

/* ---- stats ---- */

static const char stats_usage[] =
    "usage: cellar stats [--dir PATH] [--json]\n"
    "\n"
    "Counts of keys, results, blob files, nodes and runs, and the store's sizes:\n"
    "what the results take (headers and segments, inline or in blobs), the bytes\n"
    "of the blob files, the disk space data.mdb takes and LMDB's map size, and\n"
    "what 'cellar gc' would free (its defaults, with $CELLAR_MAX_SIZE as budget).\n"
    "\n"
    "  --dir PATH   the store (default: $CELLAR_DIR, else ./.cellar)\n"
    "  --json       print one JSON object with raw numbers\n";

int cellar_cmd_stats(int argc, char **argv)
{
    cli c;
    int rc = cli_parse(argc, argv, stats_usage, 0, 0, 2, &c);
    if (rc != CLI_GO_ON)
        return rc;
    cellar_store *s;
    cellar_reader *r;
    if ((rc = cli_open_reader(&c, &s, &r)) != CLI_GO_ON)
        return rc;
    rc = 0;
    cellar_store_stats st;
    cellar_error err;
    /* What `cellar gc` (defaults, $CELLAR_MAX_SIZE) would free. */
    cellar_gc_options gco = {0};
    cellar_gc_report gc;
    const char *budget = getenv("CELLAR_MAX_SIZE");
    if (budget && *budget && !cellar_units_parse_size(budget, &gco.max_size))
        gco.max_size = 0;
    if (cellar_reader_stats(r, &st, &err) || cellar_reader_gc_plan(r, &gco, &gc, &err)) {
        rc = cli_fail(&c, err.message);
    } else if (c.json) {
        rc = cli_print_json(
            &c,
            json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:{s:I, s:I}, s:I, s:I, s:I, "
                      "s:{s:I, s:I, s:I, s:I}}",
                      "store", cellar_store_path(s), "keys", (json_int_t)st.keys,
                      "results", (json_int_t)st.results, "nodes", (json_int_t)st.nodes,
                      "runs", (json_int_t)st.runs, "result_bytes",
                      (json_int_t)st.result_bytes, "blobs", "count", (json_int_t)st.blobs,
                      "bytes", (json_int_t)st.blob_bytes, "map_size",
                      (json_int_t)st.map_size, "file_bytes", (json_int_t)st.file_bytes,
                      "last_txn", (json_int_t)st.last_txn, "gc_would_free", "keys",
                      (json_int_t)gc.keys, "results", (json_int_t)gc.results, "bytes",
                      (json_int_t)gc.freed_bytes, "max_size", (json_int_t)gco.max_size));
    } else {
        char a[32], b[32], d[32], e[32];
        printf("store      %s\nkeys       %" PRIu64 "\nresults    %" PRIu64 " (%s)\n"
               "blobs      %" PRIu64 " (%s)\nnodes      %" PRIu64 "\nruns       %" PRIu64
               "\nfile size  %s\nmap size   %s\n",
               cellar_store_path(s), st.keys, st.results, cellar_units_size(st.result_bytes, a),
               st.blobs, cellar_units_size(st.blob_bytes, e), st.nodes, st.runs,
               cellar_units_size(st.file_bytes, b), cellar_units_size(st.map_size, d));
        printf("gc frees   %s (%" PRIu64 " keys, %" PRIu64
               " results; keep %u versions%s%s)\n",
               cellar_units_size(gc.freed_bytes, a), gc.keys, gc.results, CELLAR_GC_KEEP_DEFAULT,
               gco.max_size ? ", max size " : "",
               gco.max_size ? cellar_units_size(gco.max_size, b) : "");
    }
    cli_close_reader(s, r);
    return rc;
}
