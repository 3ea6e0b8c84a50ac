/*
 * values.c - values: pickling, data versions, and the checks that let the
 * in-memory cache hand a value out again.
 *
 * A data version is the fingerprint of a value's pickle (protocol 5): the
 * stream, then each out-of-band buffer hashed in place (a 1 GiB array is never
 * copied to be fingerprinted; a result about to be stored has its large
 * buffers written to the store in that same pass, cellar_pickle_to_store),
 * then, only when the value holds notebook code,
 * one more segment listing that code's versions.  The stream names the type,
 * dtype, shape and column names, so equal bytes of different shapes never
 * share a version.
 *
 * Notebook code inside data.  Pickle names a function or a class by its
 * qualified name, so a partial, a dict of functions or an instance would keep
 * its version when the code behind the name changes.  The pickler is a
 * subclass of the C `_pickle.Pickler` whose `reducer_override` is a C
 * function: pickle calls it for every object but atoms and builtin
 * containers, it returns NotImplemented at once unless the object is a
 * function, a method, a class or another callable (a wrapper such as
 * lru_cache's, which pickle names like a function), and for notebook code it
 * appends the code version (cellar_object_code_version) to a list while
 * pickling goes on as before.  The stored stream is therefore the normal
 * one, which loads everywhere; the versions go into a segment of their own
 * after the buffers.
 * That segment is stored with the result (pickle ignores unused buffers), so
 * the store's checksum is still the fingerprint of exactly the stored
 * segments, which is the data version.  A second stream only for the
 * fingerprint would cost a second pickling of every value.
 *
 * Code pickle cannot name.  Pickle refuses a notebook function or class
 * that its qualified name no longer reaches: a dict built before the cell
 * that defines its function was re-run holds the old object, and a lambda
 * or a closure has no name at all.  Such a value cannot be stored (loading
 * it would give another object, or fail), but its data version does not
 * need the name: the code version says what the code does.  So when the C
 * pickling fails after meeting notebook code, the value is pickled once
 * more by a versioning-only pickler (a subclass of the pure-Python one,
 * which writes the same bytes as the C one) whose save_global writes such
 * code itself, while reducer_override still notes its code version.  When
 * the name reaches code of the same version (the cell was re-run
 * unchanged), it is written exactly as pickle writes a reachable global, so
 * the value keeps the data version it had, in this kernel and in the next,
 * and nothing downstream reruns; a result stored under that version loads,
 * by name, code of the same version.  Otherwise (the cell was edited since,
 * a lambda, a closure) it is written under a module name that no importable
 * module has: a version of its own, stable across kernels, that no storable
 * value shares, so nothing stored by name is ever loaded in its place.
 *
 * Sets (canonical_sets.c).  A set of strings pickles in hash-seed order, and the C pickler hands
 * exact sets to no hook.  So the C stream is scanned for set opcodes (a walk
 * over the opcodes, cheap next to pickling); a value with a non-empty set is
 * pickled again by a subclass of the pure-Python pickler, whose
 * reducer_override does see sets and reduces each to `set(list)` with the
 * elements sorted by their own fingerprints.  That stream loads to an equal
 * value and is the same in every process; it is what gets stored.  Values
 * without sets never pay for it.  Dicts keep their insertion order: it is
 * part of the value (iteration shows it) and pickle records it faithfully.
 *
 * Reuse.  A value kept in memory can be changed in place by a node body or
 * by the user.  cellar_value_unchanged re-fingerprints it (skipped for
 * deeply immutable values) before it is reused, and
 * cellar_pickled_unchanged re-hashes the live buffers that a pending store
 * write would copy.
 */
#include "cellar_ext.h"

#define CELLAR_SEG_CODE 'B' /* code versions travel as one more buffer */

/* What one pickling collects while the pickler runs.  Each pickler gets its
 * own, in a capsule that is the `self` of its reducer_override: picklings
 * nest (a code version reads a global's data version, a set sorts by its
 * elements'), and with ipykernel's subshells they can interleave on threads,
 * so nothing about a pickling in progress lives in the module state. */
#define COLLECT_CAPSULE "cellar.collect"
typedef struct collect {
    cellar_state *st;
    PyObject *memo;     /* the run's memo for code versions (strong) */
    PyObject *versions; /* bytearray of 16-byte code versions, or NULL */
    bool has_paths;     /* it met a pathlib.Path (file_inputs.c) */
} collect;

static void collect_free(PyObject *capsule)
{
    collect *c = PyCapsule_GetPointer(capsule, COLLECT_CAPSULE);
    if (!c)
        return;
    Py_XDECREF(c->memo);
    Py_XDECREF(c->versions);
    PyMem_Free(c);
}

