/*
 * gc_magic.c - the `%cellar` rows that manage the store's size: `forget NODE
 * ...`, `gc [--max-size SIZE] [--keep N] [--dry-run]` and `max-size
 * [SIZE|off]`, the budget after which a commit collects by itself.  The rules
 * are libcellar's (gc.h); this file parses the line, hands the collector what
 * only the kernel knows, and prints one summary.  What the kernel knows: the
 * live registry, whose nodes count as existing for gc beside those the store
 * has node records of (a node defined here but never stored keeps its keys),
 * and the session's values: forgetting a node also drops the value this
 * kernel keeps for it, so the next run really computes it again, while gc
 * leaves them (a value in memory stays valid whatever the store drops).
 *
 * gc walks every key and result of the store, and on a damaged leaf or
 * B-tree LMDB may fault or loop: so `%cellar gc` runs `cellar gc --live
 * NAMES --json` in a child (cli_child.c) and prints what its JSON says; a
 * failure, crash or timeout of the child is a warning.  forget stays in the
 * kernel: it reads and deletes only the named nodes' keys and the results
 * they name (point operations, whose leaves store_pages.c checks), and it
 * must drop the session's values in the same step.
 *
 * Automatic gc.  The budget is CELLAR_MAX_SIZE when the kernel starts, until
 * `%cellar max-size` changes it, and it follows `%cellar dir`.  It is the
 * kernel's: the store's own collection after a commit stays off.  The kernel
 * keeps a tally (the bytes a gc child last measured, plus what its commits
 * stored since, measured again after 60 s, as the store did); after a commit
 * that takes it above the budget, `cellar gc --if-over BUDGET --max-size 90%`
 * starts in the background and the cell returns at once.  One at a time: a
 * commit while it runs only adds to the tally.  It is reaped without SIGCHLD
 * (waitpid WNOHANG) after each cell (a post_run_cell callback registered
 * while it runs), at the next commit and before `%cellar gc`, which print a
 * one-line note of what it dropped, or a warning.  It stops itself after
 * the time limit (--timeout), so a writer it holds up waits that long at
 * most.
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
        cellar_store_set_max_size(st->store, 0); /* the kernel's gc child does it */
    st->gc_tally = 0;
    st->gc_tally_ms = 0; /* another store: measured afresh */
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

/* The names of the registry's nodes, for gc's "exists", comma-separated
 * (node names are identifiers), as a malloc'd string ("" for none); NULL
 * with a Python error. */
static char *live_nodes(cellar_state *st)
{
    PyObject *names = PyDict_Keys(st->functions);
    if (!names)
        return NULL;
    size_t cap = 64, len = 0;
    char *out = malloc(cap);
    for (Py_ssize_t i = 0; out && i < PyList_GET_SIZE(names); i++) {
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(PyList_GET_ITEM(names, i), &n);
        if (!s) {
            free(out);
            Py_DECREF(names);
            return NULL;
        }
        if (s[0] == '_')
            continue;
        if (len + (size_t)n + 2 > cap) {
            while (len + (size_t)n + 2 > cap)
                cap *= 2;
            char *grown = realloc(out, cap);
            if (!grown)
                free(out);
            out = grown;
        }
        if (out) {
            if (len)
                out[len++] = ',';
            memcpy(out + len, s, (size_t)n);
            len += (size_t)n;
        }
    }
    Py_DECREF(names);
    if (!out)
        return (char *)PyErr_NoMemory();
    out[len] = '\0';
    return out;
}

static uint64_t jnum(json_t *obj, const char *key)
{
    json_int_t n = json_integer_value(json_object_get(obj, key));
    return n > 0 ? (uint64_t)n : 0;
}

