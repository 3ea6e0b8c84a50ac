/*
 * report.c - cellar.Report, the table a run or a status query shows.
 *
 * A report holds a title, column names, rows of preformatted strings and an
 * optional closing note (what was left out of a long report).  IPython's
 * display machinery asks it for `_repr_html_` in a notebook (a table with
 * each status coloured) and for `__repr__` in a terminal (aligned columns
 * separated by at least two spaces).  The caller chooses the rows; a report
 * never shows more than SHOWN_ROWS of them.  The rows of a run's report (one
 * per node, times and sizes as units.h writes them, in the title too) and of
 * a status query's (each missing input named beside the node that needs it)
 * are made here from the run's slots (run_state.h); both get a behaviour
 * column when some node's behaviour is not default (a column of its own, so
 * the status words stay what they are).
 */
#include "run_state.h"

#include <structmember.h>

#include "cellar/units.h"

#define SHOWN_ROWS 60

typedef struct report {
    PyObject_HEAD PyObject *title; /* str */
    PyObject *header;              /* tuple of str */
    PyObject *rows;                /* list of tuples of str */
    PyObject *note;                /* str or None */
} report;

static void report_dealloc(report *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    Py_CLEAR(self->title);
    Py_CLEAR(self->header);
    Py_CLEAR(self->rows);
    Py_CLEAR(self->note);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static int report_traverse(report *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->title);
    Py_VISIT(self->header);
    Py_VISIT(self->rows);
    Py_VISIT(self->note);
    return 0;
}

/* Appends `s` to `parts`, padded with spaces to `width` code points. */
static int append_padded(PyObject *parts, PyObject *s, Py_ssize_t width, int last)
{
    if (PyList_Append(parts, s) < 0)
        return -1;
    if (last)
        return 0;
    Py_ssize_t pad = width - PyUnicode_GET_LENGTH(s) + 2;
    PyObject *space = PyUnicode_FromString(" ");
    PyObject *spaces = space ? PySequence_Repeat(space, pad) : NULL;
    int rc = spaces ? PyList_Append(parts, spaces) : -1;
    Py_XDECREF(space);
    Py_XDECREF(spaces);
    return rc;
}

static PyObject *report_repr(report *self)
{
    Py_ssize_t ncols = PyTuple_GET_SIZE(self->header);
    Py_ssize_t nrows = PyList_GET_SIZE(self->rows);
    Py_ssize_t shown = nrows > SHOWN_ROWS ? SHOWN_ROWS : nrows;
    Py_ssize_t widths[8] = {0};
    if (ncols > 8)
        ncols = 8;
    for (Py_ssize_t c = 0; c < ncols; c++)
        widths[c] = PyUnicode_GET_LENGTH(PyTuple_GET_ITEM(self->header, c));
    for (Py_ssize_t r = 0; r < shown; r++) {
        PyObject *row = PyList_GET_ITEM(self->rows, r);
        for (Py_ssize_t c = 0; c < ncols && c < PyTuple_GET_SIZE(row); c++) {
            Py_ssize_t w = PyUnicode_GET_LENGTH(PyTuple_GET_ITEM(row, c));
            if (w > widths[c])
                widths[c] = w;
        }
    }
    PyObject *parts = PyList_New(0);
    if (!parts || PyList_Append(parts, self->title) < 0)
        goto fail;
    for (Py_ssize_t r = -1; r < shown; r++) {
        PyObject *row = r < 0 ? self->header : PyList_GET_ITEM(self->rows, r);
        PyObject *nl = PyUnicode_FromString("\n");
        if (!nl || PyList_Append(parts, nl) < 0) {
            Py_XDECREF(nl);
            goto fail;
        }
        Py_DECREF(nl);
        for (Py_ssize_t c = 0; c < ncols && c < PyTuple_GET_SIZE(row); c++)
            if (append_padded(parts, PyTuple_GET_ITEM(row, c), widths[c],
                              c == ncols - 1) < 0)
                goto fail;
    }
    if (self->note != Py_None || shown < nrows) {
        PyObject *more = self->note != Py_None
                             ? PyUnicode_FromFormat("\n%U", self->note)
                             : PyUnicode_FromFormat("\n... %zd more rows", nrows - shown);
        if (!more || PyList_Append(parts, more) < 0) {
            Py_XDECREF(more);
            goto fail;
        }
        Py_DECREF(more);
    }
    PyObject *empty = PyUnicode_FromString("");
    PyObject *text = empty ? PyUnicode_Join(empty, parts) : NULL;
    Py_XDECREF(empty);
    Py_DECREF(parts);
    return text;
fail:
    Py_XDECREF(parts);
    return NULL;
}

