/*
 * key.h - cache keys from typed, length-prefixed fields.
 *
 * A key is built by appending fields to an encoder and hashing the encoded
 * bytes.  Every field is written as a type tag, a 64-bit little-endian length
 * and the payload, and a list is written as a tag and its element count, so
 * the encoding is prefix-free: two different field lists never encode to the
 * same bytes (("ab","c") vs ("a","bc"), the integer 1 vs the string "1", a
 * list of two vs two separate fields).  The digest is XXH3-128 of those bytes.
 *
 * A cache key is, in this order: the node's name (str), its code version
 * (hash), and a list with, for each parameter in parameter order, its name
 * (str) and its input's data version (hash).  cellar_key_for_node builds it.
 *
 * A code version is: the string "code", the function's source version (the
 * scanner's hash of its normalized tokens, a hash), and a list with, for each
 * name its body reads from the notebook, that name (str) and the version of
 * what it names (a hash: a code version for a function, a data version for a
 * value).  cellar_key_code_version_begin/add/finish build it.
 *
 * Errors: the encoder takes no cellar_error, the one exception to error.h's
 * contract.  Its functions return CELLAR_OK, CELLAR_ENOMEM (an allocation
 * failed, or a length would overflow) or, where stated, CELLAR_EINVAL (the
 * calls came in the wrong order).  A failure is sticky: every later append
 * and the digest of a code version fail the same way until
 * cellar_key_reset, so a caller may check only the last status.
 *
 * Threads: a cellar_key is scratch space for one thread at a time.
 */
#ifndef CELLAR_KEY_H
#define CELLAR_KEY_H

#include <stddef.h>
#include <stdint.h>

#include "cellar/error.h"
#include "cellar/fingerprint.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cellar_key cellar_key;

/* Returns NULL when out of memory.  Owned by the caller: cellar_key_free
 * (which ignores NULL). */
cellar_key *cellar_key_new(void);
void cellar_key_free(cellar_key *k);

/* Forgets every field and any failure; keeps the allocation for reuse. */
void cellar_key_reset(cellar_key *k);

/* Each append returns CELLAR_OK or CELLAR_ENOMEM.  `s` holds `len` bytes,
 * which may include NULs; it is copied. */
cellar_status cellar_key_add_str(cellar_key *k, const char *s, size_t len);
/* Raw bytes (`len` of them, copied; `data` may be NULL when `len` is 0),
 * tagged apart from strings: the same bytes as a str and as bytes never
 * encode alike.  Code versions use it for bytecode and bytes constants.
 * Returns CELLAR_OK or CELLAR_ENOMEM (also for a `len` that would overflow
 * the buffer's size, and after any earlier failure until reset). */
cellar_status cellar_key_add_bytes(cellar_key *k, const void *data, size_t len);
/* A signed integer, encoded as 8 little-endian bytes (two's complement) under
 * its own tag, so it never encodes like a str or bytes of those 8 bytes.
 * Code versions use it for argument counts, flags and int constants.
 * Returns CELLAR_OK or CELLAR_ENOMEM (after any earlier failure too). */
cellar_status cellar_key_add_int(cellar_key *k, int64_t v);
cellar_status cellar_key_add_hash(cellar_key *k, const cellar_hash *h);
/* Starts a list: the next `count` fields (lists count as one) are its items. */
cellar_status cellar_key_add_list(cellar_key *k, size_t count);

/* XXH3-128 of the encoded bytes (of a failed key too: check the statuses). */
cellar_hash cellar_key_digest(const cellar_key *k);

/*
 * The cache key of a node into `*out`: name, code version, and (param name,
 * data version) pairs in parameter order.  `param_names` are NUL-terminated;
 * both arrays may be NULL when `nparams` is 0.  `k` is scratch space (reset
 * first).  CELLAR_OK or CELLAR_ENOMEM (then `*out` is untouched).
 */
cellar_status cellar_key_for_node(cellar_key *k, const char *node, size_t node_len,
                                  const cellar_hash *code_version, size_t nparams,
                                  const char *const *param_names,
                                  const cellar_hash *param_versions, cellar_hash *out);

/*
 * A code version, in three steps on scratch key `k` (reset by begin):
 * begin with the source version and the number of (name, version) pairs,
 * add exactly that many in the caller's order (a stable one: the order the
 * body first reads the names), then finish, which writes the version into
 * `*out`.  Each returns CELLAR_OK or CELLAR_ENOMEM; add returns CELLAR_EINVAL
 * when begin was not called or all pairs are in, finish when pairs are
 * missing or a call was out of order.  `*out` is written only on CELLAR_OK.
 */
cellar_status cellar_key_code_version_begin(cellar_key *k,
                                            const cellar_hash *source_version,
                                            size_t ndeps);
cellar_status cellar_key_code_version_add(cellar_key *k, const char *name, size_t len,
                                          const cellar_hash *version);
cellar_status cellar_key_code_version_finish(cellar_key *k, cellar_hash *out);

#ifdef __cplusplus
}
#endif

#endif
