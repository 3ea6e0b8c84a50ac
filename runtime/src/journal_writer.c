/*
 * journal_writer.c - the relay's events in, journal entries out, off the
 * relay's thread (see journal_writer.h).
 *
 * Two halves that share only the queue.  The recorder runs on the relay's
 * thread: a small table of the cells under way, keyed by their request's
 * msg_id, filled from the hooked messages; it reads JSON through the wire
 * codec and never touches ZeroMQ.  A finished cell becomes one heap block
 * (entry and strings) pushed into a ring under a mutex that the writer holds
 * only to swap the ring's contents out, never while it writes, so a push
 * never waits behind LMDB.  The writer thread opens the store itself, then
 * appends each batch it took in one transaction; woken by a first entry, it
 * lingers 20 ms for the cells that follow, so that a burst of cells costs
 * the relay's thread one wakeup of the writer, not one per cell.  After each
 * batch the writer keeps the journal under its cap (cellar_journal_prune,
 * CELLAR_JOURNAL_MAX_CELLS / _BYTES): a count when within it, one batch
 * delete in a transaction of its own when above, never on the relay's thread.
 */
#define _GNU_SOURCE
#include "cellar/journal_writer.h"

#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cellar/definitions.h"
#include "cellar/journal.h"
#include "cellar/store.h"

enum { MAX_UNDERWAY = 256 };
/* How long the writer waits for more cells to share a transaction. */
#define LINGER_NS 20000000L
/* Session cells kept for replay: at most this much code in all. */
#define KEEP_MAX ((size_t)64 << 20)

typedef struct underway {
    char msg_id[128];
    char *code;
    size_t code_len;
    char *cell_id;
    bool silent, replied, idle;
    uint64_t start_ns;
    struct timespec t0;
    int64_t count;
    cellar_cell_outcome outcome;
    char ename[128];
} underway;

typedef struct kept {
    char *code;
    char *cell_id;
    int64_t count;
} kept;

struct cellar_journal_writer {
    char *dir;
    char session[128];
    /* recorder: relay thread only */
    underway cells[MAX_UNDERWAY];
    size_t ncells;
    kept *keep;
    size_t nkeep, cap_keep, kept_bytes;
    bool keep_full;
    cellar_replay_cell *replay;
    /* queue */
    pthread_mutex_t mu;
    pthread_cond_t wake;
    cellar_journal_entry **ring;
    size_t cap, head, count;
    bool stopping;
    pthread_t thread;
    bool started;
    atomic_bool off; /* the journal stopped: nothing more is queued */
    cellar_journal_limits limits; /* the writer thread's, read at the start */
    bool prune_off;               /* pruning failed once: the journal goes on */
    unsigned long dropped;
};

/* One line on stderr, written whole. */
__attribute__((format(printf, 1, 2))) static void warn(const char *fmt, ...)
{
    char line[4600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "cellar-kernel: %s\n", line);
}

static uint64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- the writer thread ---- */

static void *writer_main(void *arg)
{
    cellar_journal_writer *w = arg;
    cellar_store *store = NULL;
    cellar_error err;
    if (cellar_store_open(w->dir, NULL, &store, &err) != CELLAR_OK) {
        warn("the journal is off: %s", err.message);
        atomic_store(&w->off, true);
    } else if (cellar_store_read_only(store)) {
        warn("the journal is off: the store %s is read-only", cellar_store_path(store));
        atomic_store(&w->off, true);
    } else if (cellar_store_notice(store)) {
        warn("%s", cellar_store_notice(store));
    }
    cellar_journal_entry **batch = malloc(w->cap * sizeof *batch);
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (w->count == 0 && !w->stopping)
            pthread_cond_wait(&w->wake, &w->mu);
        if (w->count == 0 && w->stopping)
            break;
        /* Cells that finish within LINGER_NS of this one join its batch: one
         * transaction and one wakeup for a burst (Run All, a loop of small
         * executes) instead of one per cell, on a machine whose cores the
         * relay and the kernel need. */
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += LINGER_NS;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        while (!w->stopping && w->count < w->cap / 2 &&
               pthread_cond_timedwait(&w->wake, &w->mu, &until) == 0) {
        }
        size_t n = 0;
        while (w->count > 0) {
            cellar_journal_entry *e = w->ring[w->head];
            w->head = (w->head + 1) % w->cap;
            w->count--;
            if (batch)
                batch[n++] = e;
            else
                free(e);
        }
        pthread_mutex_unlock(&w->mu);
        if (n && !atomic_load(&w->off) &&
            cellar_journal_append(store, (const cellar_journal_entry *const *)batch, n,
                                  &err) != CELLAR_OK) {
            warn("the journal stopped (cells still run, unrecorded): %s", err.message);
            atomic_store(&w->off, true);
        } else if (n && !atomic_load(&w->off) && !w->prune_off &&
                   cellar_journal_prune(store, &w->limits, NULL, &err) != CELLAR_OK) {
            warn("the journal is no longer pruned (it may grow past its cap): %s",
                 err.message);
            w->prune_off = true;
        }
        for (size_t i = 0; i < n; i++)
            free(batch[i]);
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    free(batch);
    cellar_store_close(store);
    return NULL;
}

