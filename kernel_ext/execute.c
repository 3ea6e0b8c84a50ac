/*
 * execute.c - runs what planning could not serve: a node's body, or the load
 * of its stored result, each when something needs the value.
 *
 * run_visit keys a node and takes, in order, the session's value (checked
 * against its data version), a store hit (its value is read only when a
 * target or a node that must compute needs it), or a computation now.  A
 * body gets its dependencies' values; a value that went to a body may have
 * been changed in place, so before it goes out again it is re-fingerprinted
 * and, when it changed, loaded or computed again.  A failure fails only the
 * node (its traceback shown by IPython's formatter) and skips its dependants;
 * a stored result that does not load is recomputed, with a warning.  A
 * node's behaviour (behavior.c) can send it straight to a computation
 * (recompute, disable), or leave it until something needs its value
 * (ignore); a disabled or ignored value is never pickled, stored or kept.
 */
#include "run_state.h"

static int load(run_ctx *ctx, int id);

static PyObject *exception_text(PyObject *exc)
{
    PyObject *text = PyObject_Str(exc);
    PyObject *r =
        text ? PyUnicode_FromFormat("%s: %U", Py_TYPE(exc)->tp_name, text) : NULL;
    Py_XDECREF(text);
    if (!r)
        PyErr_Clear();
    return r ? r : PyUnicode_FromString(Py_TYPE(exc)->tp_name);
}

/* Calls the node with its parameters' values. */
static PyObject *call_node(slot *s, PyObject **values)
{
    cellar_fn *fn = s->fn;
    Py_ssize_t n = fn->nparams, npos = 0, nkw = 0;
    PyObject **args = PyMem_Calloc((size_t)n + 1, sizeof(PyObject *));
    PyObject *kwnames = PyTuple_New(n);
    if (!args || !kwnames) {
        PyMem_Free(args);
        Py_XDECREF(kwnames);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++)
        if (fn->kinds[i] == CELLAR_PARAM_POSITIONAL_ONLY && values[i])
            args[npos++] = values[i];
    for (Py_ssize_t i = 0; i < n; i++)
        if ((fn->kinds[i] == CELLAR_PARAM_POSITIONAL_OR_KEYWORD ||
             fn->kinds[i] == CELLAR_PARAM_KEYWORD_ONLY) &&
            values[i]) {
            args[npos + nkw] = values[i];
            PyTuple_SET_ITEM(kwnames, nkw, Py_NewRef(fn->param_names[i]));
            nkw++;
        }
    PyObject *kw = nkw ? PyTuple_GetSlice(kwnames, 0, nkw) : NULL;
    PyObject *result =
        (nkw && !kw) ? NULL : PyObject_Vectorcall(fn->func, args, (size_t)npos, kw);
    Py_XDECREF(kw);
    Py_DECREF(kwnames);
    PyMem_Free(args);
    return result;
}

static int keep_result(run_ctx *ctx, slot *s, PyObject *value)
{
    PyObject *why = NULL;
    Py_XSETREF(s->value, value);
    cellar_pickled_release(&s->pickled);
    s->stored = false;
    s->have_size = false;
    if (s->behavior == CELLAR_BEHAVIOR_DISABLE || s->behavior == CELLAR_BEHAVIOR_IGNORE) {
        /* Not pickled (an ignored node's value seldom can be), not stored,
         * not kept for the session; an iterator is made again per consumer. */
        s->iterator = cellar_value_is_iterator(value);
        s->dv = s->behavior == CELLAR_BEHAVIOR_IGNORE ? run_ignored_version()
                                                      : cellar_unique_version(ctx->st);
        return 0;
    }
    if (cellar_value_is_iterator(value)) {
        /* Consuming it changes it, and its pickle (when there is one) says
         * nothing about what is left in it: each consumer gets a fresh one. */
        if (!s->iterator)
            cellar_warn("node '%s' returned an iterator (%s): a consumer exhausts it, so "
                        "it is neither stored nor reused, and the node reruns for each "
                        "consumer",
                        PyUnicode_AsUTF8(s->fn->name), Py_TYPE(value)->tp_name);
        s->iterator = true;
        s->dv = cellar_unique_version(ctx->st);
        return 0;
    }
    int rc = cellar_pickle_to_store(ctx->st, value, ctx->versions, &s->pickled, &why);
    if (rc < 0)
        return -1;
    if (rc == 1) {
        cellar_warn(
            "the result of node '%s' cannot be pickled (%s); it is kept in memory "
            "for this session only and is not stored",
            PyUnicode_AsUTF8(s->fn->name), why ? PyUnicode_AsUTF8(why) : "?");
        Py_XDECREF(why);
        s->dv = s->pickled.dv; /* stable when only unnameable code stopped pickle */
        s->have_size = false;
        s->stored = false;
    } else {
        s->dv = s->pickled.dv;
        s->size = s->pickled.size;
        s->have_size = true;
        /* A data version that holds a file's content now says nothing of
         * the file in a later kernel: such a value is computed again there. */
        s->stored = !s->pickled.has_paths;
    }
    return run_memo_store(ctx, s);
}

