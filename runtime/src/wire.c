/*
 * wire.c - the Jupyter wire codec (see wire.h): frame lists split at the
 * delimiter, HMAC-SHA256 through OpenSSL's EVP_MAC, and the digest history
 * that rejects replays.
 *
 * Signing keeps one EVP_MAC_CTX initialized with the key and duplicates it for
 * each message, so the key schedule is computed once.  The digest history is
 * a ring of the last N raw digests (the oldest is overwritten first) indexed
 * by an open-addressing hash table of ring slots; HMAC output is uniform, so
 * its first eight bytes are the hash.  Removing an entry shifts the probe
 * chain back instead of leaving tombstones, so the table never degrades.
 */
#include "cellar/wire.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#define DIGEST_LEN 32

struct cellar_wire_auth {
    EVP_MAC *mac;
    EVP_MAC_CTX *keyed; /* NULL for an unsigned session */
    /* digest history */
    unsigned char (*ring)[DIGEST_LEN];
    size_t capacity, count, next; /* next: the ring slot written next */
    uint32_t *table;              /* ring slot + 1, 0 = empty */
    size_t table_mask;
};

const char *cellar_wire_verdict_name(cellar_wire_verdict v)
{
    switch (v) {
    case CELLAR_WIRE_OK: return "ok";
    case CELLAR_WIRE_MALFORMED: return "malformed";
    case CELLAR_WIRE_UNSIGNED: return "unsigned";
    case CELLAR_WIRE_BADSIG: return "bad signature";
    case CELLAR_WIRE_REPLAYED: return "replayed";
    case CELLAR_WIRE_UNREADABLE: return "json unreadable";
    }
    return "unknown";
}

cellar_wire_verdict cellar_wire_parse(const cellar_wire_frame *frames, size_t n,
                                      cellar_wire_msg *out)
{
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < n; i++) {
        if (frames[i].size == CELLAR_WIRE_DELIMITER_LEN &&
            !memcmp(frames[i].data, CELLAR_WIRE_DELIMITER, CELLAR_WIRE_DELIMITER_LEN)) {
            if (n - i < 6)
                return CELLAR_WIRE_MALFORMED;
            out->frames = frames;
            out->n_frames = n;
            out->delim = i;
            out->n_buffers = n - i - 6;
            return CELLAR_WIRE_OK;
        }
    }
    return CELLAR_WIRE_MALFORMED;
}

const cellar_wire_frame *cellar_wire_part(const cellar_wire_msg *msg, int part)
{
    return &msg->frames[msg->delim + (size_t)part];
}

/* OpenSSL's first queued reason, or `fallback`. */
static const char *ssl_reason(const char *fallback)
{
    unsigned long e = ERR_get_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : fallback;
}

cellar_wire_auth *cellar_wire_auth_new(const char *scheme, const void *key,
                                       size_t key_len, size_t history, cellar_error *err)
{
    if (scheme && *scheme && strcmp(scheme, "hmac-sha256") != 0) {
        cellar_error_set(err, CELLAR_EINVAL,
                         "signature scheme '%s' is not supported (only hmac-sha256)",
                         scheme);
        return NULL;
    }
    if (history > UINT32_MAX / 4) {
        cellar_error_set(err, CELLAR_EINVAL, "digest history of %zu is too large",
                         history);
        return NULL;
    }
    cellar_wire_auth *a = calloc(1, sizeof *a);
    if (!a)
        goto nomem;
    if (key_len > 0) {
        a->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
        a->keyed = a->mac ? EVP_MAC_CTX_new(a->mac) : NULL;
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
            OSSL_PARAM_construct_end()};
        if (!a->keyed || !EVP_MAC_init(a->keyed, key, key_len, params)) {
            cellar_error_set(err, CELLAR_EIO, "cannot set up HMAC-SHA256: %s",
                             ssl_reason("OpenSSL failed"));
            cellar_wire_auth_free(a);
            return NULL;
        }
    }
    if (history > 0) {
        size_t size = 16;
        while (size < history * 2)
            size *= 2;
        a->ring = malloc(history * sizeof *a->ring);
        a->table = calloc(size, sizeof *a->table);
        if (!a->ring || !a->table) {
            cellar_wire_auth_free(a);
            goto nomem;
        }
        a->capacity = history;
        a->table_mask = size - 1;
    }
    return a;
