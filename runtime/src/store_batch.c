/*
 * store_batch.c - the write path: a batch collects a run's writes, and
 * cellar_store_commit applies them in one LMDB write transaction.
 *
 * How it works.  A batch copies everything but result segments, which stay
 * the caller's until the commit returns.  The commit begins a write
 * transaction (taking LMDB's writer lock, which also orders blob writers
 * across processes), sweeps orphans if the previous writer died mid-commit
 * (store_blob.c), writes each large segment as a blob file renamed into
 * place, puts every record, and commits.  A failure at any step aborts the
 * transaction, so nothing of the batch is visible; the blobs it renamed are
 * orphans for the next writer to sweep.  MDB_MAP_FULL grows the map and
 * retries the whole batch; a map that cannot grow, a full disk, a quota or a
 * file size limit are EFULL, and the store stays usable.
 */
#include "store_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>

#define MAX_COMMIT_ATTEMPTS 16

typedef struct result_op {
    cellar_hash dv;
    cellar_hash checksum;
    bool has_checksum;
    bool replace;         /* overwrite a stored value that failed to load */
    cellar_segment *segs; /* copied array; the bytes are the caller's */
    size_t nsegs;
} result_op;

typedef struct key_op {
    cellar_hash key;
    uint8_t *rec;
    size_t len;
} key_op;

typedef struct touch_op {
    cellar_hash key;
    uint64_t last_used_ns;
} touch_op;

typedef struct node_op {
    char *name;
    size_t name_len;
    char *json;
    size_t json_len;
} node_op;

typedef struct file_op {
    cellar_hash key;
    uint8_t *rec;
    size_t len;
} file_op;

typedef struct run_op {
    char *json;
    size_t len;
    uint64_t *run_id;
    uint64_t assigned;
} run_op;

/* A growable array of one kind of operation. */
typedef struct op_list {
    void *items;
    size_t n, cap;
} op_list;

struct cellar_batch {
    op_list results, keys, touches, nodes, runs, files;
    uint64_t bytes; /* what the batch adds to LMDB, to size a map growth */
};

static void *op_push(op_list *l, size_t elem)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 8;
        void *items = realloc(l->items, cap * elem);
        if (!items)
            return NULL;
        l->items = items;
        l->cap = cap;
    }
    return (char *)l->items + elem * l->n++;
}

cellar_batch *cellar_batch_new(void)
{
    return calloc(1, sizeof(cellar_batch));
}

static void batch_clear(cellar_batch *b)
{
    result_op *res = b->results.items;
    key_op *keys = b->keys.items;
    node_op *nodes = b->nodes.items;
    run_op *runs = b->runs.items;
    for (size_t i = 0; i < b->results.n; i++)
        free(res[i].segs);
    for (size_t i = 0; i < b->keys.n; i++)
        free(keys[i].rec);
    for (size_t i = 0; i < b->nodes.n; i++) {
        free(nodes[i].name);
        free(nodes[i].json);
    }
    for (size_t i = 0; i < b->runs.n; i++)
        free(runs[i].json);
    file_op *files = b->files.items;
    for (size_t i = 0; i < b->files.n; i++)
        free(files[i].rec);
    b->results.n = b->keys.n = b->touches.n = b->nodes.n = b->runs.n = b->files.n = 0;
    b->bytes = 0;
}

void cellar_batch_free(cellar_batch *b)
{
    if (!b)
        return;
    batch_clear(b);
    free(b->results.items);
    free(b->keys.items);
    free(b->touches.items);
    free(b->nodes.items);
    free(b->runs.items);
    free(b->files.items);
    free(b);
}

bool cellar_batch_empty(const cellar_batch *b)
{
    return !b ||
           (!b->results.n && !b->keys.n && !b->touches.n && !b->nodes.n && !b->runs.n &&
            !b->files.n);
}

static cellar_status oom(cellar_error *err)
{
    return cellar_error_set(err, CELLAR_ENOMEM, "out of memory");
}

