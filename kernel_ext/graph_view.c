/*
 * graph_view.c - the body of `%cellar graph [TARGET ...]`: the registry's
 * nodes (all, or the targets and their ancestors) and the inputs they read,
 * drawn by the runtime's graph_render and published as image/svg+xml, as
 * text/html (the same SVG inline, so the theme's CSS variables reach it) and
 * as text/plain (a listing of the edges).
 *
 * Each node's status joins two sources.  "Up to date", "needs run" and
 * "needs input" come from the status planning for the current code and
 * inputs (cellar_node_statuses, plan.c), the same as `%cellar status`.  What
 * this kernel's last run did comes from its run record in the store
 * (records.h), read back: an up-to-date node whose current key is the one
 * that run recorded shows "computed", "loaded" or "in memory"; a node that
 * still needs a run and failed in it shows "failed".  An input shows where
 * its value would come from: "given" (--input), "global", "default", or
 * "missing" when a node that reads it has no default.  When the graph has a
 * cycle nothing can be planned; it is drawn all the same, with the nodes on
 * a cycle "in cycle".  A node whose behaviour (behavior.c: its mark, else the
 * default behaviour) is not default carries it as the render's mark, a third
 * line "[recompute]", "[disable]" or "[ignore]", and the legend under the
 * graph (HTML, in the frontend's own text colour, and the text listing) says
 * what each mark shown means.
 */
#include "cellar_ext.h"

#include <string.h>
#include <unistd.h>

#include "cellar/graph.h"
#include "cellar/graph_render.h"
#include "cellar/records.h"

/* Runs of other kernels sharing the store are skipped while looking for this
 * kernel's last one; past this many, it is taken as having none. */
#define RUNS_SCANNED 256

typedef struct view {
    cellar_state *st;
    PyObject *inputs;   /* --input values */
    PyObject *statuses; /* cellar_node_statuses */
    PyObject *index;    /* vertex name -> int */
    PyObject *keep;     /* list: every str a vertex points into */
    cellar_render_vertex *v;
    bool *needs_value; /* per vertex: an input some reader has no default for */
    size_t nv, cap_v;
    cellar_render_edge *e;
    size_t ne, cap_e;
    size_t ninputs;
    bool marked[CELLAR_NBEHAVIORS]; /* the behaviours some vertex is marked with */
    cellar_run_record *last;        /* this kernel's newest run, or NULL */
    PyObject *unplanned;     /* why no node could be planned (a cycle), or NULL */
} view;

/* ---- this kernel's last run ---- */

typedef struct run_walk {
    int64_t pid;
    int scanned;
    cellar_run_record *found;
} run_walk;

static int pick_run(void *ctx, uint64_t run_id, const char *json, size_t len)
{
    (void)run_id;
    run_walk *w = ctx;
    cellar_run_record *rec = NULL;
    if (cellar_run_record_decode(json, len, &rec, NULL) == CELLAR_OK) {
        if (rec->pid == w->pid) {
            w->found = rec;
            return 1;
        }
        cellar_run_record_free(rec);
    }
    return ++w->scanned >= RUNS_SCANNED;
}

/* The last run is decoration: a store that cannot be read leaves it NULL and
 * the graph shows the statuses for the current code alone. */
static cellar_run_record *last_run(cellar_state *st)
{
    cellar_reader *r = NULL;
    run_walk w = {(int64_t)getpid(), 0, NULL};
    if (!st->store || cellar_reader_begin(st->store, &r, NULL) != CELLAR_OK)
        return NULL;
    cellar_reader_each_run(r, pick_run, &w, NULL);
    cellar_reader_end(r);
    return w.found;
}

/* ---- statuses ---- */

static const char *word_of_outcome(cellar_outcome o)
{
    switch (o) {
    case CELLAR_OUTCOME_COMPUTED: return "computed";
    case CELLAR_OUTCOME_LOADED: return "loaded";
    case CELLAR_OUTCOME_IN_MEMORY: return "in-memory";
    default: return "up-to-date";
    }
}

/* The node's status word, and in *why (new ref, or NULL) what the tooltip
 * adds. */
