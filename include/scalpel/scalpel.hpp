// scalpel/scalpel.hpp — the whole public API in one include, room by room
// (docs/architecture.md).
#pragma once

#include "scalpel/errors.hpp"
#include "scalpel/log.hpp"
#include "scalpel/version.hpp"

#include "scalpel/io/chat_template.hpp"
#include "scalpel/io/hf_config.hpp"
#include "scalpel/io/hf_model.hpp"
#include "scalpel/io/pickle.hpp"
#include "scalpel/io/prompts.hpp"
#include "scalpel/io/safetensors.hpp"
#include "scalpel/io/tokenizer.hpp"

#include "scalpel/hooks/edits.hpp"
#include "scalpel/hooks/hook_point.hpp"
#include "scalpel/hooks/names.hpp"

#include "scalpel/model/config.hpp"
#include "scalpel/model/prompts.hpp"
#include "scalpel/model/transformer.hpp"

#include "scalpel/eval/datasets.hpp"
#include "scalpel/eval/evaluate.hpp"
#include "scalpel/eval/metrics.hpp"
#include "scalpel/eval/refusal.hpp"

#include "scalpel/trace/circuit.hpp"
#include "scalpel/trace/pairs.hpp"
#include "scalpel/trace/patching.hpp"

#include "scalpel/steer/atoms.hpp"
#include "scalpel/steer/breaker.hpp"
#include "scalpel/steer/directions.hpp"
#include "scalpel/steer/gate.hpp"
#include "scalpel/steer/intervention.hpp"
#include "scalpel/steer/sra.hpp"
#include "scalpel/steer/steering.hpp"

#include "scalpel/train/train.hpp"
