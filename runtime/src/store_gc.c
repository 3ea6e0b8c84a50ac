/*
 * store_gc.c - a store that manages its size: forgetting nodes, code-aware
 * garbage collection under a byte budget, and automatic collection after a
 * commit (the rules are in gc.h).
 *
 * How it works.  A collection begins one LMDB write transaction, so that no
 * other writer can add a key between the plan and the deletes, and reads the
 * three databases it needs into arrays: every key record (its node name
 * pointing into the map, valid for the transaction), every result's size
 * (walked in key order, so the array is sorted by data version and found by
 * binary search) and every node name.  The plan is then pure arithmetic on
 * those arrays: keys sorted by node and code version give each node's
 * versions, ranked by their newest use; reference counts tell which results
 * lose their last key; the budget evicts by last use.  The deletes follow in
 * the same transaction, which commits.  The blob files of dropped results
 * are unlinked afterwards, in a second write transaction that is only held
 * for its writer lock and aborted: a writer that stored the same content in
 * between would find the file present and skip writing it (content
 * addressing), so each file is checked against the results first, the way
 * store_blob.c sweeps orphans.  A dry run reads in a read snapshot instead
 * and writes nothing.
 *
 * Automatic collection keeps a per-process tally of result bytes: measured
 * exactly (one walk of the results' headers) at most every 60 s, plus what
 * this process's commits added; when it passes the budget the commit that
 * did so collects down to 90% of it.
 *
 * Compaction is store_compact.c.
 */
#include "store_internal.h"

#include "cellar/gc.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define NO_RESULT UINT32_MAX
#define MEASURE_EVERY_NS (60ull * 1000000000ull)
#define GC_ATTEMPTS 8

enum { KEEP = 0, DROP_OLD, DROP_GONE, DROP_DANGLING, DROP_EVICTED };

typedef struct gc_key {
    cellar_hash key, cv;
    uint32_t node;   /* index into the plan's interned names */
    uint32_t result; /* index into results, or NO_RESULT */
    uint64_t used;   /* the newer of last used and created */
    uint64_t created;
    int drop;
} gc_key;

typedef struct gc_result {
    cellar_hash dv;
    uint64_t bytes;
    uint32_t refs;
    bool touched; /* a dropped key referred to it (forget drops only those) */
    bool drop;
} gc_result;

typedef struct name_ref {
    const char *p;
    size_t len;
} name_ref;

/* A distinct node name of the keys (pointing into the map). */
typedef struct gc_name {
    const char *p;
    size_t len;
    uint64_t hash;
} gc_name;

typedef struct gc_plan {
    cellar_store *s;
    MDB_txn *txn;
    bool check_values; /* a read snapshot: values are bounds-checked */
    gc_key *keys;
    size_t nkeys, capkeys;
    gc_result *res;
    size_t nres, capres;
    name_ref *nodes, *live;
    size_t nnodes, capnodes, nlive;
    /* Node names interned, so that the sort compares integers: a table of
     * 1 + index into `names` (0: empty), open addressing. */
    gc_name *names;
    size_t nnames, capnames;
    uint32_t *table;
    size_t table_cap; /* a power of two, at least twice nnames */
    cellar_status failed;
    cellar_error *err;
} gc_plan;

static void *grow(void *items, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap)
        return items;
    size_t c = *cap ? 2 * *cap : 256;
    void *p = realloc(items, c * elem);
    if (p)
        *cap = c;
    return p;
}

static void plan_free(gc_plan *p)
{
    free(p->names);
    free(p->table);
    free(p->keys);
    free(p->res);
    free(p->nodes);
    free(p->live);
}

