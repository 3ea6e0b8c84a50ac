/*
 * journal.c - the session journal's record codec and its database (see
 * journal.h).
 *
 * A record is a JSON object in format 1; decoding copies every string into
 * one block after the entry struct, so an entry is a single free().  The
 * database lives in the store's environment (DB_JOURNAL in store_dbs[]), and
 * this file is the one part of the store that writes it: an append is its
 * own small write transaction, retried once the map has grown when LMDB says
 * it is full, refused on a store that cannot be written.  Keys are the start
 * time, big-endian, then a counter, so a cursor walks the journal in time
 * order and the newest entry is the last.  Pruning (cellar_journal_prune)
 * reads first: a read transaction names the sessions whose definition cells
 * stay and lists the keys of every other entry, oldest first; then one write
 * transaction deletes them in that order while mdb_stat says the database is
 * above its low-water marks, so the write lock is held for deletes only.
 */
#include "cellar/journal.h"

#include <errno.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cellar/definitions.h"
#include "cellar/units.h"
#include "store_internal.h"

const char *cellar_cell_outcome_name(cellar_cell_outcome outcome)
{
    switch (outcome) {
    case CELLAR_CELL_OK: return "ok";
    case CELLAR_CELL_ERROR: return "error";
    case CELLAR_CELL_ABORTED: return "aborted";
    }
    return "unknown";
}

static bool outcome_from_name(const char *s, cellar_cell_outcome *out)
{
    for (int o = CELLAR_CELL_OK; o <= CELLAR_CELL_ABORTED; o++)
        if (!strcmp(s, cellar_cell_outcome_name((cellar_cell_outcome)o))) {
            *out = (cellar_cell_outcome)o;
            return true;
        }
    return false;
}

/* ---- the codec ---- */

/* A JSON string of `len` bytes; when they are not UTF-8 (or hold a NUL) and
 * `lossy`, each byte that breaks a sequence becomes U+FFFD, and if jansson
 * still refuses (an overlong form, a surrogate), every non-ASCII byte does. */
static json_t *text(const char *s, size_t len, bool lossy)
{
    json_t *j = json_stringn(s, len);
    if (j || !lossy)
        return j;
    char *buf = malloc(len * 3 + 1);
    if (!buf)
        return NULL;
    for (int pass = 0; pass < 2 && !j; pass++) {
        size_t n = 0;
        for (size_t i = 0; i < len;) {
            const unsigned char c = (unsigned char)s[i];
            size_t w = c < 0x80         ? 1
                       : (c >> 5) == 6  ? 2
                       : (c >> 4) == 14 ? 3
                       : (c >> 3) == 30 ? 4
                                        : 0;
            bool good = w && i + w <= len && c != 0 && (pass == 0 || w == 1);
            for (size_t k = 1; good && k < w; k++)
                good = ((unsigned char)s[i + k] & 0xC0) == 0x80;
            if (good) {
                memcpy(buf + n, s + i, w);
                n += w;
                i += w;
            } else {
                memcpy(buf + n, "\xEF\xBF\xBD", 3);
                n += 3;
                i++;
            }
        }
        j = json_stringn(buf, n);
    }
    free(buf);
    return j;
}

cellar_status cellar_journal_encode(const cellar_journal_entry *e, char **out,
                                    size_t *len, cellar_error *err)
{
    if (out)
        *out = NULL;
    if (!e || !out || !e->session || !e->cell_id || (!e->code && e->code_len) ||
        !e->ename)
        return cellar_error_set(err, CELLAR_EINVAL, "journal entry: a missing field");
    json_t *session = json_string(e->session), *cell = json_string(e->cell_id);
    if (!session || !cell) {
        json_decref(session);
        json_decref(cell);
        return cellar_error_set(err, CELLAR_EINVAL,
                                "journal entry: the session or cellId is not UTF-8");
    }
    char hex[CELLAR_HASH_HEX_LEN + 1];
    cellar_hash_to_hex(&e->code_hash, hex);
    json_t *o =
        json_pack("{s:i, s:o, s:o, s:o?, s:s, s:I, s:I, s:I, s:s, s:o?, s:b}", "format",
                  CELLAR_JOURNAL_FORMAT, "session", session, "cell_id", cell, "code",
                  text(e->code ? e->code : "", e->code_len, true), "code_hash", hex,
                  "execution_count", (json_int_t)e->execution_count, "start_ns",
                  (json_int_t)e->start_ns, "duration_ns", (json_int_t)e->duration_ns,
                  "outcome", cellar_cell_outcome_name(e->outcome), "ename",
                  text(e->ename, strlen(e->ename), true), "silent", e->silent);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!s)
        return cellar_error_set(err, CELLAR_ENOMEM,
                                "out of memory encoding a journal entry");
    *out = s;
    if (len)
        *len = strlen(s);
    return CELLAR_OK;
}