/* A status cell's tint: the JupyterLab theme colour that %cellar graph uses
 * for the same status (fallback: the light theme's), mixed into the theme's
 * background (20%), under the theme's text colour.  Light themes
 * give a pastel under dark text, dark themes a deep shade under light text;
 * without JupyterLab's variables (VS Code, nbconvert HTML) the fallbacks give
 * the light pair, text colour included. */
#define STATUS_CELL_STYLE                                                                  \
    "text-align:left;color:var(--jp-content-font-color1,#1f1f1f);"                         \
    "background:color-mix(in srgb,%s 20%%,var(--jp-layout-color0,#fff))"

static const char *status_colour(PyObject *s)
{
    static const struct {
        const char *status, *colour;
    } colours[] = {
        {"computed", "var(--jp-brand-color1,#1976d2)"},
        {"loaded", "var(--jp-info-color1,#0097a7)"},
        {"in memory", "var(--jp-info-color1,#0097a7)"},
        {"failed", "var(--jp-error-color1,#d32f2f)"},
        {"skipped", "var(--jp-warn-color1,#f57c00)"},
        {"up to date", "var(--jp-success-color1,#388e3c)"},
        {"needs run", "var(--jp-warn-color1,#f57c00)"},
        {"needs input", "var(--jp-error-color1,#d32f2f)"},
    };
    const char *text = PyUnicode_AsUTF8(s);
    if (!text) {
        PyErr_Clear();
        return NULL;
    }
    for (size_t i = 0; i < sizeof colours / sizeof colours[0]; i++)
        if (!strcmp(text, colours[i].status))
            return colours[i].colour;
    return NULL;
}

static int append_escaped(PyObject *parts, PyObject *s, PyObject *escape)
{
    PyObject *e = PyObject_CallFunctionObjArgs(escape, s, NULL);
    int rc = e ? PyList_Append(parts, e) : -1;
    Py_XDECREF(e);
    return rc;
}

static int append_str(PyObject *parts, const char *s)
{
    PyObject *o = PyUnicode_FromString(s);
    int rc = o ? PyList_Append(parts, o) : -1;
    Py_XDECREF(o);
    return rc;
}

