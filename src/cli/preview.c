/* segmamba preview: a PNG of three orthogonal slices with the segmentation
 * overlaid, for a quick look at a result. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define MAX_NAMES 255

void usage_preview(FILE *f)
{
    fprintf(f,
            "usage: segmamba preview --image IMG.nii.gz [--seg SEG.nii.gz] -o OUT.png [options]\n"
            "\n"
            "Writes a PNG with axial, coronal and sagittal slices through the centre of\n"
            "the segmentation's foreground (the volume centre if it is empty): the image's\n"
            "first channel in grey (window: 0.5 to 99.5 percentile), the labels as a\n"
            "translucent colour overlay, and a legend. Slices are in the file's voxel\n"
            "order, scaled to its voxel spacing. SEG must share IMG's dims and geometry.\n"
            "\n"
            "  --image FILE       image to show (.nii or .nii.gz; 4D: the first volume)\n"
            "  --seg FILE         label map to overlay (integer values 0..255)\n"
            "  -o, --output FILE  the PNG to write\n"
            "  --labels NAMES     comma-separated names of labels 1, 2, ... (default\n"
            "                     NCR,ED,ET: the BraTS labels)\n");
}

/* Splits a comma-separated list in place. */
static int split_names(char *s, const char **names)
{
    int n = 0;
    for (char *p = s; n < MAX_NAMES;) {
        char *comma = strchr(p, ',');
        if (comma) *comma = 0;
        names[n++] = p;
        if (!comma) break;
        p = comma + 1;
    }
    return n;
}

int cmd_preview(int argc, char **argv)
{
    const char *image = NULL, *seg = NULL, *out = NULL;
    static char names_buf[4096] = "NCR,ED,ET";
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage_preview(stdout);
            return 0;
        }
        if (a[0] != '-') return cli_usage_error("preview: unexpected argument '%s'", a);
        if (!v) return cli_usage_error("preview: %s needs a value", a);
        i++;
        if (strcmp(a, "--image") == 0)
            image = v;
        else if (strcmp(a, "--seg") == 0)
            seg = v;
        else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0)
            out = v;
        else if (strcmp(a, "--labels") == 0) {
            if (strlen(v) >= sizeof names_buf || !*v)
                return cli_usage_error("preview: --labels wants names like NCR,ED,ET, not '%s'", v);
            strcpy(names_buf, v);
        } else {
            return cli_usage_error("preview: unknown argument '%s'", a);
        }
    }
    if (!image || !out) return cli_usage_error("preview: %s", "--image and -o are required");
    const char *names[MAX_NAMES];
    const int n_names = split_names(names_buf, names);

    segmamba_volume img, lab = {0};
    uint8_t *labels = NULL;
    segmamba_status st = segmamba_nifti_read(image, &img);
    if (st != SEGMAMBA_OK) return cli_fail(st);
    if (seg) {
        char why[256];
        st = segmamba_nifti_read(seg, &lab);
        if (st == SEGMAMBA_OK && segmamba_geometry_differs(&img.geom, &lab.geom, why, sizeof why))
            st = cli_error(SEGMAMBA_E_SHAPE, "%s and %s: %s", image, seg, why);
        if (st == SEGMAMBA_OK) st = segmamba_volume_get_labels(&lab, seg, &labels);
    }
    if (st == SEGMAMBA_OK) st = segmamba_preview_write(out, &img, labels, names, n_names);
    segmamba_volume_free(&img);
    segmamba_volume_free(&lab);
    free(labels);
    if (st != SEGMAMBA_OK) return cli_fail(st);
    fprintf(stderr, "segmamba: wrote %s\n", out);
    return 0;
}
