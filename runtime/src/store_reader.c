/*
 * store_reader.c - readers: a read transaction a thread owns, and what can
 * be asked of it: key and node lookups, loading a result, iteration, counts
 * and the in-process checksum verification.
 *
 * How it works.  Each reader is its own heap object with its own LMDB read
 * transaction (MDB_NOTLS, so it is not tied to the thread that began it) and
 * its own hasher, so readers on several threads never share mutable state;
 * the store only counts them (store_env.c), because the map may not be
 * resized while one is open.  A load copies inline segments out of LMDB's map
 * into the caller's memory and hands blob segments over as private mappings
 * (store_blob.c), so a 1 GiB array costs no copy; verification hashes each
 * segment where it lies, in order, with the same framing as a data version,
 * and compares the digest with both the stored checksum and the data version
 * asked for.  Sizes in a record are bounds-checked before anything is read.
 */
#include "store_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>

static char seg_tag(size_t i)
{
    return i == 0 ? CELLAR_SEG_STREAM : CELLAR_SEG_BUFFER;
}

static cellar_status not_open(cellar_error *err)
{
    return cellar_error_set(err, CELLAR_EINVAL, "the reader is not open");
}

cellar_status cellar_reader_begin(cellar_store *store, cellar_reader **out,
                                  cellar_error *err)
{
    if (!store || !out)
        return cellar_error_set(err, CELLAR_EINVAL, "reader_begin: missing argument");
    *out = NULL;
    cellar_reader *r = calloc(1, sizeof *r);
    if (!r)
        return cellar_error_set(err, CELLAR_ENOMEM, "out of memory");
    r->store = store;
    int rc = env_txn_begin(store, MDB_RDONLY, &r->txn);
    if (rc) {
        free(r);
        return env_error(store, err, rc, "cannot begin a read transaction");
    }
    *out = r;
    return CELLAR_OK;
}

void cellar_reader_end(cellar_reader *r)
{
    if (!r)
        return;
    mdb_txn_abort(r->txn);
    env_txn_done(r->store);
    cellar_fingerprint_free(r->fp);
    free(r);
}

static cellar_fingerprint *reader_fp(cellar_reader *r)
{
    if (!r->fp)
        r->fp = cellar_fingerprint_new();
    return r->fp;
}

static void hex_of(const cellar_hash *h, char *hex)
{
    cellar_hash_to_hex(h, hex);
}

cellar_status cellar_reader_get_key(cellar_reader *r, const cellar_hash *key,
                                    cellar_key_record *out, cellar_error *err)
{
    if (!r || !key || !out)
        return not_open(err);
    char hex[CELLAR_HASH_HEX_LEN + 1];
    MDB_val k = {sizeof key->bytes, (void *)key->bytes}, v;
    int rc = mdb_get(r->txn, r->store->dbi[DB_KEYS], &k, &v);
    if (rc == MDB_NOTFOUND) {
        hex_of(key, hex);
        return cellar_error_set(err, CELLAR_ENOTFOUND, "no cache key %s", hex);
    }
    if (rc)
        return env_error(r->store, err, rc, "cannot read a cache key");
    if (env_value_ok(r->store, &v) && record_key_decode(v.mv_data, v.mv_size, out))
        return CELLAR_OK;
    hex_of(key, hex);
    return cellar_error_set(err, CELLAR_ECORRUPT,
                            "the record of cache key %s does not parse (or has a format "
                            "version this cellar does not know)",
                            hex);
}

bool cellar_reader_has_result(cellar_reader *r, const cellar_hash *data_version)
{
    if (!r || !data_version)
        return false;
    MDB_val k = {sizeof data_version->bytes, (void *)data_version->bytes}, v;
    return mdb_get(r->txn, r->store->dbi[DB_RESULTS], &k, &v) == 0;
}

