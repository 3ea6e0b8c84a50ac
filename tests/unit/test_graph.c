/*
 * Unit tests for graph.c: name lookup, edges, topological order (ties in id
 * order, subsets), ancestors and descendants, cycle reports, and large
 * chains and fans.  Random DAGs are checked against a brute-force transitive
 * closure and a brute-force "smallest ready id first" order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "cellar/graph.h"

/* ---- helpers ------------------------------------------------------------- */

static int add(cellar_graph *g, const char *name)
{
    cellar_error err;
    int id = cellar_graph_add_node(g, name, &err);
    assert_true(id >= 0);
    return id;
}

/* Adds the edge dep -> node by name, creating either node if needed. */
static void edge(cellar_graph *g, const char *dep, const char *node)
{
    cellar_error err;
    int d = add(g, dep), n = add(g, node);
    assert_int_equal(cellar_graph_add_edge(g, d, n, &err), CELLAR_OK);
}

/* Joins the names of `ids` with spaces, into a static-size caller buffer. */
static const char *names(const cellar_graph *g, const int *ids, size_t n, char *buf,
                         size_t cap)
{
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%s", i ? " " : "",
                                cellar_graph_name(g, ids[i]));
    return buf;
}

static void check_order(const cellar_graph *g, const int *subset, size_t nsubset,
                        const char *expected)
{
    cellar_error err;
    size_t count = cellar_graph_count(g), n = 99;
    int *order = malloc((count ? count : 1) * sizeof *order);
    char buf[1024];
    assert_non_null(order);
    assert_int_equal(cellar_graph_toposort(g, subset, nsubset, order, &n, &err),
                     CELLAR_OK);
    assert_string_equal(names(g, order, n, buf, sizeof buf), expected);
    free(order);
}

static void check_reach(const cellar_graph *g, const char *node, bool self,
                        const char *expected)
{
    cellar_error err;
    int id = cellar_graph_find(g, node);
    size_t n = 99;
    int out[64];
    char buf[1024];
    assert_true(id >= 0);
    assert_true(cellar_graph_count(g) <= 64);
    cellar_status st = cellar_graph_ancestors(g, &id, 1, self, out, &n, &err);
    assert_int_equal(st, CELLAR_OK);
    assert_string_equal(names(g, out, n, buf, sizeof buf), expected);
}

