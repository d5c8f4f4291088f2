/* The restricted unpickler of torch.save files (pt_pickle.h; the archive
 * reader pt.c runs it): a tiny machine that knows only the opcodes and
 * globals a state_dict uses. It builds plain values, looks storages up in
 * the archive by the names the pickle gives them, and never calls anything
 * named by the file. */
#include "io/pt_pickle.h"

#include <stdlib.h>
#include <string.h>

#include "io/binary.h"
#include "io/zip.h"

/* ---- values ---- */

typedef enum pk_callable {
    CALL_ORDERED_DICT,
    CALL_REBUILD_TENSOR,
    CALL_REBUILD_PARAMETER,
    CALL_NONE /* a storage class: named in persistent ids, never called */
} pk_callable;

struct pk_global {
    const char *module, *name;
    pk_callable call;
    sm_dtype dtype; /* storage classes */
};

/* The only globals a state_dict pickle names. Integer storages hold
 * counters such as BatchNorm's num_batches_tracked. */
static const pk_global allowed_globals[] = {
    {"collections", "OrderedDict", CALL_ORDERED_DICT, SM_DT_F32},
    {"torch._utils", "_rebuild_tensor_v2", CALL_REBUILD_TENSOR, SM_DT_F32},
    {"torch._utils", "_rebuild_parameter", CALL_REBUILD_PARAMETER, SM_DT_F32},
    {"torch", "FloatStorage", CALL_NONE, SM_DT_F32},
    {"torch", "HalfStorage", CALL_NONE, SM_DT_F16},
    {"torch", "BFloat16Storage", CALL_NONE, SM_DT_BF16},
    {"torch", "DoubleStorage", CALL_NONE, SM_DT_F64},
    {"torch", "LongStorage", CALL_NONE, SM_DT_I64},
    {"torch", "IntStorage", CALL_NONE, SM_DT_I32},
};

/* For messages: "entry 'x' is an int". */
const char *sm_pk_kind_name(pk_kind k)
{
    static const char *names[] = {"None",     "a bool",    "an int",  "a float",
                                  "a string", "a tuple",   "a list",  "a dict",
                                  "a global", "a storage", "a tensor"};
    return names[k];
}

/* ---- the machine ---- */

/* Adds the position of the failing opcode to the message just recorded. */
static sm_status at_opcode(const vm *m, sm_status code)
{
    return sm_fail_wrap(code, "%s: data.pkl byte %zu", m->path, m->op_pos);
}

static sm_status no_memory(const vm *m)
{
    return at_opcode(m, sm_fail(SEGMAMBA_E_NOMEM, "out of memory evaluating the pickle"));
}

static void free_value(pk_value *v)
{
    if (v->kind == PK_STRING) free(v->u.str.bytes);
    if (v->kind == PK_TUPLE || v->kind == PK_LIST || v->kind == PK_DICT) free(v->u.seq.items);
    if (v->kind == PK_TENSOR) free(v->u.tensor);
    free(v);
}

void sm_pk_free(vm *m)
{
    for (size_t i = 0; i < m->nobjects; i++) free_value(m->objects[i]);
    free(m->objects);
    free(m->stack);
    free(m->marks);
    free(m->memo);
}

static pk_value *new_value(vm *m, pk_kind kind)
{
    pk_value **objects = sm_grow(m->objects, &m->objects_cap, m->nobjects + 1, sizeof *objects);
    if (!objects) return NULL;
    m->objects = objects;
    pk_value *v = calloc(1, sizeof *v);
    if (!v) return NULL;
    v->kind = kind;
    m->objects[m->nobjects++] = v;
    return v;
}

static sm_status push(vm *m, pk_value *v)
{
    pk_value **stack = sm_grow(m->stack, &m->stack_cap, m->depth + 1, sizeof *stack);
    if (!stack) return no_memory(m);
    m->stack = stack;
    m->stack[m->depth++] = v;
    return SEGMAMBA_OK;
}

/* Values below the last MARK are out of reach until the mark is popped. */
static size_t fence(const vm *m) { return m->nmarks ? m->marks[m->nmarks - 1] : 0; }

static sm_status pop(vm *m, pk_value **v)
{
    if (m->depth <= fence(m))
        return at_opcode(m, sm_fail(SEGMAMBA_E_FORMAT, "pickle stack underflow"));
    *v = m->stack[--m->depth];
    return SEGMAMBA_OK;
}

