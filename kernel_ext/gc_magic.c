/*
 * gc_magic.c - the `%cellar` rows that manage the store's size: `forget NODE
 * ...`, `gc [--max-size SIZE] [--keep N] [--dry-run]` and `max-size
 * [SIZE|off]`, the budget after which a commit collects by itself.  The rules
 * are libcellar's (gc.h); this file parses the line, hands the runtime what
 * only the kernel knows, and prints one summary.  What the kernel knows: the
 * live registry, whose nodes count as existing for gc beside those the store
 * has node records of (a node defined here but never stored keeps its keys),
 * and the session's values: forgetting a node also drops the value this
 * kernel keeps for it, so the next run really computes it again, while gc
 * leaves them (a value in memory stays valid whatever the store drops).  The
 * budget is CELLAR_MAX_SIZE when the kernel starts, until `%cellar max-size`
 * changes it, and it follows `%cellar dir` to another store.
 */
#include "cellar_ext.h"

#include "cellar/gc.h"
#include "cellar/units.h"

#include <stdlib.h>

static PyObject *gc_usage_error(cellar_state *st, const char *what, PyObject *arg)
{
    if (arg)
        PyErr_Format(st->RunError, "%s '%U'\n\n%s", what, arg, cellar_magic_usage);
    else
        PyErr_Format(st->RunError, "%s\n\n%s", what, cellar_magic_usage);
    return NULL;
}

static bool needs_store(cellar_state *st)
{
    if (st->running) {
        PyErr_SetString(st->RunError, "this %cellar command cannot run during a run");
        return false;
    }
    if (!st->store) {
        PyErr_SetString(st->StoreError, "no store is open (%cellar dir PATH opens one)");
        return false;
    }
    return true;
}

static bool parse_size(PyObject *arg, uint64_t *out)
{
    const char *text = PyUnicode_AsUTF8(arg);
    if (!text)
        PyErr_Clear();
    return text && cellar_units_parse_size(text, out);
}

void cellar_gc_configure(cellar_state *st)
{
    if (!st->max_size_set) {
        const char *env = getenv("CELLAR_MAX_SIZE");
        st->max_size = 0;
        if (env && *env && !cellar_units_parse_size(env, &st->max_size))
            cellar_warn("CELLAR_MAX_SIZE='%.100s' is not a size (try 10GiB, 512MiB): "
                        "no automatic gc",
                        env);
        st->max_size_set = true;
    }
    if (st->store)
        cellar_store_set_max_size(st->store, st->max_size);
}

/* ---- forget ---- */

static PyObject *magic_forget(cellar_state *st, PyObject *args)
{
    Py_ssize_t n = PyList_GET_SIZE(args) - 1;
    if (n < 1)
        return gc_usage_error(st, "%cellar forget needs at least one node name", NULL);
    if (!needs_store(st))
        return NULL;
    PyObject *names = PyList_New(0);
    const char **utf8 = PyMem_Calloc((size_t)n, sizeof *utf8);
    PyObject *result = NULL;
    if (!names || !utf8)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *arg = PyList_GET_ITEM(args, i + 1);
        if (!PyUnicode_IsIdentifier(arg)) {
            gc_usage_error(st, "not a node name:", arg);
            goto done;
        }
        PyObject *name = cellar_registry_normalize(arg);
        if (!name || PyList_Append(names, name) < 0) {
            Py_XDECREF(name);
            goto done;
        }
        Py_DECREF(name);
        if (!(utf8[i] = PyUnicode_AsUTF8(PyList_GET_ITEM(names, i))))
            goto done;
    }
    cellar_gc_report r;
    cellar_error err;
    if (cellar_store_forget(st->store, utf8, (size_t)n, &r, &err) != CELLAR_OK) {
        PyErr_Format(st->StoreError, "cannot forget: %s", err.message);
        goto done;
    }
    /* The session's values too: the next run computes these nodes again. */
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *name = PyList_GET_ITEM(names, i);
        if (PyDict_Contains(st->memo, name) == 1 && PyDict_DelItem(st->memo, name) < 0)
            goto done;
    }
    char size[CELLAR_UNITS_BUFSIZE];
    PySys_FormatStdout("cellar forget: %zd node%s, %llu key%s and %llu result%s (%s) "
                       "dropped\n",
                       n, n == 1 ? "" : "s", (unsigned long long)r.keys,
                       r.keys == 1 ? "" : "s", (unsigned long long)r.results,
                       r.results == 1 ? "" : "s", cellar_units_size(r.freed_bytes, size));
    result = Py_NewRef(Py_None);
