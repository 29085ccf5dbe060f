// One edit request in token form. The TypeScript side does the text work (templating, tokenisation, the
// subject's last token by EasyEdit's rule); the core receives ids and indices and checks them.
#pragma once

#include <cstdint>
#include <vector>

#include "models/causal_lm.h"

namespace comeba {

// An earlier edit of the same subject, kept by the retarget rule: its bare prompt, the subject's last token there
// and its target. The new request's value also keeps that target likely, so that the value the retargeted
// constraints move to carries every edit of the subject, not only the newest.
struct KeptEdit {
  std::vector<int64_t> row;
  int64_t subject_last = 0;
  std::vector<int64_t> target;
};

struct EditRequest {
  // The prompt with its subject under each context template; row 0 is the bare prompt ("{}").
  std::vector<std::vector<int64_t>> contexts;
  std::vector<int64_t> subject_last;  // per context row: index of the subject's last token
  std::vector<int64_t> target;        // target ids, leading space included
  std::vector<int64_t> kl_row;        // "{subject} is a"
  int64_t kl_subject_last = 0;
  std::vector<KeptEdit> keep;         // retarget only; empty otherwise
};

// Throws InvalidArgument naming the request and what is wrong with it.
void validate_requests(const CausalLM& model, const std::vector<EditRequest>& requests);

}  // namespace comeba
