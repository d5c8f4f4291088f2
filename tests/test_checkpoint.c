/* Checkpoint and array readers against fixtures made by
 * tests/reference/make_loader_fixtures.py (torch 1.13 and numpy): exact
 * float32 values from expected.json, refusals of hostile or damaged files
 * with the right status and a message naming the file, round trips of the
 * writers, and mutated files that must fail cleanly (run under ASan). The
 * JSON parser and the zip reader on their own: test_json.c, test_zip.c. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "io/checkpoint.h"
#include "io/file.h"
#include "io/json.h"
#include "io/memory_cap.h"
#include "io/npy.h"
#include "io/pt.h"
#include "io/safetensors.h"
#include "io/weights.h"

#define FIXTURES "tests/fixtures/loaders/"
#define WORK "tests/work/"

/* ---- fixtures with known values ---- */

static int same_float(float a, double want)
{
    float b = (float)want;
    return memcmp(&a, &b, sizeof a) == 0;
}

/* Compares one loaded tensor against {"shape": [...], "values": [...]}. */
static void check_tensor(const char *file, const char *name, int ndim, const int64_t *shape,
                         const float *data, const sm_json *want)
{
    const sm_json *ws = sm_json_get(want, "shape"), *wv = sm_json_get(want, "values");
    CHECK_MSG(ws && wv && ws->count == (size_t)ndim, "%s: '%s' has %d dims", file, name, ndim);
    if (!ws || !wv || ws->count != (size_t)ndim) return;
    int64_t numel = 1;
    for (int d = 0; d < ndim; d++) {
        CHECK_MSG(shape[d] == ws->items[d].integer, "%s: '%s' dim %d", file, name, d);
        numel *= shape[d];
    }
    CHECK_MSG((size_t)numel == wv->count, "%s: '%s' numel", file, name);
    if ((size_t)numel != wv->count) return;
    size_t bad = 0;
    for (size_t i = 0; i < wv->count; i++) bad += !same_float(data[i], wv->items[i].number);
    CHECK_MSG(bad == 0, "%s: '%s' has %zu wrong values", file, name, bad);
}

static int has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static void check_fixture(const char *file, const sm_json *want)
{
    char path[512];
    snprintf(path, sizeof path, FIXTURES "%s", file);
    const sm_json *tensors = sm_json_get(want, "tensors");
    if (has_suffix(file, ".npy")) {
        segmamba_array a;
        sm_status st = segmamba_npy_read(path, &a);
        CHECK_MSG(st == SEGMAMBA_OK, "%s: %s", path, segmamba_get_last_error());
        if (st == SEGMAMBA_OK)
            check_tensor(file, "array", a.ndim, a.shape, a.data, sm_json_get(tensors, "array"));
        segmamba_array_free(&a);
        return;
    }
    sm_weights w = {0};
    sm_status st = sm_load_weights(path, &w);
    CHECK_MSG(st == SEGMAMBA_OK, "%s: %s", path, segmamba_get_last_error());
    CHECK_MSG(w.count == tensors->count, "%s: %zu tensors, expected %zu", file, w.count,
              tensors->count);
    for (size_t i = 0; i < tensors->count; i++) {
        const sm_json_member *m = &tensors->members[i];
        const sm_tensor_entry *t = sm_weights_find(&w, m->key);
        CHECK_MSG(t != NULL, "%s: no tensor '%s'", file, m->key);
        if (t) check_tensor(file, m->key, t->ndim, t->shape, t->data, &m->value);
    }
    const sm_json *meta = sm_json_get(want, "metadata");
    for (size_t i = 0; meta && i < meta->count; i++) {
        const char *got = sm_weights_meta(&w, meta->members[i].key);
        CHECK_MSG(got && strcmp(got, meta->members[i].value.string) == 0, "%s: metadata '%s'", file,
                  meta->members[i].key);
    }
    sm_weights_free(&w);
}

static void test_expected_values(void)
{
    unsigned char *text;
    size_t size;
    sm_json expected;
    CHECK(segmamba_file_read(FIXTURES "expected.json", &text, &size) == SEGMAMBA_OK);
    CHECK(sm_json_parse((const char *)text, size, "expected.json", &expected) == SEGMAMBA_OK);
    free(text);
    CHECK(expected.type == SM_JSON_OBJECT && expected.count >= 20);
    for (size_t i = 0; i < expected.count; i++)
        check_fixture(expected.members[i].key, &expected.members[i].value);
    sm_json_free(&expected);

    /* The .pt reader keeps the prefix; sm_load_weights strips it. */
    sm_weights w = {0};
    CHECK(sm_load_pt(FIXTURES "state_dict_module.pt", &w) == SEGMAMBA_OK);
    CHECK(sm_weights_find(&w, "module.0.weight") && !sm_weights_find(&w, "0.weight"));
    sm_weights_free(&w);
}

