/* sfu._fanout, part 3: ``receive_view`` and ``parse_view``, the RTP header of an incoming packet
 * parsed in C into the Python ``RtpView`` (sfu/wire/rtp_packet.py) the publisher reads.
 * Built into the same extension as sfu/_fanout.c (pyproject.toml lists the sources).
 *
 * Why C: at N=16 every incoming packet (~169 a second) pays its fixed costs for only 16 copies,
 * and RtpView.parse with its one-byte extension loop was ~4 us of interpreter per packet plus a
 * frame per call on the way from the socket. Here the SRTP datagram is unprotected and its
 * header parsed in one call; the fields go straight into the RtpView's __slots__ (the member
 * offsets read once by ``init_view``). Only the common shape is parsed here: no extension or
 * the one-byte profile (RFC 8285). Anything else (the two-byte profile) and everything
 * RtpView.parse refuses is handed back as the plain bytes, so Python parses it and decides
 * exactly as before (tests/unit/test_native_view.py compares both on hostile input). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <stdint.h>
#include <string.h>

#include "_fanout.h"

enum {
    V_DATA, V_PAYLOAD_TYPE, V_MARKER, V_SEQ, V_TIMESTAMP, V_SSRC, V_EXTENSIONS, V_PAYLOAD,
    V_PADDING, N_VIEW_SLOTS
};
static const char *view_slot_names[N_VIEW_SLOTS] = {
    "data", "payload_type", "marker", "sequence_number", "timestamp", "ssrc", "extensions",
    "payload", "padding_size",
};
static PyTypeObject *view_type = NULL;
static Py_ssize_t view_offsets[N_VIEW_SLOTS];
static int view_ready = 0;

#define RTP_HEADER 12
#define ONE_BYTE_PROFILE 0xBEDE
#define TWO_BYTE_MASK 0xFFF0
#define TWO_BYTE_PROFILE 0x1000

/* init_view(RtpView) -> bool: the member offsets of its slots (False: not the layout assumed,
 * receive_view then always hands the bytes back). */
PyObject *fanout_init_view(PyObject *self, PyObject *type) {
    int i;
    view_ready = 0;
    if (!PyType_Check(type)) {
        PyErr_SetString(PyExc_TypeError, "init_view needs a type");
        return NULL;
    }
    for (i = 0; i < N_VIEW_SLOTS; i++) {
        PyObject *descr = PyObject_GetAttrString(type, view_slot_names[i]);
        PyMemberDef *member;
        if (descr == NULL) {
            PyErr_Clear();
            Py_RETURN_FALSE;
        }
        if (!Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
            Py_DECREF(descr);
            Py_RETURN_FALSE;
        }
        member = ((PyMemberDescrObject *)descr)->d_member;
        if (member->type != T_OBJECT_EX || (member->flags & READONLY)) {
            Py_DECREF(descr);
            Py_RETURN_FALSE;
        }
        view_offsets[i] = member->offset;
        Py_DECREF(descr);
    }
    Py_INCREF(type);
    Py_XSETREF(view_type, (PyTypeObject *)type);
    view_ready = 1;
    Py_RETURN_TRUE;
}

/* The one-byte elements of [pos, end) into ``out`` as RtpView.parse's _parse_one_byte does;
 * 0 ok, 1 malformed (Python will raise for it), -1 error. */
static int one_byte_elements(const unsigned char *d, Py_ssize_t pos, Py_ssize_t end,
                             PyObject *out) {
    while (pos < end) {
        unsigned char byte = d[pos];
        Py_ssize_t length;
        PyObject *key, *value;
        int failed;
        if (byte == 0) {  /* padding between elements */
            pos++;
            continue;
        }
        if ((byte >> 4) == 15)  /* reserved id: stop (RFC 8285 4.2) */
            return 0;
        length = (byte & 0x0F) + 1;
        pos++;
        if (pos + length > end)
            return 1;
        key = PyLong_FromLong(byte >> 4);
        value = PyBytes_FromStringAndSize((const char *)d + pos, length);
        failed = key == NULL || value == NULL || PyDict_SetItem(out, key, value) < 0;
        Py_XDECREF(key);
        Py_XDECREF(value);
        if (failed)
            return -1;
        pos += length;
    }
    return 0;
}

/* An RtpView of ``plain`` (a bytes object), Py_None (new reference) when Python must parse it
 * (a shape not handled here, or one RtpView.parse refuses), NULL on error. */
