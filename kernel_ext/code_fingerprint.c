/*
 * code_fingerprint.c - what is notebook code, and the structural fingerprint
 * of a code object; the leaves under code_version.c.
 *
 * Library code is code whose module was loaded from a file under one of the
 * interpreter's library directories (sysconfig's stdlib, platstdlib, purelib
 * and platlib, and site's site-packages and user site-packages, all with
 * symlinks resolved) or is built in or frozen.  Everything else with a
 * module is the user's own: `__main__`, a `helpers.py` beside the notebook,
 * a package installed in editable mode from the user's checkout.  Code with
 * no importable module (exec'd under a made-up name) counts as the user's,
 * because nothing says it is stable.
 *
 * A code object's fingerprint covers what decides what it computes: name and
 * qualified name, argument counts, flags, bytecode (co_code: the
 * unspecialized instructions, so the interpreter's adaptive rewriting does
 * not change it), names, local, cell and free variable names, the exception
 * table (offsets only, no lines), and the constants: nested code by its own
 * fingerprint, None/Ellipsis/bool/int/float/complex/str/bytes by type and
 * canonical value, tuples element by element and frozensets as the sorted
 * fingerprints of their elements, so the hash seed does not matter.  A def's
 * docstring slot is left out (the docstring does not change the result), as
 * are co_filename, co_firstlineno and the line table.  Code objects are
 * immutable, so fingerprints are cached across runs.
 */
#include "cellar_ext.h"

#include <stdlib.h>

/* ---- notebook code or library code ---- */

static PyObject *library_dirs(cellar_state *st)
{
    if (st->library_dirs)
        return st->library_dirs;
    PyObject *code = PyUnicode_FromString(
        "import os, site, sysconfig\n"
        "_d = set()\n"
        "for _k in ('stdlib', 'platstdlib', 'purelib', 'platlib'):\n"
        "    _p = sysconfig.get_paths().get(_k)\n"
        "    if _p: _d.add(_p)\n"
        "try: _d.update(site.getsitepackages())\n"
        "except Exception: pass\n"
        "try: _d.add(site.getusersitepackages())\n"
        "except Exception: pass\n"
        "dirs = tuple(sorted({os.path.join(os.path.realpath(p), '') for p in _d}))\n");
    PyObject *g = code ? PyDict_New() : NULL;
    PyObject *builtins = g ? PyEval_GetBuiltins() : NULL;
    PyObject *r = NULL;
    if (builtins && PyDict_SetItemString(g, "__builtins__", builtins) == 0)
        r = PyRun_String(PyUnicode_AsUTF8(code), Py_file_input, g, g);
    PyObject *dirs = r ? PyDict_GetItemString(g, "dirs") : NULL;
    if (dirs && PyTuple_Check(dirs))
        st->library_dirs = Py_NewRef(dirs);
    else if (r)
        PyErr_SetString(PyExc_RuntimeError, "cellar: no library directories");
    Py_XDECREF(r);
    Py_XDECREF(g);
    Py_XDECREF(code);
    return st->library_dirs;
}

/* 1 when module `m` is the user's own (a file outside the library dirs, or no
 * file and not built in or frozen), 0 when it is library code, -1 on error. */
static int module_is_users(cellar_state *st, PyObject *m)
{
    PyObject *file = NULL;
    if (cellar_optional_attr(m, "__file__", &file) < 0)
        return -1;
    if (!file || !PyUnicode_Check(file)) {
        Py_XDECREF(file);
        PyObject *spec = NULL, *origin = NULL;
        if (cellar_optional_attr(m, "__spec__", &spec) < 0)
            return -1;
        int users = 1;
        if (spec && spec != Py_None && cellar_optional_attr(spec, "origin", &origin) < 0)
            users = -1;
        else if (origin && PyUnicode_Check(origin) &&
                 (PyUnicode_CompareWithASCIIString(origin, "built-in") == 0 ||
                  PyUnicode_CompareWithASCIIString(origin, "frozen") == 0))
            users = 0;
        Py_XDECREF(spec);
        Py_XDECREF(origin);
        return users;
    }
    PyObject *dirs = library_dirs(st);
    PyObject *os_path = dirs ? PyImport_ImportModule("os.path") : NULL;
    PyObject *real = os_path ? PyObject_CallMethod(os_path, "realpath", "O", file) : NULL;
    Py_XDECREF(os_path);
    Py_DECREF(file);
    if (!real)
        return -1;
    int users = 1;
    for (Py_ssize_t i = 0; users == 1 && i < PyTuple_GET_SIZE(dirs); i++) {
        Py_ssize_t at =
            PyUnicode_Tailmatch(real, PyTuple_GET_ITEM(dirs, i), 0, PY_SSIZE_T_MAX, -1);
        users = at < 0 ? -1 : !at;
    }
    Py_DECREF(real);
    return users;
}

