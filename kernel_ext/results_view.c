/*
 * results_view.c - `cellar.results`, the nodes' current results as
 * attributes, loaded only when one is read.
 *
 * `cellar.results.NAME` plans the graph as `%cellar status` does (keys from
 * the current code and inputs, nothing loaded), then gives the value of
 * NAME's key: the one this session holds when it still has its data version,
 * else the stored one, loaded (and verified, unless CELLAR_VERIFY=0) at that
 * moment and kept for the session like a loaded value of a run.  It never
 * computes: a node whose key has no result, or cannot be known (an input is
 * missing, something upstream has not run), raises cellar.NoResultError,
 * which is both a LookupError and an AttributeError (so getattr with a
 * default and hasattr work), saying what to run.  Inputs are resolved as a
 * run resolves them without --input: globals, then defaults;
 * `cellar.results(NAME=VALUE, ...)` is a view with those inputs given.
 * dir() lists the registered nodes.
 */
#include "cellar_ext.h"

typedef struct results_view {
    PyObject_HEAD PyObject *inputs; /* dict: the inputs given to this view */
} results_view;

static cellar_state *state_of_view(PyObject *self)
{
    PyObject *module = PyType_GetModule(Py_TYPE(self));
    return module ? cellar_state_of(module) : NULL;
}

static void view_dealloc(results_view *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    Py_CLEAR(self->inputs);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static int view_traverse(results_view *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->inputs);
    return 0;
}

static PyObject *view_new(PyTypeObject *tp, PyObject *inputs)
{
    results_view *self = PyObject_GC_New(results_view, tp);
    if (!self)
        return NULL;
    self->inputs = Py_NewRef(inputs);
    PyObject_GC_Track(self);
    return (PyObject *)self;
}

/* The registered node names, sorted (a new list). */
static PyObject *node_names(cellar_state *st)
{
    PyObject *names = PyList_New(0);
    PyObject *name, *cap;
    Py_ssize_t pos = 0;
    while (names && PyDict_Next(st->functions, &pos, &name, &cap)) {
        if (PyUnicode_GET_LENGTH(name) > 0 && PyUnicode_READ_CHAR(name, 0) == '_')
            continue;
        if (PyList_Append(names, name) < 0)
            Py_CLEAR(names);
    }
    if (names && PyList_Sort(names) < 0)
        Py_CLEAR(names);
    return names;
}

static PyObject *no_result(cellar_state *st, PyObject *name, const char *why)
{
    PyErr_Format(st->NoResultError,
                 "cellar.results.%U: %s; run it first (%%cellar run %U, or "
                 "cellar.run('%U')): cellar.results never computes",
                 name, why, name, name);
    return NULL;
}

/* The session's value for `key`, if it holds one (checked by the planning
 * just done): borrowed, or NULL without an error. */
static PyObject *memo_value(cellar_state *st, PyObject *name, PyObject *key)
{
    PyObject *entry = PyDict_GetItemWithError(st->memo, name);
    if (entry && PyTuple_Check(entry) && PyTuple_GET_SIZE(entry) == 4 &&
        PyBytes_Check(PyTuple_GET_ITEM(entry, 0)) &&
        PyObject_RichCompareBool(PyTuple_GET_ITEM(entry, 0), key, Py_EQ) == 1)
        return PyTuple_GET_ITEM(entry, 2);
    return NULL;
}

