#include "clinical/preview.h"

#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>

#include "io/file.h"

#define PANEL_PX 256 /* the largest extent of the volume, in pixels */
#define MARGIN 10
#define GAP 10
#define TEXT_SCALE 2
#define LINE_PX (8 * TEXT_SCALE + 6)
#define MAX_LEGEND 32
#define OVERLAY_ALPHA 0.5f

/* ------------------------------------------------------------------------ */
/* A 5x7 bitmap font: one byte per row, top row first, bit 4 the leftmost
 * column. Lowercase letters are drawn as capitals. */

static const struct glyph {
    char c;
    uint8_t rows[7];
} font[] = {
    {'A', {0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
    {'B', {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E}},
    {'C', {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E}},
    {'D', {0x1E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1E}},
    {'E', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F}},
    {'F', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10}},
    {'G', {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F}},
    {'H', {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
    {'I', {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'J', {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C}},
    {'K', {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}},
    {'L', {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F}},
    {'M', {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11}},
    {'N', {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11}},
    {'O', {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}},
    {'P', {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10}},
    {'Q', {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D}},
    {'R', {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11}},
    {'S', {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E}},
    {'T', {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
    {'U', {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}},
    {'V', {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04}},
    {'W', {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A}},
    {'X', {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11}},
    {'Y', {0x11, 0x11, 0x0A, 0x04, 0x04, 0x04, 0x04}},
    {'Z', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F}},
    {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}},
    {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}},
    {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
    {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}},
    {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
    {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}},
    {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
    {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}},
    {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
    {' ', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}},
    {'-', {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00}},
    {'_', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F}},
    {'.', {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C}},
    {',', {0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08}},
    {':', {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00}},
    {'=', {0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00}},
    {'+', {0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00}},
    {'/', {0x01, 0x02, 0x02, 0x04, 0x08, 0x08, 0x10}},
    {'(', {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}},
    {')', {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}},
    {'?', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04}},
};

static const uint8_t *glyph_rows(char c)
{
    if (c >= 'a' && c <= 'z') c = (char)(c - 'a' + 'A');
    const size_t n = sizeof font / sizeof font[0];
    for (size_t i = 0; i < n; i++)
        if (font[i].c == c) return font[i].rows;
    return glyph_rows('?');
}

typedef struct canvas {
    int w, h;
    uint8_t *rgb;
} canvas;

static void put(canvas *cv, int x, int y, const uint8_t rgb[3])
{
    if (x < 0 || y < 0 || x >= cv->w || y >= cv->h) return;
    memcpy(cv->rgb + 3 * ((size_t)y * cv->w + x), rgb, 3);
}

static void fill_rect(canvas *cv, int x0, int y0, int w, int h, const uint8_t rgb[3])
{
    for (int y = y0; y < y0 + h; y++)
        for (int x = x0; x < x0 + w; x++) put(cv, x, y, rgb);
}

/* Draws text with its top-left corner at (x, y); returns its width. */
static int draw_text(canvas *cv, int x, int y, const char *s, const uint8_t rgb[3])
{
    int x0 = x;
    for (; *s; s++, x += 6 * TEXT_SCALE) {
        const uint8_t *rows = glyph_rows(*s);
        for (int r = 0; r < 7; r++)
            for (int c = 0; c < 5; c++)
                if (rows[r] & (0x10 >> c))
                    fill_rect(cv, x + c * TEXT_SCALE, y + r * TEXT_SCALE, TEXT_SCALE, TEXT_SCALE,
                              rgb);
    }
    return x - x0;
}

static int text_width(const char *s) { return (int)strlen(s) * 6 * TEXT_SCALE; }

/* ------------------------------------------------------------------------ */
/* Slices */

