// DICOM series in, through dcmtk (clinical/dicom.h says what is read and how
// the geometry is derived); the SEG writer is dicom_seg_dcmtk.cpp. These two
// are the only translation units that include dcmtk; what they export is
// segmamba_pipeline.h's C API. dcmtk's own logging is switched off: failures
// come back as statuses with a message naming the file, as everywhere in the
// library.
#include "clinical/dicom_dcmtk.hpp"

#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcdict.h>
#include <dcmtk/dcmdata/dcistrmb.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcpixel.h>
#include <dcmtk/dcmdata/dcrledrg.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmdata/dcxfer.h>
#include <dcmtk/dcmjpeg/djdecode.h>
#include <dcmtk/dcmjpls/djdecode.h>
#include <dcmtk/oflog/oflog.h>

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <new>

extern "C" {
#include "io/memory_cap.h"
}

namespace sm_dcm
{

namespace
{

std::once_flag init_once;
bool dictionary_loaded = false;

void init_dcmtk()
{
    std::call_once(init_once, [] {
        OFLog::configure(OFLogger::OFF_LOG_LEVEL);
        DcmRLEDecoderRegistration::registerCodecs();
        DJDecoderRegistration::registerCodecs();
        DJLSDecoderRegistration::registerCodecs();
        dictionary_loaded = dcmDataDict.isDictionaryLoaded();
    });
}

} // namespace

sm_status need_dictionary(const char *origin)
{
    init_dcmtk();
    if (!dictionary_loaded)
        return sm_fail(SEGMAMBA_E_BACKEND,
                       "%s: dcmtk's data dictionary is not loaded (install dcmtk's dicom.dic "
                       "or set DCMDICTPATH)",
                       origin);
    return SEGMAMBA_OK;
}

sm_status load(DcmFileFormat &ff, const std::string &path, bool header_only)
{
    // Header only: values longer than 4 KiB (the pixel data) stay on disk.
    const OFCondition c = ff.loadFile(path.c_str(), EXS_Unknown, EGL_noChange,
                                      header_only ? 4096 : DCM_MaxReadLength);
    if (c.bad())
        return sm_fail(SEGMAMBA_E_FORMAT, "%s: not a readable DICOM file (%s)", path.c_str(),
                       c.text());
    return SEGMAMBA_OK;
}

sm_status load_memory(DcmFileFormat &ff, const std::string &name, const void *data, size_t size)
{
    DcmInputBufferStream in;
    in.setBuffer(data, (offile_off_t)size);
    in.setEos();
    ff.transferInit();
    const OFCondition c = ff.read(in, EXS_Unknown, EGL_noChange, DCM_MaxReadLength);
    ff.transferEnd();
    if (c.bad())
        return sm_fail(SEGMAMBA_E_FORMAT, "%s: not a readable DICOM object (%s)", name.c_str(),
                       c.text());
    return SEGMAMBA_OK;
}

} // namespace sm_dcm

