/* _segmamba: the CPython binding of libsegmamba (segmamba.h and
 * segmamba_pipeline.h, nothing else). Arrays cross it through the buffer
 * protocol, so NumPy is not needed to build it: inputs are read where they
 * lie (C-contiguous float32), outputs are either the caller's buffers
 * (forward) or the library's own allocations handed over to an _Array
 * object that frees them (predict, read_nifti). The GIL is released around
 * every call that runs the network. segmamba/__init__.py is the public face;
 * everything here is called through it. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "segmamba.h"
#include "segmamba_pipeline.h"

static PyObject *sm_error; /* segmamba.Error */

/* Raises segmamba.Error for status st with the library's message; returns NULL. */
static PyObject *raise_status(segmamba_status st, const char *message)
{
    PyObject *exc = PyObject_CallFunction(sm_error, "s", message);
    if (!exc) return NULL;
    PyObject *name = PyUnicode_FromString(segmamba_get_status_name(st));
    PyObject *code = PyLong_FromLong((long)st);
    if (name && code && PyObject_SetAttrString(exc, "status", name) == 0 &&
        PyObject_SetAttrString(exc, "code", code) == 0)
        PyErr_SetObject(sm_error, exc);
    Py_XDECREF(name);
    Py_XDECREF(code);
    Py_DECREF(exc);
    return NULL;
}

static PyObject *raise_last(segmamba_status st) { return raise_status(st, segmamba_get_last_error()); }

/* ---- _Array: memory the library allocated, as a buffer ------------------ */

typedef struct {
    PyObject_HEAD
    void *data;        /* malloc'd by the library; freed with free() */
    int ndim;
    Py_ssize_t shape[5];
    Py_ssize_t strides[5];
    Py_ssize_t itemsize;
    char format[2];    /* "f" or "B" */
    segmamba_volume vol; /* when the array is a volume read from a file: owns data */
    int is_volume;
} ArrayObject;

static PyTypeObject ArrayType;

/* An _Array taking ownership of data (freed even when this fails). */
static PyObject *array_new(void *data, char format, int ndim, const Py_ssize_t *shape)
{
    ArrayObject *a = PyObject_New(ArrayObject, &ArrayType);
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
     "the geometry of a volume read from a NIfTI file (spacing, affine, shape), else None",
     NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject ArrayType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "segmamba._segmamba._Array",
    .tp_basicsize = sizeof(ArrayObject),
    .tp_dealloc = (destructor)array_dealloc,
    .tp_as_buffer = &array_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Memory the engine allocated, exposed through the buffer protocol.",
    .tp_getset = array_getset,
};

/* ---- buffers in -------------------------------------------------------- */

/* A C-contiguous buffer of the given struct format ("f": float32, "B":
 * uint8); the caller converts anything else first (segmamba/__init__.py). */
static int get_buffer(PyObject *obj, Py_buffer *view, char format, int writable, const char *what)
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

/* Up to SEGMAMBA_CARD_MAX_CHANNELS file names from a sequence of str; the
 * pointers live as long as seq. Returns the count, or -1 with an exception. */
static int path_list(PyObject *seq, const char **paths)
{
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n < 1 || n > SEGMAMBA_CARD_MAX_CHANNELS) {
        raise_status(SEGMAMBA_E_ARG, "paths: 1 to 16 files, one per channel");
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        paths[i] = PyUnicode_AsUTF8(PySequence_Fast_GET_ITEM(seq, i));
        if (!paths[i]) return -1;
    }
    return (int)n;
}

/* ---- _Model ------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    segmamba_model *m;
    segmamba_card card;
    segmamba_config cfg;
    int generic_card;   /* 1: the checkpoint had no card; the generic one is used */
    int busy;           /* calls under way with the GIL released (close waits for none) */
    int threads;        /* applied before each call; 0: leave the process setting */
} ModelObject;

static PyTypeObject ModelType;

static int model_usable(ModelObject *self)
{
    if (self->m) return 1;
    raise_status(SEGMAMBA_E_ARG, "the model is closed");
    return 0;
}

/* _Model(path, conv, winograd_tile, nslices or None, fue (0 card, 1 on, 2
 * off), bf16, tf32, backend (0 cpu, 1 cuda), card_path or None, card_json
 * or None, threads): opens the model as `segmamba predict` does
 * (cli_open_model): the card first, its nslices and FUE as defaults. */
