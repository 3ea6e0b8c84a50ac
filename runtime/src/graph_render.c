/*
 * graph_render.c - draws a dataflow graph as SVG with graphviz's C library.
 *
 * The vertices and edges become a cgraph graph (nodes named after the
 * vertices, so graphviz's <title> elements carry the names; inputs in a
 * rank=source subgraph, so they line up apart at the start), which gvLayout
 * lays out with `dot` and gvRenderData renders with graphviz's core SVG
 * renderer, all in this process.  The SVG is then rewritten in one pass:
 * the XML prolog and comments go (the result is inlined in HTML), the root
 * gets class "cellar-graph" and a <style>, every `fill`/`stroke` attribute
 * but "none" is dropped, and the "&#45;" graphviz writes for '-' inside tags
 * becomes '-' again (class names read as written).  So all colour comes from
 * the stylesheet, whose JupyterLab theme variables follow the frontend's
 * theme and whose fallbacks are light.  Status is told by the border's
 * colour and by the word under the name, never by colour alone, and text is
 * always in the theme's font colour on the theme's background.
 *
 * Graphviz is not reentrant (the dot layout and cgraph keep file-level
 * state, and its error hook is one global function), so one lock serializes
 * every call, graphviz's messages are collected into a buffer under it
 * instead of going to stderr, and one graphviz context serves the process.
 */
#include "cellar/graph_render.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <graphviz/cgraph.h>
#include <graphviz/gvc.h>

/* Selectors all start with .cellar-graph: inline SVG's <style> applies to
 * the whole page it is in.  Status borders keep 3:1 contrast (WCAG 1.4.11)
 * against box and background in JupyterLab's light, dark and high-contrast
 * themes; for "needs run" that takes warn-color0 (color1 is 2.7:1 on white). */
static const char stylesheet[] =
    "<style>"
    ".cellar-graph{--cellar-fg:var(--jp-ui-font-color1,#1f1f1f);"
    "--cellar-fg2:var(--jp-ui-font-color2,#5f5f5f);"
    "--cellar-bg:var(--jp-layout-color0,#fff);"
    "--cellar-box:var(--jp-layout-color1,#fff);"
    "--cellar-line:var(--jp-border-color1,#9e9e9e)}"
    ".cellar-graph .graph>polygon{fill:var(--cellar-bg);stroke:none}"
    ".cellar-graph text{fill:var(--cellar-fg)}"
    ".cellar-graph .node text[font-size=\"9.00\"]{fill:var(--cellar-fg2)}"
    ".cellar-graph .node polygon,.cellar-graph .node path,"
    ".cellar-graph .node ellipse{fill:var(--cellar-box);"
    "stroke:var(--cellar-status,var(--cellar-line));stroke-width:2px}"
    ".cellar-graph .edge path{fill:none;stroke:var(--cellar-fg2)}"
    ".cellar-graph .edge polygon{fill:var(--cellar-fg2);stroke:var(--cellar-fg2)}"
    ".cellar-graph .up-to-date{--cellar-status:var(--jp-success-color1,#388e3c)}"
    ".cellar-graph .computed{--cellar-status:var(--jp-brand-color1,#1976d2)}"
    ".cellar-graph .loaded,.cellar-graph .in-memory"
    "{--cellar-status:var(--jp-info-color1,#0097a7)}"
    ".cellar-graph .needs-run,.cellar-graph .skipped"
    "{--cellar-status:var(--jp-warn-color0,#e65100)}"
    ".cellar-graph .failed,.cellar-graph .needs-input,.cellar-graph .missing,"
    ".cellar-graph .in-cycle"
    "{--cellar-status:var(--jp-error-color1,#d32f2f)}"
    ".cellar-graph .node.failed path,.cellar-graph .node.failed polygon"
    "{stroke-width:3.5px}"
    "</style>";

static pthread_mutex_t graphviz_lock = PTHREAD_MUTEX_INITIALIZER;
/* What graphviz said during the current call; guarded by graphviz_lock. */
static char graphviz_said[512];
/* One context for the process, made on first use and never freed: graphviz's
 * text-layout plugin (pango) keeps a pointer to the last font name, which
 * lives in the context's font table, so a second context after freeing the
 * first reads freed memory (AddressSanitizer caught it).  Keeping it also
 * saves loading the plugins on every call.  Guarded by graphviz_lock. */
static GVC_t *graphviz_context;

