/*
 * definitions.c - does a cell only define?  (The rule is in definitions.h.)
 *
 * The tokenizer hands over the cell in batches that begin and end at
 * top-level statement boundaries; each batch is walked statement by
 * statement over the flat token array, with INDENT/DEDENT marking blocks and
 * bracket depth found by counting.  A `def` body is skipped whole (defining
 * a function runs none of it); a class body is walked with the same rules,
 * since Python runs it at definition time.  The first statement that does
 * more than define stops the walk and names itself in the reason.
 */
#include "cellar/definitions.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "tokenizer.h"

#define FAIL SIZE_MAX

typedef struct rule {
    const char *src;
    size_t len;
    const tok *t;
    size_t n;
    bool bad, any;
    char *why;
} rule;

static bool is_op(const rule *r, size_t i, const char *s)
{
    return i < r->n && r->t[i].type == TOK_OP && r->t[i].len == strlen(s) &&
           !memcmp(r->src + r->t[i].start, s, r->t[i].len);
}

static bool is_name(const rule *r, size_t i, const char *s)
{
    return i < r->n && r->t[i].type == TOK_NAME && r->t[i].len == strlen(s) &&
           !memcmp(r->src + r->t[i].start, s, r->t[i].len);
}

static bool ends_line(const rule *r, size_t i)
{
    return i >= r->n || r->t[i].type == TOK_NEWLINE || r->t[i].type == TOK_END ||
           r->t[i].type == TOK_ERROR;
}

/* Marks the walk failed at token `i`: "line N <what> (`the line`)". */
static size_t fail(rule *r, size_t i, const char *what)
{
    if (r->bad)
        return FAIL;
    r->bad = true;
    if (!r->why)
        return FAIL;
    if (i >= r->n)
        i = r->n ? r->n - 1 : 0;
    const tok *t = r->n ? &r->t[i] : NULL;
    if (!t) {
        snprintf(r->why, CELLAR_DEFINITIONS_WHY_MAX, "%s", what);
        return FAIL;
    }
    /* The statement's line, from its first token, cut short. */
    size_t b = t->start, e = b;
    while (e < r->len && r->src[e] != '\n' && r->src[e] != '\r' && e - b < 40)
        e++;
    bool cut = e < r->len && r->src[e] != '\n' && r->src[e] != '\r';
    snprintf(r->why, CELLAR_DEFINITIONS_WHY_MAX, "line %u %s (`%.*s%s`)", t->line, what,
             (int)(e - b), r->src + b, cut ? "..." : "");
    return FAIL;
}

/* The index of the NEWLINE (or end) that ends the logical line at `i`. */
static size_t line_end(const rule *r, size_t i)
{
    while (!ends_line(r, i))
        i++;
    return i;
}

static bool opens(const rule *r, size_t i)
{
    return is_op(r, i, "(") || is_op(r, i, "[") || is_op(r, i, "{");
}

static bool closes(const rule *r, size_t i)
{
    return is_op(r, i, ")") || is_op(r, i, "]") || is_op(r, i, "}");
}

/* The first `op` at bracket depth 0 in [i, j), or j. */
static size_t find_top(const rule *r, size_t i, size_t j, const char *op)
{
    int depth = 0;
    for (; i < j; i++) {
        if (depth == 0 && is_op(r, i, op))
            return i;
        depth += opens(r, i) ? 1 : closes(r, i) ? -1 : 0;
    }
    return j;
}

static const char *const keywords[] = {"in", "and",    "or",     "not", "if",    "else",
                                       "is", "lambda", "return", "for", "yield", "await"};

/* True when [i, j) calls something: a '(' right after a name, a string or a
 * closing bracket, except at `skip` (a def's or class's own parentheses). */
static bool calls(const rule *r, size_t i, size_t j, size_t skip)
{
    for (size_t k = i + 1; k < j; k++) {
        if (k == skip || !is_op(r, k, "("))
            continue;
        const tok *p = &r->t[k - 1];
        bool kw = false;
        for (size_t w = 0; p->type == TOK_NAME && w < sizeof keywords / sizeof *keywords;
             w++)
            kw = kw || is_name(r, k - 1, keywords[w]);
        if ((p->type == TOK_NAME && !kw) || p->type == TOK_STRING || closes(r, k - 1))
            return true;
    }
    return false;
}

/* True when [i, j) is a literal (see definitions.h). */
static bool literal(const rule *r, size_t i, size_t j)
{
    static const char *const ops[] = {"(", ")", "[", "]", "{", "}", ",", ":", "+", "-"};
    if (i >= j)
        return false;
    for (size_t k = i; k < j; k++) {
        const tok *t = &r->t[k];
        bool okay = t->type == TOK_NUMBER ||
                    (t->type == TOK_STRING && !(t->flags & TOKF_FORMATTED)) ||
                    is_name(r, k, "True") || is_name(r, k, "False") ||
                    is_name(r, k, "None");
        for (size_t o = 0; !okay && t->type == TOK_OP && o < sizeof ops / sizeof *ops;
             o++)
            okay = is_op(r, k, ops[o]);
        /* A bracket right after a literal would be a call or a subscript. */
        if (okay && k > i && opens(r, k) && !is_op(r, k - 1, ",") &&
            !is_op(r, k - 1, ":") && !opens(r, k - 1) && !is_op(r, k - 1, "+") &&
            !is_op(r, k - 1, "-"))
            okay = false;
        if (!okay)
            return false;
    }
    return true;
}

