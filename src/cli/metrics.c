/* segmamba metrics: Dice and HD95 per region between a predicted and a
 * reference label map, as the official BraTS evaluation computes them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define MAX_REGIONS 255

void usage_metrics(FILE *f)
{
    fprintf(f, "usage: segmamba metrics --pred SEG.nii.gz --ref GT.nii.gz [options]\n"
               "\n"
               "Dice and HD95 (mm, at the files' voxel spacing) per region, and their means.\n"
               "Both files must be label maps (integer values 0..255) with the same dims and\n"
               "geometry. HD95 is medpy's: the 95th percentile of the distances between the\n"
               "two masks' surfaces (6-connected), both directions pooled.\n"
               "\n"
               "  --pred FILE          predicted label map (.nii or .nii.gz)\n"
               "  --ref FILE           reference label map\n"
               "  --labels SPEC        regions to score (default brats):\n"
               "                         brats        TC = {1,3}, WT = {1,2,3}, ET = {3}\n"
               "                         1,2,3        one region per label\n"
               "                         TC=1+3,ET=3  named label sets\n"
               "  --empty-both-one     a region empty in both files scores Dice 1, HD95 0\n"
               "                       (default, the official rule: a region empty in either\n"
               "                       scores Dice 0, HD95 50)\n"
               "  --json FILE          also write the scores as JSON\n");
}

/* Parses "brats" or comma-separated items "N" or "NAME=N+M+...". */
static int parse_regions(const char *spec, segmamba_region *regions, int *n)
{
    if (strcmp(spec, "brats") == 0) {
        segmamba_region_init_brats(regions);
        *n = 3;
        return 1;
    }
    *n = 0;
    const char *p = spec;
    while (*p) {
        if (*n == MAX_REGIONS) return 0;
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char item[64];
        if (len == 0 || len >= sizeof item) return 0;
        memcpy(item, p, len);
        item[len] = 0;
        char *eq = strchr(item, '=');
        char *list = eq ? eq + 1 : item;
        uint8_t labels[256];
        int nl = 0;
        for (char *tok = list;;) {
            char *plus = strchr(tok, '+');
            if (plus) *plus = 0;
            int v;
            if (!cli_parse_int(tok, 0, 255, &v) || nl == 256) return 0;
            labels[nl++] = (uint8_t)v;
            if (!plus) break;
            tok = plus + 1;
        }
        if (eq) *eq = 0;
        if (eq && (eq == item || eq - item >= (long)sizeof regions->name)) return 0;
        segmamba_region_init(&regions[*n], item, labels, nl);
        (*n)++;
        p = end ? end + 1 : p + len;
        if (end && !*p) return 0;
    }
    return *n > 0;
}

static void region_labels(const segmamba_region *r, char *out, size_t n, const char *sep)
{
    size_t used = 0;
    out[0] = 0;
    for (int l = 0; l < 256 && used < n; l++)
        if (r->member[l])
            used += (size_t)snprintf(out + used, n - used, "%s%d", used ? sep : "", l);
}

static segmamba_status write_json(const char *path, const char *pred, const char *ref,
                                  const segmamba_region *regions, const segmamba_region_score *s,
                                  int n, int empty_both_one, double mean_dice, double mean_hd95)
{
    cli_text o;
    const segmamba_status st = cli_text_open(&o);
    if (st != SEGMAMBA_OK) return st;
    cli_text_printf(&o, "{\"pred\": ");
    cli_text_json_string(&o, pred);
    cli_text_printf(&o, ", \"ref\": ");
    cli_text_json_string(&o, ref);
    cli_text_printf(&o, ", \"empty_rule\": \"%s\", \"regions\": [",
                    empty_both_one ? "both-empty-one" : "official");
    for (int i = 0; i < n; i++) {
        char labels[1024];
        region_labels(&regions[i], labels, sizeof labels, ", ");
        cli_text_printf(&o, "%s{\"name\": ", i ? ", " : "");
        cli_text_json_string(&o, regions[i].name);
        cli_text_printf(&o,
                        ", \"labels\": [%s], \"dice\": %.17g, \"hd95\": %.17g, "
                        "\"pred_voxels\": %lld, \"ref_voxels\": %lld}",
                        labels, s[i].dice, s[i].hd95, (long long)s[i].n_pred,
                        (long long)s[i].n_ref);
    }
    cli_text_printf(&o, "], \"mean_dice\": %.17g, \"mean_hd95\": %.17g}\n", mean_dice, mean_hd95);
    return cli_text_write(&o, path);
}

