/*
 * cellar_store_cmds.c - the subcommands of `cellar` that read a store: ls,
 * show, log and stats (verify is cellar_verify.c).  Each opens the store
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

static const char *fmt_size(uint64_t n, char buf[32])
{
    return cellar_units_size(n, buf);
}

static const char *fmt_duration(uint64_t ns, char buf[32])
{
    return cellar_units_duration(ns, buf);
}

/* The printf width that right-aligns `s` in `columns` terminal columns:
 * "µs" is two bytes and one column. */
static int width_of(const char *s, int columns)
{
    for (; *s; s++)
        columns += ((unsigned char)*s & 0xC0) == 0x80;
    return columns;
}

/* Local time to the second, as the notebook prints it. */
static const char *fmt_time(uint64_t ns, char buf[32])
{
    return cellar_units_moment(ns, buf);
}

static void hex_of(const cellar_hash *h, char out[CELLAR_HASH_HEX_LEN + 1])
{
    cellar_hash_to_hex(h, out);
}

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
    hex_of(&it->key, key);
    hex_of(&it->rec.data_version, dv);
    hex_of(&it->rec.code_version, cv);
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
        hex_of(&it->key, key);
        hex_of(&it->rec.data_version, dv);
        if (node_width)
            printf("%-*s  ", node_width, it->node);
        fmt_duration(it->rec.compute_ns, b);
        printf("%.*s  %.*s  %10s  %*s  %-19s  %s\n", hex_width, key, hex_width, dv,
               fmt_size(it->rec.size, a), width_of(b, 10), b,
               fmt_time(it->rec.created_ns, cr), fmt_time(it->rec.last_used_ns, lu));
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

/* {"count", "first_run", "first"} for records that cannot be read, or NULL
 * (the key left out) when there are none. */
static json_t *unreadable_json(size_t count, uint64_t first_run, const char *why)
{
    if (!count)
        return NULL;
    return json_pack("{s:I, s:I, s:s}", "count", (json_int_t)count, "first_run",
                     (json_int_t)first_run, "first", why);
}

static json_t *hex_json(bool have, const cellar_hash *h)
{
    char hex[CELLAR_HASH_HEX_LEN + 1];
    if (!have)
        return json_null();
    hex_of(h, hex);
    return json_string(hex);
}

/* One node's lineage row as the JSON object `show --json` prints. */
static json_t *row_json(const cellar_lineage_row *row)
{
    return json_pack("{s:s, s:s, s:o, s:o, s:I, s:o, s:s?}", "node", row->node, "status",
                     cellar_outcome_name(row->outcome), "key",
                     hex_json(row->has_versions, &row->key), "data_version",
                     hex_json(row->has_versions, &row->data_version), "time_ns",
                     (json_int_t)row->time_ns, "size",
                     row->has_size ? json_integer((json_int_t)row->size) : json_null(),
                     "error", row->error);
}

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
                                        "entry", row_json(row)));
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
        fmt_duration((uint64_t)json_integer_value(json_object_get(e, "time_ns")), d);
        printf("  %-19" PRIu64 "  %-19s  %-10s  %*s  %10s  %.12s\n", id, fmt_time(id, t),
               status ? status : "-", width_of(d, 10), d,
               json_is_integer(size) ? fmt_size((uint64_t)json_integer_value(size), z)
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
                     hex_json(true, &n->code_version), "key", hex_json(true, &n->key),
                     "data_version", hex_json(true, &n->data_version), "updated_ns",
                     (json_int_t)n->updated_ns);
}