static int collect_message(char *text)
{
    size_t have = strlen(graphviz_said);
    if (have + 1 < sizeof graphviz_said)
        snprintf(graphviz_said + have, sizeof graphviz_said - have, "%s", text);
    return 0;
}

/* graphviz's words without their trailing newline, or `fallback`. */
static const char *said(const char *fallback)
{
    size_t n = strlen(graphviz_said);
    while (n && (graphviz_said[n - 1] == '\n' || graphviz_said[n - 1] == ' '))
        graphviz_said[--n] = '\0';
    return n ? graphviz_said : fallback;
}

static bool is_class_word(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9') ||
              s[n] == '-'))
            return false;
    return n > 0 && n < 32;
}

static cellar_status check(const cellar_render_graph *g, cellar_error *err)
{
    if (g->nvertices && !g->vertices)
        return cellar_error_set(err, CELLAR_EINVAL, "graph render: no vertex array");
    if (g->nedges && !g->edges)
        return cellar_error_set(err, CELLAR_EINVAL, "graph render: no edge array");
    for (size_t i = 0; i < g->nvertices; i++) {
        const cellar_render_vertex *v = &g->vertices[i];
        if (!v->name || !v->name[0])
            return cellar_error_set(err, CELLAR_EINVAL,
                                    "graph render: vertex %zu has no name", i);
        if (!v->status || !is_class_word(v->status))
            return cellar_error_set(err, CELLAR_EINVAL,
                                    "graph render: vertex '%s' has status '%s', not a "
                                    "class word ([a-z0-9-], 1 to 31 characters)",
                                    v->name, v->status ? v->status : "(null)");
        if (v->mark && !is_class_word(v->mark))
            return cellar_error_set(err, CELLAR_EINVAL,
                                    "graph render: vertex '%s' has mark '%s', not a "
                                    "class word ([a-z0-9-], 1 to 31 characters)",
                                    v->name, v->mark);
    }
    for (size_t i = 0; i < g->nedges; i++)
        if (g->edges[i].from >= g->nvertices || g->edges[i].to >= g->nvertices)
            return cellar_error_set(err, CELLAR_EINVAL,
                                    "graph render: edge %zu (%zu -> %zu) is out of range "
                                    "(%zu vertices)",
                                    i, g->edges[i].from, g->edges[i].to, g->nvertices);
    return CELLAR_OK;
}

/* Appends `s` to `out` with HTML-label escapes; `out` has room for 6 bytes
 * per byte of `s` (the longest escape is "&quot;"). */
static char *html_escape(char *out, const char *s, bool dash_as_space)
{
    for (; *s; s++) {
        const char *rep = NULL;
        switch (*s) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = "&quot;"; break;
        default: break;
        }
        if (rep) {
            while (*rep)
                *out++ = *rep++;
        } else {
            *out = *s;
            if (dash_as_space && *s == '-')
                *out = ' ';
            out++;
        }
    }
    return out;
}

/* "NAME<BR/><FONT POINT-SIZE="9">STATUS</FONT>", an HTML-like label (the
 * stylesheet finds the status line by its font size), then the mark's line
 * "<BR/><FONT POINT-SIZE="9">[MARK]</FONT>" when there is one. */
static char *label_of(const cellar_render_vertex *v)
{
    static const char mid[] = "<BR/><FONT POINT-SIZE=\"9\">", end[] = "</FONT>";
    size_t mark = v->mark ? 6 * strlen(v->mark) + 2 + sizeof mid + sizeof end : 0;
    char *label = malloc(6 * (strlen(v->name) + strlen(v->status)) + sizeof mid +
                         sizeof end + mark);
    if (!label)
        return NULL;
    char *p = html_escape(label, v->name, false);
    memcpy(p, mid, sizeof mid - 1);
    p = html_escape(p + sizeof mid - 1, v->status, true);
    memcpy(p, end, sizeof end - 1);
    p += sizeof end - 1;
    if (v->mark) {
        memcpy(p, mid, sizeof mid - 1);
        p += sizeof mid - 1;
        *p++ = '[';
        p = html_escape(p, v->mark, false);
        *p++ = ']';
        memcpy(p, end, sizeof end - 1);
        p += sizeof end - 1;
    }
    *p = '\0';
    return label;
}

static bool set(void *obj, const char *name, const char *value)
{
    /* cgraph's prototypes take char * but copy both strings. */
    return agsafeset(obj, (char *)name, (char *)value, "") == 0;
}