/* ---- names: sm_weights_normalise ---- */

static void add_names(sm_weights *w, const char *const *names, size_t n)
{
    const int64_t shape[1] = {1};
    for (size_t i = 0; i < n; i++) {
        float *data = malloc(sizeof *data);
        CHECK(data && sm_weights_add(w, names[i], 1, shape, data) == SEGMAMBA_OK);
    }
}

static void test_normalise(void)
{
    /* Both wrappers' prefixes, in either order, while every key has one. */
    static const char *const compiled[] = {"module._orig_mod.a.weight", "module._orig_mod.b"};
    static const char *const reversed[] = {"_orig_mod.module.a.weight", "_orig_mod.module.b"};
    static const char *const partial[] = {"module.a", "b"};
    const char *const *cases[] = {compiled, reversed, partial};
    for (int c = 0; c < 3; c++) {
        sm_weights w = {0};
        add_names(&w, cases[c], 2);
        CHECK(sm_weights_normalise(&w) == SEGMAMBA_OK);
        if (c < 2)
            CHECK(sm_weights_find(&w, "a.weight") && sm_weights_find(&w, "b"));
        else
            CHECK(sm_weights_find(&w, "module.a") && sm_weights_find(&w, "b"));
        CHECK(w.nignored == 0);
        sm_weights_free(&w);
    }
    /* nnU-Net's head name, and its deep-supervision heads set aside. */
    static const char *const nnunet[] = {"module.ds_seg_from_dec2.w", "module.out_main_seg.conv.w",
                                         "module.stem.w", "module.ds_seg_from_dec1.b"};
    sm_weights w = {0};
    add_names(&w, nnunet, 4);
    CHECK(sm_weights_normalise(&w) == SEGMAMBA_OK);
    CHECK(w.count == 2 && sm_weights_find(&w, "out.conv.w") && sm_weights_find(&w, "stem.w"));
    CHECK(w.nignored == 2 && strcmp(w.ignored[0], "ds_seg_from_dec2.w") == 0 &&
          strcmp(w.ignored[1], "ds_seg_from_dec1.b") == 0);
    sm_weights_free(&w);
    /* With an "out." head already there, out_main_seg is left for the model
     * checker to call unexpected. */
    static const char *const both[] = {"out.conv.w", "out_main_seg.conv.w"};
    add_names(&w, both, 2);
    CHECK(sm_weights_normalise(&w) == SEGMAMBA_OK);
    CHECK(sm_weights_find(&w, "out.conv.w") && sm_weights_find(&w, "out_main_seg.conv.w"));
    sm_weights_free(&w);
}

/* ---- refusals ---- */

enum reader { WEIGHTS, PT, SAFETENSORS, NPY };

static sm_status load_with(enum reader r, const char *path)
{
    sm_weights w = {0};
    segmamba_array a;
    sm_status st;
    switch (r) {
    case WEIGHTS: st = sm_load_weights(path, &w); break;
    case PT: st = sm_load_pt(path, &w); break;
    case SAFETENSORS: st = sm_load_safetensors(path, &w); break;
    default: st = segmamba_npy_read(path, &a); segmamba_array_free(&a);
    }
    sm_weights_free(&w);
    return st;
}

