/*
 * file_inputs.c - pathlib.Path values versioned by what they name.  A value
 * that is, or holds, a `pathlib.Path` gets the content of the file or
 * directory it names into its data version (runtime file_version.h: each
 * file is read once, its fingerprint kept in the store with the file's
 * identity), so an edited input reruns its readers and a touched one does
 * not.  values.c's pickler hook calls in here for every Path it meets; the
 * version joins the value's code versions in its extra segment, while the
 * stream still names the path as pickle writes it.  A value holding a Path
 * is never stored: its data version is only true of the file as it is now,
 * so a later kernel computes it again and sees the file then.  A path that
 * cannot be read (a FIFO, a directory inside itself, no permission) fails
 * the pickling with an error that says so, which gives the value a version
 * of its own: its readers rerun, and the warning names the file.
 */
#include "cellar_ext.h"

#include "cellar/file_version.h"

#define CELLAR_SEG_FILE 'F'

int cellar_file_inputs_init(cellar_state *st)
{
    PyObject *pathlib = PyImport_ImportModule("pathlib");
    PyObject *path = pathlib ? PyObject_GetAttrString(pathlib, "Path") : NULL;
    Py_XDECREF(pathlib);
    if (path && !PyType_Check(path)) {
        PyErr_SetString(PyExc_TypeError, "pathlib.Path is not a class");
        Py_CLEAR(path);
    }
    st->path_type = path;
    return path ? 0 : -1;
}

bool cellar_is_path(cellar_state *st, PyTypeObject *t)
{
    return st->path_type && PyType_IsSubtype(t, (PyTypeObject *)st->path_type);
}

int cellar_path_data_version(cellar_state *st, PyObject *path, cellar_hash *out)
{
    PyObject *fs = PyOS_FSPath(path);
    PyObject *bytes = NULL;
    if (fs && PyUnicode_Check(fs))
        bytes = PyUnicode_EncodeFSDefault(fs);
    else if (fs && PyBytes_Check(fs))
        bytes = Py_NewRef(fs);
    Py_XDECREF(fs);
    if (!bytes)
        return -1;
    const char *name = PyBytes_AS_STRING(bytes);
    if (strlen(name) != (size_t)PyBytes_GET_SIZE(bytes)) {
        PyErr_Format(PyExc_ValueError, "the path %R holds a NUL byte", path);
        Py_DECREF(bytes);
        return -1;
    }
    cellar_hash content;
    cellar_error err;
    cellar_status rc;
    Py_BEGIN_ALLOW_THREADS; /* a large file is read (once) */
    rc = cellar_path_version(st->store, name, &content, NULL, &err);
    Py_END_ALLOW_THREADS;
    Py_DECREF(bytes);
    if (rc != CELLAR_OK) {
        if (rc == CELLAR_ENOMEM)
            return PyErr_NoMemory(), -1;
        PyObject *shown = PyObject_Str(path);
        const char *text = shown ? PyUnicode_AsUTF8(shown) : NULL;
        if (!text)
            PyErr_Clear();
        cellar_warn("cannot version the file input '%s' by its content (%s): what reads "
                    "it reruns at every run",
                    text ? text : "?", err.message);
        PyErr_Format(PyExc_OSError, "cannot version the file input '%s' by its content: %s",
                     text ? text : "?", err.message);
        Py_XDECREF(shown);
        return -1;
    }
    /* Under a tag of its own, so no code version can stand for it. */
    uint8_t tagged[1 + sizeof content.bytes] = {CELLAR_SEG_FILE};
    memcpy(tagged + 1, content.bytes, sizeof content.bytes);
    *out = cellar_hash_bytes(tagged, sizeof tagged);
    return 0;
}
