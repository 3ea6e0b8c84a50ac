/*
 * behavior.c - node behaviours, Hamilton's caching behaviours: what a node
 * says about its own caching (@cellar.node(behavior=...), read once when the
 * function is registered), what a run says (`%cellar run --recompute N
 * --disable N --ignore N`, cellar.run(recompute=, disable=, ignore=): a dict
 * name -> behaviour for that run only), and the default for nodes that name
 * none (CELLAR_DEFAULT_BEHAVIOR, `%cellar default-behavior NAME`).  A run's
 * option wins over the decorator, which wins over the default.  This file
 * only names, parses and records behaviours; plan.c gives each slot its own
 * once per run, and execute.c acts on it (cellar_ext.h says what each does).
 */
#include "cellar_ext.h"

#include <stdlib.h>

#define MARK "__cellar_behavior__"

const char *const cellar_behavior_names[CELLAR_NBEHAVIORS] = {"default", "recompute",
                                                              "disable", "ignore"};

static int from_utf8(const char *s)
{
    for (int b = 0; s && b < CELLAR_NBEHAVIORS; b++)
        if (!strcmp(s, cellar_behavior_names[b]))
            return b;
    return -1;
}

int cellar_behavior_parse(cellar_state *st, PyObject *name, const char *what)
{
    const char *s = PyUnicode_Check(name) ? PyUnicode_AsUTF8(name) : NULL;
    if (!s)
        PyErr_Clear();
    int b = from_utf8(s);
    if (b < 0)
        PyErr_Format(st->RunError,
                     "%s: unknown behaviour %R (the behaviours are default, recompute, "
                     "disable and ignore)",
                     what, name);
    return b;
}

int cellar_behavior_default(cellar_state *st)
{
    if (!st->default_behavior_set) {
        const char *env = getenv("CELLAR_DEFAULT_BEHAVIOR");
        int b = env && *env ? from_utf8(env) : CELLAR_BEHAVIOR_DEFAULT;
        if (b < 0)
            cellar_warn("CELLAR_DEFAULT_BEHAVIOR='%.100s' is not a behaviour (default, "
                        "recompute, disable, ignore): nodes use 'default'",
                        env);
        st->default_behavior = b < 0 ? CELLAR_BEHAVIOR_DEFAULT : b;
        st->default_behavior_set = true;
    }
    return st->default_behavior;
}

int cellar_behavior_of(cellar_state *st, PyObject *func)
{
    (void)st;
    PyObject *mark = PyObject_GetAttrString(func, MARK);
    if (!mark) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError))
            cellar_warn("the behaviour mark of a function could not be read; it uses the "
                        "default behaviour");
        PyErr_Clear();
        return CELLAR_BEHAVIOR_UNSET;
    }
    const char *s = PyUnicode_Check(mark) ? PyUnicode_AsUTF8(mark) : NULL;
    if (!s)
        PyErr_Clear();
    int b = from_utf8(s);
    if (b < 0)
        cellar_warn("a function's " MARK " is not a behaviour; it uses the default "
                    "behaviour (mark nodes with @cellar.node(behavior=...))");
    Py_DECREF(mark);
    return b < 0 ? CELLAR_BEHAVIOR_UNSET : b;
}

int cellar_behavior_add(cellar_state *st, PyObject *behaviors, PyObject *names,
                        int behavior)
{
    PyObject *set = cellar_results_node_set(st, names, cellar_behavior_names[behavior]);
    if (!set)
        return PyErr_Occurred() ? -1 : 0;
    PyObject *it = PyObject_GetIter(set), *name;
    PyObject *b = PyLong_FromLong(behavior);
    int rc = it && b ? 0 : -1;
    while (rc == 0 && (name = PyIter_Next(it))) {
        PyObject *had = PyDict_GetItemWithError(behaviors, name);
        if (had && PyLong_AsLong(had) != behavior) {
            PyErr_Format(st->RunError,
                         "node '%U' is given two behaviours for this run: %s and %s",
                         name, cellar_behavior_names[PyLong_AsLong(had)],
                         cellar_behavior_names[behavior]);
            rc = -1;
        } else if (PyErr_Occurred() || PyDict_SetItem(behaviors, name, b) < 0) {
            rc = -1;
        }
        Py_DECREF(name);
    }
    if (rc == 0 && PyErr_Occurred())
        rc = -1;
    Py_XDECREF(b);
    Py_XDECREF(it);
    Py_DECREF(set);
    return rc;
}