static int cmp_name(const void *a, const void *b)
{
    const name_ref *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = n ? memcmp(x->p, y->p, n) : 0;
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

static bool has_name(const name_ref *names, size_t n, const char *p, size_t len)
{
    name_ref k = {p, len};
    return n && bsearch(&k, names, n, sizeof *names, cmp_name);
}

static uint32_t find_result(const gc_plan *p, const cellar_hash *dv)
{
    size_t lo = 0, hi = p->nres;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = memcmp(p->res[mid].dv.bytes, dv->bytes, 16);
        if (c == 0)
            return (uint32_t)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NO_RESULT;
}

/* FNV-1a: node names are short, and the table only needs a spread. */
static uint64_t name_hash(const char *p, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
    return h;
}

static bool table_insert(uint32_t *table, size_t cap, uint64_t hash, uint32_t value)
{
    for (size_t i = hash & (cap - 1);; i = (i + 1) & (cap - 1))
        if (!table[i]) {
            table[i] = value;
            return true;
        }
}

/* The index of `name` among the interned names, adding it; UINT32_MAX when
 * out of memory. */
static uint32_t intern(gc_plan *p, const char *name, size_t len)
{
    uint64_t h = name_hash(name, len);
    if (p->table_cap) {
        for (size_t i = h & (p->table_cap - 1); p->table[i];
             i = (i + 1) & (p->table_cap - 1)) {
            const gc_name *n = &p->names[p->table[i] - 1];
            if (n->hash == h && n->len == len && memcmp(n->p, name, len) == 0)
                return p->table[i] - 1;
        }
    }
    if (2 * (p->nnames + 1) > p->table_cap) {
        size_t cap = p->table_cap ? 2 * p->table_cap : 1024;
        uint32_t *t = calloc(cap, sizeof *t);
        if (!t)
            return UINT32_MAX;
        for (size_t i = 0; i < p->nnames; i++)
            table_insert(t, cap, p->names[i].hash, (uint32_t)i + 1);
        free(p->table);
        p->table = t;
        p->table_cap = cap;
    }
    gc_name *names = grow(p->names, &p->capnames, p->nnames, sizeof *names);
    if (!names)
        return UINT32_MAX;
    p->names = names;
    names[p->nnames] = (gc_name){name, len, h};
    table_insert(p->table, p->table_cap, h, (uint32_t)p->nnames + 1);
    return (uint32_t)p->nnames++;
}

/* ---- reading the databases ---- */

static cellar_status damaged(gc_plan *p, const char *db)
{
    return p->failed = cellar_error_set(
               p->err, CELLAR_ECORRUPT,
               "a record in the %s database of the store %s does not parse; run "
               "'cellar verify --repair' first",
               db, p->s->path);
}

/* Walks database `db`, calling `fn` on each pair; LMDB codes, or
 * APPLY_FAILED (-1) with p->failed set. */
static int each(gc_plan *p, int db,
                int (*fn)(gc_plan *, const MDB_val *, const MDB_val *))
{
    MDB_cursor *c;
    MDB_val k, v;
    int rc = mdb_cursor_open(p->txn, p->s->dbi[db], &c);
    if (rc)
        return rc;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (p->check_values && !env_value_ok(p->s, &v)) {
            damaged(p, store_dbs[db].name);
            rc = -1;
            break;
        }
        if ((rc = fn(p, &k, &v)) != 0)
            break;
    }
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int oom(gc_plan *p)
{
    p->failed = cellar_error_set(p->err, CELLAR_ENOMEM, "out of memory");
    return -1;
}

static int add_result(gc_plan *p, const MDB_val *k, const MDB_val *v)
{
    result_layout L;
    if (k->mv_size != 16 || v->mv_size > RESULT_VALUE_MAX ||
        !record_result_parse(v->mv_data, v->mv_size, &L)) {
        damaged(p, "results");
        return -1;
    }
    gc_result *res = grow(p->res, &p->capres, p->nres, sizeof *res);
    seg_info *segs = malloc(L.nsegs * sizeof *segs);
    if (!res || !segs) {
        free(segs);
        if (res)
            p->res = res;
        return oom(p);
    }
    p->res = res;
    gc_result *r = &res[p->nres++];
    *r = (gc_result){.bytes = v->mv_size};
    memcpy(r->dv.bytes, k->mv_data, 16);
    record_result_segs(&L, segs);
    for (size_t i = 0; i < L.nsegs; i++)
        r->bytes += segs[i].blob ? segs[i].len : 0;
    free(segs);
    return 0;
}

static int add_key(gc_plan *p, const MDB_val *k, const MDB_val *v)
{
    cellar_key_record rec;
    if (k->mv_size != 16 || !record_key_decode(v->mv_data, v->mv_size, &rec)) {
        damaged(p, "keys");
        return -1;
    }
    gc_key *keys = grow(p->keys, &p->capkeys, p->nkeys, sizeof *keys);
    if (!keys)
        return oom(p);
    p->keys = keys;
    gc_key *e = &keys[p->nkeys++];
    memcpy(e->key.bytes, k->mv_data, 16);
    e->cv = rec.code_version;
    if ((e->node = intern(p, rec.node, rec.node_len)) == UINT32_MAX)
        return oom(p);
    e->used = rec.last_used_ns > rec.created_ns ? rec.last_used_ns : rec.created_ns;
    e->created = rec.created_ns;
    e->result = find_result(p, &rec.data_version);
    e->drop = KEEP;
    return 0;
}

static int add_node(gc_plan *p, const MDB_val *k, const MDB_val *v)
{
    (void)v;
    name_ref *nodes = grow(p->nodes, &p->capnodes, p->nnodes, sizeof *nodes);
    if (!nodes)
        return oom(p);
    p->nodes = nodes;
    nodes[p->nnodes++] = (name_ref){k->mv_data, k->mv_size};
    return 0;
}

/* Reads results first (keys look their results up), then keys and nodes. */
static int read_store(gc_plan *p, const char *const *live, size_t nlive)
{
    int rc = each(p, DB_RESULTS, add_result);
    if (!rc)
        rc = each(p, DB_KEYS, add_key);
    if (!rc)
        rc = each(p, DB_NODES, add_node);
    if (rc || !nlive)
        return rc;
    /* LMDB's memcmp order is cmp_name's, so nodes is sorted already. */
    p->live = malloc(nlive * sizeof *p->live);
    if (!p->live)
        return oom(p);
    for (size_t i = 0; i < nlive; i++)
        if (live[i])
            p->live[p->nlive++] = (name_ref){live[i], strlen(live[i])};
    qsort(p->live, p->nlive, sizeof *p->live, cmp_name);
    return 0;
}

/* ---- the plan ---- */

/* Any order that groups keys by node, then by code version, will do. */
static int by_node_version(const void *a, const void *b)
{
    const gc_key *x = *(gc_key *const *)a, *y = *(gc_key *const *)b;
    if (x->node != y->node)
        return (x->node > y->node) - (x->node < y->node);
    uint64_t u[2], v[2];
    memcpy(u, x->cv.bytes, 16);
    memcpy(v, y->cv.bytes, 16);
    if (u[0] != v[0])
        return (u[0] > v[0]) - (u[0] < v[0]);
    return (u[1] > v[1]) - (u[1] < v[1]);
}

typedef struct version_span {
    size_t from, to; /* in the sorted key order */
    uint64_t used;
} version_span;

static int by_recency(const void *a, const void *b)
{
    const version_span *x = a, *y = b;
    return (x->used < y->used) - (x->used > y->used); /* newest first */
}

static int by_last_use(const void *a, const void *b)
{
    const gc_key *x = *(gc_key *const *)a, *y = *(gc_key *const *)b;
    if (x->used != y->used)
        return (x->used > y->used) - (x->used < y->used);
    return (x->created > y->created) - (x->created < y->created);
}

/* Marks the keys of each node's versions beyond the `keep` newest. */
static int drop_old_versions(gc_plan *p, gc_key **order, unsigned keep)
{
    version_span *spans = NULL;
    size_t cap = 0;
    for (size_t i = 0; i < p->nkeys;) {
        size_t end = i, n = 0;
        while (end < p->nkeys && order[end]->node == order[i]->node)
            end++;
        /* order[i, end) is one node; split it by code version. */
        for (size_t j = i; j < end;) {
            size_t k = j;
            uint64_t used = 0;
            while (k < end && cellar_hash_equal(&order[k]->cv, &order[j]->cv)) {
                if (order[k]->drop == KEEP && order[k]->used > used)
                    used = order[k]->used;
                k++;
            }
            bool live = false;
            for (size_t m = j; m < k; m++)
                live |= order[m]->drop == KEEP;
            version_span *sp = live ? grow(spans, &cap, n, sizeof *spans) : spans;
            if (live && !sp) {
                free(spans);
                return oom(p);
            }
            spans = sp;
            if (live) /* a version whose keys all went takes no place */
                spans[n++] = (version_span){j, k, used};
            j = k;
        }
        if (n > 1)
            qsort(spans, n, sizeof *spans, by_recency);
        for (size_t v = keep; v < n; v++)
            for (size_t k = spans[v].from; k < spans[v].to; k++)
                if (order[k]->drop == KEEP)
                    order[k]->drop = DROP_OLD;
        i = end;
    }
    free(spans);
    return 0;
}

/* Drops a key: its result loses a reference. */
static void drop_key(gc_plan *p, gc_key *k, int why)
{
    k->drop = why;
    if (k->result != NO_RESULT) {
        p->res[k->result].refs--;
        p->res[k->result].touched = true;
    }
}

static void count(const gc_plan *p, cellar_gc_report *out)
{
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < p->nkeys; i++) {
        int d = p->keys[i].drop;
        out->keys += d != KEEP;
        out->keys_old += d == DROP_OLD;
        out->keys_gone += d == DROP_GONE;
        out->keys_dangling += d == DROP_DANGLING;
        out->keys_evicted += d == DROP_EVICTED;
    }
    out->keys_kept = p->nkeys - out->keys;
    for (size_t i = 0; i < p->nres; i++) {
        out->size_before += p->res[i].bytes;
        if (p->res[i].drop) {
            out->results++;
            out->freed_bytes += p->res[i].bytes;
        }
    }
    out->results_kept = p->nres - out->results;
    out->size_after = out->size_before - out->freed_bytes;
}