static cellar_status push_result(cellar_batch *b, const cellar_hash *data_version,
                                 const cellar_segment *segs, size_t nsegs,
                                 const cellar_hash *checksum, bool replace,
                                 cellar_error *err)
{
    if (!b || !data_version || !segs || nsegs == 0 || nsegs > MAX_SEGMENTS)
        return cellar_error_set(err, CELLAR_EINVAL, "put_result: needs 1 to %u segments",
                                MAX_SEGMENTS);
    if (checksum && !cellar_hash_equal(checksum, data_version))
        return cellar_error_set(err, CELLAR_EINVAL,
                                "put_result: the checksum must equal the data version");
    for (size_t i = 0; i < nsegs; i++)
        if (!segs[i].data && segs[i].len)
            return cellar_error_set(err, CELLAR_EINVAL, "put_result: segment %zu is NULL",
                                    i);
    result_op *op = op_push(&b->results, sizeof *op);
    if (!op)
        return oom(err);
    *op = (result_op){.dv = *data_version,
                      .nsegs = nsegs,
                      .has_checksum = checksum != NULL,
                      .replace = replace};
    if (checksum)
        op->checksum = *checksum;
    op->segs = malloc(nsegs * sizeof *segs);
    if (!op->segs) {
        b->results.n--;
        return oom(err);
    }
    memcpy(op->segs, segs, nsegs * sizeof *segs);
    b->bytes += record_result_header_size(nsegs) + 64;
    for (size_t i = 0; i < nsegs; i++)
        b->bytes += segs[i].len < INLINE_MAX ? segs[i].len : 0;
    return CELLAR_OK;
}

cellar_status cellar_batch_put_result(cellar_batch *b, const cellar_hash *data_version,
                                      const cellar_segment *segs, size_t nsegs,
                                      const cellar_hash *checksum, cellar_error *err)
{
    return push_result(b, data_version, segs, nsegs, checksum, false, err);
}

cellar_status cellar_batch_replace_result(cellar_batch *b,
                                          const cellar_hash *data_version,
                                          const cellar_segment *segs, size_t nsegs,
                                          const cellar_hash *checksum, cellar_error *err)
{
    return push_result(b, data_version, segs, nsegs, checksum, true, err);
}

cellar_status cellar_batch_put_key(cellar_batch *b, const cellar_hash *key,
                                   const cellar_key_record *rec, cellar_error *err)
{
    if (!b || !key || !rec || (!rec->node && rec->node_len))
        return cellar_error_set(err, CELLAR_EINVAL, "put_key: missing argument");
    if (rec->node_len > 511)
        return cellar_error_set(err, CELLAR_EINVAL,
                                "put_key: a node name must be at most 511 bytes");
    key_op *op = op_push(&b->keys, sizeof *op);
    if (!op)
        return oom(err);
    op->key = *key;
    op->len = record_key_size(rec);
    op->rec = malloc(op->len);
    if (!op->rec) {
        b->keys.n--;
        return oom(err);
    }
    record_key_encode(rec, op->rec);
    b->bytes += op->len + 64;
    return CELLAR_OK;
}

cellar_status cellar_batch_touch_key(cellar_batch *b, const cellar_hash *key,
                                     uint64_t last_used_ns, cellar_error *err)
{
    if (!b || !key)
        return cellar_error_set(err, CELLAR_EINVAL, "touch_key: missing argument");
    touch_op *op = op_push(&b->touches, sizeof *op);
    if (!op)
        return oom(err);
    *op = (touch_op){*key, last_used_ns};
    b->bytes += 128;
    return CELLAR_OK;
}

cellar_status cellar_batch_put_node(cellar_batch *b, const char *node, const char *json,
                                    cellar_error *err)
{
    if (!b || !node || !json)
        return cellar_error_set(err, CELLAR_EINVAL, "put_node: missing argument");
    size_t n = strlen(node);
    /* 511 bytes is LMDB's default key size limit. */
    if (n == 0 || n > 511)
        return cellar_error_set(err, CELLAR_EINVAL,
                                "put_node: a node name must be 1 to 511 bytes");
    node_op *op = op_push(&b->nodes, sizeof *op);
    if (!op)
        return oom(err);
    *op = (node_op){strdup(node), n, strdup(json), strlen(json)};
    if (!op->name || !op->json) {
        free(op->name);
        free(op->json);
        b->nodes.n--;
        return oom(err);
    }
    b->bytes += n + op->json_len + 64;
    return CELLAR_OK;
}

