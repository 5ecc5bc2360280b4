/* sfu._fanout, part 4: a whole fan-out's sends in one system call (io_uring).
 *
 * Why: each subscriber has its own ICE socket, so sendmmsg(2) cannot batch a fan-out, and one
 * sendto(2) per copy costs more than the send itself on loopback: each call wakes a receiver
 * that preempts us on return (2.6-2.8 preemptions per 16-copy fan-out, measured), and every
 * copy pays a system call with cold caches at ~170 packets a second. One io_uring_enter(2) with
 * a SENDMSG entry per copy does the same sends inline, in our context (no SQPOLL thread, no
 * worker: MSG_DONTWAIT makes a full socket buffer an immediate -EAGAIN completion instead of a
 * deferred retry), and returns once: measured paced at 5 ms, 16 sockets of 1200 bytes,
 * 8.4-10.0 -> 6.4-7.0 us of CPU per copy (64 sockets: 6.7 -> 4.0), 0.5 preemptions per fan-out.
 *
 * No liburing: the three system calls and the ring layout are the stable kernel ABI
 * (<linux/io_uring.h>), so nothing beyond the kernel headers is needed to build this file.
 * Optional at run time: when io_uring_setup fails (an old kernel, a seccomp profile that
 * forbids it, io_uring_disabled) or DIEMCAU_NO_URING=1, the caller sends with sendto(2) as
 * before; ``uring()`` says which path runs and switches it (tests run both).
 *
 * Safety: the buffers and msghdrs of one flush live in a per-process arena that is reused only
 * after every completion of the previous flush is reaped; a flush whose completions do not all
 * arrive (which MSG_DONTWAIT should make impossible) retires the ring for good, arena included,
 * and the caller falls back to sendto. A child after fork(2) sets up its own ring. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "_fanout.h"

#ifdef __NR_io_uring_setup
#include <linux/io_uring.h>
#define HAVE_URING 1
#endif

enum { RING_NOT_TRIED, RING_ON, RING_OFF, RING_UNAVAILABLE, RING_RETIRED };
static int ring_state = RING_NOT_TRIED;
static int ring_errno = 0;      /* why it is unavailable */
static pid_t ring_pid = 0;      /* the process that set it up */
static pid_t own_pid = 0;       /* this process: getpid(2) is a system call, not to be made
                                 * per batch; a child's is set by the fork handler below */

static void after_fork_in_child(void) { own_pid = getpid(); }

static pid_t current_pid(void) {
    if (own_pid == 0) {
        pthread_atfork(NULL, NULL, after_fork_in_child);
        own_pid = getpid();
    }
    return own_pid;
}

#ifdef HAVE_URING
static int ring_fd = -1;
static unsigned *sq_tail_p, *sq_mask_p, *sq_array, *cq_head_p, *cq_tail_p, *cq_mask_p;
static struct io_uring_sqe *sqes;
static struct io_uring_cqe *cqes;
static void *sq_map, *cq_map;
static size_t sq_map_len, cq_map_len, sqes_len;
static struct msghdr messages[URING_CHUNK];
static struct iovec vectors[URING_CHUNK];
static unsigned queued = 0;

static void ring_unmap(void) {
    if (sq_map != NULL && sq_map != MAP_FAILED)
        munmap(sq_map, sq_map_len);
    if (cq_map != NULL && cq_map != MAP_FAILED)
        munmap(cq_map, cq_map_len);
    if (sqes != NULL && (void *)sqes != MAP_FAILED)
        munmap(sqes, sqes_len);
    if (ring_fd >= 0)
        close(ring_fd);
    sq_map = cq_map = NULL;
    sqes = NULL;
    ring_fd = -1;
}