static void push(cellar_journal_writer *w, cellar_journal_entry *e)
{
    if (atomic_load(&w->off)) {
        free(e);
        return;
    }
    pthread_mutex_lock(&w->mu);
    bool full = w->count == w->cap;
    if (!full) {
        w->ring[(w->head + w->count) % w->cap] = e;
        w->count++;
        /* The writer sleeps until a first entry comes, then lingers for
         * more until the ring is half full: only those two wake it. */
        if (w->count == 1 || w->count == w->cap / 2)
            pthread_cond_signal(&w->wake);
    } else {
        w->dropped++;
    }
    unsigned long dropped = w->dropped;
    pthread_mutex_unlock(&w->mu);
    if (full) {
        free(e);
        if (dropped == 1 || dropped % 1000 == 0) {
            char n[32];
            snprintf(n, sizeof n, "%lu", dropped);
            warn("the journal's queue is full: a cell went unrecorded (%s so far)", n);
        }
    }
}

cellar_journal_writer *cellar_journal_writer_new(const char *store_dir,
                                                 const char *session, size_t queue_cap,
                                                 cellar_error *err)
{
    cellar_journal_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->dir = strdup(store_dir))) {
        free(w);
        cellar_error_set(err, CELLAR_ENOMEM, "out of memory starting the journal");
        return NULL;
    }
    snprintf(w->session, sizeof w->session, "%s", session);
    w->limits = cellar_journal_limits_from_env();
    w->limits.keep_session = w->session;
    w->cap = queue_cap ? queue_cap : CELLAR_JOURNAL_QUEUE_DEFAULT;
    w->ring = calloc(w->cap, sizeof *w->ring);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->wake, NULL);
    if (!w->ring) {
        cellar_journal_writer_free(w);
        cellar_error_set(err, CELLAR_ENOMEM, "out of memory starting the journal");
        return NULL;
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&w->thread, NULL, writer_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        cellar_journal_writer_free(w);
        cellar_error_set(err, CELLAR_EIO, "cannot start the journal's thread: %s",
                         strerror(rc));
        return NULL;
    }
    w->started = true;
    return w;
}

void cellar_journal_writer_free(cellar_journal_writer *w)
{
    if (!w)
        return;
    if (w->started) {
        pthread_mutex_lock(&w->mu);
        w->stopping = true;
        pthread_cond_signal(&w->wake);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->thread, NULL);
    }
    for (size_t i = 0; i < w->count; i++)
        free(w->ring[(w->head + i) % w->cap]);
    for (size_t i = 0; i < w->ncells; i++) {
        free(w->cells[i].code);
        free(w->cells[i].cell_id);
    }
    for (size_t i = 0; i < w->nkeep; i++) {
        free(w->keep[i].code);
        free(w->keep[i].cell_id);
    }
    free(w->keep);
    free(w->replay);
    free(w->ring);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->wake);
    free(w->dir);
    free(w);
}

/* ---- the recorder (the relay's thread) ---- */

static underway *find(cellar_journal_writer *w, const char *msg_id)
{
    for (size_t i = 0; msg_id[0] && i < w->ncells; i++)
        if (!strcmp(w->cells[i].msg_id, msg_id))
            return &w->cells[i];
    return NULL;
}

