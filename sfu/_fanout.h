/* Shared by the sources of sfu._fanout (sfu/_fanout*.c). */
#ifndef DIEMCAU_FANOUT_H
#define DIEMCAU_FANOUT_H

#include <Python.h>

PyObject *fanout_init_forward(PyObject *self, PyObject *args);
PyObject *fanout_forward(PyObject *self, PyObject *args);
PyObject *fanout_receive(PyObject *self, PyObject *args);
PyObject *fanout_init_view(PyObject *self, PyObject *type);
PyObject *fanout_parse_view(PyObject *self, PyObject *data);
PyObject *fanout_receive_view(PyObject *self, PyObject *args);
PyObject *fanout_extension_blocks(PyObject *self, PyObject *args);  /* sfu/_fanout_blocks.c */

/* Per-copy counters and rewriter state live in the Python objects' __slots__ as ints; a new int
 * per value per copy (~10 per copy) is allocator churn on the hot path. An int that only its
 * slot holds (reference count 1: no name, frame, container or caller can see it) is changed
 * in place instead: nobody can observe that it is the same object. Only for CPython 3.11's
 * layout (30-bit digits), positive single-digit values above the small-int cache (whose
 * shared objects are never changed: their counts are never 1); any other case gets a new int. */
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000 && PYLONG_BITS_IN_DIGIT == 30
#define FANOUT_INT_IN_PLACE 1
#endif

static inline int fanout_int_reusable(PyObject *old, long long v) {
#ifdef FANOUT_INT_IN_PLACE
    return old != NULL && v > 256 && v < (1LL << 30) && Py_REFCNT(old) == 1
        && PyLong_CheckExact(old) && Py_SIZE(old) == 1;
#else
    (void)old; (void)v;
    return 0;
#endif
}

static inline void fanout_int_write(PyObject *old, long long v) {
#ifdef FANOUT_INT_IN_PLACE
    ((PyLongObject *)old)->ob_digit[0] = (digit)v;
#else
    (void)old; (void)v;
#endif
}

/* *slot = v, in place when fanout_int_reusable; 0 ok, -1 memory error (slot unchanged). */
static inline int fanout_store_ll(PyObject **slot, long long v) {
    PyObject *old = *slot, *fresh;
    if (fanout_int_reusable(old, v)) {
        fanout_int_write(old, v);
        return 0;
    }
    if ((fresh = PyLong_FromLongLong(v)) == NULL)
        return -1;
    *slot = fresh;
    Py_XDECREF(old);
    return 0;
}

/* sfu/_fanout_twcc.c: member offsets of __slots__; TransportSequencer.next for forward_one */
int fanout_member_offset(PyTypeObject *type, const char *name, Py_ssize_t *offset);
int fanout_twcc_init(PyTypeObject *type);
int fanout_twcc_next(PyObject *twcc, long long size, double now, long long *seq);

/* sfu/_fanout_uring.c: a fan-out's sends in one io_uring_enter(2) */
#include <sys/socket.h>
#define URING_CHUNK 64          /* sends per system call (and ring entries) */
#define URING_NOT_DONE (-1000000L)
int fanout_uring_ready(void);
void fanout_uring_queue(int fd, const void *address, socklen_t address_len, void *buffer,
                        size_t length);
void fanout_uring_flush(long *results);
PyObject *fanout_uring(PyObject *self, PyObject *args);

/* sfu/_fanout.c: the pieces of a copy's protect-and-send that sfu/_fanout_send.c shares */
#define MAX_BUFFER 1500   /* as pylibsrtp's buffer ... */
#define MAX_TRAILER 144   /* ... less SRTP_MAX_TRAILER_LEN (tag + MKI): longer is refused */
int fanout_protect_ready(void);
int fanout_protect(void *ctx, unsigned char *buffer, int *length);  /* libsrtp's status */
int fanout_sendto(int fd, const unsigned char *buffer, int length, const void *address,
                  socklen_t address_len);                            /* 0 sent, 2 failed */
unsigned char (*fanout_arena(void))[MAX_BUFFER];  /* URING_CHUNK buffers, or NULL */

/* sfu/_fanout_send.c: forward_send, the fused fan-out: the copies forward_one makes go
 * straight into the send arena (no head bytes, tuple or list item per copy) */
typedef struct {
    int ring;           /* queued on io_uring (arena buffers), else one sendto per copy */
    int dry;            /* benchmarks only: built, neither protected nor sent */
    int queued;
    int dry_slot;
    PyObject *failures; /* [(consumer, reason, head length, payload length)] or NULL */
    PyObject *consumers[URING_CHUNK];  /* strong references until the chunk is flushed */
    PyObject *targets[URING_CHUNK];    /* ... which keep the sockaddr bytes alive */
    int fds[URING_CHUNK], lengths[URING_CHUNK], head_lens[URING_CHUNK],
        payload_lens[URING_CHUNK];
    long results[URING_CHUNK];
    void *ctxs[URING_CHUNK];           /* each copy's srtp_t: protected at the flush */
    int slots[URING_CHUNK];            /* queued send -> copy */
    unsigned char stack[MAX_BUFFER];   /* the copy when not queued on the ring */
} fanout_sink;
int fanout_sink_active(void);  /* a fused fan-out is queuing: send() must not use the ring */
PyObject *fanout_forward_send(PyObject *self, PyObject *args);
PyObject *fanout_dry_run(PyObject *self, PyObject *args);
/* sfu/_fanout_forward.c, for forward_send: the consumers loop with a sink instead of a batch */
PyObject *fanout_forward_all(PyObject *args, fanout_sink *sink);
int fanout_sink_target(PyObject *target, void **ctx, int *fd);  /* 1 usable */
unsigned char *fanout_sink_buffer(fanout_sink *sink);
int fanout_sink_add(fanout_sink *sink, PyObject *consumer, PyObject *target, void *ctx, int fd,
                    int head_len, const char *payload, Py_ssize_t payload_len);

#endif
