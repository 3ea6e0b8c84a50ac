/*
 * proxy.c - the relay loop of `cellar-kernel` (see proxy.h).
 *
 * One thread and one poll loop own every socket: the frontend's ROUTERs
 * (shell, control, stdin, heartbeat) and XPUB (iopub), the DEALERs and SUB
 * connected to the child's private ipc endpoints, and a signalfd for the
 * signals the proxy handles.  The loop sleeps in poll() on the sockets'
 * ZMQ_FDs and asks ZMQ_EVENTS only of the sockets that fired or were sent on,
 * draining each without waiting before it sleeps again.  A message is
 * received part by part into zmq_msg_t's, looked at through the pure codec in
 * wire.c, and sent on with zmq_msg_send of those same zmq_msg_t's, so a large
 * frame is never copied (proxy_frames.c; shared state in proxy_internal.h).
 *
 * Routing needs no table: a frontend ROUTER prefixes the client's identity,
 * the DEALER sends all frames on, the child's ROUTER prefixes the DEALER's id
 * and echoes every identity before the delimiter in its reply; the DEALER
 * receives the reply without its own id, and the frontend ROUTER routes it
 * by the client's identity that is now first.
 *
 * The frontend's heartbeat pings reach the child's heartbeat (heartbeat()),
 * so a stopped or wedged child shows there as it would without the proxy;
 * during a crash's recovery the proxy echoes them itself.
 *
 * Each child gets a generation number: its endpoints and connection file are
 * named after it in the proxy's 0700 directory, and its sockets are made
 * fresh, so nothing queued for a dead child leaks into the next one.  The
 * execute requests a child has not answered are kept (identities and header)
 * so that, when it dies, each gets a signed error reply.
 */
#define _GNU_SOURCE
#include "cellar/proxy.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "cellar/child.h"
#include "cellar/connection.h"

#include "proxy_internal.h"


static const char *const channel_names[CELLAR_CHANNEL_COUNT] = {"shell", "iopub", "stdin",
                                                                "control", "hb"};

/* --- in-flight execute requests --- */

static void inflight_free(inflight *f)
{
    for (size_t i = 0; i < f->n_ids; i++)
        zmq_msg_close(&f->ids[i]);
    free(f->ids);
    free(f->header);
}

static void track_execute(proxy *p, const cellar_wire_msg *m,
                          const cellar_wire_info *info)
{
    if (!info->msg_id[0])
        return;
    if (p->n_pending == p->cap_pending) {
        size_t cap = p->cap_pending ? p->cap_pending * 2 : 8;
        inflight *n = realloc(p->pending, cap * sizeof *n);
        if (!n)
            return;
        p->pending = n;
        p->cap_pending = cap;
    }
    inflight f = {.execution_count = 0};
    const cellar_wire_frame *h = cellar_wire_part(m, CELLAR_WIRE_HEADER);
    f.header = malloc(h->size ? h->size : 1);
    f.header_len = h->size;
    if (f.header)
        memcpy(f.header, h->data, h->size);
    f.ids = m->delim ? malloc(m->delim * sizeof *f.ids) : NULL;
    if (!f.header || (m->delim && !f.ids)) {
        free(f.header);
        free(f.ids);
        return;
    }
    for (size_t i = 0; i < m->delim; i++) {
        zmq_msg_init_size(&f.ids[i], m->frames[i].size);
        memcpy(zmq_msg_data(&f.ids[i]), m->frames[i].data, m->frames[i].size);
    }
    f.n_ids = m->delim;
    memcpy(f.msg_id, info->msg_id, sizeof f.msg_id);
    p->pending[p->n_pending++] = f;
}

static inflight *find_pending(proxy *p, const char *msg_id)
{
    for (size_t i = 0; msg_id[0] && i < p->n_pending; i++)
        if (!strcmp(p->pending[i].msg_id, msg_id))
            return &p->pending[i];
    return NULL;
}

static void untrack(proxy *p, inflight *f)
{
    inflight_free(f);
    *f = p->pending[--p->n_pending];
}

/* Answers every unanswered execute request after the child died: an error on
 * iopub, an error execute_reply to its client, then status idle. */