static bool set_defaults(Agraph_t *graph)
{
    static const char *const graph_attrs[][2] = {
        {"rankdir", "LR"},  {"bgcolor", "white"},      {"nodesep", "0.18"},
        {"ranksep", "0.4"}, {"fontname", "Helvetica"}, {"pad", "0.1"}};
    static const char *const node_attrs[][2] = {
        {"shape", "box"},   {"style", "rounded"},    {"fontname", "Helvetica"},
        {"fontsize", "12"}, {"margin", "0.12,0.03"}, {"height", "0.3"},
        {"penwidth", "2"}};
    static const char *const edge_attrs[][2] = {{"arrowsize", "0.6"},
                                                {"penwidth", "1.2"}};
    for (size_t i = 0; i < sizeof graph_attrs / sizeof *graph_attrs; i++)
        if (!agattr(graph, AGRAPH, (char *)graph_attrs[i][0], (char *)graph_attrs[i][1]))
            return false;
    for (size_t i = 0; i < sizeof node_attrs / sizeof *node_attrs; i++)
        if (!agattr(graph, AGNODE, (char *)node_attrs[i][0], (char *)node_attrs[i][1]))
            return false;
    for (size_t i = 0; i < sizeof edge_attrs / sizeof *edge_attrs; i++)
        if (!agattr(graph, AGEDGE, (char *)edge_attrs[i][0], (char *)edge_attrs[i][1]))
            return false;
    return true;
}

/* One vertex as a cgraph node of `graph` (the inputs' subgraph for inputs). */
static cellar_status add_vertex(Agraph_t *graph, Agraph_t *inputs,
                                const cellar_render_vertex *v, Agnode_t **out,
                                cellar_error *err)
{
    Agraph_t *home = v->kind == CELLAR_RENDER_INPUT ? inputs : graph;
    if (agnode(graph, (char *)v->name, 0))
        return cellar_error_set(err, CELLAR_EINVAL,
                                "graph render: two vertices are named '%s'", v->name);
    Agnode_t *n = agnode(home, (char *)v->name, 1);
    char *label = n ? label_of(v) : NULL;
    char *html = label ? agstrdup_html(graph, label) : NULL;
    free(label);
    char classes[96]; /* "input mark-" and two class words of at most 31 */
    snprintf(classes, sizeof classes, "%s%s%s%s",
             v->kind == CELLAR_RENDER_INPUT ? "input " : "", v->mark ? "mark-" : "",
             v->mark ? v->mark : "", v->mark ? " " : "");
    size_t at = strlen(classes);
    snprintf(classes + at, sizeof classes - at, "%s", v->status);
    bool ok = html && set(n, "label", html) && set(n, "class", classes) &&
              (!v->tooltip || set(n, "tooltip", v->tooltip)) &&
              (v->kind != CELLAR_RENDER_INPUT ||
               (set(n, "shape", "ellipse") && set(n, "style", "dashed")));
    if (html)
        agstrfree(graph, html);
    if (!ok)
        return cellar_error_set(err, CELLAR_ENOMEM,
                                "graph render: out of memory adding vertex '%s'",
                                v->name);
    *out = n;
    return CELLAR_OK;
}

static cellar_status build(const cellar_render_graph *g, Agraph_t *graph,
                           cellar_error *err)
{
    Agnode_t **nodes = calloc(g->nvertices ? g->nvertices : 1, sizeof(Agnode_t *));
    Agraph_t *inputs = agsubg(graph, "inputs", 1);
    if (!nodes || !inputs || !set_defaults(graph) || !set(inputs, "rank", "source")) {
        free(nodes);
        return cellar_error_set(err, CELLAR_ENOMEM, "graph render: out of memory");
    }
    cellar_status rc = CELLAR_OK;
    for (size_t i = 0; rc == CELLAR_OK && i < g->nvertices; i++)
        rc = add_vertex(graph, inputs, &g->vertices[i], &nodes[i], err);
    for (size_t i = 0; rc == CELLAR_OK && i < g->nedges; i++)
        if (!agedge(graph, nodes[g->edges[i].from], nodes[g->edges[i].to], NULL, 1))
            rc = cellar_error_set(err, CELLAR_ENOMEM, "graph render: out of memory");
    free(nodes);
    return rc;
}

/* `attr="VALUE"` at `p` (after a space) that names a colour to drop: fill or
 * stroke with anything but "none".  Returns its length, or 0. */
