/*
 * shell.c - what every part of the extension shares, at the bottom of the
 * layers: the module state, the user's namespace, warnings, and showing an
 * error as IPython does.  It calls nothing else in kernel_ext, so any file
 * may call it.
 *
 * The namespace is the IPython shell's user_ns when the module was loaded as
 * an extension, else __main__'s dict (a plain interpreter).  A warning goes to
 * sys.stderr, which ipykernel sends to the cell as a stderr stream, prefixed
 * "cellar: warning:" so that tests and users can find it; it never replaces a
 * Python error that is being raised.
 */
#include "cellar_ext.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

cellar_state *cellar_state_of(PyObject *module)
{
    return (cellar_state *)PyModule_GetState(module);
}

PyObject *cellar_user_ns(cellar_state *st)
{
    if (st->shell) {
        PyObject *ns = PyObject_GetAttrString(st->shell, "user_ns");
        if (!ns)
            return NULL;
        Py_DECREF(ns); /* the shell keeps it alive */
        return ns;
    }
    PyObject *main = PyImport_AddModule("__main__"); /* borrowed */
    return main ? PyModule_GetDict(main) : NULL;
}

void cellar_warn(const char *fmt, ...)
{
    /* Formatted twice when it does not fit: a warning carries store paths,
     * which may be long, and the reason comes after them. */
    char small[1024];
    const char *text = small;
    va_list ap, again;
    va_start(ap, fmt);
    va_copy(again, ap);
    /* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): va_start is right above */
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    char *big = NULL;
    if (n >= (int)sizeof small && (big = malloc((size_t)n + 1)) != NULL &&
        vsnprintf(big, (size_t)n + 1, fmt, again) >= 0)
        text = big;
    va_end(again);
    if (n < 0)
        text = "(a warning that could not be formatted)";
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb); /* never clobber a pending error */
    /* Out of memory for the whole text, the first 1,023 bytes say that much. */
    PySys_FormatStderr("cellar: warning: %s%s\n", text,
                       text == small && n >= (int)sizeof small ? " [cut: out of memory]"
                                                               : "");
    PyErr_Restore(type, value, tb);
    free(big);
}

void cellar_show_exception(cellar_state *st, PyObject *exc)
{
    PyObject *r = NULL;
    if (st->shell) {
        PyObject *tb = PyException_GetTraceback(exc);
        PyObject *info =
            Py_BuildValue("(OOO)", (PyObject *)Py_TYPE(exc), exc, tb ? tb : Py_None);
        PyObject *show = info ? PyObject_GetAttrString(st->shell, "showtraceback") : NULL;
        PyObject *args = show ? PyTuple_Pack(1, info) : NULL;
        PyObject *kwargs = args ? Py_BuildValue("{si}", "tb_offset", 0) : NULL;
        r = kwargs ? PyObject_Call(show, args, kwargs) : NULL;
        Py_XDECREF(kwargs);
        Py_XDECREF(args);
        Py_XDECREF(show);
        Py_XDECREF(info);
        Py_XDECREF(tb);
        if (!r)
            PyErr_Clear();
    }
    if (!r)
        r = PyObject_CallFunctionObjArgs(st->print_exception, exc, NULL);
    if (!r)
        PyErr_Clear();
    Py_XDECREF(r);
}