nomem:
    cellar_error_set(err, CELLAR_ENOMEM, "out of memory for the message signer");
    return NULL;
}

void cellar_wire_auth_free(cellar_wire_auth *auth)
{
    if (!auth)
        return;
    EVP_MAC_CTX_free(auth->keyed);
    EVP_MAC_free(auth->mac);
    free(auth->ring);
    free(auth->table);
    free(auth);
}

bool cellar_wire_auth_signed(const cellar_wire_auth *auth)
{
    return auth->keyed != NULL;
}

/* The raw HMAC of the four frames into `out`. */
static bool mac4(const cellar_wire_auth *auth, const cellar_wire_frame parts[4],
                 unsigned char out[DIGEST_LEN])
{
    EVP_MAC_CTX *c = EVP_MAC_CTX_dup(auth->keyed);
    bool ok = c != NULL;
    for (int i = 0; ok && i < 4; i++)
        ok = EVP_MAC_update(c, parts[i].data, parts[i].size) == 1;
    size_t len = 0;
    ok = ok && EVP_MAC_final(c, out, &len, DIGEST_LEN) == 1 && len == DIGEST_LEN;
    EVP_MAC_CTX_free(c);
    return ok;
}

static void to_hex(const unsigned char *raw, size_t n, char *hex)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        hex[2 * i] = digits[raw[i] >> 4];
        hex[2 * i + 1] = digits[raw[i] & 15];
    }
    hex[2 * n] = '\0';
}

bool cellar_wire_sign(const cellar_wire_auth *auth, const cellar_wire_frame parts[4],
                      char hex[CELLAR_WIRE_SIGNATURE_HEX + 1])
{
    hex[0] = '\0';
    if (!auth->keyed)
        return true;
    unsigned char raw[DIGEST_LEN];
    if (!mac4(auth, parts, raw))
        return false;
    to_hex(raw, DIGEST_LEN, hex);
    return true;
}

/* --- digest history --- */

static size_t slot_of(const cellar_wire_auth *a, const unsigned char *d)
{
    uint64_t h;
    memcpy(&h, d, sizeof h);
    return (size_t)h & a->table_mask;
}

/* The table position holding digest `d`, or the empty one where it would go. */
static size_t history_find(const cellar_wire_auth *a, const unsigned char *d)
{
    size_t i = slot_of(a, d);
    while (a->table[i] && memcmp(a->ring[a->table[i] - 1], d, DIGEST_LEN) != 0)
        i = (i + 1) & a->table_mask;
    return i;
}

/* Removes the entry at table position `i`, shifting later members of its
 * probe chain back so that every lookup still finds them. */
static void history_remove_at(cellar_wire_auth *a, size_t i)
{
    a->table[i] = 0;
    size_t j = i;
    for (;;) {
        j = (j + 1) & a->table_mask;
        if (!a->table[j])
            return;
        size_t home = slot_of(a, a->ring[a->table[j] - 1]);
        /* Move j back to i when its home is not cyclically within (i, j]. */
        bool in_range = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!in_range) {
            a->table[i] = a->table[j];
            a->table[j] = 0;
            i = j;
        }
    }
}

static void history_add(cellar_wire_auth *a, const unsigned char *d)
{
    size_t slot = a->next;
    if (a->count == a->capacity)
        history_remove_at(a, history_find(a, a->ring[slot]));
    else
        a->count++;
    memcpy(a->ring[slot], d, DIGEST_LEN);
    a->table[history_find(a, d)] = (uint32_t)slot + 1;
    a->next = (slot + 1) % a->capacity;
}

cellar_wire_verdict cellar_wire_verify(cellar_wire_auth *auth, const cellar_wire_msg *msg)
{
    if (!auth->keyed)
        return CELLAR_WIRE_OK;
    const cellar_wire_frame *sig = cellar_wire_part(msg, CELLAR_WIRE_SIGNATURE);
    if (sig->size == 0)
        return CELLAR_WIRE_UNSIGNED;
    if (sig->size != CELLAR_WIRE_SIGNATURE_HEX)
        return CELLAR_WIRE_BADSIG;
    unsigned char raw[DIGEST_LEN];
    char hex[CELLAR_WIRE_SIGNATURE_HEX + 1];
    if (!mac4(auth, cellar_wire_part(msg, CELLAR_WIRE_HEADER), raw))
        return CELLAR_WIRE_BADSIG;
    to_hex(raw, DIGEST_LEN, hex);
    if (CRYPTO_memcmp(hex, sig->data, CELLAR_WIRE_SIGNATURE_HEX) != 0)
        return CELLAR_WIRE_BADSIG;
    if (auth->capacity) {
        if (auth->table[history_find(auth, raw)])
            return CELLAR_WIRE_REPLAYED;
        history_add(auth, raw);
    }
    return CELLAR_WIRE_OK;
}