static int model_init(ModelObject *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"path", "conv", "winograd_tile", "nslices", "fue", "bf16", "tf32",
                            "backend", "card_path", "card_json", "threads", NULL};
    const char *path, *card_path = NULL, *card_json = NULL;
    Py_ssize_t card_json_len = 0;
    int conv = 0, tile = 0, fue = 0, bf16 = 0, tf32 = 0, backend = 0, threads = 0;
    PyObject *nslices = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|iiOiiiizz#i", names, &path, &conv, &tile,
                                     &nslices, &fue, &bf16, &tf32, &backend, &card_path,
                                     &card_json, &card_json_len, &threads))
        return -1;
    if (self->m) {
        PyErr_SetString(PyExc_RuntimeError, "_Model.__init__ called twice");
        return -1;
    }
    segmamba_options o = {.conv = (segmamba_conv_backend)conv, .winograd_tile = tile, .fue = fue,
                          .bf16 = bf16, .tf32 = tf32, .backend = (segmamba_backend)backend};
    if (nslices != Py_None &&
        !PyArg_ParseTuple(nslices, "iiii", &o.nslices[0], &o.nslices[1], &o.nslices[2],
                          &o.nslices[3]))
        return -1;
    self->threads = threads;
    segmamba_status st;
    segmamba_model *m = NULL;
    int generic = 0;
    Py_BEGIN_ALLOW_THREADS
    if (threads > 0) segmamba_set_threads(threads);
    if (card_json) {
        st = segmamba_card_parse(card_json, (size_t)card_json_len, "the card given", &self->card);
        if (st == SEGMAMBA_OK) st = segmamba_open_for_card(path, &self->card, &o, &m);
    } else {
        st = segmamba_open_with_card(path, card_path, &o, &m, &self->card, &generic);
    }
    Py_END_ALLOW_THREADS
    if (st != SEGMAMBA_OK) {
        raise_last(st);
        return -1;
    }
    self->m = m;
    self->generic_card = generic;
    segmamba_get_config(m, &self->cfg);
    return 0;
}

