/*
 * code_version.c - code versions: structural fingerprints of the live code a
 * node can reach, the same in every process.
 *
 * Code objects are fingerprinted structurally by code_fingerprint.c (never
 * marshal output, file names or line numbers), which also says what is
 * notebook code: a Python function or heap class of `__main__`, of no
 * importable module, or of a module loaded from a file outside the standard
 * library and site-packages (the user's own modules); a bound method or a
 * wrapper (`__wrapped__`) of such code counts too.  Its version covers:
 *
 *   - a function: its code, defaults, keyword defaults, closure cells, what it
 *     reads through co_names from its globals (functions and classes by their
 *     versions, modules skipped unless they are the user's own, where the
 *     attributes named in co_names count, other values by data version), and
 *     `__wrapped__`;
 *   - a class: every attribute of its __dict__ (methods, static and class
 *     methods, properties, nested classes, constants, dataclass fields), its
 *     bases (notebook bases by their versions, others by name) and metaclass.
 *
 * Library functions met on the way count by module and qualified name plus
 * their closure cells (a library-made closure may hold notebook code), other
 * values by data version.  A function that reads nothing and has no
 * defaults, closure or __wrapped__ (most nodes) is versioned from its code
 * alone, without a walk, and a node keeps that version in its registry entry.
 *
 * Those references form a graph that can have cycles (mutually recursive
 * helpers, a class whose attributes hold its own instances).  The versions are
 * computed by Tarjan's algorithm over it: each item gets a local fingerprint in
 * which a reference to another member of its strongly connected component is
 * a placeholder, and every member's version folds in the sorted local
 * fingerprints of the whole component.  Which member a walk starts from, and
 * which targets a run has, do not change the result.  Finished versions go
 * into the run's memo (keyed by object id, the object kept alive with it).  A
 * data version computed while the walk is active (st->code_walk) may call
 * back into cellar_object_code_version (notebook code inside data): the
 * callback joins the walk as an edge of the item being fingerprinted, so a
 * cycle through data (a class attribute holding an instance of the class)
 * is a component like any other.
 */
#include "cellar_ext.h"

#include <stdlib.h>

static int cmp_hash(const void *a, const void *b)
{
    return memcmp(a, b, sizeof(cellar_hash));
}

/* A function that reads no name and has no defaults, closure or __wrapped__
 * depends on its code alone: 1 with its version in *out, computed without a
 * walk (most nodes are such functions, and cached runs stay cheap); 0 when it
 * is not such a function; -1 on error.  The walk gives the same version. */
static int leaf_version(cellar_state *st, PyObject *obj, cellar_hash *out)
{
    PyFunctionObject *f = (PyFunctionObject *)obj;
    if (f->func_defaults || f->func_kwdefaults || f->func_closure ||
        (f->func_dict && PyDict_GetItemString(f->func_dict, "__wrapped__")))
        return 0;
    cellar_hash fp;
    PyObject *names = NULL;
    if (cellar_code_fingerprint(st, f->func_code, &fp, &names) < 0)
        return -1;
    if (PyTuple_GET_SIZE(names) > 0)
        return 0;
    uint8_t buf[32] = "cellar leaf function";
    memcpy(buf + 16, fp.bytes, 16);
    *out = cellar_hash_bytes(buf, sizeof buf);
    return 1;
}

/* ---- the walk: Tarjan's algorithm over notebook code ---- */

typedef struct item {
    PyObject *obj; /* strong */
    size_t low;
    bool on_stack;
    cellar_hash local;
} item;

typedef struct walk {
    cellar_state *st;
    PyObject *memo;     /* the run's memo: id -> (obj, version bytes) when done */
    PyObject *index_of; /* id -> index into items, for this walk */
    item *items;
    size_t n, cap;
    size_t *stack;
    size_t sp;
    size_t cur;            /* the item being fingerprinted, or SIZE_MAX */
    uint64_t placeholders; /* bumped whenever a placeholder is handed out */
} walk;

static int visit(walk *w, PyObject *obj, int kind, size_t *at);

static int memo_version(PyObject *memo, PyObject *id, cellar_hash *out)
{
    PyObject *hit = PyDict_GetItemWithError(memo, id);
    if (!hit)
        return PyErr_Occurred() ? -1 : 0;
    memcpy(out->bytes, PyBytes_AS_STRING(PyTuple_GET_ITEM(hit, 1)), 16);
    return 1;
}

/* Stands for a member of the component being built: its kind and name, the
 * same whichever member the walk started from. */