static int ring_setup(void) {
    struct io_uring_params params;
    memset(&params, 0, sizeof params);
    /* SUBMIT_ALL (5.18): one entry refused at submission does not stop the others. */
    params.flags = IORING_SETUP_SUBMIT_ALL;
    ring_fd = (int)syscall(__NR_io_uring_setup, URING_CHUNK, &params);
    if (ring_fd < 0) {
        ring_errno = errno;
        return -1;
    }
    if (params.sq_entries < URING_CHUNK || params.cq_entries < URING_CHUNK) {
        ring_errno = EINVAL;
        ring_unmap();
        return -1;
    }
    sq_map_len = params.sq_off.array + params.sq_entries * sizeof(unsigned);
    cq_map_len = params.cq_off.cqes + params.cq_entries * sizeof(struct io_uring_cqe);
    sqes_len = params.sq_entries * sizeof(struct io_uring_sqe);
    sq_map = mmap(NULL, sq_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring_fd,
                  IORING_OFF_SQ_RING);
    cq_map = mmap(NULL, cq_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring_fd,
                  IORING_OFF_CQ_RING);
    sqes = mmap(NULL, sqes_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring_fd,
                IORING_OFF_SQES);
    if (sq_map == MAP_FAILED || cq_map == MAP_FAILED || (void *)sqes == MAP_FAILED) {
        ring_errno = errno;
        ring_unmap();
        return -1;
    }
    sq_tail_p = (unsigned *)((char *)sq_map + params.sq_off.tail);
    sq_mask_p = (unsigned *)((char *)sq_map + params.sq_off.ring_mask);
    sq_array = (unsigned *)((char *)sq_map + params.sq_off.array);
    cq_head_p = (unsigned *)((char *)cq_map + params.cq_off.head);
    cq_tail_p = (unsigned *)((char *)cq_map + params.cq_off.tail);
    cq_mask_p = (unsigned *)((char *)cq_map + params.cq_off.ring_mask);
    cqes = (struct io_uring_cqe *)((char *)cq_map + params.cq_off.cqes);
    return 0;
}
#endif

/* 1 when uring_queue/uring_flush may be used now (sets the ring up on first use). */
int fanout_uring_ready(void) {
#ifdef HAVE_URING
    pid_t pid = current_pid();
    if (ring_state == RING_ON && ring_pid == pid)
        return 1;
    if (ring_state == RING_ON || (ring_state == RING_RETIRED && ring_pid != pid)) {
        /* forked: the parent's ring is not ours to submit to */
        ring_unmap();
        ring_state = RING_NOT_TRIED;
    }
    if (ring_state != RING_NOT_TRIED)
        return 0;
    {
        const char *off = getenv("DIEMCAU_NO_URING");
        if (off != NULL && off[0] != '\0' && strcmp(off, "0") != 0) {
            ring_state = RING_OFF;
            return 0;
        }
    }
    ring_pid = pid;
    if (ring_setup() < 0) {
        ring_state = RING_UNAVAILABLE;
        return 0;
    }
    queued = 0;
    ring_state = RING_ON;
    return 1;
#else
    ring_state = RING_UNAVAILABLE;
    ring_errno = ENOSYS;
    return 0;
#endif
}

/* Queue one send (at most URING_CHUNK between flushes; the buffer and address must stay valid
 * until the flush returns). */
void fanout_uring_queue(int fd, const void *address, socklen_t address_len, void *buffer,
                        size_t length) {
#ifdef HAVE_URING
    unsigned tail = *sq_tail_p + queued;
    unsigned index = tail & *sq_mask_p;
    struct io_uring_sqe *entry = &sqes[index];
    struct msghdr *message = &messages[queued];

    vectors[queued].iov_base = buffer;
    vectors[queued].iov_len = length;
    memset(message, 0, sizeof *message);
    message->msg_name = (void *)address;
    message->msg_namelen = address_len;
    message->msg_iov = &vectors[queued];
    message->msg_iovlen = 1;
    memset(entry, 0, sizeof *entry);
    entry->opcode = IORING_OP_SENDMSG;
    entry->fd = fd;
    entry->addr = (uint64_t)(uintptr_t)message;
    entry->len = 1;
    entry->msg_flags = MSG_DONTWAIT;
    entry->user_data = queued;
    sq_array[index] = index;
    queued++;
#else
    (void)fd; (void)address; (void)address_len; (void)buffer; (void)length;
#endif
}

/* Submit what was queued, in one system call, and reap the completions into results[i] (bytes
 * sent or -errno, per queued send in order). The caller fills results with URING_NOT_DONE
 * first: a send left so (not submitted, or its completion not posted in time, neither of which
 * MSG_DONTWAIT should allow) is the caller's to send itself, and the ring is then retired. */
