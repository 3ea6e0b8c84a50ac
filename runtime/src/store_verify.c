/*
 * store_verify.c - checking a whole store, and repairing what is damaged.
 *
 * How it works.  LMDB trusts its pages: on a damaged B-tree page it may
 * return garbage, loop, assert or fault.  So the walk runs in a forked child
 * process that opens its own environment on the store (an environment must
 * not be used across fork) and reports through a pipe, one line per event:
 *   "@ where"               what it is about to read (for a crash report)
 *   "! kind where message"  a problem
 *   "D db hexkey"           an entry a repair should delete
 *   "C records results blobs" the counts, last
 * The child checks the meta pages and file size (store_env.c), walks the
 * free list, the main database and every named database with cursors,
 * decodes every record, recomputes every result's checksum (blobs included)
 * and lists orphan files.  A walk that meets more entries than the file can
 * hold (8 bytes each at least) is a B-tree leading in circles: a structure
 * problem, not an endless walk.  If it dies of a signal or an LMDB error, that is
 * a structure problem at the last place it announced.  Repairs: a store
 * whose structure is damaged is set aside and replaced by a fresh one;
 * otherwise a second child deletes the listed entries and sweeps orphans in
 * one write transaction (freeing pages is where LMDB asserts on damage), and
 * if that child dies the store is set aside after all.
 */
#include "cellar/journal.h"
#include "store_internal.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

const char *cellar_problem_name(cellar_problem p)
{
    switch (p) {
    case CELLAR_PROBLEM_STRUCTURE: return "structure";
    case CELLAR_PROBLEM_RECORD: return "record";
    case CELLAR_PROBLEM_RESULT: return "result";
    case CELLAR_PROBLEM_BLOB: return "blob";
    case CELLAR_PROBLEM_ORPHAN: return "orphan";
    }
    return "?";
}

/* ---- the child ---- */

typedef struct child {
    FILE *out;
    cellar_store *s; /* the child's copy, pointed at its own environment */
    uint64_t records, results, blobs;
    uint64_t max_entries; /* more than data.mdb can hold: a walk that loops */
} child;

/* Tabs and newlines would break the line protocol. */
static void put_field(FILE *out, const char *text)
{
    for (const char *p = text; *p; p++)
        fputc(*p == '\t' || *p == '\n' ? ' ' : *p, out);
}

static void announce(child *c, const char *where)
{
    fputs("@\t", c->out);
    put_field(c->out, where);
    fputc('\n', c->out);
    fflush(c->out); /* so that a crash right after is placed correctly */
}

static void problem(child *c, cellar_problem kind, const char *where, const char *msg)
{
    fprintf(c->out, "!\t%d\t", (int)kind);
    put_field(c->out, where);
    fputc('\t', c->out);
    put_field(c->out, msg);
    fputc('\n', c->out);
}

static void hex_key(const MDB_val *k, char *out, size_t cap)
{
    size_t n = k->mv_size * 2 + 1 < cap ? k->mv_size : (cap - 1) / 2;
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", ((const uint8_t *)k->mv_data)[i]);
    out[2 * n] = '\0';
}

static void to_delete(child *c, int db, const MDB_val *k)
{
    char hex[1100];
    hex_key(k, hex, sizeof hex);
    fprintf(c->out, "D\t%d\t%s\n", db, hex);
}

static void forward_orphan(void *ctx, cellar_problem kind, const char *where,
                           const char *message)
{
    problem(ctx, kind, where, message);
}