/* Cached per module object, since a module's file does not change under it. */
int cellar_module_is_users(cellar_state *st, PyObject *modname)
{
    if (!modname || !PyUnicode_Check(modname))
        return 1; /* exec'd with no __name__: nothing says it is library code */
    if (PyUnicode_CompareWithASCIIString(modname, "__main__") == 0)
        return 1;
    PyObject *m = PyImport_GetModule(modname); /* new ref or NULL */
    if (!m)
        return PyErr_Occurred() ? -1 : 1;
    if (!st->module_kinds && !(st->module_kinds = PyDict_New())) {
        Py_DECREF(m);
        return -1;
    }
    PyObject *hit = PyDict_GetItemWithError(st->module_kinds, modname);
    if (hit && PyTuple_GET_ITEM(hit, 0) == m) {
        Py_DECREF(m);
        return PyTuple_GET_ITEM(hit, 1) == Py_True;
    }
    int users = PyErr_Occurred() ? -1 : module_is_users(st, m);
    PyObject *entry = users >= 0 ? PyTuple_Pack(2, m, users ? Py_True : Py_False) : NULL;
    if (entry && PyDict_SetItem(st->module_kinds, modname, entry) < 0)
        users = -1;
    Py_XDECREF(entry);
    Py_DECREF(m);
    return users;
}

static int kind_at(cellar_state *st, PyObject *v, int depth)
{
    if (PyFunction_Check(v)) {
        int u = cellar_module_is_users(st, ((PyFunctionObject *)v)->func_module);
        return u < 0 ? -1 : u ? CELLAR_CODE_FUNCTION : CELLAR_CODE_NONE;
    }
    if (PyType_Check(v)) {
        if (!PyType_HasFeature((PyTypeObject *)v, Py_TPFLAGS_HEAPTYPE))
            return CELLAR_CODE_NONE;
        PyObject *mod = PyDict_GetItemString(((PyTypeObject *)v)->tp_dict, "__module__");
        int u = mod ? cellar_module_is_users(st, mod) : 1;
        return u < 0 ? -1 : u ? CELLAR_CODE_CLASS : CELLAR_CODE_NONE;
    }
    if (PyMethod_Check(v)) {
        int k = kind_at(st, PyMethod_GET_FUNCTION(v), depth + 1);
        return k <= 0 ? k : CELLAR_CODE_METHOD;
    }
    if (depth > 16 || !PyCallable_Check(v) || PyCFunction_Check(v) || PyModule_Check(v))
        return CELLAR_CODE_NONE;
    /* A wrapper such as functools.lru_cache's: notebook code when what it
     * wraps is.  An object whose __getattr__ fails otherwise is data. */
    PyObject *wrapped = PyObject_GetAttrString(v, "__wrapped__");
    if (!wrapped) {
        if (PyErr_ExceptionMatches(PyExc_MemoryError) ||
            PyErr_ExceptionMatches(PyExc_KeyboardInterrupt))
            return -1;
        PyErr_Clear();
        return CELLAR_CODE_NONE;
    }
    int k = wrapped == v ? CELLAR_CODE_NONE : kind_at(st, wrapped, depth + 1);
    Py_DECREF(wrapped);
    return k <= 0 ? k : CELLAR_CODE_WRAPPED;
}

int cellar_code_kind(cellar_state *st, PyObject *v)
{
    return kind_at(st, v, 0);
}

/* ---- structural fingerprints of code objects ---- */

int cellar_key_put_tag(cellar_key *k, const char *tag)
{
    return cellar_key_add_str(k, tag, strlen(tag)) == CELLAR_OK ? 0 : -1;
}

int cellar_key_put_pystr(cellar_key *k, PyObject *s)
{
    if (!PyUnicode_Check(s))
        return cellar_key_put_tag(k, "?");
    Py_ssize_t len;
    const char *utf8 = PyUnicode_AsUTF8AndSize(s, &len); /* cached in the str */
    if (utf8)
        return cellar_key_add_str(k, utf8, (size_t)len) == CELLAR_OK ? 0 : -1;
    PyErr_Clear(); /* a lone surrogate */
    PyObject *b = PyUnicode_AsEncodedString(s, "utf-8", "surrogatepass");
    if (!b)
        return -1;
    int rc = cellar_key_add_str(k, PyBytes_AS_STRING(b), (size_t)PyBytes_GET_SIZE(b)) ==
                     CELLAR_OK
                 ? 0
                 : -1;
    Py_DECREF(b);
    return rc;
}

