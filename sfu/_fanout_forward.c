/* sfu._fanout, part 2: ``forward``, the steady-state Consumer.send of a whole fan-out.
 * Built into the same extension as sfu/_fanout.c (pyproject.toml lists both sources). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "_fanout.h"

/* -- forward: the steady-state copy of Consumer.send, for a whole fan-out ----------------------
 *
 * Why C: at N=16 the Python of Consumer.send (decision, sequence/timestamp/VP8 rewriting, header,
 * history, batch) was ~1.5 us of interpreter per copy, a fifth of the server's CPU. Here the
 * same steps run for every consumer in the steady state (not paused, forwarding the target
 * layer, the packet newer than any before, the writer native): the state stays in the Python
 * objects (their __slots__, read and written at the offsets of their member descriptors), so
 * there is one source of truth and Consumer.send takes over for anything else (a switch, a
 * pause, reordering, a Python writer), consumer by consumer. The arithmetic mirrors
 * sfu/wire/seqmath.py, sfu/wire/rewriting.py and Vp8PictureIdMunger.apply; the unit tests
 * compare both paths byte for byte and slot for slot. */

enum {
    C_PAUSE, C_CODEC, C_CURRENT, C_TARGET, C_TWCC, C_TWCC_ID, C_SSRC, C_SEQ, C_TS, C_VP8,
    C_REWRITE_VP8, C_HISTORY, C_WRITER, C_PACKETS, C_OCTETS, C_EXT_KEY,
    S_HIGHEST, S_OFFSET, S_LAST,
    T_OFFSET, T_LAST, T_TIME,
    V_PID_OFF, V_TL0_OFF, V_LAST_PID, V_LAST_TL0,
    H_MASK, H_PAYLOADS, H_INFO, H_PREFIXES,
    W_NATIVE, W_PACKETS, W_BYTES,
    N_SLOTS
};
static const char *slot_names[N_SLOTS] = {
    "pause_reason", "codec", "current_layer", "target_layer", "twcc", "twcc_id", "ssrc",
    "_seq", "_ts", "_vp8", "_rewrite_vp8", "_history", "writer", "packets_sent",
    "octets_sent", "ext_key",
    "_highest", "_offset", "last_output",
    "offset", "last_output", "_last_time",
    "_pid_offset", "_tl0_offset", "last_picture_id", "last_tl0picidx",
    "_mask", "_payloads", "_info", "_prefixes",
    "_native", "sent_packets", "sent_bytes",
};
/* which of the types below owns each slot */
static const int slot_owner[N_SLOTS] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4,
    5, 5, 5,
};
/* Consumer, SequenceRewriter, TimestampRewriter, munger, history, writer, TransportSequencer
 * (whose slots sfu/_fanout_twcc.c reads) */
enum { N_TYPES = 7 };
static PyTypeObject *fwd_types[N_TYPES];
/* sfu/history.py's words: an info word's "stored" bit, a prefix word's "rewritten" bit, and
 * the payload bytes a consumer may rewrite (REWRITTEN_PREFIX); tests compare both paths. */
#define HISTORY_STORED (1ULL << 49)
#define HISTORY_PREFIX_SET (1ULL << 51)
#define HISTORY_PREFIX 6
static Py_ssize_t offsets[N_SLOTS];
static long tag_len = 0, twcc_overhead = 0;
static PyObject *str_payload_type = NULL, *str_next = NULL;
static int forward_ready = 0;

#define SLOT(obj, i) (*(PyObject **)((char *)(obj) + offsets[i]))

