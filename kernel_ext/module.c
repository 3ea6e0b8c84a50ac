/*
 * module.c - the `cellar` CPython module: PEP 489 multi-phase initialization,
 * the module state that holds everything (no static globals), and the IPython
 * entry points.  `load_ipython_extension` opens the store, registers the
 * `%cellar` magic and the pre/post_run_cell hooks (once, even across
 * %reload_ext, since IPython's event registry ignores an equal callable), and
 * prints where the store is and what it holds.  Under the cellar kernel
 * (CELLAR_KERNEL_SESSION set) the first load happens at the kernel's start,
 * outside any cell, and says nothing.
 */
#include "cellar_ext.h"

#include <stdio.h>

#include "cellar/units.h"

int cellar_open_store(cellar_state *st, PyObject *dir)
{
    PyObject *abs = NULL, *os_path = PyImport_ImportModule("os.path");
    if (!os_path)
        return -1;
    PyObject *expanded = PyObject_CallMethod(os_path, "expanduser", "O", dir);
    if (expanded) {
        abs = PyObject_CallMethod(os_path, "abspath", "O", expanded);
        Py_DECREF(expanded);
    }
    Py_DECREF(os_path);
    if (!abs)
        return -1;
    const char *path = PyUnicode_AsUTF8(abs);
    if (!path) {
        Py_DECREF(abs);
        return -1;
    }
    cellar_store *store = NULL;
    cellar_error err;
    cellar_status rc = cellar_store_open(path, NULL, &store, &err);
    Py_DECREF(abs);
    if (rc != CELLAR_OK) {
        PyErr_Format(st->StoreError, "cannot open the store: %s", err.message);
        return -1;
    }
    /* Set aside as damaged, or read-only: said once, here. */
    if (cellar_store_notice(store))
        cellar_warn("%s", cellar_store_notice(store));
    if (st->store)
        cellar_store_close(st->store);
    st->store = store;
    cellar_gc_configure(st); /* its budget for automatic gc */
    /* Values of the old store's session stay valid: keys are content-derived. */
    return 0;
}

PyObject *cellar_store_summary(cellar_state *st)
{
    if (!st->store)
        return PyUnicode_FromString("cellar: no store is open");
    cellar_reader *r = NULL;
    cellar_error err;
    cellar_store_stats stats = {0};
    if (cellar_reader_begin(st->store, &r, &err) == CELLAR_OK) {
        cellar_reader_counts(r, &stats, &err); /* never a walk on the kernel's path */
        cellar_reader_end(r);
    }
    char size[CELLAR_UNITS_BUFSIZE];
    cellar_units_size(stats.result_bytes, size);
    return PyUnicode_FromFormat(
        "cellar: store %s (%llu nodes, %llu results, %s)", cellar_store_path(st->store),
        (unsigned long long)stats.nodes, (unsigned long long)stats.results, size);
}

static PyObject *default_store_dir(void)
{
    const char *env = getenv("CELLAR_DIR");
    if (env && *env)
        return PyUnicode_FromString(env);
    return PyUnicode_FromString(".cellar");
}

static int register_hooks(cellar_state *st, PyObject *ip)
{
    PyObject *events = PyObject_GetAttrString(ip, "events");
    if (!events)
        return -1;
    PyObject *a =
        PyObject_CallMethod(events, "register", "sO", "pre_run_cell", st->pre_hook);
    PyObject *b =
        a ? PyObject_CallMethod(events, "register", "sO", "post_run_cell", st->post_hook)
          : NULL;
    Py_XDECREF(a);
    Py_XDECREF(b);
    Py_DECREF(events);
    return b ? 0 : -1;
}

static PyObject *load_ipython_extension(PyObject *module, PyObject *ip)
{
    cellar_state *st = cellar_state_of(module);
    const char *session = getenv("CELLAR_KERNEL_SESSION");
    bool at_start = session && *session && !st->shell;
    if (!st->store) {
        PyObject *dir = default_store_dir();
        if (!dir)
            return NULL;
        int rc = cellar_open_store(st, dir);
        Py_DECREF(dir);
        if (rc < 0)
            return NULL;
    }
    Py_INCREF(ip);
    Py_XSETREF(st->shell, ip);
    PyObject *magic = PyObject_GetAttrString(module, "_magic");
    if (!magic)
        return NULL;
    PyObject *r = PyObject_CallMethod(ip, "register_magic_function", "Oss", magic, "line",
                                      "cellar");
    Py_DECREF(magic);
    if (!r)
        return NULL;
    Py_DECREF(r);
    if (register_hooks(st, ip) < 0)
        return NULL;
    /* At start no cell is running; otherwise the loading cell joins the
     * pending table, so what it defines below the %load_ext line is known. */
    st->loading_cell = !at_start && !cellar_hooks_adopt_loading_cell(st);
    if (at_start)
        Py_RETURN_NONE;
    PyObject *summary = cellar_store_summary(st);
    if (!summary)
        return NULL;
    PySys_FormatStdout("%U\n", summary);
    Py_DECREF(summary);
    Py_RETURN_NONE;
}