static const char *node_status(view *vw, PyObject *name, const char *utf8, PyObject **why)
{
    *why = NULL;
    PyObject *item = PyDict_GetItemWithError(vw->statuses, name);
    if (!item)
        return PyErr_Occurred() ? NULL : "needs-run";
    const char *state = PyUnicode_AsUTF8(PyTuple_GET_ITEM(item, 0));
    PyObject *key = PyTuple_GET_ITEM(item, 1), *reason = PyTuple_GET_ITEM(item, 2);
    if (!state)
        return NULL;
    const cellar_lineage_row *row =
        vw->last ? cellar_run_record_find(vw->last, utf8) : NULL;
    if (strcmp(state, "up to date") == 0) {
        bool same = row && row->has_versions && PyBytes_Check(key) &&
                    memcmp(PyBytes_AS_STRING(key), row->key.bytes, 16) == 0;
        return same ? word_of_outcome(row->outcome) : "up-to-date";
    }
    if (strcmp(state, "needs input") == 0) {
        *why = Py_XNewRef(reason != Py_None ? reason : NULL);
        return "needs-input";
    }
    if (row && row->outcome == CELLAR_OUTCOME_FAILED) {
        *why = row->error ? PyUnicode_DecodeUTF8(
                                row->error, (Py_ssize_t)strlen(row->error), "replace")
                          : NULL;
        if (row->error && !*why)
            PyErr_Clear();
        return "failed";
    }
    return "needs-run";
}

static const char *input_status(view *vw, size_t i, PyObject *name)
{
    int given = PyDict_Contains(vw->inputs, name);
    PyObject *ns = given == 0 ? cellar_user_ns(vw->st) : NULL;
    int global = ns ? PyDict_Contains(ns, name) : 0;
    if (given < 0 || global < 0)
        return NULL;
    if (given)
        return "given";
    if (global)
        return "global";
    return vw->needs_value[i] ? "missing" : "default";
}

/* ---- vertices and edges ---- */

static int keep(view *vw, PyObject *s, const char **utf8)
{
    *utf8 = PyUnicode_AsUTF8(s);
    return *utf8 ? PyList_Append(vw->keep, s) : -1;
}

/* Index of vertex `name`, adding it (status filled in later) if new. */
static Py_ssize_t vertex(view *vw, PyObject *name, cellar_render_kind kind)
{
    PyObject *at = PyDict_GetItemWithError(vw->index, name);
    if (at)
        return PyLong_AsSsize_t(at);
    if (PyErr_Occurred())
        return -1;
    if (vw->nv == vw->cap_v) {
        size_t cap = vw->cap_v ? 2 * vw->cap_v : 64;
        cellar_render_vertex *v = PyMem_Realloc(vw->v, cap * sizeof *v);
        bool *need = v ? PyMem_Realloc(vw->needs_value, cap * sizeof *need) : NULL;
        if (v)
            vw->v = v;
        if (need)
            vw->needs_value = need;
        if (!v || !need) {
            PyErr_NoMemory();
            return -1;
        }
        vw->cap_v = cap;
    }
    size_t i = vw->nv;
    PyObject *pos = PyLong_FromSize_t(i);
    int rc = pos ? PyDict_SetItem(vw->index, name, pos) : -1;
    Py_XDECREF(pos);
    if (rc < 0 || keep(vw, name, &vw->v[i].name) < 0)
        return -1;
    vw->v[i].kind = kind;
    vw->v[i].status = "needs-run";
    vw->v[i].tooltip = NULL;
    vw->v[i].mark = NULL;
    vw->needs_value[i] = false;
    vw->nv++;
    vw->ninputs += kind == CELLAR_RENDER_INPUT;
    return (Py_ssize_t)i;
}

static int edge(view *vw, size_t from, size_t to)
{
    if (vw->ne == vw->cap_e) {
        size_t cap = vw->cap_e ? 2 * vw->cap_e : 64;
        cellar_render_edge *e = PyMem_Realloc(vw->e, cap * sizeof *e);
        if (!e) {
            PyErr_NoMemory();
            return -1;
        }
        vw->e = e;
        vw->cap_e = cap;
    }
    vw->e[vw->ne++] = (cellar_render_edge){from, to};
    return 0;
}

static bool is_param(cellar_fn *fn, Py_ssize_t i)
{
    return fn->kinds[i] != CELLAR_PARAM_VAR_POSITIONAL &&
           fn->kinds[i] != CELLAR_PARAM_VAR_KEYWORD;
}

/* The registered node called `name` (borrowed), or NULL without error. */
static cellar_fn *node_named(cellar_state *st, PyObject *name)
{
    PyObject *cap = PyDict_GetItemWithError(st->functions, name);
    if (!cap || PyUnicode_READ_CHAR(name, 0) == '_')
        return NULL;
    return cellar_fn_of(cap);
}