static sm_status peek(vm *m, pk_value **v)
{
    if (m->depth <= fence(m))
        return at_opcode(m, sm_fail(SEGMAMBA_E_FORMAT, "pickle stack underflow"));
    *v = m->stack[m->depth - 1];
    return SEGMAMBA_OK;
}

static sm_status push_mark(vm *m)
{
    size_t *marks = sm_grow(m->marks, &m->marks_cap, m->nmarks + 1, sizeof *marks);
    if (!marks) return no_memory(m);
    m->marks = marks;
    m->marks[m->nmarks++] = m->depth;
    return SEGMAMBA_OK;
}

/* Removes the last mark; the values pushed since are stack[*base, depth). */
static sm_status pop_mark(vm *m, size_t *base)
{
    if (m->nmarks == 0)
        return at_opcode(
            m, sm_fail(SEGMAMBA_E_FORMAT, "pickle opcode needs a MARK but there is none"));
    *base = m->marks[--m->nmarks];
    return SEGMAMBA_OK;
}

static sm_status seq_append(vm *m, pk_value *seq, pk_value *item)
{
    pk_value **items =
        sm_grow(seq->u.seq.items, &seq->u.seq.cap, seq->u.seq.count + 1, sizeof *items);
    if (!items) return no_memory(m);
    seq->u.seq.items = items;
    items[seq->u.seq.count++] = item;
    return SEGMAMBA_OK;
}

/* Moves stack[base, depth) into a new tuple that replaces them. */
static sm_status make_tuple(vm *m, size_t base)
{
    size_t n = m->depth - base;
    if (n == 0) return push(m, &m->empty_tuple);
    pk_value *t = new_value(m, PK_TUPLE);
    if (!t) return no_memory(m);
    t->u.seq.items = malloc(n * sizeof *t->u.seq.items);
    if (!t->u.seq.items) return no_memory(m);
    memcpy(t->u.seq.items, m->stack + base, n * sizeof *t->u.seq.items);
    t->u.seq.count = t->u.seq.cap = n;
    m->depth = base;
    return push(m, t);
}

/* Reads the next n bytes of opcode argument. */
static sm_status take(vm *m, uint64_t n, const unsigned char **p)
{
    if (n > m->len - m->pos)
        return at_opcode(m, sm_fail(SEGMAMBA_E_FORMAT,
                                    "pickle is truncated: opcode needs %llu "
                                    "bytes, %zu remain",
                                    (unsigned long long)n, m->len - m->pos));
    *p = m->code + m->pos;
    m->pos += (size_t)n;
    return SEGMAMBA_OK;
}

/* ---- opcodes ---- */

enum {
    OP_MARK = '(',
    OP_STOP = '.',
    OP_BININT = 'J',
    OP_BININT1 = 'K',
    OP_BININT2 = 'M',
    OP_NONE = 'N',
    OP_BINPERSID = 'Q',
    OP_REDUCE = 'R',
    OP_BINSTRING = 'T',
    OP_SHORT_BINSTRING = 'U',
    OP_BINUNICODE = 'X',
    OP_APPEND = 'a',
    OP_BUILD = 'b',
    OP_GLOBAL = 'c',
    OP_APPENDS = 'e',
    OP_BINGET = 'h',
    OP_LONG_BINGET = 'j',
    OP_EMPTY_LIST = ']',
    OP_BINPUT = 'q',
    OP_LONG_BINPUT = 'r',
    OP_SETITEM = 's',
    OP_TUPLE = 't',
    OP_EMPTY_TUPLE = ')',
    OP_SETITEMS = 'u',
    OP_BINFLOAT = 'G',
    OP_EMPTY_DICT = '}',
    OP_PROTO = 0x80,
    OP_TUPLE1 = 0x85,
    OP_TUPLE2 = 0x86,
    OP_TUPLE3 = 0x87,
    OP_NEWTRUE = 0x88,
    OP_NEWFALSE = 0x89,
    OP_LONG1 = 0x8a,
    OP_SHORT_BINUNICODE = 0x8c,
    OP_BINUNICODE8 = 0x8d,
    OP_STACK_GLOBAL = 0x93,
    OP_MEMOIZE = 0x94,
    OP_FRAME = 0x95,
};