static int placeholder(walk *w, PyObject *obj, cellar_hash *out)
{
    w->placeholders++;
    PyObject *target = PyMethod_Check(obj) ? PyMethod_GET_FUNCTION(obj) : obj;
    PyObject *qual = NULL;
    if (cellar_optional_attr(target, "__qualname__", &qual) < 0)
        return -1;
    cellar_key *k = cellar_key_new();
    int rc =
        k && cellar_key_put_tag(k, "member") == 0 &&
                cellar_key_put_tag(k, Py_TYPE(obj)->tp_name) == 0 &&
                (qual ? cellar_key_put_pystr(k, qual) : cellar_key_put_tag(k, "-")) == 0
            ? 0
            : -1;
    if (rc == 0)
        *out = cellar_key_digest(k);
    else if (!PyErr_Occurred())
        PyErr_NoMemory();
    cellar_key_free(k);
    Py_XDECREF(qual);
    return rc;
}

/* The version of notebook code `obj` referenced by the item at `from`
 * (SIZE_MAX: none), visiting it first when needed. */
static int ref(walk *w, size_t from, PyObject *obj, int kind, cellar_hash *out)
{
    PyObject *id = PyLong_FromVoidPtr(obj);
    if (!id)
        return -1;
    int rc = memo_version(w->memo, id, out);
    if (rc != 0) {
        Py_DECREF(id);
        return rc < 0 ? -1 : 0;
    }
    PyObject *at = PyDict_GetItemWithError(w->index_of, id);
    Py_DECREF(id);
    size_t j;
    if (at) {
        j = PyLong_AsSize_t(at);
        if (from != SIZE_MAX && j < w->items[from].low)
            w->items[from].low = j;
    } else if (PyErr_Occurred() || visit(w, obj, kind, &j) < 0) {
        return -1;
    } else if (from != SIZE_MAX && w->items[j].low < w->items[from].low) {
        w->items[from].low = w->items[j].low;
    }
    if (w->items[j].on_stack)
        return placeholder(w, obj, out);
    PyObject *id2 = PyLong_FromVoidPtr(obj);
    rc = id2 ? memo_version(w->memo, id2, out) : -1;
    Py_XDECREF(id2);
    if (rc == 0)
        PyErr_SetString(PyExc_RuntimeError, "cellar: a finished code version is missing");
    return rc == 1 ? 0 : -1;
}

/* Adds what value `v` contributes: notebook code by version, anything else
 * by data version.  */
static int add_value(walk *w, size_t from, cellar_key *k, PyObject *v);

/* A library function, by where it is defined (library code is stable, and
 * pickle cannot name the methods some library factories make, such as a
 * namedtuple's), plus its closure cells: a library-made closure may hold
 * notebook code (a decorator without functools.wraps). */
static int add_library_function(walk *w, size_t from, cellar_key *k, PyObject *v)
{
    PyFunctionObject *f = (PyFunctionObject *)v;
    PyObject *closure = f->func_closure ? Py_NewRef(f->func_closure) : NULL;
    Py_ssize_t nc = closure ? PyTuple_GET_SIZE(closure) : 0;
    int rc = cellar_key_put_tag(k, "library function") < 0 ||
                     (f->func_module ? cellar_key_put_pystr(k, f->func_module)
                                     : cellar_key_put_tag(k, "-")) < 0 ||
                     cellar_key_put_pystr(k, f->func_qualname) < 0 ||
                     cellar_key_add_list(k, (size_t)nc) != CELLAR_OK
                 ? -1
                 : 0;
    for (Py_ssize_t i = 0; rc == 0 && i < nc; i++) {
        PyObject *cell = PyTuple_GET_ITEM(closure, i);
        PyObject *c = PyCell_Check(cell) ? PyCell_GET(cell) : NULL;
        Py_XINCREF(c);
        rc = c ? add_value(w, from, k, c) : cellar_key_put_tag(k, "empty");
        Py_XDECREF(c);
    }
    Py_XDECREF(closure);
    return rc;
}