/* --- JSON --- */

json_t *cellar_wire_read_json(const cellar_wire_msg *msg, int part)
{
    if (part < CELLAR_WIRE_HEADER || part > CELLAR_WIRE_CONTENT)
        return NULL;
    const cellar_wire_frame *f = cellar_wire_part(msg, part);
    /* jansson refuses invalid UTF-8 and (without JSON_ALLOW_NUL) \u0000. */
    json_t *j = json_loadb(f->data, f->size, JSON_REJECT_DUPLICATES, NULL);
    if (j && !json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

static void copy_field(json_t *obj, const char *name, char *dst, size_t cap)
{
    dst[0] = '\0';
    json_t *v = json_object_get(obj, name);
    if (!json_is_string(v))
        return;
    size_t n = json_string_length(v);
    if (n < cap && memchr(json_string_value(v), '\0', n) == NULL)
        memcpy(dst, json_string_value(v), n + 1);
}

cellar_wire_verdict cellar_wire_read_info(const cellar_wire_msg *msg,
                                          cellar_wire_info *info)
{
    memset(info, 0, sizeof *info);
    json_t *h = cellar_wire_read_json(msg, CELLAR_WIRE_HEADER);
    if (!h)
        return CELLAR_WIRE_UNREADABLE;
    copy_field(h, "msg_type", info->msg_type, sizeof info->msg_type);
    copy_field(h, "msg_id", info->msg_id, sizeof info->msg_id);
    copy_field(h, "session", info->session, sizeof info->session);
    copy_field(h, "subshell_id", info->subshell_id, sizeof info->subshell_id);
    json_decref(h);
    if (!info->msg_type[0]) {
        memset(info, 0, sizeof *info);
        return CELLAR_WIRE_UNREADABLE;
    }
    json_t *p = cellar_wire_read_json(msg, CELLAR_WIRE_PARENT);
    if (p)
        copy_field(p, "msg_id", info->parent_msg_id, sizeof info->parent_msg_id);
    json_decref(p);
    return CELLAR_WIRE_OK;
}

json_t *cellar_wire_header_new(const char *msg_type, const char *session)
{
    unsigned char r[16];
    if (RAND_bytes(r, sizeof r) != 1)
        return NULL;
    r[6] = (unsigned char)((r[6] & 0x0f) | 0x40); /* a version-4 UUID */
    r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
    char hex[33], id[37];
    to_hex(r, sizeof r, hex);
    snprintf(id, sizeof id, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16,
             hex + 20);
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char date[40];
    size_t n = strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(date + n, sizeof date - n, ".%06ldZ", (long)tv.tv_usec);
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "msg_id", id, "msg_type", msg_type,
                     "session", session, "username", "cellar", "date", date, "version",
                     "5.4");
}

void cellar_wire_composed_free(cellar_wire_composed *c)
{
    for (int i = 0; i < 4; i++) {
        free(c->json[i]);
        c->json[i] = NULL;
    }
}

cellar_status cellar_wire_compose(const cellar_wire_auth *auth, json_t *header,
                                  json_t *parent, json_t *metadata, json_t *content,
                                  cellar_wire_composed *out)
{
    memset(out, 0, sizeof *out);
    json_t *parts[4] = {header, parent, metadata, content};
    cellar_wire_frame frames[4];
    for (int i = 0; i < 4; i++) {
        json_t *empty = parts[i] ? NULL : json_object();
        out->json[i] = json_dumps(parts[i] ? parts[i] : empty, JSON_COMPACT);
        json_decref(empty);
        if (!out->json[i]) {
            cellar_wire_composed_free(out);
            return CELLAR_ENOMEM;
        }
        out->json_len[i] = strlen(out->json[i]);
        frames[i] = (cellar_wire_frame){out->json[i], out->json_len[i]};
    }
    if (!cellar_wire_sign(auth, frames, out->signature)) {
        cellar_wire_composed_free(out);
        return CELLAR_EIO;
    }
    return CELLAR_OK;
}
