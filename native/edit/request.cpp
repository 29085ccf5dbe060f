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
    for (size_t k = 0; k < req.keep.size(); ++k) {
      if (req.keep[k].target.empty()) bad("kept edit " + std::to_string(k) + " has no target tokens");
      if (req.keep[k].subject_last < 0 || req.keep[k].subject_last >= static_cast<int64_t>(req.keep[k].row.size()))
        bad("the subject's last token lies outside kept edit " + std::to_string(k));
    }
    try {
      TokenRows rows = req.contexts;
      for (auto& row : rows) row.insert(row.end(), req.target.begin(), req.target.end());
      for (const auto& kept : req.keep) {
        rows.push_back(kept.row);
        rows.back().insert(rows.back().end(), kept.target.begin(), kept.target.end());
      }
      rows.push_back(req.kl_row);
      validate_tokens(model, rows);
    } catch (const Error& e) {
      bad(e.what());
    }
  }
}

}  // namespace comeba