/* Loads the stored result of `key` and keeps it for the session. */
static PyObject *load_stored(cellar_state *st, PyObject *name, PyObject *key)
{
    cellar_reader *r = NULL;
    cellar_error err;
    err.message[0] = '\0';
    if (!st->store || cellar_reader_begin(st->store, &r, &err) != CELLAR_OK)
        return no_result(st, name, "the store cannot be read");
    cellar_hash k;
    memcpy(k.bytes, PyBytes_AS_STRING(key), 16);
    cellar_key_record rec;
    cellar_status status = cellar_reader_get_key(r, &k, &rec, &err);
    PyObject *value = NULL;
    if (status == CELLAR_OK)
        value = cellar_load_value(st, r, &rec.data_version, &status, &err);
    cellar_reader_end(r);
    if (!value) {
        if (PyErr_Occurred() && (PyErr_ExceptionMatches(PyExc_MemoryError) ||
                                 PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)))
            return NULL;
        /* Gone since the planning (collected), damaged or not unpicklable: a run
         * recomputes it.  The unpickling error, if any, is the cause. */
        PyObject *cause = PyErr_Occurred() ? cellar_fetch_exception() : NULL;
        no_result(st, name,
                  status == CELLAR_ECORRUPT
                      ? "its stored result is damaged (checksum mismatch)"
                      : "its stored result cannot be loaded");
        PyObject *exc = cause ? cellar_fetch_exception() : NULL;
        if (exc) {
            PyException_SetCause(exc, cause); /* steals `cause` */
            PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
            Py_DECREF(exc);
        } else {
            Py_XDECREF(cause);
        }
        return NULL;
    }
    PyObject *dv = PyBytes_FromStringAndSize((const char *)rec.data_version.bytes, 16);
    PyObject *size = PyLong_FromUnsignedLongLong(rec.size);
    PyObject *entry = dv && size ? PyTuple_Pack(4, key, dv, value, size) : NULL;
    Py_XDECREF(dv);
    Py_XDECREF(size);
    if (!entry || PyDict_SetItem(st->memo, name, entry) < 0) {
        Py_XDECREF(entry);
        Py_DECREF(value);
        return NULL;
    }
    Py_DECREF(entry);
    return value;
}

/* A node whose key cannot be known: among its ancestors a node lacks an
 * input (named, with how to give it), or has no result. */
static void missing_upstream(cellar_state *st, PyObject *attr, PyObject *name,
                             PyObject *statuses)
{
    PyObject *todo = PyList_New(0), *seen = PySet_New(NULL);
    if (!todo || !seen || PyList_Append(todo, name) < 0)
        goto done;
    while (PyList_GET_SIZE(todo) > 0) {
        Py_ssize_t last = PyList_GET_SIZE(todo) - 1;
        PyObject *node = Py_NewRef(PyList_GET_ITEM(todo, last));
        PyObject *entry = PyDict_GetItemWithError(statuses, node);
        PyObject *cap = entry ? PyDict_GetItemWithError(st->functions, node) : NULL;
        int visited = cap ? PySet_Contains(seen, node) : 1;
        if (PyErr_Occurred() || PyList_SetSlice(todo, last, last + 1, NULL) < 0 ||
            (visited == 0 && PySet_Add(seen, node) < 0)) {
            Py_DECREF(node);
            goto done;
        }
        Py_DECREF(node);
        if (visited) /* an input, or a node already looked at */
            continue;
        PyObject *why = PyTuple_GET_ITEM(entry, 2);
        if (PyUnicode_Check(why) && PyUnicode_CompareWithASCIIString(
                                        PyTuple_GET_ITEM(entry, 0), "needs input") == 0) {
            PyErr_Format(st->NoResultError,
                         "cellar.results.%U: its key cannot be known: %U (here: "
                         "cellar.results(NAME=VALUE).%U)",
                         attr, why, attr);
            goto done;
        }
        cellar_fn *fn = cellar_fn_of(cap);
        for (Py_ssize_t i = 0; i < fn->nparams; i++)
            if (PyList_Append(todo, fn->param_names[i]) < 0)
                goto done;
    }
    no_result(st, attr,
              "its key cannot be known yet: a node it needs has no result for the "
              "current code and inputs");
done:
    Py_XDECREF(todo);
    Py_XDECREF(seen);
}