namespace
{

using sm_dcm::load;
using sm_dcm::load_memory;
using sm_dcm::need_dictionary;
using sm_dcm::SeriesRef;
using sm_dcm::Slice;

const char *const SEG_SOP_CLASS = UID_SegmentationStorage;
const char *const DICOMDIR_SOP_CLASS = UID_MediaStorageDirectoryStorage;
const size_t MAX_FRAMES = 65535; // frame numbers are US in references

// One object found while scanning a folder, or given in memory (data).
struct FileHead {
    std::string path, series, description, modality, sop_class, sop_uid;
    const void *data = NULL; // in memory: size bytes; else the file at path
    size_t size = 0;
    bool image = false;
};

// Parses a file or an object in memory (header_only: see load).
sm_status load_head(DcmFileFormat &ff, const FileHead &h, bool header_only)
{
    return h.data ? load_memory(ff, h.path, h.data, h.size) : load(ff, h.path, header_only);
}

// Where a slice of h is, in messages: an object in memory with its SOP
// Instance UID, which a file's path already says.
std::string slice_name(const FileHead &h)
{
    return h.data ? h.path + " (SOP Instance UID " + h.sop_uid + ")" : h.path;
}

std::string get_string(DcmItem *ds, const DcmTagKey &tag)
{
    OFString s;
    if (ds->findAndGetOFStringArray(tag, s).bad()) return std::string();
    return std::string(s.c_str());
}

// n finite values of a multi-valued attribute.
bool get_doubles(DcmItem *ds, const DcmTagKey &tag, double *v, int n)
{
    for (int i = 0; i < n; i++) {
        Float64 x;
        if (ds->findAndGetFloat64(tag, x, (unsigned long)i).bad() || !std::isfinite(x))
            return false;
        v[i] = x;
    }
    return true;
}

// An attribute of a functional group: the frame's own group, else the
// shared one, else the dataset's top level (classic single-frame images).
bool frame_doubles(DcmItem *ds, int frame, const DcmTagKey &group, const DcmTagKey &tag, double *v,
                   int n)
{
    DcmItem *outer = NULL, *inner = NULL;
    if (ds->findAndGetSequenceItem(DCM_PerFrameFunctionalGroupsSequence, outer, frame).good() &&
        outer->findAndGetSequenceItem(group, inner, 0).good() && get_doubles(inner, tag, v, n))
        return true;
    if (ds->findAndGetSequenceItem(DCM_SharedFunctionalGroupsSequence, outer, 0).good() &&
        outer->findAndGetSequenceItem(group, inner, 0).good() && get_doubles(inner, tag, v, n))
        return true;
    return get_doubles(ds, tag, v, n);
}

int is_part10(const void *head, size_t size)
{
    return size >= 132 && memcmp((const unsigned char *)head + 128, "DICM", 4) == 0;
}

int has_dicm_magic(const char *path)
{
    unsigned char head[132];
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    const size_t got = fread(head, 1, sizeof head, f);
    fclose(f);
    return is_part10(head, got);
}

// Every regular file under dir, in name order (symbolic links to folders
// are not followed, so a link cycle cannot recurse forever).
sm_status list_files(const std::string &dir, std::vector<std::string> &out, int depth)
{
    if (depth > 64)
        return sm_fail(SEGMAMBA_E_UNSUPPORTED, "%s: folders nested too deep", dir.c_str());
    DIR *d = opendir(dir.c_str());
    if (!d)
        return sm_fail(SEGMAMBA_E_IO, "%s: cannot open the folder: %s", dir.c_str(),
                       strerror(errno));
    std::vector<std::string> names;
    while (struct dirent *e = readdir(d))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) names.push_back(e->d_name);
    closedir(d);
    std::sort(names.begin(), names.end());
    for (const std::string &n : names) {
        const std::string p = dir + "/" + n;
        struct stat st;
        if (lstat(p.c_str(), &st) != 0) continue;
        if (S_ISLNK(st.st_mode) && (stat(p.c_str(), &st) != 0 || S_ISDIR(st.st_mode))) continue;
        if (S_ISDIR(st.st_mode))
            SM_TRY(list_files(p, out, depth + 1));
        else if (S_ISREG(st.st_mode))
            out.push_back(p);
    }
    return SEGMAMBA_OK;
}

// Fills h (its path, or data and size, set) from the object's header.
sm_status scan_object(FileHead &h)
{
    DcmFileFormat ff;
    SM_TRY(load_head(ff, h, true));
    DcmDataset *ds = ff.getDataset();
    const std::string &path = h.path;
    h.series = get_string(ds, DCM_SeriesInstanceUID);
    h.description = get_string(ds, DCM_SeriesDescription);
    h.modality = get_string(ds, DCM_Modality);
    h.sop_class = get_string(ds, DCM_SOPClassUID);
    h.sop_uid = get_string(ds, DCM_SOPInstanceUID);
    const std::string media_class = get_string(ff.getMetaInfo(), DCM_MediaStorageSOPClassUID);
    if (media_class == DICOMDIR_SOP_CLASS || ds->tagExists(DCM_DirectoryRecordSequence))
        h.sop_class = DICOMDIR_SOP_CLASS;
    Uint16 rows = 0, cols = 0;
    ds->findAndGetUint16(DCM_Rows, rows);
    ds->findAndGetUint16(DCM_Columns, cols);
    h.image = h.sop_class != DICOMDIR_SOP_CLASS && h.sop_class != SEG_SOP_CLASS &&
              ds->tagExists(DCM_PixelData) && rows > 0 && cols > 0;
    if (h.image && h.series.empty())
        return sm_fail(SEGMAMBA_E_FORMAT, "%s: an image without a Series Instance UID",
                       path.c_str());
    return SEGMAMBA_OK;
}