done:
    PyMem_Free(utf8);
    Py_XDECREF(names);
    return result;
}

/* ---- gc ---- */

static int parse_gc_args(cellar_state *st, PyObject *args, cellar_gc_options *o)
{
    Py_ssize_t n = PyList_GET_SIZE(args);
    for (Py_ssize_t i = 1; i < n; i++) {
        PyObject *arg = PyList_GET_ITEM(args, i);
        const char *a = PyUnicode_AsUTF8(arg);
        if (!a)
            return -1;
        const char *value = NULL;
        PyObject *value_obj = NULL;
        bool size = !strcmp(a, "--max-size") || !strncmp(a, "--max-size=", 11);
        bool keep = !strcmp(a, "--keep") || !strncmp(a, "--keep=", 7);
        if (!strcmp(a, "--dry-run")) {
            o->dry_run = true;
            continue;
        }
        if (!size && !keep) {
            gc_usage_error(st, "%cellar gc: unexpected argument", arg);
            return -1;
        }
        if (strchr(a, '=')) {
            value = strchr(a, '=') + 1;
        } else if (i + 1 < n) {
            value_obj = PyList_GET_ITEM(args, ++i);
            if (!(value = PyUnicode_AsUTF8(value_obj)))
                return -1;
        } else {
            gc_usage_error(st, "%cellar gc: a value is missing after", arg);
            return -1;
        }
        char *end;
        unsigned long k =
            keep && *value >= '0' && *value <= '9' ? strtoul(value, &end, 10) : 0;
        if (size && !cellar_units_parse_size(value, &o->max_size)) {
            PyErr_Format(st->RunError,
                         "%%cellar gc: --max-size '%s' is not a size (try 10GiB, 512MiB, "
                         "1.5G)",
                         value);
            return -1;
        }
        if (keep && (!k || *end || k > 1000000)) {
            PyErr_Format(st->RunError,
                         "%%cellar gc: --keep needs a positive count, not '%s'", value);
            return -1;
        }
        if (keep)
            o->keep = (unsigned)k;
    }
    return 0;
}

/* The names of the registry's nodes, for gc's "exists"; borrowed UTF-8
 * pointers into `names`' strings (a new list the caller releases). */
static const char **live_nodes(cellar_state *st, PyObject **names, size_t *n)
{
    *names = PyDict_Keys(st->functions);
    if (!*names)
        return NULL;
    Py_ssize_t len = PyList_GET_SIZE(*names);
    const char **out = PyMem_Calloc(len ? (size_t)len : 1, sizeof *out);
    if (!out) {
        PyErr_NoMemory();
        return NULL;
    }
    *n = 0;
    for (Py_ssize_t i = 0; i < len; i++) {
        const char *s = PyUnicode_AsUTF8(PyList_GET_ITEM(*names, i));
        if (!s) {
            PyMem_Free(out);
            return NULL;
        }
        if (s[0] != '_')
            out[(*n)++] = s;
    }
    return out;
}