/* The whole gc plan, or (forget != NULL) the forget plan. */
static int make_plan(gc_plan *p, const cellar_gc_options *o, const name_ref *forget,
                     size_t nforget)
{
    for (size_t i = 0; i < p->nkeys; i++)
        if (p->keys[i].result != NO_RESULT)
            p->res[p->keys[i].result].refs++;
    /* Whether each distinct node goes: forgotten, or no longer existing. */
    bool *gone = malloc((p->nnames ? p->nnames : 1) * sizeof *gone);
    if (!gone)
        return oom(p);
    for (size_t i = 0; i < p->nnames; i++) {
        const gc_name *n = &p->names[i];
        gone[i] = forget ? has_name(forget, nforget, n->p, n->len)
                         : !has_name(p->nodes, p->nnodes, n->p, n->len) &&
                               !has_name(p->live, p->nlive, n->p, n->len);
    }
    for (size_t i = 0; i < p->nkeys; i++) {
        gc_key *k = &p->keys[i];
        if (gone[k->node])
            drop_key(p, k, DROP_GONE);
        else if (!forget && k->result == NO_RESULT)
            drop_key(p, k, DROP_DANGLING);
    }
    free(gone);
    gc_key **order = malloc((p->nkeys ? p->nkeys : 1) * sizeof *order);
    if (!order)
        return oom(p);
    for (size_t i = 0; i < p->nkeys; i++)
        order[i] = &p->keys[i];
    int rc = 0;
    if (!forget) {
        unsigned keep = o && o->keep ? o->keep : CELLAR_GC_KEEP_DEFAULT;
        qsort(order, p->nkeys, sizeof *order, by_node_version);
        rc = drop_old_versions(p, order, keep);
        /* drop_old_versions only marked them: settle their references. */
        for (size_t i = 0; !rc && i < p->nkeys; i++)
            if (p->keys[i].drop == DROP_OLD)
                drop_key(p, &p->keys[i], DROP_OLD);
    }
    uint64_t total = 0;
    for (size_t i = 0; i < p->nres; i++) {
        gc_result *r = &p->res[i];
        r->drop = r->refs == 0 && (!forget || r->touched);
        total += r->drop ? 0 : r->bytes;
    }
    uint64_t budget = !forget && o ? o->max_size : 0;
    if (!rc && budget && total > budget) {
        qsort(order, p->nkeys, sizeof *order, by_last_use);
        for (size_t i = 0; i < p->nkeys && total > budget; i++) {
            gc_key *k = order[i];
            if (k->drop != KEEP)
                continue;
            drop_key(p, k, DROP_EVICTED);
            gc_result *r = &p->res[k->result];
            if (r->refs == 0 && !r->drop) {
                r->drop = true;
                total -= r->bytes;
            }
        }
    }
    free(order);
    return rc;
}

