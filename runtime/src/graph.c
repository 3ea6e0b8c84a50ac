/*
 * graph.c - the dataflow graph: dense node ids, name lookup, dependency edges
 * and the order and ancestor queries.
 *
 * Nodes live in one array indexed by id, so an id is just an index, and a
 * name maps to its id through an open-addressing table (linear probing over a
 * power-of-two array of ids, keyed by XXH3-64 of the name, kept at most half
 * full).  Each node keeps its dependencies in edge order and, for toposort,
 * the reverse list of its dependents; an edge is recorded in both or in
 * neither.  Queries never recurse: toposort is Kahn's algorithm and the
 * ancestor walk is breadth-first over an explicit queue, so a
 * 10,000-node chain costs nothing on the C stack.  Scratch arrays are
 * allocated per query and freed on every path, errors included.
 */
#include "cellar/graph.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

/* A growable array of node ids (a node's deps or dependents). */
typedef struct id_list {
    int *ids;
    size_t len, cap;
} id_list;

typedef struct node {
    char *name;
    uint64_t hash; /* XXH3-64 of name, kept to rehash and to skip strcmp */
    id_list deps;  /* nodes this one depends on, in edge order */
    id_list users; /* nodes that depend on this one (reverse edges) */
} node;

struct cellar_graph {
    node *nodes;
    size_t count, cap;
    int *slots;    /* name table: node ids, -1 for an empty slot */
    size_t nslots; /* a power of two, at least twice count */
};

enum { INITIAL_SLOTS = 16, INITIAL_NODES = 16, INITIAL_EDGES = 4 };

cellar_graph *cellar_graph_new(void)
{
    cellar_graph *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->slots = malloc(INITIAL_SLOTS * sizeof *g->slots);
    if (!g->slots) {
        free(g);
        return NULL;
    }
    memset(g->slots, -1, INITIAL_SLOTS * sizeof *g->slots);
    g->nslots = INITIAL_SLOTS;
    return g;
}

void cellar_graph_free(cellar_graph *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->count; i++) {
        free(g->nodes[i].name);
        free(g->nodes[i].deps.ids);
        free(g->nodes[i].users.ids);
    }
    free(g->nodes);
    free(g->slots);
    free(g);
}

size_t cellar_graph_count(const cellar_graph *g)
{
    return g->count;
}

static bool valid_id(const cellar_graph *g, int id)
{
    return id >= 0 && (size_t)id < g->count;
}

const char *cellar_graph_name(const cellar_graph *g, int id)
{
    return valid_id(g, id) ? g->nodes[id].name : NULL;
}

/* ---- name table ---------------------------------------------------------- */

static uint64_t name_hash(const char *name)
{
    return XXH3_64bits(name, strlen(name));
}

/* The slot holding `name`, or the empty slot where it would go. */
static size_t find_slot(const cellar_graph *g, const char *name, uint64_t h)
{
    size_t mask = g->nslots - 1;
    size_t i = (size_t)h & mask;
    for (;;) {
        int id = g->slots[i];
        if (id < 0)
            return i;
        const node *nd = &g->nodes[id];
        if (nd->hash == h && strcmp(nd->name, name) == 0)
            return i;
        i = (i + 1) & mask;
    }
}

int cellar_graph_find(const cellar_graph *g, const char *name)
{
    if (!g || !name)
        return -1;
    return g->slots[find_slot(g, name, name_hash(name))];
}

/* Doubles the table and reinserts every id; the old table stays on failure. */
static bool grow_slots(cellar_graph *g)
{
    if (g->nslots > SIZE_MAX / 2 / sizeof *g->slots)
        return false;
    size_t nslots = g->nslots * 2;
    int *slots = malloc(nslots * sizeof *slots);
    if (!slots)
        return false;
    memset(slots, -1, nslots * sizeof *slots);
    for (size_t id = 0; id < g->count; id++) {
        size_t i = (size_t)g->nodes[id].hash & (nslots - 1);
        while (slots[i] >= 0)
            i = (i + 1) & (nslots - 1);
        slots[i] = (int)id;
    }
    free(g->slots);
    g->slots = slots;
    g->nslots = nslots;
    return true;
}