/* Reads a label map; *labels and *v are owned by the caller. */
static segmamba_status read_labels(const char *path, segmamba_volume *v, uint8_t **labels)
{
    CLI_TRY(segmamba_nifti_read(path, v));
    segmamba_status st = segmamba_volume_get_labels(v, path, labels);
    if (st != SEGMAMBA_OK) segmamba_volume_free(v);
    return st;
}

int cmd_metrics(int argc, char **argv)
{
    const char *pred = NULL, *ref = NULL, *json = NULL;
    int empty_both_one = 0, n = 0;
    static segmamba_region regions[MAX_REGIONS];
    segmamba_region_init_brats(regions);
    n = 3;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage_metrics(stdout);
            return 0;
        }
        if (strcmp(a, "--empty-both-one") == 0) {
            empty_both_one = 1;
            continue;
        }
        if (a[0] != '-') return cli_usage_error("metrics: unexpected argument '%s'", a);
        if (!v) return cli_usage_error("metrics: %s needs a value", a);
        i++;
        if (strcmp(a, "--pred") == 0)
            pred = v;
        else if (strcmp(a, "--ref") == 0)
            ref = v;
        else if (strcmp(a, "--json") == 0)
            json = v;
        else if (strcmp(a, "--labels") == 0) {
            if (!parse_regions(v, regions, &n))
                return cli_usage_error("metrics: --labels wants brats, labels like 1,2,3 or "
                                       "named sets like TC=1+3,WT=1+2+3, not '%s'",
                                       v);
        } else {
            return cli_usage_error("metrics: unknown argument '%s'", a);
        }
    }
    if (!pred || !ref) return cli_usage_error("metrics: %s", "--pred and --ref are required");

    segmamba_volume vp, vr;
    uint8_t *lp = NULL, *lr = NULL;
    segmamba_status st = read_labels(pred, &vp, &lp);
    if (st != SEGMAMBA_OK) return cli_fail(st);
    st = read_labels(ref, &vr, &lr);
    if (st != SEGMAMBA_OK) {
        segmamba_volume_free(&vp);
        free(lp);
        return cli_fail(st);
    }
    char why[256];
    if (segmamba_geometry_differs(&vp.geom, &vr.geom, why, sizeof why))
        st = cli_error(SEGMAMBA_E_SHAPE, "%s and %s: %s", pred, ref, why);
    segmamba_region_score scores[MAX_REGIONS];
    if (st == SEGMAMBA_OK)
        st = segmamba_score_regions(lp, lr, vp.d, vp.h, vp.w, vp.geom.spacing, regions, n,
                                    empty_both_one, scores);
    if (st == SEGMAMBA_OK) {
        const double *sp = vp.geom.spacing;
        printf("prediction  %s\nreference   %s\n", pred, ref);
        printf("volume      %dx%dx%d voxels of %gx%gx%g mm\n\n", vp.w, vp.h, vp.d, sp[2], sp[1],
               sp[0]);
    }
    segmamba_volume_free(&vp);
    segmamba_volume_free(&vr);
    free(lp);
    free(lr);
    if (st != SEGMAMBA_OK) return cli_fail(st);

    double mean_dice = 0, mean_hd95 = 0;
    printf("%-10s %-12s %8s %10s %12s %12s\n", "region", "labels", "Dice", "HD95 mm", "pred voxels",
           "ref voxels");
    for (int i = 0; i < n; i++) {
        char labels[64];
        region_labels(&regions[i], labels, sizeof labels, ",");
        printf("%-10s %-12s %8.4f %10.3f %12lld %12lld\n", regions[i].name, labels, scores[i].dice,
               scores[i].hd95, (long long)scores[i].n_pred, (long long)scores[i].n_ref);
        mean_dice += scores[i].dice / n;
        mean_hd95 += scores[i].hd95 / n;
    }
    printf("%-10s %-12s %8.4f %10.3f\n", "mean", "", mean_dice, mean_hd95);
    if (!empty_both_one)
        printf("(a region empty in either file scores Dice 0, HD95 %g: the official rule)\n",
               SEGMAMBA_HD95_EMPTY);
    if (json) {
        st = write_json(json, pred, ref, regions, scores, n, empty_both_one, mean_dice, mean_hd95);
        if (st != SEGMAMBA_OK) return cli_fail(st);
    }
    return 0;
}