std::string class_name(const std::string &uid)
{
    if (uid == DICOMDIR_SOP_CLASS) return "DICOMDIR";
    const char *n = dcmFindNameOfUID(uid.c_str(), NULL);
    return n ? n : uid.empty() ? "no SOP class" : uid;
}

// What one channel is read from: a folder, or objects in memory.
struct Input {
    std::string where; // the folder, or "DICOM objects of channel N"
    const char *want = NULL;
    const segmamba_dicom_object *objects = NULL; // NULL: a folder
    int count = 0;
};

// The DICOM Part 10 objects of an input, their headers read (*total: how
// many files or objects there are, DICOM or not).
sm_status scan_input(const Input &in, std::vector<FileHead> &heads, size_t &total)
{
    if (in.objects) {
        total = (size_t)in.count;
        for (int i = 0; i < in.count; i++) {
            const segmamba_dicom_object &o = in.objects[i];
            if (!o.data || !is_part10(o.data, o.size)) continue;
            FileHead h;
            h.path = o.name ? o.name : in.where + ", object " + std::to_string(i + 1);
            h.data = o.data;
            h.size = o.size;
            SM_TRY(scan_object(h));
            heads.push_back(h);
        }
        return SEGMAMBA_OK;
    }
    std::vector<std::string> paths;
    SM_TRY(list_files(in.where, paths, 0));
    total = paths.size();
    for (const std::string &p : paths) {
        if (!has_dicm_magic(p.c_str())) continue;
        FileHead h;
        h.path = p;
        SM_TRY(scan_object(h));
        heads.push_back(h);
    }
    return SEGMAMBA_OK;
}

// The image files of one series of an input: the one whose UID is `want`,
// or the input's only one.
sm_status pick_series(const Input &in, std::vector<FileHead> &files)
{
    const char *dir = in.where.c_str(), *want = in.want;
    const char *what = in.objects ? "objects" : "files";
    std::vector<FileHead> heads;
    size_t total = 0;
    SM_TRY(scan_input(in, heads, total));
    std::map<std::string, std::vector<FileHead>> series;
    std::vector<std::string> order; // first seen
    std::map<std::string, int> others;
    const size_t dicom = heads.size();
    for (const FileHead &h : heads) {
        if (!h.image) {
            others[class_name(h.sop_class)]++;
            continue;
        }
        if (!series.count(h.series)) order.push_back(h.series);
        series[h.series].push_back(h);
    }
    if (series.empty()) {
        if (!dicom)
            return sm_fail(SEGMAMBA_E_FORMAT,
                           "%s: no DICOM %s (Part 10, \"DICM\" at byte 128) among the %zu %s", dir,
                           what, total, what);
        std::string what;
        for (const auto &o : others)
            what += (what.empty() ? "" : ", ") + o.first + " x" + std::to_string(o.second);
        return sm_fail(SEGMAMBA_E_UNSUPPORTED, "%s: no image series, only non-image objects (%s)",
                       dir, what.c_str());
    }
    std::string list;
    for (const std::string &uid : order) {
        const FileHead &f = series[uid][0];
        list += "\n  " + uid + "  " + (f.modality.empty() ? "?" : f.modality) + ", " +
                std::to_string(series[uid].size()) + " file(s), \"" + f.description + "\"";
    }
    if (want) {
        auto it = series.find(want);
        if (it == series.end())
            return sm_fail(SEGMAMBA_E_ARG, "%s: no image series %s; %s:%s", dir, want,
                           in.objects ? "the objects hold" : "the folder holds", list.c_str());
        files = it->second;
        return SEGMAMBA_OK;
    }
    if (series.size() > 1)
        return sm_fail(SEGMAMBA_E_ARG,
                       "%s: %zu image series where one was expected; pick one with --series "
                       "UID:%s",
                       dir, series.size(), list.c_str());
    files = series.begin()->second;
    return SEGMAMBA_OK;
}