void cellar_pickled_release(cellar_pickled *p)
{
    for (size_t i = 0; i < p->nviews; i++)
        PyBuffer_Release(&p->views[i]);
    PyMem_Free(p->views);
    PyMem_Free(p->segs);
    Py_CLEAR(p->stream);
    Py_CLEAR(p->buffers);
    Py_CLEAR(p->code);
    Py_CLEAR(p->copies);
    p->owned = false;
    cellar_stage_free(p->stage);
    p->stage = NULL;
    p->views = NULL;
    p->segs = NULL;
    p->nsegs = 0;
    p->nviews = 0;
}

static void hash_segments(cellar_state *st, const cellar_pickled *p, cellar_hash *out)
{
    cellar_fingerprint_reset(st->fp);
    cellar_fingerprint_add(st->fp, CELLAR_SEG_STREAM, p->segs[0].data, p->segs[0].len);
    for (size_t i = 1; i < p->nsegs; i++)
        cellar_fingerprint_add(st->fp, CELLAR_SEG_BUFFER, p->segs[i].data,
                               p->segs[i].len);
    *out = cellar_fingerprint_digest(st->fp);
}

static int fill_segments(cellar_pickled *p)
{
    Py_ssize_t nbuf = PyList_GET_SIZE(p->buffers);
    size_t ncode = p->code ? 1 : 0;
    p->segs = PyMem_Calloc((size_t)nbuf + 1 + ncode, sizeof(cellar_segment));
    p->views = PyMem_Calloc(nbuf ? (size_t)nbuf : 1, sizeof(Py_buffer));
    if (!p->segs || !p->views) {
        PyErr_NoMemory();
        return -1;
    }
    p->segs[0].data = PyBytes_AS_STRING(p->stream);
    p->segs[0].len = (size_t)PyBytes_GET_SIZE(p->stream);
    p->nsegs = 1;
    p->size = p->segs[0].len;
    for (Py_ssize_t i = 0; i < nbuf; i++) {
        Py_buffer *v = &p->views[i];
        if (PyObject_GetBuffer(PyList_GET_ITEM(p->buffers, i), v, PyBUF_ANY_CONTIGUOUS) <
            0)
            return -1;
        p->nviews++;
        p->segs[p->nsegs].data = v->buf;
        p->segs[p->nsegs].len = (size_t)v->len;
        p->nsegs++;
        p->size += (uint64_t)v->len;
    }
    if (p->code) {
        p->segs[p->nsegs].data = PyBytes_AS_STRING(p->code);
        p->segs[p->nsegs].len = (size_t)PyBytes_GET_SIZE(p->code);
        p->nsegs++;
        p->size += (uint64_t)PyBytes_GET_SIZE(p->code);
    }
    return 0;
}

/* The data version; for a result to be stored, its large segments are
 * written to the store in the same pass (cellar_store_stage), and the commit
 * names those files instead of writing the bytes again. */
static void version_segments(cellar_state *st, cellar_pickled *p, bool stage)
{
    if (stage && st->store &&
        cellar_store_stage(st->store, p->segs, p->nsegs, &p->dv, &p->stage, NULL) ==
            CELLAR_OK)
        return;
    hash_segments(st, p, &p->dv);
}

/* ---- the picklers' hook ---- */

/* Appends a 16-byte version to what the pickling collects. */
static int collect_version(collect *c, const cellar_hash *h)
{
    if (!c->versions && !(c->versions = PyByteArray_FromStringAndSize(NULL, 0)))
        return -1;
    Py_ssize_t at = PyByteArray_GET_SIZE(c->versions);
    if (PyByteArray_Resize(c->versions, at + 16) < 0)
        return -1;
    memcpy(PyByteArray_AS_STRING(c->versions) + at, h->bytes, 16);
    return 0;
}

/* A numpy array that is neither C- nor Fortran-contiguous (a strided slice,
 * `a[::2]`, a column of a C-ordered 2-D array) is written by numpy's own
 * reduction in-band: `tobytes()`, then copied into the stream, then hashed,
 * three passes and two fresh allocations of its size (0.23 s for 10 million
 * int64 here).  Reduced instead as its C-contiguous copy (one gathering
 * pass), its buffer goes out of band and is hashed in place like any
 * contiguous array's.  The copy loads to an equal array and has the version
 * of any array with the same dtype, shape and values.  Arrays of objects
 * keep numpy's reduction (their elements are pickled one by one, through
 * this hook).  NotImplemented for every other object. */
