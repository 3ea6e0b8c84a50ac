/*
 * magic.c - the `%cellar` line magic: splits the line like a shell would
 * (shlex), then dispatches to run, status, graph, log, show, dir, restore (restore.c),
 * auto (auto.c), help, behavior.c's default-behavior, or gc_magic.c's forget, gc and
 * max-size.  `--input k=v` values are read as Python literals (ast.literal_eval), or kept
 * as strings when they are not one, so `--input n=3` is an int and `--input
 * p=data.parquet` a path.
 */
#include "cellar_ext.h"

const char cellar_magic_usage[] =
    "%cellar: cached execution of the functions defined in this notebook.\n"
    "\n"
    "Every top-level function defined in a cell is a node; its parameters name the\n"
    "nodes or inputs it depends on. Results are stored, keyed by the code version\n"
    "and the data versions of the inputs, and reused after edits and restarts.\n"
    "\n"
    "  %cellar run T [T ...] [--input NAME=VALUE ...] [--recompute N]\n"
    "              [--disable N] [--ignore N]\n"
    "      Run the target nodes and what they need, reusing every cached result.\n"
    "      Returns the target's value (a dict for several targets) and shows a\n"
    "      report: one row per node with its status (computed, loaded, in memory,\n"
    "      failed, skipped), time and size. Inputs come from --input, then the\n"
    "      notebook's globals, then the parameter's default. VALUE is a Python\n"
    "      literal, or a string when it is not one.\n"
    "      --recompute N: compute N even when cached (still stored; what uses it\n"
    "      reruns only if its value changed). --disable N: compute N, never store\n"
    "      or reuse it, rerun what uses it. --ignore N: N's value never enters the\n"
    "      keys of what uses it (clients, connections); N runs only when one of\n"
    "      them computes. Each repeatable, or N,M,...; for this run only, above\n"
    "      @cellar.node(behavior=...) marks.\n"
    "      From Python: cellar.run('T', ..., NAME=VALUE), with recompute=, disable=,\n"
    "      ignore= lists of node names; cellar.results.T gives T's\n"
    "      current result, loaded when read, without running anything.\n"
    "  %cellar status [--input NAME=VALUE ...]\n"
    "      Which nodes are up to date for the current code and inputs.\n"
    "  %cellar graph [T ...] [--input NAME=VALUE ...]\n"
    "      The graph (all nodes, or the targets and what they need) as SVG, each\n"
    "      node marked up to date, needs run, needs input, or what this kernel's\n"
    "      last run did (computed, loaded, in memory, failed); inputs are dashed.\n"
    "      A node whose behaviour is not default shows [recompute], [disable] or\n"
    "      [ignore], explained in a legend under the graph.\n"
    "  %cellar log [N]\n"
    "      The N newest runs (default 10) recorded in the store, by any kernel:\n"
    "      when each started, its targets and inputs, and which nodes computed,\n"
    "      loaded, were in memory, failed or were skipped. `cellar log` in a shell.\n"
    "  %cellar show NODE\n"
    "      The node's stored results, newest first: code version, whether it is\n"
    "      the current one, created, last used, compute time, size; then the\n"
    "      runs that included it. `cellar show NODE` in a shell.\n"
    "  %cellar dir [PATH]\n"
    "      Show the store, or switch to the store in PATH (created if missing).\n"
    "      The default store is $CELLAR_DIR, else .cellar in the kernel's directory.\n"
    "  %cellar forget NODE [NODE ...]\n"
    "      Drop the nodes' stored results (and this session's values): the next\n"
    "      run computes them again. Other nodes keep theirs.\n"
    "  %cellar gc [--max-size SIZE] [--keep N] [--dry-run]\n"
    "      Keep each node's N most recent code versions (default 3: a reverted\n"
    "      edit still hits), drop older ones, results no key refers to and keys of\n"
    "      nodes that no longer exist (neither recorded in the store nor defined\n"
    "      here); then, above SIZE (10GiB, 512MiB), evict least recently used.\n"
    "  %cellar max-size [SIZE|off]\n"
    "      Show or set the budget (default $CELLAR_MAX_SIZE): a run whose commit\n"
    "      takes the store's results above it starts gc in the background,\n"
    "      down to 90% of it.\n"
    "  %cellar default-behavior [NAME]\n"
    "      Show or set the behaviour of nodes not marked with\n"
    "      @cellar.node(behavior=...): default, recompute, disable or ignore\n"
    "      (at start $CELLAR_DEFAULT_BEHAVIOR, else default).\n"
    "  %cellar restore [--session S]\n"
    "      Re-define the last session's nodes, helpers, classes and literal globals\n"
    "      from the cellar kernel's journal, running no cell that computes; results\n"
    "      load from the store when a run needs them.\n"
    "  %cellar auto [on|off]\n"
    "      Reactive mode (off by default): after a cell changes a node, a helper\n"
    "      or a global that the last run's targets depend on, those targets rerun\n"
    "      at the end of that cell, with that run's inputs and --recompute,\n"
    "      --disable and --ignore, and show their report. Alone: the state.\n"
    "  %cellar --help\n"
    "      This text.\n";

