/*
 * hooks.c - IPython's pre_run_cell and post_run_cell hooks: executed cells in,
 * registry entries out.
 *
 * pre_run_cell scans the raw cell (the runtime's scanner) and keeps, in the
 * pending table, the scan and what each name the cell defines was bound to
 * before it ran.  post_run_cell hands both to the registry, which registers
 * every name the cell actually rebound and, for a cell with a cellId, drops
 * the nodes the cell no longer defines.  A run started from inside a cell
 * (`%cellar run` after a `def` in the same cell) first registers what the
 * pending cells have bound so far, so definitions are current at the moment
 * of the run.  The cell that runs `%load_ext cellar` had its pre_run_cell
 * before the hooks existed: when the extension loads, that cell (which the
 * shell's displayhook holds while it runs) is scanned, what it has bound so
 * far is registered, and it joins the pending table, so a run later in the
 * same cell sees the functions defined below the `%load_ext` line.  Once a
 * cell's definitions are registered, reactive mode (auto.c) may rerun the
 * last run's targets.  Calls go one way: hooks -> registry, auto.
 */
#include "cellar_ext.h"

#define SCAN_CAPSULE "cellar.scan"

static void scan_capsule_destructor(PyObject *capsule)
{
    cellar_scan_free((cellar_scan *)PyCapsule_GetPointer(capsule, SCAN_CAPSULE));
}

static cellar_scan *scan_text(const char *src, Py_ssize_t len)
{
    cellar_scan *scan = NULL;
    cellar_error err;
    if (cellar_scan_source(src, (size_t)len, &scan, &err) != CELLAR_OK) {
        PyErr_NoMemory();
        return NULL;
    }
    return scan;
}

/* What each name `scan` defines is bound to in `ns` now: name -> object. */
static PyObject *bindings_before(const cellar_scan *scan, PyObject *ns)
{
    PyObject *previous = PyDict_New();
    for (size_t i = 0; previous && i < cellar_scan_function_count(scan); i++) {
        PyObject *name = cellar_registry_name(cellar_scan_function_at(scan, i)->name);
        PyObject *obj = name ? PyDict_GetItemWithError(ns, name) : NULL;
        if (!name || (!obj && PyErr_Occurred()) ||
            (obj && PyDict_SetItem(previous, name, obj) < 0))
            Py_CLEAR(previous);
        Py_XDECREF(name);
    }
    return previous;
}

int cellar_register_source(cellar_state *st, const char *src, Py_ssize_t len,
                           PyObject *cell_id)
{
    PyObject *ns = cellar_user_ns(st);
    if (!ns)
        return -1;
    cellar_scan *scan = scan_text(src, len);
    if (!scan)
        return -1;
    int rc = cellar_registry_add_scan(st, scan, cell_id, NULL, ns, true);
    cellar_scan_free(scan);
    return rc;
}

static PyObject *get_cell_id(PyObject *info)
{
    PyObject *cell_id = PyObject_GetAttrString(info, "cell_id");
    if (!cell_id) {
        PyErr_Clear(); /* older IPython has no cell_id */
        Py_RETURN_NONE;
    }
    if (!PyUnicode_Check(cell_id) || PyUnicode_GET_LENGTH(cell_id) == 0) {
        Py_DECREF(cell_id);
        Py_RETURN_NONE;
    }
    return cell_id;
}