static PyObject *contiguous_reduction(PyObject *obj)
{
    Py_buffer view;
    if (PyObject_GetBuffer(obj, &view, PyBUF_ANY_CONTIGUOUS) == 0) {
        PyBuffer_Release(&view); /* contiguous: numpy's reduction is out of band */
        Py_RETURN_NOTIMPLEMENTED;
    }
    PyErr_Clear(); /* strided, or a dtype the buffer protocol cannot show */
    PyObject *flags = PyObject_GetAttrString(obj, "flags");
    PyObject *forc = flags ? PyObject_GetAttrString(flags, "forc") : NULL;
    PyObject *dtype = forc ? PyObject_GetAttrString(obj, "dtype") : NULL;
    PyObject *objects = dtype ? PyObject_GetAttrString(dtype, "hasobject") : NULL;
    PyObject *out = NULL;
    if (objects && forc == Py_False && objects == Py_False) {
        PyObject *name = PyUnicode_FromString("numpy");
        PyObject *numpy = name ? PyImport_GetModule(name) : NULL;
        PyObject *copy =
            numpy ? PyObject_CallMethod(numpy, "ascontiguousarray", "O", obj) : NULL;
        out = copy ? PyObject_CallMethod(copy, "__reduce_ex__", "i", 5) : NULL;
        if (!out && !PyErr_Occurred()) /* no module "numpy": not numpy's array */
            out = Py_NewRef(Py_NotImplemented);
        Py_XDECREF(copy);
        Py_XDECREF(numpy);
        Py_XDECREF(name);
    } else if (objects) {
        out = Py_NewRef(Py_NotImplemented);
    }
    Py_XDECREF(objects);
    Py_XDECREF(dtype);
    Py_XDECREF(forc);
    Py_XDECREF(flags);
    return out;
}

static PyObject *reducer_override(PyObject *capsule, PyObject *obj)
{
    PyTypeObject *t = Py_TYPE(obj);
    /* The fast path: pickle calls this for nearly every object it meets.
     * Other callables may wrap notebook code (an lru_cache wrapper, which
     * pickle names by its qualified name); a pathlib.Path is an instance of
     * a class defined in Python (a heap type). */
    bool code_or_set = t == &PyFunction_Type || t == &PyMethod_Type || PyType_Check(obj) ||
                       t == &PySet_Type || t == &PyFrozenSet_Type ||
                       (t->tp_call && !PyCFunction_Check(obj));
    if (!code_or_set && !(t->tp_flags & Py_TPFLAGS_HEAPTYPE))
        return strcmp(t->tp_name, "numpy.ndarray") == 0 ? contiguous_reduction(obj)
                                                        : Py_NewRef(Py_NotImplemented);
    collect *c = PyCapsule_GetPointer(capsule, COLLECT_CAPSULE);
    if (!c)
        return NULL;
    if (!code_or_set) {
        cellar_hash h;
        if (!cellar_is_path(c->st, t))
            Py_RETURN_NOTIMPLEMENTED;
        if (cellar_path_data_version(c->st, obj, &h) < 0 || collect_version(c, &h) < 0)
            return NULL;
        c->has_paths = true;
        Py_RETURN_NOTIMPLEMENTED; /* pickled as pickle pickles a path */
    }
    if (t == &PySet_Type || t == &PyFrozenSet_Type) /* only the canonical pickler */
        return PySet_GET_SIZE(obj) > 1 ? cellar_canonical_set(c->st, obj, c->memo)
                                       : Py_NewRef(Py_NotImplemented);
    cellar_hash h;
    int rc = cellar_object_code_version(c->st, obj, c->memo, &h);
    if (rc < 0)
        return NULL;
    if (rc == 1 && collect_version(c, &h) < 0)
        return NULL;
    Py_RETURN_NOTIMPLEMENTED;
}

static PyMethodDef reducer_override_def = {
    "reducer_override", reducer_override, METH_O,
    "cellar's hook: notes the code version of notebook code, sorts sets."};

/* ---- the versioning-only pickler's save_global ---- */

/* The collect of a pickler made by pickler_new: its reducer_override is the
 * builtin bound to the capsule. */
static collect *collect_of(PyObject *pickler)
{
    PyObject *hook = PyObject_GetAttrString(pickler, "reducer_override");
    PyObject *capsule =
        hook && PyCFunction_Check(hook) ? PyCFunction_GET_SELF(hook) : NULL;
    collect *c = capsule ? PyCapsule_GetPointer(capsule, COLLECT_CAPSULE) : NULL;
    if (hook && !c && !PyErr_Occurred())
        PyErr_SetString(PyExc_TypeError, "not one of cellar's picklers");
    Py_XDECREF(hook);
    return c;
}

/* What `module`.`qualname` reaches, as pickle looks it up (sys.modules, then
 * one attribute per dotted part; `<locals>` is never an attribute): a new
 * reference, NULL without an error when nothing, NULL with an error. */
