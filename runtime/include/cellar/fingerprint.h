/*
 * fingerprint.h - 128-bit fingerprints (XXH3-128) and the streaming hasher
 * behind data versions and stored-result checksums.
 *
 * A `cellar_hash` is 16 bytes in XXH128's canonical (big-endian) order, so it
 * prints, compares and sorts the same on every machine.  A data version is the
 * fingerprint of a serialized value: the pickle stream followed by each of its
 * out-of-band buffers, each added as one tagged, length-prefixed segment and
 * hashed in place, never copied.  The store uses the same framing for its
 * checksums, so a result's checksum is its data version.
 *
 * Nothing here can fail except allocating a streaming state (NULL when out of
 * memory), so no function takes a cellar_error.  Hashing keeps no global
 * state: any function may be called from any thread, each state by one
 * thread at a time.
 */
#ifndef CELLAR_FINGERPRINT_H
#define CELLAR_FINGERPRINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cellar_hash {
    uint8_t bytes[16];
} cellar_hash;

#define CELLAR_HASH_HEX_LEN 32

/* One-shot XXH3-128 of `len` bytes (`data` may be NULL when `len` is 0). */
cellar_hash cellar_hash_bytes(const void *data, size_t len);

/* True when the 16 bytes are equal. */
bool cellar_hash_equal(const cellar_hash *a, const cellar_hash *b);

/* Writes 32 lowercase hex digits and a NUL into `out`. */
void cellar_hash_to_hex(const cellar_hash *h, char out[CELLAR_HASH_HEX_LEN + 1]);

/* Parses exactly 32 hex digits (either case) followed by a NUL into `*out`;
 * returns false (with `*out` partly written) for anything else, NULL too.
 * How records.c reads back the hashes it wrote with cellar_hash_to_hex. */
bool cellar_hash_from_hex(const char *hex, cellar_hash *out);

/*
 * A version that no other value gets: the hash of this process's id, the
 * wall clock in nanoseconds and `++*counter`, under a tag of its own.  The
 * counter is the caller's (the extension keeps one in its module state), so
 * two calls in one process within one clock tick still differ; two processes
 * differ by pid.  It is how a value that cannot be serialized gets a data
 * version that matches nothing stored: downstream is never reused across
 * sessions for it.
 */
cellar_hash cellar_hash_unique(uint64_t *counter);

/*
 * Streaming fingerprint over tagged segments.  Each segment contributes
 * (tag byte, 64-bit little-endian length, bytes), so segment boundaries are
 * part of what is hashed: ("ab","c") and ("a","bc") differ.  The state is
 * heap-allocated (XXH3 needs 64-byte alignment) and reusable after reset.
 */
typedef struct cellar_fingerprint cellar_fingerprint;

/* Segment tags used for data versions. */
#define CELLAR_SEG_STREAM 'P' /* a pickle stream */
#define CELLAR_SEG_BUFFER 'B' /* one out-of-band buffer */

/* Returns NULL when out of memory.  The new state is already reset, and owned
 * by the caller: cellar_fingerprint_free (which ignores NULL). */
cellar_fingerprint *cellar_fingerprint_new(void);
void cellar_fingerprint_free(cellar_fingerprint *fp);
/* Forgets everything added, to start a new fingerprint. */
void cellar_fingerprint_reset(cellar_fingerprint *fp);

/* Adds one whole segment; `data` is read during the call only. */
void cellar_fingerprint_add(cellar_fingerprint *fp, char tag, const void *data,
                            size_t len);

/*
 * Adds a segment piecewise: begin with its tag and total length, then feed
 * exactly that many bytes through one or more cellar_fingerprint_update calls.
 * The result equals cellar_fingerprint_add of the concatenated bytes.
 */
void cellar_fingerprint_begin(cellar_fingerprint *fp, char tag, size_t len);
void cellar_fingerprint_update(cellar_fingerprint *fp, const void *data, size_t len);

/* The fingerprint of everything added since the last reset; the state is
 * unchanged, so more segments may follow. */
cellar_hash cellar_fingerprint_digest(const cellar_fingerprint *fp);

#ifdef __cplusplus
}
#endif

#endif