static PyObject *unload_ipython_extension(PyObject *module, PyObject *ip)
{
    cellar_state *st = cellar_state_of(module);
    PyObject *events = PyObject_GetAttrString(ip, "events");
    if (!events)
        return NULL;
    PyObject *a =
        PyObject_CallMethod(events, "unregister", "sO", "pre_run_cell", st->pre_hook);
    Py_XDECREF(a);
    if (!a)
        PyErr_Clear();
    PyObject *b =
        PyObject_CallMethod(events, "unregister", "sO", "post_run_cell", st->post_hook);
    Py_XDECREF(b);
    if (!b)
        PyErr_Clear();
    Py_DECREF(events);
    PyDict_Clear(st->pending);
    Py_RETURN_NONE;
}

static PyObject *run_py(PyObject *module, PyObject *args, PyObject *kwargs)
{
    cellar_state *st = cellar_state_of(module);
    if (PyTuple_GET_SIZE(args) == 0) {
        PyErr_SetString(st->RunError, "cellar.run needs at least one target node name");
        return NULL;
    }
    PyObject *targets = PySequence_List(args);
    if (!targets)
        return NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(targets); i++)
        if (!PyUnicode_Check(PyList_GET_ITEM(targets, i))) {
            Py_DECREF(targets);
            PyErr_SetString(PyExc_TypeError,
                            "cellar.run targets must be node names (str)");
            return NULL;
        }
    PyObject *inputs = kwargs ? PyDict_Copy(kwargs) : PyDict_New();
    if (!inputs) {
        Py_DECREF(targets);
        return NULL;
    }
    /* recompute=, disable=, ignore= are the run's options, not inputs: lists
     * of node names (cellar_behavior_add checks them). */
    PyObject *behaviors = PyDict_New();
    int rc = behaviors ? 0 : -1;
    for (int b = CELLAR_BEHAVIOR_RECOMPUTE; rc == 0 && b < CELLAR_NBEHAVIORS; b++) {
        PyObject *names = PyDict_GetItemString(inputs, cellar_behavior_names[b]);
        if (!names)
            continue;
        Py_INCREF(names);
        if (PyDict_DelItemString(inputs, cellar_behavior_names[b]) < 0 ||
            (!st->running && cellar_behavior_add(st, behaviors, names, b) < 0))
            rc = -1;
        Py_DECREF(names);
    }
    if (rc < 0) {
        Py_XDECREF(behaviors);
        Py_DECREF(targets);
        Py_DECREF(inputs);
        return NULL;
    }
    PyObject *r = cellar_auto_note_run(st, targets, inputs, behaviors) == 0
                      ? cellar_run_behaving(st, targets, inputs, behaviors)
                      : NULL;
    Py_DECREF(behaviors);
    Py_DECREF(targets);
    Py_DECREF(inputs);
    return r;
}

static PyObject *store_path_py(PyObject *module, PyObject *unused)
{
    (void)unused;
    cellar_state *st = cellar_state_of(module);
    if (!st->store)
        Py_RETURN_NONE;
    return PyUnicode_FromString(cellar_store_path(st->store));
}

static PyObject *data_version_py(PyObject *module, PyObject *value)
{
    cellar_state *st = cellar_state_of(module);
    cellar_pickled p;
    PyObject *why = NULL;
    int rc = cellar_pickle(st, value, NULL, &p, &why);
    if (rc < 0)
        return NULL;
    if (rc == 1 && !p.stable) {
        PyErr_Format(PyExc_TypeError, "the value has no data version: %U", why);
        Py_DECREF(why);
        return NULL;
    }
    Py_XDECREF(why); /* a value that cannot be stored can still have a version */
    char hex[CELLAR_HASH_HEX_LEN + 1];
    cellar_hash_to_hex(&p.dv, hex);
    cellar_pickled_release(&p);
    return PyUnicode_FromString(hex);
}

static PyObject *forget_memory_py(PyObject *module, PyObject *unused)
{
    (void)unused;
    PyDict_Clear(cellar_state_of(module)->memo);
    Py_RETURN_NONE;
}