static size_t colour_attr(const char *p)
{
    size_t n;
    if (strncmp(p, "fill=\"", 6) == 0)
        n = 6;
    else if (strncmp(p, "stroke=\"", 8) == 0)
        n = 8;
    else
        return 0;
    const char *close = strchr(p + n, '"');
    if (!close || (close - (p + n) == 4 && strncmp(p + n, "none", 4) == 0))
        return 0;
    return (size_t)(close + 1 - p);
}

/* The rewrite described at the top, from graphviz's `in` into a new string. */
static cellar_status restyle(const char *in, size_t len, char **svg, size_t *out_len,
                             cellar_error *err)
{
    const char *start = strstr(in, "<svg");
    const char *root_end = start ? strchr(start, '>') : NULL;
    if (!root_end)
        return cellar_error_set(err, CELLAR_EIO, "graph render: graphviz wrote no <svg>");
    static const char cls[] = " class=\"cellar-graph\"";
    char *out = malloc(len + sizeof cls + sizeof stylesheet);
    if (!out)
        return cellar_error_set(err, CELLAR_ENOMEM, "graph render: out of memory");
    char *o = out;
    memcpy(o, "<svg", 4);
    o += 4;
    memcpy(o, cls, sizeof cls - 1);
    o += sizeof cls - 1;
    const char *p = start + 4;
    bool in_tag = true;
    for (const char *endp = in + len; p < endp;) {
        if (!in_tag && strncmp(p, "<!--", 4) == 0) {
            const char *close = strstr(p + 4, "-->");
            p = close ? close + 3 : endp;
            continue;
        }
        size_t drop = in_tag && *p == ' ' ? colour_attr(p + 1) : 0;
        if (drop) {
            p += 1 + drop;
            continue;
        }
        if (in_tag && strncmp(p, "&#45;", 5) == 0) { /* graphviz escapes '-' in class */
            *o++ = '-';
            p += 5;
            continue;
        }
        if (*p == '<')
            in_tag = true;
        else if (*p == '>')
            in_tag = false;
        *o++ = *p;
        if (p++ == root_end) {
            memcpy(o, stylesheet, sizeof stylesheet - 1);
            o += sizeof stylesheet - 1;
        }
    }
    *o = '\0';
    *svg = out;
    if (out_len)
        *out_len = (size_t)(o - out);
    return CELLAR_OK;
}

static cellar_status render_locked(const cellar_render_graph *g, char **svg, size_t *len,
                                   cellar_error *err)
{
    if (!graphviz_context)
        graphviz_context = gvContext();
    GVC_t *gvc = graphviz_context;
    Agraph_t *graph = gvc ? agopen("cellar", Agdirected, NULL) : NULL;
    if (!graph)
        return cellar_error_set(err, CELLAR_ENOMEM, "graph render: %s",
                                said("graphviz could not start"));
    cellar_status rc = build(g, graph, err);
    char *data = NULL;
    unsigned int n = 0;
    if (rc == CELLAR_OK && gvLayout(gvc, graph, "dot") != 0)
        rc =
            cellar_error_set(err, CELLAR_EIO, "graph render: the dot layout failed: %s",
                             said("no reason given (are graphviz's plugins installed?)"));
    if (rc == CELLAR_OK) {
        if (gvRenderData(gvc, graph, "svg", &data, &n) != 0 || !data)
            rc = cellar_error_set(err, CELLAR_EIO,
                                  "graph render: the svg renderer failed: %s",
                                  said("no reason given"));
        else
            rc = restyle(data, n, svg, len, err);
        gvFreeLayout(gvc, graph);
    }
    if (data)
        gvFreeRenderData(data);
    agclose(graph);
    return rc;
}

cellar_status cellar_graph_render_svg(const cellar_render_graph *g, char **svg,
                                      size_t *len, cellar_error *err)
{
    if (svg)
        *svg = NULL;
    if (!g || !svg)
        return cellar_error_set(err, CELLAR_EINVAL, "graph render: NULL argument");
    cellar_status rc = check(g, err);
    if (rc != CELLAR_OK)
        return rc;
    pthread_mutex_lock(&graphviz_lock);
    graphviz_said[0] = '\0';
    agusererrf previous = agseterrf(collect_message);
    rc = render_locked(g, svg, len, err);
    agseterrf(previous);
    pthread_mutex_unlock(&graphviz_lock);
    return rc;
}