PyObject *cellar_behavior_options_text(PyObject *behaviors)
{
    PyObject *text = PyUnicode_FromString("");
    for (int b = CELLAR_BEHAVIOR_RECOMPUTE; text && behaviors && b < CELLAR_NBEHAVIORS;
         b++) {
        PyObject *names = PyList_New(0), *name, *v;
        Py_ssize_t pos = 0;
        while (names && PyDict_Next(behaviors, &pos, &name, &v))
            if (PyLong_AsLong(v) == b && PyList_Append(names, name) < 0)
                Py_CLEAR(names);
        PyObject *sep =
            names && PyList_Sort(names) == 0 ? PyUnicode_FromString(",") : NULL;
        PyObject *joined = sep ? PyUnicode_Join(sep, names) : NULL;
        PyObject *more = joined && PyList_GET_SIZE(names) > 0
                             ? PyUnicode_FromFormat("%U --%s %U", text,
                                                    cellar_behavior_names[b], joined)
                             : Py_XNewRef(joined ? text : NULL);
        Py_XDECREF(joined);
        Py_XDECREF(sep);
        Py_XDECREF(names);
        Py_SETREF(text, more);
    }
    return text;
}

/* A function already in the registry (marked in a later cell, or by calling
 * cellar.node(f, behavior=...) on it) takes the mark now: the registry reads
 * it only when a definition is registered. */
static void mark_registered(cellar_state *st, PyObject *func, int behavior)
{
    PyObject *name = PyObject_GetAttrString(func, "__name__");
    PyObject *cap = name && PyUnicode_Check(name)
                        ? PyDict_GetItemWithError(st->functions, name)
                        : NULL;
    if (cap && cellar_fn_of(cap)->func == func)
        cellar_fn_of(cap)->behavior = behavior;
    Py_XDECREF(name);
    PyErr_Clear();
}

PyObject *cellar_behavior_node_py(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"func", "behavior", NULL};
    cellar_state *st = cellar_state_of(module);
    PyObject *func = Py_None, *name = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O$O:node", kwlist, &func, &name))
        return NULL;
    int b = CELLAR_BEHAVIOR_UNSET;
    if (name != Py_None &&
        (b = cellar_behavior_parse(st, name, "cellar.node(behavior=...)")) < 0)
        return NULL;
    if (func == Py_None) { /* @cellar.node(behavior=...): the decorator */
        PyObject *self = PyObject_GetAttrString(module, "node");
        PyObject *functools = self ? PyImport_ImportModule("functools") : NULL;
        PyObject *partial =
            functools ? PyObject_GetAttrString(functools, "partial") : NULL;
        PyObject *kw = partial ? Py_BuildValue("{sO}", "behavior", name) : NULL;
        PyObject *pargs = kw ? PyTuple_Pack(1, self) : NULL;
        PyObject *r = pargs ? PyObject_Call(partial, pargs, kw) : NULL;
        Py_XDECREF(pargs);
        Py_XDECREF(kw);
        Py_XDECREF(partial);
        Py_XDECREF(functools);
        Py_XDECREF(self);
        return r;
    }
    if (!PyCallable_Check(func)) {
        PyErr_Format(PyExc_TypeError, "cellar.node decorates a function, not %R", func);
        return NULL;
    }
    if (b == CELLAR_BEHAVIOR_UNSET) {
        if (PyObject_DelAttrString(func, MARK) < 0)
            PyErr_Clear(); /* none to drop */
    } else {
        PyObject *mark = PyUnicode_FromString(cellar_behavior_names[b]);
        int rc = mark ? PyObject_SetAttrString(func, MARK, mark) : -1;
        Py_XDECREF(mark);
        if (rc < 0)
            return NULL;
    }
    mark_registered(st, func, b);
    return Py_NewRef(func);
}

PyObject *cellar_behavior_magic(cellar_state *st, PyObject *args)
{
    Py_ssize_t n = PyList_GET_SIZE(args);
    if (n > 2) {
        PyErr_Format(st->RunError, "%%cellar default-behavior takes one NAME\n\n%s",
                     cellar_magic_usage);
        return NULL;
    }
    int b = cellar_behavior_default(st);
    if (n == 2) {
        b = cellar_behavior_parse(st, PyList_GET_ITEM(args, 1),
                                  "%cellar default-behavior");
        if (b < 0)
            return NULL;
        st->default_behavior = b;
    }
    PySys_FormatStdout("cellar: default behaviour %s: nodes without "
                       "@cellar.node(behavior=...) use it\n",
                       cellar_behavior_names[b]);
    Py_RETURN_NONE;
}
