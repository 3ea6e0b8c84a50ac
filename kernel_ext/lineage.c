/*
 * lineage.c - what the store remembers about runs and nodes, in the notebook:
 * `%cellar log [N]` (the newest runs: when, targets, inputs, what each node
 * did) and `%cellar show NODE` (a node's results with their code versions,
 * sizes, compute times and last use, and the runs that included it), plus the
 * note a run keeps of the inputs it read, which goes into its run record.
 *
 * Everything shown is read from the store through the reader API and decoded
 * with records.h, exactly as `cellar log` and `cellar show` read it, so the
 * notebook and the command line cannot disagree, and what a kernel shows
 * survives its restart.  Times and sizes print as units.h says.  The reports
 * are cellar.Report tables (report.c): HTML in a notebook, text elsewhere.
 */
#include "cellar_ext.h"

#include <string.h>

#include "cellar/units.h"

#define LOG_DEFAULT 10
#define NAMES_SHOWN 6 /* node names listed per outcome before "+N more" */
#define SHOW_RUNS 20  /* runs listed by %cellar show */
#define HEX_SHOWN 12  /* hex digits of a version in a table */
#define TEXT_MAX 60   /* characters of an input's value shown */

/* ---- the inputs a run read ---- */

/* A type's own name, "DataFrame" rather than "pandas.core.frame.DataFrame". */
static const char *type_name(PyObject *v)
{
    const char *dot = strrchr(Py_TYPE(v)->tp_name, '.');
    return dot ? dot + 1 : Py_TYPE(v)->tp_name;
}

/* A short text of an input's value: small scalars and strings as repr()
 * (cut at TEXT_MAX), a path as its type and string, anything else by its
 * type's name.  Never runs user code beyond a str's or path's own methods.
 * New reference; NULL only with a Python error. */
static PyObject *shown_text(PyObject *v)
{
    PyObject *text = NULL;
    if (v == Py_None || PyBool_Check(v) || PyFloat_CheckExact(v)) {
        text = PyObject_Repr(v);
    } else if (PyLong_CheckExact(v)) {
        int overflow = 0;
        PyLong_AsLongLongAndOverflow(v, &overflow);
        text = overflow ? PyUnicode_FromString("int (large)") : PyObject_Repr(v);
    } else if (PyUnicode_CheckExact(v)) {
        Py_ssize_t n = PyUnicode_GET_LENGTH(v);
        PyObject *head = n > TEXT_MAX ? PyUnicode_Substring(v, 0, TEXT_MAX - 3) : NULL;
        PyObject *r = PyObject_Repr(head ? head : v);
        text = r && head ? PyUnicode_FromFormat("%U...", r) : Py_XNewRef(r);
        Py_XDECREF(r);
        Py_XDECREF(head);
    } else if (PyObject_HasAttrString((PyObject *)Py_TYPE(v), "__fspath__") &&
               !PyBytes_Check(v)) {
        PyObject *path = PyOS_FSPath(v);
        if (path && PyUnicode_Check(path) && PyUnicode_GET_LENGTH(path) <= TEXT_MAX)
            text = PyUnicode_FromFormat("%s(%R)", type_name(v), path);
        else if (path)
            text = PyUnicode_FromString(type_name(v));
        Py_XDECREF(path);
    } else {
        text = PyUnicode_FromString(type_name(v));
    }
    if (!text && PyErr_ExceptionMatches(PyExc_Exception)) {
        /* A repr that fails costs the input its text, never the run. */
        PyErr_Clear();
        text = PyUnicode_FromString(type_name(v));
    }
    return text;
}

int cellar_lineage_note_input(PyObject *read, PyObject *name, PyObject *value,
                              const cellar_hash *dv, PyObject *given, PyObject *ns)
{
    int seen = PyDict_Contains(read, name);
    if (seen != 0)
        return seen < 0 ? -1 : 0;
    /* The order resolve_input looks in: run arguments, globals, default. */
    int in_given = PyDict_Contains(given, name);
    int in_ns = in_given == 0 ? PyDict_Contains(ns, name) : 0;
    if (in_given < 0 || in_ns < 0)
        return -1;
    cellar_input_source source = in_given ? CELLAR_INPUT_GIVEN
                                 : in_ns  ? CELLAR_INPUT_GLOBAL
                                          : CELLAR_INPUT_DEFAULT;
    PyObject *text = shown_text(value);
    PyObject *entry = text ? Py_BuildValue("(y#Ni)", (const char *)dv->bytes,
                                           (Py_ssize_t)16, text, (int)source)
                           : NULL;
    int rc = entry ? PyDict_SetItem(read, name, entry) : -1;
    Py_XDECREF(entry);
    return rc;
}

