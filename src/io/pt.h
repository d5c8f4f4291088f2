/* The torch.save reader: a zip holding a pickled state_dict and its
 * storages (pt.c, over the restricted unpickler pt_pickle.c). Appends the
 * tensors to out, which the caller frees; the names are left as the file
 * has them (io/checkpoint.h normalises them). */
#ifndef SM_IO_PT_H
#define SM_IO_PT_H

#include <stddef.h>

#include "core/error.h"
#include "io/weights.h"

sm_status sm_load_pt(const char *path, sm_weights *out);

/* The same on a file already in memory (data[0, size)); origin names it in
 * messages. */
sm_status sm_load_pt_memory(const unsigned char *data, size_t size, const char *origin,
                            sm_weights *out);

#endif
