// scalpel/eval/datasets.hpp — readers of the evaluation data the project uses
// (../shared/data layout: WikiText-2, GSM8K, MBPP), each with a data_dir
// argument; FileNotFound saying how to point at the data when it is missing.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace scalpel {

class Tokenizer;

/// $SCALPEL_DATA, else $SCALPEL_SHARED/data, when the directory exists
/// (Python's sra.shared_data_dir also looks beside the repository).
std::optional<std::string> shared_data_dir();

/// `n` consecutive windows of `seq_len` tokens (after the BOS the tokenizer
/// adds, if any) from WikiText-2 (raw) test: data_dir/wikitext-2-raw/wiki.test.raw.
/// data_dir "" = shared_data_dir(). FileNotFound saying how to point at the data.
std::vector<std::vector<int64_t>> wikitext2(const Tokenizer& tokenizer, int64_t n = 32, int64_t seq_len = 128,
                                            const std::string& data_dir = "");
/// (question, reference solution) pairs from data_dir/gsm8k/test.jsonl.
std::vector<std::pair<std::string, std::string>> gsm8k(int64_t n = 32, const std::string& data_dir = "");
/// (task, reference code) pairs from data_dir/mbpp/mbpp.jsonl.
std::vector<std::pair<std::string, std::string>> mbpp(int64_t n = 32, const std::string& data_dir = "");

}  // namespace scalpel