static void model_dealloc(ModelObject *self)
{
    segmamba_close(self->m);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *model_close(ModelObject *self, PyObject *unused)
{
    (void)unused;
    if (self->busy) return raise_status(SEGMAMBA_E_ARG, "the model is in use by another thread");
    segmamba_model *m = self->m;
    self->m = NULL;
    Py_BEGIN_ALLOW_THREADS
    segmamba_close(m);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *ints4(const int *v) { return Py_BuildValue("(iiii)", v[0], v[1], v[2], v[3]); }

static PyObject *model_config(ModelObject *self, PyObject *unused)
{
    (void)unused;
    if (!model_usable(self)) return NULL;
    segmamba_get_config(self->m, &self->cfg);
    const segmamba_config *c = &self->cfg;
    PyObject *ignored = PyList_New(0);
    for (int i = 0; ignored && i < segmamba_get_ignored_count(self->m); i++) {
        PyObject *s = PyUnicode_FromString(segmamba_get_ignored_name(self->m, i));
        if (!s || PyList_Append(ignored, s) != 0) Py_CLEAR(ignored);
        Py_XDECREF(s);
    }
    if (!ignored) return NULL;
    const char *family, *mamba_type;
    segmamba_get_config_names(c, &family, &mamba_type);
    return Py_BuildValue(
        "{s:s,s:s,s:i,s:i,s:N,s:N,s:i,s:i,s:i,s:i,s:N,s:N,s:O,s:L,s:s,s:s,s:O,s:L,s:N}",
        "family", family, "mamba_type", mamba_type, "in_chans",
        c->in_chans, "out_chans", c->out_chans, "depths", ints4(c->depths), "feat_size",
        ints4(c->feat), "hidden_size", c->hidden, "d_state", c->d_state, "d_conv", c->d_conv,
        "expand", c->expand, "dt_rank", ints4(c->dt_rank), "nslices", ints4(c->nslices), "fue",
        c->fue ? Py_True : Py_False, "parameters", (long long)c->n_params, "backend",
        c->backend == SEGMAMBA_BACKEND_CUDA ? "cuda" : "cpu", "precision",
        c->bf16 ? "bf16" : c->tf32 ? "tf32" : "fp32", "generic_card",
        self->generic_card ? Py_True : Py_False, "arena_bytes", (long long)c->arena_bytes,
        "ignored", ignored);
}

static PyObject *model_card_json(ModelObject *self, PyObject *unused)
{
    (void)unused;
    char *text = NULL;
    const segmamba_status st = segmamba_card_format_json(&self->card, &text);
    if (st != SEGMAMBA_OK) return raise_last(st);
    PyObject *r = PyUnicode_FromString(text);
    free(text);
    return r;
}

static PyObject *model_card_origin(ModelObject *self, PyObject *unused)
{
    (void)unused;
    return PyUnicode_FromString(self->card.origin);
}

static PyObject *model_profile(ModelObject *self, PyObject *unused)
{
    (void)unused;
    if (!model_usable(self)) return NULL;
    segmamba_profile p;
    segmamba_get_profile(self->m, &p);
    double conv3 = 0.0;
    const int n = segmamba_get_layer_count(self->m);
    for (int i = 0; i < n; i++) {
        segmamba_layer l;
        if (segmamba_get_layer(self->m, i, &l) == SEGMAMBA_OK && l.conv3x3x3) conv3 += l.seconds;
    }
    return Py_BuildValue("{s:d,s:d,s:d,s:d,s:d,s:d,s:d}", "seconds_conv", p.seconds_conv,
                         "seconds_conv3x3x3", conv3, "seconds_scan", p.seconds_scan,
                         "seconds_norm", p.seconds_norm, "seconds_other", p.seconds_other,
                         "seconds", p.seconds_conv + p.seconds_scan + p.seconds_norm +
                                        p.seconds_other,
                         "flops", p.flops);
}

static PyObject *model_layers(ModelObject *self, PyObject *unused)
{
    (void)unused;
    if (!model_usable(self)) return NULL;
    const int n = segmamba_get_layer_count(self->m);
    PyObject *list = PyList_New(n);
    for (int i = 0; list && i < n; i++) {
        segmamba_layer l;
        const segmamba_status st = segmamba_get_layer(self->m, i, &l);
        if (st != SEGMAMBA_OK) {
            Py_DECREF(list);
            return raise_last(st);
        }
        PyObject *d = Py_BuildValue("{s:s,s:s,s:i,s:O,s:i,s:i,s:i,s:d}", "op", l.op, "backend",
                                    l.backend, "kernel", l.kernel, "conv3x3x3",
                                    l.conv3x3x3 ? Py_True : Py_False, "level", l.level,
                                    "in_channels", l.in_channels, "out_channels", l.out_channels,
                                    "seconds", l.seconds);
        if (!d) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, d);
    }
    return list;
}

/* The message the CLI's forward gives for an array it cannot take. */
static PyObject *shape_error(const ModelObject *self, const Py_buffer *x)
{
    char msg[512];
    int used = snprintf(msg, sizeof msg,
                        "input: expected a float32 array shaped (N, %d, D, H, W) or (%d, D, H, W); "
                        "got %d dimensions",
                        self->cfg.in_chans, self->cfg.in_chans, x->ndim);
    for (int k = 0; k < x->ndim && used > 0 && (size_t)used < sizeof msg; k++)
        used += snprintf(msg + used, sizeof msg - (size_t)used, "%s%zd", k ? "x" : " ",
                         x->shape[k]);
    return raise_status(SEGMAMBA_E_SHAPE, msg);
}

/* forward(x, out): x a C-contiguous float32 buffer (C, D, H, W) or (N, C, D,
 * H, W), read in place; out a writable one of the matching logits shape. */
static PyObject *model_forward(ModelObject *self, PyObject *args)
{
    PyObject *xo, *yo;
    if (!PyArg_ParseTuple(args, "OO", &xo, &yo) || !model_usable(self)) return NULL;
    Py_buffer x, y;
    if (get_buffer(xo, &x, 'f', 0, "input") != 0) return NULL;
    const int batched = x.ndim == 5;
    const Py_ssize_t *s = x.shape + batched;
    int ok = (x.ndim == 4 || (batched && x.shape[0] >= 1 && x.shape[0] <= 4096));
    for (int k = 1; ok && k < 4; k++) ok = s[k] > 0 && s[k] <= (1 << 16);
    if (!ok || s[0] != self->cfg.in_chans) {
        shape_error(self, &x);
        PyBuffer_Release(&x);
        return NULL;
    }
    const int count = batched ? (int)x.shape[0] : 1, d = (int)s[1], h = (int)s[2], w = (int)s[3];
    segmamba_status st = segmamba_check_shape(self->m, d, h, w);
    if (st != SEGMAMBA_OK) {
        PyBuffer_Release(&x);
        return raise_last(st);
    }
    if (get_buffer(yo, &y, 'f', 1, "out") != 0) {
        PyBuffer_Release(&x);
        return NULL;
    }
    if (y.len != (Py_ssize_t)count * self->cfg.out_chans * d * h * w * 4) {
        PyBuffer_Release(&x);
        PyBuffer_Release(&y);
        return raise_status(SEGMAMBA_E_ARG, "out: the logits buffer has the wrong size");
    }
    /* NaN or infinite voxels are refused as the CLI refuses them. */
    segmamba_array view = {.ndim = x.ndim, .numel = x.len / 4, .data = x.buf};
    for (int k = 0; k < x.ndim; k++) view.shape[k] = x.shape[k];
    const int threads = self->threads;
    self->busy++;
    Py_BEGIN_ALLOW_THREADS
    if (threads > 0) segmamba_set_threads(threads);
    st = segmamba_array_check_finite(&view, "input");
    if (st == SEGMAMBA_OK) st = segmamba_forward_batch(self->m, count, x.buf, d, h, w, y.buf);
    Py_END_ALLOW_THREADS
    self->busy--;
    PyBuffer_Release(&x);
    PyBuffer_Release(&y);
    if (st != SEGMAMBA_OK) return raise_last(st);
    Py_RETURN_NONE;
}

/* Progress during predict: a Python callable (may be None) and Ctrl-C. */
typedef struct {
    PyObject *callback;
    int failed; /* an exception (KeyboardInterrupt, the callback's) is pending */
    PyObject *exc_type, *exc_value, *exc_tb;
} progress_ctx;

static int on_progress(void *user, int done, int total)
{
    progress_ctx *p = user;
    PyGILState_STATE g = PyGILState_Ensure();
    int stop = 0;
    if (PyErr_CheckSignals() != 0) {
        stop = 1;
    } else if (p->callback != Py_None) {
        PyObject *r = PyObject_CallFunction(p->callback, "ii", done, total);
        if (!r) stop = 1;
        else if (PyObject_IsTrue(r) == 1) stop = 1; /* a true return value cancels */
        Py_XDECREF(r);
    }
    if (stop && PyErr_Occurred()) {
        p->failed = 1;
        PyErr_Fetch(&p->exc_type, &p->exc_value, &p->exc_tb);
    }
    PyGILState_Release(g);
    return stop;
}

static int put(PyObject *dict, const char *key, PyObject *value)
{
    if (!value) return -1;
    const int r = PyDict_SetItemString(dict, key, value);
    Py_DECREF(value);
    return r;
}

/* predict(volume, spacing, no_tta, overlap, want_prob, want_regions,
 * want_unc, progress, paths): segmamba_predict on a C-contiguous float32 (C, D, H,
 * W) buffer with the model's card. Returns a dict of _Array (labels,
 * probabilities, regions, masks, uncertainty as asked and as the card
 * gives) plus box and windows. paths (or None): the files the volume was
 * read from, named when a voxel is not finite. */
static PyObject *model_predict(ModelObject *self, PyObject *args)
{
    PyObject *vo, *callback, *path_obj;
    double sp[3], overlap;
    int no_tta, want_prob, want_regions, want_unc;
    if (!PyArg_ParseTuple(args, "O(ddd)idiiiOO", &vo, &sp[0], &sp[1], &sp[2], &no_tta, &overlap,
                          &want_prob, &want_regions, &want_unc, &callback, &path_obj) ||
        !model_usable(self))
        return NULL;
    const char *paths[SEGMAMBA_CARD_MAX_CHANNELS];
    int n_paths = 0;
    PyObject *path_seq = NULL;
    if (path_obj != Py_None) {
        path_seq = PySequence_Fast(path_obj, "paths: a list of file names");
        if (!path_seq || (n_paths = path_list(path_seq, paths)) < 0) {
            Py_XDECREF(path_seq);
            return NULL;
        }
    }
    Py_buffer v;
    if (get_buffer(vo, &v, 'f', 0, "volume") != 0) {
        Py_XDECREF(path_seq);
        return NULL;
    }
    if (v.ndim != 4) {
        PyBuffer_Release(&v);
        Py_XDECREF(path_seq);
        return raise_status(SEGMAMBA_E_SHAPE, "volume: expected a float32 array shaped (C, D, H, W)");
    }
    segmamba_volume vol = {.c = (int)v.shape[0], .d = (int)v.shape[1], .h = (int)v.shape[2],
                           .w = (int)v.shape[3], .data = v.buf};
    vol.geom.d = vol.d, vol.geom.h = vol.h, vol.geom.w = vol.w;
    for (int a = 0; a < 3; a++) {
        vol.geom.spacing[a] = sp[a];
        vol.geom.affine[a][2 - a] = sp[a]; /* (i, j, k) = (W, H, D) */
    }
    vol.geom.affine[3][3] = 1.0;
    segmamba_predict_options po = {.no_tta = no_tta, .overlap = overlap,
                                   .want_probabilities = want_prob,
                                   .want_regions = want_regions, .want_uncertainty = want_unc,
                                   .progress = on_progress};
    progress_ctx prog = {.callback = callback};
    po.progress_user = &prog;
    segmamba_prediction p = {0};
    segmamba_status st;
    const int threads = self->threads;
    self->busy++;
    Py_BEGIN_ALLOW_THREADS
    if (threads > 0) segmamba_set_threads(threads);
    st = segmamba_volume_check_finite(&vol, n_paths ? paths : NULL, n_paths);
    if (st == SEGMAMBA_OK) st = segmamba_card_check_model(&self->card, self->m);
    if (st == SEGMAMBA_OK) st = segmamba_predict(self->m, &self->card, &vol, &po, &p);
    Py_END_ALLOW_THREADS
    self->busy--;
    PyBuffer_Release(&v);
    Py_XDECREF(path_seq);
    if (prog.failed) {
        segmamba_prediction_free(&p);
        PyErr_Restore(prog.exc_type, prog.exc_value, prog.exc_tb);
        return NULL;
    }
    if (st != SEGMAMBA_OK) return raise_last(st);

    PyObject *r = PyDict_New();
    const Py_ssize_t g[3] = {p.d, p.h, p.w};
    const Py_ssize_t s3[4] = {3, p.d, p.h, p.w};
    const Py_ssize_t sp4[4] = {p.n_prob, p.d, p.h, p.w};
    const Py_ssize_t sm4[4] = {p.n_masks, p.d, p.h, p.w};
    int bad = !r;
    /* Each array changes hands: the _Array frees it, so p no longer does. */
#define HAND_OVER(key, field, fmt, nd, shape)                                    \
    if (!bad && p.field) {                                                      \
        bad = put(r, key, array_new(p.field, fmt, nd, shape)) != 0;             \
        p.field = NULL;                                                          \
    }
    HAND_OVER("labels", labels, 'B', 3, g)
    HAND_OVER("probabilities", probabilities, 'f', 4, sp4)
    HAND_OVER("regions", regions, 'B', 4, s3)
    HAND_OVER("masks", masks, 'B', 4, sm4)
    HAND_OVER("uncertainty", uncertainty, 'f', 3, g)
#undef HAND_OVER
    if (!bad)
        bad = put(r, "box",
                  Py_BuildValue("((ii)(ii)(ii))", p.box[0][0], p.box[0][1], p.box[1][0],
                                p.box[1][1], p.box[2][0], p.box[2][1])) != 0 ||
              put(r, "windows", PyLong_FromLong(p.windows)) != 0;
    segmamba_prediction_free(&p);
    if (bad) {
        Py_XDECREF(r);
        return NULL;
    }
    return r;
}

static PyMethodDef model_methods[] = {
    {"forward", (PyCFunction)model_forward, METH_VARARGS, "forward(x, out): logits into out"},
    {"predict", (PyCFunction)model_predict, METH_VARARGS, "the pipeline on an in-memory volume"},
    {"config", (PyCFunction)model_config, METH_NOARGS, "the configuration as a dict"},
    {"card_json", (PyCFunction)model_card_json, METH_NOARGS, "the model card as JSON"},
    {"card_origin", (PyCFunction)model_card_origin, METH_NOARGS, "where the card came from"},
    {"profile", (PyCFunction)model_profile, METH_NOARGS, "the last forward's breakdown"},
    {"layers", (PyCFunction)model_layers, METH_NOARGS, "every layer and its last time"},
    {"close", (PyCFunction)model_close, METH_NOARGS, "frees the model"},
    {NULL, NULL, 0, NULL}};

static PyTypeObject ModelType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "segmamba._segmamba._Model",
    .tp_basicsize = sizeof(ModelObject),
    .tp_dealloc = (destructor)model_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "An open segmamba_model (use segmamba.Model).",
    .tp_methods = model_methods,
    .tp_init = (initproc)model_init,
    .tp_new = PyType_GenericNew,
};