static PyObject *result_of(results_view *self, PyObject *attr)
{
    cellar_state *st = state_of_view((PyObject *)self);
    if (!st)
        return NULL;
    if (st->running) {
        PyErr_Format(st->NoResultError,
                     "cellar.results.%U cannot be read during a run (from a node body); "
                     "make it a parameter of the node instead",
                     attr);
        return NULL;
    }
    PyObject *name = cellar_registry_normalize(attr);
    PyObject *inputs = name ? cellar_registry_normalize_keys(self->inputs) : NULL;
    PyObject *statuses = inputs ? cellar_node_statuses(st, inputs) : NULL;
    Py_XDECREF(inputs);
    PyObject *entry = statuses ? PyDict_GetItemWithError(statuses, name) : NULL;
    PyObject *out = NULL;
    if (!entry) {
        if (statuses && !PyErr_Occurred())
            PyErr_Format(st->NoResultError,
                         "cellar.results has no node '%U' (dir(cellar.results) lists "
                         "them): define a top-level function named '%U' in a cell",
                         attr, attr);
    } else {
        const char *state = PyUnicode_AsUTF8(PyTuple_GET_ITEM(entry, 0));
        PyObject *key = PyTuple_GET_ITEM(entry, 1);
        PyObject *why = PyTuple_GET_ITEM(entry, 2);
        if (!state) {
        } else if (strcmp(state, "up to date") == 0 && PyBytes_Check(key)) {
            PyObject *held = memo_value(st, name, key);
            out = held               ? Py_NewRef(held)
                  : PyErr_Occurred() ? NULL
                                     : load_stored(st, name, key);
        } else if (strcmp(state, "needs input") == 0 && PyUnicode_Check(why)) {
            PyErr_Format(st->NoResultError,
                         "cellar.results.%U: %U (here: cellar.results(NAME=VALUE).%U)",
                         attr, why, attr);
        } else if (PyBytes_Check(key)) {
            no_result(st, attr, "no result is stored for the current code and inputs");
        } else {
            missing_upstream(st, attr, name, statuses);
        }
    }
    Py_XDECREF(statuses);
    Py_XDECREF(name);
    return out;
}

static PyObject *view_getattro(results_view *self, PyObject *attr)
{
    /* Dunders and private names are the object's own; nodes never start with '_'. */
    if (!PyUnicode_Check(attr) || PyUnicode_GET_LENGTH(attr) == 0 ||
        PyUnicode_READ_CHAR(attr, 0) == '_')
        return PyObject_GenericGetAttr((PyObject *)self, attr);
    return result_of(self, attr);
}

static PyObject *view_call(results_view *self, PyObject *args, PyObject *kwargs)
{
    if (PyTuple_GET_SIZE(args) != 0) {
        PyErr_SetString(PyExc_TypeError,
                        "cellar.results(NAME=VALUE, ...) takes inputs as keywords only");
        return NULL;
    }
    PyObject *inputs = PyDict_Copy(self->inputs);
    if (!inputs || (kwargs && PyDict_Update(inputs, kwargs) < 0)) {
        Py_XDECREF(inputs);
        return NULL;
    }
    PyObject *view = view_new(Py_TYPE(self), inputs);
    Py_DECREF(inputs);
    return view;
}

static PyObject *view_dir(results_view *self, PyObject *unused)
{
    (void)unused;
    cellar_state *st = state_of_view((PyObject *)self);
    return st ? node_names(st) : NULL;
}

static PyObject *view_repr(results_view *self)
{
    cellar_state *st = state_of_view((PyObject *)self);
    PyObject *names = st ? node_names(st) : NULL;
    PyObject *sep = names ? PyUnicode_FromString(", ") : NULL;
    PyObject *text = sep ? PyUnicode_Join(sep, names) : NULL;
    PyObject *r = NULL;
    if (text)
        r = PyDict_GET_SIZE(self->inputs)
                ? PyUnicode_FromFormat("<cellar.results with inputs %R: %U>",
                                       self->inputs, text)
                : PyUnicode_FromFormat("<cellar.results: %U>", text);
    Py_XDECREF(text);
    Py_XDECREF(sep);
    Py_XDECREF(names);
    return r;
}