/* ---- applying it ---- */

typedef struct blob_ref {
    cellar_hash dv;
    size_t index;
} blob_ref;

typedef struct blob_list {
    blob_ref *items;
    size_t n, cap;
} blob_list;

/* Notes the blob segments of a result about to be deleted (its stored
 * value `v`), so they can be unlinked after the commit. */
static int note_blobs(gc_plan *p, const cellar_hash *dv, const MDB_val *v, blob_list *out)
{
    result_layout L;
    if (!record_result_parse(v->mv_data, v->mv_size, &L))
        return 0;
    seg_info *segs = malloc(L.nsegs * sizeof *segs);
    if (!segs)
        return oom(p);
    record_result_segs(&L, segs);
    for (size_t i = 0; i < L.nsegs; i++) {
        if (!segs[i].blob)
            continue;
        blob_ref *items = grow(out->items, &out->cap, out->n, sizeof *items);
        if (!items) {
            free(segs);
            return oom(p);
        }
        out->items = items;
        items[out->n++] = (blob_ref){*dv, i};
    }
    free(segs);
    return 0;
}

/* Deletes the marked entries of database `db`, whose walk order is the
 * order of the plan's array (read in this transaction, unchanged since):
 * one cursor pass, no descent per delete.  `marked(p, i)` says whether entry
 * i goes; `before` (may be NULL) sees each value first. */
