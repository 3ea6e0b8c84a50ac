/*
 * proxy_frames.c - whole messages on the proxy's ZeroMQ sockets (see
 * proxy_internal.h): received part by part into zmq_msg_t's, under the size
 * and frame limits; forwarded by moving those same zmq_msg_t's, so a large
 * frame is never copied; kept by zmq_msg_copy (a shared buffer) for a hook
 * that runs once they were sent; and the proxy's own messages composed,
 * signed and sent.  Also the stderr log lines and drop counting.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>

#include "proxy_internal.h"

/* One line on stderr, written whole so that lines never interleave. */
__attribute__((format(printf, 1, 2))) void proxy_say(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "cellar-kernel: %s\n", line);
}

/* Dropped messages are logged, but a flood of them is not: the first 100,
 * then one in 1000. */
void proxy_drop(proxy *p, const char *from, const char *why)
{
    p->drops++;
    if (p->drops <= 100 || p->drops % 1000 == 0)
        proxy_say("dropped a message from %s: %s (%lu dropped so far)", from, why,
                  p->drops);
}

void proxy_hook(proxy *p, cellar_proxy_event ev, const cellar_wire_msg *m,
                 const cellar_wire_info *info)
{
    if (p->cfg->hooks.on_event)
        p->cfg->hooks.on_event(p->cfg->hooks.ctx, ev, m, info);
}

/* --- receiving and sending whole messages --- */

