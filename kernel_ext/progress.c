/*
 * progress.c - the live line of a run that lasts: how many nodes are done of
 * how many, the node running (or loading) now, and the time so far.
 *
 * Nothing is drawn in a run's first half second, so a fast or cached run
 * shows only its report.  The line is drawn when a node starts computing or
 * loading (with the time execute.c reads anyway to time the node) and, while
 * a body runs, by a watcher thread started at the run's first computation
 * (never on a cached run): it sleeps on a condition variable and, every
 * 0.2 s past the first half second, takes the GIL, enters a copy of the
 * run's context variables (ipykernel keeps the cell's parent header there)
 * and redraws.  A body that holds the GIL delays a redraw, never the body.
 * Draws are at most every 0.2 s, and one at a time (the `busy` flag, read and
 * set under the GIL).  In a notebook (ipykernel's ZMQInteractiveShell) the
 * line is a display with a display_id, sent as display_data and then changed
 * in place with update_display_data; at the end the thread is joined and the
 * report takes the line's place.  Elsewhere (terminal IPython, plain Python)
 * it is one line on stderr, redrawn in place after a carriage return, erased
 * before a node's traceback (and not redrawn until the next node) and before
 * the report.  A node body that prints while the line is drawn in a
 * terminal writes after it, as with any progress bar.  A body that calls
 * IPython's clear_output() (with wait=True too) takes the display with the
 * cell's other outputs: a hook on ipykernel's display publisher, registered
 * in the run's thread at its first computation, notes each clear, and the
 * next draw, or the report, is then a fresh display (a new display_id)
 * instead of an update of one that no longer exists.
 */
#include "run_state.h"

#include <errno.h>
#include <signal.h>
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

/* ---- clear_output ---- */

/* The hook: ipykernel's ZMQDisplayPublisher hands it every message it is
 * about to send from this thread, and sends what it returns.  `cleared` is
 * a list, not a pointer into the run, so a hook called late harms nothing. */
static PyObject *clear_hook(PyObject *cleared, PyObject *msg)
{
    PyObject *kind = PyDict_Check(msg) ? PyDict_GetItemString(msg, "msg_type") : NULL;
    if (kind && PyUnicode_Check(kind) &&
        PyUnicode_CompareWithASCIIString(kind, "clear_output") == 0 &&
        PyList_Append(cleared, Py_True) < 0)
        PyErr_Clear();
    return Py_NewRef(msg);
}

static PyMethodDef clear_hook_def = {
    "_cellar_clear_output_hook", clear_hook, METH_O,
    "Notes a clear_output, which takes cellar's progress display with it.",
};

/* Hooks are per thread: this runs in the run's thread, where bodies run.
 * Without ipykernel's publisher there is no display to lose. */
static void hook_clears(run_ctx *ctx)
{
    run_progress *p = &ctx->progress;
    if (!in_notebook(ctx->st))
        return;
    PyObject *pub = PyObject_GetAttrString(ctx->st->shell, "display_pub");
    p->cleared = pub ? PyList_New(0) : NULL;
    p->hook = p->cleared ? PyCFunction_New(&clear_hook_def, p->cleared) : NULL;
    PyObject *r =
        p->hook ? PyObject_CallMethod(pub, "register_hook", "O", p->hook) : NULL;
    if (!r) {
        PyErr_Clear();
        Py_CLEAR(p->hook);
        Py_CLEAR(p->cleared);
    }
    Py_XDECREF(r);
    Py_XDECREF(pub);
}

static void unhook_clears(run_ctx *ctx)
{
    run_progress *p = &ctx->progress;
    if (!p->hook)
        return;
    PyObject *pub = PyObject_GetAttrString(ctx->st->shell, "display_pub");
    PyObject *r = pub ? PyObject_CallMethod(pub, "unregister_hook", "O", p->hook) : NULL;
    Py_XDECREF(r);
    Py_XDECREF(pub);
    PyErr_Clear();
    Py_CLEAR(p->hook);
}

/* After a clear_output, the line's display is gone from the cell: forget
 * it, so that the next draw, or the report, makes a new one. */
static void forget_cleared(run_progress *p)
{
    if (!p->cleared || PyList_GET_SIZE(p->cleared) == 0)
        return;
    if (PyList_SetSlice(p->cleared, 0, PyList_GET_SIZE(p->cleared), NULL) < 0)
        PyErr_Clear();
    Py_CLEAR(p->display_id);
}

static int draw_in_notebook(run_ctx *ctx, const char *line)
{
    run_progress *p = &ctx->progress;
    forget_cleared(p);
    bool update = p->display_id != NULL;
    if (!p->display_id) {
        /* A new id for each display: a frontend may still map an old one to
         * the place it had before the clear. */
        p->display_id =
            PyUnicode_FromFormat("cellar-progress-%ld-%llu-%u", (long)getpid(),
                                 (unsigned long long)p->started_ns, p->displays++);
        if (!p->display_id)
            return -1;
    }
    PyObject *data = Py_BuildValue("{ss}", "text/plain", line);
    int rc = data ? cellar_display_publish(ctx->st, data, p->display_id, update) : -1;
    Py_XDECREF(data);
    return rc;
}