static void answer_pending(proxy *p, const char *how, size_t replayed)
{
    char evalue[512];
    if (replayed == (size_t)-1)
        snprintf(evalue, sizeof evalue,
                 "the kernel process %s while running this cell; cellar-kernel started "
                 "a new one (its variables are gone)",
                 how);
    else
        snprintf(
            evalue, sizeof evalue,
            "the kernel process %s while running this cell; cellar-kernel started "
            "a new one and restored this session's definitions (%zu cell%s of "
            "imports, functions, classes and literal assignments replayed); other "
            "variables are gone, and %%cellar run loads cached results from the store",
            how, replayed, replayed == 1 ? "" : "s");
    for (size_t i = 0; i < p->n_pending; i++) {
        inflight *f = &p->pending[i];
        /* It parsed when it came (its msg_type was read), so it parses now. */
        json_t *parent = json_loadb(f->header, f->header_len, 0, NULL);
        /* Frontends show the traceback, not ename: its one line names the
         * error as IPython's last line does, in IPython's red. */
        char line[sizeof evalue + 32];
        snprintf(line, sizeof line, "\x1b[0;31mKernelDied\x1b[0m: %s", evalue);
        json_t *tb = json_pack("[s]", line);
        json_t *err = json_pack("{s:s, s:s, s:o}", "ename", "KernelDied", "evalue",
                                evalue, "traceback", tb);
        proxy_send_own(p, p->front[CELLAR_CHANNEL_IOPUB], NULL, 0, "error", parent,
                 json_deep_copy(err));
        json_object_set_new(err, "status", json_string("error"));
        json_object_set_new(err, "execution_count", json_integer(f->execution_count));
        json_object_set_new(err, "user_expressions", json_object());
        json_object_set_new(err, "payload", json_array());
        proxy_send_own(p, p->front[CELLAR_CHANNEL_SHELL], f->ids, f->n_ids,
                       "execute_reply", parent, err);
        proxy_send_own(p, p->front[CELLAR_CHANNEL_IOPUB], NULL, 0, "status", parent,
                 json_pack("{s:s}", "execution_state", "idle"));
        json_decref(parent);
        inflight_free(f);
    }
    p->n_pending = 0;
}

/* --- the child and its sockets --- */

static void close_back(proxy *p)
{
    for (int ch = 0; ch < CELLAR_CHANNEL_COUNT; ch++)
        if (p->back[ch]) {
            zmq_close(p->back[ch]);
            p->back[ch] = NULL;
        }
}

/* The proxy's own ping to a new child's heartbeat: one frame, which no
 * frontend's ping is (a ROUTER puts the client's identity before it). */
#define HB_PROBE "cellar-kernel heartbeat probe"

static cellar_status start_child(proxy *p, cellar_error *err)
{
    close_back(p);
    if (p->child_file[0])
        unlink(p->child_file);
    p->generation++;
    cellar_connection c = p->conn;
    strcpy(c.transport, "ipc");
    snprintf(c.ip, sizeof c.ip, "%s/k%u", p->dir, p->generation);
    for (int ch = 0; ch < CELLAR_CHANNEL_COUNT; ch++)
        c.ports[ch] = ch + 1;
    snprintf(p->child_file, sizeof p->child_file, "%s/kernel-%u.json", p->dir,
             p->generation);
    cellar_status st = cellar_connection_write(p->child_file, &c, "cellar-child", err);
    if (st)
        return st;
    static const int types[CELLAR_CHANNEL_COUNT] = {ZMQ_DEALER, ZMQ_SUB, ZMQ_DEALER,
                                                    ZMQ_DEALER, ZMQ_DEALER};
    p->child_beats = false;
    for (int ch = 0; ch < CELLAR_CHANNEL_COUNT; ch++) {
        void *s = zmq_socket(p->zctx, types[ch]);
        char ep[PATH_MAX + 32];
        int zero = 0, ivl = 10;
        if (!s)
            return cellar_error_set(err, CELLAR_EIO, "zmq_socket: %s",
                                    zmq_strerror(zmq_errno()));
        p->back[ch] = s;
        p->check_back[ch] = true;
        zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
        zmq_setsockopt(s, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
        zmq_setsockopt(s, ZMQ_SNDHWM, &zero, sizeof zero);
        zmq_setsockopt(s, ZMQ_RCVHWM, &zero, sizeof zero);
        if (types[ch] == ZMQ_DEALER)
            zmq_setsockopt(s, ZMQ_ROUTING_ID, p->session, strlen(p->session));
        else
            zmq_setsockopt(s, ZMQ_SUBSCRIBE, "", 0);
        if ((st = cellar_connection_endpoint(&c, (cellar_channel)ch, ep, sizeof ep, err)))
            return st;
        if (zmq_connect(s, ep) != 0)
            return cellar_error_set(err, CELLAR_EIO, "cannot connect to %s: %s", ep,
                                    zmq_strerror(zmq_errno()));
    }
    /* Queued until the child binds its heartbeat; its echo switches the
     * frontend's pings over to it (heartbeat()). */
    zmq_send(p->back[CELLAR_CHANNEL_HB], HB_PROBE, sizeof HB_PROBE - 1, ZMQ_DONTWAIT);
    p->check_back[CELLAR_CHANNEL_HB] = true;
    size_t n = 0;
    while (p->cfg->child_argv[n])
        n++;
    char **argv = calloc(n + 3, sizeof *argv);
    if (!argv)
        return cellar_error_set(err, CELLAR_ENOMEM, "out of memory starting the kernel");
    memcpy(argv, p->cfg->child_argv, n * sizeof *argv);
    argv[n] = (char *)"-f";
    argv[n + 1] = p->child_file;
    st = cellar_child_start(argv, &p->child, err);
    free(argv);
    if (st)
        return st;
    clock_gettime(CLOCK_MONOTONIC, &p->child_started);
    proxy_hook(p, CELLAR_PROXY_CHILD_STARTED, NULL, NULL);
    return CELLAR_OK;
}

static double seconds_since(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t->tv_sec) + (double)(now.tv_nsec - t->tv_nsec) / 1e9;
}

