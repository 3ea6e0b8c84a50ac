/*
 * test_scanner.c - unit tests for the cell scanner: which functions are
 * found, their spans, decorators and parameters, every string form and
 * IPython line, the errors reported for broken source, pathological inputs,
 * and which edits do or do not change a code version.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cellar/scanner.h"

/* ---- helpers ------------------------------------------------------------ */

static cellar_scan *scan(const char *src)
{
    cellar_scan *s = NULL;
    cellar_error err;
    assert_int_equal(cellar_scan_source(src, strlen(src), &s, &err), CELLAR_OK);
    assert_non_null(s);
    return s;
}

/* Scans src, which must be clean, and checks the names of its functions. */
static void expect_names(const char *src, const char *const *names, size_t n)
{
    cellar_scan *s = scan(src);
    if (cellar_scan_error_count(s)) {
        const cellar_scan_error *e = cellar_scan_error_at(s, 0);
        fail_msg("unexpected error %d:%d %s in:\n%s", e->line, e->col, e->message, src);
    }
    assert_int_equal(cellar_scan_function_count(s), n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(cellar_scan_function_at(s, i)->name, names[i]);
    cellar_scan_free(s);
}

#define EXPECT_NAMES(src, ...)                                                           \
    do {                                                                                 \
        static const char *const names_[] = {__VA_ARGS__};                               \
        expect_names(src, names_, sizeof names_ / sizeof names_[0]);                     \
    } while (0)

static void expect_none(const char *src)
{
    cellar_scan *s = scan(src);
    assert_int_equal(cellar_scan_error_count(s), 0);
    assert_int_equal(cellar_scan_function_count(s), 0);
    cellar_scan_free(s);
}

/* The code version of the single clean function in src. */
static cellar_hash version(const char *src)
{
    cellar_scan *s = scan(src);
    if (cellar_scan_error_count(s))
        fail_msg("error %s in:\n%s", cellar_scan_error_at(s, 0)->message, src);
    if (cellar_scan_function_count(s) != 1)
        fail_msg("expected one function in:\n%s", src);
    cellar_hash h = cellar_scan_function_at(s, 0)->code_version;
    cellar_scan_free(s);
    return h;
}

static void same_version(const char *a, const char *b)
{
    cellar_hash ha = version(a), hb = version(b);
    if (!cellar_hash_equal(&ha, &hb))
        fail_msg("versions differ:\n---\n%s---\n%s", a, b);
}

static void different_version(const char *a, const char *b)
{
    cellar_hash ha = version(a), hb = version(b);
    if (cellar_hash_equal(&ha, &hb))
        fail_msg("versions equal:\n---\n%s---\n%s", a, b);
}

/* Scans src and checks there is exactly one error, on `line`, whose message
 * contains `needle`.  Returns the scan for further checks. */
static cellar_scan *expect_error(const char *src, int line, const char *needle)
{
    cellar_scan *s = scan(src);
    if (cellar_scan_error_count(s) != 1)
        fail_msg("expected one error, got %zu in:\n%s", cellar_scan_error_count(s), src);
    const cellar_scan_error *e = cellar_scan_error_at(s, 0);
    if (e->line != line || !strstr(e->message, needle))
        fail_msg("got %d:%d '%s', wanted line %d '%s' in:\n%s", e->line, e->col,
                 e->message, line, needle, src);
    return s;
}

static const cellar_function *only_function(cellar_scan *s)
{
    assert_int_equal(cellar_scan_function_count(s), 1);
    return cellar_scan_function_at(s, 0);
}

static void expect_param(const cellar_function *f, size_t i, const char *name,
                         cellar_param_kind kind, bool has_default)
{
    assert_true(i < f->nparams);
    assert_string_equal(f->params[i].name, name);
    assert_string_equal(cellar_param_kind_name(f->params[i].kind),
                        cellar_param_kind_name(kind));
    assert_int_equal(f->params[i].has_default, has_default);
}

/* ---- finding functions ------------------------------------------------- */

static void test_top_level_only(void **state)
{
    (void)state;
    EXPECT_NAMES("def a():\n    def inner():\n        pass\n    return inner\n"
                 "class C:\n    def method(self):\n        pass\n"
                 "if True:\n    def in_if(): pass\nelse:\n    def in_else(): pass\n"
                 "try:\n    def in_try(): pass\nexcept E:\n    def in_except(): pass\n"
                 "finally:\n    def in_finally(): pass\n"
                 "with x:\n    def in_with(): pass\n"
                 "for i in y:\n    def in_for(): pass\n"
                 "while w:\n    def in_while(): pass\n"
                 "async def b(): pass\n"
                 "x = 1; y = 2\n"
                 "def c(): return 1\n",
                 "a", "b", "c");
    expect_none("");
    expect_none("\n\n# just a comment\n   \n");
    expect_none("x = 1\nclass A:\n    def f(self): pass\n");
}

static void test_spans_and_decorators(void **state)
{
    (void)state;
    cellar_scan *s = scan("import os\n"              /* 1 */
                          "\n"                       /* 2 */
                          "@dec(1,\n"                /* 3 */
                          "     2)\n"                /* 4 */
                          "# between\n"              /* 5 */
                          "@other.attr\n"            /* 6 */
                          "async def f(a):\n"        /* 7 */
                          "    x = (1,\n"            /* 8 */
                          "         2)\n"            /* 9 */
                          "    # trailing comment\n" /* 10 */
                          "\n"                       /* 11 */
                          "def g(): return '''a\n"   /* 12 */
                          "b'''\n"                   /* 13 */
                          "@d\n"                     /* 14 */
                          "class K: pass\n"          /* 15 */
                          "def h(\n"                 /* 16 */
                          "  a,\n"                   /* 17 */
                          "):\n"                     /* 18 */
                          "    if a:\n"              /* 19 */
                          "        for i in a:\n"    /* 20 */
                          "            pass\n"       /* 21 */
                          "x = 1\n");                /* 22 */
    assert_int_equal(cellar_scan_error_count(s), 0);
    assert_int_equal(cellar_scan_function_count(s), 3);
    const cellar_function *f = cellar_scan_function_at(s, 0);
    assert_string_equal(f->name, "f");
    assert_true(f->is_async);
    assert_int_equal(f->line, 7);
    assert_int_equal(f->first_line, 3);
    assert_int_equal(f->end_line, 9);
    assert_int_equal(f->decorators, 2);
    const cellar_function *g = cellar_scan_function_at(s, 1);
    assert_false(g->is_async);
    assert_int_equal(g->line, 12);
    assert_int_equal(g->first_line, 12);
    assert_int_equal(g->end_line, 13);
    assert_int_equal(g->decorators, 0);
    const cellar_function *h = cellar_scan_function_at(s, 2);
    assert_string_equal(h->name, "h");
    assert_int_equal(h->line, 16);
    assert_int_equal(h->end_line, 21);
    assert_int_equal(h->decorators, 0);
    assert_null(cellar_scan_function_at(s, 3));
    assert_null(cellar_scan_error_at(s, 0));
    cellar_scan_free(s);
}

static void test_param_kinds(void **state)
{
    (void)state;
    cellar_scan *s = scan("def f(a, b=1, /, c=2, d=3, *args, e, f=4, **kw): pass\n");
    const cellar_function *f = only_function(s);
    assert_int_equal(f->nparams, 8);
    expect_param(f, 0, "a", CELLAR_PARAM_POSITIONAL_ONLY, false);
    expect_param(f, 1, "b", CELLAR_PARAM_POSITIONAL_ONLY, true);
    expect_param(f, 2, "c", CELLAR_PARAM_POSITIONAL_OR_KEYWORD, true);
    expect_param(f, 3, "d", CELLAR_PARAM_POSITIONAL_OR_KEYWORD, true);
    expect_param(f, 4, "args", CELLAR_PARAM_VAR_POSITIONAL, false);
    expect_param(f, 5, "e", CELLAR_PARAM_KEYWORD_ONLY, false);
    expect_param(f, 6, "f", CELLAR_PARAM_KEYWORD_ONLY, true);
    expect_param(f, 7, "kw", CELLAR_PARAM_VAR_KEYWORD, false);
    cellar_scan_free(s);

    s = scan("def g(*, key, other=None,): pass\ndef h(): pass\ndef k(**kw): pass\n");
    assert_int_equal(cellar_scan_function_count(s), 3);
    f = cellar_scan_function_at(s, 0);
    assert_int_equal(f->nparams, 2);
    expect_param(f, 0, "key", CELLAR_PARAM_KEYWORD_ONLY, false);
    expect_param(f, 1, "other", CELLAR_PARAM_KEYWORD_ONLY, true);
    assert_int_equal(cellar_scan_function_at(s, 1)->nparams, 0);
    expect_param(cellar_scan_function_at(s, 2), 0, "kw", CELLAR_PARAM_VAR_KEYWORD, false);
    cellar_scan_free(s);
    assert_string_equal(cellar_param_kind_name(CELLAR_PARAM_POSITIONAL_OR_KEYWORD),
                        "positional_or_keyword");
    assert_string_equal(cellar_param_kind_name(CELLAR_PARAM_VAR_POSITIONAL),
                        "var_positional");
}

static void test_param_defaults_and_annotations(void **state)
{
    (void)state;
    cellar_scan *s = scan("def f[T: (int, str), *Ts, **P](\n"
                          "    a: dict[str, int] = {'x': 1, 'y': 2},\n"
                          "    b=lambda x=1, y=2: x,\n"
                          "    c: 'Callable[[int], int]' = lambda: lambda q, r=3: q,\n"
                          "    d=x[1:2, ::3],\n"
                          "    e=(w := 5),\n"
                          "    g=1 if cond else 2,\n"
                          "    h=call(a, b=c, *d, **e)(f)[g],\n"
                          "    i: lambda a, b: a = \"s,=:\",\n"
                          "    *args: *Ts,\n"
                          "    j=f'{a, b}',\n"
                          "    **kw: int,\n"
                          ") -> lambda x, y: {1: 2}:\n"
                          "    return a\n");
    const cellar_function *f = only_function(s);
    assert_int_equal(f->nparams, 11);
    const char *names[] = {"a", "b", "c", "d", "e", "g", "h", "i", "args", "j", "kw"};
    for (size_t i = 0; i < 11; i++)
        assert_string_equal(f->params[i].name, names[i]);
    for (size_t i = 0; i < 8; i++)
        expect_param(f, i, names[i], CELLAR_PARAM_POSITIONAL_OR_KEYWORD, true);
    expect_param(f, 8, "args", CELLAR_PARAM_VAR_POSITIONAL, false);
    expect_param(f, 9, "j", CELLAR_PARAM_KEYWORD_ONLY, true);
    expect_param(f, 10, "kw", CELLAR_PARAM_VAR_KEYWORD, false);
    assert_int_equal(f->line, 1);
    assert_int_equal(f->end_line, 14);
    cellar_scan_free(s);
}

/* ---- tokenizer coverage ------------------------------------------------- */

static void test_string_forms(void **state)
{
    (void)state;
    EXPECT_NAMES(
        "a = 'x' \"y\" r'\\' ' b'\\'' B\"\" u'x' U\"y\" Rb'\\d' bR\"x\" rB'' Br\"\"\n"
        "b = fr'{x}\\d' Rf\"{y}\" rF'' FR\"\" f'' F\"\" t'{x}'\n"
        "c = '''one ' '' \"\"\" \n two''' + \"\"\"x\n\"\"\\\"\"\"\"\n"
        "d = 'a\\\nb'\n"
        "def f(x='def g(): pass', y=\"\"\"\ndef h(): pass\n\"\"\"): pass\n",
        "f");
    EXPECT_NAMES(
        "s = f\"{x[\"k\"]}\" + f\"{'a' if x else f'{y}'}\" + f'{x:>{w}}'\n"
        "t = f'{{literal}} {{ {x!r:^10} }}' + f\"{x=}\" + f'{a!=b}'\n"
        "u = f\"{f\"{f\"{1}\"}\"}\" + f'''{\n  x # comment\n}''' + f\"\\N{BULLET} {x}\"\n"
        "v = f'{ {\"a\": 1}[\"a\"] }' + f'{(lambda: 1)()}' + f'{x:{\"\"}}'\n"
        "def f(a=f\"{'{'}\"): pass\n",
        "f");
}

static void test_layout(void **state)
{
    (void)state;
    /* continuation lines, brackets over lines, tabs, form feeds, CRLF, CR */
    EXPECT_NAMES("x = 1 + \\\n    2\n"
                 "def \\\n  a(p,\n q): \\\n  return p\n"
                 "y = [1,\n2,\n  3]\n",
                 "a");
    cellar_scan *s = scan("def tabs():\n\tif x:\n\t\treturn 1\n\treturn 2\n"
                          "\fdef ff():\n  \f  pass\n");
    assert_int_equal(cellar_scan_error_count(s), 0);
    assert_int_equal(cellar_scan_function_count(s), 2);
    assert_int_equal(cellar_scan_function_at(s, 0)->end_line, 4);
    assert_int_equal(cellar_scan_function_at(s, 1)->line, 5);
    cellar_scan_free(s);
    s = scan("def a(x):\r\n    return x\r\n\r\ndef b(y):\r    return y\r");
    assert_int_equal(cellar_scan_error_count(s), 0);
    assert_int_equal(cellar_scan_function_count(s), 2);
    assert_int_equal(cellar_scan_function_at(s, 0)->end_line, 2);
    assert_int_equal(cellar_scan_function_at(s, 1)->line, 4);
    assert_int_equal(cellar_scan_function_at(s, 1)->end_line, 5);
    cellar_scan_free(s);
    /* a BOM, non-ASCII identifiers, no final newline */
    s = scan("\xEF\xBB\xBF# c\ndef gr\xC3\xB6\xC3\x9F"
             "e(\xCE\xB1, \xE5\x90\x8D=1):\n"
             "    return \xCE\xB1");
    const cellar_function *f = only_function(s);
    assert_string_equal(f->name, "gr\xC3\xB6\xC3\x9F"
                                 "e");
    assert_int_equal(f->line, 2);
    assert_int_equal(f->end_line, 3);
    expect_param(f, 1, "\xE5\x90\x8D", CELLAR_PARAM_POSITIONAL_OR_KEYWORD, true);
    cellar_scan_free(s);
    /* numbers of every form do not confuse the lexer */
    EXPECT_NAMES("n = 0x1e+1, 1_000.5e-3j, .5, 0o17, 0b1, 1if x else 2, 1..real\n"
                 "def f(a=1e5, b=0xFF): pass\n",
                 "f");
}

/* Identifiers that NFKC normalization changes (U+00B5 MICRO SIGN becomes U+03BC,
 * U+FB01 "fi" ligature becomes "fi", fullwidth letters become ASCII) are reported
 * byte for byte as the source spells them: the extension normalizes them with the
 * interpreter's own tables (registry.c), so the scanner must neither drop nor
 * alter them, and their hash must still tell different spellings apart. */
static void test_identifiers_kept_for_nfkc(void **state)
{
    (void)state;
    cellar_scan *s = scan("def \xC2\xB5_hat(\xEF\xAC\x81le, *, \xEF\xBD\x8B=1):\n"
                          "    return \xEF\xAC\x81le\n");
    const cellar_function *f = only_function(s);
    assert_string_equal(f->name, "\xC2\xB5_hat");
    expect_param(f, 0, "\xEF\xAC\x81le", CELLAR_PARAM_POSITIONAL_OR_KEYWORD, false);
    expect_param(f, 1, "\xEF\xBD\x8B", CELLAR_PARAM_KEYWORD_ONLY, true);
    cellar_hash micro = f->code_version;
    cellar_scan_free(s);
    s = scan("def \xCE\xBC_hat(\xEF\xAC\x81le, *, \xEF\xBD\x8B=1):\n"
             "    return \xEF\xAC\x81le\n");
    f = only_function(s);
    assert_string_equal(f->name, "\xCE\xBC_hat");
    assert_false(cellar_hash_equal(&micro, &f->code_version));
    cellar_scan_free(s);
    /* U+00B7 MIDDLE DOT starts no Python name but may continue one: the name
     * stays whole. */
    s = scan("def a\xC2\xB7"
             "b():\n    pass\n");
    assert_string_equal(only_function(s)->name, "a\xC2\xB7"
                                                "b");
    cellar_scan_free(s);
}

static void test_ipython_lines(void **state)
{
    (void)state;
    EXPECT_NAMES("%matplotlib inline\n"
                 "%%timeit in the middle is a line magic\n"
                 "!pip install \"it's (\n"
                 "!!ls\n"
                 "?obj\n"
                 "??obj\n"
                 "obj?\n"
                 "obj.method??\n"
                 "x = %who_ls\n"
                 "y = !ls '\n"
                 "a, b = %magic ( [ \\\n"
                 "   continued'\n"
                 "def f(x=1, y=a != b):\n"
                 "    %time g(x)\n"
                 "    !echo {x}\n"
                 "    z = !cmd '\n"
                 "    return x % 2\n"
                 "%load_ext cellar\n",
                 "f");
    cellar_scan *s = scan("%%time\ndef f():\n    return 1\n");
    const cellar_function *f = only_function(s);
    assert_int_equal(f->line, 2);
    assert_int_equal(f->end_line, 3);
    assert_int_equal(cellar_scan_error_count(s), 0);
    cellar_scan_free(s);
    EXPECT_NAMES("\n  \n%%capture out\ndef g(): pass\n", "g");
    EXPECT_NAMES("%%prun -s cumulative\nasync def h(): pass\n", "h");
    expect_none("%%bash\ndef f(x):\n  echo 'unterminated\n");
    expect_none("%%writefile f.py\ndef f():\n    pass\n");
    expect_none("%%html\n<b>(</b>\n");
    expect_none("%%timeit\ndef f(): pass\n");
}

/* ---- errors -------------------------------------------------------------- */

static void test_errors(void **state)
{
    (void)state;
    struct {
        const char *src;
        int line;
        const char *needle;
    } cases[] = {
        {"x = 'abc\n", 1, "unterminated string literal"},
        {"x = 1\ny = f\"{a\n", 2, "unterminated string literal"},
        {"def f():\n    s = '''abc\n\n", 2, "unterminated triple-quoted string"},
        {"x = (1,\n2\n", 1, "'(' was never closed"},
        {"x = [1, 2)\n", 1, "does not match"},
        {"x = 1)\n", 1, "unmatched ')'"},
        {"x = 1\n    y = 2\n", 2, "unexpected indent"},
        {"    x = 1\n", 1, "unexpected indent"},
        {"if x:\n        a\n    b\n", 3, "unindent does not match"},
        {"if x:\n\ta\n        b\n", 3, "inconsistent use of tabs"},
        {"def f(a):\n    x = 1\n  y = 2\n", 3, "unindent does not match"},
        {"def f(a):\n        x = 1\n\ty = 2\n", 3, "inconsistent use of tabs"},
        {"def f():\nreturn 1\n", 2, "expected an indented block"},
        {"def f():\n", 1, "expected an indented block"},
        {"x = 1 \\ y\n", 1, "after line continuation"},
        {"x = 1 \\", 1, "after line continuation"},
        {"def (x): pass\n", 1, "function name"},
        {"def f x: pass\n", 1, "expected '('"},
        {"def f(1): pass\n", 1, "parameter list"},
        {"def f(x) pass\n", 1, "expected ':'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cellar_scan *s = expect_error(cases[i].src, cases[i].line, cases[i].needle);
        assert_int_equal(cellar_scan_function_count(s), 0);
        cellar_scan_free(s);
    }
    cellar_scan *s = expect_error("x = (1,\n2\n", 1, "never closed");
    assert_int_equal(cellar_scan_error_at(s, 0)->col, 4);
    cellar_scan_free(s);
    s = expect_error("x = 1\ny = 'abc\n", 2, "unterminated");
    assert_int_equal(cellar_scan_error_at(s, 0)->col, 4);
    cellar_scan_free(s);
}

static void test_functions_before_an_error_survive(void **state)
{
    (void)state;
    cellar_scan *s = expect_error("def ok(a):\n    return a\n\n"
                                  "def broken(b):\n    s = 'oops\n    return b\n",
                                  5, "unterminated");
    const cellar_function *f = only_function(s);
    assert_string_equal(f->name, "ok");
    assert_int_equal(f->end_line, 2);
    cellar_scan_free(s);
    s = expect_error("def ok(): pass\nx = foo(\ndef later(): pass\n", 2, "never closed");
    assert_string_equal(only_function(s)->name, "ok");
    cellar_scan_free(s);
    s = expect_error("def ok(): pass\ndef f(x) pass\ndef after(): pass\n", 2,
                     "expected ':'");
    assert_int_equal(cellar_scan_function_count(s), 2);
    assert_string_equal(cellar_scan_function_at(s, 1)->name, "after");
    cellar_scan_free(s);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    cellar_scan *s = (cellar_scan *)1;
    cellar_error err;
    assert_int_equal(cellar_scan_source(NULL, 3, &s, &err), CELLAR_EINVAL);
    assert_int_equal(err.code, CELLAR_EINVAL);
    assert_int_equal(cellar_scan_source("x", 1, NULL, &err), CELLAR_EINVAL);
    assert_int_equal(cellar_scan_source(NULL, 0, &s, NULL), CELLAR_OK);
    assert_int_equal(cellar_scan_function_count(s), 0);
    cellar_scan_free(s);
    cellar_scan_free(NULL);
    assert_int_equal(cellar_scan_function_count(NULL), 0);
    assert_null(cellar_scan_function_at(NULL, 0));
}

/* Source is not NUL-terminated and may hold NUL bytes. */
static void test_exact_length(void **state)
{
    (void)state;
    const char src[] = "def f(a): pass\ndef g(b): pass\n";
    cellar_scan *s = NULL;
    assert_int_equal(cellar_scan_source(src, 15, &s, NULL), CELLAR_OK);
    assert_string_equal(only_function(s)->name, "f");
    cellar_scan_free(s);
    const char nul[] = "def f(a):\n    return '\0'\n";
    assert_int_equal(cellar_scan_source(nul, sizeof nul - 1, &s, NULL), CELLAR_OK);
    assert_int_equal(cellar_scan_function_count(s), 1);
    cellar_scan_free(s);
}

/* 1 MB of each pattern must scan, report an error, and not crash. */
static void test_pathological_inputs(void **state)
{
    (void)state;
    const char *patterns[] = {"(",       "[{",   "f\"{",  "f'{x:{", "\"\"\"", "'",
                              "\\\n",    "    ", "\t\n",  "@",      "def ",   "lambda ",
                              "if x:\n", " ",    "f'''{", "#",      "%",      "\r"};
    size_t size = 1 << 20;
    char *buf = malloc(size + 1);
    assert_non_null(buf);
    for (size_t k = 0; k < sizeof patterns / sizeof patterns[0]; k++) {
        size_t plen = strlen(patterns[k]), n = 0;
        while (n + plen <= size) {
            memcpy(buf + n, patterns[k], plen);
            n += plen;
        }
        cellar_scan *s = NULL;
        assert_int_equal(cellar_scan_source(buf, n, &s, NULL), CELLAR_OK);
        assert_true(cellar_scan_error_count(s) <= 100);
        cellar_scan_free(s);
    }
    /* deep indentation */
    size_t n = 0;
    for (int d = 0; d < 150 && n + 200 < size; d++) {
        for (int i = 0; i < d; i++)
            buf[n++] = ' ';
        memcpy(buf + n, "if x:\n", 6);
        n += 6;
    }
    cellar_scan *s = NULL;
    assert_int_equal(cellar_scan_source(buf, n, &s, NULL), CELLAR_OK);
    assert_int_equal(cellar_scan_error_count(s), 1);
    assert_non_null(strstr(cellar_scan_error_at(s, 0)->message, "indentation"));
    cellar_scan_free(s);
    free(buf);
}

/* A large valid cell, scanned in many token batches: 20000 functions, all found. */
static void test_many_functions(void **state)
{
    (void)state;
    size_t cap = 20000 * 64, n = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (int i = 0; i < 20000; i++)
        n += (size_t)snprintf(buf + n, cap - n, "@d\ndef f%d(a, b=%d):\n    return a\n",
                              i, i);
    cellar_scan *s = NULL;
    assert_int_equal(cellar_scan_source(buf, n, &s, NULL), CELLAR_OK);
    assert_int_equal(cellar_scan_function_count(s), 20000);
    for (size_t i = 0; i < 20000; i++) /* no decorator split from its def */
        assert_int_equal(cellar_scan_function_at(s, i)->decorators, 1);
    const cellar_function *last = cellar_scan_function_at(s, 19999);
    assert_string_equal(last->name, "f19999");
    assert_int_equal(last->line, 19999 * 3 + 2);
    assert_int_equal(last->first_line, 19999 * 3 + 1);
    assert_int_equal(last->nparams, 2);
    assert_string_equal(last->params[1].name, "b");
    cellar_scan_free(s);
    free(buf);
}

/* ---- code versions ------------------------------------------------------- */

static const char base[] = "@dec(1)\n"
                           "def f(a, b=2):\n"
                           "    \"\"\"Adds.\"\"\"\n"
                           "    total = 0\n"
                           "    for i in range(a):\n"
                           "        total += i + b\n"
                           "        print(total)\n"
                           "    return total\n";

static void test_version_ignores_layout(void **state)
{
    (void)state;
    /* indentation width: 2 spaces, tabs, and mixed per block */
    same_version(base, "@dec(1)\n"
                       "def f(a, b=2):\n"
                       "  \"\"\"Adds.\"\"\"\n"
                       "  total = 0\n"
                       "  for i in range(a):\n"
                       "    total += i + b\n"
                       "    print(total)\n"
                       "  return total\n");
    same_version(base, "@dec(1)\n"
                       "def f(a, b=2):\n"
                       "\t\"\"\"Adds.\"\"\"\n"
                       "\ttotal = 0\n"
                       "\tfor i in range(a):\n"
                       "\t\ttotal += i + b\n"
                       "\t\tprint(total)\n"
                       "\treturn total\n");
    /* comments, blank lines, spaces between tokens, continuations, CRLF */
    same_version(base, "# leading comment\n"
                       "@dec( 1 )  # why\n"
                       "\n"
                       "def f(a,b = 2):  # sig\n"
                       "    \"\"\"Adds.\"\"\"\n"
                       "\n"
                       "    # a comment line\n"
                       "    total = \\\n"
                       "        0\n"
                       "    for i in range(\n"
                       "        a):\n"
                       "        total += i + b   # sum\n"
                       "\n"
                       "        print(total)\n"
                       "    return total\n"
                       "# trailing comment\n");
    char crlf[sizeof base * 2];
    size_t n = 0;
    for (const char *p = base; *p; p++) {
        if (*p == '\n')
            crlf[n++] = '\r';
        crlf[n++] = *p;
    }
    crlf[n] = '\0';
    same_version(base, crlf);
    /* the docstring: edited, removed, other quotes, implicit concatenation */
    same_version(base, "@dec(1)\n"
                       "def f(a, b=2):\n"
                       "    '''A completely different docstring\n\n    over lines.'''\n"
                       "    total = 0\n"
                       "    for i in range(a):\n"
                       "        total += i + b\n"
                       "        print(total)\n"
                       "    return total\n");
    same_version(base, "@dec(1)\n"
                       "def f(a, b=2):\n"
                       "    total = 0\n"
                       "    for i in range(a):\n"
                       "        total += i + b\n"
                       "        print(total)\n"
                       "    return total\n");
    same_version(base, "@dec(1)\n"
                       "def f(a, b=2):\n"
                       "    r\"Adds \" 'two' u\"\"\"things\"\"\"\n"
                       "    total = 0\n"
                       "    for i in range(a):\n"
                       "        total += i + b\n"
                       "        print(total)\n"
                       "    return total\n");
    /* line breaks inside multi-line strings, whatever the file uses */
    same_version("def g():\n    return '''a\nb\nc'''\n",
                 "def g():\r\n    return '''a\r\nb\rc'''\r\n");
    different_version("def g():\n    return '''a\nb'''\n",
                      "def g():\n    return '''a\n\nb'''\n");
    same_version("def g(): return 1\n", "def g(): 'doc'; return 1\n");
    same_version("def g(x):\n    return x\n", "def g(x):\n    \"doc\"\n    return x\n");
    /* the code around the function does not matter, nor its position */
    same_version("def g(x):\n    return x\n",
                 "import os\nx = 1\n\n\n# hi\ndef g(x):\n    return x\ny = 2\n");
    same_version("def g(x):\n    return x\n", "%%time\ndef g(x):\n    return x\n");
}

static void test_version_sees_code(void **state)
{
    (void)state;
    const char *variants[] = {
        /* operator */
        "@dec(1)\ndef f(a, b=2):\n    total = 0\n    for i in range(a):\n"
        "        total -= i + b\n        print(total)\n    return total\n",
        /* literal */
        "@dec(1)\ndef f(a, b=2):\n    total = 1\n    for i in range(a):\n"
        "        total += i + b\n        print(total)\n    return total\n",
        /* default */
        "@dec(1)\ndef f(a, b=3):\n    total = 0\n    for i in range(a):\n"
        "        total += i + b\n        print(total)\n    return total\n",
        /* decorator argument */
        "@dec(2)\ndef f(a, b=2):\n    total = 0\n    for i in range(a):\n"
        "        total += i + b\n        print(total)\n    return total\n",
        /* no decorator */
        "def f(a, b=2):\n    total = 0\n    for i in range(a):\n"
        "        total += i + b\n        print(total)\n    return total\n",
        /* statement moved out of the loop */
        "@dec(1)\ndef f(a, b=2):\n    total = 0\n    for i in range(a):\n"
        "        total += i + b\n    print(total)\n    return total\n",
        /* name */
        "@dec(1)\ndef f(a, c=2):\n    total = 0\n    for i in range(a):\n"
        "        total += i + c\n        print(total)\n    return total\n",
        /* function name */
        "@dec(1)\ndef g(a, b=2):\n    total = 0\n    for i in range(a):\n"
        "        total += i + b\n        print(total)\n    return total\n",
        /* a string that is not the docstring */
        "@dec(1)\ndef f(a, b=2):\n    total = 0\n    for i in range(a):\n"
        "        total += i + b\n        print(total, 'x')\n    return total\n",
        /* async */
        "@dec(1)\nasync def f(a, b=2):\n    total = 0\n    for i in range(a):\n"
        "        total += i + b\n        print(total)\n    return total\n",
    };
    const char *plain =
        "@dec(1)\ndef f(a, b=2):\n    total = 0\n    for i in range(a):\n"
        "        total += i + b\n        print(total)\n    return total\n";
    same_version(base, plain);
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++)
        different_version(plain, variants[i]);
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++)
        for (size_t j = i + 1; j < sizeof variants / sizeof variants[0]; j++)
            different_version(variants[i], variants[j]);
    /* strings that are not docstrings keep their text */
    different_version("def g():\n    f'doc'\n    return 1\n", "def g():\n    return 1\n");
    different_version("def g():\n    b'doc'\n    return 1\n", "def g():\n    return 1\n");
    different_version("def g():\n    'a' + 'b'\n    return 1\n",
                      "def g():\n    return 1\n");
    different_version("def g():\n    x = 1\n    'not doc'\n", "def g():\n    x = 1\n");
    different_version("def g():\n    return 'a'\n", "def g():\n    return \"a\"\n");
    different_version("def g(): return [1, 2]\n", "def g(): return [1, 2,]\n");
    different_version("def g():\n    %time h()\n", "def g():\n    %time k()\n");
    /* indentation structure */
    different_version("def g():\n    if a:\n        b()\n    c()\n",
                      "def g():\n    if a:\n        b()\n        c()\n");
    different_version("def g(x: int): pass\n", "def g(x: str): pass\n");
    different_version("def g() -> int: pass\n", "def g() -> str: pass\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_top_level_only),
        cmocka_unit_test(test_spans_and_decorators),
        cmocka_unit_test(test_param_kinds),
        cmocka_unit_test(test_param_defaults_and_annotations),
        cmocka_unit_test(test_string_forms),
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_ipython_lines),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_functions_before_an_error_survive),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_exact_length),
        cmocka_unit_test(test_pathological_inputs),
        cmocka_unit_test(test_many_functions),
        cmocka_unit_test(test_version_ignores_layout),
        cmocka_unit_test(test_version_sees_code),
        cmocka_unit_test(test_identifiers_kept_for_nfkc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
