/* The JSON parser (src/io/json.c) and its writer: values, strings and
 * their escapes, numbers at the edges of int64 and double, errors with the
 * byte they point at, the depth limit, and a writer round trip. */
#include <locale.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "io/json.h"

static sm_status parse_text(const char *text, sm_json *out)
{
    return sm_json_parse(text, strlen(text), "doc", out);
}

static void test_json_values(void)
{
    const char *text =
        " {\"a\": [1, -2.5, true, false, null], \"s\": \"x\", \"o\": {}, \"e\": []} ";
    sm_json v;
    CHECK(parse_text(text, &v) == SEGMAMBA_OK);
    CHECK(v.type == SM_JSON_OBJECT && v.count == 4);
    const sm_json *a = sm_json_get(&v, "a");
    CHECK(a && a->type == SM_JSON_ARRAY && a->count == 5);
    if (a && a->count == 5) {
        CHECK(a->items[0].type == SM_JSON_NUMBER && a->items[0].is_integer &&
              a->items[0].integer == 1);
        CHECK(a->items[1].number == -2.5 && !a->items[1].is_integer);
        CHECK(a->items[2].type == SM_JSON_BOOL && a->items[2].boolean == 1);
        CHECK(a->items[3].type == SM_JSON_BOOL && a->items[3].boolean == 0);
        CHECK(a->items[4].type == SM_JSON_NULL);
    }
    const sm_json *s = sm_json_get(&v, "s");
    CHECK(s && s->type == SM_JSON_STRING && strcmp(s->string, "x") == 0);
    CHECK(sm_json_get(&v, "o")->type == SM_JSON_OBJECT && sm_json_get(&v, "o")->count == 0);
    CHECK(sm_json_get(&v, "e")->type == SM_JSON_ARRAY && sm_json_get(&v, "e")->count == 0);
    CHECK(sm_json_get(&v, "missing") == NULL);
    CHECK(sm_json_get(a, "a") == NULL); /* not an object */
    sm_json_free(&v);
}

static void test_json_strings(void)
{
    /* Simple escapes, BMP escapes and a surrogate pair become UTF-8. */
    const char *text =
        "\"q\\\" b\\\\ s\\/ \\b\\f\\n\\r\\t \\u00e9\\u65E5 \\ud83e\\udde0 raw\xc3\xa9\"";
    const char *want = "q\" b\\ s/ \b\f\n\r\t \xc3\xa9\xe6\x97\xa5 \xf0\x9f\xa7\xa0 raw\xc3\xa9";
    sm_json v;
    CHECK(parse_text(text, &v) == SEGMAMBA_OK);
    CHECK(v.type == SM_JSON_STRING && v.length == strlen(want) && strcmp(v.string, want) == 0);
    sm_json_free(&v);

    /* \u0000 puts a NUL inside; length still counts every byte. */
    CHECK(parse_text("\"a\\u0000b\"", &v) == SEGMAMBA_OK);
    CHECK(v.length == 3 && memcmp(v.string, "a\0b", 4) == 0);
    sm_json_free(&v);
}