static sm_status op_proto(vm *m)
{
    const unsigned char *p = NULL;
    SM_TRY(take(m, 1, &p));
    if (p[0] > 5)
        return at_opcode(
            m, sm_fail(SEGMAMBA_E_UNSUPPORTED, "pickle protocol %u is newer than 5", p[0]));
    return SEGMAMBA_OK;
}

static sm_status push_int(vm *m, int64_t value)
{
    pk_value *v = new_value(m, PK_INT);
    if (!v) return no_memory(m);
    v->u.integer = value;
    return push(m, v);
}

static sm_status op_int(vm *m, unsigned op)
{
    const unsigned char *p = NULL;
    switch (op) {
    case OP_BININT1: SM_TRY(take(m, 1, &p)); return push_int(m, p[0]);
    case OP_BININT2: SM_TRY(take(m, 2, &p)); return push_int(m, sm_le16(p));
    case OP_BININT: SM_TRY(take(m, 4, &p)); return push_int(m, sm_sign_extend(sm_le32(p), 4));
    }
    /* LONG1: a byte count, then that many bytes of little-endian two's
     * complement. */
    SM_TRY(take(m, 1, &p));
    unsigned n = p[0];
    if (n > 8)
        return at_opcode(m, sm_fail(SEGMAMBA_E_UNSUPPORTED,
                                    "pickle integer of %u bytes is wider "
                                    "than 64 bits",
                                    n));
    SM_TRY(take(m, n, &p));
    return push_int(m, n ? sm_sign_extend(sm_load_uint(p, n, 0), n) : 0);
}

static sm_status op_float(vm *m)
{
    const unsigned char *p = NULL;
    SM_TRY(take(m, 8, &p));
    uint64_t bits = sm_load_uint(p, 8, 1); /* BINFLOAT is big-endian */
    pk_value *v = new_value(m, PK_FLOAT);
    if (!v) return no_memory(m);
    memcpy(&v->u.real, &bits, sizeof v->u.real);
    return push(m, v);
}

/* The text and byte string opcodes differ only in the width of the length
 * that precedes the bytes. */
static sm_status op_string(vm *m, unsigned op)
{
    const unsigned char *p = NULL;
    uint64_t n;
    switch (op) {
    case OP_SHORT_BINUNICODE:
    case OP_SHORT_BINSTRING:
        SM_TRY(take(m, 1, &p));
        n = p[0];
        break;
    case OP_BINUNICODE8:
        SM_TRY(take(m, 8, &p));
        n = sm_le64(p);
        break;
    default: /* BINUNICODE, BINSTRING */
        SM_TRY(take(m, 4, &p));
        n = sm_le32(p);
        if (op == OP_BINSTRING && n > INT32_MAX)
            return at_opcode(m, sm_fail(SEGMAMBA_E_FORMAT, "pickle string has a negative length"));
    }
    SM_TRY(take(m, n, &p));
    pk_value *v = new_value(m, PK_STRING);
    if (!v) return no_memory(m);
    v->u.str.bytes = malloc((size_t)n + 1);
    if (!v->u.str.bytes) return no_memory(m);
    memcpy(v->u.str.bytes, p, (size_t)n);
    v->u.str.bytes[n] = 0;
    v->u.str.len = (size_t)n;
    return push(m, v);
}

/* The memo is indexed by numbers the pickle chooses; a real pickler numbers
 * them from 0 upwards, so an index past the pickle's length is refused
 * rather than allowed to size an allocation. */
static sm_status memo_put(vm *m, uint64_t index)
{
    pk_value *v = NULL;
    SM_TRY(peek(m, &v));
    if (index >= m->len)
        return at_opcode(m, sm_fail(SEGMAMBA_E_FORMAT, "pickle memo index %llu is out of range",
                                    (unsigned long long)index));
    if (index >= m->memo_len) {
        pk_value **memo = sm_grow(m->memo, &m->memo_cap, (size_t)index + 1, sizeof *memo);
        if (!memo) return no_memory(m);
        m->memo = memo;
        memset(memo + m->memo_len, 0, ((size_t)index + 1 - m->memo_len) * sizeof *memo);
        m->memo_len = (size_t)index + 1;
    }
    if (!m->memo[index]) m->memo_count++;
    m->memo[index] = v;
    return SEGMAMBA_OK;
}

