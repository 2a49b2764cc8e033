// hooks/names.hpp: the one place hook names are built and parsed.
#include <gtest/gtest.h>

#include <set>

#include "scalpel/errors.hpp"
#include "scalpel/hooks/names.hpp"

TEST(HookNames, FormatAndParseAreInverse) {
  for (const auto& c : scalpel::hook_components()) {
    for (int64_t layer : c.in_block ? std::vector<int64_t>{0, 7, 123} : std::vector<int64_t>{-1}) {
      const scalpel::HookName h(c.name, layer);
      const std::string s = h.str();
      EXPECT_EQ(scalpel::HookName::parse(s), h) << s;
      EXPECT_EQ(scalpel::hook_layer(s), layer) << s;
      EXPECT_EQ(s.rfind("blocks.", 0) == 0, c.in_block) << s;
    }
  }
}

TEST(HookNames, TransformerLensSpellings) {
  EXPECT_EQ(scalpel::hook_name("z", 3), "blocks.3.attn.hook_z");
  EXPECT_EQ(scalpel::hook_name("resid_pre", 0), "blocks.0.hook_resid_pre");
  EXPECT_EQ(scalpel::hook_name("attn_scores", 1), "blocks.1.attn.hook_attn_scores");
  EXPECT_EQ(scalpel::hook_name("ln2_normalized", 2), "blocks.2.ln2.hook_normalized");
  EXPECT_EQ(scalpel::hook_name("q_ln_scale", 4), "blocks.4.attn.q_ln.hook_scale");
  EXPECT_EQ(scalpel::hook_name("pre", 5), "blocks.5.mlp.hook_pre");        // get_act_name's alias
  EXPECT_EQ(scalpel::hook_name("post", 5), "blocks.5.mlp.hook_post");
  EXPECT_EQ(scalpel::hook_name("pos_embed"), "hook_pos_embed");
  EXPECT_EQ(scalpel::hook_name("ln_final_normalized"), "ln_final.hook_normalized");
  std::set<std::string> suffixes;
  for (const auto& c : scalpel::hook_components()) EXPECT_TRUE(suffixes.insert(c.suffix).second) << c.suffix;
}

TEST(HookNames, BadNamesAreTypedErrors) {
  for (const char* bad : {"", "blocks", "blocks.", "blocks.x.hook_resid_pre", "blocks.1hook_resid_pre",
                          "blocks.01.hook_resid_pre", "blocks.1.hook_embed", "hook_resid_pre", "blocks.1.attn.hook_zz",
                          "blocks.-1.hook_resid_pre"}) {
    EXPECT_FALSE(scalpel::HookName::try_parse(bad).has_value()) << bad;
    EXPECT_THROW(scalpel::HookName::parse(bad), scalpel::UnknownName) << bad;
  }
  try {
    scalpel::HookName::parse("blocks.2.attn.hook_zz");
    FAIL();
  } catch (const scalpel::UnknownName& e) {
    EXPECT_NE(std::string(e.what()).find("blocks.0.attn.hook_z"), std::string::npos) << e.what();
  }
  EXPECT_THROW(scalpel::hook_name("resid_pree", 1), scalpel::UnknownName);
  EXPECT_THROW(scalpel::hook_name("z"), scalpel::InvalidArgument);        // needs a layer
  EXPECT_THROW(scalpel::hook_name("embed", 0), scalpel::InvalidArgument);  // outside the blocks
}