struct PixelFormat {
    unsigned bits_alloc = 0, bits_stored = 0;
    bool is_signed = false;
};

// The slices of one file (its frames), with their geometry; the pixels are
// decoded later.
sm_status file_slices(const FileHead &h, int file, DcmDataset *ds, std::vector<Slice> &out)
{
    const std::string name = slice_name(h);
    const char *p = name.c_str();
    Uint16 rows = 0, cols = 0;
    ds->findAndGetUint16(DCM_Rows, rows);
    ds->findAndGetUint16(DCM_Columns, cols);
    Sint32 frames = 1;
    if (ds->tagExists(DCM_NumberOfFrames) &&
        (ds->findAndGetSint32(DCM_NumberOfFrames, frames).bad() || frames < 1 ||
         (size_t)frames > MAX_FRAMES))
        return sm_fail(SEGMAMBA_E_FORMAT, "%s: Number of Frames is not 1 to %zu", p, MAX_FRAMES);
    for (int f = 0; f < frames; f++) {
        Slice s;
        s.path = name;
        s.file = file;
        s.frame = f;
        s.n_frames = frames;
        s.sop_class = h.sop_class;
        s.sop_uid = h.sop_uid;
        s.rows = rows;
        s.cols = cols;
        const std::string w = s.where();
        if (!frame_doubles(ds, f, DCM_PlanePositionSequence, DCM_ImagePositionPatient, s.pos, 3))
            return sm_fail(SEGMAMBA_E_UNSUPPORTED,
                           "%s: no Image Position (Patient); the slice cannot be placed",
                           w.c_str());
        if (!frame_doubles(ds, f, DCM_PlaneOrientationSequence, DCM_ImageOrientationPatient, s.iop,
                           6))
            return sm_fail(SEGMAMBA_E_UNSUPPORTED,
                           "%s: no Image Orientation (Patient); the slice cannot be placed",
                           w.c_str());
        if (!frame_doubles(ds, f, DCM_PixelMeasuresSequence, DCM_PixelSpacing, s.spacing, 2) ||
            !(s.spacing[0] > 0) || !(s.spacing[1] > 0))
            return sm_fail(SEGMAMBA_E_UNSUPPORTED, "%s: no positive Pixel Spacing", w.c_str());
        double rs[2] = {1, 0};
        if (frame_doubles(ds, f, DCM_PixelValueTransformationSequence, DCM_RescaleSlope, rs, 1))
            s.slope = rs[0];
        if (frame_doubles(ds, f, DCM_PixelValueTransformationSequence, DCM_RescaleIntercept, rs + 1,
                          1))
            s.intercept = rs[1];
        out.push_back(s);
    }
    return SEGMAMBA_OK;
}

double dot(const double *a, const double *b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }

// Sorts the slices along the normal and checks that they make one regular
// grid; sets the spacing between slices.
sm_status order_slices(std::vector<Slice> &sl, double &spacing_k)
{
    const Slice &a = sl[0];
    const double *X = a.iop, *Y = a.iop + 3;
    if (std::fabs(dot(X, X) - 1) > 1e-3 || std::fabs(dot(Y, Y) - 1) > 1e-3 ||
        std::fabs(dot(X, Y)) > 1e-3)
        return sm_fail(SEGMAMBA_E_FORMAT,
                       "%s: Image Orientation (Patient) %g\\%g\\%g\\%g\\%g\\%g is not two "
                       "orthogonal unit vectors",
                       a.where().c_str(), X[0], X[1], X[2], Y[0], Y[1], Y[2]);
    for (const Slice &s : sl) {
        for (int i = 0; i < 6; i++)
            if (std::fabs(s.iop[i] - a.iop[i]) > 1e-4)
                return sm_fail(SEGMAMBA_E_UNSUPPORTED,
                               "mixed orientations in one series: %s has %g\\%g\\%g\\%g\\%g\\%g, "
                               "%s %g\\%g\\%g\\%g\\%g\\%g",
                               s.where().c_str(), s.iop[0], s.iop[1], s.iop[2], s.iop[3], s.iop[4],
                               s.iop[5], a.where().c_str(), X[0], X[1], X[2], Y[0], Y[1], Y[2]);
        if (s.rows != a.rows || s.cols != a.cols)
            return sm_fail(SEGMAMBA_E_UNSUPPORTED,
                           "mixed image sizes in one series: %s is %ux%u, %s %ux%u",
                           s.where().c_str(), s.cols, s.rows, a.where().c_str(), a.cols, a.rows);
        for (int i = 0; i < 2; i++)
            if (std::fabs(s.spacing[i] - a.spacing[i]) > 1e-4 * a.spacing[i])
                return sm_fail(SEGMAMBA_E_UNSUPPORTED,
                               "mixed pixel spacings in one series: %s has %g\\%g mm, %s %g\\%g",
                               s.where().c_str(), s.spacing[0], s.spacing[1], a.where().c_str(),
                               a.spacing[0], a.spacing[1]);
    }
    if (sl.size() < 2)
        return sm_fail(SEGMAMBA_E_UNSUPPORTED,
                       "%s: a series of one slice; a volume needs at least two", a.where().c_str());
    const double N[3] = {X[1] * Y[2] - X[2] * Y[1], X[2] * Y[0] - X[0] * Y[2],
                         X[0] * Y[1] - X[1] * Y[0]};
    for (Slice &s : sl) s.along = dot(N, s.pos);
    std::stable_sort(sl.begin(), sl.end(),
                     [](const Slice &x, const Slice &y) { return x.along < y.along; });
    std::vector<double> gaps;
    for (size_t k = 0; k + 1 < sl.size(); k++) {
        const double g = sl[k + 1].along - sl[k].along;
        if (g < SM_DICOM_GAP_ABS_MM)
            return sm_fail(SEGMAMBA_E_FORMAT,
                           "%s and %s are at one position (%.4g mm along the slice normal): a "
                           "slice given twice?",
                           sl[k].where().c_str(), sl[k + 1].where().c_str(), sl[k].along);
        gaps.push_back(g);
    }
    std::vector<double> sorted = gaps;
    std::nth_element(sorted.begin(), sorted.begin() + sorted.size() / 2, sorted.end());
    const double typical = sorted[sorted.size() / 2];
    const double tol = std::max(SM_DICOM_GAP_ABS_MM, SM_DICOM_GAP_REL * typical);
    for (size_t k = 0; k < gaps.size(); k++)
        if (std::fabs(gaps[k] - typical) > tol)
            return sm_fail(SEGMAMBA_E_FORMAT,
                           "uneven slice spacing: a gap of %.4g mm between %s and %s, where the "
                           "slices are %.4g mm apart%s",
                           gaps[k], sl[k].where().c_str(), sl[k + 1].where().c_str(), typical,
                           gaps[k] > 1.5 * typical ? " (a slice missing?)" : "");
    spacing_k = (sl.back().along - sl[0].along) / (double)(sl.size() - 1);
    for (const Slice &s : sl) {
        double off[3], r = 0;
        for (int i = 0; i < 3; i++) off[i] = s.pos[i] - sl[0].pos[i];
        const double t = dot(N, off);
        for (int i = 0; i < 3; i++) r += (off[i] - t * N[i]) * (off[i] - t * N[i]);
        if (std::sqrt(r) > tol)
            return sm_fail(SEGMAMBA_E_UNSUPPORTED,
                           "%s is %.4g mm off the slice normal through %s (gantry tilt or a "
                           "sheared stack)",
                           s.where().c_str(), std::sqrt(r), sl[0].where().c_str());
    }
    return SEGMAMBA_OK;
}

