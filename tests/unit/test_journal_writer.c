/*
 * test_journal_writer.c - the journal writer through its proxy hooks, fed
 * real wire messages (composed and parsed by the wire codec): a cell is
 * journaled once both its reply and its idle status came, in either order,
 * with its outcome, execution count and cellId; cells under way when the
 * child dies are errors named KernelDied; the cells offered for replay are
 * the session's ok cells that only define, in order; and a store that cannot
 * be opened stops only the journal (events are still taken, replay still
 * works); and the writer keeps the journal under CELLAR_JOURNAL_MAX_CELLS,
 * keeping the session's definition cells.
 */
#include "store_testlib.h"

#include <unistd.h>

#include "cellar/journal.h"
#include "cellar/journal_writer.h"
#include "cellar/wire.h"

typedef struct wire_msg {
    cellar_wire_composed c;
    cellar_wire_frame frames[6];
    cellar_wire_msg msg;
    cellar_wire_info info;
} wire_msg;

static cellar_wire_auth *auth;

/* A message of `type` whose parent is `parent` (NULL: none) and whose header
 * msg_id is `id` (NULL: random); `content` and `meta` are stolen. */
static wire_msg *make(const char *type, const char *id, const char *parent,
                      json_t *content, json_t *meta)
{
    wire_msg *m = calloc(1, sizeof *m);
    json_t *h = cellar_wire_header_new(type, "client");
    if (id)
        json_object_set_new(h, "msg_id", json_string(id));
    json_t *p =
        parent ? json_pack("{s:s, s:s}", "msg_id", parent, "msg_type", "x") : NULL;
    assert_int_equal(cellar_wire_compose(auth, h, p, meta, content, &m->c), CELLAR_OK);
    json_decref(h);
    json_decref(p);
    json_decref(content);
    json_decref(meta);
    m->frames[0] = (cellar_wire_frame){CELLAR_WIRE_DELIMITER, CELLAR_WIRE_DELIMITER_LEN};
    m->frames[1] = (cellar_wire_frame){m->c.signature, strlen(m->c.signature)};
    for (int i = 0; i < 4; i++)
        m->frames[2 + i] = (cellar_wire_frame){m->c.json[i], m->c.json_len[i]};
    assert_int_equal(cellar_wire_parse(m->frames, 6, &m->msg), CELLAR_WIRE_OK);
    assert_int_equal(cellar_wire_read_info(&m->msg, &m->info), CELLAR_WIRE_OK);
    return m;
}

static void send_event(cellar_proxy_hooks *h, cellar_proxy_event ev, wire_msg *m)
{
    h->on_event(h->ctx, ev, m ? &m->msg : NULL, m ? &m->info : NULL);
    if (m) {
        cellar_wire_composed_free(&m->c);
        free(m);
    }
}

static void request(cellar_proxy_hooks *h, const char *id, const char *code,
                    const char *cell_id)
{
    json_t *meta = cell_id ? json_pack("{s:s}", "cellId", cell_id) : json_object();
    send_event(h, CELLAR_PROXY_EXECUTE_REQUEST,
               make("execute_request", id, NULL,
                    json_pack("{s:s, s:b}", "code", code, "silent", 0), meta));
}

static void input(cellar_proxy_hooks *h, const char *id, int count)
{
    send_event(h, CELLAR_PROXY_EXECUTE_INPUT,
               make("execute_input", NULL, id,
                    json_pack("{s:i}", "execution_count", count), NULL));
}

static void reply(cellar_proxy_hooks *h, const char *id, const char *status, int count)
{
    json_t *c = json_pack("{s:s, s:i}", "status", status, "execution_count", count);
    if (!strcmp(status, "error"))
        json_object_set_new(c, "ename", json_string("ValueError"));
    send_event(h, CELLAR_PROXY_EXECUTE_REPLY, make("execute_reply", NULL, id, c, NULL));
}