/* True when [i, j) is a list of names to bind: `a`, `a, b`, `(a, *b)`. */
static bool targets(const rule *r, size_t i, size_t j)
{
    if (i >= j)
        return false;
    for (size_t k = i; k < j; k++) {
        const tok *t = &r->t[k];
        bool okay = (t->type == TOK_NAME) || is_op(r, k, ",") || is_op(r, k, "*") ||
                    is_op(r, k, "(") || is_op(r, k, ")") || is_op(r, k, "[") ||
                    is_op(r, k, "]");
        if (okay && k > i && opens(r, k) &&
            (r->t[k - 1].type == TOK_NAME || closes(r, k - 1)))
            okay = false; /* a subscript or a call */
        if (!okay)
            return false;
    }
    return true;
}

/* One simple statement [i, j) (no ';' in it). */
static size_t simple(rule *r, size_t i, size_t j)
{
    if (i == j)
        return j;
    if (j == i + 1 && (is_name(r, i, "pass") || is_op(r, i, "...")))
        return j;
    if (is_name(r, i, "import") || is_name(r, i, "from"))
        return j;
    size_t eq = find_top(r, i, j, "=");
    if (eq == j) {
        if (literal(r, i, j)) /* a docstring, a bare constant */
            return j;
        size_t colon = find_top(r, i, j, ":");
        if (colon < j && targets(r, i, colon) && !calls(r, colon, j, SIZE_MAX))
            return j; /* an annotation without a value */
        return fail(
            r, i, calls(r, i, j, SIZE_MAX) ? "calls a function" : "is not a definition");
    }
    /* targets = targets = ... = value; the first may be annotated. */
    size_t last = eq, k = eq;
    while ((k = find_top(r, k + 1, j, "=")) < j)
        last = k;
    size_t colon = find_top(r, i, eq, ":");
    if (colon < eq && (!targets(r, i, colon) || calls(r, colon, eq, SIZE_MAX)))
        return fail(r, i, "assigns to something other than names");
    size_t from = i;
    for (size_t at = eq; from < last; at = find_top(r, at + 1, j, "=")) {
        if (!targets(r, from, from == i && colon < eq ? colon : at))
            return fail(r, from, "assigns to something other than names");
        from = at + 1;
    }
    if (!literal(r, last + 1, j))
        return fail(r, i,
                    last + 1 < j && r->t[last + 1].type == TOK_MAGIC
                        ? "assigns what a magic returns"
                    : calls(r, last + 1, j, SIZE_MAX)
                        ? "assigns the result of a call"
                        : "assigns a value that is not a literal");
    return j;
}

/* A logical line of simple statements at `i`; returns the index after its
 * NEWLINE. */
static size_t simple_line(rule *r, size_t i)
{
    size_t end = line_end(r, i);
    for (size_t s = i; s < end;) {
        size_t semi = find_top(r, s, end, ";");
        if (simple(r, s, semi) == FAIL)
            return FAIL;
        s = semi + 1;
    }
    return end < r->n && r->t[end].type == TOK_NEWLINE ? end + 1 : end;
}

/* After a compound header's ':' at `i`: the index after its suite. */
static size_t skip_suite(const rule *r, size_t i)
{
    if (i + 1 < r->n && r->t[i].type == TOK_NEWLINE && r->t[i + 1].type == TOK_INDENT) {
        int depth = 0;
        for (size_t k = i + 1; k < r->n; k++) {
            depth += r->t[k].type == TOK_INDENT ? 1 : r->t[k].type == TOK_DEDENT ? -1 : 0;
            if (depth == 0)
                return k + 1;
        }
        return r->n;
    }
    size_t e = line_end(r, i);
    return e < r->n && r->t[e].type == TOK_NEWLINE ? e + 1 : e;
}

static size_t statement(rule *r, size_t i, bool in_class);

/* A class body from `i` (after the header's ':'). */
static size_t class_body(rule *r, size_t i)
{
    if (!(i + 1 < r->n && r->t[i].type == TOK_NEWLINE && r->t[i + 1].type == TOK_INDENT))
        return simple_line(r, i);
    i += 2;
    while (i < r->n && r->t[i].type != TOK_DEDENT && r->t[i].type != TOK_END) {
        if ((i = statement(r, i, true)) == FAIL)
            return FAIL;
    }
    return i < r->n && r->t[i].type == TOK_DEDENT ? i + 1 : i;
}