cellar_run_input *cellar_lineage_inputs(PyObject *read, size_t *n)
{
    Py_ssize_t count = read ? PyDict_GET_SIZE(read) : 0;
    cellar_run_input *out = PyMem_Calloc(count ? (size_t)count : 1, sizeof *out);
    *n = 0;
    if (!out)
        return NULL;
    PyObject *name, *entry;
    Py_ssize_t pos = 0;
    while (read && PyDict_Next(read, &pos, &name, &entry)) {
        const char *utf8 = PyUnicode_AsUTF8(name);
        const char *shown = PyUnicode_AsUTF8(PyTuple_GET_ITEM(entry, 1));
        if (!utf8 || !shown) { /* not UTF-8 (a lone surrogate): left out */
            PyErr_Clear();
            continue;
        }
        cellar_run_input *in = &out[(*n)++];
        in->name = utf8;
        in->shown = shown;
        memcpy(in->data_version.bytes, PyBytes_AS_STRING(PyTuple_GET_ITEM(entry, 0)), 16);
        in->source = (cellar_input_source)PyLong_AsLong(PyTuple_GET_ITEM(entry, 2));
    }
    return out;
}

/* ---- formatting ---- */

static PyObject *str_size(bool have, uint64_t n)
{
    char buf[CELLAR_UNITS_BUFSIZE];
    return PyUnicode_FromString(have ? cellar_units_size(n, buf) : "-");
}

static PyObject *str_duration(uint64_t ns)
{
    char buf[CELLAR_UNITS_BUFSIZE];
    return PyUnicode_FromString(cellar_units_duration(ns, buf));
}

static PyObject *str_moment(uint64_t ns)
{
    char buf[CELLAR_UNITS_BUFSIZE];
    return PyUnicode_FromString(cellar_units_moment(ns, buf));
}

static PyObject *str_hex(const cellar_hash *h)
{
    char hex[CELLAR_HASH_HEX_LEN + 1];
    cellar_hash_to_hex(h, hex);
    return PyUnicode_FromStringAndSize(hex, HEX_SHOWN);
}

/* Joins the str items of `parts` with `sep`; "-" when there are none. */
static PyObject *joined(PyObject *parts, const char *sep)
{
    if (PyList_GET_SIZE(parts) == 0)
        return PyUnicode_FromString("-");
    PyObject *s = PyUnicode_FromString(sep);
    PyObject *r = s ? PyUnicode_Join(s, parts) : NULL;
    Py_XDECREF(s);
    return r;
}

static int append_new(PyObject *list, PyObject *item)
{
    int rc = item ? PyList_Append(list, item) : -1;
    Py_XDECREF(item);
    return rc;
}

/* Publishes a report made of `title`, `header`, `rows` and `note` (the
 * references are taken; any may be NULL after a failure). */
static int show_report(cellar_state *st, PyObject *title, PyObject *header,
                       PyObject *rows, PyObject *note)
{
    PyObject *report = title && header && rows && note
                           ? cellar_report_new(st, title, header, rows, note)
                           : NULL;
    int rc = report ? cellar_report_show(st, report) : -1;
    Py_XDECREF(report);
    Py_XDECREF(title);
    Py_XDECREF(header);
    Py_XDECREF(rows);
    Py_XDECREF(note);
    return rc;
}

/* Why a record could not be read: counted, the first one kept for the note. */
typedef struct unreadable {
    size_t count;
    char first[CELLAR_ERROR_MESSAGE_MAX];
} unreadable;

static void note_unreadable(unreadable *u, const char *message)
{
    if (!u->count++)
        snprintf(u->first, sizeof u->first, "%s", message);
}

/* The note under a table: `extra` (may be NULL) and what could not be read. */
static PyObject *make_note(const char *extra, const unreadable *u)
{
    if (!u->count)
        return extra ? PyUnicode_FromString(extra) : Py_NewRef(Py_None);
    return PyUnicode_FromFormat("%s%s%zu record%s could not be read (the first: %s)",
                                extra ? extra : "", extra ? "; " : "", u->count,
                                u->count == 1 ? "" : "s", u->first);
}