static PyObject *lookup_global(PyObject *module, PyObject *qualname)
{
    PyObject *cur = PyImport_GetModule(module);
    PyObject *dot = cur ? PyUnicode_FromString(".") : NULL;
    PyObject *parts = dot ? PyUnicode_Split(qualname, dot, -1) : NULL;
    Py_XDECREF(dot);
    if (!parts) {
        Py_XDECREF(cur);
        return NULL;
    }
    for (Py_ssize_t i = 0; cur && i < PyList_GET_SIZE(parts); i++) {
        PyObject *next = PyObject_GetAttr(cur, PyList_GET_ITEM(parts, i));
        if (!next && PyErr_ExceptionMatches(PyExc_AttributeError))
            PyErr_Clear();
        Py_SETREF(cur, next);
    }
    Py_DECREF(parts);
    return cur;
}

/* Whether `obj` is notebook code that pickle would write as a global (a
 * function, a class or a wrapper such as lru_cache's: reducer_override notes
 * the versions of those) but cannot name, because `name` (NULL: its
 * __qualname__) in its __module__ does not reach it.  1 with *module,
 * *qualname and *reached (what the name reaches instead, or NULL) set as new
 * references; 0 when pickle can name it or it is no such code (pickle
 * decides); -1 with an error. */
static int unnamed_code(cellar_state *st, PyObject *obj, PyObject *name,
                        PyObject **module, PyObject **qualname, PyObject **reached)
{
    *module = *qualname = *reached = NULL;
    int kind = cellar_code_kind(st, obj);
    if (kind != CELLAR_CODE_FUNCTION && kind != CELLAR_CODE_CLASS &&
        kind != CELLAR_CODE_WRAPPED)
        return kind < 0 ? -1 : 0;
    int rc = -1;
    if (name)
        *qualname = Py_NewRef(name);
    if (cellar_optional_attr(obj, "__module__", module) >= 0 &&
        (name || cellar_optional_attr(obj, "__qualname__", qualname) >= 0)) {
        rc = 0; /* no names to write in its place: pickle decides */
        if (*module && *qualname && PyUnicode_Check(*module) &&
            PyUnicode_Check(*qualname)) {
            *reached = lookup_global(*module, *qualname);
            rc = PyErr_Occurred() ? -1 : *reached != obj;
        }
    }
    if (rc != 1) {
        Py_CLEAR(*module);
        Py_CLEAR(*qualname);
        Py_CLEAR(*reached);
    }
    return rc;
}

/* 1 when `reached` is notebook code with the same code version as `obj`
 * (neither version a placeholder of a walk in progress, which stands for any
 * member of its component), 0 when not, -1 with an error. */
static int same_code(collect *c, PyObject *obj, PyObject *reached)
{
    if (!reached)
        return 0;
    uint64_t before = cellar_code_walk_placeholders(c->st);
    cellar_hash mine, theirs;
    int r = cellar_object_code_version(c->st, obj, c->memo, &mine);
    if (r == 1)
        r = cellar_object_code_version(c->st, reached, c->memo, &theirs);
    if (r < 0)
        return -1;
    return r == 1 && cellar_code_walk_placeholders(c->st) == before &&
           cellar_hash_equal(&mine, &theirs);
}

/* pickle's own way of writing a global at protocol 4 and up: module and
 * qualified name as strings, STACK_GLOBAL, and the object memoized. */
static int write_global(PyObject *pickler, PyObject *obj, PyObject *module,
                        PyObject *qualname)
{
    PyObject *r = PyObject_CallMethod(pickler, "save", "O", module);
    Py_XSETREF(r, r ? PyObject_CallMethod(pickler, "save", "O", qualname) : NULL);
    Py_XSETREF(r, r ? PyObject_CallMethod(pickler, "write", "y#", "\x93", (Py_ssize_t)1)
                    : NULL);
    Py_XSETREF(r, r ? PyObject_CallMethod(pickler, "memoize", "O", obj) : NULL);
    Py_XDECREF(r);
    return r ? 0 : -1;
}

/* Writes notebook code that pickle cannot name.  When its name reaches code
 * of the same version (the cell was re-run unchanged), exactly as pickle
 * writes that global: the stream is the one the value had, and a result
 * stored under it loads, by that name, code of the version it was stored
 * with.  Otherwise (edited since, a lambda, a closure) under a module name no
 * importable module has, so that no storable value shares the data version
 * and nothing stored is loaded in its place; still the same in every kernel. */