/* Relays what the child still had queued (its shutdown_reply, last outputs):
 * until nothing arrives for 100 ms, at most 1 s. */
static void drain_back(proxy *p);

static bool is_replay(const proxy *p, const char *msg_id)
{
    for (size_t i = 0; msg_id[0] && i < p->n_replay; i++)
        if (!strcmp(p->replay_ids[i], msg_id))
            return true;
    return false;
}

/* Sends the cells to replay to the new child, ahead of anything a frontend
 * sends next.  Not silent: IPython runs no pre/post_run_cell hooks for a
 * silent cell, and the extension learns of nodes through them; the outputs
 * are filtered out instead (is_replay).  Returns how many were sent. */
static size_t send_replay(proxy *p, const cellar_replay_cell *cells, size_t n)
{
    free(p->replay_ids);
    p->replay_ids = n ? calloc(n, sizeof *p->replay_ids) : NULL;
    p->n_replay = p->replay_left = p->replay_busy = 0;
    for (size_t i = 0; p->replay_ids && i < n; i++) {
        json_t *header = cellar_wire_header_new("execute_request", p->session);
        json_t *meta = cells[i].cell_id[0]
                           ? json_pack("{s:s}", "cellId", cells[i].cell_id)
                           : json_object();
        json_t *content = json_pack(
            "{s:s, s:b, s:b, s:{}, s:b, s:b}", "code", cells[i].code, "silent", 0,
            "store_history", 0, "user_expressions", "allow_stdin", 0, "stop_on_error", 0);
        cellar_wire_composed c;
        const char *id = json_string_value(json_object_get(header, "msg_id"));
        if (header && meta && content && id &&
            cellar_wire_compose(p->auth, header, NULL, meta, content, &c) == CELLAR_OK) {
            snprintf(p->replay_ids[p->n_replay++], sizeof *p->replay_ids, "%s", id);
            p->replay_left++;
            p->replay_busy++;
            proxy_send_composed(p, p->back[CELLAR_CHANNEL_SHELL], NULL, 0, &c);
            cellar_wire_composed_free(&c);
        }
        json_decref(header);
        json_decref(meta);
        json_decref(content);
    }
    return p->n_replay;
}

/* Once every replayed cell has answered and gone idle nothing more of them
 * can come: the ids are dropped, so relaying stops looking them up. */
static void forget_replay_if_done(proxy *p)
{
    if (p->n_replay && p->replay_left == 0 && p->replay_busy == 0) {
        free(p->replay_ids);
        p->replay_ids = NULL;
        p->n_replay = 0;
    }
}