cellar_status cellar_batch_add_run(cellar_batch *b, const char *json, uint64_t *run_id,
                                   cellar_error *err)
{
    if (!b || !json)
        return cellar_error_set(err, CELLAR_EINVAL, "add_run: missing argument");
    run_op *op = op_push(&b->runs, sizeof *op);
    if (!op)
        return oom(err);
    *op = (run_op){strdup(json), strlen(json), run_id, 0};
    if (!op->json) {
        b->runs.n--;
        return oom(err);
    }
    b->bytes += op->len + 64;
    return CELLAR_OK;
}

cellar_status cellar_batch_put_file(cellar_batch *b, const char *path,
                                    const cellar_file_record *rec, cellar_error *err)
{
    if (!b || !path || !rec)
        return cellar_error_set(err, CELLAR_EINVAL, "put_file: missing argument");
    size_t n = strlen(path);
    if (n == 0 || n > ((size_t)64 << 10))
        return cellar_error_set(err, CELLAR_EINVAL,
                                "put_file: a path must be 1 byte to 64 KiB");
    file_op *op = op_push(&b->files, sizeof *op);
    if (!op)
        return oom(err);
    op->key = record_file_key(path, n);
    op->len = record_file_size(n);
    if (!(op->rec = malloc(op->len))) {
        b->files.n--;
        return oom(err);
    }
    record_file_encode(rec, path, n, op->rec);
    b->bytes += op->len + 64;
    return CELLAR_OK;
}

/* ---- committing ---- */

/* Returned by the apply steps for a failure that is not LMDB's; the status
 * is in the commit's `failed`.  LMDB's codes are large negatives and errno
 * values positive, so -1 is free. */
#define APPLY_FAILED (-1)

typedef struct commit_ctx {
    cellar_store *s;
    MDB_txn *txn;
    cellar_fingerprint *fp;
    cellar_status failed;
    cellar_error *err;
    uint64_t added; /* bytes of the results written, for automatic gc */
} commit_ctx;

static int put(commit_ctx *c, int db, MDB_val *k, MDB_val *v, unsigned flags);
static int preflight(commit_ctx *c, cellar_batch *b);

static char seg_tag(size_t i)
{
    return i == 0 ? CELLAR_SEG_STREAM : CELLAR_SEG_BUFFER;
}

/* A caller that gave no checksum gets one computed, and it must be the data
 * version the result is filed under. */
static int check_unsummed(commit_ctx *c, const result_op *op)
{
    if (op->has_checksum)
        return 0;
    if (!c->fp && !(c->fp = cellar_fingerprint_new())) {
        c->failed = oom(c->err);
        return APPLY_FAILED;
    }
    cellar_fingerprint_reset(c->fp);
    for (size_t i = 0; i < op->nsegs; i++)
        cellar_fingerprint_add(c->fp, seg_tag(i), op->segs[i].data, op->segs[i].len);
    cellar_hash sum = cellar_fingerprint_digest(c->fp);
    if (cellar_hash_equal(&sum, &op->dv))
        return 0;
    char hex[CELLAR_HASH_HEX_LEN + 1];
    cellar_hash_to_hex(&op->dv, hex);
    c->failed = cellar_error_set(
        c->err, CELLAR_EINVAL,
        "put_result: the segments stored under %s are not its data version", hex);
    return APPLY_FAILED;
}

static int apply_result(commit_ctx *c, const result_op *op)
{
    cellar_store *s = c->s;
    MDB_val k = {16, (void *)op->dv.bytes}, v;
    if (mdb_get(c->txn, s->dbi[DB_RESULTS], &k, &v) == 0) {
        /* Content-addressed: same data version, same bytes.  Only a value
         * whose header is damaged is replaced.  Overwriting frees the old
         * value's overflow pages, and LMDB asserts (aborting the process)
         * when their header is damaged, which is exactly when a result failed
         * to load and is replaced: preflight checked that header (and that
         * the value is inside the file) in a read snapshot. */
        result_layout L;
        if (!op->replace && v.mv_size <= RESULT_VALUE_MAX &&
            record_result_parse(v.mv_data, v.mv_size, &L))
            return 0;
    }
    int rc = check_unsummed(c, op);
    if (rc)
        return rc;
    bool *blob = malloc(op->nsegs * sizeof *blob);
    if (!blob) {
        c->failed = oom(c->err);
        return APPLY_FAILED;
    }
    blob_choose(s, op->segs, op->nsegs, blob);
    size_t size = record_result_header_size(op->nsegs);
    for (size_t i = 0; i < op->nsegs; i++) {
        if (!blob[i]) {
            size += op->segs[i].len;
            continue;
        }
        c->failed = blob_write(s, &op->dv, i, op->segs[i].data, op->segs[i].len,
                               op->replace, c->err);
        if (c->failed) {
            free(blob);
            return APPLY_FAILED;
        }
    }
    c->added += size;
    for (size_t i = 0; i < op->nsegs; i++)
        c->added += blob[i] ? op->segs[i].len : 0;
    v = (MDB_val){size, NULL};
    rc = put(c, DB_RESULTS, &k, &v, MDB_RESERVE);
    if (rc == 0) {
        uint8_t *out = v.mv_data;
        record_result_encode(out, op->nsegs, op->segs, blob, &op->dv);
        out += record_result_header_size(op->nsegs);
        for (size_t i = 0; i < op->nsegs; i++) {
            if (blob[i] || !op->segs[i].len)
                continue;
            memcpy(out, op->segs[i].data, op->segs[i].len);
            out += op->segs[i].len;
        }
    }
    free(blob);
    return rc;
}

