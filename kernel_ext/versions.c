/*
 * versions.c - code versions and data versions.
 *
 * A data version is the fingerprint of a value's pickle (protocol 5): the
 * stream, then each out-of-band buffer hashed in place, so a 1 GiB array is
 * never copied to be fingerprinted.  The stream names the type, dtype, shape
 * and column names, so equal bytes of different shapes never share a version.
 *
 * A code version is the scanner's hash of the function's normalized source,
 * combined with what the body reads from the notebook, found from the names
 * its code objects use (co_names, nested code included): notebook functions
 * by their own code versions (recursively), notebook classes by their
 * methods' code, and module-level values by their data versions.  Modules,
 * builtins and library functions are not part of it.
 */
#include "cellar_ext.h"

#include <time.h>
#include <unistd.h>

void cellar_pickled_release(cellar_pickled *p)
{
    for (size_t i = 1; i < p->nsegs; i++)
        PyBuffer_Release(&p->views[i - 1]);
    PyMem_Free(p->views);
    PyMem_Free(p->segs);
    Py_CLEAR(p->stream);
    Py_CLEAR(p->buffers);
    p->views = NULL;
    p->segs = NULL;
    p->nsegs = 0;
}

static int fill_segments(cellar_state *st, cellar_pickled *p)
{
    Py_ssize_t nbuf = PyList_GET_SIZE(p->buffers);
    p->segs = PyMem_Calloc((size_t)nbuf + 1, sizeof(cellar_segment));
    p->views = PyMem_Calloc(nbuf ? (size_t)nbuf : 1, sizeof(Py_buffer));
    if (!p->segs || !p->views) {
        PyErr_NoMemory();
        return -1;
    }
    p->segs[0].data = PyBytes_AS_STRING(p->stream);
    p->segs[0].len = (size_t)PyBytes_GET_SIZE(p->stream);
    p->nsegs = 1;
    cellar_fingerprint_reset(st->fp);
    cellar_fingerprint_add(st->fp, CELLAR_SEG_STREAM, p->segs[0].data, p->segs[0].len);
    p->size = p->segs[0].len;
    for (Py_ssize_t i = 0; i < nbuf; i++) {
        Py_buffer *v = &p->views[i];
        if (PyObject_GetBuffer(PyList_GET_ITEM(p->buffers, i), v, PyBUF_ANY_CONTIGUOUS) <
            0)
            return -1;
        p->nsegs++;
        p->segs[i + 1].data = v->buf;
        p->segs[i + 1].len = (size_t)v->len;
        cellar_fingerprint_add(st->fp, CELLAR_SEG_BUFFER, v->buf, (size_t)v->len);
        p->size += (uint64_t)v->len;
    }
    p->dv = cellar_fingerprint_digest(st->fp);
    return 0;
}

int cellar_pickle(cellar_state *st, PyObject *value, cellar_pickled *out, PyObject **why)
{
    memset(out, 0, sizeof *out);
    *why = NULL;
    out->buffers = PyList_New(0);
    if (!out->buffers)
        return -1;
    PyObject *append = PyObject_GetAttrString(out->buffers, "append");
    PyObject *kwnames = PyTuple_Pack(2, st->str_protocol, st->str_buffer_callback);
    if (!append || !kwnames) {
        Py_XDECREF(append);
        Py_XDECREF(kwnames);
        cellar_pickled_release(out);
        return -1;
    }
    PyObject *args[] = {value, st->int_five, append};
    out->stream = PyObject_Vectorcall(st->pickle_dumps, args, 1, kwnames);
    Py_DECREF(append);
    Py_DECREF(kwnames);
    if (!out->stream) {
        cellar_pickled_release(out);
        if (PyErr_ExceptionMatches(PyExc_Exception) &&
            !PyErr_ExceptionMatches(PyExc_MemoryError)) {
            PyObject *type, *val, *tb;
            PyErr_Fetch(&type, &val, &tb);
            PyErr_NormalizeException(&type, &val, &tb);
            *why = val ? PyObject_Str(val) : NULL;
            if (!*why) {
                PyErr_Clear();
                *why = PyUnicode_FromString("pickling failed");
            }
            Py_XDECREF(type);
            Py_XDECREF(val);
            Py_XDECREF(tb);
            return *why ? 1 : -1;
        }
        return -1;
    }
    if (!PyBytes_Check(out->stream)) {
        cellar_pickled_release(out);
        PyErr_SetString(PyExc_TypeError, "pickle.dumps did not return bytes");
        return -1;
    }
    if (fill_segments(st, out) < 0) {
        cellar_pickled_release(out);
        return -1;
    }
    return 0;
}

cellar_hash cellar_unique_version(cellar_state *st)
{
    return cellar_hash_unique(&st->unique_counter);
}

int cellar_data_version(cellar_state *st, PyObject *value, cellar_hash *out,
                        bool *picklable)
{
    cellar_pickled p;
    PyObject *why = NULL;
    int rc = cellar_pickle(st, value, &p, &why);
    if (rc < 0)
        return -1;
    if (rc == 1) {
        Py_DECREF(why);
        *picklable = false;
        *out = cellar_unique_version(st);
        return 0;
    }
    *picklable = true;
    *out = p.dv;
    cellar_pickled_release(&p);
    return 0;
}

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
    if (PyErr_Occurred() || cellar_data_version(st, v, out, &picklable) < 0) {
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