static sm_status op_memo(vm *m, unsigned op)
{
    const unsigned char *p = NULL;
    switch (op) {
    case OP_BINPUT: SM_TRY(take(m, 1, &p)); return memo_put(m, p[0]);
    case OP_LONG_BINPUT: SM_TRY(take(m, 4, &p)); return memo_put(m, sm_le32(p));
    case OP_MEMOIZE: return memo_put(m, m->memo_count);
    }
    uint64_t index;
    if (op == OP_BINGET) {
        SM_TRY(take(m, 1, &p));
        index = p[0];
    } else {
        SM_TRY(take(m, 4, &p));
        index = sm_le32(p);
    }
    if (index >= m->memo_len || !m->memo[index])
        return at_opcode(m, sm_fail(SEGMAMBA_E_FORMAT,
                                    "pickle reads memo entry %llu, which was "
                                    "never stored",
                                    (unsigned long long)index));
    return push(m, m->memo[index]);
}

/* Finds the values a SETITEM(S) or APPEND(S) consumes: the last n, or all
 * since the last MARK for the batch forms. The container they go into sits
 * just below them and must itself be above any remaining mark. */
static sm_status operands(vm *m, int batch, size_t n, size_t *base)
{
    if (batch)
        SM_TRY(pop_mark(m, base));
    else
        *base = m->depth >= n ? m->depth - n : 0;
    if (*base <= fence(m))
        return at_opcode(m, sm_fail(SEGMAMBA_E_FORMAT, "pickle stack underflow"));
    return SEGMAMBA_OK;
}

static sm_status op_setitems(vm *m, unsigned op)
{
    size_t base = 0;
    SM_TRY(operands(m, op == OP_SETITEMS, 2, &base));
    pk_value *dict = m->stack[base - 1];
    if (dict->kind != PK_DICT || (m->depth - base) % 2 != 0)
        return at_opcode(m, sm_fail(SEGMAMBA_E_FORMAT,
                                    "pickle SETITEM(S) on %s, or without "
                                    "key/value pairs",
                                    sm_pk_kind_name(dict->kind)));
    for (size_t i = base; i < m->depth; i++) SM_TRY(seq_append(m, dict, m->stack[i]));
    m->depth = base;
    return SEGMAMBA_OK;
}

static sm_status op_appends(vm *m, unsigned op)
{
    size_t base = 0;
    SM_TRY(operands(m, op == OP_APPENDS, 1, &base));
    pk_value *list = m->stack[base - 1];
    if (list->kind != PK_LIST)
        return at_opcode(
            m, sm_fail(SEGMAMBA_E_FORMAT, "pickle APPEND(S) on %s", sm_pk_kind_name(list->kind)));
    for (size_t i = base; i < m->depth; i++) SM_TRY(seq_append(m, list, m->stack[i]));
    m->depth = base;
    return SEGMAMBA_OK;
}

static int names_equal(const char *want, const unsigned char *s, size_t n)
{
    return strlen(want) == n && memcmp(want, s, n) == 0;
}

/* Looks a global up in the allowlist; anything else is refused here, before
 * the pickle can use it. */
static sm_status push_global(vm *m, const unsigned char *module, size_t module_len,
                             const unsigned char *name, size_t name_len)
{
    for (size_t i = 0; i < sizeof allowed_globals / sizeof allowed_globals[0]; i++) {
        const pk_global *g = &allowed_globals[i];
        if (names_equal(g->module, module, module_len) && names_equal(g->name, name, name_len)) {
            pk_value *v = new_value(m, PK_GLOBAL);
            if (!v) return no_memory(m);
            v->u.global = g;
            return push(m, v);
        }
    }
    int shown_module = module_len > 200 ? 200 : (int)module_len;
    int shown_name = name_len > 200 ? 200 : (int)name_len;
    if (names_equal("torch", module, module_len) && name_len > 7 &&
        memcmp(name + name_len - 7, "Storage", 7) == 0)
        return at_opcode(m, sm_fail(SEGMAMBA_E_UNSUPPORTED,
                                    "tensor storage type 'torch.%.*s' is "
                                    "not supported: weights must be float32, float16, bfloat16 "
                                    "or float64",
                                    shown_name, name));
    return at_opcode(m, sm_fail(SEGMAMBA_E_UNSUPPORTED,
                                "refusing pickle global '%.*s.%.*s': only "
                                "state_dict data (tensors in a dict) is loaded; if this file holds "
                                "a whole model, save model.state_dict() instead",
                                shown_module, module, shown_name, name));
}