/* A replayed cell answered; after the last, frontends hear the kernel is idle. */
static void replay_answered(proxy *p, const cellar_wire_msg *m)
{
    json_t *c = cellar_wire_read_json(m, CELLAR_WIRE_CONTENT);
    const char *status = json_string_value(json_object_get(c, "status"));
    if (!status || strcmp(status, "ok")) {
        const char *ename = json_string_value(json_object_get(c, "ename"));
        proxy_say("a replayed cell failed in the new kernel: %s",
            ename ? ename : "(no reason)");
    }
    json_decref(c);
    if (p->replay_left && --p->replay_left == 0) {
        proxy_say("replayed %zu definition cell%s into the new kernel", p->n_replay,
            p->n_replay == 1 ? "" : "s");
        proxy_send_own(p, p->front[CELLAR_CHANNEL_IOPUB], NULL, 0, "status", NULL,
                 json_pack("{s:s}", "execution_state", "idle"));
    }
    forget_replay_if_done(p);
}

static void child_exited(proxy *p, cellar_child_exit e)
{
    char how[64];
    if (e.signaled)
        snprintf(how, sizeof how, "was killed by signal %d (%s)", e.status,
                 strsignal(e.status));
    else
        snprintf(how, sizeof how, "exited with status %d", e.status);
    p->child = 0;
    if (p->shutdown_seen) {
        drain_back(p);
        p->stop = true;
        return;
    }
    proxy_say("the kernel %s; starting a new one", how);
    drain_back(p);
    proxy_hook(p, CELLAR_PROXY_CHILD_DIED, NULL, NULL);
    /* A child that died while definitions were replayed into it may have died
     * of one of them: the next one starts bare rather than die the same way. */
    bool replay = p->cfg->hooks.replay && p->replay_left == 0;
    if (p->cfg->hooks.replay && !replay)
        proxy_say("the kernel died while %zu replayed cell%s had not answered; the new "
                  "one gets none",
            p->replay_left, p->replay_left == 1 ? "" : "s");
    p->n_replay = p->replay_left = p->replay_busy = 0; /* the old child's */
    const cellar_replay_cell *cells = NULL;
    size_t n = replay ? p->cfg->hooks.replay(p->cfg->hooks.ctx, &cells) : 0;
    answer_pending(p, how, replay ? n : (size_t)-1);
    p->quick_deaths = seconds_since(&p->child_started) < 2.0 ? p->quick_deaths + 1 : 0;
    if (p->quick_deaths >= 5) {
        proxy_say("the kernel died %d times within 2 s of starting; giving up",
            p->quick_deaths);
        p->stop = true;
        p->exit_status = 1;
        return;
    }
    cellar_error err;
    if (start_child(p, &err) != CELLAR_OK) {
        proxy_say("cannot restart the kernel: %s", err.message);
        p->stop = true;
        p->exit_status = 1;
        return;
    }
    send_replay(p, cells, n);
}

/* --- relaying --- */

/* A frontend request on shell, control or stdin: checked, then forwarded. */
static void from_frontend(proxy *p, int ch)
{
    cellar_wire_msg m;
    cellar_wire_verdict v = cellar_wire_parse(p->in.frames, p->in.n, &m);
    if (v == CELLAR_WIRE_OK)
        v = cellar_wire_verify(p->auth, &m);
    if (v != CELLAR_WIRE_OK) {
        char from[64];
        snprintf(from, sizeof from, "a frontend on %s", channel_names[ch]);
        proxy_drop(p, from, cellar_wire_verdict_name(v));
        proxy_parts_clear(&p->in);
        return;
    }
    cellar_wire_info info;
    cellar_wire_read_info(&m, &info);
    if (!strcmp(info.msg_type, "shutdown_request"))
        p->shutdown_seen = true;
    if (ch == CELLAR_CHANNEL_SHELL && !strcmp(info.msg_type, "execute_request")) {
        track_execute(p, &m, &info);
        if (!proxy_forward_and_hook(p, p->back[ch], CELLAR_PROXY_EXECUTE_REQUEST, &m,
                                    &info))
            proxy_drop(p, channel_names[ch], "the kernel's socket refused it");
        return;
    }
    if (!proxy_forward(p, p->back[ch], &p->in, 0))
        proxy_drop(p, channel_names[ch], "the kernel's socket refused it");
}