static cellar_status corrupt(cellar_error *err, const char *what)
{
    return cellar_error_set(err, CELLAR_ECORRUPT, "journal record: %s", what);
}

cellar_status cellar_journal_decode(const char *t, size_t len, cellar_journal_entry **out,
                                    cellar_error *err)
{
    if (!out)
        return cellar_error_set(err, CELLAR_EINVAL, "journal decode: missing argument");
    *out = NULL;
    if (!t)
        return cellar_error_set(err, CELLAR_EINVAL, "journal decode: missing argument");
    json_error_t je;
    json_t *d = json_loadb(t, len, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(d)) {
        json_decref(d);
        return cellar_error_set(err, CELLAR_ECORRUPT,
                                "journal record: not a JSON object (%s at byte %d)",
                                d ? "not an object" : je.text, d ? 0 : je.position);
    }
    json_t *format = json_object_get(d, "format");
    if (!json_is_integer(format)) {
        json_decref(d);
        return corrupt(err, "no integer \"format\"");
    }
    if (json_integer_value(format) != CELLAR_JOURNAL_FORMAT) {
        long long v = (long long)json_integer_value(format);
        json_decref(d);
        return cellar_error_set(err, CELLAR_EVERSION,
                                "journal record: format %lld, but this cellar reads only "
                                "format %d (a newer cellar wrote it)",
                                v, CELLAR_JOURNAL_FORMAT);
    }
    const char *session, *cell_id, *code, *hash, *outcome, *ename;
    size_t session_len, cell_len, code_len, ename_len;
    json_int_t count, start, duration;
    int silent;
    if (json_unpack(d, "{s:s%, s:s%, s:s%, s:s, s:I, s:I, s:I, s:s, s:s%, s:b}",
                    "session", &session, &session_len, "cell_id", &cell_id, &cell_len,
                    "code", &code, &code_len, "code_hash", &hash, "execution_count",
                    &count, "start_ns", &start, "duration_ns", &duration, "outcome",
                    &outcome, "ename", &ename, &ename_len, "silent", &silent) != 0) {
        json_decref(d);
        return corrupt(err, "a field is missing or of the wrong type");
    }
    cellar_journal_entry e = {.execution_count = count,
                              .start_ns = (uint64_t)start,
                              .duration_ns = (uint64_t)duration,
                              .silent = silent,
                              .code_len = code_len};
    if (start < 0 || duration < 0 || count < -1 ||
        !outcome_from_name(outcome, &e.outcome) || strlen(hash) != CELLAR_HASH_HEX_LEN ||
        !cellar_hash_from_hex(hash, &e.code_hash) || strlen(session) != session_len ||
        strlen(cell_id) != cell_len) {
        json_decref(d);
        return corrupt(err, "a field has a value it cannot have");
    }
    size_t need = sizeof e + session_len + cell_len + code_len + ename_len + 4;
    cellar_journal_entry *r = malloc(need);
    if (!r) {
        json_decref(d);
        return cellar_error_set(err, CELLAR_ENOMEM,
                                "out of memory decoding a journal entry");
    }
    char *p = (char *)(r + 1);
    const char *src[4] = {session, cell_id, code, ename};
    size_t lens[4] = {session_len, cell_len, code_len, ename_len};
    const char **dst[4] = {&e.session, &e.cell_id, &e.code, &e.ename};
    for (int i = 0; i < 4; i++) {
        memcpy(p, src[i], lens[i]);
        p[lens[i]] = '\0';
        *dst[i] = p;
        p += lens[i] + 1;
    }
    *r = e;
    json_decref(d);
    *out = r;
    return CELLAR_OK;
}