/* Sorts the whole graph, expects a cycle, and returns the message. */
static void check_cycle(const cellar_graph *g, const int *subset, size_t nsubset,
                        const char *expected)
{
    cellar_error err;
    size_t n = 99;
    int *order = malloc(cellar_graph_count(g) * sizeof *order);
    assert_non_null(order);
    assert_int_equal(cellar_graph_toposort(g, subset, nsubset, order, &n, &err),
                     CELLAR_ECYCLE);
    assert_int_equal(err.code, CELLAR_ECYCLE);
    assert_int_equal(n, 0);
    assert_string_equal(err.message, expected);
    free(order);
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* ---- small graphs -------------------------------------------------------- */

static cellar_graph *diamond(void)
{
    cellar_graph *g = cellar_graph_new();
    assert_non_null(g);
    edge(g, "a", "b");
    edge(g, "a", "c");
    edge(g, "b", "d");
    edge(g, "c", "d");
    return g;
}

static void test_diamond(void **state)
{
    (void)state;
    cellar_graph *g = diamond();
    check_order(g, NULL, 0, "a b c d");
    check_reach(g, "d", true, "a b c d");
    check_reach(g, "d", false, "a b c");
    check_reach(g, "a", false, "");
    check_reach(g, "a", true, "a");
    size_t n;
    const int *deps = cellar_graph_deps(g, cellar_graph_find(g, "d"), &n);
    assert_int_equal(n, 2);
    assert_string_equal(cellar_graph_name(g, deps[0]), "b");
    assert_string_equal(cellar_graph_name(g, deps[1]), "c");
    cellar_graph_free(g);
}

/* Inserted sink first: the order must still put deps first, and among ready
 * nodes the one inserted earlier (c before b here). */
static void test_ties_follow_insertion_order(void **state)
{
    (void)state;
    cellar_graph *g = cellar_graph_new();
    assert_non_null(g);
    add(g, "d");
    add(g, "c");
    add(g, "b");
    add(g, "a");
    edge(g, "a", "b");
    edge(g, "a", "c");
    edge(g, "b", "d");
    edge(g, "c", "d");
    check_order(g, NULL, 0, "a c b d");
    cellar_graph_free(g);

    /* b depends on a, c is independent: insertion order already works, so
     * it is kept exactly (a plain FIFO Kahn would give a c b). */
    g = cellar_graph_new();
    assert_non_null(g);
    edge(g, "a", "b");
    add(g, "c");
    check_order(g, NULL, 0, "a b c");
    cellar_graph_free(g);
}

static void test_subset_of_disconnected_parts(void **state)
{
    (void)state;
    cellar_graph *g = cellar_graph_new();
    assert_non_null(g);
    edge(g, "x", "y");
    edge(g, "a", "b");
    edge(g, "y", "z");
    edge(g, "b", "c");
    check_order(g, NULL, 0, "x y a b z c");
    int part[] = {cellar_graph_find(g, "c"), cellar_graph_find(g, "a"),
                  cellar_graph_find(g, "b")};
    check_order(g, part, 3, "a b c");
    /* Duplicates in the subset are harmless. */
    int dup[] = {part[0], part[0], part[1]};
    check_order(g, dup, 3, "a c");
    /* Only edges inside the subset constrain it. */
    int ends[] = {cellar_graph_find(g, "z"), cellar_graph_find(g, "x")};
    check_order(g, ends, 2, "x z");
    check_order(g, ends, 0, "");
    check_reach(g, "y", false, "x");
    int out[6];
    size_t n;
    char buf[64];
    cellar_error err;
    /* A seed reached from another seed counts even without include_self. */
    int zy[] = {cellar_graph_find(g, "z"), cellar_graph_find(g, "y")};
    assert_int_equal(cellar_graph_ancestors(g, zy, 2, false, out, &n, &err), CELLAR_OK);
    assert_string_equal(names(g, out, n, buf, sizeof buf), "x y");
    cellar_graph_free(g);
}

static void test_duplicate_edges_and_nodes(void **state)
{
    (void)state;
    cellar_graph *g = cellar_graph_new();
    cellar_error err;
    assert_non_null(g);
    int a = add(g, "a"), b = add(g, "b");
    assert_int_equal(add(g, "a"), a);
    assert_int_equal(cellar_graph_count(g), 2);
    for (int i = 0; i < 3; i++)
        assert_int_equal(cellar_graph_add_edge(g, a, b, &err), CELLAR_OK);
    size_t n;
    const int *deps = cellar_graph_deps(g, b, &n);
    assert_int_equal(n, 1);
    assert_int_equal(deps[0], a);
    cellar_graph_deps(g, a, &n);
    assert_int_equal(n, 0);
    check_order(g, NULL, 0, "a b");
    /* A duplicate must not be kept as a reverse edge either: removing a's
     * one edge to b has to make b ready, or b would look like a cycle. */
    cellar_graph_free(g);
}

static void test_unknown_names_and_ids(void **state)
{
    (void)state;
    cellar_graph *g = diamond();
    cellar_error err;
    size_t n = 7;
    int out[4];
    assert_int_equal(cellar_graph_find(g, "nope"), -1);
    assert_int_equal(cellar_graph_find(g, ""), -1);
    assert_int_equal(cellar_graph_find(g, NULL), -1);
    assert_null(cellar_graph_name(g, -1));
    assert_null(cellar_graph_name(g, 4));
    assert_string_equal(cellar_graph_name(g, 3), "d");
    assert_null(cellar_graph_deps(g, 4, &n));
    assert_int_equal(n, 0);
    assert_int_equal(cellar_graph_add_edge(g, 0, 4, &err), CELLAR_EINVAL);
    assert_int_equal(err.code, CELLAR_EINVAL);
    assert_int_equal(cellar_graph_add_edge(g, -1, 0, &err), CELLAR_EINVAL);
    int bad[] = {1, 9};
    assert_int_equal(cellar_graph_toposort(g, bad, 2, out, &n, &err), CELLAR_EINVAL);
    assert_int_equal(cellar_graph_ancestors(g, bad, 2, true, out, &n, &err),
                     CELLAR_EINVAL);
    assert_int_equal(cellar_graph_add_node(g, NULL, &err), -1);
    assert_int_equal(err.code, CELLAR_EINVAL);
    assert_int_equal(cellar_graph_count(g), 4);
    cellar_graph_free(g);

    g = cellar_graph_new();
    assert_non_null(g);
    check_order(g, NULL, 0, "");
    assert_int_equal(cellar_graph_ancestors(g, NULL, 0, true, out, &n, &err), CELLAR_OK);
    assert_int_equal(n, 0);
    cellar_graph_free(g);
    cellar_graph_free(NULL);
}

/* ---- cycles -------------------------------------------------------------- */

static void test_cycle_lengths(void **state)
{
    (void)state;
    cellar_graph *g = cellar_graph_new();
    assert_non_null(g);
    edge(g, "a", "a");
    check_cycle(g, NULL, 0, "cycle: a -> a");
    check_reach(g, "a", false, "a");
    cellar_graph_free(g);

    g = cellar_graph_new();
    assert_non_null(g);
    edge(g, "a", "b");
    edge(g, "b", "a");
    check_cycle(g, NULL, 0, "cycle: a -> b -> a");
    cellar_graph_free(g);

    g = cellar_graph_new();
    assert_non_null(g);
    edge(g, "a", "b");
    edge(g, "b", "c");
    edge(g, "c", "a");
    check_cycle(g, NULL, 0, "cycle: a -> b -> c -> a");
    cellar_graph_free(g);

    /* The search enters this cycle at b (through z); the report still
     * starts from the node inserted first. */
    g = cellar_graph_new();
    assert_non_null(g);
    add(g, "z");
    add(g, "a");
    edge(g, "b", "z");
    edge(g, "a", "b");
    edge(g, "b", "c");
    edge(g, "c", "a");
    check_cycle(g, NULL, 0, "cycle: a -> b -> c -> a");
    cellar_graph_free(g);
}

/* Nodes stuck behind a cycle are not on it and must not be named. */
static void test_cycle_names_only_cycle_nodes(void **state)
{
    (void)state;
    cellar_graph *g = cellar_graph_new();
    assert_non_null(g);
    edge(g, "c", "z"); /* z (id 0) waits on the cycle but is not on it */
    edge(g, "x", "a");
    edge(g, "a", "b");
    edge(g, "b", "c");
    edge(g, "c", "a");
    edge(g, "c", "y");
    check_cycle(g, NULL, 0, "cycle: c -> a -> b -> c");
    /* Without b the rest is acyclic. */
    int sub[] = {cellar_graph_find(g, "x"), cellar_graph_find(g, "a"),
                 cellar_graph_find(g, "c"), cellar_graph_find(g, "z")};
    check_order(g, sub, 4, "c z x a");
    int cyc[] = {cellar_graph_find(g, "b"), cellar_graph_find(g, "a"),
                 cellar_graph_find(g, "c")};
    check_cycle(g, cyc, 3, "cycle: c -> a -> b -> c");
    cellar_graph_free(g);
}

static void test_long_cycle_message_truncated(void **state)
{
    (void)state;
    cellar_graph *g = cellar_graph_new();
    cellar_error err;
    assert_non_null(g);
    enum { N = 200 };
    char name[64];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "node_with_a_long_name_%03d", i);
        add(g, name);
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(cellar_graph_add_edge(g, i, (i + 1) % N, &err), CELLAR_OK);
    int order[N];
    size_t n;
    assert_int_equal(cellar_graph_toposort(g, NULL, 0, order, &n, &err), CELLAR_ECYCLE);
    size_t len = strlen(err.message);
    assert_true(len < CELLAR_ERROR_MESSAGE_MAX);
    assert_true(len > CELLAR_ERROR_MESSAGE_MAX - 40);
    assert_string_equal(err.message + len - 3, "...");
    assert_non_null(strstr(err.message, "cycle: node_with_a_long_name_000 -> "
                                        "node_with_a_long_name_001 -> "
                                        "node_with_a_long_name_002 -> "));
    cellar_graph_free(g);
}