/* The nodes to draw, in registry order: all, or `targets` and their
 * ancestors; a new list of str. */
static PyObject *wanted_nodes(cellar_state *st, PyObject *targets)
{
    PyObject *out = PyList_New(0), *seen = PySet_New(NULL), *todo = NULL;
    if (!out || !seen)
        goto fail;
    Py_ssize_t n = PyList_GET_SIZE(targets);
    todo = PyList_GetSlice(targets, 0, n);
    while (todo && PyList_GET_SIZE(todo) > 0) {
        Py_ssize_t last = PyList_GET_SIZE(todo) - 1;
        PyObject *name = Py_NewRef(PyList_GET_ITEM(todo, last));
        cellar_fn *fn =
            PyList_SetSlice(todo, last, last + 1, NULL) < 0 ? NULL : node_named(st, name);
        int dup = fn ? PySet_Contains(seen, name) : 0;
        if (!fn && !PyErr_Occurred())
            PyErr_Format(st->RunError,
                         "unknown node '%U': define a top-level function named '%U' in "
                         "a cell (names starting with '_' are not nodes)",
                         name, name);
        if (dup == 0 && fn && PySet_Add(seen, name) == 0)
            for (Py_ssize_t i = 0; i < fn->nparams; i++)
                if (is_param(fn, i) && node_named(st, fn->param_names[i]) &&
                    PyList_Append(todo, fn->param_names[i]) < 0)
                    break;
        Py_DECREF(name);
        if (PyErr_Occurred())
            goto fail;
    }
    PyObject *name, *cap;
    Py_ssize_t pos = 0;
    while (PyDict_Next(st->functions, &pos, &name, &cap)) {
        int want =
            n == 0 ? PyUnicode_READ_CHAR(name, 0) != '_' : PySet_Contains(seen, name);
        if (want < 0 || (want && PyList_Append(out, name) < 0))
            goto fail;
    }
    Py_XDECREF(todo);
    Py_DECREF(seen);
    return out;
fail:
    Py_XDECREF(todo);
    Py_XDECREF(seen);
    Py_XDECREF(out);
    return NULL;
}

static const char *spaced(const char *word, char *buf, size_t size);

/* "name: status word", the behaviour when marked, then why on its own line. */
static int set_tooltip(view *vw, size_t i, PyObject *why)
{
    char word[40], mark[48] = "";
    spaced(vw->v[i].status, word, sizeof word);
    if (vw->v[i].mark)
        snprintf(mark, sizeof mark, " (behavior: %s)", vw->v[i].mark);
    PyObject *tip = why ? PyUnicode_FromFormat("%s: %s%s\n%U", vw->v[i].name, word, mark,
                                               why)
                        : PyUnicode_FromFormat("%s: %s%s", vw->v[i].name, word, mark);
    int rc = tip ? keep(vw, tip, &vw->v[i].tooltip) : -1;
    Py_XDECREF(tip);
    return rc;
}

/* What each mark means, for the legend. */
static const char *const mark_meaning[CELLAR_NBEHAVIORS] = {
    [CELLAR_BEHAVIOR_RECOMPUTE] = "recompute: computed in every run, even when cached, "
                                  "and stored again",
    [CELLAR_BEHAVIOR_DISABLE] = "disable: computed in every run as if there were no "
                                "cache, never stored or reused",
    [CELLAR_BEHAVIOR_IGNORE] = "ignore: not in the keys of the nodes that use it; run "
                               "only when one of them computes, never stored",
};

/* Marks node vertex `i` with the node's behaviour when it is not default. */
static void mark_behavior(view *vw, size_t i, cellar_fn *fn)
{
    int b = fn->behavior >= 0 ? fn->behavior : cellar_behavior_default(vw->st);
    if (b <= CELLAR_BEHAVIOR_DEFAULT || b >= CELLAR_NBEHAVIORS)
        return;
    vw->v[i].mark = cellar_behavior_names[b];
    vw->marked[b] = true;
}

/* When planning failed on a cycle, every node on one is marked "in-cycle"
 * (the rest keep "needs-run"): a node is on a cycle when it is among the
 * ancestors of its own dependencies.  Vertex i is graph node i. */
