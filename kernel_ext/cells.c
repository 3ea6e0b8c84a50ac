/*
 * cells.c - turns executed cells into graph nodes.
 *
 * pre_run_cell scans the raw cell (the runtime's scanner) and remembers, for
 * each top-level function it finds, what the name was bound to before the
 * cell ran.  post_run_cell then registers every name that the cell actually
 * rebound: a cell that failed before its `def` keeps the old function and the
 * old code version together, so the two can never disagree.  A cell with a
 * cellId that no longer defines a function removes that node.  The registry
 * maps names to capsules holding a cellar_fn.
 */
#include "cellar_ext.h"

#define FN_CAPSULE "cellar.fn"

static void fn_free(cellar_fn *fn)
{
    if (!fn)
        return;
    Py_XDECREF(fn->name);
    Py_XDECREF(fn->func);
    Py_XDECREF(fn->cell_id);
    for (Py_ssize_t i = 0; i < fn->nparams; i++)
        Py_XDECREF(fn->param_names[i]);
    PyMem_Free(fn->param_names);
    PyMem_Free(fn->kinds);
    PyMem_Free(fn->has_default);
    PyMem_Free(fn);
}

static void capsule_destructor(PyObject *capsule)
{
    fn_free((cellar_fn *)PyCapsule_GetPointer(capsule, FN_CAPSULE));
}

cellar_fn *cellar_fn_of(PyObject *capsule)
{
    return (cellar_fn *)PyCapsule_GetPointer(capsule, FN_CAPSULE);
}

static PyObject *fn_capsule(const cellar_function *f, PyObject *name, PyObject *func,
                            PyObject *cell_id)
{
    cellar_fn *fn = PyMem_Calloc(1, sizeof *fn);
    if (!fn)
        return PyErr_NoMemory();
    size_t n = f->nparams;
    fn->param_names = PyMem_Calloc(n ? n : 1, sizeof(PyObject *));
    fn->kinds = PyMem_Calloc(n ? n : 1, sizeof(cellar_param_kind));
    fn->has_default = PyMem_Calloc(n ? n : 1, sizeof(bool));
    if (!fn->param_names || !fn->kinds || !fn->has_default) {
        fn_free(fn);
        return PyErr_NoMemory();
    }
    fn->name = Py_NewRef(name);
    fn->func = Py_NewRef(func);
    fn->cell_id = Py_NewRef(cell_id);
    fn->source_version = f->code_version;
    for (size_t i = 0; i < n; i++) {
        fn->param_names[i] = PyUnicode_FromString(f->params[i].name);
        if (!fn->param_names[i]) {
            fn_free(fn);
            return NULL;
        }
        PyUnicode_InternInPlace(&fn->param_names[i]);
        fn->kinds[i] = f->params[i].kind;
        fn->has_default[i] = f->params[i].has_default;
        fn->nparams = (Py_ssize_t)i + 1;
    }
    PyObject *cap = PyCapsule_New(fn, FN_CAPSULE, capsule_destructor);
    if (!cap)
        fn_free(fn);
    return cap;
}

/* Registers the functions of `scan` that the executed cell bound in `ns`. */
static int register_scan(cellar_state *st, const cellar_scan *scan, PyObject *cell_id,
                         PyObject *previous, PyObject *ns)
{
    PyObject *defined = PySet_New(NULL);
    if (!defined)
        return -1;
    size_t n = cellar_scan_function_count(scan);
    for (size_t i = 0; i < n; i++) {
        const cellar_function *f = cellar_scan_function_at(scan, i);
        PyObject *name = PyUnicode_FromString(f->name);
        if (!name || PySet_Add(defined, name) < 0) {
            Py_XDECREF(name);
            Py_DECREF(defined);
            return -1;
        }
        PyObject *obj = PyDict_GetItemWithError(ns, name); /* borrowed */
        PyObject *before = previous ? PyDict_GetItemWithError(previous, name) : NULL;
        if (PyErr_Occurred()) {
            Py_DECREF(name);
            Py_DECREF(defined);
            return -1;
        }
        if (obj && obj != before && PyCallable_Check(obj)) {
            PyObject *cap = fn_capsule(f, name, obj, cell_id);
            if (!cap || PyDict_SetItem(st->functions, name, cap) < 0) {
                Py_XDECREF(cap);
                Py_DECREF(name);
                Py_DECREF(defined);
                return -1;
            }
            Py_DECREF(cap);
        }
        Py_DECREF(name);
    }
    /* A cell re-run under the same cellId without a function drops its node. */
    int rc = 0;
    if (PyUnicode_Check(cell_id)) {
        PyObject *items = PyDict_Items(st->functions);
        if (!items) {
            Py_DECREF(defined);
            return -1;
        }
        for (Py_ssize_t i = 0; rc == 0 && i < PyList_GET_SIZE(items); i++) {
            PyObject *pair = PyList_GET_ITEM(items, i);
            PyObject *name = PyTuple_GET_ITEM(pair, 0);
            cellar_fn *fn = cellar_fn_of(PyTuple_GET_ITEM(pair, 1));
            if (!PyUnicode_Check(fn->cell_id))
                continue;
            int same = PyUnicode_Compare(fn->cell_id, cell_id) == 0;
            int kept = PySet_Contains(defined, name);
            if (kept < 0)
                rc = -1;
            else if (same && !kept)
                rc = PyDict_DelItem(st->functions, name);
        }
        Py_DECREF(items);
    }
    Py_DECREF(defined);
    return rc;
}