/* ---- large graphs -------------------------------------------------------- */

enum { BIG = 10000 };

/* A chain of BIG nodes; `reversed` inserts them sink first, so every node
 * becomes ready behind the sweep and goes through the heap. */
static void run_chain(bool reversed)
{
    cellar_graph *g = cellar_graph_new();
    cellar_error err;
    char name[32];
    assert_non_null(g);
    for (int i = 0; i < BIG; i++) {
        snprintf(name, sizeof name, "n%d", reversed ? BIG - 1 - i : i);
        add(g, name);
    }
    int prev = -1;
    for (int i = 0; i < BIG; i++) {
        snprintf(name, sizeof name, "n%d", i);
        int id = cellar_graph_find(g, name);
        assert_int_equal(id, reversed ? BIG - 1 - i : i);
        if (prev >= 0)
            assert_int_equal(cellar_graph_add_edge(g, prev, id, &err), CELLAR_OK);
        prev = id;
    }
    int *out = malloc(BIG * sizeof *out);
    assert_non_null(out);
    size_t n;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(cellar_graph_toposort(g, NULL, 0, out, &n, &err), CELLAR_OK);
    double sort_s = seconds_since(&t0);
    assert_int_equal(n, BIG);
    for (int i = 0; i < BIG; i++) {
        snprintf(name, sizeof name, "n%d", i);
        assert_string_equal(cellar_graph_name(g, out[i]), name);
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(cellar_graph_ancestors(g, &prev, 1, true, out, &n, &err), CELLAR_OK);
    double walk_s = seconds_since(&t0);
    assert_int_equal(n, BIG);
    assert_int_equal(cellar_graph_ancestors(g, &prev, 1, false, out, &n, &err),
                     CELLAR_OK);
    assert_int_equal(n, BIG - 1);
    print_message("chain of %d (%s): toposort %.2f ms, ancestors %.2f ms\n", BIG,
                  reversed ? "inserted sink first" : "inserted in order", sort_s * 1e3,
                  walk_s * 1e3);
    /* Linear work on 10,000 nodes; generous for sanitizers and a busy box. */
    assert_true(sort_s < 0.5 && walk_s < 0.5);
    free(out);
    cellar_graph_free(g);
}

static void test_chain_10000(void **state)
{
    (void)state;
    run_chain(false);
    run_chain(true);
}

/* root -> BIG - 2 middles -> sink. */
static void test_wide_fan_10000(void **state)
{
    (void)state;
    cellar_graph *g = cellar_graph_new();
    cellar_error err;
    char name[32];
    assert_non_null(g);
    int sink = add(g, "sink");
    int root = add(g, "root");
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < BIG - 2; i++) {
        snprintf(name, sizeof name, "m%d", i);
        int m = add(g, name);
        assert_int_equal(cellar_graph_add_edge(g, root, m, &err), CELLAR_OK);
        assert_int_equal(cellar_graph_add_edge(g, m, sink, &err), CELLAR_OK);
    }
    double build_s = seconds_since(&t0);
    int *out = malloc(BIG * sizeof *out);
    assert_non_null(out);
    size_t n;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(cellar_graph_toposort(g, NULL, 0, out, &n, &err), CELLAR_OK);
    double sort_s = seconds_since(&t0);
    assert_int_equal(n, BIG);
    assert_int_equal(out[0], root);
    assert_int_equal(out[BIG - 1], sink);
    for (int i = 1; i < BIG - 1; i++)
        assert_int_equal(out[i], i + 1); /* middles in insertion order */
    const int *deps = cellar_graph_deps(g, sink, &n);
    assert_int_equal(n, BIG - 2);
    assert_int_equal(deps[0], 2);
    assert_int_equal(deps[BIG - 3], BIG - 1);
    assert_int_equal(cellar_graph_ancestors(g, &sink, 1, true, out, &n, &err), CELLAR_OK);
    assert_int_equal(n, BIG);
    int mid = 5000;
    assert_int_equal(cellar_graph_ancestors(g, &mid, 1, true, out, &n, &err), CELLAR_OK);
    assert_int_equal(n, 2);
    assert_int_equal(out[0], root);
    assert_int_equal(out[1], mid);
    /* A duplicate edge into the wide sink is still found and ignored. */
    assert_int_equal(cellar_graph_add_edge(g, mid, sink, &err), CELLAR_OK);
    cellar_graph_deps(g, sink, &n);
    assert_int_equal(n, BIG - 2);
    print_message("fan of %d: build %.2f ms, toposort %.2f ms\n", BIG, build_s * 1e3,
                  sort_s * 1e3);
    assert_true(build_s < 0.5 && sort_s < 0.5);
    free(out);
    cellar_graph_free(g);
}

