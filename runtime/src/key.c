/*
 * key.c - the typed, length-prefixed field encoder behind cache keys.
 *
 * Fields are appended to one growable byte buffer as (tag, u64 LE length,
 * payload); a list is (tag 'l', u64 LE item count).  Because every field
 * states its type and extent before its bytes, the encoding is prefix-free,
 * and hashing the whole buffer once with XXH3-128 gives the key.  Keys are
 * small (names and 16-byte versions), so the buffer is reused, not streamed.
 *
 * The two layouts the rest of cellar hashes live here, so that the extension,
 * the tools and a future second implementation build them the same way: the
 * cache key (cellar_key_for_node) and the code version (begin/add/finish,
 * which counts the pairs it was promised so a short list cannot pass as a
 * complete one).
 */
#include "cellar/key.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { TAG_STR = 's', TAG_BYTES = 'b', TAG_INT = 'i', TAG_HASH = 'h', TAG_LIST = 'l' };

struct cellar_key {
    uint8_t *buf;
    size_t len, cap;
    bool failed;
    size_t pending; /* (name, version) pairs a code version still expects */
    bool in_code;   /* between cellar_key_code_version_begin and _finish */
};

cellar_key *cellar_key_new(void)
{
    return calloc(1, sizeof(cellar_key));
}

void cellar_key_free(cellar_key *k)
{
    if (k) {
        free(k->buf);
        free(k);
    }
}

void cellar_key_reset(cellar_key *k)
{
    k->len = 0;
    k->failed = false;
    k->pending = 0;
    k->in_code = false;
}

static cellar_status reserve(cellar_key *k, size_t extra)
{
    if (k->failed)
        return CELLAR_ENOMEM;
    /* A length near SIZE_MAX must fail here, not wrap into a small size. */
    if (extra > SIZE_MAX - k->len) {
        k->failed = true;
        return CELLAR_ENOMEM;
    }
    if (k->len + extra <= k->cap)
        return CELLAR_OK;
    size_t cap = k->cap ? k->cap : 256;
    while (cap < k->len + extra)
        cap = cap > SIZE_MAX / 2 ? k->len + extra : cap * 2;
    uint8_t *buf = realloc(k->buf, cap);
    if (!buf) {
        k->failed = true;
        return CELLAR_ENOMEM;
    }
    k->buf = buf;
    k->cap = cap;
    return CELLAR_OK;
}

static cellar_status put_field(cellar_key *k, uint8_t tag, uint64_t n, const void *data,
                               size_t len)
{
    if (len > SIZE_MAX - 9) {
        k->failed = true;
        return CELLAR_ENOMEM;
    }
    if (reserve(k, 9 + len) != CELLAR_OK)
        return CELLAR_ENOMEM;
    uint8_t *p = k->buf + k->len;
    p[0] = tag;
    for (int i = 0; i < 8; i++)
        p[1 + i] = (uint8_t)(n >> (8 * i));
    if (len)
        memcpy(p + 9, data, len);
    k->len += 9 + len;
    return CELLAR_OK;
}

cellar_status cellar_key_add_str(cellar_key *k, const char *s, size_t len)
{
    return put_field(k, TAG_STR, len, s, len);
}

cellar_status cellar_key_add_bytes(cellar_key *k, const void *data, size_t len)
{
    return put_field(k, TAG_BYTES, len, data, len);
}

cellar_status cellar_key_add_int(cellar_key *k, int64_t v)
{
    uint8_t le[8];
    uint64_t u = (uint64_t)v;
    for (int i = 0; i < 8; i++)
        le[i] = (uint8_t)(u >> (8 * i));
    return put_field(k, TAG_INT, sizeof le, le, sizeof le);
}

cellar_status cellar_key_add_hash(cellar_key *k, const cellar_hash *h)
{
    return put_field(k, TAG_HASH, sizeof h->bytes, h->bytes, sizeof h->bytes);
}

cellar_status cellar_key_add_list(cellar_key *k, size_t count)
{
    return put_field(k, TAG_LIST, count, NULL, 0);
}

cellar_hash cellar_key_digest(const cellar_key *k)
{
    return cellar_hash_bytes(k->buf, k->len);
}

cellar_status cellar_key_for_node(cellar_key *k, const char *node, size_t node_len,
                                  const cellar_hash *code_version, size_t nparams,
                                  const char *const *param_names,
                                  const cellar_hash *param_versions, cellar_hash *out)
{
    cellar_key_reset(k);
    cellar_status st = cellar_key_add_str(k, node, node_len);
    if (st == CELLAR_OK)
        st = cellar_key_add_hash(k, code_version);
    if (st == CELLAR_OK)
        st = cellar_key_add_list(k, nparams);
    for (size_t i = 0; st == CELLAR_OK && i < nparams; i++) {
        st = cellar_key_add_list(k, 2);
        if (st == CELLAR_OK)
            st = cellar_key_add_str(k, param_names[i], strlen(param_names[i]));
        if (st == CELLAR_OK)
            st = cellar_key_add_hash(k, &param_versions[i]);
    }
    if (st == CELLAR_OK)
        *out = cellar_key_digest(k);
    return st;
}

cellar_status cellar_key_code_version_begin(cellar_key *k,
                                            const cellar_hash *source_version,
                                            size_t ndeps)
{
    cellar_key_reset(k);
    cellar_status st = cellar_key_add_str(k, "code", 4);
    if (st == CELLAR_OK)
        st = cellar_key_add_hash(k, source_version);
    if (st == CELLAR_OK)
        st = cellar_key_add_list(k, ndeps);
    k->pending = ndeps;
    k->in_code = true; /* even after ENOMEM: the adds and finish then say ENOMEM */
    return st;
}

cellar_status cellar_key_code_version_add(cellar_key *k, const char *name, size_t len,
                                          const cellar_hash *version)
{
    if (!k->in_code || k->pending == 0) {
        k->failed = true;
        k->in_code = false; /* so that finish says EINVAL, not ENOMEM */
        return CELLAR_EINVAL;
    }
    k->pending--;
    cellar_status st = cellar_key_add_list(k, 2);
    if (st == CELLAR_OK)
        st = cellar_key_add_str(k, name, len);
    if (st == CELLAR_OK)
        st = cellar_key_add_hash(k, version);
    return st;
}

cellar_status cellar_key_code_version_finish(cellar_key *k, cellar_hash *out)
{
    bool complete = k->in_code && k->pending == 0;
    k->in_code = false;
    if (!complete) {
        k->failed = true;
        return CELLAR_EINVAL;
    }
    if (k->failed)
        return CELLAR_ENOMEM;
    *out = cellar_key_digest(k);
    return CELLAR_OK;
}
