// DICOM SEG out, through dcmtk's dcmseg (clinical/dicom.h; the reader is
// dicom_read_dcmtk.cpp): one BINARY segment per label, frames only where a
// segment is present, each on its source slice.
//
// The Pixel Data is packed here (clinical/seg_bits.h), not by dcmtk: dcmtk
// 3.6.7's DcmSegmentation::concatFrames shifts each frame to its bit
// position inside a buffer of the frame's own byte length and drops the bits
// shifted past its end, then steps by that length, so when rows x columns is
// not a multiple of 8 the frames from the third on come out shifted (fixed
// upstream after 3.6.8, DCMTK issue 1132). Whatever packs the bits, the file
// is decoded again from its encoded bytes and compared with the label map,
// frame by frame and placed by its own functional groups, before it is
// written: a difference is an error and nothing is written.
#include "clinical/dicom_dcmtk.hpp"

#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcistrmb.h>
#include <dcmtk/dcmdata/dcostrmb.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmdata/dcxfer.h>
#include <dcmtk/dcmfg/fgderimg.h>
#include <dcmtk/dcmfg/fgfracon.h>
#include <dcmtk/dcmfg/fgpixmsr.h>
#include <dcmtk/dcmfg/fgplanor.h>
#include <dcmtk/dcmfg/fgplanpo.h>
#include <dcmtk/dcmfg/fgseg.h>
#include <dcmtk/dcmiod/iodreferences.h>
#include <dcmtk/dcmseg/segdoc.h>
#include <dcmtk/dcmseg/segment.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>

extern "C" {
#include "clinical/card.h"
#include "clinical/seg_bits.h"
#include "io/file.h"
#include "sm_config.h"
}

