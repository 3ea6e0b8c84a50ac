/*
 * cellar_store_cmds.c - the store subcommands of `cellar`: ls, show, stats
 * and verify.  Each opens the store read-only (so they work on a store the
 * user may read but not write, and never create one), takes one read
 * snapshot, and prints either aligned text for people or, with --json, one
 * JSON document built with jansson for programs.  Problems go to stderr with
 * exit status 1; bad usage exits 2.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cellar/store.h"
#include "commands.h"

#define KEY_PREFIX 12 /* hex digits of a key or data version shown by ls */
#define MIN_KEY_PREFIX 6

/* ---- arguments ---- */

typedef struct cli {
    const char *name; /* the subcommand, for messages */
    const char *dir;
    bool json;
    int npos;
    const char *pos[2];
} cli;

enum { PARSED = -1 };

/* Returns PARSED, or the exit status when the command is already done. */
static int parse_args(int argc, char **argv, const char *usage, int max_pos, cli *c)
{
    const char *env = getenv("CELLAR_DIR");
    *c = (cli){.name = argv[0], .dir = env && *env ? env : "./.cellar"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            c->json = true;
        } else if (!strcmp(a, "--dir") && i + 1 < argc) {
            c->dir = argv[++i];
        } else if (!strncmp(a, "--dir=", 6) && a[6]) {
            c->dir = a + 6;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "cellar %s: unknown or incomplete option '%s'\n\n%s", c->name,
                    a, usage);
            return 2;
        } else if (c->npos < max_pos) {
            c->pos[c->npos++] = a;
        } else {
            fprintf(stderr, "cellar %s: unexpected argument '%s'\n\n%s", c->name, a,
                    usage);
            return 2;
        }
    }
    return PARSED;
}

static int fail(const cli *c, const char *message)
{
    fprintf(stderr, "cellar %s: %s\n", c->name, message);
    return 1;
}

/* Opens the store read-only and begins a reader; on failure prints why. */
static int open_reader(const cli *c, cellar_store **s, cellar_reader **r)
{
    cellar_store_options o = {.read_only = true};
    cellar_error err;
    if (cellar_store_open(c->dir, &o, s, &err))
        return fail(c, err.message);
    if (cellar_reader_begin(*s, r, &err)) {
        cellar_store_close(*s);
        return fail(c, err.message);
    }
    return 0;
}

static void close_reader(cellar_store *s, cellar_reader *r)
{
    cellar_reader_end(r);
    cellar_store_close(s);
}

/* Prints a JSON document on its own line; 1 when it could not be built. */
static int print_json(const cli *c, json_t *doc)
{
    if (!doc)
        return fail(c, "out of memory building JSON");
    int rc = json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(doc);
    putchar('\n');
    return rc ? fail(c, "cannot write JSON") : 0;
}

/* ---- formatting ---- */

static const char *fmt_size(uint64_t n, char buf[32])
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, 32, "%" PRIu64 " B", n);
    else
        snprintf(buf, 32, "%.1f %s", v, units[u]);
    return buf;
}

static const char *fmt_duration(uint64_t ns, char buf[32])
{
    if (ns < 1000000)
        snprintf(buf, 32, "%.1f us", (double)ns / 1e3);
    else if (ns < 10000000000u)
        snprintf(buf, 32, "%.1f ms", (double)ns / 1e6);
    else
        snprintf(buf, 32, "%.1f s", (double)ns / 1e9);
    return buf;
}