static PyObject *view_of(PyObject *plain) {
    const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(plain);
    Py_ssize_t size = PyBytes_GET_SIZE(plain), pos, end, padding = 0;
    PyObject *extensions, *view, *fields[N_VIEW_SLOTS];
    int i;

    if (!view_ready || size < RTP_HEADER || (d[0] >> 6) != 2)
        Py_RETURN_NONE;
    pos = RTP_HEADER + 4 * (d[0] & 0x0F);
    if ((extensions = PyDict_New()) == NULL)
        return NULL;
    if (d[0] & 0x10) {
        Py_ssize_t start, words;
        unsigned int profile;
        if (pos + 4 > size)
            goto python;
        profile = ((unsigned int)d[pos] << 8) | d[pos + 1];
        words = ((Py_ssize_t)d[pos + 2] << 8) | d[pos + 3];
        start = pos + 4;
        pos = start + 4 * words;
        if (pos > size)
            goto python;
        if (profile == ONE_BYTE_PROFILE) {
            int status = one_byte_elements(d, start, pos, extensions);
            if (status < 0) {
                Py_DECREF(extensions);
                return NULL;
            }
            if (status > 0)
                goto python;
        } else if ((profile & TWO_BYTE_MASK) == TWO_BYTE_PROFILE) {
            goto python;  /* rare: RtpView.parse does it */
        }
    }
    end = size;
    if (d[0] & 0x20) {
        padding = d[size - 1];
        if (padding == 0 || pos + padding > size)
            goto python;
        end = size - padding;
    }
    if (pos > end)
        goto python;

    fields[V_DATA] = plain;
    Py_INCREF(plain);
    fields[V_PAYLOAD_TYPE] = PyLong_FromLong(d[1] & 0x7F);
    fields[V_MARKER] = PyLong_FromLong(d[1] >> 7);
    fields[V_SEQ] = PyLong_FromLong(((long)d[2] << 8) | d[3]);
    fields[V_TIMESTAMP] = PyLong_FromUnsignedLong(((unsigned long)d[4] << 24)
        | ((unsigned long)d[5] << 16) | ((unsigned long)d[6] << 8) | d[7]);
    fields[V_SSRC] = PyLong_FromUnsignedLong(((unsigned long)d[8] << 24)
        | ((unsigned long)d[9] << 16) | ((unsigned long)d[10] << 8) | d[11]);
    fields[V_EXTENSIONS] = extensions;
    fields[V_PAYLOAD] = PyBytes_FromStringAndSize((const char *)d + pos, end - pos);
    fields[V_PADDING] = PyLong_FromSsize_t(padding);
    view = NULL;
    for (i = 0; i < N_VIEW_SLOTS; i++)
        if (fields[i] == NULL)
            goto fail;
    if ((view = view_type->tp_alloc(view_type, 0)) == NULL)
        goto fail;
    for (i = 0; i < N_VIEW_SLOTS; i++)  /* a fresh object: every slot is NULL; steals */
        *(PyObject **)((char *)view + view_offsets[i]) = fields[i];
    return view;

fail:
    for (i = 0; i < N_VIEW_SLOTS; i++)
        Py_XDECREF(fields[i]);
    return NULL;

python:
    Py_DECREF(extensions);
    Py_RETURN_NONE;
}

/* parse_view(data: bytes) -> RtpView or None (None: RtpView.parse decides, it may raise). */
PyObject *fanout_parse_view(PyObject *self, PyObject *data) {
    if (!PyBytes_CheckExact(data)) {
        PyErr_SetString(PyExc_TypeError, "parse_view needs bytes");
        return NULL;
    }
    return view_of(data);
}

/* receive_view(ctx, fd, datagram) -> (RtpView, or the plain bytes for Python to parse, or None
 * when unprotect refuses it; the kernel arrival ms or -1): ``receive`` and ``parse_view`` in
 * one call. */
PyObject *fanout_receive_view(PyObject *self, PyObject *args) {
    PyObject *result = fanout_receive(self, args), *plain, *view;
    if (result == NULL)
        return NULL;
    plain = PyTuple_GET_ITEM(result, 0);
    if (plain == Py_None || !PyBytes_CheckExact(plain))
        return result;
    if ((view = view_of(plain)) == NULL) {
        Py_DECREF(result);
        return NULL;
    }
    if (view == Py_None) {  /* Python parses the bytes */
        Py_DECREF(view);
        return result;
    }
    {
        PyObject *out = Py_BuildValue("(NO)", view, PyTuple_GET_ITEM(result, 1));
        Py_DECREF(result);
        return out;
    }
}
