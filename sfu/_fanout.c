/* sfu._fanout: SRTP-protect and send one incoming packet's copies in one call (and receive
 * one SRTP datagram: kernel arrival time + unprotect, ``receive``).
 *
 * Why C: per copy, Python spends more time around the work than in it (pylibsrtp's cffi
 * wrapper allocates and copies twice, the event loop's sendto checks and converts the address
 * every call). Here each copy is assembled (header + payload) in one stack buffer, protected by
 * libsrtp in place and sent on the subscriber's own socket. Each subscriber has its own ICE
 * socket (its own 5-tuple), so sendmmsg(2), which batches per socket, does not apply across a
 * fan-out: the copies go out through io_uring, a chunk per system call (sfu/_fanout_uring.c),
 * or with one sendto(2) each where io_uring is not available.
 *
 * libsrtp is the copy pylibsrtp links: Python hands over the address of its srtp_protect
 * (sfu/aiortc_hooks.py checks the prototype) and each session's srtp_t, so no header or
 * library is needed to build this file. Optional: sfu/native.py falls back to pure Python
 * when the module is missing or DIEMCAU_NO_NATIVE=1.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <linux/sockios.h>

#include "_fanout.h"


typedef int (*protect_fn)(void *ctx, void *packet, int *len);

static protect_fn srtp_protect_fn = NULL;
static protect_fn srtp_unprotect_fn = NULL;  /* same prototype as srtp_protect */

static PyObject *set_protect(PyObject *self, PyObject *arg) {
    void *address = PyLong_AsVoidPtr(arg);
    if (address == NULL && PyErr_Occurred())
        return NULL;
    srtp_protect_fn = (protect_fn)address;
    Py_RETURN_NONE;
}

static PyObject *set_unprotect(PyObject *self, PyObject *arg) {
    void *address = PyLong_AsVoidPtr(arg);
    if (address == NULL && PyErr_Occurred())
        return NULL;
    srtp_unprotect_fn = (protect_fn)address;
    Py_RETURN_NONE;
}

#define UNIX_TO_NTP_S 2208988800LL  /* aiortc's clock counts milliseconds since 1900 */

/* receive(ctx, fd, datagram) -> (plain RTP bytes or None, kernel arrival ms or -1)
 *
 * The direct receive path of one SRTP datagram (sfu/aiortc_hooks.py GuardedStunProtocol):
 * the kernel's receive time of the datagram just read from fd (SIOCGSTAMP, on aiortc's clock)
 * and libsrtp's unprotect, without pylibsrtp's wrapper (two copies and an allocation) and
 * Python's ioctl (a buffer, a struct unpack). The datagram is attacker's bytes: only its
 * length is trusted (checked against the buffer before the copy); libsrtp checks the rest
 * (header, extension lengths, tag) and any failure gives None, never an exception. */
PyObject *fanout_receive(PyObject *self, PyObject *args) {
    unsigned char buffer[MAX_BUFFER];
    PyObject *ctx_obj, *plain;
    void *ctx;
    int fd, length;
    const char *data;
    Py_ssize_t size;
    long long arrival = -1;
    struct timeval tv;

    if (!PyArg_ParseTuple(args, "Oiy#", &ctx_obj, &fd, &data, &size))
        return NULL;
    if (srtp_unprotect_fn == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "set_unprotect() was not called");
        return NULL;
    }
    ctx = PyLong_AsVoidPtr(ctx_obj);
    if (ctx == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "no SRTP context");
        return NULL;
    }
    if (fd >= 0 && ioctl(fd, SIOCGSTAMP, &tv) == 0)
        arrival = ((long long)tv.tv_sec + UNIX_TO_NTP_S) * 1000 + tv.tv_usec / 1000;
    length = (int)size;
    if (size < 12 || size > MAX_BUFFER) {
        plain = Py_None;  /* shorter than an RTP header, or longer than any buffer here */
        Py_INCREF(plain);
    } else {
        memcpy(buffer, data, (size_t)size);
        if (srtp_unprotect_fn(ctx, buffer, &length) != 0 || length < 0 || length > size) {
            plain = Py_None;
            Py_INCREF(plain);
        } else if ((plain = PyBytes_FromStringAndSize((const char *)buffer, length)) == NULL) {
            return NULL;
        }
    }
    return Py_BuildValue("(NL)", plain, arrival);
}

/* One copy of a batch item (target, head, payload, ...) with target = (srtp_ctx, fd, sockaddr):
 * header and payload assembled in buffer and protected. 0 done (length, fd, sockaddr set),
 * 1 too long or protect failed, -1 a malformed item (exception set: a bug of the caller's). */