static void test_many_names(void **state)
{
    (void)state;
    cellar_graph *g = cellar_graph_new();
    char name[32];
    assert_non_null(g);
    for (int i = 0; i < BIG; i++) {
        snprintf(name, sizeof name, "f_%d", i);
        assert_int_equal(add(g, name), i);
    }
    for (int i = 0; i < BIG; i++) {
        snprintf(name, sizeof name, "f_%d", i);
        assert_int_equal(cellar_graph_find(g, name), i);
        assert_string_equal(cellar_graph_name(g, i), name);
    }
    assert_int_equal(cellar_graph_find(g, "f_10000"), -1);
    assert_int_equal(cellar_graph_count(g), BIG);
    cellar_graph_free(g);
}

/* ---- random DAGs against brute force ------------------------------------- */

enum { RN = 48 };

static uint64_t rng_next(uint64_t *s)
{
    /* splitmix64: deterministic, so a failure reproduces */
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* dep[i][j]: j depends directly on i (ids); reach[i][j]: j depends on i
 * transitively. */
typedef struct model {
    bool dep[RN][RN];
    bool reach[RN][RN];
} model;

static void close_transitively(model *m)
{
    memcpy(m->reach, m->dep, sizeof m->reach);
    for (int k = 0; k < RN; k++)
        for (int i = 0; i < RN; i++)
            for (int j = 0; j < RN; j++)
                if (m->reach[i][k] && m->reach[k][j])
                    m->reach[i][j] = true;
}

/* Smallest ready id first, restricted to `in`, by repeated scanning. */
static size_t brute_order(const model *m, const bool *in, int *order)
{
    bool done[RN] = {false};
    size_t n = 0;
    for (;;) {
        int pick = -1;
        for (int v = 0; v < RN && pick < 0; v++) {
            if (!in[v] || done[v])
                continue;
            bool ready = true;
            for (int u = 0; u < RN; u++)
                if (in[u] && m->dep[u][v] && !done[u])
                    ready = false;
            if (ready)
                pick = v;
        }
        if (pick < 0)
            return n;
        done[pick] = true;
        order[n++] = pick;
    }
}

static void check_random_queries(const cellar_graph *g, const model *m, uint64_t *seed)
{
    cellar_error err;
    int out[RN], expect[RN], seeds[4];
    size_t n;
    for (int trial = 0; trial < 40; trial++) {
        size_t nseeds = 1 + rng_next(seed) % 4;
        bool self = rng_next(seed) & 1;
        for (size_t i = 0; i < nseeds; i++)
            seeds[i] = (int)(rng_next(seed) % RN);
        size_t ne = 0;
        for (int v = 0; v < RN; v++) {
            bool hit = false;
            for (size_t i = 0; i < nseeds; i++) {
                int s = seeds[i];
                hit |= (self && v == s) || m->reach[v][s];
            }
            if (hit)
                expect[ne++] = v;
        }
        cellar_status st = cellar_graph_ancestors(g, seeds, nseeds, self, out, &n, &err);
        assert_int_equal(st, CELLAR_OK);
        assert_int_equal(n, ne);
        assert_memory_equal(out, expect, ne * sizeof *out);
    }
}

static void check_random_orders(const cellar_graph *g, const model *m, uint64_t *seed)
{
    cellar_error err;
    int out[RN], expect[RN], subset[RN];
    bool in[RN];
    size_t n;
    for (int trial = 0; trial < 10; trial++) {
        size_t ns = 0;
        for (int v = 0; v < RN; v++) {
            in[v] = trial == 0 || rng_next(seed) % 3 != 0;
            if (in[v])
                subset[ns++] = v;
        }
        size_t ne = brute_order(m, in, expect);
        assert_int_equal(ne, ns);
        assert_int_equal(
            cellar_graph_toposort(g, trial ? subset : NULL, ns, out, &n, &err),
            CELLAR_OK);
        assert_int_equal(n, ne);
        assert_memory_equal(out, expect, ne * sizeof *out);
    }
}

static void test_random_dags_against_brute_force(void **state)
{
    (void)state;
    uint64_t seed = 42;
    static model m;
    for (int round = 0; round < 30; round++) {
        /* rank[] is a hidden topological order unrelated to insertion order. */
        int rank[RN];
        for (int i = 0; i < RN; i++)
            rank[i] = i;
        for (int i = RN - 1; i > 0; i--) {
            int j = (int)(rng_next(&seed) % (uint64_t)(i + 1)), t = rank[i];
            rank[i] = rank[j];
            rank[j] = t;
        }
        unsigned density = 2 + (unsigned)(round % 10) * 3; /* percent */
        cellar_graph *g = cellar_graph_new();
        cellar_error err;
        char name[16];
        assert_non_null(g);
        for (int i = 0; i < RN; i++) {
            snprintf(name, sizeof name, "v%d", i);
            add(g, name);
        }
        memset(&m, 0, sizeof m);
        for (int i = 0; i < RN; i++)
            for (int j = 0; j < RN; j++)
                if (rank[i] < rank[j] && rng_next(&seed) % 100 < density) {
                    m.dep[i][j] = true;
                    assert_int_equal(cellar_graph_add_edge(g, i, j, &err), CELLAR_OK);
                    if (rng_next(&seed) % 4 == 0) /* some duplicates */
                        assert_int_equal(cellar_graph_add_edge(g, i, j, &err), CELLAR_OK);
                }
        close_transitively(&m);
        check_random_queries(g, &m, &seed);
        check_random_orders(g, &m, &seed);
        cellar_graph_free(g);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_diamond),
        cmocka_unit_test(test_ties_follow_insertion_order),
        cmocka_unit_test(test_subset_of_disconnected_parts),
        cmocka_unit_test(test_duplicate_edges_and_nodes),
        cmocka_unit_test(test_unknown_names_and_ids),
        cmocka_unit_test(test_cycle_lengths),
        cmocka_unit_test(test_cycle_names_only_cycle_nodes),
        cmocka_unit_test(test_long_cycle_message_truncated),
        cmocka_unit_test(test_chain_10000),
        cmocka_unit_test(test_wide_fan_10000),
        cmocka_unit_test(test_many_names),
        cmocka_unit_test(test_random_dags_against_brute_force),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