static void test_json_numbers(void)
{
    static const struct {
        const char *text;
        int is_integer;
        int64_t integer;
        double number;
    } cases[] = {
        {"0", 1, 0, 0.0},
        {"-0", 1, 0, 0.0},
        {"9223372036854775807", 1, INT64_MAX, 9223372036854775807.0},
        {"-9223372036854775808", 1, INT64_MIN, -9223372036854775808.0},
        {"9223372036854775808", 0, 0, 9223372036854775808.0},
        {"1.5e3", 0, 0, 1500.0},
        {"0.1", 0, 0, 0.1},
        {"-1E-2", 0, 0, -0.01},
        {"2e+2", 0, 0, 200.0},
        {"1e-400", 0, 0, 0.0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sm_json v;
        CHECK_MSG(parse_text(cases[i].text, &v) == SEGMAMBA_OK, "%s", cases[i].text);
        CHECK_MSG(v.type == SM_JSON_NUMBER && v.number == cases[i].number, "%s", cases[i].text);
        CHECK_MSG(v.is_integer == cases[i].is_integer, "%s", cases[i].text);
        if (cases[i].is_integer) CHECK_MSG(v.integer == cases[i].integer, "%s", cases[i].text);
        sm_json_free(&v);
    }
    /* A locale whose decimal point is a comma must not change parsing. */
    if (setlocale(LC_NUMERIC, "de_DE.UTF-8") || setlocale(LC_NUMERIC, "fr_FR.UTF-8")) {
        sm_json v;
        CHECK(parse_text("0.5", &v) == SEGMAMBA_OK && v.number == 0.5);
        sm_json_free(&v);
        setlocale(LC_NUMERIC, "C");
    }
}

static void test_json_errors(void)
{
    static const struct {
        const char *text;
        const char *message;
    } cases[] = {
        {"", "at byte 0: unexpected end of input"},
        {"[1,]", "at byte 3: unexpected character ']'"},
        {"[1 2]", "at byte 3: expected ',' or ']' in array"},
        {"{\"a\" 1}", "at byte 5: expected ':' after object key"},
        {"{1: 2}", "at byte 1: expected a string key in object"},
        {"{\"a\": 1,}", "at byte 8: expected a string key"},
        {"01", "at byte 1: unexpected text after the value"},
        {"1.", "at byte 1: expected a digit after '.'"},
        {"1e", "at byte 1: expected a digit in the exponent"},
        {"-", "at byte 0: invalid number"},
        {"+1", "at byte 0: unexpected character '+'"},
        {"1e999", "at byte 0: number is too large"},
        {"tru", "at byte 0: unexpected character 't'"},
        {"\"abc", "at byte 0: unterminated string"},
        {"\"a\\x\"", "at byte 2: invalid escape"},
        {"\"\\u12g4\"", "at byte 1: \\u must be followed by four hex digits"},
        {"\"\\ud800\"", "at byte 1: high surrogate"},
        {"\"\\ud800\\u0041\"", "at byte 1: high surrogate"},
        {"\"\\udc00\"", "at byte 1: unpaired low surrogate"},
        {"\"a\x01\"", "at byte 2: control character"},
        {"\"\xff\"", "at byte 1: string is not valid UTF-8"},
        {"\"\xc0\xaf\"", "at byte 1: string is not valid UTF-8"},         /* overlong */
        {"\"\xed\xa0\x80\"", "at byte 1: string is not valid UTF-8"},     /* surrogate */
        {"\"\xf4\x90\x80\x80\"", "at byte 1: string is not valid UTF-8"}, /* > U+10FFFF */
        {"\"\xe6\x97\"", "at byte 1: string is not valid UTF-8"},         /* cut short */
        {"\x80", "at byte 0: unexpected byte 0x80"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sm_json v;
        sm_status st = parse_text(cases[i].text, &v);
        const char *msg = segmamba_get_last_error();
        CHECK_MSG(st == SEGMAMBA_E_FORMAT && check_contains(msg, "doc: invalid JSON") &&
                      check_contains(msg, cases[i].message),
                  "'%s' gave %s '%s'", cases[i].text, segmamba_get_status_name(st), msg);
        CHECK(v.type == SM_JSON_NULL);
    }

    /* Depth: 64 levels parse, 65 do not (and no stack is blown). */
    char deep[2 * SM_JSON_MAX_DEPTH + 3];
    for (int n = SM_JSON_MAX_DEPTH; n <= SM_JSON_MAX_DEPTH + 1; n++) {
        memset(deep, '[', (size_t)n);
        memset(deep + n, ']', (size_t)n);
        sm_json v;
        sm_status st = sm_json_parse(deep, 2 * (size_t)n, "doc", &v);
        CHECK_MSG(n == SM_JSON_MAX_DEPTH
                      ? st == SEGMAMBA_OK
                      : st == SEGMAMBA_E_FORMAT &&
                            check_contains(segmamba_get_last_error(), "nested deeper than 64"),
                  "depth %d", n);
        sm_json_free(&v);
    }
}

static void test_json_writer(void)
{
    const char raw[] = "a\"b\\c\nd\te\x01\x1f \xc3\xa9/";
    sm_json_out o = {0};
    sm_json_out_printf(&o, "[%d,", 7);
    sm_json_out_string(&o, raw, sizeof raw - 1);
    sm_json_out_printf(&o, "]");
    CHECK(!o.failed);
    CHECK(o.text && strcmp(o.text, "[7,\"a\\\"b\\\\c\\nd\\te\\u0001\\u001f \xc3\xa9/\"]") == 0);
    sm_json v;
    CHECK(sm_json_parse(o.text, o.len, "written", &v) == SEGMAMBA_OK);
    CHECK(v.type == SM_JSON_ARRAY && v.count == 2 && v.items[1].length == sizeof raw - 1 &&
          memcmp(v.items[1].string, raw, sizeof raw) == 0);
    sm_json_free(&v);
    sm_json_out_free(&o);
}

int main(void)
{
    test_json_values();
    test_json_strings();
    test_json_numbers();
    test_json_errors();
    test_json_writer();
    return check_report("test_json");
}
