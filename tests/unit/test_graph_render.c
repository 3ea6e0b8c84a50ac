/*
 * Unit tests for graph_render.c, through a real dot layout: a chain, a
 * diamond and an input render as one `<g class="node STATUS">` per vertex
 * with its name as <title>, one edge group per edge titled FROM->TO, inputs
 * drawn apart (dashed ellipses, class "input"); the SVG has no prolog and no
 * absolute colour outside the stylesheet's var() fallbacks; names are
 * escaped; bad arguments are refused with EINVAL and nothing allocated; an
 * empty graph is a valid SVG; 200 nodes keep full-size text; two threads can
 * render at once.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cellar/graph_render.h"

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

static bool contains(const char *hay, const char *needle)
{
    return strstr(hay, needle) != NULL;
}

/* file_path -> raw -> {left, right} -> joined -> report, plus a lone node. */
static const cellar_render_vertex sample_vertices[] = {
    {"file_path", "given", NULL, CELLAR_RENDER_INPUT, NULL},
    {"raw", "computed", NULL, CELLAR_RENDER_NODE, NULL},
    {"left", "up-to-date", "left: up to date", CELLAR_RENDER_NODE, NULL},
    {"right", "loaded", NULL, CELLAR_RENDER_NODE, NULL},
    {"joined", "failed", NULL, CELLAR_RENDER_NODE, NULL},
    {"report", "needs-run", NULL, CELLAR_RENDER_NODE, NULL},
    {"alone", "needs-input", NULL, CELLAR_RENDER_NODE, NULL},
    {"threshold", "missing", NULL, CELLAR_RENDER_INPUT, NULL},
};
static const cellar_render_edge sample_edges[] = {{0, 1}, {1, 2}, {1, 3}, {2, 4},
                                                  {3, 4}, {4, 5}, {7, 6}};
#define NV (sizeof sample_vertices / sizeof *sample_vertices)
#define NE (sizeof sample_edges / sizeof *sample_edges)

static char *render_sample(size_t *len)
{
    cellar_render_graph g = {NV, sample_vertices, NE, sample_edges};
    char *svg = NULL;
    cellar_error err;
    cellar_status rc = cellar_graph_render_svg(&g, &svg, len, &err);
    if (rc != CELLAR_OK)
        fail_msg("render failed: %s", err.message);
    assert_non_null(svg);
    return svg;
}

static void test_vertices_and_edges(void **state)
{
    (void)state;
    size_t len = 0;
    char *svg = render_sample(&len);
    assert_int_equal(len, strlen(svg));
    assert_int_equal(count(svg, "class=\"node"), NV);
    assert_int_equal(count(svg, "class=\"edge\""), NE);
    char buf[128];
    for (size_t i = 0; i < NV; i++) {
        snprintf(buf, sizeof buf, "<title>%s</title>", sample_vertices[i].name);
        assert_int_equal(count(svg, buf), 1);
    }
    for (size_t i = 0; i < NE; i++) {
        snprintf(buf, sizeof buf, "<title>%s&#45;&gt;%s</title>",
                 sample_vertices[sample_edges[i].from].name,
                 sample_vertices[sample_edges[i].to].name);
        assert_int_equal(count(svg, buf), 1);
    }
    free(svg);
}