static int mark_cycles(view *vw, PyObject **whys)
{
    cellar_graph *g = cellar_graph_new();
    int *out = PyMem_Calloc(vw->nv ? vw->nv : 1, sizeof *out);
    int rc = g && out ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < vw->nv; i++)
        rc = cellar_graph_add_node(g, vw->v[i].name, NULL) == (int)i ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < vw->ne; i++)
        rc = cellar_graph_add_edge(g, (int)vw->e[i].from, (int)vw->e[i].to, NULL);
    for (size_t i = 0; rc == 0 && i < vw->nv; i++) {
        size_t ndeps, n = 0;
        const int *deps = cellar_graph_deps(g, (int)i, &ndeps);
        if (ndeps && cellar_graph_ancestors(g, deps, ndeps, true, out, &n, NULL))
            rc = -1;
        bool on_cycle = false;
        for (size_t k = 0; k < n; k++)
            on_cycle = on_cycle || out[k] == (int)i;
        if (on_cycle) {
            vw->v[i].status = "in-cycle";
            Py_XSETREF(whys[i], Py_NewRef(vw->unplanned));
        }
    }
    cellar_graph_free(g);
    PyMem_Free(out);
    if (rc < 0)
        PyErr_NoMemory();
    return rc;
}

static int collect(view *vw, PyObject *targets)
{
    cellar_state *st = vw->st;
    PyObject *nodes = wanted_nodes(st, targets);
    if (!nodes)
        return -1;
    Py_ssize_t n = PyList_GET_SIZE(nodes);
    int rc = 0;
    for (Py_ssize_t k = 0; rc == 0 && k < n; k++)
        rc = vertex(vw, PyList_GET_ITEM(nodes, k), CELLAR_RENDER_NODE) < 0 ? -1 : 0;
    for (Py_ssize_t k = 0; rc == 0 && k < n; k++) {
        PyObject *name = PyList_GET_ITEM(nodes, k);
        cellar_fn *fn = node_named(st, name);
        if (fn)
            mark_behavior(vw, (size_t)k, fn);
        for (Py_ssize_t i = 0; rc == 0 && fn && i < fn->nparams; i++) {
            if (!is_param(fn, i))
                continue;
            PyObject *p = fn->param_names[i];
            bool input = !node_named(st, p);
            Py_ssize_t from =
                PyErr_Occurred()
                    ? -1
                    : vertex(vw, p, input ? CELLAR_RENDER_INPUT : CELLAR_RENDER_NODE);
            if (from < 0 || edge(vw, (size_t)from, (size_t)k) < 0)
                rc = -1;
            else if (input && !fn->has_default[i])
                vw->needs_value[from] = true;
        }
    }
    PyObject **whys = PyMem_Calloc(vw->nv ? vw->nv : 1, sizeof *whys);
    if (!whys && rc == 0) {
        PyErr_NoMemory();
        rc = -1;
    }
    for (size_t i = 0; rc == 0 && i < vw->nv; i++) {
        PyObject *name = PyList_GET_ITEM(vw->keep, (Py_ssize_t)i); /* names come first */
        const char *s = vw->v[i].kind == CELLAR_RENDER_INPUT
                            ? input_status(vw, i, name)
                            : node_status(vw, name, vw->v[i].name, &whys[i]);
        if (!s)
            rc = -1;
        else
            vw->v[i].status = s;
    }
    /* Planning stops at the first reason a node cannot run (an upstream node
     * that needs a run), but a reader of a missing input will need it too. */
    for (size_t i = 0; rc == 0 && i < vw->ne; i++) {
        const cellar_render_vertex *from = &vw->v[vw->e[i].from];
        size_t to = vw->e[i].to;
        if (from->kind == CELLAR_RENDER_INPUT && strcmp(from->status, "missing") == 0 &&
            strcmp(vw->v[to].status, "needs-run") == 0) {
            vw->v[to].status = "needs-input";
            Py_XSETREF(whys[to], PyUnicode_FromFormat("needs input '%s'", from->name));
            if (!whys[to])
                rc = -1;
        }
    }
    if (rc == 0 && vw->unplanned)
        rc = mark_cycles(vw, whys);
    for (size_t i = 0; rc == 0 && i < vw->nv; i++)
        rc = set_tooltip(vw, i, whys[i]);
    for (size_t i = 0; whys && i < vw->nv; i++)
        Py_XDECREF(whys[i]);
    PyMem_Free(whys);
    Py_DECREF(nodes);
    return rc;
}