static int add_value(walk *w, size_t from, cellar_key *k, PyObject *v)
{
    int kind = cellar_code_kind(w->st, v);
    if (kind < 0)
        return -1;
    cellar_hash h;
    if (kind != CELLAR_CODE_NONE)
        return ref(w, from, v, kind, &h) < 0 || cellar_key_put_tag(k, "code") < 0
                   ? -1
                   : cellar_key_put_hash(k, &h);
    if (PyModule_Check(v)) {
        PyObject *name = PyModule_GetNameObject(v);
        int rc = name && cellar_key_put_tag(k, "module") == 0 &&
                         cellar_key_put_pystr(k, name) == 0
                     ? 0
                     : -1;
        Py_XDECREF(name);
        return rc;
    }
    if (PyFunction_Check(v))
        return add_library_function(w, from, k, v);
    bool picklable;
    if (cellar_data_version(w->st, v, w->memo, &h, &picklable) < 0)
        return -1;
    return cellar_key_put_tag(k, "data") < 0 ? -1 : cellar_key_put_hash(k, &h);
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

/* The data version of global `name` = `v` of the dict `globals`, memoized for
 * the run (unless a placeholder went into it: that one is only right inside
 * its component). */
static int global_data_version(walk *w, PyObject *globals, PyObject *name, PyObject *v,
                               cellar_hash *out)
{
    PyObject *gid = PyLong_FromVoidPtr(globals);
    PyObject *mkey = gid ? PyTuple_Pack(2, gid, name) : NULL;
    Py_XDECREF(gid);
    if (!mkey)
        return -1;
    PyObject *hit = PyDict_GetItemWithError(w->memo, mkey);
    if (hit) {
        memcpy(out->bytes, PyBytes_AS_STRING(hit), 16);
        Py_DECREF(mkey);
        return 0;
    }
    uint64_t before = w->placeholders;
    bool picklable;
    if (PyErr_Occurred() || cellar_data_version(w->st, v, w->memo, out, &picklable) < 0) {
        Py_DECREF(mkey);
        return -1;
    }
    if (!picklable && PySet_Contains(w->st->warned, name) == 0) {
        PySet_Add(w->st->warned, name);
        cellar_warn("global '%s' cannot be pickled, so the nodes that read it rerun on "
                    "every run",
                    PyUnicode_AsUTF8(name));
    }
    PyObject *b = PyBytes_FromStringAndSize((const char *)out->bytes, 16);
    int rc = b ? (w->placeholders == before ? PyDict_SetItem(w->memo, mkey, b) : 0) : -1;
    Py_XDECREF(b);
    Py_DECREF(mkey);
    return rc;
}

/* The attributes of the user's module `m` (bound to global `mname`) that the
 * code names: `mod.THING` reads THING through co_names. */
static int add_module_attrs(walk *w, size_t from, cellar_key *k, PyObject *mname,
                            PyObject *m, PyObject *names, int depth)
{
    PyObject *md = PyModule_GetDict(m);
    if (!md)
        return -1;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(names); i++) {
        PyObject *attr = PyTuple_GET_ITEM(names, i);
        PyObject *v = PyDict_GetItemWithError(md, attr);
        if (!v) {
            if (PyErr_Occurred())
                return -1;
            continue;
        }
        if (PyModule_Check(v)) { /* `pkg.sub.THING`: the user's subpackages too */
            PyObject *sub = PyModule_GetNameObject(v);
            int users = sub && depth < 4 ? cellar_module_is_users(w->st, sub) : 0;
            Py_XDECREF(sub);
            PyErr_Clear();
            if (users == 1) {
                Py_INCREF(v);
                int rc = cellar_key_put_pystr(k, mname) < 0
                             ? -1
                             : add_module_attrs(w, from, k, attr, v, names, depth + 1);
                Py_DECREF(v);
                if (rc < 0)
                    return -1;
            }
            continue;
        }
        Py_INCREF(v);
        int kind = cellar_code_kind(w->st, v);
        int rc = kind < 0 || cellar_key_put_pystr(k, mname) < 0 ||
                         cellar_key_put_pystr(k, attr) < 0
                     ? -1
                     : 0;
        if (rc == 0 && kind != CELLAR_CODE_NONE) {
            rc = add_value(w, from, k, v);
        } else if (rc == 0) {
            cellar_hash h;
            rc = global_data_version(w, md, attr, v, &h) < 0 ||
                         cellar_key_put_tag(k, "data") < 0
                     ? -1
                     : cellar_key_put_hash(k, &h);
        }
        Py_DECREF(v);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* What a function reads from its globals through `names`. */
static int add_globals(walk *w, size_t from, cellar_key *k, PyObject *globals,
                       PyObject *names)
{
    PyObject *user_ns = cellar_user_ns(w->st);
    if (!user_ns)
        return -1;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(names); i++) {
        PyObject *name = PyTuple_GET_ITEM(names, i);
        PyObject *v = PyDict_GetItemWithError(globals, name);
        if (!v) {
            if (PyErr_Occurred())
                return -1;
            continue; /* a builtin, an attribute name, or not defined yet */
        }
        if (globals == user_ns && is_ipython_name(w->st, name))
            continue;
        Py_INCREF(v); /* a body run by a data version could rebind it */
        int rc = 0;
        if (PyModule_Check(v)) {
            PyObject *mname = PyModule_GetNameObject(v);
            int users = mname ? cellar_module_is_users(w->st, mname) : 0;
            Py_XDECREF(mname);
            PyErr_Clear();
            if (users == 1)
                rc = add_module_attrs(w, from, k, name, v, names, 0);
        } else {
            int kind = cellar_code_kind(w->st, v);
            if (kind < 0)
                rc = -1;
            else if (kind != CELLAR_CODE_NONE)
                rc = cellar_key_put_pystr(k, name) < 0 ? -1 : add_value(w, from, k, v);
            else {
                cellar_hash h;
                rc = cellar_key_put_pystr(k, name) < 0 ||
                             global_data_version(w, globals, name, v, &h) < 0 ||
                             cellar_key_put_tag(k, "data") < 0
                         ? -1
                         : cellar_key_put_hash(k, &h);
            }
        }
        Py_DECREF(v);
        if (rc < 0)
            return -1;
    }
    return cellar_key_put_tag(k, "\x01end");
}

static int add_function(walk *w, size_t me, cellar_key *k, PyObject *obj)
{
    PyFunctionObject *f = (PyFunctionObject *)obj;
    cellar_hash h;
    PyObject *names = NULL;
    if (cellar_key_put_tag(k, "function") < 0 ||
        cellar_code_fingerprint(w->st, f->func_code, &h, &names) < 0 ||
        cellar_key_put_hash(k, &h) < 0)
        return -1;
    Py_INCREF(names); /* the cache may be cleared by a nested walk */
    PyObject *defaults = f->func_defaults ? Py_NewRef(f->func_defaults) : NULL;
    PyObject *kwdefaults = f->func_kwdefaults ? PyDict_Items(f->func_kwdefaults) : NULL;
    PyObject *closure = f->func_closure ? Py_NewRef(f->func_closure) : NULL;
    PyObject *wrapped =
        f->func_dict ? PyDict_GetItemString(f->func_dict, "__wrapped__") : NULL;
    Py_XINCREF(wrapped);
    int rc = PyErr_Occurred() || (f->func_kwdefaults && !kwdefaults) ? -1 : 0;
    Py_ssize_t nd = defaults ? PyTuple_GET_SIZE(defaults) : 0;
    if (rc == 0)
        rc = cellar_key_put_tag(k, "defaults") < 0 ||
             cellar_key_add_list(k, (size_t)nd) != CELLAR_OK;
    for (Py_ssize_t i = 0; rc == 0 && i < nd; i++)
        rc = add_value(w, me, k, PyTuple_GET_ITEM(defaults, i));
    if (rc == 0 && kwdefaults)
        rc = PyList_Sort(kwdefaults);
    Py_ssize_t nk = kwdefaults ? PyList_GET_SIZE(kwdefaults) : 0;
    if (rc == 0)
        rc = cellar_key_put_tag(k, "kwdefaults") < 0 ||
             cellar_key_add_list(k, (size_t)nk) != CELLAR_OK;
    for (Py_ssize_t i = 0; rc == 0 && i < nk; i++) {
        PyObject *pair = PyList_GET_ITEM(kwdefaults, i);
        rc = cellar_key_put_pystr(k, PyTuple_GET_ITEM(pair, 0)) < 0
                 ? -1
                 : add_value(w, me, k, PyTuple_GET_ITEM(pair, 1));
    }
    Py_ssize_t nc = closure ? PyTuple_GET_SIZE(closure) : 0;
    if (rc == 0)
        rc = cellar_key_put_tag(k, "closure") < 0 ||
             cellar_key_add_list(k, (size_t)nc) != CELLAR_OK;
    for (Py_ssize_t i = 0; rc == 0 && i < nc; i++) {
        PyObject *cell = PyTuple_GET_ITEM(closure, i);
        PyObject *v = PyCell_Check(cell) ? PyCell_GET(cell) : NULL;
        Py_XINCREF(v);
        rc = v ? add_value(w, me, k, v) : cellar_key_put_tag(k, "empty");
        Py_XDECREF(v);
    }
    if (rc == 0)
        rc = add_globals(w, me, k, f->func_globals, names);
    if (rc == 0)
        rc = wrapped
                 ? (cellar_key_put_tag(k, "wrapped") < 0 ? -1
                                                         : add_value(w, me, k, wrapped))
                 : cellar_key_put_tag(k, "-");
    Py_XDECREF(wrapped);
    Py_XDECREF(closure);
    Py_XDECREF(kwdefaults);
    Py_XDECREF(defaults);
    Py_DECREF(names);
    return rc ? -1 : 0;
}

/* ---- classes ---- */

/* Attributes that say nothing about what the class computes. */
static bool noise_attr(PyObject *key)
{
    static const char *noise[] = {"__dict__", "__weakref__", "__module__",
                                  "__doc__",  "_abc_impl",   "__slotnames__"};
    if (!PyUnicode_Check(key))
        return false;
    for (size_t i = 0; i < sizeof noise / sizeof *noise; i++)
        if (PyUnicode_CompareWithASCIIString(key, noise[i]) == 0)
            return true;
    return false;
}

static int add_attr(walk *w, size_t me, cellar_key *k, PyObject *v, int depth);

/* Adds attribute `attr` of `obj` through add_attr, or "-" when it has none. */
static int add_attr_of(walk *w, size_t me, cellar_key *k, PyObject *obj, const char *attr,
                       int depth)
{
    PyObject *v = NULL;
    int found = cellar_optional_attr(obj, attr, &v);
    if (found < 0)
        return -1;
    int rc = cellar_key_put_tag(k, attr) < 0 ? -1
             : found                         ? add_attr(w, me, k, v, depth)
                                             : cellar_key_put_tag(k, "-");
    Py_XDECREF(v);
    return rc;
}

/* A set as the sorted fingerprints of its elements, whatever the hash seed. */
static int add_set(walk *w, size_t me, cellar_key *k, PyObject *v, int depth)
{
    Py_ssize_t n = PySet_GET_SIZE(v), i = 0;
    PyObject *items = PySequence_List(v); /* a copy: a data version may run code */
    cellar_hash *hs = items ? PyMem_Calloc(n ? (size_t)n : 1, sizeof *hs) : NULL;
    cellar_key *sub = hs ? cellar_key_new() : NULL;
    int rc = sub ? 0 : -1;
    if (items && rc < 0)
        PyErr_NoMemory();
    for (; rc == 0 && i < n && i < PyList_GET_SIZE(items); i++) {
        cellar_key_reset(sub);
        rc = add_attr(w, me, sub, PyList_GET_ITEM(items, i), depth + 1);
        hs[i] = cellar_key_digest(sub);
    }
    if (rc == 0) {
        qsort(hs, (size_t)i, sizeof *hs, cmp_hash);
        rc = cellar_key_put_tag(k, "set") < 0 ||
             cellar_key_add_list(k, (size_t)i) != CELLAR_OK;
        for (Py_ssize_t j = 0; rc == 0 && j < i; j++)
            rc = cellar_key_put_hash(k, &hs[j]);
    }
    cellar_key_free(sub);
    PyMem_Free(hs);
    Py_XDECREF(items);
    return rc ? -1 : 0;
}

/* A class attribute: descriptors by what they hold, the rest as values. */
static int add_attr(walk *w, size_t me, cellar_key *k, PyObject *v, int depth)
{
    PyTypeObject *t = Py_TYPE(v);
    if (depth > 16)
        return add_value(w, me, k, v);
    if (t == &PyStaticMethod_Type || t == &PyClassMethod_Type)
        return cellar_key_put_tag(k, t->tp_name) < 0
                   ? -1
                   : add_attr_of(w, me, k, v, "__func__", depth + 1);
    if (PyObject_TypeCheck(v, &PyProperty_Type)) {
        if (cellar_key_put_tag(k, "property") < 0 ||
            add_attr_of(w, me, k, v, "fget", depth + 1) < 0 ||
            add_attr_of(w, me, k, v, "fset", depth + 1) < 0)
            return -1;
        return add_attr_of(w, me, k, v, "fdel", depth + 1);
    }
    if (t == &PyMemberDescr_Type || t == &PyGetSetDescr_Type ||
        t == &PyWrapperDescr_Type || t == &PyMethodDescr_Type ||
        t == &PyClassMethodDescr_Type) /* slots and C methods: by name */
        return cellar_key_put_tag(k, t->tp_name) < 0
                   ? -1
                   : cellar_key_put_pystr(k, PyDescr_NAME(v));
    if (PyAnySet_CheckExact(v)) /* `__abstractmethods__`: not in hash-seed order */
        return add_set(w, me, k, v, depth);
    if (strcmp(t->tp_name, "functools.cached_property") == 0 ||
        strcmp(t->tp_name, "cached_property") == 0) /* holds an RLock: not picklable */
        return cellar_key_put_tag(k, "cached_property") < 0
                   ? -1
                   : add_attr_of(w, me, k, v, "func", depth + 1);
    return add_value(w, me, k, v);
}

/* `__dataclass_fields__`: each field's default and default_factory (which
 * the generated __init__ also holds in its closure) and its flags. */
static int add_fields(walk *w, size_t me, cellar_key *k, PyObject *fields)
{
    static const char *attrs[] = {"default", "default_factory", "init",   "repr",
                                  "hash",    "compare",         "kw_only"};
    PyObject *items = PyDict_Check(fields) ? PyDict_Items(fields) : NULL;
    if (!items)
        return PyDict_Check(fields) ? -1 : add_value(w, me, k, fields);
    int rc = PyList_Sort(items) < 0 || cellar_key_put_tag(k, "fields") < 0 ||
                     cellar_key_add_list(k, (size_t)PyList_GET_SIZE(items)) != CELLAR_OK
                 ? -1
                 : 0;
    for (Py_ssize_t i = 0; rc == 0 && i < PyList_GET_SIZE(items); i++) {
        PyObject *pair = PyList_GET_ITEM(items, i);
        rc = cellar_key_put_pystr(k, PyTuple_GET_ITEM(pair, 0));
        for (size_t a = 0; rc == 0 && a < sizeof attrs / sizeof *attrs; a++)
            rc = add_attr_of(w, me, k, PyTuple_GET_ITEM(pair, 1), attrs[a], 1);
    }
    Py_DECREF(items);
    return rc;
}

/* A library class, by where it is defined. */
static int add_class_name(cellar_key *k, const char *tag, PyObject *cls)
{
    PyObject *mod = NULL, *qual = NULL;
    int rc = cellar_optional_attr(cls, "__module__", &mod) < 0 ||
                     cellar_optional_attr(cls, "__qualname__", &qual) < 0 ||
                     cellar_key_put_tag(k, tag) < 0
                 ? -1
                 : 0;
    if (rc == 0)
        rc = mod ? cellar_key_put_pystr(k, mod) : cellar_key_put_tag(k, "-");
    if (rc == 0)
        rc = qual ? cellar_key_put_pystr(k, qual) : cellar_key_put_tag(k, "-");
    Py_XDECREF(mod);
    Py_XDECREF(qual);
    return rc;
}

/* A base, or the metaclass: notebook classes by version, others by name. */
static int add_class_ref(walk *w, size_t me, cellar_key *k, PyObject *cls)
{
    int kind = cellar_code_kind(w->st, cls);
    if (kind < 0)
        return -1;
    if (kind != CELLAR_CODE_CLASS)
        return add_class_name(k, "library", cls);
    cellar_hash h;
    return ref(w, me, cls, kind, &h) < 0 || cellar_key_put_tag(k, "class") < 0
               ? -1
               : cellar_key_put_hash(k, &h);
}

static int add_class(walk *w, size_t me, cellar_key *k, PyObject *obj)
{
    PyTypeObject *tp = (PyTypeObject *)obj;
    PyObject *mro = tp->tp_mro ? Py_NewRef(tp->tp_mro) : NULL;
    PyObject *keys = PyDict_Keys(tp->tp_dict);
    int rc = mro && keys && add_class_name(k, "class", obj) == 0 ? 0 : -1;
    Py_ssize_t nb = mro ? PyTuple_GET_SIZE(mro) : 0;
    if (rc == 0)
        rc = cellar_key_add_list(k, (size_t)(nb ? nb - 1 : 0)) == CELLAR_OK ? 0 : -1;
    for (Py_ssize_t i = 1; rc == 0 && i < nb; i++)
        rc = add_class_ref(w, me, k, PyTuple_GET_ITEM(mro, i));
    if (rc == 0)
        rc = cellar_key_put_tag(k, "metaclass") < 0
                 ? -1
                 : add_class_ref(w, me, k, (PyObject *)Py_TYPE(obj));
    if (rc == 0 && PyList_Sort(keys) < 0)
        PyErr_Clear(); /* keys that do not sort: keep the definition order */
    for (Py_ssize_t i = 0; rc == 0 && i < PyList_GET_SIZE(keys); i++) {
        PyObject *key = PyList_GET_ITEM(keys, i);
        if (noise_attr(key))
            continue;
        PyObject *v = PyDict_GetItemWithError(tp->tp_dict, key);
        if (!v) {
            rc = PyErr_Occurred() ? -1 : 0;
            continue;
        }
        Py_INCREF(v);
        rc = cellar_key_put_pystr(k, key);
        if (rc == 0)
            rc = PyUnicode_Check(key) && PyUnicode_CompareWithASCIIString(
                                             key, "__dataclass_fields__") == 0
                     ? add_fields(w, me, k, v)
                     : add_attr(w, me, k, v, 0);
        Py_DECREF(v);
    }
    Py_XDECREF(keys);
    Py_XDECREF(mro);
    return rc == 0 ? cellar_key_put_tag(k, "\x01end") : -1;
}

static int local_fingerprint(walk *w, size_t me, int kind, PyObject *obj, cellar_key *k)
{
    switch (kind) {
    case CELLAR_CODE_FUNCTION: return add_function(w, me, k, obj);
    case CELLAR_CODE_CLASS: return add_class(w, me, k, obj);
    case CELLAR_CODE_METHOD:
        return cellar_key_put_tag(k, "method") < 0 ||
                       add_value(w, me, k, PyMethod_GET_FUNCTION(obj)) < 0
                   ? -1
                   : add_value(w, me, k, PyMethod_GET_SELF(obj));
    default: {
        PyObject *wrapped = NULL;
        if (cellar_optional_attr(obj, "__wrapped__", &wrapped) < 0)
            return -1;
        int rc = cellar_key_put_tag(k, "wrapper") < 0 ||
                         cellar_key_put_tag(k, Py_TYPE(obj)->tp_name) < 0 || !wrapped
                     ? -1
                     : add_value(w, me, k, wrapped);
        Py_XDECREF(wrapped);
        return rc;
    }
    }
}

static int set_final(walk *w, size_t i, const cellar_hash *v)
{
    PyObject *id = PyLong_FromVoidPtr(w->items[i].obj);
    PyObject *b = PyBytes_FromStringAndSize((const char *)v->bytes, 16);
    PyObject *entry = (id && b) ? PyTuple_Pack(2, w->items[i].obj, b) : NULL;
    int rc = entry ? PyDict_SetItem(w->memo, id, entry) : -1;
    Py_XDECREF(entry);
    Py_XDECREF(b);
    Py_XDECREF(id);
    w->items[i].on_stack = false;
    return rc;
}

/* Pops the component rooted at `root` and gives each member its version. */
static int close_component(walk *w, size_t root)
{
    size_t first = w->sp;
    while (first > 0 && w->stack[first - 1] != root)
        first--;
    first--; /* the root itself */
    size_t m = w->sp - first;
    if (m == 1) {
        w->sp = first;
        return set_final(w, root, &w->items[root].local);
    }
    cellar_hash *hs = PyMem_Calloc(m, sizeof *hs);
    cellar_key *k = cellar_key_new();
    int rc = (hs && k) ? 0 : -1;
    if (rc < 0)
        PyErr_NoMemory();
    for (size_t i = 0; rc == 0 && i < m; i++)
        hs[i] = w->items[w->stack[first + i]].local;
    if (rc == 0) {
        qsort(hs, m, sizeof *hs, cmp_hash);
        rc = cellar_key_put_tag(k, "component") < 0 ||
             cellar_key_add_list(k, m) != CELLAR_OK;
        for (size_t i = 0; rc == 0 && i < m; i++)
            rc = cellar_key_put_hash(k, &hs[i]);
    }
    cellar_hash comp = rc == 0 ? cellar_key_digest(k) : (cellar_hash){{0}};
    for (size_t i = 0; rc == 0 && i < m; i++) {
        size_t it = w->stack[first + i];
        cellar_key_reset(k);
        rc = cellar_key_put_tag(k, "member") < 0 ||
                     cellar_key_put_hash(k, &w->items[it].local) < 0 ||
                     cellar_key_put_hash(k, &comp) < 0
                 ? -1
                 : 0;
        cellar_hash v = cellar_key_digest(k);
        if (rc == 0)
            rc = set_final(w, it, &v);
    }
    w->sp = first;
    PyMem_Free(hs);
    cellar_key_free(k);
    return rc ? -1 : 0;
}

static int push(walk *w, PyObject *obj, size_t *at)
{
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 8;
        item *items = PyMem_Realloc(w->items, cap * sizeof *items);
        if (!items) {
            PyErr_NoMemory();
            return -1;
        }
        w->items = items;
        size_t *stack = PyMem_Realloc(w->stack, cap * sizeof *stack);
        if (!stack) {
            PyErr_NoMemory();
            return -1;
        }
        w->stack = stack;
        w->cap = cap;
    }
    PyObject *id = PyLong_FromVoidPtr(obj);
    PyObject *ix = id ? PyLong_FromSize_t(w->n) : NULL;
    int rc = ix ? PyDict_SetItem(w->index_of, id, ix) : -1;
    Py_XDECREF(ix);
    Py_XDECREF(id);
    if (rc < 0)
        return -1;
    *at = w->n++;
    w->items[*at] = (item){.obj = Py_NewRef(obj), .low = *at, .on_stack = true};
    w->stack[w->sp++] = *at;
    return 0;
}