bool cellar_journal_replayable(const cellar_journal_entry *e,
                               char why[CELLAR_JOURNAL_WHY_MAX])
{
    if (why)
        why[0] = '\0';
    if (!e) {
        if (why)
            snprintf(why, CELLAR_JOURNAL_WHY_MAX, "no cell");
        return false;
    }
    if (e->outcome != CELLAR_CELL_OK) {
        if (why)
            snprintf(why, CELLAR_JOURNAL_WHY_MAX, "it ended %s%s%.64s%s",
                     e->outcome == CELLAR_CELL_ABORTED ? "aborted" : "with an error",
                     e->ename[0] ? " (" : "", e->ename, e->ename[0] ? ")" : "");
        return false;
    }
    return cellar_definitions_only(e->code, e->code_len, why);
}

/* ---- the database ---- */

static void make_key(uint8_t key[16], uint64_t start_ns)
{
    static _Atomic uint64_t counter;
    put_u64be(key, start_ns);
    put_u64be(key + 8,
              ((uint64_t)getpid() << 32) | (atomic_fetch_add(&counter, 1) & 0xffffffffu));
}

/* One attempt: 0 or an LMDB code. */
static int append_once(cellar_store *s, char *const *texts, const size_t *lens,
                       const cellar_journal_entry *const *entries, size_t n)
{
    MDB_txn *txn;
    int rc = env_txn_begin(s, 0, &txn);
    if (rc)
        return rc;
    for (size_t i = 0; i < n && !rc; i++) {
        uint8_t key[16];
        make_key(key, entries[i]->start_ns);
        MDB_val k = {sizeof key, key}, v = {lens[i], texts[i]};
        rc = mdb_put(txn, s->dbi[DB_JOURNAL], &k, &v, MDB_NOOVERWRITE);
    }
    if (rc)
        mdb_txn_abort(txn);
    else
        rc = mdb_txn_commit(txn);
    env_txn_done(s);
    if (!rc)
        env_pad_file(s);
    return rc;
}

/* CELLAR_OK when this process may write the journal, else EREADONLY saying why. */
static cellar_status journal_writable(cellar_store *s, cellar_error *err)
{
    if (s->read_only || !s->dbi[DB_JOURNAL])
        return cellar_error_set(err, CELLAR_EREADONLY, "the store %s is %s", s->path,
                                s->asked_read_only ? "opened read-only"
                                                   : "not writable by you");
    if (s->lock_lost || !safety_lock_unchanged(s))
        return cellar_error_set(err, CELLAR_EREADONLY,
                                "the store %s: lock.mdb was replaced; not writing",
                                s->path);
    return CELLAR_OK;
}

cellar_status cellar_journal_append(cellar_store *s,
                                    const cellar_journal_entry *const *entries, size_t n,
                                    cellar_error *err)
{
    if (!s || (n && !entries))
        return cellar_error_set(err, CELLAR_EINVAL, "journal append: missing argument");
    cellar_status ws = journal_writable(s, err);
    if (ws)
        return ws;
    if (n == 0)
        return CELLAR_OK;
    char **texts = calloc(n, sizeof *texts);
    size_t *lens = calloc(n, sizeof *lens);
    cellar_status st =
        texts && lens
            ? CELLAR_OK
            : cellar_error_set(err, CELLAR_ENOMEM, "out of memory writing the journal");
    uint64_t bytes = 0;
    for (size_t i = 0; !st && i < n; i++) {
        st = cellar_journal_encode(entries[i], &texts[i], &lens[i], err);
        bytes += lens[i] + 64;
    }
    for (int attempt = 0; !st && attempt < 8; attempt++) {
        int rc = append_once(s, texts, lens, entries, n);
        if (rc == 0)
            break;
        if (rc != MDB_MAP_FULL) {
            if (rc == EIO && env_out_of_space(s, bytes))
                rc = ENOSPC;
            st = env_error(s, err, rc, "cannot write the journal");
        } else if ((rc = env_grow(s, bytes)) != 0) {
            st =
                cellar_error_set(err, CELLAR_EFULL,
                                 "the store %s is full and its map cannot grow", s->path);
        } else if (attempt == 7) {
            st = cellar_error_set(err, CELLAR_EFULL, "the store %s is still full",
                                  s->path);
        }
    }
    for (size_t i = 0; texts && i < n; i++)
        free(texts[i]);
    free(texts);
    free(lens);
    return st;
}

