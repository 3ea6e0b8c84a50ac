/*
 * plan.c - what a run knows before it runs anything: the graph of the
 * registry's nodes, where each input's value comes from, each node's cache
 * key, and this session's memory of values.
 *
 * A node's key comes from its code version and the data versions of its
 * parameters (upstream nodes' recorded versions, inputs' fingerprints,
 * memoized per value for the run), without loading any value.  A key found
 * in the session's memory is reused only while the value still has its data
 * version.  Status planning (%cellar status, %cellar graph) keys every node
 * this way and looks each key up in memory and in the store, running nothing.
 * Each slot gets its behaviour here (behavior.c): the run's option, else the
 * node's mark, else the default; an ignored node's dependants are keyed with a
 * fixed marker in place of its data version.
 */
#include "run_state.h"

const char *const run_status_names[] = {"pending",   "computed", "loaded",
                                        "in memory", "failed",   "skipped"};

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
    int fallback = cellar_behavior_default(st);
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
        sl->behavior = sl->fn->behavior >= 0 ? sl->fn->behavior : fallback;
        ctx->behaving = ctx->behaving || sl->behavior != CELLAR_BEHAVIOR_DEFAULT;
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

void run_release(run_ctx *ctx)
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
    Py_XDECREF(ctx->inputs_read);
}

int run_apply_behaviors(run_ctx *ctx, PyObject *behaviors)
{
    PyObject *name, *b;
    Py_ssize_t pos = 0;
    while (behaviors && PyDict_Next(behaviors, &pos, &name, &b)) {
        const char *s = PyUnicode_AsUTF8(name);
        if (!s)
            return -1;
        int id = cellar_graph_find(ctx->g, s);
        if (id < 0)
            continue; /* pruned since it was named: the run says it is unknown */
        ctx->slots[id].behavior = (int)PyLong_AsLong(b);
        ctx->behaving =
            ctx->behaving || ctx->slots[id].behavior != CELLAR_BEHAVIOR_DEFAULT;
    }
    return 0;
}

cellar_hash run_ignored_version(void)
{
    static const char marker[] = "cellar: an ignored node's value";
    return cellar_hash_bytes(marker, sizeof marker - 1);
}

/* Orders the ancestors of `targets` (ids); RunError on a cycle. */
int run_plan_order(run_ctx *ctx, const int *targets, size_t ntargets)
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
    PyObject *b = run_hash_bytes(dv);
    int rc = b ? PyDict_SetItem(ctx->input_versions, id, b) : -1;
    Py_XDECREF(b);
    Py_DECREF(id);
    return rc;
}

void run_set_error(slot *s, node_status status, PyObject *msg)
{
    s->status = status;
    Py_XSETREF(s->error, msg);
}

/* ---- keys ---- */

int run_node_key(run_ctx *ctx, int id, PyObject **values)
{
    slot *s = &ctx->slots[id];
    cellar_fn *fn = s->fn;
    Py_ssize_t n = fn->nparams;
    s->keyed = false;
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
                run_set_error(s, ST_SKIPPED,
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
                run_set_error(
                    s, ST_FAILED,
                    PyUnicode_FromFormat("node '%U' needs input '%U': pass --input "
                                         "%U=VALUE (or %U=... to cellar.run), define "
                                         "a global '%U', or give it a default",
                                         fn->name, fn->param_names[i], fn->param_names[i],
                                         fn->param_names[i], fn->param_names[i]));
                rc = 1;
                break;
            }
            if (input_version(ctx, v, &dvs[used]) < 0 ||
                (ctx->inputs_read &&
                 cellar_lineage_note_input(ctx->inputs_read, fn->param_names[i], v,
                                           &dvs[used], ctx->inputs, ctx->ns) < 0)) {
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
        s->keyed = rc == 0;
    }
    PyMem_Free(names);
    PyMem_Free(dvs);
    return rc;
}

PyObject *run_missing_inputs(run_ctx *ctx, int id)
{
    cellar_fn *fn = ctx->slots[id].fn;
    PyObject *out = PyList_New(0);
    for (Py_ssize_t i = 0; out && i < fn->nparams; i++) {
        if (fn->kinds[i] == CELLAR_PARAM_VAR_POSITIONAL ||
            fn->kinds[i] == CELLAR_PARAM_VAR_KEYWORD ||
            cellar_graph_find(ctx->g, PyUnicode_AsUTF8(fn->param_names[i])) >= 0)
            continue;
        PyObject *v = resolve_input(ctx, fn, i);
        if (v)
            Py_DECREF(v);
        else if (PyErr_Occurred() || PyList_Append(out, fn->param_names[i]) < 0)
            Py_CLEAR(out);
    }
    return out;
}

