/* What profile.c sees of a model beyond the public API; only src/api/
 * includes it. */
#ifndef SM_MODEL_INTERNAL_H
#define SM_MODEL_INTERNAL_H

#include "engine/graph.h"
#include "segmamba.h"

/* The model's graph, with per-node times of the last forward. */
const sm_graph *sm_model_graph(const segmamba_model *m);

#endif