/* Makes room for one more node in both the node array and the table. */
static bool reserve_node(cellar_graph *g)
{
    if (g->count >= (size_t)INT_MAX)
        return false;
    if ((g->count + 1) * 2 > g->nslots && !grow_slots(g))
        return false;
    if (g->count < g->cap)
        return true;
    size_t cap = g->cap ? g->cap * 2 : INITIAL_NODES;
    if (cap > SIZE_MAX / sizeof *g->nodes)
        return false;
    node *nodes = realloc(g->nodes, cap * sizeof *nodes);
    if (!nodes)
        return false;
    g->nodes = nodes;
    g->cap = cap;
    return true;
}

int cellar_graph_add_node(cellar_graph *g, const char *name, cellar_error *err)
{
    if (!g || !name) {
        cellar_error_set(err, CELLAR_EINVAL, "graph: a node needs a name");
        return -1;
    }
    uint64_t h = name_hash(name);
    size_t slot = find_slot(g, name, h);
    if (g->slots[slot] >= 0)
        return g->slots[slot];
    char *copy = strdup(name);
    if (!copy || !reserve_node(g)) {
        free(copy);
        cellar_error_set(err, CELLAR_ENOMEM, "graph: out of memory adding node '%s'",
                         name);
        return -1;
    }
    /* The table may have been rebuilt by reserve_node: look the slot up again. */
    slot = find_slot(g, name, h);
    int id = (int)g->count;
    g->nodes[id] = (node){.name = copy, .hash = h};
    g->slots[slot] = id;
    g->count++;
    return id;
}

/* ---- edges --------------------------------------------------------------- */

static bool list_reserve(id_list *l)
{
    if (l->len < l->cap)
        return true;
    size_t cap = l->cap ? l->cap * 2 : INITIAL_EDGES;
    if (cap > SIZE_MAX / sizeof *l->ids)
        return false;
    int *ids = realloc(l->ids, cap * sizeof *ids);
    if (!ids)
        return false;
    l->ids = ids;
    l->cap = cap;
    return true;
}

static bool list_contains(const id_list *l, int id)
{
    for (size_t i = 0; i < l->len; i++)
        if (l->ids[i] == id)
            return true;
    return false;
}

cellar_status cellar_graph_add_edge(cellar_graph *g, int dep, int node_id,
                                    cellar_error *err)
{
    if (!g || !valid_id(g, dep) || !valid_id(g, node_id))
        return cellar_error_set(err, CELLAR_EINVAL, "graph: edge %d -> %d: no such node",
                                dep, node_id);
    id_list *deps = &g->nodes[node_id].deps;
    id_list *users = &g->nodes[dep].users;
    /* The edge is in both lists or in neither, so scanning the shorter one
     * suffices: a wide fan-in or fan-out stays linear to build. */
    bool present = deps->len <= users->len ? list_contains(deps, dep)
                                           : list_contains(users, node_id);
    if (present)
        return CELLAR_OK;
    /* Reserve both before writing either, so a failure leaves no half edge. */
    if (!list_reserve(deps) || !list_reserve(users))
        return cellar_error_set(err, CELLAR_ENOMEM,
                                "graph: out of memory adding edge '%s' -> '%s'",
                                g->nodes[dep].name, g->nodes[node_id].name);
    deps->ids[deps->len++] = dep;
    users->ids[users->len++] = node_id;
    return CELLAR_OK;
}

const int *cellar_graph_deps(const cellar_graph *g, int node_id, size_t *n)
{
    if (!g || !valid_id(g, node_id)) {
        if (n)
            *n = 0;
        return NULL;
    }
    if (n)
        *n = g->nodes[node_id].deps.len;
    return g->nodes[node_id].deps.ids;
}

static cellar_status check_ids(const cellar_graph *g, const int *ids, size_t nids,
                               cellar_error *err)
{
    if (nids && !ids)
        return cellar_error_set(err, CELLAR_EINVAL, "graph: NULL id array");
    for (size_t i = 0; i < nids; i++)
        if (!valid_id(g, ids[i]))
            return cellar_error_set(err, CELLAR_EINVAL, "graph: no node with id %d",
                                    ids[i]);
    return CELLAR_OK;
}

/* ---- toposort ------------------------------------------------------------ */

/*
 * Kahn's algorithm where the next node is always the ready node with the
 * smallest id, so nodes keep insertion order wherever dependencies allow.  A
 * cursor sweeps the ids upward and takes every node it finds ready; a node
 * that becomes ready behind the cursor goes into a min-heap, which is served
 * first since everything in it is smaller than anything ahead.  When
 * insertion order already respects the edges (the usual notebook) the heap
 * stays empty and the sort is O(V + E); otherwise it is O(E + V log V).
 */
