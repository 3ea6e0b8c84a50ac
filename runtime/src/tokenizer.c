/*
 * tokenizer.c - a single-pass Python tokenizer that also understands the
 * IPython line syntax a notebook cell may hold.
 *
 * The lexer walks the bytes once.  At the start of each logical line it
 * measures indentation (tab stops of 8, form feed resets, and a second count
 * with tabs as 1 to catch inconsistent tabs and spaces, as CPython does) and
 * emits INDENT/DEDENT; an INDENT is only legal after a line ending in ':'.
 * A line that starts with `%`, `!` or `?`, or a `%`/`!` right after a
 * top-level `=`, is IPython syntax and becomes one MAGIC token up to the end
 * of the line.  Strings, including f-strings with nested replacement fields,
 * nested quotes of any kind and format specs, are lexed with an explicit
 * stack of frames (literal text / expression / format spec), never by
 * recursion, so nesting depth costs no C stack and is capped.  Brackets are
 * tracked on a bounded stack too.  Every loop advances the position, so the
 * whole thing is linear in the input.
 */
#include "tokenizer.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    MAX_BRACKETS = 200, /* CPython's MAXLEVEL */
    MAX_INDENT = 100,   /* CPython's MAXINDENT */
    MAX_FRAMES = 200,   /* f-string frames (literal, expression, spec) */
    TAB_SIZE = 8,
    BATCH_MIN = 4096, /* tokens collected before a batch is handed over */
};

typedef enum frame_kind { FR_TEXT, FR_EXPR, FR_SPEC } frame_kind;

typedef struct frame {
    uint8_t kind;   /* frame_kind */
    char quote;     /* quote character of the string this text belongs to */
    bool triple;    /* that string is triple-quoted */
    bool raw;       /* ... raw */
    bool formatted; /* ... an f-string (or t-string) */
    int depth;      /* FR_EXPR: open brackets inside the expression */
} frame;

typedef struct lexer {
    const char *s;
    size_t n, p;
    uint32_t line;
    size_t line_start;
    tok_list *out;
    bool stop; /* an error was recorded, or memory ran out */
    bool oom;

    int depth; /* open brackets */
    char bracket[MAX_BRACKETS];
    uint32_t bracket_line[MAX_BRACKETS];
    int bracket_col[MAX_BRACKETS];

    int nindent; /* indent[0] is the zero level */
    int indent[MAX_INDENT + 1];
    int alt_indent[MAX_INDENT + 1];

    bool at_line_start;   /* next byte begins a logical line */
    bool line_has_tokens; /* the current logical line emitted something */
    bool after_colon;     /* the last logical line ended with ':' */
    uint32_t colon_line;
    size_t line_first;    /* index of the current logical line's first token */
    bool after_decorator; /* the last logical line started with '@' */
    tok_batch_fn batch_fn;
    void *batch_ctx;

    frame frames[MAX_FRAMES];
} lexer;

static size_t newline_len(const lexer *lx, size_t p)
{
    if (p >= lx->n)
        return 0;
    if (lx->s[p] == '\n')
        return 1;
    if (lx->s[p] == '\r')
        return (p + 1 < lx->n && lx->s[p + 1] == '\n') ? 2 : 1;
    return 0;
}

/* Consumes the line break at *p (of length nl) and counts the line. */
static void take_newline(lexer *lx, size_t *p, size_t nl)
{
    *p += nl;
    lx->line++;
    lx->line_start = *p;
}

static int col_of(const lexer *lx, size_t p)
{
    return (int)(p - lx->line_start);
}

static void fail_at(lexer *lx, uint32_t line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static bool emit(lexer *lx, tok_type type, size_t start, size_t len, uint32_t line,
                 uint8_t flags)
{
    tok_list *o = lx->out;
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 256;
        tok *v = realloc(o->v, cap * sizeof *v);
        if (!v) {
            lx->oom = lx->stop = true;
            return false;
        }
        o->v = v;
        o->cap = cap;
    }
    o->v[o->n++] = (tok){.start = (uint32_t)start,
                         .len = (uint32_t)len,
                         .line = line,
                         .end_line = lx->line,
                         .type = (uint8_t)type,
                         .flags = flags};
    if (type != TOK_NEWLINE && type != TOK_INDENT && type != TOK_DEDENT)
        lx->line_has_tokens = true;
    return true;
}