static PyMethodDef cellar_methods[] = {
    {"load_ipython_extension", load_ipython_extension, METH_O,
     "Called by %load_ext cellar: opens the store, registers %cellar and the cell "
     "hooks."},
    {"unload_ipython_extension", unload_ipython_extension, METH_O,
     "Called by %unload_ext / %reload_ext: removes the cell hooks."},
    {"run", (PyCFunction)(void (*)(void))run_py, METH_VARARGS | METH_KEYWORDS,
     "run(*targets, recompute=None, disable=None, ignore=None, **inputs)\n\nRuns the "
     "named nodes with caching, like %cellar run: returns the value of one target or a "
     "dict for several, and shows a report. For this run, the nodes named in "
     "`recompute` (a list) are computed even when cached, and stored again; those in "
     "`disable` are computed, never stored nor reused, and their dependants rerun; "
     "those in `ignore` never enter their dependants' keys."},
    {"node", (PyCFunction)(void (*)(void))cellar_behavior_node_py,
     METH_VARARGS | METH_KEYWORDS,
     "node(func=None, *, behavior=None)\n\nMarks a node's caching behaviour: "
     "@cellar.node(behavior=\"recompute\") above a def. The behaviours: \"default\" "
     "(reuse a cached result), \"recompute\" (always run, still stored, dependants "
     "cut off when the value is equal), \"disable\" (never stored nor reused; "
     "dependants rerun), \"ignore\" (its value never enters its dependants' keys: "
     "clients, connections, loggers). Returns the function itself."},
    {"store_path", store_path_py, METH_NOARGS, "The open store's directory, or None."},
    {"data_version", data_version_py, METH_O,
     "data_version(value) -> str\n\nThe value's data version (32 hex digits): the "
     "XXH3-128 "
     "fingerprint of its pickle (protocol 5, out-of-band buffers hashed in place) and "
     "of the versions of the notebook code in it. TypeError when the value cannot be "
     "pickled for a reason other than notebook code that pickle cannot name."},
    {"forget_memory", forget_memory_py, METH_NOARGS,
     "Drops the values this session keeps in memory; the next run reads the store."},
    {"_magic", cellar_magic, METH_O, cellar_magic_usage},
    {"_pre_run_cell", cellar_pre_run_cell, METH_O, "IPython pre_run_cell hook."},
    {"_post_run_cell", cellar_post_run_cell, METH_O, "IPython post_run_cell hook."},
    {NULL, NULL, 0, NULL},
};

static PyObject *import_attr(const char *module, const char *attr)
{
    PyObject *m = PyImport_ImportModule(module);
    if (!m)
        return NULL;
    PyObject *a = PyObject_GetAttrString(m, attr);
    Py_DECREF(m);
    return a;
}

static int cellar_exec(PyObject *module)
{
    cellar_state *st = cellar_state_of(module);
    st->module = module;
    st->RunError = PyErr_NewExceptionWithDoc(
        "cellar.RunError", "A cellar run could not produce every requested target.",
        PyExc_RuntimeError, NULL);
    st->StoreError = PyErr_NewExceptionWithDoc(
        "cellar.StoreError", "The cellar store cannot be opened or used.", PyExc_OSError,
        NULL);
    if (!st->RunError || !st->StoreError)
        return -1;
    if (PyModule_AddObjectRef(module, "RunError", st->RunError) < 0 ||
        PyModule_AddObjectRef(module, "StoreError", st->StoreError) < 0)
        return -1;
    if (!(st->pickle_loads = import_attr("pickle", "loads")) ||
        !(st->literal_eval = import_attr("ast", "literal_eval")) ||
        !(st->shlex_split = import_attr("shlex", "split")) ||
        !(st->print_exception = import_attr("traceback", "print_exception")))
        return -1;
    if (!(st->str_protocol = PyUnicode_InternFromString("protocol")) ||
        !(st->str_buffer_callback = PyUnicode_InternFromString("buffer_callback")) ||
        !(st->str_buffers = PyUnicode_InternFromString("buffers")) ||
        !(st->str_dump = PyUnicode_InternFromString("dump")) ||
        !(st->str_getvalue = PyUnicode_InternFromString("getvalue")) ||
        !(st->str_reducer_override = PyUnicode_InternFromString("reducer_override")) ||
        !(st->str_clear_memo = PyUnicode_InternFromString("clear_memo")) ||
        !(st->str_truncate = PyUnicode_InternFromString("truncate")) ||
        !(st->int_five = PyLong_FromLong(5)))
        return -1;
    if (!(st->functions = PyDict_New()) || !(st->memo = PyDict_New()) ||
        !(st->pending = PyDict_New()) || !(st->warned = PySet_New(NULL)))
        return -1;
    if (!(st->pre_hook = PyObject_GetAttrString(module, "_pre_run_cell")) ||
        !(st->post_hook = PyObject_GetAttrString(module, "_post_run_cell")))
        return -1;
    st->keyenc = cellar_key_new();
    st->fp = cellar_fingerprint_new();
    if (!st->keyenc || !st->fp) {
        PyErr_NoMemory();
        return -1;
    }
    if (cellar_report_type_init(module, st) < 0 || cellar_values_init(module, st) < 0 ||
        cellar_file_inputs_init(st) < 0 ||
        cellar_results_init(module, st) < 0)
        return -1;
    return PyModule_AddStringConstant(module, "__version__", "0.1.0");
}