static int visit(walk *w, PyObject *obj, int kind, size_t *at)
{
    if (Py_EnterRecursiveCall(" while computing a cellar code version"))
        return -1;
    size_t me = 0;
    int rc = push(w, obj, &me);
    cellar_key *k = rc == 0 ? cellar_key_new() : NULL;
    if (rc == 0 && !k) {
        PyErr_NoMemory();
        rc = -1;
    }
    int leaf = rc == 0 && kind == CELLAR_CODE_FUNCTION
                   ? leaf_version(w->st, obj, &w->items[me].local)
                   : 0;
    if (leaf < 0)
        rc = -1;
    if (rc == 0 && !leaf) {
        size_t saved = w->cur;
        w->cur = me;
        rc = local_fingerprint(w, me, kind, obj, k);
        w->cur = saved;
        if (rc == 0)
            w->items[me].local = cellar_key_digest(k);
        else if (!PyErr_Occurred())
            PyErr_NoMemory();
    }
    cellar_key_free(k);
    if (rc == 0 && w->items[me].low == me)
        rc = close_component(w, me);
    Py_LeaveRecursiveCall();
    *at = me;
    return rc;
}

static void walk_release(walk *w)
{
    for (size_t i = 0; i < w->n; i++)
        Py_DECREF(w->items[i].obj);
    PyMem_Free(w->items);
    PyMem_Free(w->stack);
    Py_XDECREF(w->index_of);
}

