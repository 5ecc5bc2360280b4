/* sfu._fanout: SRTP-protect and send one incoming packet's copies in one call (and receive
 * one SRTP datagram: kernel arrival time + unprotect, ``receive``).
 *
 * Why C: per copy, Python spends more time around the work than in it (pylibsrtp's cffi
 * wrapper allocates and copies twice, the event loop's sendto checks and converts the address
 * every call). Here each copy is assembled (header + payload) in one stack buffer, protected by
 * libsrtp in place and sent with one sendto(2) on the subscriber's own socket. Each subscriber
 * has its own ICE socket (its own 5-tuple), so sendmmsg(2), which batches per socket, does not
 * apply across a fan-out.
 *
 * libsrtp is the copy pylibsrtp links: Python hands over the address of its srtp_protect
 * (sfu/aiortc_hooks.py checks the prototype) and each session's srtp_t, so no header or
 * library is needed to build this file. Optional: sfu/native.py falls back to pure Python
 * when the module is missing or DIEMCAU_NO_NATIVE=1.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <linux/sockios.h>

#include "_fanout.h"

#define MAX_BUFFER 1500   /* as pylibsrtp's buffer ... */
#define MAX_TRAILER 144   /* ... less SRTP_MAX_TRAILER_LEN (tag + MKI): longer is refused */

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

/* send(batch) -> None | list of (index, reason)
 *   batch: list of (target, head, payload, ...) where target = (srtp_ctx, fd, sockaddr)
 *   reason: 1 = too long or protect failed, 2 = sendto failed. */
static PyObject *send_batch(PyObject *self, PyObject *batch) {
    unsigned char buffer[MAX_BUFFER];
    PyObject *failures = NULL;
    Py_ssize_t count, i;

    if (!PyList_Check(batch)) {
        PyErr_SetString(PyExc_TypeError, "batch must be a list");
        return NULL;
    }
    if (srtp_protect_fn == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "set_protect() was not called");
        return NULL;
    }
    count = PyList_GET_SIZE(batch);
    for (i = 0; i < count; i++) {
        PyObject *item = PyList_GET_ITEM(batch, i);
        PyObject *target, *head, *payload, *sockaddr;
        void *ctx;
        long fd;
        Py_ssize_t head_len, payload_len;
        int length, reason = 0;

        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) < 3) {
            PyErr_SetString(PyExc_TypeError, "batch items are (target, head, payload, ...)");
            goto error;
        }
        target = PyTuple_GET_ITEM(item, 0);
        head = PyTuple_GET_ITEM(item, 1);
        payload = PyTuple_GET_ITEM(item, 2);
        if (!PyTuple_Check(target) || PyTuple_GET_SIZE(target) != 3 || !PyBytes_Check(head)
            || !PyBytes_Check(payload) || !PyBytes_Check(PyTuple_GET_ITEM(target, 2))) {
            PyErr_SetString(PyExc_TypeError, "target is (ctx, fd, sockaddr), head/payload bytes");
            goto error;
        }
        ctx = PyLong_AsVoidPtr(PyTuple_GET_ITEM(target, 0));
        fd = PyLong_AsLong(PyTuple_GET_ITEM(target, 1));
        if (PyErr_Occurred())
            goto error;
        sockaddr = PyTuple_GET_ITEM(target, 2);
        head_len = PyBytes_GET_SIZE(head);
        payload_len = PyBytes_GET_SIZE(payload);
        if (head_len + payload_len > MAX_BUFFER - MAX_TRAILER) {
            reason = 1;
        } else {
            memcpy(buffer, PyBytes_AS_STRING(head), (size_t)head_len);
            memcpy(buffer + head_len, PyBytes_AS_STRING(payload), (size_t)payload_len);
            length = (int)(head_len + payload_len);
            if (srtp_protect_fn(ctx, buffer, &length) != 0 || length > MAX_BUFFER) {
                reason = 1;
            } else {
                ssize_t sent;
                do {
                    sent = sendto((int)fd, buffer, (size_t)length, MSG_DONTWAIT,
                                  (const struct sockaddr *)PyBytes_AS_STRING(sockaddr),
                                  (socklen_t)PyBytes_GET_SIZE(sockaddr));
                } while (sent < 0 && errno == EINTR);
                if (sent < 0)
                    reason = 2;
            }
        }
        if (reason) {
            PyObject *entry;
            if (failures == NULL && (failures = PyList_New(0)) == NULL)
                goto error;
            entry = Py_BuildValue("(ni)", i, reason);
            if (entry == NULL || PyList_Append(failures, entry) < 0) {
                Py_XDECREF(entry);
                goto error;
            }
            Py_DECREF(entry);
        }
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
    {"send", send_batch, METH_O,
     "Protect and send a batch of (target, head, payload, ...); None or [(index, reason)]."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "sfu._fanout",
    "SRTP protect + sendto for a whole fan-out in one call.", -1, methods,
};

PyMODINIT_FUNC PyInit__fanout(void) { return PyModule_Create(&module); }