/* Looks a result up and parses its header; `*segs` is malloc'd. */
static cellar_status find_result(cellar_reader *r, const cellar_hash *dv,
                                 result_layout *L, seg_info **segs, cellar_error *err)
{
    char hex[CELLAR_HASH_HEX_LEN + 1];
    MDB_val k = {sizeof dv->bytes, (void *)dv->bytes}, v;
    int rc = mdb_get(r->txn, r->store->dbi[DB_RESULTS], &k, &v);
    hex_of(dv, hex);
    if (rc == MDB_NOTFOUND)
        return cellar_error_set(err, CELLAR_ENOTFOUND, "no stored result %s", hex);
    if (rc)
        return env_error(r->store, err, rc, "cannot read a result");
    if (!env_value_ok(r->store, &v) ||
        (v.mv_size > RESULT_VALUE_MAX && ((const uint8_t *)v.mv_data)[4] != 1) ||
        !record_result_parse(v.mv_data, v.mv_size, L))
        return cellar_error_set(err, CELLAR_ECORRUPT,
                                "the stored result %s is corrupt: its header does not "
                                "parse (or has an unknown format version)",
                                hex);
    *segs = malloc(L->nsegs * sizeof **segs);
    if (!*segs)
        return cellar_error_set(err, CELLAR_ENOMEM, "out of memory");
    record_result_segs(L, *segs);
    return CELLAR_OK;
}

static cellar_status check_digest(const result_layout *L, const cellar_hash *digest,
                                  const cellar_hash *dv, cellar_error *err)
{
    char hex[CELLAR_HASH_HEX_LEN + 1];
    const char *why = NULL;
    if (digest && memcmp(digest->bytes, L->checksum, 16) != 0)
        why = "its bytes do not match the stored checksum";
    else if (memcmp(L->checksum, dv->bytes, 16) != 0)
        why = "its checksum is not its data version";
    if (!why)
        return CELLAR_OK;
    hex_of(dv, hex);
    return cellar_error_set(err, CELLAR_ECORRUPT, "the stored result %s is corrupt: %s",
                            hex, why);
}

static cellar_status no_memory(size_t i, uint64_t len, cellar_error *err)
{
    return cellar_error_set(err, CELLAR_ENOMEM,
                            "no memory for segment %zu (%llu bytes) of a result", i,
                            (unsigned long long)len);
}

/* One segment: copied, read, or mapped and adopted; hashed when `fp`. */
static cellar_status load_segment(cellar_reader *r, const cellar_hash *dv,
                                  const seg_info *seg, size_t i, size_t n,
                                  cellar_fingerprint *fp, cellar_alloc_fn alloc,
                                  cellar_adopt_fn adopt, void *ctx, cellar_error *err)
{
    if (fp)
        cellar_fingerprint_begin(fp, seg_tag(i), (size_t)seg->len);
    if (seg->blob && adopt) {
        cellar_map *m;
        cellar_status rc = blob_map(r->store, dv, i, seg->len, &m, err);
        if (rc)
            return rc;
        if (fp) {
            madvise(cellar_map_data(m), cellar_map_len(m), MADV_SEQUENTIAL);
            cellar_fingerprint_update(fp, cellar_map_data(m), cellar_map_len(m));
            madvise(cellar_map_data(m), cellar_map_len(m), MADV_NORMAL);
        }
        return adopt(ctx, i, n, m) ? no_memory(i, seg->len, err) : CELLAR_OK;
    }
    if (seg->len > SIZE_MAX)
        return no_memory(i, seg->len, err);
    uint8_t *dst = alloc(ctx, i, n, (size_t)seg->len);
    if (!dst)
        return no_memory(i, seg->len, err);
    if (seg->blob) {
        cellar_status rc = blob_read(r->store, dv, i, seg->len, dst, err);
        if (rc)
            return rc;
    } else if (seg->len) {
        memcpy(dst, seg->data, (size_t)seg->len);
    }
    if (fp)
        cellar_fingerprint_update(fp, seg->blob ? dst : seg->data, (size_t)seg->len);
    return CELLAR_OK;
}