/* Visits and clears every Python object the state owns (module->module is
 * a borrowed back-pointer and the store is C), so the cyclic GC can see
 * cycles through the module: a node's value that refers to the module, the
 * shell that holds the hooks that hold the module. */
#define CELLAR_STATE_OBJECTS(X)                                                          \
    X(RunError)                                                                          \
    X(StoreError)                                                                        \
    X(NoResultError)                                                                     \
    X(ReportType)                                                                        \
    X(pickle_loads)                                                                      \
    X(literal_eval)                                                                      \
    X(shlex_split)                                                                       \
    X(print_exception)                                                                   \
    X(str_protocol)                                                                      \
    X(str_buffer_callback)                                                               \
    X(str_buffers)                                                                       \
    X(str_dump)                                                                          \
    X(str_getvalue)                                                                      \
    X(str_reducer_override)                                                              \
    X(str_clear_memo)                                                                    \
    X(str_truncate)                                                                      \
    X(int_five)                                                                          \
    X(fast_pickler)                                                                      \
    X(canonical_pickler)                                                                 \
    X(version_pickler)                                                                   \
    X(path_type)                                                                         \
    X(bytes_io)                                                                          \
    X(cached_pickler)                                                                    \
    X(shell)                                                                             \
    X(pre_hook)                                                                          \
    X(post_hook)                                                                         \
    X(pending)                                                                           \
    X(functions)                                                                         \
    X(memo)                                                                              \
    X(warned)                                                                            \
    X(code_cache)                                                                        \
    X(module_kinds)                                                                      \
    X(library_dirs)                                                                      \
    X(auto_targets)                                                                      \
    X(auto_inputs)                                                                       \
    X(auto_behaviors)                                                                    \
    X(auto_keys)

static int cellar_traverse(PyObject *module, visitproc visit, void *arg)
{
    cellar_state *st = cellar_state_of(module);
    if (!st)
        return 0;
#define CELLAR_VISIT(f) Py_VISIT(st->f);
    CELLAR_STATE_OBJECTS(CELLAR_VISIT)
#undef CELLAR_VISIT
    return 0;
}

static int cellar_clear(PyObject *module)
{
    cellar_state *st = cellar_state_of(module);
    if (!st)
        return 0;
#define CELLAR_CLEAR(f) Py_CLEAR(st->f);
    CELLAR_STATE_OBJECTS(CELLAR_CLEAR)
#undef CELLAR_CLEAR
    return 0;
}

static void cellar_free(void *module)
{
    cellar_state *st = cellar_state_of((PyObject *)module);
    cellar_clear((PyObject *)module);
    if (!st)
        return;
    if (st->store)
        cellar_store_close(st->store);
    st->store = NULL;
    cellar_key_free(st->keyenc);
    st->keyenc = NULL;
    cellar_fingerprint_free(st->fp);
    st->fp = NULL;
}

static PyModuleDef_Slot cellar_slots[] = {
    {Py_mod_exec, cellar_exec},
    {0, NULL},
};

static struct PyModuleDef cellar_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "cellar",
    .m_doc = "cellar: a kernel-side cache for notebook functions.\n\n"
             "%load_ext cellar, then define functions in cells and use %cellar run.",
    .m_size = sizeof(cellar_state),
    .m_methods = cellar_methods,
    .m_slots = cellar_slots,
    .m_traverse = cellar_traverse,
    .m_clear = cellar_clear,
    .m_free = cellar_free,
};

PyMODINIT_FUNC PyInit_cellar(void)
{
    return PyModuleDef_Init(&cellar_module);
}
