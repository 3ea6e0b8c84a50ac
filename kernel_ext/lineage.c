/*
 * lineage.c - what the store remembers about runs and nodes, in the notebook:
 * `%cellar log [N]` (the newest runs: when, targets, inputs, what each node
 * did) and `%cellar show NODE` (a node's results with their code versions,
 * sizes, compute times and last use, and the runs that included it), plus the
 * note a run keeps of the inputs it read, which goes into its run record.
 *
 * What log and show print is what `cellar log --json` and `cellar show --node
 * NODE --json` print, run in a child process (cli_child.c): their walks
 * cover whole LMDB databases, and on a damaged leaf or B-tree LMDB may fault
 * or loop, which in the kernel's own process would cost the kernel.  In the
 * child it costs a warning ("%cellar log: ... cannot be read: ..."), and the
 * kernel goes on.  So the notebook and the command line cannot disagree, and
 * what a kernel shows survives its restart.  Only what the kernel alone
 * knows is added here: which of a node's keys is its current one (planned
 * like %cellar status, point lookups in the kernel's own store).  Times and
 * sizes print as units.h says.  The reports are cellar.Report tables
 * (report.c): HTML in a notebook, text elsewhere.
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

/* The note under a table: `extra` (may be NULL) and what could not be read. */
static PyObject *make_note(const char *extra, const unreadable *u)
{
    if (!u->count)
        return extra ? PyUnicode_FromString(extra) : Py_NewRef(Py_None);
    return PyUnicode_FromFormat("%s%s%zu record%s could not be read (the first: %s)",
                                extra ? extra : "", extra ? "; " : "", u->count,
                                u->count == 1 ? "" : "s", u->first);
}

/* ---- the cellar command's JSON ---- */

static const char *jstr(json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : "";
}

static uint64_t jnum(json_t *obj, const char *key)
{
    json_int_t n = json_integer_value(json_object_get(obj, key));
    return n > 0 ? (uint64_t)n : 0;
}

/* The first HEX_SHOWN digits of a hex string, or "-". */
static PyObject *str_hex_text(const char *hex)
{
    return *hex ? PyUnicode_FromStringAndSize(hex, (Py_ssize_t)strnlen(hex, HEX_SHOWN))
                : PyUnicode_FromString("-");
}

/* Runs `cellar CMD ... --dir STORE --json` (`args` from CMD on, without the
 * last three, NULL-terminated, at most 8).  The document, or NULL: with a
 * KeyboardInterrupt set when interrupted, else after a warning that says
 * what `what` could not do (the kernel goes on). */
static json_t *ask_cellar(cellar_state *st, const char *what, const char *const *args)
{
    const char *argv[12];
    size_t n = 0;
    while (args[n] && n < 8) {
        argv[n] = args[n];
        n++;
    }
    argv[n++] = "--dir";
    argv[n++] = cellar_store_path(st->store);
    argv[n++] = "--json";
    argv[n] = NULL;
    char why[1200];
    bool interrupted;
    json_t *doc = cellar_cli_run(argv, why, sizeof why, &interrupted);
    if (!doc && !interrupted)
        cellar_warn("%s: %s (the store is read in a `cellar` child process; 'cellar "
                    "verify --dir %s' checks it)",
                    what, why, cellar_store_path(st->store));
    return doc;
}

/* "N records could not be read (the first: ...)" from the document's
 * "unreadable", into `u`. */
static void note_unreadable_json(unreadable *u, json_t *doc)
{
    json_t *bad = json_object_get(doc, "unreadable");
    if (!json_is_object(bad))
        return;
    u->count = (size_t)jnum(bad, "count");
    snprintf(u->first, sizeof u->first, "%s", jstr(bad, "first"));
}

static bool needs_store(cellar_state *st)
{
    if (st->store)
        return true;
    PyErr_SetString(st->StoreError, "no store is open (%cellar dir PATH opens one)");
    return false;
}

/* ---- %cellar log ---- */