/* A child's reply on shell, control or stdin, on to the frontend it names. */
static void from_child(proxy *p, int ch)
{
    cellar_wire_msg m;
    bool parsed = cellar_wire_parse(p->in.frames, p->in.n, &m) == CELLAR_WIRE_OK;
    if (parsed && ch == CELLAR_CHANNEL_SHELL && p->n_replay) {
        cellar_wire_info info;
        cellar_wire_read_info(&m, &info);
        if (is_replay(p, info.parent_msg_id)) {
            if (!strcmp(info.msg_type, "execute_reply"))
                replay_answered(p, &m);
            proxy_parts_clear(&p->in);
            return;
        }
    }
    if (!parsed || m.delim == 0) {
        proxy_drop(p, "the kernel", "not a routable Jupyter message");
        proxy_parts_clear(&p->in);
        return;
    }
    if (ch == CELLAR_CHANNEL_SHELL) {
        cellar_wire_info info;
        cellar_wire_read_info(&m, &info);
        if (!strcmp(info.msg_type, "execute_reply")) {
            inflight *f = find_pending(p, info.parent_msg_id);
            if (f)
                untrack(p, f);
            proxy_forward_and_hook(p, p->front[ch], CELLAR_PROXY_EXECUTE_REPLY, &m,
                                   &info);
            return;
        }
    }
    proxy_forward(p, p->front[ch], &p->in, 0);
}

/* The execution count of an execute_input, for the reply made if the child
 * dies before its own. */
static void note_execution_count(proxy *p, const cellar_wire_msg *m,
                                 const cellar_wire_info *info)
{
    inflight *f = find_pending(p, info->parent_msg_id);
    if (!f)
        return;
    json_t *c = cellar_wire_read_json(m, CELLAR_WIRE_CONTENT);
    json_t *n = json_object_get(c, "execution_count");
    if (json_is_integer(n))
        f->execution_count = (long)json_integer_value(n);
    json_decref(c);
}

static void from_child_iopub(proxy *p)
{
    cellar_wire_msg m;
    if (cellar_wire_parse(p->in.frames, p->in.n, &m) != CELLAR_WIRE_OK) {
        proxy_drop(p, "the kernel's iopub", "malformed");
        proxy_parts_clear(&p->in);
        return;
    }
    cellar_wire_info info;
    cellar_wire_read_info(&m, &info);
    if (p->n_replay && is_replay(p, info.parent_msg_id)) {
        /* A replayed cell's output: for no frontend. */
        if (!strcmp(info.msg_type, "status") && p->replay_busy) {
            json_t *c = cellar_wire_read_json(&m, CELLAR_WIRE_CONTENT);
            const char *state = json_string_value(json_object_get(c, "execution_state"));
            if (state && !strcmp(state, "idle"))
                p->replay_busy--;
            json_decref(c);
            forget_replay_if_done(p);
        }
        proxy_parts_clear(&p->in);
        return;
    }
    if (!strcmp(info.msg_type, "iopub_welcome")) {
        proxy_parts_clear(&p->in); /* addressed to the proxy's own SUB */
        return;
    }
    if (!strcmp(info.msg_type, "status")) {
        proxy_forward_and_hook(p, p->front[CELLAR_CHANNEL_IOPUB], CELLAR_PROXY_STATUS, &m,
                               &info);
        return;
    }
    if (!strcmp(info.msg_type, "execute_input")) {
        note_execution_count(p, &m, &info);
        proxy_forward_and_hook(p, p->front[CELLAR_CHANNEL_IOPUB],
                               CELLAR_PROXY_EXECUTE_INPUT, &m, &info);
        return;
    }
    proxy_forward(p, p->front[CELLAR_CHANNEL_IOPUB], &p->in, 0);
}

/* A subscription on the frontend XPUB: answered with a welcome on its topic. */
static void subscription(proxy *p)
{
    if (p->in.n != 1 || p->in.frames[0].size < 1 ||
        ((const unsigned char *)p->in.frames[0].data)[0] != 1) {
        proxy_parts_clear(&p->in);
        return;
    }
    const char *topic = (const char *)p->in.frames[0].data + 1;
    size_t len = p->in.frames[0].size - 1;
    json_t *content = json_object();
    json_t *t = json_stringn(topic, len); /* NULL unless valid UTF-8, as ipykernel */
    if (t && !json_object_set_new(content, "subscription", t)) {
        zmq_msg_t id;
        zmq_msg_init_size(&id, len);
        memcpy(zmq_msg_data(&id), topic, len);
        proxy_send_own(p, p->front[CELLAR_CHANNEL_IOPUB], &id, len ? 1 : 0,
                       "iopub_welcome", NULL, content);
        zmq_msg_close(&id);
    } else {
        json_decref(content);
    }
    proxy_parts_clear(&p->in);
}