static PyObject *report_html(report *self, PyObject *unused)
{
    (void)unused;
    PyObject *html_mod = PyImport_ImportModule("html");
    PyObject *escape = html_mod ? PyObject_GetAttrString(html_mod, "escape") : NULL;
    Py_XDECREF(html_mod);
    PyObject *parts = escape ? PyList_New(0) : NULL;
    if (!parts)
        goto fail;
    Py_ssize_t nrows = PyList_GET_SIZE(self->rows);
    Py_ssize_t shown = nrows > SHOWN_ROWS ? SHOWN_ROWS : nrows;
    if (append_str(parts, "<div class=\"cellar-report\"><p><b>") < 0 ||
        append_escaped(parts, self->title, escape) < 0 ||
        append_str(parts, "</b></p><table><thead><tr>") < 0)
        goto fail;
    for (Py_ssize_t c = 0; c < PyTuple_GET_SIZE(self->header); c++)
        if (append_str(parts, "<th style=\"text-align:left\">") < 0 ||
            append_escaped(parts, PyTuple_GET_ITEM(self->header, c), escape) < 0 ||
            append_str(parts, "</th>") < 0)
            goto fail;
    if (append_str(parts, "</tr></thead><tbody>") < 0)
        goto fail;
    for (Py_ssize_t r = 0; r < shown; r++) {
        PyObject *row = PyList_GET_ITEM(self->rows, r);
        if (append_str(parts, "<tr>") < 0)
            goto fail;
        for (Py_ssize_t c = 0; c < PyTuple_GET_SIZE(row); c++) {
            PyObject *cell = PyTuple_GET_ITEM(row, c);
            const char *colour = c == 1 ? status_colour(cell) : NULL;
            char open[256];
            if (colour)
                snprintf(open, sizeof open, "<td style=\"" STATUS_CELL_STYLE "\">", colour);
            else
                snprintf(open, sizeof open, "<td style=\"text-align:left\">");
            if (append_str(parts, open) < 0 || append_escaped(parts, cell, escape) < 0 ||
                append_str(parts, "</td>") < 0)
                goto fail;
        }
        if (append_str(parts, "</tr>") < 0)
            goto fail;
    }
    if (append_str(parts, "</tbody></table>") < 0)
        goto fail;
    if (self->note != Py_None) {
        if (append_str(parts, "<p>") < 0 ||
            append_escaped(parts, self->note, escape) < 0 ||
            append_str(parts, "</p>") < 0)
            goto fail;
    } else if (shown < nrows) {
        char more[64];
        snprintf(more, sizeof more, "<p>... %zd more rows</p>", nrows - shown);
        if (append_str(parts, more) < 0)
            goto fail;
    }
    if (append_str(parts, "</div>") < 0)
        goto fail;
    PyObject *empty = PyUnicode_FromString("");
    PyObject *html = empty ? PyUnicode_Join(empty, parts) : NULL;
    Py_XDECREF(empty);
    Py_DECREF(parts);
    Py_DECREF(escape);
    return html;
fail:
    Py_XDECREF(parts);
    Py_XDECREF(escape);
    return NULL;
}

static PyMemberDef report_members[] = {
    {"title", T_OBJECT_EX, offsetof(report, title), READONLY, "One line summing up."},
    {"header", T_OBJECT_EX, offsetof(report, header), READONLY, "Column names."},
    {"rows", T_OBJECT_EX, offsetof(report, rows), READONLY,
     "The rows shown, as tuples of str."},
    {"note", T_OBJECT_EX, offsetof(report, note), READONLY,
     "What the rows leave out, or None."},
    {NULL, 0, 0, 0, NULL},
};

