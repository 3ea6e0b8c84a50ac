/*
 * save.c - writes what a run learned into the store, in one batch committed
 * in one write transaction at the end of the run.
 *
 * Each computed result that could be pickled goes in with its key record and
 * the node's record (name, parameters, cell, versions); a value that a body
 * changed in place after it was pickled is left out, with a warning.  Hits
 * from the store have their last-used time rewritten only when it is older
 * than ten minutes, so a cached run's commit stays small.  The run's lineage
 * (records.h) is added last.  A store that cannot be written costs the run
 * nothing but a warning: the results stay in memory for the session.
 */
#include "run_state.h"

#include <unistd.h>

#include "cellar/records.h"

#define TOUCH_INTERVAL_NS (600ull * 1000000000ull)

static const cellar_outcome outcomes[] = {
    [ST_PENDING] = CELLAR_OUTCOME_SKIPPED, /* not reached: a saved run has none */
    [ST_COMPUTED] = CELLAR_OUTCOME_COMPUTED, [ST_LOADED] = CELLAR_OUTCOME_LOADED,
    [ST_MEMORY] = CELLAR_OUTCOME_IN_MEMORY,  [ST_FAILED] = CELLAR_OUTCOME_FAILED,
    [ST_SKIPPED] = CELLAR_OUTCOME_SKIPPED,
};

/* A UTF-8 view of a str the slot keeps alive, or NULL (error cleared): a
 * lineage row without its error text beats a run without its record. */
static const char *utf8_or_null(PyObject *s)
{
    const char *u = s ? PyUnicode_AsUTF8(s) : NULL;
    if (s && !u)
        PyErr_Clear();
    return u;
}

/* The run's lineage as a run record (records.h), into `*text` (free()).
 * Every string in it is borrowed from the slots and targets, which outlive
 * the call. */
static cellar_status lineage(run_ctx *ctx, PyObject *targets, uint64_t started,
                             char **text, cellar_error *err)
{
    Py_ssize_t ntargets = PyList_GET_SIZE(targets);
    const char **names = PyMem_Calloc(ntargets ? (size_t)ntargets : 1, sizeof *names);
    cellar_lineage_row *rows = PyMem_Calloc(ctx->norder ? ctx->norder : 1, sizeof *rows);
    size_t ninputs = 0;
    cellar_run_input *inputs = cellar_lineage_inputs(ctx->inputs_read, &ninputs);
    cellar_status rc = names && rows && inputs ? CELLAR_OK : CELLAR_ENOMEM;
    for (Py_ssize_t i = 0; rc == CELLAR_OK && i < ntargets; i++)
        names[i] = utf8_or_null(PyList_GET_ITEM(targets, i));
    for (size_t i = 0; rc == CELLAR_OK && i < ctx->norder; i++) {
        slot *s = &ctx->slots[ctx->order[i]];
        bool ok = s->status != ST_FAILED && s->status != ST_SKIPPED;
        rows[i] = (cellar_lineage_row){
            .node = utf8_or_null(s->fn->name),
            .outcome = outcomes[s->status],
            .has_versions = ok,
            .key = s->key,
            .data_version = s->dv,
            .time_ns = s->seconds >= 0 ? (uint64_t)(s->seconds * 1e9) : 0,
            .has_size = s->have_size,
            .size = s->size,
            .error = utf8_or_null(s->error),
        };
    }
    if (rc == CELLAR_OK) {
        cellar_run_record rec = {
            .started_ns = started,
            .pid = getpid(),
            .ntargets = (size_t)ntargets,
            .targets = names,
            .ninputs = ninputs,
            .inputs = inputs,
            .nrows = ctx->norder,
            .rows = rows,
        };
        rc = cellar_run_record_encode(&rec, text, NULL, err);
    } else {
        cellar_error_set(err, rc, "out of memory recording the run");
    }
    PyMem_Free(names);
    PyMem_Free(rows);
    PyMem_Free(inputs);
    return rc;
}

/* The node record of a computed slot, into `*text` (free()). */
static cellar_status node_record(slot *s, uint64_t now, char **text, cellar_error *err)
{
    cellar_fn *fn = s->fn;
    const char **params =
        PyMem_Calloc(fn->nparams ? (size_t)fn->nparams : 1, sizeof *params);
    if (!params)
        return cellar_error_set(err, CELLAR_ENOMEM, "out of memory recording a node");
    for (Py_ssize_t i = 0; i < fn->nparams; i++)
        params[i] = utf8_or_null(fn->param_names[i]);
    cellar_node_record rec = {
        .name = utf8_or_null(fn->name),
        .nparams = (size_t)fn->nparams,
        .params = params,
        .cell_id = PyUnicode_Check(fn->cell_id) ? utf8_or_null(fn->cell_id) : NULL,
        .code_version = s->code_version,
        .key = s->key,
        .data_version = s->dv,
        .updated_ns = now,
    };
    cellar_status rc = cellar_node_record_encode(&rec, text, NULL, err);
    PyMem_Free(params);
    return rc;
}

