/*
 * store_stage.c - staging: a result's large segments are written to the
 * store in the same pass that computes its data version.
 *
 * A data version is needed as soon as a node returns (its dependents' keys
 * are made of it), while the commit that stores it comes at the end of the
 * run.  Hashing then and writing at the commit reads a 1 GiB value twice;
 * staging reads it once.  Each segment that would become a blob
 * (blob_choose) is cut into 1 MiB chunks; the calling thread copies a chunk
 * into one of eight private buffers and hashes it there, and the store's
 * writer thread (made at the first stage, kept until close) write(2)s the
 * buffers in order to an unnamed file (O_TMPFILE) in blobs/tmp/.  So the
 * hash of chunk i overlaps the write of chunk i-1, the copy lands in cache
 * where both the hash and the kernel's copy read it, and the file holds
 * exactly the bytes that were hashed, whatever another thread does to the
 * caller's memory meanwhile.
 *
 * A staged file has no name until a commit gives it one: blob_write (inside
 * the write transaction) links it under a temporary name with linkat(2)
 * through /proc/self/fd and renames that into place, instead of writing the
 * bytes again.  A stage that is never committed (the run failed, the value
 * was already stored, the process died) vanishes with its descriptors, so it
 * leaves no orphan and no sweep ever sees it.  Staging is best effort: a
 * filesystem without O_TMPFILE, a full disk, no memory or no thread all
 * (and a forked child, which has no writer thread) leave the data version
 * computed and nothing staged, and the commit writes
 * the blob from the caller's bytes as it always could.  Stages are listed in
 * the store (under `mu`) so blob_write finds them by data version and index.
 */
#define _GNU_SOURCE /* O_TMPFILE */
#include "store_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define CHUNK ((size_t)1 << 20)
#define SLOTS 8
/* Descriptors one store keeps open for stages, at most: beyond it values are
 * only hashed (their commit writes them), so a run of many large results
 * cannot take the process's descriptors. */
#define MAX_STAGED_FILES 256

typedef struct staged_file {
    size_t index;
    uint64_t len;
    int fd;
} staged_file;

struct cellar_stage {
    cellar_store *store; /* NULL once the store was closed */
    cellar_stage *next;  /* in store->stages */
    cellar_hash dv;
    staged_file *files;
    size_t nfiles;
};

/* ---- the writer thread ---- */

typedef struct slot {
    uint8_t *buf;
    size_t len;
    int fd;
} slot;

/* The store's writer: its thread and buffers are made at the first stage
 * and kept until the store closes, so a stage pays no thread start and no
 * page faults on fresh buffers (those cost more than writing a 1 MiB blob).
 * One stage at a time uses it (`busy`). */
struct stage_writer {
    pthread_mutex_t busy; /* held by the stage using the writer */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    slot slots[SLOTS];
    uint64_t filled, written; /* chunks handed to the writer, and written */
    bool closing;
    int error; /* errno of the first failed write; then nothing more is written */
    uint8_t *mem;
    pthread_t thread;
    pid_t pid; /* the process whose thread it is: a forked child has none */
};