/* GLOBAL: "module\nname\n" inline in the opcode stream. */
static sm_status op_global(vm *m)
{
    const unsigned char *start = m->code + m->pos, *end = m->code + m->len;
    const unsigned char *nl1 = memchr(start, '\n', (size_t)(end - start));
    const unsigned char *nl2 = nl1 ? memchr(nl1 + 1, '\n', (size_t)(end - nl1 - 1)) : NULL;
    if (!nl2)
        return at_opcode(m,
                         sm_fail(SEGMAMBA_E_FORMAT, "pickle is truncated inside a GLOBAL opcode"));
    m->pos = (size_t)(nl2 + 1 - m->code);
    return push_global(m, start, (size_t)(nl1 - start), nl1 + 1, (size_t)(nl2 - nl1 - 1));
}

static sm_status op_stack_global(vm *m)
{
    pk_value *module = NULL, *name = NULL;
    SM_TRY(pop(m, &name));
    SM_TRY(pop(m, &module));
    if (module->kind != PK_STRING || name->kind != PK_STRING)
        return at_opcode(m, sm_fail(SEGMAMBA_E_FORMAT, "pickle STACK_GLOBAL needs two strings"));
    return push_global(m, (const unsigned char *)module->u.str.bytes, module->u.str.len,
                       (const unsigned char *)name->u.str.bytes, name->u.str.len);
}

/* ---- storages and tensors ---- */

/* The entry named <prefix>/<dir><leaf>, or NULL. */
const sm_zip_entry *sm_pk_find_member(const sm_zip *zip, const char *prefix, const char *dir,
                                      const char *leaf)
{
    size_t np = strlen(prefix), nd = strlen(dir);
    for (size_t i = 0; i < zip->count; i++) {
        const char *name = zip->entries[i].name;
        if (strncmp(name, prefix, np) == 0 && name[np] == '/' &&
            strncmp(name + np + 1, dir, nd) == 0 && strcmp(name + np + 1 + nd, leaf) == 0)
            return &zip->entries[i];
    }
    return NULL;
}

int sm_pk_is_string(const pk_value *v, const char *s)
{
    return v->kind == PK_STRING &&
           names_equal(s, (const unsigned char *)v->u.str.bytes, v->u.str.len);
}

/* BINPERSID: torch names each storage by the persistent id
 * ('storage', StorageClass, key, location, numel); its bytes are the entry
 * <prefix>/data/<key>. */
static sm_status op_persistent_id(vm *m)
{
    pk_value *pid = NULL;
    SM_TRY(pop(m, &pid));
    pk_value **f = pid->kind == PK_TUPLE && pid->u.seq.count == 5 ? pid->u.seq.items : NULL;
    if (!f || !sm_pk_is_string(f[0], "storage") || f[1]->kind != PK_GLOBAL ||
        f[1]->u.global->call != CALL_NONE || f[2]->kind != PK_STRING || f[4]->kind != PK_INT ||
        f[4]->u.integer < 0)
        return at_opcode(m, sm_fail(SEGMAMBA_E_FORMAT,
                                    "pickle persistent id is not "
                                    "('storage', StorageClass, key, location, numel)"));
    const char *key = f[2]->u.str.bytes;
    const sm_zip_entry *e = sm_pk_find_member(m->zip, m->prefix, "data/", key);
    if (!e)
        return at_opcode(m, sm_fail(SEGMAMBA_E_FORMAT,
                                    "storage '%s' is missing from the archive "
                                    "(no entry %s/data/%s)",
                                    key, m->prefix, key));
    const unsigned char *bytes;
    size_t size;
    SM_TRY(sm_zip_entry_data(m->zip, e, &bytes, &size));
    sm_dtype dtype = f[1]->u.global->dtype;
    uint64_t need;
    if (!sm_mul_ok((uint64_t)f[4]->u.integer, sm_dtype_size(dtype), &need) || need > size)
        return at_opcode(m, sm_fail(SEGMAMBA_E_FORMAT,
                                    "storage '%s' claims %lld elements of %zu "
                                    "bytes but its entry holds %zu bytes",
                                    key, (long long)f[4]->u.integer, sm_dtype_size(dtype), size));
    pk_value *v = new_value(m, PK_STORAGE);
    if (!v) return no_memory(m);
    v->u.storage.dtype = dtype;
    v->u.storage.numel = (uint64_t)f[4]->u.integer;
    v->u.storage.bytes = bytes;
    v->u.storage.key = f[2];
    return push(m, v);
}

