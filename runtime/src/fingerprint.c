/*
 * fingerprint.c - XXH3-128 fingerprints and the tagged-segment streaming
 * hasher.  A segment is framed as (tag, u64 little-endian length, bytes) so
 * that boundaries are hashed too; bytes are fed straight from the caller's
 * memory, which is what lets a 1 GiB array be fingerprinted without a copy.
 */
#include "cellar/fingerprint.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

struct cellar_fingerprint {
    XXH3_state_t state; /* must stay first: XXH3 wants 64-byte alignment */
};

static cellar_hash from_xxh128(XXH128_hash_t h)
{
    cellar_hash out;
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, h);
    memcpy(out.bytes, c.digest, sizeof out.bytes);
    return out;
}

cellar_hash cellar_hash_bytes(const void *data, size_t len)
{
    return from_xxh128(XXH3_128bits(data, len));
}

bool cellar_hash_equal(const cellar_hash *a, const cellar_hash *b)
{
    return memcmp(a->bytes, b->bytes, sizeof a->bytes) == 0;
}

void cellar_hash_to_hex(const cellar_hash *h, char out[CELLAR_HASH_HEX_LEN + 1])
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof h->bytes; i++) {
        out[2 * i] = digits[h->bytes[i] >> 4];
        out[2 * i + 1] = digits[h->bytes[i] & 15];
    }
    out[CELLAR_HASH_HEX_LEN] = '\0';
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool cellar_hash_from_hex(const char *hex, cellar_hash *out)
{
    if (!hex)
        return false;
    for (size_t i = 0; i < sizeof out->bytes; i++) {
        int hi = hex_value(hex[2 * i]);
        int lo = hi < 0 ? -1 : hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out->bytes[i] = (uint8_t)(hi << 4 | lo);
    }
    return hex[CELLAR_HASH_HEX_LEN] == '\0';
}

cellar_hash cellar_hash_unique(uint64_t *counter)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t parts[4] = {(uint64_t)getpid(), (uint64_t)ts.tv_sec, (uint64_t)ts.tv_nsec,
                         ++*counter};
    /* Framed like a segment with a tag no data version uses, so a unique
     * version can never equal the fingerprint of a pickle. */
    uint8_t frame[9 + sizeof parts] = {'U', sizeof parts};
    memcpy(frame + 9, parts, sizeof parts);
    return cellar_hash_bytes(frame, sizeof frame);
}

cellar_fingerprint *cellar_fingerprint_new(void)
{
    cellar_fingerprint *fp = aligned_alloc(64, sizeof *fp);
    if (fp)
        cellar_fingerprint_reset(fp);
    return fp;
}

void cellar_fingerprint_free(cellar_fingerprint *fp)
{
    free(fp);
}

void cellar_fingerprint_reset(cellar_fingerprint *fp)
{
    XXH3_128bits_reset(&fp->state);
}

void cellar_fingerprint_begin(cellar_fingerprint *fp, char tag, size_t len)
{
    uint8_t frame[9];
    uint64_t n = len;
    frame[0] = (uint8_t)tag;
    for (int i = 0; i < 8; i++)
        frame[1 + i] = (uint8_t)(n >> (8 * i));
    XXH3_128bits_update(&fp->state, frame, sizeof frame);
}

void cellar_fingerprint_update(cellar_fingerprint *fp, const void *data, size_t len)
{
    if (len)
        XXH3_128bits_update(&fp->state, data, len);
}

void cellar_fingerprint_add(cellar_fingerprint *fp, char tag, const void *data,
                            size_t len)
{
    cellar_fingerprint_begin(fp, tag, len);
    cellar_fingerprint_update(fp, data, len);
}

cellar_hash cellar_fingerprint_digest(const cellar_fingerprint *fp)
{
    return from_xxh128(XXH3_128bits_digest(&fp->state));
}
