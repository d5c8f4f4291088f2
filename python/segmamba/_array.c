/* _segmamba's arrays (_segmamba.h): the _Array type that hands memory the
 * library allocated to Python through the buffer protocol, the buffers that
 * come in, and NIfTI volumes read into and written from them. */
#include "_segmamba.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- _Array: memory the library allocated, as a buffer ------------------ */

typedef struct {
    PyObject_HEAD void *data; /* malloc'd by the library; freed with free() */
    int ndim;
    Py_ssize_t shape[5];
    Py_ssize_t strides[5];
    Py_ssize_t itemsize;
    char format[2];      /* "f" or "B" */
    segmamba_volume vol; /* when the array is a volume read from a file: owns data */
    int is_volume;
} ArrayObject;

PyObject *smpy_array_new(void *data, char format, int ndim, const Py_ssize_t *shape)
{
    ArrayObject *a = PyObject_New(ArrayObject, &smpy_array_type);
    if (!a) {
        free(data);
        return NULL;
    }
    a->data = data;
    a->ndim = ndim;
    a->itemsize = format == 'f' ? 4 : 1;
    a->format[0] = format;
    a->format[1] = '\0';
    a->is_volume = 0;
    memset(&a->vol, 0, sizeof a->vol);
    Py_ssize_t stride = a->itemsize;
    for (int k = ndim - 1; k >= 0; k--) {
        a->shape[k] = shape[k];
        a->strides[k] = stride;
        stride *= shape[k];
    }
    return (PyObject *)a;
}

static void array_dealloc(ArrayObject *a)
{
    if (a->is_volume)
        segmamba_volume_free(&a->vol);
    else
        free(a->data);
    PyObject_Free(a);
}

static int array_getbuffer(ArrayObject *a, Py_buffer *view, int flags)
{
    (void)flags; /* C-contiguous and writable: every request can be met */
    view->buf = a->data;
    view->obj = (PyObject *)a;
    Py_INCREF(a);
    view->len = a->itemsize;
    for (int k = 0; k < a->ndim; k++) view->len *= a->shape[k];
    view->readonly = 0;
    view->itemsize = a->itemsize;
    view->format = a->format;
    view->ndim = a->ndim;
    view->shape = a->shape;
    view->strides = a->strides;
    view->suboffsets = NULL;
    view->internal = NULL;
    return 0;
}

static PyBufferProcs array_as_buffer = {(getbufferproc)array_getbuffer, NULL};

/* A volume's geometry as a dict: spacing (D, H, W) mm and the 4x4 affine. */
static PyObject *geometry_dict(const segmamba_geometry *g)
{
    PyObject *aff = PyList_New(4);
    if (!aff) return NULL;
    for (int r = 0; r < 4; r++) {
        PyObject *row = Py_BuildValue("[dddd]", g->affine[r][0], g->affine[r][1], g->affine[r][2],
                                      g->affine[r][3]);
        if (!row) {
            Py_DECREF(aff);
            return NULL;
        }
        PyList_SET_ITEM(aff, r, row);
    }
    return Py_BuildValue("{s:(ddd),s:N,s:(iii)}", "spacing", g->spacing[0], g->spacing[1],
                         g->spacing[2], "affine", aff, "shape", g->d, g->h, g->w);
}

static PyObject *array_geometry(ArrayObject *a, void *closure)
{
    (void)closure;
    if (!a->is_volume) Py_RETURN_NONE;
    return geometry_dict(&a->vol.geom);
}

static PyGetSetDef array_getset[] = {
    {"geometry", (getter)array_geometry, NULL,
     "the geometry of a volume read from a NIfTI file (spacing, affine, shape), else None", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

PyTypeObject smpy_array_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "segmamba._segmamba._Array",
    .tp_basicsize = sizeof(ArrayObject),
    .tp_dealloc = (destructor)array_dealloc,
    .tp_as_buffer = &array_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Memory the engine allocated, exposed through the buffer protocol.",
    .tp_getset = array_getset,
};

/* ---- buffers in -------------------------------------------------------- */

int smpy_get_buffer(PyObject *obj, Py_buffer *view, char format, int writable, const char *what)
{
    const int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) != 0) return -1;
    const char *f = view->format ? view->format : "B";
    if (*f == '<' || *f == '=' || *f == '@') f++;
    if (f[0] != format || f[1] != '\0' || view->itemsize != (format == 'f' ? 4 : 1)) {
        PyErr_Format(PyExc_TypeError, "%s: expected a C-contiguous %s buffer, got format '%s'",
                     what, format == 'f' ? "float32" : "uint8", view->format ? view->format : "B");
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

int smpy_path_list(PyObject *seq, const char **paths)
{
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n < 1 || n > SEGMAMBA_CARD_MAX_CHANNELS) {
        smpy_raise_status(SEGMAMBA_E_ARG, "paths: 1 to 16 files, one per channel");
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        paths[i] = PyUnicode_AsUTF8(PySequence_Fast_GET_ITEM(seq, i));
        if (!paths[i]) return -1;
    }
    return (int)n;
}

