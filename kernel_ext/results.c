/*
 * results.c - turns a stored result back into a Python value.
 *
 * Small segments come out of LMDB copied into memory this file allocates (a
 * bytes object for the pickle stream, a bytearray for each out-of-band
 * buffer).  Large segments are blob files, which the store hands over as
 * private copy-on-write mappings; each becomes a cellar._Mapping, an object
 * that owns the mapping, exposes it through the buffer protocol (writable:
 * a write copies the page, never touching the file) and unmaps it when the
 * last view is gone.  pickle.loads builds the value on those buffers without
 * a copy, so a 1 GiB array costs no copy and no memory beyond the page
 * cache.  By default the store verifies the checksum over every segment
 * before this returns (one pass over the data, reading the page cache);
 * CELLAR_VERIFY=0 in the kernel's environment skips that and trusts the
 * files.  Nothing is unpickled unless the load succeeded.
 *
 * The _Mapping type is a heap type made once per module and kept as the
 * module's attribute `_Mapping`, so no static state is needed.
 */
#include "cellar_ext.h"

#include <stdlib.h>

typedef struct mapping_object {
    PyObject_HEAD cellar_map *map;
    Py_ssize_t exports;
} mapping_object;

static int mapping_getbuffer(PyObject *self, Py_buffer *view, int flags)
{
    mapping_object *m = (mapping_object *)self;
    int rc = PyBuffer_FillInfo(view, self, cellar_map_data(m->map),
                               (Py_ssize_t)cellar_map_len(m->map), 0, flags);
    if (rc == 0)
        m->exports++;
    return rc;
}

static void mapping_releasebuffer(PyObject *self, Py_buffer *view)
{
    (void)view;
    ((mapping_object *)self)->exports--;
}

static Py_ssize_t mapping_length(PyObject *self)
{
    return (Py_ssize_t)cellar_map_len(((mapping_object *)self)->map);
}

static void mapping_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    cellar_map_free(((mapping_object *)self)->map);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyType_Slot mapping_slots[] = {
    {Py_bf_getbuffer, mapping_getbuffer},
    {Py_bf_releasebuffer, mapping_releasebuffer},
    {Py_mp_length, mapping_length},
    {Py_tp_dealloc, mapping_dealloc},
    {Py_tp_doc, "A private, copy-on-write mapping of one stored blob."},
    {0, NULL},
};

static PyType_Spec mapping_spec = {
    .name = "cellar._Mapping",
    .basicsize = sizeof(mapping_object),
    .flags =
        Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = mapping_slots,
};

/* The module's _Mapping type, made on first use; borrowed-like: new ref. */
static PyObject *mapping_type(cellar_state *st)
{
    PyObject *tp = PyObject_GetAttrString(st->module, "_Mapping");
    if (tp || !PyErr_ExceptionMatches(PyExc_AttributeError))
        return tp;
    PyErr_Clear();
    tp = PyType_FromModuleAndSpec(st->module, &mapping_spec, NULL);
    if (tp && PyObject_SetAttrString(st->module, "_Mapping", tp) < 0)
        Py_CLEAR(tp);
    return tp;
}

typedef struct load_ctx {
    PyObject *stream;  /* bytes, or a _Mapping */
    PyObject *buffers; /* list of bytearray or _Mapping */
    PyTypeObject *mapping;
    int failed;
} load_ctx;

static int keep(load_ctx *ctx, size_t index, PyObject *obj)
{
    if (index == 0) {
        Py_XSETREF(ctx->stream, obj);
        return 0;
    }
    int rc = PyList_Append(ctx->buffers, obj);
    Py_DECREF(obj);
    return rc;
}

static void *alloc_segment(void *opaque, size_t index, size_t nsegs, size_t len)
{
    load_ctx *ctx = opaque;
    (void)nsegs;
    if (len > (size_t)PY_SSIZE_T_MAX) {
        ctx->failed = 1;
        return NULL;
    }
    PyObject *obj = index == 0 ? PyBytes_FromStringAndSize(NULL, (Py_ssize_t)len)
                               : PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)len);
    if (!obj) {
        ctx->failed = 1;
        return NULL;
    }
    void *data = index == 0 ? (void *)PyBytes_AS_STRING(obj) : PyByteArray_AS_STRING(obj);
    if (keep(ctx, index, obj) < 0) {
        ctx->failed = 1;
        return NULL;
    }
    /* An empty bytearray has a shared buffer; hand out a harmless address. */
    return len ? data : (void *)ctx;
}

static int adopt_segment(void *opaque, size_t index, size_t nsegs, cellar_map *map)
{
    load_ctx *ctx = opaque;
    (void)nsegs;
    mapping_object *m = PyObject_New(mapping_object, ctx->mapping);
    if (!m) {
        cellar_map_free(map);
        ctx->failed = 1;
        return -1;
    }
    m->map = map;
    m->exports = 0;
    if (keep(ctx, index, (PyObject *)m) < 0) {
        ctx->failed = 1;
        return -1;
    }
    return 0;
}

static bool verify_wanted(void)
{
    const char *v = getenv("CELLAR_VERIFY");
    return !(v && (!strcmp(v, "0") || !strcmp(v, "no") || !strcmp(v, "off")));
}

PyObject *cellar_load_value(cellar_state *st, cellar_reader *r, const cellar_hash *dv,
                            cellar_status *status, cellar_error *err)
{
    *status = CELLAR_OK;
    PyObject *tp = mapping_type(st);
    if (!tp)
        return NULL;
    load_ctx ctx = {NULL, PyList_New(0), (PyTypeObject *)tp, 0};
    if (!ctx.buffers) {
        Py_DECREF(tp);
        return NULL;
    }
    cellar_status rc = cellar_reader_map_result(r, dv, verify_wanted(), alloc_segment,
                                                adopt_segment, &ctx, err);
    Py_DECREF(tp);
    if (rc != CELLAR_OK || ctx.failed || !ctx.stream) {
        Py_XDECREF(ctx.stream);
        Py_DECREF(ctx.buffers);
        if (ctx.failed || (rc == CELLAR_ENOMEM && PyErr_Occurred())) {
            if (!PyErr_Occurred())
                PyErr_NoMemory();
            return NULL;
        }
        *status = rc == CELLAR_OK ? CELLAR_ECORRUPT : rc;
        return NULL;
    }
    PyObject *args[] = {ctx.stream, ctx.buffers};
    PyObject *kwnames = PyTuple_Pack(1, st->str_buffers);
    PyObject *value =
        kwnames ? PyObject_Vectorcall(st->pickle_loads, args, 1, kwnames) : NULL;
    Py_XDECREF(kwnames);
    Py_DECREF(ctx.stream);
    Py_DECREF(ctx.buffers);
    return value;
}