static const uint8_t palette[][3] = {
    {230, 40, 40},   /* 1 NCR: red */
    {40, 200, 60},   /* 2 ED: green */
    {255, 220, 0},   /* 3 ET: yellow */
    {50, 110, 255},  /* blue */
    {0, 220, 220},   /* cyan */
    {230, 60, 230},  /* magenta */
    {255, 140, 0},   /* orange */
    {150, 90, 255},  /* violet */
    {140, 230, 120}, /* light green */
    {255, 150, 170}, /* pink */
    {150, 110, 60},  /* brown */
    {200, 200, 255}, /* lavender */
};

static const uint8_t *label_colour(int l)
{
    return palette[(l - 1) % (int)(sizeof palette / sizeof palette[0])];
}

/* A view: the fixed axis and its index, the axes along rows and columns
 * (0 = D, 1 = H, 2 = W), whether rows run from the high index down, and its
 * size in pixels. */
typedef struct view {
    const char *name;
    int fixed, index, row_axis, col_axis, flip_rows;
    int rows, cols;
} view;

static int cmp_float(const void *a, const void *b)
{
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* The 0.5 and 99.5 percentiles of up to 2^20 evenly spaced finite samples. */
static sm_status window(const float *x, size_t n, float *lo, float *hi)
{
    const size_t step = n > (1u << 20) ? (n + (1u << 20) - 1) / (1u << 20) : 1;
    float *s = malloc((n / step + 1) * sizeof *s);
    if (!s) return sm_fail(SEGMAMBA_E_NOMEM, "preview: out of memory");
    size_t m = 0;
    for (size_t i = 0; i < n; i += step)
        if (isfinite(x[i])) s[m++] = x[i];
    *lo = 0;
    *hi = 1;
    if (m > 0) {
        qsort(s, m, sizeof *s, cmp_float);
        *lo = s[(size_t)llround(0.005 * (double)(m - 1))];
        *hi = s[(size_t)llround(0.995 * (double)(m - 1))];
    }
    if (!(*hi > *lo)) *hi = *lo + 1;
    free(s);
    return SEGMAMBA_OK;
}

static void render_view(canvas *cv, int x0, int y0, const view *v, const segmamba_volume *img,
                        const uint8_t *labels, double mm_per_px, float lo, float hi)
{
    const int size[3] = {img->d, img->h, img->w};
    const size_t stride[3] = {(size_t)img->h * img->w, (size_t)img->w, 1};
    const double *sp = img->geom.spacing;
    for (int r = 0; r < v->rows; r++) {
        int a = (int)((r + 0.5) * mm_per_px / sp[v->row_axis]);
        a = a < size[v->row_axis] ? a : size[v->row_axis] - 1;
        if (v->flip_rows) a = size[v->row_axis] - 1 - a;
        for (int c = 0; c < v->cols; c++) {
            int b = (int)((c + 0.5) * mm_per_px / sp[v->col_axis]);
            b = b < size[v->col_axis] ? b : size[v->col_axis] - 1;
            const size_t x = (size_t)v->index * stride[v->fixed] + (size_t)a * stride[v->row_axis] +
                             (size_t)b * stride[v->col_axis];
            float g = (img->data[x] - lo) / (hi - lo);
            g = isfinite(g) ? fminf(fmaxf(g, 0.f), 1.f) * 255.f : 0.f;
            float rgb[3] = {g, g, g};
            if (labels && labels[x]) {
                const uint8_t *col = label_colour(labels[x]);
                for (int k = 0; k < 3; k++)
                    rgb[k] = (1 - OVERLAY_ALPHA) * rgb[k] + OVERLAY_ALPHA * col[k];
            }
            const uint8_t px[3] = {(uint8_t)lrintf(rgb[0]), (uint8_t)lrintf(rgb[1]),
                                   (uint8_t)lrintf(rgb[2])};
            put(cv, x0 + c, y0 + r, px);
        }
    }
}

/* The foreground's centre of mass, rounded to a voxel; the volume centre
 * when there is no foreground. */
static void centre(const segmamba_volume *img, const uint8_t *labels, int idx[3])
{
    double sum[3] = {0, 0, 0};
    int64_t n = 0;
    if (labels)
        for (int k = 0; k < img->d; k++)
            for (int j = 0; j < img->h; j++)
                for (int i = 0; i < img->w; i++)
                    if (labels[((size_t)k * img->h + j) * img->w + i]) {
                        sum[0] += k;
                        sum[1] += j;
                        sum[2] += i;
                        n++;
                    }
    const int size[3] = {img->d, img->h, img->w};
    for (int a = 0; a < 3; a++) {
        idx[a] = n ? (int)lround(sum[a] / (double)n) : size[a] / 2;
        idx[a] = idx[a] < size[a] ? idx[a] : size[a] - 1;
    }
}

/* ------------------------------------------------------------------------ */
/* PNG */

typedef struct png_sink {
    unsigned char *data;
    size_t len, cap;
    int nomem;
    char message[200];
} png_sink;

static void sink_write(png_structp png, png_bytep bytes, png_size_t n)
{
    png_sink *s = png_get_io_ptr(png);
    if (s->len + n > s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 1 << 16;
        while (cap < s->len + n) cap *= 2;
        unsigned char *p = realloc(s->data, cap);
        if (!p) {
            s->nomem = 1;
            png_error(png, "out of memory");
        }
        s->data = p;
        s->cap = cap;
    }
    memcpy(s->data + s->len, bytes, n);
    s->len += n;
}

static void sink_flush(png_structp png) { (void)png; }

static void on_png_error(png_structp png, png_const_charp msg)
{
    png_sink *s = png_get_error_ptr(png);
    snprintf(s->message, sizeof s->message, "%s", msg);
    png_longjmp(png, 1);
}

static void on_png_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg; /* warnings do not stop the write, and the library never prints */
}