static int protect_copy(PyObject *item, unsigned char *buffer, int *length, int *fd,
                        PyObject **sockaddr) {
    PyObject *target, *head, *payload;
    void *ctx;
    long fd_value;
    Py_ssize_t head_len, payload_len;

    if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) < 3) {
        PyErr_SetString(PyExc_TypeError, "batch items are (target, head, payload, ...)");
        return -1;
    }
    target = PyTuple_GET_ITEM(item, 0);
    head = PyTuple_GET_ITEM(item, 1);
    payload = PyTuple_GET_ITEM(item, 2);
    if (!PyTuple_Check(target) || PyTuple_GET_SIZE(target) != 3 || !PyBytes_Check(head)
        || !PyBytes_Check(payload) || !PyBytes_Check(PyTuple_GET_ITEM(target, 2))) {
        PyErr_SetString(PyExc_TypeError, "target is (ctx, fd, sockaddr), head/payload bytes");
        return -1;
    }
    ctx = PyLong_AsVoidPtr(PyTuple_GET_ITEM(target, 0));
    fd_value = PyLong_AsLong(PyTuple_GET_ITEM(target, 1));
    if (PyErr_Occurred())
        return -1;
    *fd = (int)fd_value;
    *sockaddr = PyTuple_GET_ITEM(target, 2);
    head_len = PyBytes_GET_SIZE(head);
    payload_len = PyBytes_GET_SIZE(payload);
    if (head_len + payload_len > MAX_BUFFER - MAX_TRAILER)
        return 1;
    memcpy(buffer, PyBytes_AS_STRING(head), (size_t)head_len);
    memcpy(buffer + head_len, PyBytes_AS_STRING(payload), (size_t)payload_len);
    *length = (int)(head_len + payload_len);
    if (srtp_protect_fn(ctx, buffer, length) != 0 || *length > MAX_BUFFER)
        return 1;
    return 0;
}

/* sendto(2) of one protected copy: 0 sent, 2 failed. */
int fanout_sendto(int fd, const unsigned char *buffer, int length, const void *address,
                  socklen_t address_len) {
    ssize_t sent;
    do {
        sent = sendto(fd, buffer, (size_t)length, MSG_DONTWAIT,
                      (const struct sockaddr *)address, address_len);
    } while (sent < 0 && errno == EINTR);
    return sent < 0 ? 2 : 0;
}

static int send_copy(int fd, const unsigned char *buffer, int length, PyObject *sockaddr) {
    return fanout_sendto(fd, buffer, length, PyBytes_AS_STRING(sockaddr),
                         (socklen_t)PyBytes_GET_SIZE(sockaddr));
}

int fanout_protect_ready(void) { return srtp_protect_fn != NULL; }

int fanout_protect(void *ctx, unsigned char *buffer, int *length) {
    return srtp_protect_fn(ctx, buffer, length);
}

/* Append (index, reason) to *failures (made on the first one); -1 on memory error. */
static int add_failure(PyObject **failures, Py_ssize_t index, int reason) {
    PyObject *entry;
    if (*failures == NULL && (*failures = PyList_New(0)) == NULL)
        return -1;
    entry = Py_BuildValue("(ni)", index, reason);
    if (entry == NULL || PyList_Append(*failures, entry) < 0) {
        Py_XDECREF(entry);
        return -1;
    }
    Py_DECREF(entry);
    return 0;
}

/* The protected copies of one chunk of a batch (at most URING_CHUNK): kept until its sends
 * completed. Allocated once per process, on the first batch sent through io_uring. */
static unsigned char (*arena)[MAX_BUFFER] = NULL;

unsigned char (*fanout_arena(void))[MAX_BUFFER] {
    if (arena == NULL)
        arena = malloc(sizeof(*arena) * URING_CHUNK);
    return arena;
}

/* Items [start, end) of batch (end - start <= URING_CHUNK) protected into the arena and sent in
 * one io_uring_enter; reasons[i - start] set for each item. -1 on a malformed item (exception
 * set; the copies before it still go out). */
static int send_chunk_ring(PyObject *batch, Py_ssize_t start, Py_ssize_t end, int *reasons) {
    long results[URING_CHUNK];
    int lengths[URING_CHUNK], fds[URING_CHUNK];
    PyObject *addresses[URING_CHUNK];
    Py_ssize_t slots[URING_CHUNK];  /* queued send -> item offset in the chunk */
    Py_ssize_t i;
    int queued = 0, malformed = 0, j;

    memset(reasons, 0, sizeof(int) * (size_t)(end - start));
    for (i = start; i < end; i++) {
        int reason = protect_copy(PyList_GET_ITEM(batch, i), arena[queued], &lengths[queued],
                                  &fds[queued], &addresses[queued]);
        if (reason < 0) {
            malformed = 1;
            break;
        }
        reasons[i - start] = reason;
        if (reason == 0) {
            fanout_uring_queue(fds[queued], PyBytes_AS_STRING(addresses[queued]),
                               (socklen_t)PyBytes_GET_SIZE(addresses[queued]), arena[queued],
                               (size_t)lengths[queued]);
            slots[queued] = i - start;
            results[queued] = URING_NOT_DONE;
            queued++;
        }
    }
    fanout_uring_flush(results);
    for (j = 0; j < queued; j++) {
        if (results[j] == URING_NOT_DONE)  /* the ring could not take it: send it here */
            reasons[slots[j]] = send_copy(fds[j], arena[j], lengths[j], addresses[j]);
        else if (results[j] < 0)
            reasons[slots[j]] = 2;
    }
    return malformed ? -1 : 0;
}

