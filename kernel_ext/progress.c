/*
 * progress.c - the live line of a run that lasts: how many nodes are done of
 * how many, the node running (or loading) now, and the time so far.
 *
 * Nothing is drawn in a run's first half second, so a fast or cached run
 * shows only its report.  The clock is never read for the line: the line is
 * looked at only when a node starts computing or loading, with the time that
 * execute.c reads anyway to time the node, so a fully cached run pays one
 * comparison per load and nothing per hit in memory.  Redraws are at most
 * every 0.2 s.  In a notebook (ipykernel's ZMQInteractiveShell) the line is
 * a display with a display_id, sent as display_data and then changed in
 * place with update_display_data; at the end the report takes its place.
 * Elsewhere (terminal IPython, plain Python) it is one line on stderr,
 * redrawn in place after a carriage return and erased before the report.
 * A node body that prints while the line is drawn in a terminal writes after
 * it, as with any progress bar.
 */
#include "run_state.h"

#include <unistd.h>

#include "cellar/units.h"

#define QUIET_NS (500ull * 1000000ull)  /* nothing before this much of a run */
#define REDRAW_NS (200ull * 1000000ull) /* at most one redraw per this */

/* Whether the shell publishes displays to a kernel's frontend: its class is,
 * or derives from, ipykernel's ZMQInteractiveShell. */
static bool in_notebook(cellar_state *st)
{
    if (!st->shell)
        return false;
    PyObject *mro = Py_TYPE(st->shell)->tp_mro;
    for (Py_ssize_t i = 0; mro && i < PyTuple_GET_SIZE(mro); i++) {
        const char *name = ((PyTypeObject *)PyTuple_GET_ITEM(mro, i))->tp_name;
        const char *dot = strrchr(name, '.');
        if (strcmp(dot ? dot + 1 : name, "ZMQInteractiveShell") == 0)
            return true;
    }
    return false;
}

static void flush_stderr(void)
{
    PyObject *err = PySys_GetObject("stderr"); /* borrowed */
    PyObject *r = err && err != Py_None ? PyObject_CallMethod(err, "flush", NULL) : NULL;
    Py_XDECREF(r);
}

/* Writes `line` over the one drawn before, padding out what is left of it. */
static void draw_on_stderr(run_progress *p, const char *line)
{
    size_t len = strlen(line);
    int pad = p->drawn > len ? (int)(p->drawn - len) : 0;
    PySys_WriteStderr("\r%s%*s", line, pad, "");
    if (pad)
        PySys_WriteStderr("\r%s", line);
    p->drawn = len;
    flush_stderr();
}

static int draw_in_notebook(run_ctx *ctx, const char *line)
{
    run_progress *p = &ctx->progress;
    bool update = p->display_id != NULL;
    if (!p->display_id) {
        p->display_id = PyUnicode_FromFormat("cellar-progress-%ld-%llu", (long)getpid(),
                                             (unsigned long long)p->started_ns);
        if (!p->display_id)
            return -1;
    }
    PyObject *data = Py_BuildValue("{ss}", "text/plain", line);
    int rc = data ? cellar_display_publish(ctx->st, data, p->display_id, update) : -1;
    Py_XDECREF(data);
    return rc;
}

int run_progress_tick(run_ctx *ctx, int id, bool loading, uint64_t now)
{
    run_progress *p = &ctx->progress;
    if (!p->started_ns || now - p->started_ns < QUIET_NS ||
        (p->shown_ns && now - p->shown_ns < REDRAW_NS))
        return 0;
    p->shown_ns = now;
    char took[CELLAR_UNITS_BUFSIZE], line[512];
    const char *name = PyUnicode_AsUTF8(ctx->slots[id].fn->name);
    if (!name) {
        PyErr_Clear();
        name = "?";
    }
    snprintf(line, sizeof line, "cellar: %zu of %zu nodes done, %s %s (%s)", p->done,
             ctx->norder, loading ? "loading" : "running", name,
             cellar_units_duration(now - p->started_ns, took));
    if (!p->where)
        p->where = in_notebook(ctx->st) ? 1 : 2;
    if (p->where == 1) {
        if (draw_in_notebook(ctx, line) < 0)
            PyErr_Clear(); /* a line that cannot be shown is no reason to stop */
    } else {
        draw_on_stderr(p, line);
        PyErr_Clear();
    }
    return 1;
}

int run_progress_end(run_ctx *ctx, PyObject *report)
{
    run_progress *p = &ctx->progress;
    int rc = 0;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb); /* a run that stopped keeps its error */
    if (p->display_id) {
        if (report) {
            rc = cellar_report_publish(ctx->st, report, p->display_id, true) < 0 ? -1 : 1;
        } else {
            PyObject *data = Py_BuildValue(
                "{ss}", "text/plain", "cellar: the run stopped before its report");
            if (!data || cellar_display_publish(ctx->st, data, p->display_id, true) < 0)
                PyErr_Clear();
            Py_XDECREF(data);
        }
        Py_CLEAR(p->display_id);
    }
    run_progress_interrupt(ctx);
    p->started_ns = 0;
    if (type || value || tb) {
        if (rc < 0) { /* the run's own error wins */
            PyErr_Clear();
            rc = 0;
        }
        PyErr_Restore(type, value, tb);
    }
    return rc;
}

void run_progress_interrupt(run_ctx *ctx)
{
    run_progress *p = &ctx->progress;
    if (!p->drawn)
        return;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PySys_WriteStderr("\r%*s\r", (int)p->drawn, "");
    flush_stderr();
    PyErr_Clear();
    PyErr_Restore(type, value, tb);
    p->drawn = 0;
    p->shown_ns = 0; /* drawn again at the next node */
}