sm_status pixel_format(const char *p, DcmDataset *ds, PixelFormat &f)
{
    Uint16 spp = 1, alloc = 0, stored = 0, high = 0, rep = 0;
    ds->findAndGetUint16(DCM_SamplesPerPixel, spp);
    const std::string photo = get_string(ds, DCM_PhotometricInterpretation);
    if (spp != 1 || (photo != "MONOCHROME1" && photo != "MONOCHROME2"))
        return sm_fail(SEGMAMBA_E_UNSUPPORTED,
                       "%s: %u samples per pixel, %s; only greyscale (MONOCHROME1/2) images are "
                       "segmented",
                       p, spp, photo.empty() ? "no photometric interpretation" : photo.c_str());
    if (ds->findAndGetUint16(DCM_BitsAllocated, alloc).bad() || (alloc != 8 && alloc != 16))
        return sm_fail(SEGMAMBA_E_UNSUPPORTED, "%s: Bits Allocated %u; 8 and 16 are supported", p,
                       alloc);
    if (ds->findAndGetUint16(DCM_BitsStored, stored).bad()) stored = alloc;
    if (ds->findAndGetUint16(DCM_HighBit, high).bad()) high = (Uint16)(stored - 1);
    ds->findAndGetUint16(DCM_PixelRepresentation, rep);
    if (stored < 1 || stored > alloc || high != stored - 1 || rep > 1)
        return sm_fail(SEGMAMBA_E_UNSUPPORTED,
                       "%s: Bits Stored %u, High Bit %u, Pixel Representation %u are not "
                       "supported",
                       p, stored, high, rep);
    f.bits_alloc = alloc;
    f.bits_stored = stored;
    f.is_signed = rep == 1;
    return SEGMAMBA_OK;
}

// Decodes the frames of one file into the volume's slices at the given
// indices (slice k of the volume is frame frames[k] of this file).
sm_status read_pixels(const FileHead &h, const std::vector<std::pair<int, size_t>> &wanted,
                      const std::vector<Slice> &sl, float *vol)
{
    const std::string name = slice_name(h);
    const char *p = name.c_str();
    DcmFileFormat ff;
    SM_TRY(load_head(ff, h, false));
    DcmDataset *ds = ff.getDataset();
    const E_TransferSyntax xfer = ds->getOriginalXfer();
    const DcmXfer x(xfer);
    if (x.isEncapsulated()) {
        if (ds->chooseRepresentation(EXS_LittleEndianExplicit, NULL).bad() ||
            !ds->canWriteXfer(EXS_LittleEndianExplicit))
            return sm_fail(SEGMAMBA_E_UNSUPPORTED,
                           "%s: pixel data compressed as %s (%s), which this build cannot decode "
                           "(it decodes uncompressed, deflated, RLE, JPEG and JPEG-LS); "
                           "decompress the series first (e.g. dcmdjpeg, gdcmconv --raw)",
                           p, x.getXferName(), x.getXferID());
    }
    PixelFormat f;
    SM_TRY(pixel_format(p, ds, f));
    const Slice &s0 = sl[wanted[0].second];
    const size_t plane = (size_t)s0.rows * s0.cols;
    const size_t need = plane * (size_t)s0.n_frames * (f.bits_alloc / 8);
    DcmElement *px = NULL;
    if (ds->findAndGetElement(DCM_PixelData, px).bad() || !px)
        return sm_fail(SEGMAMBA_E_FORMAT, "%s: no pixel data", p);
    const Uint8 *b8 = NULL;
    const Uint16 *b16 = NULL;
    OFCondition c = f.bits_alloc == 8 ? px->getUint8Array(OFconst_cast(Uint8 *&, b8))
                                      : px->getUint16Array(OFconst_cast(Uint16 *&, b16));
    if (c.bad() && f.bits_alloc == 16) {
        // 16-bit pixels held as OB: little-endian bytes.
        c = px->getUint8Array(OFconst_cast(Uint8 *&, b8));
    }
    if (c.bad() || (!b8 && !b16))
        return sm_fail(SEGMAMBA_E_FORMAT, "%s: the pixel data cannot be read (%s): truncated?", p,
                       c.text());
    if ((size_t)px->getLength() < need)
        return sm_fail(SEGMAMBA_E_FORMAT,
                       "%s: truncated: the pixel data holds %lu bytes, %ux%u x %d frame(s) of %u "
                       "bits need %zu",
                       p, (unsigned long)px->getLength(), s0.cols, s0.rows, s0.n_frames,
                       f.bits_alloc, need);
    const uint32_t mask = f.bits_stored >= 32 ? 0xffffffffu : (1u << f.bits_stored) - 1;
    const uint32_t sign = 1u << (f.bits_stored - 1);
    for (const auto &w : wanted) {
        const Slice &s = sl[w.second];
        float *dst = vol + w.second * plane;
        const size_t base = (size_t)w.first * plane;
        for (size_t i = 0; i < plane; i++) {
            uint32_t raw;
            if (f.bits_alloc == 8)
                raw = b8[base + i];
            else if (b16)
                raw = b16[base + i];
            else
                raw = (uint32_t)b8[2 * (base + i)] | ((uint32_t)b8[2 * (base + i) + 1] << 8);
            raw &= mask;
            const double v = f.is_signed && (raw & sign) ? (double)raw - 2.0 * sign : (double)raw;
            dst[i] = (float)(v * s.slope + s.intercept);
        }
    }
    return SEGMAMBA_OK;
}

