/* _segmamba's _Model type (_segmamba.h): an open segmamba_model with its
 * card; forward and predict with the GIL released, the configuration,
 * profile and layers as Python values. */
#include "_segmamba.h"

#include <stdio.h>
#include <stdlib.h>

/* ---- _Model ------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD segmamba_model *m;
    segmamba_card card;
    segmamba_config cfg;
    int generic_card; /* 1: the checkpoint had no card; the generic one is used */
    int busy;         /* calls under way with the GIL released (close waits for none) */
    int threads;      /* applied before each call; 0: leave the process setting */
} ModelObject;

static int model_usable(ModelObject *self)
{
    if (self->m) return 1;
    smpy_raise_status(SEGMAMBA_E_ARG, "the model is closed");
    return 0;
}

/* _Model(path, conv, winograd_tile, nslices or None, fue (0 card, 1 on, 2
 * off), bf16, tf32, backend (0 cpu, 1 cuda), card_path or None, card_json
 * or None, threads): opens the model as `segmamba predict` does
 * (cli_open_model): the card first, its nslices and FUE as defaults. */
static int model_init(ModelObject *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"path", "conv",    "winograd_tile", "nslices",   "fue",     "bf16",
                            "tf32", "backend", "card_path",     "card_json", "threads", NULL};
    const char *path, *card_path = NULL, *card_json = NULL;
    Py_ssize_t card_json_len = 0;
    int conv = 0, tile = 0, fue = 0, bf16 = 0, tf32 = 0, backend = 0, threads = 0;
    PyObject *nslices = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|iiOiiiizz#i", names, &path, &conv, &tile,
                                     &nslices, &fue, &bf16, &tf32, &backend, &card_path, &card_json,
                                     &card_json_len, &threads))
        return -1;
    if (self->m) {
        PyErr_SetString(PyExc_RuntimeError, "_Model.__init__ called twice");
        return -1;
    }
    segmamba_options o = {.conv = (segmamba_conv_backend)conv,
                          .winograd_tile = tile,
                          .fue = fue,
                          .bf16 = bf16,
                          .tf32 = tf32,
                          .backend = (segmamba_backend)backend};
    if (nslices != Py_None && !PyArg_ParseTuple(nslices, "iiii", &o.nslices[0], &o.nslices[1],
                                                &o.nslices[2], &o.nslices[3]))
        return -1;
    self->threads = threads;
    segmamba_status st;
    segmamba_model *m = NULL;
    int generic = 0;
    Py_BEGIN_ALLOW_THREADS if (threads > 0) segmamba_set_threads(threads);
    if (card_json) {
        st = segmamba_card_parse(card_json, (size_t)card_json_len, "the card given", &self->card);
        if (st == SEGMAMBA_OK) st = segmamba_open_for_card(path, &self->card, &o, &m);
    } else {
        st = segmamba_open_with_card(path, card_path, &o, &m, &self->card, &generic);
    }
    Py_END_ALLOW_THREADS if (st != SEGMAMBA_OK)
    {
        smpy_raise_last(st);
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
    if (self->busy)
        return smpy_raise_status(SEGMAMBA_E_ARG, "the model is in use by another thread");
    segmamba_model *m = self->m;
    self->m = NULL;
    Py_BEGIN_ALLOW_THREADS segmamba_close(m);
    Py_END_ALLOW_THREADS Py_RETURN_NONE;
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
        "{s:s,s:s,s:i,s:i,s:N,s:N,s:i,s:i,s:i,s:i,s:N,s:N,s:O,s:L,s:s,s:s,s:O,s:L,s:L,s:N}",
        "family", family, "mamba_type", mamba_type, "in_chans", c->in_chans, "out_chans",
        c->out_chans, "depths", ints4(c->depths), "feat_size", ints4(c->feat), "hidden_size",
        c->hidden, "d_state", c->d_state, "d_conv", c->d_conv, "expand", c->expand, "dt_rank",
        ints4(c->dt_rank), "nslices", ints4(c->nslices), "fue", c->fue ? Py_True : Py_False,
        "parameters", (long long)c->n_params, "backend",
        c->backend == SEGMAMBA_BACKEND_CUDA ? "cuda" : "cpu", "precision",
        c->bf16   ? "bf16"
        : c->tf32 ? "tf32"
                  : "fp32",
        "generic_card", self->generic_card ? Py_True : Py_False, "arena_bytes",
        (long long)c->arena_bytes, "weight_bytes", (long long)c->weight_bytes, "ignored", ignored);
}