static cellar_reader *begin_reader(cellar_state *st)
{
    cellar_reader *r = NULL;
    cellar_error err;
    if (!st->store)
        PyErr_SetString(st->StoreError, "no store is open (%cellar dir PATH opens one)");
    else if (cellar_reader_begin(st->store, &r, &err) != CELLAR_OK)
        PyErr_Format(st->StoreError, "the store cannot be read: %s", err.message);
    return r;
}

/* ---- %cellar log ---- */

typedef struct log_walk {
    Py_ssize_t limit, seen, total;
    PyObject *rows; /* the table's rows */
    unreadable bad;
    bool failed; /* a Python error is set */
} log_walk;

/* The inputs of a run, "n=3, path='x' (global)". */
static PyObject *inputs_text(const cellar_run_record *run)
{
    PyObject *parts = PyList_New(0);
    for (size_t i = 0; parts && i < run->ninputs; i++) {
        const cellar_run_input *in = &run->inputs[i];
        const char *from = in->source == CELLAR_INPUT_GIVEN    ? ""
                           : in->source == CELLAR_INPUT_GLOBAL ? " (global)"
                                                               : " (default)";
        if (append_new(parts, PyUnicode_FromFormat("%s=%s%s", in->name,
                                                   in->shown ? in->shown : "?", from)) <
            0)
            Py_CLEAR(parts);
    }
    PyObject *text = parts ? joined(parts, ", ") : NULL;
    Py_XDECREF(parts);
    return text;
}

/* The nodes of `run` whose outcome is `outcome`, "a, b, c +4 more". */
static PyObject *nodes_text(const cellar_run_record *run, cellar_outcome outcome)
{
    PyObject *parts = PyList_New(0);
    size_t found = 0;
    for (size_t i = 0; parts && i < run->nrows; i++) {
        if (run->rows[i].outcome != outcome || found++ >= NAMES_SHOWN)
            continue;
        if (append_new(parts, PyUnicode_FromString(run->rows[i].node)) < 0)
            Py_CLEAR(parts);
    }
    if (parts && found > NAMES_SHOWN &&
        append_new(parts, PyUnicode_FromFormat("+%zu more", found - NAMES_SHOWN)) < 0)
        Py_CLEAR(parts);
    PyObject *text = parts ? joined(parts, ", ") : NULL;
    Py_XDECREF(parts);
    return text;
}

/* Failed nodes, then skipped ones: "broken; skipped: total". */
static PyObject *failures_text(const cellar_run_record *run)
{
    PyObject *failed = nodes_text(run, CELLAR_OUTCOME_FAILED);
    PyObject *skipped = failed ? nodes_text(run, CELLAR_OUTCOME_SKIPPED) : NULL;
    PyObject *text = NULL;
    if (skipped) {
        bool f = PyUnicode_CompareWithASCIIString(failed, "-") != 0;
        bool s = PyUnicode_CompareWithASCIIString(skipped, "-") != 0;
        text = !s  ? Py_NewRef(failed)
               : f ? PyUnicode_FromFormat("%U; skipped: %U", failed, skipped)
                   : PyUnicode_FromFormat("skipped: %U", skipped);
    }
    Py_XDECREF(failed);
    Py_XDECREF(skipped);
    return text;
}

static PyObject *targets_text(const cellar_run_record *run)
{
    PyObject *parts = PyList_New(0);
    for (size_t i = 0; parts && i < run->ntargets; i++)
        if (append_new(parts, PyUnicode_FromString(run->targets[i])) < 0)
            Py_CLEAR(parts);
    PyObject *text = parts ? joined(parts, " ") : NULL;
    Py_XDECREF(parts);
    return text;
}

static int log_run(void *ctx, uint64_t run_id, const char *json, size_t len)
{
    (void)run_id;
    log_walk *w = ctx;
    /* Runs past the limit are only counted (cellar_reader_counts would stat
     * every blob file for a figure this walk gets for free). */
    w->total++;
    if (w->seen >= w->limit)
        return 0;
    w->seen++;
    cellar_run_record *run;
    cellar_error err;
    if (cellar_run_record_decode(json, len, &run, &err) != CELLAR_OK) {
        note_unreadable(&w->bad, err.message);
        return 0;
    }
    uint64_t took = 0;
    for (size_t i = 0; i < run->nrows; i++)
        took += run->rows[i].time_ns;
    PyObject *row = Py_BuildValue(
        "(NNNNNNNN)", str_moment(run->started_ns), targets_text(run), inputs_text(run),
        nodes_text(run, CELLAR_OUTCOME_COMPUTED), nodes_text(run, CELLAR_OUTCOME_LOADED),
        nodes_text(run, CELLAR_OUTCOME_IN_MEMORY), failures_text(run),
        str_duration(took));
    cellar_run_record_free(run);
    if (append_new(w->rows, row) < 0) {
        w->failed = true;
        return 1;
    }
    return 0;
}