/* Copies a tuple of non-negative ints (a size or a stride). */
static int read_dims(const pk_value *t, int64_t *dims, int *ndim)
{
    if (t->kind != PK_TUPLE || t->u.seq.count > SM_MAX_DIMS) return 0;
    for (size_t i = 0; i < t->u.seq.count; i++) {
        const pk_value *d = t->u.seq.items[i];
        if (d->kind != PK_INT || d->u.integer < 0) return 0;
        dims[i] = d->u.integer;
    }
    *ndim = (int)t->u.seq.count;
    return 1;
}

/* _rebuild_tensor_v2(storage, offset, size, stride, requires_grad,
 * backward_hooks[, metadata]): a view into a storage. Every element the view
 * reaches must lie inside the storage. */
static sm_status rebuild_tensor(vm *m, const pk_value *args, pk_value **out)
{
    pk_value **a = args->u.seq.items;
    pk_tensor t = {0};
    int stride_dims = -1;
    if (args->u.seq.count < 6 || args->u.seq.count > 7 || a[0]->kind != PK_STORAGE ||
        a[1]->kind != PK_INT || a[1]->u.integer < 0)
        return at_opcode(m, sm_fail(SEGMAMBA_E_FORMAT, "_rebuild_tensor_v2 arguments are not "
                                                       "(storage, offset, size, stride, ...)"));
    if (!read_dims(a[2], t.shape, &t.ndim) || !read_dims(a[3], t.stride, &stride_dims) ||
        stride_dims != t.ndim)
        return at_opcode(m, sm_fail(SEGMAMBA_E_UNSUPPORTED,
                                    "tensor size and stride must be "
                                    "tuples of non-negative ints of one length, at most %d",
                                    SM_MAX_DIMS));
    t.storage = a[0];
    t.offset = a[1]->u.integer;
    const char *key = t.storage->u.storage.key->u.str.bytes;
    uint64_t numel_storage = t.storage->u.storage.numel, last;
    int64_t numel;
    if (!sm_numel_ok(t.ndim, t.shape, &numel))
        return at_opcode(m, sm_fail(SEGMAMBA_E_FORMAT,
                                    "tensor over storage '%s' has a size whose "
                                    "element count overflows",
                                    key));
    if (numel > 0 && (!sm_view_extent_ok(t.ndim, t.shape, t.stride, &last) ||
                      !sm_range_ok(numel_storage, (uint64_t)t.offset, last + 1)))
        return at_opcode(m, sm_fail(SEGMAMBA_E_FORMAT,
                                    "tensor view (offset %lld) reaches past the "
                                    "%llu elements of storage '%s'",
                                    (long long)t.offset, (unsigned long long)numel_storage, key));
    /* Zero strides could make a tiny storage claim a huge tensor; a saved
     * parameter never has more elements than its storage. */
    if ((uint64_t)numel > numel_storage)
        return at_opcode(m, sm_fail(SEGMAMBA_E_UNSUPPORTED,
                                    "tensor has %lld elements but its "
                                    "storage '%s' only %llu (a broadcast view); save a contiguous "
                                    "copy",
                                    (long long)numel, key, (unsigned long long)numel_storage));
    pk_value *v = new_value(m, PK_TENSOR);
    if (!v) return no_memory(m);
    v->u.tensor = malloc(sizeof t);
    if (!v->u.tensor) return no_memory(m);
    *v->u.tensor = t;
    *out = v;
    return SEGMAMBA_OK;
}