uint64_t cellar_code_walk_placeholders(cellar_state *st)
{
    return st->code_walk ? ((walk *)st->code_walk)->placeholders : 0;
}

int cellar_object_code_version(cellar_state *st, PyObject *obj, PyObject *memo,
                               cellar_hash *out)
{
    int kind = cellar_code_kind(st, obj);
    if (kind <= 0)
        return kind;
    walk *active = st->code_walk;
    if (active) /* a data version inside the walk met notebook code: an edge */
        return ref(active, active->cur, obj, kind, out) == 0 ? 1 : -1;
    if (kind == CELLAR_CODE_FUNCTION) {
        int leaf = leaf_version(st, obj, out);
        if (leaf != 0)
            return leaf;
    }
    PyObject *own = memo ? Py_NewRef(memo) : PyDict_New();
    if (!own)
        return -1;
    walk w = {.st = st, .memo = own, .cur = SIZE_MAX, .index_of = PyDict_New()};
    st->code_walk = &w;
    int rc = w.index_of ? ref(&w, SIZE_MAX, obj, kind, out) : -1;
    st->code_walk = NULL;
    walk_release(&w);
    Py_DECREF(own);
    return rc < 0 ? -1 : 1;
}

/* The node's version from its source hash and its object's version. */
static cellar_hash node_version(cellar_state *st, cellar_fn *fn, bool object,
                                const cellar_hash *v)
{
    cellar_key *k = st->keyenc;
    cellar_key_reset(k);
    cellar_key_add_str(k, "code", 4);
    cellar_key_add_hash(k, &fn->source_version);
    cellar_key_add_str(k, object ? "object" : "data", object ? 6 : 4);
    cellar_key_add_hash(k, v);
    return cellar_key_digest(k);
}