static void *writer_main(void *arg)
{
    stage_writer *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->written == p->filled && !p->closing)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->written == p->filled)
            break;
        slot sl = p->slots[p->written % SLOTS];
        bool skip = p->error != 0;
        pthread_mutex_unlock(&p->mu);
        int e = skip || blob_write_all(sl.fd, sl.buf, sl.len) ? 0 : errno;
        pthread_mutex_lock(&p->mu);
        if (e && !p->error)
            p->error = e;
        p->written++;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static stage_writer *writer_new(void)
{
    stage_writer *p = calloc(1, sizeof *p);
    if (!p || !(p->mem = aligned_alloc(64, SLOTS * CHUNK))) {
        free(p);
        return NULL;
    }
    for (size_t i = 0; i < SLOTS; i++)
        p->slots[i].buf = p->mem + i * CHUNK;
    pthread_mutex_init(&p->busy, NULL);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->pid = getpid();
    /* The writer takes no signals: the caller's threads handle them. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    bool running = pthread_create(&p->thread, NULL, writer_main, p) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (running)
        return p;
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&p->busy);
    free(p->mem);
    free(p);
    return NULL;
}

/* The store's writer, made on first use and taken for this stage; NULL when
 * it cannot be had (no memory, no thread, a forked child). */
static stage_writer *writer_take(cellar_store *s)
{
    pthread_mutex_lock(&s->mu);
    if (!s->writer)
        s->writer = writer_new();
    stage_writer *p = s->writer;
    pthread_mutex_unlock(&s->mu);
    if (!p || p->pid != getpid())
        return NULL;
    pthread_mutex_lock(&p->busy);
    p->error = 0; /* the last stage drained it: filled == written */
    return p;
}

/* Waits until every chunk handed over is written and gives the writer back;
 * returns the first write error of this stage, or 0. */
static int writer_give_back(stage_writer *p)
{
    pthread_mutex_lock(&p->mu);
    while (p->written != p->filled)
        pthread_cond_wait(&p->cv, &p->mu);
    int e = p->error;
    pthread_mutex_unlock(&p->mu);
    pthread_mutex_unlock(&p->busy);
    return e;
}

void stage_writer_free(stage_writer *p)
{
    if (!p)
        return;
    if (p->pid != getpid())
        return; /* a forked child's copy: the thread is the parent's */
    pthread_mutex_lock(&p->mu);
    p->closing = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&p->busy);
    free(p->mem);
    free(p);
}

/* A free buffer for the next chunk, or NULL once a write failed. */
static slot *pipeline_next(stage_writer *p)
{
    pthread_mutex_lock(&p->mu);
    while (p->filled - p->written == SLOTS && !p->error)
        pthread_cond_wait(&p->cv, &p->mu);
    slot *sl = p->error ? NULL : &p->slots[p->filled % SLOTS];
    pthread_mutex_unlock(&p->mu);
    return sl;
}

static void pipeline_post(stage_writer *p)
{
    pthread_mutex_lock(&p->mu);
    p->filled++;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* Hashes `len` bytes of `data` into `fp`, and unless the pipeline failed
 * copies each chunk into a buffer, hashes the copy and has it written to
 * `fd`.  False when the file is incomplete. */
static bool hash_and_write(stage_writer *p, cellar_fingerprint *fp, int fd, const uint8_t *data,
                           size_t len)
{
    size_t at = 0;
    while (at < len) {
        size_t n = len - at < CHUNK ? len - at : CHUNK;
        slot *sl = pipeline_next(p);
        if (!sl) {
            cellar_fingerprint_update(fp, data + at, len - at);
            return false;
        }
        memcpy(sl->buf, data + at, n);
        cellar_fingerprint_update(fp, sl->buf, n);
        sl->len = n;
        sl->fd = fd;
        pipeline_post(p);
        at += n;
    }
    return true;
}

/* ---- stages ---- */

static int open_unnamed(cellar_store *s)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/blobs", s->path);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return -1;
    snprintf(dir, sizeof dir, "%s/blobs/tmp", s->path);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return -1;
    return open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
}

static void stage_close_files(cellar_stage *st)
{
    for (size_t i = 0; i < st->nfiles; i++)
        close(st->files[i].fd);
    st->nfiles = 0;
}

/* How many descriptors the store's stages hold (caller holds s->mu). */
static size_t staged_files(const cellar_store *s)
{
    size_t n = 0;
    for (const cellar_stage *st = s->stages; st; st = st->next)
        n += st->nfiles;
    return n;
}

static cellar_hash hash_only(cellar_fingerprint *fp, const cellar_segment *segs,
                             size_t nsegs, size_t from)
{
    for (size_t i = from; i < nsegs; i++)
        cellar_fingerprint_add(fp, i == 0 ? CELLAR_SEG_STREAM : CELLAR_SEG_BUFFER,
                               segs[i].data, segs[i].len);
    return cellar_fingerprint_digest(fp);
}