static PyMethodDef view_methods[] = {
    {"__dir__", (PyCFunction)view_dir, METH_NOARGS, "The registered nodes."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot view_slots[] = {
    {Py_tp_dealloc, view_dealloc},
    {Py_tp_traverse, view_traverse},
    {Py_tp_getattro, view_getattro},
    {Py_tp_call, view_call},
    {Py_tp_repr, view_repr},
    {Py_tp_methods, view_methods},
    {Py_tp_doc,
     "cellar.results.NAME: node NAME's result for the current code and inputs, loaded "
     "when read; cellar.NoResultError when it has none (it never computes). "
     "cellar.results(NAME=VALUE, ...) gives inputs."},
    {0, NULL},
};

static PyType_Spec view_spec = {
    .name = "cellar.Results",
    .basicsize = sizeof(results_view),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = view_slots,
};

int cellar_results_init(PyObject *module, cellar_state *st)
{
    PyObject *bases = PyTuple_Pack(2, PyExc_LookupError, PyExc_AttributeError);
    if (!bases)
        return -1;
    st->NoResultError = PyErr_NewExceptionWithDoc(
        "cellar.NoResultError",
        "cellar.results has no result for a node for the current code and inputs "
        "(run the node first).",
        bases, NULL);
    Py_DECREF(bases);
    if (!st->NoResultError ||
        PyModule_AddObjectRef(module, "NoResultError", st->NoResultError) < 0)
        return -1;
    PyTypeObject *tp = (PyTypeObject *)PyType_FromModuleAndSpec(module, &view_spec, NULL);
    if (!tp)
        return -1;
    PyObject *inputs = PyDict_New();
    PyObject *view = inputs ? view_new(tp, inputs) : NULL;
    Py_XDECREF(inputs);
    Py_DECREF(tp);
    if (!view)
        return -1;
    int rc = PyModule_AddObjectRef(module, "results", view);
    Py_DECREF(view);
    return rc;
}

PyObject *cellar_results_node_set(cellar_state *st, PyObject *names, const char *what)
{
    if (!names || names == Py_None)
        return NULL;
    if (PyUnicode_Check(names)) {
        PyErr_Format(PyExc_TypeError, "%s must be a list of node names, not a str", what);
        return NULL;
    }
    /* A node defined earlier in the running cell counts, as it does for the run. */
    if (cellar_hooks_register_pending(st) < 0)
        return NULL;
    PyObject *it = PyObject_GetIter(names);
    PyObject *set = it ? PySet_New(NULL) : NULL;
    PyObject *item;
    while (set && (item = PyIter_Next(it))) {
        PyObject *norm = PyUnicode_Check(item) ? cellar_registry_normalize(item) : NULL;
        if (!PyUnicode_Check(item))
            PyErr_Format(PyExc_TypeError, "%s must name nodes (str), got %R", what, item);
        PyObject *cap = norm ? PyDict_GetItemWithError(st->functions, norm) : NULL;
        if (norm && !cap && !PyErr_Occurred())
            PyErr_Format(st->RunError,
                         "%s names '%U', which is not a node: define a top-level "
                         "function named '%U' in a cell",
                         what, item, item);
        if (!cap || PyUnicode_READ_CHAR(norm, 0) == '_' || PySet_Add(set, norm) < 0) {
            if (cap && !PyErr_Occurred())
                PyErr_Format(st->RunError, "%s names '%U', a private helper, not a node",
                             what, item);
            Py_CLEAR(set);
        }
        Py_XDECREF(norm);
        Py_DECREF(item);
    }
    Py_XDECREF(it);
    if (set && PyErr_Occurred())
        Py_CLEAR(set);
    return set;
}