void fanout_uring_flush(long *results) {
#ifdef HAVE_URING
    unsigned count = queued, reaped = 0, attempts;
    int submitted;

    queued = 0;
    if (count == 0)
        return;
    __atomic_store_n(sq_tail_p, *sq_tail_p + count, __ATOMIC_RELEASE);
    /* submit only: the sends run inline here; their completions are then already posted */
    submitted = (int)syscall(__NR_io_uring_enter, ring_fd, count, 0, 0, NULL, 0);
    if (submitted < (int)count) {
        /* entries left in the ring would go out with the next submission: never submit again */
        ring_errno = submitted < 0 ? errno : EIO;
        ring_state = RING_RETIRED;
        if (submitted <= 0)
            return;
        count = (unsigned)submitted;
    }
    for (attempts = 0; attempts < 4; attempts++) {
        unsigned head = *cq_head_p;
        unsigned tail = __atomic_load_n(cq_tail_p, __ATOMIC_ACQUIRE);
        while (head != tail) {
            struct io_uring_cqe *done = &cqes[head & *cq_mask_p];
            if (done->user_data < URING_CHUNK)
                results[done->user_data] = done->res;
            head++;
            reaped++;
        }
        __atomic_store_n(cq_head_p, head, __ATOMIC_RELEASE);
        if (reaped >= count)
            return;
        {   /* a completion not posted yet: wait for it, 20 ms at most each time */
            struct __kernel_timespec timeout = {0, 20 * 1000 * 1000};
            struct io_uring_getevents_arg wait;
            memset(&wait, 0, sizeof wait);
            wait.ts = (uint64_t)(uintptr_t)&timeout;
            syscall(__NR_io_uring_enter, ring_fd, 0, count - reaped,
                    IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, &wait, sizeof wait);
        }
    }
    /* Still missing: the kernel may yet read those buffers, so neither they nor the ring are
     * used again (the caller sends the missing copies with sendto: a duplicate at worst). */
    ring_errno = ETIMEDOUT;
    ring_state = RING_RETIRED;
#else
    (void)results;
#endif
}

/* uring(enable=None) -> state: "on", "off" (switched off here or by DIEMCAU_NO_URING=1),
 * "unavailable: <why>" or "retired: <why>" (set up on the first call). True/False switch it
 * for new batches
 * (True retries a ring that was switched off or is not set up yet). */
PyObject *fanout_uring(PyObject *self, PyObject *args) {
    PyObject *enable = Py_None;
    if (!PyArg_ParseTuple(args, "|O", &enable))
        return NULL;
    if (enable == Py_None && ring_state == RING_NOT_TRIED)
        fanout_uring_ready();  /* say what the next batch would use */
    if (enable != Py_None) {
        int flag = PyObject_IsTrue(enable);
        if (flag < 0)
            return NULL;
        if (!flag && (ring_state == RING_ON || ring_state == RING_NOT_TRIED))
            ring_state = RING_OFF;
        else if (flag && ring_state == RING_OFF) {
#ifdef HAVE_URING
            ring_state = ring_fd >= 0 && ring_pid == current_pid() ? RING_ON : RING_NOT_TRIED;
#endif
        }
        if (flag && ring_state == RING_NOT_TRIED) {
            /* set up now, whatever DIEMCAU_NO_URING says: the caller asked for it */
#ifdef HAVE_URING
            ring_unmap();  /* a parent's ring, inherited across fork while switched off */
            ring_pid = current_pid();
            if (ring_setup() < 0)
                ring_state = RING_UNAVAILABLE;
            else {
                queued = 0;
                ring_state = RING_ON;
            }
#else
            ring_state = RING_UNAVAILABLE;
            ring_errno = ENOSYS;
#endif
        }
    }
    switch (ring_state) {
    case RING_ON:
        return PyUnicode_FromString("on");
    case RING_OFF:
        return PyUnicode_FromString("off");
    case RING_UNAVAILABLE:
        return PyUnicode_FromFormat("unavailable: %s", strerror(ring_errno));
    case RING_RETIRED:
        return PyUnicode_FromFormat("retired: %s", strerror(ring_errno));
    default:
        return PyUnicode_FromString("not tried");
    }
}