/* Walks DB_JOURNAL; `fn` sees each decoded entry.  `backwards` for newest first. */
static cellar_status walk(cellar_reader *r, bool backwards,
                          int (*fn)(void *, const cellar_journal_entry *), void *ctx,
                          cellar_error *err)
{
    cellar_store *s = r->store;
    if (!s->dbi[DB_JOURNAL])
        return CELLAR_OK; /* a store from before the journal, opened read-only */
    MDB_cursor *c;
    MDB_val k, v;
    int rc = mdb_cursor_open(r->txn, s->dbi[DB_JOURNAL], &c);
    if (rc)
        return env_error(s, err, rc, "cannot read the journal");
    cellar_status st = CELLAR_OK;
    MDB_cursor_op op = backwards ? MDB_LAST : MDB_FIRST;
    while ((rc = mdb_cursor_get(c, &k, &v, op)) == 0) {
        op = backwards ? MDB_PREV : MDB_NEXT;
        cellar_journal_entry *e = NULL;
        if (!env_value_ok(s, &v)) {
            st = cellar_error_set(err, CELLAR_ECORRUPT, "the journal is damaged");
            break;
        }
        if ((st = cellar_journal_decode(v.mv_data, v.mv_size, &e, err)) != CELLAR_OK)
            break;
        int stop = fn(ctx, e);
        free(e);
        if (stop)
            break;
    }
    mdb_cursor_close(c);
    if (!st && rc && rc != MDB_NOTFOUND)
        st = env_error(s, err, rc, "cannot read the journal");
    return st;
}

typedef struct each_ctx {
    const char *session;
    cellar_journal_fn fn;
    void *ctx;
} each_ctx;

static int each_visit(void *ctx, const cellar_journal_entry *e)
{
    each_ctx *w = ctx;
    if (w->session && strcmp(w->session, e->session))
        return 0;
    return w->fn(w->ctx, e);
}

cellar_status cellar_journal_each(cellar_reader *r, const char *session,
                                  cellar_journal_fn fn, void *ctx, cellar_error *err)
{
    if (!r || !fn)
        return cellar_error_set(err, CELLAR_EINVAL, "journal walk: missing argument");
    each_ctx w = {session, fn, ctx};
    return walk(r, false, each_visit, &w, err);
}

typedef struct last_ctx {
    const char *except;
    uint64_t before_ns;
    char *out;
    size_t cap;
    bool found, fits;
} last_ctx;

static int last_visit(void *ctx, const cellar_journal_entry *e)
{
    last_ctx *w = ctx;
    if ((w->except && !strcmp(w->except, e->session)) || e->start_ns >= w->before_ns)
        return 0;
    w->found = true;
    w->fits = strlen(e->session) < w->cap;
    if (w->fits)
        strcpy(w->out, e->session);
    return 1;
}

cellar_status cellar_journal_last_session(cellar_reader *r, const char *except,
                                          uint64_t before_ns, char *out, size_t cap,
                                          cellar_error *err)
{
    if (!r || !out || cap == 0)
        return cellar_error_set(err, CELLAR_EINVAL, "journal: missing argument");
    last_ctx w = {except, before_ns, out, cap, false, false};
    cellar_status st = walk(r, true, last_visit, &w, err);
    if (st)
        return st;
    if (!w.found)
        return cellar_error_set(err, CELLAR_ENOTFOUND, "the journal has no %ssession",
                                except ? "earlier " : "");
    if (!w.fits)
        return cellar_error_set(err, CELLAR_EINVAL, "a session id is too long");
    return CELLAR_OK;
}

/* ---- the journal's size ---- */

static uint64_t env_count(const char *name, uint64_t fallback, bool size)
{
    const char *v = getenv(name);
    uint64_t n;
    if (!v || !*v)
        return fallback;
    if (size)
        return cellar_units_parse_size(v, &n) ? n : fallback;
    char *end;
    errno = 0;
    unsigned long long c = strtoull(v, &end, 10);
    return *v >= '0' && *v <= '9' && !*end && !errno ? (uint64_t)c : fallback;
}

