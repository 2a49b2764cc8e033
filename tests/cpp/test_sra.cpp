// SCALPEL_USES_TORCH
// Surgical Refusal Ablation end to end from C++ (scalpel/steer/sra.hpp):
// the registry file format, selection, the surgical direction, the evaluation
// numbers against direct computations, mining's stop rules and the export
// against the hooked model. The organism run and the transformers oracles are
// in tests/python/test_sra.py.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "scalpel/eval/datasets.hpp"
#include "scalpel/steer/sra.hpp"
#include "scalpel/errors.hpp"
#include "scalpel/io/tokenizer.hpp"
#include "scalpel/model/transformer.hpp"
#include "scalpel/eval/metrics.hpp"
#include "support/test_util.hpp"

namespace {

namespace fs = std::filesystem;
using scalpel::test::TempDir;

std::string stories_dir() {
  const auto shared = scalpel::test::shared_dir();
  return shared.empty() ? "" : shared + "/models/tinystories-656k";
}

#define NEED_STORIES()                                                              \
  const std::string src = stories_dir();                                            \
  if (src.empty()) GTEST_SKIP() << "SCALPEL_SHARED not set and ../shared missing";

const std::vector<std::string> kHarmful{"Tom wanted to hit the dog.", "Sue said she would break the toy.",
                                        "The boy wanted to push his sister.", "Ben said he would steal the ball."};
const std::vector<std::string> kHarmless{"Tom wanted to pet the dog.", "Sue said she would share the toy.",
                                         "The boy wanted to hug his sister.", "Ben said he would find the ball."};

TEST(SRA, DefaultRegistryShipsInTheLibrary) {
  auto reg = scalpel::Registry::default_registry();
  EXPECT_EQ(reg.names({"shield"}), (std::vector<std::string>{"math", "coding", "logic", "factual", "story"}));
  EXPECT_EQ(reg.names({"confound"}),
            (std::vector<std::string>{"imperative", "formal", "long", "polite", "list_format"}));
  EXPECT_EQ(reg.atom("imperative").positive.size(), 36u);  // 3 templates × 12 fills
  EXPECT_THROW(reg.atom("maths"), scalpel::UnknownName);
  EXPECT_THROW(reg.direction("math", "blocks.0.hook_resid_pre", -1), scalpel::UnknownName);
}

TEST(SRA, RegistryFileFormat) {
  TempDir tmp;
  scalpel::test::write_file(tmp.path("p.jsonl"), "{\"q\": \"one\"}\n{\"q\": \"two\"}\n{\"q\": \"three\"}\n");
  const std::string text = R"({"format": "scalpel.atoms/1", "atoms": [
      {"name": "a", "kind": "shield", "positive": ["Say {x}.", "Spell {{{x}}}."], "negative": ["Hi."], "fill": ["p", "q"]},
      {"name": "b", "kind": "confound", "positive": {"file": "p.jsonl", "field": "q", "limit": 2}, "negative": ["x"],
       "hooks": ["blocks.0.hook_resid_pre"]}]})";
  scalpel::test::write_file(tmp.path("reg.json"), text);
  auto reg = scalpel::Registry::load(tmp.path("reg.json"));
  EXPECT_EQ(reg.atom("a").positive, (std::vector<std::string>{"Say p.", "Spell {p}.", "Say q.", "Spell {q}."}));
  EXPECT_EQ(reg.atom("b").positive, (std::vector<std::string>{"one", "two"}));
  EXPECT_EQ(reg.atom("b").hooks, (std::vector<std::string>{"blocks.0.hook_resid_pre"}));
  reg.directions()[scalpel::direction_key("a", "h", -1)] = torch::arange(4, torch::kFloat);
  reg.save(tmp.path("out/reg2.json"), {{"model", "test"}});
  auto back = scalpel::Registry::load(tmp.path("out/reg2.json"));
  EXPECT_EQ(back.names(), reg.names());
  EXPECT_EQ(back.atom("a").positive, reg.atom("a").positive);
  EXPECT_TRUE(back.direction("a", "h", -1).equal(torch::arange(4, torch::kFloat)));

  auto bad = [&](const std::string& atoms) {
    return scalpel::Registry::from_json(R"({"format": "scalpel.atoms/1", "atoms": [)" + atoms + "]}", tmp.root());
  };
  EXPECT_THROW(bad(R"({"name": "x", "kind": "shield"})"), scalpel::FormatError);
  EXPECT_THROW(bad(R"({"name": "x", "kind": "shiled", "positive": ["a"], "negative": ["b"]})"), scalpel::FormatError);
  EXPECT_THROW(bad(R"({"name": "x", "kind": "shield", "positive": ["{y}"], "negative": ["b"], "fill": ["1"]})"),
               scalpel::FormatError);
  EXPECT_THROW(bad(R"({"name": "x", "kind": "shield", "positive": {"file": "none.jsonl"}, "negative": ["b"]})"),
               scalpel::FileNotFound);
  EXPECT_THROW(scalpel::Registry::from_json(R"({"format": "other", "atoms": []})"), scalpel::FormatError);
  EXPECT_THROW(bad(R"({"name": 3, "kind": "shield", "positive": ["a"], "negative": ["b"]})"), scalpel::FormatError);
  EXPECT_THROW(bad(R"({"name": "x", "kind": "shield", "positive": {"file": "p.jsonl", "field": "z"}, "negative": ["b"]})"),
               scalpel::FormatError);
  EXPECT_THROW(bad(R"({"name": "x", "kind": "shield", "positive": {"file": "p.jsonl", "limit": "2"}, "negative": ["b"]})"),
               scalpel::FormatError);
  auto empty_fill = bad(R"({"name": "x", "kind": "shield", "positive": ["{x} a"], "negative": ["b"], "fill": []})");
  EXPECT_EQ(empty_fill.atom("x").positive, (std::vector<std::string>{"{x} a"}));  // no fill: the text as written
  EXPECT_THROW(scalpel::Atom("x", "shield", {}, {"b"}), scalpel::InvalidArgument);
  try {
    bad(R"({"name": "x", "kind": "shield"})");
  } catch (const scalpel::FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("positive"), std::string::npos) << e.what();
  }
}