int cellar_key_put_hash(cellar_key *k, const cellar_hash *h)
{
    return cellar_key_add_hash(k, h) == CELLAR_OK ? 0 : -1;
}

static int add_const(cellar_state *st, cellar_key *k, PyObject *c, int depth);

static int cmp_hash(const void *a, const void *b)
{
    return memcmp(a, b, sizeof(cellar_hash));
}

/* A frozenset's elements in an order that does not depend on the hash seed:
 * each element's own fingerprint, sorted. */
static int add_frozenset(cellar_state *st, cellar_key *k, PyObject *c, int depth)
{
    Py_ssize_t n = PySet_GET_SIZE(c), i = 0;
    cellar_hash *hs = PyMem_Calloc(n ? (size_t)n : 1, sizeof *hs);
    cellar_key *sub = cellar_key_new();
    PyObject *it = (hs && sub) ? PyObject_GetIter(c) : NULL;
    if (!hs || !sub)
        PyErr_NoMemory();
    int rc = it ? 0 : -1;
    PyObject *item;
    while (rc == 0 && i < n && (item = PyIter_Next(it))) {
        cellar_key_reset(sub);
        rc = add_const(st, sub, item, depth + 1);
        hs[i++] = cellar_key_digest(sub);
        Py_DECREF(item);
    }
    if (rc == 0 && PyErr_Occurred())
        rc = -1;
    if (rc == 0) {
        qsort(hs, (size_t)i, sizeof *hs, cmp_hash);
        rc = cellar_key_put_tag(k, "frozenset") < 0 ||
                     cellar_key_add_list(k, (size_t)i) != CELLAR_OK
                 ? -1
                 : 0;
        for (Py_ssize_t j = 0; rc == 0 && j < i; j++)
            rc = cellar_key_put_hash(k, &hs[j]);
    }
    Py_XDECREF(it);
    PyMem_Free(hs);
    cellar_key_free(sub);
    return rc;
}

/* Adds `text` of `obj` (repr or hex) tagged with `tag`. */
static int add_text(cellar_key *k, const char *tag, PyObject *text)
{
    int rc = text && cellar_key_put_tag(k, tag) == 0 && cellar_key_put_pystr(k, text) == 0
                 ? 0
                 : -1;
    Py_XDECREF(text);
    return rc;
}

/* A constant by type and canonical value. */
static int add_const(cellar_state *st, cellar_key *k, PyObject *c, int depth)
{
    if (depth > 100) {
        PyErr_SetString(PyExc_RecursionError, "constant nested too deeply");
        return -1;
    }
    if (PyCode_Check(c)) {
        cellar_hash h;
        return cellar_code_fingerprint(st, c, &h, NULL) < 0 ||
                       cellar_key_put_tag(k, "code") < 0 || cellar_key_put_hash(k, &h) < 0
                   ? -1
                   : 0;
    }
    if (c == Py_None)
        return cellar_key_put_tag(k, "None");
    if (c == Py_Ellipsis)
        return cellar_key_put_tag(k, "Ellipsis");
    if (PyBool_Check(c))
        return cellar_key_put_tag(k, c == Py_True ? "True" : "False");
    if (PyLong_CheckExact(c)) /* hex: no int-to-str digit limit for base 16 */
        return add_text(k, "int", PyNumber_ToBase(c, 16));
    if (PyFloat_CheckExact(c))
        return add_text(k, "float", PyObject_Repr(c));
    if (PyComplex_CheckExact(c))
        return add_text(k, "complex", PyObject_Repr(c));
    if (PyUnicode_CheckExact(c))
        return cellar_key_put_tag(k, "str") < 0 ? -1 : cellar_key_put_pystr(k, c);
    if (PyBytes_CheckExact(c))
        return cellar_key_put_tag(k, "bytes") < 0 ||
                       cellar_key_add_bytes(k, PyBytes_AS_STRING(c),
                                            (size_t)PyBytes_GET_SIZE(c)) != CELLAR_OK
                   ? -1
                   : 0;
    if (PyTuple_CheckExact(c)) {
        int rc = cellar_key_put_tag(k, "tuple") < 0 ||
                         cellar_key_add_list(k, (size_t)PyTuple_GET_SIZE(c)) != CELLAR_OK
                     ? -1
                     : 0;
        for (Py_ssize_t i = 0; rc == 0 && i < PyTuple_GET_SIZE(c); i++)
            rc = add_const(st, k, PyTuple_GET_ITEM(c, i), depth + 1);
        return rc;
    }
    if (PyFrozenSet_CheckExact(c))
        return add_frozenset(st, k, c, depth);
    /* Anything else a compiler may fold into constants (slices in newer
     * Pythons): its type and repr. */
    return cellar_key_put_tag(k, Py_TYPE(c)->tp_name) < 0
               ? -1
               : add_text(k, "repr", PyObject_Repr(c));
}