/* ---- module functions -------------------------------------------------- */

/* read_nifti(paths): an _Array holding the (C, D, H, W) float32 volume of
 * one file (3D, or 4D with channels) or of several 3D files, one channel
 * each, and the first file's geometry (segmamba_nifti_read_channels). */
static PyObject *py_read_nifti(PyObject *mod, PyObject *args)
{
    (void)mod;
    PyObject *list;
    if (!PyArg_ParseTuple(args, "O", &list)) return NULL;
    PyObject *seq = PySequence_Fast(list, "paths: a list of file names");
    if (!seq) return NULL;
    const char *paths[SEGMAMBA_CARD_MAX_CHANNELS];
    const int n = path_list(seq, paths);
    if (n < 0) {
        Py_DECREF(seq);
        return NULL;
    }
    segmamba_volume v = {0};
    segmamba_status st;
    Py_BEGIN_ALLOW_THREADS
    st = segmamba_nifti_read_channels(paths, n, &v);
    Py_END_ALLOW_THREADS
    Py_DECREF(seq);
    if (st != SEGMAMBA_OK) return raise_last(st);
    const Py_ssize_t shape[4] = {v.c, v.d, v.h, v.w};
    ArrayObject *a = (ArrayObject *)array_new(NULL, 'f', 4, shape);
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
        if (!PyObject_TypeCheck(like, &ArrayType) || !((ArrayObject *)like)->is_volume) {
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
        snprintf(msg, sizeof msg, "the array's grid %dx%dx%d (D, H, W) is not the geometry's %dx%dx%d",
                 d, h, w, g->d, g->h, g->w);
        raise_status(SEGMAMBA_E_SHAPE, msg);
        return -1;
    }
    return 0;
}

