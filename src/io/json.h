/* A small JSON reader (RFC 8259) for safetensors headers and model cards,
 * and the few pieces needed to write JSON text. The parser builds a tree the
 * caller walks through the struct fields; it never reads past len bytes. */
#ifndef SM_IO_JSON_H
#define SM_IO_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* Arrays and objects nested deeper than this are refused (the parser
 * recurses once per level). */
#define SM_JSON_MAX_DEPTH 64

typedef enum sm_json_type {
    SM_JSON_NULL,
    SM_JSON_BOOL,
    SM_JSON_NUMBER,
    SM_JSON_STRING,
    SM_JSON_ARRAY,
    SM_JSON_OBJECT
} sm_json_type;

typedef struct sm_json sm_json;
typedef struct sm_json_member sm_json_member;

struct sm_json {
    sm_json_type type;
    int is_integer; /* NUMBER written as an integer that fits in int64_t */
    union {
        int boolean; /* BOOL: 0 or 1 */
        struct {     /* NUMBER */
            double number;
            int64_t integer; /* its exact value when is_integer */
        };
        struct {          /* STRING: UTF-8, NUL-terminated; length counts */
            char *string; /* the bytes, as a \u0000 escape may put NULs inside */
            size_t length;
        };
        struct {
            union {
                sm_json *items;          /* ARRAY */
                sm_json_member *members; /* OBJECT: in document order, */
            };                           /* duplicate keys kept */
            size_t count;
        };
    };
};

struct sm_json_member {
    char *key; /* UTF-8, NUL-terminated */
    size_t key_length;
    sm_json value;
};

/* Parses exactly one JSON value (surrounding whitespace allowed) from
 * text[0, len). Errors are E_FORMAT "<origin>: invalid JSON at byte N: ..."
 * with N counted from text, or E_NOMEM. On success the caller owns *out and
 * releases it with sm_json_free; on failure *out is left empty (null). */
sm_status sm_json_parse(const char *text, size_t len, const char *origin, sm_json *out);

void sm_json_free(sm_json *v);

/* The value of the first member named key, or NULL when object is not an
 * object or has no such member. */
const sm_json *sm_json_get(const sm_json *object, const char *key);

/* A growing text buffer for writing JSON. Appends never fail outright: an
 * allocation failure sets failed, later appends do nothing, and the writer
 * checks failed once at the end. */
typedef struct sm_json_out {
    char *text; /* NUL-terminated once anything was appended */
    size_t len, cap;
    int failed;
} sm_json_out;

/* Appends formatted text as is (punctuation, numbers, keywords). */
void sm_json_out_printf(sm_json_out *o, const char *fmt, ...) SM_PRINTF(2, 3);

/* Appends s[0, len) as a quoted JSON string, escaping quotes, backslashes
 * and control characters; other UTF-8 bytes pass through unchanged. */
void sm_json_out_string(sm_json_out *o, const char *s, size_t len);

void sm_json_out_free(sm_json_out *o);

#endif
