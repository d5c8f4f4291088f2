/* _segmamba: the CPython binding of libsegmamba (segmamba.h and
 * segmamba_pipeline.h, nothing else). Arrays cross it through the buffer
 * protocol, so NumPy is not needed to build it: inputs are read where they
 * lie (C-contiguous float32), outputs are either the caller's buffers
 * (forward) or the library's own allocations handed over to an _Array
 * object that frees them (predict, read_nifti). The GIL is released around
 * every call that runs the network. segmamba/__init__.py is the public face;
 * everything here is called through it. This file: errors, metrics, the
 * engine's settings and the module's set-up; _array.c: arrays in and out
 * and NIfTI volumes; _model.c: the _Model type (_segmamba.h). */
#include "_segmamba.h"

#include <stdint.h>
#include <string.h>

static PyObject *sm_error; /* segmamba.Error */

PyObject *smpy_raise_status(segmamba_status st, const char *message)
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

PyObject *smpy_raise_last(segmamba_status st)
{
    return smpy_raise_status(st, segmamba_get_last_error());
}

int smpy_put(PyObject *dict, const char *key, PyObject *value)
{
    if (!value) return -1;
    const int r = PyDict_SetItemString(dict, key, value);
    Py_DECREF(value);
    return r;
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
            return smpy_raise_status(SEGMAMBA_E_ARG, "regions: 1 to 256 of them");
        }
        for (int i = 0; i < n; i++) {
            const char *name;
            PyObject *labels;
            if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "sO", &name, &labels) ||
                strlen(name) >= sizeof regions[i].name) {
                if (!PyErr_Occurred())
                    smpy_raise_status(SEGMAMBA_E_ARG, "regions: a name is too long");
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
                return smpy_raise_status(SEGMAMBA_E_ARG,
                                         "regions: labels are 1 to 256 values 0..255");
            }
            segmamba_region_init(&regions[i], name, lab, (int)nl);
        }
        Py_DECREF(seq);
    }
    Py_buffer p, r;
    if (smpy_get_buffer(po, &p, 'B', 0, "pred") != 0) return NULL;
    if (smpy_get_buffer(ro, &r, 'B', 0, "ref") != 0) {
        PyBuffer_Release(&p);
        return NULL;
    }
    int same = p.ndim == 3 && r.ndim == 3;
    for (int k = 0; same && k < 3; k++) same = p.shape[k] == r.shape[k];
    if (!same) {
        PyBuffer_Release(&p);
        PyBuffer_Release(&r);
        return smpy_raise_status(SEGMAMBA_E_SHAPE,
                                 "pred and ref: two (D, H, W) label maps of one shape");
    }
    segmamba_region_score scores[256];
    segmamba_status st;
    Py_BEGIN_ALLOW_THREADS st =
        segmamba_score_regions(p.buf, r.buf, (int)p.shape[0], (int)p.shape[1], (int)p.shape[2], sp,
                               regions, n, both, scores);
    Py_END_ALLOW_THREADS PyBuffer_Release(&p);
    PyBuffer_Release(&r);
    if (st != SEGMAMBA_OK) return smpy_raise_last(st);
    PyObject *out = PyDict_New();
    for (int i = 0; out && i < n; i++)
        if (smpy_put(out, regions[i].name,
                     Py_BuildValue("{s:d,s:d,s:L,s:L}", "dice", scores[i].dice, "hd95",
                                   scores[i].hd95, "n_pred", (long long)scores[i].n_pred, "n_ref",
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
    return Py_BuildValue(
        "{s:s,s:O,s:O,s:s,s:s,s:O,s:s}", "version", segmamba_get_version(), "onednn",
        b.onednn ? Py_True : Py_False, "openmp", b.openmp ? Py_True : Py_False, "cuda",
        !b.cuda       ? "not built"
        : b.cuda == 2 ? "emulated"
                      : "built",
        "isa", segmamba_get_isa(), "cuda_device", have_gpu ? Py_True : Py_False, "cuda_info", gpu);
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
    if (!level) return smpy_raise_status(SEGMAMBA_E_ARG, "isa: scalar, avx2, avx512 or neon");
    return PyUnicode_FromString(level);
}

static PyObject *py_fma_peak(PyObject *mod, PyObject *args)
{
    (void)mod;
    int threads;
    if (!PyArg_ParseTuple(args, "i", &threads)) return NULL;
    double g;
    Py_BEGIN_ALLOW_THREADS g = segmamba_measure_fma_peak(threads);
    Py_END_ALLOW_THREADS return PyFloat_FromDouble(g);
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
    {"read_nifti", smpy_read_nifti, METH_VARARGS, "read_nifti(path) -> _Array with geometry"},
    {"write_nifti", smpy_write_nifti, METH_VARARGS,
     "write_nifti(path, data, is_float, like, affine)"},
    {"metrics", py_metrics, METH_VARARGS, "metrics(pred, ref, spacing, regions, empty_both_one)"},
    {"build_info", py_build_info, METH_NOARGS, "how the engine was built"},
    {"set_threads", py_set_threads, METH_VARARGS, "segmamba_set_threads"},
    {"get_threads", py_get_threads, METH_NOARGS, "segmamba_get_threads"},
    {"select_isa", py_select_isa, METH_VARARGS, "segmamba_set_isa"},
    {"fma_peak_gflops", py_fma_peak, METH_VARARGS, "segmamba_measure_fma_peak"},
    {"set_max_memory", py_set_max_memory, METH_VARARGS, "segmamba_set_max_memory"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT,
                                        "_segmamba",
                                        "The C binding of libsegmamba (use the segmamba package).",
                                        -1,
                                        module_methods,
                                        NULL,
                                        NULL,
                                        NULL,
                                        NULL};

PyMODINIT_FUNC PyInit__segmamba(void)
{
    if (PyType_Ready(&smpy_array_type) < 0 || PyType_Ready(&smpy_model_type) < 0) return NULL;
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
    Py_INCREF(&smpy_model_type);
    if (PyModule_AddObject(mod, "_Model", (PyObject *)&smpy_model_type) != 0) goto fail;
    Py_INCREF(&smpy_array_type);
    if (PyModule_AddObject(mod, "_Array", (PyObject *)&smpy_array_type) != 0) goto fail;
    return mod;
fail:
    Py_DECREF(mod);
    return NULL;
}
