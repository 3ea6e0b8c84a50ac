/*
 * auto.c - reactive mode, `%cellar auto on|off`: after a cell changes what
 * the last run's targets depend on, those targets rerun at the end of that
 * cell.
 *
 * Every run started from the notebook (`%cellar run`, `cellar.run`) notes its
 * targets, inputs and behaviour options here, and a rerun repeats all three.
 * With the mode on, the end of the cell that ran it (post_run_cell) takes a
 * baseline: the cache key of each target and of each of its ancestors, as
 * status planning (cellar_node_statuses_behaving, of those nodes alone)
 * computes them for the current code and inputs and the run's options (a
 * disabled node planned as ignored, so that what is below it has a key), None
 * where a key cannot be known yet.  After every later cell the same planning
 * is done again; when any of those keys differs (a node, a helper or a global
 * read by one changed), the targets still defined rerun through cellar_run,
 * which shows its report in that cell, and the baseline is taken again.  The
 * ancestors' keys count, not only the targets': after a node failed, its
 * dependants' keys are unknown before and after an edit, while the failed
 * node's own key moves.  A cell that ran a run itself, a cell that failed, a
 * rerun in progress and a run in progress on another subshell rerun nothing.
 * Nothing here raises into the user's cell: a rerun's error is shown by the
 * shell's traceback formatter, as a failing `%cellar run` is, and other
 * failures become warnings.
 */
#include "cellar_ext.h"

/* Whether `name` (a str) is a registered node: in the registry, not private. */
static int is_node(cellar_state *st, PyObject *name)
{
    PyObject *cap = PyDict_GetItemWithError(st->functions, name);
    if (!cap)
        return PyErr_Occurred() ? -1 : 0;
    return PyUnicode_GET_LENGTH(name) > 0 && PyUnicode_READ_CHAR(name, 0) != '_';
}

/* The last run's targets that are still nodes, as a new list. */
static PyObject *live_targets(cellar_state *st)
{
    PyObject *out = PyList_New(0);
    for (Py_ssize_t i = 0; out && i < PyList_GET_SIZE(st->auto_targets); i++) {
        PyObject *t = PyList_GET_ITEM(st->auto_targets, i);
        int node = is_node(st, t);
        if (node < 0 || (node && PyList_Append(out, t) < 0))
            Py_CLEAR(out);
    }
    return out;
}

/* The targets and their ancestors in the registry (parameters that name a
 * node, as the run's graph takes them), as a new set of str. */
static PyObject *ancestors(cellar_state *st, PyObject *targets)
{
    PyObject *seen = PySet_New(targets);
    PyObject *todo = seen ? PySequence_List(targets) : NULL;
    while (todo && PyList_GET_SIZE(todo) > 0) {
        Py_ssize_t last = PyList_GET_SIZE(todo) - 1;
        PyObject *name = Py_NewRef(PyList_GET_ITEM(todo, last));
        PyObject *cap = PyList_SetSlice(todo, last, last + 1, NULL) == 0
                            ? PyDict_GetItemWithError(st->functions, name)
                            : NULL;
        Py_DECREF(name);
        if (!cap) {
            if (PyErr_Occurred())
                Py_CLEAR(todo);
            continue;
        }
        cellar_fn *fn = cellar_fn_of(cap);
        for (Py_ssize_t i = 0; todo && i < fn->nparams; i++) {
            PyObject *p = fn->param_names[i];
            if (fn->kinds[i] == CELLAR_PARAM_VAR_POSITIONAL ||
                fn->kinds[i] == CELLAR_PARAM_VAR_KEYWORD)
                continue;
            int node = is_node(st, p);
            int known = node > 0 ? PySet_Contains(seen, p) : 0;
            if (node < 0 || known < 0 ||
                (node > 0 && !known &&
                 (PySet_Add(seen, p) < 0 || PyList_Append(todo, p) < 0)))
                Py_CLEAR(todo);
        }
    }
    if (!todo)
        Py_CLEAR(seen);
    Py_XDECREF(todo);
    return seen;
}