static PyMethodDef report_methods[] = {
    {"_repr_html_", (PyCFunction)report_html, METH_NOARGS,
     "The report as an HTML table."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot report_slots[] = {
    {Py_tp_dealloc, report_dealloc},
    {Py_tp_traverse, report_traverse},
    {Py_tp_repr, report_repr},
    {Py_tp_members, report_members},
    {Py_tp_methods, report_methods},
    {Py_tp_doc, "The outcome of a cellar run or status query, one row per node."},
    {0, NULL},
};

static PyType_Spec report_spec = {
    .name = "cellar.Report",
    .basicsize = sizeof(report),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = report_slots,
};

/* What IPython's debugger reads (InteractiveShell.debugger, ultratb's
 * debugger: sys.last_value, or sys.last_exc from 3.12, for the frames;
 * sys.last_traceback when no traceback was formatted since) becomes the
 * failing node's exception, so `%debug` opens the body's frames.  IPython's
 * showtraceback has just set them to the RunError when it asks for the
 * lines below; a RunError without a node's exception changes nothing. */
static void debug_node_exception(PyObject *run_error)
{
    PyObject *exc = PyObject_GetAttrString(run_error, "node_exception");
    PyObject *tb = exc && PyExceptionInstance_Check(exc) ? PyException_GetTraceback(exc)
                                                          : NULL;
    if (tb && (PySys_SetObject("last_type", (PyObject *)Py_TYPE(exc)) < 0 ||
               PySys_SetObject("last_value", exc) < 0 ||
               PySys_SetObject("last_traceback", tb) < 0
#if PY_VERSION_HEX >= 0x030C0000
               || PySys_SetObject("last_exc", exc) < 0
#endif
               ))
        cellar_warn("%%debug will show the RunError, not the node's frames");
    Py_XDECREF(tb);
    Py_XDECREF(exc);
    PyErr_Clear();
}

/* RunError._render_traceback_: IPython shows an exception that has this
 * method by the lines it returns instead of a traceback.  A RunError follows
 * the report, which (with the failing nodes' own tracebacks shown before it)
 * says what went wrong; its frames would only be the `%cellar run` call.
 * IPython asks for these lines while it shows the error, after it has noted
 * the RunError for `%debug`, which is pointed at the node's exception here. */
static PyObject *run_error_render(PyObject *self, PyObject *unused)
{
    (void)unused;
    debug_node_exception(self);
    const char *name = Py_TYPE(self)->tp_name, *dot = strrchr(name, '.');
    PyObject *text = PyObject_Str(self);
    PyObject *line = text ? PyUnicode_FromFormat("%s: %U", dot ? dot + 1 : name, text)
                          : NULL;
    PyObject *lines = line ? PyList_New(1) : NULL;
    if (lines)
        PyList_SET_ITEM(lines, 0, Py_NewRef(line));
    Py_XDECREF(line);
    Py_XDECREF(text);
    return lines;
}

static PyMethodDef run_error_render_def = {
    "_render_traceback_", run_error_render, METH_NOARGS,
    "The lines IPython shows for this error: its type and message, no frames.",
};

int cellar_report_type_init(PyObject *module, cellar_state *st)
{
    st->ReportType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &report_spec, NULL);
    if (!st->ReportType ||
        PyModule_AddObjectRef(module, "Report", (PyObject *)st->ReportType) < 0)
        return -1;
    PyObject *render =
        PyDescr_NewMethod((PyTypeObject *)st->RunError, &run_error_render_def);
    int rc =
        render ? PyObject_SetAttrString(st->RunError, "_render_traceback_", render) : -1;
    Py_XDECREF(render);
    /* The last failing node's exception, set by run.c; None on the class. */
    return rc < 0 ? -1 : PyObject_SetAttrString(st->RunError, "node_exception", Py_None);
}

PyObject *cellar_report_new(cellar_state *st, PyObject *title, PyObject *header,
                            PyObject *rows, PyObject *note)
{
    report *self = PyObject_GC_New(report, st->ReportType);
    if (!self)
        return NULL;
    self->title = Py_NewRef(title);
    self->header = Py_NewRef(header);
    self->rows = Py_NewRef(rows);
    self->note = Py_NewRef(note ? note : Py_None);
    PyObject_GC_Track(self);
    return (PyObject *)self;
}

int cellar_report_publish(cellar_state *st, PyObject *self, PyObject *display_id,
                          bool update)
{
    PyObject *text = PyObject_Repr(self);
    if (!text)
        return -1;
    if (!st->shell) {
        PySys_FormatStdout("%U\n", text);
        Py_DECREF(text);
        return 0;
    }
    PyObject *html = report_html((report *)self, NULL);
    PyObject *data =
        html ? Py_BuildValue("{sOsO}", "text/plain", text, "text/html", html) : NULL;
    int rc = data ? cellar_display_publish(st, data, display_id, update) : -1;
    Py_XDECREF(data);
    Py_XDECREF(html);
    Py_DECREF(text);
    return rc;
}

int cellar_report_show(cellar_state *st, PyObject *self)
{
    return cellar_report_publish(st, self, NULL, false);
}

int cellar_display_publish(cellar_state *st, PyObject *data, PyObject *display_id,
                           bool update)
{
    PyObject *pub = PyObject_GetAttrString(st->shell, "display_pub");
    PyObject *publish = pub ? PyObject_GetAttrString(pub, "publish") : NULL;
    PyObject *args = publish ? PyTuple_Pack(1, data) : NULL;
    PyObject *kwargs = !args ? NULL
                       : display_id
                           ? Py_BuildValue("{s{}s{sO}sO}", "metadata", "transient",
                                           "display_id", display_id, "update",
                                           update ? Py_True : Py_False)
                           : Py_BuildValue("{s{}}", "metadata");
    PyObject *r = kwargs ? PyObject_Call(publish, args, kwargs) : NULL;
    Py_XDECREF(r);
    Py_XDECREF(kwargs);
    Py_XDECREF(args);
    Py_XDECREF(publish);
    Py_XDECREF(pub);
    return r ? 0 : -1;
}

/* ---- a run's rows ---- */

/* Times and sizes print as units.h says, the same as in `cellar` and in the
 * %load_ext summary. */
static PyObject *format_seconds(double s)
{
    char buf[CELLAR_UNITS_BUFSIZE];
    if (s < 0)
        return PyUnicode_FromString("-");
    return PyUnicode_FromString(cellar_units_duration((uint64_t)(s * 1e9), buf));
}

static PyObject *format_size(bool have, uint64_t n)
{
    char buf[CELLAR_UNITS_BUFSIZE];
    if (!have)
        return PyUnicode_FromString("-");
    return PyUnicode_FromString(cellar_units_size(n, buf));
}

/* A long run's report lists every node that did something (computed,
 * failed, skipped) and as many cache hits as fit in REPORT_ROWS; the note
 * counts the rest.  Only the rows shown are formatted. */
#define REPORT_ROWS 30

/* With `behaving`, a fifth column: the node's behaviour when not default. */
static int add_row(PyObject *rows, slot *s, bool behaving)
{
    const char *b =
        s->behavior == CELLAR_BEHAVIOR_DEFAULT ? "" : cellar_behavior_names[s->behavior];
    PyObject *row =
        behaving ? Py_BuildValue("(OsNNs)", s->fn->name, run_status_names[s->status],
                                 format_seconds(s->seconds),
                                 format_size(s->have_size, s->size), b)
                 : Py_BuildValue("(OsNN)", s->fn->name, run_status_names[s->status],
                                 format_seconds(s->seconds),
                                 format_size(s->have_size, s->size));
    int rc = row ? PyList_Append(rows, row) : -1;
    Py_XDECREF(row);
    return rc;
}

static bool is_hit(const slot *s)
{
    return s->status == ST_LOADED || s->status == ST_MEMORY;
}

PyObject *run_report(run_ctx *ctx, double total)
{
    size_t counts[6] = {0}, active = 0;
    bool behaving = false;
    for (size_t i = 0; i < ctx->norder; i++) {
        slot *s = &ctx->slots[ctx->order[i]];
        counts[s->status]++;
        active += !is_hit(s);
        behaving = behaving || s->behavior != CELLAR_BEHAVIOR_DEFAULT;
    }
    size_t hits_shown = active >= REPORT_ROWS ? 0 : REPORT_ROWS - active;
    size_t hidden_loaded = 0, hidden_memory = 0;
    PyObject *rows = PyList_New(0);
    if (!rows)
        return NULL;
    for (size_t i = 0; i < ctx->norder; i++) {
        slot *s = &ctx->slots[ctx->order[i]];
        if (is_hit(s)) {
            if (hits_shown == 0) {
                hidden_loaded += s->status == ST_LOADED;
                hidden_memory += s->status == ST_MEMORY;
                continue;
            }
            hits_shown--;
        }
        if (add_row(rows, s, behaving) < 0) {
            Py_DECREF(rows);
            return NULL;
        }
    }
    char took[CELLAR_UNITS_BUFSIZE];
    cellar_units_duration((uint64_t)(total * 1e9), took);
    PyObject *title = PyUnicode_FromFormat(
        "cellar run: %zu nodes, %zu computed, %zu loaded, %zu in memory, %zu failed, "
        "%zu skipped (%s)",
        ctx->norder, counts[ST_COMPUTED], counts[ST_LOADED], counts[ST_MEMORY],
        counts[ST_FAILED], counts[ST_SKIPPED], took);
    PyObject *note =
        (hidden_loaded || hidden_memory)
            ? PyUnicode_FromFormat("... and %zu more nodes not listed: %zu loaded, "
                                   "%zu in memory",
                                   hidden_loaded + hidden_memory, hidden_loaded,
                                   hidden_memory)
            : Py_NewRef(Py_None);
    PyObject *header =
        behaving ? Py_BuildValue("(sssss)", "node", "status", "time", "size", "behavior")
                 : Py_BuildValue("(ssss)", "node", "status", "time", "size");
    PyObject *rep = (title && header && note)
                           ? cellar_report_new(ctx->st, title, header, rows, note)
                           : NULL;
    Py_XDECREF(title);
    Py_XDECREF(header);
    Py_XDECREF(note);
    Py_DECREF(rows);
    return rep;
}

/* ---- a status query's rows ---- */

static const char *plan_state(const slot *s)
{
    return s->status == ST_LOADED   ? "up to date"
           : s->status == ST_FAILED ? "needs input"
                                    : "needs run";
}

PyObject *run_status_report(run_ctx *ctx)
{
    PyObject *rep = NULL, *rows = PyList_New(0), *comma = PyUnicode_FromString(", ");
    size_t fresh = 0, needing = 0;
    bool behaving = false;
    for (size_t i = 0; i < ctx->norder; i++)
        behaving =
            behaving || ctx->slots[ctx->order[i]].behavior != CELLAR_BEHAVIOR_DEFAULT;
    for (size_t i = 0; rows && comma && i < ctx->norder; i++) {
        slot *s = &ctx->slots[ctx->order[i]];
        fresh += s->status == ST_LOADED;
        PyObject *missing = NULL;
        if (s->status == ST_FAILED) {
            PyObject *names = run_missing_inputs(ctx, ctx->order[i]);
            missing = names ? PyUnicode_Join(comma, names) : NULL;
            Py_XDECREF(names);
            needing++;
        } else {
            missing = PyUnicode_FromString("");
        }
        const char *b = s->behavior == CELLAR_BEHAVIOR_DEFAULT
                            ? ""
                            : cellar_behavior_names[s->behavior];
        PyObject *row =
            missing ? Py_BuildValue("(OsNs)", s->fn->name, plan_state(s), missing, b)
                    : NULL;
        if (!row || PyList_Append(rows, row) < 0)
            Py_CLEAR(rows);
        Py_XDECREF(row);
    }
    /* The missing-input column only when some input is missing, the
     * behaviour column only when some node has one but default. */
    for (Py_ssize_t i = 0; rows && (!needing || !behaving) && i < PyList_GET_SIZE(rows);
         i++) {
        PyObject *row = PyList_GET_ITEM(rows, i);
        PyObject *cut =
            !needing && behaving
                ? PyTuple_Pack(3, PyTuple_GET_ITEM(row, 0), PyTuple_GET_ITEM(row, 1),
                               PyTuple_GET_ITEM(row, 3))
                : PyTuple_GetSlice(row, 0, needing ? 3 : 2);
        if (!cut || PyList_SetItem(rows, i, cut) < 0)
            Py_CLEAR(rows);
    }
    PyObject *title =
        rows ? PyUnicode_FromFormat("cellar status: %zu of %zu nodes up to date", fresh,
                                    ctx->norder)
             : NULL;
    PyObject *header =
        needing && behaving ? Py_BuildValue("(ssss)", "node", "state", "missing input",
                                            "behavior")
        : needing           ? Py_BuildValue("(sss)", "node", "state", "missing input")
        : behaving          ? Py_BuildValue("(sss)", "node", "state", "behavior")
                            : Py_BuildValue("(ss)", "node", "state");
    PyObject *note =
        needing ? PyUnicode_FromString(
                      "Give each missing input with --input NAME=VALUE (or NAME=... to "
                      "cellar.run), define a global of that name, or give the parameter "
                      "a default.")
                : Py_NewRef(Py_None);
    if (title && header && note)
        rep = cellar_report_new(ctx->st, title, header, rows, note);
    Py_XDECREF(title);
    Py_XDECREF(header);
    Py_XDECREF(note);
    Py_XDECREF(rows);
    Py_XDECREF(comma);
    return rep;
}