/* init_forward(types, srtp_tag_len, rtp_overhead) -> bool: the member offsets of the slots. */
PyObject *fanout_init_forward(PyObject *self, PyObject *args) {
    PyObject *types;
    int i;
    forward_ready = 0;
    if (!PyArg_ParseTuple(args, "O!ll", &PyTuple_Type, &types, &tag_len, &twcc_overhead))
        return NULL;
    if (PyTuple_GET_SIZE(types) != N_TYPES) {
        PyErr_SetString(PyExc_ValueError, "init_forward needs 7 types");
        return NULL;
    }
    for (i = 0; i < N_TYPES; i++) {
        PyObject *t = PyTuple_GET_ITEM(types, i);
        if (!PyType_Check(t)) {
            PyErr_SetString(PyExc_TypeError, "init_forward needs types");
            return NULL;
        }
        Py_INCREF(t);
        Py_XSETREF(fwd_types[i], (PyTypeObject *)t);
    }
    for (i = 0; i < N_SLOTS; i++)
        if (!fanout_member_offset(fwd_types[slot_owner[i]], slot_names[i], &offsets[i]))
            Py_RETURN_FALSE;
    if (!fanout_twcc_init(fwd_types[6]))
        Py_RETURN_FALSE;  /* TransportSequencer's slots (sfu/_fanout_twcc.c) */
    if (str_payload_type == NULL && (str_payload_type = PyUnicode_InternFromString(
            "payload_type")) == NULL)
        return NULL;
    if (str_next == NULL && (str_next = PyUnicode_InternFromString("next")) == NULL)
        return NULL;
    forward_ready = 1;
    Py_RETURN_TRUE;
}

static int as_ll(PyObject *v, long long *out) {  /* 0 ok, -1 not an int (error cleared) */
    if (v == NULL || !PyLong_Check(v))
        return -1;
    *out = PyLong_AsLongLong(v);
    if (*out == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    return 0;
}

static void set_slot(PyObject *obj, int i, PyObject *value) {  /* steals value (not NULL) */
    PyObject **p = (PyObject **)((char *)obj + offsets[i]);
    PyObject *old = *p;
    *p = value;
    Py_XDECREF(old);
}

static int set_ll(PyObject *obj, int i, long long v) {
    return fanout_store_ll((PyObject **)((char *)obj + offsets[i]), v);
}

static int add_ll(PyObject *obj, int i, long long n) {
    long long v;
    if (as_ll(SLOT(obj, i), &v) < 0) {
        PyErr_SetString(PyExc_TypeError, "counter is not an int");
        return -1;
    }
    return set_ll(obj, i, v + n);
}

static long long signed_diff(long long a, long long b, long long size) {
    long long half = size >> 1;
    return ((a - b + half) & (size - 1)) - half;
}

/* The extension block (RFC 8285 one-byte form) of `elements` plus an optional transport-cc
 * element, into out (at most 4 + 255 * 4 bytes); returns its length. */
static Py_ssize_t build_block(unsigned char *out, const char *elements, Py_ssize_t n,
                              int twcc_id, long long twcc_seq) {
    Py_ssize_t body = n + (twcc_id ? 3 : 0), padded;
    if (body == 0)
        return 0;
    padded = (body + 3) & ~(Py_ssize_t)3;
    out[0] = 0xBE;
    out[1] = 0xDE;
    out[2] = (unsigned char)((padded >> 2) >> 8);
    out[3] = (unsigned char)(padded >> 2);
    memcpy(out + 4, elements, (size_t)n);
    if (twcc_id) {
        out[4 + n] = (unsigned char)((twcc_id << 4) | 1);
        out[5 + n] = (unsigned char)((twcc_seq >> 8) & 0xFF);
        out[6 + n] = (unsigned char)(twcc_seq & 0xFF);
    }
    memset(out + 4 + body, 0, (size_t)(padded - body));
    return 4 + padded;
}

/* One typed array of the ring ('Q' items, mask + 1 of them): its words, or NULL (error set). */
static int ring_words(PyObject *array, long long mask, Py_buffer *view) {
    if (PyObject_GetBuffer(array, view, PyBUF_WRITABLE | PyBUF_FORMAT) < 0)
        return -1;
    if (view->itemsize != 8 || view->len != (mask + 1) * 8 || view->format == NULL
            || strcmp(view->format, "Q") != 0) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_TypeError, "RtpHistory ring is not an array('Q') of its size");
        return -1;
    }
    return 0;
}

/* RtpHistory.put(out_seq, out_ts, marker, out_payload, original=payload) on an allocated ring
 * (sfu/history.py: the same words, the shared payload kept, a rewritten VP8 prefix packed). */
