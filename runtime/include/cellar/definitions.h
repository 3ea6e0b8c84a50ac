/*
 * definitions.h - the rule that decides which cells crash recovery and
 * `%cellar restore` may run again: cells that only define.
 *
 * A cell only defines when every one of its top-level statements is one of
 *   - `import ...` or `from ... import ...`;
 *   - a `def` / `async def` (its body is not run by defining it), whose
 *     decorators are a dotted name, possibly called once with literal
 *     arguments (`@functools.lru_cache(maxsize=None)`, `@dataclass(frozen=
 *     True)`, `@staticmethod`), and whose defaults and annotations call
 *     nothing;
 *   - a `class` whose bases call nothing and whose body holds only such
 *     definitions, assignments as below, annotations without calls, `pass`
 *     and docstrings;
 *   - an assignment to names of a value that defines:
 *     - a literal: `N = 10`, `A = B = "x"`, `lo, hi = 0.1, -0.9`,
 *       `PARAMS: dict = {"k": [1, 2]}`, `__all__ = ["f"]`, where a literal
 *       is made of numbers, strings (not f-strings), True, False, None,
 *       tuples, lists, dicts and sets of those, and unary or binary + and -;
 *     - a type alias: a generic of typing or the builtins subscripted with
 *       types (`Vector = list[float]`, `Maybe = Optional[int]`,
 *       `H = Callable[[int], Dict[str, "Box"]]`): names, dotted names,
 *       strings, numbers, None, `...`, and `|` inside the brackets, with no
 *       call and no other subscript;
 *     - one of an explicit list of calls that only build a value, with the
 *       arguments listed for each (anything else, or another prefix, is a
 *       call): `TypeVar("T", <types>, bound=<type>, covariant=<literal>,
 *       contravariant=<literal>, infer_variance=<literal>, default=<type>)`,
 *       `ParamSpec("P")`, `TypeVarTuple("Ts")`, `NewType("N", <type>)`
 *       (bare or `typing.` / `typing_extensions.`); `namedtuple("P",
 *       <literal>, defaults=, rename=, module= <literal>)` (or
 *       `collections.`); and in class bodies only `field(...)` with keyword
 *       arguments only (`default`, `init`, `repr`, `hash`, `compare`,
 *       `metadata`, `kw_only` literals, `default_factory` a dotted name, not
 *       called by defining the class) (or `dataclasses.`), and `auto()` (or
 *       `enum.`).  The names are taken to be what those modules define: a
 *       cell that rebinds `field` or `TypeVar` to something else and calls
 *       it this way is the one case the tokens cannot tell;
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