/* The behaviours the targets are keyed with to see a change: the last run's
 * options, over the nodes' own, except that a disabled node counts as an
 * ignored one.  A disabled node's value has a version of its own in every
 * run, so status planning knows no key below it, and no edit below it could
 * be seen; planned as ignored, its dependants are keyed by their own code and
 * their other inputs (its own key still counts).  New dict, or NULL. */
static PyObject *planning_behaviors(cellar_state *st)
{
    PyObject *out = st->auto_behaviors ? PyDict_Copy(st->auto_behaviors) : PyDict_New();
    PyObject *ignore = out ? PyLong_FromLong(CELLAR_BEHAVIOR_IGNORE) : NULL;
    int fallback = cellar_behavior_default(st);
    PyObject *name, *cap;
    Py_ssize_t pos = 0;
    while (ignore && PyDict_Next(st->functions, &pos, &name, &cap)) {
        PyObject *given = PyDict_GetItemWithError(out, name);
        int own = cellar_fn_of(cap)->behavior;
        long b = given ? PyLong_AsLong(given) : own >= 0 ? own : fallback;
        if (PyErr_Occurred() ||
            (b == CELLAR_BEHAVIOR_DISABLE && PyDict_SetItem(out, name, ignore) < 0)) {
            Py_CLEAR(out);
            break;
        }
    }
    if (!ignore)
        Py_CLEAR(out);
    Py_XDECREF(ignore);
    return out;
}

/* What the targets depend on now: ancestor name -> its current key (bytes)
 * or None, from a status planning of the targets and their ancestors (the
 * other nodes' inputs are not fingerprinted).  New reference, or NULL with
 * an error. */
static PyObject *snapshot(cellar_state *st, PyObject *targets)
{
    PyObject *behaviors = planning_behaviors(st);
    PyObject *statuses = behaviors ? cellar_node_statuses_behaving(st, st->auto_inputs,
                                                                   behaviors, targets)
                                   : NULL;
    Py_XDECREF(behaviors);
    PyObject *names = statuses ? ancestors(st, targets) : NULL;
    PyObject *out = names ? PyDict_New() : NULL;
    PyObject *it = out ? PyObject_GetIter(names) : NULL;
    PyObject *name;
    while (it && (name = PyIter_Next(it))) {
        PyObject *item = PyDict_GetItemWithError(statuses, name);
        if ((!item && PyErr_Occurred()) ||
            (item && PyDict_SetItem(out, name, PyTuple_GET_ITEM(item, 1)) < 0))
            Py_CLEAR(out);
        Py_DECREF(name);
        if (!out)
            break;
    }
    if (!it || PyErr_Occurred())
        Py_CLEAR(out);
    Py_XDECREF(it);
    Py_XDECREF(names);
    Py_XDECREF(statuses);
    return out;
}

/* Takes the baseline for the last run's targets. */
static int rebase(cellar_state *st)
{
    PyObject *targets = live_targets(st);
    PyObject *keys = targets ? snapshot(st, targets) : NULL;
    Py_XDECREF(targets);
    if (!keys)
        return -1;
    Py_XSETREF(st->auto_keys, keys);
    return 0;
}

/* "a, b" for the names whose key in `now` differs from `before`'s: those
 * with a known key (a node downstream of a change has none until it runs),
 * or, when none has one, all of them. */
static PyObject *changed_names(PyObject *before, PyObject *now)
{
    PyObject *names = PyList_New(0);
    for (int known_only = 1; names && known_only >= 0; known_only--) {
        PyObject *name, *key;
        Py_ssize_t pos = 0;
        while (names && PyDict_Next(now, &pos, &name, &key)) {
            PyObject *old = PyDict_GetItemWithError(before, name);
            int same = old ? PyObject_RichCompareBool(old, key, Py_EQ) : 0;
            if (PyErr_Occurred() || same < 0 ||
                (!same && (!known_only || key != Py_None) &&
                 PyList_Append(names, name) < 0))
                Py_CLEAR(names);
        }
        if (names && PyList_GET_SIZE(names) > 0)
            break;
    }
    if (names && PyList_Sort(names) < 0)
        Py_CLEAR(names);
    PyObject *sep = names ? PyUnicode_FromString(", ") : NULL;
    PyObject *text = sep ? PyUnicode_Join(sep, names) : NULL;
    Py_XDECREF(sep);
    Py_XDECREF(names);
    return text;
}