/* write_nifti(path, data, like, affine): data a C-contiguous uint8 or
 * float32 (C, D, H, W) buffer. */
static PyObject *py_write_nifti(PyObject *mod, PyObject *args)
{
    (void)mod;
    const char *path;
    PyObject *data, *like, *affine;
    int is_float;
    if (!PyArg_ParseTuple(args, "sOpOO", &path, &data, &is_float, &like, &affine)) return NULL;
    Py_buffer b;
    if (get_buffer(data, &b, is_float ? 'f' : 'B', 0, "array") != 0) return NULL;
    if (b.ndim != 4) {
        PyBuffer_Release(&b);
        return raise_status(SEGMAMBA_E_SHAPE, "array: expected (D, H, W) or (C, D, H, W)");
    }
    segmamba_geometry g;
    if (geometry_from(like, affine, &g, (int)b.shape[1], (int)b.shape[2], (int)b.shape[3]) != 0) {
        PyBuffer_Release(&b);
        return NULL;
    }
    const int c = (int)b.shape[0];
    segmamba_status st;
    Py_BEGIN_ALLOW_THREADS
    st = is_float ? segmamba_nifti_write_f32(path, &g, b.buf, c)
                  : segmamba_nifti_write_u8(path, &g, b.buf, c);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&b);
    if (st != SEGMAMBA_OK) return raise_last(st);
    Py_RETURN_NONE;
}