static sm_status op_reduce(vm *m)
{
    pk_value *args = NULL, *callable = NULL, *result = NULL;
    SM_TRY(pop(m, &args));
    SM_TRY(pop(m, &callable));
    if (callable->kind != PK_GLOBAL || args->kind != PK_TUPLE)
        return at_opcode(m, sm_fail(SEGMAMBA_E_FORMAT, "pickle REDUCE needs a global and a tuple"));
    const pk_global *g = callable->u.global;
    switch (g->call) {
    case CALL_ORDERED_DICT:
        if (args->u.seq.count != 0)
            return at_opcode(m,
                             sm_fail(SEGMAMBA_E_UNSUPPORTED, "OrderedDict built from arguments"));
        result = new_value(m, PK_DICT);
        if (!result) return no_memory(m);
        break;
    case CALL_REBUILD_TENSOR: SM_TRY(rebuild_tensor(m, args, &result)); break;
    case CALL_REBUILD_PARAMETER:
        if (args->u.seq.count < 1 || args->u.seq.items[0]->kind != PK_TENSOR)
            return at_opcode(m, sm_fail(SEGMAMBA_E_FORMAT, "_rebuild_parameter without a tensor"));
        result = args->u.seq.items[0];
        break;
    case CALL_NONE:
        return at_opcode(m, sm_fail(SEGMAMBA_E_UNSUPPORTED,
                                    "pickle calls %s.%s, which a "
                                    "state_dict never does",
                                    g->module, g->name));
    }
    return push(m, result);
}

/* BUILD sets an object's state. state_dicts are OrderedDicts whose state
 * carries a _metadata attribute (module versions), of no use here. */
static sm_status op_build(vm *m)
{
    pk_value *state = NULL, *target = NULL;
    SM_TRY(pop(m, &state));
    SM_TRY(peek(m, &target));
    if (target->kind != PK_DICT)
        return at_opcode(m, sm_fail(SEGMAMBA_E_UNSUPPORTED, "pickle BUILD on %s",
                                    sm_pk_kind_name(target->kind)));
    return SEGMAMBA_OK;
}

static sm_status step(vm *m, unsigned op)
{
    const unsigned char *p = NULL;
    pk_value *v = NULL;
    size_t base = 0;
    switch (op) {
    case OP_PROTO: return op_proto(m);
    case OP_FRAME: return take(m, 8, &p); /* framing only groups opcodes */
    case OP_MARK: return push_mark(m);
    case OP_EMPTY_TUPLE: return push(m, &m->empty_tuple);
    case OP_NONE: return push(m, &m->none);
    case OP_NEWTRUE: return push(m, &m->yes);
    case OP_NEWFALSE: return push(m, &m->no);
    case OP_EMPTY_DICT:
    case OP_EMPTY_LIST:
        v = new_value(m, op == OP_EMPTY_DICT ? PK_DICT : PK_LIST);
        return v ? push(m, v) : no_memory(m);
    case OP_TUPLE: SM_TRY(pop_mark(m, &base)); return make_tuple(m, base);
    case OP_TUPLE1:
    case OP_TUPLE2:
    case OP_TUPLE3: {
        size_t n = op - OP_TUPLE1 + 1;
        if (m->depth < fence(m) + n)
            return at_opcode(m, sm_fail(SEGMAMBA_E_FORMAT, "pickle stack underflow"));
        return make_tuple(m, m->depth - n);
    }
    case OP_BININT:
    case OP_BININT1:
    case OP_BININT2:
    case OP_LONG1: return op_int(m, op);
    case OP_BINFLOAT: return op_float(m);
    case OP_BINUNICODE:
    case OP_SHORT_BINUNICODE:
    case OP_BINUNICODE8:
    case OP_BINSTRING:
    case OP_SHORT_BINSTRING: return op_string(m, op);
    case OP_BINPUT:
    case OP_LONG_BINPUT:
    case OP_MEMOIZE:
    case OP_BINGET:
    case OP_LONG_BINGET: return op_memo(m, op);
    case OP_SETITEM:
    case OP_SETITEMS: return op_setitems(m, op);
    case OP_APPEND:
    case OP_APPENDS: return op_appends(m, op);
    case OP_GLOBAL: return op_global(m);
    case OP_STACK_GLOBAL: return op_stack_global(m);
    case OP_REDUCE: return op_reduce(m);
    case OP_BUILD: return op_build(m);
    case OP_BINPERSID: return op_persistent_id(m);
    }
    return at_opcode(m, sm_fail(SEGMAMBA_E_UNSUPPORTED,
                                "pickle opcode 0x%02x is outside the "
                                "subset a state_dict uses",
                                op));
}

sm_status sm_pk_run(vm *m, pk_value **result)
{
    for (;;) {
        m->op_pos = m->pos;
        if (m->pos >= m->len)
            return at_opcode(m,
                             sm_fail(SEGMAMBA_E_FORMAT, "pickle ends without STOP (truncated?)"));
        unsigned op = m->code[m->pos++];
        if (op == OP_STOP) return pop(m, result);
        SM_TRY(step(m, op));
    }
}