void fill_geometry(const std::vector<Slice> &sl, double spacing_k, segmamba_geometry *g)
{
    const Slice &a = sl[0];
    const double *X = a.iop, *Y = a.iop + 3;
    const double N[3] = {X[1] * Y[2] - X[2] * Y[1], X[2] * Y[0] - X[0] * Y[2],
                         X[0] * Y[1] - X[1] * Y[0]};
    memset(g, 0, sizeof *g);
    g->d = (int)sl.size();
    g->h = (int)a.rows;
    g->w = (int)a.cols;
    g->spacing[0] = spacing_k;
    g->spacing[1] = a.spacing[0]; // between rows
    g->spacing[2] = a.spacing[1]; // between columns
    for (int r = 0; r < 3; r++) {
        const double flip = r < 2 ? -1.0 : 1.0; // LPS -> RAS
        g->affine[r][0] = flip * X[r] * a.spacing[1];
        g->affine[r][1] = flip * Y[r] * a.spacing[0];
        g->affine[r][2] = flip * N[r] * spacing_k;
        g->affine[r][3] = flip * a.pos[r];
    }
    g->affine[3][3] = 1.0;
}

// One channel: the series, its slices sorted and checked, the pixels.
sm_status read_series(const Input &in, segmamba_volume *out, segmamba_dicom_source *src)
{
    const char *dir = in.where.c_str();
    std::vector<FileHead> files;
    SM_TRY(pick_series(in, files));
    std::vector<Slice> sl;
    std::string study;
    for (size_t i = 0; i < files.size(); i++) {
        DcmFileFormat ff;
        SM_TRY(load_head(ff, files[i], true));
        SM_TRY(file_slices(files[i], (int)i, ff.getDataset(), sl));
        if (i == 0) {
            study = get_string(ff.getDataset(), DCM_StudyInstanceUID);
            if (src && src->series.empty()) {
                ff.getDataset()->findAndDeleteElement(DCM_PixelData, OFTrue, OFTrue);
                src->first.reset(new DcmDataset(*ff.getDataset()));
            }
        }
    }
    double spacing_k = 0;
    SM_TRY(order_slices(sl, spacing_k));
    fill_geometry(sl, spacing_k, &out->geom);
    const size_t plane = (size_t)sl[0].rows * sl[0].cols, n = plane * sl.size();
    SM_TRY(sm_memory_check((uint64_t)n * sizeof(float), dir, "the series as float32"));
    out->c = 1;
    out->d = out->geom.d;
    out->h = out->geom.h;
    out->w = out->geom.w;
    out->data = (float *)malloc(n * sizeof(float));
    if (!out->data) return sm_fail(SEGMAMBA_E_NOMEM, "%s: out of memory for the series", dir);
    std::map<int, std::vector<std::pair<int, size_t>>> by_file;
    for (size_t k = 0; k < sl.size(); k++) by_file[sl[k].file].push_back({sl[k].frame, k});
    for (const auto &f : by_file)
        SM_TRY(read_pixels(files[(size_t)f.first], f.second, sl, out->data));
    if (src) {
        SeriesRef ref;
        ref.study = study;
        ref.series = files[0].series;
        for (const FileHead &h : files) ref.instances.push_back({h.sop_class, h.sop_uid});
        if (src->series.empty()) {
            src->slices = sl;
            src->spacing_k = spacing_k;
        }
        src->series.push_back(ref);
    }
    return SEGMAMBA_OK;
}

