/*
 * shell.c - what every part of the extension shares, at the bottom of the
 * layers: the module state, the user's namespace and warnings.  It calls
 * nothing else in kernel_ext, so any file may call it.
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
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    /* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): va_start is right above */
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb); /* never clobber a pending error */
    PySys_FormatStderr("cellar: warning: %s\n", buf);
    PyErr_Restore(type, value, tb);
}