static int compute(run_ctx *ctx, int id)
{
    slot *s = &ctx->slots[id];
    size_t ndeps;
    const int *deps = cellar_graph_deps(ctx->g, id, &ndeps);
    /* Fetching one dependency again can run bodies that get another one: the
     * pass repeats until none went to a body since it was checked. */
    for (bool again = true; again;) {
        again = false;
        for (size_t i = 0; i < ndeps; i++) {
            int rc = run_ensure_value(ctx, deps[i]);
            if (rc < 0)
                return -1;
            if (rc > 0) {
                run_set_error(s, ST_SKIPPED,
                          PyUnicode_FromFormat("skipped because '%U' failed",
                                               ctx->slots[deps[i]].fn->name));
                return 0;
            }
        }
        for (size_t i = 0; i < ndeps; i++)
            again = again || ctx->slots[deps[i]].handed;
    }
    Py_ssize_t n = s->fn->nparams;
    PyObject **values = PyMem_Calloc(n ? (size_t)n : 1, sizeof(PyObject *));
    if (!values) {
        PyErr_NoMemory();
        return -1;
    }
    /* Dependencies may have been recomputed: the key is taken again. */
    int rc = run_node_key(ctx, id, values);
    for (size_t i = 0; rc == 0 && i < ndeps; i++) {
        ctx->slots[deps[i]].handed = true;
        ctx->slots[deps[i]].exposed = true;
    }
    if (rc == 0) {
        uint64_t t0 = run_now_ns(CLOCK_MONOTONIC);
        if (run_progress_tick(ctx, id, false, t0))
            t0 = run_now_ns(CLOCK_MONOTONIC);
        if (ctx->gc_was_enabled)
            PyGC_Enable();
        PyObject *result = call_node(s, values);
        if (ctx->gc_was_enabled)
            PyGC_Disable();
        s->seconds = (double)(run_now_ns(CLOCK_MONOTONIC) - t0) / 1e9;
        if (result && (PyCoro_CheckExact(result) || PyAsyncGen_CheckExact(result))) {
            /* The kernel's event loop is busy running this cell, so a
             * coroutine cannot be awaited here; say so rather than store it. */
            if (PyCoro_CheckExact(result)) { /* never started: close it quietly */
                PyObject *closed = PyObject_CallMethod(result, "close", NULL);
                Py_XDECREF(closed);
                PyErr_Clear();
            }
            Py_DECREF(result);
            run_set_error(s, ST_FAILED,
                      PyUnicode_FromFormat("node '%U' is an async function: cellar runs "
                                           "plain functions (call asyncio.run from a "
                                           "regular function instead)",
                                           s->fn->name));
        } else if (result) {
            s->status = ST_COMPUTED;
            rc = keep_result(ctx, s, result);
        } else if (PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
            PyErr_Clear();
            ctx->interrupted = true;
            run_set_error(s, ST_FAILED, PyUnicode_FromString("interrupted"));
        } else {
            PyObject *exc = cellar_fetch_exception();
            run_progress_interrupt(ctx);
            cellar_show_exception(ctx->st, exc);
            run_set_error(s, ST_FAILED, exception_text(exc));
            Py_XSETREF(ctx->failure, exc); /* the RunError's node_exception */
        }
    }
    for (Py_ssize_t i = 0; i < n; i++)
        Py_XDECREF(values[i]);
    PyMem_Free(values);
    return rc < 0 ? -1 : 0;
}

static int load(run_ctx *ctx, int id)
{
    slot *s = &ctx->slots[id];
    cellar_status status = CELLAR_ENOTFOUND;
    cellar_error err;
    err.message[0] = '\0';
    uint64_t t0 = run_now_ns(CLOCK_MONOTONIC);
    if (ctx->reader && run_progress_tick(ctx, id, true, t0))
        t0 = run_now_ns(CLOCK_MONOTONIC);
    PyObject *value = ctx->reader
                          ? cellar_load_value(ctx->st, ctx->reader, &s->dv, &status, &err)
                          : NULL;
    if (value) {
        s->seconds = (double)(run_now_ns(CLOCK_MONOTONIC) - t0) / 1e9;
        Py_XSETREF(s->value, value);
        return run_memo_store(ctx, s);
    }
    char why[600];
    if (PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_MemoryError) ||
            PyErr_ExceptionMatches(PyExc_KeyboardInterrupt))
            return -1;
        PyObject *exc = cellar_fetch_exception();
        PyObject *text = exception_text(exc);
        snprintf(why, sizeof why, "it could not be unpickled (%s)",
                 text ? PyUnicode_AsUTF8(text) : "?");
        Py_XDECREF(text);
        Py_DECREF(exc);
    } else {
        snprintf(why, sizeof why, "%s",
                 status == CELLAR_ECORRUPT ? "it is corrupt (checksum mismatch)"
                                           : "it is missing from the store");
    }
    if (PyErr_Occurred())
        PyErr_Clear();
    cellar_warn("the stored result of node '%s' was not used: %s%s%s; recomputing",
                PyUnicode_AsUTF8(s->fn->name), why, err.message[0] ? ": " : "",
                err.message);
    s->replace = true;
    return compute(ctx, id);
}