static const char *fmt_time(uint64_t ns, char buf[32])
{
    time_t t = (time_t)(ns / 1000000000u);
    struct tm tm;
    if (!ns || !localtime_r(&t, &tm) || !strftime(buf, 32, "%Y-%m-%d %H:%M:%S", &tm))
        snprintf(buf, 32, "-");
    return buf;
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
        return fail(c, err.message);
    if (e->oom)
        return fail(c, "out of memory");
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
        printf("%.*s  %.*s  %10s  %10s  %-19s  %s\n", hex_width, key, hex_width, dv,
               fmt_size(it->rec.size, a), fmt_duration(it->rec.compute_ns, b),
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
    int rc = parse_args(argc, argv, ls_usage, 0, &c);
    if (rc != PARSED)
        return rc;
    cellar_store *s;
    cellar_reader *r;
    if ((rc = open_reader(&c, &s, &r)))
        return rc;
    entries e = {0};
    rc = collect_all(&c, r, &e);
    if (!rc && c.json) {
        rc = print_json(&c, json_pack("{s:s, s:o*}", "store", cellar_store_path(s),
                                      "keys", entries_json(&e, r)));
    } else if (!rc) {
        int width = 4;
        for (size_t i = 0; i < e.n; i++)
            if ((int)strlen(e.items[i].node) > width)
                width = (int)strlen(e.items[i].node);
        print_entry_rows(&e, width, KEY_PREFIX);
    }
    entries_free(&e);
    close_reader(s, r);
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
    "  --dir PATH   the store (default: $CELLAR_DIR, else ./.cellar)\n"
    "  --json       print one JSON object\n";

typedef struct run_hits {
    const char *node;
    json_t *runs; /* [{"run_id", "entry"}] */
    size_t unreadable;
} run_hits;

/*
 * One node's row of a run record as an object.  The extension writes rows as
 * arrays under the names in "columns" (compact for runs of thousands of
 * nodes); a row that already is an object is taken as it is.  NULL when the
 * row is neither (or names no node).
 */
static json_t *row_object(json_t *columns, json_t *row)
{
    if (json_is_object(row))
        return json_incref(row);
    if (!json_is_array(row) || !json_is_array(columns))
        return NULL;
    json_t *obj = json_object();
    size_t i;
    json_t *name;
    json_array_foreach(columns, i, name)
    {
        json_t *v = json_array_get(row, i);
        if (json_is_string(name) && v)
            json_object_set(obj, json_string_value(name), v);
    }
    return obj;
}

static int collect_run(void *ctx, uint64_t run_id, const char *json, size_t len)
{
    run_hits *h = ctx;
    json_t *run = json_loadb(json, len, 0, NULL);
    json_t *nodes = json_object_get(run, "nodes");
    json_t *columns = json_object_get(run, "columns");
    size_t i;
    json_t *item;
    if (!json_is_array(nodes))
        h->unreadable++;
    json_array_foreach(nodes, i, item)
    {
        json_t *row = row_object(columns, item);
        const char *name = json_string_value(json_object_get(row, "node"));
        if (name && !strcmp(name, h->node)) {
            json_array_append_new(h->runs, json_pack("{s:I, s:o}", "run_id",
                                                     (json_int_t)run_id, "entry", row));
            break;
        }
        json_decref(row);
    }
    json_decref(run);
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
        printf(
            "  %-19" PRIu64 "  %-19s  %-10s  %10s  %10s  %.12s\n", id, fmt_time(id, t),
            status ? status : "-",
            fmt_duration((uint64_t)json_integer_value(json_object_get(e, "time_ns")), d),
            fmt_size((uint64_t)json_integer_value(json_object_get(e, "size")), z),
            dv ? dv : "-");
    }
}

static int show_node(const cli *c, cellar_store *s, cellar_reader *r, const char *meta,
                     size_t meta_len, entries *e)
{
    cellar_error err;
    run_hits h = {c->pos[0], json_array(), 0};
    if (!h.runs)
        return fail(c, "out of memory");
    if (cellar_reader_each_run(r, collect_run, &h, &err)) {
        json_decref(h.runs);
        return fail(c, err.message);
    }
    json_t *meta_json = meta ? json_loadb(meta, meta_len, 0, NULL) : NULL;
    if (meta && !meta_json) /* keep what is stored even if it is not JSON */
        meta_json = json_stringn(meta, meta_len);
    if (c->json)
        return print_json(c, json_pack("{s:s, s:s, s:o*, s:o*, s:o}", "store",
                                       cellar_store_path(s), "node", c->pos[0],
                                       "metadata", meta_json ? meta_json : json_null(),
                                       "keys", entries_json(e, r), "runs", h.runs));
    printf("node %s\n", c->pos[0]);
    if (meta_json) {
        char *text =
            json_dumps(meta_json, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
        printf("metadata: %s\n", text ? text : "?");
        free(text);
        json_decref(meta_json);
    } else {
        printf("metadata: (none recorded)\n");
    }
    printf("keys (%zu):\n", e->n);
    if (e->n)
        print_entry_rows(e, 0, CELLAR_HASH_HEX_LEN);
    print_run_rows(h.runs);
    if (h.unreadable)
        fprintf(stderr, "cellar show: %zu run records have no \"nodes\" array\n",
                h.unreadable);
    json_decref(h.runs);
    return 0;
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
        rc = fail(c, err.message);
    else if (p.found.oom)
        rc = fail(c, "out of memory");
    else if (p.found.n == 0) {
        fprintf(stderr, "cellar show: no node or cache key '%s'\n", c->pos[0]);
        rc = 1;
    } else if (p.found.n > 1) {
        fprintf(stderr, "cellar show: '%s' is ambiguous: it begins %s%zu keys\n",
                c->pos[0], p.found.n > 10 ? "more than " : "",
                p.found.n > 10 ? (size_t)10 : p.found.n);
        rc = 1;
    } else if (c->json) {
        rc = print_json(c, entry_json(&p.found.items[0], r));
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
    int rc = parse_args(argc, argv, show_usage, 1, &c);
    if (rc != PARSED)
        return rc;
    if (c.npos != 1) {
        fprintf(stderr, "cellar show: which node or key?\n\n%s", show_usage);
        return 2;
    }
    cellar_store *s;
    cellar_reader *r;
    if ((rc = open_reader(&c, &s, &r)))
        return rc;
    /* A name is a node when the store knows it; otherwise hex is a key. */
    const char *meta = NULL;
    size_t meta_len = 0;
    cellar_error err;
    cellar_status st = cellar_reader_get_node(r, c.pos[0], &meta, &meta_len, &err);
    entries e = {.only_node = c.pos[0]};
    if (st && st != CELLAR_ENOTFOUND)
        rc = fail(&c, err.message);
    else
        rc = collect_all(&c, r, &e);
    if (!rc) {
        if (!st || e.n)
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
    close_reader(s, r);
    return rc;
}

/* ---- stats ---- */

static const char stats_usage[] =
    "usage: cellar stats [--dir PATH] [--json]\n"
    "\n"
    "Counts of keys, results, nodes and runs, and the store's sizes.\n"
    "\n"
    "  --dir PATH   the store (default: $CELLAR_DIR, else ./.cellar)\n"
    "  --json       print one JSON object with raw numbers\n";

int cellar_cmd_stats(int argc, char **argv)
{
    cli c;
    int rc = parse_args(argc, argv, stats_usage, 0, &c);
    if (rc != PARSED)
        return rc;
    cellar_store *s;
    cellar_reader *r;
    if ((rc = open_reader(&c, &s, &r)))
        return rc;
    cellar_store_stats st;
    cellar_error err;
    if (cellar_reader_stats(r, &st, &err)) {
        rc = fail(&c, err.message);
    } else if (c.json) {
        rc = print_json(
            &c,
            json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "store",
                      cellar_store_path(s), "keys", (json_int_t)st.keys, "results",
                      (json_int_t)st.results, "nodes", (json_int_t)st.nodes, "runs",
                      (json_int_t)st.runs, "result_bytes", (json_int_t)st.result_bytes,
                      "map_size", (json_int_t)st.map_size, "file_bytes",
                      (json_int_t)st.file_bytes, "last_txn", (json_int_t)st.last_txn));
    } else {
        char a[32], b[32], d[32];
        printf("store      %s\nkeys       %" PRIu64 "\nresults    %" PRIu64 " (%s)\n"
               "nodes      %" PRIu64 "\nruns       %" PRIu64
               "\nfile size  %s\nmap size   %s\n",
               cellar_store_path(s), st.keys, st.results, fmt_size(st.result_bytes, a),
               st.nodes, st.runs, fmt_size(st.file_bytes, b), fmt_size(st.map_size, d));
    }
    close_reader(s, r);
    return rc;
}

/* ---- verify ---- */

static const char verify_usage[] =
    "usage: cellar verify [--dir PATH] [--json]\n"
    "\n"
    "Check every stored result against its checksum and data version.  Prints\n"
    "each corrupt data version; exits 1 if any result is corrupt.\n"
    "\n"
    "  --dir PATH   the store (default: $CELLAR_DIR, else ./.cellar)\n"
    "  --json       print {\"checked\", \"corrupt\", \"bad\": [...]}\n";

typedef struct bad_sink {
    bool json;
    json_t *bad;
} bad_sink;

static void report_bad(void *ctx, const cellar_hash *dv, const char *message)
{
    bad_sink *b = ctx;
    char hex[33];
    hex_of(dv, hex);
    if (b->json)
        json_array_append_new(
            b->bad, json_pack("{s:s, s:s}", "data_version", hex, "message", message));
    else
        printf("corrupt %s: %s\n", hex, message);
}

int cellar_cmd_verify(int argc, char **argv)
{
    cli c;
    int rc = parse_args(argc, argv, verify_usage, 0, &c);
    if (rc != PARSED)
        return rc;
    cellar_store *s;
    cellar_reader *r;
    if ((rc = open_reader(&c, &s, &r)))
        return rc;
    bad_sink sink = {c.json, json_array()};
    uint64_t checked = 0, corrupt = 0;
    cellar_error err;
    if (!sink.bad)
        rc = fail(&c, "out of memory");
    else if (cellar_reader_verify(r, report_bad, &sink, &checked, &corrupt, &err))
        rc = fail(&c, err.message);
    else if (c.json)
        rc =
            print_json(&c, json_pack("{s:s, s:I, s:I, s:O}", "store",
                                     cellar_store_path(s), "checked", (json_int_t)checked,
                                     "corrupt", (json_int_t)corrupt, "bad", sink.bad));
    else
        printf("checked %" PRIu64 " results: %" PRIu64 " corrupt\n", checked, corrupt);
    json_decref(sink.bad);
    close_reader(s, r);
    return rc ? rc : corrupt ? 1 : 0;
}
