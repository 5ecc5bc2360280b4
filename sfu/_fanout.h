/* Shared by the sources of sfu._fanout (sfu/_fanout.c, sfu/_fanout_forward.c). */
#ifndef DIEMCAU_FANOUT_H
#define DIEMCAU_FANOUT_H

#include <Python.h>

PyObject *fanout_init_forward(PyObject *self, PyObject *args);
PyObject *fanout_forward(PyObject *self, PyObject *args);

#endif