static size_t definition(rule *r, size_t i, bool in_class)
{
    bool is_class = is_name(r, i, "class");
    size_t name = is_name(r, i, "async") ? i + 2 : i + 1;
    size_t end = line_end(r, name);
    size_t colon = find_top(r, name, end, ":");
    if (colon >= end)
        return fail(r, i, "does not parse");
    if (calls(r, name, colon, name + 1))
        return fail(r, i,
                    is_class ? "computes its bases" : "computes a default or annotation");
    (void)in_class;
    return is_class ? class_body(r, colon + 1) : skip_suite(r, colon + 1);
}

static size_t statement(rule *r, size_t i, bool in_class)
{
    const tok *t = &r->t[i];
    if (t->type == TOK_NEWLINE)
        return i + 1;
    if (t->type == TOK_ERROR)
        return fail(r, i, "does not tokenize");
    r->any = true;
    if (t->type == TOK_MAGIC) {
        const char *s = r->src + t->start;
        bool ext = !in_class && ((t->len > 10 && !memcmp(s, "%load_ext ", 10)) ||
                                 (t->len > 12 && !memcmp(s, "%reload_ext ", 12)) ||
                                 (t->len >= 15 && !memcmp(s, "%cellar restore", 15) &&
                                  (t->len == 15 || s[15] == ' ')));
        if (!ext)
            return fail(r, i, "is a magic or shell command that is not replayed");
        return i + 1 < r->n && r->t[i + 1].type == TOK_NEWLINE ? i + 2 : i + 1;
    }
    if (is_op(r, i, "@")) {
        size_t end = line_end(r, i);
        size_t k = i + 1;
        while (k < end && (r->t[k].type == TOK_NAME || is_op(r, k, ".")))
            k++;
        if (k == i + 1 || (k < end && (!is_op(r, k, "(") || !is_op(r, end - 1, ")"))))
            return fail(r, i, "has a decorator that computes");
        for (size_t a = k + 1; a + 1 < end; a++) {
            bool arg = literal(r, a, a + 1) || is_op(r, a, "=") ||
                       (r->t[a].type == TOK_NAME && is_op(r, a + 1, "="));
            if (!arg)
                return fail(r, i, "has a decorator that computes");
        }
        size_t next = end < r->n && r->t[end].type == TOK_NEWLINE ? end + 1 : end;
        if (!(is_op(r, next, "@") || is_name(r, next, "def") ||
              is_name(r, next, "class") ||
              (is_name(r, next, "async") && is_name(r, next + 1, "def"))))
            return fail(r, i, "does not parse");
        return statement(r, next, in_class);
    }
    if (is_name(r, i, "def") || is_name(r, i, "class") ||
        (is_name(r, i, "async") && is_name(r, i + 1, "def")))
        return definition(r, i, in_class);
    static const char *const compound[] = {
        "if",  "for",    "while",    "with",   "try",   "async", "match",
        "del", "global", "nonlocal", "assert", "raise", "return"};
    for (size_t c = 0; c < sizeof compound / sizeof *compound; c++)
        if (is_name(r, i, compound[c]))
            return fail(r, i, "runs code");
    if (in_class && (is_name(r, i, "import") || is_name(r, i, "from")))
        return fail(r, i, "imports inside a class");
    return simple_line(r, i);
}

static bool on_batch(void *ctx, const tok_list *batch)
{
    rule *r = ctx;
    if (r->bad)
        return true;
    r->t = batch->v;
    r->n = batch->n;
    for (size_t i = 0; i < r->n && r->t[i].type != TOK_END;) {
        if (r->t[i].type == TOK_DEDENT || r->t[i].type == TOK_INDENT) {
            if (r->t[i].type == TOK_INDENT)
                return fail(r, i, "is indented where nothing opens a block"), true;
            i++;
            continue;
        }
        if ((i = statement(r, i, false)) == FAIL)
            return true;
    }
    return true;
}

/* True when the cell starts (after blank lines) with a `%%` cell magic. */
static bool cell_magic(const char *code, size_t len)
{
    size_t p = 0;
    while (p < len &&
           (code[p] == ' ' || code[p] == '\t' || code[p] == '\n' || code[p] == '\r'))
        p++;
    return p + 1 < len && code[p] == '%' && code[p + 1] == '%';
}

bool cellar_definitions_only(const char *code, size_t len,
                             char why[CELLAR_DEFINITIONS_WHY_MAX])
{
    rule r = {.src = code, .len = len, .why = why};
    if (why)
        why[0] = '\0';
    if (!code || cell_magic(code, len)) {
        if (why)
            snprintf(why, CELLAR_DEFINITIONS_WHY_MAX, "is a %%%% cell magic");
        return false;
    }
    tok_list list = {0};
    cellar_status st = tokenize(code, len, &list, on_batch, &r);
    tok_list_free(&list);
    if (st != CELLAR_OK) {
        if (why)
            snprintf(why, CELLAR_DEFINITIONS_WHY_MAX, "out of memory");
        return false;
    }
    if (!r.bad && !r.any) {
        if (why)
            snprintf(why, CELLAR_DEFINITIONS_WHY_MAX, "defines nothing");
        return false;
    }
    return !r.bad;
}
