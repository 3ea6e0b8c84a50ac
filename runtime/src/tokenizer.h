/*
 * tokenizer.h - private: the Python/IPython tokenizer behind scanner.c.
 *
 * Turns a whole cell into an array of tokens (NAME, NUMBER, STRING, OP,
 * NEWLINE, INDENT, DEDENT, MAGIC) that refer to the source by offset.
 * Comments, blank lines (NL), continuations and indentation width produce no
 * tokens.  The first problem in the source stops tokenizing: it is recorded
 * in the list and the stream ends with TOK_ERROR, TOK_END.  Otherwise it ends
 * with NEWLINE (if needed), the closing DEDENTs and TOK_END.
 */
#ifndef CELLAR_TOKENIZER_H
#define CELLAR_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cellar/error.h"

typedef enum tok_type {
    TOK_NAME,
    TOK_NUMBER,
    TOK_STRING,
    TOK_OP,
    TOK_NEWLINE,
    TOK_INDENT,
    TOK_DEDENT,
    TOK_MAGIC, /* one IPython line: `%magic ...`, `!cmd`, `?obj`, `= %magic` */
    TOK_ERROR, /* the tokenizer stopped here; see tok_list.err_* */
    TOK_END,
} tok_type;

/* String token flags. */
enum { TOKF_FORMATTED = 1, TOKF_BYTES = 2 };

typedef struct tok {
    uint32_t start;    /* byte offset into the source */
    uint32_t len;      /* bytes of source text (0 for NEWLINE/INDENT/DEDENT) */
    uint32_t line;     /* 1-based line of the first byte */
    uint32_t end_line; /* line of the last byte (differs for multi-line strings) */
    uint8_t type;      /* tok_type */
    uint8_t flags;     /* TOKF_* for strings */
} tok;

#define TOK_MESSAGE_MAX 160

typedef struct tok_list {
    tok *v;
    size_t n, cap;
    bool has_error; /* set with err_line/err_col/err_message when TOK_ERROR ends v */
    int err_line, err_col;
    char err_message[TOK_MESSAGE_MAX];
} tok_list;

/*
 * Called with each complete batch of tokens, which always ends with TOK_END
 * and begins and ends at a top-level statement boundary (never between a
 * decorator and what it decorates), so the receiver can scan it on its own.
 * The batch is reused afterwards.  Returns false to stop (out of memory).
 */
typedef bool (*tok_batch_fn)(void *ctx, const tok_list *batch);

/*
 * Tokenizes `len` bytes of `src`, handing the tokens to `fn` in batches so
 * that memory stays proportional to the largest top-level statement, not to
 * the cell.  `out` must be zeroed; it holds the current batch and the error.
 * Returns CELLAR_OK, or CELLAR_ENOMEM (also when `fn` returned false); either
 * way tok_list_free releases `out`.  Sources of 4 GiB or more are reported as
 * a source error, not tokenized.
 */
cellar_status tokenize(const char *src, size_t len, tok_list *out, tok_batch_fn fn,
                       void *ctx);
void tok_list_free(tok_list *list);

#endif
