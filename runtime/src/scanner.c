/*
 * scanner.c - finds a cell's top-level functions in the token stream.
 *
 * tokenizer.c turns the source into tokens; this file walks them once,
 * keeping the indentation level from INDENT/DEDENT.  At level zero, `@`
 * lines are counted as decorators and a `def` / `async def` is parsed: its
 * name, optional type parameters, the parameter list (split at commas that
 * are not inside brackets or inside a lambda's own parameters), the return
 * annotation and the body, which ends at the DEDENT back to level zero (or
 * at the NEWLINE of a one-line body).  Everything is bracket counting over
 * the flat token array, so nesting costs no recursion.
 *
 * The code version is a streaming XXH3-128 over the function's tokens from
 * the first decorator to the end of its body, each fed as one tagged,
 * length-prefixed segment (tag = token type, bytes = token text), skipping
 * the docstring.  Comments, blank lines, continuations and indentation width
 * never became tokens, so they cannot change it.
 *
 * Names and messages are collected in one string pool and the public arrays
 * are built at the end, so a result is a handful of allocations.
 */
#include "cellar/scanner.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

enum { MAX_ERRORS = 100 };

typedef struct fn_rec {
    cellar_function pub; /* name and params filled in at the end */
    size_t name_off;
    size_t first_param;
} fn_rec;

typedef struct param_rec {
    size_t name_off;
    cellar_param_kind kind;
    bool has_default;
} param_rec;

typedef struct err_rec {
    int line, col;
    size_t msg_off;
} err_rec;

struct cellar_scan {
    char *pool;
    size_t pool_len, pool_cap;
    fn_rec *fns;
    size_t nfns, fns_cap;
    param_rec *prm;
    size_t nprm, prm_cap;
    err_rec *errs;
    size_t nerrs, errs_cap;
    /* built by finalize() */
    cellar_function *functions;
    cellar_param *params;
    cellar_scan_error *errors;
};

typedef struct scanner {
    const char *src;
    const tok *t;
    size_t n;
    cellar_scan *out;
    cellar_fingerprint *fp;
    bool oom;
} scanner;

const char *cellar_param_kind_name(cellar_param_kind kind)
{
    switch (kind) {
    case CELLAR_PARAM_POSITIONAL_ONLY: return "positional_only";
    case CELLAR_PARAM_POSITIONAL_OR_KEYWORD: return "positional_or_keyword";
    case CELLAR_PARAM_VAR_POSITIONAL: return "var_positional";
    case CELLAR_PARAM_KEYWORD_ONLY: return "keyword_only";
    case CELLAR_PARAM_VAR_KEYWORD: return "var_keyword";
    }
    return "unknown";
}

/* ---- growable storage --------------------------------------------------- */

static bool grow(void **v, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return true;
    size_t cap2 = *cap ? *cap * 2 : 16;
    while (cap2 < need)
        cap2 *= 2;
    void *nv = realloc(*v, cap2 * size);
    if (!nv)
        return false;
    *v = nv;
    *cap = cap2;
    return true;
}

/* Copies len bytes and a NUL into the pool; returns the offset, or SIZE_MAX. */
static size_t pool_add(scanner *sc, const char *s, size_t len)
{
    cellar_scan *o = sc->out;
    if (!grow((void **)&o->pool, &o->pool_cap, o->pool_len + len + 1, 1)) {
        sc->oom = true;
        return SIZE_MAX;
    }
    size_t off = o->pool_len;
    memcpy(o->pool + off, s, len);
    o->pool[off + len] = '\0';
    o->pool_len += len + 1;
    return off;
}

