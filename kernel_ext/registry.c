/*
 * registry.c - the registry of notebook-defined functions, the graph's nodes.
 *
 * The registry maps a function's name to a capsule holding a cellar_fn: the
 * object the cell bound to that name, its cellId, the scanner's hash of its
 * source and its parameters.  An entry is only ever made from a scan record
 * and the namespace together (cellar_registry_add_scan): a name is registered
 * when the namespace binds it to a new object, so a cell that failed before
 * its `def` keeps the old function and the old source hash side by side.
 * Names are kept as Python spells them: identifiers are NFKC-normalized at
 * parse time (PEP 3131), so the scanner's raw UTF-8 is normalized here, with
 * the interpreter's own unicodedata, before it is looked up or stored.
 *
 * This file is below the cell hooks and the run and calls neither; it asks
 * code_fingerprint.c for each new function's code fingerprint, and
 * behavior.c for the behaviour @cellar.node marked it with, so that the work
 * is done once per definition.
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
    Py_XDECREF(fn->leaf_code);
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

/* The interpreter's own tables, so a name is exactly the one Python's parser
 * bound, for the Unicode version this Python implements. */
PyObject *cellar_registry_normalize(PyObject *name)
{
    if (!PyUnicode_Check(name) || PyUnicode_IS_ASCII(name)) /* ASCII is NFKC already */
        return Py_NewRef(name);
    PyObject *ud = PyImport_ImportModule("unicodedata");
    PyObject *norm = ud ? PyObject_CallMethod(ud, "normalize", "sO", "NFKC", name) : NULL;
    Py_XDECREF(ud);
    if (norm && !PyUnicode_Check(norm)) {
        Py_DECREF(norm);
        PyErr_SetString(PyExc_TypeError, "unicodedata.normalize did not return str");
        return NULL;
    }
    return norm;
}

PyObject *cellar_registry_name(const char *utf8)
{
    PyObject *raw = PyUnicode_FromString(utf8);
    PyObject *norm = raw ? cellar_registry_normalize(raw) : NULL;
    Py_XDECREF(raw);
    return norm;
}

PyObject *cellar_registry_normalize_keys(PyObject *dict)
{
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    bool ascii = true;
    while (ascii && PyDict_Next(dict, &pos, &key, &value))
        ascii = !PyUnicode_Check(key) || PyUnicode_IS_ASCII(key);
    if (ascii)
        return Py_NewRef(dict);
    PyObject *out = PyDict_New();
    pos = 0;
    while (out && PyDict_Next(dict, &pos, &key, &value)) {
        PyObject *norm = cellar_registry_normalize(key);
        if (!norm || PyDict_SetItem(out, norm, value) < 0)
            Py_CLEAR(out);
        Py_XDECREF(norm);
    }
    return out;
}

static PyObject *fn_capsule(cellar_state *st, const cellar_function *f, PyObject *name,
                            PyObject *func, PyObject *cell_id)
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
    fn->behavior = cellar_behavior_of(st, func); /* @cellar.node's mark, read once */
    for (size_t i = 0; i < n; i++) {
        fn->param_names[i] = cellar_registry_name(f->params[i].name);
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

/* Drops the entries of `cell_id` whose names are not in `defined`: a cell
 * re-run under the same cellId without a function removes that node. */
static int drop_undefined(cellar_state *st, PyObject *cell_id, PyObject *defined)
{
    PyObject *items = PyDict_Items(st->functions);
    if (!items)
        return -1;
    int rc = 0;
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
    return rc;
}

int cellar_registry_add_scan(cellar_state *st, const cellar_scan *scan, PyObject *cell_id,
                             PyObject *previous, PyObject *ns, bool drop_missing)
{
    PyObject *defined = PySet_New(NULL);
    if (!defined)
        return -1;
    size_t n = cellar_scan_function_count(scan);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const cellar_function *f = cellar_scan_function_at(scan, i);
        PyObject *name = cellar_registry_name(f->name);
        if (!name || PySet_Add(defined, name) < 0) {
            Py_XDECREF(name);
            rc = -1;
            break;
        }
        PyObject *obj = PyDict_GetItemWithError(ns, name); /* borrowed */
        PyObject *before = previous ? PyDict_GetItemWithError(previous, name) : NULL;
        if (PyErr_Occurred()) {
            rc = -1;
        } else if (obj && obj != before && PyCallable_Check(obj)) {
            PyObject *cur = PyDict_GetItemWithError(st->functions, name);
            if (cur && cellar_fn_of(cur)->func == obj &&
                cellar_hash_equal(&cellar_fn_of(cur)->source_version, &f->code_version)) {
                Py_DECREF(name); /* already registered (by the run, point 7) */
                continue;
            }
            PyObject *cap =
                PyErr_Occurred() ? NULL : fn_capsule(st, f, name, obj, cell_id);
            if (!cap || PyDict_SetItem(st->functions, name, cap) < 0)
                rc = -1;
            Py_XDECREF(cap);
            /* Fingerprint the code now, once per definition, not in the first
             * run after a restart; a failure here is retried by the run. */
            cellar_hash unused;
            if (rc == 0 && PyFunction_Check(obj) &&
                cellar_code_fingerprint(st, PyFunction_GET_CODE(obj), &unused, NULL) < 0)
                PyErr_Clear();
        }
        Py_DECREF(name);
    }
    if (rc == 0 && drop_missing && PyUnicode_Check(cell_id))
        rc = drop_undefined(st, cell_id, defined);
    Py_DECREF(defined);
    return rc;
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