/* metrics(pred, ref, spacing, regions, empty_both_one): regions a list of
 * (name, labels) or None (BraTS TC, WT, ET). */
static PyObject *py_metrics(PyObject *mod, PyObject *args)
{
    (void)mod;
    PyObject *po, *ro, *regions_in;
    double sp[3];
    int both;
    if (!PyArg_ParseTuple(args, "OO(ddd)Op", &po, &ro, &sp[0], &sp[1], &sp[2], &regions_in, &both))
        return NULL;
    segmamba_region regions[256];
    int n = 0;
    if (regions_in == Py_None) {
        segmamba_region_init_brats(regions);
        n = 3;
    } else {
        PyObject *seq = PySequence_Fast(regions_in, "regions: a list of (name, labels)");
        if (!seq) return NULL;
        n = (int)PySequence_Fast_GET_SIZE(seq);
        if (n < 1 || n > 256) {
            Py_DECREF(seq);
            return raise_status(SEGMAMBA_E_ARG, "regions: 1 to 256 of them");
        }
        for (int i = 0; i < n; i++) {
            const char *name;
            PyObject *labels;
            if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "sO", &name, &labels) ||
                strlen(name) >= sizeof regions[i].name) {
                if (!PyErr_Occurred()) raise_status(SEGMAMBA_E_ARG, "regions: a name is too long");
                Py_DECREF(seq);
                return NULL;
            }
            PyObject *ls = PySequence_Fast(labels, "regions: labels must be a sequence");
            if (!ls) {
                Py_DECREF(seq);
                return NULL;
            }
            uint8_t lab[256];
            const Py_ssize_t nl = PySequence_Fast_GET_SIZE(ls);
            int ok = nl >= 1 && nl <= 256;
            for (Py_ssize_t k = 0; ok && k < nl; k++) {
                const long v = PyLong_AsLong(PySequence_Fast_GET_ITEM(ls, k));
                ok = v >= 0 && v <= 255;
                lab[k] = (uint8_t)v;
            }
            Py_DECREF(ls);
            if (!ok) {
                Py_DECREF(seq);
                if (PyErr_Occurred()) return NULL;
                return raise_status(SEGMAMBA_E_ARG, "regions: labels are 1 to 256 values 0..255");
            }
            segmamba_region_init(&regions[i], name, lab, (int)nl);
        }
        Py_DECREF(seq);
    }
    Py_buffer p, r;
    if (get_buffer(po, &p, 'B', 0, "pred") != 0) return NULL;
    if (get_buffer(ro, &r, 'B', 0, "ref") != 0) {
        PyBuffer_Release(&p);
        return NULL;
    }
    int same = p.ndim == 3 && r.ndim == 3;
    for (int k = 0; same && k < 3; k++) same = p.shape[k] == r.shape[k];
    if (!same) {
        PyBuffer_Release(&p);
        PyBuffer_Release(&r);
        return raise_status(SEGMAMBA_E_SHAPE, "pred and ref: two (D, H, W) label maps of one shape");
    }
    segmamba_region_score scores[256];
    segmamba_status st;
    Py_BEGIN_ALLOW_THREADS
    st = segmamba_score_regions(p.buf, r.buf, (int)p.shape[0], (int)p.shape[1], (int)p.shape[2],
                                sp, regions, n, both, scores);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&p);
    PyBuffer_Release(&r);
    if (st != SEGMAMBA_OK) return raise_last(st);
    PyObject *out = PyDict_New();
    for (int i = 0; out && i < n; i++)
        if (put(out, regions[i].name,
                Py_BuildValue("{s:d,s:d,s:L,s:L}", "dice", scores[i].dice, "hd95", scores[i].hd95,
                              "n_pred", (long long)scores[i].n_pred, "n_ref",
                              (long long)scores[i].n_ref)) != 0)
            Py_CLEAR(out);
    return out;
}

