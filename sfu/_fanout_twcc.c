/* sfu._fanout, part 5: TransportSequencer.next (sfu/wire/twcc.py) for the C forward path, and
 * the member offsets of __slots__ that both parts read.
 *
 * Why C: every copy to a subscriber that negotiated transport-cc (every browser) takes a
 * transport sequence number; calling the Python method from forward_one cost ~20 bytecodes
 * per copy. Here the common case (no probe running, so the packet belongs to no probe
 * cluster) makes the same writes to the same slots and typed arrays as the Python method;
 * anything else (a probe running, a subclass, a slot or array not as expected) returns 0 and
 * the caller calls the Python method, which stays the one definition. The unit tests
 * (tests/unit/test_native_forward.py) compare both paths slot for slot. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <string.h>

#include "_fanout.h"

int fanout_member_offset(PyTypeObject *type, const char *name, Py_ssize_t *offset) {
    PyObject *descr = PyObject_GetAttrString((PyObject *)type, name);
    PyMemberDef *member;
    if (descr == NULL) {
        PyErr_Clear();
        return 0;
    }
    if (!Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
        Py_DECREF(descr);
        return 0;  /* not a __slots__ member: no fixed offset */
    }
    member = ((PyMemberDescrObject *)descr)->d_member;
    if (member->type != T_OBJECT_EX || (member->flags & READONLY)) {
        Py_DECREF(descr);
        return 0;
    }
    *offset = member->offset;
    Py_DECREF(descr);
    return 1;
}

enum {
    Q_SEQ, Q_EXT, Q_MASK, Q_CAPACITY, Q_TIMES, Q_SIZES, Q_CLUSTERS, Q_TAIL, Q_WINDOW, Q_ACTIVE,
    Q_N
};
static const char *q_names[Q_N] = {
    "_seq", "_ext", "_mask", "_capacity", "_times", "_sizes", "_clusters", "_tail",
    "_window_bytes", "active_cluster",
};
static Py_ssize_t q_offsets[Q_N];
static PyTypeObject *sequencer_type = NULL;

#define QSLOT(obj, i) (*(PyObject **)((char *)(obj) + q_offsets[i]))

int fanout_twcc_init(PyTypeObject *type) {
    int i;
    Py_CLEAR(sequencer_type);
    for (i = 0; i < Q_N; i++)
        if (!fanout_member_offset(type, q_names[i], &q_offsets[i]))
            return 0;
    Py_INCREF(type);
    sequencer_type = type;
    return 1;
}

static int read_ll(PyObject *v, long long *out) {  /* 0 ok; -1 not an exact int that fits */
    int overflow;
    if (v == NULL || !PyLong_CheckExact(v))
        return -1;
    *out = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow || (*out == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return -1;
    }
    return 0;
}

