/*
 * run.c - the entry points of a run and of status queries.
 *
 * cellar_run takes the requested targets' ancestors in topological order and
 * visits each node (execute.c): in memory, a store hit, or computed.  A
 * recomputed node whose data version did not change leaves its downstream
 * keys, and so their cached results, valid (early cutoff).  The targets'
 * values are then fetched (loading lazily what only a target needs),
 * everything the run learned is saved in one batch (save.c), and the report
 * is shown (report.c), in place of the progress line of a run that lasted
 * (progress.c).  The run's behaviour options (behavior.c) override the
 * nodes' own for that run.  A target that could not be produced raises RunError
 * naming what failed or was skipped.  cellar_status_report and
 * cellar_node_statuses answer status queries from the same planning
 * (plan.c), running nothing.
 */
#include "run_state.h"

static int target_ids(run_ctx *ctx, PyObject *targets, int *ids)
{
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(targets); i++) {
        PyObject *t = PyList_GET_ITEM(targets, i);
        PyObject *norm = cellar_registry_normalize(t); /* `µ` typed in the magic */
        const char *name = norm ? PyUnicode_AsUTF8(norm) : NULL;
        ids[i] = name ? cellar_graph_find(ctx->g, name) : -1;
        Py_XDECREF(norm);
        if (!name)
            return -1;
        if (ids[i] < 0) {
            PyErr_Format(ctx->st->RunError,
                         "unknown node '%U': define a top-level function named '%U' in a "
                         "cell (names starting with '_' are not nodes)",
                         t, t);
            return -1;
        }
    }
    return 0;
}

/* Makes every target's value available, as computed, for the caller.
 * Fetching a target again (a body changed it) reruns its node, and that
 * body can change an ancestor's value in turn; so the targets are taken
 * in reverse topological order, where whatever a fetch hands to a body is
 * an ancestor, still to be checked. */
static int fetch_targets(run_ctx *ctx, const int *ids, Py_ssize_t ntargets)
{
    bool *is_target = PyMem_Calloc(ctx->n ? ctx->n : 1, sizeof(bool));
    if (!is_target) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < ntargets; i++)
        is_target[ids[i]] = true;
    int rc = 0;
    for (size_t i = ctx->norder; rc == 0 && !ctx->interrupted && i-- > 0;)
        if (is_target[ctx->order[i]])
            rc = run_ensure_value(ctx, ctx->order[i]) < 0 ? -1 : 0;
    PyMem_Free(is_target);
    return rc;
}

static PyObject *results_of(run_ctx *ctx, PyObject *targets, const int *ids)
{
    Py_ssize_t n = PyList_GET_SIZE(targets);
    if (n == 1)
        return Py_NewRef(ctx->slots[ids[0]].value);
    PyObject *out = PyDict_New();
    for (Py_ssize_t i = 0; out && i < n; i++)
        if (PyDict_SetItem(out, PyList_GET_ITEM(targets, i), ctx->slots[ids[i]].value) <
            0)
            Py_CLEAR(out);
    return out;
}

static PyObject *failure_error(run_ctx *ctx)
{
    PyObject *parts = PyList_New(0);
    for (size_t i = 0; parts && i < ctx->norder; i++) {
        slot *s = &ctx->slots[ctx->order[i]];
        if ((s->status != ST_FAILED && s->status != ST_SKIPPED) || s->idle)
            continue;
        PyObject *line =
            PyUnicode_FromFormat("%U %s: %U", s->fn->name, run_status_names[s->status],
                                 s->error ? s->error : Py_None);
        if (!line || PyList_Append(parts, line) < 0)
            Py_CLEAR(parts);
        Py_XDECREF(line);
    }
    if (!parts)
        return NULL;
    PyObject *sep = PyUnicode_FromString("; ");
    PyObject *text = sep ? PyUnicode_Join(sep, parts) : NULL;
    Py_XDECREF(sep);
    Py_DECREF(parts);
    if (text)
        PyErr_Format(ctx->st->RunError, "not every target could be produced: %U", text);
    Py_XDECREF(text);
    if (text && ctx->failure) {
        /* %debug opens the node's frames: RunError._render_traceback_ (report.c)
         * hands this exception to sys.last_*. */
        PyObject *type, *err, *tb;
        PyErr_Fetch(&type, &err, &tb);
        PyErr_NormalizeException(&type, &err, &tb);
        if (err && PyObject_SetAttrString(err, "node_exception", ctx->failure) < 0)
            PyErr_Clear(); /* the RunError still says what failed */
        PyErr_Restore(type, err, tb);
    }
    return NULL;
}

PyObject *cellar_run(cellar_state *st, PyObject *targets, PyObject *inputs,
                     PyObject *recompute)
{
    PyObject *behaviors = recompute ? PyDict_New() : NULL;
    if (recompute && (!behaviors || cellar_behavior_add(st, behaviors, recompute,
                                                        CELLAR_BEHAVIOR_RECOMPUTE) < 0)) {
        Py_XDECREF(behaviors);
        return NULL;
    }
    PyObject *r = cellar_run_behaving(st, targets, inputs, behaviors);
    Py_XDECREF(behaviors);
    return r;
}

/* Ignored nodes that nothing needed are shown as skipped, not as failures. */
static void mark_idle(run_ctx *ctx)
{
    for (size_t i = 0; i < ctx->norder; i++) {
        slot *s = &ctx->slots[ctx->order[i]];
        if (s->behavior == CELLAR_BEHAVIOR_IGNORE && s->status == ST_PENDING) {
            run_set_error(s, ST_SKIPPED,
                          PyUnicode_FromString("not needed: an ignored node runs only "
                                               "when a node that uses it computes"));
            s->idle = true;
        }
    }
}