static PyObject *py_build_info(PyObject *mod, PyObject *unused)
{
    (void)mod, (void)unused;
    segmamba_build_info b;
    segmamba_get_build_info(&b);
    char gpu[256];
    const int have_gpu = segmamba_get_cuda_device(gpu, sizeof gpu);
    return Py_BuildValue("{s:s,s:O,s:O,s:s,s:s,s:O,s:s}", "version", segmamba_get_version(), "onednn",
                         b.onednn ? Py_True : Py_False, "openmp", b.openmp ? Py_True : Py_False,
                         "cuda", !b.cuda ? "not built" : b.cuda == 2 ? "emulated" : "built",
                         "isa", segmamba_get_isa(), "cuda_device", have_gpu ? Py_True : Py_False,
                         "cuda_info", gpu);
}

static PyObject *py_set_threads(PyObject *mod, PyObject *args)
{
    (void)mod;
    int n;
    if (!PyArg_ParseTuple(args, "i", &n)) return NULL;
    segmamba_set_threads(n);
    return PyLong_FromLong(segmamba_get_threads());
}

static PyObject *py_get_threads(PyObject *mod, PyObject *unused)
{
    (void)mod, (void)unused;
    return PyLong_FromLong(segmamba_get_threads());
}

static PyObject *py_select_isa(PyObject *mod, PyObject *args)
{
    (void)mod;
    const char *name;
    if (!PyArg_ParseTuple(args, "s", &name)) return NULL;
    const char *level = segmamba_set_isa(name);
    if (!level) return raise_status(SEGMAMBA_E_ARG, "isa: scalar, avx2, avx512 or neon");
    return PyUnicode_FromString(level);
}

