/*
 * store_files.c - the files database: content fingerprints of regular files
 * kept with the identity each file had when it was read (file_version.h
 * decides when one may be reused).  A record is keyed by the XXH3-128 of the
 * file's absolute path, since a path can be longer than LMDB's 511-byte keys,
 * and carries the path itself, so that a collision reads as "not kept".
 *
 * Record format 1, little-endian: version (1 byte), dev, ino, size (8 bytes
 * each), mtime_ns, ctime_ns, read_at_ns (8 bytes each, two's complement), the
 * content fingerprint (16 bytes), then the path's bytes.
 */
#include "store_internal.h"

#define FILE_RECORD_VERSION 1
#define FILE_RECORD_FIXED (1 + 6 * 8 + 16)
#define FILE_PATH_MAX ((size_t)64 << 10)

cellar_hash record_file_key(const char *path, size_t len)
{
    return cellar_hash_bytes(path, len);
}

size_t record_file_size(size_t path_len)
{
    return FILE_RECORD_FIXED + path_len;
}

void record_file_encode(const cellar_file_record *rec, const char *path, size_t path_len,
                        uint8_t *out)
{
    out[0] = FILE_RECORD_VERSION;
    put_u64le(out + 1, rec->dev);
    put_u64le(out + 9, rec->ino);
    put_u64le(out + 17, rec->size);
    put_u64le(out + 25, (uint64_t)rec->mtime_ns);
    put_u64le(out + 33, (uint64_t)rec->ctime_ns);
    put_u64le(out + 41, (uint64_t)rec->read_at_ns);
    memcpy(out + 49, rec->content.bytes, 16);
    memcpy(out + FILE_RECORD_FIXED, path, path_len);
}

bool record_file_decode(const void *data, size_t len, cellar_file_record *out,
                        const char **path, size_t *path_len)
{
    const uint8_t *p = data;
    if (!p || len <= FILE_RECORD_FIXED || len > FILE_RECORD_FIXED + FILE_PATH_MAX ||
        p[0] != FILE_RECORD_VERSION)
        return false;
    out->dev = get_u64le(p + 1);
    out->ino = get_u64le(p + 9);
    out->size = get_u64le(p + 17);
    out->mtime_ns = (int64_t)get_u64le(p + 25);
    out->ctime_ns = (int64_t)get_u64le(p + 33);
    out->read_at_ns = (int64_t)get_u64le(p + 41);
    memcpy(out->content.bytes, p + 49, 16);
    *path = (const char *)p + FILE_RECORD_FIXED;
    *path_len = len - FILE_RECORD_FIXED;
    return true;
}

cellar_status cellar_reader_get_file(cellar_reader *r, const char *path,
                                     cellar_file_record *out, cellar_error *err)
{
    if (!r || !path || !out)
        return cellar_error_set(err, CELLAR_EINVAL, "get_file: missing argument");
    size_t n = strlen(path);
    if (db_missing(r->store, DB_FILES))
        return cellar_error_set(err, CELLAR_ENOTFOUND, "no fingerprint kept for %s", path);
    cellar_hash key = record_file_key(path, n);
    MDB_val k = {16, key.bytes}, v;
    int rc = mdb_get(r->txn, r->store->dbi[DB_FILES], &k, &v);
    if (rc == MDB_NOTFOUND)
        return cellar_error_set(err, CELLAR_ENOTFOUND, "no fingerprint kept for %s", path);
    if (rc)
        return env_error(r->store, err, rc, "cannot read a kept file fingerprint");
    const char *kept;
    size_t kept_len;
    if (!env_value_ok(r->store, &v) ||
        !record_file_decode(v.mv_data, v.mv_size, out, &kept, &kept_len))
        return cellar_error_set(err, CELLAR_ECORRUPT,
                                "the kept fingerprint of %s does not parse (or has a "
                                "format version this cellar does not know)",
                                path);
    if (kept_len != n || memcmp(kept, path, n) != 0)
        return cellar_error_set(err, CELLAR_ENOTFOUND,
                                "no fingerprint kept for %s (another path's record)", path);
    return CELLAR_OK;
}