static void test_refusals(void)
{
    static const struct {
        const char *file;
        enum reader reader;
        sm_status code;
        const char *message;
    } cases[] = {
        {"evil_os_system.pt", WEIGHTS, SEGMAMBA_E_UNSUPPORTED,
         "refusing pickle global 'os.system'"},
        {"whole_model.pt", PT, SEGMAMBA_E_UNSUPPORTED,
         "refusing pickle global 'torch.nn.modules.linear.Linear'"},
        {"byte_storage.pt", PT, SEGMAMBA_E_UNSUPPORTED, "storage type 'torch.ByteStorage'"},
        {"bad_binget.pt", PT, SEGMAMBA_E_FORMAT, "data.pkl byte 12: pickle reads memo entry 200"},
        {"huge_memo_index.pt", PT, SEGMAMBA_E_FORMAT, "memo index 4294967295 is out of range"},
        {"storage_overrun.pt", PT, SEGMAMBA_E_FORMAT, "reaches past the 4 elements of storage '0'"},
        {"strided_overrun.pt", PT, SEGMAMBA_E_FORMAT, "(offset 1) reaches past"},
        {"storage_short.pt", PT, SEGMAMBA_E_FORMAT,
         "claims 100 elements of 4 bytes but its entry holds 16"},
        {"broadcast_view.pt", PT, SEGMAMBA_E_UNSUPPORTED, "broadcast view"},
        {"missing_storage.pt", PT, SEGMAMBA_E_FORMAT, "storage '7' is missing from the archive"},
        {"non_tensor_value.pt", PT, SEGMAMBA_E_FORMAT,
         "state_dict entry 'step' is an int, not a tensor"},
        {"no_stop.pt", PT, SEGMAMBA_E_FORMAT, "pickle ends without STOP"},
        {"truncated_pickle.pt", PT, SEGMAMBA_E_FORMAT, "pickle is truncated"},
        {"truncated.pt", WEIGHTS, SEGMAMBA_E_FORMAT, "no end-of-central-directory record"},
        {"deflated.pt", PT, SEGMAMBA_E_UNSUPPORTED,
         "zip entry 'archive/data.pkl' is compressed (method 8, deflate)"},
        {"big_endian.pt", PT, SEGMAMBA_E_UNSUPPORTED, "big-endian"},
        {"legacy.pt", WEIGHTS, SEGMAMBA_E_FORMAT, "legacy (pre-1.6) torch.save file"},
        {"truncated.safetensors", WEIGHTS, SEGMAMBA_E_FORMAT,
         "tensor 'w' has data_offsets [0, 12] outside the 9 bytes of data"},
        {"header_too_long.safetensors", SAFETENSORS, SEGMAMBA_E_FORMAT,
         "header length 84 is larger than the file (84 bytes)"},
        {"bad_offsets.safetensors", SAFETENSORS, SEGMAMBA_E_FORMAT,
         "[0, 4000] outside the 12 bytes"},
        {"offsets_mismatch.safetensors", SAFETENSORS, SEGMAMBA_E_FORMAT,
         "tensor 'w' spans 12 bytes but its shape and dtype need 8"},
        {"bad_dtype.safetensors", SAFETENSORS, SEGMAMBA_E_UNSUPPORTED,
         "dtype 'F8_E4M3', which is not supported"},
        {"bad_json.safetensors", SAFETENSORS, SEGMAMBA_E_FORMAT,
         "header: invalid JSON at byte 55: expected a string key in object"},
        {"truncated.npy", NPY, SEGMAMBA_E_FORMAT,
         "npy data is 91 bytes but the shape and dtype need 96"},
        {"structured.npy", NPY, SEGMAMBA_E_UNSUPPORTED, "structured arrays are not supported"},
        {"complex.npy", NPY, SEGMAMBA_E_UNSUPPORTED, "npy dtype '<c8' is not supported"},
        {"no_such_file.pt", WEIGHTS, SEGMAMBA_E_IO, "cannot open"},
        {"expected.json", NPY, SEGMAMBA_E_FORMAT, "not an .npy file"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[512];
        snprintf(path, sizeof path, FIXTURES "%s", cases[i].file);
        sm_status st = load_with(cases[i].reader, path);
        const char *msg = segmamba_get_last_error();
        CHECK_MSG(st == cases[i].code && check_contains(msg, path) &&
                      check_contains(msg, cases[i].message),
                  "%s: got %s '%s'", cases[i].file, segmamba_get_status_name(st), msg);
    }
}

/* ---- writers ---- */

static void make_work_dir(void) { mkdir("tests/work", 0777); /* may exist already */ }

static void test_npy_write(void)
{
    static const struct {
        int ndim;
        int64_t shape[3];
        const char *shape_text;
    } cases[] = {
        {0, {0}, "'shape': ()"},
        {1, {5}, "'shape': (5,)"},
        {3, {2, 3, 4}, "'shape': (2, 3, 4)"},
        {2, {0, 3}, "'shape': (0, 3)"},
    };
    float values[24];
    for (int i = 0; i < 24; i++) values[i] = (float)i * 0.5f - 3.0f;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const char *path = WORK "loaders_roundtrip.npy";
        CHECK(segmamba_npy_write(path, cases[c].ndim, cases[c].shape, values) == SEGMAMBA_OK);
        unsigned char *file;
        size_t size;
        CHECK(segmamba_file_read(path, &file, &size) == SEGMAMBA_OK);
        size_t header_len = file[8] | (size_t)file[9] << 8;
        CHECK(memcmp(file, "\x93NUMPY\x01\x00", 8) == 0 && (10 + header_len) % 64 == 0);
        CHECK(file[10 + header_len - 1] == '\n');
        CHECK_MSG(check_contains((const char *)file + 10, cases[c].shape_text), "%s",
                  cases[c].shape_text);
        CHECK(check_contains((const char *)file + 10, "'descr': '<f4', 'fortran_order': False"));
        free(file);
        segmamba_array a;
        CHECK(segmamba_npy_read(path, &a) == SEGMAMBA_OK);
        CHECK(a.ndim == cases[c].ndim);
        int64_t numel = 1;
        for (int d = 0; d < a.ndim; d++) {
            CHECK(a.shape[d] == cases[c].shape[d]);
            numel *= cases[c].shape[d];
        }
        CHECK(a.numel == numel && memcmp(a.data, values, (size_t)numel * sizeof(float)) == 0);
        segmamba_array_free(&a);
        remove(path);
    }
    int64_t bad = -1;
    CHECK(segmamba_npy_write(WORK "bad.npy", 1, &bad, values) == SEGMAMBA_E_ARG);
}