static int history_put(PyObject *history, PyObject *payloads, long long mask, long long out_seq,
                       long long out_ts, int marker, PyObject *payload, PyObject *out_payload) {
    Py_buffer info, prefixes;
    Py_ssize_t slot = (Py_ssize_t)(out_seq & mask);
    unsigned long long prefix_word = 0;
    if (ring_words(SLOT(history, H_INFO), mask, &info) < 0)
        return -1;
    if (ring_words(SLOT(history, H_PREFIXES), mask, &prefixes) < 0) {
        PyBuffer_Release(&info);
        return -1;
    }
    ((unsigned long long *)info.buf)[slot] = (unsigned long long)out_seq
        | (unsigned long long)(marker ? 1 : 0) << 16
        | ((unsigned long long)out_ts & 0xFFFFFFFFULL) << 17 | HISTORY_STORED;
    if (out_payload != payload) {  /* rewritten: only its first bytes differ */
        Py_ssize_t len = PyBytes_GET_SIZE(out_payload), i;
        const unsigned char *b = (const unsigned char *)PyBytes_AS_STRING(out_payload);
        if (len > HISTORY_PREFIX)
            len = HISTORY_PREFIX;
        for (i = 0; i < len; i++)
            prefix_word = prefix_word << 8 | b[i];
        prefix_word |= (unsigned long long)len << 48 | HISTORY_PREFIX_SET;
    }
    ((unsigned long long *)prefixes.buf)[slot] = prefix_word;
    PyBuffer_Release(&info);
    PyBuffer_Release(&prefixes);
    Py_INCREF(payload);
    PyList_SetItem(payloads, slot, payload);  /* steals the new reference */
    return 0;
}

#define HEAD_MAX (12 + 4 + 1024)  /* the header: a block of at most 1000 bytes of elements */

/* One consumer: 1 forwarded (queued in batch, or given to the sink: sfu/_fanout_send.c), 0 for
 * Consumer.send, -1 error before any change, -2 error after its state changed (reported like
 * an exception of Consumer.send). */