/* Checks one entry of a named database by what that database holds. */
static void check_entry(child *c, MDB_txn *txn, int db, const MDB_val *k,
                        const MDB_val *v)
{
    char where[1200], hex[1100];
    hex_key(k, hex, sizeof hex);
    snprintf(where, sizeof where, "%s/%s", store_dbs[db].name, hex);
    cellar_key_record rec;
    result_layout L;
    cellar_hash dv, digest;
    cellar_error why;
    switch (db) {
    case DB_KEYS:
        if (k->mv_size != 16 || !record_key_decode(v->mv_data, v->mv_size, &rec)) {
            problem(c, CELLAR_PROBLEM_RECORD, where, "the key record does not parse");
            to_delete(c, db, k);
        }
        return;
    case DB_RUNS:
        if (k->mv_size != 8) {
            problem(c, CELLAR_PROBLEM_RECORD, where, "a run id is not 8 bytes");
            to_delete(c, db, k);
        }
        return;
    case DB_FILES: {
        cellar_file_record frec;
        const char *path;
        size_t path_len;
        cellar_hash want;
        if (k->mv_size != 16 ||
            !record_file_decode(v->mv_data, v->mv_size, &frec, &path, &path_len) ||
            (want = record_file_key(path, path_len),
             memcmp(want.bytes, k->mv_data, 16) != 0)) {
            problem(c, CELLAR_PROBLEM_RECORD, where,
                    "the kept file fingerprint does not parse");
            to_delete(c, db, k);
        }
        return;
    }
    case DB_JOURNAL: {
        cellar_journal_entry *e = NULL;
        if (k->mv_size != 16 ||
            cellar_journal_decode(v->mv_data, v->mv_size, &e, &why) != CELLAR_OK) {
            problem(c, CELLAR_PROBLEM_RECORD, where,
                    k->mv_size != 16 ? "a journal key is not 16 bytes" : why.message);
            to_delete(c, db, k);
        }
        free(e);
        return;
    }
    case DB_RESULTS: break;
    default: return;
    }
    if (k->mv_size != 16 || v->mv_size > RESULT_VALUE_MAX ||
        !record_result_parse(v->mv_data, v->mv_size, &L)) {
        problem(c, CELLAR_PROBLEM_RESULT, where, "the result header does not parse");
        to_delete(c, db, k);
        return;
    }
    memcpy(dv.bytes, k->mv_data, 16);
    cellar_reader r = {.store = c->s, .txn = txn};
    cellar_status st = reader_digest(&r, &dv, &L, &digest, &why);
    cellar_fingerprint_free(r.fp);
    c->results++;
    if (st == CELLAR_ENOTFOUND || st == CELLAR_ECORRUPT || st == CELLAR_EUNSAFE) {
        problem(c, CELLAR_PROBLEM_BLOB, where, why.message);
        to_delete(c, db, k);
    } else if (st) {
        problem(c, CELLAR_PROBLEM_RESULT, where, why.message);
    } else if (memcmp(digest.bytes, L.checksum, 16) ||
               memcmp(digest.bytes, dv.bytes, 16)) {
        problem(c, CELLAR_PROBLEM_RESULT, where,
                "its bytes do not match its checksum and data version");
        to_delete(c, db, k);
    }
    seg_info *segs = malloc(L.nsegs * sizeof *segs);
    if (segs) {
        record_result_segs(&L, segs);
        for (size_t i = 0; i < L.nsegs; i++)
            c->blobs += segs[i].blob;
        free(segs);
    }
}