static void test_statuses_are_classes_and_words(void **state)
{
    (void)state;
    char *svg = render_sample(NULL);
    assert_true(contains(svg, "class=\"node computed\""));
    assert_true(contains(svg, "class=\"node up-to-date\""));
    assert_true(contains(svg, "class=\"node loaded\""));
    assert_true(contains(svg, "class=\"node failed\""));
    assert_true(contains(svg, "class=\"node needs-run\""));
    assert_true(contains(svg, "class=\"node needs-input\""));
    assert_true(contains(svg, "class=\"node input given\""));
    assert_true(contains(svg, "class=\"node input missing\""));
    /* The word is written under the name, dashes as spaces: colour is never
     * the only sign. */
    assert_true(contains(svg, ">up to date</text>"));
    assert_true(contains(svg, ">needs run</text>"));
    assert_true(contains(svg, ">failed</text>"));
    /* Each status class the caller used has a colour in the stylesheet. */
    const char *words[] = {"up-to-date", "computed",    "loaded",  "failed",
                           "needs-run",  "needs-input", "missing", "in-memory",
                           "in-cycle",   "skipped"};
    for (size_t i = 0; i < sizeof words / sizeof *words; i++) {
        char sel[64];
        snprintf(sel, sizeof sel, ".cellar-graph .%s", words[i]);
        assert_true(contains(svg, sel));
    }
    /* A tooltip, when given, is the hover text. */
    assert_true(contains(svg, "xlink:title=\"left: up to date\""));
    free(svg);
}

static void expect_einval(const cellar_render_graph *g, const char *words);

static void test_marks_are_a_line_and_a_class(void **state)
{
    (void)state;
    cellar_render_vertex v[] = {
        {"fetch", "needs-run", NULL, CELLAR_RENDER_NODE, "recompute"},
        {"plain", "up-to-date", NULL, CELLAR_RENDER_NODE, NULL},
        {"client", "needs-run", NULL, CELLAR_RENDER_NODE, "ignore"}};
    cellar_render_edge e[] = {{2, 0}, {0, 1}};
    cellar_render_graph g = {3, v, 2, e};
    char *svg = NULL;
    cellar_error err;
    assert_int_equal(cellar_graph_render_svg(&g, &svg, NULL, &err), CELLAR_OK);
    /* The status stays the last class; the mark is a class before it. */
    assert_true(contains(svg, "class=\"node mark-recompute needs-run\""));
    assert_true(contains(svg, "class=\"node mark-ignore needs-run\""));
    assert_true(contains(svg, "class=\"node up-to-date\""));
    /* And a third line in the label, once per marked vertex. */
    assert_int_equal(count(svg, ">[recompute]</text>"), 1);
    assert_int_equal(count(svg, ">[ignore]</text>"), 1);
    assert_int_equal(count(svg, ">["), 2);
    free(svg);

    v[1].mark = "Not A Word";
    expect_einval(&g, "has mark 'Not A Word', not a class word");
}

static void test_inputs_drawn_apart(void **state)
{
    (void)state;
    char *svg = render_sample(NULL);
    /* Inputs are dashed ellipses; nodes are boxes (paths: rounded corners). */
    assert_int_equal(count(svg, "<ellipse"), 2);
    assert_int_equal(count(svg, "stroke-dasharray"), 2);
    const char *input = strstr(svg, "class=\"node input given\"");
    const char *node = strstr(svg, "class=\"node computed\"");
    assert_non_null(input);
    assert_non_null(node);
    const char *next = strstr(input + 1, "</g>");
    const char *ell = strstr(input, "<ellipse");
    assert_true(ell && ell < next);
    const char *next_node = strstr(node + 1, "</g>");
    const char *box = strstr(node, "<path");
    assert_true(box && box < next_node);
    free(svg);
}

/* Every absolute colour is a var() fallback inside the <style>; the drawing
 * itself names none, so the theme decides every colour. */