/* Shows the exception a rerun raised, as IPython shows a cell's (RunError
 * renders as its one line). */
static void show_error(cellar_state *st)
{
    PyObject *exc = cellar_fetch_exception();
    if (!exc)
        return;
    cellar_show_exception(st, exc);
    Py_DECREF(exc);
}

/* Reruns the targets still defined, then takes the baseline again. */
static int rerun(cellar_state *st, PyObject *before, PyObject *now)
{
    PyObject *targets = live_targets(st);
    if (!targets)
        return -1;
    if (PyList_GET_SIZE(targets) > 0) {
        PyObject *changed = changed_names(before, now);
        PyObject *sep = changed ? PyUnicode_FromString(", ") : NULL;
        PyObject *which = sep ? PyUnicode_Join(sep, targets) : NULL;
        PyObject *options =
            which ? cellar_behavior_options_text(st->auto_behaviors) : NULL;
        if (options)
            PySys_FormatStdout("cellar auto: %U changed; running %U%U\n", changed, which,
                               options);
        Py_XDECREF(options);
        Py_XDECREF(which);
        Py_XDECREF(sep);
        Py_XDECREF(changed);
        if (PyErr_Occurred()) {
            Py_DECREF(targets);
            return -1;
        }
        st->auto_busy = true;
        PyObject *r =
            cellar_run_behaving(st, targets, st->auto_inputs, st->auto_behaviors);
        st->auto_busy = false;
        if (r)
            Py_DECREF(r);
        else
            show_error(st);
    }
    Py_DECREF(targets);
    return rebase(st);
}

/* 1 when the cell's result says it failed (error_before_exec or
 * error_in_exec set), 0 when not, -1 with an error. */
static int cell_failed(PyObject *result)
{
    static const char *const attrs[] = {"error_before_exec", "error_in_exec"};
    for (size_t i = 0; i < sizeof attrs / sizeof attrs[0]; i++) {
        PyObject *v;
        int found = cellar_optional_attr(result, attrs[i], &v);
        if (found < 0)
            return -1;
        int set = found && v != Py_None;
        Py_XDECREF(v);
        if (set)
            return 1;
    }
    return 0;
}

void cellar_auto_after_cell(cellar_state *st, PyObject *result)
{
    bool ran = st->auto_ran;
    st->auto_ran = false;
    if (!st->auto_on || st->auto_busy || st->running || !st->auto_targets)
        return;
    int rc = 0;
    if (ran || !st->auto_keys) {
        rc = rebase(st);
    } else {
        int failed = cell_failed(result);
        PyObject *now = failed == 0 ? live_targets(st) : NULL;
        PyObject *keys = now ? snapshot(st, now) : NULL;
        Py_XDECREF(now);
        int same = keys ? PyObject_RichCompareBool(keys, st->auto_keys, Py_EQ) : -1;
        if (failed < 0 || (failed == 0 && same < 0))
            rc = -1;
        else if (failed == 0 && same == 0)
            rc = rerun(st, st->auto_keys, keys);
        Py_XDECREF(keys);
    }
    if (rc == 0) {
        st->auto_warned = false;
        return;
    }
    /* The baseline is kept, so that a change in this cell still counts at the
     * next cell that can be checked; the warning is given once until then. */
    PyObject *exc = cellar_fetch_exception();
    PyObject *msg = exc ? PyObject_Str(exc) : NULL;
    if (!msg)
        PyErr_Clear();
    if (!st->auto_warned)
        cellar_warn("reactive mode could not check the last run's targets (%s); "
                    "nothing was rerun",
                    msg ? PyUnicode_AsUTF8(msg) : "unknown error");
    st->auto_warned = true;
    PyErr_Clear();
    Py_XDECREF(msg);
    Py_XDECREF(exc);
}