cellar_status cellar_store_stage(cellar_store *store, const cellar_segment *segs,
                                 size_t nsegs, cellar_hash *data_version,
                                 cellar_stage **out, cellar_error *err)
{
    if (out)
        *out = NULL;
    if (!segs || !nsegs || nsegs > MAX_SEGMENTS || !data_version || !out)
        return cellar_error_set(err, CELLAR_EINVAL, "stage: needs 1 to %u segments",
                                MAX_SEGMENTS);
    for (size_t i = 0; i < nsegs; i++)
        if (!segs[i].data && segs[i].len)
            return cellar_error_set(err, CELLAR_EINVAL, "stage: segment %zu is NULL",
                                    i);
    cellar_fingerprint *fp = cellar_fingerprint_new();
    bool *blob = calloc(nsegs, sizeof *blob);
    cellar_stage *st = calloc(1, sizeof *st);
    staged_file *files = calloc(nsegs, sizeof *files);
    if (!fp || !blob || !st || !files) {
        cellar_fingerprint_free(fp);
        free(blob);
        free(st);
        free(files);
        return cellar_error_set(err, CELLAR_ENOMEM, "out of memory staging a result");
    }
    st->files = files;
    size_t nblobs = 0;
    if (store && !store->read_only && !store->lock_lost) {
        blob_choose(store, segs, nsegs, blob);
        for (size_t i = 0; i < nsegs; i++)
            nblobs += blob[i];
        pthread_mutex_lock(&store->mu);
        if (staged_files(store) + nblobs > MAX_STAGED_FILES)
            nblobs = 0;
        pthread_mutex_unlock(&store->mu);
    }
    stage_writer *p = nblobs ? writer_take(store) : NULL;
    size_t i = 0;
    bool staging = p != NULL;
    for (; staging && i < nsegs; i++) {
        char tag = i == 0 ? CELLAR_SEG_STREAM : CELLAR_SEG_BUFFER;
        if (!blob[i]) {
            cellar_fingerprint_add(fp, tag, segs[i].data, segs[i].len);
            continue;
        }
        int fd = open_unnamed(store);
        if (fd < 0)
            break; /* no O_TMPFILE here, or no room: hash the rest */
        st->files[st->nfiles++] = (staged_file){i, segs[i].len, fd};
        cellar_fingerprint_begin(fp, tag, segs[i].len);
        if (!hash_and_write(p, fp, fd, segs[i].data, segs[i].len)) {
            i++;
            break;
        }
    }
    bool complete = staging && i == nsegs;
    if (staging && writer_give_back(p) != 0)
        complete = false;
    *data_version = hash_only(fp, segs, nsegs, i);
    cellar_fingerprint_free(fp);
    free(blob);
    if (!complete || !st->nfiles) {
        stage_close_files(st);
        cellar_stage_free(st);
        return CELLAR_OK;
    }
    st->dv = *data_version;
    st->store = store;
    pthread_mutex_lock(&store->mu);
    st->next = store->stages;
    store->stages = st;
    pthread_mutex_unlock(&store->mu);
    *out = st;
    return CELLAR_OK;
}

size_t cellar_stage_files(const cellar_stage *stage)
{
    return stage ? stage->nfiles : 0;
}

void cellar_stage_free(cellar_stage *stage)
{
    if (!stage)
        return;
    cellar_store *s = stage->store;
    if (s) {
        pthread_mutex_lock(&s->mu);
        for (cellar_stage **pp = &s->stages; *pp; pp = &(*pp)->next)
            if (*pp == stage) {
                *pp = stage->next;
                break;
            }
        pthread_mutex_unlock(&s->mu);
    }
    stage_close_files(stage);
    free(stage->files);
    free(stage);
}

void stage_detach_all(cellar_store *s)
{
    pthread_mutex_lock(&s->mu);
    for (cellar_stage *st = s->stages; st; st = st->next) {
        stage_close_files(st);
        st->store = NULL;
    }
    s->stages = NULL;
    pthread_mutex_unlock(&s->mu);
}

int stage_find(cellar_store *s, const cellar_hash *dv, size_t index, uint64_t len)
{
    int fd = -1;
    pthread_mutex_lock(&s->mu);
    for (cellar_stage *st = s->stages; st && fd < 0; st = st->next) {
        if (!cellar_hash_equal(&st->dv, dv))
            continue;
        for (size_t i = 0; i < st->nfiles && fd < 0; i++)
            if (st->files[i].index == index && st->files[i].len == len)
                fd = fcntl(st->files[i].fd, F_DUPFD_CLOEXEC, 0);
    }
    pthread_mutex_unlock(&s->mu);
    return fd;
}

bool stage_link(int fd, const char *path)
{
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    return linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW) == 0;
}