static int compare_touches(const void *a, const void *b)
{
    return memcmp(((const touch_op *)a)->key.bytes, ((const touch_op *)b)->key.bytes, 16);
}

/* Rewrites last_used_ns of each existing key.  Sorted, the touches walk the
 * B-tree in order, and the cursor's put overwrites the record where the
 * lookup found it instead of descending again. */
static int apply_touches(commit_ctx *c, cellar_batch *b)
{
    touch_op *ops = b->touches.items;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(c->txn, c->s->dbi[DB_KEYS], &cur);
    if (rc)
        return rc;
    qsort(ops, b->touches.n, sizeof *ops, compare_touches);
    for (size_t i = 0; !rc && i < b->touches.n; i++) {
        MDB_val k = {16, ops[i].key.bytes}, v;
        cellar_key_record rec;
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY);
        if (rc == MDB_NOTFOUND) {
            rc = 0;
            continue;
        }
        if (rc || !record_key_decode(v.mv_data, v.mv_size, &rec))
            continue; /* a damaged record is left for get/verify to report */
        /* Copy first: the record sits in the map (read-only), or on a dirty
         * page that the put rewrites in place. */
        uint8_t buf[1024];
        memcpy(buf, v.mv_data, v.mv_size); /* decode bounds it under 1024 */
        put_u64le(buf + KEY_RECORD_LAST_USED, ops[i].last_used_ns);
        MDB_val nv = {v.mv_size, buf};
        rc = mdb_cursor_put(cur, &k, &nv, MDB_CURRENT);
    }
    mdb_cursor_close(cur);
    return rc;
}

/* Time-ordered, unique ids: the wall clock, bumped past the newest id. */
static int apply_runs(commit_ctx *c, cellar_batch *b)
{
    MDB_cursor *cur;
    MDB_val k, v;
    uint64_t last = 0;
    int rc = mdb_cursor_open(c->txn, c->s->dbi[DB_RUNS], &cur);
    if (rc)
        return rc;
    rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    if (rc == 0 && k.mv_size == 8)
        last = get_u64be(k.mv_data);
    mdb_cursor_close(cur);
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    run_op *runs = b->runs.items;
    for (size_t i = 0; i < b->runs.n; i++) {
        uint64_t id = now_ns();
        if (id <= last)
            id = last + 1;
        last = id;
        uint8_t key[8];
        put_u64be(key, id);
        k = (MDB_val){8, key};
        v = (MDB_val){runs[i].len, runs[i].json};
        if ((rc = put(c, DB_RUNS, &k, &v, 0)))
            return rc;
        runs[i].assigned = id;
    }
    return 0;
}

static int put(commit_ctx *c, int db, MDB_val *k, MDB_val *v, unsigned flags)
{
    return mdb_put(c->txn, c->s->dbi[db], k, v, flags);
}

/*
 * Before writing, checks in a read snapshot each leaf page the batch will
 * add to: LMDB asserts, aborting the process, when it adds to a damaged one.
 * A read snapshot, because its pages are the map's own (page-aligned, so a
 * key's page is found from the key), where a write transaction's are copies.
 */
