#include "edit/request.h"

#include <string>

#include "common/error.h"
#include "models/inference.h"

namespace comeba {

void validate_requests(const CausalLM& model, const std::vector<EditRequest>& requests) {
  if (requests.empty()) fail(ErrorCode::InvalidArgument, "the batch has no requests");
  for (size_t r = 0; r < requests.size(); ++r) {
    const auto& req = requests[r];
    auto bad = [&](const std::string& what) {
      fail(ErrorCode::InvalidArgument, "request " + std::to_string(r) + ": " + what);
    };
    if (req.contexts.empty() || req.contexts.size() != req.subject_last.size())
      bad("needs one subject index per context row");
    if (req.target.empty()) bad("the target has no tokens");
    for (size_t j = 0; j < req.contexts.size(); ++j) {
      if (req.subject_last[j] < 0 || req.subject_last[j] >= static_cast<int64_t>(req.contexts[j].size()))
        bad("the subject's last token lies outside context row " + std::to_string(j));
    }
    if (req.kl_subject_last < 0 || req.kl_subject_last >= static_cast<int64_t>(req.kl_row.size()))
      bad("the subject's last token lies outside the KL prompt");
    try {
      TokenRows rows = req.contexts;
      for (auto& row : rows) row.insert(row.end(), req.target.begin(), req.target.end());
      rows.push_back(req.kl_row);
      validate_tokens(model, rows);
    } catch (const Error& e) {
      bad(e.what());
    }
  }
}

}  // namespace comeba