cellar_status cellar_reader_map_result(cellar_reader *r, const cellar_hash *data_version,
                                       bool verify, cellar_alloc_fn alloc,
                                       cellar_adopt_fn adopt, void *ctx,
                                       cellar_error *err)
{
    if (!r || !data_version || !alloc)
        return cellar_error_set(err, CELLAR_EINVAL,
                                "load_result: no open reader or no alloc");
    result_layout L;
    seg_info *segs = NULL;
    cellar_status rc = find_result(r, data_version, &L, &segs, err);
    if (rc)
        return rc;
    cellar_fingerprint *fp = verify ? reader_fp(r) : NULL;
    if (verify && !fp)
        rc = cellar_error_set(err, CELLAR_ENOMEM, "out of memory");
    if (fp)
        cellar_fingerprint_reset(fp);
    for (size_t i = 0; !rc && i < L.nsegs; i++)
        rc = load_segment(r, data_version, &segs[i], i, L.nsegs, fp, alloc, adopt, ctx,
                          err);
    free(segs);
    if (rc)
        return rc;
    cellar_hash digest;
    if (fp)
        digest = cellar_fingerprint_digest(fp);
    return check_digest(&L, fp ? &digest : NULL, data_version, err);
}

cellar_status cellar_reader_load_result(cellar_reader *r, const cellar_hash *data_version,
                                        cellar_alloc_fn alloc, void *ctx,
                                        cellar_error *err)
{
    return cellar_reader_map_result(r, data_version, true, alloc, NULL, ctx, err);
}

cellar_status reader_digest(cellar_reader *r, const cellar_hash *dv,
                            const result_layout *L, cellar_hash *digest,
                            cellar_error *err)
{
    cellar_fingerprint *fp = reader_fp(r);
    seg_info *segs = malloc(L->nsegs * sizeof *segs);
    if (!fp || !segs) {
        free(segs);
        return cellar_error_set(err, CELLAR_ENOMEM, "out of memory");
    }
    record_result_segs(L, segs);
    cellar_fingerprint_reset(fp);
    cellar_status rc = CELLAR_OK;
    for (size_t i = 0; !rc && i < L->nsegs; i++) {
        cellar_fingerprint_begin(fp, seg_tag(i), (size_t)segs[i].len);
        if (!segs[i].blob) {
            cellar_fingerprint_update(fp, segs[i].data, (size_t)segs[i].len);
            continue;
        }
        cellar_map *m;
        rc = blob_map(r->store, dv, i, segs[i].len, &m, err);
        if (!rc) {
            madvise(cellar_map_data(m), cellar_map_len(m), MADV_SEQUENTIAL);
            cellar_fingerprint_update(fp, cellar_map_data(m), cellar_map_len(m));
            cellar_map_free(m);
        }
    }
    free(segs);
    if (!rc)
        *digest = cellar_fingerprint_digest(fp);
    return rc;
}

cellar_status cellar_reader_get_node(cellar_reader *r, const char *node,
                                     const char **json, size_t *len, cellar_error *err)
{
    if (!r || !node || !json || !len)
        return cellar_error_set(err, CELLAR_EINVAL,
                                "get_node: no open reader or no node");
    size_t n = strlen(node);
    if (n == 0 || n > (size_t)mdb_env_get_maxkeysize(r->store->env))
        return cellar_error_set(err, CELLAR_ENOTFOUND, "no node '%.200s'", node);
    MDB_val k = {n, (void *)node}, v;
    int rc = mdb_get(r->txn, r->store->dbi[DB_NODES], &k, &v);
    if (rc == MDB_NOTFOUND)
        return cellar_error_set(err, CELLAR_ENOTFOUND, "no node '%.200s'", node);
    if (rc)
        return env_error(r->store, err, rc, "cannot read a node");
    if (!env_value_ok(r->store, &v))
        return cellar_error_set(err, CELLAR_ECORRUPT,
                                "the record of node '%.200s' is damaged", node);
    *json = v.mv_data;
    *len = v.mv_size;
    return CELLAR_OK;
}

/*
 * Walks one database with a cursor, first to last (or last to first), and
 * hands each pair to `visit`, which returns <0 on a parse error (with the
 * status in *bad and the message in err), 0 to go on, >0 to stop.
 */
typedef int (*visit_fn)(void *ctx, const MDB_val *k, const MDB_val *v, cellar_status *bad,
                        cellar_error *err);