static void idle(cellar_proxy_hooks *h, const char *id)
{
    send_event(
        h, CELLAR_PROXY_STATUS,
        make("status", NULL, id, json_pack("{s:s}", "execution_state", "idle"), NULL));
}

typedef struct got {
    cellar_journal_entry *e[16];
    size_t n;
} got;

static int keep(void *ctx, const cellar_journal_entry *e)
{
    got *g = ctx;
    size_t sz = sizeof *e + strlen(e->session) + strlen(e->cell_id) + strlen(e->ename) +
                e->code_len + 4;
    cellar_journal_entry *c = malloc(sz);
    char *p = (char *)(c + 1);
    *c = *e;
    c->session = strcpy(p, e->session);
    p += strlen(p) + 1;
    c->cell_id = strcpy(p, e->cell_id);
    p += strlen(p) + 1;
    c->ename = strcpy(p, e->ename);
    p += strlen(p) + 1;
    c->code = memcpy(p, e->code, e->code_len + 1);
    if (g->n < 16)
        g->e[g->n++] = c;
    else
        free(c);
    return 0;
}

static void read_journal(const char *dir, got *g)
{
    cellar_store *s;
    cellar_reader *r;
    assert_int_equal(cellar_store_open(dir, NULL, &s, NULL), CELLAR_OK);
    assert_int_equal(cellar_reader_begin(s, &r, NULL), CELLAR_OK);
    assert_int_equal(cellar_journal_each(r, NULL, keep, g, NULL), CELLAR_OK);
    cellar_reader_end(r);
    cellar_store_close(s);
}

static void got_free(got *g)
{
    for (size_t i = 0; i < g->n; i++)
        free(g->e[i]);
}

static void test_cells_finish_on_reply_and_idle(void **state)
{
    fixture *f = *state;
    cellar_journal_writer *w = cellar_journal_writer_new(f->dir, "sess", 0, NULL);
    assert_non_null(w);
    cellar_proxy_hooks h = cellar_journal_writer_hooks(w);
    request(&h, "m1", "x = 1", "cell-a");
    input(&h, "m1", 1);
    reply(&h, "m1", "ok", 1);
    idle(&h, "m1"); /* reply first */
    request(&h, "m2", "raise ValueError", NULL);
    input(&h, "m2", 2);
    idle(&h, "m2"); /* idle first */
    reply(&h, "m2", "error", 2);
    request(&h, "m3", "y = 2", NULL);
    reply(&h, "m3", "aborted", 3);
    idle(&h, "m3");
    request(&h, "m4", "import time; time.sleep(9)", "cell-d");
    input(&h, "m4", 4);
    reply(&h, "m5", "ok", 5); /* another request's: ignored */
    idle(&h, "m4");           /* not finished: no reply yet */
    send_event(&h, CELLAR_PROXY_CHILD_DIED, NULL);
    cellar_journal_writer_free(w); /* writes what is queued */
    got g = {0};
    read_journal(f->dir, &g);
    assert_int_equal(g.n, 4);
    assert_string_equal(g.e[0]->code, "x = 1");
    assert_string_equal(g.e[0]->cell_id, "cell-a");
    assert_string_equal(g.e[0]->session, "sess");
    assert_int_equal(g.e[0]->outcome, CELLAR_CELL_OK);
    assert_int_equal(g.e[0]->execution_count, 1);
    cellar_hash hx = cellar_hash_bytes("x = 1", 5);
    assert_true(cellar_hash_equal(&g.e[0]->code_hash, &hx));
    assert_int_equal(g.e[1]->outcome, CELLAR_CELL_ERROR);
    assert_string_equal(g.e[1]->ename, "ValueError");
    assert_int_equal(g.e[1]->execution_count, 2);
    assert_int_equal(g.e[2]->outcome, CELLAR_CELL_ABORTED);
    assert_int_equal(g.e[3]->outcome, CELLAR_CELL_ERROR);
    assert_string_equal(g.e[3]->ename, "KernelDied");
    assert_string_equal(g.e[3]->cell_id, "cell-d");
    for (size_t i = 1; i < g.n; i++)
        assert_true(g.e[i]->start_ns >= g.e[i - 1]->start_ns);
    got_free(&g);
}