/* A node that is a leaf function (leaf_version) keeps its version in its
 * registry entry, tied to its code object: a cached run then costs a few
 * pointer comparisons per node instead of lookups in cold dictionaries.
 * 1 when *out was filled that way, 0 when the node needs a walk, -1. */
static int leaf_node_version(cellar_state *st, cellar_fn *fn, cellar_hash *out)
{
    PyFunctionObject *f = (PyFunctionObject *)fn->func;
    if (!PyFunction_Check(fn->func) || f->func_defaults || f->func_kwdefaults ||
        f->func_closure ||
        (f->func_dict && PyDict_GetItemString(f->func_dict, "__wrapped__")))
        return 0;
    int kind = cellar_code_kind(st, fn->func);
    if (kind != CELLAR_CODE_FUNCTION)
        return kind < 0 ? -1 : 0;
    if (fn->leaf_code == f->func_code) {
        *out = fn->leaf_version;
        return 1;
    }
    cellar_hash v;
    int leaf = leaf_version(st, fn->func, &v);
    if (leaf != 1)
        return leaf;
    *out = fn->leaf_version = node_version(st, fn, true, &v);
    Py_XSETREF(fn->leaf_code, Py_NewRef(f->func_code));
    return 1;
}

int cellar_code_version(cellar_state *st, cellar_fn *fn, PyObject *ns, PyObject *memo,
                        cellar_hash *out)
{
    (void)ns; /* each function reads its own __globals__ */
    int leaf = leaf_node_version(st, fn, out);
    if (leaf != 0)
        return leaf < 0 ? -1 : 0;
    PyObject *hit = PyDict_GetItemWithError(memo, fn->name);
    if (hit) {
        memcpy(out->bytes, PyBytes_AS_STRING(hit), 16);
        return 0;
    }
    if (PyErr_Occurred())
        return -1;
    cellar_hash v;
    int r = cellar_object_code_version(st, fn->func, memo, &v);
    if (r < 0 && PyErr_ExceptionMatches(PyExc_RecursionError)) {
        PyErr_Clear();
        cellar_warn("node '%s' reaches code nested too deeply to version; it reruns on "
                    "every run",
                    PyUnicode_AsUTF8(fn->name));
        v = cellar_unique_version(st);
        r = 1;
    }
    bool picklable;
    if (r < 0 || (r == 0 && cellar_data_version(st, fn->func, memo, &v, &picklable) < 0))
        return -1;
    *out = node_version(st, fn, r == 1, &v);
    PyObject *b = PyBytes_FromStringAndSize((const char *)out->bytes, 16);
    int rc = b ? PyDict_SetItem(memo, fn->name, b) : -1;
    Py_XDECREF(b);
    return rc;
}