static void print_gc(json_t *r, const cellar_gc_options *o)
{
    char a[CELLAR_UNITS_BUFSIZE], b[CELLAR_UNITS_BUFSIZE], c[CELLAR_UNITS_BUFSIZE],
        d[CELLAR_UNITS_BUFSIZE] = "";
    json_t *why = json_object_get(r, "keys_by_reason");
    uint64_t keys = jnum(r, "keys"), results = jnum(r, "results");
    if (o->max_size) {
        snprintf(d, sizeof d, ", budget ");
        cellar_units_size(o->max_size, d + strlen(d));
    }
    PySys_FormatStdout(
        "cellar gc: %s %llu key%s and %llu result%s (%s): %llu of older code versions "
        "(keeping %u per node), %llu of nodes that no longer exist, %llu without a "
        "result, %llu evicted, least recently used first; results %s -> %s%s\n",
        o->dry_run ? "would drop" : "dropped", (unsigned long long)keys,
        keys == 1 ? "" : "s", (unsigned long long)results, results == 1 ? "" : "s",
        cellar_units_size(jnum(r, "freed_bytes"), a),
        (unsigned long long)jnum(why, "old_versions"),
        o->keep ? o->keep : CELLAR_GC_KEEP_DEFAULT, (unsigned long long)jnum(why, "gone"),
        (unsigned long long)jnum(why, "dangling"), (unsigned long long)jnum(why, "evicted"),
        cellar_units_size(jnum(r, "size_before"), b),
        cellar_units_size(jnum(r, "size_after"), c), d);
}

/* `cellar gc` arguments for `o` and the live registry, up to (not with) the
 * store; `size`, `keep` and `live` hold the texts.  The count, or -1 with a
 * Python error. */
static int gc_argv(cellar_state *st, const cellar_gc_options *o, const char **argv,
                   char size[32], char keep[32], char **live)
{
    int n = 0;
    argv[n++] = "gc";
    snprintf(size, 32, "%lluB", (unsigned long long)o->max_size);
    argv[n++] = "--max-size"; /* also 0: the kernel's budget, not $CELLAR_MAX_SIZE */
    argv[n++] = size;
    if (o->keep) {
        snprintf(keep, 32, "%u", o->keep);
        argv[n++] = "--keep";
        argv[n++] = keep;
    }
    if (o->dry_run)
        argv[n++] = "--dry-run";
    if (!(*live = live_nodes(st)))
        return -1;
    if (**live) {
        argv[n++] = "--live";
        argv[n++] = *live;
    }
    return n;
}

static void add_store(cellar_state *st, const char **argv, int n)
{
    argv[n++] = "--dir";
    argv[n++] = cellar_store_path(st->store);
    argv[n++] = "--json";
    argv[n] = NULL;
}

static PyObject *magic_gc(cellar_state *st, PyObject *args)
{
    if (!needs_store(st))
        return NULL;
    cellar_gc_options o = {.max_size = st->max_size};
    if (parse_gc_args(st, args, &o) < 0)
        return NULL;
    cellar_gc_reap(st, true); /* one collection at a time */
    const char *argv[16];
    char size[32], keep[32], *live = NULL;
    int n = gc_argv(st, &o, argv, size, keep, &live);
    if (n < 0)
        return NULL;
    add_store(st, argv, n);
    char why[1200];
    bool interrupted;
    json_t *doc = cellar_cli_run(argv, why, sizeof why, &interrupted);
    free(live);
    if (!doc) {
        if (interrupted)
            return NULL;
        cellar_warn("%%cellar gc: nothing was collected: %s ('cellar verify --dir %s' "
                    "checks the store)",
                    why, cellar_store_path(st->store));
        Py_RETURN_NONE;
    }
    json_t *dropped = json_object_get(doc, "dropped");
    print_gc(dropped, &o);
    if (!o.dry_run) {
        st->gc_tally = jnum(dropped, "size_after");
        st->gc_tally_ms = (uint64_t)cellar_cli_now_ms();
    }
    json_decref(doc);
    Py_RETURN_NONE;
}

/* ---- automatic gc ---- */

#define MEASURE_EVERY_MS (60 * 1000)

static PyObject *after_cell(PyObject *module, PyObject *result)
{
    (void)result;
    cellar_gc_reap(cellar_state_of(module), false);
    Py_RETURN_NONE;
}

static PyMethodDef after_cell_def = {"_gc_after_cell", after_cell, METH_O,
                                     "Reaps a background gc that finished."};

/* Registers (on) or unregisters the post_run_cell callback; never raises. */
static void hook(cellar_state *st, bool on)
{
    if (!st->shell)
        return;
    PyObject *events = PyObject_GetAttrString(st->shell, "events");
    if (on && !st->auto_gc_hook)
        st->auto_gc_hook = PyCFunction_New(&after_cell_def, st->module);
    if (events && st->auto_gc_hook) {
        PyObject *r = PyObject_CallMethod(events, on ? "register" : "unregister", "sO",
                                          "post_run_cell", st->auto_gc_hook);
        Py_XDECREF(r);
    }
    if (!on)
        Py_CLEAR(st->auto_gc_hook);
    Py_XDECREF(events);
    if (PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
            PyErr_Clear();
            return;
        }
        PyErr_Clear();
    }
}

