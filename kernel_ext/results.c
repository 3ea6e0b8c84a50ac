/*
 * results.c - turns a stored result back into a Python value.
 *
 * The store copies each segment, verifying its checksum as it goes, into
 * memory that this file allocates: a bytes object for the pickle stream and a
 * bytearray for each out-of-band buffer.  pickle.loads then builds the value
 * on those bytearrays without another copy (a numpy array wraps its bytearray,
 * writable), so loading costs one pass over the data and one copy's memory.
 * Nothing is unpickled unless the whole result verified.
 */
#include "cellar_ext.h"

typedef struct load_ctx {
    PyObject *stream;  /* bytes */
    PyObject *buffers; /* list of bytearray */
    int failed;
} load_ctx;

static void *alloc_segment(void *opaque, size_t index, size_t nsegs, size_t len)
{
    load_ctx *ctx = opaque;
    (void)nsegs;
    if (len > (size_t)PY_SSIZE_T_MAX) {
        ctx->failed = 1;
        return NULL;
    }
    if (index == 0) {
        Py_CLEAR(ctx->stream);
        ctx->stream = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)len);
        if (!ctx->stream) {
            ctx->failed = 1;
            return NULL;
        }
        return PyBytes_AS_STRING(ctx->stream);
    }
    PyObject *b = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)len);
    if (!b || PyList_Append(ctx->buffers, b) < 0) {
        Py_XDECREF(b);
        ctx->failed = 1;
        return NULL;
    }
    Py_DECREF(b);
    /* An empty bytearray has a shared buffer; hand out a harmless address. */
    return len ? PyByteArray_AS_STRING(b) : (void *)ctx;
}

PyObject *cellar_load_value(cellar_state *st, cellar_reader *r, const cellar_hash *dv,
                            cellar_status *status, cellar_error *err)
{
    load_ctx ctx = {NULL, PyList_New(0), 0};
    *status = CELLAR_OK;
    if (!ctx.buffers)
        return NULL;
    cellar_status rc = cellar_reader_load_result(r, dv, alloc_segment, &ctx, err);
    if (rc != CELLAR_OK || ctx.failed || !ctx.stream) {
        Py_XDECREF(ctx.stream);
        Py_DECREF(ctx.buffers);
        if (ctx.failed || rc == CELLAR_ENOMEM) {
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