static sm_status encode_png(const char *path, const canvas *cv, png_sink *sink)
{
    png_structp png =
        png_create_write_struct(PNG_LIBPNG_VER_STRING, sink, on_png_error, on_png_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_write_struct(&png, NULL);
        return sm_fail(SEGMAMBA_E_NOMEM, "%s: cannot start the PNG encoder", path);
    }
    png_bytep *rows = malloc((size_t)cv->h * sizeof *rows);
    if (!rows) {
        png_destroy_write_struct(&png, &info);
        return sm_fail(SEGMAMBA_E_NOMEM, "%s: out of memory", path);
    }
    for (int y = 0; y < cv->h; y++) rows[y] = cv->rgb + (size_t)y * cv->w * 3;
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(rows);
        return sm_fail(sink->nomem ? SEGMAMBA_E_NOMEM : SEGMAMBA_E_IO,
                       "%s: PNG encoding failed: %s", path, sink->message);
    }
    png_set_write_fn(png, sink, sink_write, sink_flush);
    png_set_IHDR(png, info, (png_uint_32)cv->w, (png_uint_32)cv->h, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_set_rows(png, info, rows);
    png_write_png(png, info, PNG_TRANSFORM_IDENTITY, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    return SEGMAMBA_OK;
}

/* ------------------------------------------------------------------------ */

sm_status segmamba_preview_write(const char *path, const segmamba_volume *image,
                                 const uint8_t *labels, const char *const *label_names,
                                 int n_labels)
{
    if (!image->data || image->c < 1 || image->d < 1 || image->h < 1 || image->w < 1)
        return sm_fail(SEGMAMBA_E_ARG, "%s: nothing to preview", path);
    const double *sp = image->geom.spacing;
    for (int a = 0; a < 3; a++)
        if (!(sp[a] > 0) || !isfinite(sp[a]))
            return sm_fail(SEGMAMBA_E_ARG, "%s: invalid voxel spacing %g", path, sp[a]);
    const size_t nvox = (size_t)image->d * image->h * image->w;
    float lo = 0, hi = 1;
    SM_TRY(window(image->data, nvox, &lo, &hi));

    int c[3];
    centre(image, labels, c);
    const double extent[3] = {image->d * sp[0], image->h * sp[1], image->w * sp[2]};
    const double mm_per_px = fmax(extent[0], fmax(extent[1], extent[2])) / PANEL_PX;
    view views[3] = {
        {"AXIAL", 0, c[0], 1, 2, 0, 0, 0},
        {"CORONAL", 1, c[1], 0, 2, 1, 0, 0},
        {"SAGITTAL", 2, c[2], 0, 1, 1, 0, 0},
    };
    int panels_w = 2 * GAP, panels_h = 0;
    for (int i = 0; i < 3; i++) {
        views[i].rows = (int)fmax(1, lround(extent[views[i].row_axis] / mm_per_px));
        views[i].cols = (int)fmax(1, lround(extent[views[i].col_axis] / mm_per_px));
        panels_w += views[i].cols;
        panels_h = views[i].rows > panels_h ? views[i].rows : panels_h;
    }

    /* Legend: the named labels, and any other label that occurs. */
    int present[256] = {0};
    if (labels)
        for (size_t x = 0; x < nvox; x++) present[labels[x]] = 1;
    int legend[MAX_LEGEND], n_legend = 0, more = 0;
    for (int l = 1; l < 256; l++)
        if (l <= n_labels || present[l]) {
            if (n_legend < MAX_LEGEND)
                legend[n_legend++] = l;
            else
                more = 1;
        }
    char names[MAX_LEGEND][80];
    int legend_w = 0;
    for (int i = 0; i < n_legend; i++) {
        const int l = legend[i];
        const char *name = l <= n_labels && label_names ? label_names[l - 1] : NULL;
        if (name)
            snprintf(names[i], sizeof names[i], "%d %s%s", l, name, present[l] ? "" : " (NONE)");
        else
            snprintf(names[i], sizeof names[i], "%d LABEL %d%s", l, l, present[l] ? "" : " (NONE)");
        const int tw = LINE_PX + text_width(names[i]);
        legend_w = tw > legend_w ? tw : legend_w;
    }

    canvas cv;
    cv.w = 2 * MARGIN + (panels_w > legend_w ? panels_w : legend_w);
    cv.h = MARGIN + LINE_PX + panels_h + GAP + (n_legend + more) * LINE_PX + MARGIN;
    cv.rgb = calloc((size_t)cv.w * cv.h, 3);
    if (!cv.rgb) return sm_fail(SEGMAMBA_E_NOMEM, "%s: out of memory for the preview", path);
    static const uint8_t white[3] = {235, 235, 235};
    int x = MARGIN;
    for (int i = 0; i < 3; i++) {
        char title[64];
        snprintf(title, sizeof title, "%s %c=%d", views[i].name, "KJI"[views[i].fixed],
                 views[i].index);
        draw_text(&cv, x, MARGIN, title, white);
        render_view(&cv, x, MARGIN + LINE_PX, &views[i], image, labels, mm_per_px, lo, hi);
        x += views[i].cols + GAP;
    }
    int y = MARGIN + LINE_PX + panels_h + GAP;
    for (int i = 0; i < n_legend; i++, y += LINE_PX) {
        fill_rect(&cv, MARGIN, y, 7 * TEXT_SCALE, 7 * TEXT_SCALE, label_colour(legend[i]));
        draw_text(&cv, MARGIN + LINE_PX, y, names[i], white);
    }
    if (more) draw_text(&cv, MARGIN + LINE_PX, y, "...", white);

    png_sink sink = {0};
    sm_status st = encode_png(path, &cv, &sink);
    free(cv.rgb);
    if (st == SEGMAMBA_OK) {
        const void *parts[1] = {sink.data};
        const size_t sizes[1] = {sink.len};
        st = sm_file_write_atomic(path, parts, sizes, 1);
    }
    free(sink.data);
    return st;
}
