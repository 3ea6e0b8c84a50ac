/*
 * restore.c - `%cellar restore [--session S]`: re-defines a past session's
 * nodes, helpers, classes and literal globals from the journal, without
 * running any cell that computes.
 *
 * The session is the newest one in the journal other than this kernel's own
 * (CELLAR_KERNEL_SESSION under the cellar kernel), or the one named.  Its
 * cells are read through the runtime (journal.h) into memory and the reader
 * ended before anything runs; then, oldest first, each cell that ended ok and
 * that only defines (definitions.h, the same rule crash recovery replays by)
 * is run by IPython's run_cell (silent, out of the history: its hooks do not
 * fire) and handed to the registry like a cell the hooks saw.  A
 * `%cellar restore` cell of that session restores, in its place, the session
 * before it (or the one it named), at most a few levels deep.  No result is
 * loaded: a node's value comes from the store when a run needs it, so the
 * time taken does not depend on how large the stored results are.  A cell
 * that fails here is reported and the rest go on.
 */
#include "cellar_ext.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cellar/definitions.h"
#include "cellar/journal.h"

enum { MAX_DEPTH = 8 };

/* printf to the notebook (PyUnicode_FromFormat knows no `*` widths); a
 * pending Python error is kept. */
__attribute__((format(printf, 1, 2))) static void say(const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    PySys_FormatStdout("%s\n", line);
}

typedef struct cell {
    char *code;
    size_t len;
    char *cell_id;
    int64_t count;
    uint64_t start_ns;
    cellar_cell_outcome outcome;
    char ename[64];
} cell;

typedef struct cells {
    cell *v;
    size_t n, cap;
    bool oom;
} cells;

typedef struct tally {
    size_t restored, skipped, failed;
} tally;

static int collect(void *ctx, const cellar_journal_entry *e)
{
    cells *c = ctx;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 32;
        cell *v = PyMem_Realloc(c->v, cap * sizeof *v);
        if (!v) {
            c->oom = true;
            return 1;
        }
        c->v = v;
        c->cap = cap;
    }
    cell x = {.len = e->code_len,
              .count = e->execution_count,
              .start_ns = e->start_ns,
              .outcome = e->outcome};
    x.code = PyMem_Malloc(e->code_len + 1);
    x.cell_id = PyMem_Malloc(strlen(e->cell_id) + 1);
    if (!x.code || !x.cell_id) {
        PyMem_Free(x.code);
        PyMem_Free(x.cell_id);
        c->oom = true;
        return 1;
    }
    memcpy(x.code, e->code, e->code_len);
    x.code[e->code_len] = '\0';
    strcpy(x.cell_id, e->cell_id);
    snprintf(x.ename, sizeof x.ename, "%s", e->ename);
    c->v[c->n++] = x;
    return 0;
}

static void cells_free(cells *c)
{
    for (size_t i = 0; i < c->n; i++) {
        PyMem_Free(c->v[i].code);
        PyMem_Free(c->v[i].cell_id);
    }
    PyMem_Free(c->v);
}

/* Reads session `session` (or, when it is "", the newest one other than
 * `except` that started before `before_ns`) into `out` and its name into
 * `name`.  0; 1 when there is no such session (said); -1 with StoreError. */
static int read_session(cellar_state *st, const char *session, const char *except,
                        uint64_t before_ns, char *name, size_t cap, cells *out)
{
    cellar_reader *r = NULL;
    cellar_error err;
    cellar_status rc = cellar_reader_begin(st->store, &r, &err);
    if (rc == CELLAR_OK && !session[0]) {
        rc = cellar_journal_last_session(r, except, before_ns, name, cap, &err);
        if (rc == CELLAR_ENOTFOUND) {
            cellar_reader_end(r);
            say("cellar restore: the journal of %s has no %s session to "
                "restore (it is written by the cellar kernel)",
                cellar_store_path(st->store),
                except || before_ns != UINT64_MAX ? "earlier" : "");
            return 1;
        }
    } else if (rc == CELLAR_OK) {
        snprintf(name, cap, "%s", session);
    }
    if (rc == CELLAR_OK)
        rc = cellar_journal_each(r, name, collect, out, &err);
    cellar_reader_end(r);
    if (rc == CELLAR_OK && out->oom) {
        PyErr_NoMemory();
        return -1;
    }
    if (rc != CELLAR_OK) {
        PyErr_Format(st->StoreError, "cannot read the journal: %s", err.message);
        return -1;
    }
    if (out->n == 0) {
        say("cellar restore: the journal has no cell of session %s", name);
        return 1;
    }
    return 0;
}