namespace
{

using sm_dcm::need_dictionary;
using sm_dcm::SeriesRef;
using sm_dcm::Slice;

struct Code {
    const char *value, *scheme, *meaning;
};

// BraTS's labels, coded as in DICOM's CID 7150/7151 (SNOMED CT).
const Code ALTERED = {"49755003", "SCT", "Morphologically Altered Structure"};
const Code TISSUE = {"85756007", "SCT", "Tissue"};

void default_codes(const segmamba_card *card, int label, Code &category, Code &type)
{
    static const struct {
        const char *name;
        Code type;
    } brats[] = {{"NCR", {"6574001", "SCT", "Necrosis"}},
                 {"ED", {"79654002", "SCT", "Edema"}},
                 {"ET", {"108369006", "SCT", "Neoplasm"}}};
    for (const auto &b : brats)
        if (strcmp(card->labels[label], b.name) == 0) {
            category = ALTERED;
            type = b.type;
            return;
        }
    category = TISSUE;
    type = TISSUE;
}

std::string fmt(double v)
{
    char b[32];
    snprintf(b, sizeof b, "%.10g", v);
    // DS holds 16 characters at most.
    if (strlen(b) > 16) snprintf(b, sizeof b, "%.8g", v);
    return b;
}

sm_status dcm_fail(const char *path, const char *what, const OFCondition &c)
{
    return sm_fail(SEGMAMBA_E_FORMAT, "%s: cannot make the DICOM SEG: %s (%s)", path, what,
                   c.text());
}

#define SEG_TRY(expr, what)                                                                        \
    do {                                                                                           \
        const OFCondition c_ = (expr);                                                             \
        if (c_.bad()) return dcm_fail(path, what, c_);                                             \
    } while (0)

// The prediction as the SEG's segments see it.
struct LabelMap {
    const segmamba_prediction *p;
    bool masks;
    size_t slices, plane;
    LabelMap(const segmamba_prediction *p_, bool masks_, size_t slices_)
        : p(p_), masks(masks_), slices(slices_), plane((size_t)p_->h * (size_t)p_->w)
    {
    }
    // Segment s's pixels on slice k as 0/1 into out; how many are 1.
    size_t frame(int s, size_t k, Uint8 *out) const
    {
        const uint8_t *v =
            masks ? p->masks + ((size_t)(s - 1) * slices + k) * plane : p->labels + k * plane;
        size_t on = 0;
        for (size_t i = 0; i < plane; i++) {
            out[i] = masks ? v[i] != 0 : v[i] == s;
            on += out[i];
        }
        return on;
    }
};

// A functional group of frame f: its per-frame item, else the shared one.
DcmItem *frame_group(DcmItem *ds, unsigned long f, const DcmTagKey &group)
{
    DcmItem *frame = NULL, *item = NULL;
    if (ds->findAndGetSequenceItem(DCM_PerFrameFunctionalGroupsSequence, frame, (int)f).good() &&
        frame->findAndGetSequenceItem(group, item, 0).good())
        return item;
    if (ds->findAndGetSequenceItem(DCM_SharedFunctionalGroupsSequence, frame, 0).good() &&
        frame->findAndGetSequenceItem(group, item, 0).good())
        return item;
    return NULL;
}

double dot3(const double *a, const double *b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }

// Decodes the SEG from its encoded bytes as any reader would (frames by the
// standard's packing, each placed by its own Referenced Segment Number and
// Image Position) and compares it with the label map: every frame equal to
// its segment on its slice, and every slice where a segment is present in
// some frame.
sm_status check_encoded(const char *path, const unsigned char *bytes, size_t n,
                        const segmamba_dicom_source &src, const LabelMap &labels, int n_seg)
{
    const char *const lead = "the DICOM SEG just encoded, read back,";
    DcmInputBufferStream in;
    in.setBuffer(bytes, (offile_off_t)n);
    in.setEos();
    DcmFileFormat ff;
    ff.transferInit();
    const OFCondition rc = ff.read(in, EXS_Unknown, EGL_noChange, DCM_MaxReadLength);
    ff.transferEnd();
    if (rc.bad())
        return sm_fail(SEGMAMBA_E_BACKEND, "%s: %s does not parse (%s)", path, lead, rc.text());
    DcmDataset *ds = ff.getDataset();
    const std::vector<Slice> &sl = src.slices;
    Uint16 rows = 0, cols = 0;
    Sint32 n_frames = 0;
    const Uint8 *px = NULL;
    unsigned long px_len = 0;
    if (ds->findAndGetUint16(DCM_Rows, rows).bad() ||
        ds->findAndGetUint16(DCM_Columns, cols).bad() || rows != sl[0].rows || cols != sl[0].cols ||
        ds->findAndGetSint32(DCM_NumberOfFrames, n_frames).bad() || n_frames < 1 ||
        ds->findAndGetUint8Array(DCM_PixelData, px, &px_len).bad() || !px ||
        px_len != sm_seg_packed_bytes((size_t)n_frames, labels.plane))
        return sm_fail(SEGMAMBA_E_BACKEND,
                       "%s: %s has %ux%u pixels, %d frames and %lu bytes of Pixel Data where "
                       "%ux%u pixels and %zu bytes for its frames were written",
                       path, lead, cols, rows, (int)n_frames, px_len, sl[0].cols, sl[0].rows,
                       sm_seg_packed_bytes(n_frames > 0 ? (size_t)n_frames : 0, labels.plane));
    double normal[3];
    const double *o = sl[0].iop;
    normal[0] = o[1] * o[5] - o[2] * o[4];
    normal[1] = o[2] * o[3] - o[0] * o[5];
    normal[2] = o[0] * o[4] - o[1] * o[3];
    const double along0 = dot3(normal, sl[0].pos);
    std::vector<Uint8> got(labels.plane), want(labels.plane);
    std::vector<char> seen((size_t)n_seg * sl.size(), 0);
    for (unsigned long f = 0; f < (unsigned long)n_frames; f++) {
        DcmItem *si = frame_group(ds, f, DCM_SegmentIdentificationSequence);
        DcmItem *pp = frame_group(ds, f, DCM_PlanePositionSequence);
        Uint16 s = 0;
        double pos[3] = {0, 0, 0};
        bool ok = si && si->findAndGetUint16(DCM_ReferencedSegmentNumber, s).good() && s >= 1 &&
                  s <= n_seg && pp;
        for (int a = 0; ok && a < 3; a++)
            ok = pp->findAndGetFloat64(DCM_ImagePositionPatient, pos[a], (unsigned long)a).good();
        const double kf = ok ? (dot3(normal, pos) - along0) / src.spacing_k : -1;
        const long k = ok && std::isfinite(kf) ? std::lround(kf) : -1;
        ok = ok && k >= 0 && (size_t)k < sl.size();
        for (int a = 0; ok && a < 3; a++) ok = std::fabs(pos[a] - sl[(size_t)k].pos[a]) < 1e-3;
        if (!ok)
            return sm_fail(SEGMAMBA_E_BACKEND,
                           "%s: %s has frame %lu with no valid segment number or no source slice "
                           "at its position",
                           path, lead, f + 1);
        sm_seg_unpack_frame(px, f, labels.plane, got.data());
        labels.frame(s, (size_t)k, want.data());
        size_t differ = 0;
        for (size_t i = 0; i < labels.plane; i++) differ += got[i] != want[i];
        if (differ)
            return sm_fail(
                SEGMAMBA_E_BACKEND,
                "%s: %s differs from the label map in frame %lu (segment %u, slice %ld): "
                "%zu of its %zu pixels; nothing written",
                path, lead, f + 1, (unsigned)s, k + 1, differ, labels.plane);
        seen[(size_t)(s - 1) * sl.size() + (size_t)k] = 1;
    }
    for (int s = 1; s <= n_seg; s++)
        for (size_t k = 0; k < sl.size(); k++)
            if (!seen[(size_t)(s - 1) * sl.size() + k] && labels.frame(s, k, want.data()))
                return sm_fail(SEGMAMBA_E_BACKEND,
                               "%s: %s has no frame for segment %d on slice %zu, which the label "
                               "map has; nothing written",
                               path, lead, s, k + 1);
    return SEGMAMBA_OK;
}

// A UID as PS3.5 9.1 allows it: 1 to 64 characters, digits and dots, no
// empty component, no leading zero in a component of more than one digit.
bool uid_valid(const char *u)
{
    const size_t n = strlen(u);
    if (n < 1 || n > 64) return false;
    for (size_t i = 0; i < n; i++) {
        const bool start = i == 0 || u[i - 1] == '.';
        if (u[i] == '.') {
            if (start || i + 1 == n) return false;
        } else if (u[i] < '0' || u[i] > '9' ||
                   (start && u[i] == '0' && i + 1 < n && u[i + 1] != '.'))
            return false;
    }
    return true;
}

// The SEG of p encoded as a Part 10 file in buf (its first *used bytes),
// checked by decoding it again; path names it in messages.
sm_status encode_seg(const char *path, const segmamba_dicom_source *src, const segmamba_card *card,
                     const segmamba_prediction *p, const segmamba_dicom_seg_options &opt,
                     std::vector<unsigned char> &buf, size_t &used)
{
    const char *const uids[2] = {opt.series_uid, opt.instance_uid};
    for (const char *u : uids)
        if (u && !uid_valid(u))
            return sm_fail(SEGMAMBA_E_ARG,
                           "%s: \"%s\" is not a DICOM UID (1 to 64 digits and dots, no empty "
                           "component, no leading zero)",
                           path, u);
    SM_TRY(need_dictionary(path));
    const std::vector<Slice> &sl = src->slices;
    const unsigned rows = sl[0].rows, cols = sl[0].cols;
    if (p->d != (int)sl.size() || p->h != (int)rows || p->w != (int)cols)
        return sm_fail(
            SEGMAMBA_E_ARG,
            "%s: the prediction (%dx%dx%d) is not on the source series' grid (%ux%ux%zu)", path,
            p->w, p->h, p->d, cols, rows, sl.size());
    const bool masks = segmamba_card_get_writes_masks(card) != 0;
    const int n_seg = masks ? p->n_masks : card->n_labels - 1;
    if (n_seg < 1) return sm_fail(SEGMAMBA_E_ARG, "%s: the card has no foreground label", path);

    IODGeneralEquipmentModule::EquipmentInfo eq("segmamba", "segmamba", "0", SM_VERSION);
    ContentIdentificationMacro ci("1", "SEGMAMBA", "SegMamba segmentation", "segmamba");
    DcmSegmentation *raw = NULL;
    SEG_TRY(DcmSegmentation::createBinarySegmentation(raw, (Uint16)rows, (Uint16)cols, eq, ci),
            "creating the object");
    std::unique_ptr<DcmSegmentation> seg(raw);
    SEG_TRY(seg->importFromSourceImage(*src->first, OFTrue),
            "taking patient, study and frame of reference from the source");
    SEG_TRY(seg->getSeries().setSeriesDescription(opt.series_description ? opt.series_description
                                                                         : "SegMamba segmentation"),
            "series description");
    if (opt.series_uid)
        SEG_TRY(seg->getSeries().setSeriesInstanceUID(opt.series_uid), "series instance UID");
    if (opt.instance_uid)
        SEG_TRY(seg->getSOPCommon().setSOPInstanceUID(opt.instance_uid), "SOP instance UID");
    SEG_TRY(seg->getSeries().setSeriesNumber("901"), "series number");

    for (int s = 1; s <= n_seg; s++) {
        Code cat, type;
        default_codes(card, s, cat, type);
        const segmamba_card_code *cc = &card->codes[s];
        if (cc->category.value[0])
            cat = {cc->category.value, cc->category.scheme, cc->category.meaning};
        if (cc->type.value[0]) type = {cc->type.value, cc->type.scheme, cc->type.meaning};
        DcmSegment *segment = NULL;
        SEG_TRY(DcmSegment::create(segment, card->labels[s],
                                   CodeSequenceMacro(cat.value, cat.scheme, cat.meaning),
                                   CodeSequenceMacro(type.value, type.scheme, type.meaning),
                                   DcmSegTypes::SAT_AUTOMATIC, "SegMamba"),
                "a segment");
        Uint16 number = 0;
        const OFCondition c = seg->addSegment(segment, number);
        if (c.bad()) delete segment;
        SEG_TRY(c, "adding a segment");
    }

    FGPixelMeasures meas;
    SEG_TRY(meas.setPixelSpacing((fmt(sl[0].spacing[0]) + "\\" + fmt(sl[0].spacing[1])).c_str()),
            "pixel spacing");
    SEG_TRY(meas.setSliceThickness(fmt(src->spacing_k).c_str()), "slice thickness");
    SEG_TRY(meas.setSpacingBetweenSlices(fmt(src->spacing_k).c_str()), "spacing between slices");
    FGPlaneOrientationPatient orient;
    const double *o = sl[0].iop;
    SEG_TRY(orient.setImageOrientationPatient(fmt(o[0]).c_str(), fmt(o[1]).c_str(),
                                              fmt(o[2]).c_str(), fmt(o[3]).c_str(),
                                              fmt(o[4]).c_str(), fmt(o[5]).c_str()),
            "image orientation");
    SEG_TRY(seg->addForAllFrames(meas), "pixel measures");
    SEG_TRY(seg->addForAllFrames(orient), "plane orientation");

    const LabelMap labels(p, masks, sl.size());
    std::vector<Uint8> frame(labels.plane);
    std::vector<std::pair<int, size_t>> frames; // (segment, slice); segment 0: an empty frame
    for (int s = 1; s <= n_seg; s++)
        for (size_t k = 0; k < sl.size(); k++) {
            const bool on = labels.frame(s, k, frame.data()) != 0;
            // The IOD needs one frame: an empty prediction keeps segment 1's first.
            const bool last = s == n_seg && k + 1 == sl.size();
            if (!on && !(last && frames.empty())) continue;
            const size_t kk = on ? k : 0;
            FGPlanePosPatient pos;
            SEG_TRY(pos.setImagePositionPatient(fmt(sl[kk].pos[0]).c_str(),
                                                fmt(sl[kk].pos[1]).c_str(),
                                                fmt(sl[kk].pos[2]).c_str()),
                    "plane position");
            FGFrameContent content;
            SEG_TRY(content.setDimensionIndexValues((Uint32)(on ? s : 1), 0), "dimension index");
            SEG_TRY(content.setDimensionIndexValues((Uint32)(kk + 1), 1), "dimension index");
            // A frame of a multi-frame source is referenced by its number.
            OFVector<Uint16> source_frame;
            if (sl[kk].n_frames > 1) source_frame.push_back((Uint16)(sl[kk].frame + 1));
            ImageSOPInstanceReferenceMacro *ref = NULL;
            SEG_TRY(ImageSOPInstanceReferenceMacro::create(
                        sl[kk].sop_class.c_str(), sl[kk].sop_uid.c_str(), source_frame, ref),
                    "source image reference");
            OFVector<ImageSOPInstanceReferenceMacro> refs;
            refs.push_back(*ref);
            delete ref;
            std::unique_ptr<FGDerivationImage> deriv(
                DcmSegmentation::createDerivationImageFG(refs, "Segmented by SegMamba"));
            if (!deriv) return sm_fail(SEGMAMBA_E_NOMEM, "%s: derivation image group", path);
            OFVector<FGBase *> groups;
            groups.push_back(&pos);
            groups.push_back(&content);
            groups.push_back(deriv.get());
            SEG_TRY(seg->addFrame(frame.data(), (Uint16)(on ? s : 1), groups), "adding a frame");
            frames.emplace_back(on ? s : 0, kk);
        }

    char uid[100];
    dcmGenerateUniqueIdentifier(uid, SITE_INSTANCE_UID_ROOT);
    IODMultiframeDimensionModule &dims = seg->getDimensions();
    SEG_TRY(dims.addDimensionIndex(DCM_ReferencedSegmentNumber, uid,
                                   DCM_SegmentIdentificationSequence, "ReferencedSegmentNumber"),
            "dimension index");
    SEG_TRY(dims.addDimensionIndex(DCM_ImagePositionPatient, uid, DCM_PlanePositionSequence,
                                   "ImagePositionPatient"),
            "dimension index");

    IODReferences refs;
    for (const SeriesRef &r : src->series)
        for (const auto &inst : r.instances) {
            IODReference *ref = new IODReference(IODReference::LEVEL_STUDY);
            ref->m_StudyInstanceUID = r.study.c_str();
            ref->m_SeriesInstanceUID = r.series.c_str();
            ref->m_SOPClassUID = inst.first.c_str();
            ref->m_SOPInstanceUID = inst.second.c_str();
            if (!refs.add(ref)) delete ref;
        }
    seg->getCommonInstanceReference().addReferences(refs, src->series[0].study.c_str());

    DcmFileFormat out;
    DcmDataset *ds = out.getDataset();
    SEG_TRY(seg->writeDataset(*ds), "writing the dataset");
    // Every frame lies on its source slice's grid, which readers (highdicom)
    // want said before they index masks by source image.
    DcmItem *frame_item = NULL;
    for (unsigned long f = 0;
         ds->findAndGetSequenceItem(DCM_PerFrameFunctionalGroupsSequence, frame_item, (int)f)
             .good();
         f++) {
        DcmItem *deriv_item = NULL, *source_item = NULL;
        if (frame_item->findAndGetSequenceItem(DCM_DerivationImageSequence, deriv_item, 0).good() &&
            deriv_item->findAndGetSequenceItem(DCM_SourceImageSequence, source_item, 0).good())
            SEG_TRY(source_item->putAndInsertString(DCM_SpatialLocationsPreserved, "YES"),
                    "spatial locations preserved");
    }
    // dcmtk's Pixel Data replaced by the standard's packing (see the top).
    const size_t bytes = sm_seg_packed_bytes(frames.size(), labels.plane);
    if (bytes == 0 || bytes > 0xfffffff0u)
        return sm_fail(SEGMAMBA_E_NOMEM,
                       "%s: %zu frames of %ux%u pixels are too large for a DICOM SEG", path,
                       frames.size(), rows, cols);
    std::vector<Uint8> packed(bytes, 0);
    for (size_t f = 0; f < frames.size(); f++)
        if (frames[f].first) {
            labels.frame(frames[f].first, frames[f].second, frame.data());
            sm_seg_pack_frame(packed.data(), f, labels.plane, frame.data());
        }
    SEG_TRY(ds->putAndInsertUint8Array(DCM_PixelData, packed.data(), (unsigned long)bytes),
            "pixel data");

    const E_TransferSyntax xfer = EXS_LittleEndianExplicit;
    SEG_TRY(out.validateMetaInfo(xfer), "the meta header");
    const Uint32 len = out.calcElementLength(xfer, EET_ExplicitLength) + 1024;
    buf.resize(len);
    DcmOutputBufferStream stream(buf.data(), len);
    out.transferInit();
    const OFCondition wc = out.write(stream, xfer, EET_ExplicitLength, NULL);
    out.transferEnd();
    SEG_TRY(wc, "encoding");
    void *written = NULL;
    offile_off_t n = 0;
    stream.flushBuffer(written, n);
    used = (size_t)n;
    return check_encoded(path, buf.data(), used, *src, labels, n_seg);
}

// The C entry points' common part: arguments checked, C++ exceptions turned
// into statuses.
sm_status encode_guarded(const char *path, const segmamba_dicom_source *source,
                         const segmamba_card *card, const segmamba_prediction *p,
                         const segmamba_dicom_seg_options *opt, std::vector<unsigned char> &buf,
                         size_t &used)
{
    if (!source || source->slices.empty() || !source->first)
        return sm_fail(SEGMAMBA_E_ARG,
                       "%s: a DICOM SEG needs the DICOM series the prediction was made from", path);
    const segmamba_dicom_seg_options none = {NULL, NULL, NULL};
    try {
        return encode_seg(path, source, card, p, opt ? *opt : none, buf, used);
    } catch (const std::bad_alloc &) {
        return sm_fail(SEGMAMBA_E_NOMEM, "%s: out of memory writing the DICOM SEG", path);
    } catch (const std::exception &e) {
        return sm_fail(SEGMAMBA_E_FORMAT, "%s: %s", path, e.what());
    }
}

} // namespace