static void test_no_absolute_colours(void **state)
{
    (void)state;
    char *svg = render_sample(NULL);
    assert_true(strncmp(svg, "<svg class=\"cellar-graph\"", 25) == 0);
    assert_false(contains(svg, "<?xml"));
    assert_false(contains(svg, "<!--"));
    assert_false(contains(svg, "<!DOCTYPE"));
    const char *style = strstr(svg, "<style>");
    const char *style_end = strstr(svg, "</style>");
    assert_non_null(style);
    assert_non_null(style_end);
    const char *drawing = style_end + 8;
    for (const char *p = strchr(drawing, '#'); p; p = strchr(p + 1, '#'))
        assert_int_equal(p[-1], '&'); /* character references only */
    assert_false(contains(drawing, "black"));
    assert_false(contains(drawing, "white"));
    for (const char *p = strstr(drawing, "fill=\""); p; p = strstr(p + 1, "fill=\""))
        assert_true(strncmp(p, "fill=\"none\"", 11) == 0);
    for (const char *p = strstr(drawing, " stroke=\""); p;
         p = strstr(p + 1, " stroke=\""))
        assert_true(strncmp(p, " stroke=\"none\"", 14) == 0);
    /* Inside the style, each '#' follows a comma: a var(--jp-..., #hex)
     * fallback, never a colour on its own. */
    for (const char *p = style; p < style_end; p++)
        if (*p == '#')
            assert_int_equal(p[-1], ',');
    /* Text, boxes, edges and background take their colour from theme
     * variables. */
    assert_true(contains(style, "var(--jp-ui-font-color1,"));
    assert_true(contains(style, "var(--jp-layout-color0,"));
    assert_true(contains(style, "var(--jp-layout-color1,"));
    free(svg);
}

static void test_names_are_escaped(void **state)
{
    (void)state;
    cellar_render_vertex v[] = {
        {"a<b>&\"c\"", "computed", "x < y", CELLAR_RENDER_NODE, NULL},
        {"caf\xc3\xa9", "up-to-date", NULL, CELLAR_RENDER_NODE, NULL}};
    cellar_render_edge e[] = {{0, 1}};
    cellar_render_graph g = {2, v, 1, e};
    char *svg = NULL;
    cellar_error err;
    assert_int_equal(cellar_graph_render_svg(&g, &svg, NULL, &err), CELLAR_OK);
    assert_false(contains(svg, "a<b>"));
    assert_true(contains(svg, "<title>a&lt;b&gt;&amp;&quot;c&quot;</title>"));
    assert_true(contains(svg, "<title>caf\xc3\xa9</title>"));
    assert_true(contains(svg, "xlink:title=\"x &lt; y\""));
    free(svg);
}

static void expect_einval(const cellar_render_graph *g, const char *words)
{
    char *svg = (char *)"untouched";
    cellar_error err;
    assert_int_equal(cellar_graph_render_svg(g, &svg, NULL, &err), CELLAR_EINVAL);
    assert_null(svg);
    assert_int_equal(err.code, CELLAR_EINVAL);
    if (!contains(err.message, words))
        fail_msg("message '%s' does not say '%s'", err.message, words);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    cellar_render_vertex dup[] = {{"a", "computed", NULL, CELLAR_RENDER_NODE, NULL},
                                  {"a", "computed", NULL, CELLAR_RENDER_INPUT, NULL}};
    cellar_render_graph g = {2, dup, 0, NULL};
    expect_einval(&g, "two vertices are named 'a'");

    cellar_render_vertex bad[] = {{"a", "Up To Date", NULL, CELLAR_RENDER_NODE, NULL}};
    g = (cellar_render_graph){1, bad, 0, NULL};
    expect_einval(&g, "not a class word");
    bad[0].status = "x\" onload=\"alert(1)";
    expect_einval(&g, "not a class word");
    bad[0].status = NULL;
    expect_einval(&g, "not a class word");
    bad[0].status = "computed";
    bad[0].name = "";
    expect_einval(&g, "has no name");

    cellar_render_vertex one[] = {{"a", "computed", NULL, CELLAR_RENDER_NODE, NULL}};
    cellar_render_edge out[] = {{0, 1}};
    g = (cellar_render_graph){1, one, 1, out};
    expect_einval(&g, "out of range");
    g = (cellar_render_graph){0, NULL, 1, NULL};
    expect_einval(&g, "no edge array");

    expect_einval(NULL, "NULL argument");
    cellar_render_graph ok = {1, one, 0, NULL};
    assert_int_equal(cellar_graph_render_svg(&ok, NULL, NULL, NULL), CELLAR_EINVAL);
}