/* Records the (only) source error and ends the stream with TOK_ERROR. */
static void fail_at(lexer *lx, uint32_t line, int col, const char *fmt, ...)
{
    if (lx->stop)
        return;
    tok_list *o = lx->out;
    va_list ap;
    va_start(ap, fmt);
    /* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): va_start is right above */
    vsnprintf(o->err_message, sizeof o->err_message, fmt, ap);
    va_end(ap);
    o->err_line = (int)line;
    o->err_col = col;
    o->has_error = true;
    emit(lx, TOK_ERROR, lx->p < lx->n ? lx->p : lx->n, 0, line, 0);
    lx->stop = true;
}

static const tok *last_tok(const lexer *lx)
{
    return lx->out->n ? &lx->out->v[lx->out->n - 1] : NULL;
}

static bool is_op(const lexer *lx, const tok *t, char c)
{
    return t && t->type == TOK_OP && t->len == 1 && lx->s[t->start] == c;
}

static bool ident_start(unsigned char c)
{
    return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
}

static bool ident_char(unsigned char c)
{
    return ident_start(c) || (c >= '0' && c <= '9');
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* ---- indentation --------------------------------------------------- */

/* Emits the NEWLINE that ends a logical line. */
static void end_logical_line(lexer *lx, size_t at)
{
    if (!lx->line_has_tokens)
        return;
    lx->after_colon = is_op(lx, last_tok(lx), ':');
    lx->colon_line = lx->line;
    lx->after_decorator =
        lx->line_first < lx->out->n && is_op(lx, &lx->out->v[lx->line_first], '@');
    emit(lx, TOK_NEWLINE, at, 0, lx->line, 0);
    lx->line_has_tokens = false;
}

static void indent_line(lexer *lx, int col, int alt, size_t at)
{
    int top = lx->nindent - 1;
    int c = col_of(lx, at);
    if (col > lx->indent[top]) {
        if (!lx->after_colon) {
            fail_at(lx, lx->line, c, "unexpected indent");
            return;
        }
        if (alt <= lx->alt_indent[top]) {
            fail_at(lx, lx->line, c,
                    "inconsistent use of tabs and spaces in indentation");
            return;
        }
        if (lx->nindent > MAX_INDENT) {
            fail_at(lx, lx->line, c, "too many levels of indentation");
            return;
        }
        lx->indent[lx->nindent] = col;
        lx->alt_indent[lx->nindent] = alt;
        lx->nindent++;
        emit(lx, TOK_INDENT, at, 0, lx->line, 0);
        return;
    }
    if (lx->after_colon) {
        fail_at(lx, lx->line, c, "expected an indented block after the ':' on line %u",
                (unsigned)lx->colon_line);
        return;
    }
    /* find the level first: a bad unindent must not close the open blocks,
     * or the function it interrupts would look complete */
    while (top > 0 && col < lx->indent[top])
        top--;
    if (col != lx->indent[top]) {
        fail_at(lx, lx->line, c, "unindent does not match any outer indentation level");
        return;
    }
    if (alt != lx->alt_indent[top]) {
        fail_at(lx, lx->line, c, "inconsistent use of tabs and spaces in indentation");
        return;
    }
    while (lx->nindent - 1 > top) {
        lx->nindent--;
        if (!emit(lx, TOK_DEDENT, at, 0, lx->line, 0))
            return;
    }
}

/* Ends the current batch with TOK_END, hands it over and starts a new one. */
static void hand_over(lexer *lx)
{
    if (!emit(lx, TOK_END, lx->p, 0, lx->line, 0))
        return;
    if (!lx->batch_fn(lx->batch_ctx, lx->out))
        lx->oom = lx->stop = true;
    lx->out->n = 0;
}

/* ---- IPython lines --------------------------------------------------- */

/* One MAGIC token from lx->p to the end of the line, following backslash
 * continuations as IPython does; trailing blanks are not part of it. */
static void lex_magic(lexer *lx)
{
    size_t start = lx->p, p = lx->p, end = p;
    uint32_t line = lx->line;
    while (p < lx->n) {
        size_t nl = newline_len(lx, p);
        if (nl) {
            if (p > start && lx->s[p - 1] == '\\' && p + nl < lx->n) {
                take_newline(lx, &p, nl);
                continue;
            }
            break;
        }
        if (lx->s[p] != ' ' && lx->s[p] != '\t' && lx->s[p] != '\f')
            end = p + 1;
        p++;
    }
    lx->p = p;
    emit(lx, TOK_MAGIC, start, end - start, line, 0);
}

/* True for `%`/`!` right after a top-level `=`: `x = %magic`, `a, b = !cmd`. */
static bool assign_magic(const lexer *lx, char c)
{
    if ((c != '%' && c != '!') || lx->depth || !lx->line_has_tokens)
        return false;
    if (c == '!' && lx->p + 1 < lx->n && lx->s[lx->p + 1] == '=')
        return false;
    return is_op(lx, last_tok(lx), '=');
}

/* Measures the indentation of a new logical line; skips it when it is blank or
 * only a comment (NL); emits INDENT/DEDENT; lexes a leading IPython escape. */
static void line_start(lexer *lx)
{
    int col = 0, alt = 0;
    size_t p = lx->p;
    for (; p < lx->n; p++) {
        char c = lx->s[p];
        if (c == ' ') {
            col++, alt++;
        } else if (c == '\t') {
            col = (col / TAB_SIZE + 1) * TAB_SIZE;
            alt++;
        } else if (c == '\f') {
            col = alt = 0;
        } else {
            break;
        }
    }
    lx->p = p;
    if (p >= lx->n)
        return; /* end of input: handled by the caller */
    if (lx->s[p] == '#') {
        while (p < lx->n && !newline_len(lx, p))
            p++;
    }
    size_t nl = newline_len(lx, p);
    if (nl || p >= lx->n) {
        lx->p = p;
        if (nl)
            take_newline(lx, &lx->p, nl);
        return; /* blank or comment-only line: stays at a line start */
    }
    lx->at_line_start = false;
    indent_line(lx, col, alt, p);
    lx->after_colon = false;
    if (lx->stop)
        return;
    if (lx->nindent == 1 && !lx->after_decorator && lx->out->n >= BATCH_MIN)
        hand_over(lx);
    lx->line_first = lx->out->n;
    char c = lx->s[p];
    if (c == '%' || c == '!' || c == '?')
        lex_magic(lx);
}

/* ---- strings --------------------------------------------------------- */

static bool push_frame(lexer *lx, int *nf, frame f, size_t at)
{
    if (*nf >= MAX_FRAMES) {
        fail_at(lx, lx->line, col_of(lx, at), "too many nested f-strings");
        return false;
    }
    lx->frames[(*nf)++] = f;
    return true;
}

/* Opens a string whose quote is at p with the given prefix flags; returns the
 * position after its opening quote(s). */
static size_t open_string(lexer *lx, int *nf, size_t p, bool raw, bool formatted)
{
    char q = lx->s[p];
    bool triple = p + 2 < lx->n && lx->s[p + 1] == q && lx->s[p + 2] == q;
    frame f = {.kind = FR_TEXT,
               .quote = q,
               .triple = triple,
               .raw = raw,
               .formatted = formatted};
    if (!push_frame(lx, nf, f, p))
        return p;
    return p + (triple ? 3 : 1);
}

/* Parses a string prefix (r, b, u, f, t and their two-letter mixes, any case). */
static bool string_prefix(const char *s, size_t len, bool *raw, bool *formatted,
                          bool *bytes)
{
    *raw = *formatted = *bytes = false;
    if (len == 0 || len > 2)
        return false;
    bool u = false;
    for (size_t i = 0; i < len; i++) {
        switch (s[i] | 0x20) {
        case 'r':
            if (*raw)
                return false;
            *raw = true;
            break;
        case 'b':
            if (*bytes)
                return false;
            *bytes = true;
            break;
        case 'f':
        case 't':
            if (*formatted)
                return false;
            *formatted = true;
            break;
        case 'u': u = true; break;
        default: return false;
        }
    }
    if (u && len != 1)
        return false;
    return !(*bytes && *formatted);
}

static bool newline_allowed(const lexer *lx, int nf)
{
    for (int i = 0; i < nf; i++)
        if (lx->frames[i].kind == FR_TEXT && lx->frames[i].triple)
            return true;
    return false;
}

static void unterminated(lexer *lx, uint32_t line, int col)
{
    if (lx->frames[0].triple)
        fail_at(lx, line, col,
                "unterminated triple-quoted string literal (detected at line %u)",
                (unsigned)lx->line);
    else
        fail_at(lx, line, col, "unterminated string literal (detected at line %u)",
                (unsigned)lx->line);
}

/* Handles a backslash at p inside string text; returns the next position. */
static size_t text_backslash(lexer *lx, const frame *f, size_t p)
{
    p++;
    if (p >= lx->n)
        return p;
    if (f->formatted && (lx->s[p] == '{' || lx->s[p] == '}'))
        return p; /* the brace keeps its meaning */
    if (f->formatted && !f->raw && lx->s[p] == 'N' && p + 1 < lx->n &&
        lx->s[p + 1] == '{') {
        /* \N{NAME}: the braces belong to the escape */
        size_t q = p + 2;
        while (q < lx->n && lx->s[q] != '}' && lx->s[q] != f->quote &&
               !newline_len(lx, q))
            q++;
        return q < lx->n && lx->s[q] == '}' ? q + 1 : q;
    }
    size_t nl = newline_len(lx, p);
    if (nl) {
        take_newline(lx, &p, nl);
        return p;
    }
    return p + 1;
}

/* One step in literal text or a format spec; returns the next position. */
static size_t step_text(lexer *lx, int *nf, size_t p)
{
    frame *f = &lx->frames[*nf - 1];
    char c = lx->s[p];
    if (c == '\\')
        return text_backslash(lx, f, p);
    if (c == f->quote && f->kind == FR_SPEC && !f->triple) {
        (*nf)--; /* `f"{x:abc"`: the spec ran into the end of the string */
        return p;
    }
    if (c == f->quote && f->kind == FR_TEXT) {
        if (!f->triple) {
            (*nf)--;
            return p + 1;
        }
        if (p + 2 < lx->n && lx->s[p + 1] == c && lx->s[p + 2] == c) {
            (*nf)--;
            return p + 3;
        }
        return p + 1;
    }
    if (!f->formatted)
        return p + 1;
    if (c == '{') {
        if (f->kind == FR_TEXT && p + 1 < lx->n && lx->s[p + 1] == '{')
            return p + 2;
        push_frame(lx, nf, (frame){.kind = FR_EXPR}, p);
        return p + 1;
    }
    if (c == '}') {
        if (f->kind == FR_SPEC) {
            (*nf)--; /* ends the spec and its replacement field */
            return p + 1;
        }
        return (p + 1 < lx->n && lx->s[p + 1] == '}') ? p + 2 : p + 1;
    }
    return p + 1;
}

/* One step inside a replacement field's expression. */
static size_t step_expr(lexer *lx, int *nf, size_t p)
{
    frame *f = &lx->frames[*nf - 1];
    unsigned char c = (unsigned char)lx->s[p];
    switch (c) {
    case '(':
    case '[':
    case '{': f->depth++; return p + 1;
    case ')':
    case ']':
        if (f->depth)
            f->depth--;
        return p + 1;
    case '}':
        if (f->depth) {
            f->depth--;
        } else {
            (*nf)--;
        }
        return p + 1;
    case ':':
        if (f->depth == 0) {
            /* the format spec belongs to the string that holds this field */
            const frame *owner = &lx->frames[*nf - 2];
            *f = (frame){.kind = FR_SPEC,
                         .quote = owner->quote,
                         .triple = owner->triple,
                         .raw = owner->raw,
                         .formatted = true};
        }
        return p + 1;
    case '!': return (p + 1 < lx->n && lx->s[p + 1] == '=') ? p + 2 : p + 1;
    case '#':
        while (p < lx->n && !newline_len(lx, p))
            p++;
        return p;
    case '\\': {
        size_t nl = newline_len(lx, p + 1);
        if (nl) {
            p++;
            take_newline(lx, &p, nl);
            return p;
        }
        return p + 1;
    }
    case '\'':
    case '"': return open_string(lx, nf, p, false, false);
    default: break;
    }
    if (ident_start(c)) {
        size_t q = p;
        while (q < lx->n && ident_char((unsigned char)lx->s[q]))
            q++;
        bool raw, formatted, bytes;
        if (q < lx->n && (lx->s[q] == '\'' || lx->s[q] == '"') &&
            string_prefix(lx->s + p, q - p, &raw, &formatted, &bytes))
            return open_string(lx, nf, q, raw, formatted);
        return q;
    }
    return p + 1;
}

/* Lexes a string (prefix at start, opening quote at quote_at) as one token. */
static void lex_string(lexer *lx, size_t start, size_t quote_at, bool raw, bool formatted,
                       bool bytes)
{
    uint32_t line = lx->line;
    int col = col_of(lx, start);
    int nf = 0;
    size_t p = open_string(lx, &nf, quote_at, raw, formatted);
    while (nf > 0 && !lx->stop) {
        if (p >= lx->n) {
            unterminated(lx, line, col);
            return;
        }
        size_t nl = newline_len(lx, p);
        if (nl && !newline_allowed(lx, nf)) {
            unterminated(lx, line, col);
            return;
        }
        if (nl) {
            take_newline(lx, &p, nl);
            continue;
        }
        if (lx->frames[nf - 1].kind == FR_EXPR)
            p = step_expr(lx, &nf, p);
        else
            p = step_text(lx, &nf, p);
    }
    if (lx->stop)
        return;
    lx->p = p;
    uint8_t flags = (formatted ? TOKF_FORMATTED : 0) | (bytes ? TOKF_BYTES : 0);
    emit(lx, TOK_STRING, start, p - start, line, flags);
}

/* ---- names, numbers, operators --------------------------------------- */

static void lex_name_or_string(lexer *lx)
{
    size_t start = lx->p, q = lx->p;
    while (q < lx->n && ident_char((unsigned char)lx->s[q]))
        q++;
    bool raw, formatted, bytes;
    if (q < lx->n && (lx->s[q] == '\'' || lx->s[q] == '"') &&
        string_prefix(lx->s + start, q - start, &raw, &formatted, &bytes)) {
        lex_string(lx, start, q, raw, formatted, bytes);
        return;
    }
    lx->p = q;
    emit(lx, TOK_NAME, start, q - start, lx->line, 0);
}

static size_t skip_digits(const lexer *lx, size_t p)
{
    while (p < lx->n && (is_digit((unsigned char)lx->s[p]) || lx->s[p] == '_'))
        p++;
    return p;
}

static void lex_number(lexer *lx)
{
    size_t start = lx->p, p = lx->p;
    const char *s = lx->s;
    if (s[p] == '0' && p + 1 < lx->n && strchr("xXoObB", s[p + 1]) && s[p + 1]) {
        p += 2;
        while (p < lx->n && (ident_char((unsigned char)s[p])) &&
               (unsigned char)s[p] < 0x80)
            p++;
    } else {
        p = skip_digits(lx, p);
        if (p < lx->n && s[p] == '.')
            p = skip_digits(lx, p + 1);
        if (p < lx->n && (s[p] == 'e' || s[p] == 'E')) {
            size_t q = p + 1;
            if (q < lx->n && (s[q] == '+' || s[q] == '-'))
                q++;
            if (q < lx->n && is_digit((unsigned char)s[q]))
                p = skip_digits(lx, q);
        }
        if (p < lx->n && (s[p] == 'j' || s[p] == 'J'))
            p++;
    }
    lx->p = p;
    emit(lx, TOK_NUMBER, start, p - start, lx->line, 0);
}

static size_t op_len(const lexer *lx)
{
    static const char *const three[] = {"**=", "//=", ">>=", "<<=", "..."};
    static const char *const two[] = {
        "**", "//", ">>", "<<", "<=", ">=", "==", "!=", "->", "+=",
        "-=", "*=", "/=", "%=", "&=", "|=", "^=", "@=", ":="};
    size_t left = lx->n - lx->p;
    const char *s = lx->s + lx->p;
    for (size_t i = 0; i < sizeof three / sizeof three[0]; i++)
        if (left >= 3 && !memcmp(s, three[i], 3))
            return 3;
    for (size_t i = 0; i < sizeof two / sizeof two[0]; i++)
        if (left >= 2 && !memcmp(s, two[i], 2))
            return 2;
    return 1;
}

static void open_bracket(lexer *lx, char c)
{
    if (lx->depth >= MAX_BRACKETS) {
        fail_at(lx, lx->line, col_of(lx, lx->p), "too many nested parentheses");
        return;
    }
    lx->bracket[lx->depth] = c;
    lx->bracket_line[lx->depth] = lx->line;
    lx->bracket_col[lx->depth] = col_of(lx, lx->p);
    lx->depth++;
}

static void close_bracket(lexer *lx, char c)
{
    static const char opener[] = {[')'] = '(', [']'] = '[', ['}'] = '{'};
    if (lx->depth == 0) {
        fail_at(lx, lx->line, col_of(lx, lx->p), "unmatched '%c'", c);
        return;
    }
    char open = lx->bracket[lx->depth - 1];
    if (open != opener[(unsigned char)c]) {
        if (lx->bracket_line[lx->depth - 1] != lx->line)
            fail_at(lx, lx->line, col_of(lx, lx->p),
                    "closing parenthesis '%c' does not match opening parenthesis '%c' on "
                    "line %u",
                    c, open, (unsigned)lx->bracket_line[lx->depth - 1]);
        else
            fail_at(lx, lx->line, col_of(lx, lx->p),
                    "closing parenthesis '%c' does not match opening parenthesis '%c'", c,
                    open);
        return;
    }
    lx->depth--;
}

static void lex_op(lexer *lx)
{
    char c = lx->s[lx->p];
    if (c == '(' || c == '[' || c == '{')
        open_bracket(lx, c);
    else if (c == ')' || c == ']' || c == '}')
        close_bracket(lx, c);
    if (lx->stop)
        return;
    size_t len = op_len(lx);
    emit(lx, TOK_OP, lx->p, len, lx->line, 0);
    lx->p += len;
}

/* ---- driver ---------------------------------------------------------- */

static void backslash(lexer *lx)
{
    size_t nl = newline_len(lx, lx->p + 1);
    if (nl) {
        lx->p++;
        take_newline(lx, &lx->p, nl);
        if (lx->p >= lx->n)
            fail_at(lx, lx->line, 0,
                    "unexpected end of file after line continuation character");
        return;
    }
    if (lx->p + 1 >= lx->n)
        fail_at(lx, lx->line, col_of(lx, lx->p),
                "unexpected end of file after line continuation character");
    else
        fail_at(lx, lx->line, col_of(lx, lx->p),
                "unexpected character after line continuation character");
}

/* One token, or one run of blanks, a comment or a line break. */
static void step(lexer *lx)
{
    unsigned char c = (unsigned char)lx->s[lx->p];
    size_t nl = newline_len(lx, lx->p);
    if (nl) {
        if (lx->depth == 0) {
            end_logical_line(lx, lx->p);
            lx->at_line_start = true;
        }
        take_newline(lx, &lx->p, nl);
    } else if (c == ' ' || c == '\t' || c == '\f') {
        lx->p++;
    } else if (c == '#') {
        while (lx->p < lx->n && !newline_len(lx, lx->p))
            lx->p++;
    } else if (c == '\\') {
        backslash(lx);
    } else if (ident_start(c)) {
        lex_name_or_string(lx);
    } else if (is_digit(c) || (c == '.' && lx->p + 1 < lx->n &&
                               is_digit((unsigned char)lx->s[lx->p + 1]))) {
        lex_number(lx);
    } else if (c == '\'' || c == '"') {
        lex_string(lx, lx->p, lx->p, false, false, false);
    } else if (assign_magic(lx, (char)c)) {
        lex_magic(lx);
    } else {
        lex_op(lx);
    }
}

static void finish(lexer *lx)
{
    if (lx->depth) {
        int d = lx->depth - 1;
        fail_at(lx, lx->bracket_line[d], lx->bracket_col[d], "'%c' was never closed",
                lx->bracket[d]);
        return;
    }
    end_logical_line(lx, lx->n);
    if (lx->after_colon) {
        fail_at(lx, lx->colon_line, 0,
                "expected an indented block after the ':' on line %u",
                (unsigned)lx->colon_line);
        return;
    }
    while (lx->nindent > 1 && !lx->stop) {
        lx->nindent--;
        emit(lx, TOK_DEDENT, lx->n, 0, lx->line, 0);
    }
}

/* Returns the name of a `%%name` cell magic at p (length in *len), or NULL. */
static const char *cell_magic(const lexer *lx, size_t p, size_t *len)
{
    if (p + 2 > lx->n || lx->s[p] != '%' || lx->s[p + 1] != '%')
        return NULL;
    size_t q = p + 2;
    while (q < lx->n && ident_char((unsigned char)lx->s[q]))
        q++;
    *len = q - p - 2;
    return lx->s + p + 2;
}

/*
 * A leading `%%magic` line: for %%time, %%capture and %%prun the body is
 * Python and lexing continues on the next line; any other cell magic's body
 * is not Python, so the cell has no tokens.  Returns false in that case.
 */
static bool skip_cell_magic(lexer *lx)
{
    size_t p = lx->p, line_begin = p;
    uint32_t line = lx->line;
    for (;;) { /* IPython drops leading blank lines first */
        while (p < lx->n && (lx->s[p] == ' ' || lx->s[p] == '\t' || lx->s[p] == '\f'))
            p++;
        size_t nl = newline_len(lx, p);
        if (!nl)
            break;
        p += nl;
        line++;
        line_begin = p;
    }
    size_t len;
    const char *name = cell_magic(lx, line_begin, &len);
    if (!name)
        return true;
    bool python = (len == 4 && !memcmp(name, "time", 4)) ||
                  (len == 7 && !memcmp(name, "capture", 7)) ||
                  (len == 4 && !memcmp(name, "prun", 4));
    if (!python)
        return false;
    p = line_begin;
    while (p < lx->n && !newline_len(lx, p))
        p++;
    lx->line = line;
    lx->p = p;
    if (p < lx->n)
        take_newline(lx, &lx->p, newline_len(lx, p));
    lx->line_start = lx->p;
    return true;
}

cellar_status tokenize(const char *src, size_t len, tok_list *out, tok_batch_fn fn,
                       void *ctx)
{
    lexer *lx = calloc(1, sizeof *lx);
    if (!lx)
        return CELLAR_ENOMEM;
    lx->s = src;
    lx->n = len;
    lx->line = 1;
    lx->out = out;
    lx->batch_fn = fn;
    lx->batch_ctx = ctx;
    lx->nindent = 1;
    lx->at_line_start = true;
    if (len >= UINT32_MAX) {
        lx->n = 0;
        fail_at(lx, 1, 0, "source is too large to scan (4 GiB or more)");
    } else {
        if (len >= 3 && !memcmp(src, "\xEF\xBB\xBF", 3))
            lx->p = lx->line_start = 3;
        if (!skip_cell_magic(lx))
            lx->p = lx->n; /* a non-Python cell magic: nothing to see */
    }
    while (!lx->stop && lx->p < lx->n) {
        if (lx->at_line_start)
            line_start(lx);
        else
            step(lx);
    }
    if (!lx->stop)
        finish(lx);
    if (!lx->oom) {
        lx->p = lx->n;
        hand_over(lx);
    }
    bool oom = lx->oom;
    free(lx);
    return oom ? CELLAR_ENOMEM : CELLAR_OK;
}

void tok_list_free(tok_list *list)
{
    if (list) {
        free(list->v);
        list->v = NULL;
        list->n = list->cap = 0;
    }
}