static PyObject *usage_error(cellar_state *st, const char *fmt, PyObject *arg)
{
    PyObject *msg = arg ? PyUnicode_FromFormat(fmt, arg) : PyUnicode_FromString(fmt);
    if (msg) {
        PyErr_Format(st->RunError, "%U\n\n%s", msg, cellar_magic_usage);
        Py_DECREF(msg);
    }
    return NULL;
}

/* Parses NAME=VALUE into `inputs`. */
static int add_input(cellar_state *st, PyObject *inputs, PyObject *item)
{
    Py_ssize_t eq = PyUnicode_FindChar(item, '=', 0, PyUnicode_GET_LENGTH(item), 1);
    if (eq < 0)
        return -2;
    if (eq <= 0) {
        usage_error(st, "--input needs NAME=VALUE, got '%U'", item);
        return -1;
    }
    PyObject *name = PyUnicode_Substring(item, 0, eq);
    PyObject *text = PyUnicode_Substring(item, eq + 1, PyUnicode_GET_LENGTH(item));
    int rc = -1;
    if (name && text) {
        if (!PyUnicode_IsIdentifier(name)) {
            usage_error(st, "--input name '%U' is not a Python identifier", name);
        } else {
            PyObject *value = PyObject_CallFunctionObjArgs(st->literal_eval, text, NULL);
            if (!value && PyErr_ExceptionMatches(PyExc_Exception)) {
                PyErr_Clear();
                value = Py_NewRef(text);
            }
            rc = value ? PyDict_SetItem(inputs, name, value) : -1;
            Py_XDECREF(value);
        }
    }
    Py_XDECREF(name);
    Py_XDECREF(text);
    return rc;
}

/* Whether `arg` starts with the ASCII `prefix` (no temporary object). */
static bool starts_with(PyObject *arg, const char *prefix)
{
    Py_ssize_t n = (Py_ssize_t)strlen(prefix);
    if (PyUnicode_GET_LENGTH(arg) < n)
        return false;
    for (Py_ssize_t i = 0; i < n; i++)
        if (PyUnicode_READ_CHAR(arg, i) != (Py_UCS4)(unsigned char)prefix[i])
            return false;
    return true;
}

static int is_flag(PyObject *arg, const char *a, const char *b)
{
    return PyUnicode_CompareWithASCIIString(arg, a) == 0 ||
           (b && PyUnicode_CompareWithASCIIString(arg, b) == 0);
}

/* --recompute N[,N...] (and --disable, --ignore; also --recompute=N): `*i`
 * is at the flag.  1 when `arg` is not such an option, 0 done, -1 error. */
static int behavior_option(cellar_state *st, PyObject *args, Py_ssize_t *i,
                           PyObject *behaviors)
{
    PyObject *arg = PyList_GET_ITEM(args, *i), *value = NULL;
    int b = CELLAR_BEHAVIOR_RECOMPUTE;
    for (; b < CELLAR_NBEHAVIORS; b++) {
        char flag[32];
        snprintf(flag, sizeof flag, "--%s", cellar_behavior_names[b]);
        if (is_flag(arg, flag, NULL)) {
            if (*i + 1 >= PyList_GET_SIZE(args)) {
                usage_error(st, "%U needs a node name", arg);
                return -1;
            }
            value = Py_NewRef(PyList_GET_ITEM(args, ++*i));
            break;
        }
        size_t len = strlen(flag);
        flag[len] = '=';
        flag[len + 1] = '\0';
        if (starts_with(arg, flag)) {
            value =
                PyUnicode_Substring(arg, (Py_ssize_t)len + 1, PyUnicode_GET_LENGTH(arg));
            if (!value)
                return -1;
            break;
        }
    }
    if (b == CELLAR_NBEHAVIORS)
        return 1;
    if (!behaviors) {
        Py_DECREF(value);
        usage_error(st, "option '%U' is for %%cellar run", arg);
        return -1;
    }
    PyObject *comma = PyUnicode_FromString(",");
    PyObject *names = comma ? PyUnicode_Split(value, comma, -1) : NULL;
    Py_XDECREF(comma);
    Py_DECREF(value);
    int rc = names ? cellar_behavior_add(st, behaviors, names, b) : -1;
    Py_XDECREF(names);
    return rc;
}