static void finished(cellar_proxy_hooks *h, const char *id, const char *code,
                     const char *cell_id, const char *status, int count)
{
    request(h, id, code, cell_id);
    input(h, id, count);
    reply(h, id, status, count);
    idle(h, id);
}

static void test_replay_offers_the_ok_definition_cells_in_order(void **state)
{
    fixture *f = *state;
    /* A store that cannot be opened (its parent is a file): the journal is
     * off, and replay does not depend on it. */
    char bad[256];
    snprintf(bad, sizeof bad, "%s/file", f->root);
    FILE *fp = fopen(bad, "w");
    fclose(fp);
    strcat(bad, "/store");
    cellar_journal_writer *w = cellar_journal_writer_new(bad, "sess", 0, NULL);
    assert_non_null(w);
    cellar_proxy_hooks h = cellar_journal_writer_hooks(w);
    finished(&h, "a", "import os\n", "c1", "ok", 1);
    finished(&h, "b", "def f():\n    return g()\n", "c2", "ok", 2);
    finished(&h, "c", "print('hi')\n", "c3", "ok", 3);
    finished(&h, "d", "N = 3\n", "c4", "error", 4);
    finished(&h, "e", "N = 4\n", "", "ok", 5);
    const cellar_replay_cell *cells = NULL;
    size_t n = h.replay(h.ctx, &cells);
    assert_int_equal(n, 3);
    assert_string_equal(cells[0].code, "import os\n");
    assert_string_equal(cells[0].cell_id, "c1");
    assert_string_equal(cells[1].cell_id, "c2");
    assert_string_equal(cells[2].code, "N = 4\n");
    assert_string_equal(cells[2].cell_id, "");
    cellar_journal_writer_free(w);
}

/* CELLAR_JOURNAL_MAX_CELLS=10: after 32 cells written in several batches the
 * journal holds at most 10, the newest, and this session's definition cells
 * (recovery and restore need them) however old. */
static void test_the_writer_keeps_the_journal_under_its_cap(void **state)
{
    fixture *f = *state;
    setenv("CELLAR_JOURNAL_MAX_CELLS", "10", 1);
    cellar_journal_writer *w = cellar_journal_writer_new(f->dir, "sess", 0, NULL);
    unsetenv("CELLAR_JOURNAL_MAX_CELLS");
    assert_non_null(w);
    cellar_proxy_hooks h = cellar_journal_writer_hooks(w);
    finished(&h, "d1", "import os\n", "c1", "ok", 1);
    finished(&h, "d2", "def f():\n    return g()\n", "c2", "ok", 2);
    for (int i = 0; i < 30; i++) {
        char id[16], code[32];
        snprintf(id, sizeof id, "m%d", i);
        snprintf(code, sizeof code, "print(%d)\n", i);
        finished(&h, id, code, "", "ok", 3 + i);
        if (i % 6 == 5)
            usleep(100 * 1000); /* the writer takes a batch */
    }
    cellar_journal_writer_free(w);
    got g = {0};
    read_journal(f->dir, &g);
    assert_true(g.n <= 10);
    assert_true(g.n >= 5);
    assert_string_equal(g.e[0]->code, "import os\n");
    assert_string_equal(g.e[1]->code, "def f():\n    return g()\n");
    assert_string_equal(g.e[g.n - 1]->code, "print(29)\n");
    for (size_t i = 2; i < g.n; i++)
        assert_non_null(strstr(g.e[i]->code, "print("));
    got_free(&g);
}

int main(void)
{
    auth = cellar_wire_auth_new("hmac-sha256", "key", 3, 0, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cells_finish_on_reply_and_idle, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_replay_offers_the_ok_definition_cells_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_the_writer_keeps_the_journal_under_its_cap,
                                        setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    cellar_wire_auth_free(auth);
    return rc;
}