/* One line of the report: what happened to a cell, and its first line. */
static void report(const char *what, const cell *c, const char *why, int depth)
{
    size_t first = strcspn(c->code, "\n");
    char count[32];
    if (c->count >= 0)
        snprintf(count, sizeof count, "[%lld]", (long long)c->count);
    else
        snprintf(count, sizeof count, "[-]");
    say("%*s  %-9s %-6s %.*s%s%s%s", depth * 2, "", what, count,
        (int)(first > 50 ? 50 : first), c->code,
        first > 50 || c->code[first] ? " ..." : "", why ? "  -- " : "", why ? why : "");
}

/* Runs one definition cell as IPython runs a cell (its transforms, and its
 * compiler one statement at a time, so the bytecode, and with it the code
 * version, is what the cell made the first time), silently and outside the
 * history, then registers what it defined.  0, or -1 with the cell's
 * exception set. */
static int run_cell(cellar_state *st, const cell *c)
{
    PyObject *r = PyObject_CallMethod(st->shell, "run_cell", "sOO", c->code, Py_False,
                                      Py_True); /* store_history, silent */
    if (!r)
        return -1;
    PyObject *exc = NULL;
    int failed = cellar_optional_attr(r, "error_before_exec", &exc);
    if (failed >= 0 && (!exc || exc == Py_None)) {
        Py_XDECREF(exc);
        failed = cellar_optional_attr(r, "error_in_exec", &exc);
    }
    Py_DECREF(r);
    if (failed < 0)
        return -1;
    if (exc && exc != Py_None) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
        return -1;
    }
    Py_XDECREF(exc);
    PyObject *cell_id =
        c->cell_id[0] ? PyUnicode_FromString(c->cell_id) : Py_NewRef(Py_None);
    int rc =
        cell_id ? cellar_register_source(st, c->code, (Py_ssize_t)c->len, cell_id) : -1;
    Py_XDECREF(cell_id);
    return rc;
}

static bool only_load_ext_cellar(const char *code)
{
    const char *p = code + strspn(code, " \t\r\n");
    if (strncmp(p, "%load_ext cellar", 16))
        return false;
    p += 16;
    return p[strspn(p, " \t\r\n")] == '\0';
}

/* The session a `%cellar restore [--session S]` cell names, or "". */
static void restore_target(const char *code, char *out, size_t cap)
{
    const char *s = strstr(code, "--session");
    out[0] = '\0';
    if (!s)
        return;
    s += 9;
    s += strspn(s, " =");
    size_t n = strcspn(s, " \t\r\n");
    snprintf(out, cap, "%.*s", (int)(n < cap ? n : cap - 1), s);
}

static int restore_session(cellar_state *st, const char *session, const char *except,
                           uint64_t before_ns, int depth, tally *t);