/* ---- output ---- */

/* A status class word as words: "needs-run" -> "needs run". */
static const char *spaced(const char *word, char *buf, size_t size)
{
    snprintf(buf, size, "%s", word);
    for (char *p = buf; *p; p++)
        if (*p == '-')
            *p = ' ';
    return buf;
}

/* "status" or "status, mark" for the listing. */
static const char *listed(const cellar_render_vertex *v, char *buf, size_t size)
{
    char word[40];
    spaced(v->status, word, sizeof word);
    snprintf(buf, size, "%s%s%s", word, v->mark ? ", " : "", v->mark ? v->mark : "");
    return buf;
}

/* "cellar graph: N nodes, M inputs" and one line per edge, "from [status]
 * -> to [status]" ("[status, mark]" for a marked node), then the vertices no
 * edge touches, then the legend of the marks shown. */
static PyObject *listing(view *vw)
{
    PyObject *lines = PyList_New(0);
    bool *touched = PyMem_Calloc(vw->nv ? vw->nv : 1, sizeof *touched);
    PyObject *line = lines && touched
                         ? PyUnicode_FromFormat("cellar graph: %zu node%s, %zu input%s",
                                                vw->nv - vw->ninputs,
                                                vw->nv - vw->ninputs == 1 ? "" : "s",
                                                vw->ninputs, vw->ninputs == 1 ? "" : "s")
                         : NULL;
    int rc = line ? PyList_Append(lines, line) : -1;
    Py_XDECREF(line);
    if (rc == 0 && vw->unplanned)
        rc = PyList_Append(lines, vw->unplanned);
    char a[80], b[80];
    for (size_t i = 0; rc == 0 && i < vw->ne; i++) {
        const cellar_render_vertex *f = &vw->v[vw->e[i].from], *t = &vw->v[vw->e[i].to];
        touched[vw->e[i].from] = touched[vw->e[i].to] = true;
        line = PyUnicode_FromFormat("%s [%s%s] -> %s [%s]", f->name,
                                    f->kind == CELLAR_RENDER_INPUT ? "input: " : "",
                                    listed(f, a, sizeof a), t->name,
                                    listed(t, b, sizeof b));
        rc = line ? PyList_Append(lines, line) : -1;
        Py_XDECREF(line);
    }
    for (size_t i = 0; rc == 0 && i < vw->nv; i++) {
        if (touched[i])
            continue;
        line = PyUnicode_FromFormat("%s [%s]", vw->v[i].name,
                                    listed(&vw->v[i], a, sizeof a));
        rc = line ? PyList_Append(lines, line) : -1;
        Py_XDECREF(line);
    }
    for (int m = 0; rc == 0 && m < CELLAR_NBEHAVIORS; m++) {
        if (!vw->marked[m])
            continue;
        line = PyUnicode_FromFormat("[%s] %s", cellar_behavior_names[m], mark_meaning[m]);
        rc = line ? PyList_Append(lines, line) : -1;
        Py_XDECREF(line);
    }
    PyMem_Free(touched);
    PyObject *nl = rc == 0 ? PyUnicode_FromString("\n") : NULL;
    PyObject *text = nl ? PyUnicode_Join(nl, lines) : NULL;
    Py_XDECREF(nl);
    Py_XDECREF(lines);
    if (!touched && !PyErr_Occurred())
        PyErr_NoMemory();
    return text;
}

/* The legend under the graph in HTML: one line per mark shown, in the
 * text colour of the page around it (so it reads in every theme), or "". */
static PyObject *legend_html(view *vw)
{
    PyObject *out = PyUnicode_FromString("");
    for (int m = 0; out && m < CELLAR_NBEHAVIORS; m++) {
        if (!vw->marked[m])
            continue;
        const char *meaning = strchr(mark_meaning[m], ':') + 2;
        Py_SETREF(out, PyUnicode_FromFormat(
                           "%U<div class=\"cellar-graph-mark mark-%s\"><code>[%s]</code> "
                           "%s</div>",
                           out, cellar_behavior_names[m], cellar_behavior_names[m],
                           meaning));
    }
    if (out && PyUnicode_GET_LENGTH(out) > 0)
        Py_SETREF(out, PyUnicode_FromFormat("<div class=\"cellar-graph-legend\" "
                                            "style=\"font-size:12px;margin:4px 0 0 4px\">"
                                            "%U</div>",
                                            out));
    return out;
}