static void test_empty_graph(void **state)
{
    (void)state;
    cellar_render_graph g = {0, NULL, 0, NULL};
    char *svg = NULL;
    cellar_error err;
    assert_int_equal(cellar_graph_render_svg(&g, &svg, NULL, &err), CELLAR_OK);
    assert_true(strncmp(svg, "<svg", 4) == 0);
    assert_true(contains(svg, "</svg>"));
    assert_int_equal(count(svg, "class=\"node"), 0);
    free(svg);
}

/* 200 nodes in layers of 10, each depending on two of the layer before, plus
 * 5 inputs feeding the first layer. */
static char *render_layers(size_t *nedges_out)
{
    enum { LAYERS = 20, WIDTH = 10, INPUTS = 5, N = LAYERS * WIDTH + INPUTS };
    static char names[N][16];
    cellar_render_vertex *v = calloc(N, sizeof *v);
    cellar_render_edge *e = calloc((size_t)2 * N, sizeof *e);
    assert_non_null(v);
    assert_non_null(e);
    size_t ne = 0;
    for (size_t i = 0; i < INPUTS; i++) {
        snprintf(names[i], sizeof names[i], "input_%zu", i);
        v[i] = (cellar_render_vertex){names[i], "given", NULL, CELLAR_RENDER_INPUT, NULL};
    }
    for (size_t l = 0; l < LAYERS; l++)
        for (size_t w = 0; w < WIDTH; w++) {
            size_t i = INPUTS + l * WIDTH + w;
            snprintf(names[i], sizeof names[i], "node_%02zu_%zu", l, w);
            v[i] = (cellar_render_vertex){names[i], l % 3 ? "up-to-date" : "needs-run",
                                          NULL, CELLAR_RENDER_NODE, NULL};
            if (l == 0) {
                e[ne++] = (cellar_render_edge){w % INPUTS, i};
            } else {
                e[ne++] = (cellar_render_edge){i - WIDTH, i};
                e[ne++] =
                    (cellar_render_edge){INPUTS + (l - 1) * WIDTH + (w + 3) % WIDTH, i};
            }
        }
    cellar_render_graph g = {N, v, ne, e};
    char *svg = NULL;
    cellar_error err;
    if (cellar_graph_render_svg(&g, &svg, NULL, &err) != CELLAR_OK)
        fail_msg("render failed: %s", err.message);
    free(v);
    free(e);
    if (nedges_out)
        *nedges_out = ne;
    return svg;
}

static void test_two_hundred_nodes_stay_readable(void **state)
{
    (void)state;
    size_t ne;
    char *svg = render_layers(&ne);
    assert_int_equal(count(svg, "class=\"node"), 205);
    assert_int_equal(count(svg, "class=\"edge\""), ne);
    /* Drawn at full size: no scaling down, names at 12 points. */
    assert_true(contains(svg, "transform=\"scale(1 1)"));
    assert_int_equal(count(svg, "font-size=\"12.00\""), 205);
    free(svg);
}

static void *render_in_thread(void *arg)
{
    (void)arg;
    size_t len;
    char *svg = render_sample(&len);
    return svg;
}

static void test_concurrent_renders(void **state)
{
    (void)state;
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, render_in_thread, NULL), 0);
    char *out[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(t[i], (void **)&out[i]), 0);
    assert_string_equal(out[0], out[1]);
    free(out[0]);
    free(out[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vertices_and_edges),
        cmocka_unit_test(test_statuses_are_classes_and_words),
        cmocka_unit_test(test_marks_are_a_line_and_a_class),
        cmocka_unit_test(test_inputs_drawn_apart),
        cmocka_unit_test(test_no_absolute_colours),
        cmocka_unit_test(test_names_are_escaped),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_empty_graph),
        cmocka_unit_test(test_two_hundred_nodes_stay_readable),
        cmocka_unit_test(test_concurrent_renders),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