/* One of the ring's arrays: writable, `format` items of 8 bytes, `count` of them. */
static int ring_view(PyObject *array, const char *format, long long count, Py_buffer *view) {
    if (array == NULL || PyObject_GetBuffer(array, view, PyBUF_WRITABLE | PyBUF_FORMAT) < 0) {
        PyErr_Clear();
        return -1;
    }
    if (view->itemsize != 8 || view->len != count * 8 || view->format == NULL
            || strcmp(view->format, format) != 0) {
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static void set_owned(PyObject *obj, int i, PyObject *value) {  /* steals value */
    PyObject **p = (PyObject **)((char *)obj + q_offsets[i]);
    PyObject *old = *p;
    *p = value;
    Py_XDECREF(old);
}

/* A new int for v, or NULL when the slot's own can take v in place (*failed set on a memory
 * error). */
static PyObject *fresh_int(PyObject *old, long long v, int *failed) {
    PyObject *fresh;
    if (fanout_int_reusable(old, v))
        return NULL;
    if ((fresh = PyLong_FromLongLong(v)) == NULL)
        *failed = 1;
    return fresh;
}

static void commit_int(PyObject *obj, int i, PyObject *fresh, long long v) {
    if (fresh != NULL)
        set_owned(obj, i, fresh);
    else
        fanout_int_write(QSLOT(obj, i), v);
}

/* TransportSequencer.next(size, now) without a probe: 1 done (*seq set), 0 the caller must call
 * the Python method (nothing changed), -1 error (nothing changed). */
int fanout_twcc_next(PyObject *twcc, long long size, double now, long long *seq) {
    long long s, ext, mask, capacity, tail, window, active, slot;
    Py_buffer times, sizes, clusters;
    PyObject *new_seq, *new_ext, *new_window, *new_tail = NULL;
    int wraps, failed = 0;

    if (sequencer_type == NULL || !Py_IS_TYPE(twcc, sequencer_type))
        return 0;  /* a subclass may override next: its own method */
    if (read_ll(QSLOT(twcc, Q_ACTIVE), &active) < 0 || active >= 0)
        return 0;  /* a probe runs: the packet joins its cluster, counted in Python */
    if (read_ll(QSLOT(twcc, Q_SEQ), &s) < 0 || read_ll(QSLOT(twcc, Q_EXT), &ext) < 0
            || read_ll(QSLOT(twcc, Q_MASK), &mask) < 0
            || read_ll(QSLOT(twcc, Q_CAPACITY), &capacity) < 0
            || read_ll(QSLOT(twcc, Q_TAIL), &tail) < 0
            || read_ll(QSLOT(twcc, Q_WINDOW), &window) < 0)
        return 0;
    if (s < 0 || s > 0xFFFF || mask < 0 || mask > 0xFFFFFF || capacity != mask + 1
            || ext < 0 || ext > (1LL << 62) || tail > ext || size < 0 || size > (1LL << 32)
            || window < -(1LL << 62) || window > (1LL << 62))
        return 0;  /* not what __init__ makes: the Python method decides */
    if (ring_view(QSLOT(twcc, Q_TIMES), "d", capacity, &times) < 0)
        return 0;
    if (ring_view(QSLOT(twcc, Q_SIZES), "q", capacity, &sizes) < 0) {
        PyBuffer_Release(&times);
        return 0;
    }
    if (ring_view(QSLOT(twcc, Q_CLUSTERS), "q", capacity, &clusters) < 0) {
        PyBuffer_Release(&times);
        PyBuffer_Release(&sizes);
        return 0;
    }
    slot = ext & mask;
    wraps = ext - tail >= capacity;
    if (wraps)  /* the slot about to be reused is still counted in the window sum */
        window -= ((long long *)sizes.buf)[slot];
    /* Every new value first, so a failed allocation leaves the sequencer as it was (an int
     * changed in place needs none: fanout_int_reusable, sfu/_fanout.h).
     * (s + 1) & 0xFFFF is seq_add(s, 1) of sfu/wire/seqmath.py, as the Python method does. */
    new_seq = fresh_int(QSLOT(twcc, Q_SEQ), (s + 1) & 0xFFFF, &failed);
    new_ext = fresh_int(QSLOT(twcc, Q_EXT), ext + 1, &failed);
    new_window = fresh_int(QSLOT(twcc, Q_WINDOW), window + size, &failed);
    if (wraps)
        new_tail = fresh_int(QSLOT(twcc, Q_TAIL), tail + 1, &failed);
    if (failed) {
        Py_XDECREF(new_seq);
        Py_XDECREF(new_ext);
        Py_XDECREF(new_window);
        Py_XDECREF(new_tail);
        PyBuffer_Release(&times);
        PyBuffer_Release(&sizes);
        PyBuffer_Release(&clusters);
        return -1;
    }
    ((double *)times.buf)[slot] = now;
    ((long long *)sizes.buf)[slot] = size;
    ((long long *)clusters.buf)[slot] = active;  /* probe_cluster: the (negative) active one */
    PyBuffer_Release(&times);
    PyBuffer_Release(&sizes);
    PyBuffer_Release(&clusters);
    if (wraps)
        commit_int(twcc, Q_TAIL, new_tail, tail + 1);
    commit_int(twcc, Q_WINDOW, new_window, window + size);
    commit_int(twcc, Q_EXT, new_ext, ext + 1);
    commit_int(twcc, Q_SEQ, new_seq, (s + 1) & 0xFFFF);
    *seq = s;
    return 1;
}