static int publish(cellar_state *st, PyObject *text, PyObject *svg, PyObject *legend)
{
    if (!st->shell) {
        PySys_FormatStdout("%U\n", text);
        return 0;
    }
    /* The HTML scrolls rather than shrinking a large graph into illegibility:
     * notebook frontends give inline SVG max-width:100% (JupyterLab's
     * .jp-RenderedHTMLCommon svg), which the root's own style lifts. */
    PyObject *from = svg ? PyUnicode_FromString("<svg ") : NULL;
    PyObject *to = from ? PyUnicode_FromString("<svg style=\"max-width:none\" ") : NULL;
    PyObject *root = to ? PyUnicode_Replace(svg, from, to, 1) : NULL;
    PyObject *html = root
                         ? PyUnicode_FromFormat("<div class=\"cellar-graph-view\" "
                                                "style=\"overflow:auto;max-width:100%%\">"
                                                "%U</div>%U",
                                                root, legend)
                         : NULL;
    Py_XDECREF(from);
    Py_XDECREF(to);
    Py_XDECREF(root);
    PyObject *data = !svg   ? Py_BuildValue("{sO}", "text/plain", text)
                     : html ? Py_BuildValue("{sOsOsO}", "text/plain", text, "text/html",
                                            html, "image/svg+xml", svg)
                            : NULL;
    PyObject *pub = data ? PyObject_GetAttrString(st->shell, "display_pub") : NULL;
    PyObject *r = pub ? PyObject_CallMethod(pub, "publish", "O", data) : NULL;
    Py_XDECREF(r);
    Py_XDECREF(pub);
    Py_XDECREF(data);
    Py_XDECREF(html);
    return r ? 0 : -1;
}

static PyObject *render(view *vw)
{
    cellar_render_graph g = {vw->nv, vw->v, vw->ne, vw->e};
    char *svg = NULL;
    size_t len = 0;
    cellar_error err;
    cellar_status rc = cellar_graph_render_svg(&g, &svg, &len, &err);
    if (rc == CELLAR_ENOMEM)
        return PyErr_NoMemory();
    if (rc != CELLAR_OK)
        return PyErr_Format(vw->st->RunError, "%%cellar graph: %s", err.message);
    PyObject *s = PyUnicode_DecodeUTF8(svg, (Py_ssize_t)len, "replace");
    free(svg);
    return s;
}

PyObject *cellar_graph_show(cellar_state *st, PyObject *targets, PyObject *inputs)
{
    if (st->running) {
        PyErr_SetString(st->RunError,
                        "%cellar graph cannot run while a run is in progress");
        return NULL;
    }
    view vw = {.st = st, .inputs = inputs};
    PyObject *text = NULL, *svg = NULL, *legend = NULL, *result = NULL;
    vw.statuses = cellar_node_statuses(st, inputs); /* prunes the registry first */
    if (!vw.statuses && PyErr_ExceptionMatches(st->RunError)) {
        /* A cycle: nothing can be planned, and drawing it is the best help. */
        PyObject *exc = cellar_fetch_exception();
        vw.unplanned = exc ? PyObject_Str(exc) : NULL;
        Py_XDECREF(exc);
        vw.statuses = vw.unplanned ? PyDict_New() : NULL;
    }
    vw.index = PyDict_New();
    vw.keep = PyList_New(0);
    if (!vw.statuses || !vw.index || !vw.keep)
        goto done;
    vw.last = last_run(st);
    if (collect(&vw, targets) < 0)
        goto done;
    if (vw.nv == 0) {
        text = PyUnicode_FromString("cellar graph: no nodes yet (every top-level "
                                    "function defined in a cell is one)");
    } else {
        text = listing(&vw);
        svg = text ? render(&vw) : NULL;
        legend = svg ? legend_html(&vw) : NULL;
        if (!legend)
            goto done;
    }
    if (text && publish(st, text, svg, legend) == 0)
        result = Py_NewRef(Py_None);
done:
    Py_XDECREF(text);
    Py_XDECREF(svg);
    Py_XDECREF(legend);
    Py_XDECREF(vw.statuses);
    Py_XDECREF(vw.unplanned);
    Py_XDECREF(vw.index);
    Py_XDECREF(vw.keep);
    PyMem_Free(vw.v);
    PyMem_Free(vw.needs_value);
    PyMem_Free(vw.e);
    cellar_run_record_free(vw.last);
    return result;
}