static cellar_status walk(cellar_reader *r, int db, bool backwards, visit_fn visit,
                          void *ctx, cellar_error *err)
{
    if (!r)
        return not_open(err);
    MDB_cursor *c;
    MDB_val k, v;
    int rc = mdb_cursor_open(r->txn, r->store->dbi[db], &c);
    if (rc)
        return env_error(r->store, err, rc, "cannot open a cursor");
    MDB_cursor_op first = backwards ? MDB_LAST : MDB_FIRST;
    MDB_cursor_op next = backwards ? MDB_PREV : MDB_NEXT;
    cellar_status st = CELLAR_OK;
    /* Each entry takes at least a node header (8 bytes) of a page in use: a
     * walk that meets more is going round a damaged B-tree's circles. */
    MDB_envinfo info;
    uint64_t cap = UINT64_MAX, seen = 0;
    if (mdb_env_info(r->store->env, &info) == 0)
        cap = ((uint64_t)info.me_last_pgno + 1) * r->store->page_size / 8 + 16;
    for (rc = mdb_cursor_get(c, &k, &v, first); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, next)) {
        if (++seen > cap) {
            r->store->damaged = true;
            st = cellar_error_set(err, CELLAR_ECORRUPT,
                                  "the %s database has more entries than the store's "
                                  "pages can hold: its B-tree is damaged",
                                  store_dbs[db].name);
            break;
        }
        if (!env_value_ok(r->store, &v)) {
            st = cellar_error_set(err, CELLAR_ECORRUPT,
                                  "a value in the %s database is damaged",
                                  store_dbs[db].name);
            break;
        }
        int how = visit(ctx, &k, &v, &st, err);
        if (how != 0)
            break;
    }
    if (!st && rc != 0 && rc != MDB_NOTFOUND)
        st = env_error(r->store, err, rc, "cannot iterate");
    mdb_cursor_close(c);
    return st;
}

typedef struct key_walk {
    cellar_key_fn fn;
    void *ctx;
} key_walk;

static int visit_key(void *ctx, const MDB_val *k, const MDB_val *v, cellar_status *bad,
                     cellar_error *err)
{
    key_walk *w = ctx;
    cellar_hash key;
    cellar_key_record rec;
    char hex[CELLAR_HASH_HEX_LEN + 1];
    if (k->mv_size != sizeof key.bytes) {
        *bad = cellar_error_set(err, CELLAR_ECORRUPT, "a cache key is %zu bytes, not 16",
                                k->mv_size);
        return -1;
    }
    memcpy(key.bytes, k->mv_data, sizeof key.bytes);
    if (!record_key_decode(v->mv_data, v->mv_size, &rec)) {
        hex_of(&key, hex);
        *bad = cellar_error_set(err, CELLAR_ECORRUPT,
                                "the record of cache key %s does not parse", hex);
        return -1;
    }
    return w->fn(w->ctx, &key, &rec) ? 1 : 0;
}

cellar_status cellar_reader_each_key(cellar_reader *r, cellar_key_fn fn, void *ctx,
                                     cellar_error *err)
{
    if (!fn)
        return cellar_error_set(err, CELLAR_EINVAL, "each_key: no callback");
    key_walk w = {fn, ctx};
    return walk(r, DB_KEYS, false, visit_key, &w, err);
}

typedef struct run_walk {
    cellar_run_fn fn;
    void *ctx;
} run_walk;

static int visit_run(void *ctx, const MDB_val *k, const MDB_val *v, cellar_status *bad,
                     cellar_error *err)
{
    run_walk *w = ctx;
    if (k->mv_size != 8) {
        *bad = cellar_error_set(err, CELLAR_ECORRUPT, "a run id is %zu bytes, not 8",
                                k->mv_size);
        return -1;
    }
    return w->fn(w->ctx, get_u64be(k->mv_data), v->mv_data, v->mv_size) ? 1 : 0;
}

cellar_status cellar_reader_each_run(cellar_reader *r, cellar_run_fn fn, void *ctx,
                                     cellar_error *err)
{
    if (!fn)
        return cellar_error_set(err, CELLAR_EINVAL, "each_run: no callback");
    run_walk w = {fn, ctx};
    return walk(r, DB_RUNS, true, visit_run, &w, err);
}