static int restore_cells(cellar_state *st, const cells *cs, const char *name, int depth,
                         tally *t)
{
    for (size_t i = 0; i < cs->n; i++) {
        const cell *c = &cs->v[i];
        char why[CELLAR_JOURNAL_WHY_MAX + 80];
        if (PyErr_CheckSignals() < 0)
            return -1;
        /* The same test and reason as `cellar journal --json`'s why_not. */
        cellar_journal_entry e = {.code = c->code,
                                  .code_len = c->len,
                                  .outcome = c->outcome,
                                  .ename = c->ename};
        if (!cellar_journal_replayable(&e, why)) {
            report("skipped", c, why, depth);
            t->skipped++;
            continue;
        }
        if (only_load_ext_cellar(c->code)) {
            report("restored", c, "the extension is loaded", depth);
            t->restored++;
            continue;
        }
        const char *line = c->code + strspn(c->code, " \t\r\n");
        if (!strncmp(line, "%cellar restore", 15)) {
            char target[160];
            restore_target(line, target, sizeof target);
            report("restoring", c, target[0] ? target : "the session before it", depth);
            if (depth + 1 >= MAX_DEPTH) {
                say("%*s  (not deeper than %d sessions)", depth * 2, "", MAX_DEPTH);
                continue;
            }
            if (restore_session(st, target, name, c->start_ns, depth + 1, t) < 0)
                return -1;
            continue;
        }
        if (run_cell(st, c) < 0) {
            PyObject *exc = cellar_fetch_exception();
            PyObject *text = exc ? PyObject_Str(exc) : NULL;
            if (!text)
                PyErr_Clear();
            snprintf(why, sizeof why, "failed: %s: %s",
                     exc ? Py_TYPE(exc)->tp_name : "error",
                     text ? PyUnicode_AsUTF8(text) : "");
            if (PyErr_Occurred())
                PyErr_Clear();
            Py_XDECREF(text);
            Py_XDECREF(exc);
            report("failed", c, why, depth);
            t->failed++;
            continue;
        }
        report("restored", c, NULL, depth);
        t->restored++;
    }
    return 0;
}

static int restore_session(cellar_state *st, const char *session, const char *except,
                           uint64_t before_ns, int depth, tally *t)
{
    char name[160];
    cells cs = {0};
    int rc = read_session(st, session, except, before_ns, name, sizeof name, &cs);
    if (rc == 0) {
        say("%*scellar restore: session %s (%zu cell%s)", depth * 2, "", name, cs.n,
            cs.n == 1 ? "" : "s");
        rc = restore_cells(st, &cs, name, depth, t);
    }
    cells_free(&cs);
    return rc < 0 ? -1 : 0;
}

PyObject *cellar_restore(cellar_state *st, PyObject *args)
{
    const char *session = "";
    Py_ssize_t n = PyList_GET_SIZE(args);
    for (Py_ssize_t i = 1; i < n; i++) {
        PyObject *a = PyList_GET_ITEM(args, i);
        if (!PyUnicode_CompareWithASCIIString(a, "--session") && i + 1 < n) {
            session = PyUnicode_AsUTF8(PyList_GET_ITEM(args, ++i));
            if (!session)
                return NULL;
        } else {
            PyErr_Format(st->RunError,
                         "%%cellar restore takes [--session S], not '%U'\n\n%s", a,
                         cellar_magic_usage);
            return NULL;
        }
    }
    if (!st->store || !st->shell) {
        PyErr_SetString(st->RunError,
                        "%cellar restore needs the extension loaded in IPython");
        return NULL;
    }
    const char *mine = getenv("CELLAR_KERNEL_SESSION");
    tally t = {0};
    if (restore_session(st, session, mine && *mine ? mine : NULL, UINT64_MAX, 0, &t) < 0)
        return NULL;
    if (t.restored + t.skipped + t.failed == 0)
        Py_RETURN_NONE;
    /* The nodes now defined: the registry's names but the private ones. */
    PyObject *names = PyList_New(0), *key, *value;
    Py_ssize_t pos = 0;
    while (names && PyDict_Next(st->functions, &pos, &key, &value))
        if (PyUnicode_Check(key) && PyUnicode_READ_CHAR(key, 0) != '_' &&
            PyList_Append(names, key) < 0)
            Py_CLEAR(names);
    PyObject *sep = names && PyList_Sort(names) == 0 ? PyUnicode_FromString(", ") : NULL;
    PyObject *joined = sep ? PyUnicode_Join(sep, names) : NULL;
    Py_XDECREF(sep);
    Py_XDECREF(names);
    if (!joined)
        return NULL;
    PySys_FormatStdout(
        "cellar restore: %zu restored, %zu skipped, %zu failed; nodes: %U\n", t.restored,
        t.skipped, t.failed, joined);
    Py_DECREF(joined);
    Py_RETURN_NONE;
}