PyObject *cellar_run_behaving(cellar_state *st, PyObject *targets, PyObject *inputs,
                              PyObject *behaviors)
{
    if (st->running) {
        PyErr_SetString(st->RunError, "a cellar run is already in progress (cellar.run "
                                      "cannot be called from inside a node, or from "
                                      "another subshell during a run)");
        return NULL;
    }
    uint64_t started = run_now_ns(CLOCK_REALTIME), t0 = run_now_ns(CLOCK_MONOTONIC);
    Py_ssize_t ntargets = PyList_GET_SIZE(targets);
    int *ids = PyMem_Calloc((size_t)ntargets, sizeof(int));
    if (!ids)
        return PyErr_NoMemory();
    run_ctx ctx;
    PyObject *result = NULL;
    st->running = true;
    /* Input names typed into the magic, as Python binds parameter names. */
    PyObject *named = cellar_registry_normalize_keys(inputs);
    if (!named) {
        st->running = false;
        PyMem_Free(ids);
        return NULL;
    }
    inputs = named;
    if (run_start(&ctx, st, inputs) < 0 || target_ids(&ctx, targets, ids) < 0 ||
        run_apply_behaviors(&ctx, behaviors) < 0 ||
        run_plan_order(&ctx, ids, (size_t)ntargets) < 0 || !(ctx.inputs_read = PyDict_New()))
        goto done;
    ctx.progress.started_ns = t0;
    ctx.progress.current = -1;
    int rc = 0;
    for (size_t i = 0; rc == 0 && !ctx.interrupted && i < ctx.norder; i++) {
        ctx.progress.done = i;
        if (ctx.slots[ctx.order[i]].status == ST_PENDING)
            rc = run_visit(&ctx, ctx.order[i]);
        if (rc == 0 && PyErr_CheckSignals() < 0) {
            PyErr_Clear();
            ctx.interrupted = true;
        }
    }
    ctx.progress.done = ctx.norder;
    if (rc == 0 && !ctx.interrupted)
        rc = fetch_targets(&ctx, ids, ntargets);
    if (rc == 0 && !ctx.interrupted && ctx.behaving)
        mark_idle(&ctx);
    for (size_t i = 0; ctx.interrupted && i < ctx.norder; i++)
        if (ctx.slots[ctx.order[i]].status == ST_PENDING)
            run_set_error(&ctx.slots[ctx.order[i]], ST_SKIPPED,
                      PyUnicode_FromString("skipped: the run was interrupted"));
    if (rc < 0)
        goto done;
    run_save(&ctx, targets, started);
    PyObject *report = run_report(&ctx, (double)(run_now_ns(CLOCK_MONOTONIC) - t0) / 1e9);
    /* The report takes the place of the progress line, if one was drawn. */
    int shown = report ? run_progress_end(&ctx, report) : -1;
    if (shown < 0 || (shown == 0 && cellar_report_show(st, report) < 0)) {
        Py_XDECREF(report);
        goto done;
    }
    Py_DECREF(report);
    if (ctx.interrupted) {
        PyErr_SetNone(PyExc_KeyboardInterrupt);
        goto done;
    }
    bool complete = true;
    for (Py_ssize_t i = 0; i < ntargets; i++)
        complete = complete && ctx.slots[ids[i]].value;
    result = complete ? results_of(&ctx, targets, ids) : failure_error(&ctx);
done:
    run_progress_end(&ctx, NULL); /* a run stopped by an error: the line goes */
    st->running = false;
    Py_CLEAR(ctx.failure);
    run_release(&ctx);
    Py_DECREF(named);
    PyMem_Free(ids);
    return result;
}

/* ---- status ---- */

PyObject *cellar_status_report(cellar_state *st, PyObject *inputs)
{
    run_ctx ctx;
    PyObject *report = NULL;
    PyObject *named = cellar_registry_normalize_keys(inputs); /* as in cellar_run */
    if (!named)
        return NULL;
    if (run_plan_statuses(&ctx, st, named, NULL, NULL) == 0)
        report = run_status_report(&ctx);
    run_release(&ctx);
    Py_DECREF(named);
    return report;
}

/* The planning of cellar_status_report, as a dict: name -> (state, key,
 * why), state being "up to date", "needs run" or "needs input", key the
 * node's current cache key (16 bytes) or None when it cannot be known, why
 * the reason (a str naming the missing input, ...) or None. */
PyObject *cellar_node_statuses(cellar_state *st, PyObject *inputs)
{
    return cellar_node_statuses_behaving(st, inputs, NULL, NULL);
}

PyObject *cellar_node_statuses_behaving(cellar_state *st, PyObject *inputs,
                                        PyObject *behaviors, PyObject *only)
{
    run_ctx ctx;
    PyObject *out = NULL;
    if (run_plan_statuses(&ctx, st, inputs, behaviors, only) == 0)
        out = PyDict_New();
    for (size_t i = 0; out && i < ctx.norder; i++) {
        slot *s = &ctx.slots[ctx.order[i]];
        const char *state = s->status == ST_LOADED   ? "up to date"
                            : s->status == ST_FAILED ? "needs input"
                                                     : "needs run";
        PyObject *item = Py_BuildValue(
            "(sNO)", state, s->keyed ? run_hash_bytes(&s->key) : Py_NewRef(Py_None),
            s->status == ST_FAILED && s->error ? s->error : Py_None);
        if (!item || PyDict_SetItem(out, s->fn->name, item) < 0)
            Py_CLEAR(out);
        Py_XDECREF(item);
    }
    run_release(&ctx);
    return out;
}