/* The value of `s` went to a body that may have changed it in place: it is
 * fetched again, from the store when the key is there, else by running the
 * node. */
static int reacquire(run_ctx *ctx, int id)
{
    slot *s = &ctx->slots[id];
    Py_CLEAR(s->value);
    cellar_pickled_release(&s->pickled);
    s->stored = false;
    s->handed = false;
    PyObject *entry = PyDict_GetItemWithError(ctx->st->memo, s->fn->name);
    if (entry &&
        memcmp(PyBytes_AS_STRING(PyTuple_GET_ITEM(entry, 0)), s->key.bytes, 16) == 0 &&
        PyDict_DelItem(ctx->st->memo, s->fn->name) < 0)
        return -1;
    if (PyErr_Occurred())
        return -1;
    cellar_key_record rec;
    cellar_error err;
    if (!s->iterator && ctx->reader &&
        cellar_reader_get_key(ctx->reader, &s->key, &rec, &err) == CELLAR_OK &&
        cellar_reader_has_result(ctx->reader, &rec.data_version)) {
        s->status = ST_LOADED;
        s->dv = rec.data_version;
        s->last_used = rec.last_used_ns;
        return load(ctx, id);
    }
    s->status = ST_PENDING;
    return compute(ctx, id);
}

/* Before a value goes out again (to a body or to the caller) after a body
 * had it: an iterator is never handed out twice, another value only while it
 * still has its data version.  0 fine, 1 fetched again, -1 on error. */
static int check_handed(run_ctx *ctx, int id)
{
    slot *s = &ctx->slots[id];
    if (!s->handed)
        return 0;
    s->handed = false;
    int same = 0;
    if (!s->iterator) {
        bool checkable = s->status == ST_COMPUTED ? s->stored : s->have_size;
        same = checkable
                   ? cellar_value_unchanged(ctx->st, s->value, &s->dv, ctx->versions)
                   : 1;
        if (same < 0)
            return -1;
        if (same)
            return 0;
        run_warn_changed(s);
    }
    return reacquire(ctx, id) < 0 ? -1 : 1;
}

/* 0 when the node's value is available, 1 when it failed, -1 on error. */
int run_ensure_value(run_ctx *ctx, int id)
{
    slot *s = &ctx->slots[id];
    if (s->value && check_handed(ctx, id) < 0)
        return -1;
    if (s->value)
        return 0;
    if (s->status == ST_LOADED) {
        if (load(ctx, id) < 0)
            return -1;
    } else if (s->status == ST_PENDING) {
        if (compute(ctx, id) < 0)
            return -1;
    }
    return s->value ? 0 : 1;
}

/* Plans one node: in memory, a store hit, or computed now. */
int run_visit(run_ctx *ctx, int id)
{
    slot *s = &ctx->slots[id];
    int rc = run_node_key(ctx, id, NULL);
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    switch (s->behavior) {
    case CELLAR_BEHAVIOR_RECOMPUTE: /* computed even when cached */
    case CELLAR_BEHAVIOR_DISABLE:   /* and neither stored nor reused */
        return compute(ctx, id);
    case CELLAR_BEHAVIOR_IGNORE:
        /* Its dependants' keys hold the marker; it runs when one computes
         * (or as a target), and nothing of it is stored or reused. */
        s->dv = run_ignored_version();
        return 0;
    default:
        break;
    }
    rc = run_memo_lookup(ctx, s);
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    if (ctx->reader) {
        cellar_key_record rec;
        cellar_error err;
        cellar_status found = cellar_reader_get_key(ctx->reader, &s->key, &rec, &err);
        if (found == CELLAR_OK &&
            cellar_reader_has_result(ctx->reader, &rec.data_version)) {
            s->status = ST_LOADED;
            s->dv = rec.data_version;
            s->size = rec.size;
            s->have_size = true;
            s->last_used = rec.last_used_ns;
            return 0;
        }
    }
    return compute(ctx, id);
}