static int delete_marked(gc_plan *p, int db, size_t n, bool (*marked)(gc_plan *, size_t),
                         int (*before)(gc_plan *, size_t, const MDB_val *, blob_list *),
                         blob_list *blobs)
{
    MDB_cursor *c;
    MDB_val k, v;
    int rc = mdb_cursor_open(p->txn, p->s->dbi[db], &c);
    if (rc)
        return rc;
    size_t i = 0;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0 && i < n;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT), i++) {
        if (!marked(p, i))
            continue;
        if (before && (rc = before(p, i, &v, blobs)) != 0)
            break;
        /* After a delete the cursor stands on the next entry, and MDB_NEXT
         * returns that one (LMDB's C_DEL). */
        if ((rc = mdb_cursor_del(c, 0)) != 0)
            break;
    }
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static bool result_marked(gc_plan *p, size_t i)
{
    return p->res[i].drop;
}

static bool key_marked(gc_plan *p, size_t i)
{
    return p->keys[i].drop != KEEP;
}

static int result_blobs(gc_plan *p, size_t i, const MDB_val *v, blob_list *blobs)
{
    return note_blobs(p, &p->res[i].dv, v, blobs);
}

static int apply_plan(gc_plan *p, const name_ref *forget, size_t nforget,
                      blob_list *blobs)
{
    int rc = delete_marked(p, DB_RESULTS, p->nres, result_marked, result_blobs, blobs);
    if (!rc)
        rc = delete_marked(p, DB_KEYS, p->nkeys, key_marked, NULL, NULL);
    for (size_t i = 0; !rc && i < nforget; i++) {
        MDB_val k = {forget[i].len, (void *)forget[i].p};
        if (k.mv_size == 0 || k.mv_size > (size_t)mdb_env_get_maxkeysize(p->s->env))
            continue;
        rc = mdb_del(p->txn, p->s->dbi[DB_NODES], &k, NULL);
        if (rc == MDB_NOTFOUND)
            rc = 0;
    }
    return rc;
}

/* Whether the results of `txn` name blob `index` of `dv`. */
static bool blob_in_use(cellar_store *s, MDB_txn *txn, const blob_ref *b)
{
    MDB_val k = {16, (void *)b->dv.bytes}, v;
    result_layout L;
    if (mdb_get(txn, s->dbi[DB_RESULTS], &k, &v) != 0)
        return false;
    if (!record_result_parse(v.mv_data, v.mv_size, &L) || b->index >= L.nsegs)
        return true; /* when unsure, keep it */
    seg_info *segs = malloc(L.nsegs * sizeof *segs);
    if (!segs)
        return true;
    record_result_segs(&L, segs);
    bool blob = segs[b->index].blob;
    free(segs);
    return blob;
}