typedef struct topo {
    const cellar_graph *g;
    int *indeg; /* unemitted deps inside the subset; -1 outside it */
    int *heap;  /* ready ids behind the cursor */
    size_t nheap;
    size_t cursor;
} topo;

static void heap_push(topo *t, int id)
{
    size_t i = t->nheap++;
    while (i > 0 && t->heap[(i - 1) / 2] > id) {
        t->heap[i] = t->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    t->heap[i] = id;
}

static int heap_pop(topo *t)
{
    int top = t->heap[0];
    int last = t->heap[--t->nheap];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= t->nheap)
            break;
        if (c + 1 < t->nheap && t->heap[c + 1] < t->heap[c])
            c++;
        if (t->heap[c] >= last)
            break;
        t->heap[i] = t->heap[c];
        i = c;
    }
    if (t->nheap)
        t->heap[i] = last;
    return top;
}

/* The smallest ready id, or -1 when nothing is ready. */
static int topo_next(topo *t)
{
    if (t->nheap)
        return heap_pop(t);
    while (t->cursor < t->g->count && t->indeg[t->cursor] != 0)
        t->cursor++;
    if (t->cursor == t->g->count)
        return -1;
    /* Mark it taken so the sweep never returns it twice. */
    t->indeg[t->cursor] = -1;
    return (int)t->cursor++;
}

/* Removes `id`'s edges to its users, making ready the ones left with none. */
static void topo_release(topo *t, int id)
{
    const id_list *users = &t->g->nodes[id].users;
    for (size_t i = 0; i < users->len; i++) {
        int u = users->ids[i];
        if (t->indeg[u] > 0 && --t->indeg[u] == 0 && (size_t)u < t->cursor) {
            t->indeg[u] = -1;
            heap_push(t, u);
        }
    }
}

/* Sets indeg[] to -1 outside the subset and to the in-subset dep count
 * inside it; returns the number of distinct subset nodes. */
static size_t topo_init(topo *t, const int *subset, size_t nsubset)
{
    const cellar_graph *g = t->g;
    size_t members = 0;
    for (size_t i = 0; i < g->count; i++)
        t->indeg[i] = subset ? -1 : 0;
    if (subset) {
        for (size_t i = 0; i < nsubset; i++)
            t->indeg[subset[i]] = 0;
        for (size_t i = 0; i < g->count; i++)
            members += t->indeg[i] == 0;
    } else {
        members = g->count;
    }
    for (size_t i = 0; i < g->count; i++) {
        if (t->indeg[i] < 0)
            continue;
        const id_list *deps = &g->nodes[i].deps;
        for (size_t j = 0; j < deps->len; j++)
            t->indeg[i] += t->indeg[deps->ids[j]] >= 0;
    }
    return members;
}

/* Appends `s` to msg unless it would leave no room for a closing "...". */
static bool msg_append(char *msg, size_t *len, const char *s)
{
    size_t n = strlen(s);
    if (*len + n + 3 > CELLAR_ERROR_MESSAGE_MAX - 1)
        return false;
    memcpy(msg + *len, s, n + 1);
    *len += n;
    return true;
}

/* Formats "cycle: a -> b -> a" for the `len` ids of `cycle`, where each one
 * depends on the next, starting from the smallest id. */
static cellar_status report_cycle(const cellar_graph *g, const int *cycle, size_t len,
                                  cellar_error *err)
{
    char msg[CELLAR_ERROR_MESSAGE_MAX];
    size_t mlen = 0, start = 0;
    msg[0] = '\0';
    for (size_t i = 1; i < len; i++)
        if (cycle[i] < cycle[start])
            start = i;
    bool fits = msg_append(msg, &mlen, "cycle: ");
    /* The walk followed deps, so edge order (dep -> user) runs backwards. */
    for (size_t k = 0; fits && k <= len; k++) {
        int id = cycle[(start + len - k % len) % len];
        fits = (k == 0 || msg_append(msg, &mlen, " -> ")) &&
               msg_append(msg, &mlen, g->nodes[id].name);
    }
    if (!fits)
        memcpy(msg + mlen, "...", 4);
    return cellar_error_set(err, CELLAR_ECYCLE, "%s", msg);
}

