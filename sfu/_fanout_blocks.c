/* sfu._fanout, part 6: ``extension_blocks``, Producer._blocks in one C call.
 *
 * Why C: ``native.forward`` asks once per packet for the header-extension elements every
 * consumer shares (the subscriber's audio-level element, copied from the publisher's, and a
 * fresh abs-send-time) and the finished block. In Python that is four frames per packet
 * (_blocks, _extension_elements, abs_send_time_element, finish_extension_block) and three
 * bytes objects; at N=16 they cost more than the C forward of a copy. The arithmetic mirrors
 * sfu/wire/rtp_packet.py (one_byte_element, abs_send_time_element, finish_extension_block);
 * tests/unit/test_native_blocks.py compares both on random input. Anything this does not
 * handle exactly as Python would (a key that is not two small ints, an extension value that
 * is not bytes) goes to the producer's own ``_blocks``, so the result is always Python's. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "_fanout.h"

static PyObject *str_audio_level_ext_id = NULL, *str_blocks = NULL, *str_extensions = NULL;

/* a small non-negative int (0 for False/0), -1 when it is not an exact int in [0, 255] */
static int small_int(PyObject *v) {
    long n;
    if (!PyLong_CheckExact(v))
        return -1;
    n = PyLong_AsLong(v);
    if (n == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    return n < 0 || n > 255 ? -1 : (int)n;
}

static PyObject *python_blocks(PyObject *producer, PyObject *packet, PyObject *key,
                               PyObject *now) {
    return PyObject_CallMethodObjArgs(producer, str_blocks, packet, key, now, NULL);
}

/* extension_blocks(producer, packet, key, now) -> (elements, block), as producer._blocks. */
PyObject *fanout_extension_blocks(PyObject *self, PyObject *args) {
    PyObject *producer, *packet, *key, *now_obj, *own_id, *extensions;
    unsigned char out[4 + 17 + 4 + 3];  /* block header, audio level, abs-send-time, padding */
    Py_ssize_t n = 0, padded;
    int audio_level_id, abs_send_time_id;
    double now;

    if (!PyArg_ParseTuple(args, "OOOO", &producer, &packet, &key, &now_obj))
        return NULL;
    if (str_blocks == NULL && (str_blocks = PyUnicode_InternFromString("_blocks")) == NULL)
        return NULL;
    if (str_extensions == NULL && (str_extensions = PyUnicode_InternFromString("extensions"))
            == NULL)
        return NULL;
    if (str_audio_level_ext_id == NULL && (str_audio_level_ext_id = PyUnicode_InternFromString(
            "audio_level_ext_id")) == NULL)
        return NULL;
    if (!PyTuple_CheckExact(key) || PyTuple_GET_SIZE(key) != 2 || !PyFloat_CheckExact(now_obj)
            || (audio_level_id = small_int(PyTuple_GET_ITEM(key, 0))) < 0
            || (abs_send_time_id = small_int(PyTuple_GET_ITEM(key, 1))) < 0)
        return python_blocks(producer, packet, key, now_obj);
    now = PyFloat_AS_DOUBLE(now_obj);
    if (audio_level_id) {
        PyObject *level;
        own_id = PyObject_GetAttr(producer, str_audio_level_ext_id);
        if (own_id == NULL)
            return NULL;
        if (own_id != Py_None) {
            extensions = PyObject_GetAttr(packet, str_extensions);
            if (extensions == NULL || !PyDict_CheckExact(extensions)) {
                Py_DECREF(own_id);
                Py_XDECREF(extensions);
                PyErr_Clear();
                return python_blocks(producer, packet, key, now_obj);
            }
            level = PyDict_GetItemWithError(extensions, own_id);  /* borrowed from extensions */
            Py_DECREF(own_id);
            if (level == NULL && PyErr_Occurred()) {
                Py_DECREF(extensions);
                return NULL;
            }
            Py_XINCREF(level);
            Py_DECREF(extensions);
            if (level != NULL) {
                Py_ssize_t size;
                size = PyBytes_CheckExact(level) ? PyBytes_GET_SIZE(level) : -1;
                if (audio_level_id > 14 || size < 1 || size > 16) {  /* Python raises, or: */
                    Py_DECREF(level);  /* not bytes: Python decides */
                    return python_blocks(producer, packet, key, now_obj);
                }
                out[4] = (unsigned char)((audio_level_id << 4) | (size - 1));
                memcpy(out + 5, PyBytes_AS_STRING(level), (size_t)size);
                Py_DECREF(level);
                n = 1 + size;
            }
        } else {
            Py_DECREF(own_id);
        }
    }
    if (abs_send_time_id) {
        long long stamp;
        if (abs_send_time_id > 14)
            return python_blocks(producer, packet, key, now_obj);  /* it raises */
        stamp = (long long)(now * (double)(1 << 18)) & 0xFFFFFF;  /* int() truncates too */
        out[4 + n] = (unsigned char)((abs_send_time_id << 4) | 2);
        out[5 + n] = (unsigned char)(stamp >> 16);
        out[6 + n] = (unsigned char)(stamp >> 8);
        out[7 + n] = (unsigned char)stamp;
        n += 4;
    }
    if (n == 0) {
        PyObject *empty = PyBytes_FromStringAndSize(NULL, 0);
        PyObject *pair = empty ? PyTuple_Pack(2, empty, empty) : NULL;
        Py_XDECREF(empty);
        return pair;
    }
    padded = (n + 3) & ~(Py_ssize_t)3;
    memset(out + 4 + n, 0, (size_t)(padded - n));
    out[0] = 0xBE;
    out[1] = 0xDE;
    out[2] = (unsigned char)((padded >> 2) >> 8);
    out[3] = (unsigned char)(padded >> 2);
    return Py_BuildValue("(y#y#)", (const char *)out + 4, n, (const char *)out, 4 + padded);
}
