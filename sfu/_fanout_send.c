/* sfu._fanout, part 6: ``forward_send``, a fan-out's forward and send in one call.
 *
 * Why: with ``forward`` + ``send`` every steady-state copy cost a header bytes object, a
 * 4-tuple appended to a list, and a second pass that parsed the tuple again to copy header and
 * payload into the send arena. Here forward_one (sfu/_fanout_forward.c) writes the header
 * straight into the buffer the copy is sent from (an io_uring arena slot, sfu/_fanout_uring.c,
 * or a stack buffer for sendto), the payload is copied after it, protected in place and queued;
 * the queue is flushed once per URING_CHUNK copies and once at the end of the fan-out. The
 * copies are the same bytes as ``send`` puts on the wire, and a copy that cannot go (too long
 * to protect, a failed send) comes back as (consumer, reason, head length, payload length) for
 * Consumer.batch_failed, as ``send``'s (index, reason) did. Consumers forward_one leaves to
 * Consumer.send still take the Python batch and ``send`` after this call (wire order per
 * packet: these copies, then those; as before, where both were one batch in that order).
 *
 * The ring and arena are shared with ``send``: while a fused fan-out has copies queued (Python
 * callbacks run inside it: the extension blocks, a stamper's next), a nested ``send`` or
 * ``forward_send`` sends with sendto instead of touching them. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <limits.h>
#include <string.h>

#include "_fanout.h"

#define PROTECT_FAILED (URING_NOT_DONE - 1)  /* a copy's result: not queued, reason 1 */

static int depth = 0;   /* fused fan-outs running (nested through a Python callback) */
static int dry = 0;     /* dry_run(True): benchmarks measure the path without the I/O */

int fanout_sink_active(void) { return depth > 0; }

/* A writer's native target (srtp_t address, fd, sockaddr bytes) read without allocating:
 * 1 usable, 0 not (Consumer.send takes the copy). */
int fanout_sink_target(PyObject *target, void **ctx, int *fd) {
    long value;
    if (!PyTuple_CheckExact(target) || PyTuple_GET_SIZE(target) != 3
            || !PyBytes_CheckExact(PyTuple_GET_ITEM(target, 2)) || !fanout_protect_ready())
        return 0;
    *ctx = PyLong_AsVoidPtr(PyTuple_GET_ITEM(target, 0));
    if (*ctx == NULL) {
        PyErr_Clear();
        return 0;
    }
    value = PyLong_AsLong(PyTuple_GET_ITEM(target, 1));
    if (value < 0 || value > INT_MAX) {
        PyErr_Clear();
        return 0;
    }
    *fd = (int)value;
    return 1;
}

/* Where forward_one writes the next copy's header (the payload follows it). */
unsigned char *fanout_sink_buffer(fanout_sink *sink) {
    if (sink->ring)
        return fanout_arena()[sink->queued];
    if (sink->dry && fanout_arena() != NULL)
        return fanout_arena()[sink->dry_slot];
    return sink->stack;
}

static int add_failure(fanout_sink *sink, PyObject *consumer, int reason, int head_len,
                       Py_ssize_t payload_len) {
    PyObject *entry;
    if (sink->failures == NULL && (sink->failures = PyList_New(0)) == NULL)
        return -1;
    entry = Py_BuildValue("(Oiin)", consumer, reason, head_len, payload_len);
    if (entry == NULL || PyList_Append(sink->failures, entry) < 0) {
        Py_XDECREF(entry);
        return -1;
    }
    Py_DECREF(entry);
    return 0;
}

/* Protect the copies held in the arena and submit them (one io_uring_enter), send what the
 * ring did not take with sendto, report the failed ones. -1 on a memory error (exception set;
 * every copy was handled). Protecting here rather than as each copy is made keeps libsrtp's
 * loop apart from forward_one's (as forward + send did): each runs on warm caches. */
static int sink_flush(fanout_sink *sink) {
    int count = sink->queued, status = 0, j;
    if (count == 0)
        return 0;
    sink->queued = 0;
    for (j = 0; j < count; j++) {
        PyObject *address = PyTuple_GET_ITEM(sink->targets[j], 2);
        unsigned char *buffer = fanout_arena()[j];
        if (fanout_protect(sink->ctxs[j], buffer, &sink->lengths[j]) != 0
                || sink->lengths[j] > MAX_BUFFER) {
            sink->results[j] = PROTECT_FAILED;  /* reason 1 below; not queued */
            continue;
        }
        fanout_uring_queue(sink->fds[j], PyBytes_AS_STRING(address),
                           (socklen_t)PyBytes_GET_SIZE(address), buffer,
                           (size_t)sink->lengths[j]);
        sink->slots[sink->queued++] = j;
    }
    {   /* results per queued send, in order: spread back to the copies they belong to */
        long sent[URING_CHUNK];
        int k;
        for (k = 0; k < sink->queued; k++)
            sent[k] = URING_NOT_DONE;
        fanout_uring_flush(sent);
        for (k = 0; k < sink->queued; k++)
            sink->results[sink->slots[k]] = sent[k];
        sink->queued = 0;
    }
    for (j = 0; j < count; j++) {
        int reason = 0;
        if (sink->results[j] == PROTECT_FAILED) {
            reason = 1;
        } else if (sink->results[j] == URING_NOT_DONE) {  /* the ring could not take it */
            PyObject *address = PyTuple_GET_ITEM(sink->targets[j], 2);
            reason = fanout_sendto(sink->fds[j], fanout_arena()[j], sink->lengths[j],
                                   PyBytes_AS_STRING(address),
                                   (socklen_t)PyBytes_GET_SIZE(address));
        } else if (sink->results[j] < 0) {
            reason = 2;
        }
        if (reason && status == 0 && add_failure(sink, sink->consumers[j], reason,
                                                 sink->head_lens[j], sink->payload_lens[j]) < 0)
            status = -1;
        Py_DECREF(sink->consumers[j]);
        Py_DECREF(sink->targets[j]);
    }
    sink->ring = sink->ring && fanout_uring_ready();  /* retired: sendto from now on */
    return status;
}