/* ---- NIfTI volumes ------------------------------------------------------ */

/* read_nifti(paths): an _Array holding the (C, D, H, W) float32 volume of
 * one file (3D, or 4D with channels) or of several 3D files, one channel
 * each, and the first file's geometry (segmamba_nifti_read_channels). */
PyObject *smpy_read_nifti(PyObject *mod, PyObject *args)
{
    (void)mod;
    PyObject *list;
    if (!PyArg_ParseTuple(args, "O", &list)) return NULL;
    PyObject *seq = PySequence_Fast(list, "paths: a list of file names");
    if (!seq) return NULL;
    const char *paths[SEGMAMBA_CARD_MAX_CHANNELS];
    const int n = smpy_path_list(seq, paths);
    if (n < 0) {
        Py_DECREF(seq);
        return NULL;
    }
    segmamba_volume v = {0};
    segmamba_status st;
    Py_BEGIN_ALLOW_THREADS st = segmamba_nifti_read_channels(paths, n, &v);
    Py_END_ALLOW_THREADS Py_DECREF(seq);
    if (st != SEGMAMBA_OK) return smpy_raise_last(st);
    const Py_ssize_t shape[4] = {v.c, v.d, v.h, v.w};
    ArrayObject *a = (ArrayObject *)smpy_array_new(NULL, 'f', 4, shape);
    if (!a) {
        segmamba_volume_free(&v);
        return NULL;
    }
    a->vol = v;
    a->data = v.data;
    a->is_volume = 1;
    return (PyObject *)a;
}

/* Geometry for a writer: like (an _Array read from a file, whose header is
 * kept) or spacing and affine (a header made from them). */
static int geometry_from(PyObject *like, PyObject *affine, segmamba_geometry *g, int d, int h,
                         int w)
{
    memset(g, 0, sizeof *g);
    if (like != Py_None) {
        if (!PyObject_TypeCheck(like, &smpy_array_type) || !((ArrayObject *)like)->is_volume) {
            PyErr_SetString(PyExc_TypeError, "like: a volume read by read_nifti");
            return -1;
        }
        *g = ((ArrayObject *)like)->vol.geom; /* borrowed header: not freed here */
    } else {
        if (!PyArg_ParseTuple(affine, "(dddd)(dddd)(dddd)(dddd)", &g->affine[0][0],
                              &g->affine[0][1], &g->affine[0][2], &g->affine[0][3],
                              &g->affine[1][0], &g->affine[1][1], &g->affine[1][2],
                              &g->affine[1][3], &g->affine[2][0], &g->affine[2][1],
                              &g->affine[2][2], &g->affine[2][3], &g->affine[3][0],
                              &g->affine[3][1], &g->affine[3][2], &g->affine[3][3]))
            return -1;
        for (int a = 0; a < 3; a++) { /* the lengths of the affine's columns k, j, i */
            double s = 0.0;
            for (int r = 0; r < 3; r++) s += g->affine[r][2 - a] * g->affine[r][2 - a];
            g->spacing[a] = sqrt(s);
        }
        g->d = d, g->h = h, g->w = w;
    }
    if (g->d != d || g->h != h || g->w != w) {
        char msg[256];
        snprintf(msg, sizeof msg,
                 "the array's grid %dx%dx%d (D, H, W) is not the geometry's %dx%dx%d", d, h, w,
                 g->d, g->h, g->w);
        smpy_raise_status(SEGMAMBA_E_SHAPE, msg);
        return -1;
    }
    return 0;
}

/* write_nifti(path, data, like, affine): data a C-contiguous uint8 or
 * float32 (C, D, H, W) buffer. */
PyObject *smpy_write_nifti(PyObject *mod, PyObject *args)
{
    (void)mod;
    const char *path;
    PyObject *data, *like, *affine;
    int is_float;
    if (!PyArg_ParseTuple(args, "sOpOO", &path, &data, &is_float, &like, &affine)) return NULL;
    Py_buffer b;
    if (smpy_get_buffer(data, &b, is_float ? 'f' : 'B', 0, "array") != 0) return NULL;
    if (b.ndim != 4) {
        PyBuffer_Release(&b);
        return smpy_raise_status(SEGMAMBA_E_SHAPE, "array: expected (D, H, W) or (C, D, H, W)");
    }
    segmamba_geometry g;
    if (geometry_from(like, affine, &g, (int)b.shape[1], (int)b.shape[2], (int)b.shape[3]) != 0) {
        PyBuffer_Release(&b);
        return NULL;
    }
    const int c = (int)b.shape[0];
    segmamba_status st;
    Py_BEGIN_ALLOW_THREADS st = is_float ? segmamba_nifti_write_f32(path, &g, b.buf, c)
                                         : segmamba_nifti_write_u8(path, &g, b.buf, c);
    Py_END_ALLOW_THREADS PyBuffer_Release(&b);
    if (st != SEGMAMBA_OK) return smpy_raise_last(st);
    Py_RETURN_NONE;
}