static int write_unnamed(collect *c, PyObject *pickler, PyObject *obj, PyObject *module,
                         PyObject *qualname, PyObject *reached)
{
    int same = same_code(c, obj, reached);
    if (same != 0)
        return same < 0 ? -1 : write_global(pickler, obj, module, qualname);
    PyObject *apart = PyUnicode_FromFormat("<cellar: not by name> %U", module);
    int rc = apart ? write_global(pickler, obj, apart, qualname) : -1;
    Py_XDECREF(apart);
    return rc;
}

/* save_global(pickler, obj[, name]) of the versioning-only pickler, called as
 * its method and from its dispatch table: notebook code that pickle cannot
 * name is written by write_unnamed; everything else goes to pickle's own
 * save_global. */
static PyObject *version_save_global(PyObject *unused, PyObject *const *args,
                                     Py_ssize_t nargs)
{
    (void)unused;
    if (nargs < 2 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "save_global(pickler, obj, name=None)");
        return NULL;
    }
    collect *c = collect_of(args[0]);
    if (!c)
        return NULL;
    PyObject *module, *qualname, *reached;
    PyObject *name = nargs == 3 && args[2] != Py_None ? args[2] : NULL;
    int unnamed = unnamed_code(c->st, args[1], name, &module, &qualname, &reached);
    if (unnamed < 0)
        return NULL;
    if (unnamed) {
        int rc = write_unnamed(c, args[0], args[1], module, qualname, reached);
        Py_DECREF(module);
        Py_DECREF(qualname);
        Py_XDECREF(reached);
        return rc < 0 ? NULL : Py_NewRef(Py_None);
    }
    PyObject *base = PyObject_GetAttrString(c->st->canonical_pickler, "save_global");
    PyObject *r = base ? PyObject_Vectorcall(base, args, (size_t)nargs, NULL) : NULL;
    Py_XDECREF(base);
    return r;
}

static PyMethodDef version_save_global_def = {
    "save_global", (PyCFunction)(void (*)(void))version_save_global, METH_FASTCALL,
    "cellar's save_global: notebook code pickle cannot name, written by its name."};

/* type(name, (base,), ns), so that its instances take an attribute: each
 * pickler gets its reducer_override there, a builtin bound to its capsule
 * (pickle looks the hook up when dump starts).  `ns` gets __module__. */
static PyObject *make_pickler(PyObject *module, const char *name, PyObject *base,
                              PyObject *ns)
{
    PyObject *modname = PyModule_GetNameObject(module);
    int rc = modname ? PyDict_SetItemString(ns, "__module__", modname) : -1;
    Py_XDECREF(modname);
    return rc == 0 ? PyObject_CallFunction((PyObject *)&PyType_Type, "s(O)O", name, base,
                                           ns)
                   : NULL;
}

static PyObject *import_attr(const char *module, const char *attr)
{
    PyObject *mod = PyImport_ImportModule(module);
    PyObject *a = mod ? PyObject_GetAttrString(mod, attr) : NULL;
    Py_XDECREF(mod);
    return a;
}

/* The versioning-only pickler: the canonical one (sets sorted), with a
 * save_global for notebook code pickle cannot name.  pickle._Pickler calls
 * self.save_global for classes and reduce strings, and its dispatch table's
 * entry for functions directly, so both are replaced. */
static PyObject *make_version_pickler(PyObject *module, cellar_state *st)
{
    PyObject *fn = PyCFunction_NewEx(&version_save_global_def, NULL, NULL);
    PyObject *method = fn ? PyInstanceMethod_New(fn) : NULL;
    PyObject *table = PyObject_GetAttrString(st->canonical_pickler, "dispatch");
    PyObject *dispatch = table && PyDict_Check(table) ? PyDict_Copy(table) : NULL;
    if (table && !dispatch && !PyErr_Occurred())
        PyErr_SetString(PyExc_TypeError, "pickle._Pickler.dispatch is not a dict");
    PyObject *ns = dispatch && method ? PyDict_New() : NULL;
    PyObject *cls = NULL;
    if (ns && PyDict_SetItem(dispatch, (PyObject *)&PyFunction_Type, fn) == 0 &&
        PyDict_SetItemString(ns, "dispatch", dispatch) == 0 &&
        PyDict_SetItemString(ns, "save_global", method) == 0)
        cls = make_pickler(module, "_VersionPickler", st->canonical_pickler, ns);
    Py_XDECREF(ns);
    Py_XDECREF(dispatch);
    Py_XDECREF(table);
    Py_XDECREF(method);
    Py_XDECREF(fn);
    return cls;
}