static void add_error(scanner *sc, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void add_error(scanner *sc, int line, int col, const char *fmt, ...)
{
    cellar_scan *o = sc->out;
    if (sc->oom || o->nerrs >= MAX_ERRORS)
        return;
    char msg[TOK_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    /* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): va_start is right above */
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t off = pool_add(sc, msg, strlen(msg));
    if (off == SIZE_MAX ||
        !grow((void **)&o->errs, &o->errs_cap, o->nerrs + 1, sizeof *o->errs)) {
        sc->oom = true;
        return;
    }
    o->errs[o->nerrs++] = (err_rec){.line = line, .col = col, .msg_off = off};
}

/* The 0-based byte column of token i (only needed for error messages). */
static int tok_col(const scanner *sc, size_t i)
{
    size_t p = sc->t[i].start;
    size_t b = p;
    while (b > 0 && sc->src[b - 1] != '\n' && sc->src[b - 1] != '\r')
        b--;
    return (int)(p - b);
}

static void error_at_tok(scanner *sc, size_t i, const char *what)
{
    add_error(sc, (int)sc->t[i].line, tok_col(sc, i), "%s", what);
}

/* ---- token predicates --------------------------------------------------- */

static bool tok_is(const scanner *sc, size_t i, tok_type type, const char *text)
{
    const tok *t = &sc->t[i];
    size_t len = strlen(text);
    return t->type == type && t->len == len && !memcmp(sc->src + t->start, text, len);
}

static bool is_op(const scanner *sc, size_t i, const char *text)
{
    return tok_is(sc, i, TOK_OP, text);
}

static bool is_name(const scanner *sc, size_t i, const char *text)
{
    return tok_is(sc, i, TOK_NAME, text);
}

/* END or ERROR: the stream is over. */
static bool at_end(const scanner *sc, size_t i)
{
    return sc->t[i].type == TOK_END || sc->t[i].type == TOK_ERROR;
}

static bool is_opener(const scanner *sc, size_t i)
{
    return is_op(sc, i, "(") || is_op(sc, i, "[") || is_op(sc, i, "{");
}

static bool is_closer(const scanner *sc, size_t i)
{
    return is_op(sc, i, ")") || is_op(sc, i, "]") || is_op(sc, i, "}");
}

/* Index just past the NEWLINE ending the logical line at i (or at the end). */
static size_t skip_line(const scanner *sc, size_t i)
{
    while (!at_end(sc, i) && sc->t[i].type != TOK_NEWLINE)
        i++;
    return at_end(sc, i) ? i : i + 1;
}

/*
 * Skips an expression from i to the first token that ends it at this level:
 * a ',', ')', '=' (or ':' when stop_colon) outside brackets and outside a
 * lambda's own parameter list.  Returns that token's index; NEWLINE and the
 * end of the stream also stop it.
 */
static size_t skip_expr(const scanner *sc, size_t i, bool stop_colon)
{
    int depth = 0;
    size_t lambdas = 0; /* lambdas whose ':' is still to come */
    for (; !at_end(sc, i) && sc->t[i].type != TOK_NEWLINE; i++) {
        if (is_opener(sc, i)) {
            depth++;
        } else if (is_closer(sc, i)) {
            if (depth == 0)
                return i;
            depth--;
        } else if (depth == 0) {
            if (is_name(sc, i, "lambda")) {
                lambdas++;
            } else if (is_op(sc, i, ":")) {
                if (lambdas)
                    lambdas--;
                else if (stop_colon)
                    return i;
            } else if (lambdas == 0 && (is_op(sc, i, ",") || is_op(sc, i, "="))) {
                return i;
            }
        }
    }
    return i;
}

/* Skips a bracketed group starting at the opener i; returns the index after
 * its closer (or of the NEWLINE/end that interrupted it). */
static size_t skip_group(const scanner *sc, size_t i)
{
    int depth = 0;
    for (; !at_end(sc, i) && sc->t[i].type != TOK_NEWLINE; i++) {
        if (is_opener(sc, i))
            depth++;
        else if (is_closer(sc, i) && --depth == 0)
            return i + 1;
    }
    return i;
}

/* ---- parameters ---------------------------------------------------------- */

static bool add_param(scanner *sc, size_t name_tok, cellar_param_kind kind)
{
    cellar_scan *o = sc->out;
    size_t off = pool_add(sc, sc->src + sc->t[name_tok].start, sc->t[name_tok].len);
    if (off == SIZE_MAX ||
        !grow((void **)&o->prm, &o->prm_cap, o->nprm + 1, sizeof *o->prm)) {
        sc->oom = true;
        return false;
    }
    o->prm[o->nprm++] = (param_rec){.name_off = off, .kind = kind};
    return true;
}

/* After a parameter's name: skips `: annotation` and `= default`. */
static size_t param_tail(scanner *sc, size_t i)
{
    if (is_op(sc, i, ":"))
        i = skip_expr(sc, i + 1, false);
    if (is_op(sc, i, "=")) {
        sc->out->prm[sc->out->nprm - 1].has_default = true;
        i = skip_expr(sc, i + 1, false);
    }
    return i;
}

/*
 * Parses the parameter list whose '(' is at i, appending to the params from
 * index `first`; returns the index after ')', or 0 when the list is broken.
 */
static size_t parse_params(scanner *sc, size_t i, size_t first)
{
    cellar_param_kind kind = CELLAR_PARAM_POSITIONAL_OR_KEYWORD;
    i++;
    while (!sc->oom) {
        if (is_op(sc, i, ")"))
            return i + 1;
        if (is_op(sc, i, "/")) {
            for (size_t k = first; k < sc->out->nprm; k++)
                sc->out->prm[k].kind = CELLAR_PARAM_POSITIONAL_ONLY;
            i++;
        } else if (is_op(sc, i, "*") || is_op(sc, i, "**")) {
            bool two = is_op(sc, i, "**");
            i++;
            if (sc->t[i].type == TOK_NAME) {
                if (!add_param(sc, i,
                               two ? CELLAR_PARAM_VAR_KEYWORD
                                   : CELLAR_PARAM_VAR_POSITIONAL))
                    return 0;
                i = param_tail(sc, i + 1);
            }
            if (!two)
                kind = CELLAR_PARAM_KEYWORD_ONLY;
        } else if (sc->t[i].type == TOK_NAME) {
            if (!add_param(sc, i, kind))
                return 0;
            i = param_tail(sc, i + 1);
        } else {
            if (!at_end(sc, i))
                error_at_tok(sc, i, "invalid syntax in parameter list");
            return 0;
        }
        if (is_op(sc, i, ",")) {
            i++;
        } else if (!is_op(sc, i, ")")) {
            if (!at_end(sc, i))
                error_at_tok(sc, i, "expected ',' or ')' in parameter list");
            return 0;
        }
    }
    return 0;
}

/* ---- bodies and code versions -------------------------------------------- */

static const char type_tag[] = {
    [TOK_NAME] = 'n',    [TOK_NUMBER] = '1', [TOK_STRING] = 's', [TOK_OP] = 'o',
    [TOK_NEWLINE] = 'L', [TOK_INDENT] = '>', [TOK_DEDENT] = '<', [TOK_MAGIC] = '%',
};

static bool plain_string(const scanner *sc, size_t i)
{
    return sc->t[i].type == TOK_STRING &&
           !(sc->t[i].flags & (TOKF_FORMATTED | TOKF_BYTES));
}

/*
 * Finds the docstring at the body's first statement (index b): one or more
 * plain string literals forming the whole statement.  Sets [*from, *to) to
 * the tokens to leave out of the code version, or leaves them equal.
 */
static void find_docstring(const scanner *sc, size_t b, bool block, size_t *from,
                           size_t *to)
{
    *from = *to = b;
    size_t k = b;
    while (plain_string(sc, k))
        k++;
    if (k == b)
        return;
    if (is_op(sc, k, ";") || (block && sc->t[k].type == TOK_NEWLINE))
        *to = k + 1;
    else if (sc->t[k].type == TOK_NEWLINE)
        *to = k;
    else
        return;
    *from = b;
}

/*
 * Feeds one token as a (type tag, text) segment.  Line breaks inside a token
 * (multi-line strings, continued magics) are fed as "\n" whatever the file
 * used, as Python itself reads them, so CRLF and LF copies of a cell agree.
 */
static void add_token(scanner *sc, const tok *t)
{
    const char *p = sc->src + t->start, *end = p + t->len;
    if (!memchr(p, '\r', t->len)) {
        cellar_fingerprint_add(sc->fp, type_tag[t->type], p, t->len);
        return;
    }
    size_t len = t->len;
    for (const char *q = p; q + 1 < end; q++)
        if (q[0] == '\r' && q[1] == '\n')
            len--;
    cellar_fingerprint_begin(sc->fp, type_tag[t->type], len);
    while (p < end) {
        const char *cr = memchr(p, '\r', (size_t)(end - p));
        if (!cr) {
            cellar_fingerprint_update(sc->fp, p, (size_t)(end - p));
            break;
        }
        cellar_fingerprint_update(sc->fp, p, (size_t)(cr - p));
        cellar_fingerprint_update(sc->fp, "\n", 1);
        p = cr + 1 + (cr + 1 < end && cr[1] == '\n');
    }
}

static cellar_hash code_version(scanner *sc, size_t from, size_t to, size_t body,
                                bool block)
{
    size_t ds_from, ds_to;
    find_docstring(sc, body, block, &ds_from, &ds_to);
    cellar_fingerprint_reset(sc->fp);
    for (size_t i = from; i <= to; i++) {
        if (i >= ds_from && i < ds_to)
            continue;
        add_token(sc, &sc->t[i]);
    }
    return cellar_fingerprint_digest(sc->fp);
}

/*
 * Finds the end of a body starting after the header's ':' at i.  Sets *last to
 * the body's last significant token and *first to its first statement; returns
 * the index of the body's closing token (DEDENT or NEWLINE), or 0 when the
 * stream ended first (then the function is incomplete).
 */
static size_t find_body_end(const scanner *sc, size_t i, size_t *first, size_t *last,
                            bool *block)
{
    *block = sc->t[i].type == TOK_NEWLINE;
    if (!*block) {
        *first = i;
        for (; !at_end(sc, i) && sc->t[i].type != TOK_NEWLINE; i++)
            *last = i;
        return at_end(sc, i) || i == *first ? 0 : i;
    }
    if (sc->t[i + 1].type != TOK_INDENT)
        return 0;
    i += 2;
    *first = i;
    *last = i;
    size_t level = 1;
    for (; !at_end(sc, i); i++) {
        tok_type ty = (tok_type)sc->t[i].type;
        if (ty == TOK_INDENT)
            level++;
        else if (ty == TOK_DEDENT && --level == 0)
            return i;
        else if (ty != TOK_NEWLINE && ty != TOK_DEDENT)
            *last = i;
    }
    return 0;
}

static void record_function(scanner *sc, const cellar_function *f, size_t name_tok,
                            size_t first_param)
{
    cellar_scan *o = sc->out;
    size_t off = pool_add(sc, sc->src + sc->t[name_tok].start, sc->t[name_tok].len);
    if (off == SIZE_MAX ||
        !grow((void **)&o->fns, &o->fns_cap, o->nfns + 1, sizeof *o->fns)) {
        sc->oom = true;
        return;
    }
    o->fns[o->nfns++] = (fn_rec){.pub = *f, .name_off = off, .first_param = first_param};
}

/*
 * Parses the function whose `def` (or `async`) is at i, decorated from token
 * `from` with `decorators` decorators.  Returns where scanning resumes.
 */
static size_t parse_def(scanner *sc, size_t i, size_t from, int decorators)
{
    cellar_function f = {.line = (int)sc->t[i].line, .decorators = decorators};
    f.first_line = (int)sc->t[from].line;
    size_t start = i;
    if (is_name(sc, i, "async")) {
        f.is_async = true;
        i++;
    }
    i++; /* def */
    size_t name = i;
    size_t first_param = sc->out->nprm;
    if (sc->t[name].type != TOK_NAME) {
        error_at_tok(sc, at_end(sc, name) ? start : name,
                     "expected a function name after 'def'");
        return skip_line(sc, i);
    }
    i++;
    if (is_op(sc, i, "["))
        i = skip_group(sc, i);
    if (!is_op(sc, i, "(")) {
        error_at_tok(sc, at_end(sc, i) ? name : i,
                     "expected '(' after the function name");
        sc->out->nprm = first_param;
        return skip_line(sc, i);
    }
    i = parse_params(sc, i, first_param);
    if (i && is_op(sc, i, "->"))
        i = skip_expr(sc, i + 1, true);
    if (i && !is_op(sc, i, ":")) {
        if (!at_end(sc, i))
            error_at_tok(sc, i, "expected ':' after the function signature");
        i = 0;
    }
    size_t first, last = 0, end = 0;
    bool block = false;
    if (i)
        end = find_body_end(sc, i + 1, &first, &last, &block);
    if (!end || sc->oom) {
        sc->out->nprm = first_param; /* incomplete: not reported */
        return i ? i + 1 : skip_line(sc, name);
    }
    f.end_line = (int)sc->t[last].end_line;
    f.nparams = sc->out->nprm - first_param;
    f.code_version = code_version(sc, from, end, first, block);
    record_function(sc, &f, name, first_param);
    return end + 1;
}

/* ---- the walk over top-level statements ------------------------------------ */

static void scan_tokens(scanner *sc)
{
    size_t i = 0, from = 0;
    int level = 0, decorators = 0;
    while (!at_end(sc, i) && !sc->oom) {
        tok_type ty = (tok_type)sc->t[i].type;
        if (ty == TOK_INDENT || ty == TOK_DEDENT) {
            level += ty == TOK_INDENT ? 1 : -1;
            i++;
            continue;
        }
        if (level == 0 && is_op(sc, i, "@")) {
            if (decorators++ == 0)
                from = i;
            i = skip_line(sc, i);
            continue;
        }
        if (level == 0 && (is_name(sc, i, "def") ||
                           (is_name(sc, i, "async") && is_name(sc, i + 1, "def")))) {
            i = parse_def(sc, i, decorators ? from : i, decorators);
            decorators = 0;
            continue;
        }
        decorators = 0;
        i = skip_line(sc, i);
    }
}

/* Scans one batch of tokens (see tokenizer.h); false when out of memory. */
static bool scan_batch(void *ctx, const tok_list *batch)
{
    scanner *sc = ctx;
    sc->t = batch->v;
    sc->n = batch->n;
    scan_tokens(sc);
    return !sc->oom;
}

/* Builds the public arrays and points every name into the pool. */
static bool finalize(cellar_scan *o)
{
    if (o->nprm && !(o->params = calloc(o->nprm, sizeof *o->params)))
        return false;
    if (o->nfns && !(o->functions = calloc(o->nfns, sizeof *o->functions)))
        return false;
    if (o->nerrs && !(o->errors = calloc(o->nerrs, sizeof *o->errors)))
        return false;
    for (size_t k = 0; k < o->nprm; k++)
        o->params[k] = (cellar_param){.name = o->pool + o->prm[k].name_off,
                                      .kind = o->prm[k].kind,
                                      .has_default = o->prm[k].has_default};
    for (size_t k = 0; k < o->nfns; k++) {
        o->functions[k] = o->fns[k].pub;
        o->functions[k].name = o->pool + o->fns[k].name_off;
        o->functions[k].params =
            o->fns[k].pub.nparams ? o->params + o->fns[k].first_param : NULL;
    }
    for (size_t k = 0; k < o->nerrs; k++)
        o->errors[k] = (cellar_scan_error){.line = o->errs[k].line,
                                           .col = o->errs[k].col,
                                           .message = o->pool + o->errs[k].msg_off};
    return true;
}

cellar_status cellar_scan_source(const char *source, size_t len, cellar_scan **out,
                                 cellar_error *err)
{
    if (!out || (!source && len))
        return cellar_error_set(err, CELLAR_EINVAL, "cellar_scan_source: NULL argument");
    *out = NULL;
    tok_list toks = {0};
    scanner sc = {.src = source ? source : ""};
    sc.out = calloc(1, sizeof *sc.out);
    sc.fp = cellar_fingerprint_new();
    bool ok =
        sc.out && sc.fp && tokenize(sc.src, len, &toks, scan_batch, &sc) == CELLAR_OK;
    if (ok) {
        if (toks.has_error)
            add_error(&sc, toks.err_line, toks.err_col, "%s", toks.err_message);
        ok = !sc.oom && finalize(sc.out);
    }
    tok_list_free(&toks);
    cellar_fingerprint_free(sc.fp);
    if (!ok) {
        cellar_scan_free(sc.out);
        return cellar_error_set(err, CELLAR_ENOMEM,
                                "out of memory while scanning %zu bytes", len);
    }
    *out = sc.out;
    cellar_error_clear(err);
    return CELLAR_OK;
}

void cellar_scan_free(cellar_scan *scan)
{
    if (!scan)
        return;
    free(scan->pool);
    free(scan->fns);
    free(scan->prm);
    free(scan->errs);
    free(scan->functions);
    free(scan->params);
    free(scan->errors);
    free(scan);
}

size_t cellar_scan_function_count(const cellar_scan *scan)
{
    return scan ? scan->nfns : 0;
}

const cellar_function *cellar_scan_function_at(const cellar_scan *scan, size_t i)
{
    return scan && i < scan->nfns ? &scan->functions[i] : NULL;
}

size_t cellar_scan_error_count(const cellar_scan *scan)
{
    return scan ? scan->nerrs : 0;
}

const cellar_scan_error *cellar_scan_error_at(const cellar_scan *scan, size_t i)
{
    return scan && i < scan->nerrs ? &scan->errors[i] : NULL;
}
