/*
 * cellar_log.c - `cellar log [--limit N] [--run ID] [--json]`: the runs a
 * store recorded, newest first (time, targets, inputs, what each node did),
 * or one run whole.  Read like the other store commands (cellar_store_cmds.c):
 * read-only, in a watched child (store_cli.c), records decoded by records.h,
 * sizes and times as units.h prints them; the notebook's `%cellar log`
 * renders this command's --json.
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
        cellar_hash_to_hex(&in->data_version, dv);
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
            text ? 2 * (int)strlen(text) - cli_width_of(text, (int)strlen(text)) : 0;
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
        cellar_units_duration((uint64_t)json_integer_value(json_object_get(run, "node_ns")), d);
        printf(
            "%-19" PRIu64
            "  %-19s  %7lld  %5lld  %8lld  %6lld  %9lld  %6lld  %7lld  %*s  ",
            id,
            cellar_units_moment((uint64_t)json_integer_value(json_object_get(run, "started_ns")), t),
            (long long)json_integer_value(json_object_get(run, "pid")), v[0], v[1], v[2],
            v[3], v[4], v[5], cli_width_of(d, 10), d);
        char *text = inputs_text(run);
        printf("%-*s  ", text ? cli_width_of(text, inputs_width) : inputs_width,
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
           cellar_units_moment(run->started_ns, t), run->pid);
    for (size_t i = 0; i < run->ntargets; i++)
        printf(" %s", run->targets[i]);
    printf("\ninputs  %s", run->ninputs ? "" : " (none)\n");
    for (size_t i = 0; i < run->ninputs; i++) {
        const cellar_run_input *in = &run->inputs[i];
        cellar_hash_to_hex(&in->data_version, dv);
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
            cellar_hash_to_hex(&row->data_version, dv);
        bool timed = row->outcome == CELLAR_OUTCOME_COMPUTED ||
                     row->outcome == CELLAR_OUTCOME_LOADED;
        if (timed)
            cellar_units_duration(row->time_ns, b);
        else
            snprintf(b, sizeof b, "-");
        printf("%-*s  %-9s  %*s  %10s  %-32s%s%s\n", width, row->node,
               cellar_outcome_name(row->outcome), cli_width_of(b, 10), b,
               row->has_size ? cellar_units_size(row->size, a) : "-", row->has_versions ? dv : "-",
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
            json_array_append_new(nodes, cli_lineage_row_json(&o.run->rows[i]));
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
                                          cli_unreadable_json(l.unreadable, l.first_bad,
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

