/*
 * fuzz_wire.c - libFuzzer target for the wire codec's frame parser and its
 * readers.  The input is cut into frames at each "\n--\n" (so a seed reads
 * like a message dumped one frame per part), then parsed, verified against a
 * fixed key (with a small digest history, so eviction runs too), and its
 * header, parent header and content read.  Nothing may crash, leak or read
 * outside a frame, whatever the bytes.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cellar/wire.h"

#define MAX_FRAMES 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static cellar_wire_auth *auth; /* one per process: the history persists */
    if (!auth)
        auth = cellar_wire_auth_new("hmac-sha256", "fuzz-key", 8, 8, NULL);
    /* Each frame is copied into its own allocation, so ASan catches a read
     * past its end. */
    cellar_wire_frame frames[MAX_FRAMES];
    void *owned[MAX_FRAMES];
    size_t n = 0, start = 0;
    for (size_t i = 0; n < MAX_FRAMES && i <= size; i++) {
        bool cut = i == size || (i + 4 <= size && !memcmp(data + i, "\n--\n", 4));
        if (!cut)
            continue;
        size_t len = i - start;
        owned[n] = malloc(len ? len : 1);
        if (len)
            memcpy(owned[n], data + start, len);
        frames[n] = (cellar_wire_frame){owned[n], len};
        n++;
        start = i + 4;
        i += 3;
    }
    cellar_wire_msg m;
    if (cellar_wire_parse(frames, n, &m) == CELLAR_WIRE_OK) {
        cellar_wire_verify(auth, &m);
        cellar_wire_info info;
        cellar_wire_read_info(&m, &info);
        json_decref(cellar_wire_read_json(&m, CELLAR_WIRE_CONTENT));
        json_decref(cellar_wire_read_json(&m, CELLAR_WIRE_METADATA));
    }
    for (size_t i = 0; i < n; i++)
        free(owned[i]);
    return 0;
}