static PyObject *model_card_json(ModelObject *self, PyObject *unused)
{
    (void)unused;
    char *text = NULL;
    const segmamba_status st = segmamba_card_format_json(&self->card, &text);
    if (st != SEGMAMBA_OK) return smpy_raise_last(st);
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
                         "seconds_conv3x3x3", conv3, "seconds_scan", p.seconds_scan, "seconds_norm",
                         p.seconds_norm, "seconds_other", p.seconds_other, "seconds",
                         p.seconds_conv + p.seconds_scan + p.seconds_norm + p.seconds_other,
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
            return smpy_raise_last(st);
        }
        PyObject *d = Py_BuildValue(
            "{s:s,s:s,s:i,s:O,s:i,s:i,s:i,s:d}", "op", l.op, "backend", l.backend, "kernel",
            l.kernel, "conv3x3x3", l.conv3x3x3 ? Py_True : Py_False, "level", l.level,
            "in_channels", l.in_channels, "out_channels", l.out_channels, "seconds", l.seconds);
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
        used +=
            snprintf(msg + used, sizeof msg - (size_t)used, "%s%zd", k ? "x" : " ", x->shape[k]);
    return smpy_raise_status(SEGMAMBA_E_SHAPE, msg);
}

/* forward(x, out): x a C-contiguous float32 buffer (C, D, H, W) or (N, C, D,
 * H, W), read in place; out a writable one of the matching logits shape. */