/* Unlinks the blobs of dropped results that no result names now, holding
 * the writer lock (a transaction begun and aborted).  Returns how many. */
static uint64_t unlink_blobs(cellar_store *s, const blob_list *blobs)
{
    MDB_txn *txn;
    uint64_t removed = 0;
    if (!blobs->n || env_txn_begin(s, 0, &txn) != 0)
        return 0; /* left as orphans: the next sweep or compact takes them */
    for (size_t i = 0; i < blobs->n; i++) {
        char path[PATH_MAX];
        if (blob_in_use(s, txn, &blobs->items[i]))
            continue;
        blob_path(s, &blobs->items[i].dv, blobs->items[i].index, path);
        removed += unlink(path) == 0;
    }
    mdb_txn_abort(txn);
    env_txn_done(s);
    return removed;
}

static cellar_status lmdb_failed(cellar_store *s, int rc, cellar_error *err)
{
    return env_error(s, err, rc, "cannot collect garbage");
}

/* One collection (or forget) in a write transaction, retried after growing
 * the map when the deletes need more room. */
static cellar_status collect(cellar_store *s, const cellar_gc_options *o,
                             const name_ref *forget, size_t nforget,
                             cellar_gc_report *report, cellar_error *err)
{
    cellar_gc_report local;
    report = report ? report : &local;
    memset(report, 0, sizeof *report);
    if (!s)
        return cellar_error_set(err, CELLAR_EINVAL, "gc: no store");
    if (cellar_store_read_only(s))
        return cellar_error_set(err, CELLAR_EREADONLY,
                                "the store %s is read-only: nothing can be dropped",
                                s->path);
    for (int attempt = 0; attempt < GC_ATTEMPTS; attempt++) {
        gc_plan p = {.s = s, .err = err};
        blob_list blobs = {0};
        int rc = env_txn_begin(s, 0, &p.txn);
        if (rc)
            return lmdb_failed(s, rc, err);
        rc = read_store(&p, o ? o->live : NULL, o ? o->nlive : 0);
        if (!rc)
            rc = make_plan(&p, o, forget, nforget);
        if (!rc)
            count(&p, report);
        bool nothing = !rc && !report->keys && !report->results && !nforget;
        if (!rc && !nothing)
            rc = apply_plan(&p, forget, nforget, &blobs);
        /* Killed between the commit and the unlinks, this process would leave
         * orphans: a sweep marker has the next writer remove them. */
        char marker[PATH_MAX];
        bool marked = false;
        if (!rc && blobs.n) {
            if ((p.failed = blob_mark_dirty(s, marker, err)) != CELLAR_OK)
                rc = -1;
            marked = !rc;
        }
        if (rc || nothing)
            mdb_txn_abort(p.txn);
        else
            rc = mdb_txn_commit(p.txn);
        env_txn_done(s);
        cellar_status failed = p.failed;
        plan_free(&p);
        if (rc == 0) {
            report->blobs_removed = unlink_blobs(s, &blobs);
            if (marked)
                blob_unmark(marker);
            free(blobs.items);
            return CELLAR_OK;
        }
        free(blobs.items);
        if (rc == -1)
            return failed;
        if (rc != MDB_MAP_FULL)
            return lmdb_failed(s, rc, err);
        if ((rc = env_grow(s, ((uint64_t)4 << 20) << attempt)))
            return cellar_error_set(err, CELLAR_EFULL,
                                    "the store %s is full and its map cannot grow for "
                                    "the collection: %s",
                                    s->path, mdb_strerror(rc));
    }
    return cellar_error_set(err, CELLAR_EFULL, "the store %s is still full after growing",
                            s->path);
}