extern "C" {

sm_status segmamba_dicom_write_seg(const char *path, const segmamba_dicom_source *source,
                                   const segmamba_card *card, const segmamba_prediction *p)
{
    std::vector<unsigned char> buf;
    size_t used = 0;
    SM_TRY(encode_guarded(path, source, card, p, NULL, buf, used));
    const void *parts[1] = {buf.data()};
    const size_t sizes[1] = {used};
    return sm_file_write_atomic(path, parts, sizes, 1);
}

sm_status segmamba_dicom_encode_seg(const segmamba_dicom_source *source, const segmamba_card *card,
                                    const segmamba_prediction *p,
                                    const segmamba_dicom_seg_options *opt, unsigned char **data,
                                    size_t *size)
{
    *data = NULL;
    *size = 0;
    std::vector<unsigned char> buf;
    size_t used = 0;
    SM_TRY(encode_guarded("the DICOM SEG", source, card, p, opt, buf, used));
    unsigned char *copy = (unsigned char *)malloc(used ? used : 1);
    if (!copy) return sm_fail(SEGMAMBA_E_NOMEM, "the DICOM SEG: out of memory (%zu bytes)", used);
    memcpy(copy, buf.data(), used);
    *data = copy;
    *size = used;
    return SEGMAMBA_OK;
}

} // extern "C"