static void test_safetensors_write(void)
{
    const char *path = WORK "loaders_roundtrip.safetensors";
    sm_weights w = {0}, back = {0};
    CHECK(sm_load_weights(FIXTURES "model_bf16.safetensors", &w) == SEGMAMBA_OK);
    CHECK(sm_weights_set_meta(&w, "extra", "line\nbreak \"q\"") == SEGMAMBA_OK);
    CHECK(sm_save_safetensors(path, &w) == SEGMAMBA_OK);
    CHECK(sm_load_safetensors(path, &back) == SEGMAMBA_OK);
    CHECK(back.count == w.count && back.nmeta == w.nmeta);
    for (size_t i = 0; i < w.count; i++) {
        const sm_tensor_entry *a = &w.items[i], *b = sm_weights_find(&back, a->name);
        CHECK_MSG(b && b->ndim == a->ndim && b->numel == a->numel &&
                      memcmp(b->shape, a->shape, sizeof a->shape[0] * (size_t)a->ndim) == 0 &&
                      memcmp(b->data, a->data, (size_t)a->numel * sizeof(float)) == 0,
                  "round trip of '%s'", a->name);
    }
    for (size_t i = 0; i < w.nmeta; i++) {
        const char *v = sm_weights_meta(&back, w.meta[i].key);
        CHECK(v && strcmp(v, w.meta[i].value) == 0);
    }
    /* The header: 8-byte aligned data, metadata first, then tensors sorted,
     * all F32. */
    unsigned char *file;
    size_t size;
    CHECK(segmamba_file_read(path, &file, &size) == SEGMAMBA_OK);
    size_t len = (size_t)file[0] | (size_t)file[1] << 8 | (size_t)file[2] << 16;
    CHECK((8 + len) % 8 == 0);
    sm_json header;
    CHECK(sm_json_parse((const char *)file + 8, len, "written header", &header) == SEGMAMBA_OK);
    CHECK(header.count == w.count + 1 && strcmp(header.members[0].key, "__metadata__") == 0);
    for (size_t i = 2; i < header.count; i++)
        CHECK(strcmp(header.members[i - 1].key, header.members[i].key) < 0);
    for (size_t i = 1; i < header.count; i++)
        CHECK(strcmp(sm_json_get(&header.members[i].value, "dtype")->string, "F32") == 0);
    sm_json_free(&header);
    free(file);
    remove(path);
    sm_weights_free(&back);
    sm_weights_free(&w);
}

/* ---- the memory cap ---- */

