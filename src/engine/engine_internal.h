/* What the CLI's bench may see of a model beyond the public API. */
#ifndef SM_ENGINE_INTERNAL_H
#define SM_ENGINE_INTERNAL_H

#include "engine/graph.h"
#include "segmamba.h"

/* The model's graph, with per-node times of the last forward. */
const sm_graph *sm_engine_graph(const segmamba_model *m);

#endif
