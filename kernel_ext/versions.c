/*
 * versions.c - code versions (data versions are in values.c).
 *
 * A code version is the scanner's hash of the function's normalized source,
 * combined with what the body reads from the notebook, found from the names
 * its code objects use (co_names, nested code included): notebook functions
 * by their own code versions (recursively), notebook classes by their
 * methods' code, and module-level values by their data versions.  Modules,
 * builtins and library functions are not part of it.
 */
#include "cellar_ext.h"

/* ---- code versions ---- */

/* Adds the names used by `code` and its nested code objects to `names`
 * (ordered, unique through `seen`). */
static int collect_names(PyObject *code, PyObject *names, PyObject *seen, int depth)
{
    if (depth > 64)
        return 0;
    PyObject *co_names = PyObject_GetAttrString(code, "co_names");
    PyObject *co_consts = co_names ? PyObject_GetAttrString(code, "co_consts") : NULL;
    int rc =
        (co_names && co_consts && PyTuple_Check(co_names) && PyTuple_Check(co_consts))
            ? 0
            : -1;
    for (Py_ssize_t i = 0; rc == 0 && i < PyTuple_GET_SIZE(co_names); i++) {
        PyObject *name = PyTuple_GET_ITEM(co_names, i);
        int has = PySet_Contains(seen, name);
        if (has < 0 ||
            (!has && (PySet_Add(seen, name) < 0 || PyList_Append(names, name) < 0)))
            rc = -1;
    }
    for (Py_ssize_t i = 0; rc == 0 && i < PyTuple_GET_SIZE(co_consts); i++) {
        PyObject *c = PyTuple_GET_ITEM(co_consts, i);
        if (PyCode_Check(c))
            rc = collect_names(c, names, seen, depth + 1);
    }
    Py_XDECREF(co_names);
    Py_XDECREF(co_consts);
    return rc;
}

/* Whether `code` or a nested code object reads any name: most small nodes
 * read none, and then no name set needs building. */
static bool uses_names(PyObject *code)
{
    PyCodeObject *co = (PyCodeObject *)code;
    if (PyTuple_GET_SIZE(co->co_names) > 0)
        return true;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(co->co_consts); i++)
        if (PyCode_Check(PyTuple_GET_ITEM(co->co_consts, i)))
            return true;
    return false;
}

/* The code object behind a callable, through decorators' __wrapped__; NULL
 * (no error) when it has none. */
static PyObject *code_of(PyObject *obj)
{
    PyObject *cur = Py_NewRef(obj);
    for (int i = 0; i < 16; i++) {
        if (PyFunction_Check(cur)) {
            PyObject *code = Py_NewRef(PyFunction_GET_CODE(cur));
            Py_DECREF(cur);
            return code;
        }
        PyObject *next = NULL;
        if (cellar_optional_attr(cur, "__wrapped__", &next) <= 0) {
            PyErr_Clear();
            break;
        }
        Py_SETREF(cur, next);
    }
    Py_DECREF(cur);
    return NULL;
}

static int defined_in_main(PyObject *obj)
{
    PyObject *mod = NULL;
    if (cellar_optional_attr(obj, "__module__", &mod) < 0) {
        PyErr_Clear();
        return 0;
    }
    int main = mod && PyUnicode_Check(mod) &&
               PyUnicode_CompareWithASCIIString(mod, "__main__") == 0;
    Py_XDECREF(mod);
    return main;
}

/* Fingerprint of a code object that the scanner did not see (a lambda or a
 * function bound by exec): marshal gives its exact bytecode and constants. */
static int marshal_version(cellar_state *st, PyObject *code, cellar_hash *out)
{
    PyObject *bytes = PyObject_CallFunctionObjArgs(st->marshal_dumps, code, NULL);
    if (!bytes)
        return -1;
    *out = cellar_hash_bytes(PyBytes_AS_STRING(bytes), (size_t)PyBytes_GET_SIZE(bytes));
    Py_DECREF(bytes);
    return 0;
}

