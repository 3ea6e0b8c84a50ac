/*
 * store_records.c - the byte formats of the store's own values: result
 * headers (in the results database) and key records (in the keys database).
 *
 * Both start with a version, and a reader refuses a version it does not
 * know.  Every length is checked against the bytes actually present before it
 * is trusted, so a damaged record is "does not parse", never a read out of
 * bounds.  Integers are little-endian.
 *
 * Result header, version 2: "CLRS", version byte, 3 zero bytes, u32 segment
 * count, u32 zero, the 16-byte checksum (the data version), then per segment
 * a u64 length and a u64 of flags (bit 0: the segment is a blob file), then
 * the bytes of the inline segments in order.  Version 1 (written before blob
 * files existed) has a u64 length per segment and every segment inline; it is
 * still read.
 *
 * Key record, version 1: version byte, data version, code version, then
 * created, last used, size and compute time as u64, then the node name.
 */
#include "store_internal.h"

static const uint8_t RESULT_MAGIC[4] = {'C', 'L', 'R', 'S'};
#define RESULT_FIXED 32
#define RESULT_V2_ENTRY 16
#define RESULT_V1_ENTRY 8
#define SEG_BLOB 1u

#define KEY_RECORD_VERSION 1
#define KEY_RECORD_FIXED 65

size_t record_result_header_size(size_t nsegs)
{
    return RESULT_FIXED + RESULT_V2_ENTRY * nsegs;
}

void record_result_encode(uint8_t *out, size_t nsegs, const cellar_segment *segs,
                          const bool *blob, const cellar_hash *checksum)
{
    memcpy(out, RESULT_MAGIC, 4);
    out[4] = 2;
    memset(out + 5, 0, 3);
    put_u32le(out + 8, (uint32_t)nsegs);
    put_u32le(out + 12, 0);
    memcpy(out + 16, checksum->bytes, 16);
    for (size_t i = 0; i < nsegs; i++) {
        put_u64le(out + RESULT_FIXED + RESULT_V2_ENTRY * i, segs[i].len);
        put_u64le(out + RESULT_FIXED + RESULT_V2_ENTRY * i + 8, blob[i] ? SEG_BLOB : 0);
    }
}

bool record_result_parse(const void *data, size_t len, result_layout *L)
{
    const uint8_t *p = data;
    if (len < RESULT_FIXED || memcmp(p, RESULT_MAGIC, 4) != 0 || (p[4] != 1 && p[4] != 2))
        return false;
    size_t entry = p[4] == 2 ? RESULT_V2_ENTRY : RESULT_V1_ENTRY;
    uint32_t nsegs = get_u32le(p + 8);
    if (nsegs == 0 || nsegs > MAX_SEGMENTS || RESULT_FIXED + entry * nsegs > len)
        return false;
    size_t head = RESULT_FIXED + entry * nsegs, inline_total = 0;
    for (uint32_t i = 0; i < nsegs; i++) {
        const uint8_t *e = p + RESULT_FIXED + entry * i;
        uint64_t n = get_u64le(e);
        uint64_t flags = entry == RESULT_V2_ENTRY ? get_u64le(e + 8) : 0;
        if (flags & ~(uint64_t)SEG_BLOB)
            return false;
        if (flags & SEG_BLOB)
            continue;
        if (n > len - head - inline_total)
            return false;
        inline_total += (size_t)n;
    }
    if (head + inline_total != len)
        return false;
    *L = (result_layout){.nsegs = nsegs,
                         .entries = p + RESULT_FIXED,
                         .checksum = p + 16,
                         .inline_data = p + head,
                         .inline_len = inline_total,
                         .version = p[4]};
    return true;
}

void record_result_segs(const result_layout *L, seg_info *out)
{
    size_t entry = L->version == 2 ? RESULT_V2_ENTRY : RESULT_V1_ENTRY;
    const uint8_t *next = L->inline_data;
    for (size_t i = 0; i < L->nsegs; i++) {
        const uint8_t *e = L->entries + entry * i;
        out[i].len = get_u64le(e);
        out[i].blob = entry == RESULT_V2_ENTRY && (get_u64le(e + 8) & SEG_BLOB);
        out[i].data = out[i].blob ? NULL : next;
        if (!out[i].blob)
            next += out[i].len;
    }
}

size_t record_key_size(const cellar_key_record *rec)
{
    return KEY_RECORD_FIXED + rec->node_len;
}

void record_key_encode(const cellar_key_record *rec, uint8_t *p)
{
    p[0] = KEY_RECORD_VERSION;
    memcpy(p + 1, rec->data_version.bytes, 16);
    memcpy(p + 17, rec->code_version.bytes, 16);
    put_u64le(p + 33, rec->created_ns);
    put_u64le(p + KEY_RECORD_LAST_USED, rec->last_used_ns);
    put_u64le(p + 49, rec->size);
    put_u64le(p + 57, rec->compute_ns);
    if (rec->node_len)
        memcpy(p + KEY_RECORD_FIXED, rec->node, rec->node_len);
}

bool record_key_decode(const void *data, size_t len, cellar_key_record *out)
{
    const uint8_t *p = data;
    /* 511 bytes is the longest node name a batch accepts. */
    if (len < KEY_RECORD_FIXED || len > KEY_RECORD_FIXED + 511 ||
        p[0] != KEY_RECORD_VERSION)
        return false;
    memcpy(out->data_version.bytes, p + 1, 16);
    memcpy(out->code_version.bytes, p + 17, 16);
    out->created_ns = get_u64le(p + 33);
    out->last_used_ns = get_u64le(p + KEY_RECORD_LAST_USED);
    out->size = get_u64le(p + 49);
    out->compute_ns = get_u64le(p + 57);
    out->node = (const char *)p + KEY_RECORD_FIXED;
    out->node_len = len - KEY_RECORD_FIXED;
    return true;
}