/* send(batch) -> None | list of (index, reason)
 *   batch: list of (target, head, payload, ...) where target = (srtp_ctx, fd, sockaddr)
 *   reason: 1 = too long or protect failed, 2 = send failed.
 * Through io_uring (sfu/_fanout_uring.c) a chunk of copies at a time when it is available, else
 * one sendto(2) per copy; the same bytes either way. */
static PyObject *send_batch(PyObject *self, PyObject *batch) {
    unsigned char buffer[MAX_BUFFER];
    int reasons[URING_CHUNK];
    PyObject *failures = NULL;
    Py_ssize_t count, start, i;

    if (!PyList_Check(batch)) {
        PyErr_SetString(PyExc_TypeError, "batch must be a list");
        return NULL;
    }
    if (srtp_protect_fn == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "set_protect() was not called");
        return NULL;
    }
    count = PyList_GET_SIZE(batch);
    /* the ring and arena are a fused fan-out's while it queues (a send() from a callback) */
    if (count > 1 && !fanout_sink_active() && fanout_uring_ready() && fanout_arena() != NULL) {
        for (start = 0; start < count; start += URING_CHUNK) {
            Py_ssize_t end = start + URING_CHUNK < count ? start + URING_CHUNK : count;
            if (start > 0 && !fanout_uring_ready())
                break;  /* retired by the chunk before: the rest with sendto, below */
            if (send_chunk_ring(batch, start, end, reasons) < 0)
                goto error;  /* the copies before it went out; Python counts them all failed */
            for (i = start; i < end; i++) {
                if (reasons[i - start] && add_failure(&failures, i, reasons[i - start]) < 0)
                    goto error;
            }
        }
    } else {
        start = 0;
    }
    for (i = start; i < count; i++) {  /* one sendto each: no ring, or the ring retired */
        int length, fd;
        PyObject *sockaddr;
        int reason = protect_copy(PyList_GET_ITEM(batch, i), buffer, &length, &fd, &sockaddr);
        if (reason < 0)
            goto error;
        if (reason == 0)
            reason = send_copy(fd, buffer, length, sockaddr);
        if (reason && add_failure(&failures, i, reason) < 0)
            goto error;
    }
    if (failures == NULL)
        Py_RETURN_NONE;
    return failures;

error:
    Py_XDECREF(failures);
    return NULL;
}


static PyMethodDef methods[] = {
    {"set_protect", set_protect, METH_O, "Address of libsrtp's srtp_protect (as an int)."},
    {"set_unprotect", set_unprotect, METH_O,
     "Address of libsrtp's srtp_unprotect (as an int)."},
    {"init_forward", fanout_init_forward, METH_VARARGS,
     "(types, srtp tag length, transport-cc overhead) -> bool: ready to forward."},
    {"forward", fanout_forward, METH_VARARGS,
     "The steady-state Consumer.send of every consumer of one packet (see the source)."},
    {"receive", fanout_receive, METH_VARARGS,
     "(ctx, fd, datagram) -> (plain RTP or None, kernel arrival ms on aiortc's clock or -1)."},
    {"init_view", fanout_init_view, METH_O,
     "(RtpView) -> bool: ready to build RtpViews in C (parse_view, receive_view)."},
    {"parse_view", fanout_parse_view, METH_O,
     "(plain RTP bytes) -> RtpView, or None when RtpView.parse must decide."},
    {"receive_view", fanout_receive_view, METH_VARARGS,
     "(ctx, fd, datagram) -> (RtpView, or plain bytes for Python to parse, or None; arrival)."},
    {"extension_blocks", fanout_extension_blocks, METH_VARARGS,
     "(producer, packet, key, now) -> (elements, block), as producer._blocks."},
    {"send", send_batch, METH_O,
     "Protect and send a batch of (target, head, payload, ...); None or [(index, reason)]."},
    {"forward_send", fanout_forward_send, METH_VARARGS,
     "forward() whose copies are protected and sent in the same call (sfu/_fanout_send.c)."},
    {"dry_run", fanout_dry_run, METH_VARARGS,
     "(flag=None) -> bool: benchmarks only: forward_send builds copies, sends none."},
    {"uring", fanout_uring, METH_VARARGS,
     "(enable=None) -> state of the io_uring send path: on, off, unavailable/retired: why."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "sfu._fanout",
    "SRTP protect + sendto for a whole fan-out in one call.", -1, methods,
};

PyMODINIT_FUNC PyInit__fanout(void) { return PyModule_Create(&module); }