static void forget(cellar_journal_writer *w, underway *u)
{
    free(u->code);
    free(u->cell_id);
    *u = w->cells[--w->ncells];
}

static void keep_for_replay(cellar_journal_writer *w, const underway *u)
{
    if (w->keep_full)
        return;
    if (w->kept_bytes + u->code_len > KEEP_MAX) {
        w->keep_full = true;
        warn("this session's cells pass 64 MiB of code: later ones will not be "
             "replayed after a crash");
        return;
    }
    if (w->nkeep == w->cap_keep) {
        size_t cap = w->cap_keep ? w->cap_keep * 2 : 64;
        kept *k = realloc(w->keep, cap * sizeof *k);
        if (!k)
            return;
        w->keep = k;
        w->cap_keep = cap;
    }
    kept k = {strdup(u->code), strdup(u->cell_id), u->count};
    if (!k.code || !k.cell_id) {
        free(k.code);
        free(k.cell_id);
        return;
    }
    w->keep[w->nkeep++] = k;
    w->kept_bytes += u->code_len;
}

/* The cell is done: its entry goes to the queue, and it leaves the table. */
static void finish(cellar_journal_writer *w, underway *u)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t d =
        (int64_t)(now.tv_sec - u->t0.tv_sec) * 1000000000 + (now.tv_nsec - u->t0.tv_nsec);
    if (u->outcome == CELLAR_CELL_OK)
        keep_for_replay(w, u);
    size_t sl = strlen(w->session), cl = strlen(u->cell_id), el = strlen(u->ename);
    cellar_journal_entry *e = malloc(sizeof *e + sl + cl + el + u->code_len + 4);
    if (e) {
        char *p = (char *)(e + 1);
        *e = (cellar_journal_entry){.code_hash = cellar_hash_bytes(u->code, u->code_len),
                                    .code_len = u->code_len,
                                    .execution_count = u->count,
                                    .start_ns = u->start_ns,
                                    .duration_ns = d > 0 ? (uint64_t)d : 0,
                                    .outcome = u->outcome,
                                    .silent = u->silent};
        e->session = memcpy(p, w->session, sl + 1);
        p += sl + 1;
        e->cell_id = memcpy(p, u->cell_id, cl + 1);
        p += cl + 1;
        e->ename = memcpy(p, u->ename, el + 1);
        p += el + 1;
        memcpy(p, u->code, u->code_len);
        p[u->code_len] = '\0';
        e->code = p;
        push(w, e);
    }
    forget(w, u);
}

static char *string_of(json_t *obj, const char *key, size_t *len)
{
    json_t *v = json_object_get(obj, key);
    const char *s = json_is_string(v) ? json_string_value(v) : "";
    size_t n = json_is_string(v) ? json_string_length(v) : 0;
    char *out = malloc(n + 1);
    if (out) {
        memcpy(out, s, n);
        out[n] = '\0';
    }
    if (len)
        *len = n;
    return out;
}

static void on_request(cellar_journal_writer *w, const cellar_wire_msg *m,
                       const cellar_wire_info *info)
{
    if (!info->msg_id[0] || w->ncells == MAX_UNDERWAY || find(w, info->msg_id))
        return; /* a table full of cells that never finished: the newest go unrecorded */
    json_t *content = cellar_wire_read_json(m, CELLAR_WIRE_CONTENT);
    json_t *meta = cellar_wire_read_json(m, CELLAR_WIRE_METADATA);
    underway u = {.count = -1, .outcome = CELLAR_CELL_OK, .start_ns = wall_ns()};
    clock_gettime(CLOCK_MONOTONIC, &u.t0);
    snprintf(u.msg_id, sizeof u.msg_id, "%s", info->msg_id);
    u.code = string_of(content, "code", &u.code_len);
    u.cell_id = string_of(meta, "cellId", NULL);
    u.silent = json_is_true(json_object_get(content, "silent"));
    json_decref(content);
    json_decref(meta);
    if (!u.code || !u.cell_id) {
        free(u.code);
        free(u.cell_id);
        return;
    }
    w->cells[w->ncells++] = u;
}