PyObject *cellar_log_show(cellar_state *st, Py_ssize_t n)
{
    if (n <= 0)
        n = LOG_DEFAULT;
    cellar_reader *r = begin_reader(st);
    if (!r)
        return NULL;
    log_walk w = {.limit = n, .rows = PyList_New(0)};
    cellar_error err;
    cellar_status rc =
        w.rows ? cellar_reader_each_run(r, log_run, &w, &err) : CELLAR_ENOMEM;
    PyObject *title = NULL;
    if (rc == CELLAR_OK && !w.failed)
        title = w.seen < w.total
                    ? PyUnicode_FromFormat("cellar log: the %zd newest of %zd runs in %s",
                                           w.seen, w.total, cellar_store_path(st->store))
                    : PyUnicode_FromFormat("cellar log: %zd run%s in %s", w.seen,
                                           w.seen == 1 ? "" : "s",
                                           cellar_store_path(st->store));
    else if (!w.failed && w.rows)
        PyErr_Format(st->StoreError, "the runs cannot be read: %s", err.message);
    cellar_reader_end(r);
    if (!title) {
        Py_XDECREF(w.rows);
        return NULL;
    }
    PyObject *header =
        Py_BuildValue("(ssssssss)", "started", "targets", "inputs", "computed", "loaded",
                      "in memory", "failed", "node time");
    if (show_report(st, title, header, w.rows, make_note(NULL, &w.bad)) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* ---- %cellar show ---- */

typedef struct key_item {
    cellar_hash key;
    cellar_key_record rec; /* rec.node is not kept */
} key_item;

typedef struct show_walk {
    const char *node;
    size_t node_len;
    key_item *keys;
    size_t nkeys, cap;
    bool oom;
    /* runs */
    char *needle; /* `["NODE",`: how a row of this node begins in a run record */
    size_t needle_len, nruns;
    PyObject *run_rows;
    unreadable bad;
    bool failed;
} show_walk;

static int collect_key(void *ctx, const cellar_hash *key, const cellar_key_record *rec)
{
    show_walk *w = ctx;
    if (rec->node_len != w->node_len || memcmp(rec->node, w->node, w->node_len) != 0)
        return 0;
    if (w->nkeys == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 16;
        key_item *keys = PyMem_Realloc(w->keys, cap * sizeof *keys);
        if (!keys) {
            w->oom = true;
            return 1;
        }
        w->keys = keys;
        w->cap = cap;
    }
    w->keys[w->nkeys].key = *key;
    w->keys[w->nkeys].rec = *rec;
    w->keys[w->nkeys].rec.node = NULL;
    w->nkeys++;
    return 0;
}

static int newest_first(const void *a, const void *b)
{
    const key_item *x = a, *y = b;
    return (x->rec.created_ns < y->rec.created_ns) -
           (x->rec.created_ns > y->rec.created_ns);
}

static int collect_run(void *ctx, uint64_t run_id, const char *json, size_t len)
{
    (void)run_id;
    show_walk *w = ctx;
    /* Most runs do not include the node: a row of it starts with its name as
     * a JSON string (node names are identifiers, written unescaped). */
    if (!memmem(json, len, w->needle, w->needle_len))
        return 0;
    cellar_run_record *run;
    cellar_error err;
    if (cellar_run_record_decode(json, len, &run, &err) != CELLAR_OK) {
        note_unreadable(&w->bad, err.message);
        return 0;
    }
    const cellar_lineage_row *row = cellar_run_record_find(run, w->node);
    if (row && w->nruns++ < SHOW_RUNS) {
        PyObject *item = Py_BuildValue(
            "(NsNNNN)", str_moment(run->started_ns), cellar_outcome_name(row->outcome),
            row->outcome == CELLAR_OUTCOME_COMPUTED ||
                    row->outcome == CELLAR_OUTCOME_LOADED
                ? str_duration(row->time_ns)
                : PyUnicode_FromString("-"),
            str_size(row->has_size, row->size),
            row->has_versions ? str_hex(&row->data_version)
                              : PyUnicode_FromString(row->error ? row->error : "-"),
            targets_text(run));
        if (append_new(w->run_rows, item) < 0)
            w->failed = true;
    }
    cellar_run_record_free(run);
    return w->failed;
}

/* This kernel's current key and code version of `name`, when it is a
 * registered node whose key can be known now (1), else 0; -1 with an error. */
static int current_key(cellar_state *st, PyObject *name, cellar_hash *key,
                       cellar_hash *code_version, bool *have_cv)
{
    *have_cv = false;
    if (st->running)
        return 0;
    PyObject *inputs = PyDict_New();
    PyObject *statuses = inputs ? cellar_node_statuses(st, inputs) : NULL;
    Py_XDECREF(inputs);
    if (!statuses)
        return -1;
    int rc = 0;
    PyObject *cap = PyDict_GetItemWithError(st->functions, name);
    PyObject *memo = cap ? PyDict_New() : NULL;
    if (cap && memo) {
        Py_INCREF(cap);
        rc = cellar_code_version(st, cellar_fn_of(cap), NULL, memo, code_version);
        Py_DECREF(cap);
        *have_cv = rc == 0;
    } else if (PyErr_Occurred()) {
        rc = -1;
    }
    Py_XDECREF(memo);
    PyObject *entry = rc == 0 ? PyDict_GetItemWithError(statuses, name) : NULL;
    if (entry && PyBytes_Check(PyTuple_GET_ITEM(entry, 1))) {
        memcpy(key->bytes, PyBytes_AS_STRING(PyTuple_GET_ITEM(entry, 1)), 16);
        rc = 1;
    } else if (PyErr_Occurred()) {
        rc = -1;
    }
    Py_DECREF(statuses);
    return rc;
}

/* The table of the node's results, one row per cache key, newest first. */
static PyObject *key_rows(cellar_reader *r, const show_walk *w, int have_current,
                          const cellar_hash *current)
{
    PyObject *rows = PyList_New(0);
    for (size_t i = 0; rows && i < w->nkeys; i++) {
        const key_item *it = &w->keys[i];
        bool stored = cellar_reader_has_result(r, &it->rec.data_version);
        bool is_current = have_current && !memcmp(it->key.bytes, current->bytes, 16);
        const char *state = is_current ? (stored ? "current" : "current, not stored")
                                       : (stored ? "stored" : "not stored");
        PyObject *row = Py_BuildValue(
            "(NsNNNNNN)", str_hex(&it->rec.code_version), state,
            str_moment(it->rec.created_ns), str_moment(it->rec.last_used_ns),
            str_duration(it->rec.compute_ns), str_size(true, it->rec.size),
            str_hex(&it->rec.data_version), str_hex(&it->key));
        if (append_new(rows, row) < 0)
            Py_CLEAR(rows);
    }
    return rows;
}

static size_t distinct_code_versions(const show_walk *w)
{
    size_t n = 0;
    for (size_t i = 0; i < w->nkeys; i++) {
        size_t j = 0;
        while (j < i && memcmp(w->keys[j].rec.code_version.bytes,
                               w->keys[i].rec.code_version.bytes, 16) != 0)
            j++;
        n += j == i;
    }
    return n;
}

/* What the node record says, for the note under the results. */
static PyObject *node_note(cellar_reader *r, const char *node, unreadable *bad,
                           bool have_cv, const cellar_hash *cv)
{
    const char *json;
    size_t len;
    cellar_error err;
    char cvhex[CELLAR_HASH_HEX_LEN + 1] = "";
    if (have_cv)
        cellar_hash_to_hex(cv, cvhex);
    PyObject *current = have_cv
                            ? PyUnicode_FromFormat("current code version %.12s; ", cvhex)
                            : PyUnicode_FromString("");
    if (!current)
        return NULL;
    cellar_node_record *rec = NULL;
    cellar_status st = cellar_reader_get_node(r, node, &json, &len, &err);
    if (st == CELLAR_OK && cellar_node_record_decode(json, len, &rec, &err) != CELLAR_OK)
        note_unreadable(bad, err.message);
    else if (st != CELLAR_OK && st != CELLAR_ENOTFOUND)
        note_unreadable(bad, err.message);
    PyObject *note = NULL;
    if (rec) {
        PyObject *params = PyList_New(0);
        for (size_t i = 0; params && i < rec->nparams; i++)
            if (append_new(params, PyUnicode_FromString(rec->params[i])) < 0)
                Py_CLEAR(params);
        PyObject *ptext = params ? joined(params, ", ") : NULL;
        char when[CELLAR_UNITS_BUFSIZE];
        if (ptext)
            note = PyUnicode_FromFormat(
                "%Uparameters: %U; cell: %s; last computed %s. Last-used times are "
                "refreshed at most every 10 minutes.",
                current, ptext, rec->cell_id ? rec->cell_id : "(no id)",
                cellar_units_moment(rec->updated_ns, when));
        Py_XDECREF(params);
        Py_XDECREF(ptext);
        cellar_node_record_free(rec);
    } else {
        note = PyUnicode_FromFormat("%Uno node record in the store.", current);
    }
    Py_DECREF(current);
    return note;
}

static int show_node_in(cellar_state *st, cellar_reader *r, PyObject *name,
                        const char *node, show_walk *w)
{
    cellar_hash current, cv;
    bool have_cv;
    /* The current key first: planning reads the store with its own reader. */
    int have_current = current_key(st, name, &current, &cv, &have_cv);
    if (have_current < 0)
        return -1;
    cellar_error err;
    if (cellar_reader_each_key(r, collect_key, w, &err) != CELLAR_OK || w->oom) {
        if (w->oom)
            PyErr_NoMemory();
        else
            PyErr_Format(st->StoreError, "the keys cannot be read: %s", err.message);
        return -1;
    }
    if (w->nkeys > 1)
        qsort(w->keys, w->nkeys, sizeof *w->keys, newest_first);
    if (cellar_reader_each_run(r, collect_run, w, &err) != CELLAR_OK || w->failed) {
        if (!w->failed)
            PyErr_Format(st->StoreError, "the runs cannot be read: %s", err.message);
        return -1;
    }
    const char *json;
    size_t json_len;
    if (w->nkeys == 0 && w->nruns == 0 && !have_cv &&
        cellar_reader_get_node(r, node, &json, &json_len, &err) == CELLAR_ENOTFOUND) {
        PyErr_Format(st->RunError,
                     "no node '%s': the store %s has no record of it, and no top-level "
                     "function of that name is defined",
                     node, cellar_store_path(st->store));
        return -1;
    }
    PyObject *note = node_note(r, node, &w->bad, have_cv, &cv);
    PyObject *full = note ? make_note(PyUnicode_AsUTF8(note), &w->bad) : NULL;
    Py_XDECREF(note);
    size_t ncv = distinct_code_versions(w);
    PyObject *title = PyUnicode_FromFormat(
        "cellar show %s: %zu code version%s, %zu result%s", node, ncv,
        ncv == 1 ? "" : "s", w->nkeys, w->nkeys == 1 ? "" : "s");
    PyObject *header =
        Py_BuildValue("(ssssssss)", "code version", "result", "created", "last used",
                      "compute", "size", "data version", "key");
    if (show_report(st, title, header, key_rows(r, w, have_current > 0, &current), full) <
        0)
        return -1;
    title = PyUnicode_FromFormat("runs of %s: %zu, newest first", node, w->nruns);
    header = Py_BuildValue("(ssssss)", "started", "status", "time", "size",
                           "data version", "targets");
    PyObject *more = w->nruns > SHOW_RUNS ? PyUnicode_FromFormat("... and %zu older runs",
                                                                 w->nruns - SHOW_RUNS)
                                          : Py_NewRef(Py_None);
    return show_report(st, title, header, Py_NewRef(w->run_rows), more);
}

PyObject *cellar_node_show(cellar_state *st, PyObject *name)
{
    PyObject *norm = cellar_registry_normalize(name); /* `µ` typed in the magic */
    Py_ssize_t len;
    const char *node = norm ? PyUnicode_AsUTF8AndSize(norm, &len) : NULL;
    if (!node) {
        Py_XDECREF(norm);
        return NULL;
    }
    cellar_reader *r = begin_reader(st);
    if (!r) {
        Py_DECREF(norm);
        return NULL;
    }
    show_walk w = {.node = node, .node_len = (size_t)len, .run_rows = PyList_New(0)};
    PyObject *needle = PyUnicode_FromFormat("[\"%U\",", norm);
    const char *n = needle ? PyUnicode_AsUTF8AndSize(needle, &len) : NULL;
    int rc = -1;
    if (n && w.run_rows) {
        w.needle = (char *)n;
        w.needle_len = (size_t)len;
        rc = show_node_in(st, r, norm, node, &w);
    }
    cellar_reader_end(r);
    PyMem_Free(w.keys);
    Py_XDECREF(w.run_rows);
    Py_XDECREF(needle);
    Py_DECREF(norm);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}