static void scan_capsule_destructor(PyObject *capsule)
{
    cellar_scan_free((cellar_scan *)PyCapsule_GetPointer(capsule, "cellar.scan"));
}

static cellar_scan *scan_text(const char *src, Py_ssize_t len)
{
    cellar_scan *scan = NULL;
    cellar_error err;
    if (cellar_scan_source(src, (size_t)len, &scan, &err) != CELLAR_OK) {
        PyErr_NoMemory();
        return NULL;
    }
    return scan;
}

int cellar_register_source(cellar_state *st, const char *src, Py_ssize_t len,
                           PyObject *cell_id)
{
    PyObject *ns = cellar_user_ns(st);
    if (!ns)
        return -1;
    cellar_scan *scan = scan_text(src, len);
    if (!scan)
        return -1;
    int rc = register_scan(st, scan, cell_id, NULL, ns);
    cellar_scan_free(scan);
    return rc;
}

static PyObject *get_cell_id(PyObject *info)
{
    PyObject *cell_id = PyObject_GetAttrString(info, "cell_id");
    if (!cell_id) {
        PyErr_Clear(); /* older IPython has no cell_id */
        Py_RETURN_NONE;
    }
    if (!PyUnicode_Check(cell_id) || PyUnicode_GET_LENGTH(cell_id) == 0) {
        Py_DECREF(cell_id);
        Py_RETURN_NONE;
    }
    return cell_id;
}

/* Hook failures must not break the user's cell: report and carry on. */
static PyObject *hook_failed(const char *hook)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    PyObject *msg = value ? PyObject_Str(value) : NULL;
    if (!msg)
        PyErr_Clear();
    cellar_warn("%s hook failed: %s", hook,
                msg ? PyUnicode_AsUTF8(msg) : "unknown error");
    if (PyErr_Occurred())
        PyErr_Clear();
    Py_XDECREF(msg);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    Py_RETURN_NONE;
}

/* The cell that loaded the extension ran before the hooks existed, so what
 * its names were bound to before is unknown: register what it defined now. */
static PyObject *register_loading_cell(cellar_state *st, PyObject *result)
{
    PyObject *info = PyObject_GetAttrString(result, "info");
    PyObject *raw = info ? PyObject_GetAttrString(info, "raw_cell") : NULL;
    PyObject *cell_id = info ? get_cell_id(info) : NULL;
    Py_ssize_t len;
    const char *src =
        raw && PyUnicode_Check(raw) ? PyUnicode_AsUTF8AndSize(raw, &len) : NULL;
    int rc = (src && cell_id) ? cellar_register_source(st, src, len, cell_id) : -1;
    Py_XDECREF(info);
    Py_XDECREF(raw);
    Py_XDECREF(cell_id);
    if (rc < 0)
        return hook_failed("post_run_cell");
    Py_RETURN_NONE;
}

