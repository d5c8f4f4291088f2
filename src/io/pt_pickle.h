/* Private to the torch.save reader: the restricted unpickler (pt_pickle.c)
 * and the archive reader above it (pt.c), which sets the machine up on
 * <prefix>/data.pkl, runs it and turns the dict it builds into weights.
 * Nothing else includes it. */
#ifndef SM_IO_PT_PICKLE_H
#define SM_IO_PT_PICKLE_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "io/binary.h"
#include "io/weights.h"
#include "io/zip.h"

/* ---- values ---- */

typedef enum pk_kind {
    PK_NONE,
    PK_BOOL,
    PK_INT,
    PK_FLOAT,
    PK_STRING,
    PK_TUPLE,
    PK_LIST,
    PK_DICT,
    PK_GLOBAL,
    PK_STORAGE,
    PK_TENSOR
} pk_kind;

/* One of the globals the machine allows (pt_pickle.c's list). */
typedef struct pk_global pk_global;

typedef struct pk_value pk_value;

typedef struct pk_tensor {
    const pk_value *storage;
    int64_t offset; /* in elements */
    int ndim;
    int64_t shape[SM_MAX_DIMS], stride[SM_MAX_DIMS];
} pk_tensor;

struct pk_value {
    pk_kind kind;
    union {
        int64_t integer; /* BOOL, INT */
        double real;
        struct {
            char *bytes; /* NUL-terminated */
            size_t len;
        } str;
        struct { /* TUPLE, LIST; DICT as key, value, key, value, ... */
            pk_value **items;
            size_t count, cap;
        } seq;
        const pk_global *global;
        struct {
            sm_dtype dtype;
            uint64_t numel;
            const unsigned char *bytes; /* inside the archive */
            const pk_value *key;
        } storage;
        pk_tensor *tensor;
    } u;
};

/* ---- the machine ---- */

typedef struct vm {
    const char *path;
    const sm_zip *zip;
    const char *prefix; /* the archive's top folder: entries are <prefix>/... */
    const unsigned char *code;
    size_t len, pos, op_pos;
    /* Every value made is listed here and freed at the end, whatever points
     * to it: memo entries share values and a pickle may build cycles. */
    pk_value **objects;
    size_t nobjects, objects_cap;
    pk_value **stack;
    size_t depth, stack_cap;
    size_t *marks; /* stack depths at each MARK */
    size_t nmarks, marks_cap;
    pk_value **memo;
    size_t memo_len, memo_cap, memo_count;
    /* Immutable values that need no allocation each time. */
    pk_value none, yes, no, empty_tuple;
} vm;

/* Evaluates m->code[0, m->len) up to STOP. The caller sets path, zip,
 * prefix, code and len, and the kinds of the immutable values (none, yes,
 * no, empty_tuple); *result is the object STOP pops, owned by m. */
sm_status sm_pk_run(vm *m, pk_value **result);

/* Frees every value m made, whatever points to it, and its stacks. */
void sm_pk_free(vm *m);

/* For messages: "entry 'x' is an int". */
const char *sm_pk_kind_name(pk_kind k);

/* Whether v is the string s. */
int sm_pk_is_string(const pk_value *v, const char *s);

/* The entry named <prefix>/<dir><leaf>, or NULL. */
const sm_zip_entry *sm_pk_find_member(const sm_zip *zip, const char *prefix, const char *dir,
                                      const char *leaf);

#endif
