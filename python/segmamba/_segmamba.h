/* What the files of the _segmamba extension share; private to them:
 * _segmamba.c (errors, the module's functions and its set-up), _array.c
 * (arrays in and out, NIfTI volumes) and _model.c (the _Model type). */
#ifndef SEGMAMBA_PY_H
#define SEGMAMBA_PY_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "segmamba.h"
#include "segmamba_pipeline.h"

/* ---- _segmamba.c ---- */

/* Raises segmamba.Error for status st with the library's message; returns NULL. */
PyObject *smpy_raise_status(segmamba_status st, const char *message);

/* smpy_raise_status with segmamba_get_last_error(). */
PyObject *smpy_raise_last(segmamba_status st);

/* dict[key] = value, the reference to value stolen; -1 when value is NULL
 * or the insertion fails. */
int smpy_put(PyObject *dict, const char *key, PyObject *value);

/* ---- _array.c ---- */

extern PyTypeObject smpy_array_type; /* _Array */

/* An _Array taking ownership of data (freed even when this fails). */
PyObject *smpy_array_new(void *data, char format, int ndim, const Py_ssize_t *shape);

/* A C-contiguous buffer of the given struct format ("f": float32, "B":
 * uint8); the caller converts anything else first (segmamba/__init__.py). */
int smpy_get_buffer(PyObject *obj, Py_buffer *view, char format, int writable, const char *what);

/* Up to SEGMAMBA_CARD_MAX_CHANNELS file names from a sequence of str; the
 * pointers live as long as seq. Returns the count, or -1 with an exception. */
int smpy_path_list(PyObject *seq, const char **paths);

/* The module functions read_nifti and write_nifti. */
PyObject *smpy_read_nifti(PyObject *mod, PyObject *args);
PyObject *smpy_write_nifti(PyObject *mod, PyObject *args);

/* ---- _model.c ---- */

extern PyTypeObject smpy_model_type; /* _Model */

#endif