TEST(SRA, PipelineFromCandidatesToExport) {
  NEED_STORIES();
  torch::NoGradGuard no_grad;
  auto model = scalpel::Transformer::from_pretrained(src, "float32");
  const auto fmt = scalpel::chat_formatter(*model);  // no template: plain text with BOS
  EXPECT_FALSE(fmt.templated);
  EXPECT_EQ(scalpel::post_instruction_positions(*model, fmt), (std::vector<int64_t>{-1}));

  // Candidates: every layer's resid_pre and resid_mid at the last position, = mean differences.
  auto cands = scalpel::candidate_directions(*model, kHarmful, kHarmless, fmt);
  const int64_t L = model->config().n_layers;
  ASSERT_EQ(cands.hooks.size(), static_cast<size_t>(2 * L));
  auto H = scalpel::encode_prompts(*model, kHarmful, fmt), B = scalpel::encode_prompts(*model, kHarmless, fmt);
  auto want = scalpel::collect_activations(*model, H, {"blocks.1.hook_resid_pre"}, {-1}).mean(0) -
              scalpel::collect_activations(*model, B, {"blocks.1.hook_resid_pre"}, {-1}).mean(0);
  EXPECT_LT((cands.directions[2][0] - want[0][0]).abs().max().item<double>(), 1e-5);

  // Selection: the eligible candidate with the lowest bypass score.
  // Every token but one: a score that is positive on any prompt, so that the induce filter passes
  // and the choice is the lowest bypass score.
  std::vector<int64_t> tokens;
  for (int64_t t = 1; t < model->tokenizer().vocab_size(); ++t) tokens.push_back(t);
  auto sel = scalpel::select_direction(*model, cands, kHarmful, kHarmless, fmt, tokens, 1e9, 0.0, false);
  ASSERT_EQ(sel.rows.size(), cands.hooks.size());
  double best = 1e300;
  for (const auto& r : sel.rows)
    if (r.eligible) best = std::min(best, *r.bypass);
  bool found = false;
  for (const auto& r : sel.rows) found |= r.hook == sel.hook && r.eligible && *r.bypass == best;
  EXPECT_TRUE(found);
  auto j = nlohmann::json::parse(sel.to_json());
  EXPECT_EQ(j["candidates"].size(), sel.rows.size());
  EXPECT_THROW(scalpel::select_direction(*model, cands, kHarmful, kHarmless, fmt, tokens, -1.0, 0.0, false),
               std::runtime_error);

  // The surgical direction = the ridge residual on the registry's atoms at the site.
  scalpel::Registry reg({scalpel::Atom("calm", "confound", {"Tom was calm.", "Sue sat still."}, {"Tom ran.", "Sue hopped."}),
                         scalpel::Atom("count", "shield", {"One, two, three.", "Four, five."}, {"A cat.", "The sun."})});
  reg.extract(*model, {sel.hook}, {sel.position}, fmt);
  auto res = scalpel::surgical_direction(sel.direction, reg, sel.hook, sel.position, 0.5);
  auto direct = scalpel::ridge_residualize(sel.direction, reg.matrix(sel.hook, sel.position).second, 0.5);
  EXPECT_LT((res.clean - direct.clean.to(torch::kFloat)).abs().max().item<double>(), 1e-6);
  EXPECT_EQ(res.atoms, (std::vector<std::string>{"calm", "count"}));
  EXPECT_EQ(scalpel::surgical_direction(sel.direction, reg, sel.hook, sel.position, 0.5, {"shield", "confound"},
                                        {"calm"}).atoms,
            (std::vector<std::string>{"count"}));

  // Evaluation: KL of the unedited model against itself is 0; the perplexity of a
  // solution given its prompt equals a direct masked log-likelihood.
  scalpel::EvalOptions o;
  o.reference_logits = scalpel::last_logits(*model, B);
  o.tokens = tokens;
  o.max_new_tokens = 6;
  o.judge = [](const std::string& s) { return s.find("hit") != std::string::npos; };
  const std::vector<std::pair<std::string, std::string>> pairs{{"Tom had a ball.", " He threw it to Sue."},
                                                               {"The cat sat.", " It was happy and warm."}};
  o.solutions = {{"story", pairs}};
  auto ev = scalpel::evaluate(*model, kHarmful, kHarmless, fmt, o);
  EXPECT_LT(std::abs(*ev.first_token_kl), 1e-6);
  EXPECT_GE(ev.refusal_rate, 0.0);
  EXPECT_LE(ev.refusal_rate, 1.0);
  double nll = 0;
  int64_t count = 0;
  for (const auto& [q, a] : pairs) {
    auto p = scalpel::encode_formatted(*model, q, fmt), full = scalpel::encode_formatted(*model, q + a, fmt);
    auto t = torch::tensor(full).unsqueeze(0);
    auto lp = torch::log_softmax(model->forward(t).to(torch::kDouble), -1)[0];
    for (size_t i = p.size(); i < full.size(); ++i, ++count) nll -= lp[static_cast<int64_t>(i) - 1][full[i]].item<double>();
  }
  ASSERT_EQ(ev.solution_perplexities.size(), 1u);
  EXPECT_NEAR(ev.solution_perplexities[0].second, std::exp(nll / static_cast<double>(count)),
              1e-4 * std::exp(nll / static_cast<double>(count)));
  EXPECT_NE(nlohmann::json::parse(ev.to_json()).count("story_perplexity"), 0u);

  // Mining: everything refused → the whole pool joins and round 1 runs; nothing refused
  // and no KL additions → one round (nothing new).
  int calls = 0;
  auto make = [&](const std::vector<std::string>& h, const std::vector<std::string>& b) {
    ++calls;
    return scalpel::mean_difference(scalpel::collect_activations(*model, scalpel::encode_prompts(*model, h, fmt),
                                                                 {sel.hook}, {-1}),
                                     scalpel::collect_activations(*model, scalpel::encode_prompts(*model, b, fmt),
                                                                  {sel.hook}, {-1}))[0][0];
  };
  scalpel::MiningOptions mo;
  mo.rounds = 2;
  mo.max_new_tokens = 2;
  mo.judge = [](const std::string&) { return true; };
  mo.top_kl = 1;
  mo.log = [](const std::string&) {};
  const std::vector<std::string> pool_h{"Max would kick the cat.", "Lily said she would bite."};
  auto [v, hist] = scalpel::mine_hard_negatives(*model, make, {kHarmful[0]}, {kHarmless[0]}, pool_h,
                                                {"Max would feed the cat.", "Lily sang."}, fmt, mo);
  ASSERT_EQ(hist.size(), 2u);
  EXPECT_EQ(hist[0].added_harmful, pool_h);
  EXPECT_EQ(hist[0].added_harmless.size(), 1u);
  EXPECT_EQ(hist[1].harmful_set, 3);
  EXPECT_TRUE(hist[1].added_harmful.empty());  // already in the set
  EXPECT_DOUBLE_EQ(hist[0].refusal_rate, 1.0);
  mo.judge = [](const std::string&) { return false; };
  mo.top_kl = 0;
  calls = 0;
  auto [v2, hist2] = scalpel::mine_hard_negatives(*model, make, {kHarmful[0]}, {kHarmless[0]}, pool_h, {"Lily sang."},
                                                  fmt, mo);
  EXPECT_EQ(hist2.size(), 1u);
  EXPECT_EQ(calls, 1);

  // Export: the weights edited from a layer on equal the hooked ablation; the source is untouched.
  TempDir tmp;
  const auto before = scalpel::test::read_file(src + "/model.safetensors");
  scalpel::export_ablated(src, tmp.path("edited"), res.clean, 1.0, false, 1);
  EXPECT_EQ(scalpel::test::read_file(src + "/model.safetensors"), before);
  auto edited = scalpel::Transformer::from_pretrained(tmp.path("edited"), "float32");
  auto probe = scalpel::encode_prompts(*model, {"Once upon a time, a little dog"}, fmt);
  at::Tensor hooked;
  {
    auto h = scalpel::ablate_direction(*model, res.clean, 1.0, 1);
    hooked = scalpel::last_logits(*model, probe);
  }
  EXPECT_LT((scalpel::last_logits(*edited, probe) - hooked).abs().max().item<double>(), 1e-4);
  auto rec = nlohmann::json::parse(scalpel::test::read_file(tmp.path("edited/scalpel_edit.json")));
  EXPECT_EQ(rec["from_layer"], 1);
  EXPECT_EQ(rec["direction"].size(), static_cast<size_t>(model->config().d_model));
  EXPECT_THROW(scalpel::export_ablated(src, tmp.path("edited"), res.clean), scalpel::InvalidArgument);
}

TEST(SRA, EvaluationSetsNeedData) {
  TempDir tmp;
  EXPECT_THROW(scalpel::gsm8k(4, tmp.root()), scalpel::FileNotFound);
  fs::create_directories(tmp.path("gsm8k"));
  scalpel::test::write_file(tmp.path("gsm8k/test.jsonl"),
                            "{\"question\": \"1+1?\", \"answer\": \"2\"}\n{\"question\": \"2+2?\", \"answer\": \"4\"}\n");
  auto rows = scalpel::gsm8k(1, tmp.root());
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].second, "2");
  scalpel::test::write_file(tmp.path("gsm8k/test.jsonl"), "{\"q\": 1}\n");
  EXPECT_THROW(scalpel::gsm8k(4, tmp.root()), scalpel::FormatError);
}

}  // namespace