cellar_journal_limits cellar_journal_limits_from_env(void)
{
    return (cellar_journal_limits){
        .max_cells = env_count("CELLAR_JOURNAL_MAX_CELLS",
                               CELLAR_JOURNAL_MAX_CELLS_DEFAULT, false),
        .max_bytes = env_count("CELLAR_JOURNAL_MAX_BYTES",
                               CELLAR_JOURNAL_MAX_BYTES_DEFAULT, true),
        .keep_session = NULL};
}

static void db_size(const MDB_stat *st, uint64_t *cells, uint64_t *bytes)
{
    *cells = st->ms_entries;
    *bytes = (uint64_t)st->ms_psize *
             (st->ms_branch_pages + st->ms_leaf_pages + st->ms_overflow_pages);
}

cellar_status cellar_journal_size(cellar_reader *r, uint64_t *cells, uint64_t *bytes,
                                  cellar_error *err)
{
    if (!r || !cells)
        return cellar_error_set(err, CELLAR_EINVAL, "journal size: missing argument");
    uint64_t c = 0, b = 0;
    if (r->store->dbi[DB_JOURNAL]) {
        MDB_stat st;
        int rc = mdb_stat(r->txn, r->store->dbi[DB_JOURNAL], &st);
        if (rc)
            return env_error(r->store, err, rc, "cannot read the journal");
        db_size(&st, &c, &b);
    }
    *cells = c;
    if (bytes)
        *bytes = b;
    return CELLAR_OK;
}

/* The limits are passed when either count is above its cap; the low-water
 * marks are 90% of them. */
static bool over(const cellar_journal_limits *l, uint64_t cells, uint64_t bytes, bool low)
{
    uint64_t mc = low ? l->max_cells - l->max_cells / 10 : l->max_cells;
    uint64_t mb = low ? l->max_bytes - l->max_bytes / 10 : l->max_bytes;
    return (l->max_cells && cells > mc) || (l->max_bytes && bytes > mb);
}

typedef struct prune_plan {
    const cellar_journal_limits *limits;
    char sessions[CELLAR_JOURNAL_KEEP_SESSIONS][128]; /* the other kept sessions */
    size_t nsessions;
    uint8_t (*keys)[16]; /* what may go, oldest first */
    size_t nkeys, cap;
    /* When only the cell count is above its low-water mark, this many keys
     * are enough (0: every key that may go is listed). */
    uint64_t enough;
} prune_plan;

static bool kept_session(const prune_plan *p, const char *session)
{
    if (p->limits->keep_session && !strcmp(p->limits->keep_session, session))
        return true;
    for (size_t i = 0; i < p->nsessions; i++)
        if (!strcmp(p->sessions[i], session))
            return true;
    return false;
}

/* Read phase: the newest other sessions, then every entry that may go. 0 or
 * an LMDB code; ENOMEM; MDB_CORRUPTED for a value outside the map. */
static int plan_prune(cellar_store *s, MDB_txn *txn, prune_plan *p)
{
    MDB_cursor *c;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, s->dbi[DB_JOURNAL], &c);
    if (rc)
        return rc;
    /* Newest first, until enough other sessions are named. */
    for (MDB_cursor_op op = MDB_LAST;
         p->nsessions < CELLAR_JOURNAL_KEEP_SESSIONS &&
         (rc = mdb_cursor_get(c, &k, &v, op)) == 0;
         op = MDB_PREV) {
        cellar_journal_entry *e = NULL;
        if (!env_value_ok(s, &v)) {
            rc = MDB_CORRUPTED;
            break;
        }
        if (cellar_journal_decode(v.mv_data, v.mv_size, &e, NULL) != CELLAR_OK)
            continue;
        if (!kept_session(p, e->session) && strlen(e->session) < sizeof p->sessions[0])
            strcpy(p->sessions[p->nsessions++], e->session);
        free(e);
    }
    if (rc == MDB_NOTFOUND || rc == 0)
        rc = 0;
    /* Oldest first: every entry but the kept sessions' definition cells. */
    for (MDB_cursor_op op = MDB_FIRST;
         !rc && (!p->enough || p->nkeys < p->enough) &&
         (rc = mdb_cursor_get(c, &k, &v, op)) == 0;
         op = MDB_NEXT) {
        cellar_journal_entry *e = NULL;
        if (!env_value_ok(s, &v)) {
            rc = MDB_CORRUPTED;
            break;
        }
        bool keep = cellar_journal_decode(v.mv_data, v.mv_size, &e, NULL) == CELLAR_OK &&
                    kept_session(p, e->session) && cellar_journal_replayable(e, NULL);
        free(e);
        if (keep || k.mv_size != 16)
            continue;
        if (p->nkeys == p->cap) {
            size_t cap = p->cap ? p->cap * 2 : 256;
            void *keys = realloc(p->keys, cap * sizeof *p->keys);
            if (!keys) {
                rc = ENOMEM;
                break;
            }
            p->keys = keys;
            p->cap = cap;
        }
        memcpy(p->keys[p->nkeys++], k.mv_data, 16);
    }
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Write phase: deletes the planned keys, oldest first, until the journal is
 * at its low-water marks.  0 or an LMDB code. */
