/*
 * graph_render.h - a dataflow graph drawn as SVG, laid out by graphviz's
 * `dot` in-process (libgvc and libcgraph; no subprocess).
 *
 * The caller describes what to draw: vertices with a name, a kind (a node,
 * or an input that no node produces), a status word and optionally a mark
 * word, and edges between them by index.  The renderer knows nothing about
 * runs or stores; the status is only a word that becomes the vertex's CSS
 * class and the second line of its label, the mark a third line.
 *
 * The SVG carries no absolute colour: every fill and stroke comes from a
 * <style> inside it, written with JupyterLab's theme variables and light
 * fallbacks, so that it reads in light and dark themes and in frontends that
 * have no such variables.  Each vertex is one `<g class="node STATUS">` with
 * a `<title>` holding its name (`<g class="node mark-MARK STATUS">` when it
 * has a mark, so the status is always the last class); each edge is one
 * `<g class="edge">` whose `<title>` is `FROM->TO` (graphviz escapes it as
 * `FROM&#45;&gt;TO`).  The root element has class "cellar-graph", and the
 * style's selectors all start with it, because a <style> inside inline SVG
 * applies to the whole page.
 *
 * Graphviz keeps global state and is not reentrant, so calls are serialized
 * by a lock inside graph_render.c; they are safe from any thread.
 */
#ifndef CELLAR_GRAPH_RENDER_H
#define CELLAR_GRAPH_RENDER_H

#include <stddef.h>

#include "cellar/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cellar_render_kind {
    CELLAR_RENDER_NODE,  /* a node: a box */
    CELLAR_RENDER_INPUT, /* an input: a dashed ellipse, ranked apart at the start */
} cellar_render_kind;

typedef struct cellar_render_vertex {
    const char *name; /* NUL-terminated UTF-8, unique within the graph */
    /* One CSS class word, [a-z0-9-], 1 to 31 characters: "up-to-date",
     * "needs-run", "computed", ...  Shown under the name with '-' read as a
     * space.  The stylesheet colours the words listed in graph_render.c and
     * draws any other in the neutral colour. */
    const char *status;
    const char *tooltip; /* shown on hover; NULL for the name and status */
    cellar_render_kind kind;
    /* NULL, or a class word as `status` ("recompute", ...): shown as a third
     * line in brackets, "[recompute]", in the status line's colour, and
     * added to the vertex's classes, before the status, as "mark-WORD". */
    const char *mark;
} cellar_render_vertex;

/* An edge from vertex `from` to vertex `to` (indexes into the vertices): `to`
 * depends on `from`. */
typedef struct cellar_render_edge {
    size_t from, to;
} cellar_render_edge;

typedef struct cellar_render_graph {
    size_t nvertices;
    const cellar_render_vertex *vertices;
    size_t nedges;
    const cellar_render_edge *edges;
} cellar_render_graph;

/*
 * Lays out `g` with dot (left to right) and renders it as SVG.  On CELLAR_OK
 * `*svg` is a new NUL-terminated string of `*len` bytes (the NUL not counted;
 * `len` may be NULL) that starts at `<svg` (no XML prolog, so it can be
 * inlined in HTML and served as image/svg+xml alike), owned by the caller,
 * who frees it with free().  On failure `*svg` is NULL and:
 *   CELLAR_EINVAL    a NULL argument, a NULL or empty or repeated name, a
 *                    status or a mark that is not a class word, an edge
 *                    index out of range;
 *   CELLAR_ENOMEM    out of memory;
 *   CELLAR_EIO       graphviz failed (its plugins are not installed, or its
 *                    layout or renderer refused); the message has graphviz's
 *                    own words when it gave any.
 * An empty graph (no vertices) renders as a valid, empty SVG.
 */
cellar_status cellar_graph_render_svg(const cellar_render_graph *g, char **svg,
                                      size_t *len, cellar_error *err);

#ifdef __cplusplus
}
#endif

#endif