void cellar_gc_reap(cellar_state *st, bool wait)
{
    if (!st->auto_gc_running)
        return;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb); /* never disturbs an error being raised */
    char why[1200];
    json_t *doc = NULL;
    int rc;
    if (wait) {
        bool interrupted;
        doc = cellar_cli_wait(&st->auto_gc, why, sizeof why, &interrupted);
        rc = doc ? 1 : -1;
        if (interrupted) {
            PyErr_Clear();
            snprintf(why, sizeof why, "interrupted");
        }
    } else {
        rc = cellar_cli_poll(&st->auto_gc, &doc, why, sizeof why);
    }
    if (rc != 0) {
        st->auto_gc_running = false;
        cellar_cli_free(&st->auto_gc);
        hook(st, false);
        if (!doc) {
            cellar_warn("the automatic gc after a commit over the budget failed: %s; "
                        "the next commit over it tries again",
                        why);
        } else {
            json_t *r = json_object_get(doc, "dropped");
            bool collected = json_is_true(json_object_get(doc, "collected"));
            const char *where = json_string_value(json_object_get(doc, "store"));
            if (st->store && where && !strcmp(where, cellar_store_path(st->store))) {
                /* Not after %cellar dir to another store: that one is measured afresh. */
                st->gc_tally = jnum(r, collected ? "size_after" : "size_before");
                st->gc_tally_ms = (uint64_t)cellar_cli_now_ms();
            }
            char a[CELLAR_UNITS_BUFSIZE], b[CELLAR_UNITS_BUFSIZE],
                c[CELLAR_UNITS_BUFSIZE], d[CELLAR_UNITS_BUFSIZE];
            uint64_t keys = jnum(r, "keys"), results = jnum(r, "results");
            if (collected)
                PySys_FormatStdout(
                    "cellar: automatic gc (max size %s) dropped %llu key%s and %llu "
                    "result%s (%s); results %s -> %s\n",
                    cellar_units_size(st->max_size, d), (unsigned long long)keys,
                    keys == 1 ? "" : "s", (unsigned long long)results,
                    results == 1 ? "" : "s", cellar_units_size(jnum(r, "freed_bytes"), a),
                    cellar_units_size(jnum(r, "size_before"), b),
                    cellar_units_size(jnum(r, "size_after"), c));
            json_decref(doc);
        }
        PyErr_Clear();
    }
    PyErr_Restore(type, value, tb);
}

void cellar_gc_after_commit(cellar_state *st, uint64_t added)
{
    cellar_gc_reap(st, false);
    uint64_t max = st->max_size, now = (uint64_t)cellar_cli_now_ms();
    st->gc_tally += added;
    if (!max || !st->store || st->auto_gc_running)
        return;
    bool measured = st->gc_tally_ms != 0;
    bool stale = !measured || now - st->gc_tally_ms > MEASURE_EVERY_MS;
    if ((measured && !added) || (!stale && st->gc_tally <= max))
        return;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    cellar_gc_options o = {.max_size = max / 10 * 9 + (max % 10) * 9 / 10};
    const char *argv[20];
    char size[32], keep[32], over[32], secs[32], *live = NULL, why[1200];
    int n = gc_argv(st, &o, argv, size, keep, &live);
    int limit = cellar_cli_limit_ms();
    if (n >= 0) {
        snprintf(over, sizeof over, "%lluB", (unsigned long long)max);
        argv[n++] = "--if-over";
        argv[n++] = over;
        if (limit > 0) {
            snprintf(secs, sizeof secs, "%d", limit / 1000);
            argv[n++] = "--timeout";
            argv[n++] = secs;
        }
        add_store(st, argv, n);
        if (cellar_cli_start(&st->auto_gc, argv, limit, why, sizeof why) == 0) {
            st->auto_gc_running = true;
            hook(st, true);
        } else {
            cellar_warn("the automatic gc after a commit over the budget could not "
                        "start: %s",
                        why);
        }
    }
    free(live);
    PyErr_Clear();
    PyErr_Restore(type, value, tb);
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
    }
    char buf[CELLAR_UNITS_BUFSIZE];
    if (st->max_size)
        PySys_FormatStdout("cellar: max size %s: a commit that takes the results above "
                           "it starts gc in the background, down to 90%% of it\n",
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