static int prune_once(cellar_store *s, const prune_plan *p, uint64_t *removed)
{
    MDB_txn *txn;
    *removed = 0;
    int rc = env_txn_begin(s, 0, &txn);
    if (rc)
        return rc;
    MDB_stat st;
    uint64_t cells, bytes;
    for (size_t i = 0; !rc && i < p->nkeys; i++) {
        if ((rc = mdb_stat(txn, s->dbi[DB_JOURNAL], &st)) != 0)
            break;
        db_size(&st, &cells, &bytes);
        if (!over(p->limits, cells, bytes, true))
            break;
        MDB_val k = {16, p->keys[i]};
        rc = mdb_del(txn, s->dbi[DB_JOURNAL], &k, NULL);
        if (rc == MDB_NOTFOUND) /* another process pruned it first */
            rc = 0;
        else if (rc == 0)
            ++*removed;
    }
    if (rc || *removed == 0) {
        mdb_txn_abort(txn);
    } else {
        rc = mdb_txn_commit(txn);
    }
    env_txn_done(s);
    if (rc)
        *removed = 0;
    return rc;
}

cellar_status cellar_journal_prune(cellar_store *s, const cellar_journal_limits *limits,
                                   uint64_t *removed, cellar_error *err)
{
    if (removed)
        *removed = 0;
    if (!s || !limits)
        return cellar_error_set(err, CELLAR_EINVAL, "journal prune: missing argument");
    cellar_status ws = journal_writable(s, err);
    if (ws)
        return ws;
    MDB_txn *txn;
    int rc = env_txn_begin(s, MDB_RDONLY, &txn);
    if (rc)
        return env_error(s, err, rc, "cannot read the journal");
    MDB_stat st;
    uint64_t cells = 0, bytes = 0;
    if ((rc = mdb_stat(txn, s->dbi[DB_JOURNAL], &st)) == 0)
        db_size(&st, &cells, &bytes);
    prune_plan p = {.limits = limits};
    bool needed = !rc && over(limits, cells, bytes, false);
    cellar_journal_limits by_bytes = {.max_bytes = limits->max_bytes};
    if (needed && !over(&by_bytes, cells, bytes, true))
        p.enough = cells - (limits->max_cells - limits->max_cells / 10);
    if (needed)
        rc = plan_prune(s, txn, &p);
    mdb_txn_abort(txn);
    env_txn_done(s);
    cellar_status status = CELLAR_OK;
    if (rc == ENOMEM)
        status = cellar_error_set(err, CELLAR_ENOMEM, "out of memory pruning the journal");
    else if (rc == MDB_CORRUPTED)
        status = cellar_error_set(err, CELLAR_ECORRUPT, "the journal is damaged");
    else if (rc)
        status = env_error(s, err, rc, "cannot read the journal");
    uint64_t gone = 0;
    for (int attempt = 0; !status && needed && p.nkeys && attempt < 8; attempt++) {
        rc = prune_once(s, &p, &gone);
        if (rc == 0)
            break;
        if (rc != MDB_MAP_FULL)
            status = env_error(s, err, rc, "cannot prune the journal");
        else if (env_grow(s, 1 << 20) != 0 || attempt == 7)
            status = cellar_error_set(err, CELLAR_EFULL,
                                      "the store %s is full and its map cannot grow",
                                      s->path);
    }
    free(p.keys);
    if (removed)
        *removed = gone;
    return status;
}
