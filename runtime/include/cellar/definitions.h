/*
 * definitions.h - the rule that decides which cells crash recovery and
 * `%cellar restore` may run again: cells that only define.
 *
 * A cell only defines when every one of its top-level statements is one of
 *   - `import ...` or `from ... import ...`;
 *   - a `def` / `async def` (its body is not run by defining it), whose
 *     decorators are a dotted name, possibly called with literal arguments,
 *     and whose defaults and annotations call nothing;
 *   - a `class` whose bases call nothing and whose body holds only such
 *     definitions, literal assignments, annotations without calls, `pass`
 *     and docstrings;
 *   - an assignment of a literal to names: `N = 10`, `A = B = "x"`,
 *     `lo, hi = 0.1, 0.9`, `PARAMS: dict = {"k": [1, 2]}`, where a literal is
 *     made of numbers, strings (not f-strings), True, False, None, tuples,
 *     lists, dicts and sets of those, and unary or binary + and -;
 *   - `%load_ext` / `%reload_ext`, `%cellar restore` (it only defines, by this
 *     same rule), `pass`, a docstring, a comment.
 * Anything else (a call, an attribute or subscript assignment, `x += 1`,
 * a loop, `if`, `with`, `try`, another magic, `!shell`, a `%%` cell magic, a
 * cell that does not tokenize, or an empty one) is a cell that computes, and
 * is never run again.  The check reads tokens only (tokenizer.c): it never
 * runs or imports anything, and like the scanner it is linear and never fails
 * on bad source.
 */
#ifndef CELLAR_DEFINITIONS_H
#define CELLAR_DEFINITIONS_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Room for a reason, NUL included. */
#define CELLAR_DEFINITIONS_WHY_MAX 160

/*
 * True when the `len` bytes of `code` only define (the rule above).  When
 * false, `why` (CELLAR_DEFINITIONS_WHY_MAX bytes, may be NULL) says what the
 * first statement that does more is, with its line: "line 3 calls a function
 * (`print(x)`)".  Out of memory is false with the reason "out of memory".
 */
bool cellar_definitions_only(const char *code, size_t len,
                             char why[CELLAR_DEFINITIONS_WHY_MAX]);

#ifdef __cplusplus
}
#endif

#endif