static int class_version(cellar_state *st, PyObject *cls, cellar_hash *out)
{
    PyObject *dict = PyObject_GetAttrString(cls, "__dict__");
    PyObject *items = dict ? PyMapping_Items(dict) : NULL;
    Py_XDECREF(dict);
    if (!items)
        return -1;
    cellar_key *k = cellar_key_new();
    if (!k) {
        Py_DECREF(items);
        PyErr_NoMemory();
        return -1;
    }
    const char *qual = ((PyTypeObject *)cls)->tp_name;
    cellar_key_add_str(k, qual, strlen(qual));
    int rc = 0;
    for (Py_ssize_t i = 0; rc == 0 && i < PyList_GET_SIZE(items); i++) {
        PyObject *pair = PyList_GET_ITEM(items, i);
        PyObject *code = code_of(PyTuple_GET_ITEM(pair, 1));
        if (!code)
            continue;
        cellar_hash h;
        Py_ssize_t n;
        const char *name = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(pair, 0), &n);
        rc = name ? marshal_version(st, code, &h) : -1;
        Py_DECREF(code);
        if (rc == 0) {
            cellar_key_add_str(k, name, (size_t)n);
            cellar_key_add_hash(k, &h);
        }
    }
    if (rc == 0)
        *out = cellar_key_digest(k);
    cellar_key_free(k);
    Py_DECREF(items);
    return rc;
}

static int is_ipython_name(cellar_state *st, PyObject *name)
{
    if (!st->shell)
        return 0;
    PyObject *hidden = NULL;
    if (cellar_optional_attr(st->shell, "user_ns_hidden", &hidden) <= 0) {
        PyErr_Clear();
        return 0;
    }
    int r = PyDict_Check(hidden) ? PyDict_Contains(hidden, name) : 0;
    Py_DECREF(hidden);
    if (r < 0) {
        PyErr_Clear();
        r = 0;
    }
    return r;
}

/* Version of a module-level value `v` named `name`, memoized for the run. */
static int global_version(cellar_state *st, PyObject *name, PyObject *v, PyObject *memo,
                          cellar_hash *out)
{
    PyObject *mkey = PyTuple_Pack(2, Py_None, name);
    if (!mkey)
        return -1;
    PyObject *hit = PyDict_GetItemWithError(memo, mkey);
    if (hit) {
        memcpy(out->bytes, PyBytes_AS_STRING(hit), 16);
        Py_DECREF(mkey);
        return 0;
    }
    bool picklable;
    if (PyErr_Occurred() || cellar_data_version(st, v, memo, out, &picklable) < 0) {
        Py_DECREF(mkey);
        return -1;
    }
    if (!picklable && PySet_Contains(st->warned, name) == 0) {
        PySet_Add(st->warned, name);
        cellar_warn("global '%s' cannot be pickled, so the nodes that read it rerun on "
                    "every run",
                    PyUnicode_AsUTF8(name));
    }
    PyObject *b = PyBytes_FromStringAndSize((const char *)out->bytes, 16);
    int rc = b ? PyDict_SetItem(memo, mkey, b) : -1;
    Py_XDECREF(b);
    Py_DECREF(mkey);
    return rc;
}

/* What `name` contributes to a code version; *skip when nothing. */
static int dependency_version(cellar_state *st, PyObject *name, PyObject *ns,
                              PyObject *memo, cellar_hash *out, bool *skip)
{
    *skip = true;
    PyObject *v = PyDict_GetItemWithError(ns, name);
    if (!v)
        return PyErr_Occurred() ? -1 : 0;
    if (PyModule_Check(v) || is_ipython_name(st, name))
        return 0;
    PyObject *cap = PyDict_GetItemWithError(st->functions, name);
    if (cap && cellar_fn_of(cap)->func == v) {
        *skip = false;
        return cellar_code_version(st, cellar_fn_of(cap), ns, memo, out);
    }
    if (PyErr_Occurred())
        return -1;
    if (PyType_Check(v)) {
        if (!defined_in_main(v))
            return 0;
        *skip = false;
        return class_version(st, v, out);
    }
    if (PyFunction_Check(v) || PyCFunction_Check(v) || PyMethod_Check(v) ||
        Py_TYPE(v) == &PyMethodDescr_Type || Py_TYPE(v) == &PyWrapperDescr_Type) {
        if (!PyFunction_Check(v) || !defined_in_main(v))
            return 0;
        *skip = false;
        return marshal_version(st, PyFunction_GET_CODE(v), out);
    }
    *skip = false;
    return global_version(st, name, v, memo, out);
}