static int forward_one(PyObject *c, long layer, long long in_seq, long long in_ts,
                       int marker, PyObject *payload, PyObject *vp8_ids, double now,
                       PyObject *now_obj, PyObject *batch, fanout_sink *sink,
                       PyObject *elements, PyObject *block) {
    PyObject *codec, *seq, *ts, *vp8 = NULL, *history, *writer, *target, *twcc, *v;
    PyObject *pt_obj, *head = NULL, *out_payload, *item;
    long long cur, tgt, hi, off, d, ts_off, ts_last, ssrc, pt, twcc_id = 0, mask = 0;
    long long pid = -1, wide = 0, pos_tl0 = 0, tl0 = 0, pid_off = 0, tl0_off = 0;
    long long out_seq, out_ts, twcc_seq = 0, size;
    int rewrite_vp8, has_last_pid = 0, has_last_tl0 = 0;
    long long last_pid = 0, last_tl0 = 0;
    PyObject *slots = NULL;
    unsigned char head_buf[HEAD_MAX], *head_out;
    Py_ssize_t block_len, elements_len;
    void *ctx = NULL;
    int fd = -1;

    /* -- every check first: nothing changes before the copy is known to take this path -- */
    if (SLOT(c, C_PAUSE) != Py_None)
        return 0;
    codec = SLOT(c, C_CODEC);
    if (codec == NULL || codec == Py_None)
        return 0;
    if (as_ll(SLOT(c, C_CURRENT), &cur) < 0 || as_ll(SLOT(c, C_TARGET), &tgt) < 0
            || cur != layer || tgt != layer)
        return 0;
    seq = SLOT(c, C_SEQ);
    ts = SLOT(c, C_TS);
    writer = SLOT(c, C_WRITER);
    history = SLOT(c, C_HISTORY);
    twcc = SLOT(c, C_TWCC);
    if (seq == NULL || !Py_IS_TYPE(seq, fwd_types[1]) || ts == NULL
            || !Py_IS_TYPE(ts, fwd_types[2]) || writer == NULL
            || !Py_IS_TYPE(writer, fwd_types[5]) || history == NULL || twcc == NULL)
        return 0;
    target = SLOT(writer, W_NATIVE);
    if (target == NULL || target == Py_None)
        return 0;  /* Consumer.send sends it through the writer's Python path */
    if (sink != NULL && !fanout_sink_target(target, &ctx, &fd))
        return 0;  /* not (srtp_t, fd, sockaddr): Consumer.send queues it, send() says why */
    if (history != Py_None) {
        if (!Py_IS_TYPE(history, fwd_types[4]) || as_ll(SLOT(history, H_MASK), &mask) < 0)
            return 0;
        slots = SLOT(history, H_PAYLOADS);
        if (slots == NULL || slots == Py_None)
            return 0;  /* no ring yet: RtpHistory.put (through Consumer.send) allocates it */
        if (!PyList_CheckExact(slots) || mask < 0 || PyList_GET_SIZE(slots) != mask + 1
                || SLOT(history, H_INFO) == NULL || SLOT(history, H_PREFIXES) == NULL
                || !PyObject_CheckBuffer(SLOT(history, H_INFO))
                || !PyObject_CheckBuffer(SLOT(history, H_PREFIXES)))
            return 0;
    }
    if (as_ll(SLOT(seq, S_HIGHEST), &hi) < 0 || as_ll(SLOT(seq, S_OFFSET), &off) < 0)
        return 0;  /* None: not synced yet */
    d = signed_diff(in_seq, hi, 0x10000);
    if (d <= 0)
        return 0;  /* reordered or repeated: SequenceRewriter._input_old */
    if (as_ll(SLOT(ts, T_OFFSET), &ts_off) < 0 || as_ll(SLOT(ts, T_LAST), &ts_last) < 0)
        return 0;
    v = SLOT(ts, T_TIME);
    if (v == NULL || (v != Py_None && !PyFloat_CheckExact(v)))
        return 0;
    if (as_ll(SLOT(c, C_SSRC), &ssrc) < 0 || ssrc < 0 || ssrc > 0xFFFFFFFFLL)
        return 0;
    pt_obj = PyObject_GetAttr(codec, str_payload_type);
    if (pt_obj == NULL) {
        PyErr_Clear();
        return 0;
    }
    if (as_ll(pt_obj, &pt) < 0 || pt < 0 || pt > 127) {
        Py_DECREF(pt_obj);
        return 0;
    }
    Py_DECREF(pt_obj);
    rewrite_vp8 = SLOT(c, C_REWRITE_VP8) == Py_True;
    if (rewrite_vp8) {
        vp8 = SLOT(c, C_VP8);
        if (vp8_ids == Py_False || vp8 == NULL || !Py_IS_TYPE(vp8, fwd_types[3]))
            return 0;  /* ids not read by the producer: Consumer.send reads them */
        if (vp8_ids != Py_None) {
            if (!PyTuple_CheckExact(vp8_ids) || PyTuple_GET_SIZE(vp8_ids) != 4
                    || as_ll(PyTuple_GET_ITEM(vp8_ids, 0), &pid) < 0
                    || as_ll(PyTuple_GET_ITEM(vp8_ids, 1), &wide) < 0
                    || as_ll(PyTuple_GET_ITEM(vp8_ids, 2), &pos_tl0) < 0
                    || as_ll(PyTuple_GET_ITEM(vp8_ids, 3), &tl0) < 0
                    || as_ll(SLOT(vp8, V_PID_OFF), &pid_off) < 0
                    || as_ll(SLOT(vp8, V_TL0_OFF), &tl0_off) < 0)
                return 0;
            v = SLOT(vp8, V_LAST_PID);
            if (v == NULL || (v != Py_None && as_ll(v, &last_pid) < 0))
                return 0;
            has_last_pid = v != Py_None;
            v = SLOT(vp8, V_LAST_TL0);
            if (v == NULL || (v != Py_None && as_ll(v, &last_tl0) < 0))
                return 0;
            has_last_tl0 = v != Py_None;
            if (pos_tl0 < 0 || pos_tl0 >= PyBytes_GET_SIZE(payload)
                    || (pid >= 0 && PyBytes_GET_SIZE(payload) < (wide ? 4 : 3)))
                return 0;
        }
    }
    if (twcc != Py_None && (as_ll(SLOT(c, C_TWCC_ID), &twcc_id) < 0 || twcc_id < 1
                            || twcc_id > 14))
        return 0;
    elements_len = PyBytes_GET_SIZE(elements);
    if (elements_len > 1000)
        return 0;

    /* -- the copy: SequenceRewriter.input, TimestampRewriter.input -- */
    hi += d;
    out_seq = (hi + off) & 0xFFFF;
    if (set_ll(seq, S_HIGHEST, hi) < 0 || set_ll(seq, S_LAST, out_seq) < 0)
        return -2;
    out_ts = (in_ts + ts_off) & 0xFFFFFFFFLL;
    if (out_ts == ts_last || signed_diff(out_ts, ts_last, 0x100000000LL) > 0) {
        if (out_ts != ts_last && set_ll(ts, T_LAST, out_ts) < 0)  /* the same value: kept */
            return -2;
        Py_INCREF(now_obj);  /* one float per packet, shared by every copy */
        set_slot(ts, T_TIME, now_obj);
    } else if (SLOT(ts, T_TIME) == Py_None) {
        Py_INCREF(now_obj);
        set_slot(ts, T_TIME, now_obj);
    }
    /* -- Vp8PictureIdMunger.apply -- */
    Py_INCREF(payload);
    out_payload = payload;
    if (rewrite_vp8 && vp8_ids != Py_None) {
        if (pid >= 0) {
            if (wide) {
                if (pid_off)
                    pid = (pid + pid_off) & 0x7FFF;
                if (!has_last_pid || (pid != last_pid && signed_diff(pid, last_pid, 0x8000) > 0))
                    if (set_ll(vp8, V_LAST_PID, pid) < 0)
                        goto changed_error;
            } else {
                if (pid_off)
                    pid = (pid + pid_off) & 0x7F;
                if (!has_last_pid || (pid != last_pid && signed_diff(pid, last_pid, 0x80) > 0))
                    if (set_ll(vp8, V_LAST_PID, pid) < 0)
                        goto changed_error;
            }
        }
        if (pos_tl0) {
            if (tl0_off)
                tl0 = (tl0 + tl0_off) & 0xFF;
            if (!has_last_tl0 || (tl0 != last_tl0 && signed_diff(tl0, last_tl0, 0x100) > 0))
                if (set_ll(vp8, V_LAST_TL0, tl0) < 0)
                    goto changed_error;
        }
        if (pid_off | tl0_off) {
            char *buf;
            Py_SETREF(out_payload, PyBytes_FromStringAndSize(PyBytes_AS_STRING(payload),
                                                             PyBytes_GET_SIZE(payload)));
            if (out_payload == NULL)
                return -2;
            buf = PyBytes_AS_STRING(out_payload);
            if (pid >= 0) {  /* lengths checked above */
                if (wide) {
                    buf[2] = (char)(0x80 | (pid >> 8));
                    buf[3] = (char)(pid & 0xFF);
                } else {
                    buf[2] = (char)pid;
                }
            }
            if (pos_tl0)
                buf[pos_tl0] = (char)tl0;
        }
    }
    size = PyBytes_GET_SIZE(out_payload);
    /* -- transport-cc, the header (written where the copy is assembled) -- */
    if (twcc != Py_None) {
        int done = fanout_twcc_next(twcc, size + twcc_overhead, now, &twcc_seq);
        if (done < 0)
            goto changed_error;
        if (done == 0) {  /* a probe running, or not a plain TransportSequencer */
            PyObject *size_obj = PyLong_FromLongLong(size + twcc_overhead), *r;
            r = size_obj ? PyObject_CallMethodObjArgs(twcc, str_next, size_obj, now_obj, NULL)
                         : NULL;
            Py_XDECREF(size_obj);
            if (r == NULL || as_ll(r, &twcc_seq) < 0) {
                Py_XDECREF(r);
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_TypeError, "transport sequence is not an int");
                goto changed_error;
            }
            Py_DECREF(r);
            if (twcc_seq < 0 || twcc_seq > 0xFFFF) {  /* as transport_cc_element refuses it */
                PyErr_SetString(PyExc_ValueError, "transport sequence number past 16 bits");
                goto changed_error;
            }
        }
    }
    /* after any call out to Python above: the sink's buffer for this copy (arena or stack) */
    head_out = sink != NULL ? fanout_sink_buffer(sink) : head_buf;
    if (twcc != Py_None) {
        block_len = build_block(head_out + 12, PyBytes_AS_STRING(elements), elements_len,
                                (int)twcc_id, twcc_seq & 0xFFFF);
    } else {
        block_len = PyBytes_GET_SIZE(block);
        if (block_len > HEAD_MAX - 12) {
            PyErr_SetString(PyExc_ValueError, "extension block too long");
            goto changed_error;
        }
        memcpy(head_out + 12, PyBytes_AS_STRING(block), (size_t)block_len);
    }
    head_out[0] = block_len ? 0x90 : 0x80;
    head_out[1] = (unsigned char)(marker | pt);
    head_out[2] = (unsigned char)(out_seq >> 8);
    head_out[3] = (unsigned char)out_seq;
    head_out[4] = (unsigned char)(out_ts >> 24);
    head_out[5] = (unsigned char)(out_ts >> 16);
    head_out[6] = (unsigned char)(out_ts >> 8);
    head_out[7] = (unsigned char)out_ts;
    head_out[8] = (unsigned char)(ssrc >> 24);
    head_out[9] = (unsigned char)(ssrc >> 16);
    head_out[10] = (unsigned char)(ssrc >> 8);
    head_out[11] = (unsigned char)ssrc;
    if (sink == NULL) {
        head = PyBytes_FromStringAndSize((const char *)head_buf, 12 + block_len);
        if (head == NULL)
            goto changed_error;
    }
    /* -- RtpHistory.put, DatagramWriter.queue_rtp (or the sink), the counters -- */
    if (slots != NULL && history_put(history, slots, mask, out_seq, out_ts, marker, payload,
                                     out_payload) < 0)
        goto head_error;
    if (add_ll(writer, W_PACKETS, 1) < 0
            || add_ll(writer, W_BYTES, 12 + block_len + size + tag_len) < 0
            || add_ll(c, C_PACKETS, 1) < 0 || add_ll(c, C_OCTETS, size) < 0)
        goto head_error;
    if (sink != NULL) {
        /* counted as sent, as queue_rtp does: a copy the sink cannot send is reported with
         * the lengths Consumer.batch_failed uncounts */
        if (fanout_sink_add(sink, c, target, ctx, fd, (int)(12 + block_len),
                            PyBytes_AS_STRING(out_payload), size) < 0)
            goto head_error;
    } else {
        item = PyTuple_Pack(4, target, head, out_payload, c);
        if (item == NULL || PyList_Append(batch, item) < 0) {
            Py_XDECREF(item);
            goto head_error;
        }
        Py_DECREF(item);
        Py_DECREF(head);
    }
    Py_DECREF(out_payload);
    return 1;

