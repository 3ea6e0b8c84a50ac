/*
 * canonical_sets.c - sets that fingerprint the same in every process.  A set
 * of strings pickles in hash-seed order, and the C pickler hands exact sets
 * to no hook, so values.c first asks cellar_stream_has_sets whether a C
 * pickle stream holds a non-empty set (a walk over its opcodes, cheap next to
 * pickling); only then is the value pickled again by the pure-Python
 * pickler, whose hook reduces each set with cellar_canonical_set to
 * `set(list)`, the elements sorted by their own fingerprints (strings and
 * bytes directly, anything else by its data version).  That stream loads to
 * an equal value and is the same whatever PYTHONHASHSEED is.
 */
#include "cellar_ext.h"

/* ---- the stream scan for sets ---- */

/* How each opcode's argument is laid out in a protocol-5 stream (pickletools
 * lists them): nothing, a fixed number of bytes, or a little-endian length
 * of 1, 4 or 8 bytes followed by that many bytes.  0: not an opcode the C
 * pickler writes at protocol 5. */
enum { NOARG = 1, FIX1, FIX2, FIX4, FIX8, LEN1, LEN4, LEN8 };
static const unsigned char opcode_arg[256] = {
    ['('] = NOARG,  ['.'] = NOARG,  ['0'] = NOARG,  ['1'] = NOARG,  ['2'] = NOARG,
    ['N'] = NOARG,  ['Q'] = NOARG,  ['R'] = NOARG,  ['a'] = NOARG,  ['b'] = NOARG,
    ['d'] = NOARG,  ['}'] = NOARG,  ['e'] = NOARG,  ['l'] = NOARG,  [']'] = NOARG,
    ['o'] = NOARG,  ['s'] = NOARG,  ['t'] = NOARG,  [')'] = NOARG,  ['u'] = NOARG,
    [0x81] = NOARG, [0x85] = NOARG, [0x86] = NOARG, [0x87] = NOARG, [0x88] = NOARG,
    [0x89] = NOARG, [0x8f] = NOARG, [0x90] = NOARG, [0x91] = NOARG, [0x92] = NOARG,
    [0x93] = NOARG, [0x94] = NOARG, [0x97] = NOARG, [0x98] = NOARG, ['K'] = FIX1,
    ['h'] = FIX1,   ['q'] = FIX1,   [0x80] = FIX1,  [0x82] = FIX1,  ['M'] = FIX2,
    [0x83] = FIX2,  ['J'] = FIX4,   ['j'] = FIX4,   ['r'] = FIX4,   [0x84] = FIX4,
    ['G'] = FIX8,   [0x95] = FIX8,  ['U'] = LEN1,   ['C'] = LEN1,   [0x8c] = LEN1,
    [0x8a] = LEN1,  ['T'] = LEN4,   ['X'] = LEN4,   ['B'] = LEN4,   [0x8b] = LEN4,
    [0x8d] = LEN8,  [0x8e] = LEN8,  [0x96] = LEN8,
};

#define OP_MARK '('
#define OP_STOP '.'
#define OP_ADDITEMS 0x90  /* fills a set: it has elements */
#define OP_FROZENSET 0x91 /* empty when it closes a MARK at once */

/* Whether a protocol-5 stream holds a set or frozenset with elements.  An
 * opcode this walk does not know, or a stream it cannot follow, counts as
 * "yes": the canonical pickling is always right, only slower. */
bool cellar_stream_has_sets(const unsigned char *p, size_t n)
{
    static const size_t fixed[] = {
        [NOARG] = 0, [FIX1] = 1, [FIX2] = 2, [FIX4] = 4, [FIX8] = 8};
    unsigned char prev = 0;
    for (size_t i = 0; i < n;) {
        unsigned char op = p[i++], kind = opcode_arg[op];
        if (op == OP_STOP)
            return false;
        if (kind == 0 || op == OP_ADDITEMS || (op == OP_FROZENSET && prev != OP_MARK))
            return true;
        size_t arg;
        if (kind <= FIX8) {
            arg = fixed[kind];
        } else {
            size_t lenbytes = kind == LEN1 ? 1 : kind == LEN4 ? 4 : 8;
            if (n - i < lenbytes)
                return true;
            uint64_t len = 0;
            for (size_t b = 0; b < lenbytes; b++)
                len |= (uint64_t)p[i + b] << (8 * b);
            i += lenbytes;
            if (len > n - i)
                return true;
            arg = (size_t)len;
        }
        if (arg > n - i)
            return true;
        i += arg;
        prev = op;
    }
    return true;
}

/* ---- element order for sets ---- */

typedef struct ordered {
    cellar_hash h;
    PyObject *item; /* borrowed from the list being sorted */
} ordered;

static int cmp_ordered(const void *a, const void *b)
{
    return memcmp(((const ordered *)a)->h.bytes, ((const ordered *)b)->h.bytes, 16);
}

/* Fingerprint of one set element: atoms directly (tagged by type), anything
 * else by its data version; 1 when it cannot be pickled. */
static int element_version(cellar_state *st, PyObject *item, PyObject *memo,
                           cellar_hash *out)
{
    cellar_key *k = cellar_key_new();
    if (!k) {
        PyErr_NoMemory();
        return -1;
    }
    int rc = 0;
    if (PyUnicode_CheckExact(item)) {
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(item, &n);
        if (!s) {
            /* lone surrogates have no UTF-8: fall back to the pickle */
            PyErr_Clear();
            goto generic;
        }
        cellar_key_add_str(k, "s", 1);
        cellar_key_add_str(k, s, (size_t)n);
    } else if (PyBytes_CheckExact(item)) {
        cellar_key_add_str(k, "b", 1);
        cellar_key_add_str(k, PyBytes_AS_STRING(item), (size_t)PyBytes_GET_SIZE(item));
    } else {
        goto generic;
    }
    *out = cellar_key_digest(k);
    cellar_key_free(k);
    return 0;
generic:
    cellar_key_free(k);
    bool stable = true;
    rc = cellar_data_version(st, item, memo, out, &stable);
    if (rc < 0)
        return -1;
    return stable ? 0 : 1;
}

/* The reduction `(set, (sorted list,))` for an exact set or frozenset. */
PyObject *cellar_canonical_set(cellar_state *st, PyObject *obj, PyObject *memo)
{
    PyObject *items = PySequence_List(obj);
    if (!items)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(items);
    ordered *o = PyMem_Calloc(n ? (size_t)n : 1, sizeof *o);
    if (!o) {
        Py_DECREF(items);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        o[i].item = PyList_GET_ITEM(items, i);
        int rc = element_version(st, o[i].item, memo, &o[i].h);
        if (rc != 0) {
            if (rc > 0)
                PyErr_SetString(PyExc_TypeError, "a set element cannot be pickled");
            PyMem_Free(o);
            Py_DECREF(items);
            return NULL;
        }
    }
    qsort(o, (size_t)n, sizeof *o, cmp_ordered);
    PyObject *sorted = PyList_New(n);
    for (Py_ssize_t i = 0; sorted && i < n; i++)
        PyList_SET_ITEM(sorted, i, Py_NewRef(o[i].item));
    PyMem_Free(o);
    Py_DECREF(items);
    if (!sorted)
        return NULL;
    PyObject *r = Py_BuildValue("(O(N))", (PyObject *)Py_TYPE(obj), sorted);
    return r;
}