static void on_input(cellar_journal_writer *w, const cellar_wire_msg *m,
                     const cellar_wire_info *info)
{
    underway *u = find(w, info->parent_msg_id);
    if (!u)
        return;
    json_t *c = cellar_wire_read_json(m, CELLAR_WIRE_CONTENT);
    json_t *n = json_object_get(c, "execution_count");
    if (json_is_integer(n))
        u->count = (int64_t)json_integer_value(n);
    json_decref(c);
}

static void on_reply(cellar_journal_writer *w, const cellar_wire_msg *m,
                     const cellar_wire_info *info)
{
    underway *u = find(w, info->parent_msg_id);
    if (!u)
        return;
    json_t *c = cellar_wire_read_json(m, CELLAR_WIRE_CONTENT);
    const char *status = json_string_value(json_object_get(c, "status"));
    json_t *n = json_object_get(c, "execution_count");
    if (json_is_integer(n) && !u->silent)
        u->count = (int64_t)json_integer_value(n);
    if (status && !strcmp(status, "aborted")) {
        u->outcome = CELLAR_CELL_ABORTED;
    } else if (!status || strcmp(status, "ok")) {
        u->outcome = CELLAR_CELL_ERROR;
        const char *ename = json_string_value(json_object_get(c, "ename"));
        snprintf(u->ename, sizeof u->ename, "%s", ename ? ename : "");
    }
    json_decref(c);
    u->replied = true;
    if (u->idle)
        finish(w, u);
}

static void on_status(cellar_journal_writer *w, const cellar_wire_msg *m,
                      const cellar_wire_info *info)
{
    underway *u = find(w, info->parent_msg_id);
    if (!u)
        return;
    json_t *c = cellar_wire_read_json(m, CELLAR_WIRE_CONTENT);
    const char *state = json_string_value(json_object_get(c, "execution_state"));
    bool idle = state && !strcmp(state, "idle");
    json_decref(c);
    if (!idle)
        return;
    u->idle = true;
    if (u->replied)
        finish(w, u);
}

static void on_event(void *ctx, cellar_proxy_event ev, const cellar_wire_msg *m,
                     const cellar_wire_info *info)
{
    cellar_journal_writer *w = ctx;
    switch (ev) {
    case CELLAR_PROXY_EXECUTE_REQUEST: on_request(w, m, info); break;
    case CELLAR_PROXY_EXECUTE_INPUT: on_input(w, m, info); break;
    case CELLAR_PROXY_EXECUTE_REPLY: on_reply(w, m, info); break;
    case CELLAR_PROXY_STATUS: on_status(w, m, info); break;
    case CELLAR_PROXY_CHILD_DIED:
        while (w->ncells > 0) {
            underway *u = &w->cells[w->ncells - 1];
            u->outcome = CELLAR_CELL_ERROR;
            snprintf(u->ename, sizeof u->ename, "KernelDied");
            finish(w, u);
        }
        break;
    case CELLAR_PROXY_CHILD_STARTED: break;
    }
}

/* The session's cells that ended ok and only define, in order; the others
 * are named on stderr with the reason. */
static size_t replay(void *ctx, const cellar_replay_cell **cells)
{
    cellar_journal_writer *w = ctx;
    free(w->replay);
    w->replay = calloc(w->nkeep ? w->nkeep : 1, sizeof *w->replay);
    size_t n = 0, skipped = 0;
    for (size_t i = 0; w->replay && i < w->nkeep; i++) {
        char why[CELLAR_DEFINITIONS_WHY_MAX];
        if (cellar_definitions_only(w->keep[i].code, strlen(w->keep[i].code), why)) {
            w->replay[n++] = (cellar_replay_cell){w->keep[i].code, w->keep[i].cell_id};
        } else {
            char cell[64];
            if (w->keep[i].count >= 0)
                snprintf(cell, sizeof cell, "cell [%lld]", (long long)w->keep[i].count);
            else
                snprintf(cell, sizeof cell, "a silent cell");
            if (skipped++ < 20)
                warn("not replaying %s: %s", cell, why);
        }
    }
    *cells = w->replay;
    return n;
}

cellar_proxy_hooks cellar_journal_writer_hooks(cellar_journal_writer *w)
{
    return (cellar_proxy_hooks){.ctx = w, .on_event = on_event, .replay = replay};
}