/* Walks every entry of `dbi` (db < 0: the free list or main database). */
static int walk_db(child *c, MDB_txn *txn, MDB_dbi dbi, int db, const char *name)
{
    char where[128];
    snprintf(where, sizeof where, "the %s database", name);
    announce(c, where);
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc)
        return rc;
    uint64_t seen = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        c->records++;
        if (++seen > c->max_entries) {
            /* Every entry takes at least a node header (8 bytes) of a page:
             * a walk past file size / 8 entries is going round in circles. */
            char msg[256];
            snprintf(msg, sizeof msg,
                     "the walk of the %s database met more entries than data.mdb can "
                     "hold: its B-tree pages lead in circles",
                     name);
            problem(c, CELLAR_PROBLEM_STRUCTURE, "data.mdb", msg);
            rc = MDB_NOTFOUND;
            break;
        }
        if (k.mv_size > 511) {
            problem(c, CELLAR_PROBLEM_STRUCTURE, store_dbs[db >= 0 ? db : 0].name,
                    "a key longer than LMDB allows: its leaf page is damaged");
        } else if (db >= 0 && !env_value_ok(c->s, &v)) {
            char at[1200], hex[1100];
            hex_key(&k, hex, sizeof hex);
            snprintf(at, sizeof at, "%s/%s", store_dbs[db].name, hex);
            problem(c, CELLAR_PROBLEM_STRUCTURE, at,
                    "its overflow pages do not match the value's size");
        } else if (db >= 0) {
            check_entry(c, txn, db, &k, &v);
        }
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int child_walk(child *c)
{
    cellar_store *s = c->s;
    char path[PATH_MAX], why[512];
    snprintf(path, sizeof path, "%s/data.mdb", s->path);
    announce(c, "data.mdb's meta pages");
    if (!env_check_file(path, why, sizeof why)) {
        problem(c, CELLAR_PROBLEM_STRUCTURE, "data.mdb", why);
        return 0;
    }
    struct stat st;
    c->max_entries = stat(path, &st) == 0 ? (uint64_t)st.st_size / 8 + 16 : UINT64_MAX;
    MDB_txn *txn;
    unsigned flags = MDB_RDONLY | MDB_NOTLS | (s->no_lock ? MDB_NOLOCK : 0);
    int rc = mdb_env_create(&s->env);
    if (!rc)
        rc = mdb_env_set_maxdbs(s->env, DB_COUNT + 4);
    if (!rc)
        rc = mdb_env_set_mapsize(s->env, s->map_size);
    if (!rc)
        rc = mdb_env_open(s->env, s->path, flags, 0600);
    if (rc == EACCES || rc == EROFS)
        return fprintf(c->out, "E\tcannot open the environment: %s\n", mdb_strerror(rc)),
               0;
    if (!rc)
        rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
    if (!rc)
        announce(c, "the table of named databases");
    if (!rc)
        rc = env_open_dbis(s, txn, false);
    if (!rc)
        env_find_map_base(s, txn); /* this child's own map */
    if (!rc)
        rc = walk_db(c, txn, 0, -1, "free-page");
    if (!rc)
        rc = walk_db(c, txn, 1, -1, "main");
    for (int i = 0; !rc && i < DB_COUNT; i++)
        if (!db_missing(s, i))
            rc = walk_db(c, txn, s->dbi[i], i, store_dbs[i].name);
    if (rc) {
        problem(c, CELLAR_PROBLEM_STRUCTURE, "data.mdb", mdb_strerror(rc));
        return 0;
    }
    announce(c, "the blob files");
    blob_sweep(s, txn, false, forward_orphan, c);
    fprintf(c->out, "C\t%llu\t%llu\t%llu\n", (unsigned long long)c->records,
            (unsigned long long)c->results, (unsigned long long)c->blobs);
    mdb_txn_abort(txn); /* frees the reader slot in lock.mdb */
    mdb_env_close(s->env);
    return 0;
}

/* A crash in a child must end the child: the parent's handlers (a test
 * framework's, Python's faulthandler) would otherwise run in its place. */
static void child_signals(void)
{
    static const int sigs[] = {SIGSEGV, SIGBUS, SIGABRT, SIGILL, SIGFPE};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++)
        signal(sigs[i], SIG_DFL);
}

/* ---- the parent ---- */

typedef struct deletion {
    int db;
    uint8_t key[512];
    size_t len;
} deletion;

typedef struct parent {
    cellar_problem_fn fn;
    void *ctx;
    cellar_verify_counts counts;
    bool structure, orphans, open_failed;
    char where[256], open_error[512];
    deletion *dels;
    size_t ndels, cap;
} parent;

static void report(parent *p, cellar_problem kind, const char *where, const char *msg)
{
    p->counts.problems++;
    if (kind == CELLAR_PROBLEM_STRUCTURE)
        p->structure = true;
    if (kind == CELLAR_PROBLEM_ORPHAN)
        p->orphans = true;
    if (p->fn)
        p->fn(p->ctx, kind, where, msg);
}

