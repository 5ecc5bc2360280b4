/* loadtest._rxbatch: every datagram waiting on a socket, read in one recvmmsg(2) call.
 *
 * Why C: the load generator's subscribers receive tens of thousands of datagrams a second.
 * Read one at a time (the event loop's way), each costs a wake-up, a callback and a syscall;
 * Python's socket module has no recvmmsg. Here one call returns up to BATCH datagrams with
 * their senders and the kernel's receive time (SO_TIMESTAMPNS, which the caller enables).
 * Optional: loadtest/rxbatch.py reads with socket.recvmsg in a loop when this module is
 * missing or DIEMCAU_NO_NATIVE=1, with the same results.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define BATCH 64
#define MAX_DATAGRAM 2048 /* longer ones are cut (MSG_TRUNC) and skipped: no RTP is that big */
#define CONTROL_SPACE CMSG_SPACE(sizeof(struct timespec))

static unsigned char buffers[BATCH][MAX_DATAGRAM];
static struct sockaddr_storage senders[BATCH];
static union {
    char bytes[CONTROL_SPACE];
    struct cmsghdr align;
} controls[BATCH];

/* (host, port) as Python's socket module gives it (a 4-tuple for IPv6); NULL with an error. */
static PyObject *address_tuple(const struct sockaddr_storage *address) {
    char host[INET6_ADDRSTRLEN];
    if (address->ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)address;
        if (inet_ntop(AF_INET, &v4->sin_addr, host, sizeof(host)) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        return Py_BuildValue("(si)", host, (int)ntohs(v4->sin_port));
    }
    if (address->ss_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)address;
        if (inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof(host)) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        return Py_BuildValue("(siII)", host, (int)ntohs(v6->sin6_port),
                             (unsigned int)ntohl(v6->sin6_flowinfo),
                             (unsigned int)v6->sin6_scope_id);
    }
    Py_RETURN_NONE;
}

static long long stamp_ns(struct msghdr *header) {
    struct cmsghdr *cmsg;
    for (cmsg = CMSG_FIRSTHDR(header); cmsg != NULL; cmsg = CMSG_NXTHDR(header, cmsg)) {
        if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_TIMESTAMPNS
            && cmsg->cmsg_len >= CMSG_LEN(sizeof(struct timespec))) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(cmsg), sizeof(ts));
            return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
        }
    }
    return 0;
}

/* recv(fd, max) -> list of (data, sender, kernel receive time in ns since the epoch or 0).
 * An empty list when nothing waits; OSError for a socket error (e.g. ECONNREFUSED from an
 * ICMP answer to an earlier send: the caller just reads again). */