int cellar_code_version(cellar_state *st, cellar_fn *fn, PyObject *ns, PyObject *memo,
                        cellar_hash *out)
{
    PyObject *hit = PyDict_GetItemWithError(memo, fn->name);
    if (hit) {
        if (hit == Py_None) /* recursion: the cycle is covered by its entry point */
            *out = fn->source_version;
        else
            memcpy(out->bytes, PyBytes_AS_STRING(hit), 16);
        return 0;
    }
    if (PyErr_Occurred() || PyDict_SetItem(memo, fn->name, Py_None) < 0)
        return -1;
    PyObject *code = code_of(fn->func);
    PyObject *names = PyList_New(0), *seen = NULL;
    int rc = names ? 0 : -1;
    if (rc == 0 && code && uses_names(code)) {
        seen = PySet_New(NULL);
        rc = seen ? collect_names(code, names, seen, 0) : -1;
    }
    Py_XDECREF(code);
    Py_XDECREF(seen);
    Py_ssize_t n = names ? PyList_GET_SIZE(names) : 0;
    cellar_hash *deps = rc == 0 ? PyMem_Calloc(n ? (size_t)n : 1, sizeof *deps) : NULL;
    bool *used = rc == 0 ? PyMem_Calloc(n ? (size_t)n : 1, sizeof *used) : NULL;
    if (rc == 0 && (!deps || !used)) {
        PyErr_NoMemory();
        rc = -1;
    }
    Py_ssize_t nused = 0;
    for (Py_ssize_t i = 0; rc == 0 && i < n; i++) {
        bool skip;
        rc = dependency_version(st, PyList_GET_ITEM(names, i), ns, memo, &deps[i], &skip);
        used[i] = !skip;
        nused += !skip;
    }
    if (rc == 0) {
        cellar_key *k = st->keyenc;
        cellar_key_reset(k);
        cellar_key_add_str(k, "code", 4);
        cellar_key_add_hash(k, &fn->source_version);
        cellar_key_add_list(k, (size_t)nused);
        for (Py_ssize_t i = 0; i < n; i++) {
            if (!used[i])
                continue;
            Py_ssize_t len;
            const char *s = PyUnicode_AsUTF8AndSize(PyList_GET_ITEM(names, i), &len);
            cellar_key_add_list(k, 2);
            cellar_key_add_str(k, s ? s : "", s ? (size_t)len : 0);
            cellar_key_add_hash(k, &deps[i]);
        }
        *out = cellar_key_digest(k);
        PyObject *b = PyBytes_FromStringAndSize((const char *)out->bytes, 16);
        rc = b ? PyDict_SetItem(memo, fn->name, b) : -1;
        Py_XDECREF(b);
    }
    PyMem_Free(deps);
    PyMem_Free(used);
    Py_XDECREF(names);
    return rc;
}

/* TEMPORARY shim: replaced by code_version.c (the codever branch) at the merge.
 * Built on what this file has: a registered node by its full code version,
 * another notebook function by marshal_version, a class by class_version. */
int cellar_object_code_version(cellar_state *st, PyObject *obj, PyObject *memo,
                               cellar_hash *out)
{
    if (PyMethod_Check(obj))
        obj = PyMethod_GET_FUNCTION(obj);
    if (PyType_Check(obj))
        return defined_in_main(obj) ? (class_version(st, obj, out) < 0 ? -1 : 1) : 0;
    if (!PyFunction_Check(obj) || !defined_in_main(obj))
        return 0;
    PyObject *cap =
        PyDict_GetItemWithError(st->functions, ((PyFunctionObject *)obj)->func_name);
    if (!cap && PyErr_Occurred())
        return -1;
    if (!cap || cellar_fn_of(cap)->func != obj)
        return marshal_version(st, PyFunction_GET_CODE(obj), out) < 0 ? -1 : 1;
    PyObject *own = NULL, *ns = cellar_user_ns(st);
    if (!ns || (!memo && !(memo = own = PyDict_New())))
        return -1;
    int rc = cellar_code_version(st, cellar_fn_of(cap), ns, memo, out);
    Py_XDECREF(own);
    return rc < 0 ? -1 : 1;
}