#if PY_VERSION_HEX >= 0x030B0000
static int add_names(cellar_key *k, PyObject *names)
{
    if (cellar_key_add_list(k, (size_t)PyTuple_GET_SIZE(names)) != CELLAR_OK)
        return -1;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(names); i++)
        if (cellar_key_put_pystr(k, PyTuple_GET_ITEM(names, i)) < 0)
            return -1;
    return 0;
}
#endif

#if PY_VERSION_HEX < 0x030B0000
static int add_code_attr(cellar_key *k, PyObject *code, const char *attr)
{
    PyObject *v = PyObject_GetAttrString(code, attr);
    if (!v) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError))
            return -1;
        PyErr_Clear(); /* older Pythons lack co_qualname, co_exceptiontable */
        return cellar_key_put_tag(k, "-");
    }
    int rc;
    if (PyBytes_Check(v))
        rc = cellar_key_add_bytes(k, PyBytes_AS_STRING(v), (size_t)PyBytes_GET_SIZE(v)) ==
                     CELLAR_OK
                 ? 0
                 : -1;
    else if (PyTuple_Check(v)) {
        rc = cellar_key_add_list(k, (size_t)PyTuple_GET_SIZE(v)) == CELLAR_OK ? 0 : -1;
        for (Py_ssize_t i = 0; rc == 0 && i < PyTuple_GET_SIZE(v); i++)
            rc = cellar_key_put_pystr(k, PyTuple_GET_ITEM(v, i));
    } else if (PyLong_Check(v))
        rc = cellar_key_add_int(k, PyLong_AsLongLong(v)) == CELLAR_OK ? 0 : -1;
    else
        rc = cellar_key_put_pystr(k, v);
    Py_DECREF(v);
    return rc;
}
#endif

/* Whether consts[0] of `code` is its docstring slot: a `def` body puts its
 * docstring (or None) first up to 3.13; 3.14 says so with CO_HAS_DOCSTRING.
 * The docstring does not change what the code computes. */
static bool has_doc_slot(PyCodeObject *co)
{
#ifdef CO_HAS_DOCSTRING
    return (co->co_flags & CO_HAS_DOCSTRING) != 0;
#else
    const char *name = PyUnicode_AsUTF8(co->co_name);
    return (co->co_flags & CO_OPTIMIZED) && name && name[0] != '<';
#endif
}

/* Adds the names that `code` and its nested code objects read, in order and
 * unique, to `names` (a list), through `seen`. */
static int collect_names(PyObject *code, PyObject *names, PyObject *seen, int depth)
{
    PyCodeObject *co = (PyCodeObject *)code;
    if (depth > 100)
        return 0;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(co->co_names); i++) {
        PyObject *name = PyTuple_GET_ITEM(co->co_names, i);
        int has = PySet_Contains(seen, name);
        if (has < 0 ||
            (!has && (PySet_Add(seen, name) < 0 || PyList_Append(names, name) < 0)))
            return -1;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(co->co_consts); i++) {
        PyObject *c = PyTuple_GET_ITEM(co->co_consts, i);
        if (PyCode_Check(c) && collect_names(c, names, seen, depth + 1) < 0)
            return -1;
    }
    return 0;
}