/* A ping from a frontend goes to the child's heartbeat once that has answered
 * the probe start_child sent, so that a child that stops answering (stopped,
 * wedged) is seen by the frontend as ipykernel's own heartbeat would show it;
 * before that, and while no child runs (a crash being recovered), the proxy
 * echoes it.  The child's echo of a ping goes back to the frontend that sent
 * it, by the identity in front of it; the echo of the probe goes nowhere. */
static void heartbeat(proxy *p, bool front)
{
    if (!front) {
        if (p->in.n == 1 && p->in.frames[0].size == sizeof HB_PROBE - 1 &&
            !memcmp(p->in.frames[0].data, HB_PROBE, sizeof HB_PROBE - 1)) {
            p->child_beats = true;
            proxy_parts_clear(&p->in);
        } else {
            proxy_forward(p, p->front[CELLAR_CHANNEL_HB], &p->in, 0);
        }
        return;
    }
    void *to = p->child && p->child_beats && p->back[CELLAR_CHANNEL_HB]
                   ? p->back[CELLAR_CHANNEL_HB]
                   : p->front[CELLAR_CHANNEL_HB];
    proxy_forward(p, to, &p->in, 0);
}

/* Handles up to `budget` messages waiting on one socket.  Returns true when
 * it stopped with messages maybe still waiting (the budget ran out). */
static bool serve(proxy *p, void *sock, bool front, int ch, int budget)
{
    while (budget-- > 0 && !p->stop) {
        int r =
            proxy_receive(sock, &p->in,
                    p->cfg->max_message ? p->cfg->max_message : CELLAR_PROXY_MAX_MESSAGE);
        if (r == 0)
            return false;
        if (r < 0) {
            proxy_drop(p, front ? channel_names[ch] : "the kernel",
                       "over the size limit");
            continue;
        }
        uint64_t got = p->trace ? proxy_now_ns() : 0;
        p->sent_ns = 0;
        size_t bytes = p->in.bytes;
        if (ch == CELLAR_CHANNEL_HB)
            heartbeat(p, front);
        else if (front && ch == CELLAR_CHANNEL_IOPUB)
            subscription(p);
        else if (front)
            from_frontend(p, ch);
        else if (ch == CELLAR_CHANNEL_IOPUB)
            from_child_iopub(p);
        else
            from_child(p, ch);
        if (p->trace)
            fprintf(p->trace, "%llu %s %s %zu %llu %llu %llu\n",
                    (unsigned long long)p->woke_ns, front ? "front" : "back",
                    channel_names[ch], bytes, (unsigned long long)(got - p->woke_ns),
                    (unsigned long long)(p->sent_ns ? p->sent_ns - p->woke_ns : 0),
                    (unsigned long long)(proxy_now_ns() - p->woke_ns));
    }
    return !p->stop;
}

static void drain_back(proxy *p)
{
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (seconds_since(&start) < 1.0) {
        zmq_pollitem_t items[4];
        int chans[4], n = 0;
        for (int ch = 0; ch < CELLAR_CHANNEL_HB; ch++)
            if (p->back[ch]) {
                items[n] = (zmq_pollitem_t){p->back[ch], 0, ZMQ_POLLIN, 0};
                chans[n++] = ch;
            }
        int r = zmq_poll(items, n, 100);
        if (r < 0 && zmq_errno() == EINTR)
            continue;
        if (r <= 0)
            return;
        for (int i = 0; i < n; i++)
            if (items[i].revents & ZMQ_POLLIN)
                serve(p, items[i].socket, false, chans[i], 256);
    }
}

static void on_signal(proxy *p)
{
    struct signalfd_siginfo si;
    while (read(p->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo == SIGCHLD) {
            if (p->child) {
                cellar_child_exit e = cellar_child_poll(p->child);
                if (e.exited)
                    child_exited(p, e);
            }
        } else if (si.ssi_signo == SIGINT) {
            /* The kernel shares our process group and got this one itself. */
        } else {
            proxy_say("stopping on signal %u (%s)", si.ssi_signo,
                      strsignal((int)si.ssi_signo));
            p->stop = true;
        }
    }
}

/* --- setup --- */