/*
 * Every node Kahn left over still has an unemitted dep in the subset, which
 * is itself left over; following such deps must revisit a node, and the walk
 * from that node's first visit is a cycle.  `pos` and `walk` are scratch of
 * count entries each.
 */
static cellar_status find_cycle(const topo *t, int *pos, int *walk, cellar_error *err)
{
    const cellar_graph *g = t->g;
    int v = -1;
    for (size_t i = 0; i < g->count; i++) {
        pos[i] = -1;
        if (v < 0 && t->indeg[i] > 0)
            v = (int)i;
    }
    size_t len = 0;
    while (pos[v] < 0) {
        pos[v] = (int)len;
        walk[len++] = v;
        const id_list *deps = &g->nodes[v].deps;
        int next = -1;
        for (size_t j = 0; j < deps->len && next < 0; j++)
            if (t->indeg[deps->ids[j]] > 0)
                next = deps->ids[j];
        v = next;
    }
    return report_cycle(g, walk + pos[v], len - (size_t)pos[v], err);
}

cellar_status cellar_graph_toposort(const cellar_graph *g, const int *subset,
                                    size_t nsubset, int *order, size_t *n,
                                    cellar_error *err)
{
    if (!g || !order || !n)
        return cellar_error_set(err, CELLAR_EINVAL, "graph: toposort needs its outputs");
    *n = 0;
    cellar_status st = subset ? check_ids(g, subset, nsubset, err) : CELLAR_OK;
    if (st != CELLAR_OK)
        return st;
    size_t count = g->count ? g->count : 1;
    topo t = {.g = g};
    t.indeg = malloc(count * sizeof *t.indeg);
    t.heap = malloc(count * sizeof *t.heap);
    if (!t.indeg || !t.heap) {
        free(t.indeg);
        free(t.heap);
        return cellar_error_set(err, CELLAR_ENOMEM, "graph: out of memory sorting");
    }
    size_t members = topo_init(&t, subset, nsubset);
    size_t done = 0;
    for (int id; (id = topo_next(&t)) >= 0;) {
        order[done++] = id;
        topo_release(&t, id);
    }
    /* The heap is empty now; reuse it and `order` as the cycle walk's scratch. */
    if (done < members)
        st = find_cycle(&t, t.heap, order, err);
    else
        *n = done;
    free(t.indeg);
    free(t.heap);
    return st;
}

/* ---- ancestors ----------------------------------------------------------- */

enum { QUEUED = 1, FOUND = 2 };

/* Breadth-first from `ids` along deps.  A seed is only FOUND when some seed
 * reaches it, or at the end when include_self. */
cellar_status cellar_graph_ancestors(const cellar_graph *g, const int *ids, size_t nids,
                                     bool include_self, int *out, size_t *n,
                                     cellar_error *err)
{
    if (!g || !out || !n)
        return cellar_error_set(err, CELLAR_EINVAL, "graph: query needs its outputs");
    *n = 0;
    cellar_status st = check_ids(g, ids, nids, err);
    if (st != CELLAR_OK)
        return st;
    size_t count = g->count ? g->count : 1;
    uint8_t *mark = calloc(count, 1);
    int *queue = malloc(count * sizeof *queue);
    if (!mark || !queue) {
        free(mark);
        free(queue);
        return cellar_error_set(err, CELLAR_ENOMEM, "graph: out of memory walking");
    }
    size_t head = 0, tail = 0;
    for (size_t i = 0; i < nids; i++)
        if (!(mark[ids[i]] & QUEUED)) {
            mark[ids[i]] |= QUEUED;
            queue[tail++] = ids[i];
        }
    while (head < tail) {
        const node *nd = &g->nodes[queue[head++]];
        const id_list *next = &nd->deps;
        for (size_t j = 0; j < next->len; j++) {
            int v = next->ids[j];
            mark[v] |= FOUND;
            if (!(mark[v] & QUEUED)) {
                mark[v] |= QUEUED;
                queue[tail++] = v;
            }
        }
    }
    for (size_t i = 0; include_self && i < nids; i++)
        mark[ids[i]] |= FOUND;
    for (size_t i = 0; i < g->count; i++)
        if (mark[i] & FOUND)
            out[(*n)++] = (int)i;
    free(mark);
    free(queue);
    return CELLAR_OK;
}