static void add_deletion(parent *p, int db, const char *hex)
{
    if (db < 0 || db >= DB_COUNT || p->ndels == SIZE_MAX / sizeof *p->dels)
        return;
    if (p->ndels == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 16;
        deletion *d = realloc(p->dels, cap * sizeof *d);
        if (!d)
            return;
        p->dels = d;
        p->cap = cap;
    }
    deletion *d = &p->dels[p->ndels];
    size_t n = strlen(hex) / 2;
    if (n > sizeof d->key)
        return;
    for (size_t i = 0; i < n; i++) {
        unsigned x;
        if (sscanf(hex + 2 * i, "%2x", &x) != 1)
            return;
        d->key[i] = (uint8_t)x;
    }
    d->db = db;
    d->len = n;
    p->ndels++;
}

static void parse_line(parent *p, char *line)
{
    line[strcspn(line, "\n")] = '\0';
    char *f[4] = {line, NULL, NULL, NULL};
    for (int i = 1; i < 4 && f[i - 1]; i++) {
        char *tab = strchr(f[i - 1], '\t');
        if (tab) {
            *tab = '\0';
            f[i] = tab + 1;
        }
    }
    if (!strcmp(f[0], "@") && f[1])
        snprintf(p->where, sizeof p->where, "%s", f[1]);
    else if (!strcmp(f[0], "!") && f[3])
        report(p, (cellar_problem)atoi(f[1]), f[2], f[3]);
    else if (!strcmp(f[0], "D") && f[2])
        add_deletion(p, atoi(f[1]), f[2]);
    else if (!strcmp(f[0], "E") && f[1]) {
        p->open_failed = true;
        snprintf(p->open_error, sizeof p->open_error, "%s", f[1]);
    } else if (!strcmp(f[0], "C") && f[3]) {
        p->counts.records = strtoull(f[1], NULL, 10);
        p->counts.results = strtoull(f[2], NULL, 10);
        p->counts.blobs = strtoull(f[3], NULL, 10);
    }
}

static cellar_status run_child(cellar_store *s, parent *p, cellar_error *err)
{
    int fds[2];
    if (pipe(fds) != 0)
        return cellar_error_set(err, CELLAR_EIO, "cannot make a pipe: %s",
                                strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return cellar_error_set(err, CELLAR_EIO, "cannot fork the verifier: %s",
                                strerror(errno));
    }
    if (pid == 0) {
        child_signals();
        close(fds[0]);
        child c = {.out = fdopen(fds[1], "w"), .s = s};
        if (c.out)
            child_walk(&c);
        if (c.out)
            fflush(c.out);
        _exit(0);
    }
    close(fds[1]);
    FILE *in = fdopen(fds[0], "r");
    char line[8192];
    snprintf(p->where, sizeof p->where, "the start");
    while (in && fgets(line, sizeof line, in))
        parse_line(p, line);
    if (in)
        fclose(in);
    else
        close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (p->open_failed)
        return cellar_error_set(err, CELLAR_EREADONLY, "%s", p->open_error);
    if (WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status))) {
        char msg[400];
        if (WIFSIGNALED(status))
            snprintf(msg, sizeof msg, "LMDB crashed (signal %d, %s) reading %s",
                     WTERMSIG(status), strsignal(WTERMSIG(status)), p->where);
        else
            snprintf(msg, sizeof msg, "the verifier failed (exit %d) reading %s",
                     WEXITSTATUS(status), p->where);
        report(p, CELLAR_PROBLEM_STRUCTURE, "data.mdb", msg);
    }
    return CELLAR_OK;
}

/* In the repair child: deletes what the walk listed and sweeps orphans, in
 * one write transaction of its own environment.  Exit 0, or 1 on an error. */