int cellar_auto_note_run(cellar_state *st, PyObject *targets, PyObject *inputs,
                         PyObject *behaviors)
{
    if (st->running || st->auto_busy)
        return 0; /* a run from inside a node body fails; it is not the last run */
    PyObject *named = cellar_registry_normalize_keys(inputs);
    PyObject *copy = named ? PyDict_Copy(named) : NULL;
    Py_XDECREF(named);
    PyObject *names = copy ? PyList_New(0) : NULL;
    for (Py_ssize_t i = 0; names && i < PyList_GET_SIZE(targets); i++) {
        PyObject *norm = cellar_registry_normalize(PyList_GET_ITEM(targets, i));
        if (!norm || PyList_Append(names, norm) < 0)
            Py_CLEAR(names);
        Py_XDECREF(norm);
    }
    /* The options as given now: behavior.c checked their names, and a node
     * removed since is left out of the rerun's (plan.c skips it). */
    bool given = names && behaviors && PyDict_GET_SIZE(behaviors) > 0;
    PyObject *options = given ? PyDict_Copy(behaviors) : NULL;
    if (!names || (!options && PyErr_Occurred())) {
        Py_XDECREF(names);
        Py_XDECREF(copy);
        return -1;
    }
    Py_XSETREF(st->auto_targets, names);
    Py_XSETREF(st->auto_inputs, copy);
    Py_XSETREF(st->auto_behaviors, options);
    Py_CLEAR(st->auto_keys);
    st->auto_ran = true;
    return 0;
}

PyObject *cellar_auto_magic(cellar_state *st, PyObject *args)
{
    Py_ssize_t n = PyList_GET_SIZE(args);
    PyObject *arg = n == 2 ? PyList_GET_ITEM(args, 1) : NULL;
    if (n > 2 || (arg && PyUnicode_CompareWithASCIIString(arg, "on") != 0 &&
                  PyUnicode_CompareWithASCIIString(arg, "off") != 0)) {
        PyErr_Format(st->RunError, "%%cellar auto takes on or off (or nothing, to show "
                                   "the state)");
        return NULL;
    }
    if (arg) {
        bool on = PyUnicode_CompareWithASCIIString(arg, "on") == 0;
        if (on && !st->auto_on)
            st->auto_ran = true; /* the baseline is taken at the end of this cell */
        st->auto_on = on;
        if (!on)
            Py_CLEAR(st->auto_keys);
    }
    if (!st->auto_on) {
        PySys_FormatStdout("cellar auto: off\n");
    } else if (!st->auto_targets || PyList_GET_SIZE(st->auto_targets) == 0) {
        PySys_FormatStdout("cellar auto: on; the targets of the next run rerun when what "
                           "they depend on changes\n");
    } else {
        PyObject *sep = PyUnicode_FromString(", ");
        PyObject *which = sep ? PyUnicode_Join(sep, st->auto_targets) : NULL;
        Py_XDECREF(sep);
        PyObject *options =
            which ? cellar_behavior_options_text(st->auto_behaviors) : NULL;
        if (!options) {
            Py_XDECREF(which);
            return NULL;
        }
        bool one = PyList_GET_SIZE(st->auto_targets) == 1;
        PySys_FormatStdout("cellar auto: on; %U%U rerun%s when what %s depend%s on "
                           "changes\n",
                           which, options, one ? "s" : "",
                           PyList_GET_SIZE(st->auto_targets) == 1 ? "it" : "they",
                           PyList_GET_SIZE(st->auto_targets) == 1 ? "s" : "");
        Py_DECREF(which);
        Py_DECREF(options);
    }
    Py_RETURN_NONE;
}