/* The bytes a batch would copy are the pickle stream (taken when the node
 * finished) and its buffers, read where they live: a body that had the value
 * may have written into them.  Re-hashing them only for values that went to
 * a body keeps a target's store write at the cost of the write. */
static bool stored_bytes_versioned(run_ctx *ctx, slot *s)
{
    if (!s->exposed || s->pickled.nviews == 0 || s->pickled.owned ||
        cellar_pickled_unchanged(ctx->st, &s->pickled))
        return true;
    cellar_warn("the result of node '%s' was changed in place by a node that used it, "
                "before it could be stored; it is not stored (a later run computes it "
                "again)",
                PyUnicode_AsUTF8(s->fn->name));
    return false;
}

void run_save(run_ctx *ctx, PyObject *targets, uint64_t started)
{
    cellar_state *st = ctx->st;
    /* A read-only store was announced once, when it was opened. */
    if (!st->store || cellar_store_read_only(st->store))
        return;
    cellar_batch *b = cellar_batch_new();
    cellar_error err;
    err.message[0] = '\0';
    uint64_t now = run_now_ns(CLOCK_REALTIME);
    cellar_status rc = b ? CELLAR_OK : CELLAR_ENOMEM;
    uint64_t added = 0; /* bytes of new results, for the budget (gc_magic.c) */
    for (size_t i = 0; rc == CELLAR_OK && i < ctx->norder; i++) {
        slot *s = &ctx->slots[ctx->order[i]];
        if (s->status == ST_COMPUTED && s->stored && stored_bytes_versioned(ctx, s)) {
            Py_ssize_t nlen;
            const char *name = PyUnicode_AsUTF8AndSize(s->fn->name, &nlen);
            cellar_key_record rec = {
                .data_version = s->dv,
                .code_version = s->code_version,
                .created_ns = now,
                .last_used_ns = now,
                .size = s->size,
                .compute_ns = (uint64_t)(s->seconds * 1e9),
                .node = name,
                .node_len = (size_t)nlen,
            };
            rc = (s->replace ? cellar_batch_replace_result : cellar_batch_put_result)(
                b, &s->dv, s->pickled.segs, s->pickled.nsegs, &s->dv, &err);
            if (rc == CELLAR_EINVAL) {
                /* This value cannot be stored (LMDB's 4 GiB value limit); the
                 * others still can, and this one stays in memory. */
                cellar_warn("the result of node '%s' is not stored: %s; it is kept in "
                            "memory for this session",
                            name, err.message);
                rc = CELLAR_OK;
                continue;
            }
            if (rc == CELLAR_OK) {
                added += s->size;
                rc = cellar_batch_put_key(b, &s->key, &rec, &err);
            }
            char *js = NULL;
            if (rc == CELLAR_OK)
                rc = node_record(s, now, &js, &err);
            if (rc == CELLAR_OK)
                rc = cellar_batch_put_node(b, name, js, &err);
            free(js);
        } else if (s->status == ST_LOADED && now - s->last_used > TOUCH_INTERVAL_NS) {
            /* Last-used times only need minute precision for eviction; not
             * rewriting fresh ones keeps a cached run's commit small. */
            rc = cellar_batch_touch_key(b, &s->key, now, &err);
        }
    }
    if (rc == CELLAR_OK) {
        char *text = NULL;
        rc = lineage(ctx, targets, started, &text, &err);
        if (rc == CELLAR_OK)
            rc = cellar_batch_add_run(b, text, NULL, &err);
        free(text);
    }
    if (ctx->reader) {
        cellar_reader_end(ctx->reader);
        ctx->reader = NULL;
    }
    if (rc == CELLAR_OK)
        rc = cellar_store_commit(st->store, b, &err);
    if (rc != CELLAR_OK)
        cellar_warn("this run's results could not be saved (%s%s%s); they stay in memory "
                    "for this session",
                    cellar_status_name(rc), err.message[0] ? ": " : "", err.message);
    else
        cellar_gc_after_commit(st, added); /* in the background: the cell goes on */
    cellar_batch_free(b);
}