PyObject *cellar_pre_run_cell(PyObject *module, PyObject *info)
{
    cellar_state *st = cellar_state_of(module);
    if (PyDict_GET_SIZE(st->pending) > 64) /* hooks that never got their post_run_cell */
        PyDict_Clear(st->pending);
    PyObject *raw = PyObject_GetAttrString(info, "raw_cell");
    if (!raw)
        return hook_failed("pre_run_cell");
    Py_ssize_t len;
    const char *src = PyUnicode_Check(raw) ? PyUnicode_AsUTF8AndSize(raw, &len) : NULL;
    if (!src) {
        Py_DECREF(raw);
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    cellar_scan *scan = scan_text(src, len);
    Py_DECREF(raw);
    if (!scan)
        return hook_failed("pre_run_cell");
    PyObject *ns = cellar_user_ns(st);
    PyObject *previous = PyDict_New();
    PyObject *cap = PyCapsule_New(scan, "cellar.scan", scan_capsule_destructor);
    if (!cap)
        cellar_scan_free(scan);
    if (!ns || !previous || !cap)
        goto fail;
    for (size_t i = 0; i < cellar_scan_function_count(scan); i++) {
        const char *name = cellar_scan_function_at(scan, i)->name;
        PyObject *obj = PyDict_GetItemString(ns, name);
        if (obj && PyDict_SetItemString(previous, name, obj) < 0)
            goto fail;
    }
    PyObject *entry = PyTuple_Pack(2, cap, previous);
    if (!entry || PyDict_SetItem(st->pending, info, entry) < 0) {
        Py_XDECREF(entry);
        goto fail;
    }
    Py_DECREF(entry);
    Py_DECREF(previous);
    Py_DECREF(cap);
    Py_RETURN_NONE;
fail:
    Py_XDECREF(previous);
    Py_XDECREF(cap);
    return hook_failed("pre_run_cell");
}

PyObject *cellar_post_run_cell(PyObject *module, PyObject *result)
{
    cellar_state *st = cellar_state_of(module);
    bool loading = st->loading_cell;
    st->loading_cell = false;
    PyObject *info = PyObject_GetAttrString(result, "info");
    if (!info)
        return hook_failed("post_run_cell");
    PyObject *pending = PyDict_GetItemWithError(st->pending, info);
    if (pending) {
        Py_INCREF(pending);
        if (PyDict_DelItem(st->pending, info) < 0)
            PyErr_Clear();
    }
    if (!pending) { /* post_run_cell can come without pre_run_cell */
        Py_DECREF(info);
        if (PyErr_Occurred())
            return hook_failed("post_run_cell");
        return loading ? register_loading_cell(st, result) : Py_NewRef(Py_None);
    }
    PyObject *early = PyObject_GetAttrString(result, "error_before_exec");
    int skip = !early || PyObject_IsTrue(early) == 1;
    Py_XDECREF(early);
    PyErr_Clear();
    int rc = 0;
    if (!skip) {
        PyObject *cell_id = get_cell_id(info);
        cellar_scan *scan =
            PyCapsule_GetPointer(PyTuple_GET_ITEM(pending, 0), "cellar.scan");
        PyObject *ns = cellar_user_ns(st);
        rc = (cell_id && scan && ns)
                 ? register_scan(st, scan, cell_id, PyTuple_GET_ITEM(pending, 1), ns)
                 : -1;
        Py_XDECREF(cell_id);
    }
    Py_DECREF(info);
    Py_DECREF(pending);
    if (rc < 0)
        return hook_failed("post_run_cell");
    Py_RETURN_NONE;
}

int cellar_prune_functions(cellar_state *st, PyObject *ns)
{
    PyObject *name, *cap;
    Py_ssize_t pos = 0;
    PyObject *gone = NULL;
    while (PyDict_Next(st->functions, &pos, &name, &cap)) {
        PyObject *obj = PyDict_GetItemWithError(ns, name);
        if (!obj && PyErr_Occurred()) {
            Py_XDECREF(gone);
            return -1;
        }
        if (obj == cellar_fn_of(cap)->func)
            continue;
        if (!gone && !(gone = PyList_New(0)))
            return -1;
        if (PyList_Append(gone, name) < 0) {
            Py_DECREF(gone);
            return -1;
        }
    }
    int rc = 0;
    for (Py_ssize_t i = 0; gone && rc == 0 && i < PyList_GET_SIZE(gone); i++)
        rc = PyDict_DelItem(st->functions, PyList_GET_ITEM(gone, i));
    Py_XDECREF(gone);
    return rc;
}