/* Splits args[from:] into target names, --input values and (into
 * `behaviors`, when not NULL) behaviour options. */
static int parse_run_args(cellar_state *st, PyObject *args, Py_ssize_t from,
                          PyObject *targets, PyObject *inputs, PyObject *behaviors)
{
    Py_ssize_t n = PyList_GET_SIZE(args);
    for (Py_ssize_t i = from; i < n; i++) {
        PyObject *arg = PyList_GET_ITEM(args, i);
        int opt = behavior_option(st, args, &i, behaviors);
        if (opt < 0)
            return -1;
        if (opt == 0)
            continue;
        if (is_flag(arg, "--input", "-i")) {
            if (i + 1 >= n) {
                usage_error(st, "--input needs NAME=VALUE", NULL);
                return -1;
            }
            int rc = add_input(st, inputs, PyList_GET_ITEM(args, ++i));
            if (rc == -2)
                usage_error(st, "--input needs NAME=VALUE, got '%U'",
                            PyList_GET_ITEM(args, i));
            if (rc < 0)
                return -1;
        } else if (starts_with(arg, "--input=")) {
            PyObject *rest = PyUnicode_Substring(arg, 8, PyUnicode_GET_LENGTH(arg));
            int rc = rest ? add_input(st, inputs, rest) : -1;
            if (rc == -2)
                usage_error(st, "--input needs NAME=VALUE, got '%U'", rest);
            Py_XDECREF(rest);
            if (rc < 0)
                return -1;
        } else if (PyUnicode_GET_LENGTH(arg) > 0 && PyUnicode_READ_CHAR(arg, 0) == '-') {
            usage_error(st, "unknown option '%U'", arg);
            return -1;
        } else if (!targets) {
            usage_error(st, "unexpected argument '%U'", arg);
            return -1;
        } else if (!PyUnicode_IsIdentifier(arg)) {
            usage_error(st, "'%U' is not a node name", arg);
            return -1;
        } else if (PyList_Append(targets, arg) < 0) {
            return -1;
        }
    }
    return 0;
}

static PyObject *magic_run(cellar_state *st, PyObject *args)
{
    PyObject *targets = PyList_New(0), *inputs = PyDict_New(), *result = NULL;
    PyObject *behaviors = PyDict_New();
    if (targets && inputs && behaviors &&
        parse_run_args(st, args, 1, targets, inputs, behaviors) == 0) {
        if (PyList_GET_SIZE(targets) == 0)
            usage_error(st, "%%cellar run needs at least one target node", NULL);
        else
            result = cellar_auto_note_run(st, targets, inputs, behaviors) == 0
                         ? cellar_run_behaving(st, targets, inputs, behaviors)
                         : NULL;
    }
    Py_XDECREF(targets);
    Py_XDECREF(inputs);
    Py_XDECREF(behaviors);
    return result;
}

