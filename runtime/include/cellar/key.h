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

/* Returns NULL when out of memory.  Owned by the caller: cellar_key_free. */
cellar_key *cellar_key_new(void);
void cellar_key_free(cellar_key *k);

/* Forgets every field; keeps the allocation for reuse. */
void cellar_key_reset(cellar_key *k);

/* Each append returns CELLAR_OK or CELLAR_ENOMEM (and then the key is unusable
 * until reset). */
cellar_status cellar_key_add_str(cellar_key *k, const char *s, size_t len);
cellar_status cellar_key_add_bytes(cellar_key *k, const void *data, size_t len);
cellar_status cellar_key_add_int(cellar_key *k, int64_t v);
cellar_status cellar_key_add_hash(cellar_key *k, const cellar_hash *h);
/* Starts a list: the next `count` fields (lists count as one) are its items. */
cellar_status cellar_key_add_list(cellar_key *k, size_t count);

/* The encoded bytes so far; valid until the next call on `k`. */
const uint8_t *cellar_key_bytes(const cellar_key *k, size_t *len);

/* XXH3-128 of the encoded bytes. */
cellar_hash cellar_key_digest(const cellar_key *k);

/*
 * The cache key of a node: name, code version, and (param name, data version)
 * pairs in parameter order.  `k` is scratch space (reset first).
 */
cellar_status cellar_key_for_node(cellar_key *k, const char *node, size_t node_len,
                                  const cellar_hash *code_version, size_t nparams,
                                  const char *const *param_names,
                                  const cellar_hash *param_versions, cellar_hash *out);

#ifdef __cplusplus
}
#endif

#endif