uint64_t proxy_now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Keeps p->in's frames in p->late for a hook that runs after they were sent
 * (zmq_msg_copy shares a large frame's buffer and copies a small one), and
 * sets `*kept` to the message over them.  False when there are no hooks or a
 * copy fails: the hook then runs before the message is sent. */
bool proxy_keep_for_hook(proxy *p, const cellar_wire_msg *m, cellar_wire_msg *kept)
{
    parts *k = &p->late;
    if (!p->cfg->hooks.on_event)
        return false;
    proxy_parts_clear(k);
    if (k->cap < p->in.n) {
        zmq_msg_t *msgs = realloc(k->msgs, p->in.n * sizeof *msgs);
        if (msgs)
            k->msgs = msgs;
        cellar_wire_frame *f = msgs ? realloc(k->frames, p->in.n * sizeof *f) : NULL;
        if (!f)
            return false;
        k->frames = f;
        k->cap = p->in.n;
    }
    for (size_t i = 0; i < p->in.n; i++) {
        zmq_msg_init(&k->msgs[i]);
        if (zmq_msg_copy(&k->msgs[i], &p->in.msgs[i]) != 0) {
            zmq_msg_close(&k->msgs[i]);
            proxy_parts_clear(k);
            return false;
        }
        k->n = i + 1;
        k->frames[i] =
            (cellar_wire_frame){zmq_msg_data(&k->msgs[i]), zmq_msg_size(&k->msgs[i])};
    }
    *kept = *m;
    kept->frames = k->frames;
    return true;
}

/* Forwards p->in on `sock`, and raises `ev` for it: after it was sent when
 * its frames can be kept, so that the hook's parsing is not in its way. */
bool proxy_forward_and_hook(proxy *p, void *sock, cellar_proxy_event ev,
                             const cellar_wire_msg *m, const cellar_wire_info *info)
{
    cellar_wire_msg kept;
    bool later = proxy_keep_for_hook(p, m, &kept);
    if (!later)
        proxy_hook(p, ev, m, info);
    bool sent = proxy_forward(p, sock, &p->in, 0);
    if (later) {
        proxy_hook(p, ev, &kept, info);
        proxy_parts_clear(&p->late);
    }
    return sent;
}

void proxy_parts_clear(parts *in)
{
    for (size_t i = 0; i < in->n; i++)
        zmq_msg_close(&in->msgs[i]);
    in->n = 0;
    in->bytes = 0;
}

void proxy_parts_free(parts *in)
{
    proxy_parts_clear(in);
    free(in->msgs);
    free(in->frames);
}

/* Receives one whole message from `sock` without waiting.  Returns 1 with the
 * frames in `in`, 0 when none is waiting, -1 when it was over `limit` bytes
 * or CELLAR_PROXY_MAX_FRAMES frames (it was consumed and discarded). */
int proxy_receive(void *sock, parts *in, size_t limit)
{
    proxy_parts_clear(in);
    bool over = false;
    for (;;) {
        if (in->n == in->cap) {
            size_t cap = in->cap ? in->cap * 2 : 16;
            zmq_msg_t *m = realloc(in->msgs, cap * sizeof *m);
            if (m)
                in->msgs = m;
            cellar_wire_frame *f = m ? realloc(in->frames, cap * sizeof *f) : NULL;
            if (!f) {
                /* Out of memory: leave a message not yet begun where it is;
                 * drain and drop the rest of one under way. */
                if (in->n == 0)
                    return 0;
                zmq_msg_t tmp;
                zmq_msg_init(&tmp);
                int more = 1;
                while (more && zmq_msg_recv(&tmp, sock, 0) >= 0)
                    more = zmq_msg_more(&tmp);
                zmq_msg_close(&tmp);
                proxy_parts_clear(in);
                return -1;
            }
            in->frames = f;
            in->cap = cap;
        }
        zmq_msg_t *m = &in->msgs[in->n];
        zmq_msg_init(m);
        int r;
        do
            r = zmq_msg_recv(m, sock, in->n ? 0 : ZMQ_DONTWAIT);
        while (r < 0 && zmq_errno() == EINTR);
        if (r < 0) {
            zmq_msg_close(m);
            proxy_parts_clear(in);
            return 0;
        }
        in->n++;
        in->bytes += zmq_msg_size(m);
        int more = zmq_msg_more(m);
        if (in->bytes > limit || in->n > CELLAR_PROXY_MAX_FRAMES) {
            over = true;
            /* Keep the count bounded: release frames as they come. */
            proxy_parts_clear(in);
            in->bytes = limit + 1;
        }
        if (!more)
            break;
    }
    if (over) {
        proxy_parts_clear(in);
        return -1;
    }
    for (size_t i = 0; i < in->n; i++)
        in->frames[i] =
            (cellar_wire_frame){zmq_msg_data(&in->msgs[i]), zmq_msg_size(&in->msgs[i])};
    return 1;
}

/* A send may have processed commands that make `sock` readable without its
 * fd firing again (ZMQ_FD is edge-triggered): it is looked at before the
 * loop sleeps. */
void proxy_touch(proxy *p, void *sock)
{
    for (int ch = 0; ch < CELLAR_CHANNEL_COUNT; ch++) {
        if (p->front[ch] == sock)
            p->check_front[ch] = true;
        if (p->back[ch] == sock)
            p->check_back[ch] = true;
    }
}

/* Sends frames [from, in->n) of `in` on `sock`, moving each zmq_msg_t.
 * Returns false (and discards the rest) when the socket refuses. */
bool proxy_forward(proxy *p, void *sock, parts *in, size_t from)
{
    proxy_touch(p, sock);
    for (size_t i = from; i < in->n; i++) {
        int flags = ZMQ_DONTWAIT | (i + 1 < in->n ? ZMQ_SNDMORE : 0);
        int r;
        do
            r = zmq_msg_send(&in->msgs[i], sock, flags);
        while (r < 0 && zmq_errno() == EINTR);
        if (r < 0) {
            proxy_parts_clear(in);
            return false;
        }
    }
    proxy_parts_clear(in);
    if (p->trace)
        p->sent_ns = proxy_now_ns();
    return true;
}

/* Sends identities, the delimiter and a composed message (copies: these are
 * the proxy's own small messages). */
void proxy_send_composed(proxy *p, void *sock, zmq_msg_t *ids, size_t n_ids,
                          const cellar_wire_composed *c)
{
    proxy_touch(p, sock);
    for (size_t i = 0; i < n_ids; i++)
        zmq_send(sock, zmq_msg_data(&ids[i]), zmq_msg_size(&ids[i]),
                 ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(sock, CELLAR_WIRE_DELIMITER, CELLAR_WIRE_DELIMITER_LEN,
             ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(sock, c->signature, strlen(c->signature), ZMQ_SNDMORE | ZMQ_DONTWAIT);
    for (int i = 0; i < 4; i++)
        zmq_send(sock, c->json[i], c->json_len[i],
                 (i < 3 ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT);
}

/* Composes and sends a message the proxy makes; content is stolen. */
void proxy_send_own(proxy *p, void *sock, zmq_msg_t *ids, size_t n_ids,
                     const char *msg_type, json_t *parent, json_t *content)
{
    json_t *header = cellar_wire_header_new(msg_type, p->session);
    cellar_wire_composed c;
    if (header && content &&
        cellar_wire_compose(p->auth, header, parent, NULL, content, &c) == CELLAR_OK) {
        proxy_send_composed(p, sock, ids, n_ids, &c);
        cellar_wire_composed_free(&c);
    } else {
        proxy_say("cannot compose a %s message (out of memory)", msg_type);
    }
    json_decref(header);
    json_decref(content);
}