/* ---- memory of this session ---- */

void run_warn_changed(slot *s)
{
    cellar_warn("the value of node '%s' kept in memory was changed in place since it was "
                "computed (by a node body or in the notebook); it is not reused, it is "
                "loaded from the store or recomputed",
                PyUnicode_AsUTF8(s->fn->name));
}

/* Reuses the session's value for s->key if it still has its data version.  A
 * value that cannot be pickled cannot be checked: it is kept, as documented
 * for such values.  1 reused, 0 not, -1 on error. */
int run_memo_lookup(run_ctx *ctx, slot *s)
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
            run_warn_changed(s);
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

int run_memo_store(run_ctx *ctx, slot *s)
{
    PyObject *k = run_hash_bytes(&s->key), *d = run_hash_bytes(&s->dv);
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

/* ---- starting and planning ---- */

int run_start(run_ctx *ctx, cellar_state *st, PyObject *inputs)
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

/* Narrows ctx->order to the nodes named in `only` (unknown names are
 * left out) and their ancestors. */
static int plan_only(run_ctx *ctx, PyObject *only)
{
    Py_ssize_t n = PyList_GET_SIZE(only);
    int *ids = PyMem_Calloc(n ? (size_t)n : 1, sizeof(int));
    size_t k = 0;
    if (!ids) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        const char *name = PyUnicode_AsUTF8(PyList_GET_ITEM(only, i));
        int id = name ? cellar_graph_find(ctx->g, name) : -1;
        if (!name) {
            PyMem_Free(ids);
            return -1;
        }
        if (id >= 0)
            ids[k++] = id;
    }
    int rc = run_plan_order(ctx, ids, k);
    PyMem_Free(ids);
    return rc;
}

int run_plan_statuses(run_ctx *ctx, cellar_state *st, PyObject *inputs,
                      PyObject *behaviors, PyObject *only)
{
    cellar_error err;
    if (run_start(ctx, st, inputs) < 0 || run_apply_behaviors(ctx, behaviors) < 0)
        return -1;
    if (cellar_graph_toposort(ctx->g, NULL, 0, ctx->order, &ctx->norder, &err) !=
        CELLAR_OK) {
        PyErr_Format(st->RunError, "%s", err.message);
        return -1;
    }
    if (only && plan_only(ctx, only) < 0)
        return -1;
    for (size_t i = 0; i < ctx->norder; i++) {
        slot *s = &ctx->slots[ctx->order[i]];
        int rc = run_node_key(ctx, ctx->order[i], NULL);
        if (rc < 0)
            return -1;
        if (rc > 0)
            continue; /* needs input (ST_FAILED), or after one that does (ST_SKIPPED) */
        if (s->behavior == CELLAR_BEHAVIOR_IGNORE) {
            /* "needs run" (it runs when a run needs it), not in the way of
             * its dependants, whose keys hold the marker. */
            s->dv = run_ignored_version();
            continue;
        }
        if (s->behavior == CELLAR_BEHAVIOR_DISABLE) {
            run_set_error(s, ST_SKIPPED, PyUnicode_FromString("needs run"));
            continue;
        }
        cellar_key_record rec;
        int hit = run_memo_lookup(ctx, s);
        if (hit < 0)
            return -1;
        if (!hit && ctx->reader &&
            cellar_reader_get_key(ctx->reader, &s->key, &rec, &err) == CELLAR_OK &&
            cellar_reader_has_result(ctx->reader, &rec.data_version)) {
            s->dv = rec.data_version;
            hit = 1;
        }
        if (hit && s->behavior == CELLAR_BEHAVIOR_RECOMPUTE) {
            /* "needs run": it runs again; its dependants are planned with its
             * last value, which early cutoff keeps them on when it is equal. */
            s->status = ST_PENDING;
            continue;
        }
        if (hit)
            s->status = ST_LOADED;
        else /* its value is unknown until it runs, so dependants need a run too */
            run_set_error(s, ST_SKIPPED, PyUnicode_FromString("needs run"));
    }
    return 0;
}