/* Draws the line now, with the GIL held; the caller has checked `busy`. */
static void draw(run_ctx *ctx, uint64_t now)
{
    run_progress *p = &ctx->progress;
    p->busy = true;
    p->shown_ns = now;
    char took[CELLAR_UNITS_BUFSIZE], line[512];
    const char *name =
        p->current >= 0 ? PyUnicode_AsUTF8(ctx->slots[p->current].fn->name) : "?";
    if (!name) {
        PyErr_Clear();
        name = "?";
    }
    snprintf(line, sizeof line, "cellar: %zu of %zu nodes done, %s %s (%s)", p->done,
             ctx->norder, p->loading ? "loading" : "running", name,
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
    p->busy = false;
}

static bool due(const run_progress *p, uint64_t now)
{
    return p->started_ns && !p->busy && !p->paused && now - p->started_ns >= QUIET_NS &&
           (!p->shown_ns || now - p->shown_ns >= REDRAW_NS);
}

/* ---- the watcher thread ---- */

static void *watch(void *arg)
{
    run_ctx *ctx = arg;
    run_progress *p = &ctx->progress;
    pthread_mutex_lock(&p->mu);
    while (!p->stop) {
        uint64_t now = run_now_ns(CLOCK_MONOTONIC);
        uint64_t at = now - p->started_ns < QUIET_NS ? p->started_ns + QUIET_NS
                                                     : now + REDRAW_NS;
        struct timespec ts = {(time_t)(at / 1000000000ull), (long)(at % 1000000000ull)};
        int rc = 0;
        while (!p->stop && rc != ETIMEDOUT)
            rc = pthread_cond_timedwait(&p->cv, &p->mu, &ts);
        if (p->stop)
            break;
        pthread_mutex_unlock(&p->mu);
        PyGILState_STATE gil = PyGILState_Ensure();
        pthread_mutex_lock(&p->mu);
        bool stopped = p->stop;
        pthread_mutex_unlock(&p->mu);
        now = run_now_ns(CLOCK_MONOTONIC);
        if (!stopped && due(p, now) && PyContext_Enter(p->context) == 0) {
            draw(ctx, now);
            if (PyContext_Exit(p->context) < 0)
                PyErr_Clear();
        }
        PyErr_Clear();
        PyGILState_Release(gil);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Starts the watcher; without one (no memory, no thread) the line is drawn
 * between nodes only. */
static void start_watch(run_ctx *ctx)
{
    run_progress *p = &ctx->progress;
    p->watching = true; /* tried once per run */
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0)
        return;
    bool ok = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) == 0 &&
              pthread_cond_init(&p->cv, &attr) == 0;
    pthread_condattr_destroy(&attr);
    if (!ok)
        return;
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        pthread_cond_destroy(&p->cv);
        return;
    }
    p->context = PyContext_CopyCurrent();
    /* The watcher takes no signals (it inherits this mask): SIGINT stays the
     * main thread's, as Python expects. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int started = p->context ? pthread_create(&p->thread, NULL, watch, ctx) : -1;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (started != 0) {
        PyErr_Clear();
        Py_CLEAR(p->context);
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv);
        return;
    }
    p->thread_running = true;
}

static void stop_watch(run_ctx *ctx)
{
    run_progress *p = &ctx->progress;
    if (!p->thread_running)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    Py_BEGIN_ALLOW_THREADS /* the watcher may be waiting for the GIL */
    pthread_join(p->thread, NULL);
    Py_END_ALLOW_THREADS
    p->thread_running = false;
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    Py_CLEAR(p->context);
}

/* ---- the entry points ---- */

int run_progress_tick(run_ctx *ctx, int id, bool loading, uint64_t now)
{
    run_progress *p = &ctx->progress;
    if (!p->started_ns)
        return 0;
    p->current = id;
    p->loading = loading;
    p->paused = false;
    if (!loading && !p->watching) {
        hook_clears(ctx);
        start_watch(ctx);
    }
    if (!due(p, now))
        return 0;
    draw(ctx, now);
    return 1;
}

int run_progress_end(run_ctx *ctx, PyObject *report)
{
    run_progress *p = &ctx->progress;
    int rc = 0;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb); /* a run that stopped keeps its error */
    stop_watch(ctx); /* nothing is drawn after this */
    unhook_clears(ctx);
    forget_cleared(p); /* then the report is shown as a new display */
    Py_CLEAR(p->cleared);
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
    p->busy = true; /* the watcher stays off stderr meanwhile */
    PySys_WriteStderr("\r%*s\r", (int)p->drawn, "");
    flush_stderr();
    PyErr_Clear();
    PyErr_Restore(type, value, tb);
    p->busy = false;
    p->drawn = 0;
    p->paused = true; /* drawn again when the next node starts */
}