int cellar_values_init(PyObject *module, cellar_state *st)
{
    st->bytes_io = import_attr("io", "BytesIO");
    PyObject *c = st->bytes_io ? import_attr("_pickle", "Pickler") : NULL;
    PyObject *py = c ? import_attr("pickle", "_Pickler") : NULL;
    PyObject *ns1 = py ? PyDict_New() : NULL, *ns2 = ns1 ? PyDict_New() : NULL;
    if (ns2 && (st->fast_pickler = make_pickler(module, "_Pickler", c, ns1)))
        st->canonical_pickler = make_pickler(module, "_CanonicalPickler", py, ns2);
    Py_XDECREF(ns2);
    Py_XDECREF(ns1);
    Py_XDECREF(py);
    Py_XDECREF(c);
    if (!st->canonical_pickler)
        return -1;
    /* Without it (a pickle module of another shape), values holding code
     * pickle cannot name get unique versions, as they did before it. */
    if (!(st->version_pickler = make_version_pickler(module, st)))
        PyErr_Clear();
    return 0;
}

/* ---- pickling ---- */

/* A pickler ready to dump: (pickler, BytesIO, buffer list, capsule of its
 * collect), as a tuple so that the state can keep one for reuse. */
static PyObject *pickler_new(cellar_state *st, PyObject *cls)
{
    PyObject *buffers = PyList_New(0);
    PyObject *file = buffers ? PyObject_CallNoArgs(st->bytes_io) : NULL;
    PyObject *append = file ? PyObject_GetAttrString(buffers, "append") : NULL;
    PyObject *kwnames =
        append ? PyTuple_Pack(2, st->str_protocol, st->str_buffer_callback) : NULL;
    PyObject *pickler = NULL;
    if (kwnames) {
        PyObject *args[] = {file, st->int_five, append};
        pickler = PyObject_Vectorcall(cls, args, 1, kwnames);
    }
    Py_XDECREF(append);
    Py_XDECREF(kwnames);
    collect *c = pickler ? PyMem_Calloc(1, sizeof *c) : NULL;
    if (pickler && !c)
        PyErr_NoMemory();
    PyObject *capsule = c ? PyCapsule_New(c, COLLECT_CAPSULE, collect_free) : NULL;
    if (c && !capsule)
        PyMem_Free(c);
    else if (c)
        c->st = st;
    PyObject *hook =
        capsule ? PyCFunction_NewEx(&reducer_override_def, capsule, NULL) : NULL;
    PyObject *set = NULL;
    if (hook && PyObject_SetAttr(pickler, st->str_reducer_override, hook) == 0)
        set = PyTuple_Pack(4, pickler, file, buffers, capsule);
    Py_XDECREF(hook);
    Py_XDECREF(capsule);
    Py_XDECREF(pickler);
    Py_XDECREF(file);
    Py_XDECREF(buffers);
    return set;
}

/* Readies a used pickler for the next value: nothing of the last one stays
 * referenced (pickle's memo holds every object it pickled).  -1 when it
 * cannot be reused. */
static int pickler_reset(cellar_state *st, PyObject *set)
{
    collect *c = PyCapsule_GetPointer(PyTuple_GET_ITEM(set, 3), COLLECT_CAPSULE);
    if (!c)
        return -1;
    Py_CLEAR(c->memo);
    Py_CLEAR(c->versions);
    PyObject *buffers = PyTuple_GET_ITEM(set, 2);
    if (PyList_SetSlice(buffers, 0, PyList_GET_SIZE(buffers), NULL) < 0)
        return -1;
    PyObject *r = PyObject_CallMethodNoArgs(PyTuple_GET_ITEM(set, 0), st->str_clear_memo);
    Py_XDECREF(r);
    PyObject *file = PyTuple_GET_ITEM(set, 1);
    PyObject *z = r ? PyObject_CallMethod(file, "seek", "i", 0) : NULL;
    Py_XDECREF(z);
    PyObject *t = z ? PyObject_CallMethodNoArgs(file, st->str_truncate) : NULL;
    Py_XDECREF(t);
    return t ? 0 : -1;
}

/* One pickling of `value` by the pickler `set` into out->stream, ->buffers
 * and ->code.  *met_code says whether it met notebook code, also when it
 * failed. */