static void test_memory_cap(void)
{
    static const struct {
        const char *text;
        int ok;
        uint64_t bytes;
    } sizes[] = {
        {"0", 1, 0},
        {"1000000", 1, 1000000},
        {"64K", 1, 65536},
        {"512M", 1, 512ull << 20},
        {"8G", 1, 8ull << 30},
        {"2T", 1, 2ull << 40},
        {"8GiB", 1, 8ull << 30},
        {"8GB", 1, 8ull << 30},
        {"100B", 1, 100},
        {"", 0, 0},
        {"G", 0, 0},
        {"-1", 0, 0},
        {"1.5G", 0, 0},
        {"8 G", 0, 0},
        {"8Gx", 0, 0},
        {"8P", 0, 0},
        {"99999999999999999999", 0, 0},
        {"16777216T", 0, 0},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        uint64_t v = 12345;
        int ok = sm_memory_parse(sizes[i].text, &v);
        CHECK_MSG(ok == sizes[i].ok && (!ok || v == sizes[i].bytes), "'%s': %d %llu", sizes[i].text,
                  ok, (unsigned long long)v);
    }
    /* The API's cap wins over the environment; 0 restores the default. */
    segmamba_array a;
    segmamba_set_max_memory(100);
    sm_status st = segmamba_npy_read(FIXTURES "f4.npy", &a);
    CHECK_MSG(st == SEGMAMBA_E_NOMEM &&
                  check_contains(segmamba_get_last_error(),
                                 FIXTURES "f4.npy: reading the file would need "
                                          "225 bytes, more than the memory limit of 100 "
                                          "bytes"),
              "%s", segmamba_get_last_error());
    segmamba_array_free(&a);
    /* 225 bytes read, 24 floats (96 bytes) converted. */
    segmamba_set_max_memory(225);
    CHECK(segmamba_npy_read(FIXTURES "f4.npy", &a) == SEGMAMBA_OK);
    segmamba_array_free(&a);
    segmamba_set_max_memory(0);
    setenv("SEGMAMBA_MAX_MEMORY", "200", 1);
    CHECK(segmamba_npy_read(FIXTURES "f4.npy", &a) == SEGMAMBA_E_NOMEM);
    segmamba_array_free(&a);
    setenv("SEGMAMBA_MAX_MEMORY", "12Q", 1);
    CHECK(segmamba_npy_read(FIXTURES "f4.npy", &a) == SEGMAMBA_E_ARG &&
          check_contains(segmamba_get_last_error(), "SEGMAMBA_MAX_MEMORY='12Q' is not a size"));
    segmamba_array_free(&a);
    unsetenv("SEGMAMBA_MAX_MEMORY");
    CHECK(sm_memory_cap() > 0);
}

/* ---- mutated files: any status, but no crash, leak or hang ---- */

/* A 32-bit LCG kept in 64 bits so that nothing wraps. */
static uint32_t next_random(uint64_t *state)
{
    *state = (*state * 1664525u + 1013904223u) & 0xffffffffu;
    return (uint32_t)(*state >> 8);
}

static void mutate_and_load(const char *fixture, enum reader reader, size_t from, size_t to,
                            int rounds)
{
    unsigned char *file;
    size_t size;
    char path[512];
    snprintf(path, sizeof path, FIXTURES "%s", fixture);
    CHECK(segmamba_file_read(path, &file, &size) == SEGMAMBA_OK);
    if (to > size) to = size;
    const char *out = WORK "loaders_mutated.bin";
    uint64_t state = 12345;
    int failures = 0;
    for (int r = 0; r < rounds; r++) {
        unsigned char *copy = malloc(size);
        memcpy(copy, file, size);
        int flips = 1 + (int)(next_random(&state) % 3);
        for (int f = 0; f < flips; f++) {
            size_t at = from + next_random(&state) % (to - from);
            static const unsigned char values[] = {0x00, 0xff, 0x7f, 0x80, '(', 't', 'h', 'q', 'R'};
            copy[at] = next_random(&state) % 2 ? values[next_random(&state) % sizeof values]
                                               : (unsigned char)next_random(&state);
        }
        const void *parts[1] = {copy};
        size_t sizes[1] = {size};
        CHECK(sm_file_write_atomic(out, parts, sizes, 1) == SEGMAMBA_OK);
        sm_status st = load_with(reader, out);
        failures += st != SEGMAMBA_OK;
        if (st != SEGMAMBA_OK) CHECK(check_contains(segmamba_get_last_error(), out));
        free(copy);
    }
    CHECK_MSG(failures > 0, "%s: no mutation was refused", fixture);
    remove(out);
    free(file);
}

static void test_mutations(void)
{
    /* handmade.pt: data.pkl occupies bytes [64, 64 + pickle length). */
    mutate_and_load("handmade.pt", PT, 64, 64 + 200, 1500);
    mutate_and_load("state_dict_proto4.pt", PT, 64, 1200, 1500);
    mutate_and_load("state_dict_zip64.pt", PT, 0, 1u << 20, 1500);
    mutate_and_load("model_f16.safetensors", SAFETENSORS, 0, 600, 1500);
    mutate_and_load("f4_fortran.npy", NPY, 0, 128, 800);
}

int main(void)
{
    make_work_dir();
    test_expected_values();
    test_normalise();
    test_refusals();
    test_npy_write();
    test_safetensors_write();
    test_memory_cap();
    test_mutations();
    return check_report("test_checkpoint");
}