static PyObject *recv_batch(PyObject *self, PyObject *args) {
    struct mmsghdr messages[BATCH];
    struct iovec vectors[BATCH];
    int fd, wanted, count, i;
    PyObject *out, *last_sender = NULL;
    int last_index = -1;

    if (!PyArg_ParseTuple(args, "ii", &fd, &wanted))
        return NULL;
    if (wanted < 1)
        return PyList_New(0);
    if (wanted > BATCH)
        wanted = BATCH;
    memset(messages, 0, sizeof(struct mmsghdr) * (size_t)wanted);
    for (i = 0; i < wanted; i++) {
        vectors[i].iov_base = buffers[i];
        vectors[i].iov_len = MAX_DATAGRAM;
        messages[i].msg_hdr.msg_iov = &vectors[i];
        messages[i].msg_hdr.msg_iovlen = 1;
        messages[i].msg_hdr.msg_name = &senders[i];
        messages[i].msg_hdr.msg_namelen = sizeof(senders[i]);
        messages[i].msg_hdr.msg_control = controls[i].bytes;
        messages[i].msg_hdr.msg_controllen = CONTROL_SPACE;
    }
    do {
        count = recvmmsg(fd, messages, (unsigned int)wanted, MSG_DONTWAIT, NULL);
    } while (count < 0 && errno == EINTR);
    if (count < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return PyList_New(0);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    out = PyList_New(0);
    if (out == NULL)
        return NULL;
    for (i = 0; i < count; i++) {
        struct msghdr *header = &messages[i].msg_hdr;
        PyObject *data, *item;
        if (header->msg_flags & MSG_TRUNC)
            continue;
        /* consecutive datagrams mostly come from one sender: one tuple for them all */
        if (last_sender == NULL || header->msg_namelen != messages[last_index].msg_hdr.msg_namelen
            || memcmp(&senders[i], &senders[last_index], header->msg_namelen) != 0) {
            Py_XDECREF(last_sender);
            last_sender = address_tuple(&senders[i]);
            if (last_sender == NULL)
                goto error;
            last_index = i;
        }
        data = PyBytes_FromStringAndSize((const char *)buffers[i], (Py_ssize_t)messages[i].msg_len);
        if (data == NULL)
            goto error;
        item = Py_BuildValue("(NOL)", data, last_sender, stamp_ns(header));
        if (item == NULL || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            goto error;
        }
        Py_DECREF(item);
    }
    Py_XDECREF(last_sender);
    return out;

error:
    Py_XDECREF(last_sender);
    Py_DECREF(out);
    return NULL;
}

/* srtp_unprotect of the libsrtp pylibsrtp links (its address comes from Python, as for
 * sfu/_fanout.c's srtp_protect): the receiver decrypts one packet per video frame, and
 * pylibsrtp's wrapper costs more than the decryption (a cffi buffer, two copies). */
typedef int (*unprotect_fn)(void *ctx, void *packet, int *len);
static unprotect_fn srtp_unprotect_fn = NULL;

static PyObject *set_unprotect(PyObject *self, PyObject *arg) {
    void *address = PyLong_AsVoidPtr(arg);
    if (address == NULL && PyErr_Occurred())
        return NULL;
    srtp_unprotect_fn = (unprotect_fn)address;
    Py_RETURN_NONE;
}

/* unprotect(ctx, data) -> the decrypted packet; ValueError when libsrtp refuses it. */
static PyObject *unprotect(PyObject *self, PyObject *args) {
    unsigned char buffer[MAX_DATAGRAM];
    PyObject *ctx_object;
    const char *data;
    Py_ssize_t size;
    void *ctx;
    int length, status;

    if (!PyArg_ParseTuple(args, "Oy#", &ctx_object, &data, &size))
        return NULL;
    if (srtp_unprotect_fn == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "set_unprotect() was not called");
        return NULL;
    }
    ctx = PyLong_AsVoidPtr(ctx_object);
    if (ctx == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "no SRTP context");
        return NULL;
    }
    if (size < 12 || size > MAX_DATAGRAM) {
        PyErr_SetString(PyExc_ValueError, "not an SRTP packet");
        return NULL;
    }
    memcpy(buffer, data, (size_t)size);
    length = (int)size;
    status = srtp_unprotect_fn(ctx, buffer, &length);
    if (status != 0 || length < 0 || length > size) {
        PyErr_Format(PyExc_ValueError, "srtp_unprotect failed (%d)", status);
        return NULL;
    }
    return PyBytes_FromStringAndSize((const char *)buffer, length);
}

static PyMethodDef methods[] = {
    {"recv", recv_batch, METH_VARARGS,
     "recv(fd, max) -> [(data, sender, kernel receive time in ns or 0)], at most 64 a call."},
    {"set_unprotect", set_unprotect, METH_O, "Address of libsrtp's srtp_unprotect (an int)."},
    {"unprotect", unprotect, METH_VARARGS,
     "unprotect(srtp_t address, data) -> decrypted RTP; ValueError when refused."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "loadtest._rxbatch",
    "recvmmsg(2) for the load generator: a socket's waiting datagrams in one call.", -1, methods,
};

PyMODINIT_FUNC PyInit__rxbatch(void) {
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "BATCH", BATCH) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
