/* Shared by the sources of sfu._fanout (sfu/_fanout.c, sfu/_fanout_forward.c). */
#ifndef DIEMCAU_FANOUT_H
#define DIEMCAU_FANOUT_H

#include <Python.h>

PyObject *fanout_init_forward(PyObject *self, PyObject *args);
PyObject *fanout_forward(PyObject *self, PyObject *args);
PyObject *fanout_receive(PyObject *self, PyObject *args);
PyObject *fanout_init_view(PyObject *self, PyObject *type);
PyObject *fanout_parse_view(PyObject *self, PyObject *data);
PyObject *fanout_receive_view(PyObject *self, PyObject *args);

#endif