static void print_node(const cellar_node_record *n)
{
    char cv[33], key[33], dv[33], t[32];
    hex_of(&n->code_version, cv);
    hex_of(&n->key, key);
    hex_of(&n->data_version, dv);
    printf("params        ");
    for (size_t i = 0; i < n->nparams; i++)
        printf("%s%s", i ? ", " : "", n->params[i]);
    printf("%s\ncell id       %s\ncode version  %s\nlatest key    %s\n"
           "data version  %s\nupdated       %s\n",
           n->nparams ? "" : "(none)", n->cell_id ? n->cell_id : "(none)", cv, key, dv,
           fmt_time(n->updated_ns, t));
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
                                        unreadable_json(h.unreadable, h.first_bad, h.why),
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
    hex_of(key, hex);
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
        hex_of(&it->key, key);
        hex_of(&it->rec.data_version, dv);
        hex_of(&it->rec.code_version, cv);
        printf("key           %s\nnode          %s\ndata version  %s (%s)\n"
               "code version  %s\nsize          %s\ncompute time  %s\n"
               "created       %s\nlast used     %s\n",
               key, it->node, dv,
               cellar_reader_has_result(r, &it->rec.data_version) ? "stored"
                                                                  : "not stored",
               cv, fmt_size(it->rec.size, a), fmt_duration(it->rec.compute_ns, b),
               fmt_time(it->rec.created_ns, t1), fmt_time(it->rec.last_used_ns, t2));
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

/* ---- log ---- */

static const char log_usage[] =
    "usage: cellar log [RUN] [--dir PATH] [--json] [--limit N]\n"
    "\n"
    "The store's runs, newest first: when each started, its process id, how many\n"
    "nodes computed, loaded, were in memory, failed and were skipped, the time\n"
    "its nodes took, the inputs they read (NAME=VALUE, marked (global) or\n"
    "(default) when not given to the run), and its targets.  %cellar log shows\n"
    "the same in a notebook.  With RUN (an id from the RUN column): that run's\n"
    "inputs with their data versions, and every node of it with its status, time,\n"
    "size, data version and why it failed or was skipped.\n"
    "\n"
    "  --dir PATH   the store (default: $CELLAR_DIR, else ./.cellar)\n"
    "  --json       print {\"store\", \"total\", \"runs\": [...]} with raw numbers\n"
    "               (\"total\": the runs in the store); each run also has\n"
    "               \"inputs\" ([{name, source, data_version, value}]) and\n"
    "               \"outcomes\" (the node names per outcome); \"unreadable\"\n"
    "               ({count, first_run, first}) when some records cannot be read\n"
    "  --limit N    only the newest N runs\n";

typedef struct run_log {
    unsigned long limit, seen, total;
    json_t *runs;
    size_t unreadable;
    uint64_t first_bad;
    char why[CELLAR_ERROR_MESSAGE_MAX];
} run_log;

/* A run's inputs: [{"name", "source", "data_version", "value"}]. */
static json_t *inputs_json(const cellar_run_record *run)
{
    json_t *inputs = json_array();
    for (size_t i = 0; inputs && i < run->ninputs; i++) {
        const cellar_run_input *in = &run->inputs[i];
        char dv[CELLAR_HASH_HEX_LEN + 1];
        hex_of(&in->data_version, dv);
        json_array_append_new(inputs,
                              json_pack("{s:s, s:s, s:s, s:s?}", "name", in->name,
                                        "source", cellar_input_source_name(in->source),
                                        "data_version", dv, "value", in->shown));
    }
    return inputs;
}

static int log_run(void *ctx, uint64_t run_id, const char *json, size_t len)
{
    run_log *l = ctx;
    /* Runs past the limit are only counted, for "total". */
    l->total++;
    if (l->limit && l->seen >= l->limit)
        return 0;
    l->seen++;
    cellar_run_record *run;
    cellar_error err;
    if (cellar_run_record_decode(json, len, &run, &err) != CELLAR_OK) {
        if (!l->unreadable++) {
            l->first_bad = run_id;
            snprintf(l->why, sizeof l->why, "%s", err.message);
        }
        return 0;
    }
    json_int_t counts[CELLAR_OUTCOME_SKIPPED + 1] = {0};
    uint64_t took = 0;
    for (size_t i = 0; i < run->nrows; i++) {
        counts[run->rows[i].outcome]++;
        took += run->rows[i].time_ns;
    }
    json_t *targets = json_array();
    for (size_t i = 0; targets && i < run->ntargets; i++)
        json_array_append_new(targets, json_string(run->targets[i]));
    json_t *inputs = inputs_json(run);
    /* What each node did: its name under its outcome, in plan order, keyed as
     * the counts are ("in_memory"). */
    static const char *const outcome_keys[] = {"computed", "loaded", "in_memory",
                                               "failed", "skipped"};
    json_t *outcomes = json_object();
    for (int k = 0; outcomes && k <= CELLAR_OUTCOME_SKIPPED; k++)
        json_object_set_new(outcomes, outcome_keys[k], json_array());
    for (size_t i = 0; outcomes && i < run->nrows; i++)
        if ((unsigned)run->rows[i].outcome <= CELLAR_OUTCOME_SKIPPED)
            json_array_append_new(
                json_object_get(outcomes, outcome_keys[run->rows[i].outcome]),
                json_string(run->rows[i].node));
    json_t *row = json_pack(
        "{s:I, s:I, s:I, s:o*, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "run_id",
        (json_int_t)run_id, "started_ns", (json_int_t)run->started_ns, "pid",
        (json_int_t)run->pid, "targets", targets, "nodes", (json_int_t)run->nrows,
        "computed", counts[CELLAR_OUTCOME_COMPUTED], "loaded",
        counts[CELLAR_OUTCOME_LOADED], "in_memory", counts[CELLAR_OUTCOME_IN_MEMORY],
        "failed", counts[CELLAR_OUTCOME_FAILED], "skipped",
        counts[CELLAR_OUTCOME_SKIPPED], "node_ns", (json_int_t)took);
    if (row) {
        json_object_set_new(row, "inputs", inputs ? inputs : json_array());
        json_object_set_new(row, "outcomes", outcomes ? outcomes : json_object());
        json_array_append_new(l->runs, row);
    } else {
        json_decref(inputs);
        json_decref(outcomes);
    }
    cellar_run_record_free(run);
    return 0;
}

/* A run's inputs as one word list, "n=3 path='x'(global)", as %cellar log
 * shows them; "-" for none.  A new string (NULL when out of memory). */
static char *inputs_text(json_t *run)
{
    size_t cap = 64, len = 0;
    char *out = malloc(cap);
    size_t i;
    json_t *in;
    json_array_foreach(json_object_get(run, "inputs"), i, in)
    {
        const char *source = json_string_value(json_object_get(in, "source"));
        const char *value = json_string_value(json_object_get(in, "value"));
        const char *from = !source || !strcmp(source, "given") ? ""
                           : !strcmp(source, "global")         ? " (global)"
                                                               : " (default)";
        const char *name = json_string_value(json_object_get(in, "name"));
        size_t need =
            strlen(name ? name : "?") + strlen(value ? value : "?") + strlen(from) + 4;
        if (out && len + need > cap) {
            while (len + need > cap)
                cap *= 2;
            char *grown = realloc(out, cap);
            if (!grown)
                free(out);
            out = grown;
        }
        if (out)
            len += (size_t)snprintf(out + len, cap - len, "%s%s=%s%s", i ? ", " : "",
                                    name ? name : "?", value ? value : "?", from);
    }
    if (out && !len)
        snprintf(out, cap, "-");
    return out;
}

static void print_log_rows(json_t *runs)
{
    static const char *const fields[] = {"nodes",     "computed", "loaded",
                                         "in_memory", "failed",   "skipped"};
    size_t i;
    json_t *run;
    int inputs_width = 6;
    json_array_foreach(runs, i, run)
    {
        char *text = inputs_text(run);
        /* Terminal columns: the bytes less the UTF-8 continuation bytes. */
        int columns =
            text ? 2 * (int)strlen(text) - width_of(text, (int)strlen(text)) : 0;
        if (columns > inputs_width)
            inputs_width = columns;
        free(text);
    }
    printf("%-19s  %-19s  %7s  %5s  %8s  %6s  %9s  %6s  %7s  %10s  %-*s  %s\n", "RUN",
           "STARTED", "PID", "NODES", "COMPUTED", "LOADED", "IN MEMORY", "FAILED",
           "SKIPPED", "TIME", inputs_width, "INPUTS", "TARGETS");
    json_array_foreach(runs, i, run)
    {
        char t[32], d[32];
        long long v[6];
        for (size_t k = 0; k < 6; k++)
            v[k] = (long long)json_integer_value(json_object_get(run, fields[k]));
        uint64_t id = (uint64_t)json_integer_value(json_object_get(run, "run_id"));
        fmt_duration((uint64_t)json_integer_value(json_object_get(run, "node_ns")), d);
        printf(
            "%-19" PRIu64
            "  %-19s  %7lld  %5lld  %8lld  %6lld  %9lld  %6lld  %7lld  %*s  ",
            id,
            fmt_time((uint64_t)json_integer_value(json_object_get(run, "started_ns")), t),
            (long long)json_integer_value(json_object_get(run, "pid")), v[0], v[1], v[2],
            v[3], v[4], v[5], width_of(d, 10), d);
        char *text = inputs_text(run);
        printf("%-*s  ", text ? width_of(text, inputs_width) : inputs_width,
               text ? text : "?");
        free(text);
        size_t j;
        json_t *target;
        json_array_foreach(json_object_get(run, "targets"), j, target)
            printf("%s%s", j ? " " : "", json_string_value(target));
        putchar('\n');
    }
}

typedef struct one_run {
    uint64_t id;
    cellar_run_record *run;
    bool found;
    char why[CELLAR_ERROR_MESSAGE_MAX]; /* when found but unreadable */
} one_run;

static int find_run(void *ctx, uint64_t run_id, const char *json, size_t len)
{
    one_run *o = ctx;
    if (run_id != o->id)
        return 0;
    cellar_error err;
    o->found = true;
    if (cellar_run_record_decode(json, len, &o->run, &err) != CELLAR_OK)
        snprintf(o->why, sizeof o->why, "%s", err.message);
    return 1;
}

static void print_one_run(const one_run *o)
{
    const cellar_run_record *run = o->run;
    char t[32], a[32], b[32], dv[33];
    printf("run      %" PRIu64 "\nstarted  %s\npid      %" PRId64 "\ntargets ", o->id,
           fmt_time(run->started_ns, t), run->pid);
    for (size_t i = 0; i < run->ntargets; i++)
        printf(" %s", run->targets[i]);
    printf("\ninputs  %s", run->ninputs ? "" : " (none)\n");
    for (size_t i = 0; i < run->ninputs; i++) {
        const cellar_run_input *in = &run->inputs[i];
        hex_of(&in->data_version, dv);
        printf("%s %s=%s  %s  %s\n", i ? "        " : "", in->name,
               in->shown ? in->shown : "?", cellar_input_source_name(in->source), dv);
    }
    int width = 4;
    for (size_t i = 0; i < run->nrows; i++)
        if ((int)strlen(run->rows[i].node) > width)
            width = (int)strlen(run->rows[i].node);
    printf("%-*s  %-9s  %10s  %10s  %-32s  %s\n", width, "NODE", "STATUS", "TIME", "SIZE",
           "DATA", "ERROR");
    for (size_t i = 0; i < run->nrows; i++) {
        const cellar_lineage_row *row = &run->rows[i];
        if (row->has_versions)
            hex_of(&row->data_version, dv);
        bool timed = row->outcome == CELLAR_OUTCOME_COMPUTED ||
                     row->outcome == CELLAR_OUTCOME_LOADED;
        if (timed)
            fmt_duration(row->time_ns, b);
        else
            snprintf(b, sizeof b, "-");
        printf("%-*s  %-9s  %*s  %10s  %-32s%s%s\n", width, row->node,
               cellar_outcome_name(row->outcome), width_of(b, 10), b,
               row->has_size ? fmt_size(row->size, a) : "-", row->has_versions ? dv : "-",
               row->error ? "  " : "", row->error ? row->error : "");
    }
}

/* `cellar log RUN`. */
static int log_one(const cli *c, cellar_store *s, cellar_reader *r, uint64_t id)
{
    one_run o = {.id = id};
    cellar_error err;
    int rc = 0;
    if (cellar_reader_each_run(r, find_run, &o, &err))
        rc = cli_fail(c, err.message);
    else if (!o.found) {
        fprintf(stderr, "cellar log: no run %" PRIu64 " in %s (cellar log lists them)\n",
                id, cellar_store_path(s));
        rc = 1;
    } else if (!o.run) {
        fprintf(stderr, "cellar log: run %" PRIu64 " cannot be read: %s\n", id, o.why);
        rc = 1;
    } else if (c->json) {
        json_t *targets = json_array(), *nodes = json_array();
        for (size_t i = 0; targets && i < o.run->ntargets; i++)
            json_array_append_new(targets, json_string(o.run->targets[i]));
        for (size_t i = 0; nodes && i < o.run->nrows; i++)
            json_array_append_new(nodes, row_json(&o.run->rows[i]));
        rc =
            cli_print_json(c, json_pack("{s:s, s:I, s:I, s:I, s:o*, s:o*, s:o*}", "store",
                                        cellar_store_path(s), "run_id", (json_int_t)id,
                                        "started_ns", (json_int_t)o.run->started_ns,
                                        "pid", (json_int_t)o.run->pid, "targets", targets,
                                        "inputs", inputs_json(o.run), "nodes", nodes));
    } else {
        print_one_run(&o);
    }
    cellar_run_record_free(o.run);
    return rc;
}

int cellar_cmd_log(int argc, char **argv)
{
    cli c;
    int rc = cli_parse(argc, argv, log_usage, 1, CLI_LIMIT, 2, &c);
    if (rc != CLI_GO_ON)
        return rc;
    uint64_t id = 0;
    if (c.npos) {
        char *end;
        id = c.pos[0][0] >= '0' && c.pos[0][0] <= '9' ? strtoull(c.pos[0], &end, 10) : 0;
        if (!id || *end) {
            fprintf(stderr, "cellar log: RUN is a run id (digits), got '%s'\n\n%s",
                    c.pos[0], log_usage);
            return 2;
        }
    }
    cellar_store *s;
    cellar_reader *r;
    if ((rc = cli_open_reader(&c, &s, &r)) != CLI_GO_ON)
        return rc;
    if (c.npos) {
        rc = log_one(&c, s, r, id);
        cli_close_reader(s, r);
        return rc;
    }
    rc = 0;
    run_log l = {.limit = c.limit, .runs = json_array()};
    cellar_error err;
    if (!l.runs)
        rc = cli_fail(&c, "out of memory");
    else if (cellar_reader_each_run(r, log_run, &l, &err))
        rc = cli_fail(&c, err.message);
    else if (c.json)
        rc = cli_print_json(&c, json_pack("{s:s, s:I, s:O, s:o*}", "store",
                                          cellar_store_path(s), "total",
                                          (json_int_t)l.total, "runs", l.runs,
                                          "unreadable",
                                          unreadable_json(l.unreadable, l.first_bad,
                                                          l.why)));
    else
        print_log_rows(l.runs);
    if (!rc && l.unreadable) {
        fprintf(stderr,
                "cellar log: %zu run record%s cannot be read (the first, run %" PRIu64
                ": %s)\n",
                l.unreadable, l.unreadable == 1 ? "" : "s", l.first_bad, l.why);
        rc = 1;
    }
    json_decref(l.runs);
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
               cellar_store_path(s), st.keys, st.results, fmt_size(st.result_bytes, a),
               st.blobs, fmt_size(st.blob_bytes, e), st.nodes, st.runs,
               fmt_size(st.file_bytes, b), fmt_size(st.map_size, d));
        printf("gc frees   %s (%" PRIu64 " keys, %" PRIu64
               " results; keep %u versions%s%s)\n",
               fmt_size(gc.freed_bytes, a), gc.keys, gc.results, CELLAR_GC_KEEP_DEFAULT,
               gco.max_size ? ", max size " : "",
               gco.max_size ? fmt_size(gco.max_size, b) : "");
    }
    cli_close_reader(s, r);
    return rc;
}
