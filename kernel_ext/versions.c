/*
 * versions.c - data versions (code versions are in code_version.c).
 *
 * A data version is the fingerprint of a value's pickle (protocol 5): the
 * stream, then each out-of-band buffer hashed in place, so a 1 GiB array is
 * never copied to be fingerprinted.  The stream names the type, dtype, shape
 * and column names, so equal bytes of different shapes never share a version.
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
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t parts[4] = {(uint64_t)getpid(), (uint64_t)ts.tv_sec, (uint64_t)ts.tv_nsec,
                         ++st->unique_counter};
    cellar_fingerprint_reset(st->fp);
    cellar_fingerprint_add(st->fp, 'U', parts, sizeof parts);
    return cellar_fingerprint_digest(st->fp);
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