cellar_status cellar_store_gc(cellar_store *store, const cellar_gc_options *options,
                              cellar_gc_report *report, cellar_error *err)
{
    if (options && options->dry_run) {
        cellar_reader *r;
        cellar_status st = cellar_reader_begin(store, &r, err);
        if (st)
            return st;
        st = cellar_reader_gc_plan(r, options, report, err);
        cellar_reader_end(r);
        return st;
    }
    cellar_gc_report local;
    report = report ? report : &local;
    cellar_status st = collect(store, options, NULL, 0, report, err);
    if (st == CELLAR_OK) {
        pthread_mutex_lock(&store->mu);
        store->gc_tally = report->size_after;
        store->gc_tally_known = true;
        store->gc_tally_ns = now_ns();
        pthread_mutex_unlock(&store->mu);
    }
    return st;
}

cellar_status cellar_reader_gc_plan(cellar_reader *r, const cellar_gc_options *options,
                                    cellar_gc_report *report, cellar_error *err)
{
    cellar_gc_report local;
    report = report ? report : &local;
    memset(report, 0, sizeof *report);
    if (!r)
        return cellar_error_set(err, CELLAR_EINVAL, "gc plan: no open reader");
    gc_plan p = {.s = r->store, .txn = r->txn, .check_values = true, .err = err};
    int rc = read_store(&p, options ? options->live : NULL, options ? options->nlive : 0);
    if (!rc)
        rc = make_plan(&p, options, NULL, 0);
    if (!rc)
        count(&p, report);
    cellar_status failed = p.failed;
    plan_free(&p);
    if (rc == -1)
        return failed;
    return rc ? lmdb_failed(r->store, rc, err) : CELLAR_OK;
}

cellar_status cellar_store_forget(cellar_store *store, const char *const *nodes, size_t n,
                                  cellar_gc_report *report, cellar_error *err)
{
    if (n && !nodes)
        return cellar_error_set(err, CELLAR_EINVAL, "forget: no node names");
    name_ref *names = malloc((n ? n : 1) * sizeof *names);
    if (!names)
        return cellar_error_set(err, CELLAR_ENOMEM, "out of memory");
    size_t used = 0;
    for (size_t i = 0; i < n; i++)
        if (nodes[i] && *nodes[i])
            names[used++] = (name_ref){nodes[i], strlen(nodes[i])};
    qsort(names, used, sizeof *names, cmp_name);
    cellar_status st = collect(store, NULL, names, used, report, err);
    free(names);
    return st;
}

/* ---- automatic collection ---- */

void cellar_store_set_max_size(cellar_store *store, uint64_t max_size)
{
    pthread_mutex_lock(&store->mu);
    store->max_size = max_size;
    pthread_mutex_unlock(&store->mu);
}

uint64_t cellar_store_max_size(const cellar_store *store)
{
    return store->max_size;
}

/* Exact bytes of the results, in a read snapshot; false when it failed. */
static bool measure(cellar_store *s, uint64_t *bytes)
{
    cellar_reader *r;
    cellar_store_stats st;
    if (cellar_reader_begin(s, &r, NULL) != CELLAR_OK)
        return false;
    bool ok = cellar_reader_stats(r, &st, NULL) == CELLAR_OK;
    cellar_reader_end(r);
    *bytes = st.result_bytes;
    return ok;
}

void gc_after_commit(cellar_store *s, uint64_t added)
{
    pthread_mutex_lock(&s->mu);
    uint64_t max = s->max_size, now = now_ns();
    bool go = max && !s->gc_running;
    bool stale = !s->gc_tally_known || now - s->gc_tally_ns > MEASURE_EVERY_NS;
    s->gc_tally += added;
    if (go && !stale && s->gc_tally <= max)
        go = false;
    if (go)
        s->gc_running = true;
    pthread_mutex_unlock(&s->mu);
    if (!go)
        return;
    uint64_t bytes = 0;
    bool over = true;
    if (stale && measure(s, &bytes)) {
        pthread_mutex_lock(&s->mu);
        s->gc_tally = bytes;
        s->gc_tally_known = true;
        s->gc_tally_ns = now;
        pthread_mutex_unlock(&s->mu);
        over = bytes > max;
    }
    if (over) {
        cellar_gc_options o = {.max_size = max / 10 * 9 + (max % 10) * 9 / 10};
        cellar_gc_report rep;
        cellar_store_gc(s, &o, &rep, NULL); /* a failure waits for the next commit */
    }
    pthread_mutex_lock(&s->mu);
    s->gc_running = false;
    pthread_mutex_unlock(&s->mu);
}