cellar_status cellar_reader_counts(cellar_reader *r, cellar_store_stats *out,
                                   cellar_error *err)
{
    if (!r || !out)
        return not_open(err);
    cellar_store *s = r->store;
    static const int order[4] = {DB_KEYS, DB_RESULTS, DB_NODES, DB_RUNS};
    uint64_t *counts[4] = {&out->keys, &out->results, &out->nodes, &out->runs};
    memset(out, 0, sizeof *out);
    for (int i = 0; i < 4; i++) {
        MDB_stat ms;
        int rc = mdb_stat(r->txn, s->dbi[order[i]], &ms);
        if (rc)
            return env_error(s, err, rc, "cannot read database statistics");
        *counts[i] = ms.ms_entries;
        if (order[i] == DB_RESULTS)
            out->result_bytes =
                (uint64_t)(ms.ms_branch_pages + ms.ms_leaf_pages + ms.ms_overflow_pages) *
                ms.ms_psize;
    }
    blob_totals(s, &out->blobs, &out->blob_bytes);
    out->result_bytes += out->blob_bytes;
    MDB_envinfo info;
    mdb_env_info(s->env, &info);
    out->map_size = info.me_mapsize;
    out->last_txn = (uint64_t)mdb_txn_id(r->txn);
    int fd;
    struct stat st;
    if (mdb_env_get_fd(s->env, &fd) == 0 && fstat(fd, &st) == 0)
        out->file_bytes = (uint64_t)st.st_blocks * 512;
    return CELLAR_OK;
}

static int visit_sum_size(void *ctx, const MDB_val *k, const MDB_val *v,
                          cellar_status *bad, cellar_error *err)
{
    (void)k;
    (void)bad;
    (void)err;
    result_layout L;
    uint64_t *sum = ctx;
    *sum += v->mv_size;
    if (v->mv_size > RESULT_VALUE_MAX || !record_result_parse(v->mv_data, v->mv_size, &L))
        return 0;
    seg_info *segs = malloc(L.nsegs * sizeof *segs);
    if (!segs)
        return 0;
    record_result_segs(&L, segs);
    for (size_t i = 0; i < L.nsegs; i++)
        *sum += segs[i].blob ? segs[i].len : 0;
    free(segs);
    return 0;
}

cellar_status cellar_reader_stats(cellar_reader *r, cellar_store_stats *out,
                                  cellar_error *err)
{
    cellar_status st = cellar_reader_counts(r, out, err);
    if (st)
        return st;
    out->result_bytes = 0;
    return walk(r, DB_RESULTS, false, visit_sum_size, &out->result_bytes, err);
}

typedef struct verify_walk {
    cellar_reader *r;
    cellar_bad_fn bad;
    void *ctx;
    uint64_t checked, corrupt;
} verify_walk;

static int visit_verify(void *ctx, const MDB_val *k, const MDB_val *v, cellar_status *bad,
                        cellar_error *err)
{
    (void)bad;
    (void)err;
    verify_walk *w = ctx;
    cellar_hash dv = {{0}}, digest;
    cellar_error why;
    result_layout L;
    cellar_status st;
    memcpy(dv.bytes, k->mv_data, k->mv_size < 16 ? k->mv_size : 16);
    w->checked++;
    if (k->mv_size != 16)
        st = cellar_error_set(&why, CELLAR_ECORRUPT, "a result key is %zu bytes, not 16",
                              k->mv_size);
    else if (!record_result_parse(v->mv_data, v->mv_size, &L))
        st = cellar_error_set(&why, CELLAR_ECORRUPT, "its header does not parse");
    else if ((st = reader_digest(w->r, &dv, &L, &digest, &why)) == CELLAR_OK)
        st = check_digest(&L, &digest, &dv, &why);
    if (st) {
        w->corrupt++;
        if (w->bad)
            w->bad(w->ctx, &dv, why.message);
    }
    return 0;
}

cellar_status cellar_reader_verify(cellar_reader *r, cellar_bad_fn bad, void *ctx,
                                   uint64_t *checked, uint64_t *corrupt,
                                   cellar_error *err)
{
    verify_walk w = {r, bad, ctx, 0, 0};
    cellar_status st = walk(r, DB_RESULTS, false, visit_verify, &w, err);
    if (checked)
        *checked = w.checked;
    if (corrupt)
        *corrupt = w.corrupt;
    return st;
}