static int preflight(commit_ctx *c, cellar_batch *b)
{
    MDB_txn *txn;
    int rc = env_txn_begin(c->s, MDB_RDONLY, &txn);
    if (rc)
        return rc;
    bool ok = true;
    result_op *res = b->results.items;
    key_op *keys = b->keys.items;
    touch_op *touches = b->touches.items;
    node_op *nodes = b->nodes.items;
    for (size_t i = 0; ok && i < b->results.n; i++) {
        MDB_val k = {16, res[i].dv.bytes}, v;
        ok = env_leaf_ok(c->s, txn, c->s->dbi[DB_RESULTS], &k);
        if (ok && mdb_get(txn, c->s->dbi[DB_RESULTS], &k, &v) == 0)
            ok = env_value_ok(c->s, &v); /* about to be read or overwritten */
    }
    for (size_t i = 0; ok && i < b->keys.n; i++) {
        MDB_val k = {16, keys[i].key.bytes};
        ok = env_leaf_ok(c->s, txn, c->s->dbi[DB_KEYS], &k);
    }
    for (size_t i = 0; ok && i < b->touches.n; i++) {
        MDB_val k = {16, touches[i].key.bytes};
        ok = env_leaf_ok(c->s, txn, c->s->dbi[DB_KEYS], &k);
    }
    for (size_t i = 0; ok && i < b->nodes.n; i++) {
        MDB_val k = {nodes[i].name_len, nodes[i].name};
        ok = env_leaf_ok(c->s, txn, c->s->dbi[DB_NODES], &k);
    }
    file_op *files = b->files.items;
    for (size_t i = 0; ok && i < b->files.n; i++) {
        MDB_val k = {16, files[i].key.bytes};
        ok = env_leaf_ok(c->s, txn, c->s->dbi[DB_FILES], &k);
    }
    uint8_t last[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    MDB_val k = {8, last};
    if (ok && b->runs.n)
        ok = env_leaf_ok(c->s, txn, c->s->dbi[DB_RUNS], &k);
    /* Every commit also adds to the free list (keyed by txn id, so at its
     * end) and rewrites the named databases' records in the main one. */
    if (ok)
        ok = env_leaf_ok(c->s, txn, 0, &k);
    MDB_val name = {strlen(store_dbs[0].name), (void *)store_dbs[0].name};
    if (ok)
        ok = env_leaf_ok(c->s, txn, 1, &name);
    mdb_txn_abort(txn);
    env_txn_done(c->s);
    if (ok)
        return 0;
    c->failed = cellar_error_set(
        c->err, CELLAR_ECORRUPT,
        "the store %s is damaged (a B-tree page it would change)", c->s->path);
    return APPLY_FAILED;
}

static int apply_batch(commit_ctx *c, cellar_batch *b)
{
    int rc = 0;
    result_op *res = b->results.items;
    key_op *keys = b->keys.items;
    node_op *nodes = b->nodes.items;
    for (size_t i = 0; !rc && i < b->results.n; i++)
        rc = apply_result(c, &res[i]);
    for (size_t i = 0; !rc && i < b->keys.n; i++) {
        MDB_val k = {16, keys[i].key.bytes}, v = {keys[i].len, keys[i].rec};
        rc = put(c, DB_KEYS, &k, &v, 0);
    }
    if (!rc && b->touches.n)
        rc = apply_touches(c, b);
    for (size_t i = 0; !rc && i < b->nodes.n; i++) {
        MDB_val k = {nodes[i].name_len, nodes[i].name};
        MDB_val v = {nodes[i].json_len, nodes[i].json};
        rc = put(c, DB_NODES, &k, &v, 0);
    }
    if (!rc && b->runs.n)
        rc = apply_runs(c, b);
    file_op *files = b->files.items;
    for (size_t i = 0; !rc && i < b->files.n; i++) {
        MDB_val k = {16, files[i].key.bytes}, v = {files[i].len, files[i].rec};
        rc = put(c, DB_FILES, &k, &v, 0);
    }
    return rc;
}

static bool has_blobs(const cellar_store *s, const cellar_batch *b)
{
    const result_op *res = b->results.items;
    for (size_t i = 0; i < b->results.n; i++)
        for (size_t j = 0; j < res[i].nsegs; j++)
            if (res[i].segs[j].len >= s->blob_min)
                return true;
    return false;
}

static void publish_run_ids(cellar_batch *b)
{
    run_op *runs = b->runs.items;
    for (size_t i = 0; i < b->runs.n; i++)
        if (runs[i].run_id)
            *runs[i].run_id = runs[i].assigned;
}

/* A store LMDB called damaged is set aside before writing, when no other
 * transaction of this process holds it. */
static cellar_status set_aside_if_damaged(cellar_store *s, cellar_error *err)
{
    if (!s->damaged)
        return CELLAR_OK;
    pthread_mutex_lock(&s->mu);
    bool idle = s->active == 0 && !s->resizing;
    if (idle)
        s->resizing = true;
    pthread_mutex_unlock(&s->mu);
    if (!idle)
        return cellar_error_set(
            err, CELLAR_ECORRUPT,
            "the store %s is damaged; close its readers to rebuild it", s->path);
    cellar_status st =
        env_set_aside(s, "LMDB reported corruption while it was in use", err);
    pthread_mutex_lock(&s->mu);
    s->resizing = false;
    pthread_cond_broadcast(&s->idle);
    pthread_mutex_unlock(&s->mu);
    return st;
}

/* One attempt: returns 0, an LMDB code, or APPLY_FAILED (status in c). */
static int commit_once(commit_ctx *c, cellar_batch *b)
{
    cellar_store *s = c->s;
    char marker[PATH_MAX];
    bool marked = false;
    c->added = 0;
    int rc = preflight(c, b);
    if (!rc)
        rc = env_txn_begin(s, 0, &c->txn);
    if (rc)
        return rc;
    if (blob_is_dirty(s)) {
        /* Holding the writer lock: nobody is between rename and commit. */
        blob_sweep(s, c->txn, true, NULL, NULL);
        blob_clear_markers(s);
    }
    if (has_blobs(s, b)) {
        if ((c->failed = blob_mark_dirty(s, marker, c->err)) != 0)
            rc = APPLY_FAILED;
        marked = !rc;
    }
    if (!rc)
        rc = apply_batch(c, b);
    if (rc)
        mdb_txn_abort(c->txn);
    else
        rc = mdb_txn_commit(c->txn);
    env_txn_done(s);
    if (rc == 0)
        env_pad_file(s);
    if (rc == 0 && marked)
        blob_unmark(marker);
    return rc;
}

cellar_status cellar_store_commit(cellar_store *store, cellar_batch *b, cellar_error *err)
{
    if (!store || !b)
        return cellar_error_set(err, CELLAR_EINVAL, "commit: missing argument");
    if (store->read_only)
        return cellar_error_set(err, CELLAR_EREADONLY, "the store %s is %s", store->path,
                                store->asked_read_only ? "opened read-only"
                                                       : "not writable by you");
    if (cellar_batch_empty(b))
        return CELLAR_OK;
    cellar_status st = set_aside_if_damaged(store, err);
    if (st)
        return st;
    commit_ctx c = {.s = store, .err = err};
    for (int attempt = 0; attempt < MAX_COMMIT_ATTEMPTS; attempt++) {
        int rc = commit_once(&c, b);
        if (rc == 0) {
            publish_run_ids(b);
            batch_clear(b);
            cellar_fingerprint_free(c.fp);
            gc_after_commit(store, c.added); /* gc.h: a store with a budget */
            return CELLAR_OK;
        }
        if (store->damaged && !set_aside_if_damaged(store, err))
            continue; /* a fresh store took its place: store the batch there */
        if (rc == APPLY_FAILED || rc != MDB_MAP_FULL) {
            cellar_fingerprint_free(c.fp);
            if (rc == APPLY_FAILED)
                return c.failed;
            /* LMDB reports a short write (a full disk, a quota, a file size
             * limit) as EIO: tell the user what is full instead. */
            if (rc == EIO && env_out_of_space(store, b->bytes))
                rc = ENOSPC;
            return env_error(store, err, rc, "cannot commit");
        }
        if ((rc = env_grow(store, b->bytes))) {
            cellar_fingerprint_free(c.fp);
            return cellar_error_set(
                err, CELLAR_EFULL, "the store %s is full and its map cannot grow: %s",
                store->path,
                rc == EBUSY ? "readers of this process stayed open" : mdb_strerror(rc));
        }
    }
    cellar_fingerprint_free(c.fp);
    return cellar_error_set(err, CELLAR_EFULL, "the store %s is still full after growing",
                            store->path);
}