static int build_code_fingerprint(cellar_state *st, PyObject *code, cellar_hash *out)
{
    PyCodeObject *co = (PyCodeObject *)code;
    cellar_key *k = cellar_key_new();
    if (!k) {
        PyErr_NoMemory();
        return -1;
    }
    int rc = cellar_key_put_tag(k, "code-v1");
#if PY_VERSION_HEX >= 0x030B0000
    /* The fields themselves: this runs for every function of a cell, and
     * getattr would build the variable-name tuples each time. */
    PyObject *bytecode = rc == 0 ? PyCode_GetCode(co) : NULL;
    if (!bytecode)
        rc = -1;
    if (rc == 0)
        rc = cellar_key_put_pystr(k, co->co_name) < 0 ||
                     cellar_key_put_pystr(k, co->co_qualname) < 0 ||
                     cellar_key_add_int(k, co->co_argcount) != CELLAR_OK ||
                     cellar_key_add_int(k, co->co_posonlyargcount) != CELLAR_OK ||
                     cellar_key_add_int(k, co->co_kwonlyargcount) != CELLAR_OK ||
                     cellar_key_add_int(k, co->co_flags) != CELLAR_OK ||
                     cellar_key_add_bytes(k, PyBytes_AS_STRING(bytecode),
                                          (size_t)PyBytes_GET_SIZE(bytecode)) !=
                         CELLAR_OK ||
                     add_names(k, co->co_names) < 0 ||
                     add_names(k, co->co_localsplusnames) < 0 ||
                     cellar_key_add_bytes(
                         k, PyBytes_AS_STRING(co->co_localspluskinds),
                         (size_t)PyBytes_GET_SIZE(co->co_localspluskinds)) != CELLAR_OK ||
                     cellar_key_add_bytes(
                         k, PyBytes_AS_STRING(co->co_exceptiontable),
                         (size_t)PyBytes_GET_SIZE(co->co_exceptiontable)) != CELLAR_OK
                 ? -1
                 : 0;
    Py_XDECREF(bytecode);
#else
    static const char *attrs[] = {
        "co_name",           "co_qualname", "co_argcount", "co_posonlyargcount",
        "co_kwonlyargcount", "co_flags",    "co_code",     "co_names",
        "co_varnames",       "co_cellvars", "co_freevars", "co_exceptiontable",
    };
    for (size_t i = 0; rc == 0 && i < sizeof attrs / sizeof *attrs; i++)
        rc = add_code_attr(k, code, attrs[i]);
#endif
    Py_ssize_t n = PyTuple_GET_SIZE(co->co_consts);
    Py_ssize_t first = (n > 0 && has_doc_slot(co)) ? 1 : 0;
    if (rc == 0)
        rc = cellar_key_add_list(k, (size_t)(n - first)) == CELLAR_OK ? 0 : -1;
    for (Py_ssize_t i = first; rc == 0 && i < n; i++)
        rc = add_const(st, k, PyTuple_GET_ITEM(co->co_consts, i), 0);
    if (rc == 0)
        *out = cellar_key_digest(k);
    else if (!PyErr_Occurred())
        PyErr_NoMemory();
    cellar_key_free(k);
    return rc;
}

/* Cached in st->code_cache: id -> (code, fingerprint bytes, names); the code
 * object is kept in the entry, so its id cannot be reused while cached. */
int cellar_code_fingerprint(cellar_state *st, PyObject *code, cellar_hash *out,
                            PyObject **names)
{
    if (!st->code_cache && !(st->code_cache = PyDict_New()))
        return -1;
    PyObject *id = PyLong_FromVoidPtr(code);
    if (!id)
        return -1;
    PyObject *hit = PyDict_GetItemWithError(st->code_cache, id);
    if (hit && PyTuple_GET_ITEM(hit, 0) == code) {
        Py_DECREF(id);
        memcpy(out->bytes, PyBytes_AS_STRING(PyTuple_GET_ITEM(hit, 1)), 16);
        if (names)
            *names = PyTuple_GET_ITEM(hit, 2);
        return 0;
    }
    PyObject *list = PyErr_Occurred() ? NULL : PyList_New(0);
    PyObject *seen = list ? PySet_New(NULL) : NULL;
    PyObject *tuple = NULL, *fp = NULL, *entry = NULL;
    int rc = -1;
    if (seen && collect_names(code, list, seen, 0) == 0 &&
        build_code_fingerprint(st, code, out) == 0 && (tuple = PyList_AsTuple(list)) &&
        (fp = PyBytes_FromStringAndSize((const char *)out->bytes, 16)) &&
        (entry = PyTuple_Pack(3, code, fp, tuple))) {
        /* Bounded: a long session's old code objects are let go at once. */
        if (PyDict_GET_SIZE(st->code_cache) > 100000)
            PyDict_Clear(st->code_cache);
        rc = PyDict_SetItem(st->code_cache, id, entry);
        if (rc == 0 && names)
            *names = PyTuple_GET_ITEM(entry, 2);
    }
    Py_XDECREF(entry);
    Py_XDECREF(fp);
    Py_XDECREF(tuple);
    Py_XDECREF(seen);
    Py_XDECREF(list);
    Py_DECREF(id);
    return rc;
}