static int repair_child(cellar_store *s, const parent *p, int out)
{
    MDB_txn *txn;
    unsigned flags = MDB_NOTLS | MDB_NOSYNC;
    int rc = mdb_env_create(&s->env);
    if (!rc)
        rc = mdb_env_set_maxdbs(s->env, DB_COUNT + 4);
    if (!rc)
        rc = mdb_env_set_mapsize(s->env, s->map_size);
    if (!rc)
        rc = mdb_env_open(s->env, s->path, flags, 0600);
    if (!rc)
        rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (!rc)
        rc = env_open_dbis(s, txn, false);
    uint64_t removed = 0;
    for (size_t i = 0; !rc && i < p->ndels; i++) {
        MDB_val k = {p->dels[i].len, (void *)p->dels[i].key};
        rc = mdb_del(txn, s->dbi[p->dels[i].db], &k, NULL);
        if (rc == MDB_NOTFOUND)
            rc = 0;
        else if (!rc)
            removed++;
    }
    if (!rc)
        removed += blob_sweep(s, txn, true, NULL, NULL);
    if (!rc)
        rc = mdb_txn_commit(txn);
    if (!rc)
        rc = mdb_env_sync(s->env, 1);
    if (!rc && write(out, &removed, sizeof removed) != (ssize_t)sizeof removed)
        rc = EIO;
    return rc ? 1 : 0;
}

/*
 * Repairs.  Deleting frees pages, and LMDB asserts on a damaged free list or
 * overflow header, so the deletes run in a child too; if it dies, the store
 * is treated as structurally damaged and set aside.
 */
static cellar_status repair(cellar_store *s, parent *p, cellar_error *err)
{
    if (!p->structure && !p->ndels && !p->orphans)
        return CELLAR_OK;
    uint64_t removed = 0;
    if (!p->structure) {
        int fds[2];
        if (pipe(fds) != 0)
            return cellar_error_set(err, CELLAR_EIO, "cannot make a pipe: %s",
                                    strerror(errno));
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0) {
            close(fds[0]);
            close(fds[1]);
            return cellar_error_set(err, CELLAR_EIO, "cannot fork the repair: %s",
                                    strerror(errno));
        }
        if (pid == 0) {
            child_signals();
            close(fds[0]);
            _exit(repair_child(s, p, fds[1]));
        }
        close(fds[1]);
        ssize_t got;
        while ((got = read(fds[0], &removed, sizeof removed)) < 0 && errno == EINTR)
            ;
        close(fds[0]);
        int status = 0;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        if (got == (ssize_t)sizeof removed && WIFEXITED(status) && !WEXITSTATUS(status)) {
            p->counts.repaired += removed;
            return CELLAR_OK;
        }
    }
    cellar_status st =
        env_set_aside(s,
                      p->structure ? "cellar verify found its structure damaged"
                                   : "deleting its damaged entries failed",
                      err);
    if (st)
        return st;
    p->counts.repaired++;
    /* The old store's blobs are orphans of the fresh one. */
    MDB_txn *txn;
    int rc = env_txn_begin(s, 0, &txn);
    if (rc)
        return env_error(s, err, rc, "cannot begin the sweep");
    p->counts.repaired += blob_sweep(s, txn, true, NULL, NULL);
    blob_clear_markers(s);
    rc = mdb_txn_commit(txn);
    env_txn_done(s);
    return rc ? env_error(s, err, rc, "cannot commit the sweep") : CELLAR_OK;
}

cellar_status cellar_store_verify(cellar_store *store, bool repair_it,
                                  cellar_problem_fn fn, void *ctx,
                                  cellar_verify_counts *counts, cellar_error *err)
{
    if (!store)
        return cellar_error_set(err, CELLAR_EINVAL, "verify: no store");
    if (repair_it && cellar_store_read_only(store))
        return cellar_error_set(err, CELLAR_EREADONLY,
                                "cannot repair the store %s: it is read-only",
                                store->path);
    parent p = {.fn = fn, .ctx = ctx};
    cellar_status st = run_child(store, &p, err);
    if (!st && repair_it)
        st = repair(store, &p, err);
    if (counts)
        *counts = p.counts;
    free(p.dels);
    return st;
}
