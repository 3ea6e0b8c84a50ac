/*
 * definitions.c - does a cell only define?  (The rule is in definitions.h.)
 *
 * The tokenizer hands over the cell in batches that begin and end at
 * top-level statement boundaries; each batch is walked statement by
 * statement over the flat token array, with INDENT/DEDENT marking blocks and
 * bracket depth found by counting.  A `def` body is skipped whole (defining
 * a function runs none of it); a class body is walked with the same rules,
 * since Python runs it at definition time.  An assignment's value is a
 * literal, a type alias (generics[]) or one of pure_calls[], each call with
 * the arguments its entry lists: explicit lists, so that what is not on them
 * computes.  The first statement that does more than define stops the walk
 * and names itself in the reason.
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
    int class_depth; /* > 0 inside a class body */
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

/* ---- the calls and subscripts that define (definitions.h's lists) ---- */

static bool name_in(const rule *r, size_t i, const char *const *names, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (is_name(r, i, names[k]))
            return true;
    return false;
}

#define COUNT(a) (sizeof(a) / sizeof *(a))

/* What typing and the builtins subscript into a type: `Optional[int]`. */
static const char *const generics[] = {
    "Optional",    "Union",          "List",          "Dict",         "Tuple",
    "Set",         "FrozenSet",      "Type",          "Callable",     "Annotated",
    "Literal",     "ClassVar",       "Final",         "Sequence",     "Mapping",
    "MutableMapping", "MutableSequence", "MutableSet", "AbstractSet", "Iterable",
    "Iterator",    "Generator",      "AsyncIterator", "AsyncIterable", "AsyncGenerator",
    "Awaitable",   "Coroutine",      "Collection",    "Container",    "DefaultDict",
    "OrderedDict", "Counter",        "Deque",         "ChainMap",     "TypeGuard",
    "Required",    "NotRequired",    "Unpack",        "Concatenate",  "list",
    "dict",        "tuple",          "set",           "frozenset",    "type"};

/* True when [i, j) is a dotted name: `a`, `a.b.c`. */
static bool dotted(const rule *r, size_t i, size_t j)
{
    if (i >= j || (j - i) % 2 == 0)
        return false;
    for (size_t k = i; k < j; k++)
        if ((k - i) % 2 == 0 ? r->t[k].type != TOK_NAME : !is_op(r, k, "."))
            return false;
    return true;
}

/* True when [i, j) is a type that calls nothing and subscripts only the
 * generics: `int`, `np.ndarray`, `"Box"`, `None`, `Dict[str, List[int]]`,
 * `Callable[[int], str]`, `Literal["a", -1]`, `int | None` inside brackets. */
static bool type_expr(const rule *r, size_t i, size_t j)
{
    if (i >= j)
        return false;
    int depth = 0;
    for (size_t k = i; k < j; k++) {
        const tok *t = &r->t[k];
        bool okay = t->type == TOK_NAME || t->type == TOK_NUMBER ||
                    (t->type == TOK_STRING && !(t->flags & TOKF_FORMATTED)) ||
                    is_op(r, k, ".") || is_op(r, k, ",") || is_op(r, k, "...") ||
                    is_op(r, k, "]") || is_op(r, k, "-") ||
                    (depth > 0 && is_op(r, k, "|"));
        for (size_t w = 0; t->type == TOK_NAME && w < COUNT(keywords); w++)
            okay = okay && !is_name(r, k, keywords[w]);
        if (is_op(r, k, "[")) {
            /* After a generic (`List[`), or a list of types in one (`[[int], str]`). */
            okay = (k > i && name_in(r, k - 1, generics, COUNT(generics))) ||
                   (depth > 0 && (is_op(r, k - 1, "[") || is_op(r, k - 1, ",")));
            depth++;
        } else if (is_op(r, k, "]")) {
            okay = --depth >= 0;
        }
        if (!okay)
            return false;
    }
    return depth == 0;
}

/* A type alias's value: a generic subscripted, `Optional[int]`, `list[float]`. */
static bool type_alias(const rule *r, size_t i, size_t j)
{
    size_t k = i;
    while (k + 1 < j && r->t[k].type == TOK_NAME && is_op(r, k + 1, "."))
        k += 2;
    return k + 1 < j && name_in(r, k, generics, COUNT(generics)) && is_op(r, k + 1, "[") &&
           find_top(r, k + 1, j, "]") == j && is_op(r, j - 1, "]") && type_expr(r, i, j);
}

/* The calls a cell may make and still only define: each builds a value and
 * does nothing else (definitions.h).  `module` is the one prefix it may have
 * (`dataclasses.field`); `in_class` when only a class body may call it. */
typedef enum arg_kind { ARG_NONE, ARG_LITERAL, ARG_STRING, ARG_TYPE, ARG_NAME } arg_kind;

typedef struct pure_call {
    const char *name;
    const char *module, *module2;
    bool in_class;
    arg_kind positional[2]; /* the first two positional arguments (ARG_NONE: none) */
    bool more_types;        /* further positional arguments are types */
    const char *keywords[8];
    arg_kind keyword_kind[8];
} pure_call;

