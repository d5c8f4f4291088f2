// Private to the two dcmtk files of src/clinical/ (dicom_read_dcmtk.cpp, the
// series reader, and dicom_seg_dcmtk.cpp, the SEG writer): what they share.
// Includes dcmtk, so no C file may include it.
#ifndef SM_DICOM_DCMTK_HPP
#define SM_DICOM_DCMTK_HPP

#include <dcmtk/config/osconfig.h>

#include <dcmtk/dcmdata/dcfilefo.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

extern "C" {
#include "clinical/dicom.h"
#include "core/error.h"
}

namespace sm_dcm
{

// One slice of the series being read: a single-frame file, or one frame of
// a multi-frame file.
struct Slice {
    std::string path; // the file, or the object in memory with its SOP Instance UID
    int file = 0;     // which of the series' files or objects
    int frame = 0;    // 0-based frame in its file
    int n_frames = 1; // of its file
    std::string sop_class, sop_uid;
    double pos[3] = {0, 0, 0}, iop[6] = {0, 0, 0, 0, 0, 0}, spacing[2] = {0, 0};
    double slope = 1, intercept = 0, along = 0;
    unsigned rows = 0, cols = 0;
    std::string where() const
    {
        return n_frames > 1 ? path + " (frame " + std::to_string(frame + 1) + ")" : path;
    }
};

struct SeriesRef {
    std::string study, series;
    std::vector<std::pair<std::string, std::string>> instances; // (class, uid), once each
};

// dcmtk's one-time set-up (logging off, decoders registered), then whether
// its data dictionary is there: an error naming origin if not.
sm_status need_dictionary(const char *origin);

// Parses a DICOM file; header_only leaves values over 4 KiB (the pixel
// data) on disk.
sm_status load(DcmFileFormat &ff, const std::string &path, bool header_only);

// Parses a DICOM Part 10 object held in memory; name is for messages.
sm_status load_memory(DcmFileFormat &ff, const std::string &name, const void *data, size_t size);

} // namespace sm_dcm

struct segmamba_dicom_source {
    // The first file's attributes but Pixel Data: patient, study and frame of
    // reference come from it.
    std::unique_ptr<DcmDataset> first;
    std::vector<sm_dcm::SeriesRef> series;
    std::vector<sm_dcm::Slice> slices; // the first channel's, sorted
    double spacing_k = 0;
};

#endif