/* One copy whose header forward_one wrote at fanout_sink_buffer(): payload after it, protect,
 * send or queue. 0 done (sent, queued or reported), -1 memory error (exception set). */
int fanout_sink_add(fanout_sink *sink, PyObject *consumer, PyObject *target, void *ctx, int fd,
                    int head_len, const char *payload, Py_ssize_t payload_len) {
    unsigned char *buffer = fanout_sink_buffer(sink);
    PyObject *address = PyTuple_GET_ITEM(target, 2);
    int length, j;

    if (head_len + payload_len > MAX_BUFFER - MAX_TRAILER)
        return add_failure(sink, consumer, 1, head_len, payload_len);
    memcpy(buffer + head_len, payload, (size_t)payload_len);
    length = head_len + (int)payload_len;
    if (sink->dry) {
        sink->dry_slot = (sink->dry_slot + 1) % URING_CHUNK;
        return 0;
    }
    if (!sink->ring) {
        if (fanout_protect(ctx, buffer, &length) != 0 || length > MAX_BUFFER)
            return add_failure(sink, consumer, 1, head_len, payload_len);
        if (fanout_sendto(fd, buffer, length, PyBytes_AS_STRING(address),
                          (socklen_t)PyBytes_GET_SIZE(address)) != 0)
            return add_failure(sink, consumer, 2, head_len, payload_len);
        return 0;
    }
    j = sink->queued;  /* protected and queued on the ring at the flush */
    sink->ctxs[j] = ctx;
    Py_INCREF(consumer);
    Py_INCREF(target);
    sink->consumers[j] = consumer;
    sink->targets[j] = target;
    sink->fds[j] = fd;
    sink->lengths[j] = length;
    sink->head_lens[j] = head_len;
    sink->payload_lens[j] = (int)payload_len;
    sink->queued = j + 1;
    return sink->queued == URING_CHUNK ? sink_flush(sink) : 0;
}

/* forward_send(consumers, layer, seq, timestamp, marker, payload, vp8_ids, now, blocks, packet,
 *              slow, errors) -> None | [(consumer, reason, head length, payload length)]
 * forward() without its batch: every copy it makes is protected and sent here (reasons as
 * send()'s: 1 too long or protect failed, 2 send failed; the copy was counted as sent). */
PyObject *fanout_forward_send(PyObject *self, PyObject *args) {
    fanout_sink sink;
    PyObject *consumers, *done;
    int flushed;

    consumers = PyTuple_GET_SIZE(args) > 0 ? PyTuple_GET_ITEM(args, 0) : NULL;
    sink.dry = dry;
    sink.queued = sink.dry_slot = 0;
    sink.failures = NULL;
    /* one copy: one sendto, as send() does for a batch of one */
    sink.ring = depth == 0 && !dry && consumers != NULL && PyList_Check(consumers)
        && PyList_GET_SIZE(consumers) > 1 && fanout_uring_ready() && fanout_arena() != NULL;
    depth++;
    done = fanout_forward_all(args, &sink);
    flushed = sink_flush(&sink);  /* whatever happened, what was queued goes out */
    depth--;
    if (done == NULL || flushed < 0) {
        Py_XDECREF(done);
        Py_XDECREF(sink.failures);
        return NULL;
    }
    Py_DECREF(done);
    if (sink.failures == NULL)
        Py_RETURN_NONE;
    return sink.failures;
}

/* dry_run(flag=None) -> bool: benchmarks only (bench/twcc_forward.py --no-io): forward_send
 * writes each copy into the arena but neither protects nor sends it. */
PyObject *fanout_dry_run(PyObject *self, PyObject *args) {
    PyObject *flag = Py_None;
    if (!PyArg_ParseTuple(args, "|O", &flag))
        return NULL;
    if (flag != Py_None) {
        int value = PyObject_IsTrue(flag);
        if (value < 0)
            return NULL;
        dry = value;
    }
    return PyBool_FromLong(dry);
}