static cellar_status bind_front(proxy *p, cellar_error *err)
{
    static const int types[CELLAR_CHANNEL_COUNT] = {ZMQ_ROUTER, ZMQ_XPUB, ZMQ_ROUTER,
                                                    ZMQ_ROUTER, ZMQ_ROUTER};
    for (int ch = 0; ch < CELLAR_CHANNEL_COUNT; ch++) {
        void *s = zmq_socket(p->zctx, types[ch]);
        if (!s)
            return cellar_error_set(err, CELLAR_EIO, "zmq_socket: %s",
                                    zmq_strerror(zmq_errno()));
        p->front[ch] = s;
        int one = 1, linger = 1000;
        zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
        if (types[ch] == ZMQ_ROUTER)
            zmq_setsockopt(s, ZMQ_ROUTER_HANDOVER, &one, sizeof one);
        else
            zmq_setsockopt(s, ZMQ_XPUB_VERBOSE, &one, sizeof one);
        char ep[CELLAR_CONNECTION_TEXT_MAX + 32];
        cellar_status st =
            cellar_connection_endpoint(&p->conn, (cellar_channel)ch, ep, sizeof ep, err);
        if (st)
            return st;
        if (zmq_bind(s, ep) != 0)
            return cellar_error_set(err, CELLAR_EIO, "cannot bind %s (%s): %s",
                                    channel_names[ch], ep, zmq_strerror(zmq_errno()));
    }
    return CELLAR_OK;
}

static cellar_status setup(proxy *p, cellar_error *err)
{
    cellar_status st = cellar_connection_read(p->cfg->connection_file, &p->conn, err);
    if (st)
        return st;
    p->auth = cellar_wire_auth_new(p->conn.scheme, p->conn.key, p->conn.key_len,
                                   CELLAR_WIRE_HISTORY_DEFAULT, err);
    if (!p->auth)
        return err ? err->code : CELLAR_EINVAL;
    json_t *h = cellar_wire_header_new("x", "x"); /* borrow its random msg_id */
    snprintf(p->session, sizeof p->session, "%s",
             h ? json_string_value(json_object_get(h, "msg_id")) : "cellar-proxy");
    json_decref(h);
    const char *tmp = getenv("TMPDIR");
    snprintf(p->dir, sizeof p->dir, "%s/cellar-kernel-XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    if (strlen(p->dir) > 80 || !mkdtemp(p->dir)) {
        snprintf(p->dir, sizeof p->dir, "/tmp/cellar-kernel-XXXXXX");
        if (!mkdtemp(p->dir)) /* mkdtemp makes it 0700 */
            return cellar_error_set(
                err, CELLAR_EIO, "cannot make a private directory: %s", strerror(errno));
    }
    p->zctx = zmq_ctx_new();
    if (!p->zctx)
        return cellar_error_set(err, CELLAR_EIO, "zmq_ctx_new: %s",
                                zmq_strerror(zmq_errno()));
    if ((st = bind_front(p, err)))
        return st;
    if (p->cfg->trace_file && !(p->trace = fopen(p->cfg->trace_file, "w")))
        proxy_say("cannot trace to %s: %s", p->cfg->trace_file, strerror(errno));
    return start_child(p, err);
}

static void teardown(proxy *p)
{
    if (p->child)
        cellar_child_stop(p->child, 2000);
    answer_pending(p, "was stopped", (size_t)-1);
    close_back(p);
    for (int ch = 0; ch < CELLAR_CHANNEL_COUNT; ch++)
        if (p->front[ch])
            zmq_close(p->front[ch]);
    if (p->zctx)
        zmq_ctx_term(p->zctx);
    proxy_parts_free(&p->in);
    proxy_parts_free(&p->late);
    free(p->pending);
    free(p->replay_ids);
    cellar_wire_auth_free(p->auth);
    if (p->child_file[0])
        unlink(p->child_file);
    if (p->dir[0]) {
        /* ipykernel removes its ipc files; a killed one leaves them. */
        for (unsigned g = 1; g <= p->generation; g++)
            for (int ch = 0; ch < CELLAR_CHANNEL_COUNT; ch++) {
                char path[PATH_MAX + 32];
                snprintf(path, sizeof path, "%s/k%u-%d", p->dir, g, ch + 1);
                unlink(path);
            }
        rmdir(p->dir);
    }
    if (p->sigfd >= 0)
        close(p->sigfd);
    if (p->trace)
        fclose(p->trace);
}

/* --- the loop --- */

/* Serves every socket marked to check that has a message waiting, until none
 * is left.  A socket is asked for ZMQ_EVENTS only when marked, not every
 * socket on every wakeup as zmq_poll does (one syscall each), so a message
 * costs the proxy a handful of syscalls.  Returns false when zmq fails. */