static int pickler_dump(cellar_state *st, PyObject *set, PyObject *value, PyObject *memo,
                        cellar_pickled *out, bool *met_code)
{
    collect *c = PyCapsule_GetPointer(PyTuple_GET_ITEM(set, 3), COLLECT_CAPSULE);
    if (!c)
        return -1;
    Py_XSETREF(c->memo, Py_NewRef(memo));
    Py_CLEAR(c->versions);
    c->has_paths = false;
    PyObject *r =
        PyObject_CallMethodOneArg(PyTuple_GET_ITEM(set, 0), st->str_dump, value);
    *met_code = c->versions != NULL;
    out->has_paths = c->has_paths;
    if (!r)
        return -1;
    Py_DECREF(r);
    out->stream = PyObject_CallMethodNoArgs(PyTuple_GET_ITEM(set, 1), st->str_getvalue);
    if (!out->stream)
        return -1;
    if (!PyBytes_Check(out->stream)) {
        PyErr_SetString(PyExc_TypeError, "the pickle stream is not bytes");
        return -1;
    }
    PyObject *buffers = PyTuple_GET_ITEM(set, 2);
    out->buffers = PyList_GetSlice(buffers, 0, PyList_GET_SIZE(buffers));
    if (!out->buffers)
        return -1;
    if (c->versions &&
        !(out->code = PyBytes_FromStringAndSize(PyByteArray_AS_STRING(c->versions),
                                                PyByteArray_GET_SIZE(c->versions))))
        return -1;
    return 0;
}

/* Pickles with `cls`.  The C pickler is kept in the state between picklings
 * (creating one costs about as much as pickling a small value); a pickling
 * nested in another, or on another thread meanwhile, gets a fresh one. */
static int dump(cellar_state *st, PyObject *cls, PyObject *value, PyObject *memo,
                cellar_pickled *out, bool *met_code)
{
    bool cached = cls == st->fast_pickler && !st->pickler_busy;
    PyObject *set = NULL;
    if (cached && st->cached_pickler)
        set = Py_NewRef(st->cached_pickler);
    else if (!(set = pickler_new(st, cls)))
        return -1;
    if (cached)
        st->pickler_busy = true;
    int rc = pickler_dump(st, set, value, memo, out, met_code);
    PyObject *type, *val, *tb;
    PyErr_Fetch(&type, &val, &tb); /* the reset must not lose pickling's error */
    bool reusable = pickler_reset(st, set) == 0;
    PyErr_Clear();
    PyErr_Restore(type, val, tb);
    if (cached) {
        st->pickler_busy = false;
        if (reusable && !st->cached_pickler)
            st->cached_pickler = Py_NewRef(set);
        else if (!reusable)
            Py_CLEAR(st->cached_pickler);
    }
    Py_DECREF(set);
    return rc;
}

/* Turns a failed pickling into "cannot be pickled" (1, *why set) when the
 * error is an ordinary exception; -1 keeps the error (memory, interrupts). */
static int pickling_failed(PyObject **why)
{
    if (!PyErr_ExceptionMatches(PyExc_Exception) ||
        PyErr_ExceptionMatches(PyExc_MemoryError))
        return -1;
    PyObject *exc = cellar_fetch_exception();
    *why = exc ? PyObject_Str(exc) : NULL;
    Py_XDECREF(exc);
    if (!*why) {
        PyErr_Clear();
        *why = PyUnicode_FromString("pickling failed");
    }
    return *why ? 1 : -1;
}

/* The data version `value` would have if pickle could name the notebook
 * code in it (the versioning-only pickling): 1 with out->dv set; 0 when it
 * cannot be pickled even so (no error; *why then says what stopped this
 * pickling); -1 on a hard error.  *out holds no references after. */
static int version_only(cellar_state *st, PyObject *value, PyObject *memo,
                        cellar_pickled *out, PyObject **why)
{
    bool met_code;
    int rc = dump(st, st->version_pickler, value, memo, out, &met_code);
    if (rc == 0) {
        rc = fill_segments(out) < 0 ? -1 : 1;
        if (rc == 1)
            hash_segments(st, out, &out->dv);
        cellar_pickled_release(out);
        return rc;
    }
    cellar_pickled_release(out);
    PyObject *other = NULL;
    if (pickling_failed(&other) < 0)
        return -1;
    Py_SETREF(*why, other);
    return 0;
}

/* For a result to be stored: the bytes to store are taken now, before any
 * downstream body can change the value in place.  Buffers too small to be
 * blobs are copied (at most 1 MiB each); large ones were staged, i.e.
 * copied into the store's files, by version_segments.  `owned` says whether
 * every segment is now immutable (none left as a view of the live value, as
 * when staging could not be done). */
static int own_segments(cellar_pickled *p)
{
    size_t large = 0;
    for (size_t i = 0; i < p->nsegs; i++)
        large += p->segs[i].len >= CELLAR_BLOB_MIN_DEFAULT;
    for (size_t i = 1; i <= p->nviews; i++) { /* segments 1..nviews are the views */
        if (p->segs[i].len >= CELLAR_BLOB_MIN_DEFAULT)
            continue;
        if (!p->copies && !(p->copies = PyList_New(0)))
            return -1;
        PyObject *b =
            PyBytes_FromStringAndSize((const char *)p->segs[i].data, (Py_ssize_t)p->segs[i].len);
        if (!b || PyList_Append(p->copies, b) < 0) {
            Py_XDECREF(b);
            return -1;
        }
        p->segs[i].data = PyBytes_AS_STRING(b);
        Py_DECREF(b); /* the list keeps it */
    }
    p->owned = large == 0 || cellar_stage_files(p->stage) == large;
    return 0;
}