sm_status read_channels(const std::vector<Input> &inputs, segmamba_volume *out,
                        segmamba_dicom_source *src)
{
    const int n = (int)inputs.size();
    if (n < 1) return sm_fail(SEGMAMBA_E_ARG, "no DICOM series given");
    const char *first = inputs[0].where.c_str();
    SM_TRY(need_dictionary(first));
    for (int i = 0; i < n; i++) {
        segmamba_volume v = {};
        sm_status st = read_series(inputs[(size_t)i], &v, src);
        char why[256];
        if (st == SEGMAMBA_OK && i > 0 &&
            segmamba_geometry_differs(&out->geom, &v.geom, why, sizeof why))
            st = sm_fail(SEGMAMBA_E_SHAPE, "%s and %s: %s", first, inputs[(size_t)i].where.c_str(),
                         why);
        const size_t nvox = (size_t)v.d * v.h * v.w;
        if (st == SEGMAMBA_OK && i == 0 && n > 1) {
            st = sm_memory_check((uint64_t)n * nvox * sizeof(float), first,
                                 "the channels together as float32");
            if (st == SEGMAMBA_OK) {
                *out = v;
                out->c = n;
                out->data = (float *)malloc((size_t)n * nvox * sizeof(float));
                if (!out->data) st = sm_fail(SEGMAMBA_E_NOMEM, "%s: out of memory", first);
            }
        } else if (st == SEGMAMBA_OK && i == 0) {
            *out = v;
            v.data = NULL;
        }
        if (st == SEGMAMBA_OK && n > 1)
            memcpy(out->data + (size_t)i * nvox, v.data, nvox * sizeof(float));
        segmamba_volume_free(&v);
        if (st != SEGMAMBA_OK) return st;
    }
    return SEGMAMBA_OK;
}

// The C entry points' common part: inputs made by make (which may throw),
// C++ exceptions turned into statuses, *out and *source set only on success.
template <typename Make>
sm_status read_guarded(Make make, const char *what, segmamba_volume *out,
                       segmamba_dicom_source **source)
{
    memset(out, 0, sizeof *out);
    if (source) *source = NULL;
    segmamba_dicom_source *src = NULL;
    sm_status st;
    try {
        std::vector<Input> inputs;
        make(inputs);
        src = source ? new segmamba_dicom_source() : NULL;
        st = read_channels(inputs, out, src);
    } catch (const std::bad_alloc &) {
        st = sm_fail(SEGMAMBA_E_NOMEM, "%s: out of memory reading the series", what);
    } catch (const std::exception &e) {
        st = sm_fail(SEGMAMBA_E_FORMAT, "%s: %s", what, e.what());
    }
    if (st != SEGMAMBA_OK) {
        segmamba_volume_free(out);
        delete src;
        return st;
    }
    if (source) *source = src;
    return SEGMAMBA_OK;
}

} // namespace

extern "C" {

int segmamba_dicom_get_supported(void) { return 1; }

sm_status segmamba_dicom_read(const char *const *dirs, const char *const *series, int n,
                              segmamba_volume *out, segmamba_dicom_source **source)
{
    const auto make = [&](std::vector<Input> &inputs) {
        for (int i = 0; i < n; i++) {
            Input in;
            in.where = dirs[i];
            in.want = series ? series[i] : NULL;
            inputs.push_back(in);
        }
    };
    return read_guarded(make, n > 0 ? dirs[0] : "", out, source);
}

sm_status segmamba_dicom_read_memory(const segmamba_dicom_object *const *objects, const int *counts,
                                     int n, segmamba_volume *out, segmamba_dicom_source **source)
{
    for (int i = 0; i < n; i++)
        if (!objects || !counts || counts[i] < 0 || (counts[i] > 0 && !objects[i])) {
            memset(out, 0, sizeof *out);
            if (source) *source = NULL;
            return sm_fail(SEGMAMBA_E_ARG, "DICOM objects of channel %d: none given", i + 1);
        }
    const auto make = [&](std::vector<Input> &inputs) {
        for (int i = 0; i < n; i++) {
            Input in;
            in.where = "DICOM objects of channel " + std::to_string(i + 1);
            in.objects = objects[i];
            in.count = counts[i];
            inputs.push_back(in);
        }
    };
    return read_guarded(make, "DICOM objects", out, source);
}

void segmamba_dicom_source_free(segmamba_dicom_source *source) { delete source; }

} // extern "C"
