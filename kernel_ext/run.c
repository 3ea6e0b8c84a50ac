/*
 * run.c - plans and executes a run, and answers status queries.
 *
 * A run takes the requested targets' ancestors in topological order and, for
 * each node, computes its cache key from its code version and the data
 * versions of its parameters (upstream nodes' recorded versions, inputs'
 * fingerprints) without loading any value.  A key found in this session's
 * memory is "in memory"; one found in the store is "loaded", and its value is
 * read only when a target or a node that must compute needs it; otherwise the
 * node computes.  A recomputed node whose data version did not change leaves
 * its downstream keys, and so their cached results, valid (early cutoff).  A
 * failure fails only the node and skips its dependants.  Everything the run
 * stores goes into one batch, committed in one write transaction at the end.
 */
#include "cellar_ext.h"

#include <time.h>
#include <unistd.h>

#include "cellar/graph.h"
#include "cellar/records.h"
#include "cellar/units.h"

typedef enum {
    ST_PENDING,
    ST_COMPUTED,
    ST_LOADED,
    ST_MEMORY,
    ST_FAILED,
    ST_SKIPPED
} node_status;

static const char *status_names[] = {"pending",   "computed", "loaded",
                                     "in memory", "failed",   "skipped"};

typedef struct slot {
    PyObject *cap; /* strong: keeps the cellar_fn alive during the run */
    cellar_fn *fn;
    node_status status;
    cellar_hash key, dv, code_version;
    PyObject *value; /* strong, once available */
    PyObject *error; /* str, when failed or skipped */
    double seconds;  /* compute or load time, < 0 when none */
    uint64_t size;
    bool have_size;
    bool stored;        /* computed, picklable: to be written */
    uint64_t last_used; /* the key record's, for hits from the store */
    bool replace;       /* its stored result failed to load: overwrite it */
    bool handed;        /* its value went to a body since it was last checked */
    bool exposed;       /* its value went to a body during this run */
    bool iterator;      /* its value is an iterator: never stored or reused */
    cellar_pickled pickled;
} slot;

typedef struct run_ctx {
    cellar_state *st;
    PyObject *ns, *inputs;
    PyObject *versions;       /* per-run memo for code and global versions */
    PyObject *input_versions; /* id(value) -> dv bytes, for this run */
    cellar_graph *g;
    slot *slots;
    size_t n;
    int *order;
    size_t norder;
    cellar_reader *reader;
    bool interrupted;
    bool gc_was_enabled; /* the cyclic GC is paused for cellar's own bookkeeping */
} run_ctx;

#define TOUCH_INTERVAL_NS (600ull * 1000000000ull)