static PyObject *py_fma_peak(PyObject *mod, PyObject *args)
{
    (void)mod;
    int threads;
    if (!PyArg_ParseTuple(args, "i", &threads)) return NULL;
    double g;
    Py_BEGIN_ALLOW_THREADS
    g = segmamba_measure_fma_peak(threads);
    Py_END_ALLOW_THREADS
    return PyFloat_FromDouble(g);
}

static PyObject *py_set_max_memory(PyObject *mod, PyObject *args)
{
    (void)mod;
    unsigned long long bytes;
    if (!PyArg_ParseTuple(args, "K", &bytes)) return NULL;
    segmamba_set_max_memory((uint64_t)bytes);
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"read_nifti", py_read_nifti, METH_VARARGS, "read_nifti(path) -> _Array with geometry"},
    {"write_nifti", py_write_nifti, METH_VARARGS, "write_nifti(path, data, is_float, like, affine)"},
    {"metrics", py_metrics, METH_VARARGS, "metrics(pred, ref, spacing, regions, empty_both_one)"},
    {"build_info", py_build_info, METH_NOARGS, "how the engine was built"},
    {"set_threads", py_set_threads, METH_VARARGS, "segmamba_set_threads"},
    {"get_threads", py_get_threads, METH_NOARGS, "segmamba_get_threads"},
    {"select_isa", py_select_isa, METH_VARARGS, "segmamba_set_isa"},
    {"fma_peak_gflops", py_fma_peak, METH_VARARGS, "segmamba_measure_fma_peak"},
    {"set_max_memory", py_set_max_memory, METH_VARARGS, "segmamba_set_max_memory"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_segmamba", "The C binding of libsegmamba (use the segmamba package).",
    -1, module_methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__segmamba(void)
{
    if (PyType_Ready(&ArrayType) < 0 || PyType_Ready(&ModelType) < 0) return NULL;
    PyObject *mod = PyModule_Create(&module_def);
    if (!mod) return NULL;
    sm_error = PyErr_NewExceptionWithDoc(
        "segmamba.Error",
        "A failure the engine reports: .status is the status name (\"E_FORMAT\", ...), .code "
        "its number (the CLI's exit code), str() the engine's message.",
        NULL, NULL);
    if (!sm_error) goto fail;
    Py_INCREF(sm_error); /* one reference for the module, one kept here */
    if (PyModule_AddObject(mod, "Error", sm_error) != 0) goto fail;
    Py_INCREF(&ModelType);
    if (PyModule_AddObject(mod, "_Model", (PyObject *)&ModelType) != 0) goto fail;
    Py_INCREF(&ArrayType);
    if (PyModule_AddObject(mod, "_Array", (PyObject *)&ArrayType) != 0) goto fail;
    return mod;
fail:
    Py_DECREF(mod);
    return NULL;
}