static const pure_call pure_calls[] = {
    {"field",
     "dataclasses",
     NULL,
     true,
     {ARG_NONE, ARG_NONE},
     false,
     {"default", "default_factory", "init", "repr", "hash", "compare", "metadata",
      "kw_only"},
     {ARG_LITERAL, ARG_NAME, ARG_LITERAL, ARG_LITERAL, ARG_LITERAL, ARG_LITERAL,
      ARG_LITERAL, ARG_LITERAL}},
    {"auto", "enum", NULL, true, {ARG_NONE, ARG_NONE}, false, {NULL}, {ARG_NONE}},
    {"TypeVar",
     "typing",
     "typing_extensions",
     false,
     {ARG_STRING, ARG_TYPE},
     true,
     {"bound", "covariant", "contravariant", "infer_variance", "default"},
     {ARG_TYPE, ARG_LITERAL, ARG_LITERAL, ARG_LITERAL, ARG_TYPE}},
    {"ParamSpec", "typing", "typing_extensions", false, {ARG_STRING, ARG_NONE}, false,
     {NULL}, {ARG_NONE}},
    {"TypeVarTuple", "typing", "typing_extensions", false, {ARG_STRING, ARG_NONE}, false,
     {NULL}, {ARG_NONE}},
    {"NewType", "typing", "typing_extensions", false, {ARG_STRING, ARG_TYPE}, false,
     {NULL}, {ARG_NONE}},
    {"namedtuple",
     "collections",
     NULL,
     false,
     {ARG_STRING, ARG_LITERAL},
     false,
     {"defaults", "rename", "module"},
     {ARG_LITERAL, ARG_LITERAL, ARG_LITERAL}},
};

static bool arg_ok(const rule *r, size_t i, size_t j, arg_kind kind)
{
    switch (kind) {
    case ARG_NONE: return false;
    case ARG_LITERAL: return literal(r, i, j);
    case ARG_STRING:
        return j == i + 1 && r->t[i].type == TOK_STRING &&
               !(r->t[i].flags & (TOKF_FORMATTED | TOKF_BYTES));
    case ARG_TYPE: return type_expr(r, i, j);
    case ARG_NAME: return dotted(r, i, j);
    }
    return false;
}

/* True when [i, j) is one of pure_calls, with arguments it allows. */
static bool pure_call_ok(const rule *r, size_t i, size_t j)
{
    size_t open = i;
    while (open < j && (r->t[open].type == TOK_NAME || is_op(r, open, ".")))
        open++;
    if (open == i || !dotted(r, i, open) || !is_op(r, open, "(") ||
        find_top(r, open, j, ")") != j || !is_op(r, j - 1, ")") ||
        find_top(r, open + 1, j - 1, ")") != j - 1)
        return false;
    const pure_call *c = NULL;
    for (size_t k = 0; !c && k < COUNT(pure_calls); k++)
        if (is_name(r, open - 1, pure_calls[k].name))
            c = &pure_calls[k];
    if (!c || (c->in_class && r->class_depth == 0))
        return false;
    if (open - i == 3 && !is_name(r, i, c->module) && !(c->module2 && is_name(r, i, c->module2)))
        return false;
    if (open - i > 3)
        return false;
    size_t npos = 0;
    bool kw_seen = false;
    for (size_t a = open + 1; a < j - 1;) {
        size_t end = find_top(r, a, j - 1, ",");
        if (end == a) /* `f(,)` */
            return false;
        if (r->t[a].type == TOK_NAME && is_op(r, a + 1, "=")) {
            kw_seen = true;
            bool found = false;
            for (size_t k = 0; k < COUNT(c->keywords) && c->keywords[k] && !found; k++)
                if (is_name(r, a, c->keywords[k])) {
                    if (!arg_ok(r, a + 2, end, c->keyword_kind[k]))
                        return false;
                    found = true;
                }
            if (!found)
                return false;
        } else {
            arg_kind kind = npos < 2 ? c->positional[npos] : ARG_NONE;
            if (kind == ARG_NONE && npos >= 1 && c->more_types)
                kind = ARG_TYPE;
            if (kw_seen || !arg_ok(r, a, end, kind))
                return false;
            npos++;
        }
        a = end < j - 1 ? end + 1 : end;
    }
    /* The first positional argument, when there is one, is required. */
    return c->positional[0] == ARG_NONE || npos >= 1;
}

/* A value an assignment may bind and still only define. */
static bool value_ok(const rule *r, size_t i, size_t j)
{
    return literal(r, i, j) || type_alias(r, i, j) || pure_call_ok(r, i, j);
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
    if (!value_ok(r, last + 1, j))
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
    if (!(i + 1 < r->n && r->t[i].type == TOK_NEWLINE && r->t[i + 1].type == TOK_INDENT)) {
        r->class_depth++;
        size_t end = simple_line(r, i);
        r->class_depth--;
        return end;
    }
    i += 2;
    r->class_depth++;
    while (i < r->n && r->t[i].type != TOK_DEDENT && r->t[i].type != TOK_END) {
        if ((i = statement(r, i, true)) == FAIL)
            return FAIL;
    }
    r->class_depth--;
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
        if (k == i + 1 || (k < end && (!is_op(r, k, "(") || !is_op(r, end - 1, ")") ||
                                       find_top(r, k + 1, end - 1, ")") != end - 1)))
            return fail(r, i, "has a decorator that computes"); /* not one call */
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