/* The inputs of a run, "n=3, path='x' (global)". */
static PyObject *inputs_text(json_t *run)
{
    PyObject *parts = PyList_New(0);
    size_t i;
    json_t *in;
    json_array_foreach(json_object_get(run, "inputs"), i, in)
    {
        if (!parts)
            break;
        const char *source = jstr(in, "source");
        const char *from = !strcmp(source, "global")    ? " (global)"
                           : !strcmp(source, "default") ? " (default)"
                                                        : "";
        const char *value = json_string_value(json_object_get(in, "value"));
        if (append_new(parts, PyUnicode_FromFormat("%s=%s%s", jstr(in, "name"),
                                                   value ? value : "?", from)) < 0)
            Py_CLEAR(parts);
    }
    PyObject *text = parts ? joined(parts, ", ") : NULL;
    Py_XDECREF(parts);
    return text;
}

/* The nodes of `run` whose outcome is `outcome`, "a, b, c +4 more". */
static PyObject *nodes_text(json_t *run, const char *outcome)
{
    json_t *names = json_object_get(json_object_get(run, "outcomes"), outcome);
    size_t found = json_array_size(names);
    PyObject *parts = PyList_New(0);
    for (size_t i = 0; parts && i < found && i < NAMES_SHOWN; i++)
        if (append_new(parts, PyUnicode_FromString(
                                  json_string_value(json_array_get(names, i))
                                      ? json_string_value(json_array_get(names, i))
                                      : "?")) < 0)
            Py_CLEAR(parts);
    if (parts && found > NAMES_SHOWN &&
        append_new(parts, PyUnicode_FromFormat("+%zu more", found - NAMES_SHOWN)) < 0)
        Py_CLEAR(parts);
    PyObject *text = parts ? joined(parts, ", ") : NULL;
    Py_XDECREF(parts);
    return text;
}