static PyObject *model_forward(ModelObject *self, PyObject *args)
{
    PyObject *xo, *yo;
    if (!PyArg_ParseTuple(args, "OO", &xo, &yo) || !model_usable(self)) return NULL;
    Py_buffer x, y;
    if (smpy_get_buffer(xo, &x, 'f', 0, "input") != 0) return NULL;
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
        return smpy_raise_last(st);
    }
    if (smpy_get_buffer(yo, &y, 'f', 1, "out") != 0) {
        PyBuffer_Release(&x);
        return NULL;
    }
    if (y.len != (Py_ssize_t)count * self->cfg.out_chans * d * h * w * 4) {
        PyBuffer_Release(&x);
        PyBuffer_Release(&y);
        return smpy_raise_status(SEGMAMBA_E_ARG, "out: the logits buffer has the wrong size");
    }
    /* NaN or infinite voxels are refused as the CLI refuses them. */
    segmamba_array view = {.ndim = x.ndim, .numel = x.len / 4, .data = x.buf};
    for (int k = 0; k < x.ndim; k++) view.shape[k] = x.shape[k];
    const int threads = self->threads;
    self->busy++;
    Py_BEGIN_ALLOW_THREADS if (threads > 0) segmamba_set_threads(threads);
    st = segmamba_array_check_finite(&view, "input");
    if (st == SEGMAMBA_OK) st = segmamba_forward_batch(self->m, count, x.buf, d, h, w, y.buf);
    Py_END_ALLOW_THREADS self->busy--;
    PyBuffer_Release(&x);
    PyBuffer_Release(&y);
    if (st != SEGMAMBA_OK) return smpy_raise_last(st);
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
        if (!r)
            stop = 1;
        else if (PyObject_IsTrue(r) == 1)
            stop = 1; /* a true return value cancels */
        Py_XDECREF(r);
    }
    if (stop && PyErr_Occurred()) {
        p->failed = 1;
        PyErr_Fetch(&p->exc_type, &p->exc_value, &p->exc_tb);
    }
    PyGILState_Release(g);
    return stop;
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
        if (!path_seq || (n_paths = smpy_path_list(path_seq, paths)) < 0) {
            Py_XDECREF(path_seq);
            return NULL;
        }
    }
    Py_buffer v;
    if (smpy_get_buffer(vo, &v, 'f', 0, "volume") != 0) {
        Py_XDECREF(path_seq);
        return NULL;
    }
    if (v.ndim != 4) {
        PyBuffer_Release(&v);
        Py_XDECREF(path_seq);
        return smpy_raise_status(SEGMAMBA_E_SHAPE,
                                 "volume: expected a float32 array shaped (C, D, H, W)");
    }
    segmamba_volume vol = {.c = (int)v.shape[0],
                           .d = (int)v.shape[1],
                           .h = (int)v.shape[2],
                           .w = (int)v.shape[3],
                           .data = v.buf};
    vol.geom.d = vol.d, vol.geom.h = vol.h, vol.geom.w = vol.w;
    for (int a = 0; a < 3; a++) {
        vol.geom.spacing[a] = sp[a];
        vol.geom.affine[a][2 - a] = sp[a]; /* (i, j, k) = (W, H, D) */
    }
    vol.geom.affine[3][3] = 1.0;
    segmamba_predict_options po = {.no_tta = no_tta,
                                   .overlap = overlap,
                                   .want_probabilities = want_prob,
                                   .want_regions = want_regions,
                                   .want_uncertainty = want_unc,
                                   .progress = on_progress};
    progress_ctx prog = {.callback = callback};
    po.progress_user = &prog;
    segmamba_prediction p = {0};
    segmamba_status st;
    const int threads = self->threads;
    self->busy++;
    Py_BEGIN_ALLOW_THREADS if (threads > 0) segmamba_set_threads(threads);
    st = segmamba_volume_check_finite(&vol, n_paths ? paths : NULL, n_paths);
    if (st == SEGMAMBA_OK) st = segmamba_card_check_model(&self->card, self->m);
    if (st == SEGMAMBA_OK) st = segmamba_predict(self->m, &self->card, &vol, &po, &p);
    Py_END_ALLOW_THREADS self->busy--;
    PyBuffer_Release(&v);
    Py_XDECREF(path_seq);
    if (prog.failed) {
        segmamba_prediction_free(&p);
        PyErr_Restore(prog.exc_type, prog.exc_value, prog.exc_tb);
        return NULL;
    }
    if (st != SEGMAMBA_OK) return smpy_raise_last(st);

    PyObject *r = PyDict_New();
    const Py_ssize_t g[3] = {p.d, p.h, p.w};
    const Py_ssize_t s3[4] = {3, p.d, p.h, p.w};
    const Py_ssize_t sp4[4] = {p.n_prob, p.d, p.h, p.w};
    const Py_ssize_t sm4[4] = {p.n_masks, p.d, p.h, p.w};
    int bad = !r;
    /* Each array changes hands: the _Array frees it, so p no longer does. */
#define HAND_OVER(key, field, fmt, nd, shape)                                                      \
    if (!bad && p.field) {                                                                         \
        bad = smpy_put(r, key, smpy_array_new(p.field, fmt, nd, shape)) != 0;                      \
        p.field = NULL;                                                                            \
    }
    HAND_OVER("labels", labels, 'B', 3, g)
    HAND_OVER("probabilities", probabilities, 'f', 4, sp4)
    HAND_OVER("regions", regions, 'B', 4, s3)
    HAND_OVER("masks", masks, 'B', 4, sm4)
    HAND_OVER("uncertainty", uncertainty, 'f', 3, g)
#undef HAND_OVER
    if (!bad)
        bad = smpy_put(r, "box",
                       Py_BuildValue("((ii)(ii)(ii))", p.box[0][0], p.box[0][1], p.box[1][0],
                                     p.box[1][1], p.box[2][0], p.box[2][1])) != 0 ||
              smpy_put(r, "windows", PyLong_FromLong(p.windows)) != 0;
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

PyTypeObject smpy_model_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "segmamba._segmamba._Model",
    .tp_basicsize = sizeof(ModelObject),
    .tp_dealloc = (destructor)model_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "An open segmamba_model (use segmamba.Model).",
    .tp_methods = model_methods,
    .tp_init = (initproc)model_init,
    .tp_new = PyType_GenericNew,
};
