// scalpel/scalpel.hpp — the whole public API in one include.
#pragma once

#include "scalpel/errors.hpp"
#include "scalpel/hooks/edits.hpp"
#include "scalpel/hooks/hook_point.hpp"
#include "scalpel/io/chat_template.hpp"
#include "scalpel/io/hf_config.hpp"
#include "scalpel/io/hf_model.hpp"
#include "scalpel/io/pickle.hpp"
#include "scalpel/io/safetensors.hpp"
#include "scalpel/io/tokenizer.hpp"
#include "scalpel/log.hpp"
#include "scalpel/model/config.hpp"
#include "scalpel/model/transformer.hpp"
#include "scalpel/version.hpp"