static uint64_t now_ns(int clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static PyObject *hash_bytes(const cellar_hash *h)
{
    return PyBytes_FromStringAndSize((const char *)h->bytes, 16);
}

/* ---- building the graph ---- */

static int build_graph(run_ctx *ctx)
{
    cellar_state *st = ctx->st;
    cellar_error err;
    ctx->g = cellar_graph_new();
    Py_ssize_t total = PyDict_GET_SIZE(st->functions);
    ctx->slots = PyMem_Calloc(total ? (size_t)total : 1, sizeof(slot));
    ctx->order = PyMem_Calloc(total ? (size_t)total : 1, sizeof(int));
    if (!ctx->g || !ctx->slots || !ctx->order) {
        PyErr_NoMemory();
        return -1;
    }
    PyObject *name, *cap;
    Py_ssize_t pos = 0;
    while (PyDict_Next(st->functions, &pos, &name, &cap)) {
        const char *s = PyUnicode_AsUTF8(name);
        if (!s)
            return -1;
        if (s[0] == '_')
            continue;
        int id = cellar_graph_add_node(ctx->g, s, &err);
        if (id < 0) {
            PyErr_NoMemory();
            return -1;
        }
        slot *sl = &ctx->slots[id];
        sl->cap = Py_NewRef(cap);
        sl->fn = cellar_fn_of(cap);
        sl->seconds = -1;
        ctx->n = (size_t)id + 1;
    }
    for (size_t id = 0; id < ctx->n; id++) {
        cellar_fn *fn = ctx->slots[id].fn;
        for (Py_ssize_t i = 0; i < fn->nparams; i++) {
            if (fn->kinds[i] == CELLAR_PARAM_VAR_POSITIONAL ||
                fn->kinds[i] == CELLAR_PARAM_VAR_KEYWORD)
                continue;
            int dep = cellar_graph_find(ctx->g, PyUnicode_AsUTF8(fn->param_names[i]));
            if (dep >= 0 &&
                cellar_graph_add_edge(ctx->g, dep, (int)id, &err) != CELLAR_OK) {
                PyErr_NoMemory();
                return -1;
            }
        }
    }
    return 0;
}

static void release_ctx(run_ctx *ctx)
{
    if (ctx->gc_was_enabled)
        PyGC_Enable();
    ctx->gc_was_enabled = false;
    if (ctx->reader)
        cellar_reader_end(ctx->reader);
    ctx->reader = NULL;
    for (size_t i = 0; ctx->slots && i < ctx->n; i++) {
        slot *s = &ctx->slots[i];
        Py_XDECREF(s->cap);
        Py_XDECREF(s->value);
        Py_XDECREF(s->error);
        cellar_pickled_release(&s->pickled);
    }
    PyMem_Free(ctx->slots);
    PyMem_Free(ctx->order);
    cellar_graph_free(ctx->g);
    Py_XDECREF(ctx->versions);
    Py_XDECREF(ctx->input_versions);
}

/* Orders the ancestors of `targets` (ids); RunError on a cycle. */
static int plan_order(run_ctx *ctx, const int *targets, size_t ntargets)
{
    cellar_error err;
    int *subset = PyMem_Calloc(ctx->n ? ctx->n : 1, sizeof(int));
    size_t nsubset = 0;
    if (!subset) {
        PyErr_NoMemory();
        return -1;
    }
    cellar_status rc =
        cellar_graph_ancestors(ctx->g, targets, ntargets, true, subset, &nsubset, &err);
    if (rc == CELLAR_OK)
        rc = cellar_graph_toposort(ctx->g, subset, nsubset, ctx->order, &ctx->norder,
                                   &err);
    PyMem_Free(subset);
    if (rc != CELLAR_OK) {
        PyErr_Format(ctx->st->RunError, "%s", err.message);
        return -1;
    }
    return 0;
}

/* ---- inputs ---- */

/* The default of parameter i, new reference; NULL without error when none. */
static PyObject *param_default(cellar_fn *fn, Py_ssize_t i)
{
    PyObject *f = Py_NewRef(fn->func);
    for (int hop = 0; hop < 16 && !PyFunction_Check(f); hop++) {
        PyObject *next = PyObject_GetAttrString(f, "__wrapped__");
        if (!next) {
            PyErr_Clear();
            break;
        }
        Py_SETREF(f, next);
    }
    PyObject *result = NULL;
    if (PyFunction_Check(f)) {
        if (fn->kinds[i] == CELLAR_PARAM_KEYWORD_ONLY) {
            PyObject *kw = PyFunction_GetKwDefaults(f);
            result = kw ? PyDict_GetItemWithError(kw, fn->param_names[i]) : NULL;
            Py_XINCREF(result);
        } else {
            PyObject *defaults = PyFunction_GetDefaults(f);
            Py_ssize_t npos = 0, index = -1;
            for (Py_ssize_t j = 0; j < fn->nparams; j++)
                if (fn->kinds[j] == CELLAR_PARAM_POSITIONAL_ONLY ||
                    fn->kinds[j] == CELLAR_PARAM_POSITIONAL_OR_KEYWORD) {
                    if (j == i)
                        index = npos;
                    npos++;
                }
            Py_ssize_t nd = defaults ? PyTuple_GET_SIZE(defaults) : 0;
            Py_ssize_t at = index - (npos - nd);
            if (index >= 0 && at >= 0 && at < nd)
                result = Py_NewRef(PyTuple_GET_ITEM(defaults, at));
        }
    }
    Py_DECREF(f);
    return result;
}

/* Resolves input parameter i of `fn`: run arguments, then globals, then the
 * default.  Returns a new reference, or NULL: with a Python error on failure,
 * without one when the input is missing. */
static PyObject *resolve_input(run_ctx *ctx, cellar_fn *fn, Py_ssize_t i)
{
    PyObject *name = fn->param_names[i];
    PyObject *v = PyDict_GetItemWithError(ctx->inputs, name);
    if (!v && !PyErr_Occurred())
        v = PyDict_GetItemWithError(ctx->ns, name);
    if (v)
        return Py_NewRef(v);
    if (PyErr_Occurred())
        return NULL;
    return fn->has_default[i] ? param_default(fn, i) : NULL;
}

static int input_version(run_ctx *ctx, PyObject *value, cellar_hash *dv)
{
    PyObject *id = PyLong_FromVoidPtr(value);
    if (!id)
        return -1;
    PyObject *hit = PyDict_GetItemWithError(ctx->input_versions, id);
    if (hit) {
        memcpy(dv->bytes, PyBytes_AS_STRING(hit), 16);
        Py_DECREF(id);
        return 0;
    }
    bool picklable;
    if (PyErr_Occurred() ||
        cellar_data_version(ctx->st, value, ctx->versions, dv, &picklable) < 0) {
        Py_DECREF(id);
        return -1;
    }
    PyObject *b = hash_bytes(dv);
    int rc = b ? PyDict_SetItem(ctx->input_versions, id, b) : -1;
    Py_XDECREF(b);
    Py_DECREF(id);
    return rc;
}

static void set_error(slot *s, node_status status, PyObject *msg)
{
    s->status = status;
    Py_XSETREF(s->error, msg);
}

/* ---- keys ---- */

/* Fills s->key from the parameters' data versions.  Returns 0 when the key
 * is known, 1 when the node cannot run (status set), -1 on a Python error.
 * When `values` is not NULL it receives each parameter's value (new refs). */
static int node_key(run_ctx *ctx, int id, PyObject **values)
{
    slot *s = &ctx->slots[id];
    cellar_fn *fn = s->fn;
    Py_ssize_t n = fn->nparams;
    const char **names = PyMem_Calloc(n ? (size_t)n : 1, sizeof(char *));
    cellar_hash *dvs = PyMem_Calloc(n ? (size_t)n : 1, sizeof(cellar_hash));
    if (!names || !dvs) {
        PyMem_Free(names);
        PyMem_Free(dvs);
        PyErr_NoMemory();
        return -1;
    }
    size_t used = 0;
    int rc = 0;
    for (Py_ssize_t i = 0; rc == 0 && i < n; i++) {
        if (fn->kinds[i] == CELLAR_PARAM_VAR_POSITIONAL ||
            fn->kinds[i] == CELLAR_PARAM_VAR_KEYWORD)
            continue;
        const char *pname = PyUnicode_AsUTF8(fn->param_names[i]);
        int dep = cellar_graph_find(ctx->g, pname);
        if (dep >= 0) {
            slot *d = &ctx->slots[dep];
            if (d->status == ST_FAILED || d->status == ST_SKIPPED) {
                set_error(s, ST_SKIPPED,
                          PyUnicode_FromFormat("skipped because '%U' %s", d->fn->name,
                                               d->status == ST_FAILED ? "failed"
                                                                      : "was skipped"));
                rc = 1;
                break;
            }
            dvs[used] = d->dv;
            if (values)
                values[i] = Py_XNewRef(d->value);
        } else {
            PyObject *v = resolve_input(ctx, fn, i);
            if (!v) {
                if (PyErr_Occurred()) {
                    rc = -1;
                    break;
                }
                set_error(
                    s, ST_FAILED,
                    PyUnicode_FromFormat("node '%U' needs input '%U': pass --input "
                                         "%U=VALUE (or %U=... to cellar.run), define "
                                         "a global '%U', or give it a default",
                                         fn->name, fn->param_names[i], fn->param_names[i],
                                         fn->param_names[i], fn->param_names[i]));
                rc = 1;
                break;
            }
            if (input_version(ctx, v, &dvs[used]) < 0) {
                Py_DECREF(v);
                rc = -1;
                break;
            }
            if (values)
                values[i] = v;
            else
                Py_DECREF(v);
        }
        names[used++] = pname;
    }
    if (rc == 0 &&
        cellar_code_version(ctx->st, fn, ctx->ns, ctx->versions, &s->code_version) < 0)
        rc = -1;
    if (rc == 0) {
        Py_ssize_t nlen;
        const char *nm = PyUnicode_AsUTF8AndSize(fn->name, &nlen);
        if (cellar_key_for_node(ctx->st->keyenc, nm, (size_t)nlen, &s->code_version, used,
                                names, dvs, &s->key) != CELLAR_OK) {
            PyErr_NoMemory();
            rc = -1;
        }
    }
    PyMem_Free(names);
    PyMem_Free(dvs);
    return rc;
}

/* ---- memory of this session ---- */

static void warn_changed(slot *s)
{
    cellar_warn("the value of node '%s' kept in memory was changed in place since it was "
                "computed (by a node body or in the notebook); it is not reused, it is "
                "loaded from the store or recomputed",
                PyUnicode_AsUTF8(s->fn->name));
}

/* Reuses the session's value for s->key if it still has its data version.  A
 * value that cannot be pickled cannot be checked: it is kept, as documented
 * for such values.  1 reused, 0 not, -1 on error. */
static int memo_lookup(run_ctx *ctx, slot *s)
{
    PyObject *entry = PyDict_GetItemWithError(ctx->st->memo, s->fn->name);
    if (!entry)
        return PyErr_Occurred() ? -1 : 0;
    if (memcmp(PyBytes_AS_STRING(PyTuple_GET_ITEM(entry, 0)), s->key.bytes, 16) != 0)
        return 0;
    cellar_hash dv;
    memcpy(dv.bytes, PyBytes_AS_STRING(PyTuple_GET_ITEM(entry, 1)), 16);
    PyObject *value = PyTuple_GET_ITEM(entry, 2);
    PyObject *size = PyTuple_GET_ITEM(entry, 3);
    if (size != Py_None) {
        Py_INCREF(entry);
        int same = cellar_value_unchanged(ctx->st, value, &dv, ctx->versions);
        Py_DECREF(entry);
        if (same <= 0) {
            if (same < 0)
                return -1;
            warn_changed(s);
            return PyDict_DelItem(ctx->st->memo, s->fn->name) < 0 ? -1 : 0;
        }
        entry = PyDict_GetItemWithError(ctx->st->memo, s->fn->name);
        if (!entry || PyTuple_GET_ITEM(entry, 2) != value)
            return PyErr_Occurred() ? -1 : 0; /* a body run by the check replaced it */
    }
    s->dv = dv;
    Py_XSETREF(s->value, Py_NewRef(value));
    s->have_size = size != Py_None;
    s->size = s->have_size ? PyLong_AsUnsignedLongLong(size) : 0;
    s->status = ST_MEMORY;
    return 1;
}

static int memo_store(run_ctx *ctx, slot *s)
{
    PyObject *k = hash_bytes(&s->key), *d = hash_bytes(&s->dv);
    PyObject *size =
        s->have_size ? PyLong_FromUnsignedLongLong(s->size) : Py_NewRef(Py_None);
    PyObject *entry = (k && d && size) ? PyTuple_Pack(4, k, d, s->value, size) : NULL;
    Py_XDECREF(k);
    Py_XDECREF(d);
    Py_XDECREF(size);
    int rc = entry ? PyDict_SetItem(ctx->st->memo, s->fn->name, entry) : -1;
    Py_XDECREF(entry);
    return rc;
}

/* ---- computing and loading ---- */

static int ensure_value(run_ctx *ctx, int id);
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

/* Shows a node's exception as Python would, on stderr. */
static void show_traceback(run_ctx *ctx, PyObject *exc)
{
    PyObject *r = PyObject_CallFunctionObjArgs(ctx->st->print_exception, exc, NULL);
    if (!r)
        PyErr_Clear();
    Py_XDECREF(r);
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
    int rc = cellar_pickle(ctx->st, value, ctx->versions, &s->pickled, &why);
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
        s->stored = true;
    }
    return memo_store(ctx, s);
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
            int rc = ensure_value(ctx, deps[i]);
            if (rc < 0)
                return -1;
            if (rc > 0) {
                set_error(s, ST_SKIPPED,
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
    int rc = node_key(ctx, id, values);
    for (size_t i = 0; rc == 0 && i < ndeps; i++) {
        ctx->slots[deps[i]].handed = true;
        ctx->slots[deps[i]].exposed = true;
    }
    if (rc == 0) {
        uint64_t t0 = now_ns(CLOCK_MONOTONIC);
        if (ctx->gc_was_enabled)
            PyGC_Enable();
        PyObject *result = call_node(s, values);
        if (ctx->gc_was_enabled)
            PyGC_Disable();
        s->seconds = (double)(now_ns(CLOCK_MONOTONIC) - t0) / 1e9;
        if (result && (PyCoro_CheckExact(result) || PyAsyncGen_CheckExact(result))) {
            /* The kernel's event loop is busy running this cell, so a
             * coroutine cannot be awaited here; say so rather than store it. */
            if (PyCoro_CheckExact(result)) { /* never started: close it quietly */
                PyObject *closed = PyObject_CallMethod(result, "close", NULL);
                Py_XDECREF(closed);
                PyErr_Clear();
            }
            Py_DECREF(result);
            set_error(s, ST_FAILED,
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
            set_error(s, ST_FAILED, PyUnicode_FromString("interrupted"));
        } else {
            PyObject *exc = cellar_fetch_exception();
            show_traceback(ctx, exc);
            set_error(s, ST_FAILED, exception_text(exc));
            Py_DECREF(exc);
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
    uint64_t t0 = now_ns(CLOCK_MONOTONIC);
    PyObject *value = ctx->reader
                          ? cellar_load_value(ctx->st, ctx->reader, &s->dv, &status, &err)
                          : NULL;
    if (value) {
        s->seconds = (double)(now_ns(CLOCK_MONOTONIC) - t0) / 1e9;
        Py_XSETREF(s->value, value);
        return memo_store(ctx, s);
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
        warn_changed(s);
    }
    return reacquire(ctx, id) < 0 ? -1 : 1;
}

/* 0 when the node's value is available, 1 when it failed, -1 on error. */
static int ensure_value(run_ctx *ctx, int id)
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
static int visit(run_ctx *ctx, int id)
{
    slot *s = &ctx->slots[id];
    int rc = node_key(ctx, id, NULL);
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    rc = memo_lookup(ctx, s);
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

/* ---- saving ---- */

static const cellar_outcome outcomes[] = {
    [ST_PENDING] = CELLAR_OUTCOME_SKIPPED, /* not reached: a saved run has none */
    [ST_COMPUTED] = CELLAR_OUTCOME_COMPUTED, [ST_LOADED] = CELLAR_OUTCOME_LOADED,
    [ST_MEMORY] = CELLAR_OUTCOME_IN_MEMORY,  [ST_FAILED] = CELLAR_OUTCOME_FAILED,
    [ST_SKIPPED] = CELLAR_OUTCOME_SKIPPED,
};

/* A UTF-8 view of a str the slot keeps alive, or NULL (error cleared): a
 * lineage row without its error text beats a run without its record. */
static const char *utf8_or_null(PyObject *s)
{
    const char *u = s ? PyUnicode_AsUTF8(s) : NULL;
    if (s && !u)
        PyErr_Clear();
    return u;
}

/* The run's lineage as a run record (records.h), into `*text` (free()).
 * Every string in it is borrowed from the slots and targets, which outlive
 * the call. */
static cellar_status lineage(run_ctx *ctx, PyObject *targets, uint64_t started,
                             char **text, cellar_error *err)
{
    Py_ssize_t ntargets = PyList_GET_SIZE(targets);
    const char **names = PyMem_Calloc(ntargets ? (size_t)ntargets : 1, sizeof *names);
    cellar_lineage_row *rows = PyMem_Calloc(ctx->norder ? ctx->norder : 1, sizeof *rows);
    cellar_status rc = names && rows ? CELLAR_OK : CELLAR_ENOMEM;
    for (Py_ssize_t i = 0; rc == CELLAR_OK && i < ntargets; i++)
        names[i] = utf8_or_null(PyList_GET_ITEM(targets, i));
    for (size_t i = 0; rc == CELLAR_OK && i < ctx->norder; i++) {
        slot *s = &ctx->slots[ctx->order[i]];
        bool ok = s->status != ST_FAILED && s->status != ST_SKIPPED;
        rows[i] = (cellar_lineage_row){
            .node = utf8_or_null(s->fn->name),
            .outcome = outcomes[s->status],
            .has_versions = ok,
            .key = s->key,
            .data_version = s->dv,
            .time_ns = s->seconds >= 0 ? (uint64_t)(s->seconds * 1e9) : 0,
            .has_size = s->have_size,
            .size = s->size,
            .error = utf8_or_null(s->error),
        };
    }
    if (rc == CELLAR_OK) {
        cellar_run_record rec = {
            .started_ns = started,
            .pid = getpid(),
            .ntargets = (size_t)ntargets,
            .targets = names,
            .nrows = ctx->norder,
            .rows = rows,
        };
        rc = cellar_run_record_encode(&rec, text, NULL, err);
    } else {
        cellar_error_set(err, rc, "out of memory recording the run");
    }
    PyMem_Free(names);
    PyMem_Free(rows);
    return rc;
}

/* The node record of a computed slot, into `*text` (free()). */
static cellar_status node_record(slot *s, uint64_t now, char **text, cellar_error *err)
{
    cellar_fn *fn = s->fn;
    const char **params =
        PyMem_Calloc(fn->nparams ? (size_t)fn->nparams : 1, sizeof *params);
    if (!params)
        return cellar_error_set(err, CELLAR_ENOMEM, "out of memory recording a node");
    for (Py_ssize_t i = 0; i < fn->nparams; i++)
        params[i] = utf8_or_null(fn->param_names[i]);
    cellar_node_record rec = {
        .name = utf8_or_null(fn->name),
        .nparams = (size_t)fn->nparams,
        .params = params,
        .cell_id = PyUnicode_Check(fn->cell_id) ? utf8_or_null(fn->cell_id) : NULL,
        .code_version = s->code_version,
        .key = s->key,
        .data_version = s->dv,
        .updated_ns = now,
    };
    cellar_status rc = cellar_node_record_encode(&rec, text, NULL, err);
    PyMem_Free(params);
    return rc;
}

/* The bytes a batch would copy are the pickle stream (taken when the node
 * finished) and its buffers, read where they live: a body that had the value
 * may have written into them.  Re-hashing them only for values that went to
 * a body keeps a target's store write at the cost of the write. */
static bool stored_bytes_versioned(run_ctx *ctx, slot *s)
{
    if (!s->exposed || s->pickled.nviews == 0 ||
        cellar_pickled_unchanged(ctx->st, &s->pickled))
        return true;
    cellar_warn("the result of node '%s' was changed in place by a node that used it, "
                "before it could be stored; it is not stored (a later run computes it "
                "again)",
                PyUnicode_AsUTF8(s->fn->name));
    return false;
}

static void save(run_ctx *ctx, PyObject *targets, uint64_t started)
{
    cellar_state *st = ctx->st;
    /* A read-only store was announced once, when it was opened. */
    if (!st->store || cellar_store_read_only(st->store))
        return;
    cellar_batch *b = cellar_batch_new();
    cellar_error err;
    err.message[0] = '\0';
    uint64_t now = now_ns(CLOCK_REALTIME);
    cellar_status rc = b ? CELLAR_OK : CELLAR_ENOMEM;
    for (size_t i = 0; rc == CELLAR_OK && i < ctx->norder; i++) {
        slot *s = &ctx->slots[ctx->order[i]];
        if (s->status == ST_COMPUTED && s->stored && stored_bytes_versioned(ctx, s)) {
            Py_ssize_t nlen;
            const char *name = PyUnicode_AsUTF8AndSize(s->fn->name, &nlen);
            cellar_key_record rec = {
                .data_version = s->dv,
                .code_version = s->code_version,
                .created_ns = now,
                .last_used_ns = now,
                .size = s->size,
                .compute_ns = (uint64_t)(s->seconds * 1e9),
                .node = name,
                .node_len = (size_t)nlen,
            };
            rc = (s->replace ? cellar_batch_replace_result : cellar_batch_put_result)(
                b, &s->dv, s->pickled.segs, s->pickled.nsegs, &s->dv, &err);
            if (rc == CELLAR_EINVAL) {
                /* This value cannot be stored (LMDB's 4 GiB value limit); the
                 * others still can, and this one stays in memory. */
                cellar_warn("the result of node '%s' is not stored: %s; it is kept in "
                            "memory for this session",
                            name, err.message);
                rc = CELLAR_OK;
                continue;
            }
            if (rc == CELLAR_OK)
                rc = cellar_batch_put_key(b, &s->key, &rec, &err);
            char *js = NULL;
            if (rc == CELLAR_OK)
                rc = node_record(s, now, &js, &err);
            if (rc == CELLAR_OK)
                rc = cellar_batch_put_node(b, name, js, &err);
            free(js);
        } else if (s->status == ST_LOADED && now - s->last_used > TOUCH_INTERVAL_NS) {
            /* Last-used times only need minute precision for eviction; not
             * rewriting fresh ones keeps a cached run's commit small. */
            rc = cellar_batch_touch_key(b, &s->key, now, &err);
        }
    }
    if (rc == CELLAR_OK) {
        char *text = NULL;
        rc = lineage(ctx, targets, started, &text, &err);
        if (rc == CELLAR_OK)
            rc = cellar_batch_add_run(b, text, NULL, &err);
        free(text);
    }
    if (ctx->reader) {
        cellar_reader_end(ctx->reader);
        ctx->reader = NULL;
    }
    if (rc == CELLAR_OK)
        rc = cellar_store_commit(st->store, b, &err);
    if (rc != CELLAR_OK)
        cellar_warn("this run's results could not be saved (%s%s%s); they stay in memory "
                    "for this session",
                    cellar_status_name(rc), err.message[0] ? ": " : "", err.message);
    cellar_batch_free(b);
}

/* ---- the report ---- */

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

static int add_row(PyObject *rows, slot *s)
{
    PyObject *row =
        Py_BuildValue("(OsNN)", s->fn->name, status_names[s->status],
                      format_seconds(s->seconds), format_size(s->have_size, s->size));
    int rc = row ? PyList_Append(rows, row) : -1;
    Py_XDECREF(row);
    return rc;
}

static bool is_hit(const slot *s)
{
    return s->status == ST_LOADED || s->status == ST_MEMORY;
}

static PyObject *run_report(run_ctx *ctx, double total)
{
    size_t counts[6] = {0}, active = 0;
    for (size_t i = 0; i < ctx->norder; i++) {
        slot *s = &ctx->slots[ctx->order[i]];
        counts[s->status]++;
        active += !is_hit(s);
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
        if (add_row(rows, s) < 0) {
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
    PyObject *header = Py_BuildValue("(ssss)", "node", "status", "time", "size");
    PyObject *report = (title && header && note)
                           ? cellar_report_new(ctx->st, title, header, rows, note)
                           : NULL;
    Py_XDECREF(title);
    Py_XDECREF(header);
    Py_XDECREF(note);
    Py_DECREF(rows);
    return report;
}

/* ---- the run ---- */

static int start(run_ctx *ctx, cellar_state *st, PyObject *inputs)
{
    memset(ctx, 0, sizeof *ctx);
    ctx->st = st;
    ctx->gc_was_enabled = PyGC_Disable();
    ctx->inputs = inputs;
    ctx->ns = cellar_user_ns(st);
    /* A cell that redefines a node and then runs: its definitions count. */
    if (!ctx->ns || cellar_hooks_register_pending(st) < 0 ||
        cellar_prune_functions(st, ctx->ns) < 0)
        return -1;
    ctx->versions = PyDict_New();
    ctx->input_versions = PyDict_New();
    if (!ctx->versions || !ctx->input_versions || build_graph(ctx) < 0)
        return -1;
    if (st->store) {
        cellar_error err;
        if (cellar_reader_begin(st->store, &ctx->reader, &err) != CELLAR_OK) {
            cellar_warn("the store cannot be read (%s); computing without it",
                        err.message);
            ctx->reader = NULL;
        }
    }
    return 0;
}

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
            rc = ensure_value(ctx, ctx->order[i]) < 0 ? -1 : 0;
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
        if (s->status != ST_FAILED && s->status != ST_SKIPPED)
            continue;
        PyObject *line =
            PyUnicode_FromFormat("%U %s: %U", s->fn->name, status_names[s->status],
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
    return NULL;
}

PyObject *cellar_run(cellar_state *st, PyObject *targets, PyObject *inputs)
{
    if (st->running) {
        PyErr_SetString(st->RunError, "a cellar run is already in progress (cellar.run "
                                      "cannot be called from inside a node, or from "
                                      "another subshell during a run)");
        return NULL;
    }
    uint64_t started = now_ns(CLOCK_REALTIME), t0 = now_ns(CLOCK_MONOTONIC);
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
    if (start(&ctx, st, inputs) < 0 || target_ids(&ctx, targets, ids) < 0 ||
        plan_order(&ctx, ids, (size_t)ntargets) < 0)
        goto done;
    int rc = 0;
    for (size_t i = 0; rc == 0 && !ctx.interrupted && i < ctx.norder; i++) {
        if (ctx.slots[ctx.order[i]].status == ST_PENDING)
            rc = visit(&ctx, ctx.order[i]);
        if (rc == 0 && PyErr_CheckSignals() < 0) {
            PyErr_Clear();
            ctx.interrupted = true;
        }
    }
    if (rc == 0 && !ctx.interrupted)
        rc = fetch_targets(&ctx, ids, ntargets);
    for (size_t i = 0; ctx.interrupted && i < ctx.norder; i++)
        if (ctx.slots[ctx.order[i]].status == ST_PENDING)
            set_error(&ctx.slots[ctx.order[i]], ST_SKIPPED,
                      PyUnicode_FromString("skipped: the run was interrupted"));
    if (rc < 0)
        goto done;
    save(&ctx, targets, started);
    PyObject *report = run_report(&ctx, (double)(now_ns(CLOCK_MONOTONIC) - t0) / 1e9);
    if (!report || cellar_report_show(st, report) < 0) {
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
    st->running = false;
    release_ctx(&ctx);
    Py_DECREF(named);
    PyMem_Free(ids);
    return result;
}

/* ---- status ---- */

PyObject *cellar_status_report(cellar_state *st, PyObject *inputs)
{
    run_ctx ctx;
    PyObject *report = NULL, *rows = NULL;
    PyObject *named = cellar_registry_normalize_keys(inputs); /* as in cellar_run */
    if (!named)
        return NULL;
    if (start(&ctx, st, named) < 0)
        goto done;
    cellar_error err;
    if (cellar_graph_toposort(ctx.g, NULL, 0, ctx.order, &ctx.norder, &err) !=
        CELLAR_OK) {
        PyErr_Format(st->RunError, "%s", err.message);
        goto done;
    }
    rows = PyList_New(0);
    size_t fresh = 0;
    for (size_t i = 0; rows && i < ctx.norder; i++) {
        slot *s = &ctx.slots[ctx.order[i]];
        const char *state = "needs run";
        int rc = node_key(&ctx, ctx.order[i], NULL);
        if (rc < 0)
            goto done;
        if (rc == 0) {
            cellar_key_record rec;
            int hit = memo_lookup(&ctx, s);
            if (hit < 0)
                goto done;
            if (!hit && ctx.reader &&
                cellar_reader_get_key(ctx.reader, &s->key, &rec, &err) == CELLAR_OK &&
                cellar_reader_has_result(ctx.reader, &rec.data_version)) {
                s->dv = rec.data_version;
                hit = 1;
            }
            if (hit) {
                state = "up to date";
                s->status = ST_LOADED;
                fresh++;
            } else {
                /* Its value is unknown until it runs, so dependants need a run too. */
                set_error(s, ST_SKIPPED, PyUnicode_FromString("needs run"));
            }
        } else if (s->status == ST_FAILED) {
            state = "needs input";
        }
        PyObject *row = Py_BuildValue("(Os)", s->fn->name, state);
        if (!row || PyList_Append(rows, row) < 0) {
            Py_XDECREF(row);
            goto done;
        }
        Py_DECREF(row);
    }
    PyObject *title = PyUnicode_FromFormat("cellar status: %zu of %zu nodes up to date",
                                           fresh, ctx.norder);
    PyObject *header = Py_BuildValue("(ss)", "node", "state");
    if (title && header)
        report = cellar_report_new(st, title, header, rows, NULL);
    Py_XDECREF(title);
    Py_XDECREF(header);
done:
    Py_XDECREF(rows);
    release_ctx(&ctx);
    Py_DECREF(named);
    return report;
}

/* ---- statuses as data (for %cellar graph) ---- */

/* The planning of cellar_status_report, as a dict: name -> (state, key,
 * why), state being "up to date", "needs run" or "needs input", key the
 * node's current cache key (16 bytes) or None when it cannot be known, why
 * the reason (a str naming the missing input, ...) or None. */
PyObject *cellar_node_statuses(cellar_state *st, PyObject *inputs)
{
    run_ctx ctx;
    cellar_error err;
    PyObject *out = NULL;
    if (start(&ctx, st, inputs) < 0)
        goto done;
    if (cellar_graph_toposort(ctx.g, NULL, 0, ctx.order, &ctx.norder, &err) !=
        CELLAR_OK) {
        PyErr_Format(st->RunError, "%s", err.message);
        goto done;
    }
    out = PyDict_New();
    for (size_t i = 0; out && i < ctx.norder; i++) {
        slot *s = &ctx.slots[ctx.order[i]];
        const char *state = "needs run";
        int rc = node_key(&ctx, ctx.order[i], NULL), hit = 0;
        if (rc == 0) {
            cellar_key_record rec;
            hit = memo_lookup(&ctx, s);
            if (hit == 0 && ctx.reader &&
                cellar_reader_get_key(ctx.reader, &s->key, &rec, &err) == CELLAR_OK &&
                cellar_reader_has_result(ctx.reader, &rec.data_version)) {
                s->dv = rec.data_version;
                hit = 1;
            }
            if (hit > 0) {
                state = "up to date";
                s->status = ST_LOADED;
            } else if (hit == 0) {
                set_error(s, ST_SKIPPED, PyUnicode_FromString("needs run"));
            }
        } else if (s->status == ST_FAILED) {
            state = "needs input";
        }
        PyObject *item =
            rc < 0 || hit < 0
                ? NULL
                : Py_BuildValue(
                      "(sNO)", state, rc == 0 ? hash_bytes(&s->key) : Py_NewRef(Py_None),
                      rc != 0 && s->status == ST_FAILED && s->error ? s->error : Py_None);
        if (!item || PyDict_SetItem(out, s->fn->name, item) < 0)
            Py_CLEAR(out);
        Py_XDECREF(item);
    }
done:
    release_ctx(&ctx);
    return out;
}