int cellar_hooks_register_pending(cellar_state *st)
{
    if (!st->pending || PyDict_GET_SIZE(st->pending) == 0)
        return 0;
    PyObject *ns = cellar_user_ns(st);
    if (!ns)
        return -1;
    PyObject *info, *entry;
    Py_ssize_t pos = 0;
    while (PyDict_Next(st->pending, &pos, &info, &entry)) {
        cellar_scan *scan =
            PyCapsule_GetPointer(PyTuple_GET_ITEM(entry, 0), SCAN_CAPSULE);
        PyObject *cell_id = get_cell_id(info);
        /* The cell is still running: register what it has bound so far, and
         * leave dropping what it no longer defines to its post_run_cell. */
        int rc = (scan && cell_id)
                     ? cellar_registry_add_scan(st, scan, cell_id,
                                                PyTuple_GET_ITEM(entry, 1), ns, false)
                     : -1;
        Py_XDECREF(cell_id);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* Hook failures must not break the user's cell: report and carry on. */
static PyObject *hook_failed(const char *hook)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    PyObject *msg = value ? PyObject_Str(value) : NULL;
    if (!msg)
        PyErr_Clear();
    cellar_warn("%s hook failed: %s", hook,
                msg ? PyUnicode_AsUTF8(msg) : "unknown error");
    if (PyErr_Occurred())
        PyErr_Clear();
    Py_XDECREF(msg);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    Py_RETURN_NONE;
}

/* The ExecutionInfo of the cell the shell is running now: IPython's
 * displayhook holds the cell's ExecutionResult while its code runs.  New
 * reference; NULL without an error when there is none (an extension loaded
 * outside a cell, or a shell without that attribute). */
static PyObject *running_cell_info(cellar_state *st)
{
    PyObject *hook = NULL, *result = NULL, *info = NULL;
    if (st->shell && cellar_optional_attr(st->shell, "displayhook", &hook) > 0 &&
        cellar_optional_attr(hook, "exec_result", &result) > 0 && result != Py_None &&
        cellar_optional_attr(result, "info", &info) > 0 && info == Py_None)
        Py_CLEAR(info);
    Py_XDECREF(hook);
    Py_XDECREF(result);
    return info;
}

/* Adopts `info`, the loading cell: registers what it has bound so far, and
 * unless it is silent (no post_run_cell will come) enters it in the pending
 * table with this moment's bindings as "before".  1 adopted, 0 not (silent),
 * -1 with a Python error. */
static int adopt_cell(cellar_state *st, PyObject *info)
{
    int known = PyDict_Contains(st->pending, info);
    if (known != 0) /* %load_ext called by hand while loaded: pre_run_cell saw it */
        return known;
    PyObject *raw = PyObject_GetAttrString(info, "raw_cell");
    PyObject *silent = raw ? PyObject_GetAttrString(info, "silent") : NULL;
    PyObject *cell_id = silent ? get_cell_id(info) : NULL;
    PyObject *ns = cell_id ? cellar_user_ns(st) : NULL;
    Py_ssize_t len = 0;
    const char *src =
        ns && PyUnicode_Check(raw) ? PyUnicode_AsUTF8AndSize(raw, &len) : NULL;
    cellar_scan *scan = src ? scan_text(src, len) : NULL;
    PyObject *cap =
        scan ? PyCapsule_New(scan, SCAN_CAPSULE, scan_capsule_destructor) : NULL;
    if (scan && !cap)
        cellar_scan_free(scan);
    int rc = -1;
    if (cap && cellar_registry_add_scan(st, scan, cell_id, NULL, ns, false) == 0) {
        int quiet = PyObject_IsTrue(silent);
        PyObject *previous = quiet == 0 ? bindings_before(scan, ns) : NULL;
        PyObject *entry = previous ? PyTuple_Pack(2, cap, previous) : NULL;
        if (quiet == 1)
            rc = 0;
        else if (entry && PyDict_SetItem(st->pending, info, entry) == 0)
            rc = 1;
        Py_XDECREF(entry);
        Py_XDECREF(previous);
    }
    if (!src && ns && !PyErr_Occurred())
        rc = 0; /* no source to scan */
    Py_XDECREF(cap); /* ns is borrowed */
    Py_XDECREF(cell_id);
    Py_XDECREF(silent);
    Py_XDECREF(raw);
    return rc;
}

bool cellar_hooks_adopt_loading_cell(cellar_state *st)
{
    PyObject *info = running_cell_info(st);
    int rc = info ? adopt_cell(st, info) : (PyErr_Occurred() ? -1 : 0);
    Py_XDECREF(info);
    if (rc < 0) {
        Py_XDECREF(hook_failed("load_ipython_extension"));
        return false;
    }
    return rc == 1;
}

/* The cell that loaded the extension ran before the hooks existed, so what
 * its names were bound to before is unknown: register what it defined now. */
static PyObject *register_loading_cell(cellar_state *st, PyObject *result)
{
    PyObject *info = PyObject_GetAttrString(result, "info");
    PyObject *raw = info ? PyObject_GetAttrString(info, "raw_cell") : NULL;
    PyObject *cell_id = info ? get_cell_id(info) : NULL;
    Py_ssize_t len;
    const char *src =
        raw && PyUnicode_Check(raw) ? PyUnicode_AsUTF8AndSize(raw, &len) : NULL;
    int rc = (src && cell_id) ? cellar_register_source(st, src, len, cell_id) : -1;
    Py_XDECREF(info);
    Py_XDECREF(raw);
    Py_XDECREF(cell_id);
    if (rc < 0)
        return hook_failed("post_run_cell");
    Py_RETURN_NONE;
}


PyObject *cellar_pre_run_cell(PyObject *module, PyObject *info)
{
    cellar_state *st = cellar_state_of(module);
    if (PyDict_GET_SIZE(st->pending) > 64) /* hooks that never got their post_run_cell */
        PyDict_Clear(st->pending);
    PyObject *raw = PyObject_GetAttrString(info, "raw_cell");
    if (!raw)
        return hook_failed("pre_run_cell");
    Py_ssize_t len;
    const char *src = PyUnicode_Check(raw) ? PyUnicode_AsUTF8AndSize(raw, &len) : NULL;
    if (!src) {
        Py_DECREF(raw);
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    cellar_scan *scan = scan_text(src, len);
    Py_DECREF(raw);
    if (!scan)
        return hook_failed("pre_run_cell");
    PyObject *ns = cellar_user_ns(st);
    PyObject *cap = PyCapsule_New(scan, SCAN_CAPSULE, scan_capsule_destructor);
    if (!cap)
        cellar_scan_free(scan);
    PyObject *previous = (ns && cap) ? bindings_before(scan, ns) : NULL;
    PyObject *entry = previous ? PyTuple_Pack(2, cap, previous) : NULL;
    int rc = entry ? PyDict_SetItem(st->pending, info, entry) : -1;
    Py_XDECREF(entry);
    Py_XDECREF(previous);
    Py_XDECREF(cap);
    if (rc < 0)
        return hook_failed("pre_run_cell");
    Py_RETURN_NONE;
}

PyObject *cellar_post_run_cell(PyObject *module, PyObject *result)
{
    cellar_state *st = cellar_state_of(module);
    bool loading = st->loading_cell;
    st->loading_cell = false;
    PyObject *info = PyObject_GetAttrString(result, "info");
    if (!info)
        return hook_failed("post_run_cell");
    PyObject *pending = PyDict_GetItemWithError(st->pending, info);
    if (pending) {
        Py_INCREF(pending);
        if (PyDict_DelItem(st->pending, info) < 0)
            PyErr_Clear();
    }
    if (!pending) { /* post_run_cell can come without pre_run_cell */
        Py_DECREF(info);
        if (PyErr_Occurred())
            return hook_failed("post_run_cell");
        return loading ? register_loading_cell(st, result) : Py_NewRef(Py_None);
    }
    PyObject *early = PyObject_GetAttrString(result, "error_before_exec");
    int skip = !early || PyObject_IsTrue(early) == 1;
    Py_XDECREF(early);
    PyErr_Clear();
    int rc = 0;
    if (!skip) {
        PyObject *cell_id = get_cell_id(info);
        cellar_scan *scan =
            PyCapsule_GetPointer(PyTuple_GET_ITEM(pending, 0), SCAN_CAPSULE);
        PyObject *ns = cellar_user_ns(st);
        rc = (cell_id && scan && ns)
                 ? cellar_registry_add_scan(st, scan, cell_id,
                                            PyTuple_GET_ITEM(pending, 1), ns, true)
                 : -1;
        Py_XDECREF(cell_id);
    }
    Py_DECREF(info);
    Py_DECREF(pending);
    if (rc < 0)
        return hook_failed("post_run_cell");
    cellar_auto_after_cell(st, result); /* reactive mode: never raises */
    Py_RETURN_NONE;
}