/* Failed nodes, then skipped ones: "broken; skipped: total". */
static PyObject *failures_text(json_t *run)
{
    PyObject *failed = nodes_text(run, "failed");
    PyObject *skipped = failed ? nodes_text(run, "skipped") : NULL;
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

static PyObject *targets_text(json_t *targets)
{
    PyObject *parts = PyList_New(0);
    size_t i;
    json_t *t;
    json_array_foreach(targets, i, t)
    {
        if (parts && append_new(parts, PyUnicode_FromString(
                                           json_string_value(t) ? json_string_value(t)
                                                                : "?")) < 0)
            Py_CLEAR(parts);
    }
    PyObject *text = parts ? joined(parts, " ") : NULL;
    Py_XDECREF(parts);
    return text;
}

static PyObject *log_rows(json_t *runs)
{
    PyObject *rows = PyList_New(0);
    size_t i;
    json_t *run;
    json_array_foreach(runs, i, run)
    {
        if (!rows)
            break;
        PyObject *row = Py_BuildValue(
            "(NNNNNNNN)", str_moment(jnum(run, "started_ns")),
            targets_text(json_object_get(run, "targets")), inputs_text(run),
            nodes_text(run, "computed"), nodes_text(run, "loaded"),
            nodes_text(run, "in_memory"), failures_text(run),
            str_duration(jnum(run, "node_ns")));
        if (append_new(rows, row) < 0)
            Py_CLEAR(rows);
    }
    return rows;
}

PyObject *cellar_log_show(cellar_state *st, Py_ssize_t n)
{
    if (n <= 0)
        n = LOG_DEFAULT;
    if (!needs_store(st))
        return NULL;
    char limit[32];
    snprintf(limit, sizeof limit, "%zd", n);
    const char *args[] = {"log", "--limit", limit, NULL};
    json_t *doc = ask_cellar(st, "%cellar log: the runs cannot be read", args);
    if (!doc)
        return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    json_t *runs = json_object_get(doc, "runs");
    unreadable bad = {0};
    note_unreadable_json(&bad, doc);
    /* Runs within the limit: those listed and those that could not be read. */
    Py_ssize_t seen = (Py_ssize_t)(json_array_size(runs) + bad.count);
    Py_ssize_t total = (Py_ssize_t)jnum(doc, "total");
    const char *where = cellar_store_path(st->store);
    PyObject *title =
        seen < total
            ? PyUnicode_FromFormat("cellar log: the %zd newest of %zd runs in %s", seen,
                                   total, where)
            : PyUnicode_FromFormat("cellar log: %zd run%s in %s", seen,
                                   seen == 1 ? "" : "s", where);
    PyObject *header =
        Py_BuildValue("(ssssssss)", "started", "targets", "inputs", "computed", "loaded",
                      "in memory", "failed", "node time");
    int rc = show_report(st, title, header, log_rows(runs), make_note(NULL, &bad));
    json_decref(doc);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* ---- %cellar show ---- */

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

static int newest_first(const void *a, const void *b)
{
    uint64_t x = jnum(*(json_t *const *)a, "created_ns");
    uint64_t y = jnum(*(json_t *const *)b, "created_ns");
    return (x < y) - (x > y);
}

/* The table of the node's results, one row per cache key, newest first. */
static PyObject *key_rows(json_t *keys, int have_current, const cellar_hash *current)
{
    size_t n = json_array_size(keys);
    json_t **items = PyMem_Calloc(n ? n : 1, sizeof *items);
    PyObject *rows = items ? PyList_New(0) : PyErr_NoMemory();
    for (size_t i = 0; i < n && items; i++)
        items[i] = json_array_get(keys, i);
    if (n > 1 && items)
        qsort(items, n, sizeof *items, newest_first);
    char hex[CELLAR_HASH_HEX_LEN + 1] = "";
    if (have_current)
        cellar_hash_to_hex(current, hex);
    for (size_t i = 0; rows && i < n; i++) {
        json_t *it = items[i];
        bool stored = json_is_true(json_object_get(it, "result_stored"));
        bool is_current = have_current && !strcmp(jstr(it, "key"), hex);
        const char *state = is_current ? (stored ? "current" : "current, not stored")
                                       : (stored ? "stored" : "not stored");
        PyObject *row = Py_BuildValue(
            "(NsNNNNNN)", str_hex_text(jstr(it, "code_version")), state,
            str_moment(jnum(it, "created_ns")), str_moment(jnum(it, "last_used_ns")),
            str_duration(jnum(it, "compute_ns")), str_size(true, jnum(it, "size")),
            str_hex_text(jstr(it, "data_version")), str_hex_text(jstr(it, "key")));
        if (append_new(rows, row) < 0)
            Py_CLEAR(rows);
    }
    PyMem_Free(items);
    return rows;
}

static size_t distinct_code_versions(json_t *keys)
{
    size_t n = 0, len = json_array_size(keys);
    for (size_t i = 0; i < len; i++) {
        const char *cv = jstr(json_array_get(keys, i), "code_version");
        size_t j = 0;
        while (j < i && strcmp(jstr(json_array_get(keys, j), "code_version"), cv) != 0)
            j++;
        n += j == i;
    }
    return n;
}

/* What the node record says, for the note under the results. */
static PyObject *node_note(json_t *meta, bool have_cv, const cellar_hash *cv)
{
    char cvhex[CELLAR_HASH_HEX_LEN + 1] = "";
    if (have_cv)
        cellar_hash_to_hex(cv, cvhex);
    PyObject *current = have_cv
                            ? PyUnicode_FromFormat("current code version %.12s; ", cvhex)
                            : PyUnicode_FromString("");
    if (!current)
        return NULL;
    PyObject *note = NULL;
    if (json_is_object(meta)) {
        PyObject *params = PyList_New(0);
        size_t i;
        json_t *p;
        json_array_foreach(json_object_get(meta, "params"), i, p)
        {
            if (params && append_new(params, PyUnicode_FromString(
                                                 json_string_value(p) ? json_string_value(p)
                                                                      : "?")) < 0)
                Py_CLEAR(params);
        }
        PyObject *ptext = params ? joined(params, ", ") : NULL;
        const char *cell = json_string_value(json_object_get(meta, "cell_id"));
        char when[CELLAR_UNITS_BUFSIZE];
        if (ptext)
            note = PyUnicode_FromFormat(
                "%Uparameters: %U; cell: %s; last computed %s. Last-used times are "
                "refreshed at most every 10 minutes.",
                current, ptext, cell ? cell : "(no id)",
                cellar_units_moment(jnum(meta, "updated_ns"), when));
        Py_XDECREF(params);
        Py_XDECREF(ptext);
    } else {
        note = PyUnicode_FromFormat("%Uno node record in the store.", current);
    }
    Py_DECREF(current);
    return note;
}

static PyObject *run_rows(json_t *runs)
{
    PyObject *rows = PyList_New(0);
    size_t i;
    json_t *run;
    json_array_foreach(runs, i, run)
    {
        if (!rows || i >= SHOW_RUNS)
            break;
        json_t *e = json_object_get(run, "entry");
        const char *status = jstr(e, "status");
        json_t *size = json_object_get(e, "size");
        const char *dv = json_string_value(json_object_get(e, "data_version"));
        const char *error = json_string_value(json_object_get(e, "error"));
        bool timed = !strcmp(status, "computed") || !strcmp(status, "loaded");
        PyObject *row = Py_BuildValue(
            "(NsNNNN)", str_moment(jnum(run, "started_ns")), status,
            timed ? str_duration(jnum(e, "time_ns")) : PyUnicode_FromString("-"),
            str_size(json_is_integer(size), jnum(e, "size")),
            dv ? str_hex_text(dv) : PyUnicode_FromString(error ? error : "-"),
            targets_text(json_object_get(run, "targets")));
        if (append_new(rows, row) < 0)
            Py_CLEAR(rows);
    }
    return rows;
}

static int show_doc(cellar_state *st, PyObject *name, const char *node, json_t *doc)
{
    cellar_hash current, cv;
    bool have_cv;
    int have_current = current_key(st, name, &current, &cv, &have_cv);
    if (have_current < 0)
        return -1;
    json_t *keys = json_object_get(doc, "keys");
    json_t *runs = json_object_get(doc, "runs");
    json_t *meta = json_object_get(doc, "metadata");
    size_t nkeys = json_array_size(keys), nruns = json_array_size(runs);
    unreadable bad = {0};
    note_unreadable_json(&bad, doc);
    const char *meta_bad = json_string_value(json_object_get(doc, "metadata_unreadable"));
    if (meta_bad) {
        if (!bad.count)
            snprintf(bad.first, sizeof bad.first, "%s", meta_bad);
        bad.count++;
    }
    if (nkeys == 0 && nruns == 0 && !have_cv && !json_is_object(meta) && !meta_bad) {
        PyErr_Format(st->RunError,
                     "no node '%s': the store %s has no record of it, and no top-level "
                     "function of that name is defined",
                     node, cellar_store_path(st->store));
        return -1;
    }
    PyObject *note = node_note(meta, have_cv, &cv);
    PyObject *full = note ? make_note(PyUnicode_AsUTF8(note), &bad) : NULL;
    Py_XDECREF(note);
    size_t ncv = distinct_code_versions(keys);
    PyObject *title = PyUnicode_FromFormat(
        "cellar show %s: %zu code version%s, %zu result%s", node, ncv,
        ncv == 1 ? "" : "s", nkeys, nkeys == 1 ? "" : "s");
    PyObject *header =
        Py_BuildValue("(ssssssss)", "code version", "result", "created", "last used",
                      "compute", "size", "data version", "key");
    if (show_report(st, title, header, key_rows(keys, have_current > 0, &current), full) <
        0)
        return -1;
    title = PyUnicode_FromFormat("runs of %s: %zu, newest first", node, nruns);
    header = Py_BuildValue("(ssssss)", "started", "status", "time", "size",
                           "data version", "targets");
    PyObject *more = nruns > SHOW_RUNS
                         ? PyUnicode_FromFormat("... and %zu older runs", nruns - SHOW_RUNS)
                         : Py_NewRef(Py_None);
    return show_report(st, title, header, run_rows(runs), more);
}

PyObject *cellar_node_show(cellar_state *st, PyObject *name)
{
    PyObject *norm = cellar_registry_normalize(name); /* `µ` typed in the magic */
    const char *node = norm ? PyUnicode_AsUTF8(norm) : NULL;
    if (node && !PyUnicode_IsIdentifier(norm)) {
        PyErr_Format(st->RunError, "%%cellar show: not a node name: '%U'", norm);
        node = NULL;
    }
    if (!node || !needs_store(st)) {
        Py_XDECREF(norm);
        return NULL;
    }
    const char *args[] = {"show", "--node", node, NULL};
    json_t *doc = ask_cellar(st, "%cellar show: the node's records cannot be read", args);
    int rc = doc ? show_doc(st, norm, node, doc) : PyErr_Occurred() ? -1 : 0;
    json_decref(doc);
    Py_DECREF(norm);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}