static bool relay_until_quiet(proxy *p)
{
    for (bool again = true; again && !p->stop;) {
        again = false;
        for (int side = 0; side < 2 && !p->stop; side++)
            for (int ch = 0; ch < CELLAR_CHANNEL_COUNT && !p->stop; ch++) {
                bool *check = side ? &p->check_back[ch] : &p->check_front[ch];
                void *s = side ? p->back[ch] : p->front[ch];
                if (!*check || !s)
                    continue;
                *check = false;
                int events = 0;
                size_t len = sizeof events;
                if (zmq_getsockopt(s, ZMQ_EVENTS, &events, &len) != 0) {
                    if (zmq_errno() == EINTR) {
                        *check = again = true;
                        continue;
                    }
                    proxy_say("zmq_getsockopt(ZMQ_EVENTS): %s",
                              zmq_strerror(zmq_errno()));
                    p->exit_status = 1;
                    return false;
                }
                if (!(events & ZMQ_POLLIN))
                    continue;
                /* A restart during serve() replaces the back sockets: those
                 * are marked by start_child, and this one is not looked at. */
                if (serve(p, s, side == 0, ch, 256) &&
                    (side ? p->back[ch] : p->front[ch]) == s)
                    *check = true;
                again = true;
            }
    }
    return true;
}

/* Sleeps in one poll() on the sockets' ZMQ_FDs and the signalfd, then marks
 * the sockets whose fd fired and handles the signals. */
static void sleep_until_ready(proxy *p)
{
    struct pollfd fds[2 * CELLAR_CHANNEL_COUNT + 1];
    bool *marks[2 * CELLAR_CHANNEL_COUNT];
    nfds_t n = 0;
    for (int side = 0; side < 2; side++)
        for (int ch = 0; ch < CELLAR_CHANNEL_COUNT; ch++) {
            void *s = side ? p->back[ch] : p->front[ch];
            int fd = -1;
            size_t len = sizeof fd;
            if (!s)
                continue;
            bool *check = side ? &p->check_back[ch] : &p->check_front[ch];
            if (zmq_getsockopt(s, ZMQ_FD, &fd, &len) != 0 || fd < 0) {
                *check = true; /* asked through ZMQ_EVENTS instead */
                continue;
            }
            fds[n] = (struct pollfd){.fd = fd, .events = POLLIN};
            marks[n++] = check;
        }
    fds[n] = (struct pollfd){.fd = p->sigfd, .events = POLLIN};
    /* A socket whose fd was unavailable is retried after 10 ms. */
    bool pending = false;
    for (int ch = 0; ch < CELLAR_CHANNEL_COUNT; ch++)
        pending = pending || p->check_front[ch] || p->check_back[ch];
    int r = poll(fds, n + 1, pending ? 10 : -1);
    if (r < 0) {
        if (errno != EINTR) {
            proxy_say("poll: %s", strerror(errno));
            p->exit_status = 1;
            p->stop = true;
        }
        return;
    }
    if (p->trace)
        p->woke_ns = proxy_now_ns();
    for (nfds_t i = 0; i < n; i++)
        if (fds[i].revents)
            *marks[i] = true;
    if (fds[n].revents & POLLIN)
        on_signal(p);
}

int cellar_proxy_run(const cellar_proxy_config *cfg, cellar_error *err)
{
    proxy p = {.cfg = cfg, .sigfd = -1};
    sigset_t mask;
    sigemptyset(&mask);
    int handled[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD};
    for (size_t i = 0; i < sizeof handled / sizeof handled[0]; i++)
        sigaddset(&mask, handled[i]);
    /* Blocked before zmq starts its threads, so they inherit the mask and
     * every one of these signals waits in the signalfd. */
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    p.sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (p.sigfd < 0) {
        cellar_error_set(err, CELLAR_EIO, "signalfd: %s", strerror(errno));
        return 1;
    }
    if (setup(&p, err) != CELLAR_OK) {
        teardown(&p);
        return 1;
    }
    for (int ch = 0; ch < CELLAR_CHANNEL_COUNT; ch++)
        p.check_front[ch] = true;
    while (!p.stop && relay_until_quiet(&p) && !p.stop)
        sleep_until_ready(&p);
    int status = p.exit_status;
    teardown(&p);
    return status;
}
