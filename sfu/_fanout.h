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

#endif