static PyObject *magic_status(cellar_state *st, PyObject *args)
{
    if (st->running) {
        PyErr_SetString(st->RunError,
                        "%cellar status cannot run while a run is in progress");
        return NULL;
    }
    PyObject *inputs = PyDict_New();
    PyObject *report = NULL;
    if (inputs && parse_run_args(st, args, 1, NULL, inputs, NULL) == 0)
        report = cellar_status_report(st, inputs);
    Py_XDECREF(inputs);
    if (!report)
        return NULL;
    int r = cellar_report_show(st, report);
    Py_DECREF(report);
    if (r < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *magic_graph(cellar_state *st, PyObject *args)
{
    PyObject *targets = PyList_New(0), *inputs = PyDict_New(), *result = NULL;
    if (targets && inputs && parse_run_args(st, args, 1, targets, inputs, NULL) == 0)
        result = cellar_graph_show(st, targets, inputs);
    Py_XDECREF(targets);
    Py_XDECREF(inputs);
    return result;
}

static PyObject *magic_dir(cellar_state *st, PyObject *args)
{
    Py_ssize_t n = PyList_GET_SIZE(args);
    if (n > 2)
        return usage_error(st, "%%cellar dir takes one PATH", NULL);
    if (n == 2 && cellar_open_store(st, PyList_GET_ITEM(args, 1)) < 0)
        return NULL;
    PyObject *summary = cellar_store_summary(st);
    if (!summary)
        return NULL;
    PySys_FormatStdout("%U\n", summary);
    Py_DECREF(summary);
    Py_RETURN_NONE;
}

static PyObject *magic_log(cellar_state *st, PyObject *args)
{
    Py_ssize_t n = PyList_GET_SIZE(args), count = 0;
    if (n > 2)
        return usage_error(st, "%%cellar log takes one count N", NULL);
    if (n == 2) {
        PyObject *num = PyLong_FromUnicodeObject(PyList_GET_ITEM(args, 1), 10);
        count = num ? PyLong_AsSsize_t(num) : -1;
        Py_XDECREF(num);
        if (count <= 0) {
            PyErr_Clear();
            return usage_error(st, "%%cellar log N needs a positive count, got '%U'",
                               PyList_GET_ITEM(args, 1));
        }
    }
    return cellar_log_show(st, count);
}

static PyObject *magic_show(cellar_state *st, PyObject *args)
{
    if (PyList_GET_SIZE(args) != 2)
        return usage_error(st, "%%cellar show takes one NODE", NULL);
    return cellar_node_show(st, PyList_GET_ITEM(args, 1));
}

PyObject *cellar_magic(PyObject *module, PyObject *line)
{
    cellar_state *st = cellar_state_of(module);
    PyObject *args = PyObject_CallFunctionObjArgs(st->shlex_split, line, NULL);
    if (!args) {
        if (PyErr_ExceptionMatches(PyExc_ValueError)) {
            PyObject *type, *value, *tb;
            PyErr_Fetch(&type, &value, &tb);
            PyErr_NormalizeException(&type, &value, &tb);
            PyErr_Format(st->RunError, "cannot parse the %%cellar line: %S", value);
            Py_XDECREF(type);
            Py_XDECREF(value);
            Py_XDECREF(tb);
        }
        return NULL;
    }
    PyObject *result = NULL;
    if (!PyList_Check(args)) {
        PyErr_SetString(PyExc_TypeError, "shlex.split did not return a list");
    } else if (PyList_GET_SIZE(args) == 0 ||
               is_flag(PyList_GET_ITEM(args, 0), "--help", "-h") ||
               is_flag(PyList_GET_ITEM(args, 0), "help", NULL)) {
        PySys_FormatStdout("%s", cellar_magic_usage);
        result = Py_NewRef(Py_None);
    } else {
        PyObject *cmd = PyList_GET_ITEM(args, 0);
        if (is_flag(cmd, "run", NULL))
            result = magic_run(st, args);
        else if (is_flag(cmd, "status", NULL))
            result = magic_status(st, args);
        else if (is_flag(cmd, "graph", NULL))
            result = magic_graph(st, args);
        else if (is_flag(cmd, "dir", NULL))
            result = magic_dir(st, args);
        else if (is_flag(cmd, "log", NULL))
            result = magic_log(st, args);
        else if (is_flag(cmd, "show", NULL))
            result = magic_show(st, args);
        else if (cellar_gc_magic_handles(cmd))
            result = cellar_gc_magic(st, args);
        else if (is_flag(cmd, "default-behavior", "default-behaviour"))
            result = cellar_behavior_magic(st, args);
        else if (is_flag(cmd, "restore", NULL))
            result = cellar_restore(st, args);
        else if (is_flag(cmd, "auto", NULL))
            result = cellar_auto_magic(st, args);
        else
            usage_error(st, "unknown %%cellar command '%U'", cmd);
    }
    Py_DECREF(args);
    return result;
}