static int pickle_value(cellar_state *st, PyObject *value, PyObject *memo,
                        cellar_pickled *out, PyObject **why, bool stage)
{
    memset(out, 0, sizeof *out);
    *why = NULL;
    PyObject *own_memo = NULL;
    if (!memo && !(memo = own_memo = PyDict_New()))
        return -1;
    bool met_code = false;
    int rc = dump(st, st->fast_pickler, value, memo, out, &met_code);
    if (rc == 0 && cellar_stream_has_sets((const unsigned char *)PyBytes_AS_STRING(out->stream),
                                   (size_t)PyBytes_GET_SIZE(out->stream))) {
        cellar_pickled_release(out);
        rc = dump(st, st->canonical_pickler, value, memo, out, &met_code);
    }
    if (rc == 0 && fill_segments(out) < 0)
        rc = -2; /* not a pickling failure */
    if (rc < 0) {
        cellar_pickled_release(out);
        rc = rc == -2 ? -1 : pickling_failed(why);
        int v = rc == 1 && met_code && st->version_pickler
                    ? version_only(st, value, memo, out, why)
                    : 0;
        if (v < 0) {
            Py_CLEAR(*why);
            rc = -1;
        }
        out->stable = v == 1;
        if (rc == 1 && !out->stable)
            out->dv = cellar_unique_version(st);
    } else {
        out->stable = true;
        version_segments(st, out, stage);
        if (stage && own_segments(out) < 0) {
            cellar_pickled_release(out);
            rc = -1;
        }
    }
    Py_XDECREF(own_memo);
    return rc;
}

int cellar_pickle(cellar_state *st, PyObject *value, PyObject *memo, cellar_pickled *out,
                  PyObject **why)
{
    return pickle_value(st, value, memo, out, why, false);
}

int cellar_pickle_to_store(cellar_state *st, PyObject *value, PyObject *memo,
                           cellar_pickled *out, PyObject **why)
{
    return pickle_value(st, value, memo, out, why, true);
}

bool cellar_pickled_unchanged(cellar_state *st, const cellar_pickled *p)
{
    cellar_hash now;
    hash_segments(st, p, &now);
    return cellar_hash_equal(&now, &p->dv);
}

cellar_hash cellar_unique_version(cellar_state *st)
{
    return cellar_hash_unique(&st->unique_counter);
}

int cellar_data_version(cellar_state *st, PyObject *value, PyObject *memo,
                        cellar_hash *out, bool *stable)
{
    cellar_pickled p;
    PyObject *why = NULL;
    int rc = cellar_pickle(st, value, memo, &p, &why);
    if (rc < 0)
        return -1;
    Py_XDECREF(why);
    *stable = p.stable;
    *out = p.dv;
    cellar_pickled_release(&p);
    return 0;
}

/* ---- reuse ---- */

bool cellar_value_is_immutable(PyObject *v, int depth)
{
    PyTypeObject *t = Py_TYPE(v);
    if (v == Py_None || v == Py_Ellipsis || t == &PyLong_Type || t == &PyBool_Type ||
        t == &PyFloat_Type || t == &PyComplex_Type || t == &PyUnicode_Type ||
        t == &PyBytes_Type || t == &PyRange_Type)
        return true;
    if (depth >= 8)
        return false;
    if (t == &PyTuple_Type) {
        Py_ssize_t n = PyTuple_GET_SIZE(v);
        if (n > 64)
            return false;
        for (Py_ssize_t i = 0; i < n; i++)
            if (!cellar_value_is_immutable(PyTuple_GET_ITEM(v, i), depth + 1))
                return false;
        return true;
    }
    return false;
}

bool cellar_value_is_iterator(PyObject *v)
{
    /* An iterator is its own iterator; a generator is one. */
    return PyGen_Check(v) || (PyIter_Check(v) && !PyType_Check(v) &&
                              Py_TYPE(v)->tp_iter == PyObject_SelfIter);
}

int cellar_value_unchanged(cellar_state *st, PyObject *value, const cellar_hash *dv,
                           PyObject *memo)
{
    if (cellar_value_is_immutable(value, 0))
        return 1;
    cellar_hash now;
    bool stable;
    if (cellar_data_version(st, value, memo, &now, &stable) < 0)
        return -1;
    return stable && cellar_hash_equal(&now, dv);
}