head_error:
    Py_XDECREF(head);
changed_error:
    Py_XDECREF(out_payload);
    return -2;
}

/* forward(consumers, layer, seq, timestamp, marker, payload, vp8_ids, now, batch, blocks,
 *         packet, slow, errors) -> None
 *   blocks(packet, ext_key, now) -> (elements, block), asked once per run of equal ext_keys;
 *   slow gets the consumers Consumer.send must handle, errors (consumer, exception) pairs.
 * Each copy is queued in batch as (target, head, payload, consumer) for send(); forward_send
 * (sfu/_fanout_send.c) sends them itself instead. */
PyObject *fanout_forward(PyObject *self, PyObject *args) {
    return fanout_forward_all(args, NULL);
}

/* forward (sink NULL) or forward_send (the same arguments without batch: each copy goes to the
 * sink, sfu/_fanout_send.c). */
PyObject *fanout_forward_all(PyObject *args, fanout_sink *sink) {
    PyObject *consumers, *payload, *vp8_ids, *batch = NULL, *blocks, *packet, *slow, *errors;
    PyObject *last_key = NULL, *pair = NULL, *now_obj;
    long layer;
    long long in_seq, in_ts;
    int marker, parsed;
    double now;
    Py_ssize_t i;

    if (sink == NULL)
        parsed = PyArg_ParseTuple(args, "O!lLLiO!OdO!OOO!O!", &PyList_Type, &consumers, &layer,
                                  &in_seq, &in_ts, &marker, &PyBytes_Type, &payload, &vp8_ids,
                                  &now, &PyList_Type, &batch, &blocks, &packet, &PyList_Type,
                                  &slow, &PyList_Type, &errors);
    else
        parsed = PyArg_ParseTuple(args, "O!lLLiO!OdOOO!O!", &PyList_Type, &consumers, &layer,
                                  &in_seq, &in_ts, &marker, &PyBytes_Type, &payload, &vp8_ids,
                                  &now, &blocks, &packet, &PyList_Type, &slow, &PyList_Type,
                                  &errors);
    if (!parsed)
        return NULL;
    if (!forward_ready) {
        PyErr_SetString(PyExc_RuntimeError, "init_forward() did not succeed");
        return NULL;
    }
    if ((now_obj = PyFloat_FromDouble(now)) == NULL)
        return NULL;
    for (i = 0; i < PyList_GET_SIZE(consumers); i++) {
        PyObject *c = PyList_GET_ITEM(consumers, i), *key;
        int done = 0;
        Py_INCREF(c);
        if (Py_IS_TYPE(c, fwd_types[0]) && (key = SLOT(c, C_EXT_KEY)) != NULL) {
            int same = last_key != NULL && (last_key == key
                                             || PyObject_RichCompareBool(last_key, key, Py_EQ) == 1);
            if (PyErr_Occurred())
                PyErr_Clear();
            if (!same) {
                PyObject *made = PyObject_CallFunctionObjArgs(blocks, packet, key, now_obj, NULL);
                Py_XSETREF(pair, made);
                Py_INCREF(key);
                Py_XSETREF(last_key, key);
                if (pair == NULL || !PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2
                        || !PyBytes_CheckExact(PyTuple_GET_ITEM(pair, 0))
                        || !PyBytes_CheckExact(PyTuple_GET_ITEM(pair, 1))) {
                    Py_CLEAR(pair);
                    Py_CLEAR(last_key);
                    PyErr_Clear();  /* Consumer.send builds (and reports) it */
                }
            }
            if (pair != NULL)
                done = forward_one(c, layer, in_seq & 0xFFFF, in_ts & 0xFFFFFFFFLL,
                                   marker ? 0x80 : 0, payload, vp8_ids, now, now_obj, batch,
                                   sink, PyTuple_GET_ITEM(pair, 0), PyTuple_GET_ITEM(pair, 1));
        }
        if (done == 0 || done == -1) {
            PyErr_Clear();
            if (PyList_Append(slow, c) < 0)
                goto error;
        } else if (done == -2) {
            PyObject *type, *value, *tb, *entry;
            PyErr_Fetch(&type, &value, &tb);
            PyErr_NormalizeException(&type, &value, &tb);
            entry = PyTuple_Pack(2, c, value ? value : Py_None);
            Py_XDECREF(type);
            Py_XDECREF(value);
            Py_XDECREF(tb);
            if (entry == NULL || PyList_Append(errors, entry) < 0) {
                Py_XDECREF(entry);
                goto error;
            }
            Py_DECREF(entry);
        }
        Py_DECREF(c);
        continue;
    error:
        Py_DECREF(c);
        Py_XDECREF(pair);
        Py_XDECREF(last_key);
        Py_DECREF(now_obj);
        return NULL;
    }
    Py_XDECREF(pair);
    Py_XDECREF(last_key);
    Py_DECREF(now_obj);
    Py_RETURN_NONE;
}
