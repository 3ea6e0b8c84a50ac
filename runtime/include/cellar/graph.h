/*
 * graph.h - the dataflow graph: named nodes, dependency edges, topological
 * order and ancestors.
 *
 * Nodes are identified by dense integer ids (0, 1, 2, ... in insertion order)
 * and looked up by name through a hash table.  An edge `dep -> node` says that
 * `node` takes `dep`'s value as a parameter.  Every query allocates nothing
 * that it hands back: callers pass output arrays of at least
 * cellar_graph_count() entries.  Cycles are found when ordering, and the error
 * names the nodes on one cycle.
 *
 * Errors follow error.h: every function that returns a cellar_status, and
 * cellar_graph_add_node when it returns -1, sets `err` (which may be NULL).
 * Threads: a graph has no lock; the caller serializes its use.
 */
#ifndef CELLAR_GRAPH_H
#define CELLAR_GRAPH_H

#include <stdbool.h>
#include <stddef.h>

#include "cellar/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cellar_graph cellar_graph;

/* Returns NULL when out of memory.  Owned by the caller: cellar_graph_free
 * (which ignores NULL, and invalidates every name and array it handed out). */
cellar_graph *cellar_graph_new(void);
void cellar_graph_free(cellar_graph *g);

/*
 * Adds a node named `name` (NUL-terminated, copied) and returns its id, or
 * returns the id of the existing node with that name.  Returns -1 and sets
 * `err` on failure: CELLAR_EINVAL for a NULL graph or name, CELLAR_ENOMEM.
 */
int cellar_graph_add_node(cellar_graph *g, const char *name, cellar_error *err);

/* The id of the node named `name`, or -1 (also for NULL arguments). */
int cellar_graph_find(const cellar_graph *g, const char *name);

/* The number of nodes; the next new node gets this id. */
size_t cellar_graph_count(const cellar_graph *g);

/* The node's name, owned by the graph and valid until cellar_graph_free;
 * NULL for a bad id. */
const char *cellar_graph_name(const cellar_graph *g, int id);

/* Records that `node` depends on `dep`.  CELLAR_OK (also for a duplicate
 * edge, which is ignored), CELLAR_EINVAL for ids that name no node,
 * CELLAR_ENOMEM (then the graph is unchanged).  A self-edge is kept (it is a
 * cycle). */
cellar_status cellar_graph_add_edge(cellar_graph *g, int dep, int node,
                                    cellar_error *err);

/* The ids `node` depends on, in the order the edges were added; `*n` gets
 * their count (0, and NULL returned, for a bad id).  Owned by the graph,
 * valid until the next cellar_graph_add_edge on `node` or cellar_graph_free. */
const int *cellar_graph_deps(const cellar_graph *g, int node, size_t *n);

/*
 * Writes into `order` a topological order (dependencies first) of the nodes
 * in `subset` (all nodes when `subset` is NULL), and its length into `*n`.
 * Ties keep insertion order.  CELLAR_ECYCLE when the subset has a cycle; the
 * message names the nodes on it ("cycle: a -> b -> a").  CELLAR_EINVAL for
 * NULL outputs or ids that name no node, CELLAR_ENOMEM.  `order` needs room
 * for nsubset (or cellar_graph_count) ids.
 */
cellar_status cellar_graph_toposort(const cellar_graph *g, const int *subset,
                                    size_t nsubset, int *order, size_t *n,
                                    cellar_error *err);

/*
 * The nodes that `ids` depend on, transitively, including the `ids`
 * themselves when `include_self` (a seed reached from another seed is
 * included either way).  Written into `out` (room for cellar_graph_count ids)
 * in increasing id order; `*n` gets the count.  CELLAR_EINVAL for NULL
 * outputs or ids that name no node, CELLAR_ENOMEM.
 */
cellar_status cellar_graph_ancestors(const cellar_graph *g, const int *ids, size_t nids,
                                     bool include_self, int *out, size_t *n,
                                     cellar_error *err);

#ifdef __cplusplus
}
#endif

#endif