static void print_gc(const cellar_gc_report *r, const cellar_gc_options *o)
{
    char a[CELLAR_UNITS_BUFSIZE], b[CELLAR_UNITS_BUFSIZE], c[CELLAR_UNITS_BUFSIZE],
        d[CELLAR_UNITS_BUFSIZE] = "";
    if (o->max_size) {
        snprintf(d, sizeof d, ", budget ");
        cellar_units_size(o->max_size, d + strlen(d));
    }
    PySys_FormatStdout(
        "cellar gc: %s %llu key%s and %llu result%s (%s): %llu of older code versions "
        "(keeping %u per node), %llu of nodes that no longer exist, %llu without a "
        "result, %llu evicted, least recently used first; results %s -> %s%s\n",
        o->dry_run ? "would drop" : "dropped", (unsigned long long)r->keys,
        r->keys == 1 ? "" : "s", (unsigned long long)r->results,
        r->results == 1 ? "" : "s", cellar_units_size(r->freed_bytes, a),
        (unsigned long long)r->keys_old, o->keep ? o->keep : CELLAR_GC_KEEP_DEFAULT,
        (unsigned long long)r->keys_gone, (unsigned long long)r->keys_dangling,
        (unsigned long long)r->keys_evicted, cellar_units_size(r->size_before, b),
        cellar_units_size(r->size_after, c), d);
}

static PyObject *magic_gc(cellar_state *st, PyObject *args)
{
    if (!needs_store(st))
        return NULL;
    cellar_gc_options o = {.max_size = cellar_store_max_size(st->store)};
    if (parse_gc_args(st, args, &o) < 0)
        return NULL;
    PyObject *names = NULL;
    const char **live = live_nodes(st, &names, &o.nlive);
    if (!live) {
        Py_XDECREF(names);
        return NULL;
    }
    o.live = live;
    cellar_gc_report r;
    cellar_error err;
    cellar_status rc = cellar_store_gc(st->store, &o, &r, &err);
    PyMem_Free(live);
    Py_DECREF(names);
    if (rc != CELLAR_OK) {
        PyErr_Format(st->StoreError, "cannot collect garbage: %s", err.message);
        return NULL;
    }
    print_gc(&r, &o);
    Py_RETURN_NONE;
}

/* ---- max-size ---- */

static PyObject *magic_max_size(cellar_state *st, PyObject *args)
{
    Py_ssize_t n = PyList_GET_SIZE(args);
    if (n > 2)
        return gc_usage_error(st, "%cellar max-size takes one SIZE (or off)", NULL);
    if (n == 2) {
        PyObject *arg = PyList_GET_ITEM(args, 1);
        uint64_t size = 0;
        if (PyUnicode_CompareWithASCIIString(arg, "off") != 0 && !parse_size(arg, &size))
            return gc_usage_error(
                st, "%cellar max-size: not a size (try 10GiB, or off):", arg);
        st->max_size = size;
        st->max_size_set = true;
        if (st->store)
            cellar_store_set_max_size(st->store, size);
    }
    char buf[CELLAR_UNITS_BUFSIZE];
    if (st->max_size)
        PySys_FormatStdout("cellar: max size %s: a commit that takes the results above "
                           "it runs gc, down to 90%% of it\n",
                           cellar_units_size(st->max_size, buf));
    else
        PySys_FormatStdout("cellar: no max size: the store grows until %%cellar gc\n");
    Py_RETURN_NONE;
}

bool cellar_gc_magic_handles(PyObject *cmd)
{
    return PyUnicode_CompareWithASCIIString(cmd, "forget") == 0 ||
           PyUnicode_CompareWithASCIIString(cmd, "gc") == 0 ||
           PyUnicode_CompareWithASCIIString(cmd, "max-size") == 0;
}

PyObject *cellar_gc_magic(cellar_state *st, PyObject *args)
{
    PyObject *cmd = PyList_GET_ITEM(args, 0);
    if (PyUnicode_CompareWithASCIIString(cmd, "forget") == 0)
        return magic_forget(st, args);
    if (PyUnicode_CompareWithASCIIString(cmd, "gc") == 0)
        return magic_gc(st, args);
    return magic_max_size(st, args);
}
